// net/wakeup: wakes a coroutine on its own event loop from any thread.
//
// How a Queue hands a job to a parked MtaWorker, and how a `delivered`-mode session learns
// that its recipients' outcomes are in. notify() posts; the flag is only touched on the
// owner's loop, so no lock is needed.
#pragma once

#include <chrono>
#include <memory>

#include "net/asio.hpp"

namespace mma::net {

class Wakeup : public std::enable_shared_from_this<Wakeup> {
 public:
  explicit Wakeup(const asio::any_io_executor& ex) : timer_(ex) {}

  void notify() {
    asio::post(timer_.get_executor(), [self = shared_from_this()] {
      self->signalled_ = true;
      self->timer_.cancel();
    });
  }

  // True when notified; false when `timeout` passed first or the wait was cancelled.
  Task<bool> wait(std::chrono::steady_clock::duration timeout) {
    const auto until = timeout == std::chrono::steady_clock::duration::max()
                           ? std::chrono::steady_clock::time_point::max()
                           : std::chrono::steady_clock::now() + timeout;
    while (!signalled_) {
      timer_.expires_at(until);
      auto [ec] = co_await timer_.async_wait(use_tuple);
      if (signalled_) break;
      if (!ec) co_return false;  // timed out
      auto cs = co_await asio::this_coro::cancellation_state;
      if (cs.cancelled() != asio::cancellation_type::none) co_return false;
    }
    signalled_ = false;
    co_return true;
  }

 private:
  asio::steady_timer timer_;
  bool signalled_ = false;
};

}  // namespace mma::net
