#include "app/daemon.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "app/privileges.hpp"
#include "core/spool_ticket.hpp"
#include "delivery/mta_worker.hpp"
#include "dns/mx_cache.hpp"
#include "dns/unbound_resolver.hpp"
#include "inbound/listener.hpp"
#include "net/blocking_pool.hpp"
#include "net/event_loops.hpp"
#include "net/tls_stream.hpp"
#include "observe/accounting_log.hpp"
#include "routing/queue.hpp"
#include "routing/router.hpp"
#include "spool/spool.hpp"

namespace mma::app {
namespace {

using std::chrono::milliseconds;

void log_stats(const std::vector<std::unique_ptr<routing::Queue>>& queues,
               const spool::Spool* spool) {
  for (const auto& q : queues) {
    const routing::QueueStats s = q->stats();
    spdlog::info(
        "queue {}: msg_count={} workers={} ready={} queued={} in_flight={} retrying={} "
        "peak_mtas={} "
        "peak_msgs={} delivered={} bounced={} failed={} deferred={} reused={} connections={} "
        "pipelined={}",
        s.name, s.msg_count, s.workers, s.ready, s.queued, s.in_flight, s.retrying, s.peak_mtas,
        s.peak_msgs, s.delivered, s.bounced, s.failed, s.deferred, s.reused, s.connections,
        s.pipelined);
  }
  if (spool == nullptr) return;
  // Group size and commit time say whether the spool's disk, not the relay, holds the clients.
  const spool::SpoolStats s = spool->stats();
  const double per_group = s.groups ? static_cast<double>(s.commits) / s.groups : 0;
  const double commit_ms = s.groups ? static_cast<double>(s.commit_us) / s.groups / 1000 : 0;
  spdlog::info(
      "spool: stored={} recipients={} groups={} syncs={} per_group={:.1f} commit_ms={:.2f} "
      "commit_max_ms={:.2f} removed={} refused={}",
      s.messages_stored, s.recipients_stored, s.groups, s.syncs, per_group, commit_ms,
      static_cast<double>(s.commit_max_us) / 1000, s.removed, s.failures);
}

class Daemon {
 public:
  Daemon(const config::Config& cfg, const ServeOptions& opts)
      : cfg_(cfg), opts_(opts), loops_(cfg.server.threads), accounting_(cfg.server.accounting_log) {
    configs_.push_back(std::make_shared<const config::Config>(cfg));
  }

  int run() {
    start_dns();
    worker_ctx_.reset(
        new delivery::WorkerContext{cfg_.delivery.helo_name, *routes_, tls_.get(), {}});
    worker_ctx_->disk = &disk_pool_;
    for (const auto& qc : cfg_.queues) add_queue(qc);
    link_retry_queues();
    router_ = std::make_unique<routing::Router>(active_);
    try {
      // Bound first, as the user mma was started as (root, for port 25); no connection is
      // taken before loops_.run(), after the spool has been recovered.
      for (const auto& lc : cfg_.listeners) {
        listeners_.push_back(std::make_unique<inbound::Listener>(loops_, lc, *router_));
        listeners_.back()->start();
      }
      drop_privileges();
      if (!cfg_.spool.path.empty()) {
        spool_ = std::make_unique<spool::Spool>(
            spool::SpoolOptions{cfg_.spool.path, cfg_.spool.sync, cfg_.spool.min_free});
        recover();
        bodies_ = &spool_->bodies();
      } else {
        own_bodies_ = std::make_unique<spool::BodyDirectory>(cfg_.server.body_dir);
        // Without a spool, what a previous run left is of no use (its mail was not kept).
        if (const std::size_t n = own_bodies_->remove_except({}); n > 0)
          spdlog::info("removed {} body file(s) left in {} by a previous run", n,
                       own_bodies_->path());
        bodies_ = own_bodies_.get();
      }
      for (auto& l : listeners_) attach_storage(l->context());
    } catch (const std::exception& e) {
      spdlog::critical("{}", e.what());
      return 1;
    }
    for (auto& q : queues_) q->start();
    if (opts_.stdio) start_stdio();
    watch_signals();
    start_stats_timer();
    spdlog::info("mma serve: {} listener(s), {} queue(s), {} event-loop thread(s)",
                 listeners_.size(), queues_.size(), loops_.size());
    loops_.run();
    disk_pool_.join();  // reads under way end, their results left on the stopped loops
    accounting_.flush();
    own_bodies_.reset();  // a private temporary directory goes with its files
    return exit_code_;
  }

 private:
  routing::Queue* add_queue(const config::QueueSection& qc) {
    auto q = std::make_unique<routing::Queue>(qc, accounting_, loops_);
    q->set_spawner([this](routing::Queue& queue, bool warm) {
      delivery::MtaWorker::start(loops_.next().get_executor(), queue, *worker_ctx_, warm);
    });
    q->set_servers_of([this](const std::string& domain) { return routes_->servers_of(domain); });
    if (routes_->resolves()) {
      q->set_look_up([this](const std::string& domain, std::function<void()> done) {
        routes_->look_up(domain, loops_.next(), std::move(done));
      });
    }
    if (qc.resolve) routes_->watch(qc, loops_.main());
    active_.push_back(q.get());
    queues_.push_back(std::move(q));
    return active_.back();
  }

  void link_retry_queues() {
    for (routing::Queue* q : active_) {
      const std::string retry = q->config()->retry;
      routing::Queue* target = nullptr;
      for (routing::Queue* r : active_) {
        if (!retry.empty() && r->name() == retry) target = r;
      }
      q->set_retry_queue(target);
    }
  }

  // SIGHUP. The new file is checked whole before anything changes: a bad one is refused with
  // its reason and the running configuration stays. Queues are matched by name: new ones start,
  // changed ones take their new settings, removed ones take no new mail and deliver what they
  // hold. Listeners are matched by address: new ones are bound first (a failure refuses the
  // reload), removed ones stop accepting and their sessions end at the next transaction (421),
  // changed ones apply to new connections. No connection is dropped, no message is lost.
  void reload() {
    std::shared_ptr<const config::Config> next;
    try {
      next = std::make_shared<const config::Config>(config::load_config(opts_.config_path));
    } catch (const std::exception& e) {
      spdlog::error("SIGHUP: configuration refused, the running one stays: {}", e.what());
      return;
    }
    const config::Config& now = *configs_.back();
    if (const std::string why = needs_restart(now, *next); !why.empty()) {
      spdlog::error("SIGHUP: configuration refused, the running one stays: {}", why);
      return;
    }
    std::vector<std::unique_ptr<inbound::Listener>> bound;
    for (const auto& lc : next->listeners) {
      if (find_listener(lc.address.to_string()) != nullptr) continue;
      try {
        bound.push_back(std::make_unique<inbound::Listener>(loops_, lc, *router_));
        bound.back()->start();
      } catch (const std::exception& e) {
        bound.pop_back();
        for (auto& b : bound) b->stop();
        spdlog::error("SIGHUP: configuration refused, the running one stays: {}", e.what());
        return;
      }
    }
    // From here on nothing can fail.
    std::vector<std::string> changes;
    for (auto it = listeners_.begin(); it != listeners_.end();) {
      const std::string address = (*it)->context().cfg()->address.to_string();
      const auto lc = std::find_if(next->listeners.begin(), next->listeners.end(),
                                   [&](const auto& l) { return l.address.to_string() == address; });
      if (lc == next->listeners.end()) {
        (*it)->stop();
        changes.push_back("listener " + address + " closed");
        retired_listeners_.push_back(std::move(*it));
        it = listeners_.erase(it);
        continue;
      }
      if (!same(*(*it)->context().cfg(), *lc)) {
        (*it)->context().section.store(std::make_shared<const config::ListenerSection>(*lc));
        changes.push_back("listener " + address + " changed");
      }
      ++it;
    }
    for (auto& b : bound) {
      attach_storage(b->context());
      changes.push_back("listener " + b->context().cfg()->address.to_string() + " added");
      listeners_.push_back(std::move(b));
    }
    std::vector<routing::Queue*> kept;
    for (const auto& qc : next->queues) {
      routing::Queue* q = find_active(qc.name);
      if (q == nullptr) {
        add_queue(qc)->start();
        changes.push_back("queue " + qc.name + " added");
        kept.push_back(active_.back());
        continue;
      }
      kept.push_back(q);
      const auto old = q->config();
      if (same(*old, qc)) continue;
      if (old->mx != qc.mx || old->resolve != qc.resolve || old->domains != qc.domains) {
        routes_->forget(qc.name);
        if (qc.resolve) routes_->watch(qc, loops_.main());
      }
      q->reconfigure(qc);
      changes.push_back("queue " + qc.name + " changed");
    }
    for (routing::Queue* q : active_) {
      if (std::find(kept.begin(), kept.end(), q) != kept.end()) continue;
      // Out of the routing table; what it holds is still delivered, then its workers end.
      q->stop();
      changes.push_back(
          fmt::format("queue {} removed ({} job(s) still to deliver)", q->name(), q->backlog()));
    }
    active_ = std::move(kept);
    link_retry_queues();
    router_->replace(active_);
    configs_.push_back(std::move(next));
    start_stats_timer();
    spdlog::info("SIGHUP: configuration reloaded: {}",
                 changes.empty() ? std::string("nothing changed")
                                 : fmt::format("{}", fmt::join(changes, "; ")));
  }

  // What a reload cannot change: the process's own resources.
  [[nodiscard]] std::string needs_restart(const config::Config& a, const config::Config& b) const {
    std::vector<std::string> keys;
    if (a.server.threads != b.server.threads) keys.emplace_back("[server] threads");
    if (a.server.user != b.server.user) keys.emplace_back("[server] user");
    if (a.server.accounting_log != b.server.accounting_log)
      keys.emplace_back("[server] accounting_log");
    if (a.server.memory_body_limit != b.server.memory_body_limit)
      keys.emplace_back("[server] memory_body_limit");
    if (a.server.body_dir != b.server.body_dir) keys.emplace_back("[server] body_dir");
    if (!(a.spool == b.spool)) keys.emplace_back("[spool]");
    if (!(a.dns == b.dns)) keys.emplace_back("[dns]");
    if (a.delivery.port != b.delivery.port) keys.emplace_back("[delivery] port");
    if (a.delivery.helo_name != b.delivery.helo_name) keys.emplace_back("[delivery] helo_name");
    std::string why;
    if (!keys.empty())
      why = fmt::format("{} changed, which needs a restart", fmt::join(keys, ", "));
    for (const auto& qc : b.queues) {
      const routing::Queue* q = find_active(qc.name);
      if (q == nullptr) {
        if (qc.per_domain() && mx_cache_ == nullptr) {
          why += (why.empty() ? "" : "; ") + ("queue " + qc.name) +
                 " resolves through DNS, and no queue did at start: that needs a restart";
        }
        continue;
      }
      const auto old = q->config();
      if (old->per_domain() != qc.per_domain()) {
        why += (why.empty() ? "" : "; ") + ("queue " + qc.name) +
               " switches between fixed hosts and DNS routing: give it a new name instead";
      }
    }
    return why;
  }

  template <class Section>
  static bool same(Section a, Section b) {
    a.line = b.line = 0;  // where it is written does not matter
    return a == b;
  }

  [[nodiscard]] routing::Queue* find_active(const std::string& name) const {
    for (routing::Queue* q : active_) {
      if (q->name() == name) return q;
    }
    return nullptr;
  }

  [[nodiscard]] inbound::Listener* find_listener(const std::string& address) const {
    for (const auto& l : listeners_) {
      if (l->context().cfg()->address.to_string() == address) return l.get();
    }
    return nullptr;
  }

  // Where a session's message goes beyond memory: the spool, and the body files.
  void attach_storage(inbound::ListenerContext& ctx) {
    ctx.spool = spool_.get();
    ctx.bodies = bodies_;
    ctx.disk = &disk_pool_;
    ctx.memory_body_limit = cfg_.server.memory_body_limit;
  }

  // `[server] user`: what the unprivileged process writes is handed over, then it becomes
  // that user. Running as root without it works, with a warning.
  void drop_privileges() {
    if (cfg_.server.user.empty()) {
      if (::geteuid() == 0) {
        spdlog::warn("running as root: set [server] user to run unprivileged after binding");
      }
      return;
    }
    const RunAs who = lookup_user(cfg_.server.user);
    if (::geteuid() == 0) {
      if (!cfg_.spool.path.empty() && ::mkdir(cfg_.spool.path.c_str(), 0750) != 0 &&
          errno != EEXIST) {
        throw std::runtime_error("cannot create the spool directory " + cfg_.spool.path + ": " +
                                 std::strerror(errno));
      }
      std::vector<std::string> owned{cfg_.spool.path, cfg_.server.accounting_log,
                                     cfg_.server.body_dir};
      for (const auto& lc : cfg_.listeners) {
        if (lc.address.kind == config::Endpoint::Kind::Unix) owned.push_back(lc.address.path);
      }
      give_to(who, owned);
    }
    drop_to(who);
    spdlog::info("running as user {} (uid {}, gid {})", who.name, who.uid, who.gid);
  }

  // Everything the spool still holds goes back to the queues, before any new mail is taken.
  void recover() {
    const auto start = std::chrono::steady_clock::now();
    std::size_t messages = 0, unroutable = 0;
    const std::size_t recipients =
        spool_->recover([&](std::shared_ptr<Message> m, std::vector<Recipient> rcpts) {
          ++messages;
          std::vector<Recipient> routable;
          for (auto& r : rcpts) {
            if (router_->route(r.domain()) != nullptr) {
              routable.push_back(std::move(r));
              continue;
            }
            // The configuration changed since: no queue takes this domain any more.
            ++unroutable;
            const smtp::Reply reply =
                smtp::make_reply(451, "4.4.0", "No queue routes this domain any more");
            Job job;
            job.message = m;
            job.queued = Clock::now();
            accounting_.record(observe::AccountingEvent{Outcome::Failed, *m, r, "", "", reply});
            m->spooled->recipient_final(r.index);
          }
          if (!routable.empty()) router_->dispatch(m, std::move(routable));
        });
    const auto ms =
        std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start).count();
    if (messages > 0) {
      spdlog::info(
          "spool: recovered {} recipient(s) of {} message(s) in {} ms{}", recipients, messages, ms,
          unroutable ? fmt::format(" ({} no longer routable: failed)", unroutable) : std::string());
    }
  }

  // The resolver and the MX cache, if any queue resolves through DNS; the TLS client context.
  void start_dns() {
    tls_ = net::make_client_tls_context();
    const bool dns = std::any_of(cfg_.queues.begin(), cfg_.queues.end(),
                                 [](const auto& q) { return q.mx.empty(); });
    if (dns) {
      resolver_ =
          std::make_unique<dns::UnboundResolver>(loops_.main(), cfg_.dns.servers, cfg_.dns.timeout);
      dns::MxCacheOptions o;
      o.port = cfg_.delivery.port;
      o.min_ttl = cfg_.dns.min_ttl;
      o.max_ttl = cfg_.dns.max_ttl;
      o.negative_ttl = cfg_.dns.negative_ttl;
      o.failure_ttl = cfg_.dns.failure_ttl;
      o.capacity = cfg_.dns.cache_size;
      o.ipv6 = cfg_.dns.ipv6;
      std::size_t mx_limit = 1;
      for (const auto& q : cfg_.queues) mx_limit = std::max(mx_limit, q.mx_limit);
      o.mx_limit = mx_limit;
      mx_cache_ = std::make_unique<dns::MxCache>(*resolver_, o);
      spdlog::info("dns: {}",
                   cfg_.dns.servers.empty()
                       ? std::string("servers of /etc/resolv.conf")
                       : "forwarding to " + fmt::format("{}", fmt::join(cfg_.dns.servers, ", ")));
    }
    routes_ = std::make_unique<delivery::RouteSource>(mx_cache_.get());
  }

  void start_stdio() {
    stdio_cfg_.protocol = opts_.stdio_lmtp ? config::Protocol::Lmtp : config::Protocol::Smtp;
    stdio_cfg_.ack = opts_.stdio_delivered ? config::AckMode::Delivered : config::AckMode::Received;
    stdio_cfg_.hostname = cfg_.server.hostname;
    stdio_ctx_ = std::make_unique<inbound::ListenerContext>(stdio_cfg_, *router_);
    auto ex = loops_.main().get_executor();
    std::unique_ptr<net::PipeStream> stream;
    try {
      stream = std::make_unique<net::PipeStream>(ex, ::dup(0), ::dup(1), "stdio");
    } catch (const std::system_error& e) {
      throw std::runtime_error(
          "--stdio needs pipes or sockets on stdin and stdout (" + e.code().message() +
          "; a regular file cannot be polled: pipe it, e.g. `cat file | mma serve ...`)");
    }
    attach_storage(*stdio_ctx_);
    ++stdio_ctx_->connections;
    // When the composer closes the pipe, deliver what it sent, then exit (as `sendmail -bs`).
    inbound::InboundSession::start(std::move(stream), ex, *stdio_ctx_, false, [this] {
      asio::post(loops_.main(), [this] { shutdown(/*wait_for_all=*/true); });
    });
  }

  void watch_signals() {
    if (!signals_hup_) {
      signals_.add(SIGHUP);
      signals_hup_ = true;
    }
    signals_.async_wait([this](std::error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGUSR1) {
        log_stats(queues_, spool_.get());
      } else if (sig == SIGHUP) {
        if (!shutting_down_ && !opts_.config_path.empty()) reload();
      } else {
        spdlog::info("{}: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        shutdown(false);
      }
      watch_signals();
    });
  }

  void start_stats_timer() {
    const auto interval = configs_.back()->server.stats_interval;
    stats_timer_.cancel();
    if (interval.count() == 0) return;
    stats_timer_.expires_after(interval);
    stats_timer_.async_wait([this](std::error_code ec) {
      if (ec) return;
      log_stats(queues_, spool_.get());
      start_stats_timer();
    });
  }

  // Stop accepting; keep delivering for up to shutdown_grace (or until all is delivered when
  // `wait_for_all`); then stop the workers and the loops.
  void shutdown(bool wait_for_all) {
    if (shutting_down_) return;
    shutting_down_ = true;
    for (auto& l : listeners_) l->stop();
    deadline_ = std::chrono::steady_clock::now() + configs_.back()->server.shutdown_grace;
    wait_for_all_ = wait_for_all;
    drain();
  }

  void drain() {
    std::size_t backlog = 0;
    for (auto& q : queues_) backlog += q->backlog();
    const bool late = !wait_for_all_ && std::chrono::steady_clock::now() >= deadline_;
    if (backlog > 0 && !late) {
      drain_timer_.expires_after(milliseconds(50));
      drain_timer_.async_wait([this](std::error_code) { drain(); });
      return;
    }
    // What still waits ends as failed, in the accounting log: one final outcome each.
    std::size_t abandoned = 0;
    for (auto& q : queues_) {
      abandoned += q->abandon(
          "mma stopped before delivering it (ack mode received keeps mail in memory only)");
    }
    std::size_t kept = 0;
    for (auto& q : queues_) kept += q->kept_in_spool();
    if (abandoned > 0) {
      spdlog::warn("shutting down: {} queued recipient(s) not delivered, logged as failed",
                   abandoned);
    } else if (kept == 0 && backlog == 0) {
      spdlog::info("all queues are empty");
    }
    for (auto& q : queues_) q->stop();
    if (backlog > 0) {
      // The grace time is over: transactions still in flight are cut off. Their recipients end
      // as failed, or stay in the spool, like the rest (RFC 5321 §4.1.1.10: no QUIT is owed).
      const std::size_t told = worker_ctx_->roster.cut_off_all();
      spdlog::info("shutting down: the grace time is over, cutting off {} worker(s)", told);
    }
    // Workers finish the transaction in hand, say QUIT and end.
    drain_timer_.expires_after(milliseconds(50));
    drain_timer_.async_wait([this](std::error_code) { stop_when_workers_gone(0); });
  }

  void stop_when_workers_gone(int rounds) {
    unsigned workers = 0;
    for (auto& q : queues_) workers += q->stats().workers;
    if (workers > 0 && rounds < 40) {
      drain_timer_.expires_after(milliseconds(50));
      drain_timer_.async_wait(
          [this, rounds](std::error_code) { stop_when_workers_gone(rounds + 1); });
      return;
    }
    std::size_t unknown = 0, kept = 0;
    for (auto& q : queues_) {
      kept += q->kept_in_spool();
      unknown += q->backlog_recipients();
    }
    if (spool_) {
      spool_->flush();
      if (kept > 0) spdlog::info("{} recipient(s) stay in the spool for the next start", kept);
    }
    if (unknown > 0) {
      spdlog::error(
          "{} recipient(s) were in transactions that did not end in time: their fate is unknown{}",
          unknown, spool_ ? " (those in the spool are tried again after the next start)" : "");
    }
    log_stats(queues_, spool_.get());
    loops_.stop();
  }

  const config::Config& cfg_;
  const ServeOptions& opts_;
  net::EventLoops loops_;
  // Body files are written and read here, not on the loops: a disk operation the page cache
  // cannot absorb would stall every connection of a loop. A few threads: a disk serves a few reads
  // at once, and more would only wait there.
  net::BlockingPool disk_pool_{4};
  observe::AccountingLog accounting_;
  std::shared_ptr<asio::ssl::context> tls_;
  std::unique_ptr<dns::UnboundResolver> resolver_;
  std::unique_ptr<dns::MxCache> mx_cache_;
  std::unique_ptr<delivery::RouteSource> routes_;
  std::unique_ptr<delivery::WorkerContext> worker_ctx_;
  // Every configuration loaded (the first is the one started with): small, and what was
  // derived from an old one may still refer to it.
  std::vector<std::shared_ptr<const config::Config>> configs_;
  std::vector<std::unique_ptr<routing::Queue>> queues_;  // all, removed ones too: they drain
  std::vector<routing::Queue*> active_;                  // those the router sends mail to
  std::unique_ptr<routing::Router> router_;
  std::unique_ptr<spool::Spool> spool_;
  std::unique_ptr<spool::BodyDirectory> own_bodies_;  // without a spool
  spool::BodyDirectory* bodies_ = nullptr;
  std::vector<std::unique_ptr<inbound::Listener>> listeners_;
  std::vector<std::unique_ptr<inbound::Listener>> retired_listeners_;  // their sessions may run
  config::ListenerSection stdio_cfg_;
  std::unique_ptr<inbound::ListenerContext> stdio_ctx_;
  asio::signal_set signals_{loops_.main(), SIGINT, SIGTERM, SIGUSR1};
  asio::steady_timer stats_timer_{loops_.main()};
  asio::steady_timer drain_timer_{loops_.main()};
  std::chrono::steady_clock::time_point deadline_{};
  bool shutting_down_ = false;
  bool signals_hup_ = false;
  bool wait_for_all_ = false;
  int exit_code_ = 0;
};

}  // namespace

int run_daemon(const config::Config& cfg, const ServeOptions& opts) {
  std::signal(SIGPIPE, SIG_IGN);
  int code = 1;
  try {
    // Never destroyed: coroutine frames on one event loop may hold timers of another, so a
    // tidy teardown has no safe order. What must outlive the process (the accounting log) is
    // flushed by run(); the process then ends without destructors.
    auto* d = new Daemon(cfg, opts);
    code = d->run();
  } catch (const std::exception& e) {
    spdlog::critical("mma serve: {}", e.what());
  }
  spdlog::shutdown();
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(code);
}

}  // namespace mma::app
