// core/message: one accepted message and the Jobs it is split into (DESIGN.md §3, §5).
//
// A Message is the patent's msg_handle: sender, body, time of reception and, in `delivered`
// mode, the DeliveryWaiter through which the inbound session learns each recipient's fate.
// A Job is one queue's share of it: a batch of recipients for one destination.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/body.hpp"

namespace mma {

using Clock = std::chrono::steady_clock;

class DeliveryWaiter;
class SpoolTicket;

struct Message {
  std::string id;      // mma's queue id, for logs
  std::string sender;  // empty: the null reverse-path
  BodyRef body;
  bool smtputf8 = false;  // RFC 6531: the sender asked for SMTPUTF8
  Clock::time_point received;
  std::shared_ptr<DeliveryWaiter> waiter;  // only in `delivered` mode
  std::shared_ptr<SpoolTicket> spooled;    // only when it is in the durable spool
};

struct Recipient {
  std::string address;      // local@domain, domain lower-cased
  std::uint32_t index = 0;  // position in the message's RCPT list (LMTP replies, waiter)
  std::uint16_t attempts = 0;

  [[nodiscard]] std::string_view domain() const {
    const auto at = address.rfind('@');
    return at == std::string::npos ? std::string_view{} : std::string_view(address).substr(at + 1);
  }
};

struct Job {
  std::shared_ptr<const Message> message;
  std::vector<Recipient> recipients;
  std::string destination;   // routing key within the queue: "" when the queue has static hosts
  Clock::time_point queued;  // when it (last) entered its queue
};

}  // namespace mma
