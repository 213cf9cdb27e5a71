// smtp/server_protocol: the server role of SMTP (RFC 5321) and LMTP (RFC 2033), without I/O.
//
// It takes command lines and answers with the reply to send and what the connection does
// next; the I/O layer (inbound/InboundSession, sink/SinkSession) owns the socket, reads the
// DATA content with DataReader (BDAT chunks with ChunkReader), and decides the reply after the
// content, which depends on the ack mode. Sequencing rules: §4.1.4 (order of commands), §4.3.2
// (reply codes per command), RFC 2920 §3.1 (DATA after pipelined RCPTs that all failed: 554),
// RFC 3030 (BDAT: every chunk is read, even one that is refused).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/address.hpp"
#include "smtp/command.hpp"
#include "smtp/reply.hpp"

namespace mma::smtp {

struct ServerOptions {
  bool lmtp = false;
  std::string hostname = "localhost";
  std::uint64_t max_message_size = 0;  // SIZE (RFC 1870); 0: no limit
  std::size_t max_recipients = 1000;   // §4.5.3.1.8 asks for at least 100
  std::size_t max_errors = 20;         // then 421 and close
  bool access_denied = false;          // 554 greeting, then only QUIT (§3.1)
  bool pipelining = true;
  bool eightbitmime = true;
  bool smtputf8 = true;   // RFC 6531
  bool chunking = false;  // RFC 3030 BDAT; the I/O layer must read chunks (Next::ReadChunk)
};

struct Envelope {
  std::string helo;
  bool esmtp = false;
  Address sender;  // empty: the null reverse-path
  MailParams params;
  std::vector<Address> recipients;
};

// Checks beyond syntax and sequence, e.g. the sink's scripted failures.
class ServerPolicy {
 public:
  virtual ~ServerPolicy() = default;
  virtual std::optional<Reply> check_mail(const Envelope&) { return std::nullopt; }
  virtual std::optional<Reply> check_rcpt(const Envelope&, const Address&) { return std::nullopt; }
};

enum class Next : std::uint8_t { Continue, ReadData, ReadChunk, Close };

// What follows a BDAT command (RFC 3030 §2): `size` octets of content, read whatever the
// reply. When the chunk is refused, or it is not the last, the Response's reply is sent once
// it has been read; after the last accepted chunk the message ends as after DATA's "." and the
// caller decides the reply (the Response's is not sent).
struct Chunk {
  std::uint64_t size = 0;
  bool last = false;
  bool accepted = false;  // else the octets are read and dropped
  bool first = false;     // the message's first chunk: its content starts here
};
struct Response {
  Reply reply;
  Next next = Next::Continue;
};

class ServerProtocol {
 public:
  enum class State : std::uint8_t {
    Connected,
    Greeted,
    Mail,
    Rcpt,
    Data,
    Chunking,  // between BDAT chunks of one message
    Denied,
    Closed
  };

  explicit ServerProtocol(ServerOptions opts, ServerPolicy* policy = nullptr);

  [[nodiscard]] Response greeting() const;
  // One command line, without its line ending.
  [[nodiscard]] Response on_command(std::string_view line);
  // A command line longer than the limit (§4.5.3.1.4: 512 octets).
  [[nodiscard]] Response on_line_too_long();
  // The idle timeout passed (§4.5.3.2.7).
  [[nodiscard]] Response on_timeout() const;
  // The DATA content (or the last BDAT chunk) has been read: hands over the envelope and starts
  // a new transaction.
  Envelope finish_data();
  // The chunk announced by the BDAT that answered Next::ReadChunk.
  [[nodiscard]] const Chunk& chunk() const { return chunk_; }

  [[nodiscard]] State state() const { return state_; }
  [[nodiscard]] bool enhanced() const { return enhanced_; }
  [[nodiscard]] const Envelope& envelope() const { return env_; }
  [[nodiscard]] const ServerOptions& options() const { return opts_; }

 private:
  Response hello(std::string_view arg, bool extended);
  Response mail(std::string_view arg);
  Response rcpt(std::string_view arg);
  Response data(std::string_view arg);
  Response bdat(std::string_view arg);
  Response error(int code, std::string_view enhanced, std::string_view text);
  void reset_transaction();

  ServerOptions opts_;
  ServerPolicy* policy_;
  State state_;
  Envelope env_;
  bool enhanced_ = false;
  std::size_t rcpt_attempts_ = 0;
  std::size_t errors_ = 0;
  Chunk chunk_;
};

}  // namespace mma::smtp
