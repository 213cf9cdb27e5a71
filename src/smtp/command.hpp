// smtp/command: splitting a command line into verb and argument, and parsing the arguments of
// MAIL and RCPT with their ESMTP parameters (RFC 5321 §4.1.1, SIZE RFC 1870, BODY RFC 6152,
// SMTPUTF8 RFC 6531). A parse error comes back as the reply to send (§4.2.3 codes).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "smtp/address.hpp"
#include "smtp/reply.hpp"

namespace mma::smtp {

enum class Verb : std::uint8_t {
  Helo,
  Ehlo,
  Lhlo,
  Mail,
  Rcpt,
  Data,
  Rset,
  Noop,
  Quit,
  Vrfy,
  Expn,
  Help,
  Starttls,
  Auth,
  Bdat,
  Etrn,
  Unknown
};

struct CommandLine {
  Verb verb = Verb::Unknown;
  std::string_view arg;  // after the verb and one space; empty if none
};

CommandLine split_command(std::string_view line);

enum class BodyType : std::uint8_t { Unspecified, SevenBit, EightBitMime };

struct MailParams {
  std::optional<std::uint64_t> size;
  BodyType body = BodyType::Unspecified;
  bool smtputf8 = false;
};

struct MailFrom {
  Address sender;  // empty for the null reverse-path "<>"
  MailParams params;
};

struct MailOptions {
  std::uint64_t max_size = 0;  // 0: no limit
  bool smtputf8 = false;       // whether the server offered SMTPUTF8
};

template <class T>
struct Parsed {
  std::optional<T> value;
  Reply error;  // meaningful when !value
};

// `arg` is what follows "MAIL ": "FROM:<a@b> SIZE=123".
Parsed<MailFrom> parse_mail_from(std::string_view arg, const MailOptions& opts);
// `arg` is what follows "RCPT ": "TO:<a@b>".
Parsed<Address> parse_rcpt_to(std::string_view arg, bool utf8);

}  // namespace mma::smtp
