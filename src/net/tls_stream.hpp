// net/tls_stream: a TCP connection after STARTTLS (RFC 3207), through OpenSSL.
//
// The client side of outbound SMTP upgrades its TcpStream in place: the socket moves into an
// SSL stream and the session goes on over it. Certificates are not verified for opportunistic
// TLS (RFC 7435); the context decides.
#pragma once

#include <memory>
#include <string>
#include <system_error>

#include "net/stream.hpp"

namespace asio::ssl {
class context;
}

namespace mma::net {

// A client context for outbound STARTTLS: TLS 1.2 or later, no certificate verification
// (opportunistic: an unauthenticated encrypted channel beats a clear one).
std::shared_ptr<asio::ssl::context> make_client_tls_context();

class TlsStream final : public Stream {
 public:
  TlsStream(asio::ip::tcp::socket socket, asio::ssl::context& ctx);
  ~TlsStream() override;
  // The client handshake; `sni` is the server name to present (an MX host name).
  Task<std::error_code> handshake(const std::string& sni);
  Task<IoResult> read_some(asio::mutable_buffer buf) override;
  Task<IoResult> write(std::span<const asio::const_buffer> bufs) override;
  void cancel() override;
  void close() override;
  [[nodiscard]] std::string peer() const override;
  // "TLSv1.3 TLS_AES_256_GCM_SHA384", for logs.
  [[nodiscard]] std::string description() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Moves the socket out of a TcpStream and wraps it; nullptr if `plain` is not TCP.
std::unique_ptr<TlsStream> upgrade_to_tls(std::unique_ptr<Stream>& plain, asio::ssl::context& ctx);

}  // namespace mma::net
