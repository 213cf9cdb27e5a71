#include "smtp/server_protocol.hpp"

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
    case Verb::Expn:
    case Verb::Starttls:
    case Verb::Auth:
    case Verb::Bdat:
    case Verb::Etrn:
      return error(502, "5.5.1", "Command not implemented");
    case Verb::Unknown:
      break;
  }
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
  return {make_reply(250, "", text)};
}

Response ServerProtocol::mail(std::string_view arg) {
  if (state_ == State::Connected) {
    return error(503, "5.5.1",
                 opts_.lmtp ? "Error: send LHLO first" : "Error: send HELO/EHLO first");
  }
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
  if (state_ != State::Rcpt) return error(503, "5.5.1", "Error: need RCPT command");
  state_ = State::Data;
  return {make_reply(354, "", "End data with <CR><LF>.<CR><LF>"), Next::ReadData};
}

Envelope ServerProtocol::finish_data() {
  Envelope out = env_;
  out.recipients = std::move(env_.recipients);
  reset_transaction();
  state_ = State::Greeted;
  return out;
}

}  // namespace mma::smtp
