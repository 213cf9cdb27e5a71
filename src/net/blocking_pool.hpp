// net/blocking_pool: a few threads for the calls that may block on a disk, so that an event
// loop carrying thousands of connections never waits for one. A coroutine hands a function
// over with `co_await pool.run(f)`: `f` runs on a pool thread and the coroutine resumes on its
// own loop with the result.
//
// Used for the disk cache's body files: a delivery reads its body in blocks, and the disk cache
// is in use precisely when memory is short, so those blocks are the ones the page cache lost.
//
// The owner joins the pool (or destroys it) before the loops it posts back to are destroyed.
#pragma once

#include <thread>
#include <type_traits>
#include <utility>

#include "net/asio.hpp"

namespace mma::net {

class BlockingPool {
 public:
  explicit BlockingPool(unsigned threads) : pool_(threads == 0 ? 1 : threads) {}
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  // Runs `f()` on a pool thread; the caller resumes on its own executor with what it returned.
  // `f` must not throw, and must not touch what the caller's loop touches meanwhile. Pass a
  // named lambda, not a temporary: GCC 12 destroys temporary class arguments of a coroutine
  // twice (its captures with them).
  template <class F>
  Task<std::invoke_result_t<F&>> run(F f) {
    using R = std::invoke_result_t<F&>;
    // Boxed: Asio would take a leading error_code in the signature for a failure to throw.
    struct Box {
      R value;
    };
    auto initiate = [this](auto handler, F fn) {
      // Keeps the caller's loop alive until the result is back on it.
      auto work = asio::make_work_guard(asio::get_associated_executor(handler));
      asio::post(pool_, [handler = std::move(handler), fn = std::move(fn),
                         work = std::move(work)]() mutable {
        Box result{fn()};
        auto ex = work.get_executor();
        asio::post(ex, [handler = std::move(handler), result = std::move(result)]() mutable {
          std::move(handler)(std::move(result));
        });
      });
    };
    Box result = co_await asio::async_initiate<decltype(asio::use_awaitable), void(Box)>(
        std::move(initiate), asio::use_awaitable, std::move(f));
    co_return std::move(result.value);
  }

  // Waits for what was handed over to finish; no more may be.
  void join() { pool_.join(); }

 private:
  asio::thread_pool pool_;
};

// `f()` on `pool`, or right here without one (tools and tests run no pool). The same rule:
// pass a named lambda.
template <class F>
Task<std::invoke_result_t<F&>> run_blocking(BlockingPool* pool, F f) {
  if (pool == nullptr) co_return f();
  auto result = co_await pool->run(f);
  co_return result;
}

}  // namespace mma::net
