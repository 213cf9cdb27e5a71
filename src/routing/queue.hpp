// routing/queue: a Queue owns its waiting jobs, its ready list of workers and its statistics
// (the patent's queue_handle; DESIGN.md §7, patent Figs. 6-8).
//
// Jobs come from inbound sessions on any thread (submit); workers on any thread ask for the
// next job, and park in the ready list when there is none. A submit hands the job straight to
// a parked worker's inbox and wakes it; otherwise the job waits, and when the backlog exceeds
// max_queue another worker is started, up to max_mta. Results come back through complete(),
// which logs final outcomes and schedules retries. All state sits under one short lock that
// is never held across a co_await.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/message.hpp"
#include "core/outcome.hpp"
#include "net/event_loops.hpp"
#include "net/wakeup.hpp"
#include "observe/accounting_log.hpp"
#include "smtp/reply.hpp"

namespace mma::routing {

// The queue's view of one worker (the patent's mta_handle, queue side).
struct WorkerSlot {
  explicit WorkerSlot(std::shared_ptr<net::Wakeup> w) : wakeup(std::move(w)) {}
  std::shared_ptr<net::Wakeup> wakeup;
  std::optional<Job> inbox;  // under the queue's lock
  bool parked = false;       // in the ready list; under the queue's lock
};

// How one delivery attempt ended for one recipient.
struct RecipientStatus {
  Outcome outcome = Outcome::Deferred;  // Delivered, Bounced or Deferred
  smtp::Reply reply;
};

struct AttemptReport {
  std::string mx;                 // the remote MTA, "" if none was reached
  bool connection_fault = false;  // refused, dropped, timed out, garbled: retry at once elsewhere
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
  std::uint64_t delivered = 0, bounced = 0, failed = 0, deferred = 0;
};

class Queue {
 public:
  // Starts one worker; `warm`: connect now rather than on the first job (init_mta workers).
  using Spawner = std::function<void(Queue&, bool warm)>;

  Queue(config::QueueSection cfg, observe::AccountingLog& log, net::EventLoops& loops);
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  void set_spawner(Spawner spawner) { spawner_ = std::move(spawner); }
  // Starts init_mta workers.
  void start();
  [[nodiscard]] const config::QueueSection& config() const { return cfg_; }
  [[nodiscard]] const std::string& name() const { return cfg_.name; }

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
  };
  // A job for this worker, or parks the slot in the ready list (job empty, stop false).
  [[nodiscard]] Next next_job(WorkerSlot& slot);
  // Leaves the ready list after an idle timeout; false if a job arrived meanwhile (in inbox).
  [[nodiscard]] bool unpark(WorkerSlot& slot);
  // Whether an idle worker should exit rather than stay for init_mta.
  [[nodiscard]] bool surplus_worker() const;
  // The worker has ended; its slot is free.
  void detach(WorkerSlot& slot);
  void complete(Job job, const std::vector<RecipientStatus>& statuses, const AttemptReport& report);

  // Shutdown: no more parking; workers exit once nothing is left.
  void stop();
  [[nodiscard]] bool stopping() const;
  // Jobs not yet finished: waiting, in flight or waiting to be retried.
  [[nodiscard]] std::size_t backlog() const;
  // Recipients of those jobs.
  [[nodiscard]] std::size_t backlog_recipients() const;
  [[nodiscard]] QueueStats stats() const;

 private:
  [[nodiscard]] bool should_spawn_locked() const;
  void spawn(bool warm = false);
  void enqueue(Job job, bool fresh);
  void retry_later(Job job, std::chrono::milliseconds delay);
  void record_final(const Job& job, const Recipient& r, Outcome outcome, const smtp::Reply& reply,
                    const AttemptReport& report);
  [[nodiscard]] std::chrono::milliseconds retry_delay(unsigned attempts, bool fault) const;

  const config::QueueSection cfg_;
  observe::AccountingLog& log_;
  net::EventLoops& loops_;
  Spawner spawner_;

  mutable std::mutex mu_;
  std::deque<Job> pending_;
  std::vector<WorkerSlot*> ready_;
  std::vector<std::shared_ptr<net::Wakeup>> throttled_;
  unsigned workers_ = 0;  // live and starting
  std::size_t in_flight_ = 0;
  std::size_t retrying_ = 0;
  std::size_t backlog_recipients_ = 0;
  bool stopping_ = false;
  QueueStats stats_;
};

}  // namespace mma::routing
