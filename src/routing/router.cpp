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
  const auto table = table_.load(std::memory_order_acquire);
  // `cfg`: one snapshot of the queue's settings for all of a message's jobs there.
  const auto submit = [&message](Queue* q, const config::QueueSection& cfg, std::string destination,
                                 std::vector<Recipient> rcpts) {
    Job job;
    job.message = message;
    job.destination = std::move(destination);
    job.recipients = std::move(rcpts);
    if (cfg.max_size != 0 && message->body->size > cfg.max_size) {
      q->finish_unattempted(
          job, Outcome::Bounced,
          smtp::make_reply(552, "5.3.4", "Message too big for queue " + cfg.name));
      return;
    }
    q->submit(std::move(job));
  };
  if (recipients.size() == 1) {
    // One recipient, as most bulk mail has: one job, its recipient moved, nothing grouped.
    Queue* q = table->route(recipients[0].domain());
    if (q == nullptr) return {};
    std::string dest = q->destination_for(recipients[0].domain());
    submit(q, *q->config(), std::move(dest), std::move(recipients));
    return {q};
  }
  std::vector<Group> groups;
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
    const auto cfg = g.queue->config();
    const std::size_t batch = cfg->batch_size;
    for (std::size_t i = 0; i < g.recipients.size(); i += batch) {
      const std::size_t end = std::min(g.recipients.size(), i + batch);
      std::vector<Recipient> part(
          std::make_move_iterator(g.recipients.begin() + static_cast<std::ptrdiff_t>(i)),
          std::make_move_iterator(g.recipients.begin() + static_cast<std::ptrdiff_t>(end)));
      submit(g.queue, *cfg, g.destination, std::move(part));
    }
    if (std::find(touched.begin(), touched.end(), g.queue) == touched.end())
      touched.push_back(g.queue);
  }
  return touched;
}

}  // namespace mma::routing
