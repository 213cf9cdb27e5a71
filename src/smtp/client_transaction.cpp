#include "smtp/client_transaction.hpp"

#include "smtp/decimal.hpp"

namespace mma::smtp {

ClientTransaction::ClientTransaction(TransactionInput in, const Extensions& ext)
    : in_(std::move(in)),
      pipelining_(ext.pipelining),
      chunking_(in_.chunking && ext.chunking && !in_.lmtp),
      results_(in_.recipients.size()),
      accepted_(in_.recipients.size(), false),
      rcpt_refused_(in_.recipients.size(), false) {
  if (ext.size && ext.max_size != 0 && in_.size > ext.max_size) {
    // RFC 1870 §6: don't send what the server said it will refuse.
    finish_with(make_reply(552, "5.3.4",
                           "Message size exceeds the remote server's limit of " +
                               std::to_string(ext.max_size)),
                false);
    return;
  }
  if (in_.eightbit && !ext.eightbitmime) {
    // RFC 6152 §3: an 8-bit body must not go to a server that did not offer 8BITMIME.
    finish_with(
        make_reply(554, "5.6.3", "The remote server does not accept 8-bit content (no 8BITMIME)"),
        false);
    return;
  }
  if (in_.smtputf8 && !ext.smtputf8) {
    // RFC 6531 §3.2: without SMTPUTF8 at the server, such a message cannot be sent there.
    finish_with(make_reply(553, "5.6.7", "The remote server does not support SMTPUTF8 (RFC 6531)"),
                false);
    return;
  }
  // The commands are written straight into out_, sized once: this runs for every message.
  std::size_t room = in_.sender.size() + 64;
  for (auto r : in_.recipients) room += r.size() + 12;
  out_.reserve(room);
  expected_.reserve(in_.recipients.size() + 2);
  out_ += "MAIL FROM:<";
  out_ += in_.sender;
  out_ += '>';
  if (ext.size) {
    out_ += " SIZE=";
    append_decimal(out_, in_.size);
  }
  if (in_.eightbit && ext.eightbitmime) out_ += " BODY=8BITMIME";
  if (in_.smtputf8) out_ += " SMTPUTF8";
  end_command(Expect::Mail);
  if (pipelining_) {
    for (auto r : in_.recipients) queue_rcpt(r);
    next_rcpt_ = in_.recipients.size();
    queue_content_command();
  }
}

void ClientTransaction::queue_rcpt(std::string_view address) {
  out_ += "RCPT TO:<";
  out_ += address;
  out_ += '>';
  end_command(Expect::Rcpt);
}

void ClientTransaction::end_command(Expect e) {
  out_ += "\r\n";
  expected_.push_back(e);
  step_ = Step::Send;
}

void ClientTransaction::queue_content_command() {
  if (!chunking_) {
    queue_command("DATA", Expect::Data);
    return;
  }
  // RFC 3030 §2: the reply to BDAT LAST is the message's final reply, as after DATA's ".".
  out_ += "BDAT ";
  append_decimal(out_, in_.chunk_size);
  out_ += " LAST";
  end_command(Expect::DataDone);
  chunk_queued_ = true;
}

void ClientTransaction::queue_command(std::string_view line, Expect e) {
  out_.append(line);
  end_command(e);
}

ClientTransaction::Expect ClientTransaction::expecting() const {
  return expected_.empty() ? Expect::DataDone : expected_.front();
}

std::string ClientTransaction::take_commands() {
  step_ = chunk_queued_ ? Step::SendChunk : Step::Read;
  chunk_queued_ = false;
  std::string s;
  s.swap(out_);
  return s;
}

std::size_t ClientTransaction::accepted() const {
  std::size_t n = 0;
  for (bool a : accepted_) n += a ? 1 : 0;
  return n;
}

void ClientTransaction::finish_with(const Reply& r, bool only_accepted) {
  for (std::size_t i = 0; i < results_.size(); ++i) {
    if (!only_accepted || accepted_[i]) results_[i] = r;
  }
  step_ = Step::Done;
}

void ClientTransaction::on_reply(const Reply& r) {
  if (step_ == Step::Done) return;
  const Expect e = expecting();
  if (!expected_.empty()) expected_.erase(expected_.begin());
  switch (e) {
    case Expect::Mail:
      mail_ok_ = r.klass() == 2;
      mail_replied_ = true;
      if (!mail_ok_) {
        for (auto& res : results_) res = r;
        if (!pipelining_) step_ = Step::Done;
        // Pipelined: the RCPT and DATA replies are still owed; read them before Done.
        return;
      }
      needs_rset_ = true;
      if (!pipelining_) {
        if (next_rcpt_ < in_.recipients.size()) {
          queue_rcpt(in_.recipients[next_rcpt_++]);
        }
      }
      return;
    case Expect::Rcpt: {
      const std::size_t i = rcpt_replies_++;
      if (mail_ok_ && i < results_.size()) {
        results_[i] = r;
        accepted_[i] = r.klass() == 2;
        rcpt_refused_[i] = r.klass() != 2;
      }
      if (!pipelining_) {
        if (next_rcpt_ < in_.recipients.size()) {
          queue_rcpt(in_.recipients[next_rcpt_++]);
        } else if (accepted() > 0) {
          queue_content_command();
        } else {
          step_ = Step::Done;  // needs_rset_: the MAIL is still open
        }
      }
      return;
    }
    case Expect::Data:
      after_data_reply(r);
      return;
    case Expect::DataDone:
      if (chunking_) {
        // Refused for want of recipients, the BDAT decides no one's fate; refused otherwise,
        // the server may still hold the transaction (RFC 3030 §2): RSET.
        if (mail_ok_ && accepted() > 0) finish_with(r, true);
        step_ = Step::Done;
        needs_rset_ = mail_ok_ && r.klass() != 2;
        return;
      }
      if (in_.lmtp && !ignore_final_) {
        while (lmtp_next_ < accepted_.size() && !accepted_[lmtp_next_]) ++lmtp_next_;
        if (lmtp_next_ < results_.size()) results_[lmtp_next_++] = r;
        if (expected_.empty()) {
          step_ = Step::Done;
          needs_rset_ = false;
        }
        return;
      }
      if (!ignore_final_) {
        finish_with(r, true);
        needs_rset_ = false;  // a reply after the data ends the transaction either way
      } else {
        step_ = Step::Done;
        needs_rset_ = true;
      }
      return;
  }
}

void ClientTransaction::after_data_reply(const Reply& r) {
  if (r.code == 354) {
    if (mail_ok_ && accepted() > 0) {
      step_ = Step::SendBody;
      if (in_.lmtp) {
        for (std::size_t i = 0; i < accepted(); ++i) expected_.push_back(Expect::DataDone);
        return;
      }
    } else {
      // RFC 2920 §3.1 says the server should have refused DATA; end the empty data cleanly.
      ignore_final_ = true;
      step_ = Step::SendEndOfData;
    }
    expected_.push_back(Expect::DataDone);
    return;
  }
  if (mail_ok_) finish_with(r, true);
  step_ = Step::Done;
  needs_rset_ = mail_ok_;
}

}  // namespace mma::smtp
