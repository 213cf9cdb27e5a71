#include "delivery/smtp_client.hpp"

#include <array>

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

net::Task<bool> SmtpClient::send_body(const std::string& wire, milliseconds timeout) {
  const std::string_view term =
      wire.size() >= 2 && wire.compare(wire.size() - 2, 2, "\r\n") == 0 ? ".\r\n" : "\r\n.\r\n";
  // One gathered write of the shared body: never copied per recipient or per queue.
  const std::array<asio::const_buffer, 2> bufs{asio::buffer(wire),
                                               asio::buffer(term.data(), term.size())};
  deadline_.arm(timeout);
  auto r = co_await stream_->write(std::span<const asio::const_buffer>(bufs));
  deadline_.disarm();
  if (r.ec) {
    error_ = "writing the message to " + peer_ + ": " +
             (deadline_.expired() ? std::string("timed out") : r.ec.message());
    co_return false;
  }
  co_return true;
}

net::Task<bool> SmtpClient::open(const std::string& helo_name, bool lmtp,
                                 const config::Timeouts& t) {
  auto banner = co_await read_reply(t.banner);
  if (!banner) co_return false;
  if (banner->code != 220) {
    error_ = peer_ + " greeted with " + banner->summary();
    co_return false;
  }
  if (!co_await send((lmtp ? "LHLO " : "EHLO ") + helo_name + "\r\n", t.banner)) co_return false;
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
  if (!co_await send("HELO " + helo_name + "\r\n", t.banner)) co_return false;
  auto helo = co_await read_reply(t.banner);
  if (!helo) co_return false;
  if (helo->code != 250) {
    error_ = peer_ + " answered HELO with " + helo->summary();
    co_return false;
  }
  ext_ = smtp::Extensions{};
  co_return true;
}

net::Task<SmtpClient::Transaction> SmtpClient::transact(smtp::TransactionInput input,
                                                        const std::string& wire,
                                                        const config::Timeouts& t) {
  using Step = smtp::ClientTransaction::Step;
  using Expect = smtp::ClientTransaction::Expect;
  smtp::ClientTransaction tx(std::move(input), ext_);
  Transaction out;
  while (tx.step() != Step::Done && !out.fault) {
    switch (tx.step()) {
      case Step::Send:
        out.fault = !co_await send(tx.take_commands(), t.command);
        break;
      case Step::Read: {
        const Expect e = tx.expecting();
        const milliseconds timeout = e == Expect::Data       ? t.data
                                     : e == Expect::DataDone ? t.data_done
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
      case Step::SendBody:
        out.fault = !co_await send_body(wire, t.data);
        tx.body_sent();
        break;
      case Step::SendEndOfData:
        out.fault = !co_await send(".\r\n", t.data);
        tx.body_sent();
        break;
      case Step::Done:
        break;
    }
  }
  out.replies = tx.results();
  if (!out.fault && !out.closing && tx.needs_rset()) {
    // The outcomes stand either way; a failed RSET only costs the connection.
    std::optional<smtp::Reply> r;
    if (co_await send("RSET\r\n", t.command)) r = co_await read_reply(t.command);
    if (!r || r->code != 250) out.closing = true;
  }
  co_return out;
}

net::Task<void> SmtpClient::quit(milliseconds timeout) {
  if (!stream_) co_return;
  if (co_await send("QUIT\r\n", timeout)) {
    auto bye = co_await read_reply(timeout);
    static_cast<void>(bye);
  }
  close();
}

}  // namespace mma::delivery
