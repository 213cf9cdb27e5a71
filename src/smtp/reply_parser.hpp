// smtp/reply_parser: reads a remote server's replies, line by line (RFC 5321 §4.2).
//
// "250-first\r\n250 last\r\n" is one reply. Anything else a server might send instead (a code
// that is not three digits, a continuation with a different code, a reply with no end) is
// reported as garbled: the caller treats the connection as broken (DESIGN.md §8).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "smtp/line_buffer.hpp"
#include "smtp/reply.hpp"

namespace mma::smtp {

class ReplyParser {
 public:
  enum class Status { NeedMore, Complete, Garbled };
  static constexpr std::size_t kMaxLine = 2048;  // RFC 5321 says 512; be lenient, not unbounded
  static constexpr std::size_t kMaxLines = 200;

  // Feeds one line (without its line ending).
  Status on_line(std::string_view line);
  // Pulls lines from `in` until a reply is complete, more input is needed, or it is garbled.
  Status parse(LineBuffer& in);
  // The completed reply; the parser is ready for the next one.
  Reply take();
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  Reply current_;
  std::size_t lines_ = 0;
  std::string error_;
};

// Splits "5.1.1 text" into the enhanced status and the rest when `text` starts with one whose
// class matches `code` (RFC 3463 §2: class.subject.detail).
bool split_enhanced(int code, std::string_view text, std::string_view& enhanced,
                    std::string_view& rest);

}  // namespace mma::smtp
