#include "dns/mx_cache.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <set>
#include <thread>

namespace mma::dns {
namespace {

Answer ok(std::vector<std::string> rdata, std::uint32_t ttl = 300) {
  return Answer{Answer::Status::Ok, std::move(rdata), ttl, false, {}};
}

std::string a(const char* ip) {
  std::string out(4, '\0');
  inet_pton(AF_INET, ip, out.data());
  return out;
}

std::string aaaa(const char* ip) {
  std::string out(16, '\0');
  inet_pton(AF_INET6, ip, out.data());
  return out;
}

class MxCacheTest : public ::testing::Test {
 protected:
  RouteRef lookup(MxCache& cache, const std::string& domain) {
    RouteRef out;
    asio::co_spawn(
        ctx,
        [](MxCache& c, std::string d, RouteRef& r) -> net::Task<void> { r = co_await c.route(d); }(
                                                       cache, domain, out),
        asio::detached);
    ctx.run();
    ctx.restart();
    return out;
  }

  asio::io_context ctx;
  ZoneResolver zone;
  MxCacheOptions opts() {
    MxCacheOptions o;
    o.port = 2526;
    o.mx_limit = 3;
    return o;
  }
  // IPv4 only, room for `capacity` domains (and as many exchangers).
  MxCacheOptions bounded(std::size_t capacity) {
    MxCacheOptions o = opts();
    o.capacity = capacity;
    o.ipv6 = false;
    return o;
  }
};

TEST_F(MxCacheTest, ExchangersInPreferenceOrderWithTheirAddresses) {
  zone.add("ex.test", RrType::Mx, ok({mx_rdata(20, "mx2.ex.test"), mx_rdata(10, "mx1.ex.test")}));
  zone.add("mx1.ex.test", RrType::A, ok({a("127.0.0.11")}));
  zone.add("mx1.ex.test", RrType::Aaaa, ok({aaaa("::1")}));
  zone.add("mx2.ex.test", RrType::A, ok({a("127.0.0.12")}));
  MxCache cache(zone, opts());
  auto r = lookup(cache, "ex.test");
  ASSERT_EQ(r->status, Route::Status::Ok);
  ASSERT_EQ(r->hosts.size(), 3u);
  EXPECT_EQ(r->hosts[0].name, "mx1.ex.test");
  EXPECT_EQ(r->hosts[0].endpoint.host, "127.0.0.11");
  EXPECT_EQ(r->hosts[0].endpoint.port, 2526);
  EXPECT_EQ(r->hosts[1].endpoint.host, "::1");
  EXPECT_EQ(r->hosts[2].name, "mx2.ex.test");
  EXPECT_FALSE(r->implicit_mx);
  // The servers that may share connections: the best preference's two addresses, kept with it.
  EXPECT_EQ(r->best,
            (std::vector<std::string>{"mx1.ex.test 127.0.0.11:2526", "mx1.ex.test [::1]:2526"}));
}

TEST_F(MxCacheTest, EqualPreferencesAreShuffledAndMxLimitApplies) {
  std::vector<std::string> mxs;
  for (int i = 0; i < 6; ++i) {
    const std::string name = "mx" + std::to_string(i) + ".eq.test";
    mxs.push_back(mx_rdata(10, name));
    zone.add(name, RrType::A, ok({a(("127.0.1." + std::to_string(i)).c_str())}));
  }
  zone.add("eq.test", RrType::Mx, ok(mxs));
  std::set<std::string> firsts;
  for (int round = 0; round < 30; ++round) {
    MxCache cache(zone, opts());
    auto r = lookup(cache, "eq.test");
    ASSERT_EQ(r->hosts.size(), 3u);  // mx_limit
    firsts.insert(r->hosts[0].name);
  }
  EXPECT_GT(firsts.size(), 1u);
}

TEST_F(MxCacheTest, ImplicitMxNullMxNxdomainAndFailures) {
  zone.add("plain.test", RrType::A, ok({a("127.0.0.5")}));
  zone.add("plain.test", RrType::Mx, Answer{Answer::Status::NoData, {}, 60, false, {}});
  zone.add("null.test", RrType::Mx, ok({mx_rdata(0, "")}));
  zone.add("broken.test", RrType::Mx, Answer{Answer::Status::Failed, {}, 0, false, "SERVFAIL"});
  zone.add("noaddr.test", RrType::Mx, Answer{Answer::Status::NoData, {}, 60, false, {}});
  zone.add("noaddr.test", RrType::Txt, ok({"x"}));
  MxCache cache(zone, opts());
  auto plain = lookup(cache, "plain.test");
  ASSERT_EQ(plain->status, Route::Status::Ok);
  EXPECT_TRUE(plain->implicit_mx);
  EXPECT_EQ(plain->hosts[0].endpoint.host, "127.0.0.5");
  auto null = lookup(cache, "null.test");
  EXPECT_EQ(null->status, Route::Status::Permanent);
  EXPECT_EQ(null->error.code, 556);
  EXPECT_EQ(null->error.enhanced, "5.1.10");
  auto nx = lookup(cache, "nowhere.test");
  EXPECT_EQ(nx->status, Route::Status::Permanent);
  EXPECT_EQ(nx->error.enhanced, "5.1.2");
  auto broken = lookup(cache, "broken.test");
  EXPECT_EQ(broken->status, Route::Status::Temporary);
  EXPECT_EQ(broken->error.code, 451);
  auto noaddr = lookup(cache, "noaddr.test");
  EXPECT_EQ(noaddr->status, Route::Status::Permanent);
  auto literal = lookup(cache, "[192.0.2.7]");
  ASSERT_EQ(literal->status, Route::Status::Ok);
  EXPECT_EQ(literal->hosts[0].endpoint.host, "192.0.2.7");
  EXPECT_EQ(literal->best.size(), 1u);
  EXPECT_EQ(plain->best.size(), plain->hosts.size());
  EXPECT_TRUE(null->best.empty());
}

TEST_F(MxCacheTest, CachesForTheTtlAndMergesConcurrentLookups) {
  zone.add("c.test", RrType::Mx, ok({mx_rdata(10, "mx.c.test")}, 1));
  zone.add("mx.c.test", RrType::A, ok({a("127.0.0.9")}, 1));
  zone.delay = std::chrono::milliseconds(20);
  MxCacheOptions o = opts();
  o.ipv6 = false;
  o.min_ttl = std::chrono::milliseconds(100);  // TTL 1 s, clamped down to... no: up to min, and
  o.max_ttl = std::chrono::milliseconds(100);  // down to max: 100 ms
  MxCache cache(zone, o);
  RouteRef r1, r2, r3;
  auto get = [](MxCache& c, RouteRef& r) -> net::Task<void> { r = co_await c.route("c.test"); };
  asio::co_spawn(ctx, get(cache, r1), asio::detached);
  asio::co_spawn(ctx, get(cache, r2), asio::detached);
  asio::co_spawn(ctx, get(cache, r3), asio::detached);
  ctx.run();
  ctx.restart();
  EXPECT_EQ(zone.queries(), 2);  // one MX, one A: three look-ups became one
  EXPECT_EQ(r1, r2);
  EXPECT_EQ(cache.stats().merged, 2u);
  lookup(cache, "c.test");
  EXPECT_EQ(zone.queries(), 2);  // cached
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  lookup(cache, "c.test");
  EXPECT_EQ(zone.queries(), 4);  // expired: asked again
}

TEST_F(MxCacheTest, AnExchangerSharedByDomainsIsAskedForOnceWhileItsAddressesLast) {
  // Three domains hosted by one provider: its exchanger's addresses are asked for once, even
  // by look-ups under way at the same time; each domain costs its MX query alone.
  for (const char* d : {"a.test", "b.test", "c.test"})
    zone.add(d, RrType::Mx, ok({mx_rdata(10, "mx.provider.test")}, 300));
  zone.add("mx.provider.test", RrType::A, ok({a("127.0.0.7")}, 0));
  zone.delay = std::chrono::milliseconds(20);
  MxCacheOptions o = opts();
  o.ipv6 = false;
  o.min_ttl = std::chrono::milliseconds(100);
  o.max_ttl = std::chrono::milliseconds(100'000);
  MxCache cache(zone, o);
  RouteRef ra, rb;
  auto get = [](MxCache& c, std::string d, RouteRef& r) -> net::Task<void> {
    r = co_await c.route(d);
  };
  asio::co_spawn(ctx, get(cache, "a.test", ra), asio::detached);
  asio::co_spawn(ctx, get(cache, "b.test", rb), asio::detached);
  ctx.run();
  ctx.restart();
  ASSERT_EQ(ra->status, Route::Status::Ok);
  ASSERT_EQ(rb->status, Route::Status::Ok);
  EXPECT_EQ(rb->hosts.at(0).endpoint.host, "127.0.0.7");
  EXPECT_EQ(zone.queries(), 3);  // two MX, one A
  auto rc = lookup(cache, "c.test");
  ASSERT_EQ(rc->status, Route::Status::Ok);
  EXPECT_EQ(rc->hosts.at(0).endpoint.host, "127.0.0.7");
  EXPECT_EQ(zone.queries(), 4);  // its MX only
  EXPECT_EQ(cache.stats().host_hits, 2u);
  // A route lasts no longer than the addresses it was made of: A's TTL (0, clamped up to
  // min_ttl) bounds it, not the MX's 300 s.
  EXPECT_LE(rc->expires, std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  zone.add("d.test", RrType::Mx, ok({mx_rdata(10, "mx.provider.test")}));
  lookup(cache, "d.test");
  EXPECT_EQ(zone.queries(), 6);  // the exchanger's addresses expired: asked for again
}

TEST_F(MxCacheTest, AFailedExchangerLookUpIsRememberedOnlyBriefly) {
  zone.add("a.test", RrType::Mx, ok({mx_rdata(10, "mx.down.test")}));
  zone.add("b.test", RrType::Mx, ok({mx_rdata(10, "mx.down.test")}));
  zone.add("mx.down.test", RrType::A, Answer{Answer::Status::Failed, {}, 0, false, "SERVFAIL"});
  MxCacheOptions o = opts();
  o.ipv6 = false;
  o.failure_ttl = std::chrono::milliseconds(50);
  MxCache cache(zone, o);
  auto r = lookup(cache, "a.test");
  EXPECT_EQ(r->status, Route::Status::Temporary);
  EXPECT_NE(r->error.text.find("SERVFAIL"), std::string::npos) << r->error.text;
  lookup(cache, "b.test");
  EXPECT_EQ(zone.queries(), 3);  // b's MX; the exchanger's failure is still fresh
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  zone.add("mx.down.test", RrType::A, ok({a("127.0.0.8")}));
  zone.add("c.test", RrType::Mx, ok({mx_rdata(10, "mx.down.test")}));
  auto c = lookup(cache, "c.test");
  ASSERT_EQ(c->status, Route::Status::Ok);
  EXPECT_EQ(zone.queries(), 5);

  // A route that left out an exchanger whose look-up failed lasts as a failure does: that
  // exchanger is asked for again soon, not at the MX's TTL.
  zone.add("d.test", RrType::Mx, ok({mx_rdata(10, "mx.up.test"), mx_rdata(20, "mx.flaky.test")}));
  zone.add("mx.up.test", RrType::A, ok({a("127.0.0.9")}));
  zone.add("mx.flaky.test", RrType::A, Answer{Answer::Status::Failed, {}, 0, false, "SERVFAIL"});
  auto d = lookup(cache, "d.test");
  ASSERT_EQ(d->status, Route::Status::Ok);
  EXPECT_EQ(d->hosts.size(), 1u);
  EXPECT_LE(d->expires, std::chrono::steady_clock::now() + o.failure_ttl);
}

TEST_F(MxCacheTest, BoundedWithLeastRecentlyUsedEviction) {
  for (const char* d : {"a.test", "b.test", "c.test"}) {
    zone.add(d, RrType::Mx, ok({mx_rdata(10, std::string("mx.") + d)}));
    zone.add(std::string("mx.") + d, RrType::A, ok({a("127.0.0.1")}));
  }
  MxCache cache(zone, bounded(2));
  lookup(cache, "a.test");
  lookup(cache, "b.test");
  lookup(cache, "a.test");  // a is now the most recent
  lookup(cache, "c.test");  // evicts b
  EXPECT_EQ(cache.stats().evicted, 1u);
  const int before = zone.queries();
  lookup(cache, "a.test");
  EXPECT_EQ(zone.queries(), before);
  lookup(cache, "b.test");
  EXPECT_GT(zone.queries(), before);
}

TEST_F(MxCacheTest, ExchangerAddressesAreBoundedWithLeastRecentlyUsedEviction) {
  // Three domains on three exchangers, a cache of two: the exchanger used least recently goes.
  for (const char* d : {"a", "b", "c", "a2", "b2", "c2"}) {
    const std::string host = std::string("mx.") + d[0] + ".test";
    zone.add(std::string(d) + ".test", RrType::Mx, ok({mx_rdata(10, host)}));
    zone.add(host, RrType::A, ok({a("127.0.0.1")}));
  }
  MxCache cache(zone, bounded(2));
  lookup(cache, "a.test");
  lookup(cache, "b.test");
  lookup(cache, "a2.test");  // mx.a.test from the cache: now the most recent exchanger
  EXPECT_EQ(cache.stats().host_hits, 1u);
  lookup(cache, "c.test");  // evicts mx.b.test
  int before = zone.queries();
  lookup(cache, "a2.test");  // the domain is cached: nothing asked
  lookup(cache, "c2.test");  // its MX, and mx.c.test from the cache
  EXPECT_EQ(zone.queries(), before + 1);
  before = zone.queries();
  lookup(cache, "b2.test");  // its MX, and mx.b.test again
  EXPECT_EQ(zone.queries(), before + 2);
}

}  // namespace
}  // namespace mma::dns
