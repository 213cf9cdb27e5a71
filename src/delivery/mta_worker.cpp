#include "delivery/mta_worker.hpp"

#include <spdlog/spdlog.h>

#include <atomic>

#include "net/connect.hpp"

namespace mma::delivery {
namespace {

using namespace asio::experimental::awaitable_operators;
using std::chrono::milliseconds;

std::atomic<unsigned> next_worker_id{0};

Outcome outcome_of(const smtp::Reply& r) {
  if (r.klass() == 2) return Outcome::Delivered;
  if (r.klass() == 5) return Outcome::Bounced;
  return Outcome::Deferred;
}

}  // namespace

void MtaWorker::start(const asio::any_io_executor& ex, routing::Queue& queue, std::string helo_name,
                      bool warm) {
  auto worker =
      std::make_shared<MtaWorker>(ex, queue, std::move(helo_name), next_worker_id.fetch_add(1));
  asio::co_spawn(ex, run(std::move(worker), warm), asio::detached);
}

MtaWorker::MtaWorker(const asio::any_io_executor& ex, routing::Queue& queue, std::string helo_name,
                     unsigned id)
    : queue_(queue),
      cfg_(queue.config()),
      helo_name_(std::move(helo_name)),
      id_(id),
      wakeup_(std::make_shared<net::Wakeup>(ex)),
      slot_(wakeup_),
      client_(ex) {}

net::Task<void> MtaWorker::run(std::shared_ptr<MtaWorker> self, bool warm) {
  try {
    co_await (self->work(warm) || self->client_.watch());
  } catch (const std::exception& e) {
    // A broken invariant or resource exhaustion: never lose the job in hand.
    spdlog::error("queue {}: worker {} failed: {}", self->queue_.name(), self->id_, e.what());
    if (self->current_) {
      routing::AttemptReport report;
      report.connection_fault = true;
      report.mx = self->client_.peer();
      Job job = std::move(*self->current_);
      self->current_.reset();
      self->fail_job(std::move(job),
                     smtp::make_reply(451, "4.3.0", std::string("local error: ") + e.what()),
                     report);
    }
  }
  self->client_.close();
  self->queue_.detach(self->slot_);
}

net::Task<void> MtaWorker::work(bool warm) {
  // Polite, but never worth waiting long for (RFC 5321 §4.1.1.10).
  const milliseconds quit_timeout =
      std::min<milliseconds>(cfg_.timeouts.command, milliseconds(5000));
  if (warm) {
    // No job is charged if this fails: the first job will try again.
    const bool ok = co_await connect();
    if (!ok) {
      spdlog::info("queue {}: worker {}: could not connect at start: {}", queue_.name(), id_,
                   client_.error());
    }
  }
  for (;;) {
    routing::Queue::Next next = queue_.next_job(slot_);
    if (next.stop) {
      co_await client_.quit(quit_timeout);
      co_return;
    }
    if (!next.job) {
      // Parked in the ready list (patent step 611). A connected worker waits `idle`, then
      // closes its connection; a worker beyond init_mta then ends.
      const bool keep = !queue_.surplus_worker();
      const auto wait = client_.connected() || !keep
                            ? std::chrono::steady_clock::duration(cfg_.timeouts.idle)
                            : std::chrono::steady_clock::duration::max();
      if (co_await wakeup_->wait(wait)) continue;
      if (!queue_.unpark(slot_)) continue;  // a job came in as the wait ended
      co_await client_.quit(quit_timeout);
      if (queue_.surplus_worker()) co_return;
      continue;
    }
    current_ = std::move(next.job);
    routing::AttemptReport report;
    report.started = Clock::now();
    // (No co_await inside && or ?: : GCC 12 miscompiles some of those.)
    bool connected = client_.connected();
    if (!connected) connected = co_await connect();
    if (!connected) {
      report.connection_fault = true;
      report.mx = client_.peer();
      Job job = std::move(*current_);
      current_.reset();
      fail_job(std::move(job), smtp::make_reply(451, "4.4.1", client_.error()), report);
      co_return;  // frees the slot; the queue starts another worker if work remains
    }
    Job job = std::move(*current_);
    current_.reset();
    if (!co_await deliver(std::move(job), report)) {
      spdlog::debug("queue {}: worker {}: {}", queue_.name(), id_, client_.error());
      co_return;
    }
    if (++jobs_on_connection_ >= cfg_.max_jobs) co_await client_.quit(quit_timeout);
  }
}

void MtaWorker::fail_job(Job job, const smtp::Reply& reply, const routing::AttemptReport& report) {
  std::vector<routing::RecipientStatus> statuses(
      job.recipients.size(), routing::RecipientStatus{Outcome::Deferred, reply});
  queue_.complete(std::move(job), statuses, report);
}

net::Task<bool> MtaWorker::connect() {
  const auto& hosts = cfg_.mx;
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    // Each worker starts at a different host: equal-preference hosts share the load.
    const auto& host = hosts[(id_ + i) % hosts.size()];
    net::Connected c = co_await net::connect(host, cfg_.timeouts.connect);
    if (!c.stream) {
      client_.connect_failed(c.address, "connect to " + host.to_string() + ": " + c.ec.message());
      spdlog::debug("queue {}: worker {}: {}", queue_.name(), id_, client_.error());
      continue;
    }
    client_.attach(std::move(c.stream), c.address);
    jobs_on_connection_ = 0;
    if (co_await client_.open(helo_name_, false, cfg_.timeouts)) co_return true;
    spdlog::debug("queue {}: worker {}: {}", queue_.name(), id_, client_.error());
    client_.close();
  }
  co_return false;
}

net::Task<bool> MtaWorker::deliver(Job job, routing::AttemptReport report) {
  const Message& msg = *job.message;
  smtp::TransactionInput input;
  input.sender = msg.sender;
  input.size = msg.body->size;
  input.eightbit = msg.body->type == BodyType::EightBitMime;
  input.recipients.reserve(job.recipients.size());
  for (const auto& r : job.recipients) input.recipients.push_back(r.address);
  // The job is kept in current_ while the transaction runs, so an exception cannot lose it.
  current_ = std::move(job);
  SmtpClient::Transaction tx =
      co_await client_.transact(std::move(input), msg.body->wire, cfg_.timeouts);
  job = std::move(*current_);
  current_.reset();

  std::vector<routing::RecipientStatus> statuses(job.recipients.size());
  report.mx = client_.peer();
  if (tx.fault) {
    // What the server refused for good stays refused; everything else is unknown: retry it.
    const smtp::Reply lost = smtp::make_reply(451, "4.4.2", client_.error());
    for (std::size_t i = 0; i < statuses.size(); ++i) {
      const bool refused = i < tx.replies.size() && tx.replies[i].klass() == 5;
      statuses[i] = refused ? routing::RecipientStatus{Outcome::Bounced, tx.replies[i]}
                            : routing::RecipientStatus{Outcome::Deferred, lost};
    }
  } else {
    for (std::size_t i = 0; i < statuses.size(); ++i)
      statuses[i] = {outcome_of(tx.replies[i]), tx.replies[i]};
  }
  report.connection_fault = tx.fault || tx.closing;
  queue_.complete(std::move(job), statuses, report);
  if (report.connection_fault) {
    client_.close();
    co_return false;
  }
  co_return true;
}

}  // namespace mma::delivery
