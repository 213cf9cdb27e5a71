// inbound/listener: accepts composer connections on one configured endpoint (TCP or unix
// socket) and starts an InboundSession for each, on the event loops in turn.
//
// Access control happens here: a client outside `allow` still gets a session, but one that
// greets with 554 and relays nothing. Beyond max_connections a client gets 421 and is closed.
// Accept errors (EMFILE...) are logged and retried after a pause, never fatal.
#pragma once

#include <memory>
#include <optional>

#include "config/config.hpp"
#include "inbound/inbound_session.hpp"
#include "net/event_loops.hpp"
#include "routing/router.hpp"

namespace mma::inbound {

class Listener {
 public:
  Listener(net::EventLoops& loops, const config::ListenerSection& cfg, routing::Router& router,
           spool::Spool* spool = nullptr);
  // Binds; throws std::runtime_error naming the address when it cannot.
  void start();
  void stop();
  [[nodiscard]] ListenerContext& context() { return ctx_; }

 private:
  void accept_tcp(asio::ip::tcp::socket socket, asio::io_context& loop);
  void admit(std::unique_ptr<net::Stream> stream, asio::io_context& loop, bool denied);

  net::EventLoops& loops_;
  ListenerContext ctx_;
  std::optional<asio::ip::tcp::acceptor> tcp_;
  std::optional<asio::local::stream_protocol::acceptor> unix_;
};

}  // namespace mma::inbound
