// sink/sink_session: one connection to the simulated internet: an ESMTP server that accepts,
// delays, refuses or drops as told (sink_options.hpp), and counts what it accepted.
//
// Recipient addresses script behaviour too, which keeps tests readable (STYLE.md §12):
//   reject-…@  550 5.1.1 at RCPT      defer-…@     451 4.2.1 at RCPT
//   drop-…@    connection closed at RCPT   dropdata-…@  closed after the data, no reply
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "net/asio.hpp"
#include "net/deadline.hpp"
#include "net/stream.hpp"
#include "sink/sink_counts.hpp"
#include "sink/sink_options.hpp"
#include "smtp/chunk_reader.hpp"
#include "smtp/line_buffer.hpp"
#include "smtp/server_protocol.hpp"

namespace mma::sink {

class SinkSession : public std::enable_shared_from_this<SinkSession> {
 public:
  // While set, new sessions hold their greeting (sink_options.hpp: paused).
  static std::atomic<bool> paused;

  SinkSession(std::unique_ptr<net::Stream> stream, const asio::any_io_executor& ex,
              const SinkOptions& opts, SinkCounts& counts, std::string listener,
              std::uint64_t seed);
  ~SinkSession();
  static void start(std::shared_ptr<SinkSession> self, const asio::any_io_executor& ex);

 private:
  class FaultPolicy;
  static net::Task<void> run(std::shared_ptr<SinkSession> self);
  net::Task<void> serve();
  net::Task<bool> pause(std::chrono::milliseconds d);
  net::Task<bool> flush();
  net::Task<bool> read_more();
  // The octets of the chunk that BDAT announced: into chunks_ if accepted, else dropped.
  net::Task<bool> read_chunk(const smtp::Chunk& chunk);
  // The content has been read (DATA's "." or the last BDAT chunk): the delay, the faults, the
  // counts and the reply. False when the session ends here.
  net::Task<bool> end_message(const smtp::DataReader& content, bool by_bdat);
  // The scripted fault for `phase` (sink_options.hpp), if this session has one.
  [[nodiscard]] const Fault* fault(std::string_view phase) const;
  // Acts a fault out; the session ends afterwards.
  net::Task<void> fail(const Fault& f);
  void store(const smtp::Envelope& env, const std::string& wire);

  std::unique_ptr<net::Stream> stream_;
  const SinkOptions& opts_;
  SinkCounts& counts_;
  std::string listener_;
  std::minstd_rand rng_;  // cheap to seed: one per session, thousands of sessions a second
  std::unique_ptr<FaultPolicy> policy_;
  smtp::ServerProtocol proto_;
  smtp::LineBuffer in_;
  std::string out_;
  std::string wire_;                         // the message being received, as on the wire
  std::optional<smtp::ChunkReader> chunks_;  // the message being received by BDAT
  net::Deadline deadline_;
  bool drop_now_ = false;
  std::vector<const Fault*> faults_;  // the ones that apply to this session
};

}  // namespace mma::sink
