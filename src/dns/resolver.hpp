// dns/resolver: asks DNS one question and returns the answer with its TTL (RFC 1035).
//
// An interface with two implementations (STYLE.md §6): UnboundResolver, libunbound on the event
// loop, for the real thing; ZoneResolver, answers from an in-memory zone, for unit tests.
// A query never throws: errors are part of the answer.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "net/asio.hpp"

namespace mma::dns {

enum class RrType : std::uint16_t { A = 1, Mx = 15, Txt = 16, Aaaa = 28 };

struct Answer {
  enum class Status : std::uint8_t {
    Ok,        // records in `rdata`
    NoData,    // the name exists, not this type
    NxDomain,  // the name does not exist
    Failed,    // SERVFAIL, timeout, refused, bogus DNSSEC: try again later
  };
  Status status = Status::Failed;
  std::vector<std::string> rdata;  // raw RDATA, in wire format
  std::uint32_t ttl = 0;
  bool secure = false;  // DNSSEC-validated (for DANE, later)
  std::string error;    // why it failed
};

class Resolver {
 public:
  virtual ~Resolver() = default;
  // Resumes on the caller's executor.
  virtual net::Task<Answer> query(std::string name, RrType type) = 0;
};

// Answers from a fixed zone: {name, type} -> answer. Names are lower-case, without the final dot.
class ZoneResolver final : public Resolver {
 public:
  void add(std::string name, RrType type, Answer answer) {
    zone_[{std::move(name), type}] = std::move(answer);
  }
  net::Task<Answer> query(std::string name, RrType type) override;
  [[nodiscard]] int queries() const { return queries_; }
  // Answers only after this long, as a real server would (to see queries overlap).
  std::chrono::milliseconds delay{0};

 private:
  std::map<std::pair<std::string, RrType>, Answer> zone_;
  int queries_ = 0;
};

// RDATA builders and readers (RFC 1035 §3.3.9, §3.4.1; RFC 3596).
std::string mx_rdata(std::uint16_t preference, const std::string& exchange);
bool parse_mx_rdata(const std::string& rdata, std::uint16_t& preference, std::string& exchange);

}  // namespace mma::dns
