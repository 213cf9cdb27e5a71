// sink/sink_counts: what the simulated internet received, for tests and benchmarks.
//
// Messages and recipients per domain and per listening address, duplicates (same Message-ID
// and recipient seen twice), refusals by kind, the peak number of concurrent sessions, and when
// the last message was accepted (so that a reader polling the report knows when the run ended to
// the microsecond, however seldom it is written). Thread-safe; written as JSON.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

namespace mma::sink {

class SinkCounts {
 public:
  void session_started(const std::string& listener);
  void session_ended(const std::string& listener);
  // An accepted message; returns how many of its recipients were duplicates.
  std::size_t accepted(const std::string& listener, const std::string& message_id,
                       const std::vector<std::string>& recipients, std::size_t bytes,
                       bool by_bdat = false);
  void rcpt_refused(bool permanent);
  void txn_refused(bool permanent);
  void dropped();
  [[nodiscard]] std::string json() const;

 private:
  struct PerListener {
    std::uint64_t messages = 0, recipients = 0, sessions = 0, current = 0, peak = 0;
  };
  struct PerDomain {
    std::uint64_t messages = 0, recipients = 0;
  };
  mutable std::mutex mu_;
  std::uint64_t messages_ = 0, recipients_ = 0, duplicates_ = 0, bytes_ = 0, no_message_id_ = 0;
  std::uint64_t by_bdat_ = 0;  // messages whose content came in BDAT chunks (RFC 3030)
  std::uint64_t sessions_ = 0, current_ = 0, peak_ = 0;
  std::uint64_t rcpt_deferred_ = 0, rcpt_rejected_ = 0, txn_deferred_ = 0, txn_rejected_ = 0,
                dropped_ = 0;
  std::map<std::string, PerListener> listeners_;
  std::map<std::string, PerDomain> domains_;
  std::unordered_set<std::uint64_t> seen_;                   // hash of Message-ID + recipient
  std::chrono::system_clock::time_point last_message_at_{};  // wall clock: readers compare theirs
};

}  // namespace mma::sink
