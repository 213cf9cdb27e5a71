#include "smtp/command.hpp"

#include <array>
#include <charconv>

namespace mma::smtp {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
  }
  return true;
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

struct VerbName {
  std::string_view name;
  Verb verb;
};
constexpr std::array<VerbName, 16> kVerbs{{
    {"HELO", Verb::Helo},
    {"EHLO", Verb::Ehlo},
    {"LHLO", Verb::Lhlo},
    {"MAIL", Verb::Mail},
    {"RCPT", Verb::Rcpt},
    {"DATA", Verb::Data},
    {"RSET", Verb::Rset},
    {"NOOP", Verb::Noop},
    {"QUIT", Verb::Quit},
    {"VRFY", Verb::Vrfy},
    {"EXPN", Verb::Expn},
    {"HELP", Verb::Help},
    {"STARTTLS", Verb::Starttls},
    {"AUTH", Verb::Auth},
    {"BDAT", Verb::Bdat},
    {"ETRN", Verb::Etrn},
}};

Reply err(int code, std::string_view enhanced, std::string_view text) {
  return make_reply(code, enhanced, text);
}

bool is_keyword_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

// esmtp-param = esmtp-keyword ["=" esmtp-value]; calls f(keyword, value, has_value) for each;
// returns false on syntax errors.
template <class F>
bool for_each_param(std::string_view rest, F&& f) {
  while (!rest.empty()) {
    if (rest[0] == ' ') {
      rest.remove_prefix(1);
      continue;
    }
    const auto sp = rest.find(' ');
    const std::string_view param = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp);
    const auto eq = param.find('=');
    const std::string_view key = param.substr(0, eq);
    if (key.empty() || !is_keyword_char(key[0])) return false;
    for (char c : key) {
      if (!is_keyword_char(c)) return false;
    }
    std::string_view value;
    if (eq != std::string_view::npos) {
      value = param.substr(eq + 1);
      if (value.empty()) return false;
      for (char c : value) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 33 || u > 126 || u == '=') return false;
      }
    }
    if (!f(key, value, eq != std::string_view::npos)) return false;
  }
  return true;
}

}  // namespace

CommandLine split_command(std::string_view line) {
  const auto sp = line.find(' ');
  const std::string_view word = line.substr(0, sp);
  CommandLine cmd;
  for (const auto& v : kVerbs) {
    if (iequals(word, v.name)) {
      cmd.verb = v.verb;
      break;
    }
  }
  if (sp != std::string_view::npos) cmd.arg = line.substr(sp + 1);
  // Trailing spaces are common and meaningless.
  while (!cmd.arg.empty() && cmd.arg.back() == ' ') cmd.arg.remove_suffix(1);
  return cmd;
}

Parsed<MailFrom> parse_mail_from(std::string_view arg, const MailOptions& opts) {
  Parsed<MailFrom> out;
  if (!istarts_with(arg, "FROM:")) {
    out.error = err(501, "5.5.4", "Syntax: MAIL FROM:<address>");
    return out;
  }
  arg.remove_prefix(5);
  // Parameters are read first: SMTPUTF8 decides what the address may contain.
  MailParams params;
  bool utf8_requested = false;
  {
    const PathParse probe = parse_path(arg, true, true);
    if (probe.ok) {
      Reply perr;
      const bool ok =
          for_each_param(probe.rest, [&](std::string_view k, std::string_view v, bool has_value) {
            if (iequals(k, "SIZE")) {
              std::uint64_t n = 0;
              const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
              if (!has_value || ec != std::errc{} || p != v.data() + v.size()) {
                perr = err(501, "5.5.4", "Bad SIZE parameter");
                return false;
              }
              params.size = n;
            } else if (iequals(k, "BODY")) {
              if (iequals(v, "8BITMIME")) {
                params.body = BodyType::EightBitMime;
              } else if (iequals(v, "7BIT")) {
                params.body = BodyType::SevenBit;
              } else {
                perr = err(501, "5.5.4", "Unsupported BODY type");
                return false;
              }
            } else if (iequals(k, "SMTPUTF8") && opts.smtputf8 && !has_value) {
              utf8_requested = true;
            } else {
              perr = err(555, "5.5.4", "Unsupported MAIL parameter");
              return false;
            }
            return true;
          });
      if (!ok) {
        out.error = perr.code != 0 ? perr : err(501, "5.5.4", "Bad MAIL parameter syntax");
        return out;
      }
    }
  }
  const PathParse p = parse_path(arg, true, utf8_requested);
  if (!p.ok) {
    if (p.too_long) {
      out.error = err(553, "5.1.7", "Sender address too long");
    } else {
      out.error = err(501, "5.1.7", std::string("Bad sender address syntax: ") + p.error);
    }
    return out;
  }
  if (opts.max_size != 0 && params.size && *params.size > opts.max_size) {
    out.error = err(552, "5.3.4", "Message size exceeds fixed maximum message size");
    return out;
  }
  params.smtputf8 = utf8_requested;
  out.value = MailFrom{p.null_path ? Address{} : p.address, params};
  return out;
}

Parsed<Address> parse_rcpt_to(std::string_view arg, bool utf8) {
  Parsed<Address> out;
  if (!istarts_with(arg, "TO:")) {
    out.error = err(501, "5.5.4", "Syntax: RCPT TO:<address>");
    return out;
  }
  arg.remove_prefix(3);
  const PathParse p = parse_path(arg, false, utf8);
  if (!p.ok) {
    if (p.too_long) {
      out.error = err(553, "5.1.3", "Recipient address too long");
    } else {
      out.error = err(501, "5.1.3", std::string("Bad recipient address syntax: ") + p.error);
    }
    return out;
  }
  bool any_param = false;
  const bool syntax_ok = for_each_param(p.rest, [&](std::string_view, std::string_view, bool) {
    any_param = true;
    return true;
  });
  if (!syntax_ok) {
    out.error = err(501, "5.5.4", "Bad RCPT parameter syntax");
    return out;
  }
  if (any_param) {
    out.error = err(555, "5.5.4", "Unsupported RCPT parameter");
    return out;
  }
  out.value = p.address;
  return out;
}

}  // namespace mma::smtp
