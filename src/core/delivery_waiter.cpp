#include "core/delivery_waiter.hpp"

namespace mma {

DeliveryWaiter::DeliveryWaiter(std::size_t recipients, std::function<void()> on_complete)
    : results_(recipients), remaining_(recipients), on_complete_(std::move(on_complete)) {}

void DeliveryWaiter::report(std::uint32_t index, Outcome outcome, const smtp::Reply& reply) {
  std::function<void()> done;
  {
    std::lock_guard lock(mu_);
    if (index >= results_.size() || results_[index].reported) return;
    results_[index] = RecipientResult{outcome, reply, true};
    if (--remaining_ == 0) done = std::move(on_complete_);
  }
  if (done) done();
}

bool DeliveryWaiter::complete() const {
  std::lock_guard lock(mu_);
  return remaining_ == 0;
}

std::vector<RecipientResult> DeliveryWaiter::results() const {
  std::lock_guard lock(mu_);
  return results_;
}

}  // namespace mma
