// compose/campaign_run: `mma compose CAMPAIGN.toml`: plan, preview or send a campaign, with
// progress and a closing summary.
#pragma once

#include <cstddef>
#include <string>

#include "compose/injector.hpp"
#include "compose/plan.hpp"

namespace mma::compose {

struct CampaignRunOptions {
  std::string campaign_path;
  enum class Mode { Send, Plan, Preview } mode = Mode::Send;
  InjectOptions inject;
  std::string summary_path;      // also write the summary as JSON
  std::string state_path;        // resume state: empty for the default place (see send_log.hpp)
  bool resume = true;            // skip recipients accepted in an earlier run
  std::size_t preview = 1;       // messages printed by Mode::Preview
  unsigned compose_threads = 0;  // threads composing ahead of the injector; 0: one per core
  PlanOptions plan;
  std::size_t plan_top = 20;
};

// Exit status: 0 all sent (or planned), 1 the campaign could not start (error printed),
// 3 some messages were refused or unanswered, 130 interrupted.
int run_campaign(const CampaignRunOptions& opts);

// Rows the source is expected to hold, for the progress line; 0 when it cannot tell cheaply.
std::size_t expected_rows(const std::string& source, const std::string& query);

}  // namespace mma::compose
