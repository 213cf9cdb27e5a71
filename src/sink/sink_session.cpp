#include "sink/sink_session.hpp"

#include <atomic>
#include <fstream>

#include "smtp/data_reader.hpp"
#include "smtp/header_scan.hpp"

namespace mma::sink {
namespace {

using namespace asio::experimental::awaitable_operators;
using std::chrono::milliseconds;

constexpr milliseconds kIdle{300'000};
std::atomic<std::uint64_t> stored_seq{0};

}  // namespace

class SinkSession::FaultPolicy final : public smtp::ServerPolicy {
 public:
  explicit FaultPolicy(SinkSession& s) : s_(s) {}
  std::optional<smtp::Reply> check_rcpt(const smtp::Envelope&, const smtp::Address& a) override {
    const std::string_view local = a.local();
    if (local.starts_with("reject-")) return refuse(true);
    if (local.starts_with("defer-")) return refuse(false);
    if (local.starts_with("drop-")) {
      s_.drop_now_ = true;
      return smtp::make_reply(421, "4.4.2", "dropping");  // never sent: the connection closes
    }
    std::uniform_real_distribution<double> u(0, 1);
    const double x = u(s_.rng_);
    if (x < s_.opts_.rcpt_reject) return refuse(true);
    if (x < s_.opts_.rcpt_reject + s_.opts_.rcpt_defer) return refuse(false);
    return std::nullopt;
  }

 private:
  std::optional<smtp::Reply> refuse(bool permanent) {
    s_.counts_.rcpt_refused(permanent);
    return permanent
               ? smtp::make_reply(550, "5.1.1", "Recipient refused by the sink")
               : smtp::make_reply(451, "4.2.1", "Recipient deferred by the sink, try again later");
  }
  SinkSession& s_;
};

SinkSession::SinkSession(std::unique_ptr<net::Stream> stream, const asio::any_io_executor& ex,
                         const SinkOptions& opts, SinkCounts& counts, std::string listener,
                         std::uint64_t seed)
    : stream_(std::move(stream)),
      opts_(opts),
      counts_(counts),
      listener_(std::move(listener)),
      rng_(static_cast<std::minstd_rand::result_type>(seed ^ (seed >> 31))),
      policy_(std::make_unique<FaultPolicy>(*this)),
      proto_(smtp::ServerOptions{.lmtp = false,
                                 .hostname = opts.hostname,
                                 .max_message_size = opts.max_message_size,
                                 .max_recipients = opts.max_recipients,
                                 .max_errors = 1000,
                                 .access_denied = false,
                                 .pipelining = opts.pipelining,
                                 .chunking = opts.chunking},
             policy_.get()),
      deadline_(ex) {
  for (const Fault& f : opts_.faults) {
    if (f.used->fetch_add(1) < f.sessions) faults_.push_back(&f);
  }
}

SinkSession::~SinkSession() = default;

const Fault* SinkSession::fault(std::string_view phase) const {
  for (const Fault* f : faults_) {
    if (f->phase == phase) return f;
  }
  return nullptr;
}

net::Task<void> SinkSession::fail(const Fault& f) {
  if (f.kind == "421") {
    smtp::append_reply(out_, smtp::make_reply(421, "4.3.2", "Service shutting down"),
                       proto_.enhanced());
    co_await flush();
    co_return;
  }
  if (f.kind == "truncated") {
    out_ = "25";
    co_await flush();
    co_return;
  }
  if (f.kind == "garbled") {
    out_ = "this is no SMTP reply\r\n";
    co_await flush();
  } else if (f.kind == "drop") {
    co_return;
  }
  // timeout (and after garbage): say nothing more until the client gives up and closes.
  // (Not `while (co_await ...)`: GCC 12 miscompiled that here, and the sink died of SIGILL at
  // its first "421" fault once a client pipelined past the faulty command.)
  for (;;) {
    const bool more = co_await read_more();
    if (!more) co_return;
    in_.consume(in_.data().size());
  }
}

void SinkSession::start(std::shared_ptr<SinkSession> self, const asio::any_io_executor& ex) {
  asio::co_spawn(ex, run(std::move(self)), asio::detached);
}

net::Task<void> SinkSession::run(std::shared_ptr<SinkSession> self) {
  self->counts_.session_started(self->listener_);
  try {
    co_await (self->serve() || self->deadline_.watch(*self->stream_));
  } catch (const std::exception&) {
  }
  self->stream_->close();
  self->counts_.session_ended(self->listener_);
}

net::Task<bool> SinkSession::pause(milliseconds d) {
  if (d.count() == 0) co_return true;
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(net::use_tuple);
  co_return true;
}

net::Task<bool> SinkSession::flush() {
  if (out_.empty()) co_return true;
  co_await pause(opts_.reply_delay);
  deadline_.arm(kIdle);
  auto r = co_await stream_->write(out_);
  deadline_.disarm();
  out_.clear();
  co_return !r.ec;
}

net::Task<bool> SinkSession::read_more() {
  auto room = in_.prepare(8192);
  deadline_.arm(kIdle);
  auto r = co_await stream_->read_some(asio::buffer(room.data(), room.size()));
  deadline_.disarm();
  if (r.ec) co_return false;
  in_.commit(r.bytes);
  co_return true;
}

void SinkSession::store(const smtp::Envelope& env, const std::string& wire) {
  const auto n = stored_seq.fetch_add(1) + 1;
  std::ofstream f(opts_.maildir + "/" + std::to_string(n) + ".eml", std::ios::binary);
  f << "X-Sink-From: <" << env.sender.str() << ">\r\nX-Sink-To: ";
  for (std::size_t i = 0; i < env.recipients.size(); ++i)
    f << (i ? ", <" : "<") << env.recipients[i].str() << '>';
  f << "\r\n";
  // Un-stuff (RFC 5321 §4.5.2): what the recipient's mailbox would hold.
  std::size_t pos = 0;
  while (pos < wire.size()) {
    const auto eol = wire.find('\n', pos);
    const std::size_t end = eol == std::string::npos ? wire.size() : eol + 1;
    const std::size_t skip = wire[pos] == '.' ? 1 : 0;
    f.write(wire.data() + pos + skip, static_cast<std::streamsize>(end - pos - skip));
    pos = end;
  }
}

net::Task<bool> SinkSession::read_chunk(const smtp::Chunk& chunk) {
  std::uint64_t left = chunk.size;
  for (;;) {
    const std::string_view have = in_.data();
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, have.size()));
    if (chunk.accepted) chunks_->feed(have.substr(0, n));
    in_.consume(n);
    left -= n;
    if (left == 0) co_return true;
    // RFC 2920 §3.2: never wait for the client with replies still unsent.
    const bool flushed = co_await flush();
    if (!flushed) co_return false;
    const bool more = co_await read_more();
    if (!more) co_return false;
  }
}

net::Task<bool> SinkSession::end_message(const smtp::DataReader& content, bool by_bdat) {
  const std::string& wire = wire_;
  smtp::Envelope env = proto_.finish_data();
  co_await pause(opts_.data_delay);
  if (const Fault* f = fault("dot")) {
    co_await fail(*f);
    co_return false;
  }
  bool drop = false;
  for (const auto& r : env.recipients) drop = drop || r.local().starts_with("dropdata-");
  std::uniform_real_distribution<double> u(0, 1);
  const double x = u(rng_);
  if (drop || x < opts_.drop) {
    // This transaction's reply is lost with the connection, not those of the transactions
    // pipelined before it in the same read: a client would otherwise count them unanswered and
    // send them again, duplicates the fault does not stand for.
    counts_.dropped();
    co_await flush();
    co_return false;
  }
  if (content.too_big()) {
    smtp::append_reply(out_, smtp::make_reply(552, "5.3.4", "Message too big"), proto_.enhanced());
  } else if (x < opts_.drop + opts_.txn_reject) {
    counts_.txn_refused(true);
    smtp::append_reply(out_, smtp::make_reply(554, "5.6.0", "Transaction refused by the sink"),
                       proto_.enhanced());
  } else if (x < opts_.drop + opts_.txn_reject + opts_.txn_defer) {
    counts_.txn_refused(false);
    smtp::append_reply(out_, smtp::make_reply(451, "4.3.0", "Transaction deferred by the sink"),
                       proto_.enhanced());
  } else {
    std::vector<std::string> rcpts;
    rcpts.reserve(env.recipients.size());
    for (const auto& r : env.recipients) rcpts.push_back(r.str());
    counts_.accepted(listener_, smtp::find_header(wire, "Message-ID"), rcpts, content.size(),
                     by_bdat);
    if (!opts_.maildir.empty()) store(env, wire);
    smtp::append_reply(out_, smtp::make_reply(250, "2.0.0", "Ok: queued"), proto_.enhanced());
  }
  co_return true;
}

std::atomic<bool> SinkSession::paused{false};

net::Task<void> SinkSession::serve() {
  co_await pause(opts_.banner_delay);
  while (paused.load(std::memory_order_relaxed)) co_await pause(std::chrono::milliseconds(20));
  if (const Fault* f = fault("banner")) {
    co_await fail(*f);
    co_return;
  }
  smtp::append_reply(out_, proto_.greeting().reply, false);
  bool seen_rcpt = false;
  for (;;) {
    for (;;) {
      smtp::LineBuffer::Line line;
      const auto st = in_.next_line(4096, line);
      if (st == smtp::LineBuffer::Status::NeedMore) break;
      if (st == smtp::LineBuffer::Status::TooLong) co_return;
      const auto cmd = smtp::split_command(line.text);
      const char* phase = cmd.verb == smtp::Verb::Ehlo || cmd.verb == smtp::Verb::Helo   ? "ehlo"
                          : cmd.verb == smtp::Verb::Mail                                 ? "mail"
                          : cmd.verb == smtp::Verb::Rcpt && !seen_rcpt                   ? "rcpt"
                          : cmd.verb == smtp::Verb::Data || cmd.verb == smtp::Verb::Bdat ? "data"
                                                                                         : "";
      seen_rcpt = seen_rcpt || cmd.verb == smtp::Verb::Rcpt;
      if (const Fault* f = fault(phase)) {
        co_await flush();  // what was answered before the fault
        co_await fail(*f);
        co_return;
      }
      if (opts_.broken_starttls && cmd.verb == smtp::Verb::Starttls) {
        out_ += "220 2.0.0 Ready to start TLS\r\n";
        co_await flush();
        out_ = "this is not a TLS handshake\r\n";
        co_await flush();
        co_return;
      }
      smtp::Response resp =
          (!opts_.ehlo && cmd.verb == smtp::Verb::Ehlo)
              ? smtp::Response{smtp::make_reply(502, "5.5.1", "EHLO not implemented")}
              : proto_.on_command(line.text);
      if (drop_now_) {
        counts_.dropped();
        co_await flush();  // what was answered before, as in end_message
        co_return;
      }
      if (opts_.broken_starttls && cmd.verb == smtp::Verb::Ehlo && resp.reply.code == 250) {
        resp.reply.text += "\nSTARTTLS";
      }
      if (resp.next == smtp::Next::ReadChunk) {
        const smtp::Chunk chunk = proto_.chunk();
        if (chunk.first) {
          wire_.clear();  // reused: its capacity stays from one message to the next
          chunks_.emplace(wire_, smtp::DataLimits{opts_.max_message_size, 1u << 20});
        }
        const bool read = co_await read_chunk(chunk);
        if (!read) co_return;
        if (!chunk.accepted || !chunk.last) {
          // Past the size limit a chunk is refused as it comes (RFC 3030 §2), as mma serve does.
          const bool too_big = chunk.accepted && chunks_->data().too_big();
          smtp::append_reply(
              out_, too_big ? smtp::make_reply(552, "5.3.4", "Message too big") : resp.reply,
              proto_.enhanced());
          continue;
        }
        chunks_->finish();
        const bool go_on = co_await end_message(chunks_->data(), true);
        if (!go_on) co_return;
        continue;
      }
      smtp::append_reply(out_, resp.reply, proto_.enhanced());
      if (resp.next == smtp::Next::Close) {
        co_await flush();
        co_return;
      }
      if (resp.next != smtp::Next::ReadData) continue;
      const bool ok213 = co_await flush();
      if (!ok213) co_return;
      wire_.clear();
      smtp::DataReader reader(wire_, smtp::DataLimits{opts_.max_message_size, 1u << 20});
      for (;;) {
        if (!in_.empty()) {
          in_.consume(reader.feed(in_.data()));
          if (reader.done()) break;
        }
        const bool ok221 = co_await read_more();
        if (!ok221) co_return;
      }
      const bool go_on = co_await end_message(reader, false);
      if (!go_on) co_return;
    }
    const bool ok257 = co_await flush();
    if (!ok257) co_return;
    const bool ok258 = co_await read_more();
    if (!ok258) co_return;
  }
}

}  // namespace mma::sink
