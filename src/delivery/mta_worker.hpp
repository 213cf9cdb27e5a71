// delivery/mta_worker: one outbound SMTP connection and the coroutine that drives it (the
// patent's MTA thread; DESIGN.md §8).
//
// A worker takes one job at a time from its Queue, connects on its first job (trying the
// queue's hosts, starting at a different one per worker so load spreads), keeps the
// connection for the next jobs up to max_jobs, pipelines MAIL/RCPT/DATA when offered, and
// closes the connection after `idle` without work. A broken connection (refused, reset,
// timed out, garbled) hands the job back to the queue as a connection fault and ends the
// worker, freeing its slot (patent Fig. 8).
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/message.hpp"
#include "delivery/smtp_client.hpp"
#include "net/asio.hpp"
#include "net/wakeup.hpp"
#include "routing/queue.hpp"

namespace mma::delivery {

class MtaWorker : public std::enable_shared_from_this<MtaWorker> {
 public:
  // Starts a worker for `queue` on `ex`. The queue has already counted it. A `warm` worker
  // (one of init_mta) connects at once, so the campaign's first jobs find a connection ready;
  // others connect on their first job.
  static void start(const asio::any_io_executor& ex, routing::Queue& queue, std::string helo_name,
                    bool warm);

  MtaWorker(const asio::any_io_executor& ex, routing::Queue& queue, std::string helo_name,
            unsigned id);

 private:
  static net::Task<void> run(std::shared_ptr<MtaWorker> self, bool warm);
  net::Task<void> work(bool warm);
  net::Task<bool> connect();
  // One attempt at the job on the open connection; false when the connection broke.
  net::Task<bool> deliver(Job job, routing::AttemptReport report);
  void fail_job(Job job, const smtp::Reply& reply, const routing::AttemptReport& report);

  routing::Queue& queue_;
  const config::QueueSection& cfg_;
  std::string helo_name_;
  unsigned id_;
  std::shared_ptr<net::Wakeup> wakeup_;
  routing::WorkerSlot slot_;
  SmtpClient client_;
  std::size_t jobs_on_connection_ = 0;
  std::optional<Job> current_;  // the job in hand, handed back if the worker dies
};

}  // namespace mma::delivery
