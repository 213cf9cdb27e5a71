#include "routing/queue.hpp"

#include <dirent.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>

#include "core/delivery_waiter.hpp"
#include "core/spool_ticket.hpp"

namespace mma::routing {
namespace {

std::size_t open_descriptors() {
  std::size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n > 2 ? n - 3 : 0;  // ".", ".." and the directory's own descriptor
}

// Each element is in its list once. From the back, where the slot just taken usually is: a
// ready list may hold thousands of workers.
template <class T>
void erase_one(std::vector<T>& v, const T& x) {
  const auto it = std::find(v.rbegin(), v.rend(), x);
  if (it != v.rend()) v.erase(std::next(it).base());
}

// In a DNS-routed queue an idle connection is filed under its server, not under the domain it
// last served: it serves every domain whose best MX that server is, and the connection cache
// keeps the most recently used servers (a provider's few MX hosts serve thousands of its
// customers' domains; kept per domain, its connections were closed a moment before the next of
// them needed one). '@' is in no domain name.
std::string server_key(std::string_view host) {
  std::string key;
  key.reserve(host.size() + 1);
  key += '@';
  key += host;
  return key;
}

bool is_server_key(std::string_view name) {
  return !name.empty() && name.front() == '@';
}

}  // namespace

Queue::Queue(config::QueueSection cfg, observe::AccountingLog& log, net::EventLoops& loops)
    : cfg_(std::make_shared<const config::QueueSection>(std::move(cfg))),
      name_(config()->name),
      per_domain_(config()->per_domain()),
      log_(log),
      loops_(loops),
      retry_timer_(loops.main()),
      advisor_(config()->advice_share, config()->advice_window, config()->advice_min) {
  cfg_locked_ = config();
  stats_.name = name_;
}

void Queue::reconfigure(config::QueueSection next) {
  cfg_.store(std::make_shared<const config::QueueSection>(std::move(next)),
             std::memory_order_release);
  std::vector<std::shared_ptr<net::Wakeup>> wake;
  std::size_t spawn = 0;
  {
    std::lock_guard lock(mu_);
    cfg_locked_ = config();
    rebalance_look_at_ = {};  // computed with the old move_after
    const auto& c = cfg_locked_;
    // A higher throttle lets held sessions go on; a higher max_mta starts workers for what waits.
    if (c->throttle == 0 || pending_ < c->throttle) wake.swap(throttled_);
    while (spawn < pending_ && unbound_.empty() && !stopping_ && reserve_worker_locked()) ++spawn;
  }
  for (auto& w : wake) w->notify();
  for (std::size_t i = 0; i < spawn && spawner_; ++i) spawner_(*this, false);
}

std::string Queue::destination_for(std::string_view domain) const {
  return per_domain_ ? std::string(domain) : std::string();
}

unsigned Queue::destination_limit_locked() const {
  const config::QueueSection& c = settings_locked();
  return per_domain_ ? std::min(c.destination_concurrency, c.max_mta) : c.max_mta;
}

void Queue::start() {
  for (unsigned i = 0; i < config()->init_mta; ++i) {
    {
      std::lock_guard lock(mu_);
      ++workers_;
      stats_.peak_mtas = std::max(stats_.peak_mtas, workers_);
    }
    if (spawner_) spawner_(*this, /*warm=*/true);
  }
}

// --- lock-held helpers ---

bool Queue::may_spawn_locked() const {
  return workers_ < settings_locked().max_mta && Clock::now() >= spawn_paused_until_;
}

bool Queue::start_worker_for_locked(const std::string& destination, const std::string& server,
                                    unsigned& spawn) {
  if (!reserve_worker_locked()) return false;
  ++spawn;
  started_for_.emplace_back(destination, server);
  if (!server.empty()) ++open_by_server_[server];
  return true;
}

std::string Queue::started_locked(WorkerSlot& slot) {
  if (slot.started) return {};
  slot.started = true;
  // Whichever worker comes first takes the first one's place: they are all alike.
  if (started_for_.empty()) return {};
  auto [destination, server] = std::move(started_for_.front());
  started_for_.pop_front();
  if (!server.empty()) closed_on_server_locked(server);  // counted again as it binds
  return destination;
}

bool Queue::reserve_worker_locked() {
  if (!may_spawn_locked()) return false;
  ++workers_;
  stats_.peak_mtas = std::max(stats_.peak_mtas, workers_);
  return true;
}

void Queue::bind_locked(WorkerSlot& slot, const std::string& destination) {
  slot.bound = true;
  slot.destination = destination;
  Destination& d = dests_[destination];
  ++d.connections;
  if (per_domain_ && slot.host.empty() && slot.heading_for.empty() && d.servers &&
      !d.servers->empty()) {
    // Not connected yet: counted towards its server, so that the jobs coming in for that
    // server meanwhile wait for its connection rather than each start a worker of their own.
    slot.heading_for = d.servers->front();
    ++open_by_server_[slot.heading_for];
  }
}

void Queue::arrived_locked(WorkerSlot& slot) {
  if (slot.heading_for.empty()) return;
  closed_on_server_locked(slot.heading_for);
  slot.heading_for.clear();
}

void Queue::unbind_locked(WorkerSlot& slot) {
  arrived_locked(slot);
  if (!slot.bound) return;
  slot.bound = false;
  if (auto it = dests_.find(slot.destination); it != dests_.end() && it->second.connections > 0) {
    // Under its limit again: the rebalancing's next look counts it (it left it out).
    if (it->second.connections-- == destination_limit_locked() && !it->second.pending.empty())
      rebalance_look_at_ = {};
  }
  forget_if_idle_locked(slot.destination);
  slot.destination.clear();
}

void Queue::forget_if_idle_locked(const std::string& name) {
  auto it = dests_.find(name);
  if (it == dests_.end()) return;
  const Destination& d = it->second;
  if (d.pending.empty() && d.connections == 0 && d.idle.empty() && !d.waiting && d.failures == 0 &&
      d.down_until <= Clock::now()) {
    dests_.erase(it);
  }
}

void Queue::remove_idle_locked(WorkerSlot& slot) {
  if (!slot.parked) return;
  slot.parked = false;
  --ready_;
  if (slot.bound) {
    auto& d = dests_[slot.destination];
    erase_one(d.idle, &slot);
    if (d.idle.empty()) drop_from_lru_locked(d);
  } else {
    erase_one(unbound_, &slot);
  }
}

WorkerSlot* Queue::idle_on_same_server_locked(const std::vector<std::string>& servers) {
  // The warmest idle connection on the first of the servers that has one: a look-up per
  // server, as idle connections are filed under theirs (server_key).
  for (const std::string& host : servers) {
    // Never operator[]: the caller holds a reference into dests_.
    const auto it = dests_.find(server_key(host));
    if (it != dests_.end() && !it->second.idle.empty()) return it->second.idle.back();
  }
  return nullptr;
}

void Queue::closed_on_server_locked(const std::string& host) {
  const auto it = open_by_server_.find(host);
  if (it != open_by_server_.end() && --it->second == 0) open_by_server_.erase(it);
}

bool Queue::served_locked(const std::vector<std::string>& servers) const {
  return std::any_of(servers.begin(), servers.end(),
                     [this](const std::string& h) { return open_by_server_.contains(h); });
}

bool Queue::takeable(const Destination& d, unsigned limit) {
  return !d.pending.empty() && d.connections < limit;
}

Clock::time_point Queue::due_at_locked(const Destination& d) const {
  return d.waiting_since + settings_locked().move_after;
}

bool Queue::due_locked(const Destination& d, Clock::time_point now) const {
  return due_at_locked(d) <= now;
}

bool Queue::on_host(const Destination& d, const std::string& host) {
  return d.servers && std::find(d.servers->begin(), d.servers->end(), host) != d.servers->end();
}

bool Queue::worth_moving_for_locked(const Destination& d, Clock::time_point now) const {
  if (d.pending.empty()) return false;
  if (!d.servers || d.servers->empty() || !served_locked(*d.servers)) return true;
  return due_locked(d, now);
}

void Queue::rebalance_locked(Clock::time_point now, std::vector<std::shared_ptr<net::Wakeup>>& wake,
                             unsigned& spawn) {
  // Called at every enqueue and every job taken: O(1) until the earliest the last look found
  // could be due. A destination that joins waiting_ meanwhile is due later than that; one
  // missed otherwise (moved into the first kHostLook, or under its limit again) gets the
  // timer's look, rebalance_due_.
  if (waiting_.empty() || !per_domain_ || now < rebalance_look_at_) return;
  // The first few, not only the first: one at its connection limit, or a stale entry whose
  // jobs its own worker took, must not keep the rest waiting.
  const unsigned limit = destination_limit_locked();
  const std::size_t n = std::min(kHostLook, waiting_.size());
  auto next_look = Clock::time_point::max();
  for (std::size_t i = 0; i < n; ++i) {
    const std::string& name = waiting_[i];
    const auto it = dests_.find(name);
    if (it == dests_.end() || !takeable(it->second, limit)) continue;
    if (!due_locked(it->second, now)) {
      next_look = std::min(next_look, due_at_locked(it->second));
      continue;
    }
    rebalance_look_at_ = now;  // the next event looks again, for the next one due
    // One worker an event while the oldest is due, before the last started has arrived: a
    // burst, which is how connections grow to a slow server's share (`latency`: from 73% to
    // 62% of max_mta / delay when it waited for each to arrive).
    if (workers_ < settings_locked().max_mta) {
      if (pending_ > settings_locked().max_queue && unbound_.empty())
        start_worker_for_locked(name, std::string(), spawn);
      return;
    }
    if (idle_lru_.empty()) return;
    const std::string due = name;  // evict_idle_locked may add to dests_, not to waiting_
    if (auto w = evict_idle_locked(due)) wake.push_back(std::move(w));
    return;
  }
  rebalance_look_at_ = next_look;
}

void Queue::want_rebalance_locked(Clock::time_point at, bool& rearm) {
  if (at >= rebalance_due_) return;
  rebalance_due_ = at;
  if (at < timer_due_) {
    timer_due_ = at;
    rearm = true;
  }
}

void Queue::park_bound_locked(WorkerSlot& slot, std::vector<std::shared_ptr<net::Wakeup>>& wake) {
  if (per_domain_ && !slot.host.empty()) {
    std::string key = server_key(slot.host);
    if (slot.destination != key) {
      unbind_locked(slot);  // its last domain no longer counts it among its connections
      bind_locked(slot, key);
    }
  }
  dests_[slot.destination].idle.push_back(&slot);
  touch_idle_locked(slot.destination);
  enforce_cache_locked(wake);
}

void Queue::connected_to(WorkerSlot& slot, std::string host) {
  std::vector<std::shared_ptr<net::Wakeup>> wake;
  {
    std::lock_guard lock(mu_);
    const bool refile = slot.parked && slot.bound && per_domain_ && slot.host != host;
    arrived_locked(slot);
    if (host != slot.host) {
      if (!slot.host.empty()) closed_on_server_locked(slot.host);
      if (!host.empty()) {
        ++open_by_server_[host];
        ++stats_.connections;
      }
    }
    slot.host = std::move(host);
    if (refile) {
      // Parked, and now open to another server (or none): filed where a job will look for it.
      remove_idle_locked(slot);
      slot.parked = true;
      ++ready_;
      if (slot.host.empty()) {
        unbind_locked(slot);
        unbound_.push_back(&slot);
      } else {
        park_bound_locked(slot, wake);
      }
    }
  }
  for (auto& w : wake) w->notify();
}

// Constant time, not a search of the list: a relay may hold idle connections to thousands of
// destinations, and this runs each time a worker parks.
void Queue::touch_idle_locked(const std::string& destination) {
  Destination& d = dests_[destination];
  if (d.in_lru) {
    idle_lru_.splice(idle_lru_.begin(), idle_lru_, d.lru);
  } else {
    idle_lru_.push_front(destination);
    d.lru = idle_lru_.begin();
    d.in_lru = true;
  }
}

void Queue::drop_from_lru_locked(Destination& d) {
  if (!d.in_lru) return;
  idle_lru_.erase(d.lru);
  d.in_lru = false;
}

void Queue::push_pending_locked(Job job, bool front) {
  const std::string name = job.destination;
  Destination& d = dests_[name];
  // Waiting since its first job still waiting (a stale entry in waiting_ keeps `waiting`).
  if (d.pending.empty()) d.waiting_since = Clock::now();
  if (front) {
    d.pending.push_front(std::move(job));
  } else {
    d.pending.push_back(std::move(job));
  }
  ++pending_;
  stats_.peak_msgs = std::max(stats_.peak_msgs, pending_);
  if (!d.waiting) {
    d.waiting = true;
    waiting_.push_back(name);
  }
}

std::shared_ptr<net::Wakeup> Queue::evict_idle_locked(const std::string& for_destination) {
  // Patent §C: at max_mta, shut down an old idle connection to make a new one.
  for (auto it = idle_lru_.rbegin(); it != idle_lru_.rend(); ++it) {
    if (*it == for_destination) continue;
    const std::string victim = *it;
    Destination& e = dests_[victim];
    if (e.idle.empty()) continue;
    WorkerSlot* w = e.idle.front();  // the longest idle
    remove_idle_locked(*w);
    unbind_locked(*w);
    Destination& d = dests_[for_destination];
    if (d.pending.empty()) return nullptr;
    bind_locked(*w, for_destination);
    w->inbox = std::move(d.pending.front());
    d.pending.pop_front();
    --pending_;
    ++in_flight_;
    return w->wakeup;
  }
  return nullptr;
}

void Queue::enforce_cache_locked(std::vector<std::shared_ptr<net::Wakeup>>& wake) {
  if (!per_domain_) return;
  while (idle_lru_.size() > settings_locked().connection_cache) {
    const std::string victim = idle_lru_.back();
    drop_from_lru_locked(dests_[victim]);
    auto slots = std::move(dests_[victim].idle);
    dests_[victim].idle.clear();
    for (WorkerSlot* w : slots) {
      w->parked = false;
      --ready_;
      unbind_locked(*w);
      w->drop_connection = true;
      wake.push_back(w->wakeup);
    }
  }
}

std::deque<std::string>::iterator Queue::waiting_on_host_locked(const WorkerSlot& slot,
                                                                unsigned limit) {
  // The oldest first. With a few providers' servers behind many domains one of the first few is
  // nearly always on this host; but when few connections serve many servers, the destinations of
  // a server with none pile up at the front, and a look at the first few only had each worker
  // move there in turn, leaving its own server's mail behind (`zero` at max_mta 20: 2,200
  // connections for 20,000 messages). Bounded all the same: a worker finding nothing parks or
  // moves, either dearer than the look.
  const auto end =
      waiting_.begin() + static_cast<std::ptrdiff_t>(std::min(kHostScan, waiting_.size()));
  for (auto i = waiting_.begin(); i != end; ++i) {
    const auto it = dests_.find(*i);
    if (it == dests_.end()) continue;
    const Destination& e = it->second;
    if (takeable(e, limit) && on_host(e, slot.host)) return i;
  }
  return waiting_.end();
}

void Queue::release_throttled_locked(std::vector<std::shared_ptr<net::Wakeup>>& wake) {
  if (throttled_.empty()) return;
  const std::size_t throttle = settings_locked().throttle;
  if (throttle != 0 && pending_ >= throttle) return;
  wake.insert(wake.end(), throttled_.begin(), throttled_.end());
  throttled_.clear();
}

void Queue::hold_locked(Job job) {
  dests_[job.destination].pending.push_back(std::move(job));
  ++pending_;
  stats_.peak_msgs = std::max(stats_.peak_msgs, pending_);
}

std::optional<Job> Queue::take_waiting_locked(WorkerSlot& slot, Clock::time_point now,
                                              bool& on_server) {
  const unsigned limit = destination_limit_locked();
  // Entries whose jobs a worker bound to them took (next_job) are dropped from the front, so that
  // the head passed over below is one that waits.
  while (!waiting_.empty()) {
    const auto head = dests_.find(waiting_.front());
    if (head != dests_.end() && !head->second.pending.empty()) break;
    drop_waiting_locked(0);
  }
  if (!slot.host.empty() && per_domain_) {
    // A connected worker keeps its connection where it can: when mail backs up, a worker whose
    // destination ran dry would otherwise take the oldest waiting one, on another host most
    // often, and close and open a connection for each job it moves to (in `zero` with one
    // sink thread: ~16,800 connections for 20,000 messages, half the rate).
    auto on_host = waiting_on_host_locked(slot, limit);
    // The destination waiting longest, when this worker could take it and no connection is
    // open to its servers, is passed over kHostLook times at most: it is not left behind while
    // others keep coming. (One whose server has a connection is that connection's oldest: moving
    // for it, when all are slow, only closed and opened connections; one at its connection limit
    // is served by its own workers.)
    if (on_host != waiting_.begin() && on_host != waiting_.end()) {
      const auto head = dests_.find(waiting_.front());
      const bool unserved = head != dests_.end() && takeable(head->second, limit) &&
                            !(head->second.servers && served_locked(*head->second.servers));
      if (unserved && ++head_passed_ > kHostLook) return take_from_waiting_locked(slot, 0);
    }
    if (on_host != waiting_.end()) {
      ++stats_.reused;
      on_server = true;
      return take_from_waiting_locked(slot, static_cast<std::size_t>(on_host - waiting_.begin()));
    }
  }
  // A worker connected elsewhere moves only for a destination worth a new connection
  // (worth_moving_for_locked), and looks no further than the oldest few: the others are served
  // as they come (place_locked), and it may park with its connection for its own server's next.
  const bool connected_elsewhere = !slot.host.empty() && per_domain_;
  for (std::size_t i = 0; i < waiting_.size();) {
    if (connected_elsewhere && i >= kHostLook) break;
    const std::string name = waiting_[i];
    auto it = dests_.find(name);
    if (it == dests_.end() || it->second.pending.empty()) {
      drop_waiting_locked(i);
      continue;
    }
    const bool mine = slot.bound && slot.destination == name;
    const Destination& e = it->second;
    const bool here = connected_elsewhere && on_host(e, slot.host);
    const bool may_take = !connected_elsewhere || here || worth_moving_for_locked(e, now);
    if ((!mine && e.connections >= limit) || !may_take) {
      ++i;
      continue;
    }
    on_server = here;
    return take_from_waiting_locked(slot, i);
  }
  return std::nullopt;
}

std::optional<std::size_t> Queue::due_on_host_locked(const WorkerSlot& slot,
                                                     Clock::time_point now) {
  if (!per_domain_ || slot.host.empty()) return std::nullopt;
  // The first waiting destination but the slot's own (which may head the list, as an entry
  // that stayed while its jobs were taken from it).
  const std::size_t i = !waiting_.empty() && waiting_.front() == slot.destination ? 1 : 0;
  if (i >= waiting_.size()) return std::nullopt;
  const auto it = dests_.find(waiting_[i]);
  if (it == dests_.end()) return std::nullopt;
  const Destination& d = it->second;
  if (!takeable(d, destination_limit_locked()) || !on_host(d, slot.host) || !due_locked(d, now))
    return std::nullopt;
  return i;
}

void Queue::drop_waiting_locked(std::size_t i) {
  const std::string name = waiting_[i];
  waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
  if (i == 0) head_passed_ = 0;
  const auto it = dests_.find(name);
  if (it == dests_.end()) return;
  it->second.waiting = false;
  forget_if_idle_locked(name);
}

Job Queue::pop_waiting_locked(std::size_t i) {
  Destination& e = dests_[waiting_[i]];
  Job job = std::move(e.pending.front());
  e.pending.pop_front();
  --pending_;
  if (i == 0) head_passed_ = 0;
  if (e.pending.empty()) {
    e.waiting = false;
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
  }
  return job;
}

Job Queue::take_from_waiting_locked(WorkerSlot& slot, std::size_t i) {
  const std::string name = waiting_[i];
  Job job = pop_waiting_locked(i);
  if (!slot.bound || slot.destination != name) {
    unbind_locked(slot);
    bind_locked(slot, name);
  }
  ++in_flight_;
  return job;
}

// --- inbound side ---

void Queue::submit(Job job) {
  enqueue(std::move(job), true);
}

void Queue::enqueue(Job job, bool fresh) {
  Placement p;
  std::optional<std::string> advice;
  const Servers servers = servers_of(job.destination);
  {
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    if (!abandoned_.empty() && job.message->spooled) {
      // Shutting down after abandon(): a spooled job stays in the spool for the next start.
      if (!fresh) backlog_recipients_ -= std::min(backlog_recipients_, job.recipients.size());
      kept_in_spool_ += job.recipients.size();
      return;
    }
    if (!abandoned_.empty()) {
      // Shutting down after abandon(): a late message or retry can only fail, and is logged.
      const smtp::Reply reply = smtp::make_reply(451, "4.3.2", abandoned_);
      for (const auto& r : job.recipients)
        record_final(job, r, Outcome::Failed, reply, AttemptReport{});
      if (!fresh) backlog_recipients_ -= std::min(backlog_recipients_, job.recipients.size());
      stats_.failed += job.recipients.size();
      return;
    }
    if (fresh) {
      ++stats_.msg_count;
      backlog_recipients_ += job.recipients.size();
      if (settings_locked().general() && !job.recipients.empty())
        advice = advisor_.count(job.recipients[0].domain(), now);
    }
    job.queued = now;
    place_locked(std::move(job), now, servers, p);
    rebalance_locked(now, p.wake, p.spawn);
  }
  if (advice) spdlog::info("queue {}: {}", name_, *advice);
  carry_out(p);
}

void Queue::place_locked(Job job, Clock::time_point now, const Servers& servers, Placement& p) {
  const std::string name = job.destination;
  Destination& d = dests_[name];
  const unsigned limit = destination_limit_locked();
  if (d.down_until > now) {
    p.down.push_back(std::move(job));
    return;
  }
  if (!d.idle.empty()) {
    // A worker connected to this destination is waiting: the warmest connection (patent §C).
    WorkerSlot* w = d.idle.back();
    remove_idle_locked(*w);
    w->inbox = std::move(job);
    p.wake.push_back(w->wakeup);
    ++in_flight_;
    return;
  }
  // The destination's servers (best-preference MX hosts), when the MX cache knows them.
  const bool known = servers && !servers->empty();
  if (known) d.servers = servers;
  if (!known && look_up_ && d.connections == 0 && d.look_up != Destination::LookUp::Done &&
      per_domain_) {
    // A domain new to the MX cache: hold its jobs while its MX hosts are looked up, so that
    // they can go to a connection already open to one of them rather than each new domain
    // opening (or, at max_mta, evicting) one of its own. Held out of waiting_: a worker
    // started for another job must not take one, as none was started for it.
    hold_locked(std::move(job));
    if (d.look_up == Destination::LookUp::NotYet) {
      d.look_up = Destination::LookUp::Underway;
      p.look_up.push_back(name);
    }
    return;
  }
  if (WorkerSlot* same =
          known && d.connections < limit ? idle_on_same_server_locked(*servers) : nullptr) {
    // Domains hosted by one provider share its servers: an idle connection to one of this
    // domain's best MX hosts serves it, rather than a new connection (as Postfix does), even
    // when an unconnected worker is ready.
    remove_idle_locked(*same);
    unbind_locked(*same);
    bind_locked(*same, name);
    same->inbox = std::move(job);
    same->inbox_on_server = true;
    p.wake.push_back(same->wakeup);
    ++in_flight_;
    ++stats_.reused;
    return;
  }
  if (d.connections < limit && !unbound_.empty()) {
    WorkerSlot* w = unbound_.back();
    remove_idle_locked(*w);
    bind_locked(*w, name);
    w->inbox = std::move(job);
    p.wake.push_back(w->wakeup);
    ++in_flight_;
    return;
  }
  const bool room = d.connections < limit;
  // In a DNS-routed queue, a job whose server has connections open, all busy, waits for one of
  // them (or goes in the same write as another's job, max_pipelined) rather than have another
  // connection opened, or moved from another server at max_mta (patent §C); until move_after,
  // when rebalance_locked opens or moves one for it. Connections grow with what the servers
  // cannot take, not with every job that finds none idle: in `zero`, 400-500 connections for
  // 200 allowed had made the relay spend its time waking threads.
  const bool wait_for_own = per_domain_ && known && served_locked(*servers);
  push_pending_locked(std::move(job), false);
  if (wait_for_own && room) want_rebalance_locked(now + settings_locked().move_after, p.rearm);
  if (room && !wait_for_own) {
    // Patent Fig. 7: no worker ready, fewer than max_mta, a backlog beyond max_queue.
    // Counted towards the server from now, not from when the worker takes the job: the jobs
    // for that server coming in meanwhile wait for it rather than each start a worker (`zero`:
    // 50-100 workers started for 8 servers in its first milliseconds).
    const bool started =
        (workers_ == 0 || pending_ > settings_locked().max_queue) &&
        start_worker_for_locked(name, known ? servers->front() : std::string(), p.spawn);
    if (!started && workers_ >= settings_locked().max_mta) {
      if (auto w = evict_idle_locked(name)) p.wake.push_back(std::move(w));
    }
  }
}

void Queue::carry_out(Placement& p) {
  if (p.rearm) asio::post(loops_.main(), [this] { arm_retry_timer(); });
  for (auto& w : p.wake) w->notify();
  for (unsigned i = 0; i < p.spawn && spawner_; ++i) spawner_(*this, false);
  if (!p.down.empty()) hand_off(std::move(p.down), "destination down");
  for (const std::string& name : p.look_up) look_up_(name, [this, name] { looked_up(name); });
}

void Queue::looked_up(const std::string& destination) {
  Placement p;
  const Servers servers = servers_of(destination);
  {
    std::lock_guard lock(mu_);
    auto it = dests_.find(destination);
    if (it == dests_.end()) return;
    Destination& d = it->second;
    d.look_up = Destination::LookUp::Done;
    // Placed again as if they arrived now, keeping their time of arrival. (The destination
    // stays in waiting_ if nothing is left pending: take_waiting_locked drops it.)
    std::deque<Job> held = std::move(d.pending);
    d.pending.clear();
    pending_ -= held.size();
    const auto now = Clock::now();
    for (Job& job : held) place_locked(std::move(job), now, servers, p);
    // Held jobs count toward the throttle, and those handed straight to a parked worker never
    // pass through next_job's check: the sessions they held back are let go here.
    release_throttled_locked(p.wake);
  }
  carry_out(p);
}

bool Queue::admit(const std::shared_ptr<net::Wakeup>& w) {
  std::lock_guard lock(mu_);
  if (settings_locked().throttle == 0 || pending_ < settings_locked().throttle) return true;
  throttled_.push_back(w);
  return false;
}

// --- worker side ---

Queue::Next Queue::next_job(WorkerSlot& slot, bool connected) {
  std::vector<std::shared_ptr<net::Wakeup>> wake;
  unsigned spawn = 0;
  Next next;
  {
    std::lock_guard lock(mu_);
    const std::string started_for = started_locked(slot);
    if (slot.drop_connection) {
      slot.drop_connection = false;
      next.drop_connection = true;
      return next;
    }
    if (slot.inbox) {
      next.job = std::move(slot.inbox);
      next.on_server = slot.inbox_on_server;
      slot.inbox.reset();
      slot.inbox_on_server = false;
      return next;
    }
    // A worker asking for work is not idle, even if a stale wake-up (one posted as its idle
    // wait timed out) ended its wait without anyone taking it off the idle lists: left there,
    // it could be handed a job while busy, and a second would overwrite the first.
    remove_idle_locked(slot);
    if (!started_for.empty() && !slot.bound) {
      // A new worker takes the job it was started for, if no one else did meanwhile.
      const auto it = dests_.find(started_for);
      if (it != dests_.end() && takeable(it->second, destination_limit_locked()))
        bind_locked(slot, started_for);
    }
    const auto now = Clock::now();
    const auto due_here = slot.bound ? due_on_host_locked(slot, now) : std::nullopt;
    if (due_here) {
      // Mail for this server that waited move_after goes before the worker's own domain's next:
      // a busy domain would keep it from the only connection it may get at max_mta.
      next.on_server = true;
      ++stats_.reused;
      next.job = take_from_waiting_locked(slot, *due_here);
    } else if (slot.bound) {
      Destination& d = dests_[slot.destination];
      if (!d.pending.empty()) {
        next.job = std::move(d.pending.front());
        d.pending.pop_front();
        --pending_;
        ++in_flight_;
      } else if (!connected) {
        unbind_locked(slot);
      }
    }
    if (!next.job) next.job = take_waiting_locked(slot, now, next.on_server);
    if (next.job) {
      release_throttled_locked(wake);
      rebalance_locked(now, wake, spawn);
    } else if (stopping_) {
      next.stop = true;
    } else if (!slot.parked) {
      // Park (patent step 611): with its connection, as an idle one of its destination.
      slot.parked = true;
      ++ready_;
      if (slot.bound) {
        park_bound_locked(slot, wake);
      } else {
        unbound_.push_back(&slot);
      }
    }
  }
  for (auto& w : wake) w->notify();
  for (unsigned k = 0; k < spawn && spawner_; ++k) spawner_(*this, false);
  return next;
}

std::vector<Job> Queue::more_for_connection(WorkerSlot& slot, std::size_t max, bool quick) {
  std::vector<Job> more;
  std::vector<std::shared_ptr<net::Wakeup>> wake;
  {
    std::lock_guard lock(mu_);
    if (pending_ == 0 || !quick) return more;
    const unsigned limit = destination_limit_locked();
    while (more.size() < max) {
      if (slot.bound) {
        Destination& d = dests_[slot.destination];
        if (!d.pending.empty()) {
          more.push_back(std::move(d.pending.front()));
          d.pending.pop_front();
          --pending_;
          continue;
        }
      }
      if (!per_domain_ || slot.host.empty()) break;
      const auto on_host = waiting_on_host_locked(slot, limit);
      if (on_host == waiting_.end()) break;
      more.push_back(pop_waiting_locked(static_cast<std::size_t>(on_host - waiting_.begin())));
      ++stats_.reused;
    }
    in_flight_ += more.size();
    stats_.pipelined += more.size();
    if (!more.empty()) release_throttled_locked(wake);
  }
  for (auto& w : wake) w->notify();
  return more;
}

bool Queue::unpark(WorkerSlot& slot) {
  std::lock_guard lock(mu_);
  if (!slot.parked) return false;
  remove_idle_locked(slot);
  unbind_locked(slot);
  return true;
}

void Queue::unbind(WorkerSlot& slot) {
  std::lock_guard lock(mu_);
  unbind_locked(slot);
}

bool Queue::surplus_worker() const {
  std::lock_guard lock(mu_);
  return stopping_ || workers_ > settings_locked().init_mta;
}

void Queue::detach(WorkerSlot& slot) {
  bool spawn_one = false;
  bool schedule = false;
  {
    std::lock_guard lock(mu_);
    started_locked(slot);
    --workers_;
    remove_idle_locked(slot);
    if (slot.inbox) {
      // Handed over as the worker was leaving: put it back, first in line.
      push_pending_locked(std::move(*slot.inbox), true);
      slot.inbox.reset();
      --in_flight_;
    }
    unbind_locked(slot);  // and arrived_locked
    if (!slot.host.empty()) {
      closed_on_server_locked(slot.host);
      slot.host.clear();
    }
    if (pending_ > 0 && unbound_.empty()) {
      if (reserve_worker_locked()) {
        spawn_one = true;
      } else if (workers_ == 0 && !spawn_retry_scheduled_) {
        spawn_retry_scheduled_ = schedule = true;
      }
    }
  }
  if (spawn_one && spawner_) spawner_(*this, false);
  if (schedule) {
    // Out of resources with no worker left: try again when the pause is over.
    auto timer = std::make_shared<asio::steady_timer>(loops_.next(), std::chrono::seconds(1));
    timer->async_wait([this, timer](std::error_code) {
      bool spawn = false;
      {
        std::lock_guard lock(mu_);
        spawn_retry_scheduled_ = false;
        spawn = pending_ > 0 && unbound_.empty() && reserve_worker_locked();
      }
      if (spawn && spawner_) spawner_(*this, false);
    });
  }
}

void Queue::give_back(Job job, const std::string& why) {
  const std::size_t fds = open_descriptors();
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  unsigned workers = 0;
  bool log = false;
  {
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    log = spawn_paused_until_ + std::chrono::seconds(10) < now;
    spawn_paused_until_ = now + std::chrono::seconds(1);
    push_pending_locked(std::move(job), true);
    --in_flight_;
    workers = workers_;
  }
  if (log) {
    spdlog::error(
        "queue {}: cannot open another connection ({}): {} descriptors open of {} allowed, {} "
        "workers; carrying on "
        "with the workers it has (raise the descriptor limit or lower max_mta)",
        name_, why, fds, static_cast<unsigned long long>(rl.rlim_cur), workers);
  }
}

std::chrono::milliseconds Queue::retry_delay(unsigned attempts, bool fault) const {
  // A broken connection is the worker's problem, not the job's: the first retry goes at once to
  // another worker (patent Fig. 8). After that the delay doubles from retry_delay.
  if (fault && attempts <= 1) return std::chrono::milliseconds(0);
  const unsigned doublings = std::min(attempts - (fault ? 2u : 1u), 30u);
  const auto base = config()->retry_delay.count();
  const auto max = config()->retry_delay_max.count();
  long long d = base;
  for (unsigned i = 0; i < doublings && d < max; ++i) d *= 2;
  return std::chrono::milliseconds(std::min<long long>(d, max));
}

void Queue::record_final(const Job& job, const Recipient& r, Outcome outcome,
                         const smtp::Reply& reply, const AttemptReport& report) {
  const auto now = Clock::now();
  const auto started = report.started == Clock::time_point{} ? now : report.started;
  log_.record(observe::AccountingEvent{
      outcome, *job.message, r, name_, report.mx, reply,
      std::chrono::duration_cast<std::chrono::milliseconds>(started - job.queued),
      std::chrono::duration_cast<std::chrono::milliseconds>(now - started)});
  if (!is_final(outcome)) return;
  if (job.message->waiter) job.message->waiter->report(r.index, outcome, reply);
  if (job.message->spooled) job.message->spooled->recipient_final(r.index);
}

void Queue::finish_unattempted(const Job& unqueued, Outcome outcome, const smtp::Reply& reply) {
  Job job = unqueued;
  job.queued = Clock::now();  // it never waited
  for (const auto& r : job.recipients) record_final(job, r, outcome, reply, AttemptReport{});
  std::lock_guard lock(mu_);
  if (outcome == Outcome::Bounced) stats_.bounced += job.recipients.size();
  if (outcome == Outcome::Failed) stats_.failed += job.recipients.size();
}

void Queue::hand_off(std::vector<Job> jobs, const std::string& why) {
  Queue* const retry = retry_queue_.load(std::memory_order_acquire);
  for (Job& job : jobs) {
    const std::size_t n = job.recipients.size();
    {
      std::lock_guard lock(mu_);
      backlog_recipients_ -= std::min(backlog_recipients_, n);
      if (retry != nullptr) {
        stats_.handed_off += n;
      } else {
        stats_.failed += n;
      }
    }
    if (retry == nullptr) {
      const smtp::Reply reply = smtp::make_reply(451, "4.4.1", why + ": no retry queue");
      for (const auto& r : job.recipients)
        record_final(job, r, Outcome::Failed, reply, AttemptReport{});
      continue;
    }
    // The retry queue takes it as new mail: its own routing, its own attempts.
    const smtp::Reply reply =
        smtp::make_reply(451, "4.4.1", why + ": handed to queue " + retry->name());
    for (auto& r : job.recipients) {
      record_final(job, r, Outcome::Deferred, reply, AttemptReport{});
      r.attempts = 0;
    }
    job.destination =
        retry->destination_for(job.recipients.empty() ? "" : job.recipients[0].domain());
    retry->submit(std::move(job));
  }
}

void Queue::complete(Job job, const std::vector<RecipientStatus>& statuses,
                     const AttemptReport& report) {
  const auto now = Clock::now();
  Job retry, resend;
  retry.message = resend.message = job.message;
  retry.destination = resend.destination = job.destination;
  std::uint64_t delivered = 0, bounced = 0, failed = 0, deferred = 0;
  unsigned fewest_attempts = ~0u;
  for (std::size_t i = 0; i < job.recipients.size(); ++i) {
    Recipient& r = job.recipients[i];
    const RecipientStatus& s = i < statuses.size() ? statuses[i] : RecipientStatus{};
    if (s.outcome == Outcome::Deferred && s.resend) {
      resend.recipients.push_back(std::move(r));  // RFC 5321 §4.5.3.1.10: the next transaction
      continue;
    }
    ++r.attempts;
    switch (s.outcome) {
      case Outcome::Delivered:
        ++delivered;
        record_final(job, r, Outcome::Delivered, s.reply, report);
        continue;
      case Outcome::Bounced:
        ++bounced;
        record_final(job, r, Outcome::Bounced, s.reply, report);
        continue;
      default:
        break;
    }
    const auto expires = job.message->received + config()->timeouts.deliver;
    if (r.attempts >= config()->max_retries ||
        now + retry_delay(r.attempts, report.connection_fault) > expires) {
      ++failed;
      record_final(job, r, Outcome::Failed, s.reply, report);
      continue;
    }
    ++deferred;
    record_final(job, r, Outcome::Deferred, s.reply, report);
    fewest_attempts = std::min<unsigned>(fewest_attempts, r.attempts);
    retry.recipients.push_back(std::move(r));
  }
  std::vector<Job> down;
  std::vector<std::shared_ptr<net::Wakeup>> wake;
  bool is_down = false;
  {
    std::lock_guard lock(mu_);
    --in_flight_;
    backlog_recipients_ -= std::min<std::size_t>(backlog_recipients_, delivered + bounced + failed);
    stats_.delivered += delivered;
    stats_.bounced += bounced;
    stats_.failed += failed;
    stats_.deferred += deferred;
    Destination& d = dests_[job.destination];
    if (report.connected) d.failures = 0;
    // After abandon() a failure is the shutdown cutting connections, not the destination's.
    const bool cut_off = !abandoned_.empty();
    if (report.unreachable && !cut_off && ++d.failures >= config()->max_fail &&
        d.down_until <= now) {
      // Patent §C: a destination that cannot be reached goes to the retry queue, all of it.
      d.down_until = now + config()->down_time;
      spdlog::warn(
          "queue {}: destination {} is down after {} consecutive connection failures; {} for {} s",
          name_, job.destination.empty() ? "(the queue's hosts)" : job.destination, d.failures,
          retry_queue_.load() != nullptr
              ? "handing its mail to queue " + retry_queue_.load()->name()
              : std::string("failing its mail"),
          std::chrono::duration_cast<std::chrono::seconds>(config()->down_time).count());
      while (!d.pending.empty()) {
        down.push_back(std::move(d.pending.front()));
        d.pending.pop_front();
        --pending_;
      }
      release_throttled_locked(wake);
    }
    is_down = d.down_until > now && !cut_off;
    forget_if_idle_locked(job.destination);
  }
  for (auto& w : wake) w->notify();
  if (!resend.recipients.empty()) enqueue(std::move(resend), false);
  if (!retry.recipients.empty()) {
    if (is_down) {
      down.push_back(std::move(retry));
    } else {
      retry_later(std::move(retry), retry_delay(fewest_attempts, report.connection_fault));
    }
  }
  if (!down.empty())
    hand_off(std::move(down), "destination down after " + std::to_string(config()->max_fail) +
                                  " consecutive connection failures");
}

void Queue::retry_later(Job job, std::chrono::milliseconds delay) {
  bool abandoned = false;
  {
    std::lock_guard lock(mu_);
    abandoned = !abandoned_.empty();
  }
  if (delay.count() == 0 || abandoned) {
    enqueue(std::move(job), false);
    return;
  }
  bool rearm = false;
  {
    std::lock_guard lock(mu_);
    const auto due = Clock::now() + delay;
    delayed_.emplace(due, std::move(job));
    retrying_ = delayed_.size();
    if (due < timer_due_) {
      timer_due_ = due;
      rearm = true;
    }
  }
  if (rearm) asio::post(loops_.main(), [this] { arm_retry_timer(); });
}

void Queue::arm_retry_timer() {
  Clock::time_point due;
  {
    std::lock_guard lock(mu_);
    due = timer_due_;
  }
  if (due == Clock::time_point::max()) return;
  retry_timer_.expires_at(due);
  retry_timer_.async_wait([this](std::error_code ec) {
    if (!ec) on_retry_timer();
  });
}

void Queue::on_retry_timer() {
  std::vector<Job> due;
  Placement p;
  {
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    while (!delayed_.empty() && delayed_.begin()->first <= now) {
      due.push_back(std::move(delayed_.begin()->second));
      delayed_.erase(delayed_.begin());
    }
    retrying_ = delayed_.size();
    if (rebalance_due_ <= now) {
      rebalance_due_ = Clock::time_point::max();
      rebalance_look_at_ = {};  // a full look, past what the last one found
      rebalance_locked(now, p.wake, p.spawn);
      // Another look later while anything still waits: at most one every move_after.
      if (pending_ > 0) rebalance_due_ = now + settings_locked().move_after;
    }
    timer_due_ = std::min(rebalance_due_,
                          delayed_.empty() ? Clock::time_point::max() : delayed_.begin()->first);
  }
  carry_out(p);
  for (Job& job : due) enqueue(std::move(job), false);
  arm_retry_timer();
}

std::size_t Queue::abandon(const std::string& why) {
  std::vector<Job> left;
  std::vector<std::shared_ptr<net::Wakeup>> wake;
  {
    std::lock_guard lock(mu_);
    for (auto& [name, d] : dests_) {
      for (Job& j : d.pending) left.push_back(std::move(j));
      d.pending.clear();
    }
    for (auto& [due, j] : delayed_) left.push_back(std::move(j));
    delayed_.clear();
    waiting_.clear();
    pending_ = retrying_ = 0;
    abandoned_ = why;
    release_throttled_locked(wake);
  }
  for (auto& w : wake) w->notify();
  std::size_t n = 0, kept = 0;
  const smtp::Reply reply = smtp::make_reply(451, "4.3.2", why);
  for (const Job& job : left) {
    if (job.message->spooled) {
      kept += job.recipients.size();  // in the spool: delivered after the restart
      continue;
    }
    for (const auto& r : job.recipients)
      record_final(job, r, Outcome::Failed, reply, AttemptReport{});
    n += job.recipients.size();
  }
  std::lock_guard lock(mu_);
  backlog_recipients_ -= std::min(backlog_recipients_, n + kept);
  stats_.failed += n;
  kept_in_spool_ += kept;
  return n;
}

void Queue::stop() {
  std::vector<std::shared_ptr<net::Wakeup>> wake;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (WorkerSlot* s : unbound_) {
      s->parked = false;
      wake.push_back(s->wakeup);
    }
    unbound_.clear();
    for (auto& [name, d] : dests_) {
      for (WorkerSlot* s : d.idle) {
        s->parked = false;
        wake.push_back(s->wakeup);
      }
      d.idle.clear();
      d.in_lru = false;
    }
    idle_lru_.clear();
    ready_ = 0;
  }
  for (auto& w : wake) w->notify();
}

bool Queue::stopping() const {
  std::lock_guard lock(mu_);
  return stopping_;
}

std::size_t Queue::backlog() const {
  std::lock_guard lock(mu_);
  return pending_ + in_flight_ + retrying_;
}

std::size_t Queue::backlog_recipients() const {
  std::lock_guard lock(mu_);
  return backlog_recipients_;
}

QueueStats Queue::stats() const {
  std::lock_guard lock(mu_);
  QueueStats s = stats_;
  s.workers = workers_;
  s.ready = static_cast<unsigned>(ready_);
  s.queued = pending_;
  s.in_flight = in_flight_;
  s.retrying = retrying_;
  const auto now = Clock::now();
  for (const auto& [name, d] : dests_) {
    if (is_server_key(name)) continue;  // idle connections filed by server
    ++s.destinations;
    s.down += d.down_until > now ? 1 : 0;
  }
  return s;
}

}  // namespace mma::routing
