#include "core/delivery_waiter.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace mma {
namespace {

TEST(DeliveryWaiter, CompletesOnceAfterEveryRecipientFromManyThreads) {
  int calls = 0;
  DeliveryWaiter w(1000, [&] { ++calls; });
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (std::uint32_t i = static_cast<std::uint32_t>(t); i < 1000; i += 4) {
        w.report(i, Outcome::Delivered, smtp::make_reply(250, "", "ok"));
        w.report(i, Outcome::Bounced, smtp::make_reply(550, "", "twice"));  // ignored
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(w.complete());
  for (const auto& r : w.results()) EXPECT_EQ(r.outcome, Outcome::Delivered);
}

}  // namespace
}  // namespace mma
