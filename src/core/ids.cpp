#include "core/ids.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>

namespace mma {

std::string next_message_id() {
  static const auto epoch =
      static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  static std::atomic<std::uint64_t> seq{0};
  char buf[32];
  std::snprintf(buf, sizeof buf, "%08X-%08llX", epoch,
                static_cast<unsigned long long>(seq.fetch_add(1, std::memory_order_relaxed) + 1));
  return buf;
}

}  // namespace mma
