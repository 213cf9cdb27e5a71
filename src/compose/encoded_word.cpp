// compose/encoded_word: RFC 2047 encoded words, quoted-strings and the choice between them.
#include "compose/encoded_word.hpp"

#include <algorithm>

#include "compose/mime.hpp"

namespace mma::compose::detail {
namespace {

// RFC 5322 §3.2.3.
constexpr CharTable kAtext =
    make_table([](int c) { return alnum(c) || one_of(c, "!#$%&'*+-/=?^_`{|}~"); });
// RFC 2047 §4.2 (3) and §5 (1): in text, printable ASCII except "=", "?" and "_".
constexpr CharTable kQText =
    make_table([](int c) { return c >= 33 && c <= 126 && !one_of(c, "=?_"); });
// RFC 2047 §5 (3): in a phrase only these; "=" and "_" are excluded by §4.2 anyway.
constexpr CharTable kQPhrase = make_table([](int c) { return alnum(c) || one_of(c, "!*+-/"); });

// Something a decoder could take for an encoded word: "=?" with a "?=" after it. Lenient
// decoders (Python's among them) find those even inside a word.
bool looks_encoded(std::string_view s) {
  const auto open = s.find("=?");
  return open != std::string_view::npos && s.find("?=", open + 2) != std::string_view::npos;
}

}  // namespace

std::size_t longest_token(std::string_view s) {
  std::size_t longest = 0;
  auto measure = [&](std::string_view t) { longest = std::max(longest, t.size()); };
  for_each_token(s, measure);
  return longest;
}

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

}  // namespace mma::compose::detail

namespace mma::compose {

std::string encode_header_text(std::string_view utf8, bool phrase) {
  std::string out;
  auto append = [&out](std::string_view a, std::string_view b = {}, std::string_view c = {}) {
    out += a;
    out += b;
    out += c;
  };
  // Room for a field name of up to 76 characters before the longest word.
  detail::emit_text(utf8, phrase, detail::kMaxEncodedWord, detail::kMaxLine - 76 - 2, append);
  return out;
}

}  // namespace mma::compose
