// compose/plan: a campaign's recipients counted by domain before it is sent (the patent's
// "database query against the database of recipients, sorted by domain"), and the [[queue]]
// entries for mma serve that the big domains deserve, ready to paste into its configuration.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "compose/recipients.hpp"

namespace mma::compose {

struct CampaignPlan {
  std::size_t rows = 0, good = 0, bad = 0;
  std::vector<std::pair<std::string, std::size_t>> domains;  // by count, largest first
};

struct PlanOptions {
  double queue_share = 0.02;  // a domain with at least this share of recipients gets a queue
  std::size_t max_queues = 20;
  unsigned total_mta = 1000;  // connections to spread over the suggested queues, by share
};

CampaignPlan plan_campaign(RecipientSource& source, const std::vector<std::string>& required);
// The report: totals, the busiest domains, and the suggested [[queue]] tables (TOML).
std::string format_plan(const CampaignPlan& plan, const PlanOptions& opts, std::size_t top);

}  // namespace mma::compose
