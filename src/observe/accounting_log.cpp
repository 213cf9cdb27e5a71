#include "observe/accounting_log.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include "core/json.hpp"
#include "smtp/decimal.hpp"

namespace mma::observe {
namespace {

void append_timestamp(std::string& out) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  // The date and time to the second change once a second: formatted then, per thread.
  thread_local std::time_t cached_t = -1;
  thread_local char cached[64];  // room for any int the fields may hold
  if (t != cached_t) {
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    cached_t = t;
  }
  out += cached;
  const char millis[] = {'.', static_cast<char>('0' + ms / 100),
                         static_cast<char>('0' + ms / 10 % 10), static_cast<char>('0' + ms % 10),
                         'Z'};
  out.append(millis, sizeof millis);
}

}  // namespace

AccountingLog::AccountingLog(const std::string& path) {
  if (!path.empty()) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd_ < 0) {
      throw std::runtime_error("cannot open accounting log " + path + ": " + std::strerror(errno));
    }
  }
  thread_ = std::thread([this] { flusher(); });
}

AccountingLog::~AccountingLog() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
  if (fd_ >= 0) ::close(fd_);
}

void AccountingLog::record(const AccountingEvent& e) {
  if (fd_ < 0) return;
  // Built in this thread's scratch strings, which keep their capacity: no allocation per line.
  thread_local std::string line;
  thread_local std::string scratch;
  line.clear();
  line += "{\"ts\":\"";
  append_timestamp(line);
  line += "\",\"event\":\"";
  line += to_string(e.outcome);
  line += "\",\"id\":";
  append_json_string(line, e.message.id);
  line += ",\"message_id\":";
  append_json_string(
      line, e.message.body ? std::string_view(e.message.body->message_id) : std::string_view{});
  line += ",\"from\":";
  append_json_string(line, e.message.sender);
  line += ",\"rcpt\":";
  append_json_string(line, e.recipient.address);
  line += ",\"domain\":";
  append_json_string(line, e.recipient.domain());
  line += ",\"queue\":";
  append_json_string(line, e.queue);
  line += ",\"mx\":";
  append_json_string(line, e.mx);
  line += ",\"attempt\":";
  smtp::append_decimal(line, e.recipient.attempts);
  line += ",\"code\":";
  smtp::append_decimal(line, e.reply.code);
  line += ",\"reply\":";
  scratch.clear();
  e.reply.append_summary(scratch);
  append_json_string(line, scratch);
  line += ",\"queue_ms\":";
  smtp::append_decimal(line, e.queue_time.count());
  line += ",\"delivery_ms\":";
  smtp::append_decimal(line, e.delivery_time.count());
  line += "}\n";
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    buffer_ += line;
    wake = buffer_.size() > (1u << 20);
  }
  if (wake) cv_.notify_one();
}

void AccountingLog::flush() {
  std::lock_guard writing(write_mu_);  // keeps lines in order between concurrent flushes
  std::string out;
  {
    std::lock_guard lock(mu_);
    out.swap(buffer_);
  }
  if (fd_ < 0 || out.empty()) return;
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::write(fd_, out.data() + done, out.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    // Disk full or an I/O error: keep what was not written for the next flush, up to a bound,
    // and say so (once per episode).
    const int err = errno;
    std::lock_guard lock(mu_);
    if (!failing_)
      spdlog::error("accounting log: write failed: {}; keeping lines in memory",
                    std::strerror(err));
    failing_ = true;
    const std::string rest = out.substr(done);
    if (rest.size() + buffer_.size() <= kMaxPending) {
      buffer_.insert(0, rest);
    } else {
      lost_lines_ += static_cast<std::size_t>(std::count(rest.begin(), rest.end(), '\n'));
      spdlog::error("accounting log: {} line(s) lost so far: the disk stays full", lost_lines_);
    }
    return;
  }
  if (failing_) {
    std::lock_guard lock(mu_);
    spdlog::info("accounting log: writing again");
    failing_ = false;
  }
}

void AccountingLog::flusher() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::milliseconds(100));
    lock.unlock();
    flush();
    lock.lock();
  }
  lock.unlock();
  flush();
}

}  // namespace mma::observe
