#include "compose/plan.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace mma::compose {

CampaignPlan plan_campaign(RecipientSource& source, const std::vector<std::string>& required) {
  CampaignPlan p;
  std::unordered_map<std::string, std::size_t> by_domain;
  while (auto s = source.next()) {
    ++p.rows;
    if (validate(*s, required)) {
      ++p.bad;
      continue;
    }
    ++p.good;
    std::string domain = s->address.substr(s->address.rfind('@') + 1);
    std::transform(domain.begin(), domain.end(), domain.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    ++by_domain[domain];
  }
  p.domains.assign(by_domain.begin(), by_domain.end());
  std::sort(p.domains.begin(), p.domains.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  return p;
}

std::string format_plan(const CampaignPlan& p, const PlanOptions& opts, std::size_t top) {
  std::string out =
      fmt::format("{} rows: {} recipients to send, {} bad rows (not sent), {} domains\n\n", p.rows,
                  p.good, p.bad, p.domains.size());
  out += fmt::format("{:>10} {:>7}  {}\n", "recipients", "share", "domain");
  const double total = p.good > 0 ? static_cast<double>(p.good) : 1.0;
  for (std::size_t i = 0; i < p.domains.size() && i < top; ++i) {
    out +=
        fmt::format("{:>10} {:>6.2f}%  {}\n", p.domains[i].second,
                    100.0 * static_cast<double>(p.domains[i].second) / total, p.domains[i].first);
  }
  if (p.domains.size() > top) {
    std::size_t rest = 0;
    for (std::size_t i = top; i < p.domains.size(); ++i) rest += p.domains[i].second;
    out += fmt::format("{:>10} {:>6.2f}%  ({} other domains)\n", rest,
                       100.0 * static_cast<double>(rest) / total, p.domains.size() - top);
  }
  out += fmt::format(
      "\n# Queues for mma serve: one per domain with at least {:.0f}% of the recipients (patent:\n"
      "# a specific queue per big destination); the rest goes through the general queue.\n"
      "# max_mta is {} connections shared by share; adjust it to what each provider accepts.\n",
      opts.queue_share * 100, opts.total_mta);
  std::size_t suggested = 0;
  for (const auto& [domain, n] : p.domains) {
    const double share = static_cast<double>(n) / total;
    if (share < opts.queue_share || suggested >= opts.max_queues) break;
    ++suggested;
    std::string name;
    for (const char c : domain)
      name += (std::isalnum(static_cast<unsigned char>(c)) != 0) ? c : '-';
    const auto mta = std::max<unsigned>(
        2, static_cast<unsigned>(std::lround(share * static_cast<double>(opts.total_mta))));
    out += fmt::format(
        "\n[[queue]]\nname = \"{}\"\ndomains = [\"{}\"]\nmax_mta = {}\n"
        "# {} recipients ({:.1f}%)\n",
        name, domain, mta, n, share * 100);
  }
  if (suggested == 0)
    out += "\n# No domain carries that share: the general queue serves them all.\n";
  return out;
}

}  // namespace mma::compose
