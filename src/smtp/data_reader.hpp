// smtp/data_reader: the message content after DATA, up to the lone "." (RFC 5321 §4.1.1.4).
//
// The content is kept in its wire form: CRLF line endings and dot-stuffing as the client sent
// it (§4.5.2), which is exactly what the next hop must receive, so relaying needs no
// re-encoding. Only CRLF "." CRLF ends the data: a "." reached through a bare LF does not,
// and is stuffed on the way out, so mail cannot be smuggled through mma (SMTP smuggling,
// 2023). Bare LF line endings are normalised to CRLF.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mma::smtp {

struct DataLimits {
  std::size_t max_size = 0;    // content bytes (unstuffed); 0: no limit
  std::size_t max_line = 998;  // text bytes per line, RFC 5322 §2.1.1
};

class DataReader {
 public:
  // Appends the wire form (without the final ".\r\n") to `out`.
  DataReader(std::string& out, DataLimits limits) : out_(out), limits_(limits) {}

  // Consumes bytes of `in` up to and including the terminator; returns how many.
  std::size_t feed(std::string_view in);
  // For content that came without transparency (BDAT, RFC 3030): each line that starts with
  // "." gets the dot a DATA client would have added, so no terminator can match and all of
  // `in` is taken.
  void stuff_dots() { stuff_dots_ = true; }

  // Ends the content where it stands, as BDAT's last chunk does (RFC 3030): a last line without
  // its line end is ended with CRLF (a CR left at its end is bare), and no terminator is read.
  void end();

  [[nodiscard]] bool done() const { return done_; }
  [[nodiscard]] bool too_big() const { return too_big_; }
  [[nodiscard]] bool line_too_long() const { return line_too_long_; }
  // A CR not followed by LF (RFC 5321 §2.3.8 forbids it; some receivers end a line there, which
  // would let mail be smuggled through): the message must be refused.
  [[nodiscard]] bool bare_cr() const { return bare_cr_; }
  // Content size as RFC 1870 counts it (after un-stuffing, with CRLFs).
  [[nodiscard]] std::size_t size() const { return size_; }
  // Some stored line starts with a dot (its stuffing, in the wire form). False: the wire form
  // is already the content as BDAT sends it, and needs no scan to un-stuff. Final once done():
  // a line counts when it ends.
  [[nodiscard]] bool dot_lines() const { return dot_lines_; }
  // Bytes at the start of `out` that are final (complete lines): the caller may move them
  // elsewhere (a body file) and erase them from `out`. The current line may still change.
  [[nodiscard]] std::size_t complete_bytes() const {
    return storing() && !done_ ? out_.size() - line_len_ : out_.size();
  }

 private:
  void end_line(bool cr);
  [[nodiscard]] bool storing() const { return !too_big_ && !line_too_long_ && !bare_cr_; }

  std::string& out_;
  DataLimits limits_;
  std::size_t line_len_ = 0;  // bytes of the current line so far, LF excluded, CR included
  char first_ = 0;            // first byte of the current line
  char last_ = 0;             // last byte of the current line
  bool prev_crlf_ = true;     // the previous line (or the DATA command) ended in CRLF
  bool done_ = false;
  bool too_big_ = false;
  bool line_too_long_ = false;
  bool bare_cr_ = false;
  bool dot_lines_ = false;
  bool stuff_dots_ = false;
  std::size_t size_ = 0;
};

}  // namespace mma::smtp
