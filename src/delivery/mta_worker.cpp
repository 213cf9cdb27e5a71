#include "delivery/mta_worker.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>

#include "net/child_process.hpp"
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

// The process cannot open another connection: not the destination's fault.
bool out_of_resources(const std::error_code& ec) {
  // By value: Asio's system category does not map to std::errc conditions.
  const int v = ec.value();
  return ec && (v == EMFILE || v == ENFILE || v == ENOBUFS || v == ENOMEM);
}

bool is_ip_literal(const std::string& s) {
  std::error_code ec;
  asio::ip::make_address(s, ec);
  return !ec;
}

}  // namespace

void MtaWorker::start(const asio::any_io_executor& ex, routing::Queue& queue, WorkerContext& ctx,
                      bool warm) {
  auto worker = std::make_shared<MtaWorker>(ex, queue, ctx, next_worker_id.fetch_add(1));
  ctx.roster.add(worker->id_, worker);
  asio::co_spawn(ex, run(std::move(worker), warm), asio::detached);
}

MtaWorker::MtaWorker(const asio::any_io_executor& ex, routing::Queue& queue, WorkerContext& ctx,
                     unsigned id)
    : queue_(queue),
      cfg_(queue.config()),
      ctx_(ctx),
      ex_(ex),
      id_(id),
      wakeup_(std::make_shared<net::Wakeup>(ex)),
      slot_(wakeup_),
      client_(ex) {
  client_.use_disk_pool(ctx.disk);
}

net::Task<void> MtaWorker::run(std::shared_ptr<MtaWorker> self, bool warm) {
  try {
    co_await (self->work(warm) || self->client_.watch());
  } catch (const std::exception& e) {
    // A broken invariant or resource exhaustion: never lose the job in hand.
    spdlog::error("queue {}: worker {} failed: {}", self->queue_.name(), self->id_, e.what());
    if (self->current_) {
      self->in_hand_.push_back(std::move(*self->current_));
      self->current_.reset();
    }
    for (Job& job : self->later_) self->in_hand_.push_back(std::move(job));
    self->later_.clear();
    for (Job& job : self->in_hand_) {
      if (!job.message) continue;  // the queue has it already
      routing::AttemptReport report;
      report.connection_fault = true;
      report.mx = self->client_.peer();
      self->finish(std::move(job), Outcome::Deferred,
                   smtp::make_reply(451, "4.3.0", std::string("local error: ") + e.what()), report);
    }
    self->in_hand_.clear();
  }
  self->client_.close();
  self->ctx_.roster.remove(self->id_);
  self->queue_.detach(self->slot_);
}

void WorkerRoster::add(unsigned id, std::weak_ptr<MtaWorker> worker) {
  std::lock_guard lock(mu_);
  workers_.emplace(id, std::move(worker));
}

void WorkerRoster::remove(unsigned id) {
  std::lock_guard lock(mu_);
  workers_.erase(id);
}

std::size_t WorkerRoster::cut_off_all() {
  std::vector<std::shared_ptr<MtaWorker>> alive;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, w] : workers_) {
      if (auto p = w.lock()) alive.push_back(std::move(p));
    }
  }
  for (auto& w : alive) {
    const asio::any_io_executor ex = w->executor();
    asio::post(ex, [w] { w->cut_off(); });
  }
  return alive.size();
}

net::Task<void> MtaWorker::hang_up() {
  // Polite, but never worth waiting long for (RFC 5321 §4.1.1.10).
  co_await client_.quit(std::min<milliseconds>(cfg_->timeouts.command, milliseconds(5000)));
  connected_to_.clear();
  queue_.connected_to(slot_, "");
}

net::Task<void> MtaWorker::work(bool warm) {
  if (warm && !cfg_->per_domain()) {
    // No job is charged if this fails: the first job will try again.
    const Connect c = co_await connect("");
    if (c.reach != Reach::Connected) {
      spdlog::info("queue {}: worker {}: could not connect at start: {}", queue_.name(), id_,
                   c.reply.summary());
      client_.close();
    }
  }
  for (;;) {
    routing::Queue::Next next = queue_.next_job(slot_, client_.connected());
    if (next.drop_connection) {
      co_await hang_up();  // the connection cache evicted this idle connection
      continue;
    }
    if (next.stop) {
      co_await hang_up();
      co_return;
    }
    if (!next.job) {
      // Parked in a ready list (patent step 611). A connected worker waits `idle`, then closes
      // its connection; a worker beyond init_mta then ends.
      const bool keep = !queue_.surplus_worker();
      const auto wait = client_.connected() || !keep
                            ? std::chrono::steady_clock::duration(cfg_->timeouts.idle)
                            : std::chrono::steady_clock::duration::max();
      const bool ok103 = co_await wakeup_->wait(wait);
      if (ok103) continue;
      if (!queue_.unpark(slot_)) continue;  // a job came in as the wait ended
      co_await hang_up();
      if (queue_.surplus_worker()) co_return;
      continue;
    }
    current_ = std::move(next.job);
    routing::AttemptReport report;
    report.started = Clock::now();
    if (client_.connected() && connected_to_ != current_->destination) {
      // The queue moved this worker to another destination (patent §C). Domains hosted by one
      // provider share its MX hosts: the open connection may serve the new one as well (the
      // queue knows when it matched the job to this connection's server).
      bool same_host = next.on_server;
      if (!same_host) same_host = co_await serves(current_->destination);
      if (same_host) {
        connected_to_ = current_->destination;
      } else {
        co_await hang_up();
      }
    }
    if (!client_.connected()) {
      const Connect c = co_await connect(current_->destination);
      Job job = std::move(*current_);
      current_.reset();
      switch (c.reach) {
        case Reach::Connected:
          current_ = std::move(job);
          break;
        case Reach::Bounce:
          finish(std::move(job), Outcome::Bounced, c.reply, report);
          continue;
        case Reach::Defer:
          finish(std::move(job), Outcome::Deferred, c.reply, report);
          continue;
        case Reach::NoResources:
          queue_.give_back(std::move(job), c.reply.text);
          co_return;  // frees this worker's slot and descriptors
        case Reach::Unreachable:
          report.connection_fault = report.unreachable = true;
          report.mx = client_.peer();
          finish(std::move(job), Outcome::Deferred, c.reply, report);
          co_return;  // frees the slot; the queue starts another worker if work remains
      }
    }
    report.connected = true;
    Job job = std::move(*current_);
    current_.reset();
    // Mail waiting for this server, when it answers quickly, goes in the same write (pipelined
    // transactions): one round trip for all. Held by in_hand_ and later_ from here on.
    std::size_t written = 1;
    if (cfg_->max_pipelined > 1 && cfg_->chunking && client_.pipelines() &&
        !job.message->body->file && jobs_on_connection_ + 1 < cfg_->max_jobs) {
      const std::size_t room =
          std::min(cfg_->max_pipelined - 1, cfg_->max_jobs - jobs_on_connection_ - 1);
      std::vector<Job> more =
          queue_.more_for_connection(slot_, room, last_transaction_ < cfg_->pipeline_within);
      written += more.size();
      if (!more.empty()) hold_group(std::move(job), std::move(more));
    }
    jobs_on_connection_ += written;
    const Clock::time_point began = Clock::now();
    bool ok142 = false;
    if (in_hand_.empty()) {
      ok142 = co_await deliver(std::move(job), report);
    } else {
      ok142 = co_await deliver_pipelined(report);
    }
    last_transaction_ = (Clock::now() - began) / static_cast<long>(written);
    if (!ok142) {
      spdlog::debug("queue {}: worker {}: {}", queue_.name(), id_, client_.error());
      co_return;
    }
    if (jobs_on_connection_ >= cfg_->max_jobs) co_await hang_up();
  }
}

void MtaWorker::finish(Job job, Outcome outcome, const smtp::Reply& reply,
                       const routing::AttemptReport& report) {
  std::vector<routing::RecipientStatus> statuses(job.recipients.size(),
                                                 routing::RecipientStatus{outcome, reply});
  queue_.complete(std::move(job), statuses, report);
}

net::Task<bool> MtaWorker::open_host(const dns::Route::Host& host, config::TlsPolicy tls) {
  TlsOptions opts;
  opts.policy = tls;
  opts.context = ctx_.tls;
  if (!is_ip_literal(host.name)) opts.server_name = host.name;
  co_return co_await client_.open(ctx_.helo_name, false, cfg_->timeouts, opts);
}

net::Task<bool> MtaWorker::serves(const std::string& destination) {
  if (!cfg_->per_domain()) co_return false;
  const dns::RouteRef route = co_await ctx_.routes.route(*cfg_, destination);
  if (route->status != dns::Route::Status::Ok || route->hosts.empty()) co_return false;
  // Only among the best preference: RFC 5321 §5.1 prefers the lowest-numbered exchangers, and
  // a backup MX must not get mail its primary would take. Same name: same TLS identity.
  const std::vector<std::string>& best = route->best;
  co_return std::find(best.begin(), best.end(), dns::server_key(connected_host_)) != best.end();
}

net::Task<MtaWorker::Connect> MtaWorker::connect(const std::string& destination) {
  const dns::RouteRef route = co_await ctx_.routes.route(*cfg_, destination);
  if (route->status == dns::Route::Status::Permanent)
    co_return Connect{Reach::Bounce, route->error};
  if (route->status == dns::Route::Status::Temporary) co_return Connect{Reach::Defer, route->error};
  const auto& hosts = route->hosts;
  // Fixed hosts are equal-preference exchangers: each worker starts at a different one.
  const std::size_t first = cfg_->mx.empty() ? 0 : id_ % hosts.size();
  auto ex = co_await asio::this_coro::executor;
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    const dns::Route::Host& host = hosts[(first + i) % hosts.size()];
    config::TlsPolicy tls = cfg_->tls;
    for (int round = 0; round < 2; ++round) {
      std::error_code ec;
      std::string address = host.endpoint.to_string();
      std::unique_ptr<net::Stream> stream;
      if (host.endpoint.kind == config::Endpoint::Kind::Program) {
        stream = net::ProgramStream::start(ex, host.endpoint.path, ec);
      } else {
        net::Connected c = co_await net::connect(host.endpoint, cfg_->timeouts.connect);
        stream = std::move(c.stream);
        ec = c.ec;
        address = c.address;
      }
      if (!stream) {
        if (out_of_resources(ec))
          co_return Connect{Reach::NoResources, smtp::make_reply(451, "4.3.0", ec.message())};
        client_.connect_failed(address,
                               "connect to " + host.endpoint.to_string() + ": " + ec.message());
        spdlog::debug("queue {}: worker {}: {}", queue_.name(), id_, client_.error());
        break;
      }
      client_.attach(std::move(stream), address);
      const bool ok193 = co_await open_host(host, tls);
      if (ok193) {
        connected_to_ = destination;
        connected_host_ = host;
        queue_.connected_to(slot_, dns::server_key(host));
        jobs_on_connection_ = 0;
        last_transaction_ = Clock::duration::max();  // how quick this server is, not yet known
        if (!client_.tls().empty())
          spdlog::debug("queue {}: worker {}: {} over {}", queue_.name(), id_, address,
                        client_.tls());
        co_return Connect{Reach::Connected, {}};
      }
      spdlog::debug("queue {}: worker {}: {}", queue_.name(), id_, client_.error());
      const bool retry_in_clear = client_.tls_failed() && tls == config::TlsPolicy::Opportunistic;
      client_.close();
      if (!retry_in_clear) break;
      // Opportunistic TLS that fails is no reason not to deliver: the same host, in clear.
      tls = config::TlsPolicy::Off;
    }
  }
  co_return Connect{Reach::Unreachable, smtp::make_reply(451, "4.4.1", client_.error())};
}

net::Task<bool> MtaWorker::deliver(Job job, routing::AttemptReport report) {
  const Message& msg = *job.message;
  smtp::TransactionInput input = input_of(job);
  input.chunking = cfg_->chunking;
  // The job stays in current_ while the transaction runs, so an exception cannot lose it.
  current_ = std::move(job);
  SmtpClient::Transaction tx =
      co_await client_.transact(std::move(input), *msg.body, cfg_->timeouts);
  job = std::move(*current_);
  current_.reset();

  report.mx = client_.peer();
  report.connection_fault = tx.fault || tx.closing;
  const std::vector<routing::RecipientStatus> statuses = statuses_of(tx, job);
  queue_.complete(std::move(job), statuses, report);
  if (report.connection_fault) {
    lost_connection();
    co_return false;
  }
  co_return true;
}

smtp::TransactionInput MtaWorker::input_of(const Job& job) {
  const Message& msg = *job.message;
  smtp::TransactionInput input;
  input.sender = msg.sender;
  input.size = msg.body->size;
  input.eightbit = msg.body->type == BodyType::EightBitMime;
  input.smtputf8 = msg.smtputf8;
  input.recipients.reserve(job.recipients.size());
  for (const auto& r : job.recipients) input.recipients.push_back(r.address);
  return input;
}

void MtaWorker::lost_connection() {
  client_.close();
  connected_to_.clear();
  queue_.connected_to(slot_, "");  // else the queue would match it to jobs by a stale host
}

void MtaWorker::hold_group(Job first, std::vector<Job> more) {
  // A group goes in one write under one deadline, and its replies come back while it is being
  // written: kept to one block (as send_chunk's) and to a bounded number of replies (RFC 2920
  // §3.1: a client must not let the server block writing replies it does not read). Bodies in
  // files keep DATA, one transaction at a time, after the others, as does what does not fit.
  constexpr std::size_t kGroupBytes = 1 << 20;
  constexpr std::size_t kGroupReplies = 1000;
  std::size_t bytes = first.message->body->size;
  std::size_t replies = first.recipients.size() + 3;
  in_hand_.reserve(1 + more.size());
  in_hand_.push_back(std::move(first));
  for (Job& j : more) {
    const std::size_t b = j.message->body->size;
    const std::size_t r = j.recipients.size() + 3;  // RSET, MAIL, each RCPT, BDAT
    if (j.message->body->file || bytes + b > kGroupBytes || replies + r > kGroupReplies) {
      later_.push_back(std::move(j));
      continue;
    }
    bytes += b;
    replies += r;
    in_hand_.push_back(std::move(j));
  }
}

net::Task<bool> MtaWorker::deliver_pipelined(routing::AttemptReport report) {
  std::vector<SmtpClient::Outgoing> group(in_hand_.size());
  for (std::size_t i = 0; i < in_hand_.size(); ++i) {
    group[i].input = input_of(in_hand_[i]);  // views into the job, which stays in in_hand_
    group[i].body = in_hand_[i].message->body.get();
  }
  std::vector<SmtpClient::Transaction> txs =
      co_await client_.transact_pipelined(std::move(group), cfg_->timeouts);
  report.mx = client_.peer();
  bool broken = false;
  // Each job leaves in_hand_ as the queue takes it: an exception cannot lose the rest.
  for (std::size_t i = 0; i < txs.size(); ++i) {
    routing::AttemptReport r = report;
    r.connection_fault = txs[i].fault || txs[i].closing;
    broken = broken || r.connection_fault;
    const std::vector<routing::RecipientStatus> statuses = statuses_of(txs[i], in_hand_[i]);
    Job job = std::move(in_hand_[i]);
    in_hand_[i].message.reset();  // taken: run()'s handler skips it
    queue_.complete(std::move(job), statuses, r);
  }
  in_hand_.clear();
  while (!later_.empty()) {  // in the order they came (at most max_pipelined - 1)
    Job j = std::move(later_.front());
    later_.erase(later_.begin());
    if (broken) {
      // Never tried: back to the queue, no attempt charged.
      std::vector<routing::RecipientStatus> statuses(j.recipients.size());
      for (auto& st : statuses) st.resend = true;
      queue_.complete(std::move(j), statuses, report);
      continue;
    }
    const bool ok = co_await deliver(std::move(j), report);
    broken = !ok;
  }
  if (broken && client_.connected()) lost_connection();
  co_return !broken;
}

std::vector<routing::RecipientStatus> MtaWorker::statuses_of(const SmtpClient::Transaction& tx,
                                                             const Job& job) const {
  std::vector<routing::RecipientStatus> statuses(job.recipients.size());
  if (tx.fault) {
    // What the server refused for good stays refused; everything else is unknown: retry it.
    // After the final "." the remote may already have the message (RFC 1047): say so, since
    // the retry may deliver it twice (docs/DELIVERY.md).
    const smtp::Reply lost = smtp::make_reply(
        451, "4.4.2",
        tx.body_sent
            ? client_.error() + " after the message was sent: the remote MTA may have it; retrying"
            : client_.error());
    for (std::size_t i = 0; i < statuses.size(); ++i) {
      const bool refused = i < tx.replies.size() && tx.replies[i].klass() == 5;
      statuses[i] = refused ? routing::RecipientStatus{Outcome::Bounced, tx.replies[i]}
                            : routing::RecipientStatus{Outcome::Deferred, lost};
    }
  } else {
    // "452 too many recipients" at RCPT: those go in the next transaction (RFC 5321 §4.5.3.1.10),
    // as long as this one took some: a server that takes none is deferring, not limiting.
    bool progress = false;
    for (std::size_t i = 0; i < statuses.size(); ++i) progress = progress || !tx.refused_at_rcpt[i];
    for (std::size_t i = 0; i < statuses.size(); ++i) {
      statuses[i] = {outcome_of(tx.replies[i]), tx.replies[i]};
      statuses[i].resend = progress && tx.refused_at_rcpt[i] && tx.replies[i].code == 452;
    }
  }
  return statuses;
}

}  // namespace mma::delivery
