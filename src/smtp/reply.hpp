// smtp/reply: the one type every SMTP reply takes, sent or received.
//
// A reply is {code, enhanced status, text} (RFC 5321 §4.2, enhanced status codes RFC 3463 and
// RFC 2034). Multi-line text is kept with '\n' between lines; formatting adds the "250-" / "250 "
// prefixes and CRLFs. No I/O here.
#pragma once

#include <string>
#include <string_view>

namespace mma::smtp {

struct Reply {
  int code = 0;
  std::string enhanced;  // "5.1.1", or empty when the peer sent none
  std::string text;      // lines separated by '\n', without codes

  [[nodiscard]] int klass() const { return code / 100; }
  [[nodiscard]] bool ok() const { return klass() == 2 || klass() == 3; }
  [[nodiscard]] bool transient() const { return klass() == 4; }
  [[nodiscard]] bool permanent() const { return klass() == 5; }
  // One line for logs: "550 5.1.1 text / second line".
  [[nodiscard]] std::string summary() const;
  // The same, appended to `out` (no string of its own: the accounting log's per-message path).
  void append_summary(std::string& out) const;
};

Reply make_reply(int code, std::string_view enhanced, std::string_view text);

// Appends the wire form. Enhanced codes are written only when the client asked for them with
// EHLO/LHLO (RFC 2034 §3): `with_enhanced` says so.
void append_reply(std::string& out, const Reply& reply, bool with_enhanced);

}  // namespace mma::smtp
