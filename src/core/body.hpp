// core/body: a message's content, stored once and shared by every Job that carries it.
//
// Immutable after reception and reference-counted: a message split over three queues is
// three Jobs pointing at one Body (DESIGN.md §5). The bytes are the wire form (CRLF line
// endings, dot-stuffed, without the final ".\r\n"), so relaying is one gathered write. A body
// larger than [server] memory_body_limit lives in a BodyFile instead and is sent in blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/body_file.hpp"

namespace mma {

enum class BodyType : unsigned char { SevenBit, EightBitMime };

struct Body {
  std::string wire;  // dot-stuffed, CRLF, without the terminating ".\r\n"; empty if in `file`
  std::shared_ptr<BodyFile> file;  // set: the wire form is in this file (memory_body_limit)
  std::size_t size = 0;            // RFC 1870 size, for SIZE=
  std::string message_id;          // the Message-ID header, for logs
  BodyType type = BodyType::SevenBit;
  // Some line of `wire` starts with a dot. Left true where unknown (a body from the spool):
  // BDAT then scans the body to remove the stuffing; false spares that scan.
  bool dot_lines = true;

  [[nodiscard]] std::uint64_t wire_size() const { return file ? file->size() : wire.size(); }
};

using BodyRef = std::shared_ptr<const Body>;

}  // namespace mma
