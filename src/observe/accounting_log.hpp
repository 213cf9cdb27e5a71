// observe/accounting_log: one JSON line per recipient event (DESIGN.md §9).
//
// Written by workers on every thread: lines are appended to a buffer under a short lock and
// written out by a flusher thread every 100 ms (or when the buffer is large), never from the
// event loops. Each recipient gets exactly one line with a final event (delivered, bounced,
// failed); "deferred" lines record attempts put off.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "core/message.hpp"
#include "core/outcome.hpp"
#include "smtp/reply.hpp"

namespace mma::observe {

struct AccountingEvent {
  Outcome outcome;
  const Message& message;
  const Recipient& recipient;
  std::string_view queue;
  std::string_view mx;  // "host:port" of the remote MTA, empty if none was reached
  const smtp::Reply& reply;
  std::chrono::milliseconds queue_time{0};     // waiting in the queue before this attempt
  std::chrono::milliseconds delivery_time{0};  // the attempt itself
};

class AccountingLog {
 public:
  // Empty path: events are counted but not written. Throws std::runtime_error if the file
  // cannot be opened.
  explicit AccountingLog(const std::string& path);
  ~AccountingLog();
  AccountingLog(const AccountingLog&) = delete;
  AccountingLog& operator=(const AccountingLog&) = delete;

  void record(const AccountingEvent& e);
  void flush();

 private:
  void flusher();

  static constexpr std::size_t kMaxPending = 64u << 20;
  int fd_ = -1;
  bool failing_ = false;        // under mu_
  std::size_t lost_lines_ = 0;  // under mu_
  std::mutex mu_;
  std::mutex write_mu_;
  std::condition_variable cv_;
  std::string buffer_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace mma::observe
