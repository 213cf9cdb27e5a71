// dns/route: where mail for a destination goes: the hosts to try, in order, or why there are
// none (RFC 5321 §5.1). Built from MX records by MxCache, or from a queue's static `mx`.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/endpoint.hpp"
#include "smtp/reply.hpp"

namespace mma::dns {

struct Route {
  enum class Status : unsigned char {
    Ok,         // hosts to try
    Permanent,  // the domain has no mail service: bounce (NXDOMAIN 5.1.2, null MX 5.1.10)
    Temporary,  // DNS failed for now: defer
  };
  Status status = Status::Temporary;
  // In the order to try: MX preference, equal preferences shuffled; each address of an
  // exchanger is its own entry (`name` says which exchanger).
  struct Host {
    std::string name;
    config::Endpoint endpoint;
    std::uint16_t preference = 0;  // the MX preference (static and implicit hosts: 0)
  };
  std::vector<Host> hosts;
  bool implicit_mx = false;  // no MX record: the domain's own address (RFC 5321 §5.1)
  smtp::Reply error;         // for Permanent and Temporary
  std::chrono::steady_clock::time_point expires{};
  // best_servers(*this), kept by whoever completes the route (settle()): the queue asks for it
  // for each job it places, and building it costs a string per host.
  std::vector<std::string> best;
};

using RouteRef = std::shared_ptr<const Route>;

// A server's identity for sharing connections: the exchanger's name (the TLS identity) and
// the address connected to.
inline std::string server_key(const Route::Host& h) {
  return h.name + " " + h.endpoint.to_string();
}

// The servers of a route's best preference (RFC 5321 §5.1), any of which may take its mail.
inline std::vector<std::string> best_servers(const Route& r) {
  std::vector<std::string> out;
  if (r.status != Route::Status::Ok) return out;
  for (const auto& h : r.hosts) {
    if (h.preference != r.hosts.front().preference) break;
    out.push_back(server_key(h));
  }
  return out;
}

// Called once a route's hosts and status are final, before it is shared.
inline void settle(Route& r) {
  r.best = best_servers(r);
}

}  // namespace mma::dns
