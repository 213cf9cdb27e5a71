// inbound/inbound_session: one composer connection, SMTP or LMTP server role (the patent's
// client thread; DESIGN.md §2, §6).
//
// Reads commands into smtp::ServerProtocol and answers them, batching replies while more
// pipelined commands are buffered (RFC 2920 §3.2); reads DATA content into one shared Body;
// hands the message to the Router; and answers the end of data according to the listener's
// ack mode: at once (`received`), or once every recipient has its final outcome
// (`delivered`, docs/ACK_MODES.md). When a queue is over its throttle the reply waits, and
// with it the reading of further commands: that is the composer's backpressure.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "core/body.hpp"
#include "net/asio.hpp"
#include "net/blocking_pool.hpp"
#include "net/deadline.hpp"
#include "net/stream.hpp"
#include "net/wakeup.hpp"
#include "routing/router.hpp"
#include "smtp/chunk_reader.hpp"
#include "smtp/line_buffer.hpp"
#include "smtp/server_protocol.hpp"
#include "spool/spool.hpp"

namespace mma::inbound {

// What every session of one listener shares.
struct ListenerContext {
  ListenerContext(const config::ListenerSection& cfg, routing::Router& r)
      : section(std::make_shared<const config::ListenerSection>(cfg)), router(r) {}
  // The settings now; SIGHUP may replace them. A session keeps the ones it started with.
  [[nodiscard]] std::shared_ptr<const config::ListenerSection> cfg() const {
    return section.load(std::memory_order_acquire);
  }
  std::atomic<std::shared_ptr<const config::ListenerSection>> section;
  routing::Router& router;
  spool::Spool* spool = nullptr;  // for `ack = "spooled"`
  // Bodies larger than this go to a file in `bodies` (the disk cache); 0: all in memory.
  std::uint64_t memory_body_limit = 0;
  spool::BodyDirectory* bodies = nullptr;
  net::BlockingPool* disk = nullptr;  // where body files are written; null: on the loop
  std::atomic<std::size_t> connections{0};
  std::atomic<std::uint64_t> messages{0};
  // The daemon is stopping: sessions take no new transaction (421 at the next MAIL).
  std::atomic<bool> draining{false};
};

class InboundSession : public std::enable_shared_from_this<InboundSession> {
 public:
  // `denied`: the client is outside `allow` (554 greeting, RFC 5321 §3.1). The caller has
  // counted the connection in ctx.connections; the session uncounts it when it ends.
  static void start(std::unique_ptr<net::Stream> stream, const asio::any_io_executor& ex,
                    ListenerContext& ctx, bool denied, std::function<void()> on_end = {});

  InboundSession(std::unique_ptr<net::Stream> stream, const asio::any_io_executor& ex,
                 ListenerContext& ctx, bool denied);
  ~InboundSession();

 private:
  class RoutePolicy;
  static net::Task<void> run(std::shared_ptr<InboundSession> self, std::function<void()> on_end);
  net::Task<void> serve();
  net::Task<bool> flush();
  // After the last reply of a session the server ends: shut sending, drain the input a moment.
  net::Task<void> linger();
  net::Task<bool> read_more(std::chrono::milliseconds timeout);
  net::Task<bool> read_data();
  // The octets that a BDAT announced (RFC 3030): kept if the chunk was accepted, else read and
  // dropped; after the last, the message is taken as after DATA. `r` is the chunk's reply.
  net::Task<bool> read_chunk(const smtp::Reply& r);
  // A message's content, whichever command carries it: begun, kept as it arrives (moved to its
  // body file past memory_body_limit, when spill_due), and ended with what the reader found.
  void begin_content();
  [[nodiscard]] bool spill_due(const smtp::DataReader& reader) const;
  void end_content(const smtp::DataReader& reader);
  net::Task<void> spill(std::size_t complete);
  net::Task<void> finish_message();
  void reply(const smtp::Reply& r) { smtp::append_reply(out_, r, proto_.enhanced()); }

  std::unique_ptr<net::Stream> stream_;
  ListenerContext& ctx_;
  const std::shared_ptr<const config::ListenerSection> cfg_;  // as when the session started
  std::unique_ptr<RoutePolicy> policy_;
  smtp::ServerProtocol proto_;
  smtp::LineBuffer in_;
  std::string out_;
  net::Deadline deadline_;
  std::shared_ptr<net::Wakeup> wakeup_;
  std::shared_ptr<Body> body_;               // the message being read
  std::optional<smtp::ChunkReader> chunks_;  // its content, when it comes by BDAT
  std::size_t received_size_ = 0;            // the Received: field at the top of body_
  std::string message_id_;
  bool too_big_ = false;
  bool line_too_long_ = false;
  bool bare_cr_ = false;
  bool spill_failed_ = false;  // the body file could not be written: 452 at the end
};

}  // namespace mma::inbound
