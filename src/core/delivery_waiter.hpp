// core/delivery_waiter: how a `delivered`-mode session waits for its recipients' outcomes.
//
// Workers on any thread report final outcomes; the last report runs the completion callback,
// which the session supplies (it posts to the session's own event loop). Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "core/outcome.hpp"
#include "smtp/reply.hpp"

namespace mma {

struct RecipientResult {
  Outcome outcome = Outcome::Failed;
  smtp::Reply reply;
  bool reported = false;
};

class DeliveryWaiter {
 public:
  DeliveryWaiter(std::size_t recipients, std::function<void()> on_complete);

  // Records a final outcome; a second report for the same recipient is ignored.
  void report(std::uint32_t index, Outcome outcome, const smtp::Reply& reply);
  [[nodiscard]] bool complete() const;
  // The results, valid once complete.
  [[nodiscard]] std::vector<RecipientResult> results() const;

 private:
  mutable std::mutex mu_;
  std::vector<RecipientResult> results_;
  std::size_t remaining_;
  std::function<void()> on_complete_;
};

}  // namespace mma
