#include "routing/domain_advisor.hpp"

#include <cstdio>

namespace mma::routing {

std::optional<std::string> DomainAdvisor::count(std::string_view domain,
                                                std::chrono::steady_clock::time_point now) {
  if (start_ == std::chrono::steady_clock::time_point{}) start_ = now;
  std::optional<std::string> advice;
  if (now - start_ >= window_) {
    if (total_ >= min_jobs_) {
      const std::pair<const std::string, std::size_t>* top = nullptr;
      for (const auto& e : counts_) {
        if (top == nullptr || e.second > top->second) top = &e;
      }
      if (top != nullptr &&
          static_cast<double>(top->second) >= share_ * static_cast<double>(total_)) {
        char buf[512];
        std::snprintf(
            buf, sizeof buf,
            "domain %s carried %.0f%% of this queue's jobs (%zu of %zu) in the last %.1f s: "
            "consider a queue of its own: [[queue]] name = \"%s\" domains = [\"%s\"]",
            top->first.c_str(),
            100.0 * static_cast<double>(top->second) / static_cast<double>(total_), top->second,
            total_, std::chrono::duration<double>(now - start_).count(), top->first.c_str(),
            top->first.c_str());
        advice = buf;
      }
    }
    start_ = now;
    total_ = 0;
    counts_.clear();
  }
  ++total_;
  ++counts_[std::string(domain)];
  return advice;
}

}  // namespace mma::routing
