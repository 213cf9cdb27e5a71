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
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "core/message.hpp"
#include "delivery/route_source.hpp"
#include "delivery/smtp_client.hpp"
#include "net/asio.hpp"
#include "net/wakeup.hpp"
#include "routing/queue.hpp"

namespace mma::delivery {

class MtaWorker;

// Every running worker, so that a shutdown past its grace time can cut off the transactions
// still in flight: their recipients then end as failed, or stay in the spool, each logged.
class WorkerRoster {
 public:
  void add(unsigned id, std::weak_ptr<MtaWorker> worker);
  void remove(unsigned id);
  // Expires every worker's deadline now, on its own loop; returns how many were told.
  std::size_t cut_off_all();

 private:
  std::mutex mu_;
  std::unordered_map<unsigned, std::weak_ptr<MtaWorker>> workers_;
};

// What every worker shares.
struct WorkerContext {
  std::string helo_name;
  RouteSource& routes;
  asio::ssl::context* tls = nullptr;  // for STARTTLS; null: never
  WorkerRoster roster;
  net::BlockingPool* disk = nullptr;  // reads body files off the loops; null: on them
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

  // Ends the operation in progress as if it had timed out. On the worker's own loop only.
  void cut_off() { client_.cut_off(); }
  [[nodiscard]] const asio::any_io_executor& executor() const { return ex_; }

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
  // Whether the open connection can serve `destination` too: its host is one of the
  // destination's best-preference MX hosts (connection reuse by server, as Postfix does).
  net::Task<bool> serves(const std::string& destination);
  // One attempt at the job on the open connection; false when the connection broke.
  net::Task<bool> deliver(Job job, routing::AttemptReport report);
  // Puts `first` and `more` (for the same server) in in_hand_, to go in one write, and what
  // cannot go in it in later_.
  void hold_group(Job first, std::vector<Job> more);
  // in_hand_ in one write (pipelined transactions), then later_ one at a time; false when the
  // connection broke.
  net::Task<bool> deliver_pipelined(routing::AttemptReport report);
  // The envelope of `job`, as views into it.
  static smtp::TransactionInput input_of(const Job& job);
  // What a transaction's replies mean for each recipient of `job`.
  [[nodiscard]] std::vector<routing::RecipientStatus> statuses_of(const SmtpClient::Transaction& tx,
                                                                  const Job& job) const;
  // The connection broke or is closing: it is closed, and the queue told.
  void lost_connection();
  void finish(Job job, Outcome outcome, const smtp::Reply& reply,
              const routing::AttemptReport& report);
  net::Task<void> hang_up();

  routing::Queue& queue_;
  // The queue's settings when this worker started; a reload applies from the next worker.
  const std::shared_ptr<const config::QueueSection> cfg_;
  WorkerContext& ctx_;
  asio::any_io_executor ex_;
  unsigned id_;
  std::shared_ptr<net::Wakeup> wakeup_;
  routing::WorkerSlot slot_;
  SmtpClient client_;
  std::string connected_to_;         // the destination of the open connection
  dns::Route::Host connected_host_;  // and the host it is open to
  std::size_t jobs_on_connection_ = 0;
  // How long the last transaction on this connection took (a pipelined write's, divided among
  // them): a server that answers within pipeline_within gets the mail waiting for it pipelined.
  Clock::duration last_transaction_ = Clock::duration::max();
  std::optional<Job> current_;  // the job in hand, handed back if the worker dies
  std::vector<Job> in_hand_;    // likewise, the jobs of a pipelined write
  std::vector<Job> later_;      // and those to go one at a time after it
};

}  // namespace mma::delivery
