// dns/unbound_resolver: DNS through libunbound, asynchronous on one event loop.
//
// libunbound answers with TTLs and DNSSEC status (needed later for DANE). Its context lives
// on one io_context: queries are posted there, its descriptor (ub_fd) is watched there and
// ub_process() runs there; each answer is handed back to the asking coroutine's own loop.
// Pitfalls handled here (../shared/STACK.md): loopback servers must be allowed, and the
// built-in "test." local zone removed so that test domains reach the test server.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "dns/resolver.hpp"

struct ub_ctx;

namespace mma::dns {

class UnboundResolver final : public Resolver {
 public:
  // `servers`: "ip" or "ip:port" to forward to; empty: /etc/resolv.conf, else full recursion.
  // Throws std::runtime_error when libunbound refuses the setup.
  UnboundResolver(asio::io_context& loop, const std::vector<std::string>& servers,
                  std::chrono::milliseconds timeout);
  ~UnboundResolver() override;
  UnboundResolver(const UnboundResolver&) = delete;
  UnboundResolver& operator=(const UnboundResolver&) = delete;

  net::Task<Answer> query(std::string name, RrType type) override;

  struct Pending;  // one query in flight (unbound_resolver.cpp)

 private:
  void watch();

  asio::io_context& loop_;
  ub_ctx* ctx_ = nullptr;
  asio::posix::stream_descriptor fd_;
  std::chrono::milliseconds timeout_;
};

}  // namespace mma::dns
