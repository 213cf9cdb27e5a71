#include "smtp/command.hpp"

#include <gtest/gtest.h>

namespace mma::smtp {
namespace {

TEST(SplitCommand, VerbsAreCaseInsensitive) {
  EXPECT_EQ(split_command("ehlo x").verb, Verb::Ehlo);
  EXPECT_EQ(split_command("MaIl FROM:<a@b>").verb, Verb::Mail);
  EXPECT_EQ(split_command("MAIL FROM:<a@b>").arg, "FROM:<a@b>");
  EXPECT_EQ(split_command("QUIT   ").arg, "");
  EXPECT_EQ(split_command("FOO").verb, Verb::Unknown);
  EXPECT_EQ(split_command("MAILX").verb, Verb::Unknown);
}

TEST(MailFrom, ParsesPathAndParameters) {
  auto p = parse_mail_from("FROM:<Bounce+1@Example.COM> SIZE=1234 BODY=8BITMIME",
                           MailOptions{10000, false});
  ASSERT_TRUE(p.value);
  EXPECT_EQ(p.value->sender.str(), "Bounce+1@example.com");
  EXPECT_EQ(p.value->sender.local(), "Bounce+1");
  EXPECT_EQ(*p.value->params.size, 1234u);
  EXPECT_EQ(p.value->params.body, BodyType::EightBitMime);
}

TEST(MailFrom, NullSenderAndLenientForms) {
  auto null = parse_mail_from("FROM:<>", {});
  ASSERT_TRUE(null.value);
  EXPECT_TRUE(null.value->sender.empty());
  EXPECT_TRUE(parse_mail_from("FROM: <a@b.c>", {}).value);  // space after colon
  EXPECT_TRUE(parse_mail_from("FROM:a@b.c", {}).value);     // no brackets
  EXPECT_TRUE(parse_mail_from("from:<a@b.c>", {}).value);
  auto routed = parse_mail_from("FROM:<@relay.x,@r2.y:u@d.z>", {});
  ASSERT_TRUE(routed.value);
  EXPECT_EQ(routed.value->sender.str(), "u@d.z");  // source route ignored (RFC 5321 §C)
}

TEST(MailFrom, Errors) {
  EXPECT_EQ(parse_mail_from("TO:<a@b.c>", {}).error.code, 501);
  EXPECT_EQ(parse_mail_from("FROM:<a@b.c", {}).error.code, 501);
  EXPECT_EQ(parse_mail_from("FROM:<nodomain>", {}).error.code, 501);
  EXPECT_EQ(parse_mail_from("FROM:<a@b.c> SIZE=big", {}).error.code, 501);
  EXPECT_EQ(parse_mail_from("FROM:<a@b.c> BODY=BINARYMIME", {}).error.code, 501);
  EXPECT_EQ(parse_mail_from("FROM:<a@b.c> FOO=1", {}).error.code, 555);
  EXPECT_EQ(parse_mail_from("FROM:<a@b.c> SMTPUTF8", {}).error.code, 555);  // not offered
  auto big = parse_mail_from("FROM:<a@b.c> SIZE=20000", MailOptions{10000, false});
  EXPECT_EQ(big.error.code, 552);
  EXPECT_EQ(big.error.enhanced, "5.3.4");
  EXPECT_EQ(parse_mail_from("FROM:<" + std::string(65, 'a') + "@b.c>", {}).error.code, 553);
}

TEST(RcptTo, ParsesAddresses) {
  auto p = parse_rcpt_to("TO:<\"john doe\"@Example.org>", false);
  ASSERT_TRUE(p.value);
  EXPECT_EQ(p.value->str(), "\"john doe\"@example.org");
  EXPECT_EQ(p.value->domain(), "example.org");
  EXPECT_TRUE(parse_rcpt_to("TO:<a@[192.0.2.1]>", false).value);
  EXPECT_TRUE(parse_rcpt_to("TO:<a@[IPv6:2001:db8::1]>", false).value);
}

TEST(RcptTo, Errors) {
  EXPECT_EQ(parse_rcpt_to("TO:<>", false).error.code, 501);
  EXPECT_EQ(parse_rcpt_to("TO:<postmaster>", false).error.code, 501);
  EXPECT_EQ(parse_rcpt_to("TO:<a@-bad.com>", false).error.code, 501);
  EXPECT_EQ(parse_rcpt_to("TO:<a@b..c>", false).error.code, 501);
  EXPECT_EQ(parse_rcpt_to("TO:<a@[999.1.1.1]>", false).error.code, 501);
  EXPECT_EQ(parse_rcpt_to("TO:<a b@c.d>", false).error.code, 501);
  EXPECT_EQ(parse_rcpt_to("TO:<a@b.c> NOTIFY=NEVER", false).error.code, 555);
  EXPECT_EQ(parse_rcpt_to("FROM:<a@b.c>", false).error.code, 501);
  EXPECT_EQ(parse_rcpt_to("TO:<\xc3\xa9@b.c>", false).error.code, 501);  // UTF-8 needs SMTPUTF8
  EXPECT_TRUE(parse_rcpt_to("TO:<\xc3\xa9@b.c>", true).value);
}

TEST(ParseDomain, Labels) {
  EXPECT_EQ(parse_domain("example.com", false), 11u);
  EXPECT_EQ(parse_domain("a-b.c", false), 5u);
  EXPECT_EQ(parse_domain("ab-.c", false), 0u);
  EXPECT_EQ(parse_domain(std::string(64, 'a') + ".c", false), 0u);
  EXPECT_EQ(parse_domain(std::string(63, 'a') + ".c", false), 65u);
}

}  // namespace
}  // namespace mma::smtp
