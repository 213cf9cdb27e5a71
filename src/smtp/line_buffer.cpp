#include "smtp/line_buffer.hpp"

#include <algorithm>
#include <cstring>

namespace mma::smtp {

namespace {
constexpr std::size_t kFirstSize = 16 * 1024;
}

LineBuffer::LineBuffer(std::size_t capacity) : capacity_(capacity) {}

std::span<char> LineBuffer::prepare(std::size_t min) {
  if (begin_ == end_) {
    begin_ = end_ = 0;
  }
  if (size_ - end_ < min && begin_ > 0) {
    std::memmove(buf_.get(), buf_.get() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (size_ - end_ < min && size_ < capacity_) {
    const std::size_t grown =
        std::min(capacity_, std::max({size_ * 2, end_ + min, std::min(capacity_, kFirstSize)}));
    auto bigger = std::make_unique_for_overwrite<char[]>(grown);
    if (end_ > 0) std::memcpy(bigger.get(), buf_.get(), end_);
    buf_ = std::move(bigger);
    size_ = grown;
  }
  return {buf_.get() + end_, size_ - end_};
}

void LineBuffer::consume(std::size_t n) {
  begin_ += std::min(n, end_ - begin_);
  if (begin_ == end_) begin_ = end_ = 0;
}

LineBuffer::Status LineBuffer::next_line(std::size_t max_len, Line& out) {
  const std::size_t avail = end_ - begin_;
  if (avail == 0) return Status::NeedMore;  // (and no memchr on a buffer not yet allocated)
  const char* start = buf_.get() + begin_;
  // A line of max_len text bytes may be followed by CR LF: look that far, no further.
  const std::size_t scan = std::min(avail, max_len + 2);
  const void* lf = std::memchr(start, '\n', scan);
  if (lf == nullptr) {
    return avail >= max_len + 2 ? Status::TooLong : Status::NeedMore;
  }
  std::size_t len = static_cast<const char*>(lf) - start;
  const bool crlf = len > 0 && start[len - 1] == '\r';
  const std::size_t text_len = crlf ? len - 1 : len;
  if (text_len > max_len) return Status::TooLong;
  out.text = std::string_view(start, text_len);
  out.crlf = crlf;
  begin_ += len + 1;
  // The view stays valid until the next prepare(): consume() never moves bytes.
  return Status::Line;
}

bool LineBuffer::discard_line() {
  if (begin_ == end_) {
    begin_ = end_ = 0;
    return false;
  }
  const char* start = buf_.get() + begin_;
  const void* lf = std::memchr(start, '\n', end_ - begin_);
  if (lf == nullptr) {
    begin_ = end_ = 0;
    return false;
  }
  begin_ += static_cast<const char*>(lf) - start + 1;
  if (begin_ == end_) begin_ = end_ = 0;
  return true;
}

}  // namespace mma::smtp
