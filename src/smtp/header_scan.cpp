#include "smtp/header_scan.hpp"

namespace mma::smtp {

std::string find_header(std::string_view message, std::string_view name) {
  std::size_t pos = 0;
  while (pos < message.size()) {
    const auto eol = message.find('\n', pos);
    const std::string_view line =
        message.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    std::string_view text = line;
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (text.empty()) return {};  // end of the header section
    pos = eol == std::string_view::npos ? message.size() : eol + 1;
    if (text.size() <= name.size() || text[name.size()] != ':') continue;
    bool match = true;
    for (std::size_t i = 0; i < name.size() && match; ++i)
      match = (text[i] | 0x20) == (name[i] | 0x20);
    if (!match) continue;
    std::string value(text.substr(name.size() + 1));
    // Continuation lines start with white space (folding, §2.2.3).
    while (pos < message.size() && (message[pos] == ' ' || message[pos] == '\t')) {
      const auto next = message.find('\n', pos);
      std::string_view cont =
          message.substr(pos, next == std::string_view::npos ? std::string_view::npos : next - pos);
      if (!cont.empty() && cont.back() == '\r') cont.remove_suffix(1);
      value.append(cont);
      pos = next == std::string_view::npos ? message.size() : next + 1;
    }
    const auto b = value.find_first_not_of(" \t");
    const auto e = value.find_last_not_of(" \t");
    return b == std::string::npos ? std::string{} : value.substr(b, e - b + 1);
  }
  return {};
}

}  // namespace mma::smtp
