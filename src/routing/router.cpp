#include "routing/router.hpp"

#include <algorithm>

namespace mma::routing {

Router::Router(const std::vector<Queue*>& queues) {
  for (Queue* q : queues) {
    if (q->config().general()) general_ = q;
    for (const std::string& d : q->config().domains) {
      if (d.starts_with("*.")) {
        suffix_.emplace(d.substr(2), q);
      } else {
        exact_.emplace(d, q);
      }
    }
  }
}

Queue* Router::route(std::string_view domain) const {
  const std::string key(domain);
  if (auto it = exact_.find(key); it != exact_.end()) return it->second;
  if (!suffix_.empty()) {
    // The longest matching suffix wins: "*.a.big.test" before "*.big.test".
    for (std::size_t dot = key.find('.'); dot != std::string::npos; dot = key.find('.', dot + 1)) {
      if (auto it = suffix_.find(key.substr(dot + 1)); it != suffix_.end()) return it->second;
    }
  }
  return general_;
}

std::vector<Queue*> Router::dispatch(const std::shared_ptr<const Message>& message,
                                     std::vector<Recipient> recipients) const {
  // Group by queue, keeping the composer's order within each.
  std::vector<std::pair<Queue*, std::vector<Recipient>>> groups;
  for (Recipient& r : recipients) {
    Queue* q = route(r.domain());
    if (q == nullptr) continue;  // refused at RCPT time; cannot happen here
    auto it =
        std::find_if(groups.begin(), groups.end(), [q](const auto& g) { return g.first == q; });
    if (it == groups.end()) {
      groups.emplace_back(q, std::vector<Recipient>{});
      it = groups.end() - 1;
    }
    it->second.push_back(std::move(r));
  }
  std::vector<Queue*> touched;
  for (auto& [q, rcpts] : groups) {
    const auto& cfg = q->config();
    const std::size_t batch = cfg.batch_size;
    for (std::size_t i = 0; i < rcpts.size(); i += batch) {
      Job job;
      job.message = message;
      const std::size_t end = std::min(rcpts.size(), i + batch);
      job.recipients.assign(
          std::make_move_iterator(rcpts.begin() + static_cast<std::ptrdiff_t>(i)),
          std::make_move_iterator(rcpts.begin() + static_cast<std::ptrdiff_t>(end)));
      if (cfg.max_size != 0 && message->body->size > cfg.max_size) {
        q->finish_unattempted(
            job, Outcome::Bounced,
            smtp::make_reply(552, "5.3.4", "Message too big for queue " + cfg.name));
        continue;
      }
      q->submit(std::move(job));
    }
    touched.push_back(q);
  }
  return touched;
}

}  // namespace mma::routing
