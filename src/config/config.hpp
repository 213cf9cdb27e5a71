// config/config: the typed configuration of `mma serve`, loaded from TOML.
//
// Every key is declared once in params.cpp with its default and its documentation; the
// loader refuses keys it does not know, and every error names the file, line and key.
// docs/CONFIG.md is generated from the same table (`mma config-reference`).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "config/cidr.hpp"
#include "config/endpoint.hpp"

namespace mma::config {

using Duration = std::chrono::milliseconds;

enum class Protocol : unsigned char { Smtp, Lmtp };
enum class AckMode : unsigned char { Received, Spooled, Delivered };

struct ServerSection {
  std::string hostname;  // banner, EHLO and Received: headers
  unsigned threads = 0;  // event-loop threads; 0: one per core
  std::string accounting_log;
  Duration stats_interval{60'000};
  Duration shutdown_grace{30'000};
  std::string user;  // run as this user once the listeners are bound; empty: stay as started
  std::uint64_t memory_body_limit = 1ull << 20;  // larger bodies go to a file; 0: never
  std::string body_dir;  // where, without a spool; empty: a private temporary directory
};

struct ListenerSection {
  Endpoint address;
  Protocol protocol = Protocol::Smtp;
  AckMode ack = AckMode::Received;
  std::vector<Cidr> allow;
  std::size_t max_connections = 1000;
  Duration idle_timeout{300'000};
  std::uint64_t max_message_size = 64ull << 20;
  std::size_t max_recipients = 1000;
  std::size_t max_errors = 20;
  bool chunking = true;              // offer CHUNKING (RFC 3030, BDAT) over SMTP
  std::uint32_t socket_mode = 0660;  // unix sockets
  std::string hostname;
  int line = 0;  // where it was declared, for messages
  friend bool operator==(const ListenerSection&, const ListenerSection&) = default;
};

// RFC 5321 §4.5.3.2 gives the client-side defaults.
struct Timeouts {
  Duration connect{30'000};
  Duration banner{300'000};      // the 220 greeting, and EHLO/HELO
  Duration command{300'000};     // MAIL, RCPT, RSET, QUIT
  Duration data{120'000};        // DATA's 354, and each block of content written
  Duration data_done{600'000};   // the reply after the final "."
  Duration idle{5'000};          // an unused connection is closed after this
  Duration deliver{86'400'000};  // a recipient still undelivered after this has failed
  friend bool operator==(const Timeouts&, const Timeouts&) = default;
};

struct DeliverySection {
  std::uint16_t port = 25;
  std::string helo_name;
  Timeouts timeouts;
};

struct SpoolSection {
  std::string path;  // empty: no spool
  bool sync = true;
  std::uint64_t min_free = 128ull << 20;
  friend bool operator==(const SpoolSection&, const SpoolSection&) = default;
};

struct DnsSection {
  std::vector<std::string> servers;  // "ip" or "ip:port"; empty: /etc/resolv.conf
  Duration timeout{10'000};
  Duration min_ttl{60'000};
  Duration max_ttl{86'400'000};
  Duration negative_ttl{60'000};
  Duration failure_ttl{5'000};
  std::size_t cache_size = 100'000;
  bool ipv6 = true;
  friend bool operator==(const DnsSection&, const DnsSection&) = default;
};

enum class TlsPolicy : unsigned char { Off, Opportunistic, Required };

struct QueueSection {
  std::string name;
  std::vector<std::string> domains;  // "example.com" or "*.example.com"; empty: the general queue
  std::vector<Endpoint> mx;          // static hosts, tried as equal-preference MX; empty: DNS
  bool resolve = false;              // resolve the first domain's MX at start and every mx_ttl
  Duration mx_ttl{3'600'000};
  std::size_t mx_limit = 5;
  std::size_t connection_cache = 5;       // idle connections kept to this many destinations
  unsigned destination_concurrency = 20;  // connections per destination (DNS-routed queues)
  Duration move_after{200};               // for its servers' busy connections
  Duration pipeline_within{50};           // a server this quick gets pipelined transactions
  unsigned max_fail = 5;                  // consecutive connection failures: destination down
  Duration down_time{60'000};             // how long a destination stays down
  std::string retry;                      // the queue that takes what this one cannot deliver
  TlsPolicy tls = TlsPolicy::Opportunistic;
  double advice_share = 0.2;       // general queue: a domain above this share ...
  Duration advice_window{60'000};  // ... over this window ...
  std::size_t advice_min = 1000;   // ... and at least this many jobs: advice is logged
  unsigned init_mta = 0;
  unsigned max_mta = 100;
  std::size_t max_queue = 0;
  std::size_t max_jobs = 1000;
  std::size_t max_pipelined = 8;  // transactions written at once to a quick server
  std::size_t batch_size = 100;
  bool chunking = true;  // send by BDAT (RFC 3030) where CHUNKING is offered
  unsigned max_retries = 10;
  Duration retry_delay{1'000};
  Duration retry_delay_max{300'000};
  std::uint64_t max_size = 0;
  std::size_t throttle = 100'000;  // waiting jobs beyond which inbound sessions are held
  Timeouts timeouts;
  int line = 0;

  [[nodiscard]] bool general() const { return domains.empty(); }
  // Each recipient domain is its own destination, found through DNS.
  [[nodiscard]] bool per_domain() const { return mx.empty() && !resolve; }
  friend bool operator==(const QueueSection&, const QueueSection&) = default;
};

struct Config {
  std::string path;
  ServerSection server;
  std::vector<ListenerSection> listeners;
  DeliverySection delivery;
  DnsSection dns;
  SpoolSection spool;
  std::vector<QueueSection> queues;
};

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws ConfigError: "FILE:LINE: KEY: what is wrong".
Config load_config(const std::string& path);
Config parse_config(std::string_view toml, const std::string& path);

// Markdown reference of every key (docs/CONFIG.md).
std::string config_reference();

}  // namespace mma::config
