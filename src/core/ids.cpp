#include "core/ids.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace mma {
namespace {

// Upper-case hex of `v`, zero-padded to at least `width` digits.
std::string hex(std::uint64_t v, std::size_t width) {
  char buf[16];
  std::size_t n = 0;
  do {
    buf[n++] = "0123456789ABCDEF"[v & 0xF];
    v >>= 4;
  } while (v != 0);
  std::string out(width > n ? width - n : 0, '0');
  while (n > 0) out += buf[--n];
  return out;
}

}  // namespace

std::string next_message_id() {
  // The start time in microseconds: a restart, even within the same second, never reuses the
  // ids of messages the previous run left in the spool.
  static const auto epoch =
      static_cast<unsigned long long>(std::chrono::duration_cast<std::chrono::microseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
  static std::atomic<std::uint64_t> seq{0};
  // "%llX-%08llX" by hand: snprintf was ~1% of the relay's CPU, once per message.
  static const std::string prefix = hex(epoch, 1) + "-";
  std::string id = prefix;
  id += hex(seq.fetch_add(1, std::memory_order_relaxed) + 1, 8);
  return id;
}

}  // namespace mma
