#include "net/tls_stream.hpp"

#include <openssl/ssl.h>

#include <asio/ssl.hpp>
#include <string>

namespace mma::net {

struct TlsStream::Impl {
  Impl(asio::ip::tcp::socket socket, asio::ssl::context& ctx) : stream(std::move(socket), ctx) {}
  asio::ssl::stream<asio::ip::tcp::socket> stream;
};

std::shared_ptr<asio::ssl::context> make_client_tls_context() {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                   asio::ssl::context::no_tlsv1_1);
  ctx->set_verify_mode(asio::ssl::verify_none);
  return ctx;
}

TlsStream::TlsStream(asio::ip::tcp::socket socket, asio::ssl::context& ctx)
    : impl_(std::make_unique<Impl>(std::move(socket), ctx)) {}

TlsStream::~TlsStream() = default;

Task<std::error_code> TlsStream::handshake(const std::string& sni) {
  if (!sni.empty()) {
    // SSL_set_tlsext_host_name() is a macro with a C cast; this is what it expands to.
    SSL_ctrl(impl_->stream.native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(sni.c_str()));
  }
  auto [ec] = co_await impl_->stream.async_handshake(asio::ssl::stream_base::client, use_tuple);
  co_return ec;
}

Task<IoResult> TlsStream::read_some(asio::mutable_buffer buf) {
  auto [ec, n] = co_await impl_->stream.async_read_some(buf, use_tuple);
  co_return IoResult{ec, n};
}

Task<IoResult> TlsStream::write(std::span<const asio::const_buffer> bufs) {
  if (bufs.size() > 1) {
    // Asio's SSL stream makes a record, and a socket write, of each buffer: a gathered write
    // (a body's pieces around its stuffed lines, a block and its terminator) is joined first,
    // as encryption copies it anyway.
    std::string joined;
    joined.reserve(asio::buffer_size(bufs));
    for (const asio::const_buffer& b : bufs)
      joined.append(static_cast<const char*>(b.data()), b.size());
    auto [ec, n] = co_await asio::async_write(impl_->stream, asio::buffer(joined), use_tuple);
    co_return IoResult{ec, n};
  }
  auto [ec, n] = co_await asio::async_write(impl_->stream, bufs, use_tuple);
  co_return IoResult{ec, n};
}

void TlsStream::cancel() {
  std::error_code ignored;
  impl_->stream.lowest_layer().cancel(ignored);
}

void TlsStream::close() {
  // No close_notify round trip: QUIT has been said, or the connection is broken anyway.
  std::error_code ignored;
  impl_->stream.lowest_layer().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  impl_->stream.lowest_layer().close(ignored);
}

std::string TlsStream::peer() const {
  std::error_code ec;
  auto ep = impl_->stream.lowest_layer().remote_endpoint(ec);
  if (ec) return "?";
  const auto a = ep.address();
  return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(ep.port());
}

std::string TlsStream::description() const {
  SSL* ssl = const_cast<asio::ssl::stream<asio::ip::tcp::socket>&>(impl_->stream).native_handle();
  return std::string(SSL_get_version(ssl)) + " " + SSL_get_cipher_name(ssl);
}

std::unique_ptr<TlsStream> upgrade_to_tls(std::unique_ptr<Stream>& plain, asio::ssl::context& ctx) {
  auto* tcp = dynamic_cast<TcpStream*>(plain.get());
  if (tcp == nullptr) return nullptr;
  auto tls = std::make_unique<TlsStream>(std::move(tcp->socket()), ctx);
  plain.reset();
  return tls;
}

}  // namespace mma::net
