#include "net/deadline.hpp"

namespace mma::net {

Task<void> Deadline::watch(Stream& stream) {
  return watch([&stream] { stream.cancel(); });
}

Task<void> Deadline::watch(std::function<void()> on_expire) {
  for (;;) {
    if (deadline_ <= Clock::now()) {
      expired_ = true;
      deadline_ = Clock::time_point::max();
      on_expire();
    }
    timer_.expires_at(deadline_);
    auto [ec] = co_await timer_.async_wait(use_tuple);
    if (ec == asio::error::operation_aborted) {
      // Woken by arm() for an earlier deadline, or told to stop.
      auto cs = co_await asio::this_coro::cancellation_state;
      if (cs.cancelled() != asio::cancellation_type::none) co_return;
    }
  }
}

}  // namespace mma::net
