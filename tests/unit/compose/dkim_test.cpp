#include "compose/dkim.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mma::compose {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------------
// Canonicalization (RFC 6376 §3.4.2, §3.4.4), against expectations worked out by hand.

TEST(DkimRelaxedHeader, LowerCasesTheNameAndDropsWspAroundTheColon) {
  EXPECT_EQ(detail::relaxed_header("SUBJECT \t:  Hi\r\n"), "subject:Hi\r\n");
  EXPECT_EQ(detail::relaxed_header("Message-ID:<a@b>"), "message-id:<a@b>\r\n");
}

TEST(DkimRelaxedHeader, CollapsesWspRunsAndStripsBothEnds) {
  EXPECT_EQ(detail::relaxed_header("Subject:  Is   dinner\t\tready? \t\r\n"),
            "subject:Is dinner ready?\r\n");
}

TEST(DkimRelaxedHeader, Unfolds) {
  EXPECT_EQ(
      detail::relaxed_header("To: a@example.com,\r\n\tb@example.com,\r\n   c@example.com\r\n"),
      "to:a@example.com, b@example.com, c@example.com\r\n");
  // A fold right after the colon, and a value of nothing but folds.
  EXPECT_EQ(detail::relaxed_header("Subject:\r\n Hi\r\n"), "subject:Hi\r\n");
  EXPECT_EQ(detail::relaxed_header("X-Empty: \r\n \r\n\t\r\n"), "x-empty:\r\n");
}

TEST(DkimRelaxedHeader, EmptyValue) {
  EXPECT_EQ(detail::relaxed_header("X-Empty:\r\n"), "x-empty:\r\n");
  EXPECT_EQ(detail::relaxed_header("X-Empty:   \r\n"), "x-empty:\r\n");
}

TEST(DkimRelaxedHeader, KeepsEightBitBytes) {
  EXPECT_EQ(detail::relaxed_header("Subject: caf\xc3\xa9  cr\xc3\xa8me\r\n"),
            "subject:caf\xc3\xa9 cr\xc3\xa8me\r\n");
}

// RFC 6376 §3.4.6, the example of relaxed canonicalization.
TEST(DkimRelaxed, Rfc6376Example) {
  EXPECT_EQ(detail::relaxed_header("A: X\r\n"), "a:X\r\n");
  EXPECT_EQ(detail::relaxed_header("B : Y\t\r\n\tZ  \r\n"), "b:Y Z\r\n");
  EXPECT_EQ(detail::relaxed_body(" C \r\nD \t E\r\n\r\n\r\n"), " C\r\nD E\r\n");
}

TEST(DkimRelaxedBody, EmptyBodyStaysEmpty) {
  EXPECT_EQ(detail::relaxed_body(""), "");
  EXPECT_EQ(detail::relaxed_body("\r\n"), "");
  EXPECT_EQ(detail::relaxed_body("\r\n\r\n\r\n"), "");
  EXPECT_EQ(detail::relaxed_body(" \t\r\n  \r\n\t"), "");
  // SHA-256 of nothing.
  EXPECT_EQ(detail::relaxed_body_hash(""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
  EXPECT_EQ(detail::relaxed_body_hash("\r\n \r\n"), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
}

TEST(DkimRelaxedBody, NoFinalCrlfGetsOne) {
  EXPECT_EQ(detail::relaxed_body("abc"), "abc\r\n");
  EXPECT_EQ(detail::relaxed_body("a\r\n\r\nb"), "a\r\n\r\nb\r\n");
  // The last line's trailing WSP is at the end of a line too (§3.4.4 "Ignore all whitespace
  // at the end of lines"). python3-dkim keeps it ("abc \r\n"), but a message always reaches
  // a verifier with its final CRLF, and then both agree.
  EXPECT_EQ(detail::relaxed_body("abc \t"), "abc\r\n");
  EXPECT_EQ(detail::relaxed_body("a\r\n  "), "a\r\n");
}

TEST(DkimRelaxedBody, WspRunsAndTrailingWsp) {
  EXPECT_EQ(detail::relaxed_body("a \t b\t\r\n"), "a b\r\n");
  EXPECT_EQ(detail::relaxed_body("\tindented  line   \r\nnext\r\n"), " indented line\r\nnext\r\n");
  EXPECT_EQ(detail::relaxed_body("one two\r\n"), "one two\r\n");
}

TEST(DkimRelaxedBody, InnerEmptyLinesStayTrailingOnesGo) {
  EXPECT_EQ(detail::relaxed_body("a\r\n\r\n\r\nb\r\n\r\n\r\n"), "a\r\n\r\n\r\nb\r\n");
  // A line of WSP only is empty once its WSP is gone: kept inside, dropped at the end.
  EXPECT_EQ(detail::relaxed_body("a\r\n \t \r\nb\r\n \r\n"), "a\r\n\r\nb\r\n");
}

TEST(DkimRelaxedBody, BareCrAndLfAreContent) {
  EXPECT_EQ(detail::relaxed_body("a\rb\r\n"), "a\rb\r\n");
  EXPECT_EQ(detail::relaxed_body("x\r"), "x\r\r\n");
  EXPECT_EQ(detail::relaxed_body("x\n\r\n"), "x\n\r\n");
  EXPECT_EQ(detail::relaxed_body("x \r \r\n"), "x \r\r\n");
}

// §3.4.4 read as literally as possible: split into lines, strip and collapse each, drop the
// empty ones at the end, put the CRLFs back.
std::string reference_relaxed_body(const std::string& body) {
  std::vector<std::string> lines;
  std::size_t pos = 0;
  while (pos < body.size()) {
    const std::size_t eol = body.find("\r\n", pos);
    const std::size_t end = eol == std::string::npos ? body.size() : eol;
    lines.push_back(body.substr(pos, end - pos));
    pos = eol == std::string::npos ? body.size() : eol + 2;
  }
  for (std::string& line : lines) {
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.pop_back();
    std::string collapsed;
    for (char c : line) {
      const bool wsp = c == ' ' || c == '\t';
      if (wsp && !collapsed.empty() && collapsed.back() == ' ') continue;
      collapsed.push_back(wsp ? ' ' : c);
    }
    line = collapsed;
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  std::string out;
  for (const std::string& line : lines) out += line + "\r\n";
  return out;
}

TEST(DkimRelaxedBody, AgreesWithALiteralReadingOnRandomBodies) {
  std::mt19937 rng(6376);
  const std::string alphabet = "ab \t\r\n\r\n";
  std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
  std::uniform_int_distribution<int> length(0, 40);
  for (int n = 0; n < 20000; ++n) {
    std::string body;
    for (int i = length(rng); i > 0; --i) body.push_back(alphabet[pick(rng)]);
    ASSERT_EQ(detail::relaxed_body(body), reference_relaxed_body(body)) << "body: " << body;
  }
}

// ---------------------------------------------------------------------------------------------
// RFC 8463 Appendix A: its keys, message and signatures, byte for byte.

constexpr const char* kRfc8463Ed25519Pem =
    "-----BEGIN PRIVATE KEY-----\n"  // the A.2 secret nWGxne/9...uf2A= as PKCS#8
    "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
    "-----END PRIVATE KEY-----\n";

constexpr const char* kRfc8463RsaPem =
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIICXQIBAAKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQi\n"
    "Y/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqM\n"
    "KrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB\n"
    "AoGAH0cxOhFZDgzXWhDhnAJDw5s4roOXN4OhjiXa8W7Y3rhX3FJqmJSPuC8N9vQm\n"
    "6SVbaLAE4SG5mLMueHlh4KXffEpuLEiNp9Ss3O4YfLiQpbRqE7Tm5SxKjvvQoZZe\n"
    "zHorimOaChRL2it47iuWxzxSiRMv4c+j70GiWdxXnxe4UoECQQDzJB/0U58W7RZy\n"
    "6enGVj2kWF732CoWFZWzi1FicudrBFoy63QwcowpoCazKtvZGMNlPWnC7x/6o8Gc\n"
    "uSe0ga2xAkEA8C7PipPm1/1fTRQvj1o/dDmZp243044ZNyxjg+/OPN0oWCbXIGxy\n"
    "WvmZbXriOWoSALJTjExEgraHEgnXssuk7QJBALl5ICsYMu6hMxO73gnfNayNgPxd\n"
    "WFV6Z7ULnKyV7HSVYF0hgYOHjeYe9gaMtiJYoo0zGN+L3AAtNP9huqkWlzECQE1a\n"
    "licIeVlo1e+qJ6Mgqr0Q7Aa7falZ448ccbSFYEPD6oFxiOl9Y9se9iYHZKKfIcst\n"
    "o7DUw1/hz2Ck4N5JrgUCQQCyKveNvjzkkd8HjYs0SwM0fPjK16//5qDZ2UiDGnOe\n"
    "uEzxBDAr518Z8VFbR41in3W4Y3yCDgQlLlcETrS+zYcL\n"
    "-----END RSA PRIVATE KEY-----\n";

constexpr const char* kRfc8463Ed25519Record =
    "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

constexpr const char* kRfc8463Message =
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    "\r\n"
    "Hi.\r\n"
    "\r\n"
    "We lost the game.  Are you hungry yet?\r\n"
    "\r\n"
    "Joe.\r\n";

const std::vector<std::string> kRfc8463SignedNames = {"from",       "to",   "subject", "date",
                                                      "message-id", "from", "subject", "date"};

constexpr const char* kRfc8463Ed25519Unsigned =
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=";

constexpr const char* kRfc8463RsaUnsigned =
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
    " date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=";

std::string body_of(std::string_view message) {
  return std::string(message.substr(message.find("\r\n\r\n") + 4));
}

TEST(DkimRfc8463, BodyHash) {
  EXPECT_EQ(detail::relaxed_body_hash(body_of(kRfc8463Message)),
            "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
}

TEST(DkimRfc8463, Ed25519Signature) {
  const DkimSigner signer =
      DkimSigner::from_pem("football.example.com", "brisbane", kRfc8463Ed25519Pem);
  EXPECT_STREQ(signer.algorithm(), "ed25519-sha256");
  EXPECT_EQ(
      detail::signature_for(signer, kRfc8463Message, kRfc8463SignedNames, kRfc8463Ed25519Unsigned),
      "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus"
      "Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==");
}

TEST(DkimRfc8463, RsaSignature) {
  // PKCS#1 v1.5 is deterministic too, so the RSA signature of A.3 must come out exactly.
  const DkimSigner signer = DkimSigner::from_pem("football.example.com", "test", kRfc8463RsaPem);
  EXPECT_STREQ(signer.algorithm(), "rsa-sha256");
  EXPECT_EQ(
      detail::signature_for(signer, kRfc8463Message, kRfc8463SignedNames, kRfc8463RsaUnsigned),
      "F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3"
      "DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz"
      "dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=");
}

// ---------------------------------------------------------------------------------------------
// The field sign() writes.

// The tags of a DKIM-Signature field, unfolded, with the FWS in h= and b= removed.
std::map<std::string, std::string> tags_of(std::string field) {
  EXPECT_TRUE(field.starts_with("DKIM-Signature: "));
  field = field.substr(field.find(':') + 1);
  std::string flat;
  for (char c : field) {
    if (c != '\r' && c != '\n') flat.push_back(c);
  }
  std::map<std::string, std::string> tags;
  std::stringstream in(flat);
  std::string item;
  while (std::getline(in, item, ';')) {
    std::string compact;
    for (char c : item) {
      if (c != ' ' && c != '\t') compact.push_back(c);
    }
    if (compact.empty()) continue;
    const std::size_t eq = compact.find('=');
    tags[compact.substr(0, eq)] = compact.substr(eq + 1);
  }
  return tags;
}

void expect_well_folded(const std::string& field) {
  ASSERT_TRUE(field.ends_with("\r\n"));
  std::size_t pos = 0;
  bool first = true;
  while (pos < field.size()) {
    const std::size_t eol = field.find("\r\n", pos);
    ASSERT_NE(eol, std::string::npos);
    const std::string line = field.substr(pos, eol - pos);
    EXPECT_LT(line.size(), 78u) << line;
    EXPECT_EQ(line.find('\n'), std::string::npos);
    if (!first) {
      ASSERT_FALSE(line.empty());
      EXPECT_EQ(line[0], ' ') << line;
      EXPECT_NE(line.find_first_not_of(' '), std::string::npos) << "a line of WSP only";
    }
    EXPECT_FALSE(line.ends_with(" ")) << line;
    first = false;
    pos = eol + 2;
  }
}

const char* const kCampaignMessage =
    "From: \"Shop News\" <news@shop.example.com>\r\n"
    "To: alice@example.net\r\n"
    "Subject: Spring sale\r\n"
    "Date: Tue, 01 Apr 2025 10:00:00 +0000\r\n"
    "Message-ID: <c1.r42@shop.example.com>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "List-Unsubscribe: <https://shop.example.com/u/42>\r\n"
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    "X-Campaign: c1\r\n"
    "\r\n"
    "Hello Alice,\r\n"
    "\r\n"
    "Everything is 20% off this week.\r\n";

TEST(DkimSign, WritesTheTagsInOrderAndFoldsUnder78) {
  const DkimSigner signer = DkimSigner::from_pem("shop.example.com", "s2025", kRfc8463Ed25519Pem);
  const std::string field = signer.sign(kCampaignMessage, 1743501600);
  expect_well_folded(field);
  EXPECT_THAT(field,
              ::testing::StartsWith("DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;"));
  const auto tags = tags_of(field);
  EXPECT_EQ(tags.at("v"), "1");
  EXPECT_EQ(tags.at("a"), "ed25519-sha256");
  EXPECT_EQ(tags.at("c"), "relaxed/relaxed");
  EXPECT_EQ(tags.at("d"), "shop.example.com");
  EXPECT_EQ(tags.at("s"), "s2025");
  EXPECT_EQ(tags.at("t"), "1743501600");
  EXPECT_EQ(tags.at("h"),
            "from:from:to:subject:date:message-id:mime-version:content-type:"
            "content-transfer-encoding:list-unsubscribe:list-unsubscribe-post");
  EXPECT_EQ(tags.at("bh"), detail::relaxed_body_hash(body_of(kCampaignMessage)));
  EXPECT_EQ(tags.at("b").size(), 88u);  // 64 bytes
  EXPECT_EQ(tags.size(), 9u);
  // The tag order is part of the API.
  const std::vector<std::string> order = {
      " v=", " a=", " c=", " d=", " s=", " t=", " h=", " bh=", " b="};
  std::size_t last = 0;
  for (const std::string& tag : order) {
    const std::size_t at = field.find(tag);
    ASSERT_NE(at, std::string::npos) << tag;
    EXPECT_GT(at, last) << tag;
    last = at;
  }
}

TEST(DkimSign, ListsEveryInstanceOfARepeatedField) {
  const DkimSigner signer = DkimSigner::from_pem("example.com", "sel", kRfc8463Ed25519Pem);
  const std::string field = signer.sign(
      "From: a@example.com\r\nTo: b@example.net\r\nCc: c@example.net\r\nTo: d@example.net\r\n"
      "Subject: x\r\n\r\nbody\r\n",
      1);
  EXPECT_EQ(tags_of(field).at("h"), "from:from:to:to:subject:cc");
}

TEST(DkimSign, CustomHeaderListStillSignsFrom) {
  const DkimSigner signer =
      DkimSigner::from_pem("example.com", "sel", kRfc8463Ed25519Pem, {"Subject", "X-Campaign"});
  const std::string field = signer.sign(kCampaignMessage, 1);
  EXPECT_EQ(tags_of(field).at("h"), "from:from:subject:x-campaign");
}

TEST(DkimSign, FoldsALongHeaderList) {
  std::vector<std::string> names;
  std::string message = "From: a@example.com\r\n";
  for (int i = 0; i < 30; ++i) {
    names.push_back("X-Long-Header-Name-" + std::to_string(i));
    message += names.back() + ": v\r\n";
  }
  message += "\r\nbody\r\n";
  const DkimSigner signer = DkimSigner::from_pem("example.com", "sel", kRfc8463RsaPem, names);
  const std::string field = signer.sign(message, 1);
  expect_well_folded(field);
  std::string lowered_names = "from:from";
  for (std::string n : names) {
    for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    lowered_names += ":" + n;
  }
  EXPECT_EQ(tags_of(field).at("h"), lowered_names);
}

TEST(DkimSign, MessageWithoutFromIsRefused) {
  const DkimSigner signer = DkimSigner::from_pem("example.com", "sel", kRfc8463Ed25519Pem);
  EXPECT_THROW((void)signer.sign("To: b@example.net\r\nSubject: x\r\n\r\nbody\r\n", 1),
               std::invalid_argument);
  // "From" inside another field's name or in the body is not a From field.
  EXPECT_THROW((void)signer.sign("X-From: a@example.com\r\n\r\nFrom: a@example.com\r\n", 1),
               std::invalid_argument);
}

TEST(DkimSign, RejectsDomainsAndSelectorsThatWouldBreakTheField) {
  EXPECT_THROW(DkimSigner::from_pem("example.com; x=1", "sel", kRfc8463Ed25519Pem),
               std::invalid_argument);
  EXPECT_THROW(DkimSigner::from_pem("example.com", "", kRfc8463Ed25519Pem), std::invalid_argument);
  EXPECT_THROW(DkimSigner::from_pem("example.com", "sel", kRfc8463Ed25519Pem, {"Bad Name"}),
               std::invalid_argument);
}

TEST(DkimSign, MovedSignerSigns) {
  DkimSigner a = DkimSigner::from_pem("example.com", "sel", kRfc8463Ed25519Pem);
  const std::string before = a.sign(kCampaignMessage, 7);
  DkimSigner b(std::move(a));
  EXPECT_EQ(b.sign(kCampaignMessage, 7), before);
  DkimSigner c = DkimSigner::from_pem("example.com", "sel", kRfc8463RsaPem);
  c = std::move(b);
  EXPECT_EQ(c.sign(kCampaignMessage, 7), before);
}

TEST(DkimSign, ManyThreadsOneSigner) {
  // Both algorithms are deterministic, so every thread must produce the same field.
  for (const char* pem : {kRfc8463Ed25519Pem, kRfc8463RsaPem}) {
    const DkimSigner signer = DkimSigner::from_pem("example.com", "sel", pem);
    const std::string expected = signer.sign(kCampaignMessage, 42);
    std::vector<std::thread> threads;
    std::vector<int> mismatches(8, 0);
    for (std::size_t t = 0; t < mismatches.size(); ++t) {
      threads.emplace_back([&signer, &expected, &mismatches, t] {
        for (int i = 0; i < 40; ++i) {
          if (signer.sign(kCampaignMessage, 42) != expected) ++mismatches[t];
        }
      });
    }
    for (std::thread& t : threads) t.join();
    for (int m : mismatches) EXPECT_EQ(m, 0);
  }
}

// ---------------------------------------------------------------------------------------------
// Keys from the openssl command line, and an independent verifier (python3-dkim).

void write_file(const fs::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string run(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) throw std::runtime_error("popen failed: " + command);
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  if (status != 0) throw std::runtime_error("command failed: " + command);
  return out;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

constexpr const char* kVerifier = R"(import sys, dkim
record = open(sys.argv[1], 'rb').read().strip()
expected = sys.argv[2].encode()
def dnsfunc(name, timeout=5):
    return record if name == expected else None
for path in sys.argv[3:]:
    print('1' if dkim.verify(open(path, 'rb').read(), dnsfunc=dnsfunc) else '0')
)";

class DkimWithKeys : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ =
        new fs::path(fs::temp_directory_path() / ("mma-dkim-test-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    const std::string d = dir_->string();
    run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " + d +
        "/rsa.pem 2>/dev/null");
    run("openssl genpkey -algorithm ED25519 -out " + d + "/ed25519.pem 2>/dev/null");
    write_file(*dir_ / "rsa.txt",
               "v=DKIM1; k=rsa; p=" + trimmed(run("openssl pkey -in " + d +
                                                  "/rsa.pem -pubout -outform DER | base64 -w0")));
    // RFC 8463 §4: the record holds the raw 32-byte key, the tail of its SPKI DER.
    write_file(*dir_ / "ed25519.txt",
               "v=DKIM1; k=ed25519; p=" +
                   trimmed(run("openssl pkey -in " + d +
                               "/ed25519.pem -pubout -outform DER | tail -c 32 | base64 -w0")));
    write_file(*dir_ / "verify.py", kVerifier);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }

  // python3-dkim's verdict on each message, with `record` as the only TXT record there is.
  static std::vector<bool> verify(const std::string& record_file, const std::string& name,
                                  const std::vector<std::string>& messages) {
    std::string command = "/usr/bin/python3 " + (*dir_ / "verify.py").string() + " " +
                          (*dir_ / record_file).string() + " " + name;
    for (std::size_t i = 0; i < messages.size(); ++i) {
      const fs::path path = *dir_ / ("msg" + std::to_string(i) + ".eml");
      write_file(path, messages[i]);
      command += " " + path.string();
    }
    std::stringstream out(run(command));
    std::vector<bool> verdicts;
    std::string line;
    while (std::getline(out, line)) verdicts.push_back(line == "1");
    EXPECT_EQ(verdicts.size(), messages.size());
    return verdicts;
  }

  static fs::path* dir_;
};
fs::path* DkimWithKeys::dir_ = nullptr;

// Messages that a composer writes, and some it should survive.
std::vector<std::string> sample_messages() {
  std::string long_to = "To: ";
  for (int i = 0; i < 12; ++i) {
    long_to += (i ? ",\r\n\t" : "") + std::string("\"Recipient ") + std::to_string(i) + "\" <r" +
               std::to_string(i) + "@example.net>";
  }
  std::string big_body;
  for (int i = 0; i < 500; ++i) big_body += "Line " + std::to_string(i) + " of a longer body.\r\n";
  return {
      kCampaignMessage,
      // Long folded fields, several folds, odd spacing around the colon.
      "From: Sender <s@example.com>\r\n" + long_to +
          "\r\n"
          "Subject: A subject folded over\r\n"
          " three lines, with\r\n"
          "\t a tab \r\n"
          "Date:  Tue, 01 Apr 2025 10:00:00 +0000\r\n"
          "\r\n" +
          big_body,
      // Trailing whitespace everywhere, WSP runs, trailing empty lines.
      "From:   a@example.com   \r\n"
      "Subject: \t spaced \t  out\t\r\n"
      "\r\n"
      "line with trailing space   \r\n"
      "\ttabbed\t\tline\t\r\n"
      "  \r\n"
      "last\r\n"
      "\r\n"
      " \r\n"
      "\r\n",
      // Empty body, with and without the empty line's CRLF repeated.
      "From: a@example.com\r\nSubject: nothing\r\n\r\n",
      "From: a@example.com\r\nSubject: blank lines\r\n\r\n\r\n\r\n",
      // Repeated fields.
      "From: a@example.com\r\n"
      "To: one@example.net\r\n"
      "Subject: first\r\n"
      "To: two@example.net\r\n"
      "Cc: three@example.net\r\n"
      "Cc: four@example.net\r\n"
      "\r\n"
      "repeated\r\n",
      // No final CRLF on the body.
      "From: a@example.com\r\nSubject: cut\r\n\r\nno final line break",
      // Raw UTF-8.
      "From: =?utf-8?q?Caf=C3=A9?= <cafe@example.com>\r\n"
      "Subject: Caf\xc3\xa9 cr\xc3\xa8me\r\n"
      "Content-Type: text/plain; charset=utf-8\r\n"
      "\r\n"
      "Cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"
      "e  \xe2\x82\xac 5\r\n",
  };
}

std::string replace_once(std::string s, std::string_view from, std::string_view to) {
  const std::size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

void check_against_python(const std::vector<bool>& verdicts, const std::vector<std::string>& what,
                          bool expected) {
  ASSERT_EQ(verdicts.size(), what.size());
  for (std::size_t i = 0; i < what.size(); ++i) {
    EXPECT_EQ(verdicts[i], expected) << what[i];
  }
}

void sign_and_verify(const DkimSigner& signer, const std::string& record_file,
                     std::vector<bool> (*verify)(const std::string&, const std::string&,
                                                 const std::vector<std::string>&)) {
  const std::time_t now = std::time(nullptr);
  std::vector<std::string> good;
  std::vector<std::string> bad;
  std::vector<std::string> labels_good;
  std::vector<std::string> labels_bad;
  for (const std::string& message : sample_messages()) {
    const std::string signed_message = signer.sign(message, now) + message;
    expect_well_folded(signer.sign(message, now));
    good.push_back(signed_message);
    labels_good.push_back("intact: " + message.substr(0, 60));
    // A field that is not signed may come and go.
    good.push_back("X-Added: by a relay\r\n" + signed_message);
    labels_good.push_back("unsigned field added: " + message.substr(0, 60));

    bad.push_back(signed_message + "P.S. added\r\n");
    labels_bad.push_back("body extended: " + message.substr(0, 60));
    bad.push_back(replace_once(signed_message, "From:", "From: evil@example.org,"));
    labels_bad.push_back("From changed: " + message.substr(0, 60));
    // The over-signed From: a second From anywhere breaks the signature.
    bad.push_back(signed_message.substr(0, signed_message.find("From:")) +
                  "From: evil@example.org\r\n" +
                  signed_message.substr(signed_message.find("From:")));
    labels_bad.push_back("From added: " + message.substr(0, 60));
    if (message.find("Subject:") != std::string::npos) {
      bad.push_back(replace_once(signed_message, "Subject:", "Subject: Re:"));
      labels_bad.push_back("Subject changed: " + message.substr(0, 60));
    }
    if (message.find("Hello") != std::string::npos) {
      bad.push_back(replace_once(signed_message, "Hello", "Hallo"));
      labels_bad.push_back("body changed: " + message.substr(0, 60));
    }
  }
  check_against_python(verify(record_file, "sel._domainkey.example.com.", good), labels_good, true);
  check_against_python(verify(record_file, "sel._domainkey.example.com.", bad), labels_bad, false);
  // The same signature under another domain's name is no signature.
  check_against_python(verify(record_file, "sel._domainkey.other.example.", {good[0]}),
                       {"wrong domain"}, false);
}

TEST_F(DkimWithKeys, Rsa2048VerifiesWithPythonDkim) {
  const DkimSigner signer("example.com", "sel", (*dir_ / "rsa.pem").string());
  EXPECT_STREQ(signer.algorithm(), "rsa-sha256");
  sign_and_verify(signer, "rsa.txt", &DkimWithKeys::verify);
}

TEST_F(DkimWithKeys, Ed25519VerifiesWithPythonDkim) {
  const DkimSigner signer("example.com", "sel", (*dir_ / "ed25519.pem").string());
  EXPECT_STREQ(signer.algorithm(), "ed25519-sha256");
  sign_and_verify(signer, "ed25519.txt", &DkimWithKeys::verify);
}

TEST_F(DkimWithKeys, Rfc8463MessageVerifiesWithPythonDkim) {
  // The harness itself, on the published message; then ours on the same message and key.
  write_file(*dir_ / "brisbane.txt", kRfc8463Ed25519Record);
  const std::string published = std::string(kRfc8463Ed25519Unsigned) +
                                "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
                                " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n" +
                                kRfc8463Message;
  const DkimSigner signer =
      DkimSigner::from_pem("football.example.com", "brisbane", kRfc8463Ed25519Pem);
  const std::string ours = signer.sign(kRfc8463Message, std::time(nullptr)) + kRfc8463Message;
  const auto verdicts =
      verify("brisbane.txt", "brisbane._domainkey.football.example.com.", {published, ours});
  ASSERT_EQ(verdicts.size(), 2u);
  EXPECT_TRUE(verdicts[0]);
  EXPECT_TRUE(verdicts[1]);
}

TEST_F(DkimWithKeys, BadKeysAreNamedInTheError) {
  const std::string d = dir_->string();
  auto error_of = [](const std::string& path) -> std::string {
    try {
      DkimSigner signer("example.com", "sel", path);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "no error";
  };
  const std::string missing = d + "/no-such-key.pem";
  EXPECT_THAT(error_of(missing), HasSubstr(missing));
  EXPECT_THAT(error_of(missing), HasSubstr("No such file"));

  write_file(*dir_ / "garbage.pem", "this is not a key\n");
  EXPECT_THAT(error_of(d + "/garbage.pem"), HasSubstr(d + "/garbage.pem"));
  EXPECT_THAT(error_of(d + "/garbage.pem"), HasSubstr("not a PEM private key"));

  write_file(*dir_ / "empty.pem", "");
  EXPECT_THAT(error_of(d + "/empty.pem"), HasSubstr("not a PEM private key"));

  run("openssl pkey -in " + d + "/rsa.pem -pubout -out " + d + "/public.pem");
  EXPECT_THAT(error_of(d + "/public.pem"), HasSubstr("not a PEM private key"));

  run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:512 -out " + d +
      "/rsa512.pem 2>/dev/null");
  EXPECT_THAT(error_of(d + "/rsa512.pem"), HasSubstr(d + "/rsa512.pem"));
  EXPECT_THAT(error_of(d + "/rsa512.pem"), HasSubstr("512 bits"));

  run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + d +
      "/ec.pem 2>/dev/null");
  EXPECT_THAT(error_of(d + "/ec.pem"), HasSubstr("unsupported key type EC"));

  // Must fail at once rather than ask for a passphrase.
  run("openssl genpkey -algorithm ED25519 -aes256 -pass pass:secret -out " + d +
      "/encrypted.pem 2>/dev/null");
  EXPECT_THAT(error_of(d + "/encrypted.pem"), HasSubstr("encrypted"));

  EXPECT_THAT(error_of(d), HasSubstr(d));  // a directory

  try {
    (void)DkimSigner::from_pem("example.com", "sel", "nonsense");
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("not a PEM private key"));
  }
}

// Prints signatures per second on one core; asserts nothing about time.
TEST_F(DkimWithKeys, Throughput) {
  std::string message(kCampaignMessage);
  for (int i = 0; i < 60; ++i) {
    message += "A line of a typical newsletter body, with some words in it, line " +
               std::to_string(i) + ".\r\n";
  }
  for (const char* key : {"rsa.pem", "ed25519.pem"}) {
    const DkimSigner signer("example.com", "sel", (*dir_ / key).string());
    const auto start = std::chrono::steady_clock::now();
    const auto budget = std::chrono::milliseconds(500);
    int n = 0;
    std::size_t sink = 0;
    while (std::chrono::steady_clock::now() - start < budget) {
      sink += signer.sign(message, 1743501600).size();
      ++n;
    }
    const std::chrono::duration<double> spent = std::chrono::steady_clock::now() - start;
    std::printf("[ DKIM     ] %s: %.0f signatures/s (%zu-byte message)\n", signer.algorithm(),
                n / spent.count(), message.size());
    EXPECT_GT(sink, 0u);
  }
}

}  // namespace
}  // namespace mma::compose
