#include "net/blocking_pool.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

namespace mma::net {
namespace {

TEST(BlockingPoolTest, RunsOffTheLoopAndResumesOnIt) {
  asio::io_context loop(1);
  BlockingPool pool(2);
  std::thread::id loop_thread, ran_on, resumed_on;
  asio::co_spawn(
      loop,
      [](BlockingPool& p, std::thread::id& l, std::thread::id& r,
         std::thread::id& back) -> Task<void> {
        l = std::this_thread::get_id();
        const auto where = [] { return std::this_thread::get_id(); };  // named: GCC 12
        r = co_await p.run(where);
        back = std::this_thread::get_id();
      }(pool, loop_thread, ran_on, resumed_on),
      asio::detached);
  loop.run();
  EXPECT_NE(ran_on, std::thread::id{});
  EXPECT_NE(ran_on, loop_thread);
  EXPECT_EQ(resumed_on, loop_thread);
}

// The call blocks until a timer on the loop releases it: it can only return true if the loop
// went on serving while the call was blocked.
TEST(BlockingPoolTest, TheLoopGoesOnWhileACallBlocks) {
  asio::io_context loop(1);
  BlockingPool pool(1);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  asio::steady_timer timer(loop, std::chrono::milliseconds(10));
  timer.async_wait([&release](std::error_code) { release.set_value(); });
  bool result = false;
  asio::co_spawn(
      loop,
      [](BlockingPool& p, const std::shared_future<void>& f, bool& out) -> Task<void> {
        const auto wait = [f] {
          return f.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
        };
        out = co_await p.run(wait);
      }(pool, released, result),
      asio::detached);
  loop.run();
  EXPECT_TRUE(result);
}

TEST(BlockingPoolTest, ManyCallsEachResumeWithTheirOwnResult) {
  asio::io_context loop(1);
  BlockingPool pool(3);
  long sum = 0;
  for (long i = 1; i <= 100; ++i) {
    asio::co_spawn(
        loop,
        [](BlockingPool& p, long n, long& total) -> Task<void> {
          const auto square = [n] { return n * n; };
          total += co_await p.run(square);  // on the loop: no lock needed
        }(pool, i, sum),
        asio::detached);
  }
  loop.run();
  pool.join();
  EXPECT_EQ(sum, 338350);  // 1² + ... + 100²
}

}  // namespace
}  // namespace mma::net
