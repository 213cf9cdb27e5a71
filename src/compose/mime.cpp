#include "compose/mime.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace mma::compose {
namespace {

constexpr std::size_t kMaxLine = 998;   // RFC 5322 §2.1.1 MUST, CRLF excluded
constexpr std::size_t kFoldWidth = 76;  // §2.1.1 SHOULD 78; RFC 2047 §2 says 76 for encoded words
constexpr std::size_t kMaxEncodedWord = 75;       // RFC 2047 §2
constexpr std::size_t kEncodedWordOverhead = 12;  // "=?UTF-8?B?" and "?="
constexpr std::size_t kMaxFieldName = 900;        // leaves a first line room for an encoded word
constexpr std::size_t kQpLine = 76;            // RFC 2045 §6.7 (5), "=" of a soft break included
constexpr std::size_t kBase64LineOctets = 57;  // 76 characters, RFC 2045 §6.8
constexpr std::size_t kMaxBoundary = 70;       // RFC 2046 §5.1.1

constexpr char kHex[] = "0123456789ABCDEF";
constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

using CharTable = std::array<bool, 256>;

constexpr CharTable make_table(bool (*pred)(int)) {
  CharTable t{};
  for (int c = 0; c < 256; ++c) t[static_cast<std::size_t>(c)] = pred(c);
  return t;
}
constexpr bool alnum(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
constexpr bool one_of(int c, std::string_view set) {
  return c < 128 && set.find(static_cast<char>(c)) != std::string_view::npos;
}

// RFC 5322 §3.2.3.
constexpr CharTable kAtext =
    make_table([](int c) { return alnum(c) || one_of(c, "!#$%&'*+-/=?^_`{|}~"); });
// RFC 5322 §3.6.8: printable ASCII except ":".
constexpr CharTable kFtext = make_table([](int c) { return c >= 33 && c <= 126 && c != ':'; });
// RFC 2045 §6.7 (2): printable ASCII except "=" stand for themselves. White space is rule (3).
constexpr CharTable kQpLiteral = make_table([](int c) { return c >= 33 && c <= 126 && c != '='; });
// RFC 2047 §4.2 (3) and §5 (1): in text, printable ASCII except "=", "?" and "_".
constexpr CharTable kQText =
    make_table([](int c) { return c >= 33 && c <= 126 && !one_of(c, "=?_"); });
// RFC 2047 §5 (3): in a phrase only these; "=" and "_" are excluded by §4.2 anyway.
constexpr CharTable kQPhrase = make_table([](int c) { return alnum(c) || one_of(c, "!*+-/"); });
// RFC 2046 §5.1.1 bchars (space is allowed, but not last).
constexpr CharTable kBchars =
    make_table([](int c) { return alnum(c) || one_of(c, "'()+_,-./:=? "); });

unsigned char octet(char c) {
  return static_cast<unsigned char>(c);
}
bool is_wsp(char c) {
  return c == ' ' || c == '\t';
}

// ---------------------------------------------------------------------------------------------
// Body text. LF, CRLF and a lone CR all end a line: text parts are CRLF on the wire (RFC 2046
// §4.1.1), and a lone CR or LF may not appear there at all (RFC 2045 §2.7). Each encoder is one
// pass over the octets, writing through a local pointer into a stack buffer: stores through
// `char*` may alias anything, so state kept in members would be reloaded after every octet.

constexpr std::size_t kChunk = 8192;
constexpr std::size_t kChunkSlack = 32;  // more than one step of an encoder writes

bool line_ends_after(const unsigned char* s, std::size_t n, std::size_t i) {
  return i + 1 == n || s[i + 1] == '\r' || s[i + 1] == '\n';
}

char* put_crlf(char* p) {
  p[0] = '\r';
  p[1] = '\n';
  return p + 2;
}

constexpr std::uint32_t encoded_unit(std::uint32_t c) {
  return '=' | std::uint32_t(kHex[c >> 4]) << 8 | std::uint32_t(kHex[c & 15]) << 16 | 3u << 24;
}

// RFC 2045 §6.7, per octet: its one or three characters in the low bytes (in order on a
// little-endian machine) and their count in the top byte; 0 for CR and LF, which end a line.
constexpr auto kQpUnits = [] {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t c = 0; c < 256; ++c) {
    if (c == '\r' || c == '\n') continue;
    // Rule (2), and rule (3) for white space, which is put right when it ends a line.
    t[c] = c == ' ' || c == '\t' || kQpLiteral[c] ? c | 1u << 24 : encoded_unit(c);
  }
  return t;
}();

char* put_unit(char* p, std::uint32_t unit) {
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(p, &unit, 4);  // one store; the fourth octet is overwritten next
  } else {
    p[0] = static_cast<char>(unit);
    p[1] = static_cast<char>(unit >> 8);
    p[2] = static_cast<char>(unit >> 16);
  }
  return p + (unit >> 24);
}

// Rule (3): white space that ends a line is encoded, since transports may strip it. It was
// written literally (the last unit, in column `col`); this replaces it. Rule (5): only a
// line's last unit may reach column 76.
char* encode_trailing_wsp(char* p, std::size_t col, unsigned char wsp, char* buf,
                          std::string& out) {
  if (p > buf) {
    --p;
  } else {
    out.pop_back();  // the buffer was just flushed
  }
  if (col - 1 + 3 > kQpLine) {
    *p++ = '=';
    p = put_crlf(p);
  }
  return put_unit(p, encoded_unit(wsp));
}

constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
constexpr std::uint64_t kHigh = 0x8080808080808080ULL;

// The high bit of each octet of w that is 0, exact up to the first such octet (the bits above
// it may be false positives).
constexpr std::uint64_t zero_octets(std::uint64_t w) {
  return (w - kOnes) & ~w & kHigh;
}

// How many of the 8 octets at s, from the first, quoted-printable writes as themselves
// (33-126 except "=", and space). Little-endian only; elsewhere 0, and the caller goes octet
// by octet.
std::size_t literal_prefix(const unsigned char* s) {
  if constexpr (std::endian::native != std::endian::little) return 0;
  std::uint64_t w;
  std::memcpy(&w, s, 8);
  const std::uint64_t below_space = (w - kOnes * 0x20) & ~w & kHigh;
  const std::uint64_t del_or_high = (w | (w + kOnes)) & kHigh;  // no carry below 0x7F
  const std::uint64_t bad = below_space | del_or_high | zero_octets(w ^ (kOnes * '='));
  return bad == 0 ? 8 : static_cast<std::size_t>(std::countr_zero(bad)) / 8;
}

// How many of the 8 octets at s, from the first, are neither CR nor LF (0 where not
// little-endian, as above).
std::size_t plain_prefix(const unsigned char* s) {
  if constexpr (std::endian::native != std::endian::little) return 0;
  std::uint64_t w;
  std::memcpy(&w, s, 8);
  const std::uint64_t breaks = zero_octets(w ^ (kOnes * '\n')) | zero_octets(w ^ (kOnes * '\r'));
  return breaks == 0 ? 8 : static_cast<std::size_t>(std::countr_zero(breaks)) / 8;
}

// One pass: eight literal octets at a time where it can, otherwise per octet one table load
// and one store, with a branch only at the line's end and near column 76.
void qp_text(std::string_view in, std::string& out) {
  const auto* s = reinterpret_cast<const unsigned char*>(in.data());
  const std::size_t n = in.size();
  char buf[kChunk];
  char* p = buf;
  std::size_t col = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (p > buf + kChunk - kChunkSlack) {
      out.append(buf, static_cast<std::size_t>(p - buf));
      p = buf;
    }
    const std::uint32_t unit = kQpUnits[s[i]];
    // Eight octets at a time while they are printable ASCII other than "=" and stay short of
    // column 76; of a word that is not, the literal prefix.
    if (unit >> 24 == 1 && i + 8 <= n && col + 8 < kQpLine) {
      const std::size_t literal = literal_prefix(s + i);
      if (literal > 0) {
        std::memcpy(p, s + i, 8);
        p += literal;
        col += literal;
        i += literal - 1;
        continue;
      }
    }
    const std::size_t len = unit >> 24;
    if (len == 0) {
      if (i > 0 && is_wsp(static_cast<char>(s[i - 1])))
        p = encode_trailing_wsp(p, col, s[i - 1], buf, out);
      if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') ++i;
      p = put_crlf(p);
      col = 0;
      continue;
    }
    // Rule (5): at most 76 characters with the "=" of a soft line break, so only a line's
    // last unit may reach column 76.
    if (col + len > kQpLine - 1 && !(col + len <= kQpLine && line_ends_after(s, n, i))) {
      *p++ = '=';
      p = put_crlf(p);
      col = 0;
    }
    p = put_unit(p, unit);
    col += len;
  }
  if (n > 0 && is_wsp(static_cast<char>(s[n - 1])))
    p = encode_trailing_wsp(p, col, s[n - 1], buf, out);
  out.append(buf, static_cast<std::size_t>(p - buf));
}

// Two base64 characters per 12 bits, in memory order: half the lookups of the alphabet.
constexpr auto kBase64Pairs = [] {
  std::array<char, 8192> t{};
  for (std::size_t v = 0; v < 4096; ++v) {
    t[2 * v] = kBase64Alphabet[v >> 6];
    t[2 * v + 1] = kBase64Alphabet[v & 63];
  }
  return t;
}();

// Encodes up to one line's worth of octets, with padding; returns the characters written.
std::size_t base64_chunk(const unsigned char* in, std::size_t n, char* out) {
  char* p = out;
  std::size_t i = 0;
  // Six octets (48 bits, four pairs) per step from one big-endian load of eight.
  if constexpr (std::endian::native == std::endian::little) {
    for (; i + 8 <= n; i += 6) {
      std::uint64_t w;
      std::memcpy(&w, in + i, 8);
      w = __builtin_bswap64(w) >> 16;
      std::memcpy(p, &kBase64Pairs[2 * ((w >> 36) & 4095)], 2);
      std::memcpy(p + 2, &kBase64Pairs[2 * ((w >> 24) & 4095)], 2);
      std::memcpy(p + 4, &kBase64Pairs[2 * ((w >> 12) & 4095)], 2);
      std::memcpy(p + 6, &kBase64Pairs[2 * (w & 4095)], 2);
      p += 8;
    }
  }
  for (; i + 3 <= n; i += 3) {
    const std::uint32_t v =
        (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) | in[i + 2];
    std::memcpy(p, &kBase64Pairs[2 * (v >> 12)], 2);
    std::memcpy(p + 2, &kBase64Pairs[2 * (v & 4095)], 2);
    p += 4;
  }
  if (i < n) {
    const bool two = i + 1 < n;
    const std::uint32_t v =
        (std::uint32_t{in[i]} << 16) | (two ? std::uint32_t{in[i + 1]} << 8 : 0);
    *p++ = kBase64Alphabet[v >> 18];
    *p++ = kBase64Alphabet[(v >> 12) & 63];
    *p++ = two ? kBase64Alphabet[(v >> 6) & 63] : '=';
    *p++ = '=';
  }
  return static_cast<std::size_t>(p - out);
}

// Whole lines of 57 octets (76 characters) each followed by CRLF, then the rest.
void base64_lines(const unsigned char* in, std::size_t n, std::string& out) {
  constexpr std::size_t kLinesPerChunk = kChunk / (76 + 2);
  char buf[kChunk];
  while (n > 0) {
    char* p = buf;
    for (std::size_t line = 0; line < kLinesPerChunk && n > 0; ++line) {
      const std::size_t take = std::min(n, kBase64LineOctets);
      p = put_crlf(p + base64_chunk(in, take, p));
      in += take;
      n -= take;
    }
    out.append(buf, static_cast<std::size_t>(p - buf));
  }
}

// Base64 of the text with its line ends made CRLF first: the canonical form is what gets
// encoded (RFC 2045 §6.8, RFC 2046 §4.1.1). The canonical text is staged eight octets at a
// time when they hold no CR or LF, and encoded in whole lines.
void base64_text(std::string_view in, std::string& out) {
  constexpr std::size_t kStage = kBase64LineOctets * 64;
  unsigned char stage[kStage + 16];
  std::size_t filled = 0;
  const auto* s = reinterpret_cast<const unsigned char*>(in.data());
  const std::size_t n = in.size();
  for (std::size_t i = 0; i < n;) {
    if (filled >= kStage) {
      base64_lines(stage, kStage, out);
      filled -= kStage;
      std::memmove(stage, stage + kStage, filled);
    }
    if (i + 8 <= n) {
      const std::size_t plain = plain_prefix(s + i);
      if (plain > 0) {
        std::memcpy(stage + filled, s + i, 8);
        filled += plain;
        i += plain;
        continue;
      }
    }
    const unsigned char c = s[i++];
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i < n && s[i] == '\n') ++i;
      stage[filled++] = '\r';
      stage[filled++] = '\n';
    } else {
      stage[filled++] = c;
    }
  }
  base64_lines(stage, filled, out);
}

// The text with every line break made CRLF, for 7bit parts. Without a lone CR, line by line
// with memchr; otherwise octet by octet.
void crlf_text(std::string_view in, bool lone_cr, std::string& out) {
  const std::size_t n = in.size();
  if (!lone_cr) {
    std::size_t pos = 0;
    while (const auto* lf = static_cast<const char*>(std::memchr(in.data() + pos, '\n', n - pos))) {
      const auto k = static_cast<std::size_t>(lf - in.data());
      if (k > pos && in[k - 1] == '\r') {
        out.append(in.data() + pos, k + 1 - pos);
      } else {
        out.append(in.data() + pos, k - pos);
        out.append("\r\n", 2);
      }
      pos = k + 1;
    }
    out.append(in.data() + pos, n - pos);
    return;
  }
  const auto* s = reinterpret_cast<const unsigned char*>(in.data());
  char buf[kChunk];
  char* p = buf;
  for (std::size_t i = 0; i < n; ++i) {
    if (p > buf + kChunk - kChunkSlack) {
      out.append(buf, static_cast<std::size_t>(p - buf));
      p = buf;
    }
    const unsigned char c = s[i];
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < n && s[i + 1] == '\n') ++i;
      p = put_crlf(p);
    } else {
      *p++ = static_cast<char>(c);
    }
  }
  out.append(buf, static_cast<std::size_t>(p - buf));
}

// ---------------------------------------------------------------------------------------------
// Body parts.

enum class Cte { k7bit, kQuotedPrintable, kBase64 };

std::string_view cte_name(Cte c) {
  switch (c) {
    case Cte::k7bit:
      return "7bit";
    case Cte::kQuotedPrintable:
      return "quoted-printable";
    case Cte::kBase64:
      return "base64";
  }
  return "7bit";
}

struct BodyScan {
  std::size_t non_ascii = 0;
  bool has_nul = false;
  // Of ASCII text without NUL only, the only text 7bit can carry:
  std::size_t longest_line = 0;
  bool canonical = true;  // every line break already is CRLF
  bool lone_cr = false;
};

// Runs on every part of every message, so the work is left to memchr: a count of the
// non-ASCII octets eight at a time, then one memchr per line (two when the text has CRs).
BodyScan scan_body(std::string_view text) {
  const char* d = text.data();
  const std::size_t n = text.size();
  BodyScan r;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, d + i, 8);
    // Sums the high bits of the eight octets into the top octet.
    r.non_ascii += static_cast<std::size_t>((((w & kHigh) >> 7) * kOnes) >> 56);
  }
  for (; i < n; ++i) r.non_ascii += octet(d[i]) >> 7;
  r.has_nul = std::memchr(d, 0, n) != nullptr;
  // The lines matter only to 7bit; quoted-printable and base64 make their own.
  if (r.non_ascii > 0 || r.has_nul) return r;
  const bool any_cr = std::memchr(d, '\r', n) != nullptr;
  for (std::size_t pos = 0; pos < n;) {
    const auto* lf_at = static_cast<const char*>(std::memchr(d + pos, '\n', n - pos));
    const std::size_t lf = lf_at ? static_cast<std::size_t>(lf_at - d) : n;
    std::size_t end = lf;
    if (any_cr) {
      while (const auto* cr_at = static_cast<const char*>(std::memchr(d + pos, '\r', lf - pos))) {
        const auto cr = static_cast<std::size_t>(cr_at - d);
        if (lf_at && cr + 1 == lf) {
          end = cr;
          break;
        }
        r.lone_cr = true;
        r.canonical = false;
        r.longest_line = std::max(r.longest_line, cr - pos);
        pos = cr + 1;
      }
    }
    r.longest_line = std::max(r.longest_line, end - pos);
    if (!lf_at) break;
    if (end == lf) r.canonical = false;
    pos = lf + 1;
  }
  return r;
}

Cte choose_cte(const BodyScan& s, std::size_t size) {
  // RFC 2045 §2.7: 7bit data is short lines of ASCII without NUL.
  if (s.non_ascii == 0 && !s.has_nul && s.longest_line <= kMaxLine) return Cte::k7bit;
  // Quoted-printable costs 3 octets per non-ASCII octet, base64 4/3 for all of them; past a
  // third non-ASCII (Cyrillic, CJK) base64 is the smaller, while QP keeps Latin text readable.
  return s.non_ascii * 3 > size ? Cte::kBase64 : Cte::kQuotedPrintable;
}

std::size_t encoded_size_estimate(const BodyScan& s, std::size_t size, Cte c) {
  switch (c) {
    case Cte::k7bit:
      return size + size / 32 + 2;
    case Cte::kQuotedPrintable:
      return size + 2 * s.non_ascii + size / 24 + 8;
    case Cte::kBase64:
      return (size + size / 16) * 4 / 3 + size / 28 + 8;
  }
  return size;
}

void append_body(std::string_view text, const BodyScan& s, Cte cte, std::string& out) {
  switch (cte) {
    case Cte::k7bit:
      if (s.canonical) {
        out += text;
      } else {
        crlf_text(text, s.lone_cr, out);
      }
      break;
    case Cte::kQuotedPrintable:
      qp_text(text, out);
      break;
    case Cte::kBase64:
      base64_text(text, out);
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Header fields.

// Writes one field, folding (RFC 5322 §2.2.3) before a token when the line would pass
// kFoldWidth. A token is white space followed by a word, so that unfolding, which only
// removes the CRLF, gives back the value, and no folded line is white space only. The first
// token stays on the field name's line.
class FieldWriter {
 public:
  FieldWriter(std::string& out, std::string_view name) : out_(out), col_(name.size() + 1) {
    out_ += name;
    out_ += ':';
  }
  void operator()(std::string_view a, std::string_view b = {}, std::string_view c = {}) {
    const std::size_t n = a.size() + b.size() + c.size();
    if (first_) {
      out_ += ' ';
      ++col_;
      first_ = false;
    } else if (col_ + n > kFoldWidth) {
      out_ += "\r\n";
      col_ = 0;
    }
    out_ += a;
    out_ += b;
    out_ += c;
    col_ += n;
  }
  void end() { out_ += "\r\n"; }

 private:
  std::string& out_;
  std::size_t col_;
  bool first_ = true;
};

// Calls sink with each token of s: (white space run)(non-white-space run).
template <class Sink>
void for_each_token(std::string_view s, Sink& sink) {
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t j = i;
    while (j < s.size() && is_wsp(s[j])) ++j;
    while (j < s.size() && !is_wsp(s[j])) ++j;
    sink(s.substr(i, j - i));
    i = j;
  }
}

std::size_t longest_token(std::string_view s) {
  std::size_t longest = 0;
  auto measure = [&](std::string_view t) { longest = std::max(longest, t.size()); };
  for_each_token(s, measure);
  return longest;
}

// Lenient UTF-8: a malformed sequence is taken octet by octet, and a well-formed character is
// never split (RFC 2047 §5: each encoded-word holds whole characters).
std::size_t char_length(std::string_view s, std::size_t i) {
  const unsigned char c = octet(s[i]);
  const std::size_t want = c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF8 ? 4 : 1;
  std::size_t n = 1;
  while (n < want && i + n < s.size() && (octet(s[i + n]) & 0xC0) == 0x80) ++n;
  return n;
}

std::size_t q_length(unsigned char c, bool phrase) {
  if (c == ' ') return 1;  // "_", RFC 2047 §4.2 (2)
  return (phrase ? kQPhrase : kQText)[c] ? 1 : 3;
}

// Encoded words of at most `first_limit` (the first) and 75 characters (the others), each
// after the first preceded by a space, which decoders drop between encoded words (§6.2).
template <class Sink>
void emit_encoded_words(std::string_view s, bool phrase, std::size_t first_limit, Sink& sink) {
  std::size_t q_total = 0;
  for (const char c : s) q_total += q_length(octet(c), phrase);
  const bool b = (s.size() + 2) / 3 * 4 < q_total;
  char word[kMaxEncodedWord + 1];
  std::size_t i = 0;
  bool first = true;
  while (i < s.size()) {
    const std::size_t payload = (first ? first_limit : kMaxEncodedWord) - kEncodedWordOverhead;
    std::size_t j = i, after_space = i;
    if (b) {
      const std::size_t max_octets = payload / 4 * 3;
      while (j < s.size()) {
        const std::size_t n = char_length(s, j);
        if (j - i + n > max_octets) break;
        j += n;
        if (s[j - 1] == ' ') after_space = j;
      }
    } else {
      std::size_t used = 0;
      while (j < s.size()) {
        const std::size_t n = char_length(s, j);
        std::size_t len = 0;
        for (std::size_t k = j; k < j + n; ++k) len += q_length(octet(s[k]), phrase);
        if (used + len > payload) break;
        used += len;
        j += n;
        if (s[j - 1] == ' ') after_space = j;
      }
    }
    // The space between two encoded words is dropped by a decoder (§6.2), so a space of the
    // text stays inside a word. Ending the word with it, rather than cutting a word of the text,
    // also limits the damage done by decoders that put a space back (Python's address parser).
    if (j < s.size() && after_space > i) j = after_space;
    std::size_t w = 0;
    if (!first) word[w++] = ' ';
    std::memcpy(word + w, b ? "=?UTF-8?B?" : "=?UTF-8?Q?", 10);
    w += 10;
    if (b) {
      w += base64_chunk(reinterpret_cast<const unsigned char*>(s.data() + i), j - i, word + w);
    } else {
      for (std::size_t k = i; k < j; ++k) {
        const unsigned char c = octet(s[k]);
        if (c == ' ') {
          word[w++] = '_';
        } else if (q_length(c, phrase) == 1) {
          word[w++] = static_cast<char>(c);
        } else {
          word[w++] = '=';
          word[w++] = kHex[c >> 4];
          word[w++] = kHex[c & 15];
        }
      }
    }
    word[w++] = '?';
    word[w++] = '=';
    sink(std::string_view(word, w));
    i = j;
    first = false;
  }
}

// Something a decoder could take for an encoded word: "=?" with a "?=" after it. Lenient
// decoders (Python's among them) find those even inside a word.
bool looks_encoded(std::string_view s) {
  const auto open = s.find("=?");
  return open != std::string_view::npos && s.find("?=", open + 2) != std::string_view::npos;
}

enum class Form { kAsIs, kQuoted, kEncoded };

Form choose_form(std::string_view s, bool phrase, std::size_t max_token) {
  bool printable = true, atoms = true, tab = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = octet(s[i]);
    if (c == '\t') {
      tab = true;
    } else if (c < 0x20 || c > 0x7E) {
      printable = false;
      break;
    } else if (c == ' ') {
      if (i == 0 || s[i - 1] == ' ') atoms = false;
    } else if (!kAtext[c]) {
      atoms = false;
    }
  }
  if (!printable || looks_encoded(s)) return Form::kEncoded;
  if (s.empty()) return Form::kAsIs;
  // Leading and trailing white space does not survive a parser (RFC 5322 §3.2.2 and the
  // unfolding in §2.2.3), except inside a quoted-string or an encoded word.
  const bool edge_space = is_wsp(s.front()) || is_wsp(s.back());
  if (phrase) {
    // Between the atoms of a phrase, runs of white space mean one space (§3.2.5); quoted
    // strings keep them. A tab is never worth quoting: encode it.
    if (tab) return Form::kEncoded;
    return atoms && !edge_space && longest_token(s) <= max_token ? Form::kAsIs : Form::kQuoted;
  }
  return !edge_space && longest_token(s) <= max_token ? Form::kAsIs : Form::kEncoded;
}

// RFC 5322 §3.2.4 quoted-string.
std::string quoted_string(std::string_view s) {
  std::string q;
  q.reserve(s.size() + 8);
  q += '"';
  for (const char c : s) {
    if (c == '"' || c == '\\') q += '\\';
    q += c;
  }
  q += '"';
  return q;
}

template <class Sink>
void emit_text(std::string_view s, bool phrase, std::size_t first_limit, std::size_t max_token,
               Sink& sink) {
  switch (choose_form(s, phrase, max_token)) {
    case Form::kAsIs:
      for_each_token(s, sink);
      return;
    case Form::kQuoted: {
      const std::string q = quoted_string(s);
      if (longest_token(q) <= max_token) {
        for_each_token(q, sink);
        return;
      }
      break;
    }
    case Form::kEncoded:
      break;
  }
  emit_encoded_words(s, phrase, first_limit, sink);
}

// A plain token may fill a whole line: "Name: token" or " token" (tokens carry their space).
std::size_t max_token_after(std::string_view name) {
  return kMaxLine - name.size() - 2;
}

// The first encoded word shares its line with "Name: "; keep that line at 76 (RFC 2047 §2)
// unless the name is so long that the word would be useless.
std::size_t first_word_limit(std::string_view name) {
  const std::size_t used = name.size() + 2;
  return used + 40 <= kFoldWidth ? std::min(kMaxEncodedWord, kFoldWidth - used) : kMaxEncodedWord;
}

void reject_line_breaks(std::string_view what, std::string_view v) {
  if (v.find_first_of("\r\n") != std::string_view::npos)
    throw std::invalid_argument(std::string(what) + " contains CR or LF");
}

// Addresses and Message-IDs go out as one token; anything that could break out of it is
// refused rather than escaped, since the caller has a bug.
void check_token(std::string_view what, std::string_view v, std::size_t max) {
  for (const char c : v) {
    const unsigned char u = octet(c);
    if (u <= 0x20 || u == 0x7F || c == '<' || c == '>')
      throw std::invalid_argument(std::string(what) +
                                  " contains a control, space or angle bracket");
  }
  if (v.size() > max) throw std::invalid_argument(std::string(what) + " is too long for a line");
}

void write_address_field(std::string& out, std::string_view name, std::string_view display,
                         std::string_view address) {
  reject_line_breaks(name, display);
  if (address.empty()) throw std::invalid_argument(std::string(name) + " address is empty");
  check_token(name, address, max_token_after(name) - 3);
  FieldWriter w(out, name);
  if (display.empty()) {
    w(address);
  } else {
    emit_text(display, true, first_word_limit(name), max_token_after(name), w);
    w(" <", address, ">");
  }
  w.end();
}

void write_text_field(std::string& out, std::string_view name, std::string_view value) {
  reject_line_breaks(name, value);
  FieldWriter w(out, name);
  emit_text(value, false, first_word_limit(name), max_token_after(name), w);
  w.end();
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

void check_field_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxFieldName)
    throw std::invalid_argument("header field name is empty or too long");
  for (const char c : name)
    if (!kFtext[octet(c)])
      throw std::invalid_argument("header field name '" + std::string(name) + "' is not ftext");
  // These are written here, and a second one makes the message invalid (RFC 5322 §3.6, RFC
  // 2045 §3) or, for the Content- fields, changes how the body is read.
  for (const std::string_view own : {"From", "To", "Subject", "Date", "Message-ID", "MIME-Version",
                                     "Content-Type", "Content-Transfer-Encoding"})
    if (iequals(name, own))
      throw std::invalid_argument("header field '" + std::string(name) + "' is built-in");
}

void append_2digits(int v, std::string& out) {
  out += static_cast<char>('0' + v / 10);
  out += static_cast<char>('0' + v % 10);
}

// RFC 5322 §3.3, "Sat, 28 Nov 2026 14:15:37 +0000". Written by hand: strftime's names follow
// the locale.
void append_date(std::time_t t, std::string& out) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
    throw std::invalid_argument("date is outside years 0-9999");
  const int year = tm.tm_year + 1900;
  out += kDays[tm.tm_wday];
  out += ", ";
  append_2digits(tm.tm_mday, out);
  out += ' ';
  out += kMonths[tm.tm_mon];
  out += ' ';
  append_2digits(year / 100, out);
  append_2digits(year % 100, out);
  out += ' ';
  append_2digits(tm.tm_hour, out);
  out += ':';
  append_2digits(tm.tm_min, out);
  out += ':';
  append_2digits(tm.tm_sec, out);
  out += " +0000";
}

// "=_" cannot occur in quoted-printable output ("=" there is followed by a hex digit or CR)
// nor in base64 output ("_" is not in its alphabet, RFC 2045 §6.8), so a boundary containing
// it never occurs inside an encoded part (RFC 2046 §5.1.1). 7bit parts are searched instead.
struct DerivedBoundary {
  char text[22];  // "=_mma_" and 16 hex digits
  [[nodiscard]] std::string_view view() const { return {text, sizeof(text)}; }
};

DerivedBoundary derived_boundary(std::string_view message_id) {
  std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a: unique per Message-ID for our purpose
  for (const char c : message_id) h = (h ^ octet(c)) * 0x100000001b3ULL;
  DerivedBoundary b{};
  std::memcpy(b.text, "=_mma_", 6);
  for (std::size_t i = 0; i < 16; ++i) b.text[6 + i] = kHex[(h >> (60 - 4 * i)) & 15];
  return b;
}

// glibc's two-way memmem: std::string_view::find runs memchr and memcmp at each first
// character, which is slow on HTML full of "=".
bool contains(std::string_view hay, std::string_view needle) {
  return memmem(hay.data(), hay.size(), needle.data(), needle.size()) != nullptr;
}

void check_boundary(std::string_view b) {
  if (b.empty() || b.size() > kMaxBoundary || b.back() == ' ')
    throw std::invalid_argument("boundary must be 1-70 characters, not ending in a space");
  for (const char c : b)
    if (!kBchars[octet(c)]) throw std::invalid_argument("boundary has a character outside bchars");
}

struct Part {
  std::string_view text;
  BodyScan scan;
  Cte cte;
};

Part plan_part(std::string_view text, std::string_view boundary) {
  Part p{text, scan_body(text), Cte::k7bit};
  p.cte = choose_cte(p.scan, text.size());
  if (p.cte == Cte::k7bit && !boundary.empty() && contains(text, boundary))
    p.cte = Cte::kQuotedPrintable;
  return p;
}

void write_part_headers(std::string& out, std::string_view type, Cte cte) {
  out += "Content-Type: ";
  out += type;
  out += "; charset=utf-8\r\nContent-Transfer-Encoding: ";
  out += cte_name(cte);
  out += "\r\n";
}

void write_part(std::string& out, const Part& p, std::string_view type, std::string_view boundary) {
  out += "\r\n--";
  out += boundary;
  out += "\r\n";
  write_part_headers(out, type, p.cte);
  out += "\r\n";
  const std::size_t start = out.size();
  append_body(p.text, p.scan, p.cte, out);
  // See derived_boundary; 7bit parts were searched by plan_part.
  if (p.cte != Cte::k7bit && boundary.find("=_") == std::string_view::npos &&
      contains(std::string_view(out).substr(start), boundary))
    throw std::invalid_argument("boundary occurs in the encoded content");
}

void render(const MimeMessage& m, std::string& out) {
  write_address_field(out, "From", m.from_name, m.from_address);
  write_address_field(out, "To", m.to_name, m.to_address);
  write_text_field(out, "Subject", m.subject);
  out += "Date: ";
  append_date(m.date, out);
  out += "\r\n";
  if (!m.message_id.empty()) {
    check_token("Message-ID", m.message_id, max_token_after("Message-ID") - 2);
    FieldWriter w(out, "Message-ID");
    w("<", m.message_id, ">");
    w.end();
  }
  out += "MIME-Version: 1.0\r\n";
  for (const auto& [name, value] : m.headers) {
    check_field_name(name);
    write_text_field(out, name, value);
  }

  if (m.html.empty()) {
    const Part text = plan_part(m.text, {});
    out.reserve(out.size() + 128 + encoded_size_estimate(text.scan, m.text.size(), text.cte));
    write_part_headers(out, "text/plain", text.cte);
    out += "\r\n";
    append_body(m.text, text.scan, text.cte, out);
    if (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0) out += "\r\n";
    return;
  }

  const DerivedBoundary derived = derived_boundary(m.message_id);
  if (!m.boundary.empty()) check_boundary(m.boundary);
  const std::string_view boundary = m.boundary.empty() ? derived.view() : m.boundary;
  const Part text = plan_part(m.text, boundary);
  const Part html = plan_part(m.html, boundary);
  out.reserve(out.size() + 256 + 3 * boundary.size() +
              encoded_size_estimate(text.scan, m.text.size(), text.cte) +
              encoded_size_estimate(html.scan, m.html.size(), html.cte));
  {
    // RFC 2045 §5.1: "=" is a tspecial, so the boundary is quoted.
    FieldWriter w(out, "Content-Type");
    w("multipart/alternative;");
    w(" boundary=\"", boundary, "\"");
    w.end();
  }
  // RFC 2046 §5.1.4: in increasing order of preference, so the plain text comes first. The
  // CRLF before each delimiter belongs to the delimiter (§5.1.1), so it is always written.
  write_part(out, text, "text/plain", boundary);
  write_part(out, html, "text/html", boundary);
  out += "\r\n--";
  out += boundary;
  out += "--\r\n";
}

}  // namespace

std::string encode_header_text(std::string_view utf8, bool phrase) {
  std::string out;
  auto append = [&out](std::string_view a, std::string_view b = {}, std::string_view c = {}) {
    out += a;
    out += b;
    out += c;
  };
  // Room for a field name of up to 76 characters before the longest word.
  emit_text(utf8, phrase, kMaxEncodedWord, kMaxLine - 76 - 2, append);
  return out;
}

void append_quoted_printable(std::string_view in, std::string& out) {
  qp_text(in, out);
}

void append_base64_lines(std::string_view in, std::string& out) {
  base64_lines(reinterpret_cast<const unsigned char*>(in.data()), in.size(), out);
}

void build_mime(const MimeMessage& m, std::string& out) {
  // All or nothing: a message refused halfway must not leave half a message behind.
  const std::size_t mark = out.size();
  try {
    render(m, out);
  } catch (...) {
    out.resize(mark);
    throw;
  }
}

}  // namespace mma::compose
