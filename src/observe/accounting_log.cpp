#include "observe/accounting_log.hpp"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include "core/json.hpp"

namespace mma::observe {
namespace {

void append_timestamp(std::string& out) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  out += buf;
}

}  // namespace

AccountingLog::AccountingLog(const std::string& path) {
  if (!path.empty()) {
    file_ = std::fopen(path.c_str(), "a");
    if (file_ == nullptr) {
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
  if (file_ != nullptr) std::fclose(file_);
}

void AccountingLog::record(const AccountingEvent& e) {
  if (file_ == nullptr) return;
  std::string line;
  line.reserve(384);
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
  line += ",\"attempt\":" + std::to_string(e.recipient.attempts);
  line += ",\"code\":" + std::to_string(e.reply.code);
  line += ",\"reply\":";
  append_json_string(line, e.reply.summary());
  line += ",\"queue_ms\":" + std::to_string(e.queue_time.count());
  line += ",\"delivery_ms\":" + std::to_string(e.delivery_time.count());
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
  if (file_ != nullptr && !out.empty()) {
    std::fwrite(out.data(), 1, out.size(), file_);
    std::fflush(file_);
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
