#include "dns/mx_cache.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <optional>

namespace mma::dns {
namespace {

using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;

std::string ip_text(const std::string& rdata) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (rdata.size() == 4) inet_ntop(AF_INET, rdata.data(), buf, sizeof buf);
  if (rdata.size() == 16) inet_ntop(AF_INET6, rdata.data(), buf, sizeof buf);
  return buf;
}

// Puts `value` at `key` as the most recent of `map` (whose entries are {value, lru position}),
// then evicts the least recently used beyond `capacity`; returns how many it evicted.
template <class Map, class Value>
std::size_t lru_put(Map& map, std::list<std::string>& lru, const std::string& key, Value value,
                    std::size_t capacity) {
  if (auto it = map.find(key); it != map.end()) {
    lru.erase(it->second.lru);
    map.erase(it);
  }
  lru.push_front(key);
  map.emplace(key, typename Map::mapped_type{std::move(value), lru.begin()});
  std::size_t evicted = 0;
  for (; map.size() > capacity; ++evicted) {
    map.erase(lru.back());
    lru.pop_back();
  }
  return evicted;
}

}  // namespace

MxCache::MxCache(Resolver& resolver, MxCacheOptions opts) : resolver_(resolver), opts_(opts) {}

MxCacheStats MxCache::stats() const {
  std::lock_guard lock(mu_);
  MxCacheStats s = stats_;
  s.size = entries_.size();
  return s;
}

void MxCache::store(const std::string& domain, const RouteRef& route) {
  stats_.evicted += lru_put(entries_, lru_, domain, route, opts_.capacity);
}

RouteRef MxCache::peek(const std::string& domain) const {
  std::lock_guard lock(mu_);
  const auto it = entries_.find(domain);
  if (it == entries_.end() || it->second.route->expires <= Clock::now()) return nullptr;
  return it->second.route;
}

net::Task<RouteRef> MxCache::route(std::string domain) {
  std::shared_ptr<net::Wakeup> wait;
  {
    std::lock_guard lock(mu_);
    if (auto it = entries_.find(domain);
        it != entries_.end() && it->second.route->expires > Clock::now()) {
      ++stats_.hits;
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      co_return it->second.route;
    }
    if (auto f = in_flight_.find(domain); f != in_flight_.end()) {
      // Someone is asking already: wait for that answer instead of asking again.
      wait = std::make_shared<net::Wakeup>(co_await asio::this_coro::executor);
      f->second.push_back(wait);
      ++stats_.merged;
    } else {
      in_flight_.emplace(domain, std::vector<std::shared_ptr<net::Wakeup>>{});
      ++stats_.misses;
    }
  }
  if (wait) {
    co_await wait->wait(std::chrono::steady_clock::duration::max());
    std::lock_guard lock(mu_);
    if (auto it = entries_.find(domain); it != entries_.end()) co_return it->second.route;
    // Evicted already (a tiny cache under load): ask ourselves.
  }
  RouteRef r;
  {
    const InFlightRelease release{*this, in_flight_, domain, true};
    try {
      r = co_await resolve(domain);
    } catch (const std::exception& e) {
      auto failed = std::make_shared<Route>();
      failed->status = Route::Status::Temporary;
      failed->error =
          smtp::make_reply(451, "4.4.3", "DNS look-up of " + domain + " failed: " + e.what());
      failed->expires = Clock::now() + opts_.failure_ttl;
      r = failed;
    }
    std::lock_guard lock(mu_);
    store(domain, r);
  }
  co_return r;
}

MxCache::InFlightRelease::~InFlightRelease() {
  if (!active) return;
  std::vector<std::shared_ptr<net::Wakeup>> waiters;
  {
    std::lock_guard lock(cache.mu_);
    if (auto f = map.find(name); f != map.end()) {
      waiters.swap(f->second);
      map.erase(f);
    }
  }
  for (auto& w : waiters) w->notify();
}

net::Task<MxCache::HostAddresses> MxCache::ask_addresses(const std::string& name) {
  HostAddresses h;
  const auto now = Clock::now();
  std::uint32_t ttl = 86400;
  try {
    Answer a, aaaa;
    if (opts_.ipv6) {
      std::tie(a, aaaa) =
          co_await (resolver_.query(name, RrType::A) && resolver_.query(name, RrType::Aaaa));
    } else {
      a = co_await resolver_.query(name, RrType::A);
      aaaa.status = Answer::Status::NoData;
    }
    for (const Answer* ans : {&a, &aaaa}) {
      if (ans->status == Answer::Status::Ok) {
        ttl = std::min(ttl, ans->ttl);
        for (const auto& rd : ans->rdata) {
          std::string ip = ip_text(rd);
          if (!ip.empty()) h.ips.push_back(std::move(ip));
        }
      }
    }
    // The worst of the two tells why there is no address.
    if (a.status == Answer::Status::Failed || aaaa.status == Answer::Status::Failed) {
      h.status = Answer::Status::Failed;
      h.error = a.status == Answer::Status::Failed ? a.error : aaaa.error;
    } else if (a.status == Answer::Status::NxDomain) {
      h.status = Answer::Status::NxDomain;
    } else {
      h.status = h.ips.empty() ? Answer::Status::NoData : Answer::Status::Ok;
    }
  } catch (const std::exception& e) {
    h.ips.clear();
    h.status = Answer::Status::Failed;
    h.error = e.what();
  }
  // A failure, kept briefly, still answers the exchanger's other domains asking at once.
  h.expires = now + (h.status == Answer::Status::Failed ? opts_.failure_ttl
                     : h.status == Answer::Status::Ok
                         ? std::clamp(std::chrono::milliseconds(std::int64_t{ttl} * 1000),
                                      opts_.min_ttl, opts_.max_ttl)
                         : opts_.negative_ttl);
  co_return h;
}

void MxCache::store_host(const std::string& name, HostAddresses h) {
  lru_put(hosts_, hosts_lru_, name, std::move(h), opts_.capacity);
}

net::Task<void> MxCache::addresses(const std::string& name, std::vector<std::string>& out,
                                   std::uint32_t& ttl, Answer::Status& status, std::string& error) {
  const asio::any_io_executor ex = co_await asio::this_coro::executor;
  std::optional<HostAddresses> cached;
  std::shared_ptr<net::Wakeup> wait;
  bool asking = false;
  {
    std::lock_guard lock(mu_);
    if (auto it = hosts_.find(name);
        it != hosts_.end() && it->second.addresses.expires > Clock::now()) {
      ++stats_.host_hits;
      hosts_lru_.splice(hosts_lru_.begin(), hosts_lru_, it->second.lru);
      cached = it->second.addresses;
    } else if (auto f = hosts_in_flight_.find(name); f != hosts_in_flight_.end()) {
      // Another domain with this exchanger is asking already: its answer serves both.
      ++stats_.host_hits;
      wait = std::make_shared<net::Wakeup>(ex);
      f->second.push_back(wait);
    } else {
      hosts_in_flight_.emplace(name, std::vector<std::shared_ptr<net::Wakeup>>{});
      asking = true;
    }
  }
  if (wait) {
    co_await wait->wait(std::chrono::steady_clock::duration::max());
    std::lock_guard lock(mu_);
    if (auto it = hosts_.find(name); it != hosts_.end()) cached = it->second.addresses;
  }
  if (!cached) {
    // Not asked for before, or evicted as we waited: ask (and tell the others, see the type).
    const InFlightRelease release{*this, hosts_in_flight_, name, asking};
    cached = co_await ask_addresses(name);
    std::lock_guard lock(mu_);
    store_host(name, *cached);
  }
  const auto left =
      std::chrono::duration_cast<std::chrono::seconds>(cached->expires - Clock::now());
  if (cached->status == Answer::Status::Ok)
    ttl = std::min<std::uint32_t>(
        ttl, static_cast<std::uint32_t>(std::max<std::int64_t>(left.count(), 0)));
  for (const auto& ip : cached->ips) out.push_back(ip);
  status = cached->status;
  error = cached->error;
}

net::Task<RouteRef> MxCache::resolve(const std::string& domain) {
  auto r = std::make_shared<Route>();
  const auto now = Clock::now();
  auto clamp = [this](std::uint32_t ttl_s) {
    return std::clamp(std::chrono::milliseconds(std::int64_t{ttl_s} * 1000), opts_.min_ttl,
                      opts_.max_ttl);
  };
  auto fail = [&](Route::Status st, int code, const char* enhanced, const std::string& text,
                  std::chrono::milliseconds ttl) {
    r->status = st;
    r->error = smtp::make_reply(code, enhanced, text);
    r->expires = now + ttl;
    return r;
  };
  if (!domain.empty() && domain.front() == '[') {
    // An address literal (RFC 5321 §4.1.3): no DNS.
    std::string ip = domain.substr(1, domain.size() - 2);
    if (ip.rfind("IPv6:", 0) == 0 || ip.rfind("ipv6:", 0) == 0) ip = ip.substr(5);
    r->status = Route::Status::Ok;
    r->hosts.push_back({ip, config::Endpoint{config::Endpoint::Kind::Tcp, ip, opts_.port, {}}, 0});
    r->expires = now + opts_.max_ttl;
    settle(*r);
    co_return r;
  }
  const Answer mx = co_await resolver_.query(domain, RrType::Mx);
  std::vector<std::pair<std::uint16_t, std::string>> exchangers;
  std::uint32_t ttl = mx.ttl;
  switch (mx.status) {
    case Answer::Status::NxDomain:
      co_return fail(Route::Status::Permanent, 550, "5.1.2",
                     "Domain " + domain + " does not exist (DNS NXDOMAIN)", opts_.negative_ttl);
    case Answer::Status::Failed:
      co_return fail(Route::Status::Temporary, 451, "4.4.3",
                     "DNS look-up of MX for " + domain + " failed: " + mx.error, opts_.failure_ttl);
    case Answer::Status::NoData:
      r->implicit_mx = true;  // RFC 5321 §5.1: the domain itself, at preference 0
      exchangers.emplace_back(0, domain);
      ttl = 86400;
      break;
    case Answer::Status::Ok:
      for (const auto& rd : mx.rdata) {
        std::uint16_t pref = 0;
        std::string name;
        if (!parse_mx_rdata(rd, pref, name)) continue;
        if (name.empty()) {
          // RFC 7505: a null MX ("0 .") says the domain accepts no mail at all.
          co_return fail(Route::Status::Permanent, 556, "5.1.10",
                         "Domain " + domain + " does not accept mail (null MX, RFC 7505)",
                         opts_.negative_ttl);
        }
        exchangers.emplace_back(pref, std::move(name));
      }
      if (exchangers.empty()) {
        co_return fail(Route::Status::Temporary, 451, "4.4.3",
                       "Unreadable MX records for " + domain, opts_.failure_ttl);
      }
      break;
  }
  // Preference order; equal preferences shuffled to spread the load (RFC 5321 §5.1).
  std::stable_sort(exchangers.begin(), exchangers.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  {
    std::lock_guard lock(mu_);
    for (auto it = exchangers.begin(); it != exchangers.end();) {
      auto end =
          std::find_if(it, exchangers.end(), [&](const auto& e) { return e.first != it->first; });
      std::shuffle(it, end, rng_);
      it = end;
    }
  }
  if (exchangers.size() > opts_.mx_limit) exchangers.resize(opts_.mx_limit);
  std::string last_error;
  bool any_temporary = false;
  for (const auto& [pref, name] : exchangers) {
    std::vector<std::string> ips;
    Answer::Status st = Answer::Status::Ok;
    std::string error;
    co_await addresses(name, ips, ttl, st, error);
    if (st == Answer::Status::Failed) {
      any_temporary = true;
      last_error = "address of " + name + ": " + error;
    } else if (ips.empty()) {
      last_error = name + " has no address";
    }
    for (auto& ip : ips)
      r->hosts.push_back(
          {name, config::Endpoint{config::Endpoint::Kind::Tcp, ip, opts_.port, {}}, pref});
  }
  if (r->hosts.empty()) {
    if (r->implicit_mx && !any_temporary) {
      co_return fail(Route::Status::Permanent, 550, "5.1.2",
                     "Domain " + domain + " has no MX and no address", opts_.negative_ttl);
    }
    co_return fail(Route::Status::Temporary, 451, "4.4.3",
                   "No address for the mail hosts of " + domain + ": " + last_error,
                   opts_.failure_ttl);
  }
  r->status = Route::Status::Ok;
  r->expires = now + clamp(ttl);
  // An exchanger left out for a failed look-up is asked for again soon, not at the TTL.
  if (any_temporary) r->expires = std::min(r->expires, now + opts_.failure_ttl);
  settle(*r);
  co_return r;
}

}  // namespace mma::dns
