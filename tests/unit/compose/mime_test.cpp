// Tests for compose/mime: encoders against RFC vectors and in-test decoders, header encoding and
// folding, the choice of transfer encoding, the multipart structure, line-limit properties over
// random input, and a check of built messages by Python's `email` parser.
#include "compose/mime.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mma::compose {
namespace {

using namespace std::literals;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// ---------------------------------------------------------------------------------------------
// Decoders and checks, written independently of the encoders.

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// RFC 2045 §6.7: "=XX", soft line breaks "=" CRLF, hard line breaks CRLF.
std::string qp_decode(std::string_view in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '=') {
      out += in[i];
    } else if (in.substr(i + 1, 2) == "\r\n") {
      i += 2;
    } else {
      EXPECT_LE(i + 2, in.size() - 1) << "truncated escape";
      const int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
      EXPECT_GE(hi, 0);
      EXPECT_GE(lo, 0);
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    }
  }
  return out;
}

std::string b64_decode(std::string_view in) {
  static const std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  unsigned bits = 0;
  int count = 0;
  for (const char c : in) {
    if (c == '\r' || c == '\n' || c == '=') continue;
    const auto v = kAlphabet.find(c);
    EXPECT_NE(v, std::string_view::npos) << "bad base64 character " << int(c);
    bits = (bits << 6) | static_cast<unsigned>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xFF);
    }
  }
  return out;
}

// One RFC 2047 encoded word, "=?UTF-8?X?...?=".
std::string decode_word(std::string_view w) {
  EXPECT_LE(w.size(), 75u) << w;
  EXPECT_TRUE(w.size() > 12 && w.substr(0, 8) == "=?UTF-8?" && w.substr(w.size() - 2) == "?=") << w;
  const char kind = w[8];
  const std::string_view payload = w.substr(10, w.size() - 12);
  if (kind == 'B') return b64_decode(payload);
  EXPECT_EQ(kind, 'Q');
  std::string q(payload);
  for (char& c : q)
    if (c == '_') c = ' ';
  return qp_decode(q);
}

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = c < 0x80         ? 1
                          : (c >> 5) == 6  ? 2
                          : (c >> 4) == 14 ? 3
                          : (c >> 3) == 30 ? 4
                                           : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

// Decodes what encode_header_text returns: plain text, a quoted-string or encoded words.
std::string decode_header_text(std::string_view v, bool phrase = false) {
  if (v.substr(0, 2) == "=?") {
    std::string out;
    std::size_t pos = 0;
    while (pos < v.size()) {
      auto sp = v.find(' ', pos);
      if (sp == std::string_view::npos) sp = v.size();
      const std::string word = decode_word(v.substr(pos, sp - pos));
      EXPECT_TRUE(valid_utf8(word))
          << "encoded word splits a character: " << v.substr(pos, sp - pos);
      out += word;
      pos = sp + 1;
    }
    return out;
  }
  if (phrase && v.substr(0, 1) == "\"") {
    std::string out;
    for (std::size_t i = 1; i + 1 < v.size(); ++i) {
      if (v[i] == '\\') ++i;
      out += v[i];
    }
    return out;
  }
  return std::string(v);
}

// Every line ends in CRLF, no CR or LF elsewhere, none longer than `limit` octets.
::testing::AssertionResult wire_lines_ok(std::string_view s, std::size_t limit = 998) {
  std::size_t line = 1, pos = 0;
  while (pos < s.size()) {
    const auto lf = s.find('\n', pos);
    if (lf == std::string_view::npos) return ::testing::AssertionFailure() << "no CRLF at the end";
    if (lf == pos || s[lf - 1] != '\r')
      return ::testing::AssertionFailure() << "bare LF on line " << line;
    const std::string_view content = s.substr(pos, lf - 1 - pos);
    if (content.find('\r') != std::string_view::npos)
      return ::testing::AssertionFailure() << "bare CR on line " << line;
    if (content.size() > limit)
      return ::testing::AssertionFailure() << "line " << line << " has " << content.size();
    pos = lf + 1;
    ++line;
  }
  return ::testing::AssertionSuccess();
}

std::string crlf(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') {
      out += "\r\n";
      if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
    } else if (s[i] == '\n') {
      out += "\r\n";
    } else {
      out += s[i];
    }
  }
  return out;
}

struct Parsed {
  std::vector<std::pair<std::string, std::string>> fields;  // unfolded, value without the ": "
  std::string body;
  std::string field(std::string_view name) const {
    for (const auto& [n, v] : fields)
      if (n == name) return v;
    ADD_FAILURE() << "no field " << name;
    return {};
  }
};

Parsed parse(std::string_view msg) {
  Parsed p;
  const auto end = msg.find("\r\n\r\n");
  EXPECT_NE(end, std::string_view::npos);
  std::string_view head = msg.substr(0, end + 2);
  p.body = std::string(msg.substr(end + 4));
  while (!head.empty()) {
    const auto lf = head.find("\r\n");
    const std::string_view line = head.substr(0, lf);
    head.remove_prefix(lf + 2);
    if (line[0] == ' ' || line[0] == '\t') {
      EXPECT_FALSE(p.fields.empty());
      EXPECT_NE(line.find_first_not_of(" \t"), std::string_view::npos) << "white-space-only line";
      p.fields.back().second += line;  // unfolding removes only the CRLF (RFC 5322 §2.2.3)
    } else {
      const auto colon = line.find(':');
      std::string value(line.substr(colon + 1));
      if (!value.empty() && value[0] == ' ') value.erase(0, 1);
      p.fields.emplace_back(std::string(line.substr(0, colon)), value);
    }
  }
  return p;
}

std::string decode_body(std::string_view body, std::string_view cte) {
  if (cte == "base64") return b64_decode(body);
  if (cte == "quoted-printable") return qp_decode(body);
  return std::string(body);
}

MimeMessage sample() {
  MimeMessage m;
  m.from_name = "Example News";
  m.from_address = "news@example.com";
  m.to_name = "Jane Doe";
  m.to_address = "jane@example.org";
  m.subject = "Your weekly digest";
  m.message_id = "20261128141537.abc@example.com";
  m.date = 1795875337;
  m.text = "Hello Jane,\nthis is the digest.\n";
  return m;
}

std::string build(const MimeMessage& m) {
  std::string out;
  build_mime(m, out);
  return out;
}

std::string utf8(char32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// Random UTF-8 from a mix of scripts, spaces, specials and (for bodies) line breaks.
std::string random_text(std::mt19937& rng, std::size_t chars, bool lines) {
  static const std::string_view kAscii =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?=_\"'()<>@\\-";
  std::string s;
  std::uniform_int_distribution<int> kind(0, lines ? 11 : 9);
  const int script = std::uniform_int_distribution<int>(0, 4)(rng);
  for (std::size_t i = 0; i < chars; ++i) {
    const int k = kind(rng);
    auto pick = [&](char32_t lo, char32_t hi) {
      return utf8(std::uniform_int_distribution<char32_t>(lo, hi)(rng));
    };
    if (k < 5 || script == 0) {
      s += kAscii[std::uniform_int_distribution<std::size_t>(0, kAscii.size() - 1)(rng)];
    } else if (k < 8) {
      switch (script) {
        case 1:
          s += pick(0xC0, 0xFF);
          break;
        case 2:
          s += pick(0x410, 0x44F);
          break;
        case 3:
          s += pick(0x4E00, 0x9FFF);
          break;
        default:
          s += pick(0x1F600, 0x1F64F);
          break;
      }
    } else if (k < 10) {
      s += k == 8 ? " " : "\t";
    } else {
      s += k == 10 ? "\n" : "\r\n";
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Quoted-printable, RFC 2045 §6.7.

std::string qp(std::string_view in) {
  std::string out;
  append_quoted_printable(in, out);
  return out;
}

TEST(QuotedPrintable, Rfc2045SoftLineBreakExample) {
  // The example of rule (5).
  const std::string_view encoded =
      "Now's the time =\r\nfor all folk to come=\r\n to the aid of their country.";
  const std::string text = "Now's the time for all folk to come to the aid of their country.";
  EXPECT_EQ(qp_decode(encoded), text);
  EXPECT_EQ(qp(text), text);  // 65 characters: no break needed
  EXPECT_EQ(qp_decode(qp(text + text)), text + text);
}

TEST(QuotedPrintable, KnownVectors) {
  EXPECT_EQ(qp(""), "");
  EXPECT_EQ(qp("Hello, world!"), "Hello, world!");
  EXPECT_EQ(qp("a=b"), "a=3Db");
  EXPECT_EQ(qp("caf\xC3\xA9"), "caf=C3=A9");
  EXPECT_EQ(qp("\xD0\x9F\xD1\x80\xD0\xB8"), "=D0=9F=D1=80=D0=B8");
  EXPECT_EQ(qp("nul\x00x"sv), "nul=00x");
  EXPECT_EQ(qp("line one\nline two\n"), "line one\r\nline two\r\n");
  EXPECT_EQ(qp("crlf\r\nbare cr\rend"), "crlf\r\nbare cr\r\nend");
  EXPECT_EQ(qp("a\tb c"), "a\tb c");
}

TEST(QuotedPrintable, TrailingWhiteSpaceIsEncoded) {
  EXPECT_EQ(qp("end \nnext\t\r\nlast "), "end=20\r\nnext=09\r\nlast=20");
  EXPECT_EQ(qp(" \n"), "=20\r\n");
}

TEST(QuotedPrintable, SoftBreaksKeepLinesAt76) {
  const std::string a76(76, 'a');
  EXPECT_EQ(qp(a76), a76);  // a line ending in a hard break may use all 76
  EXPECT_EQ(qp(a76 + "a"), std::string(75, 'a') + "=\r\naa");
  // An escape is never split across a soft break.
  EXPECT_EQ(qp(std::string(74, 'a') + "=b"), std::string(74, 'a') + "=\r\n=3Db");
  EXPECT_EQ(qp(std::string(73, 'a') + "="), std::string(73, 'a') + "=3D");
  EXPECT_EQ(qp(std::string(74, 'a') + "="), std::string(74, 'a') + "=\r\n=3D");
}

// No encoded line may end in white space (rule (3)), wherever the encoder's buffer happens to
// be flushed: lines of every length up to past 76, over more than one buffer.
TEST(QuotedPrintable, TrailingWhiteSpaceAtEveryPosition) {
  for (std::size_t len = 1; len <= 90; ++len) {
    std::string text;
    for (int i = 0; text.size() < 30000; ++i)
      text += std::string(len - 1, static_cast<char>('a' + i % 26)) + (i % 2 ? " \n" : "\t\r\n");
    const std::string encoded = qp(text);
    ASSERT_TRUE(wire_lines_ok(encoded, 76)) << len;
    for (std::size_t pos = encoded.find("\r\n"); pos != std::string::npos;
         pos = encoded.find("\r\n", pos + 2))
      ASSERT_FALSE(pos > 0 && (encoded[pos - 1] == ' ' || encoded[pos - 1] == '\t')) << len;
    ASSERT_EQ(qp_decode(encoded), crlf(text)) << len;
  }
}

TEST(QuotedPrintable, RoundTripsRandomText) {
  std::mt19937 rng(2045);
  for (int i = 0; i < 300; ++i) {
    const std::string text = random_text(rng, 1 + rng() % 600, true);
    const std::string encoded = qp(text);
    ASSERT_TRUE(wire_lines_ok(encoded + "\r\n", 76));
    ASSERT_FALSE(encoded.ends_with(" ") || encoded.ends_with("\t") ||
                 encoded.find(" \r\n") != std::string::npos ||
                 encoded.find("\t\r\n") != std::string::npos);
    for (const char c : encoded)
      ASSERT_TRUE(c == '\r' || c == '\n' || (c >= 32 && c < 127) || c == '\t') << int(c);
    ASSERT_EQ(qp_decode(encoded), crlf(text));
  }
}

// ---------------------------------------------------------------------------------------------
// Base64, RFC 2045 §6.8.

std::string b64(std::string_view in) {
  std::string out;
  append_base64_lines(in, out);
  return out;
}

TEST(Base64, Rfc4648Vectors) {
  EXPECT_EQ(b64(""), "");
  EXPECT_EQ(b64("f"), "Zg==\r\n");
  EXPECT_EQ(b64("fo"), "Zm8=\r\n");
  EXPECT_EQ(b64("foo"), "Zm9v\r\n");
  EXPECT_EQ(b64("foob"), "Zm9vYg==\r\n");
  EXPECT_EQ(b64("fooba"), "Zm9vYmE=\r\n");
  EXPECT_EQ(b64("foobar"), "Zm9vYmFy\r\n");
  EXPECT_EQ(b64("\xFF\xFE\x00"sv), "//4A\r\n");
}

TEST(Base64, LinesOf76) {
  const std::string in(57 * 3 + 1, 'x');
  const std::string out = b64(in);
  EXPECT_TRUE(wire_lines_ok(out, 76));
  std::string first_line;
  for (int i = 0; i < 19; ++i) first_line += "eHh4";  // "xxx"
  EXPECT_EQ(out.substr(0, 78), first_line + "\r\n");
  EXPECT_EQ(out.find("\r\n"), 76u);
  EXPECT_EQ(out.size(), 3 * 78 + 4 + 2);
  EXPECT_EQ(b64_decode(out), in);
}

TEST(Base64, RoundTripsRandomOctets) {
  std::mt19937 rng(4648);
  for (int i = 0; i < 200; ++i) {
    std::string in(rng() % 700, '\0');
    for (char& c : in) c = static_cast<char>(rng());
    const std::string out = b64(in);
    ASSERT_TRUE(wire_lines_ok(out, 76));
    ASSERT_EQ(b64_decode(out), in);
  }
}

// ---------------------------------------------------------------------------------------------
// RFC 2047 encoded words.

void expect_words_ok(std::string_view encoded, std::string_view original) {
  EXPECT_THAT(std::string(encoded), StartsWith("=?UTF-8?"));
  EXPECT_EQ(decode_header_text(encoded, true), original) << encoded;
}

TEST(EncodeHeaderText, PrintableAsciiIsUnchanged) {
  EXPECT_EQ(encode_header_text("Your weekly digest", false), "Your weekly digest");
  EXPECT_EQ(encode_header_text("50% off: today (only)!", false), "50% off: today (only)!");
  EXPECT_EQ(encode_header_text("Jane Doe", true), "Jane Doe");
  EXPECT_EQ(encode_header_text("", false), "");
  EXPECT_EQ(encode_header_text("", true), "");
}

TEST(EncodeHeaderText, DisplayNamesWithSpecialsAreQuoted) {
  EXPECT_EQ(encode_header_text("Doe, Jane", true), "\"Doe, Jane\"");
  EXPECT_EQ(encode_header_text("J. R. \"Bob\" Dobbs", true), "\"J. R. \\\"Bob\\\" Dobbs\"");
  EXPECT_EQ(encode_header_text("back\\slash", true), "\"back\\\\slash\"");
  EXPECT_EQ(encode_header_text("two  spaces", true), "\"two  spaces\"");
  EXPECT_EQ(encode_header_text("news@example.com", true), "\"news@example.com\"");
}

TEST(EncodeHeaderText, MostlyAsciiLatinUsesQ) {
  EXPECT_EQ(encode_header_text("Re: your order at Caf\xC3\xA9 Central", false),
            "=?UTF-8?Q?Re:_your_order_at_Caf=C3=A9_Central?=");
  EXPECT_EQ(encode_header_text("Jean-Fran\xC3\xA7ois Dupont-Lefebvre", true),
            "=?UTF-8?Q?Jean-Fran=C3=A7ois_Dupont-Lefebvre?=");
  expect_words_ok(encode_header_text("Cr\xC3\xA8"
                                     "me br\xC3\xBBl\xC3\xA9"
                                     "e \xE2\x80\x94 50% off!",
                                     false),
                  "Cr\xC3\xA8"
                  "me br\xC3\xBBl\xC3\xA9"
                  "e \xE2\x80\x94 50% off!");
  // Short words with one accent are shorter in B ("whichever is shorter").
  EXPECT_EQ(encode_header_text("Caf\xC3\xA9", false), "=?UTF-8?B?Q2Fmw6k=?=");
}

TEST(EncodeHeaderText, PhraseQAllowsOnlyRfc2047Section5Rule3) {
  const std::string name = "Jean-Fran\xC3\xA7ois Dupont-Lefebvre (Sales)";
  const std::string e = encode_header_text(name, true);
  expect_words_ok(e, name);
  ASSERT_THAT(e, StartsWith("=?UTF-8?Q?"));
  ASSERT_EQ(e.find(' '), std::string::npos);
  const std::string payload = e.substr(10, e.size() - 12);
  EXPECT_EQ(payload.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                      "0123456789!*+-/=_"),
            std::string::npos)
      << payload;
  // In text the same characters may stand for themselves (§5 (1)).
  EXPECT_EQ(encode_header_text("Jean-Fran\xC3\xA7ois (Sales)", false),
            "=?UTF-8?Q?Jean-Fran=C3=A7ois_(Sales)?=");
  EXPECT_EQ(encode_header_text("Jean-Fran\xC3\xA7ois (Sales)", true),
            "=?UTF-8?Q?Jean-Fran=C3=A7ois_=28Sales=29?=");
}

TEST(EncodeHeaderText, CyrillicCjkAndEmojiUseB) {
  const std::string cyrillic = "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82";  // Привет
  EXPECT_EQ(encode_header_text(cyrillic, false), "=?UTF-8?B?0J/RgNC40LLQtdGC?=");
  const std::string cjk = "\xE4\xBD\xA0\xE5\xA5\xBD";  // 你好
  EXPECT_EQ(encode_header_text(cjk, true), "=?UTF-8?B?5L2g5aW9?=");
  const std::string emoji = "\xF0\x9F\x8E\x89 Party";
  expect_words_ok(encode_header_text(emoji, true), emoji);
}

TEST(EncodeHeaderText, LongTextSplitsIntoWholeCharacterWords) {
  for (const char32_t base :
       {char32_t{0xE9}, char32_t{0x416}, char32_t{0x4E2D}, char32_t{0x1F600}}) {
    for (const bool phrase : {false, true}) {
      std::string text;
      for (int i = 0; i < 97; ++i)
        text += utf8(base + static_cast<char32_t>(i % 7)) + (i % 5 ? "" : " ");
      const std::string e = encode_header_text(text, phrase);
      EXPECT_GT(std::count(e.begin(), e.end(), ' '), 1) << e;  // several words
      expect_words_ok(e, text);  // checks ≤ 75 and whole characters per word
    }
  }
}

TEST(EncodeHeaderText, UnsafeAsciiIsEncoded) {
  // Looks like an encoded word: must not be decoded by the reader.
  expect_words_ok(encode_header_text("=?UTF-8?Q?hi?=", false), "=?UTF-8?Q?hi?=");
  expect_words_ok(encode_header_text("=?UTF-8?Q?hi?=", true), "=?UTF-8?Q?hi?=");
  // Edge white space and control characters do not survive as plain text.
  expect_words_ok(encode_header_text(" padded ", false), " padded ");
  EXPECT_EQ(encode_header_text(" padded ", true), "\" padded \"");
  expect_words_ok(encode_header_text("bell\x07", false), "bell\x07");
  // A word too long for a 998-octet line.
  const std::string word(3000, 'w');
  expect_words_ok(encode_header_text(word, false), word);
  // URLs with "=" or "?" alone are fine.
  EXPECT_EQ(encode_header_text("<https://x.example/u?a=1&b=?>", false),
            "<https://x.example/u?a=1&b=?>");
}

TEST(EncodeHeaderText, PicksTheShorterEncoding) {
  // Mostly ASCII: Q is shorter; all non-ASCII: B is.
  EXPECT_THAT(encode_header_text("Fa\xC3\xA7"
                                 "ade",
                                 false),
              HasSubstr("?Q?"));
  EXPECT_THAT(encode_header_text("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9", false), HasSubstr("?B?"));
}

// ---------------------------------------------------------------------------------------------
// Header fields.

TEST(BuildMime, HeadersInOrder) {
  MimeMessage m = sample();
  m.headers = {{"X-Campaign", "spring"}, {"List-Unsubscribe", "<mailto:u@example.com>"}};
  const std::string out = build(m);
  const Parsed p = parse(out);
  std::vector<std::string> names;
  for (const auto& f : p.fields) names.push_back(f.first);
  EXPECT_THAT(names, ::testing::ElementsAre("From", "To", "Subject", "Date", "Message-ID",
                                            "MIME-Version", "X-Campaign", "List-Unsubscribe",
                                            "Content-Type", "Content-Transfer-Encoding"));
  EXPECT_THAT(out, StartsWith("From: Example News <news@example.com>\r\n"
                              "To: Jane Doe <jane@example.org>\r\n"
                              "Subject: Your weekly digest\r\n"
                              "Date: Sat, 28 Nov 2026 14:15:37 +0000\r\n"
                              "Message-ID: <20261128141537.abc@example.com>\r\n"
                              "MIME-Version: 1.0\r\n"
                              "X-Campaign: spring\r\n"
                              "List-Unsubscribe: <mailto:u@example.com>\r\n"
                              "Content-Type: text/plain; charset=utf-8\r\n"
                              "Content-Transfer-Encoding: 7bit\r\n"
                              "\r\n"
                              "Hello Jane,\r\nthis is the digest.\r\n"));
  EXPECT_TRUE(wire_lines_ok(out));
}

TEST(BuildMime, Dates) {
  MimeMessage m = sample();
  m.date = 951782400;
  EXPECT_EQ(parse(build(m)).field("Date"), "Tue, 29 Feb 2000 00:00:00 +0000");
  m.date = 0;
  EXPECT_EQ(parse(build(m)).field("Date"), "Thu, 01 Jan 1970 00:00:00 +0000");
}

TEST(BuildMime, AddressForms) {
  MimeMessage m = sample();
  m.from_name = "";
  m.to_name = "Doe, Jane";
  Parsed p = parse(build(m));
  EXPECT_EQ(p.field("From"), "news@example.com");
  EXPECT_EQ(p.field("To"), "\"Doe, Jane\" <jane@example.org>");
  m.from_name = "\xD0\x9D\xD0\xBE\xD0\xB2\xD0\xBE\xD1\x81\xD1\x82\xD0\xB8";  // Новости
  p = parse(build(m));
  EXPECT_EQ(p.field("From"), "=?UTF-8?B?0J3QvtCy0L7RgdGC0Lg=?= <news@example.com>");
  m.message_id.clear();
  for (const auto& f : parse(build(m)).fields) EXPECT_NE(f.first, "Message-ID");
}

TEST(BuildMime, LongSubjectIsFoldedAtWhiteSpace) {
  MimeMessage m = sample();
  m.subject.clear();
  for (int i = 0; m.subject.size() < 5000; ++i)
    m.subject += (i ? " word" : "word") + std::to_string(i);
  const std::string out = build(m);
  EXPECT_TRUE(wire_lines_ok(out, 78));
  EXPECT_EQ(parse(out).field("Subject"), m.subject);
}

TEST(BuildMime, LongSubjectWithoutSpacesStaysUnder998) {
  MimeMessage m = sample();
  m.subject = std::string(5000, 'x');
  std::string out = build(m);
  EXPECT_TRUE(wire_lines_ok(out, 76));
  EXPECT_EQ(decode_header_text(parse(out).field("Subject")), m.subject);
  m.subject.clear();
  for (int i = 0; i < 2500; ++i) m.subject += utf8(0x416 + i % 30);  // 5,000 octets of Cyrillic
  out = build(m);
  EXPECT_TRUE(wire_lines_ok(out, 76));
  EXPECT_EQ(decode_header_text(parse(out).field("Subject")), m.subject);
}

TEST(BuildMime, SingleWordHeaderOf3000) {
  MimeMessage m = sample();
  const std::string word(3000, 'k');
  m.headers = {{"X-Token", word}};
  const std::string out = build(m);
  EXPECT_TRUE(wire_lines_ok(out));
  EXPECT_EQ(decode_header_text(parse(out).field("X-Token")), word);
  // Just short enough to stay as is: the line is exactly 998.
  const std::string fits(998 - 9, 'k');
  m.headers = {{"X-Token", fits}};
  const std::string out2 = build(m);
  EXPECT_TRUE(wire_lines_ok(out2));
  EXPECT_THAT(out2, HasSubstr("X-Token: " + fits + "\r\n"));
}

TEST(BuildMime, NonAsciiExtraHeaderIsEncoded) {
  MimeMessage m = sample();
  m.headers = {{"X-Note",
                "Gr\xC3\xBC\xC3\x9F"
                "e aus M\xC3\xBCnchen"}};
  EXPECT_EQ(parse(build(m)).field("X-Note"), "=?UTF-8?B?R3LDvMOfZSBhdXMgTcO8bmNoZW4=?=");
  m.headers = {{"X-Note",
                "Gr\xC3\xBC\xC3\x9F"
                "e an alle Freunde und Nachbarn"}};
  EXPECT_EQ(parse(build(m)).field("X-Note"),
            "=?UTF-8?Q?Gr=C3=BC=C3=9Fe_an_alle_Freunde_und_Nachbarn?=");
}

TEST(BuildMime, RejectsHeaderInjection) {
  const auto rejects = [](auto&& mutate) {
    MimeMessage m = sample();
    mutate(m);
    std::string out = "kept";
    EXPECT_THROW(build_mime(m, out), std::invalid_argument);
    EXPECT_EQ(out, "kept");  // nothing half-written
  };
  rejects([](MimeMessage& m) { m.subject = "Hi\r\nBcc: victim@example.net"; });
  rejects([](MimeMessage& m) { m.subject = "Hi\nBcc: victim@example.net"; });
  rejects([](MimeMessage& m) { m.from_name = "Evil\rX: y"; });
  rejects([](MimeMessage& m) { m.to_name = "\xC3\xA9\n"; });
  rejects([](MimeMessage& m) { m.to_address = "a@b\r\nBcc: c@d"; });
  rejects([](MimeMessage& m) { m.from_address = "a b@c"; });
  rejects([](MimeMessage& m) { m.from_address = ""; });
  rejects([](MimeMessage& m) { m.message_id = "x>\r\nBcc: c@d"; });
  rejects([](MimeMessage& m) { m.headers = {{"X-Ok", "fine"}, {"X-Bad", "a\r\nBcc: c@d"}}; });
  rejects([](MimeMessage& m) { m.headers = {{"X-Bad", "a\nb"}}; });
  rejects([](MimeMessage& m) { m.headers = {{"Bad Name", "v"}}; });
  rejects([](MimeMessage& m) { m.headers = {{"Bad:Name", "v"}}; });
  rejects([](MimeMessage& m) { m.headers = {{"", "v"}}; });
  rejects([](MimeMessage& m) { m.headers = {{"X-\xC3\xA9", "v"}}; });
  rejects([](MimeMessage& m) { m.headers = {{"X-A\r\nBcc", "v"}}; });
  rejects([](MimeMessage& m) { m.headers = {{"content-type", "text/html"}}; });
  rejects([](MimeMessage& m) { m.headers = {{"Subject", "again"}}; });
  rejects([](MimeMessage& m) {
    m.html = "<p>x</p>";
    m.boundary = "bad\"boundary";
  });
}

// ---------------------------------------------------------------------------------------------
// Bodies.

std::string cte_of(const std::string& text) {
  MimeMessage m = sample();
  m.text = text;
  return parse(build(m)).field("Content-Transfer-Encoding");
}

TEST(BuildMime, ChoosesTransferEncoding) {
  EXPECT_EQ(cte_of("plain ASCII\nlines\n"), "7bit");
  EXPECT_EQ(cte_of(std::string(998, 'a') + "\n"), "7bit");
  EXPECT_EQ(cte_of(std::string(999, 'a') + "\n"), "quoted-printable");
  EXPECT_EQ(cte_of("Cr\xC3\xA8"
                   "me br\xC3\xBBl\xC3\xA9"
                   "e for everyone in the family\n"),
            "quoted-printable");
  EXPECT_EQ(cte_of("nul\0here\n"s), "quoted-printable");
  std::string russian;
  for (int i = 0; i < 40; ++i) russian += utf8(0x430 + i % 32) + (i % 6 ? "" : " ");
  EXPECT_EQ(cte_of(russian + "\n"), "base64");
  EXPECT_EQ(cte_of("\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C\n"), "base64");
}

TEST(BuildMime, BodyLineEndsBecomeCrlf) {
  for (const char* text : {"a\nb\n", "a\r\nb\r\n", "a\rb\r", "a\nb"}) {
    MimeMessage m = sample();
    m.text = text;
    const std::string out = build(m);
    EXPECT_TRUE(wire_lines_ok(out));
    EXPECT_EQ(parse(out).body, "a\r\nb\r\n");
  }
  MimeMessage m = sample();
  m.text = "\xD0\xB4\xD0\xB0\n\xD0\xBD\xD0\xB5\xD1\x82\n";  // base64 of the CRLF form
  const Parsed p = parse(build(m));
  EXPECT_EQ(p.field("Content-Transfer-Encoding"), "base64");
  EXPECT_EQ(b64_decode(p.body), crlf(m.text));
}

struct Multipart {
  std::string boundary;
  std::vector<Parsed> parts;
  std::string preamble, epilogue;
};

Multipart split_multipart(const std::string& msg) {
  Multipart mp;
  const Parsed top = parse(msg);
  const std::string ct = top.field("Content-Type");
  const auto b = ct.find("boundary=\"");
  EXPECT_NE(b, std::string::npos) << ct;
  mp.boundary = ct.substr(b + 10, ct.find('"', b + 10) - b - 10);
  const std::string delim = "\r\n--" + mp.boundary;
  std::string body = "\r\n" + top.body;
  std::size_t pos = body.find(delim);
  EXPECT_NE(pos, std::string::npos);
  mp.preamble = body.substr(0, pos);
  while (true) {
    pos += delim.size();
    if (body.compare(pos, 2, "--") == 0) {
      mp.epilogue = body.substr(pos + 2);
      break;
    }
    EXPECT_EQ(body.compare(pos, 2, "\r\n"), 0);
    const auto next = body.find(delim, pos);
    EXPECT_NE(next, std::string::npos);
    if (next == std::string::npos) break;
    mp.parts.push_back(parse(body.substr(pos + 2, next - pos - 2)));
    pos = next;
  }
  return mp;
}

TEST(BuildMime, MultipartAlternativeStructure) {
  MimeMessage m = sample();
  m.text = "Hello Jane,\nplain part\n";
  m.html = "<html><body><p>Hello Jane,</p><p>caf\xC3\xA9</p></body></html>\n";
  const std::string out = build(m);
  EXPECT_TRUE(wire_lines_ok(out));
  const Parsed top = parse(out);
  EXPECT_EQ(top.fields.back().first, "Content-Type");  // no transfer encoding at the top
  EXPECT_THAT(top.field("Content-Type"), StartsWith("multipart/alternative; boundary=\"=_"));
  const Multipart mp = split_multipart(out);
  EXPECT_THAT(mp.boundary, HasSubstr("=_"));
  EXPECT_LE(mp.boundary.size(), 70u);
  EXPECT_EQ(mp.preamble, "");
  EXPECT_EQ(mp.epilogue, "\r\n");
  ASSERT_EQ(mp.parts.size(), 2u);
  EXPECT_EQ(mp.parts[0].field("Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(mp.parts[0].field("Content-Transfer-Encoding"), "7bit");
  EXPECT_EQ(mp.parts[0].body, crlf(m.text));
  EXPECT_EQ(mp.parts[1].field("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(mp.parts[1].field("Content-Transfer-Encoding"), "quoted-printable");
  EXPECT_EQ(qp_decode(mp.parts[1].body), crlf(m.html));
}

TEST(BuildMime, BoundaryIsPerMessageAndNeverInContent) {
  MimeMessage m = sample();
  m.html = "<p>x</p>";
  const std::string b1 = split_multipart(build(m)).boundary;
  m.message_id = "other@example.com";
  const std::string b2 = split_multipart(build(m)).boundary;
  EXPECT_NE(b1, b2);
  // A 7bit text that happens to contain the boundary is quoted-printable instead.
  m.text = "--" + b2 + "\n" + b2 + "--\n";
  const std::string out = build(m);
  const Multipart mp = split_multipart(out);
  ASSERT_EQ(mp.parts.size(), 2u);
  EXPECT_EQ(mp.parts[0].field("Content-Transfer-Encoding"), "quoted-printable");
  EXPECT_EQ(qp_decode(mp.parts[0].body), crlf(m.text));
  // A caller's boundary is used as given.
  m.boundary = "my-boundary";
  m.text = "text";
  EXPECT_EQ(split_multipart(build(m)).boundary, "my-boundary");
  // ... and one that cannot be kept out of the content is refused.
  m.text = "my-boundary";
  std::string out2;
  EXPECT_THROW(build_mime(m, out2), std::invalid_argument);
  EXPECT_TRUE(out2.empty());
}

TEST(BuildMime, AppendsToCallersBuffer) {
  std::string out = "DKIM-Signature: x\r\n";
  build_mime(sample(), out);
  EXPECT_THAT(out, StartsWith("DKIM-Signature: x\r\nFrom: "));
}

// ---------------------------------------------------------------------------------------------
// Properties over random input.

TEST(BuildMime, RandomMessagesStayWithinLineLimitsAndRoundTrip) {
  std::mt19937 rng(5322);
  for (int i = 0; i < 400; ++i) {
    MimeMessage m = sample();
    m.from_name = random_text(rng, rng() % 120, false);
    m.to_name = random_text(rng, rng() % 40, false);
    m.subject = random_text(rng, rng() % (i % 10 ? 200 : 3000), false);
    m.headers = {{"X-Random", random_text(rng, rng() % 1500, false)}};
    if (i % 7 == 0) m.headers.emplace_back("X-Long", std::string(900 + rng() % 200, 'z'));
    m.text = random_text(rng, rng() % 3000, true);
    if (i % 5 == 0) m.text += std::string(1200 + rng() % 900, 'q');  // a line over 998
    if (i % 2) m.html = "<p>" + random_text(rng, rng() % 3000, true) + "</p>";
    const std::string out = build(m);
    ASSERT_TRUE(wire_lines_ok(out)) << "message " << i;

    const Parsed top = parse(out);
    auto display = [](const std::string& field) {
      const auto lt = field.rfind(" <");
      return lt == std::string::npos ? std::string()
                                     : decode_header_text(field.substr(0, lt), true);
    };
    if (!m.from_name.empty()) {
      EXPECT_EQ(display(top.field("From")), m.from_name) << i;
    }
    if (!m.to_name.empty()) {
      EXPECT_EQ(display(top.field("To")), m.to_name) << i;
    }
    EXPECT_EQ(decode_header_text(top.field("Subject")), m.subject) << i;
    EXPECT_EQ(decode_header_text(top.field("X-Random")), m.headers[0].second) << i;
    if (m.html.empty()) {
      // A single part always ends in a line break; a missing one was added.
      auto ended = [](std::string t) { return t.ends_with("\r\n") ? t : t + "\r\n"; };
      EXPECT_EQ(ended(decode_body(top.body, top.field("Content-Transfer-Encoding"))),
                ended(crlf(m.text)))
          << i;
    } else {
      const Multipart mp = split_multipart(out);
      ASSERT_EQ(mp.parts.size(), 2u);
      EXPECT_EQ(decode_body(mp.parts[0].body, mp.parts[0].field("Content-Transfer-Encoding")),
                crlf(m.text))
          << i;
      EXPECT_EQ(decode_body(mp.parts[1].body, mp.parts[1].field("Content-Transfer-Encoding")),
                crlf(m.html))
          << i;
    }
  }
}

TEST(EncodeHeaderText, RandomTextGivesShortWholeWords) {
  std::mt19937 rng(2047);
  for (int i = 0; i < 1000; ++i) {
    const std::string text = random_text(rng, rng() % 300, false);
    for (const bool phrase : {false, true}) {
      const std::string e = encode_header_text(text, phrase);
      for (const char c : e) ASSERT_TRUE(c == '\t' || (c >= 32 && c < 127)) << e;
      ASSERT_EQ(decode_header_text(e, phrase), text)
          << e;  // checks each word ≤ 75, whole characters
    }
  }
}

// ---------------------------------------------------------------------------------------------
// An independent parser: Python's `email` package with the default (RFC 5322) policy.

constexpr std::string_view kPythonCheck = R"PY(
import email, email.policy, glob, os, sys
d = sys.argv[1]
fails = []
def rd(p):
    return open(p, 'rb').read().decode('utf-8') if os.path.exists(p) else None
def norm(s):
    return s.replace('\r\n', '\n').replace('\r', '\n')
for eml in sorted(glob.glob(os.path.join(d, '*.eml'))):
    base = eml[:-4]
    name = os.path.basename(base)
    def check(ok, what):
        if not ok:
            fails.append(name + ': ' + what)
    msg = email.message_from_bytes(open(eml, 'rb').read(), policy=email.policy.default)
    check(not msg.defects, 'message defects %r' % msg.defects)
    for part in msg.walk():
        check(not part.defects, 'part defects %r' % part.defects)
    for field in msg.keys():
        check(not msg[field].defects, '%s defects %r' % (field, msg[field].defects))
    check(str(msg['Subject']) == rd(base + '.subject'), 'subject %r' % str(msg['Subject']))
    for field, key in (('From', 'from'), ('To', 'to')):
        addrs = msg[field].addresses
        check(len(addrs) == 1, field + ' has %d addresses' % len(addrs))
        # Python's address parser collapses white space inside an encoded word and puts a
        # space between adjacent ones (RFC 2047 6.2 says to drop it), so compare words.
        check(addrs[0].display_name.split() == rd(base + '.' + key + '_name').split(),
              field + ' name %r' % addrs[0].display_name)
        check(addrs[0].addr_spec == rd(base + '.' + key + '_addr'),
              field + ' address %r' % addrs[0].addr_spec)
    extra = rd(base + '.extra_name')
    if extra is not None:
        check(str(msg[extra]) == rd(base + '.extra_value'), extra + ' %r' % str(msg[extra]))
    text, html = rd(base + '.text'), rd(base + '.html')
    ctes = rd(base + '.cte').split()
    if html:
        check(msg.get_content_type() == 'multipart/alternative', 'type ' + msg.get_content_type())
        parts = list(msg.iter_parts())
        check(len(parts) == 2, '%d parts' % len(parts))
        want = (('text/plain', text), ('text/html', html))
    else:
        parts = [msg]
        want = (('text/plain', text),)
    for part, (ctype, body), cte in zip(parts, want, ctes):
        check(part.get_content_type() == ctype, 'part type ' + part.get_content_type())
        check(part.get_content_charset() == 'utf-8', 'charset %r' % part.get_content_charset())
        check(part['Content-Transfer-Encoding'] == cte, 'cte %r' % part['Content-Transfer-Encoding'])
        got = part.get_content()
        check(norm(got) == norm(body), '%s body %r != %r' % (ctype, got[:80], body[:80]))
print('\n'.join(fails) if fails else 'ok %d' % len(glob.glob(os.path.join(d, '*.eml'))))
sys.exit(1 if fails else 0)
)PY";

void write_file(const std::filesystem::path& p, std::string_view data) {
  std::ofstream f(p, std::ios::binary);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(f.good()) << p;
}

TEST(BuildMime, PythonEmailParserAgrees) {
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "/usr/bin/python3 is absent";
  std::string tmpl = (std::filesystem::temp_directory_path() / "mma_mime_XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const std::filesystem::path dir = tmpl;

  struct Case {
    std::string name;
    MimeMessage m;
    std::string ctes;
  };
  std::vector<Case> cases;
  {
    MimeMessage m = sample();
    cases.push_back({"ascii", m, "7bit"});
  }
  {
    MimeMessage m = sample();
    m.from_name =
        "Caf\xC3\xA9 \"Le Z\xC3\xA8"
        "bre\" (Paris)";
    m.to_name = "\xE5\xB1\xB1\xE7\x94\xB0 \xE5\xA4\xAA\xE9\x83\x8E";  // 山田 太郎
    m.subject = "\xF0\x9F\x8E\x89 Soldes d'\xC3\xA9t\xC3\xA9 : -50% sur tout, " +
                std::string("\xD0\xA1\xD0\xBA\xD0\xB8\xD0\xB4\xD0\xBA\xD0\xB8 ") +
                std::string(150, 'x');
    m.headers = {{"X-Note", "gr\xC3\xBC\xC3\x9F Gott \xE2\x80\x94 " + std::string(200, 'y')}};
    m.text = "Bonjour,\nles soldes d'\xC3\xA9t\xC3\xA9 commencent.\n";
    m.html = "<p>Bonjour,</p>\n<p>les soldes d'\xC3\xA9t\xC3\xA9 commencent.</p>\n";
    cases.push_back({"non_ascii_headers", m, "quoted-printable quoted-printable"});
  }
  {
    MimeMessage m = sample();
    m.to_name = "Doe, Jane Q.";
    // Новости и скидки недели от нашего магазина: several encoded words.
    m.from_name =
        "\xD0\x9D\xD0\xBE\xD0\xB2\xD0\xBE\xD1\x81\xD1\x82\xD0\xB8 \xD0\xB8 "
        "\xD1\x81\xD0\xBA\xD0\xB8\xD0\xB4\xD0\xBA\xD0\xB8 \xD0\xBD\xD0\xB5\xD0\xB4"
        "\xD0\xB5\xD0\xBB\xD0\xB8 \xD0\xBE\xD1\x82 \xD0\xBD\xD0\xB0\xD1\x88\xD0\xB5"
        "\xD0\xB3\xD0\xBE \xD0\xBC\xD0\xB0\xD0\xB3\xD0\xB0\xD0\xB7\xD0\xB8\xD0\xBD"
        "\xD0\xB0";
    m.subject =
        "\xD0\x95\xD0\xB6\xD0\xB5\xD0\xBD\xD0\xB5\xD0\xB4\xD0\xB5\xD0\xBB\xD1\x8C\xD0\xBD"
        "\xD1\x8B\xD0\xB9 \xD0\xBE\xD0\xB1\xD0\xB7\xD0\xBE\xD1\x80";
    m.text.clear();
    for (int i = 0; i < 300; ++i)
      m.text += utf8(0x430 + i % 32) + (i % 9 ? "" : i % 27 ? " " : "\n");
    m.text += "\n";
    m.html = "<p>" + m.text + "</p>";  // no trailing newline
    cases.push_back({"cyrillic_base64", m, "base64 base64"});
  }
  {
    MimeMessage m = sample();
    m.subject = std::string(5000, 's');
    m.headers = {{"X-Token", std::string(3000, 't')}};
    m.text = std::string(2500, 'L') + "\nshort = line with trailing space \n.\nFrom here\n";
    cases.push_back({"long_lines_qp", m, "quoted-printable"});
  }
  {
    MimeMessage m = sample();
    m.subject.clear();
    for (int i = 0; m.subject.size() < 5000; ++i) m.subject += " word" + std::to_string(i);
    m.subject.erase(0, 1);
    m.html = "<html><body>" + std::string(3000, 'h') + "</body></html>";
    m.text = "plain\n";
    cases.push_back({"folded_subject", m, "7bit quoted-printable"});
  }

  for (const Case& c : cases) {
    std::string out;
    build_mime(c.m, out);
    ASSERT_TRUE(wire_lines_ok(out)) << c.name;
    if (c.name == "cyrillic_base64") {
      EXPECT_THAT(parse(out).field("From"), HasSubstr("?= =?"));  // several encoded words
    }
    const auto base = dir / c.name;
    write_file(base.string() + ".eml", out);
    write_file(base.string() + ".subject", c.m.subject);
    write_file(base.string() + ".from_name", c.m.from_name);
    write_file(base.string() + ".from_addr", c.m.from_address);
    write_file(base.string() + ".to_name", c.m.to_name);
    write_file(base.string() + ".to_addr", c.m.to_address);
    write_file(base.string() + ".text", c.m.text);
    write_file(base.string() + ".html", c.m.html);
    write_file(base.string() + ".cte", c.ctes);
    if (!c.m.headers.empty()) {
      write_file(base.string() + ".extra_name", c.m.headers[0].first);
      write_file(base.string() + ".extra_value", c.m.headers[0].second);
    }
  }
  write_file(dir / "check.py", kPythonCheck);

  const std::string cmd =
      "/usr/bin/python3 " + (dir / "check.py").string() + " " + dir.string() + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string report;
  char buf[4096];
  for (std::size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) report.append(buf, n);
  const int status = pclose(p);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(status, 0) << report;
  EXPECT_THAT(report, StartsWith("ok 5"));
}

}  // namespace
}  // namespace mma::compose
