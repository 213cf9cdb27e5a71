#include "config/params.hpp"

#include <array>

#include "config/config.hpp"

namespace mma::config {
namespace {

constexpr std::array kParams{
    // [server]
    Param{"server", "hostname", "string", "the host name",
          "Name in the banner, the EHLO of outbound connections and Received: headers."},
    Param{"server", "threads", "integer", "0",
          "Event-loop threads; 0 means one per core. Connections are coroutines on these threads, "
          "never a thread each."},
    Param{"server", "accounting_log", "path", "\"mma-accounting.jsonl\"",
          "Accounting log: one JSON line per recipient event (deferred, and the one final outcome: "
          "delivered, bounced, failed)."},
    Param{"server", "stats_interval", "duration", "\"60s\"",
          "How often queue and spool statistics are logged (also on SIGUSR1); 0 disables the "
          "periodic log."},
    Param{"server", "shutdown_grace", "duration", "\"30s\"",
          "On SIGTERM/SIGINT: how long to keep delivering what is queued before exiting."},
    Param{"server", "user", "string", "(none)",
          "Started as root, mma binds its listeners (port 25 too), gives the spool, unix sockets "
          "and accounting log to this user, and runs as it. Empty: runs as the user it was started "
          "as."},
    Param{"server", "memory_body_limit", "size", "\"1M\"",
          "Bodies larger than this are written to a file as they arrive and sent from it (the "
          "disk cache): memory stays flat whatever the message sizes. 0: every body in memory."},
    Param{"server", "body_dir", "path", "(a private directory under $TMPDIR)",
          "Where those files go when there is no [spool] (with one: <spool.path>/bodies, and "
          "spooled bodies stay there until delivered). Locked while in use: one mma each; what a "
          "previous run left there is removed at start."},
    // [[listener]]
    Param{"listener", "address", "endpoint", "(required)",
          "\"host:port\", \"[v6]:port\" or \"unix:/path\"."},
    Param{"listener", "protocol", "\"smtp\" or \"lmtp\"", "\"smtp\"",
          "ESMTP (RFC 5321) or LMTP (RFC 2033: one reply per recipient after DATA)."},
    Param{
        "listener", "ack", "\"received\", \"spooled\" or \"delivered\"", "\"received\"",
        "When the composer gets its 250: once the body is in memory, once the message is committed "
        "to the durable spool ([spool]), or once the remote MTA accepted it (docs/ACK_MODES.md)."},
    Param{"listener", "allow", "list of CIDR", "[\"127.0.0.0/8\", \"::1/128\"]",
          "Client networks allowed to relay. Everyone else gets a 554 5.7.1 greeting. 0.0.0.0/0 is "
          "refused: mma is never an open relay."},
    Param{"listener", "max_connections", "integer", "1000",
          "Connections beyond this get 421 4.7.0 and are closed."},
    Param{"listener", "idle_timeout", "duration", "\"300s\"",
          "A client silent this long gets 421 4.4.2 and is closed (RFC 5321 §4.5.3.2.7)."},
    Param{"listener", "max_message_size", "size", "\"64M\"",
          "Advertised with SIZE (RFC 1870); larger messages get 552 5.3.4."},
    Param{"listener", "max_recipients", "integer", "1000",
          "Recipients per message; more get 452 4.5.3 (RFC 5321 §4.5.3.1.10)."},
    Param{"listener", "max_errors", "integer", "20",
          "Protocol errors before the connection is closed with 421."},
    Param{"listener", "chunking", "boolean", "true",
          "Offer CHUNKING (RFC 3030): a client may send the content as BDAT chunks, with no wait "
          "for DATA's 354. Not in LMTP."},
    Param{"listener", "socket_mode", "octal string", "\"0660\"", "Permissions of a unix socket."},
    Param{"listener", "hostname", "string", "server.hostname", "Name in this listener's banner."},
    // [delivery]
    Param{"delivery", "port", "integer", "25", "Port of remote MTAs when a host gives none."},
    Param{"delivery", "helo_name", "string", "server.hostname", "Name sent in EHLO/HELO."},
    Param{"delivery", "timeouts", "table", "see [timeouts]", "Default timeouts of every queue."},
    // [spool]
    Param{"spool", "path", "path", "(none)",
          "Directory of the durable spool (RocksDB) that `ack = \"spooled\"` commits to before its "
          "250; also recovered from at start. Required by a spooled listener."},
    Param{"spool", "sync", "boolean", "true",
          "Sync the spool's write-ahead log at each group commit (many messages share one fsync). "
          "false survives a crash of mma, not of the machine."},
    Param{"spool", "min_free", "size", "\"128M\"",
          "Free space the spool's file system must keep after a commit; below it, mail gets 452 "
          "4.3.1 and is not acknowledged (as Postfix's queue_minfree), and it is taken again once "
          "there is room."},
    // [dns]
    Param{"dns", "servers", "list of strings", "[] (/etc/resolv.conf)",
          "DNS servers to ask, \"ip\" or \"ip:port\"; none: those of /etc/resolv.conf."},
    Param{"dns", "timeout", "duration", "\"10s\"",
          "A query without an answer by then is a temporary failure (the mail is deferred)."},
    Param{"dns", "min_ttl", "duration", "\"60s\"",
          "Answers are cached for their TTL, but at least this long ..."},
    Param{"dns", "max_ttl", "duration", "\"1d\"", "... and at most this long."},
    Param{"dns", "negative_ttl", "duration", "\"60s\"",
          "How long NXDOMAIN, null MX and \"no address\" are cached."},
    Param{"dns", "failure_ttl", "duration", "\"5s\"",
          "How long SERVFAIL and time-outs are cached, so that a burst of mail does not hammer a "
          "failing server."},
    Param{"dns", "cache_size", "integer", "100000",
          "Domains kept in the MX cache; the least recently used go first."},
    Param{"dns", "ipv6", "boolean", "true",
          "Also look up and connect to IPv6 addresses (after the IPv4 ones of each exchanger)."},
    // timeouts (in [delivery] and in each [[queue]])
    Param{"timeouts", "connect", "duration", "\"30s\"", "TCP connection to a remote MTA."},
    Param{"timeouts", "banner", "duration", "\"300s\"",
          "The 220 greeting and the EHLO/HELO reply (RFC 5321 §4.5.3.2.1)."},
    Param{"timeouts", "command", "duration", "\"300s\"",
          "Replies to MAIL, RCPT, RSET (§4.5.3.2.2-3)."},
    Param{"timeouts", "data", "duration", "\"120s\"",
          "The 354 reply to DATA, and each write of content (§4.5.3.2.4-5)."},
    Param{"timeouts", "data_done", "duration", "\"600s\"",
          "The reply after the final \".\" (§4.5.3.2.6)."},
    Param{"timeouts", "idle", "duration", "\"5s\"",
          "An idle outbound connection is closed after this."},
    Param{"timeouts", "deliver", "duration", "\"1d\"",
          "A recipient not delivered this long after reception fails instead of being retried."},
    // [[queue]]
    Param{"queue", "name", "string", "(required)", "The queue's name, in logs and statistics."},
    Param{"queue", "domains", "list of strings", "[] (the general queue)",
          "Recipient domains of this queue: \"example.com\" or \"*.example.com\" (subdomains). The "
          "one queue without domains is the general queue."},
    Param{"queue", "mx", "list of endpoints", "[] (DNS)",
          "Static, pre-resolved hosts (\"host:port\", \"unix:/path\", or \"|/path/to/program "
          "args\" for a program that speaks SMTP on stdin/stdout): no DNS look-up. Tried as "
          "equal-preference MX: workers spread over them and fall back to the next on failure. "
          "Without `mx`, each recipient domain is resolved through DNS (MX, then A/AAAA)."},
    Param{"queue", "resolve", "boolean", "false",
          "A specific queue without `mx`: resolve its first domain's MX at start and every "
          "`mx_ttl`, and send all its mail there (no look-up per message)."},
    Param{"queue", "mx_ttl", "duration", "\"1h\"",
          "How often a `resolve = true` queue looks its hosts up again."},
    Param{"queue", "mx_limit", "integer", "5",
          "Exchangers tried per destination, in preference order."},
    Param{"queue", "connection_cache", "integer", "5",
          "DNS-routed queues: idle connections are kept open to this many most recently used "
          "servers (MX hosts; patent: the connection cache, LRU), each serving every domain whose "
          "best MX it is. At max_mta, the least recently used idle connection is closed to serve "
          "a new destination."},
    Param{"queue", "destination_concurrency", "integer", "20",
          "DNS-routed queues: connections at most to one destination."},
    Param{"queue", "move_after", "duration", "\"200ms\"",
          "DNS-routed queues: how long a destination whose servers have connections open or "
          "opening, all busy, waits for one of them before a worker is started for it (below "
          "max_mta) or an idle connection to another server is closed and opened to its server "
          "(at max_mta); a worker whose server has no mail leaves it only for such a "
          "destination, or one whose servers have no connection. Longer than the relay's own "
          "backlog under load, which more connections would not shorten; shorter than a slow "
          "server keeps a job."},
    Param{"queue", "pipeline_within", "duration", "\"50ms\"",
          "A server that answered a connection's last transaction within this time (per "
          "transaction) gets the mail waiting for it pipelined (max_pipelined); a slower one "
          "gets one transaction at a time, the waiting mail going to other connections."},
    Param{"queue", "max_fail", "integer", "5",
          "Consecutive connection failures after which a destination is down: its mail goes to the "
          "`retry` queue, or fails."},
    Param{"queue", "down_time", "duration", "\"60s\"",
          "How long a destination stays down before it is tried again."},
    Param{"queue", "retry", "string", "(none)",
          "The queue that takes this queue's mail for a destination that is down (e.g. a local MTA "
          "that spools to disk)."},
    Param{"queue", "tls", "\"opportunistic\", \"required\" or \"off\"", "\"opportunistic\"",
          "STARTTLS (RFC 3207) towards remote MTAs: used when offered, required (its absence or "
          "failure defers the mail), or never. Certificates are not verified (RFC 7435 "
          "opportunistic security)."},
    Param{"queue", "advice_share", "number", "0.2",
          "The general queue logs advice to give a domain its own queue when the domain carries "
          "more than this share of its jobs ..."},
    Param{"queue", "advice_window", "duration", "\"60s\"",
          "... over a window this long (logged once per window) ..."},
    Param{"queue", "advice_min", "integer", "1000",
          "... and the window held at least this many jobs."},
    Param{"queue", "init_mta", "integer", "0",
          "Workers (outbound connections) started with the queue."},
    Param{"queue", "max_mta", "integer", "100",
          "Maximum workers; at this many, work waits for a ready one."},
    Param{"queue", "max_queue", "integer", "0",
          "Backlog of waiting jobs beyond which another worker is started."},
    Param{"queue", "max_jobs", "integer", "1000",
          "Jobs (transactions) per connection before it is closed and opened anew."},
    Param{"queue", "max_pipelined", "integer", "8",
          "Transactions written to a connection at once when its server answered the last one "
          "within pipeline_within and more mail waits for it: each MAIL, RCPT and BDAT with its "
          "message (an RSET before each MAIL but the first), their replies read after (RFC "
          "2920, RFC 3030; only where the server offers PIPELINING and CHUNKING, for messages "
          "held in memory; at most 1 MB and 1,000 replies a write). One round trip for all. 1: "
          "one transaction at a time."},
    Param{"queue", "batch_size", "integer", "100", "Recipients per SMTP transaction."},
    Param{"queue", "chunking", "boolean", "true",
          "Send a message held in memory as one BDAT (RFC 3030) where the remote MTA offers "
          "CHUNKING: a transaction in one write and one round trip. false: always DATA (for a "
          "remote whose CHUNKING is broken)."},
    Param{"queue", "max_retries", "integer", "10",
          "Delivery attempts per recipient before it fails."},
    Param{"queue", "retry_delay", "duration", "\"1s\"",
          "Delay before the second retry; it doubles with each further attempt. The first retry "
          "after a broken connection is immediate, by another worker."},
    Param{"queue", "retry_delay_max", "duration", "\"300s\"", "Upper bound of the retry delay."},
    Param{"queue", "max_size", "size", "0",
          "Largest message this queue takes; 0: the listener's limit. Larger ones bounce (5.3.4)."},
    Param{"queue", "throttle", "integer", "100000",
          "Jobs waiting in this queue beyond which inbound sessions hold their replies (stop "
          "reading) until it drains; 0: no limit. Memory stays bounded."},
    Param{"queue", "timeouts", "table", "[delivery] timeouts",
          "Per-queue overrides of the delivery timeouts."},
};

}  // namespace

std::span<const Param> all_params() {
  return kParams;
}

const Param* find_param(std::string_view section, std::string_view key) {
  for (const auto& p : kParams) {
    if (p.section == section && p.key == key) return &p;
  }
  return nullptr;
}

std::string config_reference() {
  std::string out =
      "# mma configuration reference\n\n"
      "Generated by `mma config-reference` from src/config/params.cpp; do not edit by hand.\n"
      "Durations: \"250ms\", \"30s\", \"5m\", \"1h\", \"1d\" (a bare number is seconds). "
      "Sizes: \"512K\", \"64M\", \"1G\" (binary multiples; a bare number is bytes).\n";
  std::string_view section;
  for (const auto& p : kParams) {
    if (p.section != section) {
      section = p.section;
      std::string title;
      if (section == "listener" || section == "queue") {
        title = "[[" + std::string(section) + "]]";
      } else if (section == "timeouts") {
        title = "timeouts (a table in [delivery] and in each [[queue]])";
      } else {
        title = "[" + std::string(section) + "]";
      }
      out += "\n## " + title + "\n\n| key | type | default | meaning |\n|---|---|---|---|\n";
    }
    out += "| `" + std::string(p.key) + "` | " + std::string(p.type) + " | " +
           std::string(p.default_value) + " | " + std::string(p.doc) + " |\n";
  }
  return out;
}

}  // namespace mma::config
