// routing/router: which queue takes a recipient, and the split of a message into Jobs.
//
// A recipient goes to the queue whose `domains` match its domain (exact, or "*.suffix" for
// subdomains), else to the general queue. A message with recipients in several queues becomes
// one Job per queue and batch of at most batch_size recipients, all sharing the one Body
// (patent: the "clone" shares the message body by reference).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/message.hpp"
#include "routing/queue.hpp"

namespace mma::routing {

class Router {
 public:
  explicit Router(const std::vector<Queue*>& queues);

  // nullptr when no queue takes the domain (there is no general queue).
  [[nodiscard]] Queue* route(std::string_view domain) const;

  // Submits the message's jobs; returns the queues that received one (for backpressure).
  std::vector<Queue*> dispatch(const std::shared_ptr<const Message>& message,
                               std::vector<Recipient> recipients) const;

 private:
  std::unordered_map<std::string, Queue*> exact_;
  std::unordered_map<std::string, Queue*> suffix_;  // "big.test" for "*.big.test"
  Queue* general_ = nullptr;
};

}  // namespace mma::routing
