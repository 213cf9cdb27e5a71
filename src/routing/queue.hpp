// routing/queue: a Queue owns its waiting jobs, its ready list of workers, its destinations and
// its statistics (the patent's queue_handle; DESIGN.md §7, patent Figs. 6-9).
//
// Jobs come from inbound sessions on any thread (submit); workers on any thread ask for the
// next job and park in the ready list when there is none. A job goes, in this order of
// preference, to a parked worker already connected to its destination, to a parked worker with
// no connection, to a new worker (up to max_mta, when the backlog exceeds max_queue), or, at
// max_mta, to the parked worker holding the least recently used idle connection, which closes
// it (patent §C). Otherwise it waits. A static queue (`mx`) has one destination; a DNS-routed
// queue has one per recipient domain, each with at most destination_concurrency connections,
// and keeps idle connections, filed under their server, to the connection_cache most recently
// used servers. There a job whose servers have a connection open or opening waits for it
// (or goes in the same write as another's job: more_for_connection) rather than start a worker
// or move a connection from another server; until it has waited move_after.
//
// Results come back through complete(), which logs final outcomes, schedules retries, and after
// max_fail consecutive connection failures declares a destination down and hands its mail to
// the `retry` queue (or fails it). All state sits under one short lock, never held across a
// co_await.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.hpp"
#include "core/message.hpp"
#include "core/outcome.hpp"
#include "net/event_loops.hpp"
#include "net/wakeup.hpp"
#include "observe/accounting_log.hpp"
#include "routing/domain_advisor.hpp"
#include "smtp/reply.hpp"

namespace mma::routing {

// The queue's view of one worker (the patent's mta_handle, queue side). All but `wakeup` is
// under the queue's lock.
struct WorkerSlot {
  explicit WorkerSlot(std::shared_ptr<net::Wakeup> w) : wakeup(std::move(w)) {}
  std::shared_ptr<net::Wakeup> wakeup;
  std::optional<Job> inbox;
  bool inbox_on_server = false;  // Next::on_server for the job in the inbox
  bool parked = false;           // in a ready list
  bool bound = false;            // counted in its destination's connections
  std::string destination;       // when bound
  bool drop_connection = false;  // the queue wants its idle connection closed (cache eviction)
  std::string host;              // the server its connection is open to ("" when none)
  std::string heading_for;       // the server it is counted towards while it connects
  bool started = false;          // has asked for a job (or left): Queue::started_for_ done
};

// How one delivery attempt ended for one recipient.
struct RecipientStatus {
  Outcome outcome = Outcome::Deferred;  // Delivered, Bounced or Deferred
  smtp::Reply reply;
  bool resend = false;  // "452 too many recipients" at RCPT: next transaction, no attempt charged
};

struct AttemptReport {
  std::string mx;                 // the remote MTA, "" if none was reached
  bool connection_fault = false;  // the connection broke (or never came): retry at once elsewhere
  bool unreachable = false;       // no host of the destination could be reached (towards max_fail)
  bool connected = false;         // the destination answered (its failure count starts again)
  Clock::time_point started{};    // when the worker took the job
};

struct QueueStats {
  std::string name;
  std::uint64_t msg_count = 0;  // jobs handed to this queue (not counting retries)
  unsigned workers = 0;
  unsigned ready = 0;
  std::size_t queued = 0;     // jobs waiting for a worker
  std::size_t in_flight = 0;  // jobs a worker holds
  std::size_t retrying = 0;   // jobs waiting for their retry time
  unsigned peak_mtas = 0;
  std::size_t peak_msgs = 0;
  std::size_t destinations = 0;  // with a connection or waiting jobs
  std::size_t down = 0;          // destinations declared down
  std::uint64_t delivered = 0, bounced = 0, failed = 0, deferred = 0, handed_off = 0;
  std::uint64_t reused = 0;       // jobs given to an open connection found by its server
  std::uint64_t connections = 0;  // connections opened (and greeted)
  std::uint64_t pipelined = 0;    // jobs written behind another on its connection at once
};

class Queue {
 public:
  // Starts one worker; `warm`: connect now rather than on the first job (init_mta workers).
  using Spawner = std::function<void(Queue&, bool warm)>;

  Queue(config::QueueSection cfg, observe::AccountingLog& log, net::EventLoops& loops);
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  void set_spawner(Spawner spawner) { spawner_ = std::move(spawner); }
  // For a DNS-routed queue: the servers (best-preference MX hosts) of a destination, when
  // known without waiting (the MX cache); null or empty when not. Called under the queue's lock.
  using Servers = std::shared_ptr<const std::vector<std::string>>;
  using ServersOf = std::function<Servers(const std::string& destination)>;
  void set_servers_of(ServersOf f) { servers_of_ = std::move(f); }
  // For a DNS-routed queue with a resolver: starts looking up a destination's MX hosts and calls
  // `done` (on any loop, never inline under the queue's lock) when the MX cache has the answer
  // or the look-up failed. Set: the first job of a domain waits for it, so that it can share a
  // connection open to one of its servers instead of opening its own.
  using LookUp = std::function<void(const std::string& destination, std::function<void()> done)>;
  void set_look_up(LookUp f) { look_up_ = std::move(f); }
  // The worker's connection is now open to `host` ("" : closed).
  void connected_to(WorkerSlot& slot, std::string host);
  void set_retry_queue(Queue* retry) { retry_queue_.store(retry, std::memory_order_release); }
  // Starts init_mta workers.
  void start();
  // The settings now: a snapshot, as SIGHUP may replace them (reconfigure()) at any time.
  [[nodiscard]] std::shared_ptr<const config::QueueSection> config() const {
    return cfg_.load(std::memory_order_acquire);
  }
  [[nodiscard]] const std::string& name() const { return name_; }
  // New settings for the same queue (SIGHUP): limits apply at once to what waits; workers
  // already connected keep theirs until their connection ends. Same name, same kind of routing
  // (mx or DNS) as before: the daemon checks.
  void reconfigure(config::QueueSection next);
  // The destination (routing key) of a recipient domain: the domain itself in a DNS-routed
  // queue, "" in a queue with one set of hosts.
  [[nodiscard]] std::string destination_for(std::string_view domain) const;

  // --- inbound side ---
  void submit(Job job);
  // Backpressure (DESIGN.md §4): true while fewer than `throttle` jobs wait; otherwise `w` is
  // notified once the queue has drained below it.
  [[nodiscard]] bool admit(const std::shared_ptr<net::Wakeup>& w);
  // A final outcome decided before any attempt (e.g. too big for this queue).
  void finish_unattempted(const Job& job, Outcome outcome, const smtp::Reply& reply);

  // --- worker side ---
  struct Next {
    std::optional<Job> job;
    bool stop = false;  // the queue is stopping and has nothing left
    // The queue gave the job to this worker as its connection is open to one of the job's
    // servers: no need to ask the MX cache again before using it.
    bool on_server = false;
    bool drop_connection = false;  // close the idle connection, then ask again
  };
  // A job for this worker, or parks the slot in a ready list (job empty, stop false).
  // `connected`: the worker holds an open connection to its bound destination.
  [[nodiscard]] Next next_job(WorkerSlot& slot, bool connected);
  // For a worker holding a job on an open connection: up to `max` more jobs that connection's
  // server takes (its destination's next, then waiting destinations it serves), to go in the
  // same write. Only when its server is `quick` (it answered the connection's last transaction
  // within pipeline_within: they would have waited about as long for this connection anyway). A
  // slow server answers pipelined transactions one after the other: they are left for other
  // connections to take at the same time.
  [[nodiscard]] std::vector<Job> more_for_connection(WorkerSlot& slot, std::size_t max, bool quick);
  // Leaves the ready list after an idle timeout; false if a job arrived meanwhile (in inbox).
  // The worker then closes its connection.
  [[nodiscard]] bool unpark(WorkerSlot& slot);
  // The worker's connection has closed: it no longer counts towards its destination.
  void unbind(WorkerSlot& slot);
  // Whether an idle worker should exit rather than stay for init_mta.
  [[nodiscard]] bool surplus_worker() const;
  // The worker has ended; its slot is free.
  void detach(WorkerSlot& slot);
  void complete(Job job, const std::vector<RecipientStatus>& statuses, const AttemptReport& report);
  // No descriptor or memory for a connection: the job goes back untouched, first in line, and
  // no worker is started for a moment. The queue carries on with the workers it has.
  void give_back(Job job, const std::string& why);

  // Shutdown: no more parking; workers exit once nothing is left.
  void stop();
  // Shutdown after the grace time: what still waits (for a worker or for its retry time) ends
  // as failed, logged, so that every recipient keeps exactly one final outcome; what is in the
  // spool stays there for the next start (kept_in_spool()). Returns how many failed.
  std::size_t abandon(const std::string& why);
  [[nodiscard]] std::size_t kept_in_spool() const {
    std::lock_guard lock(mu_);
    return kept_in_spool_;
  }
  [[nodiscard]] bool stopping() const;
  // Jobs not yet finished: waiting, in flight or waiting to be retried.
  [[nodiscard]] std::size_t backlog() const;
  // Recipients of those jobs.
  [[nodiscard]] std::size_t backlog_recipients() const;
  [[nodiscard]] QueueStats stats() const;

 private:
  struct Destination {
    std::deque<Job> pending;
    unsigned connections = 0;       // bound workers
    std::vector<WorkerSlot*> idle;  // parked bound workers: open, unused connections
    unsigned failures = 0;          // consecutive connection failures
    Clock::time_point down_until{};
    bool waiting = false;  // listed in waiting_
    // Since when, for move_after: not the jobs' arrival, which may be a look-up earlier.
    Clock::time_point waiting_since{};
    // Its MX hosts looked up ahead of its first job (set_look_up): jobs are held while
    // Underway (pending, but not in waiting_), and never again once Done.
    enum class LookUp : unsigned char { NotYet, Underway, Done } look_up = LookUp::NotYet;
    bool in_lru = false;  // listed in idle_lru_ (exactly when `idle` is not empty), at `lru`
    std::list<std::string>::iterator lru;
    // Its best MX hosts as last placed (a hint for which waiting destination a connected worker
    // takes; the worker reads the MX cache itself before it moves).
    Servers servers;
  };

  // What to do once a job is placed and the lock released.
  struct Placement {
    std::vector<std::shared_ptr<net::Wakeup>> wake;
    unsigned spawn = 0;
    std::vector<Job> down;
    std::vector<std::string> look_up;
    bool rearm = false;  // the timer must be armed earlier (arm_retry_timer)
  };

  void enqueue(Job job, bool fresh);
  // `servers`: the destination's best MX hosts from servers_of_, asked before the lock is taken
  // (the MX cache has a lock of its own; held inside this one, it had made both contended).
  void place_locked(Job job, Clock::time_point now, const Servers& servers, Placement& p);
  [[nodiscard]] Servers servers_of(const std::string& destination) const {
    return servers_of_ && per_domain_ ? servers_of_(destination) : nullptr;
  }
  void carry_out(Placement& p);
  // The look-up of `destination`'s MX hosts ended: its held jobs are placed now.
  void looked_up(const std::string& destination);
  void retry_later(Job job, std::chrono::milliseconds delay);
  void arm_retry_timer();  // on the main loop only
  void on_retry_timer();
  void hand_off(std::vector<Job> jobs, const std::string& why);
  void record_final(const Job& job, const Recipient& r, Outcome outcome, const smtp::Reply& reply,
                    const AttemptReport& report);
  [[nodiscard]] std::chrono::milliseconds retry_delay(unsigned attempts, bool fault) const;
  [[nodiscard]] unsigned destination_limit_locked() const;
  // The settings as the lock holder sees them: no atomic load (a lock and two reference counts)
  // each time, as config() costs; ~15 per message had made it 1.5% of the relay's CPU.
  [[nodiscard]] const config::QueueSection& settings_locked() const { return *cfg_locked_; }

  // Under mu_:
  [[nodiscard]] bool may_spawn_locked() const;
  bool reserve_worker_locked();
  // Reserves a worker (`spawn`) that takes `destination`'s next job when it starts, counted
  // towards `server` (if any) meanwhile.
  bool start_worker_for_locked(const std::string& destination, const std::string& server,
                               unsigned& spawn);
  // At its first next_job, or detach: the destination a worker was started for, if any.
  std::string started_locked(WorkerSlot& slot);
  void bind_locked(WorkerSlot& slot, const std::string& destination);
  void unbind_locked(WorkerSlot& slot);
  void remove_idle_locked(WorkerSlot& slot);
  void touch_idle_locked(const std::string& destination);
  void drop_from_lru_locked(Destination& d);
  WorkerSlot* idle_on_same_server_locked(const std::vector<std::string>& servers);
  void closed_on_server_locked(const std::string& host);  // one connection fewer open to it
  void arrived_locked(WorkerSlot& slot);  // connected, or gave up: no longer heading_for
  // Whether a connection, busy or idle, is open to one of `servers`.
  [[nodiscard]] bool served_locked(const std::vector<std::string>& servers) const;
  // Whether `d` has jobs waiting and room for another connection.
  [[nodiscard]] static bool takeable(const Destination& d, unsigned limit);
  // When `d`'s oldest waiting job will have waited move_after; whether it has.
  [[nodiscard]] Clock::time_point due_at_locked(const Destination& d) const;
  [[nodiscard]] bool due_locked(const Destination& d, Clock::time_point now) const;
  // Whether `host` is one of `d`'s servers.
  [[nodiscard]] static bool on_host(const Destination& d, const std::string& host);
  // Whether a worker connected to another server may close its connection for `d`'s next job:
  // its servers have no connection open, or the job waited move_after for theirs.
  [[nodiscard]] bool worth_moving_for_locked(const Destination& d, Clock::time_point now) const;
  // Of the kHostLook destinations waiting longest, the first that has waited move_after gets a
  // new worker (`spawn`) below max_mta, or at max_mta the least recently used idle connection
  // (patent §C). One a call.
  // Also on the timer, rebalance_due_: waiting mail gets a look every move_after however quiet
  // the queue is.
  void want_rebalance_locked(Clock::time_point at, bool& rearm);
  void rebalance_locked(Clock::time_point now, std::vector<std::shared_ptr<net::Wakeup>>& wake,
                        unsigned& spawn);
  // Lists a parked, bound slot as idle: under its server in a DNS-routed queue, else under its
  // destination; then keeps the connection cache to its size.
  void park_bound_locked(WorkerSlot& slot, std::vector<std::shared_ptr<net::Wakeup>>& wake);
  std::shared_ptr<net::Wakeup> evict_idle_locked(const std::string& for_destination);
  void enforce_cache_locked(std::vector<std::shared_ptr<net::Wakeup>>& wake);
  // `on_server`: set when the job is one of the worker's server's.
  std::optional<Job> take_waiting_locked(WorkerSlot& slot, Clock::time_point now, bool& on_server);
  // The next job of the destination at waiting_[i], the slot bound to it.
  Job take_from_waiting_locked(WorkerSlot& slot, std::size_t i);
  // The same, the slot's binding left as it is (not counted in flight either).
  Job pop_waiting_locked(std::size_t i);
  // The index in waiting_ of the destination waiting longest (the slot's own aside) if it is on
  // the slot's host and has waited move_after.
  [[nodiscard]] std::optional<std::size_t> due_on_host_locked(const WorkerSlot& slot,
                                                              Clock::time_point now);
  // Drops waiting_[i], whose jobs were taken by a worker bound to it.
  void drop_waiting_locked(std::size_t i);
  // Of the kHostScan oldest waiting destinations, the first a worker connected to `host` may
  // take that this host serves; waiting_.end() if none.
  std::deque<std::string>::iterator waiting_on_host_locked(const WorkerSlot& slot, unsigned limit);
  void push_pending_locked(Job job, bool front);
  // Pending, but not listed in waiting_: no worker may take it until its destination's MX
  // look-up is over (looked_up places it again).
  void hold_locked(Job job);
  // The sessions held back by the throttle, into `wake`, once pending_ is under it again.
  void release_throttled_locked(std::vector<std::shared_ptr<net::Wakeup>>& wake);
  Destination& dest_locked(const std::string& name) { return dests_[name]; }
  void forget_if_idle_locked(const std::string& name);

  std::atomic<std::shared_ptr<const config::QueueSection>> cfg_;
  const std::string name_;
  const bool per_domain_;  // a DNS-routed queue (reconfigure() keeps the kind of routing)
  observe::AccountingLog& log_;
  net::EventLoops& loops_;
  Spawner spawner_;
  ServersOf servers_of_;
  LookUp look_up_;
  std::atomic<Queue*> retry_queue_{nullptr};

  mutable std::mutex mu_;
  std::shared_ptr<const config::QueueSection> cfg_locked_;  // cfg_, as of the last reconfigure()
  std::unordered_map<std::string, Destination> dests_;
  std::deque<std::string> waiting_;               // destinations with pending jobs, oldest first
  static constexpr std::size_t kHostLook = 32;    // see take_waiting_locked
  static constexpr std::size_t kHostScan = 4096;  // see waiting_on_host_locked
  // Workers started for a destination (start_worker_for_locked) that have not asked for a job
  // yet: destination and server, in the order started.
  std::deque<std::pair<std::string, std::string>> started_for_;
  Clock::time_point rebalance_look_at_{};  // rebalance_locked looks no earlier: none is due
  std::size_t head_passed_ = 0;       // times waiting_'s first was passed over for one on a host
  std::vector<WorkerSlot*> unbound_;  // parked workers without a connection
  std::list<std::string> idle_lru_;   // where idle connections are filed, most recent first
  // Connections open, busy or idle, or being opened, by server (WorkerSlot::host, heading_for):
  // a job whose server has one waits for it rather than have another opened (DNS-routed
  // queues).
  std::unordered_map<std::string, unsigned> open_by_server_;
  std::vector<std::shared_ptr<net::Wakeup>> throttled_;
  // Jobs waiting for their retry time, under one timer rather than one each.
  std::multimap<Clock::time_point, Job> delayed_;
  Clock::time_point timer_due_ = Clock::time_point::max();  // the earlier of these two:
  // When a destination left waiting for its servers' busy connections is due a look from
  // rebalance_locked, should no job come in or go out meanwhile (the same timer).
  Clock::time_point rebalance_due_ = Clock::time_point::max();
  asio::steady_timer retry_timer_;  // touched on the main loop only
  std::size_t pending_ = 0;
  unsigned workers_ = 0;  // live and starting
  std::size_t ready_ = 0;
  std::size_t in_flight_ = 0;
  std::size_t retrying_ = 0;
  std::size_t backlog_recipients_ = 0;
  Clock::time_point spawn_paused_until_{};
  bool spawn_retry_scheduled_ = false;
  bool stopping_ = false;
  std::string abandoned_;  // set by abandon(): why anything that still comes in fails at once
  std::size_t kept_in_spool_ = 0;
  DomainAdvisor advisor_;
  QueueStats stats_;
};

}  // namespace mma::routing
