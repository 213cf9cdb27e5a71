// smtp/client_transaction: one mail transaction in the client role (RFC 5321 §3.3), pipelined
// when the server offers PIPELINING (RFC 2920), without I/O.
//
// The worker writes what take_commands() returns, reads replies into on_reply(), writes the
// body on SendBody (and right behind the commands, un-stuffed, on SendChunk: they ended with
// BDAT), and when Done reads the per-recipient replies: the reply that decided each recipient's
// fate (RCPT's refusal, or DATA's or BDAT's, or the one after the final "."; in LMTP, that
// recipient's own reply after the final ".").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/extensions.hpp"
#include "smtp/reply.hpp"

namespace mma::smtp {

struct TransactionInput {
  std::string_view sender;  // empty: the null reverse-path
  std::vector<std::string_view> recipients;
  std::uint64_t size = 0;
  bool eightbit = false;
  bool lmtp = false;      // RFC 2033 §4.2: one reply per accepted recipient after the data
  bool smtputf8 = false;  // RFC 6531: the envelope or headers need SMTPUTF8
  // RFC 3030: the content may go as one "BDAT <chunk_size> LAST" when the server offers
  // CHUNKING (not in LMTP), right behind the commands, with no wait for a 354. (SmtpClient
  // takes it as the caller's leave, and decides.)
  bool chunking = false;
  std::uint64_t chunk_size = 0;  // octets of the content as sent: un-stuffed, ending in CRLF
};

class ClientTransaction {
 public:
  enum class Step : std::uint8_t { Send, Read, SendBody, SendChunk, SendEndOfData, Done };
  enum class Expect : std::uint8_t { Mail, Rcpt, Data, DataDone };

  ClientTransaction(TransactionInput in, const Extensions& ext);

  [[nodiscard]] Step step() const { return step_; }
  // Which reply is awaited, for its timeout (RFC 5321 §4.5.3.2).
  [[nodiscard]] Expect expecting() const;
  // The commands to write (when step() is Send); the step becomes Read.
  std::string take_commands();
  // After SendBody/SendEndOfData was written.
  void body_sent() { step_ = Step::Read; }
  void on_reply(const Reply& r);

  // Once Done: the deciding reply of each recipient, in input order.
  [[nodiscard]] const std::vector<Reply>& results() const { return results_; }
  // The same, moved out: the transaction is over.
  [[nodiscard]] std::vector<Reply> take_results() { return std::move(results_); }
  // The server may still hold a transaction (a MAIL was accepted, no data followed): RSET.
  [[nodiscard]] bool needs_rset() const { return needs_rset_; }
  // The server refused the envelope before it could take the content (MAIL refused, or every
  // RCPT): whatever happens next, it does not have the message.
  [[nodiscard]] bool refused_before_content() const {
    return mail_replied_ &&
           (!mail_ok_ || (rcpt_replies_ >= in_.recipients.size() && accepted() == 0));
  }
  // Recipient `i` was refused at RCPT (its result is that reply), not after the data.
  [[nodiscard]] bool refused_at_rcpt(std::size_t i) const {
    return i < rcpt_refused_.size() && rcpt_refused_[i];
  }

 private:
  void queue_command(std::string_view verb_and_arg, Expect e);
  void queue_rcpt(std::string_view address);
  void end_command(Expect e);    // the line appended to out_ so far is complete
  void queue_content_command();  // DATA, or BDAT with its chunk to follow
  void finish_with(const Reply& r, bool only_accepted);
  void after_data_reply(const Reply& r);
  [[nodiscard]] std::size_t accepted() const;

  TransactionInput in_;
  bool pipelining_;
  bool chunking_;
  bool chunk_queued_ = false;  // the commands end with BDAT: the content follows them
  std::string out_;
  std::vector<Expect> expected_;  // replies still owed, in order
  std::size_t next_rcpt_ = 0;     // next RCPT to send (without pipelining)
  std::size_t rcpt_replies_ = 0;  // RCPT replies received
  bool mail_ok_ = false;
  bool mail_replied_ = false;
  std::vector<Reply> results_;
  std::vector<bool> accepted_;
  std::vector<bool> rcpt_refused_;
  Step step_ = Step::Send;
  bool needs_rset_ = false;
  bool ignore_final_ = false;  // the end-of-data reply after a DATA with no recipients left
  std::size_t lmtp_next_ = 0;  // LMTP: the accepted recipient the next final reply is for
};

}  // namespace mma::smtp
