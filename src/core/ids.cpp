#include "core/ids.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>

namespace mma {

std::string next_message_id() {
  // The start time in microseconds: a restart, even within the same second, never reuses the
  // ids of messages the previous run left in the spool.
  static const auto epoch =
      static_cast<unsigned long long>(std::chrono::duration_cast<std::chrono::microseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
  static std::atomic<std::uint64_t> seq{0};
  char buf[40];
  std::snprintf(buf, sizeof buf, "%llX-%08llX", epoch,
                static_cast<unsigned long long>(seq.fetch_add(1, std::memory_order_relaxed) + 1));
  return buf;
}

}  // namespace mma
