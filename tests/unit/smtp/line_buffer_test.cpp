#include "smtp/line_buffer.hpp"

#include <gtest/gtest.h>

#include <string>

namespace mma::smtp {
namespace {

void put(LineBuffer& b, std::string_view s) {
  auto room = b.prepare(s.size());
  ASSERT_GE(room.size(), s.size());
  std::copy(s.begin(), s.end(), room.begin());
  b.commit(s.size());
}

TEST(LineBuffer, SplitsCrlfAndBareLf) {
  LineBuffer b;
  put(b, "EHLO a\r\nNOOP\nQU");
  LineBuffer::Line l;
  ASSERT_EQ(b.next_line(100, l), LineBuffer::Status::Line);
  EXPECT_EQ(l.text, "EHLO a");
  EXPECT_TRUE(l.crlf);
  ASSERT_EQ(b.next_line(100, l), LineBuffer::Status::Line);
  EXPECT_EQ(l.text, "NOOP");
  EXPECT_FALSE(l.crlf);
  EXPECT_EQ(b.next_line(100, l), LineBuffer::Status::NeedMore);
  put(b, "IT\r\n");
  ASSERT_EQ(b.next_line(100, l), LineBuffer::Status::Line);
  EXPECT_EQ(l.text, "QUIT");
}

TEST(LineBuffer, ReportsTooLongWithoutGrowingAndRecovers) {
  LineBuffer b(1024);
  put(b, std::string(600, 'x'));
  LineBuffer::Line l;
  EXPECT_EQ(b.next_line(510, l), LineBuffer::Status::TooLong);
  EXPECT_FALSE(b.discard_line());
  put(b, std::string(300, 'y') + "\r\nNOOP\r\n");
  EXPECT_TRUE(b.discard_line());
  ASSERT_EQ(b.next_line(510, l), LineBuffer::Status::Line);
  EXPECT_EQ(l.text, "NOOP");
}

TEST(LineBuffer, ExactLimitIsAccepted) {
  LineBuffer b;
  put(b, std::string(510, 'a') + "\r\n");
  LineBuffer::Line l;
  ASSERT_EQ(b.next_line(510, l), LineBuffer::Status::Line);
  EXPECT_EQ(l.text.size(), 510u);
}

TEST(LineBuffer, NeverExceedsCapacity) {
  LineBuffer b(4096);
  for (int i = 0; i < 100; ++i) {
    auto room = b.prepare(1);
    EXPECT_LE(room.size(), 4096u);
    b.commit(room.size());
    b.consume(room.size());
  }
}

TEST(LineBuffer, EmptyUntilFirstPrepare) {
  LineBuffer b;  // allocates nothing yet: thousands of idle connections hold one each
  LineBuffer::Line l;
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.data().size(), 0u);
  EXPECT_EQ(b.next_line(100, l), LineBuffer::Status::NeedMore);
  EXPECT_FALSE(b.discard_line());
  b.consume(10);
  EXPECT_TRUE(b.empty());
}

TEST(LineBuffer, KeepsUnreadBytesWhenGrowing) {
  LineBuffer b(1 << 20);
  std::string text;
  for (int i = 0; i < 5000; ++i) text += "250-line " + std::to_string(i) + "\r\n";
  // Larger than the first allocation: every prepare() may move or grow the buffer.
  for (std::size_t pos = 0; pos < text.size(); pos += 1000)
    put(b, std::string_view(text).substr(pos, 1000));
  LineBuffer::Line l;
  for (int i = 0; i < 5000; ++i) {
    ASSERT_EQ(b.next_line(100, l), LineBuffer::Status::Line) << i;
    EXPECT_EQ(l.text, "250-line " + std::to_string(i));
  }
  EXPECT_TRUE(b.empty());
}

}  // namespace
}  // namespace mma::smtp
