#include "smtp/server_protocol.hpp"

#include <limits>

namespace mma::smtp {

ServerProtocol::ServerProtocol(ServerOptions opts, ServerPolicy* policy)
    : opts_(std::move(opts)),
      policy_(policy),
      state_(opts_.access_denied ? State::Denied : State::Connected) {}

Response ServerProtocol::greeting() const {
  if (opts_.access_denied) {
    return {make_reply(554, "5.7.1",
                       opts_.hostname + " access denied: relaying not allowed from your address")};
  }
  return {make_reply(220, "", opts_.hostname + (opts_.lmtp ? " LMTP" : " ESMTP") + " mma")};
}

Response ServerProtocol::error(int code, std::string_view enhanced, std::string_view text) {
  if (++errors_ > opts_.max_errors) {
    state_ = State::Closed;
    return {make_reply(421, "4.7.0", opts_.hostname + " too many errors, closing connection"),
            Next::Close};
  }
  return {make_reply(code, enhanced, text)};
}

void ServerProtocol::reset_transaction() {
  env_.sender = Address{};
  env_.params = MailParams{};
  env_.recipients.clear();
  rcpt_attempts_ = 0;
}

Response ServerProtocol::on_line_too_long() {
  if (state_ == State::Denied) return error(503, "5.7.1", "Access denied");
  return error(500, "5.5.2", "Line too long");
}

Response ServerProtocol::on_timeout() const {
  return {make_reply(421, "4.4.2", opts_.hostname + " timeout exceeded, closing connection"),
          Next::Close};
}

Response ServerProtocol::on_command(std::string_view line) {
  for (char c : line) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 32 && c != '\t') || u == 127) {
      if (state_ == State::Denied) return error(503, "5.7.1", "Access denied");
      return error(500, "5.5.2", "Invalid character in command");
    }
  }
  const CommandLine cmd = split_command(line);
  if (state_ == State::Denied) {
    // §3.1: after a 554 greeting the server waits for QUIT and answers 503 to the rest.
    if (cmd.verb == Verb::Quit) {
      state_ = State::Closed;
      return {make_reply(221, "2.0.0", "Bye"), Next::Close};
    }
    return error(503, "5.7.1", "Access denied: relaying not allowed from your address");
  }
  switch (cmd.verb) {
    case Verb::Helo:
      if (opts_.lmtp) break;
      return hello(cmd.arg, false);
    case Verb::Ehlo:
      if (opts_.lmtp) break;
      return hello(cmd.arg, true);
    case Verb::Lhlo:
      if (!opts_.lmtp) break;
      return hello(cmd.arg, true);
    case Verb::Mail:
      return mail(cmd.arg);
    case Verb::Rcpt:
      return rcpt(cmd.arg);
    case Verb::Data:
      return data(cmd.arg);
    case Verb::Rset:
      if (!cmd.arg.empty()) return error(501, "5.5.4", "Syntax: RSET");
      reset_transaction();
      if (state_ != State::Connected) state_ = State::Greeted;
      return {make_reply(250, "2.0.0", "Ok")};
    case Verb::Noop:
      return {make_reply(250, "2.0.0", "Ok")};
    case Verb::Quit:
      state_ = State::Closed;
      return {make_reply(221, "2.0.0", opts_.hostname + " closing connection"), Next::Close};
    case Verb::Vrfy:
      if (cmd.arg.empty()) return error(501, "5.5.4", "Syntax: VRFY address");
      // §3.5.3: 252 when the server will not verify but will accept and try.
      return {make_reply(252, "2.5.0",
                         "Cannot VRFY user, but will accept message and attempt delivery")};
    case Verb::Help:
      return {make_reply(214, "2.0.0",
                         opts_.lmtp
                             ? "Commands: LHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP"
                             : "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP")};
    case Verb::Bdat:
      if (!opts_.chunking || opts_.lmtp || !env_.esmtp) break;  // not offered: 502 below
      return bdat(cmd.arg);
    case Verb::Expn:
    case Verb::Starttls:
    case Verb::Auth:
    case Verb::Etrn:
      return error(502, "5.5.1", "Command not implemented");
    case Verb::Unknown:
      break;
  }
  if (cmd.verb == Verb::Bdat) return error(502, "5.5.1", "Command not implemented");
  if (line.empty()) return error(500, "5.5.2", "Error: bad syntax");
  return error(500, "5.5.2", "Command unrecognized");
}

Response ServerProtocol::hello(std::string_view arg, bool extended) {
  if (arg.empty() || arg.find(' ') != std::string_view::npos) {
    return error(501, "5.5.4",
                 extended ? (opts_.lmtp ? "Syntax: LHLO hostname" : "Syntax: EHLO hostname")
                          : "Syntax: HELO hostname");
  }
  // §4.1.4: a new greeting ends any transaction in progress.
  reset_transaction();
  env_.helo.assign(arg);
  env_.esmtp = extended;
  enhanced_ = extended;  // RFC 2034: codes only once advertised
  state_ = State::Greeted;
  if (!extended) return {make_reply(250, "", opts_.hostname)};
  std::string text = opts_.hostname;
  if (opts_.pipelining) text += "\nPIPELINING";
  text += "\nSIZE";
  if (opts_.max_message_size != 0) text += ' ' + std::to_string(opts_.max_message_size);
  if (opts_.eightbitmime) text += "\n8BITMIME";
  if (opts_.smtputf8) text += "\nSMTPUTF8";
  text += "\nENHANCEDSTATUSCODES";
  if (opts_.chunking && !opts_.lmtp) text += "\nCHUNKING";
  return {make_reply(250, "", text)};
}

Response ServerProtocol::mail(std::string_view arg) {
  if (state_ == State::Connected) {
    return error(503, "5.5.1",
                 opts_.lmtp ? "Error: send LHLO first" : "Error: send HELO/EHLO first");
  }
  if (state_ == State::Chunking) return error(503, "5.5.1", "Error: BDAT in progress");
  if (state_ != State::Greeted) return error(503, "5.5.1", "Error: nested MAIL command");
  Parsed<MailFrom> p = parse_mail_from(arg, MailOptions{opts_.max_message_size, opts_.smtputf8});
  if (!p.value) {
    if (p.error.code == 552 || p.error.code == 553) return {p.error};  // policy, not syntax
    return error(p.error.code, p.error.enhanced, p.error.text);
  }
  if (p.value->params.body == BodyType::EightBitMime && !opts_.eightbitmime) {
    return error(555, "5.5.4", "8BITMIME not offered");
  }
  env_.sender = std::move(p.value->sender);
  env_.params = p.value->params;
  if (policy_ != nullptr) {
    if (auto r = policy_->check_mail(env_)) {
      reset_transaction();
      return {*r};
    }
  }
  state_ = State::Mail;
  return {make_reply(250, "2.1.0", "Ok")};
}

Response ServerProtocol::rcpt(std::string_view arg) {
  if (state_ != State::Mail && state_ != State::Rcpt)
    return error(503, "5.5.1", "Error: need MAIL command");
  ++rcpt_attempts_;
  Parsed<Address> p = parse_rcpt_to(arg, env_.params.smtputf8);
  if (!p.value) {
    if (p.error.code == 553) return {p.error};
    return error(p.error.code, p.error.enhanced, p.error.text);
  }
  if (env_.recipients.size() >= opts_.max_recipients) {
    return {make_reply(452, "4.5.3", "Too many recipients")};  // §4.5.3.1.10
  }
  if (policy_ != nullptr) {
    if (auto r = policy_->check_rcpt(env_, *p.value)) return {*r};
  }
  env_.recipients.push_back(std::move(*p.value));
  state_ = State::Rcpt;
  return {make_reply(250, "2.1.5", "Ok")};
}

Response ServerProtocol::data(std::string_view arg) {
  if (!arg.empty()) return error(501, "5.5.4", "Syntax: DATA");
  if (state_ == State::Mail && rcpt_attempts_ > 0) {
    return {make_reply(554, "5.5.1", "Error: no valid recipients")};
  }
  if (state_ == State::Greeted || state_ == State::Connected)
    return error(503, "5.5.1", "Error: need MAIL command");
  // RFC 3030 §3: DATA may not follow BDAT in one transaction.
  if (state_ == State::Chunking) return error(503, "5.5.1", "Error: BDAT in progress");
  if (state_ != State::Rcpt) return error(503, "5.5.1", "Error: need RCPT command");
  state_ = State::Data;
  return {make_reply(354, "", "End data with <CR><LF>.<CR><LF>"), Next::ReadData};
}

Response ServerProtocol::bdat(std::string_view arg) {
  // RFC 3030 §4: "BDAT" SP chunk-size [ SP end-marker ], end-marker = "LAST".
  std::uint64_t size = 0;
  std::size_t i = 0;
  for (; i < arg.size() && arg[i] >= '0' && arg[i] <= '9'; ++i) {
    if (size > (std::numeric_limits<std::uint64_t>::max() - 9) / 10)
      break;  // more octets than anyone can send
    size = size * 10 + static_cast<std::uint64_t>(arg[i] - '0');
  }
  const std::string_view rest = arg.substr(i);
  const bool last = rest.size() == 5 && (rest[0] == ' ') && (rest[1] | 0x20) == 'l' &&
                    (rest[2] | 0x20) == 'a' && (rest[3] | 0x20) == 's' && (rest[4] | 0x20) == 't';
  if (i == 0 || (!rest.empty() && !last)) {
    // The chunk's length is unknown, so its octets cannot be told from the next command.
    state_ = State::Closed;
    return {make_reply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]; closing connection"),
            Next::Close};
  }
  chunk_ = Chunk{.size = size, .last = last};
  Response refusal;
  if (state_ == State::Rcpt || state_ == State::Chunking) {
    chunk_.accepted = true;
    chunk_.first = state_ == State::Rcpt;
    state_ = State::Chunking;
    // After the last chunk this reply is not sent: the caller decides the message's, as after
    // DATA's ".".
    return {make_reply(250, "2.0.0", std::to_string(size) + " octets received"), Next::ReadChunk};
  }
  if (state_ == State::Mail && rcpt_attempts_ > 0) {
    refusal = {make_reply(554, "5.5.1", "Error: no valid recipients")};
  } else if (state_ == State::Mail) {
    refusal = error(503, "5.5.1", "Error: need RCPT command");
  } else {
    refusal = error(503, "5.5.1", "Error: need MAIL command");
  }
  if (refusal.next == Next::Close) return refusal;
  refusal.next = Next::ReadChunk;  // sent after the refused chunk has been read
  return refusal;
}

Envelope ServerProtocol::finish_data() {
  // The transaction's parts move out (no copy of each recipient, once per message); the
  // session's stay for the next one.
  Envelope out;
  out.helo = env_.helo;
  out.esmtp = env_.esmtp;
  out.sender = std::move(env_.sender);
  out.params = std::move(env_.params);
  out.recipients = std::move(env_.recipients);
  reset_transaction();
  state_ = State::Greeted;
  return out;
}

}  // namespace mma::smtp
