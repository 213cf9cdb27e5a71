#include "core/json.hpp"

#include <gtest/gtest.h>

namespace mma {
namespace {

std::string quoted(std::string_view s) {
  std::string out = "x";
  append_json_string(out, s);
  return out;
}

TEST(JsonString, EscapesWhatJsonRequiresAndPassesTheRest) {
  EXPECT_EQ(quoted(""), "x\"\"");
  EXPECT_EQ(quoted("plain <user@example.test>"), "x\"plain <user@example.test>\"");
  EXPECT_EQ(quoted("a\"b\\c\nd\re\tf"), "x\"a\\\"b\\\\c\\nd\\re\\tf\"");
  EXPECT_EQ(quoted(std::string_view("\x01z\x7f", 3)), "x\"\\u0001z\\u007f\"");
  EXPECT_EQ(quoted("\"at the ends\\"), "x\"\\\"at the ends\\\\\"");
  EXPECT_EQ(quoted("caf\xc3\xa9"), "x\"caf\xc3\xa9\"");  // UTF-8 as sent
}

}  // namespace
}  // namespace mma
