// delivery/route_source: where a worker connects for a destination of its queue.
//
// A queue with `mx` has fixed hosts (no DNS: patent §C, "will not require a DNS look-up");
// one with `resolve = true` looks its first domain up at start and every mx_ttl; any other
// resolves each recipient domain through the MxCache.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "config/config.hpp"
#include "dns/mx_cache.hpp"
#include "dns/route.hpp"
#include "net/asio.hpp"
#include "net/event_loops.hpp"

namespace mma::delivery {

class RouteSource {
 public:
  // `cache` may be null when no queue needs DNS.
  explicit RouteSource(dns::MxCache* cache) : cache_(cache) {}

  // Starts the periodic look-up of a `resolve = true` queue, on `loop`.
  void watch(const config::QueueSection& queue, asio::io_context& loop);
  // The queue's hosts changed (a reload): forget what is known, stop watching the old ones.
  void forget(const std::string& queue);

  net::Task<dns::RouteRef> route(const config::QueueSection& queue, const std::string& destination);
  // For a DNS-routed queue: the best servers of a destination domain, if the MX cache knows
  // them now; null otherwise. Never waits.
  [[nodiscard]] std::shared_ptr<const std::vector<std::string>> servers_of(
      const std::string& domain) const;
  // Whether look_up() can do anything: a resolver is configured.
  [[nodiscard]] bool resolves() const { return cache_ != nullptr; }
  // Looks `domain` up into the MX cache on `loop`, then calls `done` there (also on failure).
  void look_up(const std::string& domain, asio::io_context& loop, std::function<void()> done);

 private:
  net::Task<void> refresh(std::shared_ptr<const config::QueueSection> settings,
                          unsigned generation);
  static dns::RouteRef static_route(const config::QueueSection& queue);
  static net::Task<void> look_up_then(dns::MxCache* cache, std::string domain,
                                      std::function<void()> done);

  dns::MxCache* cache_;
  std::mutex mu_;
  std::unordered_map<std::string, dns::RouteRef> resolved_;  // by queue name
  std::unordered_map<std::string, dns::RouteRef> fixed_;     // by queue name
  std::unordered_map<std::string, unsigned> generation_;     // of each queue's watch
};

}  // namespace mma::delivery
