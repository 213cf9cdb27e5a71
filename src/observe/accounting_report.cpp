#include "observe/accounting_report.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <stdexcept>
#include <vector>

namespace mma::observe {
namespace {

struct Tally {
  std::uint64_t delivered = 0, bounced = 0, failed = 0, deferred = 0;
  void add(const std::string& event) {
    if (event == "delivered")
      ++delivered;
    else if (event == "bounced")
      ++bounced;
    else if (event == "failed")
      ++failed;
    else if (event == "deferred")
      ++deferred;
  }
  [[nodiscard]] std::uint64_t finals() const { return delivered + bounced + failed; }
};

// "2026-11-28T10:43:25.123Z" to seconds since the epoch.
double parse_ts(const std::string& ts) {
  std::tm tm{};
  int ms = 0;
  if (std::sscanf(ts.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7) {
    return 0;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<double>(timegm(&tm)) + ms / 1000.0;
}

}  // namespace

std::string accounting_report(const ReportOptions& opts) {
  std::ifstream in(opts.path);
  if (!in) throw std::runtime_error("cannot read " + opts.path);
  Tally total;
  std::map<std::string, Tally> queues;
  std::map<std::string, Tally> domains;
  double first = 0, last = 0;
  std::size_t bad = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("event")) {
      ++bad;
      continue;
    }
    const std::string event = j.value("event", "");
    total.add(event);
    queues[j.value("queue", "")].add(event);
    domains[j.value("domain", "")].add(event);
    const double t = parse_ts(j.value("ts", ""));
    if (t > 0) {
      if (first == 0 || t < first) first = t;
      last = std::max(last, t);
    }
  }
  const double span = last - first;
  std::vector<std::pair<std::string, Tally>> busiest(domains.begin(), domains.end());
  std::sort(busiest.begin(), busiest.end(),
            [](const auto& a, const auto& b) { return a.second.finals() > b.second.finals(); });
  if (busiest.size() > opts.top_domains) busiest.resize(opts.top_domains);

  if (opts.json) {
    nlohmann::json out;
    auto tally = [](const Tally& t) {
      return nlohmann::json{{"delivered", t.delivered},
                            {"bounced", t.bounced},
                            {"failed", t.failed},
                            {"deferred", t.deferred}};
    };
    out["total"] = tally(total);
    for (const auto& [q, t] : queues) out["queues"][q] = tally(t);
    for (const auto& [d, t] : busiest) out["busiest_domains"][d] = tally(t);
    out["seconds"] = span;
    out["recipients_per_second"] = span > 0 ? static_cast<double>(total.finals()) / span : 0.0;
    out["unreadable_lines"] = bad;
    return out.dump(2) + "\n";
  }
  char buf[512];
  std::string out;
  std::snprintf(
      buf, sizeof buf,
      "recipients: %llu delivered, %llu bounced, %llu failed (%llu deferrals on the way)\n",
      static_cast<unsigned long long>(total.delivered),
      static_cast<unsigned long long>(total.bounced), static_cast<unsigned long long>(total.failed),
      static_cast<unsigned long long>(total.deferred));
  out += buf;
  for (const auto& [q, t] : queues) {
    std::snprintf(buf, sizeof buf, "  queue %-12s %8llu delivered %6llu bounced %6llu failed\n",
                  q.c_str(), static_cast<unsigned long long>(t.delivered),
                  static_cast<unsigned long long>(t.bounced),
                  static_cast<unsigned long long>(t.failed));
    out += buf;
  }
  out += "busiest domains:\n";
  for (const auto& [d, t] : busiest) {
    std::snprintf(buf, sizeof buf, "  %-24s %8llu\n", d.c_str(),
                  static_cast<unsigned long long>(t.finals()));
    out += buf;
  }
  std::snprintf(buf, sizeof buf, "first to last outcome: %.2f s, %.0f recipients/s\n", span,
                span > 0 ? static_cast<double>(total.finals()) / span : 0.0);
  out += buf;
  if (bad > 0) out += std::to_string(bad) + " unreadable line(s)\n";
  return out;
}

}  // namespace mma::observe
