// core/body: a message's content, stored once and shared by every Job that carries it.
//
// Immutable after reception and reference-counted: a message split over three queues is
// three Jobs pointing at one Body (DESIGN.md §5). The bytes are the wire form (CRLF line
// endings, dot-stuffed, without the final ".\r\n"), so relaying is one gathered write.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace mma {

enum class BodyType : unsigned char { SevenBit, EightBitMime };

struct Body {
  std::string wire;        // dot-stuffed, CRLF, without the terminating ".\r\n"
  std::size_t size = 0;    // RFC 1870 size, for SIZE=
  std::string message_id;  // the Message-ID header, for logs
  BodyType type = BodyType::SevenBit;
};

using BodyRef = std::shared_ptr<const Body>;

}  // namespace mma
