// compose/message_source: what the injector sends: messages composed one at a time, on demand
// (a campaign of millions is never all in memory), and told which ones the server accepted.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace mma::compose {

struct ComposedMessage {
  std::string sender;
  std::vector<std::string> recipients;
  std::string wire;        // dot-stuffed, CRLF, without the final ".\r\n"
  std::string key;         // the recipient's identity for resuming; empty: not tracked
  std::string message_id;  // without angle brackets
};

class MessageSource {
 public:
  virtual ~MessageSource() = default;
  // The next message, or nullopt when the campaign is done.
  virtual std::optional<ComposedMessage> next() = 0;
  // How many messages to expect, for the progress line; 0 when unknown.
  [[nodiscard]] virtual std::size_t expected() const = 0;
  // The server answered 2xx for every recipient of `m`: the campaign records it (resuming).
  virtual void accepted(const ComposedMessage& m) { (void)m; }
  // The run is over (done or interrupted): make what accepted() recorded durable.
  virtual void finish() {}
};

}  // namespace mma::compose
