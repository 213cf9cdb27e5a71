// routing/router: which queue takes a recipient, and the split of a message into Jobs.
//
// A recipient goes to the queue whose `domains` match its domain (exact, or "*.suffix" for
// subdomains), else to the general queue. A message with recipients in several queues becomes
// one Job per queue and batch of at most batch_size recipients, all sharing the one Body
// (patent: the "clone" shares the message body by reference).
//
// SIGHUP replaces the table (replace()) while sessions route on other threads: each look-up
// works on one snapshot of it.
#pragma once

#include <atomic>
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

  // The queues that take mail from now on (a reload); mail already queued stays where it is.
  void replace(const std::vector<Queue*>& queues);

  // nullptr when no queue takes the domain (there is no general queue).
  [[nodiscard]] Queue* route(std::string_view domain) const;

  // Submits the message's jobs; returns the queues that received one (for backpressure).
  std::vector<Queue*> dispatch(const std::shared_ptr<const Message>& message,
                               std::vector<Recipient> recipients) const;

 private:
  struct Table {
    explicit Table(const std::vector<Queue*>& queues);
    [[nodiscard]] Queue* route(std::string_view domain) const;
    std::unordered_map<std::string, Queue*> exact;
    std::unordered_map<std::string, Queue*> suffix;  // "big.test" for "*.big.test"
    Queue* general = nullptr;
  };

  std::atomic<std::shared_ptr<const Table>> table_;
};

}  // namespace mma::routing
