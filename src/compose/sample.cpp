#include "compose/sample.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sqlite3.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <vector>

namespace mma::compose {
namespace {

namespace fs = std::filesystem;

// Shares of the big providers; the rest is spread over the long tail.
constexpr std::array<std::pair<const char*, double>, 5> kProviders{{{"gmail.test", 0.20},
                                                                    {"outlook.test", 0.12},
                                                                    {"yahoo.test", 0.08},
                                                                    {"orange.test", 0.05},
                                                                    {"web.test", 0.03}}};
constexpr std::array<const char*, 12> kFirst{"Alice", "Bruno",   "Chloé",  "Dmitri",
                                             "Emma",  "José",    "Zoë",    "Łukasz",
                                             "Юлия",  "Hiroshi", "Fatima", ""};
constexpr std::array<const char*, 8> kLast{"Martin", "Müller",  "García", "Rossi",
                                           "Nowak",  "Ivanova", "Tanaka", "O'Brien"};
constexpr std::array<const char*, 6> kCity{"Paris", "Berlin", "Lyon", "Kraków", "Osaka", ""};
constexpr std::array<const char*, 4> kTopics{"travel", "markets", "recipes", "sport"};

void write(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

const char* kText = R"({{! The plain-text part: fields as they are, a section per topic. }}
Hello {{first_name|there}},

Here is your autumn selection{{#city}} from {{city}}{{/city}}.
{{#travel}}
TRAVEL
  Fares from {{city|your nearest airport}} dropped this week: Lisbon, Kraków and Osaka
  are all under 150 EUR return. Book before Sunday.
{{/travel}}
{{#markets}}
MARKETS
  Your watch list moved this week; the details are in your dashboard.
{{/markets}}
{{#recipes}}
RECIPES
  Readers' favourite this month: a 20-minute mushroom risotto.
{{/recipes}}
{{#sport}}
SPORT
  The season's fixtures are out; we will remind you before each match.
{{/sport}}
{{^travel}}
You do not receive our travel pages: add them in your preferences.
{{/travel}}

-- 
Example News, 1 Sample Street, Paris
Unsubscribe: https://news.example.test/u/{{id}}
)";

const char* kHtml = R"(<!doctype html>
<html><body style="font-family: sans-serif">
<h1>Hello {{first_name|there}},</h1>
<p>Here is your autumn selection{{#city}} from {{city}}{{/city}}.</p>
{{#travel}}<h2>Travel</h2>
<p>Fares from {{city|your nearest airport}} dropped this week: Lisbon, Krak&oacute;w and Osaka
are all under 150&nbsp;EUR return.</p>{{/travel}}
{{#markets}}<h2>Markets</h2><p>Your watch list moved this week.</p>{{/markets}}
{{#recipes}}<h2>Recipes</h2><p>Readers' favourite this month: a 20-minute mushroom risotto.</p>{{/recipes}}
{{#sport}}<h2>Sport</h2><p>The season's fixtures are out.</p>{{/sport}}
<p style="font-size: small"><a href="https://news.example.test/u/{{id}}">Unsubscribe</a></p>
</body></html>
)";

void write_dkim_key(const fs::path& dir) {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (key == nullptr) throw std::runtime_error("cannot generate an Ed25519 key");
  std::FILE* f = std::fopen((dir / "dkim.pem").c_str(), "w");
  const bool ok =
      f != nullptr && PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  if (f != nullptr) std::fclose(f);
  std::array<unsigned char, 32> pub{};
  std::size_t len = pub.size();
  EVP_PKEY_get_raw_public_key(key, pub.data(), &len);
  EVP_PKEY_free(key);
  if (!ok) throw std::runtime_error("cannot write " + (dir / "dkim.pem").string());
  std::array<unsigned char, 64> b64{};
  EVP_EncodeBlock(b64.data(), pub.data(), static_cast<int>(len));
  // RFC 8463 §4: the p= of an ed25519 key is the raw public key, base64.
  write(dir / "dkim.txt",
        std::string("mma._domainkey.news.example.test. IN TXT \"v=DKIM1; k=ed25519; p=") +
            reinterpret_cast<const char*>(b64.data()) + "\"\n");
}

}  // namespace

std::string write_sample_campaign(const std::string& dir_name, const SampleOptions& opts) {
  const fs::path dir = fs::absolute(dir_name);
  fs::create_directories(dir);
  const fs::path db_path = dir / "subscribers.db";
  fs::remove(db_path);
  fs::remove(dir / "subscribers.db-wal");
  fs::remove(dir / "subscribers.db-shm");
  sqlite3* db = nullptr;
  if (sqlite3_open(db_path.c_str(), &db) != SQLITE_OK)
    throw std::runtime_error("cannot create " + db_path.string());
  auto exec = [&](const char* sql) {
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
      const std::string why = sqlite3_errmsg(db);
      sqlite3_close(db);
      throw std::runtime_error(db_path.string() + ": " + why);
    }
  };
  exec(
      "CREATE TABLE subscribers (id INTEGER PRIMARY KEY, email TEXT NOT NULL, first_name TEXT, "
      "last_name TEXT, city TEXT, topics TEXT)");
  exec("BEGIN");
  sqlite3_stmt* ins = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO subscribers (id, email, first_name, last_name, city, topics) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     -1, &ins, nullptr);
  std::mt19937_64 rng(opts.seed);
  const std::size_t tail = opts.domains > kProviders.size() ? opts.domains - kProviders.size() : 1;
  auto bind = [&](int col, const std::string& v) {
    if (v.empty()) {
      sqlite3_bind_null(ins, col);
    } else {
      sqlite3_bind_text(ins, col, v.c_str(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    }
  };
  for (std::size_t i = 1; i <= opts.subscribers; ++i) {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    std::string domain;
    double acc = 0;
    for (const auto& [d, share] : kProviders) {
      acc += share;
      if (u < acc) {
        domain = d;
        break;
      }
    }
    if (domain.empty() || opts.domains <= kProviders.size()) {
      domain = "d" + std::to_string(rng() % tail) + ".example.test";
    }
    std::string email = "user" + std::to_string(i) + "@" + domain;
    std::string first = kFirst[rng() % kFirst.size()];
    std::string topics;
    for (const char* t : kTopics) {
      if (rng() % 3 == 0) topics += std::string(topics.empty() ? "" : ",") + t;
    }
    if (opts.bad_rows && i % 25'000 == 7) email = "user" + std::to_string(i) + "@";     // no domain
    if (opts.bad_rows && i % 25'000 == 11) first = "Eve\r\nBcc: everyone@victim.test";  // injection
    sqlite3_bind_int64(ins, 1, static_cast<sqlite3_int64>(i));
    bind(2, email);
    bind(3, first);
    bind(4, kLast[rng() % kLast.size()]);
    bind(5, kCity[rng() % kCity.size()]);
    bind(6, topics);
    if (sqlite3_step(ins) != SQLITE_DONE) {
      const std::string why = sqlite3_errmsg(db);
      sqlite3_finalize(ins);
      sqlite3_close(db);
      throw std::runtime_error(db_path.string() + ": " + why);
    }
    sqlite3_reset(ins);
  }
  sqlite3_finalize(ins);
  exec("COMMIT");
  sqlite3_close(db);

  write(dir / "news.txt", kText);
  write(dir / "news.html", kHtml);
  std::string toml =
      R"(# A sample campaign (mma compose --make-sample). Paths are relative to this file.
name = "autumn-news"
from_name = "Example News"
from_address = "news@news.example.test"
reply_to = "help@news.example.test"
envelope_sender = "bounces@news.example.test"
verp = true
subject = "{{first_name|Hello}}, your autumn selection"
text = "news.txt"
html = "news.html"

[headers]
X-Campaign = "autumn-news"

[unsubscribe]
url = "https://news.example.test/u/{{id}}"
mailto = "unsubscribe+{{id}}@news.example.test"

[recipients]
source = "subscribers.db"
query = "SELECT * FROM subscribers ORDER BY id"
)";
  if (opts.dkim) {
    write_dkim_key(dir);
    toml += "\n[dkim]\ndomain = \"news.example.test\"\nselector = \"mma\"\nkey = \"dkim.pem\"\n";
  }
  write(dir / "campaign.toml", toml);
  return (dir / "campaign.toml").string();
}

}  // namespace mma::compose
