#include "core/ids.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <set>

namespace mma {
namespace {

TEST(MessageIds, AreTheStartTimeInHexThenAPaddedSequence) {
  const std::string a = next_message_id();
  const std::string b = next_message_id();
  const auto dash = a.find('-');
  ASSERT_NE(dash, std::string::npos);
  ASSERT_EQ(a.size() - dash - 1, 8u) << a;          // "%08llX"
  EXPECT_EQ(a.substr(0, dash), b.substr(0, dash));  // one start time per process
  EXPECT_EQ(std::stoull(b.substr(dash + 1), nullptr, 16),
            std::stoull(a.substr(dash + 1), nullptr, 16) + 1);
  for (char c : a) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || c == '-') << a;
  // The start time, in microseconds: not after now, and not long before.
  const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  const auto start = static_cast<long long>(std::stoull(a.substr(0, dash), nullptr, 16));
  EXPECT_LE(start, now);
  EXPECT_GT(start, now - 3'600'000'000LL);
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(seen.insert(next_message_id()).second);
}

}  // namespace
}  // namespace mma
