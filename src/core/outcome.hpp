// core/outcome: the closed set of what can happen to a recipient (DESIGN.md §5).
//
// Each recipient reaches exactly one final outcome (Delivered, Bounced, Failed); Deferred is
// logged each time a delivery attempt is put off, and is never final.
#pragma once

#include <string_view>

namespace mma {

enum class Outcome : unsigned char {
  Delivered,  // the remote MTA accepted it (2xx)
  Bounced,    // the remote MTA refused it for good (5xx), or it can never be routed
  Failed,     // temporary failures until retries or time ran out
  Deferred,   // a temporary failure; it will be tried again
};

constexpr std::string_view to_string(Outcome o) {
  switch (o) {
    case Outcome::Delivered:
      return "delivered";
    case Outcome::Bounced:
      return "bounced";
    case Outcome::Failed:
      return "failed";
    case Outcome::Deferred:
      return "deferred";
  }
  return "?";
}

constexpr bool is_final(Outcome o) {
  return o != Outcome::Deferred;
}

}  // namespace mma
