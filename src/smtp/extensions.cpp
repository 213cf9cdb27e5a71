#include "smtp/extensions.hpp"

#include <charconv>
#include <string_view>

namespace mma::smtp {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
  }
  return true;
}

}  // namespace

Extensions parse_extensions(const Reply& ehlo) {
  Extensions ext;
  if (ehlo.code != 250) return ext;
  ext.esmtp = true;
  std::string_view rest = ehlo.text;
  bool first = true;
  while (!rest.empty() || first) {
    const auto nl = rest.find('\n');
    const std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    if (first) {
      first = false;
      continue;
    }
    const auto sp = line.find(' ');
    const std::string_view key = line.substr(0, sp);
    const std::string_view arg =
        sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
    if (iequals(key, "PIPELINING")) {
      ext.pipelining = true;
    } else if (iequals(key, "SIZE")) {
      ext.size = true;
      std::uint64_t n = 0;
      if (std::from_chars(arg.data(), arg.data() + arg.size(), n).ec == std::errc{})
        ext.max_size = n;
    } else if (iequals(key, "8BITMIME")) {
      ext.eightbitmime = true;
    } else if (iequals(key, "SMTPUTF8")) {
      ext.smtputf8 = true;
    } else if (iequals(key, "STARTTLS")) {
      ext.starttls = true;
    } else if (iequals(key, "ENHANCEDSTATUSCODES")) {
      ext.enhanced = true;
    } else if (iequals(key, "CHUNKING")) {
      ext.chunking = true;
    }
  }
  return ext;
}

}  // namespace mma::smtp
