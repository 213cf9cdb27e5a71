#include "smtp/data_reader.hpp"

#include <gtest/gtest.h>

#include <string>

namespace mma::smtp {
namespace {

struct Read {
  std::string wire;
  std::size_t consumed = 0;
  bool done = false, too_big = false, too_long = false;
  std::size_t size = 0;
};

Read read_all(std::string_view in, DataLimits limits = {}, std::size_t chunk = 1'000'000) {
  Read r;
  DataReader d(r.wire, limits);
  while (r.consumed < in.size() && !d.done()) {
    r.consumed += d.feed(in.substr(r.consumed, chunk));
  }
  r.done = d.done();
  r.too_big = d.too_big();
  r.too_long = d.line_too_long();
  r.size = d.size();
  return r;
}

TEST(DataReader, KeepsWireFormAndStopsAtTerminator) {
  const auto r = read_all("Subject: x\r\n\r\n..dotted\r\nbody\r\n.\r\nQUIT\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.wire, "Subject: x\r\n\r\n..dotted\r\nbody\r\n");
  EXPECT_EQ(r.consumed, std::string_view("Subject: x\r\n\r\n..dotted\r\nbody\r\n.\r\n").size());
  // RFC 1870 size counts the un-stuffed content.
  EXPECT_EQ(r.size, r.wire.size() - 1);
}

TEST(DataReader, SameResultWhateverTheChunking) {
  const std::string in = "a\r\n.b\r\n\r\n..\r\nlast\r\n.\r\n";
  const auto whole = read_all(in);
  for (std::size_t chunk = 1; chunk < 8; ++chunk) {
    const auto r = read_all(in, {}, chunk);
    EXPECT_EQ(r.wire, whole.wire) << chunk;
    EXPECT_EQ(r.consumed, whole.consumed) << chunk;
  }
}

TEST(DataReader, EmptyMessage) {
  const auto r = read_all(".\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.wire, "");
}

TEST(DataReader, BareLfIsNormalisedButNeverEndsTheData) {
  // "\n.\n" is not CRLF.CRLF: no smuggling (the 2023 SMTP smuggling attacks).
  const auto r = read_all("a\n.\nMAIL FROM:<x@y>\r\n.\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.wire, "a\r\n..\r\nMAIL FROM:<x@y>\r\n");
}

TEST(DataReader, DotAfterBareLfEndedLineIsStuffed) {
  const auto r = read_all("a\n.\r\nb\r\n.\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.wire, "a\r\n..\r\nb\r\n");
}

TEST(DataReader, TooBigKeepsReadingToTheEnd) {
  const std::string in =
      std::string(100, 'x') + "\r\n" + std::string(100, 'y') + "\r\n.\r\nNOOP\r\n";
  const auto r = read_all(in, DataLimits{150, 998});
  EXPECT_TRUE(r.done);
  EXPECT_TRUE(r.too_big);
  EXPECT_EQ(r.consumed, in.size() - 6);
}

TEST(DataReader, LineTooLong) {
  const auto ok = read_all(std::string(998, 'x') + "\r\n.\r\n");
  EXPECT_FALSE(ok.too_long);
  const auto bad = read_all(std::string(999, 'x') + "\r\n.\r\n");
  EXPECT_TRUE(bad.too_long);
  EXPECT_TRUE(bad.done);
}

// RFC 5321 §4.5.3.1.6: 1000 octets with the CRLF, "not counting the leading dot duplicated for
// transparency". A 998-octet line that starts with "." is 999 on the wire, whatever the chunking.
TEST(DataReader, TheDotAddedForTransparencyDoesNotCountInTheLineLimit) {
  const std::string dotted = "." + std::string(998, '.');  // 998 dots, stuffed
  for (std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{1'000'000}}) {
    const auto ok = read_all(dotted + "\r\n.\r\n", {}, chunk);
    EXPECT_FALSE(ok.too_long) << chunk;
    EXPECT_EQ(ok.wire, dotted + "\r\n");
    EXPECT_EQ(ok.size, 1000u);
    const auto bad = read_all("." + dotted + "\r\n.\r\n", {}, chunk);  // 999 text octets
    EXPECT_TRUE(bad.too_long) << chunk;
    // Without a leading dot, nothing is added on top.
    EXPECT_TRUE(read_all(std::string(999, 'x') + "\r\n.\r\n", {}, chunk).too_long) << chunk;
  }
}

TEST(DataReader, NeedsMoreWithoutTerminator) {
  const auto r = read_all("abc\r\n.");
  EXPECT_FALSE(r.done);
}

}  // namespace
}  // namespace mma::smtp

namespace mma::smtp {
namespace {

// The disk cache moves complete_bytes() out of the buffer between feeds: whatever the
// chunking and the moments chosen, the bytes moved plus what is left equal the whole.
TEST(DataReader, CompleteBytesCanBeMovedOutAtAnyPointWithoutChangingTheResult) {
  const std::string in = "Subject: x\r\n\r\n..dotted\r\nbare\nlf\n.\nafter lone dot\r\n" +
                         std::string(990, 'y') + "\r\n" + std::string(500, 'z') + "\r\n.\r\n";
  const std::string whole = read_all(in).wire;
  for (std::size_t chunk : {1u, 2u, 3u, 7u, 64u, 1000u}) {
    for (std::size_t every : {1u, 2u, 5u}) {
      std::string buffer, moved;
      DataReader d(buffer, {});
      std::size_t pos = 0, feeds = 0;
      while (!d.done()) {
        ASSERT_LT(pos, in.size());
        pos += d.feed(std::string_view(in).substr(pos, chunk));
        if (++feeds % every == 0 || d.done()) {
          const std::size_t n = d.complete_bytes();
          ASSERT_LE(n, buffer.size());
          moved.append(buffer, 0, n);
          buffer.erase(0, n);
        }
      }
      EXPECT_EQ(buffer, "") << "chunk " << chunk << " every " << every;
      EXPECT_EQ(moved, whole) << "chunk " << chunk << " every " << every;
    }
  }
}

}  // namespace
}  // namespace mma::smtp
