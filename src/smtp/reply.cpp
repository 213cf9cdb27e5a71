#include "smtp/reply.hpp"

#include <algorithm>

#include "smtp/decimal.hpp"

namespace mma::smtp {

std::string Reply::summary() const {
  std::string s;
  append_summary(s);
  return s;
}

void Reply::append_summary(std::string& s) const {
  append_decimal(s, code);
  if (!enhanced.empty()) {
    s += ' ';
    s += enhanced;
  }
  s += ' ';
  for (std::size_t pos = 0; pos <= text.size();) {
    const std::size_t nl = std::min(text.find('\n', pos), text.size());
    s.append(text, pos, nl - pos);
    if (nl == text.size()) break;
    s += " / ";
    pos = nl + 1;
  }
}

Reply make_reply(int code, std::string_view enhanced, std::string_view text) {
  return Reply{code, std::string(enhanced), std::string(text)};
}

void append_reply(std::string& out, const Reply& reply, bool with_enhanced) {
  const std::string code = std::to_string(reply.code);
  std::string_view rest = reply.text;
  do {
    const auto nl = rest.find('\n');
    const std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    out += code;
    out += rest.empty() ? ' ' : '-';
    if (with_enhanced && !reply.enhanced.empty()) {
      out += reply.enhanced;
      if (!line.empty()) out += ' ';
    }
    out += line;
    out += "\r\n";
  } while (!rest.empty());
}

}  // namespace mma::smtp
