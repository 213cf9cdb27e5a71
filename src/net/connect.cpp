#include "net/connect.hpp"

namespace mma::net {
namespace {

using namespace asio::experimental::awaitable_operators;

template <class Socket, class Endpoint>
Task<std::error_code> connect_within(Socket& socket, const Endpoint& ep,
                                     std::chrono::milliseconds timeout) {
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  auto result = co_await (socket.async_connect(ep, use_tuple) || timer.async_wait(use_tuple));
  if (result.index() == 1) co_return std::make_error_code(std::errc::timed_out);
  co_return std::get<0>(std::get<0>(result));
}

}  // namespace

Task<Connected> connect(const config::Endpoint& to, std::chrono::milliseconds timeout) {
  auto ex = co_await asio::this_coro::executor;
  Connected out;
  if (to.kind == config::Endpoint::Kind::Unix) {
    asio::local::stream_protocol::socket socket(ex);
    out.address = to.to_string();
    out.ec =
        co_await connect_within(socket, asio::local::stream_protocol::endpoint(to.path), timeout);
    if (!out.ec) out.stream = std::make_unique<UnixStream>(std::move(socket));
    co_return out;
  }
  std::vector<asio::ip::tcp::endpoint> endpoints;
  std::error_code ec;
  const auto literal = asio::ip::make_address(to.host, ec);
  if (!ec) {
    endpoints.emplace_back(literal, to.port);
  } else {
    asio::ip::tcp::resolver resolver(ex);
    auto [rec, results] =
        co_await resolver.async_resolve(to.host, std::to_string(to.port), use_tuple);
    if (rec) {
      out.ec = rec;
      out.address = to.to_string();
      co_return out;
    }
    for (const auto& r : results) endpoints.push_back(r.endpoint());
  }
  for (const auto& ep : endpoints) {
    asio::ip::tcp::socket socket(ex);
    out.address =
        (ep.address().is_v6() ? "[" + ep.address().to_string() + "]" : ep.address().to_string()) +
        ":" + std::to_string(ep.port());
    out.ec = co_await connect_within(socket, ep, timeout);
    if (!out.ec) {
      socket.set_option(asio::ip::tcp::no_delay(true), ec);
      out.stream = std::make_unique<TcpStream>(std::move(socket));
      co_return out;
    }
  }
  if (endpoints.empty() && !out.ec) out.ec = std::make_error_code(std::errc::host_unreachable);
  co_return out;
}

}  // namespace mma::net
