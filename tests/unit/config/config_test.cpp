#include "config/config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/cidr.hpp"
#include "config/endpoint.hpp"
#include "config/params.hpp"
#include "config/units.hpp"

namespace mma::config {
namespace {

using ::testing::HasSubstr;

const char* kExample = R"(
[[listener]]
address = "127.0.0.1:2525"      # also "unix:/path"
protocol = "smtp"               # or "lmtp"
ack = "received"                # or "delivered"
allow = ["127.0.0.0/8"]         # client networks allowed to relay

[delivery]
port = 25                       # default port of remote MTAs

[[queue]]
name = "big"
domains = ["big.test", "*.big.test"]
mx = ["127.0.0.2:2526"]         # static, pre-resolved hosts: no DNS look-up
max_mta = 50

[[queue]]
name = "general"                # the queue with no `domains` is the general queue
mx = ["127.0.0.1:2526"]         # until DNS exists (next issue) the general queue needs static hosts too
max_mta = 200
)";

std::string error_of(const std::string& toml) {
  try {
    parse_config(toml, "mma.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, TheIssueExampleLoads) {
  Config c = parse_config(kExample, "mma.toml");
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].address.host, "127.0.0.1");
  EXPECT_EQ(c.listeners[0].address.port, 2525);
  EXPECT_EQ(c.listeners[0].ack, AckMode::Received);
  ASSERT_EQ(c.queues.size(), 2u);
  EXPECT_EQ(c.queues[0].max_mta, 50u);
  EXPECT_EQ(c.queues[0].mx[0].to_string(), "127.0.0.2:2526");
  EXPECT_TRUE(c.queues[1].general());
  EXPECT_EQ(c.queues[1].max_retries, 10u);
  EXPECT_EQ(c.delivery.port, 25);
}

TEST(Config, ChunkingIsOnUnlessTurnedOff) {
  Config on = parse_config(kExample, "mma.toml");
  EXPECT_TRUE(on.listeners[0].chunking);
  EXPECT_TRUE(on.queues[0].chunking);
  Config off = parse_config(
      "[[listener]]\naddress = \"127.0.0.1:2525\"\nchunking = false\n"
      "[[queue]]\nname = \"g\"\nmx = [\"a:1\"]\nchunking = false\n",
      "mma.toml");
  EXPECT_FALSE(off.listeners[0].chunking);
  EXPECT_FALSE(off.queues[0].chunking);
  EXPECT_THAT(error_of("[[queue]]\nname = \"g\"\nmx = [\"a:1\"]\nchunking = \"no\"\n"),
              HasSubstr("mma.toml:4: key 'chunking'"));
}

TEST(Config, DefaultsAndUnits) {
  Config c = parse_config(R"(
[delivery]
port = 2526
timeouts = { connect = "250ms", data_done = 60 }
[[queue]]
name = "g"
mx = ["localhost"]
retry_delay = "2s"
max_size = "10M"
timeouts = { idle = "1m" }
pipeline_within = "20ms"
)",
                          "x.toml");
  EXPECT_EQ(c.queues[0].pipeline_within.count(), 20);
  EXPECT_EQ(c.queues[0].move_after.count(), 200);  // the default
  EXPECT_EQ(c.queues[0].mx[0].port, 2526);         // [delivery] port when the host has none
  EXPECT_EQ(c.queues[0].retry_delay.count(), 2000);
  EXPECT_EQ(c.queues[0].max_size, 10u << 20);
  EXPECT_EQ(c.queues[0].timeouts.connect.count(), 250);      // inherited from [delivery]
  EXPECT_EQ(c.queues[0].timeouts.data_done.count(), 60000);  // inherited, integer = seconds
  EXPECT_EQ(c.queues[0].timeouts.idle.count(), 60000);       // the queue's own
  EXPECT_TRUE(c.listeners.empty());
}

TEST(Config, ErrorsNameFileLineAndKey) {
  EXPECT_EQ(error_of("[[queue]]\nname = \"g\"\nmx = [\"a:1\"]\nmax_mta = \"fifty\"\n"),
            "mma.toml:4: key 'max_mta' in [[queue]] \"g\": expected an integer from 1 to 100000");
  EXPECT_THAT(error_of("[[queue]]\nname = \"g\"\nmx = [\"a:1\"]\nmaxmta = 5\n"),
              HasSubstr("mma.toml:4: key 'maxmta' in [[queue]] \"g\": is not a known setting (did "
                        "you mean 'max_mta'?)"));
  EXPECT_THAT(
      error_of("[[listener]]\naddress = \"127.0.0.1\"\n[[queue]]\nname=\"g\"\nmx=[\"a:1\"]\n"),
      HasSubstr("mma.toml:2: key 'address' in [[listener]] #1: missing port"));
  EXPECT_THAT(error_of("[[listener]]\naddress = \"127.0.0.1:25\"\nack = "
                       "\"fast\"\n[[queue]]\nname=\"g\"\nmx=[\"a:1\"]\n"),
              HasSubstr("mma.toml:3: key 'ack'"));
  EXPECT_THAT(error_of("[serve]\nthreads = 1\n"),
              HasSubstr("mma.toml:1: key 'serve': unknown section"));
  EXPECT_THAT(error_of("[[queue]]\nname = \"g\"\nmx = [\"a:1\"]\n[[queue]]\nname = \"g\"\nmx = "
                       "[\"b:1\"]\ndomains=[\"x.test\"]\n"),
              HasSubstr("the name is used twice"));
  EXPECT_THAT(
      error_of(
          "[[queue]]\nname = \"a\"\nmx = [\"a:1\"]\n[[queue]]\nname = \"b\"\nmx = [\"b:1\"]\n"),
      HasSubstr("only one queue may omit domains"));
  EXPECT_THAT(error_of("[[queue]]\nname = \"a\"\ndomains = [\"bad domain\"]\nmx = [\"a:1\"]\n"),
              HasSubstr("mma.toml:3: key 'domains'"));
  EXPECT_EQ(error_of("[[queue]]\nname = \"a\"\n"), "");  // no mx: resolved through DNS
  EXPECT_THAT(
      error_of("[[queue]]\nname = \"a\"\ndomains = [\"a.test\"]\nmx = [\"h:1\"]\nresolve = true\n"),
      HasSubstr("mma.toml:5: key 'resolve' in [[queue]] \"a\": cannot be used with mx"));
  EXPECT_THAT(error_of("[[queue]]\nname = \"a\"\nretry = \"b\"\n"),
              HasSubstr("mma.toml:1: key 'retry' in [[queue]] \"a\": no queue is named \"b\""));
  EXPECT_THAT(error_of("[[queue]]\nname = \"a\"\nretry = \"b\"\n[[queue]]\nname = \"b\"\ndomains = "
                       "[\"b.test\"]\n"
                       "retry = \"a\"\n"),
              HasSubstr("the retry queues form a loop"));
  EXPECT_THAT(error_of("[[queue]]\nname = \"a\"\nmx = [\"|sendmail -bs\"]\n"),
              HasSubstr("absolute path"));
  EXPECT_THAT(error_of("[[queue]]\nname = \"a\"\ntls = \"always\"\n"), HasSubstr("key 'tls'"));
  EXPECT_THAT(error_of("[dns]\nservers = [\"dns.example\"]\n[[queue]]\nname = \"a\"\n"),
              HasSubstr("mma.toml:2: key 'servers' in [dns]"));
  EXPECT_THAT(error_of("x = [\n"), HasSubstr("mma.toml:"));
  EXPECT_THAT(error_of(""), HasSubstr("at least one [[queue]]"));
  EXPECT_THAT(error_of("[[queue]]\nname=\"g\"\nmx=[\"a:1\"]\ntimeouts = { conect = \"1s\" }\n"),
              HasSubstr("key 'conect' in [[queue]] \"g\" timeouts: is not a known setting (did you "
                        "mean 'connect'?)"));
}

TEST(Config, NeverAnOpenRelay) {
  EXPECT_THAT(
      error_of("[[listener]]\naddress = \"0.0.0.0:25\"\nallow = [\"10.0.0.0/8\", \"0.0.0.0/0\"]\n"
               "[[queue]]\nname=\"g\"\nmx=[\"a:1\"]\n"),
      HasSubstr(
          "mma.toml:3: key 'allow' in [[listener]] #1: '0.0.0.0/0' would make mma an open relay"));
  EXPECT_THAT(error_of("[[listener]]\naddress = \"[::]:25\"\nallow = "
                       "[\"::/0\"]\n[[queue]]\nname=\"g\"\nmx=[\"a:1\"]\n"),
              HasSubstr("open relay"));
  Config c = parse_config(
      "[[listener]]\naddress = \"[::1]:2525\"\n[[queue]]\nname=\"g\"\nmx=[\"a:1\"]\n", "x");
  ASSERT_EQ(c.listeners[0].allow.size(), 2u);  // loopback only by default
  EXPECT_EQ(c.listeners[0].address.host, "::1");
}

TEST(Config, EveryKeyIsDocumented) {
  const std::string ref = config_reference();
  for (const auto& p : all_params()) {
    EXPECT_THAT(ref, HasSubstr("| `" + std::string(p.key) + "` |"));
    EXPECT_FALSE(p.doc.empty()) << p.key;
  }
}

TEST(Units, DurationsAndSizes) {
  EXPECT_EQ(parse_duration("250ms")->count(), 250);
  EXPECT_EQ(parse_duration("1.5s")->count(), 1500);
  EXPECT_EQ(parse_duration("2m")->count(), 120000);
  EXPECT_EQ(parse_duration("1d")->count(), 86400000);
  EXPECT_FALSE(parse_duration("soon"));
  EXPECT_FALSE(parse_duration("-1s"));
  EXPECT_EQ(*parse_size("512K"), 512u * 1024);
  EXPECT_EQ(*parse_size("10MB"), 10u << 20);
  EXPECT_EQ(*parse_size("100"), 100u);
  EXPECT_FALSE(parse_size("10X"));
}

TEST(Cidr, MatchesBothFamilies) {
  std::string err;
  auto v4 = parse_cidr("10.1.0.0/16", err);
  ASSERT_TRUE(v4);
  std::array<std::uint8_t, 16> a{};
  ASSERT_TRUE(parse_ip("10.1.200.3", a));
  EXPECT_TRUE(v4->contains(a));
  ASSERT_TRUE(parse_ip("10.2.0.1", a));
  EXPECT_FALSE(v4->contains(a));
  auto v6 = parse_cidr("2001:db8::/32", err);
  ASSERT_TRUE(parse_ip("2001:db8:1::5", a));
  EXPECT_TRUE(v6->contains(a));
  EXPECT_FALSE(parse_cidr("10.0.0.0/33", err));
  EXPECT_FALSE(parse_cidr("example.com", err));
  EXPECT_TRUE(parse_cidr("0.0.0.0/0", err)->matches_everything());
  EXPECT_FALSE(parse_cidr("127.0.0.0/8", err)->matches_everything());
}

TEST(Endpoint, Forms) {
  std::string err;
  EXPECT_EQ(parse_endpoint("127.0.0.1:25", 0, err)->port, 25);
  EXPECT_EQ(parse_endpoint("[::1]:2525", 0, err)->host, "::1");
  EXPECT_EQ(parse_endpoint("unix:/run/mma.sock", 0, err)->kind, Endpoint::Kind::Unix);
  EXPECT_EQ(parse_endpoint("mx.example.com", 25, err)->port, 25);
  EXPECT_FALSE(parse_endpoint("mx.example.com", 0, err));
  EXPECT_FALSE(parse_endpoint("::1:25", 0, err));
  EXPECT_FALSE(parse_endpoint("host:99999", 0, err));
}

}  // namespace
}  // namespace mma::config
