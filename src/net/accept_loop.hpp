// net/accept_loop: accepts connections on one acceptor and hands each socket, created on the
// next event loop, to `on_accept(socket, loop)`. Errors such as EMFILE are logged and retried
// after a pause, never fatal (STYLE.md §9, Asio's throttling_proxy example). Ends when the
// acceptor is closed.
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <string>

#include "net/asio.hpp"
#include "net/event_loops.hpp"

namespace mma::net {

template <class Acceptor, class OnAccept>
Task<void> accept_loop(Acceptor& acceptor, EventLoops& loops, std::string name,
                       OnAccept on_accept) {
  for (;;) {
    asio::io_context& loop = loops.next();
    auto [ec, socket] = co_await acceptor.async_accept(loop, use_tuple);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      spdlog::warn("accept on {}: {}; pausing 100 ms", name, ec.message());
      asio::steady_timer pause(co_await asio::this_coro::executor, std::chrono::milliseconds(100));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    on_accept(std::move(socket), loop);
  }
}

}  // namespace mma::net
