// sink/sink_options: how `mma sink` behaves: where it listens, how slow and how faulty it is.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/endpoint.hpp"

namespace mma::sink {

// A scripted failure at one phase of the session, for the first `sessions` sessions:
//   phase: banner, ehlo, mail, rcpt, data (the DATA command), dot (after the content)
//   kind:  timeout (never answer), drop (close), 421, garbled (a line that is no reply),
//          truncated (half a reply, then close)
struct Fault {
  std::string phase;
  std::string kind;
  std::size_t sessions = SIZE_MAX;
  std::shared_ptr<std::atomic<std::size_t>> used = std::make_shared<std::atomic<std::size_t>>(0);
};

struct SinkOptions {
  std::vector<config::Endpoint> listen;
  unsigned threads = 1;
  std::string hostname = "sink.test";
  std::chrono::milliseconds banner_delay{0};
  std::chrono::milliseconds reply_delay{0};  // before every reply
  std::chrono::milliseconds data_delay{0};   // before the reply to the final "."
  // Fractions of 1, drawn per recipient (rcpt_*) or per transaction (txn_*, drop).
  double rcpt_defer = 0, rcpt_reject = 0;
  double txn_defer = 0, txn_reject = 0;
  double drop = 0;  // close the connection after the data, without a reply
  std::uint64_t seed = 1;
  bool pipelining = true;
  bool chunking = true;  // CHUNKING (RFC 3030), as the big mailbox providers offer it
  bool ehlo = true;      // false: answer EHLO with 502, to exercise HELO fallback
  std::uint64_t max_message_size = 0;
  std::size_t max_recipients = 100000;  // per transaction; beyond: 452 4.5.3
  std::string report_path;              // JSON counts: on exit, on SIGUSR1, every report_every
  std::chrono::milliseconds report_every{0};
  std::string maildir;                    // when set, every accepted message is written there
  std::chrono::milliseconds duration{0};  // exit after this long (0: run until signalled)
  // A stopped receiver: connections are accepted but get no greeting until SIGUSR2 resumes
  // it (SIGUSR2 again pauses it). For queueing benchmarks and tests.
  bool paused = false;
  std::vector<Fault> faults;
  // Offer STARTTLS, answer it with 220, then send garbage instead of a TLS handshake.
  bool broken_starttls = false;
};

}  // namespace mma::sink
