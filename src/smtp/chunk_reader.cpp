#include "smtp/chunk_reader.hpp"

#include <cstring>

namespace mma::smtp {

void ChunkReader::feed(std::string_view raw) {
  // Each piece between line-leading dots goes to the DataReader as it is; the dots get their
  // stuffing (RFC 5321 §4.5.2) in front.
  std::size_t pos = 0;
  while (pos < raw.size()) {
    if (line_start_ && raw[pos] == '.') data_.feed(".");
    const char* start = raw.data() + pos;
    const void* lf = std::memchr(start, '\n', raw.size() - pos);
    const std::size_t end =
        lf ? static_cast<std::size_t>(static_cast<const char*>(lf) - raw.data()) + 1 : raw.size();
    data_.feed(raw.substr(pos, end - pos));
    line_start_ = lf != nullptr;
    prev_ = end - pos >= 2 ? raw[end - 2] : last_;
    last_ = raw[end - 1];
    empty_ = false;
    pos = end;
  }
}

void ChunkReader::finish() {
  data_.feed(empty_ || (prev_ == '\r' && last_ == '\n') ? ".\r\n" : "\r\n.\r\n");
}

UnstuffedBody unstuffed(std::string_view wire) {
  UnstuffedBody out;
  std::size_t from = 0;  // start of the span being built
  if (!wire.empty() && wire[0] == '.') from = 1;
  for (std::size_t pos = 0;;) {
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
