#include "smtp/chunk_reader.hpp"

namespace mma::smtp {

void ChunkReader::feed(std::string_view raw) {
  // The reader stuffs each line that starts with "." (RFC 5321 §4.5.2) as it goes: one pass.
  data_.feed(raw);
}

void ChunkReader::finish() {
  data_.end();
}

UnstuffedBody unstuffed(std::string_view wire, bool dot_lines) {
  UnstuffedBody out;
  std::size_t from = 0;  // start of the span being built
  if (!wire.empty() && wire[0] == '.') from = 1;
  for (std::size_t pos = 0; dot_lines;) {
    const auto nl = wire.find("\n.", pos);
    if (nl == std::string_view::npos) break;
    out.spans.push_back(wire.substr(from, nl + 1 - from));  // up to the LF, the dot dropped
    from = nl + 2;
    pos = nl + 2;
  }
  if (from < wire.size()) out.spans.push_back(wire.substr(from));
  if (wire.size() < 2 || wire.substr(wire.size() - 2) != "\r\n") out.spans.emplace_back("\r\n");
  for (const auto s : out.spans) out.size += s.size();
  return out;
}

}  // namespace mma::smtp
