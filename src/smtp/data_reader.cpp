#include "smtp/data_reader.hpp"

#include <cstring>

namespace mma::smtp {

std::size_t DataReader::feed(std::string_view in) {
  std::size_t pos = 0;
  while (pos < in.size() && !done_) {
    if (stuff_dots_ && line_len_ == 0 && in[pos] == '.') {
      first_ = last_ = '.';  // the stuffing: the line now starts with two dots
      line_len_ = 1;
      if (storing()) out_ += '.';
    }
    const char* start = in.data() + pos;
    const std::size_t avail = in.size() - pos;
    const void* lf = std::memchr(start, '\n', avail);
    const std::size_t chunk =
        lf ? static_cast<std::size_t>(static_cast<const char*>(lf) - start) : avail;
    if (chunk > 0) {
      // A CR is allowed only right before the LF that ends its line.
      if (last_ == '\r' && line_len_ > 0) bare_cr_ = true;  // the previous chunk ended in CR
      for (const void* cr = std::memchr(start, '\r', chunk); cr != nullptr;) {
        const auto at = static_cast<std::size_t>(static_cast<const char*>(cr) - start);
        if (at + 1 < chunk) bare_cr_ = true;  // not the last byte before the LF (or the chunk end)
        cr = at + 1 < chunk ? std::memchr(start + at + 1, '\r', chunk - at - 1) : nullptr;
      }
      if (line_len_ == 0) first_ = start[0];
      last_ = start[chunk - 1];
      line_len_ += chunk;
      // The limit counts text bytes; a CR that may be the line's end is allowed on top, and so
      // is a leading dot, which may be the one transparency added (RFC 5321 §4.5.3.1.6).
      if (line_len_ > limits_.max_line + 1 + (first_ == '.' ? 1 : 0)) line_too_long_ = true;
      if (storing()) out_.append(start, chunk);
    }
    pos += chunk;
    if (lf) {
      ++pos;
      end_line(line_len_ > 0 && last_ == '\r');
    }
  }
  return pos;
}

void DataReader::end() {
  if (done_) return;
  if (line_len_ > 0) feed("\r\n");
  done_ = true;
}

void DataReader::end_line(bool cr) {
  if (cr && prev_crlf_ && line_len_ == 2 && first_ == '.') {
    done_ = true;  // CRLF "." CRLF
    if (storing()) out_.erase(out_.size() - 2);
    return;
  }
  const std::size_t text = cr ? line_len_ - 1 : line_len_;
  if (text > limits_.max_line + (first_ == '.' ? 1 : 0)) line_too_long_ = true;
  // RFC 1870 size: un-stuffed text plus CRLF.
  size_ += text + 2 - (text > 0 && first_ == '.' ? 1 : 0);
  if (limits_.max_size != 0 && size_ > limits_.max_size) too_big_ = true;
  if (first_ == '.') dot_lines_ = true;
  if (storing()) {
    if (text == 1 && first_ == '.') {
      // A lone "." that did not end the data (a bare LF before or after it) is content:
      // stuff it, or the next hop would read CRLF "." CRLF as the end (see the header).
      out_.erase(out_.size() - (cr ? 2 : 1));
      out_ += "..\r\n";
    } else {
      out_ += cr ? "\n" : "\r\n";
    }
  }
  prev_crlf_ = cr;
  line_len_ = 0;
  first_ = last_ = 0;
}

}  // namespace mma::smtp
