// smtp/decimal: a number's decimal digits appended to a string, with no string of their own
// (std::to_chars: no locale, no allocation). For the lines built once per message: commands
// (SIZE=, BDAT), reply summaries, accounting records.
#pragma once

#include <charconv>
#include <iterator>
#include <string>

namespace mma::smtp {

template <class Int>
void append_decimal(std::string& out, Int n) {
  char digits[24];  // any 64-bit integer, with its sign
  const auto [end, ec] = std::to_chars(std::begin(digits), std::end(digits), n);
  static_cast<void>(ec);
  out.append(digits, end);
}

}  // namespace mma::smtp
