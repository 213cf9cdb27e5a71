#include "smtp/chunk_reader.hpp"

#include <gtest/gtest.h>

#include <random>

namespace mma::smtp {
namespace {

using namespace std::string_view_literals;

std::string wire_of(const std::vector<std::string_view>& chunks, DataLimits limits = {}) {
  std::string wire;
  ChunkReader r(wire, limits);
  for (auto c : chunks) r.feed(c);
  r.finish();
  EXPECT_TRUE(r.data().done());
  return wire;
}

std::string joined(const UnstuffedBody& b) {
  std::string s;
  for (auto span : b.spans) s += span;
  EXPECT_EQ(s.size(), b.size);
  return s;
}

TEST(ChunkReader, StuffsLeadingDotsSoTheWireFormIsDatas) {
  EXPECT_EQ(wire_of({"Subject: x\r\n\r\n.hidden\r\n.\r\nend\r\n"}),
            "Subject: x\r\n\r\n..hidden\r\n..\r\nend\r\n");
  // A "." that starts a line in the next chunk, and one at the very start of the content.
  EXPECT_EQ(wire_of({".a\r\nb\r", "\n", ".c\r\n"}), "..a\r\nb\r\n..c\r\n");
  EXPECT_EQ(wire_of({"x", "\r", "\n.", "y\r\n"}), "x\r\n..y\r\n");
}

TEST(ChunkReader, EndsTheContentWhereItStands) {
  EXPECT_EQ(wire_of({"no line end"}), "no line end\r\n");
  EXPECT_EQ(wire_of({}), "");  // BDAT 0 LAST: an empty message
  EXPECT_EQ(wire_of({"ends in NUL\0"sv}), "ends in NUL\0\r\n"sv);
  EXPECT_EQ(wire_of({"."}), "..\r\n");
  // A bare LF at the end ends the last line; no empty line is added.
  EXPECT_EQ(wire_of({"a\n"}), "a\r\n");
  EXPECT_EQ(wire_of({"a\n", "b\n"}), "a\r\nb\r\n");
  EXPECT_EQ(wire_of({"x\r\n", "\n"}), "x\r\n\r\n");
  std::string wire;
  ChunkReader cr(wire, {});
  cr.feed("ends in CR\r");  // a CR with no LF after it is bare
  cr.finish();
  EXPECT_TRUE(cr.data().done());
  EXPECT_TRUE(cr.data().bare_cr());
  std::string sized;
  ChunkReader size(sized, {});
  size.feed("a\n.b");
  size.finish();
  EXPECT_EQ(size.data().size(), 7u);  // RFC 1870: "a" CRLF ".b" CRLF, un-stuffed
}

TEST(ChunkReader, KeepsDatasRules) {
  EXPECT_EQ(wire_of({"a\nb\r\n"}), "a\r\nb\r\n");  // bare LF normalised
  std::string wire;
  ChunkReader smuggler(wire, {});
  smuggler.feed("a\rb\r\n");  // a bare CR: refused, as after DATA
  smuggler.finish();
  EXPECT_TRUE(smuggler.data().bare_cr());
  ChunkReader big(wire, DataLimits{.max_size = 10});
  big.feed("0123456789\r\n0123456789\r\n");
  big.finish();
  EXPECT_TRUE(big.data().too_big());
  EXPECT_TRUE(big.data().done());
}

TEST(UnstuffedBody, IsTheContentAsBdatSendsIt) {
  const std::string wire = "..a\r\nb\r\n..\r\n...c\r\n";
  const UnstuffedBody b = unstuffed(wire);
  EXPECT_EQ(joined(b), ".a\r\nb\r\n.\r\n..c\r\n");
  for (auto span : b.spans) {  // views into the body, never a copy
    EXPECT_GE(span.data(), wire.data());
    EXPECT_LE(span.data() + span.size(), wire.data() + wire.size());
  }
  EXPECT_EQ(joined(unstuffed("no line end")), "no line end\r\n");
  EXPECT_EQ(joined(unstuffed("")), "\r\n");  // as DATA sends an empty body: "\r\n.\r\n"
  EXPECT_EQ(unstuffed("plain\r\n").spans.size(), 1u);
}

// Whether a body needs un-stuffing is learnt as it is read, so that BDAT need not scan it again.
TEST(UnstuffedBody, SkipsTheScanOfABodyWithNoDotLines) {
  const auto dot_lines = [](std::string_view raw) {
    std::string wire;
    ChunkReader r(wire, {});
    r.feed(raw);
    r.finish();
    return r.data().dot_lines();
  };
  EXPECT_FALSE(dot_lines("Subject: x\r\n\r\nno dot. at any line start\r\n"));
  EXPECT_TRUE(dot_lines("a\r\n.b\r\n"));
  EXPECT_TRUE(dot_lines(".first\r\n"));
  EXPECT_TRUE(dot_lines("a\n.\n"));  // a lone dot after a bare LF is content, stuffed
  std::string wire;
  DataReader d(wire, {});
  d.feed("a\r\n..b\r\n.\r\n");
  EXPECT_TRUE(d.dot_lines());  // the terminator does not count, the stuffed line does
  DataReader plain(wire, {});
  plain.feed("a\r\nb\r\n.\r\n");
  EXPECT_FALSE(plain.dot_lines());
  const std::string body = "a\r\nb.\r\n";
  const UnstuffedBody b = unstuffed(body, /*dot_lines=*/false);
  ASSERT_EQ(b.spans.size(), 1u);
  EXPECT_EQ(b.spans[0].data(), body.data());
  EXPECT_EQ(joined(b), body);
  EXPECT_EQ(joined(unstuffed("no line end", false)), "no line end\r\n");
}

// What a client sends by BDAT arrives in the same wire form as by DATA, and leaves by BDAT as it
// came, whatever the chunk boundaries.
TEST(ChunkReader, RoundTripsRandomContentThroughRandomChunks) {
  std::mt19937 rng(20261128);
  const std::vector<std::string> pieces = {".", "..",   "a",         "Subject: x",
                                           " ", "\r\n", "\r\n.\r\n", "\n"};
  for (int round = 0; round < 500; ++round) {
    std::string raw;
    const int n = static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i) raw += pieces[rng() % pieces.size()];
    raw += "\r\n";
    std::vector<std::string_view> chunks;
    for (std::size_t pos = 0; pos < raw.size();) {
      const std::size_t len = std::min<std::size_t>(1 + rng() % 7, raw.size() - pos);
      chunks.emplace_back(raw.data() + pos, len);
      pos += len;
    }
    std::string wire;
    ChunkReader reader(wire, {});
    for (auto c : chunks) reader.feed(c);
    reader.finish();
    ASSERT_TRUE(reader.data().done());
    // dot_lines() is false only when no line starts with a dot, when un-stuffing is a no-op.
    const bool dot_line = wire.starts_with(".") || wire.find("\n.") != std::string::npos;
    EXPECT_EQ(reader.data().dot_lines(), dot_line) << raw;
    EXPECT_EQ(joined(unstuffed(wire, reader.data().dot_lines())), joined(unstuffed(wire)));
    std::string normalised;  // bare LF ends a line as CRLF would
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '\n' && (i == 0 || raw[i - 1] != '\r')) normalised += '\r';
      normalised += raw[i];
    }
    EXPECT_EQ(joined(unstuffed(wire)), normalised) << raw;
    // The same content by DATA, stuffed by the client, gives the same wire form.
    std::string stuffed = raw[0] == '.' ? "." : "";
    for (char c : raw) {
      stuffed += c;
      if (c == '\n') stuffed += '\x01';  // a line start: marked, stuffed below
    }
    std::string data_wire, by_data;
    for (std::size_t i = 0; i < stuffed.size(); ++i) {
      if (stuffed[i] != '\x01') {
        by_data += stuffed[i];
      } else if (i + 1 < stuffed.size() && stuffed[i + 1] == '.') {
        by_data += '.';
      }
    }
    by_data += ".\r\n";
    DataReader dr(data_wire, {});
    dr.feed(by_data);
    ASSERT_TRUE(dr.done());
    EXPECT_EQ(data_wire, wire);
  }
}

}  // namespace
}  // namespace mma::smtp
