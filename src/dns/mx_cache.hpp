// dns/mx_cache: where a domain's mail goes, from MX and then A/AAAA records, cached for their
// TTL (the patent's DNS cache; DESIGN.md §8).
//
// MX in preference order, equal preferences shuffled (RFC 5321 §5.1); at most mx_limit
// exchangers; no MX: the domain's own addresses (implicit MX); null MX (RFC 7505) and NXDOMAIN:
// permanent; SERVFAIL and time-outs: temporary. Answers are kept for their TTL clamped to
// [min_ttl, max_ttl], negative ones briefly; the cache is bounded with LRU eviction; concurrent
// look-ups of one domain become one query (the patent's q_dnsip). The addresses of each mail
// exchanger are cached too, on their own TTL: a provider's MX hosts serve thousands of domains,
// and each new one then costs one query (its MX), not one per exchanger as well. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "dns/resolver.hpp"
#include "dns/route.hpp"
#include "net/asio.hpp"
#include "net/wakeup.hpp"

namespace mma::dns {

struct MxCacheOptions {
  std::uint16_t port = 25;  // of the remote MTAs
  std::size_t mx_limit = 5;
  std::chrono::milliseconds min_ttl{60'000};
  std::chrono::milliseconds max_ttl{86'400'000};
  std::chrono::milliseconds negative_ttl{60'000};  // NXDOMAIN, null MX
  std::chrono::milliseconds failure_ttl{5'000};    // SERVFAIL, time-outs: do not hammer
  std::size_t capacity = 100'000;                  // domains
  bool ipv6 = true;
};

struct MxCacheStats {
  std::uint64_t hits = 0, misses = 0, merged = 0, evicted = 0;
  std::uint64_t host_hits = 0;  // an exchanger's addresses found cached (or being asked for)
  std::size_t size = 0;
};

class MxCache {
 public:
  MxCache(Resolver& resolver, MxCacheOptions opts);

  // The route for `domain` (lower case). Resumes on the caller's executor.
  net::Task<RouteRef> route(std::string domain);
  [[nodiscard]] MxCacheStats stats() const;
  // The cached route for `domain` if there is a fresh one, without asking anybody; null if not.
  [[nodiscard]] RouteRef peek(const std::string& domain) const;

  // Exposed for queues with `resolve = true`: a look-up that bypasses the cache of domains (an
  // exchanger's addresses still come from theirs, within their TTL).
  net::Task<RouteRef> resolve(const std::string& domain);

 private:
  net::Task<void> addresses(const std::string& name, std::vector<std::string>& out,
                            std::uint32_t& ttl, Answer::Status& status, std::string& error);
  void store(const std::string& domain, const RouteRef& route);
  // One exchanger's A (and AAAA) answers, as addresses() reports them.
  struct HostAddresses {
    std::vector<std::string> ips;
    Answer::Status status = Answer::Status::Ok;
    std::string error;
    std::chrono::steady_clock::time_point expires;
  };
  net::Task<HostAddresses> ask_addresses(const std::string& name);
  void store_host(const std::string& name, HostAddresses h);

  using Waiters = std::unordered_map<std::string, std::vector<std::shared_ptr<net::Wakeup>>>;
  // Ends a look-up under way: erases `name` from `map` and wakes whoever waits on it, however
  // the asking coroutine ends (they find the answer stored, or ask themselves).
  struct InFlightRelease {
    MxCache& cache;
    Waiters& map;
    const std::string& name;
    bool active;
    ~InFlightRelease();
  };

  Resolver& resolver_;
  const MxCacheOptions opts_;
  mutable std::mutex mu_;
  struct Entry {
    RouteRef route;
    std::list<std::string>::iterator lru;
  };
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> lru_;  // most recent first
  Waiters in_flight_;
  struct HostEntry {
    HostAddresses addresses;
    std::list<std::string>::iterator lru;
  };
  std::unordered_map<std::string, HostEntry> hosts_;  // exchanger name -> its addresses
  std::list<std::string> hosts_lru_;                  // most recent first
  Waiters hosts_in_flight_;
  std::mt19937 rng_{std::random_device{}()};
  MxCacheStats stats_;
};

}  // namespace mma::dns
