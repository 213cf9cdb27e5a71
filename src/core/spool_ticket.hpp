// core/spool_ticket: a message's link to the durable spool (`ack = "spooled"`).
//
// The queue reports each recipient's final outcome through it; the spool forgets the
// recipient, and the message with its last one. Implemented by spool/; core knows only this.
#pragma once

#include <cstdint>

namespace mma {

class SpoolTicket {
 public:
  virtual ~SpoolTicket() = default;
  // Thread-safe; called once per recipient.
  virtual void recipient_final(std::uint32_t index) = 0;
};

}  // namespace mma
