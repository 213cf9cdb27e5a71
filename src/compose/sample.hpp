// compose/sample: a complete sample campaign to try mma with (the README's main job, the tests
// and the benchmarks): a SQLite database of subscribers over many domains with topic
// subscriptions (a few big providers and a long tail, a handful of bad rows), a campaign file,
// text and HTML templates, and an Ed25519 DKIM key with its DNS record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mma::compose {

struct SampleOptions {
  std::size_t subscribers = 100'000;
  std::size_t domains = 1'000;  // the 5 big providers included
  std::uint64_t seed = 1;
  bool bad_rows = true;  // a few invalid addresses and header-injection attempts
  bool dkim = true;
};

// Writes campaign.toml, news.txt, news.html, subscribers.db, dkim.pem and dkim.txt into `dir`
// (created); throws std::runtime_error. Returns the campaign file's path.
std::string write_sample_campaign(const std::string& dir, const SampleOptions& opts);

}  // namespace mma::compose
