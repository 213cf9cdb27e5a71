#include "routing/queue.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <thread>

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "core/delivery_waiter.hpp"

namespace mma::routing {
namespace {

// Whether `w` is notified within 100 ms of running the loop (a session held by the throttle).
bool woken_soon(net::EventLoops& loops, std::shared_ptr<net::Wakeup> w) {
  bool woken = false;
  asio::co_spawn(
      loops.main(),
      [](std::shared_ptr<net::Wakeup> wakeup, bool& flag) -> net::Task<void> {
        flag = co_await wakeup->wait(std::chrono::seconds(5));
      }(w, woken),
      asio::detached);
  loops.main().run_for(std::chrono::milliseconds(100));
  return woken;
}

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

  // Removed before the log opens it (appending): a file left by an earlier run whose process
  // had the same pid would add its lines to this test's counts.
  static std::string fresh_file(std::string p) {
    std::filesystem::remove(p);
    return p;
  }
  std::string path =
      fresh_file(::testing::TempDir() + "/queue_test_" + std::to_string(::getpid()) + "_" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".jsonl");
  observe::AccountingLog log{path};
  net::EventLoops loops{1};
  Queue q{cfg(), log, loops};
  int spawned = 0;
  int n_ = 0;
  void SetUp() override {
    q.set_spawner([this](Queue&, bool) { ++spawned; });
  }
  void TearDown() override { std::filesystem::remove(path); }
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
  auto none = q.next_job(slot, false);
  EXPECT_FALSE(none.job);
  EXPECT_FALSE(none.stop);
  EXPECT_EQ(q.stats().ready, 1u);
  q.submit(job());
  EXPECT_EQ(spawned, 0);  // a ready worker took it
  EXPECT_EQ(q.stats().ready, 0u);
  ASSERT_TRUE(slot.inbox);
  auto next = q.next_job(slot, false);
  ASSERT_TRUE(next.job);
  EXPECT_EQ(q.stats().in_flight, 1u);
}

TEST_F(QueueTest, FinalOutcomesAreLoggedOnceAndReachTheWaiter) {
  bool done = false;
  auto waiter = std::make_shared<DeliveryWaiter>(3, [&] { done = true; });
  q.submit(job(3, waiter));
  WorkerSlot slot(std::make_shared<net::Wakeup>(loops.main().get_executor()));
  auto next = q.next_job(slot, false);
  ASSERT_TRUE(next.job);
  std::vector<RecipientStatus> st{{Outcome::Delivered, smtp::make_reply(250, "2.0.0", "ok")},
                                  {Outcome::Bounced, smtp::make_reply(550, "5.1.1", "unknown")},
                                  {Outcome::Delivered, smtp::make_reply(250, "2.0.0", "ok")}};
  q.complete(std::move(*next.job), st, AttemptReport{"mx:25", false, false, true, Clock::now()});
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
  auto first = q.next_job(slot, false);
  ASSERT_TRUE(first.job);
  q.complete(std::move(*first.job), {lost}, AttemptReport{"", true, false, false, Clock::now()});
  // The first retry after a fault is immediate: the job is waiting again.
  auto second = q.next_job(slot, false);
  ASSERT_TRUE(second.job);
  EXPECT_EQ(second.job->recipients[0].attempts, 1u);
  q.complete(std::move(*second.job), {lost}, AttemptReport{"", true, false, false, Clock::now()});
  // The second retry waits retry_delay on a timer.
  EXPECT_EQ(q.stats().retrying, 1u);
  loops.main().run_for(std::chrono::milliseconds(50));
  auto third = q.next_job(slot, false);
  ASSERT_TRUE(third.job);
  EXPECT_EQ(third.job->recipients[0].attempts, 2u);
  q.complete(std::move(*third.job), {lost}, AttemptReport{"", true, false, false, Clock::now()});
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
  auto next = q.next_job(slot, false);  // 3 left: below throttle, the composer is woken
  EXPECT_TRUE(woken_soon(loops, wakeup));
  EXPECT_TRUE(q.admit(wakeup));
}

TEST_F(QueueTest, StopReleasesParkedWorkers) {
  WorkerSlot slot(std::make_shared<net::Wakeup>(loops.main().get_executor()));
  EXPECT_FALSE(q.next_job(slot, false).job);
  q.stop();
  EXPECT_TRUE(q.next_job(slot, false).stop);
}

}  // namespace
}  // namespace mma::routing

namespace mma::routing {
namespace {

// A DNS-routed queue: one destination per recipient domain.
class DestinationTest : public ::testing::Test {
 protected:
  static config::QueueSection cfg(unsigned max_mta, unsigned per_dest, std::size_t cache,
                                  unsigned max_fail = 3) {
    config::QueueSection c;
    c.name = "general";
    c.max_mta = max_mta;
    c.destination_concurrency = per_dest;
    c.connection_cache = cache;
    c.max_fail = max_fail;
    c.retry_delay = std::chrono::milliseconds(1);
    return c;
  }

  Job job(const std::string& domain, std::size_t rcpts = 1) {
    auto m = std::make_shared<Message>();
    m->id = "M" + std::to_string(++n_);
    m->body = std::make_shared<Body>();
    m->received = Clock::now();
    Job j;
    j.message = m;
    j.destination = domain;
    for (std::size_t i = 0; i < rcpts; ++i) {
      j.recipients.push_back(
          Recipient{"r" + std::to_string(i) + "@" + domain, static_cast<std::uint32_t>(i), 0});
    }
    return j;
  }

  WorkerSlot slot() {
    return WorkerSlot(std::make_shared<net::Wakeup>(loops.main().get_executor()));
  }

  // The MX cache as the queue sees it: the servers of the domains known() so far.
  void know(const std::string& domain, std::vector<std::string> servers) {
    known_[domain] = std::move(servers);
  }
  void serve_known(Queue& q) {
    q.set_servers_of([this](const std::string& d) -> Queue::Servers {
      auto it = known_.find(d);
      if (it == known_.end()) return nullptr;
      return std::make_shared<const std::vector<std::string>>(it->second);
    });
  }

  observe::AccountingLog log{""};
  net::EventLoops loops{1};
  int n_ = 0;
  std::map<std::string, std::vector<std::string>> known_;
};

TEST_F(DestinationTest, ConnectedWorkerKeepsItsDestinationAndOthersTakeTheRest) {
  Queue q(cfg(3, 1, 5), log, loops);
  int spawned = 0;
  q.set_spawner([&](Queue&, bool) { ++spawned; });
  q.submit(job("a.test"));
  q.submit(job("a.test"));
  q.submit(job("b.test"));
  EXPECT_EQ(spawned, 3);  // up to max_mta: workers bind to a destination only when they start
  WorkerSlot w1 = slot(), w2 = slot();
  auto j = q.next_job(w1, false);
  ASSERT_TRUE(j.job);
  EXPECT_EQ(j.job->destination, "a.test");
  EXPECT_TRUE(w1.bound);
  auto k = q.next_job(w2, false);  // a.test is at its limit: w2 goes to b.test
  ASSERT_TRUE(k.job);
  EXPECT_EQ(k.job->destination, "b.test");
  auto again = q.next_job(w1, true);  // connected to a.test: its next job is a.test's
  ASSERT_TRUE(again.job);
  EXPECT_EQ(again.job->destination, "a.test");
}

TEST_F(DestinationTest, AtMaxMtaTheLeastRecentlyUsedIdleConnectionMakesRoom) {
  Queue q(cfg(1, 5, 5), log, loops);
  q.set_spawner([](Queue&, bool) {});
  q.submit(job("a.test"));
  WorkerSlot w = slot();
  auto j = q.next_job(w, false);
  ASSERT_TRUE(j.job);
  q.complete(std::move(*j.job),
             {RecipientStatus{Outcome::Delivered, smtp::make_reply(250, "", "ok")}},
             AttemptReport{"mx", false, false, true, Clock::now()});
  EXPECT_FALSE(q.next_job(w, true).job);  // parks with its connection to a.test
  EXPECT_TRUE(w.parked);
  q.submit(job("b.test"));  // max_mta = 1: the idle a.test connection is given the b.test job
  EXPECT_FALSE(w.parked);
  ASSERT_TRUE(w.inbox);
  EXPECT_EQ(w.inbox->destination, "b.test");
  EXPECT_EQ(w.destination, "b.test");
}

TEST_F(DestinationTest, ConnectionCacheKeepsOnlyTheMostRecentDestinations) {
  Queue q(cfg(5, 5, 1), log, loops);
  q.set_spawner([](Queue&, bool) {});
  WorkerSlot a = slot(), b = slot();
  q.submit(job("a.test"));
  q.submit(job("b.test"));
  auto ja = q.next_job(a, false);
  auto jb = q.next_job(b, false);
  ASSERT_TRUE(ja.job && jb.job);
  EXPECT_FALSE(q.next_job(a, true).job);  // a.test idle: cached
  EXPECT_FALSE(a.drop_connection);
  EXPECT_FALSE(q.next_job(b, true).job);  // b.test idle: a.test is now one too many
  EXPECT_TRUE(a.drop_connection);
  EXPECT_FALSE(a.bound);
  EXPECT_TRUE(q.next_job(a, true).drop_connection);
  EXPECT_FALSE(q.next_job(a, false).job);  // parks without a connection
}

TEST_F(DestinationTest, ConnectionCacheEvictsTheLeastRecentlyUsedNotTheFirstParked) {
  Queue q(cfg(5, 5, 2), log, loops);
  q.set_spawner([](Queue&, bool) {});
  const auto done = [&](Job j) {
    q.complete(std::move(j), {RecipientStatus{Outcome::Delivered, smtp::make_reply(250, "", "ok")}},
               AttemptReport{"mx", false, false, true, Clock::now()});
  };
  WorkerSlot a1 = slot(), a2 = slot(), b = slot(), c = slot();
  q.submit(job("a.test"));
  q.submit(job("a.test"));
  auto j1 = q.next_job(a1, false);
  auto j2 = q.next_job(a2, false);
  ASSERT_TRUE(j1.job && j2.job);
  done(std::move(*j1.job));
  EXPECT_FALSE(q.next_job(a1, true).job);  // a.test idle
  q.submit(job("b.test"));
  auto jb = q.next_job(b, false);
  ASSERT_TRUE(jb.job);
  done(std::move(*jb.job));
  EXPECT_FALSE(q.next_job(b, true).job);  // b.test idle, the most recent
  done(std::move(*j2.job));
  EXPECT_FALSE(q.next_job(a2, true).job);  // a.test's second connection: a.test most recent again
  q.submit(job("c.test"));
  auto jc = q.next_job(c, false);
  ASSERT_TRUE(jc.job);
  done(std::move(*jc.job));
  EXPECT_FALSE(q.next_job(c, true).job);  // three idle destinations, room for two: b.test goes
  EXPECT_TRUE(b.drop_connection);
  EXPECT_FALSE(a1.drop_connection);
  EXPECT_FALSE(a2.drop_connection);
  EXPECT_FALSE(c.drop_connection);
}

TEST_F(DestinationTest, ANewDomainWaitsForItsMxHostsThenSharesAnIdleConnectionToOne) {
  Queue q(cfg(5, 5, 5), log, loops);
  int spawned = 0;
  q.set_spawner([&](Queue&, bool) { ++spawned; });
  know("a.test", {"mx1"});
  serve_known(q);
  std::vector<std::pair<std::string, std::function<void()>>> lookups;
  q.set_look_up([&](const std::string& d, std::function<void()> done) {
    lookups.emplace_back(d, std::move(done));
  });
  // a.test's MX is known: a worker starts, delivers, and parks connected to mx1.
  q.submit(job("a.test"));
  EXPECT_EQ(spawned, 1);
  EXPECT_TRUE(lookups.empty());
  WorkerSlot w = slot();
  auto j = q.next_job(w, false);
  ASSERT_TRUE(j.job);
  q.connected_to(w, "mx1");
  q.complete(std::move(*j.job),
             {RecipientStatus{Outcome::Delivered, smtp::make_reply(250, "", "ok")}},
             AttemptReport{"mx1", false, false, true, Clock::now()});
  EXPECT_FALSE(q.next_job(w, true).job);
  ASSERT_TRUE(w.parked);

  // b.test is new to the MX cache: its two jobs wait for one look-up; no worker starts for them.
  q.submit(job("b.test"));
  q.submit(job("b.test"));
  ASSERT_EQ(lookups.size(), 1u);
  EXPECT_EQ(lookups[0].first, "b.test");
  EXPECT_EQ(spawned, 1);
  EXPECT_TRUE(w.parked);
  EXPECT_EQ(q.stats().queued, 2u);

  // Its best MX is mx1: the idle connection there takes the first job.
  know("b.test", {"mx1"});
  lookups[0].second();
  EXPECT_FALSE(w.parked);
  ASSERT_TRUE(w.inbox);
  EXPECT_EQ(w.inbox->destination, "b.test");
  EXPECT_EQ(q.stats().reused, 1u);
  EXPECT_EQ(q.stats().queued, 1u);  // the second waits its turn

  // A failed look-up releases the jobs as well, and a domain is looked up ahead only once.
  q.submit(job("c.test"));
  ASSERT_EQ(lookups.size(), 2u);
  lookups[1].second();
  q.submit(job("c.test"));
  EXPECT_EQ(lookups.size(), 2u);
  // The worker started for c.test takes it; b.test's second job is mx1's connection's next.
  WorkerSlot w2 = slot();
  auto c1 = q.next_job(w2, false);
  ASSERT_TRUE(c1.job);
  EXPECT_EQ(c1.job->destination, "c.test");
  auto b1 = q.next_job(w, true);
  ASSERT_TRUE(b1.job);
  EXPECT_EQ(b1.job->destination, "b.test");
  auto b2 = q.next_job(w, true);
  ASSERT_TRUE(b2.job);
  EXPECT_EQ(b2.job->destination, "b.test");
}

TEST_F(DestinationTest, AJobHeldForItsLookUpIsNotTakenByAWorkerStartedForAnother) {
  Queue q(cfg(5, 5, 5), log, loops);
  int spawned = 0;
  q.set_spawner([&](Queue&, bool) { ++spawned; });
  know("a.test", {"mx1"});
  serve_known(q);
  std::function<void()> looked_up;
  q.set_look_up(
      [&](const std::string&, std::function<void()> done) { looked_up = std::move(done); });
  q.submit(job("b.test"));  // held: no worker for it yet
  q.submit(job("a.test"));  // known: a worker starts for it
  EXPECT_EQ(spawned, 1);
  // The worker started for a.test takes a.test's job, though b.test's waited longer. Taking
  // b.test's would leave a.test's with no worker started for it (in `latency`, for a second).
  WorkerSlot w = slot();
  auto j = q.next_job(w, false);
  ASSERT_TRUE(j.job);
  EXPECT_EQ(j.job->destination, "a.test");
  // The look-up over, b.test's job gets a worker of its own.
  know("b.test", {"mx2"});
  looked_up();
  EXPECT_EQ(spawned, 2);
  WorkerSlot w2 = slot();
  auto k = q.next_job(w2, false);
  ASSERT_TRUE(k.job);
  EXPECT_EQ(k.job->destination, "b.test");
}

TEST_F(DestinationTest, SessionsHeldByTheThrottleGoOnWhenHeldJobsGoStraightToParkedWorkers) {
  config::QueueSection c = cfg(5, 5, 5);
  c.throttle = 2;
  Queue q(c, log, loops);
  q.set_spawner([](Queue&, bool) {});
  serve_known(q);
  std::vector<std::function<void()>> done;
  q.set_look_up([&](const std::string&, std::function<void()> d) { done.push_back(std::move(d)); });
  WorkerSlot w1 = slot(), w2 = slot();  // two workers parked with no connection
  EXPECT_FALSE(q.next_job(w1, false).job);
  EXPECT_FALSE(q.next_job(w2, false).job);
  q.submit(job("a.test"));  // held for its look-up
  q.submit(job("b.test"));
  auto session = std::make_shared<net::Wakeup>(loops.main().get_executor());
  EXPECT_FALSE(q.admit(session));  // two held jobs: at the throttle
  know("a.test", {"mx1"});
  know("b.test", {"mx2"});
  for (auto& d : done) d();  // each job goes into a parked worker's inbox, not through pending
  ASSERT_TRUE(w1.inbox || w2.inbox);
  EXPECT_TRUE(woken_soon(loops, session));  // before: held back for good, with the queue empty
  EXPECT_TRUE(q.admit(session));
}

class SameServerTest : public DestinationTest {
 protected:
  void use_known(Queue& q) {
    q.set_spawner([](Queue&, bool) {});
    serve_known(q);
  }
  // `job` got its 250 over a connection to `host`.
  static void delivered(Queue& q, Job job, const std::string& host) {
    q.complete(std::move(job),
               {RecipientStatus{Outcome::Delivered, smtp::make_reply(250, "", "ok")}},
               AttemptReport{host, false, false, true, Clock::now()});
  }
  // The slot takes the next waiting job, connects to `host` and gets its 250.
  static void take_and_deliver(Queue& q, WorkerSlot& w, const std::string& host) {
    auto j = q.next_job(w, false);
    ASSERT_TRUE(j.job);
    q.connected_to(w, host);
    delivered(q, std::move(*j.job), host);
  }
  // max_mta 2, with mail waiting for a.test (on mx1) and b.test (mx2); c.test is on mx1 too.
  std::unique_ptr<Queue> two_workers(std::chrono::milliseconds move_after) {
    config::QueueSection c = cfg(2, 5, 5);
    c.move_after = move_after;
    auto q = std::make_unique<Queue>(c, log, loops);
    use_known(*q);
    know("a.test", {"mx1"});
    know("b.test", {"mx2"});
    know("c.test", {"mx1"});
    q->submit(job("a.test"));
    q->submit(job("b.test"));
    return q;
  }
  // `a` connects to mx1 and is still busy with a.test's job (returned); `b` delivers b.test's
  // over mx2 and parks with its connection.
  static Queue::Next busy_and_parked(Queue& q, WorkerSlot& a, WorkerSlot& b) {
    auto busy = q.next_job(a, false);
    EXPECT_TRUE(busy.job);
    q.connected_to(a, "mx1");
    take_and_deliver(q, b, "mx2");
    EXPECT_FALSE(q.next_job(b, true).job);
    return busy;
  }
  // One job each for a.test (over a connection to `host_a`) and b.test (`host_b`); then both
  // park, a first.
  void deliver_then_park(Queue& q, WorkerSlot& a, const std::string& host_a, WorkerSlot& b,
                         const std::string& host_b) {
    q.submit(job("a.test"));
    q.submit(job("b.test"));
    take_and_deliver(q, a, host_a);
    take_and_deliver(q, b, host_b);
    EXPECT_FALSE(q.next_job(a, true).job);
    EXPECT_FALSE(q.next_job(b, true).job);
  }
};

TEST_F(SameServerTest, AnIdleConnectionIsFoundByItsServerWarmestFirst) {
  Queue q(cfg(10, 5, 5), log, loops);
  use_known(q);
  know("a.test", {"mx1"});
  know("b.test", {"mx1"});
  know("d.test", {"mx9", "mx3"});
  know("e.test", {"mx1"});
  know("h.test", {"mx1"});
  WorkerSlot a = slot(), b = slot();
  deliver_then_park(q, a, "mx1", b, "mx1");  // two idle connections to mx1, a's parked first
  ASSERT_TRUE(a.parked && b.parked);

  // e.test's server is mx1: the connection parked last there takes it.
  q.submit(job("e.test"));
  ASSERT_TRUE(b.inbox);
  EXPECT_EQ(b.inbox->destination, "e.test");
  EXPECT_TRUE(a.parked);
  EXPECT_EQ(q.stats().reused, 1u);

  // A connection whose host changes while parked is found under its new host only.
  q.connected_to(a, "mx3");
  q.submit(job("h.test"));  // mx1: nothing idle there now
  EXPECT_TRUE(a.parked);
  EXPECT_FALSE(a.inbox);
  q.submit(job("d.test"));  // mx9 (nothing) or mx3
  ASSERT_TRUE(a.inbox);
  EXPECT_EQ(a.inbox->destination, "d.test");
  EXPECT_EQ(q.stats().reused, 2u);
}

TEST_F(SameServerTest, AConnectionClosedByTheCacheIsNotOfferedAgain) {
  Queue q(cfg(10, 5, 1), log, loops);
  use_known(q);
  know("a.test", {"mx1"});
  know("b.test", {"mx2"});
  know("c.test", {"mx1"});
  WorkerSlot a = slot(), b = slot();
  deliver_then_park(q, a, "mx1", b, "mx2");  // a cache of one: a.test's connection is closed
  ASSERT_TRUE(a.drop_connection);
  // c.test's server is mx1, where a's connection was: it is not handed a connection going away.
  q.submit(job("c.test"));
  EXPECT_FALSE(a.inbox);
  EXPECT_FALSE(b.inbox);
  EXPECT_EQ(q.stats().reused, 0u);
}

TEST_F(SameServerTest, TheConnectionCacheCountsServersNotTheDomainsTheyLastServed) {
  // A cache of one: the idle connections that two domains of one provider leave to its server
  // both stay (kept per domain, a.test's was closed as b.test's parked), and either serves the
  // next job of any domain there; a second server's idle connection then pushes the first's out.
  Queue q(cfg(10, 5, 1), log, loops);
  use_known(q);
  know("a.test", {"mx1"});
  know("b.test", {"mx1"});
  know("c.test", {"mx2"});
  WorkerSlot a = slot(), b = slot(), c = slot();
  deliver_then_park(q, a, "mx1", b, "mx1");
  EXPECT_FALSE(a.drop_connection);
  EXPECT_FALSE(b.drop_connection);
  EXPECT_EQ(q.stats().ready, 2u);
  EXPECT_EQ(q.stats().destinations, 0u);  // nothing waits: the servers are not destinations

  q.submit(job("a.test"));  // a.test's own next job: the warmest connection to mx1
  ASSERT_TRUE(b.inbox);
  auto again = q.next_job(b, true);
  ASSERT_TRUE(again.job);
  delivered(q, std::move(*again.job), "mx1");
  EXPECT_FALSE(q.next_job(b, true).job);

  q.submit(job("c.test"));
  take_and_deliver(q, c, "mx2");
  EXPECT_FALSE(q.next_job(c, true).job);  // two servers with idle connections, room for one
  EXPECT_TRUE(a.drop_connection);
  EXPECT_TRUE(b.drop_connection);
  EXPECT_FALSE(c.drop_connection);
}

TEST_F(SameServerTest, AWorkerWhoseDestinationRanDryTakesAWaitingOneOnItsHostFirst) {
  Queue q(cfg(1, 5, 5), log, loops);  // one worker: mail backs up behind it
  use_known(q);
  know("a.test", {"mx1"});
  know("b.test", {"mx2"});
  know("c.test", {"mx9", "mx1"});
  q.submit(job("a.test"));
  WorkerSlot w = slot();
  auto first = q.next_job(w, false);
  ASSERT_TRUE(first.job);
  q.connected_to(w, "mx1");
  q.submit(job("b.test"));  // waits longest, but on another host
  q.submit(job("c.test"));  // one of its best hosts is mx1
  delivered(q, std::move(*first.job), "mx1");
  // a.test ran dry: the worker keeps its connection to mx1 for c.test rather than closing it
  // for b.test (and opening one to mx2).
  auto next = q.next_job(w, true);
  ASSERT_TRUE(next.job);
  EXPECT_EQ(next.job->destination, "c.test");
  EXPECT_EQ(q.stats().reused, 1u);
  delivered(q, std::move(*next.job), "mx1");
  // Nothing on mx1 is left: the oldest waiting destination, wherever it is.
  auto last = q.next_job(w, true);
  ASSERT_TRUE(last.job);
  EXPECT_EQ(last.job->destination, "b.test");
  EXPECT_EQ(q.stats().reused, 1u);
}

TEST_F(SameServerTest, TheDestinationWaitingLongestIsPassedOverABoundedNumberOfTimes) {
  Queue q(cfg(1, 5, 5), log, loops);
  use_known(q);
  know("a.test", {"mx1"});
  know("b.test", {"mx2"});
  q.submit(job("a.test"));
  WorkerSlot w = slot();
  auto current = q.next_job(w, false);
  ASSERT_TRUE(current.job);
  q.connected_to(w, "mx1");
  q.submit(job("b.test"));  // no worker's host serves it
  for (int i = 0; i < 50; ++i) {
    know("c" + std::to_string(i) + ".test", {"mx1"});
    q.submit(job("c" + std::to_string(i) + ".test"));  // and mail for mx1 keeps coming
  }
  int on_host = 0;
  for (;;) {
    delivered(q, std::move(*current.job), "mx1");
    current = q.next_job(w, true);
    ASSERT_TRUE(current.job);
    if (current.job->destination == "b.test") break;
    ++on_host;
  }
  EXPECT_EQ(on_host, 32);  // then b.test's turn, not after all fifty
}

// At max_mta (patent §C), closing an idle connection to another server to open one to a
// job's own costs a connection; when one to its own server is open but busy, the job waits for
// it, up to move_after. (With 8 servers and max_mta 50, `zero` had opened ~5,400 connections
// for 20,000 messages.)
TEST_F(SameServerTest, AtMaxMtaAJobWaitsForABusyConnectionToItsServerRatherThanCloseAnIdleOne) {
  auto q = two_workers(std::chrono::milliseconds(60'000));
  know("d.test", {"mx3"});
  WorkerSlot a = slot(), b = slot();
  auto busy = busy_and_parked(*q, a, b);
  ASSERT_TRUE(busy.job);

  q->submit(job("c.test"));  // mx1: a's connection is busy, not gone
  EXPECT_TRUE(b.parked);
  EXPECT_FALSE(b.inbox);
  delivered(*q, std::move(*busy.job), "mx1");
  auto next = q->next_job(a, true);  // a's connection takes it, as one to its server
  ASSERT_TRUE(next.job);
  EXPECT_EQ(next.job->destination, "c.test");
  EXPECT_TRUE(next.on_server);

  q->submit(job("d.test"));  // mx3: no connection there at all, so b's idle one is moved
  ASSERT_TRUE(b.inbox);
  EXPECT_EQ(b.inbox->destination, "d.test");
  EXPECT_FALSE(q->next_job(b, true).on_server);  // the worker must connect to mx3
}

TEST_F(SameServerTest, AWorkerWhoseServerHasNoMailParksRatherThanMoveForMailAnotherWillTake) {
  auto q = two_workers(std::chrono::milliseconds(60'000));
  WorkerSlot a = slot(), b = slot();
  auto on_mx1 = q->next_job(a, false);
  auto on_mx2 = q->next_job(b, false);
  ASSERT_TRUE(on_mx1.job && on_mx2.job);
  q->connected_to(a, "mx1");
  q->connected_to(b, "mx2");
  q->submit(job("c.test"));  // waits for mx1
  delivered(*q, std::move(*on_mx2.job), "mx2");
  EXPECT_FALSE(q->next_job(b, true).job);  // nothing for mx2: parks, keeping its connection
  EXPECT_TRUE(b.parked);
  delivered(*q, std::move(*on_mx1.job), "mx1");
  auto next = q->next_job(a, true);
  ASSERT_TRUE(next.job);
  EXPECT_EQ(next.job->destination, "c.test");
  EXPECT_EQ(q->stats().connections, 2u);  // none closed, none opened again
}

TEST_F(SameServerTest, AJobThatWaitedMoveAfterForItsServerTakesAnIdleConnectionElsewhere) {
  auto q = two_workers(std::chrono::milliseconds(5));
  know("e.test", {"mx1"});
  WorkerSlot a = slot(), b = slot();
  auto slow = busy_and_parked(*q, a, b);
  ASSERT_TRUE(slow.job);
  q->submit(job("c.test"));  // waits for a's connection to mx1, which stays busy
  EXPECT_FALSE(b.inbox);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  q->submit(job("e.test"));  // the next event finds c.test waited too long: b's connection moves
  ASSERT_TRUE(b.inbox);
  EXPECT_EQ(b.inbox->destination, "c.test");
}

// Below max_mta too, connections grow with what a server cannot take, not with every job that
// finds no idle connection: a job whose server has one open (or being opened) waits for it, up
// to move_after. (In `zero`, 400-500 connections opened for 200 allowed, the relay spent its
// time waking threads.)
TEST_F(SameServerTest, AJobForABusyServerWaitsForItsConnectionRatherThanStartAWorker) {
  config::QueueSection c = cfg(10, 5, 5);
  c.move_after = std::chrono::milliseconds(300);  // more than a loaded machine's pause
  Queue q(c, log, loops);
  int spawned = 0;
  q.set_spawner([&](Queue&, bool) { ++spawned; });
  serve_known(q);
  for (const char* d : {"a.test", "c.test", "e.test"}) know(d, {"mx1"});
  for (const char* d : {"b.test", "d.test"}) know(d, {"mx2"});
  WorkerSlot a = slot(), b = slot();
  q.submit(job("a.test"));
  EXPECT_EQ(spawned, 1);  // nothing open to mx1
  auto busy = q.next_job(a, false);
  ASSERT_TRUE(busy.job);
  q.connected_to(a, "mx1");
  q.submit(job("c.test"));
  EXPECT_EQ(spawned, 1);  // mx1 has a connection: c.test waits for it
  delivered(q, std::move(*busy.job), "mx1");
  ASSERT_TRUE(q.next_job(a, true).job);  // and gets it

  q.submit(job("b.test"));
  EXPECT_EQ(spawned, 2);
  auto connecting = q.next_job(b, false);  // b takes it, and is counted towards mx2 while it
  ASSERT_TRUE(connecting.job);             // connects: d.test waits for it too
  EXPECT_EQ(connecting.job->destination, "b.test");
  q.submit(job("d.test"));
  q.submit(job("e.test"));
  EXPECT_EQ(spawned, 2);

  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  q.submit(job("e.test"));  // d.test waited move_after: one more worker, one at a time
  EXPECT_EQ(spawned, 3);
  WorkerSlot started = slot();
  auto oldest = q.next_job(started, false);  // the job it was started for
  ASSERT_TRUE(oldest.job);
  EXPECT_EQ(oldest.job->destination, "d.test");
}

// A worker started for a job counts towards the job's server from the start, not from when it
// takes the job, and takes that job: in `zero`, the domains of 8 servers coming out of the MX
// cache in the same milliseconds had started 50-100 workers, each taking the oldest job, one
// waiting for a busy server as often as not.
TEST_F(SameServerTest, AWorkerStartedForAServerCountsTowardsItAndTakesTheJobItWasStartedFor) {
  Queue q(cfg(10, 5, 5), log, loops);
  int spawned = 0;
  q.set_spawner([&](Queue&, bool) { ++spawned; });
  serve_known(q);
  for (const char* d : {"a.test", "b.test"}) know(d, {"mx1"});
  know("x.test", {"mx2"});
  q.submit(job("a.test"));
  EXPECT_EQ(spawned, 1);
  q.submit(job("b.test"));  // mx1 has a worker on its way
  EXPECT_EQ(spawned, 1);
  q.submit(job("x.test"));
  EXPECT_EQ(spawned, 2);
  WorkerSlot first = slot(), second = slot();
  auto a = q.next_job(first, false);
  ASSERT_TRUE(a.job);
  EXPECT_EQ(a.job->destination, "a.test");
  auto x = q.next_job(second, false);  // not b.test, older, whose server has a worker
  ASSERT_TRUE(x.job);
  EXPECT_EQ(x.job->destination, "x.test");
}

// A busy domain does not keep its server's other mail from the connection (at max_mta the only
// one that mail may get): once that mail has waited move_after it goes before the domain's next.
TEST_F(SameServerTest, MailThatWaitedForItsServerGoesBeforeTheConnectionsOwnDomainsNext) {
  config::QueueSection c = cfg(1, 5, 5);
  c.move_after = std::chrono::milliseconds(300);  // more than a loaded machine's pause
  Queue q(c, log, loops);
  use_known(q);
  know("a.test", {"mx1"});
  know("b.test", {"mx1"});
  q.submit(job("a.test"));
  WorkerSlot w = slot();
  auto current = q.next_job(w, false);
  ASSERT_TRUE(current.job);
  q.connected_to(w, "mx1");
  q.submit(job("b.test"));
  for (int i = 0; i < 3; ++i) q.submit(job("a.test"));
  delivered(q, std::move(*current.job), "mx1");
  current = q.next_job(w, true);
  ASSERT_TRUE(current.job);
  EXPECT_EQ(current.job->destination, "a.test");  // b.test has not waited move_after yet
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  delivered(q, std::move(*current.job), "mx1");
  current = q.next_job(w, true);
  ASSERT_TRUE(current.job);
  EXPECT_EQ(current.job->destination, "b.test");
  EXPECT_TRUE(current.on_server);
}

TEST_F(SameServerTest, AQuickServersWaitingMailGoesInTheSameWriteAsTheJobInHand) {
  Queue q(cfg(10, 5, 5), log, loops);
  use_known(q);
  know("a.test", {"mx1"});
  know("c.test", {"mx1"});
  know("b.test", {"mx2"});
  WorkerSlot w = slot();
  q.submit(job("a.test"));
  auto first = q.next_job(w, false);
  ASSERT_TRUE(first.job);
  q.connected_to(w, "mx1");
  q.submit(job("a.test"));
  q.submit(job("a.test"));
  q.submit(job("b.test"));
  q.submit(job("c.test"));
  // A slow server answers pipelined transactions one after another: nothing for it.
  EXPECT_TRUE(q.more_for_connection(w, 8, /*quick=*/false).empty());
  auto two = q.more_for_connection(w, 2, true);  // its own destination's first
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].destination, "a.test");
  EXPECT_EQ(two[1].destination, "a.test");
  auto rest = q.more_for_connection(w, 8, true);  // then what its server takes: not b.test's
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].destination, "c.test");
  const QueueStats st = q.stats();
  EXPECT_EQ(st.pipelined, 3u);
  EXPECT_EQ(st.in_flight, 4u);
  EXPECT_EQ(st.queued, 1u);
}

TEST_F(DestinationTest, AWorkerWokenWhileParkedLeavesTheIdleListBeforeTakingWork) {
  // A wake-up can outlive its reason: the idle timeout ends the wait as a job is handed over,
  // and the notification is still pending at the next wait. The worker then asks for work while
  // still listed as idle. It must not stay listed under its old destination while it works for
  // another: a job handed to it there would land in a busy worker's inbox, and a second would
  // overwrite the first.
  Queue q(cfg(5, 5, 5), log, loops);
  q.set_spawner([](Queue&, bool) {});
  WorkerSlot w = slot();
  q.submit(job("d.test"));
  auto first = q.next_job(w, false);
  ASSERT_TRUE(first.job);
  q.complete(std::move(*first.job),
             {RecipientStatus{Outcome::Delivered, smtp::make_reply(250, "", "ok")}},
             AttemptReport{"mx", false, false, true, Clock::now()});
  EXPECT_FALSE(q.next_job(w, true).job);  // parks, connected to d.test
  ASSERT_TRUE(w.parked);
  q.submit(job("e.test"));  // no idle connection to e.test: it waits for a worker
  EXPECT_TRUE(w.parked);

  auto e = q.next_job(w, true);  // the spurious wake: it takes e.test's job
  ASSERT_TRUE(e.job);
  EXPECT_EQ(e.job->destination, "e.test");
  EXPECT_FALSE(w.parked);
  q.submit(job("d.test"));
  q.submit(job("d.test"));
  EXPECT_FALSE(w.inbox);  // busy: nothing is handed to it as if idle
  EXPECT_EQ(q.stats().queued, 2u);
  WorkerSlot other = slot();
  auto d1 = q.next_job(other, false);
  auto d2 = q.next_job(other, false);
  ASSERT_TRUE(d1.job && d2.job);
  EXPECT_EQ(d1.job->destination, "d.test");
  EXPECT_EQ(d2.job->destination, "d.test");
}

TEST_F(DestinationTest, ADestinationDownGoesToTheRetryQueue) {
  Queue q(cfg(5, 5, 5, /*max_fail=*/2), log, loops);
  config::QueueSection fb = cfg(5, 5, 5);
  fb.name = "fallback";
  fb.mx = {config::Endpoint{config::Endpoint::Kind::Tcp, "127.0.0.1", 25, {}}};
  Queue fallback(fb, log, loops);
  q.set_retry_queue(&fallback);
  q.set_spawner([](Queue&, bool) {});
  fallback.set_spawner([](Queue&, bool) {});
  for (int i = 0; i < 4; ++i) q.submit(job("dead.test"));
  const RecipientStatus refused{Outcome::Deferred,
                                smtp::make_reply(451, "4.4.1", "connect: refused")};
  const AttemptReport unreachable{"", true, true, false, Clock::now()};
  for (int i = 0; i < 2; ++i) {
    WorkerSlot w = slot();
    auto j = q.next_job(w, false);
    ASSERT_TRUE(j.job);
    q.complete(std::move(*j.job), {refused}, unreachable);
    q.detach(w);
  }
  // Two failures: down. Its waiting jobs and the two that failed went to the fallback queue.
  EXPECT_EQ(q.stats().down, 1u);
  EXPECT_EQ(q.backlog(), 0u);
  EXPECT_EQ(fallback.stats().queued, 4u);
  q.submit(job("dead.test"));  // while down, new mail goes there at once
  EXPECT_EQ(fallback.stats().queued, 5u);
  WorkerSlot f = slot();
  auto handed = fallback.next_job(f, false);
  ASSERT_TRUE(handed.job);
  EXPECT_EQ(handed.job->destination, "");  // the fallback's own routing
  EXPECT_EQ(handed.job->recipients[0].attempts, 0u);
}

TEST_F(DestinationTest, WithoutRetryQueueADownDestinationFails) {
  Queue q(cfg(5, 5, 5, /*max_fail=*/1), log, loops);
  q.set_spawner([](Queue&, bool) {});
  q.submit(job("dead.test"));
  q.submit(job("dead.test"));
  WorkerSlot w = slot();
  auto j = q.next_job(w, false);
  q.complete(std::move(*j.job),
             {RecipientStatus{Outcome::Deferred, smtp::make_reply(451, "4.4.1", "refused")}},
             AttemptReport{"", true, true, false, Clock::now()});
  EXPECT_EQ(q.stats().failed, 2u);
  EXPECT_EQ(q.backlog(), 0u);
  EXPECT_EQ(q.backlog_recipients(), 0u);
}

TEST_F(DestinationTest, TooManyRecipientsGoInTheNextTransactionWithoutAnAttempt) {
  Queue q(cfg(5, 5, 5), log, loops);
  q.set_spawner([](Queue&, bool) {});
  q.submit(job("a.test", 3));
  WorkerSlot w = slot();
  auto j = q.next_job(w, false);
  std::vector<RecipientStatus> st{
      {Outcome::Delivered, smtp::make_reply(250, "", "ok")},
      {Outcome::Deferred, smtp::make_reply(452, "4.5.3", "too many"), true},
      {Outcome::Deferred, smtp::make_reply(452, "4.5.3", "too many"), true}};
  q.complete(std::move(*j.job), st, AttemptReport{"mx", false, false, true, Clock::now()});
  auto rest = q.next_job(w, true);
  ASSERT_TRUE(rest.job);
  ASSERT_EQ(rest.job->recipients.size(), 2u);
  EXPECT_EQ(rest.job->recipients[0].attempts, 0u);
  EXPECT_EQ(q.stats().deferred, 0u);
}

TEST_F(DestinationTest, GivenBackJobsWaitFirstInLineAndSpawningPauses) {
  Queue q(cfg(5, 5, 5), log, loops);
  int spawned = 0;
  q.set_spawner([&](Queue&, bool) { ++spawned; });
  q.submit(job("a.test"));
  EXPECT_EQ(spawned, 1);
  WorkerSlot w = slot();
  auto j = q.next_job(w, false);
  q.give_back(std::move(*j.job), "Too many open files");
  q.detach(w);
  EXPECT_EQ(spawned, 1);  // no new worker while out of descriptors
  EXPECT_EQ(q.stats().queued, 1u);
  loops.main().run_for(std::chrono::milliseconds(1300));
  EXPECT_EQ(spawned, 2);  // tried again after the pause
}

TEST(DomainAdvisor, AdvisesOncePerWindowForADominantDomain) {
  DomainAdvisor a(0.5, std::chrono::milliseconds(100), 10);
  auto t = std::chrono::steady_clock::now();
  for (int i = 0; i < 30; ++i) EXPECT_FALSE(a.count(i % 3 ? "big.test" : "other.test", t));
  auto advice = a.count("x.test", t + std::chrono::milliseconds(150));
  ASSERT_TRUE(advice);
  EXPECT_NE(advice->find("big.test"), std::string::npos);
  EXPECT_NE(advice->find("67%"), std::string::npos);
  EXPECT_FALSE(a.count("x.test", t + std::chrono::milliseconds(200)));
}

}  // namespace
}  // namespace mma::routing
