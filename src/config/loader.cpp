// Reads TOML into Config. Every error names the file, the line and the key.
#include <pwd.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "config/config.hpp"
#include "config/params.hpp"
#include "config/units.hpp"
#include "smtp/address.hpp"

namespace mma::config {
namespace {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      cur[j] =
          std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string suggestion(std::string_view section, std::string_view key) {
  std::string best;
  std::size_t best_d = 3;
  for (const auto& p : all_params()) {
    if (p.section != section) continue;
    const std::size_t d = edit_distance(key, p.key);
    if (d < best_d) {
      best_d = d;
      best = std::string(p.key);
    }
  }
  return best.empty() ? std::string{} : " (did you mean '" + best + "'?)";
}

int line_of(const toml::node& n) {
  return static_cast<int>(n.source().begin.line);
}

// One TOML table of a known section: typed getters that remember which keys were read.
class TableReader {
 public:
  TableReader(const std::string& file, const toml::table& table, std::string_view section,
              std::string label)
      : file_(file), table_(table), section_(section), label_(std::move(label)) {}

  [[noreturn]] void fail_at(int line, std::string_view key, const std::string& msg) const {
    std::ostringstream s;
    s << file_ << ':' << line << ": key '" << key << "' in " << label_ << ": " << msg;
    throw ConfigError(s.str());
  }
  [[noreturn]] void fail(std::string_view key, const std::string& msg) const {
    const toml::node* n = table_.get(key);
    fail_at(n != nullptr ? line_of(*n) : line(), key, msg);
  }
  [[nodiscard]] int line() const { return line_of(table_); }

  const toml::node* get(std::string_view key) {
    seen_.insert(std::string(key));
    return table_.get(key);
  }

  std::string string(std::string_view key, std::string def) {
    const toml::node* n = get(key);
    if (n == nullptr) return def;
    if (!n->is_string()) fail(key, "expected a string");
    return n->value<std::string>().value();
  }

  std::string required_string(std::string_view key) {
    if (table_.get(key) == nullptr) fail(key, "is required");
    std::string s = string(key, {});
    if (s.empty()) fail(key, "must not be empty");
    return s;
  }

  template <class T>
  T integer(std::string_view key, T def, std::int64_t min, std::int64_t max) {
    const toml::node* n = get(key);
    if (n == nullptr) return def;
    const auto v = n->value<std::int64_t>();
    if (!n->is_integer() || !v || *v < min || *v > max) {
      fail(key, "expected an integer from " + std::to_string(min) + " to " + std::to_string(max));
    }
    return static_cast<T>(*v);
  }

  bool boolean(std::string_view key, bool def) {
    const toml::node* n = get(key);
    if (n == nullptr) return def;
    if (!n->is_boolean()) fail(key, "expected true or false");
    return *n->value<bool>();
  }

  double number(std::string_view key, double def, double min, double max) {
    const toml::node* n = get(key);
    if (n == nullptr) return def;
    const auto v = n->value<double>();
    if (!(n->is_floating_point() || n->is_integer()) || !v || *v < min || *v > max) {
      fail(key, "expected a number from " + std::to_string(min) + " to " + std::to_string(max));
    }
    return *v;
  }

  Duration duration(std::string_view key, Duration def) {
    const toml::node* n = get(key);
    if (n == nullptr) return def;
    if (n->is_integer()) {
      const auto v = *n->value<std::int64_t>();
      if (v < 0 || v > 100'000'000) fail(key, "expected a duration such as \"30s\"");
      return Duration(v * 1000);
    }
    if (n->is_string()) {
      if (auto d = parse_duration(*n->value<std::string>())) return *d;
    }
    fail(key, "expected a duration such as \"250ms\", \"30s\", \"5m\", \"1h\"");
  }

  std::uint64_t size(std::string_view key, std::uint64_t def) {
    const toml::node* n = get(key);
    if (n == nullptr) return def;
    if (n->is_integer()) {
      const auto v = *n->value<std::int64_t>();
      if (v < 0) fail(key, "expected a size such as \"10M\"");
      return static_cast<std::uint64_t>(v);
    }
    if (n->is_string()) {
      if (auto s = parse_size(*n->value<std::string>())) return *s;
    }
    fail(key, "expected a size such as 1048576, \"512K\", \"10M\", \"1G\"");
  }

  // A list of strings; each item's line is passed to `each` for precise messages.
  template <class F>
  void strings(std::string_view key, F&& each) {
    const toml::node* n = get(key);
    if (n == nullptr) return;
    const toml::array* arr = n->as_array();
    if (arr == nullptr) fail(key, "expected a list of strings");
    for (const toml::node& item : *arr) {
      if (!item.is_string()) fail_at(line_of(item), key, "expected a list of strings");
      each(*item.value<std::string>(), line_of(item));
    }
  }

  const toml::table* subtable(std::string_view key) {
    const toml::node* n = get(key);
    if (n == nullptr) return nullptr;
    if (!n->is_table()) fail(key, "expected a table");
    return n->as_table();
  }

  void check_unknown() const {
    for (auto&& [k, v] : table_) {
      const std::string key(k.str());
      if (seen_.count(key) == 0 || find_param(section_, key) == nullptr) {
        fail_at(static_cast<int>(k.source().begin.line), key,
                "is not a known setting" + suggestion(section_, key));
      }
    }
  }

 private:
  const std::string& file_;
  const toml::table& table_;
  std::string_view section_;
  std::string label_;
  std::set<std::string> seen_;
};

Timeouts read_timeouts(const std::string& file, const toml::table* t, const std::string& label,
                       Timeouts def) {
  if (t == nullptr) return def;
  TableReader r(file, *t, "timeouts", label + " timeouts");
  Timeouts out;
  out.connect = r.duration("connect", def.connect);
  out.banner = r.duration("banner", def.banner);
  out.command = r.duration("command", def.command);
  out.data = r.duration("data", def.data);
  out.data_done = r.duration("data_done", def.data_done);
  out.idle = r.duration("idle", def.idle);
  out.deliver = r.duration("deliver", def.deliver);
  for (auto [key, d] : {std::pair{"connect", out.connect},
                        {"banner", out.banner},
                        {"command", out.command},
                        {"data", out.data},
                        {"data_done", out.data_done},
                        {"deliver", out.deliver}}) {
    if (d.count() == 0) r.fail(key, "must be greater than 0");
  }
  r.check_unknown();
  return out;
}

std::string default_hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

void read_server(const std::string& file, const toml::table& t, ServerSection& s) {
  TableReader r(file, t, "server", "[server]");
  s.hostname = r.string("hostname", s.hostname);
  s.threads = r.integer<unsigned>("threads", 0, 0, 256);
  s.accounting_log = r.string("accounting_log", s.accounting_log);
  s.stats_interval = r.duration("stats_interval", s.stats_interval);
  s.shutdown_grace = r.duration("shutdown_grace", s.shutdown_grace);
  s.user = r.string("user", s.user);
  s.memory_body_limit = r.size("memory_body_limit", s.memory_body_limit);
  s.body_dir = r.string("body_dir", s.body_dir);
  if (!s.user.empty() && ::getpwnam(s.user.c_str()) == nullptr) r.fail("user", "no such user");
  r.check_unknown();
}

ListenerSection read_listener(const std::string& file, const toml::table& t, std::size_t index) {
  TableReader r(file, t, "listener", "[[listener]] #" + std::to_string(index + 1));
  ListenerSection l;
  l.line = r.line();
  std::string err;
  const std::string addr = r.required_string("address");
  auto ep = parse_endpoint(addr, 0, err);
  if (!ep) r.fail("address", err);
  l.address = *ep;
  const std::string proto = r.string("protocol", "smtp");
  if (proto == "smtp") {
    l.protocol = Protocol::Smtp;
  } else if (proto == "lmtp") {
    l.protocol = Protocol::Lmtp;
  } else {
    r.fail("protocol", "expected \"smtp\" or \"lmtp\", got \"" + proto + "\"");
  }
  const std::string ack = r.string("ack", "received");
  if (ack == "received") {
    l.ack = AckMode::Received;
  } else if (ack == "spooled") {
    l.ack = AckMode::Spooled;
  } else if (ack == "delivered") {
    l.ack = AckMode::Delivered;
  } else {
    r.fail("ack", "expected \"received\", \"spooled\" or \"delivered\", got \"" + ack + "\"");
  }
  bool allow_given = false;
  r.strings("allow", [&](const std::string& s, int line) {
    allow_given = true;
    std::string e;
    auto c = parse_cidr(s, e);
    if (!c) r.fail_at(line, "allow", e);
    if (c->matches_everything()) {
      r.fail_at(line, "allow",
                "'" + s + "' would make mma an open relay; list the composers' networks");
    }
    l.allow.push_back(*c);
  });
  if (!allow_given) {
    std::string e;
    l.allow.push_back(*parse_cidr("127.0.0.0/8", e));
    l.allow.push_back(*parse_cidr("::1/128", e));
  }
  l.max_connections = r.integer<std::size_t>("max_connections", l.max_connections, 1, 1'000'000);
  l.idle_timeout = r.duration("idle_timeout", l.idle_timeout);
  if (l.idle_timeout.count() == 0) r.fail("idle_timeout", "must be greater than 0");
  l.max_message_size = r.size("max_message_size", l.max_message_size);
  if (l.max_message_size < 1024) r.fail("max_message_size", "must be at least 1K");
  l.max_recipients = r.integer<std::size_t>("max_recipients", l.max_recipients, 100, 1'000'000);
  l.max_errors = r.integer<std::size_t>("max_errors", l.max_errors, 1, 10'000);
  l.chunking = r.boolean("chunking", l.chunking);
  const std::string mode = r.string("socket_mode", "0660");
  char* end = nullptr;
  const unsigned long m = std::strtoul(mode.c_str(), &end, 8);
  if (mode.empty() || *end != '\0' || m > 0777)
    r.fail("socket_mode", "expected an octal mode such as \"0660\"");
  l.socket_mode = static_cast<std::uint32_t>(m);
  l.hostname = r.string("hostname", "");
  r.check_unknown();
  return l;
}

void read_delivery(const std::string& file, const toml::table& t, DeliverySection& d) {
  TableReader r(file, t, "delivery", "[delivery]");
  d.port = r.integer<std::uint16_t>("port", d.port, 1, 65535);
  d.helo_name = r.string("helo_name", d.helo_name);
  d.timeouts = read_timeouts(file, r.subtable("timeouts"), "[delivery]", d.timeouts);
  r.check_unknown();
}

void read_dns(const std::string& file, const toml::table& t, DnsSection& d) {
  TableReader r(file, t, "dns", "[dns]");
  r.strings("servers", [&](const std::string& s, int line) {
    std::string e;
    auto ep = parse_endpoint(s, 53, e);
    std::array<std::uint8_t, 16> ip{};
    if (!ep || ep->kind != Endpoint::Kind::Tcp || !parse_ip(ep->host, ip)) {
      r.fail_at(line, "servers", "'" + s + "' is not \"ip\" or \"ip:port\"");
    }
    d.servers.push_back(ep->host.find(':') != std::string::npos
                            ? ep->host
                            : ep->host + ":" + std::to_string(ep->port));
  });
  d.timeout = r.duration("timeout", d.timeout);
  d.min_ttl = r.duration("min_ttl", d.min_ttl);
  d.max_ttl = r.duration("max_ttl", d.max_ttl);
  if (d.max_ttl < d.min_ttl) r.fail("max_ttl", "must not be less than min_ttl");
  d.negative_ttl = r.duration("negative_ttl", d.negative_ttl);
  d.failure_ttl = r.duration("failure_ttl", d.failure_ttl);
  d.cache_size = r.integer<std::size_t>("cache_size", d.cache_size, 1, 100'000'000);
  d.ipv6 = r.boolean("ipv6", d.ipv6);
  if (d.timeout.count() == 0) r.fail("timeout", "must be greater than 0");
  r.check_unknown();
}

void read_spool(const std::string& file, const toml::table& t, SpoolSection& s) {
  TableReader r(file, t, "spool", "[spool]");
  s.path = r.required_string("path");
  s.sync = r.boolean("sync", s.sync);
  s.min_free = r.size("min_free", s.min_free);
  r.check_unknown();
}

bool valid_domain_pattern(std::string_view d) {
  if (d.starts_with("*.")) d.remove_prefix(2);
  return !d.empty() && d[0] != '[' && smtp::parse_domain(d, false) == d.size();
}

QueueSection read_queue(const std::string& file, const toml::table& t,
                        const DeliverySection& delivery, std::size_t index) {
  QueueSection q;
  const toml::node* name_node = t.get("name");
  const std::string label = name_node != nullptr && name_node->is_string()
                                ? "[[queue]] \"" + *name_node->value<std::string>() + "\""
                                : "[[queue]] #" + std::to_string(index + 1);
  TableReader r(file, t, "queue", label);
  q.line = r.line();
  q.name = r.required_string("name");
  r.strings("domains", [&](const std::string& s, int line) {
    std::string d = s;
    smtp::ascii_lower(d);
    if (!valid_domain_pattern(d))
      r.fail_at(line, "domains", "'" + s + "' is not a domain or *.domain");
    q.domains.push_back(d);
  });
  if (r.get("domains") != nullptr && q.domains.empty()) {
    r.fail("domains", "must not be empty (omit it for the general queue)");
  }
  r.strings("mx", [&](const std::string& s, int line) {
    std::string e;
    auto ep = parse_endpoint(s, delivery.port, e, /*allow_program=*/true);
    if (!ep) r.fail_at(line, "mx", "'" + s + "': " + e);
    q.mx.push_back(*ep);
  });
  if (r.get("mx") != nullptr && q.mx.empty())
    r.fail("mx", "must not be empty (omit it to use DNS)");
  q.resolve = r.boolean("resolve", q.resolve);
  if (q.resolve && !q.mx.empty()) r.fail("resolve", "cannot be used with mx: the hosts are given");
  if (q.resolve && (q.domains.empty() || q.domains[0].starts_with("*."))) {
    r.fail("resolve", "needs the queue's first domain to be a plain domain, to resolve its MX");
  }
  q.mx_ttl = r.duration("mx_ttl", q.mx_ttl);
  q.mx_limit = r.integer<std::size_t>("mx_limit", q.mx_limit, 1, 100);
  q.connection_cache = r.integer<std::size_t>("connection_cache", q.connection_cache, 0, 100'000);
  q.destination_concurrency =
      r.integer<unsigned>("destination_concurrency", q.destination_concurrency, 1, 100'000);
  q.move_after = r.duration("move_after", q.move_after);
  q.pipeline_within = r.duration("pipeline_within", q.pipeline_within);
  q.max_fail = r.integer<unsigned>("max_fail", q.max_fail, 1, 100'000);
  q.down_time = r.duration("down_time", q.down_time);
  q.retry = r.string("retry", "");
  const std::string tls = r.string("tls", "opportunistic");
  if (tls == "opportunistic") {
    q.tls = TlsPolicy::Opportunistic;
  } else if (tls == "required") {
    q.tls = TlsPolicy::Required;
  } else if (tls == "off") {
    q.tls = TlsPolicy::Off;
  } else {
    r.fail("tls", "expected \"opportunistic\", \"required\" or \"off\", got \"" + tls + "\"");
  }
  q.advice_share = r.number("advice_share", q.advice_share, 0.0, 1.0);
  q.advice_window = r.duration("advice_window", q.advice_window);
  q.advice_min = r.integer<std::size_t>("advice_min", q.advice_min, 1, 1'000'000'000);
  q.max_mta = r.integer<unsigned>("max_mta", q.general() ? 200u : q.max_mta, 1, 100'000);
  q.init_mta = r.integer<unsigned>("init_mta", q.init_mta, 0, 100'000);
  if (q.init_mta > q.max_mta)
    r.fail("init_mta", "must not exceed max_mta (" + std::to_string(q.max_mta) + ")");
  q.max_queue = r.integer<std::size_t>("max_queue", q.max_queue, 0, 100'000'000);
  q.max_jobs = r.integer<std::size_t>("max_jobs", q.max_jobs, 1, 100'000'000);
  q.max_pipelined = r.integer<std::size_t>("max_pipelined", q.max_pipelined, 1, 1000);
  q.batch_size = r.integer<std::size_t>("batch_size", q.batch_size, 1, 100'000);
  q.chunking = r.boolean("chunking", q.chunking);
  q.max_retries = r.integer<unsigned>("max_retries", q.max_retries, 1, 1000);
  q.retry_delay = r.duration("retry_delay", q.retry_delay);
  q.retry_delay_max = r.duration("retry_delay_max", q.retry_delay_max);
  if (q.retry_delay_max < q.retry_delay)
    r.fail("retry_delay_max", "must not be less than retry_delay");
  q.max_size = r.size("max_size", 0);
  q.throttle = r.integer<std::size_t>("throttle", q.throttle, 0, 1'000'000'000);
  q.timeouts = read_timeouts(file, r.subtable("timeouts"), label, delivery.timeouts);
  r.check_unknown();
  return q;
}

template <class F>
void for_each_table(const std::string& file, const toml::node& n, std::string_view name, F&& f) {
  if (const toml::array* arr = n.as_array()) {
    std::size_t i = 0;
    for (const toml::node& item : *arr) {
      if (!item.is_table()) {
        throw ConfigError(file + ":" + std::to_string(line_of(item)) + ": key '" +
                          std::string(name) + "': expected [[" + std::string(name) + "]] tables");
      }
      f(*item.as_table(), i++);
    }
    return;
  }
  throw ConfigError(file + ":" + std::to_string(line_of(n)) + ": key '" + std::string(name) +
                    "': write [[" + std::string(name) + "]] (a list of tables)");
}

void validate(Config& c) {
  const std::string& file = c.path;
  if (c.queues.empty())
    throw ConfigError(file + ":1: key 'queue': at least one [[queue]] is required");
  std::set<std::string> names;
  std::set<std::string> domains;
  const QueueSection* general = nullptr;
  for (const auto& q : c.queues) {
    const std::string where = file + ":" + std::to_string(q.line) + ": ";
    if (!names.insert(q.name).second) {
      throw ConfigError(where + "key 'name' in [[queue]] \"" + q.name +
                        "\": the name is used twice");
    }
    if (q.general()) {
      if (general != nullptr) {
        throw ConfigError(where + "key 'domains' in [[queue]] \"" + q.name +
                          "\": only one queue may omit domains (the general queue); \"" +
                          general->name + "\" already does");
      }
      general = &q;
    }
    for (const auto& d : q.domains) {
      if (!domains.insert(d).second) {
        throw ConfigError(where + "key 'domains' in [[queue]] \"" + q.name + "\": '" + d +
                          "' belongs to another queue already");
      }
    }
  }
  // A retry queue exists, is another queue, and chains of them end.
  for (const auto& q : c.queues) {
    if (q.retry.empty()) continue;
    const std::string where =
        file + ":" + std::to_string(q.line) + ": key 'retry' in [[queue]] \"" + q.name + "\": ";
    if (names.count(q.retry) == 0)
      throw ConfigError(where + "no queue is named \"" + q.retry + "\"");
    std::set<std::string> seen{q.name};
    for (std::string next = q.retry; !next.empty();) {
      if (!seen.insert(next).second)
        throw ConfigError(where + "the retry queues form a loop through \"" + next + "\"");
      const auto it = std::find_if(c.queues.begin(), c.queues.end(),
                                   [&](const auto& x) { return x.name == next; });
      next = it->retry;
    }
  }
  std::set<std::string> addresses;
  for (const auto& l : c.listeners) {
    if (l.ack == AckMode::Spooled && c.spool.path.empty()) {
      throw ConfigError(
          file + ":" + std::to_string(l.line) +
          ": key 'ack' in [[listener]]: \"spooled\" needs a spool: add [spool] path = \"...\"");
    }
    if (!addresses.insert(l.address.to_string()).second) {
      throw ConfigError(file + ":" + std::to_string(l.line) + ": key 'address' in [[listener]]: '" +
                        l.address.to_string() + "' is used twice");
    }
  }
}

}  // namespace

Config parse_config(std::string_view text, const std::string& path) {
  Config c;
  c.path = path;
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    throw ConfigError(path + ":" + std::to_string(e.source().begin.line) + ": " +
                      std::string(e.description()));
  }
  c.server.hostname = default_hostname();
  c.server.accounting_log = "mma-accounting.jsonl";
  for (auto&& [k, v] : root) {
    const std::string key(k.str());
    const int line = static_cast<int>(k.source().begin.line);
    if (key == "server") {
      if (!v.is_table())
        throw ConfigError(path + ":" + std::to_string(line) + ": key 'server': expected [server]");
      read_server(path, *v.as_table(), c.server);
    } else if (key == "spool") {
      if (!v.is_table())
        throw ConfigError(path + ":" + std::to_string(line) + ": key 'spool': expected [spool]");
      read_spool(path, *v.as_table(), c.spool);
    } else if (key == "dns") {
      if (!v.is_table())
        throw ConfigError(path + ":" + std::to_string(line) + ": key 'dns': expected [dns]");
      read_dns(path, *v.as_table(), c.dns);
    } else if (key == "delivery") {
      if (!v.is_table())
        throw ConfigError(path + ":" + std::to_string(line) +
                          ": key 'delivery': expected [delivery]");
      read_delivery(path, *v.as_table(), c.delivery);
    } else if (key != "listener" && key != "queue") {
      throw ConfigError(path + ":" + std::to_string(line) + ": key '" + key +
                        "': unknown section (expected [server], [[listener]], [delivery], [dns], "
                        "[spool], [[queue]])");
    }
  }
  if (c.delivery.helo_name.empty()) c.delivery.helo_name = c.server.hostname;
  if (const toml::node* n = root.get("listener")) {
    for_each_table(path, *n, "listener", [&](const toml::table& t, std::size_t i) {
      c.listeners.push_back(read_listener(path, t, i));
      if (c.listeners.back().hostname.empty()) c.listeners.back().hostname = c.server.hostname;
    });
  }
  if (const toml::node* n = root.get("queue")) {
    for_each_table(path, *n, "queue", [&](const toml::table& t, std::size_t i) {
      c.queues.push_back(read_queue(path, t, c.delivery, i));
    });
  }
  validate(c);
  return c;
}

Config load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot read the configuration file");
  std::ostringstream s;
  s << in.rdbuf();
  return parse_config(s.str(), path);
}

}  // namespace mma::config
