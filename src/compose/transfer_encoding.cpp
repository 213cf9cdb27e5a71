// compose/transfer_encoding: quoted-printable, base64 and 7bit text bodies, and which to use.
#include "compose/transfer_encoding.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>

#include "compose/mime.hpp"
#include "compose/mime_internal.hpp"

namespace mma::compose::detail {
namespace {

constexpr std::size_t kQpLine = 76;            // RFC 2045 §6.7 (5), "=" of a soft break included
constexpr std::size_t kBase64LineOctets = 57;  // 76 characters, RFC 2045 §6.8

constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// RFC 2045 §6.7 (2): printable ASCII except "=" stand for themselves. White space is rule (3).
constexpr CharTable kQpLiteral = make_table([](int c) { return c >= 33 && c <= 126 && c != '='; });

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

}  // namespace

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

namespace {

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

}  // namespace

// ---------------------------------------------------------------------------------------------
// Body parts.

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

}  // namespace mma::compose::detail

namespace mma::compose {

void append_quoted_printable(std::string_view in, std::string& out) {
  detail::qp_text(in, out);
}

void append_base64_lines(std::string_view in, std::string& out) {
  detail::base64_lines(reinterpret_cast<const unsigned char*>(in.data()), in.size(), out);
}

}  // namespace mma::compose
