// net/deadline: every socket operation has a deadline (STYLE.md §9), at the cost of one timer
// per connection rather than one per operation.
//
// The session arms it before each operation; a watchdog coroutine running beside the session
// (`co_await (session() || deadline.watch(stream))`) cancels the stream's pending operation
// when the deadline passes, and the session sees operation_aborted and expired() == true.
#pragma once

#include <chrono>
#include <functional>

#include "net/asio.hpp"
#include "net/stream.hpp"

namespace mma::net {

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Deadline(const asio::any_io_executor& ex) : timer_(ex, Clock::time_point::max()) {}

  void arm(Clock::duration d) {
    expired_ = false;
    deadline_ = Clock::now() + d;
    // Only an earlier deadline needs the sleeping watchdog woken; later ones it finds itself.
    if (deadline_ < timer_.expiry()) timer_.expires_at(deadline_);
  }
  // The pending operation is cut short now, as if its deadline had passed.
  void expire_now() { arm(Clock::duration::zero()); }
  // Keeps expired(): the owner reads it after the operation that the watchdog cut short.
  void disarm() { deadline_ = Clock::time_point::max(); }
  [[nodiscard]] bool expired() const { return expired_; }

  // Returns only when cancelled (by the `||` when the session ends). On expiry it cancels
  // `stream`'s pending operations, or calls `on_expire` (for owners whose stream changes).
  Task<void> watch(Stream& stream);
  Task<void> watch(std::function<void()> on_expire);

 private:
  asio::steady_timer timer_;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool expired_ = false;
};

}  // namespace mma::net
