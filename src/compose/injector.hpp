// compose/injector: hands a campaign's messages to an MTA (mma serve, or any other) over
// SMTP or LMTP, through N parallel connections with PIPELINING and many messages per
// connection, showing progress and counting what was accepted and what was refused, and why.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "compose/message_source.hpp"
#include "config/endpoint.hpp"

namespace mma::compose {

struct InjectOptions {
  // Connection i injects into servers[i % size]: one relay, or a cluster of them.
  std::vector<config::Endpoint> servers;
  std::size_t connections = 20;
  bool lmtp = false;
  std::string helo = "composer.test";
  enum class Progress { Auto, Always, Never } progress = Progress::Auto;
  std::chrono::milliseconds timeout{600'000};  // per reply; RFC 5321 §4.5.3.2.6 allows 10 min
  std::string acked_log;  // when set, the Message-ID of every accepted message is appended here
  int reconnects = 3;     // attempts per connection after a failure
};

struct InjectResult {
  std::size_t messages = 0;    // handed to the server (the composer's count)
  std::size_t accepted = 0;    // messages acknowledged with 2xx (LMTP: for every recipient)
  std::size_t deferred = 0;    // messages refused with 4xx (for at least one recipient)
  std::size_t rejected = 0;    // messages refused with 5xx
  std::size_t unanswered = 0;  // sent, but the connection broke before the answer
  std::size_t recipients_accepted = 0;
  bool interrupted = false;  // SIGINT or SIGTERM: stopped after the transactions in flight
  std::map<std::string, std::size_t> reasons;  // "550 5.1.1 ..." -> count
  double seconds = 0;
};

// Sends every message of `source`. SIGINT or SIGTERM stops taking new messages; the
// transactions in flight finish (their answers are recorded), then it returns: a campaign that
// resumes sends only what was not accepted. A second signal stops at once.
InjectResult inject(MessageSource& source, const InjectOptions& opts);
std::string summary_json(const InjectResult& r);

}  // namespace mma::compose
