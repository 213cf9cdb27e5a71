#include "smtp/chunk_reader.hpp"

namespace mma::smtp {

void ChunkReader::feed(std::string_view raw) {
  if (raw.empty()) return;
  // The DataReader gets the longest pieces it can: everything up to the next line that starts
  // with a ".", which gets its stuffing (RFC 5321 §4.5.2) in front.
  if (line_start_ && raw[0] == '.') data_.feed(".");
  for (std::size_t pos = 0; pos < raw.size();) {
    const auto dot = raw.find("\n.", pos);
    const std::size_t end = dot == std::string_view::npos ? raw.size() : dot + 1;
    data_.feed(raw.substr(pos, end - pos));
    if (dot != std::string_view::npos) data_.feed(".");
    pos = end;
  }
  line_start_ = raw.back() == '\n';
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
