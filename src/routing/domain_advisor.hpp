// routing/domain_advisor: notices when the general queue keeps meeting one domain, and says,
// once per window, that it deserves a queue of its own (patent §C: "the general queue may post
// a corresponding entry to the MMA's log file").
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace mma::routing {

class DomainAdvisor {
 public:
  DomainAdvisor(double share, std::chrono::milliseconds window, std::size_t min_jobs)
      : share_(share), window_(window), min_jobs_(min_jobs) {}

  // Counts one job for `domain`; at the end of a window returns the advice, if any. Not
  // thread-safe: the queue calls it under its lock.
  std::optional<std::string> count(std::string_view domain,
                                   std::chrono::steady_clock::time_point now);

 private:
  double share_;
  std::chrono::milliseconds window_;
  std::size_t min_jobs_;
  std::chrono::steady_clock::time_point start_{};
  std::size_t total_ = 0;
  std::unordered_map<std::string, std::size_t> counts_;
};

}  // namespace mma::routing
