// smtp/line_buffer: the input side of a connection, without the socket.
//
// The I/O layer writes received bytes into prepare()/commit(); the protocol code takes them
// back out as lines (command and reply phases) or as raw bytes (DATA). The buffer never grows
// past its capacity: a line longer than the limit is reported, not accumulated.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

namespace mma::smtp {

class LineBuffer {
 public:
  explicit LineBuffer(std::size_t capacity = 64 * 1024);

  // Room to read into: at least `min` bytes (compacts first; grows up to capacity only).
  std::span<char> prepare(std::size_t min = 4096);
  void commit(std::size_t n) { end_ += n; }

  [[nodiscard]] std::string_view data() const { return {buf_.get() + begin_, end_ - begin_}; }
  [[nodiscard]] bool empty() const { return begin_ == end_; }
  void consume(std::size_t n);

  enum class Status { Line, NeedMore, TooLong };
  struct Line {
    std::string_view text;  // without the line ending
    bool crlf = false;      // ended with CRLF (false: bare LF)
  };
  // Takes the next line ending in LF if its text is at most `max_len` bytes. TooLong when more
  // than `max_len` bytes are buffered without an LF: call discard_line() and answer the error.
  Status next_line(std::size_t max_len, Line& out);
  // Drops bytes up to and including the next LF; returns true once that LF was found.
  bool discard_line();

 private:
  // Allocated at the first prepare() and never zero-filled: a relay holds thousands of idle
  // connections, and most only ever read a few short replies (bench/RESULTS.md, latency).
  std::unique_ptr<char[]> buf_;
  std::size_t size_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  std::size_t capacity_;
};

}  // namespace mma::smtp
