// compose/mime_internal: what the MIME files share: the line limit, hex digits and octet classes.
//
// Internal to mma_compose_mime (mime.cpp, encoded_word.cpp, transfer_encoding.cpp); the API is
// compose/mime.hpp.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

namespace mma::compose::detail {

inline constexpr std::size_t kMaxLine = 998;  // RFC 5322 §2.1.1 MUST, CRLF excluded

inline constexpr char kHex[] = "0123456789ABCDEF";

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

inline unsigned char octet(char c) {
  return static_cast<unsigned char>(c);
}
inline bool is_wsp(char c) {
  return c == ' ' || c == '\t';
}

}  // namespace mma::compose::detail
