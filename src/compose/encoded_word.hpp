// compose/encoded_word: header text as it goes out: as is, as a quoted-string, or as RFC 2047
// encoded words.
//
// Internal to mma_compose_mime. The emitters are templates over where the tokens go: mime.cpp
// passes its folding FieldWriter, encode_header_text (compose/mime.hpp) a string.
//
// STANDARDS: RFC 2047 (encoded words), RFC 5322 §3.2.3-§3.2.5 (atoms, quoted-strings, phrases).
#pragma once

#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

#include "compose/mime_internal.hpp"
#include "compose/transfer_encoding.hpp"

namespace mma::compose::detail {

inline constexpr std::size_t kMaxEncodedWord = 75;       // RFC 2047 §2
inline constexpr std::size_t kEncodedWordOverhead = 12;  // "=?UTF-8?B?" and "?="

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

std::size_t longest_token(std::string_view s);

// Lenient UTF-8: a malformed sequence is taken octet by octet, and a well-formed character is
// never split (RFC 2047 §5: each encoded-word holds whole characters).
std::size_t char_length(std::string_view s, std::size_t i);

// The characters octet c takes in a "Q" encoded word: 1, or 3 as "=XX" (RFC 2047 §4.2).
std::size_t q_length(unsigned char c, bool phrase);

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

enum class Form { kAsIs, kQuoted, kEncoded };

// As is when it survives a parser unchanged, else quoted (phrases) or encoded; see
// encode_header_text in compose/mime.hpp.
Form choose_form(std::string_view s, bool phrase, std::size_t max_token);

// RFC 5322 §3.2.4 quoted-string.
std::string quoted_string(std::string_view s);

// Sends the tokens of a header text to sink, in the form choose_form picks. No plain token is
// longer than `max_token`; the first encoded word is at most `first_limit` characters.
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

}  // namespace mma::compose::detail
