#include "smtp/server_protocol.hpp"

#include <gtest/gtest.h>

namespace mma::smtp {
namespace {

ServerProtocol make(bool lmtp = false) {
  return ServerProtocol(ServerOptions{.lmtp = lmtp,
                                      .hostname = "mma.test",
                                      .max_message_size = 1000,
                                      .max_recipients = 3,
                                      .max_errors = 5});
}

int code(ServerProtocol& p, std::string_view line) {
  return p.on_command(line).reply.code;
}

TEST(ServerProtocol, HappyPath) {
  auto p = make();
  EXPECT_EQ(p.greeting().reply.code, 220);
  auto ehlo = p.on_command("EHLO client.test");
  EXPECT_EQ(ehlo.reply.code, 250);
  EXPECT_NE(ehlo.reply.text.find("PIPELINING"), std::string::npos);
  EXPECT_NE(ehlo.reply.text.find("SIZE 1000"), std::string::npos);
  EXPECT_NE(ehlo.reply.text.find("8BITMIME"), std::string::npos);
  EXPECT_NE(ehlo.reply.text.find("ENHANCEDSTATUSCODES"), std::string::npos);
  EXPECT_TRUE(p.enhanced());
  EXPECT_EQ(code(p, "MAIL FROM:<a@b.test>"), 250);
  EXPECT_EQ(code(p, "RCPT TO:<c@d.test>"), 250);
  auto data = p.on_command("DATA");
  EXPECT_EQ(data.reply.code, 354);
  EXPECT_EQ(data.next, Next::ReadData);
  Envelope env = p.finish_data();
  EXPECT_EQ(env.sender.str(), "a@b.test");
  ASSERT_EQ(env.recipients.size(), 1u);
  EXPECT_EQ(env.helo, "client.test");
  EXPECT_EQ(p.state(), ServerProtocol::State::Greeted);
  EXPECT_EQ(code(p, "MAIL FROM:<>"), 250);  // a new transaction on the same connection
  auto quit = p.on_command("QUIT");
  EXPECT_EQ(quit.reply.code, 221);
  EXPECT_EQ(quit.next, Next::Close);
}

TEST(ServerProtocol, BadSequenceIs503) {
  auto p = make();
  EXPECT_EQ(code(p, "MAIL FROM:<a@b.test>"), 503);  // before EHLO
  EXPECT_EQ(code(p, "HELO x"), 250);
  EXPECT_FALSE(p.enhanced());  // RFC 2034: only after EHLO
  EXPECT_EQ(code(p, "RCPT TO:<c@d.test>"), 503);
  EXPECT_EQ(code(p, "DATA"), 503);
  EXPECT_EQ(code(p, "MAIL FROM:<a@b.test>"), 250);
  EXPECT_EQ(code(p, "MAIL FROM:<a@b.test>"), 503);  // nested
  EXPECT_EQ(code(p, "DATA"), 503);                  // no RCPT yet
}

TEST(ServerProtocol, DataAfterAllRecipientsFailedIs554) {
  auto p = make();
  code(p, "EHLO x");
  code(p, "MAIL FROM:<a@b.test>");
  EXPECT_EQ(code(p, "RCPT TO:<bad>"), 501);
  EXPECT_EQ(code(p, "DATA"), 554);  // RFC 2920 §3.1
}

TEST(ServerProtocol, UnknownAndSyntax) {
  auto p = make();
  EXPECT_EQ(code(p, "FOO"), 500);
  EXPECT_EQ(code(p, ""), 500);
  EXPECT_EQ(code(p, "EHLO"), 501);
  EXPECT_EQ(code(p, "RSET now"), 501);
  EXPECT_EQ(code(p, "EHLO\x01x"), 500);
}

TEST(ServerProtocol, OtherCommands) {
  auto p = make();
  code(p, "EHLO x");
  EXPECT_EQ(code(p, "NOOP"), 250);
  EXPECT_EQ(code(p, "VRFY someone"), 252);
  EXPECT_EQ(code(p, "HELP"), 214);
  EXPECT_EQ(code(p, "EXPN list"), 502);
  EXPECT_EQ(code(p, "STARTTLS"), 502);
  EXPECT_EQ(code(p, "RSET"), 250);
}

TEST(ServerProtocol, TooManyRecipientsIs452) {
  auto p = make();
  code(p, "EHLO x");
  code(p, "MAIL FROM:<a@b.test>");
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(code(p, "RCPT TO:<r" + std::to_string(i) + "@d.test>"), 250);
  auto r = p.on_command("RCPT TO:<r4@d.test>");
  EXPECT_EQ(r.reply.code, 452);
  EXPECT_EQ(r.reply.enhanced, "4.5.3");
}

TEST(ServerProtocol, SizeLimitIs552) {
  auto p = make();
  code(p, "EHLO x");
  EXPECT_EQ(code(p, "MAIL FROM:<a@b.test> SIZE=1001"), 552);
  EXPECT_EQ(code(p, "MAIL FROM:<a@b.test> SIZE=1000"), 250);
}

TEST(ServerProtocol, TooManyErrorsCloses) {
  auto p = make();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(code(p, "BAD"), 500);
  auto r = p.on_command("BAD");
  EXPECT_EQ(r.reply.code, 421);
  EXPECT_EQ(r.next, Next::Close);
}

TEST(ServerProtocol, DeniedClientOnlyGetsToQuit) {
  ServerProtocol p(ServerOptions{.hostname = "mma.test", .access_denied = true});
  auto g = p.greeting();
  EXPECT_EQ(g.reply.code, 554);
  EXPECT_EQ(g.reply.enhanced, "5.7.1");
  EXPECT_EQ(code(p, "EHLO x"), 503);
  EXPECT_EQ(code(p, "MAIL FROM:<a@b.test>"), 503);
  EXPECT_EQ(code(p, "RCPT TO:<a@b.test>"), 503);
  EXPECT_EQ(code(p, "QUIT"), 221);
}

TEST(ServerProtocol, LmtpWantsLhlo) {
  auto p = make(true);
  EXPECT_NE(p.greeting().reply.text.find("LMTP"), std::string::npos);
  EXPECT_EQ(code(p, "EHLO x"), 500);
  EXPECT_EQ(code(p, "HELO x"), 500);
  EXPECT_EQ(code(p, "LHLO x"), 250);
  auto smtp = make(false);
  EXPECT_EQ(code(smtp, "LHLO x"), 500);
}

class RejectingPolicy : public ServerPolicy {
 public:
  std::optional<Reply> check_rcpt(const Envelope&, const Address& a) override {
    if (a.domain() == "nowhere.test") return make_reply(550, "5.7.1", "no");
    return std::nullopt;
  }
};

TEST(ServerProtocol, PolicyRefusesRecipients) {
  RejectingPolicy policy;
  ServerProtocol p(ServerOptions{.hostname = "mma.test"}, &policy);
  code(p, "EHLO x");
  code(p, "MAIL FROM:<a@b.test>");
  EXPECT_EQ(code(p, "RCPT TO:<x@nowhere.test>"), 550);
  EXPECT_EQ(code(p, "RCPT TO:<x@somewhere.test>"), 250);
  EXPECT_EQ(p.on_command("DATA").next, Next::ReadData);
  EXPECT_EQ(p.finish_data().recipients.size(), 1u);
}

// RFC 3030 CHUNKING.
ServerProtocol chunking() {
  return ServerProtocol(ServerOptions{.hostname = "mma.test",
                                      .max_message_size = 1000,
                                      .max_recipients = 3,
                                      .max_errors = 5,
                                      .chunking = true});
}

TEST(ServerProtocol, BdatChunksEndInTheLastAsDataDoes) {
  auto p = chunking();
  EXPECT_NE(p.on_command("EHLO c.test").reply.text.find("CHUNKING"), std::string::npos);
  EXPECT_EQ(code(p, "MAIL FROM:<a@b.test>"), 250);
  EXPECT_EQ(code(p, "RCPT TO:<c@d.test>"), 250);
  auto first = p.on_command("BDAT 100");
  EXPECT_EQ(first.next, Next::ReadChunk);
  EXPECT_EQ(first.reply.code, 250);  // sent once the 100 octets are read
  EXPECT_EQ(p.chunk().size, 100u);
  EXPECT_TRUE(p.chunk().accepted && p.chunk().first && !p.chunk().last);
  EXPECT_EQ(code(p, "DATA"), 503);  // §3: no DATA in a BDAT transaction
  EXPECT_EQ(code(p, "RCPT TO:<e@d.test>"), 503);
  auto last = p.on_command("BDAT 0 last");  // the end marker is case-insensitive
  EXPECT_EQ(last.next, Next::ReadChunk);
  EXPECT_TRUE(p.chunk().accepted && !p.chunk().first && p.chunk().last);
  Envelope env = p.finish_data();
  ASSERT_EQ(env.recipients.size(), 1u);
  EXPECT_EQ(p.state(), ServerProtocol::State::Greeted);
  // After the last chunk a BDAT has no transaction: refused, its chunk still read.
  auto after = p.on_command("BDAT 5 LAST");
  EXPECT_EQ(after.reply.code, 503);
  EXPECT_EQ(after.next, Next::ReadChunk);
  EXPECT_FALSE(p.chunk().accepted);
}

TEST(ServerProtocol, RefusedChunksAreStillRead) {
  auto p = chunking();
  code(p, "EHLO c.test");
  code(p, "MAIL FROM:<a@b.test>");
  auto no_rcpt = p.on_command("BDAT 10 LAST");
  EXPECT_EQ(no_rcpt.reply.code, 503);
  EXPECT_EQ(no_rcpt.next, Next::ReadChunk);
  code(p, "RCPT TO:<reject@d.test");  // a syntax error: no valid recipient
  auto none_valid = p.on_command("BDAT 10 LAST");
  EXPECT_EQ(none_valid.reply.code, 554);  // as DATA after RFC 2920's failed RCPTs
  EXPECT_EQ(none_valid.next, Next::ReadChunk);
  EXPECT_EQ(p.chunk().size, 10u);
  EXPECT_FALSE(p.chunk().accepted);
}

TEST(ServerProtocol, AnUnreadableBdatClosesTheConnection) {
  for (const char* bad : {"BDAT", "BDAT x", "BDAT 10 LASTLY", "BDAT 10  LAST", "BDAT -1",
                          "BDAT 99999999999999999999999"}) {
    auto p = chunking();
    code(p, "EHLO c.test");
    code(p, "MAIL FROM:<a@b.test>");
    code(p, "RCPT TO:<c@d.test>");
    auto r = p.on_command(bad);
    // The chunk's length is unknown, so what follows cannot be read as commands.
    EXPECT_EQ(r.reply.code, 501) << bad;
    EXPECT_EQ(r.next, Next::Close) << bad;
  }
}

TEST(ServerProtocol, BdatOnlyWhereOffered) {
  auto off = make();  // chunking not enabled
  EXPECT_EQ(off.on_command("EHLO c.test").reply.text.find("CHUNKING"), std::string::npos);
  code(off, "MAIL FROM:<a@b.test>");
  code(off, "RCPT TO:<c@d.test>");
  auto r = off.on_command("BDAT 3 LAST");
  EXPECT_EQ(r.reply.code, 502);
  EXPECT_EQ(r.next, Next::Continue);
  auto helo = chunking();  // HELO: no extensions were offered
  code(helo, "HELO c.test");
  code(helo, "MAIL FROM:<a@b.test>");
  code(helo, "RCPT TO:<c@d.test>");
  EXPECT_EQ(code(helo, "BDAT 3 LAST"), 502);
}

TEST(ServerProtocol, RsetEndsAChunkedMessage) {
  auto p = chunking();
  code(p, "EHLO c.test");
  code(p, "MAIL FROM:<a@b.test>");
  code(p, "RCPT TO:<c@d.test>");
  code(p, "BDAT 4");
  EXPECT_EQ(code(p, "MAIL FROM:<a@b.test>"), 503);  // nested
  EXPECT_EQ(code(p, "RSET"), 250);
  EXPECT_EQ(code(p, "MAIL FROM:<a@b.test>"), 250);
  EXPECT_EQ(code(p, "RCPT TO:<c@d.test>"), 250);
  code(p, "BDAT 4 LAST");
  EXPECT_TRUE(p.chunk().first);  // a new message's content starts here
}

}  // namespace
}  // namespace mma::smtp
