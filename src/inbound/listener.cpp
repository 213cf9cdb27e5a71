#include "inbound/listener.hpp"

#include "net/accept_loop.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdexcept>

namespace mma::inbound {
namespace {

bool allowed(const config::ListenerSection& cfg, const asio::ip::address& a) {
  std::array<std::uint8_t, 16> bytes{};
  if (a.is_v4()) {
    bytes[10] = bytes[11] = 0xff;
    const auto v4 = a.to_v4().to_bytes();
    std::copy(v4.begin(), v4.end(), bytes.begin() + 12);
  } else {
    bytes = a.to_v6().to_bytes();
  }
  for (const auto& c : cfg.allow) {
    if (c.contains(bytes)) return true;
  }
  return false;
}

}  // namespace

Listener::Listener(net::EventLoops& loops, const config::ListenerSection& cfg,
                   routing::Router& router, spool::Spool* spool)
    : loops_(loops), ctx_(cfg, router) {
  ctx_.spool = spool;
}

void Listener::start() {
  const auto cfg = ctx_.cfg();
  const auto& ep = cfg->address;
  auto& main = loops_.main();
  try {
    if (ep.kind == config::Endpoint::Kind::Unix) {
      struct stat st {};
      if (::lstat(ep.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(ep.path.c_str());
      unix_.emplace(main, asio::local::stream_protocol::endpoint(ep.path));
      ::chmod(ep.path.c_str(), cfg->socket_mode);
      // Local clients: the socket's file mode is the access control.
      asio::co_spawn(
          main,
          net::accept_loop(*unix_, loops_, ep.to_string(),
                           [this](asio::local::stream_protocol::socket s, asio::io_context& loop) {
                             admit(std::make_unique<net::UnixStream>(std::move(s)), loop, false);
                           }),
          asio::detached);
    } else {
      std::error_code ec;
      const auto addr = asio::ip::make_address(ep.host, ec);
      if (ec) throw std::runtime_error("not an IP address: " + ep.host);
      tcp_.emplace(main, asio::ip::tcp::endpoint(addr, ep.port), /*reuse_address=*/true);
      asio::co_spawn(main,
                     net::accept_loop(*tcp_, loops_, ep.to_string(),
                                      [this](asio::ip::tcp::socket s, asio::io_context& loop) {
                                        accept_tcp(std::move(s), loop);
                                      }),
                     asio::detached);
    }
  } catch (const std::system_error& e) {
    throw std::runtime_error("cannot listen on " + ep.to_string() + ": " + e.code().message());
  }
  const char* ack = cfg->ack == config::AckMode::Delivered ? "delivered"
                    : cfg->ack == config::AckMode::Spooled ? "spooled"
                                                           : "received";
  spdlog::info("listening on {} ({}, ack={})", ep.to_string(),
               cfg->protocol == config::Protocol::Lmtp ? "lmtp" : "smtp", ack);
}

void Listener::stop() {
  ctx_.draining = true;
  std::error_code ec;
  if (tcp_) tcp_->close(ec);
  if (unix_) {
    unix_->close(ec);
    ::unlink(ctx_.cfg()->address.path.c_str());
  }
}

void Listener::admit(std::unique_ptr<net::Stream> stream, asio::io_context& loop, bool denied) {
  const auto cfg = ctx_.cfg();
  if (ctx_.connections.load() >= cfg->max_connections) {
    // Refuse politely without a session: 421 and close (RFC 5321 §3.8).
    auto s = std::shared_ptr<net::Stream>(std::move(stream));
    asio::co_spawn(
        loop,
        [](std::shared_ptr<net::Stream> st, std::string host) -> net::Task<void> {
          const std::string msg =
              "421 4.7.0 " + host + " too many connections, try again later\r\n";
          co_await st->write(msg);
          st->close();
        }(s, cfg->hostname),
        asio::detached);
    return;
  }
  ++ctx_.connections;  // counted here, synchronously, so that a burst cannot overshoot
  InboundSession::start(std::move(stream), loop.get_executor(), ctx_, denied);
}

void Listener::accept_tcp(asio::ip::tcp::socket socket, asio::io_context& loop) {
  std::error_code ignored;
  socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  const auto peer = socket.remote_endpoint(ignored);
  const auto cfg = ctx_.cfg();
  const bool denied = ignored || !allowed(*cfg, peer.address());
  if (denied) {
    spdlog::info("{}: client {} is not in allow: refusing to relay", cfg->address.to_string(),
                 peer.address().to_string());
  }
  admit(std::make_unique<net::TcpStream>(std::move(socket)), loop, denied);
}

}  // namespace mma::inbound
