#include "routing/queue.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "core/delivery_waiter.hpp"

namespace mma::routing {
namespace {

// The queue is real; the test plays its workers (take a job, report an outcome).
class QueueTest : public ::testing::Test {
 protected:
  config::QueueSection cfg() {
    config::QueueSection c;
    c.name = "q";
    c.max_mta = 3;
    c.max_queue = 1;
    c.max_retries = 3;
    c.retry_delay = std::chrono::milliseconds(1);
    c.retry_delay_max = std::chrono::milliseconds(4);
    c.throttle = 4;
    return c;
  }

  Job job(std::size_t rcpts = 1, std::shared_ptr<DeliveryWaiter> waiter = nullptr) {
    auto m = std::make_shared<Message>();
    m->id = "M" + std::to_string(++n_);
    m->body = std::make_shared<Body>();
    m->received = Clock::now();
    m->waiter = std::move(waiter);
    Job j;
    j.message = m;
    for (std::size_t i = 0; i < rcpts; ++i) {
      j.recipients.push_back(
          Recipient{"r" + std::to_string(i) + "@x.test", static_cast<std::uint32_t>(i), 0});
    }
    return j;
  }

  std::string accounting() {
    log.flush();
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }

  static std::size_t count(const std::string& hay, const std::string& needle) {
    std::size_t n = 0;
    for (auto p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
    return n;
  }

  std::string path = ::testing::TempDir() + "/queue_test_" + std::to_string(::getpid()) + "_" +
                     ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".jsonl";
  observe::AccountingLog log{path};
  net::EventLoops loops{1};
  Queue q{cfg(), log, loops};
  int spawned = 0;
  int n_ = 0;
  void SetUp() override {
    q.set_spawner([this](Queue&, bool) { ++spawned; });
  }
};

TEST_F(QueueTest, StartsWorkersForTheBacklogUpToMaxMta) {
  q.submit(job());
  EXPECT_EQ(spawned, 1);  // no worker at all: start one
  q.submit(job());        // backlog 2 > max_queue 1: another
  EXPECT_EQ(spawned, 2);
  for (int i = 0; i < 5; ++i) q.submit(job());
  EXPECT_EQ(spawned, 3);  // max_mta
  EXPECT_EQ(q.stats().queued, 7u);
  EXPECT_EQ(q.stats().peak_mtas, 3u);
}

TEST_F(QueueTest, ParkedWorkerGetsTheNextJobInItsInbox) {
  auto wakeup = std::make_shared<net::Wakeup>(loops.main().get_executor());
  WorkerSlot slot(wakeup);
  auto none = q.next_job(slot);
  EXPECT_FALSE(none.job);
  EXPECT_FALSE(none.stop);
  EXPECT_EQ(q.stats().ready, 1u);
  q.submit(job());
  EXPECT_EQ(spawned, 0);  // a ready worker took it
  EXPECT_EQ(q.stats().ready, 0u);
  ASSERT_TRUE(slot.inbox);
  auto next = q.next_job(slot);
  ASSERT_TRUE(next.job);
  EXPECT_EQ(q.stats().in_flight, 1u);
}

TEST_F(QueueTest, FinalOutcomesAreLoggedOnceAndReachTheWaiter) {
  bool done = false;
  auto waiter = std::make_shared<DeliveryWaiter>(3, [&] { done = true; });
  q.submit(job(3, waiter));
  WorkerSlot slot(std::make_shared<net::Wakeup>(loops.main().get_executor()));
  auto next = q.next_job(slot);
  ASSERT_TRUE(next.job);
  std::vector<RecipientStatus> st{{Outcome::Delivered, smtp::make_reply(250, "2.0.0", "ok")},
                                  {Outcome::Bounced, smtp::make_reply(550, "5.1.1", "unknown")},
                                  {Outcome::Delivered, smtp::make_reply(250, "2.0.0", "ok")}};
  q.complete(std::move(*next.job), st, AttemptReport{"mx:25", false, Clock::now()});
  EXPECT_TRUE(done);
  const auto results = waiter->results();
  EXPECT_EQ(results[1].outcome, Outcome::Bounced);
  EXPECT_EQ(results[1].reply.code, 550);
  const std::string acct = accounting();
  EXPECT_EQ(count(acct, "\"event\":\"delivered\""), 2u);
  EXPECT_EQ(count(acct, "\"event\":\"bounced\""), 1u);
  EXPECT_EQ(q.backlog(), 0u);
  EXPECT_EQ(q.backlog_recipients(), 0u);
}

TEST_F(QueueTest, ConnectionFaultRetriesAtOnceThenFailsAfterMaxRetries) {
  q.submit(job());
  WorkerSlot slot(std::make_shared<net::Wakeup>(loops.main().get_executor()));
  const RecipientStatus lost{Outcome::Deferred, smtp::make_reply(451, "4.4.2", "connection lost")};
  auto first = q.next_job(slot);
  ASSERT_TRUE(first.job);
  q.complete(std::move(*first.job), {lost}, AttemptReport{"", true, Clock::now()});
  // The first retry after a fault is immediate: the job is waiting again.
  auto second = q.next_job(slot);
  ASSERT_TRUE(second.job);
  EXPECT_EQ(second.job->recipients[0].attempts, 1u);
  q.complete(std::move(*second.job), {lost}, AttemptReport{"", true, Clock::now()});
  // The second retry waits retry_delay on a timer.
  EXPECT_EQ(q.stats().retrying, 1u);
  loops.main().run_for(std::chrono::milliseconds(50));
  auto third = q.next_job(slot);
  ASSERT_TRUE(third.job);
  EXPECT_EQ(third.job->recipients[0].attempts, 2u);
  q.complete(std::move(*third.job), {lost}, AttemptReport{"", true, Clock::now()});
  EXPECT_EQ(q.backlog(), 0u);  // max_retries = 3: failed
  const std::string acct = accounting();
  EXPECT_EQ(count(acct, "\"event\":\"deferred\""), 2u);
  EXPECT_EQ(count(acct, "\"event\":\"failed\""), 1u);
  EXPECT_EQ(q.stats().failed, 1u);
}

TEST_F(QueueTest, ThrottleHoldsTheComposerUntilTheQueueDrains) {
  auto wakeup = std::make_shared<net::Wakeup>(loops.main().get_executor());
  for (int i = 0; i < 4; ++i) q.submit(job());
  EXPECT_FALSE(q.admit(wakeup));
  WorkerSlot slot(std::make_shared<net::Wakeup>(loops.main().get_executor()));
  auto next = q.next_job(slot);  // 3 left: below throttle, the composer is woken
  bool woken = false;
  asio::co_spawn(
      loops.main(),
      [](std::shared_ptr<net::Wakeup> w, bool& flag) -> net::Task<void> {
        flag = co_await w->wait(std::chrono::seconds(5));
      }(wakeup, woken),
      asio::detached);
  loops.main().run_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(woken);
  EXPECT_TRUE(q.admit(wakeup));
}

TEST_F(QueueTest, StopReleasesParkedWorkers) {
  WorkerSlot slot(std::make_shared<net::Wakeup>(loops.main().get_executor()));
  EXPECT_FALSE(q.next_job(slot).job);
  q.stop();
  EXPECT_TRUE(q.next_job(slot).stop);
}

}  // namespace
}  // namespace mma::routing
