#include "smtp/address.hpp"

#include <arpa/inet.h>

#include <array>

namespace mma::smtp {
namespace {

constexpr std::size_t kMaxLocal = 64;    // RFC 5321 §4.5.3.1.1
constexpr std::size_t kMaxDomain = 255;  // §4.5.3.1.2
constexpr std::size_t kMaxPath = 256;    // §4.5.3.1.3, including the angle brackets

bool is_alpha(unsigned char c) {
  return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}
bool is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}
bool is_letdig(unsigned char c, bool utf8) {
  return is_alpha(c) || is_digit(c) || (utf8 && c >= 0x80);
}

// atext, RFC 5322 §3.2.3
bool is_atext(unsigned char c, bool utf8) {
  if (is_alpha(c) || is_digit(c)) return true;
  if (utf8 && c >= 0x80) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '/':
    case '=':
    case '?':
    case '^':
    case '_':
    case '`':
    case '{':
    case '|':
    case '}':
    case '~':
      return true;
    default:
      return false;
  }
}

// Dot-string or Quoted-string; returns its length, 0 if invalid.
std::size_t parse_local(std::string_view s, bool utf8) {
  if (s.empty()) return 0;
  std::size_t i = 0;
  if (s[0] == '"') {
    for (i = 1; i < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c == '"') return i + 1;
      if (c == '\\') {
        if (++i >= s.size()) return 0;
        const auto q = static_cast<unsigned char>(s[i]);
        if (q < 32 || q > 126) return 0;  // quoted-pairSMTP
        continue;
      }
      if ((c < 32 || c == 127) || (c > 126 && !utf8)) return 0;  // qtextSMTP
    }
    return 0;
  }
  bool need_atom = true;
  for (i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (is_atext(c, utf8)) {
      need_atom = false;
    } else if (c == '.' && !need_atom) {
      need_atom = true;
    } else {
      break;
    }
  }
  return need_atom ? 0 : i;
}

std::size_t parse_literal(std::string_view s) {
  const auto close = s.find(']');
  if (s.empty() || s[0] != '[' || close == std::string_view::npos || close > 64) return 0;
  std::string inner(s.substr(1, close - 1));
  std::array<unsigned char, 16> addr{};
  if (inner.size() > 5 &&
      (inner.compare(0, 5, "IPv6:") == 0 || inner.compare(0, 5, "ipv6:") == 0)) {
    if (inet_pton(AF_INET6, inner.c_str() + 5, addr.data()) != 1) return 0;
  } else if (inet_pton(AF_INET, inner.c_str(), addr.data()) != 1) {
    return 0;
  }
  return close + 1;
}

}  // namespace

std::size_t parse_domain(std::string_view s, bool utf8) {
  if (!s.empty() && s[0] == '[') return parse_literal(s);
  std::size_t i = 0;
  for (;;) {
    const std::size_t label_start = i;
    if (i >= s.size() || !is_letdig(static_cast<unsigned char>(s[i]), utf8)) return 0;
    while (i < s.size() && (is_letdig(static_cast<unsigned char>(s[i]), utf8) || s[i] == '-')) ++i;
    if (s[i - 1] == '-' || i - label_start > 63) return 0;
    if (i < s.size() && s[i] == '.' && i + 1 < s.size() &&
        is_letdig(static_cast<unsigned char>(s[i + 1]), utf8)) {
      ++i;
      continue;
    }
    break;
  }
  return i <= kMaxDomain ? i : 0;
}

void ascii_lower(std::string& s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + ('a' - 'A'));
  }
}

PathParse parse_path(std::string_view in, bool allow_null, bool utf8) {
  PathParse r;
  // Lenient: "MAIL FROM: <a@b>" (space after the colon) is common and harmless.
  while (!in.empty() && in[0] == ' ') in.remove_prefix(1);
  const bool bracketed = !in.empty() && in[0] == '<';
  std::size_t i = bracketed ? 1 : 0;
  if (bracketed && in.size() > 1 && in[1] == '>') {
    if (!allow_null) {
      r.error = "null path not allowed here";
      return r;
    }
    r.ok = true;
    r.null_path = true;
    r.rest = in.substr(2);
    return r;
  }
  // Source route "@a,@b:" (A-d-l): accepted and ignored, RFC 5321 §4.1.2 and §C.
  if (bracketed && i < in.size() && in[i] == '@') {
    const auto colon = in.find(':', i);
    if (colon == std::string_view::npos) {
      r.error = "bad source route";
      return r;
    }
    i = colon + 1;
  }
  const std::size_t local_len = parse_local(in.substr(i), utf8);
  if (local_len == 0) {
    r.error = "bad local part";
    return r;
  }
  if (i + local_len >= in.size() || in[i + local_len] != '@') {
    r.error = "address has no domain";
    return r;
  }
  const std::size_t domain_start = i + local_len + 1;
  const std::size_t domain_len = parse_domain(in.substr(domain_start), utf8);
  if (domain_len == 0) {
    r.error = "bad domain";
    return r;
  }
  std::size_t end = domain_start + domain_len;
  if (bracketed) {
    if (end >= in.size() || in[end] != '>') {
      r.error = "missing '>'";
      return r;
    }
    ++end;
  }
  if (end < in.size() && in[end] != ' ') {
    r.error = "junk after address";
    return r;
  }
  std::string local(in.substr(i, local_len));
  std::string domain(in.substr(domain_start, domain_len));
  if (local.size() > kMaxLocal || domain.size() > kMaxDomain ||
      local.size() + domain.size() + 3 > kMaxPath) {
    r.too_long = true;
    r.error = "address too long";
    return r;
  }
  ascii_lower(domain);
  r.ok = true;
  r.address = Address(local + '@' + domain, local.size());
  r.rest = in.substr(end);
  return r;
}

}  // namespace mma::smtp
