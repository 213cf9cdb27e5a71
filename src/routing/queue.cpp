#include "routing/queue.hpp"

#include <algorithm>

#include "core/delivery_waiter.hpp"

namespace mma::routing {

Queue::Queue(config::QueueSection cfg, observe::AccountingLog& log, net::EventLoops& loops)
    : cfg_(std::move(cfg)), log_(log), loops_(loops) {
  stats_.name = cfg_.name;
}

void Queue::start() {
  for (unsigned i = 0; i < cfg_.init_mta; ++i) {
    {
      std::lock_guard lock(mu_);
      ++workers_;
      stats_.peak_mtas = std::max(stats_.peak_mtas, workers_);
    }
    spawn(/*warm=*/true);
  }
}

bool Queue::should_spawn_locked() const {
  // Patent Fig. 7: no worker ready, fewer than max_mta, and a backlog beyond max_queue.
  return !pending_.empty() && ready_.empty() && workers_ < cfg_.max_mta &&
         (workers_ == 0 || pending_.size() > cfg_.max_queue);
}

void Queue::spawn(bool warm) {
  if (spawner_) spawner_(*this, warm);
}

void Queue::submit(Job job) {
  enqueue(std::move(job), true);
}

void Queue::enqueue(Job job, bool fresh) {
  // The wake-up is taken under the lock: once the lock is released the worker may take the
  // job, finish and end, and its slot with it.
  std::shared_ptr<net::Wakeup> wake;
  bool spawn_one = false;
  {
    std::lock_guard lock(mu_);
    if (fresh) {
      ++stats_.msg_count;
      backlog_recipients_ += job.recipients.size();
    }
    job.queued = Clock::now();
    if (!ready_.empty()) {
      // Most recently parked first: its connection is the warmest.
      WorkerSlot* slot = ready_.back();
      ready_.pop_back();
      slot->parked = false;
      slot->inbox = std::move(job);
      wake = slot->wakeup;
      ++in_flight_;
    } else {
      pending_.push_back(std::move(job));
      stats_.peak_msgs = std::max(stats_.peak_msgs, pending_.size());
      if (should_spawn_locked()) {
        ++workers_;
        stats_.peak_mtas = std::max(stats_.peak_mtas, workers_);
        spawn_one = true;
      }
    }
  }
  if (wake) wake->notify();
  if (spawn_one) spawn();
}

bool Queue::admit(const std::shared_ptr<net::Wakeup>& w) {
  std::lock_guard lock(mu_);
  if (cfg_.throttle == 0 || pending_.size() < cfg_.throttle) return true;
  throttled_.push_back(w);
  return false;
}

Queue::Next Queue::next_job(WorkerSlot& slot) {
  std::vector<std::shared_ptr<net::Wakeup>> release;
  Next next;
  {
    std::lock_guard lock(mu_);
    if (slot.inbox) {
      next.job = std::move(slot.inbox);
      slot.inbox.reset();
    } else if (!pending_.empty()) {
      next.job = std::move(pending_.front());
      pending_.pop_front();
      ++in_flight_;
      if (!throttled_.empty() && pending_.size() < cfg_.throttle) release.swap(throttled_);
    } else if (stopping_) {
      next.stop = true;
    } else if (!slot.parked) {  // a stale wake-up may find it parked already
      slot.parked = true;
      ready_.push_back(&slot);
    }
  }
  for (auto& w : release) w->notify();
  return next;
}

bool Queue::unpark(WorkerSlot& slot) {
  std::lock_guard lock(mu_);
  if (!slot.parked) return false;
  slot.parked = false;
  ready_.erase(std::remove(ready_.begin(), ready_.end(), &slot), ready_.end());
  return true;
}

bool Queue::surplus_worker() const {
  std::lock_guard lock(mu_);
  return stopping_ || workers_ > cfg_.init_mta;
}

void Queue::detach(WorkerSlot& slot) {
  bool spawn_one = false;
  {
    std::lock_guard lock(mu_);
    --workers_;
    if (slot.parked) {
      slot.parked = false;
      ready_.erase(std::remove(ready_.begin(), ready_.end(), &slot), ready_.end());
    }
    if (slot.inbox) {
      // Handed over as the worker was leaving: put it back, first in line.
      pending_.push_front(std::move(*slot.inbox));
      slot.inbox.reset();
      --in_flight_;
    }
    if (should_spawn_locked()) {
      ++workers_;
      spawn_one = true;
    }
  }
  if (spawn_one) spawn();
}

std::chrono::milliseconds Queue::retry_delay(unsigned attempts, bool fault) const {
  // A broken connection is the worker's problem, not the job's: the first retry goes at once to
  // another worker (patent Fig. 8). After that the delay doubles from retry_delay.
  if (fault && attempts <= 1) return std::chrono::milliseconds(0);
  const unsigned doublings = std::min(attempts - (fault ? 2u : 1u), 30u);
  const auto base = cfg_.retry_delay.count();
  const auto max = cfg_.retry_delay_max.count();
  long long d = base;
  for (unsigned i = 0; i < doublings && d < max; ++i) d *= 2;
  return std::chrono::milliseconds(std::min<long long>(d, max));
}

void Queue::record_final(const Job& job, const Recipient& r, Outcome outcome,
                         const smtp::Reply& reply, const AttemptReport& report) {
  const auto now = Clock::now();
  const auto started = report.started == Clock::time_point{} ? now : report.started;
  log_.record(observe::AccountingEvent{
      outcome, *job.message, r, cfg_.name, report.mx, reply,
      std::chrono::duration_cast<std::chrono::milliseconds>(started - job.queued),
      std::chrono::duration_cast<std::chrono::milliseconds>(now - started)});
  if (is_final(outcome) && job.message->waiter)
    job.message->waiter->report(r.index, outcome, reply);
}

void Queue::finish_unattempted(const Job& job, Outcome outcome, const smtp::Reply& reply) {
  for (const auto& r : job.recipients) record_final(job, r, outcome, reply, AttemptReport{});
  std::lock_guard lock(mu_);
  if (outcome == Outcome::Bounced) stats_.bounced += job.recipients.size();
  if (outcome == Outcome::Failed) stats_.failed += job.recipients.size();
}

void Queue::complete(Job job, const std::vector<RecipientStatus>& statuses,
                     const AttemptReport& report) {
  const auto now = Clock::now();
  Job retry;
  retry.message = job.message;
  retry.destination = job.destination;
  std::uint64_t delivered = 0, bounced = 0, failed = 0, deferred = 0;
  unsigned fewest_attempts = ~0u;
  for (std::size_t i = 0; i < job.recipients.size(); ++i) {
    Recipient& r = job.recipients[i];
    ++r.attempts;
    const RecipientStatus& s = i < statuses.size() ? statuses[i] : RecipientStatus{};
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
    const auto expires = job.message->received + cfg_.timeouts.deliver;
    if (r.attempts >= cfg_.max_retries ||
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
  {
    std::lock_guard lock(mu_);
    --in_flight_;
    backlog_recipients_ -= delivered + bounced + failed;
    stats_.delivered += delivered;
    stats_.bounced += bounced;
    stats_.failed += failed;
    stats_.deferred += deferred;
  }
  if (!retry.recipients.empty()) {
    retry_later(std::move(retry), retry_delay(fewest_attempts, report.connection_fault));
  }
}

void Queue::retry_later(Job job, std::chrono::milliseconds delay) {
  if (delay.count() == 0) {
    enqueue(std::move(job), false);
    return;
  }
  {
    std::lock_guard lock(mu_);
    ++retrying_;
  }
  auto timer = std::make_shared<asio::steady_timer>(loops_.next(), delay);
  timer->async_wait([this, timer, job = std::move(job)](std::error_code) mutable {
    {
      std::lock_guard lock(mu_);
      --retrying_;
    }
    enqueue(std::move(job), false);
  });
}

void Queue::stop() {
  std::vector<std::shared_ptr<net::Wakeup>> wake;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (WorkerSlot* s : ready_) {
      s->parked = false;
      wake.push_back(s->wakeup);
    }
    ready_.clear();
  }
  for (auto& w : wake) w->notify();
}

bool Queue::stopping() const {
  std::lock_guard lock(mu_);
  return stopping_;
}

std::size_t Queue::backlog() const {
  std::lock_guard lock(mu_);
  return pending_.size() + in_flight_ + retrying_;
}

std::size_t Queue::backlog_recipients() const {
  std::lock_guard lock(mu_);
  return backlog_recipients_;
}

QueueStats Queue::stats() const {
  std::lock_guard lock(mu_);
  QueueStats s = stats_;
  s.workers = workers_;
  s.ready = static_cast<unsigned>(ready_.size());
  s.queued = pending_.size();
  s.in_flight = in_flight_;
  s.retrying = retrying_;
  return s;
}

}  // namespace mma::routing
