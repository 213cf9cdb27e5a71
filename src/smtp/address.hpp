// smtp/address: envelope paths of MAIL FROM and RCPT TO (RFC 5321 §4.1.2, §4.5.3.1).
//
// Parsing is strict about what would break a relay (no domain, control characters, over-long
// parts) and lenient about what clients commonly get wrong and is harmless (a space after
// the colon, missing angle brackets, a source route, which §4.1.2 says to ignore).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mma::smtp {

class Address {
 public:
  Address() = default;
  Address(std::string text, std::size_t at) : text_(std::move(text)), at_(at) {}
  [[nodiscard]] const std::string& str() const { return text_; }
  [[nodiscard]] std::string_view local() const { return std::string_view(text_).substr(0, at_); }
  [[nodiscard]] std::string_view domain() const {
    return at_ < text_.size() ? std::string_view(text_).substr(at_ + 1) : std::string_view{};
  }
  [[nodiscard]] bool empty() const { return text_.empty(); }

 private:
  std::string text_;  // local@domain; domain lower-cased
  std::size_t at_ = 0;
};

struct PathParse {
  bool ok = false;
  bool null_path = false;  // "<>"
  bool too_long = false;   // a limit of §4.5.3.1 exceeded
  Address address;
  std::string_view rest;  // what follows the path: ESMTP parameters
  const char* error = "";
};

// Parses a path at the start of `in` (after "FROM:" / "TO:"). `allow_null`: MAIL accepts "<>".
// `utf8`: SMTPUTF8 (RFC 6531) allows UTF-8 in local part and domain.
PathParse parse_path(std::string_view in, bool allow_null, bool utf8);

// Length of a valid domain (or address literal) at the start of `s`, 0 if none.
std::size_t parse_domain(std::string_view s, bool utf8);

// Lower-cases ASCII letters in place (domains compare case-insensitively, RFC 5321 §2.4).
void ascii_lower(std::string& s);

}  // namespace mma::smtp
