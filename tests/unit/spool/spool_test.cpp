#include "spool/spool.hpp"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/spool_ticket.hpp"
#include "spool/records.hpp"

namespace mma::spool {
namespace {

TEST(Records, RoundTrip) {
  MessageRecord m{"bounces@x.test", "<id@x>", 1700000000123, 5120, 3, true, false, ""};
  auto back = decode_message(encode(m));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->sender, "bounces@x.test");
  EXPECT_EQ(back->message_id, "<id@x>");
  EXPECT_EQ(back->received_ms, 1700000000123);
  EXPECT_EQ(back->size, 5120u);
  EXPECT_EQ(back->recipients, 3u);
  EXPECT_TRUE(back->smtputf8);
  EXPECT_FALSE(back->eightbit);
  EXPECT_FALSE(decode_message("garbage"));
  EXPECT_FALSE(decode_message(encode(m).substr(0, 10)));
  auto r = decode_recipient(encode(RecipientRecord{"a@b.test"}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->address, "a@b.test");
  std::string id;
  std::uint32_t index = 0;
  ASSERT_TRUE(parse_recipient_key(recipient_key("ABC-1", 258), id, index));
  EXPECT_EQ(id, "ABC-1");
  EXPECT_EQ(index, 258u);
  EXPECT_LT(recipient_key("ABC-1", 2), recipient_key("ABC-1", 10));  // RCPT order
}

class SpoolTest : public ::testing::Test {
 protected:
  std::string dir = ::testing::TempDir() + "/spool_test_" + std::to_string(::getpid()) + "_" +
                    ::testing::UnitTest::GetInstance()->current_test_info()->name();
  void SetUp() override { std::filesystem::remove_all(dir); }
  void TearDown() override { std::filesystem::remove_all(dir); }

  std::shared_ptr<Message> message(const std::string& id) {
    auto body = std::make_shared<Body>();
    body->wire = "Message-ID: <" + id + ">\r\n\r\nhello\r\n";
    body->message_id = "<" + id + ">";
    body->size = body->wire.size();
    auto m = std::make_shared<Message>();
    m->id = id;
    m->sender = "s@x.test";
    m->body = body;
    return m;
  }

  std::error_code store(Spool& spool, Message& m, const std::vector<Recipient>& r) {
    std::error_code ec = std::make_error_code(std::errc::interrupted);
    ctx.restart();
    asio::co_spawn(
        ctx,
        [](Spool& s, Message& msg, const std::vector<Recipient>& rc, std::error_code& out)
            -> net::Task<void> { out = co_await s.store(msg, rc); }(spool, m, r, ec),
        asio::detached);
    ctx.run();
    return ec;
  }

  // Outlives every Spool of a test (those are locals of the test body): the spool's writer
  // thread may drop its reference to a commit, and so destroy the commit's wake-up timer on
  // this context, after the session it woke has finished.
  asio::io_context ctx;
};

TEST_F(SpoolTest, WhatIsStoredIsRecoveredUntilItsRecipientsAreDone) {
  std::vector<Recipient> rcpts{{"a@x.test", 0, 0}, {"b@y.test", 1, 0}, {"c@z.test", 2, 0}};
  {
    Spool spool(SpoolOptions{dir, true, 0});
    auto m1 = message("M1");
    auto m2 = message("M2");
    ASSERT_FALSE(store(spool, *m1, rcpts));
    ASSERT_FALSE(store(spool, *m2, {rcpts[0]}));
    ASSERT_TRUE(m1->spooled);
    m1->spooled->recipient_final(1);  // b done
    m2->spooled->recipient_final(0);  // M2 entirely done
    spool.flush();
    const SpoolStats st = spool.stats();
    EXPECT_EQ(st.messages_stored, 2u);
    EXPECT_EQ(st.recipients_stored, 4u);
    // Stored one after the other: two groups of one, each synced and timed.
    EXPECT_EQ(st.commits, 2u);
    EXPECT_EQ(st.groups, 2u);
    EXPECT_EQ(st.syncs, 2u);
    EXPECT_EQ(st.removed, 2u);
    EXPECT_GT(st.commit_us, 0u);
    EXPECT_GE(st.commit_max_us * st.groups, st.commit_us);
    EXPECT_LE(st.commit_max_us, st.commit_us);
  }
  Spool again(SpoolOptions{dir, true, 0});
  std::vector<std::pair<std::shared_ptr<Message>, std::vector<Recipient>>> got;
  const std::size_t n = again.recover([&](std::shared_ptr<Message> m, std::vector<Recipient> r) {
    got.emplace_back(std::move(m), std::move(r));
  });
  EXPECT_EQ(n, 2u);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first->id, "M1");
  EXPECT_EQ(got[0].first->sender, "s@x.test");
  EXPECT_EQ(got[0].first->body->wire, "Message-ID: <M1>\r\n\r\nhello\r\n");
  ASSERT_EQ(got[0].second.size(), 2u);
  EXPECT_EQ(got[0].second[0].address, "a@x.test");
  EXPECT_EQ(got[0].second[1].address, "c@z.test");
  EXPECT_EQ(got[0].second[1].index, 2u);
  // The recovered message has its ticket: finishing it empties the spool.
  got[0].first->spooled->recipient_final(0);
  got[0].first->spooled->recipient_final(2);
  again.flush();
  EXPECT_EQ(again.recover([](auto, auto) { FAIL(); }), 0u);
}

TEST_F(SpoolTest, RecipientsFinishedDuringRecoveryLeaveTheOtherMessagesWhole) {
  // The daemon fails a recipient that no queue routes any more while the spool is recovered:
  // its deletion reaches the database (the writer thread) before later messages are read.
  {
    Spool spool(SpoolOptions{dir, true, 0});
    for (const char* id : {"R1", "R2", "R3"}) {
      auto m = message(id);
      ASSERT_FALSE(store(spool, *m, {{"a@x.test", 0, 0}}));
    }
  }
  Spool again(SpoolOptions{dir, true, 0});
  std::vector<std::string> bodies;
  const std::size_t n = again.recover([&](std::shared_ptr<Message> m, std::vector<Recipient> r) {
    bodies.push_back(m->body->wire);
    if (m->id == "R1") {
      m->spooled->recipient_final(r[0].index);
      again.flush();  // written now, in the middle of the recovery
    }
  });
  EXPECT_EQ(n, 3u);
  ASSERT_EQ(bodies.size(), 3u);
  EXPECT_EQ(bodies[1], "Message-ID: <R2>\r\n\r\nhello\r\n");
  EXPECT_EQ(bodies[2], "Message-ID: <R3>\r\n\r\nhello\r\n");
  EXPECT_EQ(again.stats().removed, 1u);
}

TEST_F(SpoolTest, ABodyInAFileIsSpooledByNameRecoveredAndRemovedWithItsLastRecipient) {
  const std::string content = "Message-ID: <F1>\r\n\r\n" + std::string(100000, 'x') + "\r\n";
  std::string body_path;
  {
    Spool spool(SpoolOptions{dir, true, 0});
    auto m = message("F1");
    auto b = std::make_shared<Body>(*m->body);
    b->wire.clear();
    b->file = spool.bodies().create("F1");
    ASSERT_FALSE(b->file->append(content));
    ASSERT_FALSE(b->file->finish());
    body_path = b->file->path();
    m->body = b;
    ASSERT_FALSE(store(spool, *m, {{"a@x.test", 0, 0}, {"b@y.test", 1, 0}}));
    // A file no record points at (a refused message's, say) is removed at the next start.
    auto stray = spool.bodies().create("STRAY");
    ASSERT_FALSE(stray->finish());
    stray->keep(true);
    m->spooled->recipient_final(0);
    spool.flush();
    // The message is gone from memory (a crash, or a stop): its file stays for recovery.
  }
  ASSERT_TRUE(std::filesystem::exists(body_path));
  ASSERT_TRUE(std::filesystem::exists(dir + "/bodies/STRAY.body"));
  Spool again(SpoolOptions{dir, true, 0});
  std::shared_ptr<Message> got;
  std::vector<Recipient> rcpts;
  EXPECT_EQ(again.recover([&](std::shared_ptr<Message> m, std::vector<Recipient> r) {
    got = std::move(m);
    rcpts = std::move(r);
  }),
            1u);
  EXPECT_FALSE(std::filesystem::exists(dir + "/bodies/STRAY.body"));
  ASSERT_TRUE(got && got->body->file);
  EXPECT_EQ(got->body->wire, "");
  EXPECT_EQ(got->body->wire_size(), content.size());
  EXPECT_TRUE(got->body->file->ends_with_crlf());
  ASSERT_EQ(rcpts.size(), 1u);
  EXPECT_EQ(rcpts[0].address, "b@y.test");
  got->spooled->recipient_final(1);
  got.reset();  // the last Body goes: the spool, not the Body, decides about the file
  EXPECT_TRUE(std::filesystem::exists(body_path));
  again.flush();
  EXPECT_FALSE(std::filesystem::exists(body_path));
}

TEST_F(SpoolTest, OneProcessPerSpool) {
  Spool spool(SpoolOptions{dir, true, 0});
  EXPECT_THROW(BodyDirectory(dir + "/bodies"), std::runtime_error);
}

TEST_F(SpoolTest, RefusesWhenShortOfSpace) {
  Spool spool(SpoolOptions{dir, true, std::numeric_limits<std::uint64_t>::max() / 2});
  auto m = message("M3");
  EXPECT_EQ(store(spool, *m, {{"a@x.test", 0, 0}}),
            std::make_error_code(std::errc::no_space_on_device));
  EXPECT_FALSE(m->spooled);
  EXPECT_EQ(spool.stats().failures, 1u);
}

}  // namespace
}  // namespace mma::spool
