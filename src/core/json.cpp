#include "core/json.hpp"

#include <cstdio>

namespace mma {

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  // Runs of characters that need no escape are appended whole: this writes every accounting
  // line, several strings each.
  std::size_t run = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto u = static_cast<unsigned char>(s[i]);
    if (u >= 0x20 && u != '"' && u != '\\' && u != 0x7f) continue;  // UTF-8 passes as sent
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (s[i]) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default: {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", u);
        out += buf;
      }
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

}  // namespace mma
