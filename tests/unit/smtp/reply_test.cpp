#include "smtp/reply.hpp"

#include <gtest/gtest.h>

#include "smtp/reply_parser.hpp"

namespace mma::smtp {
namespace {

TEST(Reply, FormatsMultiLineWithEnhancedCodes) {
  std::string out;
  append_reply(out, make_reply(250, "2.0.0", "first\nsecond"), true);
  EXPECT_EQ(out, "250-2.0.0 first\r\n250 2.0.0 second\r\n");
  out.clear();
  append_reply(out, make_reply(250, "2.0.0", "first\nsecond"), false);
  EXPECT_EQ(out, "250-first\r\n250 second\r\n");
}

// One line for logs: the lines of a multi-line reply joined by " / ".
TEST(Reply, SummaryIsOneLine) {
  EXPECT_EQ(make_reply(250, "2.0.0", "Ok: queued").summary(), "250 2.0.0 Ok: queued");
  EXPECT_EQ(make_reply(550, "", "no\nsuch\nuser").summary(), "550 no / such / user");
  EXPECT_EQ(make_reply(421, "4.3.2", "").summary(), "421 4.3.2 ");
  EXPECT_EQ(make_reply(250, "", "a\n").summary(), "250 a / ");
  std::string out = "x: ";
  make_reply(451, "4.4.1", "try\nlater").append_summary(out);
  EXPECT_EQ(out, "x: 451 4.4.1 try / later");
}

TEST(Reply, EmptyTextIsOneLine) {
  std::string out;
  append_reply(out, make_reply(354, "", ""), true);
  EXPECT_EQ(out, "354 \r\n");
}

TEST(ReplyParser, ParsesMultiLineAndEnhanced) {
  LineBuffer in;
  const std::string wire = "250-mx.example PIPELINING\r\n250-SIZE 100\r\n250 2.0.0 done\r\n";
  auto room = in.prepare(wire.size());
  std::copy(wire.begin(), wire.end(), room.begin());
  in.commit(wire.size());
  ReplyParser p;
  ASSERT_EQ(p.parse(in), ReplyParser::Status::Complete);
  Reply r = p.take();
  EXPECT_EQ(r.code, 250);
  EXPECT_EQ(r.text, "mx.example PIPELINING\nSIZE 100\ndone");
  EXPECT_EQ(r.enhanced, "");  // only the first line's code counts
  EXPECT_TRUE(in.empty());
}

TEST(ReplyParser, TakesEnhancedFromFirstLine) {
  ReplyParser p;
  EXPECT_EQ(p.on_line("550 5.1.1 <a@b>: user unknown"), ReplyParser::Status::Complete);
  Reply r = p.take();
  EXPECT_EQ(r.enhanced, "5.1.1");
  EXPECT_EQ(r.text, "<a@b>: user unknown");
}

TEST(ReplyParser, RejectsGarbage) {
  ReplyParser p;
  EXPECT_EQ(p.on_line("hello"), ReplyParser::Status::Garbled);
  ReplyParser q;
  EXPECT_EQ(q.on_line("250-a"), ReplyParser::Status::NeedMore);
  EXPECT_EQ(q.on_line("251 b"), ReplyParser::Status::Garbled);
  ReplyParser r;
  EXPECT_EQ(r.on_line("650 x"), ReplyParser::Status::Garbled);
  ReplyParser s;
  EXPECT_EQ(s.on_line("250x"), ReplyParser::Status::Garbled);
}

TEST(ReplyParser, EnhancedClassMustMatch) {
  ReplyParser p;
  EXPECT_EQ(p.on_line("250 5.1.1 odd"), ReplyParser::Status::Complete);
  Reply r = p.take();
  EXPECT_EQ(r.enhanced, "");
  EXPECT_EQ(r.text, "5.1.1 odd");
}

}  // namespace
}  // namespace mma::smtp

#include "smtp/header_scan.hpp"

namespace mma::smtp {
namespace {

TEST(HeaderScan, FindsUnfoldedValueInHeaderOnly) {
  const std::string msg =
      "Received: x\r\nmessage-id:\r\n <abc@def>\r\nSubject: hi\r\n\r\nMessage-ID: "
      "<body@not.header>\r\n";
  EXPECT_EQ(find_header(msg, "Message-ID"), "<abc@def>");
  EXPECT_EQ(find_header(msg, "Subject"), "hi");
  EXPECT_EQ(find_header(msg, "To"), "");
}

}  // namespace
}  // namespace mma::smtp
