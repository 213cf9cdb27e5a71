// compose/synthetic_campaign: personalized messages generated from a counter, for the demo,
// the tests and the benchmarks, until campaigns come from a subscriber database.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

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

struct ComposedMessage {
  std::string sender;
  std::vector<std::string> recipients;
  std::string wire;  // dot-stuffed, CRLF, without the final ".\r\n"
};

class SyntheticCampaign {
 public:
  explicit SyntheticCampaign(SyntheticOptions opts);
  [[nodiscard]] std::size_t size() const { return opts_.messages; }
  [[nodiscard]] ComposedMessage compose(std::size_t index) const;
  [[nodiscard]] const SyntheticOptions& options() const { return opts_; }

 private:
  [[nodiscard]] std::string recipient(std::size_t n) const;
  SyntheticOptions opts_;
  std::string run_id_;
};

}  // namespace mma::compose
