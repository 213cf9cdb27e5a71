#include "routing/router.hpp"

#include <algorithm>

namespace mma::routing {

Router::Table::Table(const std::vector<Queue*>& queues) {
  for (Queue* q : queues) {
    const auto cfg = q->config();
    if (cfg->general()) general = q;
    for (const std::string& d : cfg->domains) {
      if (d.starts_with("*.")) {
        suffix.emplace(d.substr(2), q);
      } else {
        exact.emplace(d, q);
      }
    }
  }
}

Queue* Router::Table::route(std::string_view domain) const {
  const std::string key(domain);
  if (auto it = exact.find(key); it != exact.end()) return it->second;
  if (!suffix.empty()) {
    // The longest matching suffix wins: "*.a.big.test" before "*.big.test".
    for (std::size_t dot = key.find('.'); dot != std::string::npos; dot = key.find('.', dot + 1)) {
      if (auto it = suffix.find(key.substr(dot + 1)); it != suffix.end()) return it->second;
    }
  }
  return general;
}

Router::Router(const std::vector<Queue*>& queues) : table_(std::make_shared<const Table>(queues)) {}

void Router::replace(const std::vector<Queue*>& queues) {
  table_.store(std::make_shared<const Table>(queues), std::memory_order_release);
}

Queue* Router::route(std::string_view domain) const {
  return table_.load(std::memory_order_acquire)->route(domain);
}

std::vector<Queue*> Router::dispatch(const std::shared_ptr<const Message>& message,
                                     std::vector<Recipient> recipients) const {
  // Group by queue and destination (a domain, in DNS-routed queues), keeping the composer's
  // order within each group.
  struct Group {
    Queue* queue;
    std::string destination;
    std::vector<Recipient> recipients;
  };
  std::vector<Group> groups;
  const auto table = table_.load(std::memory_order_acquire);
  for (Recipient& r : recipients) {
    Queue* q = table->route(r.domain());
    if (q == nullptr) continue;  // refused at RCPT time; cannot happen here
    std::string dest = q->destination_for(r.domain());
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const Group& g) { return g.queue == q && g.destination == dest; });
    if (it == groups.end()) {
      groups.push_back(Group{q, std::move(dest), {}});
      it = groups.end() - 1;
    }
    it->recipients.push_back(std::move(r));
  }
  std::vector<Queue*> touched;
  for (auto& g : groups) {
    const auto cfg_ptr = g.queue->config();
    const config::QueueSection& cfg = *cfg_ptr;
    const std::size_t batch = cfg.batch_size;
    for (std::size_t i = 0; i < g.recipients.size(); i += batch) {
      Job job;
      job.message = message;
      job.destination = g.destination;
      const std::size_t end = std::min(g.recipients.size(), i + batch);
      job.recipients.assign(
          std::make_move_iterator(g.recipients.begin() + static_cast<std::ptrdiff_t>(i)),
          std::make_move_iterator(g.recipients.begin() + static_cast<std::ptrdiff_t>(end)));
      if (cfg.max_size != 0 && message->body->size > cfg.max_size) {
        g.queue->finish_unattempted(
            job, Outcome::Bounced,
            smtp::make_reply(552, "5.3.4", "Message too big for queue " + cfg.name));
        continue;
      }
      g.queue->submit(std::move(job));
    }
    if (std::find(touched.begin(), touched.end(), g.queue) == touched.end())
      touched.push_back(g.queue);
  }
  return touched;
}

}  // namespace mma::routing
