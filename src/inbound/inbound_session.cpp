#include "inbound/inbound_session.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <ctime>

#include "core/delivery_waiter.hpp"
#include "core/ids.hpp"
#include "smtp/data_reader.hpp"
#include "smtp/header_scan.hpp"

namespace mma::inbound {
namespace {

constexpr const char* kTooBig = "Message size exceeds fixed maximum message size";

using namespace asio::experimental::awaitable_operators;
using std::chrono::milliseconds;

// RFC 5321 §4.5.3.1.4 says 512 octets; extensions may need more (RFC 1869 §4.1.2).
constexpr std::size_t kMaxCommandLine = 1000;
constexpr milliseconds kFinalWriteTimeout{10'000};
constexpr milliseconds kLinger{2'000};
constexpr std::size_t kLingerBytes = 1 << 20;
// Past memory_body_limit, a body goes to its file in blocks of about this size.
constexpr std::size_t kSpillBlock = 256 * 1024;

// Formatted once a second per thread: strftime was ~1% of the relay's CPU, once per message.
std::string_view rfc5322_date() {
  thread_local std::time_t cached_at = -1;
  thread_local std::array<char, 64> buf{};
  thread_local std::size_t len = 0;
  const std::time_t t = std::time(nullptr);
  if (t != cached_at) {
    std::tm tm{};
    gmtime_r(&t, &tm);
    len = std::strftime(buf.data(), buf.size(), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    cached_at = t;
  }
  return {buf.data(), len};
}

// "192.0.2.1:4567" or "[2001:db8::1]:4567" to "[192.0.2.1]" / "[IPv6:2001:db8::1]" (RFC 5321
// §4.4 TCP-info); "unix" and "stdio" stay as they are.
std::string trace_address(const std::string& peer) {
  const auto colon = peer.rfind(':');
  if (colon == std::string::npos) return peer;
  std::string ip = peer.substr(0, colon);
  if (ip.size() > 2 && ip.front() == '[') return "[IPv6:" + ip.substr(1, ip.size() - 2) + "]";
  return "[" + ip + "]";
}

}  // namespace

// Recipients no queue takes are refused at RCPT time: mma relays only what it can route.
class InboundSession::RoutePolicy final : public smtp::ServerPolicy {
 public:
  explicit RoutePolicy(routing::Router& router) : router_(router) {}
  std::optional<smtp::Reply> check_rcpt(const smtp::Envelope&, const smtp::Address& a) override {
    if (router_.route(a.domain()) == nullptr) {
      return smtp::make_reply(550, "5.7.1",
                              "Relay access denied: no queue for " + std::string(a.domain()));
    }
    return std::nullopt;
  }

 private:
  routing::Router& router_;
};

void InboundSession::start(std::unique_ptr<net::Stream> stream, const asio::any_io_executor& ex,
                           ListenerContext& ctx, bool denied, std::function<void()> on_end) {
  auto s = std::make_shared<InboundSession>(std::move(stream), ex, ctx, denied);
  asio::co_spawn(ex, run(std::move(s), std::move(on_end)), asio::detached);
}

InboundSession::InboundSession(std::unique_ptr<net::Stream> stream, const asio::any_io_executor& ex,
                               ListenerContext& ctx, bool denied)
    : stream_(std::move(stream)),
      ctx_(ctx),
      cfg_(ctx.cfg()),
      policy_(std::make_unique<RoutePolicy>(ctx.router)),
      proto_(
          smtp::ServerOptions{
              .lmtp = cfg_->protocol == config::Protocol::Lmtp,
              .hostname = cfg_->hostname,
              .max_message_size = cfg_->max_message_size,
              .max_recipients = cfg_->max_recipients,
              .max_errors = cfg_->max_errors,
              .access_denied = denied,
              .chunking = cfg_->chunking,  // RFC 3030; only offered over SMTP
          },
          policy_.get()),
      deadline_(ex),
      wakeup_(std::make_shared<net::Wakeup>(ex)) {}

InboundSession::~InboundSession() = default;

net::Task<void> InboundSession::run(std::shared_ptr<InboundSession> self,
                                    std::function<void()> on_end) {
  try {
    co_await (self->serve() || self->deadline_.watch(*self->stream_));
  } catch (const std::exception& e) {
    spdlog::error("inbound session {}: {}", self->stream_->peer(), e.what());
  }
  self->stream_->close();
  --self->ctx_.connections;
  if (on_end) on_end();
}

net::Task<void> InboundSession::serve() {
  reply(proto_.greeting().reply);
  bool discarding = false;  // skipping the rest of an over-long line
  for (;;) {
    // Answer every complete command already buffered before writing (RFC 2920 §3.2).
    for (;;) {
      if (discarding) {
        if (!in_.discard_line()) break;
        discarding = false;
        continue;
      }
      smtp::LineBuffer::Line line;
      const auto st = in_.next_line(kMaxCommandLine, line);
      if (st == smtp::LineBuffer::Status::NeedMore) break;
      smtp::Response resp;
      if (st == smtp::LineBuffer::Status::TooLong) {
        resp = proto_.on_line_too_long();
        discarding = true;
      } else if (ctx_.draining.load(std::memory_order_relaxed) &&
                 smtp::split_command(line.text).verb == smtp::Verb::Mail) {
        // RFC 5321 §3.8: a server that is going away says 421 and closes.
        resp = smtp::Response{
            smtp::make_reply(421, "4.3.2", cfg_->hostname + " shutting down, try again later"),
            smtp::Next::Close};
      } else {
        resp = proto_.on_command(line.text);
      }
      if (resp.next == smtp::Next::ReadChunk) {
        const bool ok = co_await read_chunk(resp.reply);
        if (!ok) co_return;  // vanished mid-chunk: nothing was acknowledged
        continue;
      }
      reply(resp.reply);
      if (resp.next == smtp::Next::Close) {
        deadline_.arm(kFinalWriteTimeout);
        const bool flushed = co_await flush();
        if (flushed) co_await linger();
        co_return;
      }
      if (resp.next == smtp::Next::ReadData) {
        const bool ok125 = co_await flush();
        if (!ok125) co_return;
        const bool ok126 = co_await read_data();
        if (!ok126) co_return;  // vanished mid-DATA: nothing was acknowledged
        co_await finish_message();
      }
    }
    if (!out_.empty()) {
      const bool ok131 = co_await flush();
      if (!ok131) co_return;
    }
    const bool ok133 = co_await read_more(cfg_->idle_timeout);
    if (!ok133) {
      if (deadline_.expired()) {
        reply(proto_.on_timeout().reply);
        deadline_.arm(kFinalWriteTimeout);
        co_await flush();
      }
      co_return;
    }
  }
}

net::Task<void> InboundSession::linger() {
  // Closing with input unread makes the kernel answer with a reset, and some stacks drop what
  // they had received when one comes, our last reply with it. So the sending side is shut first
  // (the client reads the reply, then end of file), and what the client still sends (the rest
  // of a chunk, pipelined commands) is read and dropped: 2 s and 1 MB at most, as Apache does.
  stream_->shutdown_send();
  deadline_.arm(kLinger);
  std::array<char, 8192> scratch;
  for (std::size_t dropped = 0; dropped < kLingerBytes;) {
    const auto r = co_await stream_->read_some(asio::buffer(scratch));
    if (r.ec || r.bytes == 0) break;
    dropped += r.bytes;
  }
  deadline_.disarm();
}

net::Task<bool> InboundSession::flush() {
  if (out_.empty()) co_return true;
  deadline_.arm(cfg_->idle_timeout);
  auto r = co_await stream_->write(out_);
  deadline_.disarm();
  out_.clear();
  co_return !r.ec;
}

net::Task<bool> InboundSession::read_more(milliseconds timeout) {
  auto room = in_.prepare(4096);
  deadline_.arm(timeout);
  auto r = co_await stream_->read_some(asio::buffer(room.data(), room.size()));
  deadline_.disarm();
  if (r.ec) co_return false;
  in_.commit(r.bytes);
  co_return true;
}

void InboundSession::begin_content() {
  chunks_.reset();  // what an RSET or EHLO cut short (its body, and any body file, go with it)
  message_id_ = next_message_id();
  body_ = std::make_shared<Body>();
  const smtp::Envelope& env = proto_.envelope();
  spill_failed_ = false;
  if (env.params.size) {
    std::uint64_t room = std::min<std::uint64_t>(*env.params.size + 512, cfg_->max_message_size);
    if (ctx_.memory_body_limit != 0) room = std::min(room, ctx_.memory_body_limit + kSpillBlock);
    body_->wire.reserve(room);
  }
  // RFC 5321 §4.4: a relay adds a Received: trace field.
  // Appended piece by piece into the reserved body: no temporary strings per message.
  std::string& w = body_->wire;
  w += "Received: from ";
  w += env.helo;
  w += " (";
  w += trace_address(stream_->peer());
  w += ")\r\n\tby ";
  w += cfg_->hostname;
  w += " (mma) with ";
  w += proto_.options().lmtp ? "LMTP" : env.esmtp ? "ESMTP" : "SMTP";
  w += " id ";
  w += message_id_;
  w += ";\r\n\t";
  w += rfc5322_date();
  w += "\r\n";
  received_size_ = body_->wire.size();
}

bool InboundSession::spill_due(const smtp::DataReader& reader) const {
  // The disk cache: past the limit, complete lines move to the body file in blocks.
  const std::size_t held = body_->wire.size();
  return ctx_.memory_body_limit != 0 &&
         (body_->file || spill_failed_ ? held >= kSpillBlock || reader.done()
                                       : held > ctx_.memory_body_limit);
}

void InboundSession::end_content(const smtp::DataReader& reader) {
  too_big_ = reader.too_big();
  line_too_long_ = reader.line_too_long();
  bare_cr_ = reader.bare_cr();
  body_->size = reader.size() + received_size_;  // what goes out, for SIZE= (RFC 1870)
  body_->dot_lines = reader.dot_lines();         // (the Received: field added in front has none)
  body_->type = proto_.envelope().params.body == smtp::BodyType::EightBitMime
                    ? BodyType::EightBitMime
                    : BodyType::SevenBit;
}

net::Task<bool> InboundSession::read_data() {
  begin_content();
  smtp::DataReader reader(body_->wire, smtp::DataLimits{cfg_->max_message_size, 998});
  for (;;) {
    if (!in_.empty()) {
      in_.consume(reader.feed(in_.data()));
      if (spill_due(reader)) co_await spill(reader.complete_bytes());
      if (reader.done()) break;
    }
    const bool ok182 = co_await read_more(cfg_->idle_timeout);
    if (!ok182) co_return false;
  }
  end_content(reader);
  co_return true;
}

net::Task<bool> InboundSession::read_chunk(const smtp::Reply& r) {
  const smtp::Chunk chunk = proto_.chunk();
  if (chunk.accepted && chunk.first) {
    begin_content();
    chunks_.emplace(body_->wire, smtp::DataLimits{cfg_->max_message_size, 998});
  }
  for (std::uint64_t left = chunk.size; left > 0;) {
    if (in_.empty()) {
      // RFC 2920 §3.2: never wait for the client with replies still unsent.
      const bool flushed = co_await flush();
      if (!flushed) co_return false;
      const bool more = co_await read_more(cfg_->idle_timeout);
      if (!more) co_return false;
    }
    const std::string_view have = in_.data();
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, have.size()));
    if (chunk.accepted) {
      chunks_->feed(have.substr(0, n));
      in_.consume(n);
      if (spill_due(chunks_->data())) co_await spill(chunks_->data().complete_bytes());
    } else {
      in_.consume(n);
    }
    left -= n;
  }
  if (!chunk.accepted || !chunk.last) {
    // Past the size limit, a chunk is refused as it comes (RFC 3030 §2: the client then sends
    // no more); the transaction ends, refused alike, at its last chunk or an RSET.
    const bool too_big = chunk.accepted && chunks_->data().too_big();
    reply(too_big ? smtp::make_reply(552, "5.3.4", kTooBig) : r);
    co_return true;
  }
  chunks_->finish();
  if (spill_due(chunks_->data())) co_await spill(chunks_->data().complete_bytes());
  end_content(chunks_->data());
  chunks_.reset();
  co_await finish_message();
  co_return true;
}

// On the disk pool when there is one: a write the page cache cannot absorb (the disk cache is
// in use when memory is short) holds up this session only, not its loop.
net::Task<void> InboundSession::spill(std::size_t complete) {
  std::string& wire = body_->wire;
  if (!body_->file && !spill_failed_) {
    if (ctx_.bodies == nullptr) co_return;
    body_->message_id = smtp::find_header(wire, "Message-ID");  // the headers are at the top
    struct Created {
      std::shared_ptr<BodyFile> file;
      std::string error;
    };
    const auto create = [bodies = ctx_.bodies, id = message_id_] {
      try {
        return Created{bodies->create(id), {}};
      } catch (const std::exception& e) {  // nothing may escape onto a pool thread
        return Created{nullptr, e.what()};
      }
    };
    Created made = co_await net::run_blocking(ctx_.disk, create);
    if (made.file) {
      body_->file = std::move(made.file);
    } else {
      spdlog::error("{}: cannot keep a large body on disk: {}", message_id_, made.error);
      spill_failed_ = true;
    }
  }
  if (body_->file && !spill_failed_) {
    const auto append = [file = body_->file.get(), data = std::string_view(wire).substr(
                                                       0, complete)] { return file->append(data); };
    const std::error_code ec = co_await net::run_blocking(ctx_.disk, append);
    if (ec) {
      spdlog::error("{}: writing its body to {} failed: {}", message_id_, body_->file->path(),
                    ec.message());
      spill_failed_ = true;
    }
  }
  // Also when it failed: the rest is read and dropped, and memory stays bounded.
  wire.erase(0, complete);
}

net::Task<void> InboundSession::finish_message() {
  smtp::Envelope env = proto_.finish_data();
  const bool lmtp = proto_.options().lmtp;
  const std::size_t n = env.recipients.size();
  auto reject = [&](const smtp::Reply& r) {
    for (std::size_t i = 0; i < (lmtp ? n : 1); ++i) reply(r);
  };
  if (too_big_) {
    body_.reset();
    reject(smtp::make_reply(552, "5.3.4", kTooBig));
    co_return;
  }
  if (bare_cr_) {
    body_.reset();
    reject(smtp::make_reply(554, "5.6.0",
                            "Message contains a bare CR (RFC 5321 2.3.8), refused: it could end a "
                            "line at the next hop"));
    co_return;
  }
  if (line_too_long_) {
    body_.reset();
    reject(smtp::make_reply(554, "5.6.0",
                            "Message has a line longer than 998 characters (RFC 5322 2.1.1)"));
    co_return;
  }
  if (spill_failed_) {
    body_.reset();
    reject(smtp::make_reply(
        452, "4.3.1", "Insufficient system storage: the message was not kept, try again later"));
    co_return;
  }
  if (body_->file) {
    if (const std::error_code ec = body_->file->finish()) {
      spdlog::error("{}: closing its body file failed: {}", message_id_, ec.message());
      body_.reset();
      reject(smtp::make_reply(
          452, "4.3.1", "Insufficient system storage: the message was not kept, try again later"));
      co_return;
    }
    body_->wire = std::string();  // everything is in the file
  } else {
    body_->message_id = smtp::find_header(body_->wire, "Message-ID");
  }
  auto msg = std::make_shared<Message>();
  msg->id = message_id_;
  msg->sender = env.sender.str();
  msg->smtputf8 = env.params.smtputf8;
  msg->body = std::move(body_);
  msg->received = Clock::now();
  std::shared_ptr<DeliveryWaiter> waiter;
  if (cfg_->ack == config::AckMode::Delivered) {
    waiter = std::make_shared<DeliveryWaiter>(n, [w = wakeup_] { w->notify(); });
    msg->waiter = waiter;
  }
  std::vector<Recipient> rcpts;
  rcpts.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    rcpts.push_back(Recipient{env.recipients[i].str(), static_cast<std::uint32_t>(i), 0});
  }
  if (cfg_->ack == config::AckMode::Spooled) {
    // The 250 only once the message and its recipients are on disk (group commit).
    const std::error_code ec = co_await ctx_.spool->store(*msg, rcpts);
    if (ec) {
      // Never a 250 for what was not stored (RFC 3463 4.3.1: mail system full).
      reject(smtp::make_reply(
          452, "4.3.1", "Insufficient system storage: the message was not kept, try again later"));
      co_return;
    }
  }
  const auto touched = ctx_.router.dispatch(msg, std::move(rcpts));
  ++ctx_.messages;
  // Backpressure: the reply, and with it the composer, waits while a queue is over its throttle.
  for (routing::Queue* q : touched) {
    while (!q->admit(wakeup_)) {
      // Replies already owed (MAIL's and RCPT's, pipelined before a BDAT) go out first: the
      // client reads them under their own time-outs, however long this message waits.
      const bool flushed = co_await flush();
      if (!flushed) co_return;
      co_await wakeup_->wait(std::chrono::steady_clock::duration::max());
    }
  }
  if (!waiter) {
    const std::string how = msg->spooled ? "Ok: spooled as " : "Ok: queued as ";
    if (lmtp) {
      for (const auto& r : env.recipients) {
        reply(smtp::make_reply(250, "2.1.5", "<" + r.str() + "> " + how + msg->id));
      }
    } else {
      reply(smtp::make_reply(250, "2.0.0", how + msg->id));
    }
    co_return;
  }
  if (!waiter->complete()) {
    const bool flushed = co_await flush();  // as above: until every recipient has its outcome
    if (!flushed) co_return;
  }
  while (!waiter->complete()) co_await wakeup_->wait(std::chrono::steady_clock::duration::max());
  const auto results = waiter->results();
  if (lmtp) {
    // RFC 2033 §4.2: one reply per accepted recipient, in RCPT order.
    for (std::size_t i = 0; i < n; ++i) {
      const auto& res = results[i];
      const std::string who = "<" + env.recipients[i].str() + "> ";
      switch (res.outcome) {
        case Outcome::Delivered:
          reply(smtp::make_reply(250, "2.1.5", who + "delivered: " + res.reply.summary()));
          break;
        case Outcome::Bounced:
          reply(smtp::make_reply(res.reply.klass() == 5 ? res.reply.code : 550,
                                 res.reply.enhanced.empty() ? "5.0.0" : res.reply.enhanced,
                                 who + "refused: " + res.reply.summary()));
          break;
        default:
          reply(smtp::make_reply(451, "4.4.0", who + "not delivered: " + res.reply.summary()));
          break;
      }
    }
    co_return;
  }
  // SMTP has one reply for all recipients (docs/ACK_MODES.md).
  std::size_t delivered = 0, bounced = 0;
  std::string failures;
  for (std::size_t i = 0; i < n; ++i) {
    if (results[i].outcome == Outcome::Delivered) {
      ++delivered;
      continue;
    }
    if (results[i].outcome == Outcome::Bounced) ++bounced;
    if (!failures.empty()) failures += "; ";
    failures += "<" + env.recipients[i].str() + "> " + std::string(to_string(results[i].outcome)) +
                ": " + results[i].reply.summary();
  }
  if (delivered == n) {
    reply(smtp::make_reply(250, "2.0.0", "Ok: delivered as " + msg->id));
  } else if (delivered > 0) {
    // Some recipients have the message: a failure reply would make the composer send it to them
    // again. The others are in the accounting log as bounced or failed.
    reply(smtp::make_reply(250, "2.0.0",
                           "Ok: delivered to " + std::to_string(delivered) + " of " +
                               std::to_string(n) + " recipients as " + msg->id +
                               "; not delivered: " + failures));
  } else if (bounced == n) {
    const auto& first = results[0].reply;
    reply(smtp::make_reply(554, first.enhanced.empty() ? "5.0.0" : first.enhanced,
                           "Not delivered: " + failures));
  } else {
    reply(smtp::make_reply(451, "4.4.0", "Not delivered, try again later: " + failures));
  }
}

}  // namespace mma::inbound
