#include "sink/sink_counts.hpp"

#include <algorithm>
#include <cctype>
#include <functional>

#include <fmt/format.h>

#include "core/json.hpp"

namespace mma::sink {
namespace {

std::uint64_t fnv1a(std::string_view a, std::string_view b) {
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  mix(a);
  h ^= 0xff;
  h *= 1099511628211ull;
  mix(b);
  return h;
}

std::string lower_domain(const std::string& rcpt) {
  const auto at = rcpt.rfind('@');
  std::string d = at == std::string::npos ? std::string{} : rcpt.substr(at + 1);
  std::transform(d.begin(), d.end(), d.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return d;
}

}  // namespace

void SinkCounts::session_started(const std::string& listener) {
  std::lock_guard lock(mu_);
  ++sessions_;
  peak_ = std::max(peak_, ++current_);
  auto& l = listeners_[listener];
  ++l.sessions;
  l.peak = std::max(l.peak, ++l.current);
}

void SinkCounts::session_ended(const std::string& listener) {
  std::lock_guard lock(mu_);
  --current_;
  --listeners_[listener].current;
}

std::size_t SinkCounts::accepted(const std::string& listener, const std::string& message_id,
                                 const std::vector<std::string>& recipients, std::size_t bytes,
                                 bool by_bdat) {
  std::lock_guard lock(mu_);
  last_message_at_ = std::chrono::system_clock::now();
  ++messages_;
  by_bdat_ += by_bdat ? 1 : 0;
  recipients_ += recipients.size();
  bytes_ += bytes;
  auto& l = listeners_[listener];
  ++l.messages;
  l.recipients += recipients.size();
  std::vector<std::string> seen_domains;
  std::size_t dups = 0;
  for (const auto& r : recipients) {
    const std::string d = lower_domain(r);
    auto& pd = domains_[d];
    ++pd.recipients;
    if (std::find(seen_domains.begin(), seen_domains.end(), d) == seen_domains.end()) {
      ++pd.messages;
      seen_domains.push_back(d);
    }
    if (!message_id.empty() && !seen_.insert(fnv1a(message_id, r)).second) ++dups;
  }
  if (message_id.empty()) ++no_message_id_;
  duplicates_ += dups;
  return dups;
}

void SinkCounts::rcpt_refused(bool permanent) {
  std::lock_guard lock(mu_);
  ++(permanent ? rcpt_rejected_ : rcpt_deferred_);
}

void SinkCounts::txn_refused(bool permanent) {
  std::lock_guard lock(mu_);
  ++(permanent ? txn_rejected_ : txn_deferred_);
}

void SinkCounts::dropped() {
  std::lock_guard lock(mu_);
  ++dropped_;
}

std::string SinkCounts::json() const {
  std::lock_guard lock(mu_);
  std::string out = "{";
  auto num = [&out](const char* k, std::uint64_t v, bool comma = true) {
    out += '"';
    out += k;
    out += "\":" + std::to_string(v);
    if (comma) out += ',';
  };
  num("messages", messages_);
  num("messages_by_bdat", by_bdat_);
  num("recipients", recipients_);
  num("duplicates", duplicates_);
  num("no_message_id", no_message_id_);
  num("bytes", bytes_);
  num("sessions", sessions_);
  num("current_sessions", current_);
  num("peak_sessions", peak_);
  num("rcpt_deferred", rcpt_deferred_);
  num("rcpt_rejected", rcpt_rejected_);
  num("txn_deferred", txn_deferred_);
  num("txn_rejected", txn_rejected_);
  num("dropped", dropped_);
  if (messages_ > 0) {  // seconds since the epoch, to the microsecond; absent before the first
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(last_message_at_.time_since_epoch())
            .count();
    out += fmt::format("\"last_message_at\":{}.{:06},", us / 1'000'000, us % 1'000'000);
  }
  out += "\"listeners\":{";
  bool first = true;
  for (const auto& [name, l] : listeners_) {
    if (!first) out += ',';
    first = false;
    append_json_string(out, name);
    out += ":{";
    num("messages", l.messages);
    num("recipients", l.recipients);
    num("sessions", l.sessions);
    num("peak_sessions", l.peak, false);
    out += '}';
  }
  out += "},\"domains\":{";
  first = true;
  for (const auto& [name, d] : domains_) {
    if (!first) out += ',';
    first = false;
    append_json_string(out, name);
    out += ":{";
    num("messages", d.messages);
    num("recipients", d.recipients, false);
    out += '}';
  }
  out += "}}\n";
  return out;
}

}  // namespace mma::sink
