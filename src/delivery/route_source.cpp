#include "delivery/route_source.hpp"

#include <spdlog/spdlog.h>

namespace mma::delivery {

dns::RouteRef RouteSource::static_route(const config::QueueSection& queue) {
  auto r = std::make_shared<dns::Route>();
  r->status = dns::Route::Status::Ok;
  for (const auto& ep : queue.mx) r->hosts.push_back({ep.to_string(), ep, 0});
  r->expires = std::chrono::steady_clock::time_point::max();
  dns::settle(*r);
  return r;
}

void RouteSource::watch(const config::QueueSection& queue, asio::io_context& loop) {
  unsigned generation = 0;
  {
    std::lock_guard lock(mu_);
    generation = ++generation_[queue.name];
  }
  asio::co_spawn(loop, refresh(std::make_shared<const config::QueueSection>(queue), generation),
                 asio::detached);
}

void RouteSource::forget(const std::string& queue) {
  std::lock_guard lock(mu_);
  fixed_.erase(queue);
  resolved_.erase(queue);
  ++generation_[queue];  // a running refresh of its old settings ends
}

net::Task<void> RouteSource::refresh(std::shared_ptr<const config::QueueSection> settings,
                                     unsigned generation) {
  const config::QueueSection& queue = *settings;
  const std::string& domain = queue.domains.front();
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    dns::RouteRef r;
    if (cache_ != nullptr)
      r = co_await cache_->resolve(domain);  // not in a conditional expression: GCC 12
    bool ok = r && r->status == dns::Route::Status::Ok;
    bool superseded = false;
    {
      std::lock_guard lock(mu_);
      superseded = generation_[queue.name] != generation;  // a reload changed the queue
    }
    if (superseded) co_return;
    if (r) {
      std::lock_guard lock(mu_);
      // A failed refresh keeps the last good hosts: better stale than none.
      auto& slot = resolved_[queue.name];
      if (ok || !slot) slot = r;
    }
    if (ok) {
      spdlog::info("queue {}: {} resolves to {} host(s)", queue.name, domain, r->hosts.size());
    } else {
      spdlog::warn("queue {}: could not resolve {}: {}", queue.name, domain,
                   r ? r->error.summary() : "no resolver");
    }
    timer.expires_after(ok ? queue.mx_ttl
                           : std::min<config::Duration>(queue.mx_ttl, std::chrono::seconds(30)));
    auto [ec] = co_await timer.async_wait(net::use_tuple);
    if (ec) co_return;
  }
}

net::Task<dns::RouteRef> RouteSource::route(const config::QueueSection& queue,
                                            const std::string& destination) {
  // (No co_return inside the locked scopes: the result is taken out first.)
  dns::RouteRef known;
  {
    std::lock_guard lock(mu_);
    if (!queue.mx.empty()) {
      auto& r = fixed_[queue.name];
      if (!r) r = static_route(queue);
      known = r;
    } else if (queue.resolve) {
      auto it = resolved_.find(queue.name);
      if (it != resolved_.end()) known = it->second;
    }
  }
  if (known) co_return known;
  if (cache_ != nullptr) {
    // A resolve queue not resolved yet (its first look-up is under way) asks the cache directly.
    const std::string& domain = queue.resolve ? queue.domains.front() : destination;
    dns::RouteRef r = co_await cache_->route(domain);
    co_return r;
  }
  auto r = std::make_shared<dns::Route>();
  r->status = dns::Route::Status::Temporary;
  r->error =
      smtp::make_reply(451, "4.4.3", "No DNS resolver is configured for queue " + queue.name);
  co_return r;
}

void RouteSource::look_up(const std::string& domain, asio::io_context& loop,
                          std::function<void()> done) {
  std::string name = domain;  // copied into the coroutine's frame as lvalues (GCC 12)
  asio::co_spawn(loop, look_up_then(cache_, std::move(name), std::move(done)), asio::detached);
}

net::Task<void> RouteSource::look_up_then(dns::MxCache* cache, std::string domain,
                                          std::function<void()> done) {
  try {
    const dns::RouteRef r = co_await cache->route(domain);
    static_cast<void>(r);  // the cache keeps it; the queue asks servers_of() again
  } catch (const std::exception& e) {
    spdlog::warn("looking up {} ahead: {}", domain, e.what());
  }
  done();  // whatever happened: the held jobs must not wait for ever
}

std::shared_ptr<const std::vector<std::string>> RouteSource::servers_of(
    const std::string& domain) const {
  if (cache_ == nullptr) return nullptr;
  dns::RouteRef r = cache_->peek(domain);
  if (!r) return nullptr;
  const std::vector<std::string>* best = &r->best;
  return {std::move(r), best};  // shares the route's ownership: no copy per job
}

}  // namespace mma::delivery
