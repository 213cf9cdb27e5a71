#include "routing/router.hpp"

#include <gtest/gtest.h>

#include <filesystem>

#include "net/event_loops.hpp"

namespace mma::routing {
namespace {

config::QueueSection queue(std::string name, std::vector<std::string> domains,
                           std::size_t batch = 100) {
  config::QueueSection q;
  q.name = std::move(name);
  q.domains = std::move(domains);
  q.batch_size = batch;
  q.mx = {config::Endpoint{
      config::Endpoint::Kind::Tcp, "127.0.0.1", 25, {}}};  // fixed hosts: one destination
  return q;
}

std::shared_ptr<Message> message(std::size_t size = 10) {
  auto body = std::make_shared<Body>();
  body->wire = "Subject: x\r\n\r\nhi\r\n";
  body->size = size;
  auto m = std::make_shared<Message>();
  m->id = "T1";
  m->body = body;
  return m;
}

std::vector<Recipient> rcpts(std::initializer_list<const char*> addrs) {
  std::vector<Recipient> v;
  std::uint32_t i = 0;
  for (const char* a : addrs) v.push_back(Recipient{a, i++, 0});
  return v;
}

class RouterTest : public ::testing::Test {
 protected:
  observe::AccountingLog log{""};  // nothing here reads it
  net::EventLoops loops{1};
  Queue big{queue("big", {"big.test", "*.big.test"}, 2), log, loops};
  Queue sub{queue("sub", {"*.a.big.test"}), log, loops};
  Queue general{queue("general", {}), log, loops};
  Router router{{&big, &sub, &general}};
};

TEST_F(RouterTest, RoutesByDomain) {
  EXPECT_EQ(router.route("big.test"), &big);
  EXPECT_EQ(router.route("x.big.test"), &big);
  EXPECT_EQ(router.route("y.x.big.test"), &big);
  EXPECT_EQ(router.route("z.a.big.test"), &sub);  // the longest suffix wins
  EXPECT_EQ(router.route("notbig.test"), &general);
  EXPECT_EQ(router.route("big.test.evil"), &general);
}

TEST_F(RouterTest, SplitsAMessageSharingOneBody) {
  auto m = message();
  auto touched =
      router.dispatch(m, rcpts({"a@big.test", "b@other.test", "c@x.big.test", "d@big.test"}));
  EXPECT_EQ(touched.size(), 2u);
  // big has batch_size 2: three recipients make two jobs; general gets one.
  EXPECT_EQ(big.stats().queued, 2u);
  EXPECT_EQ(general.stats().queued, 1u);
  WorkerSlot slot(std::make_shared<net::Wakeup>(loops.main().get_executor()));
  WorkerSlot other(std::make_shared<net::Wakeup>(loops.main().get_executor()));
  auto j1 = big.next_job(slot, false);
  auto j2 = big.next_job(slot, false);
  auto j3 = general.next_job(other, false);
  ASSERT_TRUE(j1.job && j2.job && j3.job);
  EXPECT_EQ(j1.job->recipients.size(), 2u);
  EXPECT_EQ(j1.job->recipients[0].address, "a@big.test");
  EXPECT_EQ(j1.job->recipients[1].address, "c@x.big.test");
  EXPECT_EQ(j2.job->recipients[0].address, "d@big.test");
  EXPECT_EQ(j2.job->recipients[0].index, 3u);
  EXPECT_EQ(j3.job->recipients[0].address, "b@other.test");
  // One body, referenced by every job: never copied.
  EXPECT_EQ(j1.job->message->body.get(), m->body.get());
  EXPECT_EQ(j3.job->message->body.get(), m->body.get());
}

TEST(RouterDns, GroupsRecipientsByDomainInDnsRoutedQueues) {
  observe::AccountingLog log{""};
  net::EventLoops loops{1};
  auto dns_routed = queue("general", {});
  dns_routed.mx.clear();  // no mx: one destination per domain
  Queue general{dns_routed, log, loops};
  Router router{{&general}};
  auto m = message();
  router.dispatch(m, rcpts({"a@x.test", "b@y.test", "c@x.test"}));
  EXPECT_EQ(general.stats().queued, 2u);
  WorkerSlot slot(std::make_shared<net::Wakeup>(loops.main().get_executor()));
  auto j1 = general.next_job(slot, false);
  ASSERT_TRUE(j1.job);
  EXPECT_EQ(j1.job->destination, "x.test");
  EXPECT_EQ(j1.job->recipients.size(), 2u);
}

TEST(RouterNoGeneral, UnroutableIsNull) {
  observe::AccountingLog log{""};
  net::EventLoops loops{1};
  Queue big{queue("big", {"big.test"}), log, loops};
  Router router{{&big}};
  EXPECT_EQ(router.route("other.test"), nullptr);
}

}  // namespace
}  // namespace mma::routing
