#include "delivery/smtp_client.hpp"

#include <array>
#include <cerrno>
#include <cstring>

#include "net/tls_stream.hpp"

namespace mma::delivery {

using std::chrono::milliseconds;

net::Task<void> SmtpClient::watch() {
  return deadline_.watch([this] {
    if (stream_) stream_->cancel();
  });
}

void SmtpClient::attach(std::unique_ptr<net::Stream> stream, std::string peer) {
  close();
  stream_ = std::move(stream);
  peer_ = std::move(peer);
  in_ = smtp::LineBuffer{};
  parser_ = smtp::ReplyParser{};
  ext_ = smtp::Extensions{};
  tls_.clear();
  tls_failed_ = false;
}

void SmtpClient::close() {
  if (stream_) {
    stream_->close();
    stream_.reset();
  }
}

net::Task<std::optional<smtp::Reply>> SmtpClient::read_reply(milliseconds timeout) {
  for (;;) {
    switch (parser_.parse(in_)) {
      case smtp::ReplyParser::Status::Complete:
        co_return parser_.take();
      case smtp::ReplyParser::Status::Garbled:
        error_ = peer_ + " sent a garbled reply: " + parser_.error();
        co_return std::nullopt;
      case smtp::ReplyParser::Status::NeedMore:
        break;
    }
    if (!stream_) {
      error_ = "not connected";
      co_return std::nullopt;
    }
    auto room = in_.prepare(4096);
    deadline_.arm(timeout);
    auto r = co_await stream_->read_some(asio::buffer(room.data(), room.size()));
    deadline_.disarm();
    if (r.ec) {
      if (deadline_.expired()) {
        error_ = "timed out after " + std::to_string(timeout.count()) + " ms waiting for " + peer_;
      } else if (r.ec == asio::error::eof) {
        error_ = peer_ + " closed the connection";
      } else {
        error_ = "reading from " + peer_ + ": " + r.ec.message();
      }
      co_return std::nullopt;
    }
    in_.commit(r.bytes);
  }
}

net::Task<bool> SmtpClient::send(std::string_view data, milliseconds timeout) {
  if (!stream_) {
    error_ = "not connected";
    co_return false;
  }
  deadline_.arm(timeout);
  auto r = co_await stream_->write(data);
  deadline_.disarm();
  if (r.ec) {
    error_ = "writing to " + peer_ + ": " +
             (deadline_.expired() ? std::string("timed out") : r.ec.message());
    co_return false;
  }
  co_return true;
}

net::Task<bool> SmtpClient::send_body(const Body& body, milliseconds timeout) {
  if (body.file) co_return co_await send_body_file(*body.file, timeout);
  const std::string& wire = body.wire;
  const std::string_view term =
      wire.size() >= 2 && wire.compare(wire.size() - 2, 2, "\r\n") == 0 ? ".\r\n" : "\r\n.\r\n";
  // The shared body, written from where it lies: never copied per recipient or per queue. The
  // deadline is per block written (RFC 5321 §4.5.3.2.5), not for the whole message, so a big
  // message over a slow link is not cut off while it makes progress.
  constexpr std::size_t kBlock = 1 << 20;
  for (std::size_t pos = 0; pos < wire.size() || pos == 0;) {
    const std::size_t n = std::min(kBlock, wire.size() - pos);
    const bool last = pos + n >= wire.size();
    const std::array<asio::const_buffer, 2> bufs{asio::buffer(wire.data() + pos, n),
                                                 asio::buffer(term.data(), last ? term.size() : 0)};
    const std::span<const asio::const_buffer> block(bufs);
    const bool written = co_await write_block(block, timeout);
    if (!written) co_return false;
    pos += n;
    if (last) break;
  }
  co_return true;
}

net::Task<bool> SmtpClient::send_chunk(std::string_view commands,
                                       const smtp::UnstuffedBody& content, milliseconds timeout) {
  // In blocks of at most kBlock octets, each under its own deadline, as send_body's.
  // (Over TLS the stream joins a block's buffers into one record.)
  constexpr std::size_t kBlock = 1 << 20;
  std::vector<asio::const_buffer> group{asio::buffer(commands.data(), commands.size())};
  std::size_t in_group = commands.size();
  for (std::string_view span : content.spans) {
    while (!span.empty()) {
      const std::size_t n = std::min(span.size(), in_group < kBlock ? kBlock - in_group : kBlock);
      group.push_back(asio::buffer(span.data(), n));
      in_group += n;
      span.remove_prefix(n);
      if (in_group < kBlock) continue;
      const std::span<const asio::const_buffer> block(group);
      const bool written = co_await write_block(block, timeout);
      if (!written) co_return false;
      group.clear();
      in_group = 0;
    }
  }
  if (group.empty()) co_return true;
  const std::span<const asio::const_buffer> block(group);
  co_return co_await write_block(block, timeout);
}

net::Task<void> SmtpClient::read_replies_left(smtp::ClientTransaction& tx, milliseconds timeout) {
  // A server that refuses MAIL (or every RCPT) may close at once, before the chunk behind them
  // is written, as a big one cannot be: its refusal is then in our receive buffer, still
  // readable after the reset. Read, a 5xx bounces the message instead of retrying it.
  // Only when it hung up: a server that timed out, or a program that is still running, is
  // still waiting for the rest of the chunk, and would answer nothing.
  const bool hung_up =
      write_error_ == asio::error::connection_reset || write_error_ == asio::error::broken_pipe;
  if (!hung_up || deadline_.expired() || !stream_) co_return;
  const std::string why = error_;
  // What it said is in the receive buffer already: no reason to wait long for it.
  const milliseconds wait = std::min(timeout, milliseconds(5000));
  while (tx.step() == smtp::ClientTransaction::Step::Read) {
    auto reply = co_await read_reply(wait);
    if (!reply) break;
    tx.on_reply(*reply);
  }
  error_ = why;
}

net::Task<bool> SmtpClient::write_block(std::span<const asio::const_buffer> bufs,
                                        milliseconds timeout) {
  deadline_.arm(timeout);
  auto r = co_await stream_->write(bufs);
  deadline_.disarm();
  write_error_ = r.ec;
  if (r.ec) {
    error_ = "writing the message to " + peer_ + ": " +
             (deadline_.expired() ? std::string("timed out") : r.ec.message());
    co_return false;
  }
  co_return true;
}

net::Task<bool> SmtpClient::send_body_file(const BodyFile& file, milliseconds timeout) {
  const std::string_view term = file.ends_with_crlf() ? ".\r\n" : "\r\n.\r\n";
  const BodyFile::Reader reader(file);
  if (!reader.ok()) {
    error_ = "cannot read the body file " + file.path() + ": " + std::strerror(errno);
    co_return false;
  }
  // Read in blocks from the page cache when it has them, else on the disk pool: a read that
  // waits for the disk holds up this delivery only, never the event loop. (Every block through
  // the pool cost 8-23% of the disk cache's throughput when all is cached.) Written with the
  // same per-block deadline as a body in memory. One buffer per delivery, never the whole body.
  constexpr std::size_t kBlock = 256 * 1024;
  std::string block(kBlock, '\0');
  struct Got {
    long n;
    int err;  // errno is per thread: carried back from the pool's
  };
  for (std::uint64_t pos = 0;;) {
    const auto read_one = [&reader, &block, pos] {
      const long n = reader.read(pos, block.data(), kBlock);
      return Got{n, n < 0 ? errno : 0};
    };
    Got got{reader.read_cached(pos, block.data(), kBlock), 0};
    if (got.n < 0) got.err = errno;
    if (got.n < 0 && got.err == EAGAIN) got = co_await net::run_blocking(disk_, read_one);
    const long n = got.n;
    if (n < 0) {
      error_ = "reading the body file " + file.path() + ": " + std::strerror(got.err);
      co_return false;
    }
    pos += static_cast<std::uint64_t>(n);
    const bool last = pos >= file.size() || n == 0;
    const std::array<asio::const_buffer, 2> bufs{
        asio::buffer(block.data(), static_cast<std::size_t>(n)),
        asio::buffer(term.data(), last ? term.size() : 0)};
    const std::span<const asio::const_buffer> written_block(bufs);
    const bool written = co_await write_block(written_block, timeout);
    if (!written) co_return false;
    if (last) break;
  }
  co_return true;
}

net::Task<bool> SmtpClient::hello(const std::string& helo_name, bool lmtp,
                                  const config::Timeouts& t) {
  // Commands are built before the co_await: GCC 12 mishandles temporaries inside co_await
  // expressions (it can destroy them twice).
  const std::string greeting = (lmtp ? "LHLO " : "EHLO ") + helo_name + "\r\n";
  const bool ok102 = co_await send(greeting, t.banner);
  if (!ok102) co_return false;
  auto ehlo = co_await read_reply(t.banner);
  if (!ehlo) co_return false;
  if (ehlo->code == 250) {
    ext_ = smtp::parse_extensions(*ehlo);
    co_return true;
  }
  if (lmtp || ehlo->code == 421) {
    error_ = peer_ + " answered " + (lmtp ? "LHLO" : "EHLO") + " with " + ehlo->summary();
    co_return false;
  }
  const std::string helo_command = "HELO " + helo_name + "\r\n";
  const bool ok113 = co_await send(helo_command, t.banner);
  if (!ok113) co_return false;
  auto helo = co_await read_reply(t.banner);
  if (!helo) co_return false;
  if (helo->code != 250) {
    error_ = peer_ + " answered HELO with " + helo->summary();
    co_return false;
  }
  ext_ = smtp::Extensions{};
  co_return true;
}

net::Task<bool> SmtpClient::open(const std::string& helo_name, bool lmtp, const config::Timeouts& t,
                                 const TlsOptions& tls) {
  auto banner = co_await read_reply(t.banner);
  if (!banner) co_return false;
  if (banner->code != 220) {
    error_ = peer_ + " greeted with " + banner->summary();
    co_return false;
  }
  const bool ok132 = co_await hello(helo_name, lmtp, t);
  if (!ok132) co_return false;
  if (tls.policy == config::TlsPolicy::Off || tls.context == nullptr) co_return true;
  if (!ext_.starttls) {
    if (tls.policy == config::TlsPolicy::Required) {
      error_ = "TLS is required, but " + peer_ + " does not offer STARTTLS";
      co_return false;
    }
    co_return true;
  }
  const bool ok141 = co_await send("STARTTLS\r\n", t.command);
  if (!ok141) co_return false;
  auto go = co_await read_reply(t.command);
  if (!go) co_return false;
  if (go->code != 220) {
    if (tls.policy == config::TlsPolicy::Required) {
      error_ = peer_ + " refused STARTTLS: " + go->summary();
      co_return false;
    }
    co_return true;  // opportunistic: carry on in clear
  }
  if (!in_.empty()) {
    // Bytes after the 220 would be a plaintext injection into the TLS session (CVE-2011-0411).
    tls_failed_ = true;
    error_ = "TLS with " + peer_ + " failed: it sent data after its STARTTLS reply";
    co_return false;
  }
  auto secure = net::upgrade_to_tls(stream_, *tls.context);
  if (!secure) co_return true;  // not TCP (a program or a unix socket): nothing to encrypt
  net::TlsStream* raw = secure.get();
  stream_ = std::move(secure);
  deadline_.arm(t.banner);
  const std::error_code ec = co_await raw->handshake(tls.server_name);
  deadline_.disarm();
  if (ec) {
    tls_failed_ = true;
    error_ = "TLS with " + peer_ +
             " failed in the handshake: " + (deadline_.expired() ? "timed out" : ec.message());
    co_return false;
  }
  tls_ = raw->description();
  // RFC 3207 §4.2: forget what was learnt before TLS and ask again.
  in_ = smtp::LineBuffer{};
  parser_ = smtp::ReplyParser{};
  co_return co_await hello(helo_name, lmtp, t);
}

net::Task<SmtpClient::Transaction> SmtpClient::transact(smtp::TransactionInput input,
                                                        const Body& body,
                                                        const config::Timeouts& t) {
  using Step = smtp::ClientTransaction::Step;
  using Expect = smtp::ClientTransaction::Expect;
  // A body in memory goes by BDAT where the server offers it: no wait for a 354, one round trip
  // less per message. A body file keeps DATA: its un-stuffed size would cost a read of the file.
  smtp::UnstuffedBody content;  // views into body.wire
  if (input.chunking && !body.file && ext_.chunking && !input.lmtp) {
    content = smtp::unstuffed(body.wire, body.dot_lines);
    input.chunk_size = content.size;
  } else {
    input.chunking = false;
  }
  smtp::ClientTransaction tx(std::move(input), ext_);
  Transaction out;
  while (tx.step() != Step::Done && !out.fault) {
    switch (tx.step()) {
      case Step::Send: {
        const std::string commands = tx.take_commands();
        if (tx.step() == Step::SendChunk) {
          const bool sent = co_await send_chunk(commands, content, t.data);
          out.fault = !sent;
          out.body_sent = sent;
          tx.body_sent();
          if (!sent) co_await read_replies_left(tx, t.command);
          break;
        }
        const bool sent = co_await send(commands, t.command);
        out.fault = !sent;
        break;
      }
      case Step::SendChunk:  // unreachable: the chunk is written with its commands, above
        error_ = "a BDAT chunk without its command";
        out.fault = true;
        break;
      case Step::Read: {
        // Once the content is out, every reply still owed is the final one's kind: a server may
        // hold MAIL's and RCPT's, pipelined before a BDAT, until it has taken the message.
        const Expect e = tx.expecting();
        const milliseconds timeout = out.body_sent || e == Expect::DataDone ? t.data_done
                                     : e == Expect::Data                    ? t.data
                                                                            : t.command;
        auto reply = co_await read_reply(timeout);
        if (!reply) {
          out.fault = true;
          break;
        }
        if (reply->code == 421) out.closing = true;
        tx.on_reply(*reply);
        break;
      }
      case Step::SendBody: {
        const bool sent = co_await send_body(body, t.data);
        out.fault = !sent;
        out.body_sent = sent;
        tx.body_sent();
        break;
      }
      case Step::SendEndOfData:
        out.fault = !co_await send(".\r\n", t.data);
        tx.body_sent();
        break;
      case Step::Done:
        break;
    }
  }
  // A fault after the content went out may mean a duplicate, unless the server had already
  // refused the envelope (BDAT sends the content before MAIL's and RCPT's replies are read).
  if (out.body_sent && tx.refused_before_content()) out.body_sent = false;
  out.replies = tx.take_results();
  out.refused_at_rcpt.resize(out.replies.size());
  for (std::size_t i = 0; i < out.replies.size(); ++i)
    out.refused_at_rcpt[i] = tx.refused_at_rcpt(i);
  if (!out.fault && !out.closing && tx.needs_rset()) {
    // The outcomes stand either way; a failed RSET only costs the connection.
    std::optional<smtp::Reply> r;
    const bool ok219 = co_await send("RSET\r\n", t.command);
    if (ok219) r = co_await read_reply(t.command);
    if (!r || r->code != 250) out.closing = true;
  }
  co_return out;
}

net::Task<std::vector<SmtpClient::Transaction>> SmtpClient::transact_pipelined(
    std::vector<Outgoing> group, const config::Timeouts& t) {
  using Step = smtp::ClientTransaction::Step;
  std::vector<smtp::ClientTransaction> txs;
  std::vector<smtp::UnstuffedBody> contents(group.size());  // views into the bodies
  std::vector<std::string> commands(group.size());
  std::vector<bool> reset(group.size(), false);  // an RSET goes before its MAIL
  txs.reserve(group.size());
  std::vector<asio::const_buffer> write;
  for (std::size_t i = 0; i < group.size(); ++i) {
    contents[i] = smtp::unstuffed(group[i].body->wire, group[i].body->dot_lines);
    group[i].input.chunking = true;
    group[i].input.chunk_size = contents[i].size;
    txs.emplace_back(std::move(group[i].input), ext_);
    // One refused before a word is sent (SIZE, 8BITMIME, SMTPUTF8) is done already.
    if (txs.back().step() != Step::Send) continue;
    // A server that refuses a BDAT may keep that transaction open (RFC 3030; Postfix does after
    // "554 no valid recipients"): the next MAIL would then get "503 nested MAIL" while its RCPTs
    // and content went into the open one, under the other message's sender. An RSET before each
    // MAIL but the first (allowed anywhere in a group, RFC 2920 §3.1) ends whatever is open.
    reset[i] = !write.empty();
    if (reset[i]) commands[i] = "RSET\r\n";
    commands[i] += txs.back().take_commands();
    write.push_back(asio::buffer(commands[i]));
    for (std::string_view span : contents[i].spans) write.push_back(asio::buffer(span));
    txs.back().body_sent();
  }
  std::vector<Transaction> out(group.size());
  bool sent = true;
  if (!write.empty()) {
    const std::span<const asio::const_buffer> block(write);
    sent = co_await write_block(block, t.data);
  }
  // A server that hung up partway through the write may have answered the transactions before
  // (and taken their messages): their replies are in the receive buffer, read as
  // read_replies_left does, or they would be sent again.
  const bool hung_up =
      write_error_ == asio::error::connection_reset || write_error_ == asio::error::broken_pipe;
  bool broken = !sent && (!hung_up || deadline_.expired() || !stream_);
  const std::string why = error_;
  const milliseconds wait = sent ? t.data_done : std::min(t.data_done, milliseconds(5000));
  bool closing = false;
  for (std::size_t i = 0; i < txs.size(); ++i) {
    smtp::ClientTransaction& tx = txs[i];
    Transaction& o = out[i];
    const bool written = tx.step() != Step::Done;
    o.body_sent = written;  // (if the write failed, how much of it went out is not known)
    if (reset[i] && !broken && !closing) {
      auto r = co_await read_reply(wait);
      if (!r) {
        broken = true;
      } else if (r->code != 250) {
        closing = true;  // nothing after it can be trusted; the connection goes
        error_ = peer_ + " answered RSET with " + r->summary();
      }
    }
    while (tx.step() == Step::Read && !broken && !closing) {
      auto reply = co_await read_reply(wait);
      if (!reply) {
        broken = true;
        break;
      }
      if (reply->code == 421) closing = true;
      tx.on_reply(*reply);
    }
    o.fault = written && tx.step() != Step::Done && (broken || closing);
    o.closing = closing;
    if (o.body_sent && tx.refused_before_content()) o.body_sent = false;
    o.replies = tx.take_results();
    o.refused_at_rcpt.resize(o.replies.size());
    for (std::size_t r = 0; r < o.replies.size(); ++r) o.refused_at_rcpt[r] = tx.refused_at_rcpt(r);
  }
  if (!sent) {
    error_ = why;  // the write's failure, not the read's that followed
    for (Transaction& o : out) o.closing = true;  // the connection is of no further use
  }
  // The last transaction written may have left the server holding it (refused locally, those
  // after it were never written).
  bool held = false;
  for (std::size_t i = 0; i < txs.size(); ++i) {
    if (!commands[i].empty()) held = txs[i].needs_rset();
  }
  if (held && !broken && !closing && sent) {
    std::optional<smtp::Reply> r;
    const bool ok = co_await send("RSET\r\n", t.command);
    if (ok) r = co_await read_reply(t.command);
    if (!r || r->code != 250) {
      for (Transaction& o : out) o.closing = true;
    }
  }
  co_return out;
}

net::Task<void> SmtpClient::quit(milliseconds timeout) {
  if (!stream_) co_return;
  const bool ok227 = co_await send("QUIT\r\n", timeout);
  if (ok227) {
    auto bye = co_await read_reply(timeout);
    static_cast<void>(bye);
  }
  close();
}

}  // namespace mma::delivery
