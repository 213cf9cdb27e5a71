// compose/transfer_encoding: the body of a text part as 7bit, quoted-printable or base64, and
// the choice between them.
//
// Internal to mma_compose_mime: mime.cpp plans and writes the parts with these;
// encoded_word.cpp borrows base64_chunk for "B" words. The public entry points
// (append_quoted_printable, append_base64_lines) are in compose/mime.hpp.
//
// STANDARDS: RFC 2045 (§2.7 7bit data, §6.7 quoted-printable, §6.8 base64), RFC 2046 §4.1.1
// (CRLF line breaks in text).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mma::compose::detail {

enum class Cte { k7bit, kQuotedPrintable, kBase64 };

std::string_view cte_name(Cte c);

struct BodyScan {
  std::size_t non_ascii = 0;
  bool has_nul = false;
  // Of ASCII text without NUL only, the only text 7bit can carry:
  std::size_t longest_line = 0;
  bool canonical = true;  // every line break already is CRLF
  bool lone_cr = false;
};

BodyScan scan_body(std::string_view text);

Cte choose_cte(const BodyScan& s, std::size_t size);

std::size_t encoded_size_estimate(const BodyScan& s, std::size_t size, Cte c);

void append_body(std::string_view text, const BodyScan& s, Cte cte, std::string& out);

// Encodes up to one line's worth of octets, with padding; returns the characters written.
std::size_t base64_chunk(const unsigned char* in, std::size_t n, char* out);

}  // namespace mma::compose::detail
