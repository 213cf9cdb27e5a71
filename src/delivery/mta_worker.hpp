// delivery/mta_worker: one outbound SMTP connection and the coroutine that drives it (the
// patent's MTA thread; DESIGN.md §8).
//
// A worker takes one job at a time from its Queue. It connects on its first job to the job's
// destination (the queue's hosts, or the domain's MX hosts from DNS, or a program), keeps the
// connection for the next jobs to that destination up to max_jobs, pipelines MAIL/RCPT/DATA
// when offered, upgrades to TLS when offered (queue `tls`), and closes the connection after
// `idle` without work, or when the queue needs it for another destination. A destination that
// cannot be reached, a broken connection (reset, timed out, garbled, 421) hands the job back
// to the queue as a connection fault and ends the worker, freeing its slot (patent Fig. 8).
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "core/message.hpp"
#include "delivery/route_source.hpp"
#include "delivery/smtp_client.hpp"
#include "net/asio.hpp"
#include "net/wakeup.hpp"
#include "routing/queue.hpp"

namespace mma::delivery {

// What every worker shares.
struct WorkerContext {
  std::string helo_name;
  RouteSource& routes;
  asio::ssl::context* tls = nullptr;  // for STARTTLS; null: never
};

class MtaWorker : public std::enable_shared_from_this<MtaWorker> {
 public:
  // Starts a worker for `queue` on `ex`. The queue has already counted it. A `warm` worker
  // (one of init_mta) connects at once to a queue with fixed hosts, so the campaign's first
  // jobs find a connection ready; others connect on their first job.
  static void start(const asio::any_io_executor& ex, routing::Queue& queue, WorkerContext& ctx,
                    bool warm);

  MtaWorker(const asio::any_io_executor& ex, routing::Queue& queue, WorkerContext& ctx,
            unsigned id);

 private:
  enum class Reach : unsigned char { Connected, Bounce, Defer, Unreachable, NoResources };
  struct Connect {
    Reach reach = Reach::Unreachable;
    smtp::Reply reply;
  };

  static net::Task<void> run(std::shared_ptr<MtaWorker> self, bool warm);
  net::Task<void> work(bool warm);
  net::Task<Connect> connect(const std::string& destination);
  net::Task<bool> open_host(const dns::Route::Host& host, config::TlsPolicy tls);
  // One attempt at the job on the open connection; false when the connection broke.
  net::Task<bool> deliver(Job job, routing::AttemptReport report);
  void finish(Job job, Outcome outcome, const smtp::Reply& reply,
              const routing::AttemptReport& report);
  net::Task<void> hang_up();

  routing::Queue& queue_;
  const config::QueueSection& cfg_;
  WorkerContext& ctx_;
  unsigned id_;
  std::shared_ptr<net::Wakeup> wakeup_;
  routing::WorkerSlot slot_;
  SmtpClient client_;
  std::string connected_to_;  // the destination of the open connection
  std::size_t jobs_on_connection_ = 0;
  std::optional<Job> current_;  // the job in hand, handed back if the worker dies
};

}  // namespace mma::delivery
