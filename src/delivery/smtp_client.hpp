// delivery/smtp_client: the client role of SMTP/LMTP over one connection: greeting,
// EHLO/LHLO with HELO fallback, pipelined transactions (the content by BDAT where CHUNKING is
// offered and the body is in memory), RSET, QUIT; each with its RFC 5321
// §4.5.3.2 timeout. Used by MtaWorker towards remote MTAs and by the composer's injector.
//
// The protocol decisions are smtp::ClientTransaction's; this class only moves bytes and
// says, as `error()`, why a connection broke.
#pragma once

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/body.hpp"

namespace asio::ssl {
class context;
}
#include "net/asio.hpp"
#include "net/blocking_pool.hpp"
#include "net/deadline.hpp"
#include "net/stream.hpp"
#include "smtp/chunk_reader.hpp"
#include "smtp/client_transaction.hpp"
#include "smtp/extensions.hpp"
#include "smtp/line_buffer.hpp"
#include "smtp/reply_parser.hpp"

namespace mma::delivery {

struct TlsOptions {
  config::TlsPolicy policy = config::TlsPolicy::Off;
  asio::ssl::context* context = nullptr;
  std::string server_name;  // SNI: the MX host name
};

class SmtpClient {
 public:
  explicit SmtpClient(const asio::any_io_executor& ex) : deadline_(ex) {}

  // The watchdog of every operation's deadline: run it beside the owner, `work() || watch()`.
  net::Task<void> watch();

  void attach(std::unique_ptr<net::Stream> stream, std::string peer);
  [[nodiscard]] bool connected() const { return stream_ != nullptr; }
  // Records a failure to connect to `peer`, for error().
  void connect_failed(std::string peer, std::string error) {
    close();
    peer_ = std::move(peer);
    error_ = std::move(error);
  }
  void close();
  // Ends the pending operation now, as its deadline would (shutdown past its grace time).
  void cut_off() { deadline_.expire_now(); }
  // Where body files are read; without one, on the caller's loop (tools and tests).
  void use_disk_pool(net::BlockingPool* pool) { disk_ = pool; }

  // Banner, then EHLO (LHLO for LMTP), then HELO if EHLO is refused (RFC 5321 §3.2); then
  // STARTTLS and EHLO again (RFC 3207 §4.2) when the policy and the server allow.
  // Pass lvalues: GCC 12 frees temporary class arguments of a coroutine twice when the call
  // sits in a co_await (seen with valgrind; by value or by reference alike).
  net::Task<bool> open(const std::string& helo_name, bool lmtp, const config::Timeouts& t,
                       const TlsOptions& tls);
  // The last open() failed in the TLS handshake (an opportunistic client may try again in clear).
  [[nodiscard]] bool tls_failed() const { return tls_failed_; }
  // "TLSv1.3 TLS_AES_256_GCM_SHA384" when the connection is encrypted, else "".
  [[nodiscard]] const std::string& tls() const { return tls_; }

  struct Transaction {
    std::vector<smtp::Reply> replies;   // per recipient: the reply that decided it
    std::vector<bool> refused_at_rcpt;  // per recipient: decided by its RCPT reply
    bool fault = false;                 // the connection broke; replies are partial
    bool closing = false;               // the server said 421: it is closing
    bool body_sent = false;             // the final "." went out: a fault now may be a duplicate
  };
  // One mail transaction, pipelined when offered; `body` is in memory or in its file.
  net::Task<Transaction> transact(smtp::TransactionInput input, const Body& body,
                                  const config::Timeouts& t);
  // Whether transact_pipelined() may carry these: the server offers PIPELINING and CHUNKING.
  [[nodiscard]] bool pipelines() const { return ext_.pipelining && ext_.chunking; }
  struct Outgoing {
    smtp::TransactionInput input;
    const Body* body = nullptr;  // in memory
  };
  // Several transactions in one write, each MAIL, RCPT and BDAT LAST with its content (RFC 2920
  // §3.1, RFC 3030 §4.2), an RSET before each MAIL but the first, then their replies in order;
  // one Transaction each. Only where pipelines(); every body in memory, none of them LMTP.
  net::Task<std::vector<Transaction>> transact_pipelined(std::vector<Outgoing> group,
                                                         const config::Timeouts& t);
  net::Task<void> quit(std::chrono::milliseconds timeout);

  net::Task<std::optional<smtp::Reply>> read_reply(std::chrono::milliseconds timeout);
  net::Task<bool> send(std::string_view data, std::chrono::milliseconds timeout);

  [[nodiscard]] const smtp::Extensions& extensions() const { return ext_; }
  [[nodiscard]] const std::string& peer() const { return peer_; }
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  net::Task<bool> send_body(const Body& body, std::chrono::milliseconds timeout);
  net::Task<bool> send_body_file(const BodyFile& file, std::chrono::milliseconds timeout);
  // One block of the body (and the terminator after the last), under its own deadline
  // (RFC 5321 §4.5.3.2.5). Pass an lvalue (GCC 12, see open()).
  net::Task<bool> write_block(std::span<const asio::const_buffer> bufs,
                              std::chrono::milliseconds timeout);
  // The commands that end with BDAT and the content right behind them (RFC 3030): with
  // pipelining, a whole transaction in one write.
  net::Task<bool> send_chunk(std::string_view commands, const smtp::UnstuffedBody& content,
                             std::chrono::milliseconds timeout);
  // After a write failed because the server hung up: the replies it sent before, if any.
  net::Task<void> read_replies_left(smtp::ClientTransaction& tx, std::chrono::milliseconds timeout);
  net::Task<bool> hello(const std::string& helo_name, bool lmtp, const config::Timeouts& t);

  net::Deadline deadline_;
  net::BlockingPool* disk_ = nullptr;
  std::unique_ptr<net::Stream> stream_;
  smtp::LineBuffer in_;
  smtp::ReplyParser parser_;
  smtp::Extensions ext_;
  std::string peer_;
  std::error_code write_error_;  // of the last block written
  std::string error_;
  std::string tls_;
  bool tls_failed_ = false;
};

}  // namespace mma::delivery
