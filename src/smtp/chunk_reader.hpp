// smtp/chunk_reader: the message content of BDAT chunks (RFC 3030), kept in the same wire form
// as DATA's (CRLF line endings, dot-stuffed, as data_reader.hpp describes), so that the rest of
// mma never knows which command carried a message.
//
// A chunk is binary-exact and has no terminator; this stuffs each line that starts with "." and
// hands the result to a DataReader, which applies DATA's rules: bare LF normalised, bare CR and
// over-long lines refused, the size limit. finish() ends the content where it stands, its last
// line ended with CRLF if it has no line end.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/data_reader.hpp"

namespace mma::smtp {

class ChunkReader {
 public:
  ChunkReader(std::string& out, DataLimits limits) : data_(out, limits) { data_.stuff_dots(); }

  // Any piece of any chunk of the message, in order.
  void feed(std::string_view raw);
  // After the last chunk.
  void finish();

  [[nodiscard]] const DataReader& data() const { return data_; }

 private:
  DataReader data_;
};

// The content of a wire-form body (dot-stuffed, without its ".\r\n") as BDAT sends it: the
// stuffing removed and CRLF added when the body does not end with one, as DATA's terminator
// would. Views into `wire`, which must outlive them; never a copy of the body.
struct UnstuffedBody {
  std::vector<std::string_view> spans;
  std::uint64_t size = 0;
};
// `dot_lines` false: no line of `wire` starts with a dot, so it is its own content.
UnstuffedBody unstuffed(std::string_view wire, bool dot_lines = true);

}  // namespace mma::smtp
