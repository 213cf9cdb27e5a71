// compose/synthetic_campaign: personalized messages generated from a counter, for the demo,
// the tests and the benchmarks, until campaigns come from a subscriber database.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "compose/message_source.hpp"

namespace mma::compose {

struct SyntheticOptions {
  std::size_t messages = 1000;
  std::size_t domains = 100;  // recipients spread over d0.test .. d{N-1}.test
  std::string domain_suffix = "test";
  std::size_t rcpts_per_message = 1;
  std::size_t body_size = 5 * 1024;  // approximate bytes of the body
  std::string big_domain;            // optional: a share of recipients go to this domain
  double big_share = 0;
  std::string sender = "bounces@sender.test";
  std::string campaign = "demo";
};

class SyntheticCampaign : public MessageSource {
 public:
  explicit SyntheticCampaign(SyntheticOptions opts);
  [[nodiscard]] std::size_t size() const { return opts_.messages; }
  [[nodiscard]] ComposedMessage compose(std::size_t index) const;
  std::optional<ComposedMessage> next() override {
    if (next_ >= opts_.messages) return std::nullopt;
    return compose(next_++);
  }
  [[nodiscard]] std::size_t expected() const override { return opts_.messages; }
  [[nodiscard]] const SyntheticOptions& options() const { return opts_; }

 private:
  [[nodiscard]] std::string recipient(std::size_t n) const;
  SyntheticOptions opts_;
  std::string run_id_;
  std::size_t next_ = 0;
};

}  // namespace mma::compose
