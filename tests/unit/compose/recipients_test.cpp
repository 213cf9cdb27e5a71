#include "compose/recipients.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace mma::compose {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;
using Fields = std::vector<std::pair<std::string, std::string>>;

class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "mma-rcpt-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }
  [[nodiscard]] const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string write(const TempDir& dir, const std::string& name, const std::string& content) {
  const std::string path = dir.file(name);
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

// Test databases are made with the C API, so the tests need no sqlite3 binary.
std::string make_sqlite(const TempDir& dir, const std::string& name, const std::string& sql) {
  const std::string path = dir.file(name);
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
      << (error != nullptr ? error : "");
  sqlite3_free(error);
  sqlite3_close(db);
  return path;
}

std::vector<Subscriber> read_all(RecipientSource& source) {
  std::vector<Subscriber> rows;
  while (auto s = source.next()) rows.push_back(std::move(*s));
  return rows;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const SourceError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no SourceError";
  return {};
}

std::string read_csv_error(const std::string& path) {
  return error_of([&] {
    auto source = open_csv(path);
    (void)read_all(*source);
  });
}

// ---------------------------------------------------------------------------------------
// CSV

TEST(CsvSource, ReadsQuotingBomCrlfAndALastLineWithoutItsEnd) {
  TempDir dir;
  const std::string path =
      write(dir, "list.csv",
            "\xEF\xBB\xBFId,EMAIL, First Name ,topics\r\n"
            "7,ann@example.org,\"Smith, Ann\",news\r\n"
            "8,bob@example.org,\"Bob \"\"the builder\"\"\",\"news, offers\"\r\n"
            "9,cy@example.org,\"two\r\nlines\",\r\n"
            "10,dee@example.org,\"\",");
  auto source = open_csv(path);
  EXPECT_EQ(source->describe(), path);
  const auto rows = read_all(*source);
  ASSERT_EQ(rows.size(), 4u);

  EXPECT_EQ(rows[0].row, 1u);
  EXPECT_EQ(rows[0].key, "7");
  EXPECT_EQ(rows[0].address, "ann@example.org");
  EXPECT_EQ(rows[0].fields, (Fields{{"id", "7"},
                                    {"email", "ann@example.org"},
                                    {"first name", "Smith, Ann"},
                                    {"topics", "news"}}));
  EXPECT_THAT(rows[1].field("first name"), Optional(std::string_view("Bob \"the builder\"")));
  EXPECT_THAT(rows[1].topics, ElementsAre("news", "offers"));
  // A quoted line end is data (and validate() will refuse it), not a record end.
  EXPECT_THAT(rows[2].field("first name"), Optional(std::string_view("two\r\nlines")));
  EXPECT_EQ(rows[2].row, 3u);
  EXPECT_THAT(rows[2].field("topics"), Optional(std::string_view("")));
  EXPECT_TRUE(rows[2].topics.empty());
  EXPECT_EQ(rows[3].row, 4u);
  EXPECT_EQ(rows[3].key, "10");
  EXPECT_THAT(rows[3].field("first name"), Optional(std::string_view("")));
  EXPECT_THAT(rows[3].field("topics"), Optional(std::string_view("")));
  EXPECT_FALSE(source->next());
  EXPECT_FALSE(source->next());
}

TEST(CsvSource, AddressColumnAndKeyFallBackWhenThereIsNoIdOrEmail) {
  TempDir dir;
  const std::string path = write(dir, "list.csv", "name,Address\nAnn,ann@example.org\n");
  auto source = open_csv(path);
  const auto s = source->next();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->address, "ann@example.org");
  EXPECT_EQ(s->key, "ann@example.org");
}

TEST(CsvSource, EmptyIdFallsBackToTheAddress) {
  TempDir dir;
  auto source = open_csv(write(dir, "list.csv", "id,email\n,ann@example.org\n"));
  const auto s = source->next();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->key, "ann@example.org");
}

TEST(CsvSource, ShortRecordLeavesItsMissingFieldsAbsent) {
  TempDir dir;
  auto source = open_csv(write(dir, "list.csv", "email,name,city\nann@example.org,Ann\n"));
  const auto s = source->next();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->fields, (Fields{{"email", "ann@example.org"}, {"name", "Ann"}}));
  EXPECT_FALSE(s->field("city"));
}

TEST(CsvSource, LongRecordIsASourceErrorNamingItsLine) {
  TempDir dir;
  const std::string path = write(dir, "list.csv",
                                 "email,name\n"
                                 "ann@example.org,\"Ann\nSmith\"\n"
                                 "bob@example.org,Bob,Builder\n");
  auto source = open_csv(path);
  ASSERT_TRUE(source->next());
  const std::string what = error_of([&] { (void)source->next(); });
  EXPECT_THAT(what, HasSubstr(path + ":4:"));
  EXPECT_THAT(what, HasSubstr("record 2 has 3 fields, the header names 2"));
}

TEST(CsvSource, TrailingEmptyFieldsOfASpreadsheetExportAreIgnored) {
  TempDir dir;
  auto source = open_csv(write(dir, "list.csv", "email,name,,\nann@example.org,Ann,,\n"));
  const auto s = source->next();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->fields, (Fields{{"email", "ann@example.org"}, {"name", "Ann"}}));
}

TEST(CsvSource, UnclosedQuoteIsASourceErrorNamingTheLineWhereItOpened) {
  TempDir dir;
  const std::string path = write(dir, "list.csv",
                                 "email,name\n"
                                 "ann@example.org,Ann\n"
                                 "bob@example.org,\"Bob\n"
                                 "cy@example.org,Cy\n");
  const std::string what = read_csv_error(path);
  EXPECT_THAT(what, HasSubstr(path + ":3:"));
  EXPECT_THAT(what, HasSubstr("never closes"));
}

TEST(CsvSource, TextAfterAClosingQuoteIsASourceError) {
  TempDir dir;
  const std::string path = write(dir, "list.csv", "email,name\nann@example.org,\"Ann\"x\n");
  EXPECT_THAT(read_csv_error(path), HasSubstr(path + ":2: text after the closing quote"));
}

TEST(CsvSource, QuoteInsideAnUnquotedFieldIsKept) {
  TempDir dir;
  auto source = open_csv(write(dir, "list.csv", "email,name\nann@example.org,Ann \"A\" Smith\n"));
  const auto s = source->next();
  ASSERT_TRUE(s);
  EXPECT_THAT(s->field("name"), Optional(std::string_view("Ann \"A\" Smith")));
}

TEST(CsvSource, BlankLinesAreNotRecords) {
  TempDir dir;
  auto source =
      open_csv(write(dir, "list.csv", "email\n\nann@example.org\n\r\nbob@example.org\n\n"));
  const auto rows = read_all(*source);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].row, 2u);
  EXPECT_EQ(rows[1].address, "bob@example.org");
}

TEST(CsvSource, MissingAddressColumnNamesTheColumnsFound) {
  TempDir dir;
  const std::string path = write(dir, "list.csv", "ID,Mail,Name\n1,ann@example.org,Ann\n");
  const std::string what = error_of([&] { (void)open_csv(path); });
  EXPECT_THAT(what, HasSubstr(path));
  EXPECT_THAT(what, HasSubstr("columns: id, mail, name"));
}

TEST(CsvSource, EmptyOrMissingFileIsASourceError) {
  TempDir dir;
  const std::string empty = write(dir, "empty.csv", "");
  EXPECT_THAT(error_of([&] { (void)open_csv(empty); }), HasSubstr(empty + ": empty file"));
  const std::string missing = dir.file("missing.csv");
  EXPECT_THAT(error_of([&] { (void)open_csv(missing); }), HasSubstr(missing + ": No such file"));
}

TEST(CsvSource, HeaderWithAnUnnamedColumnInTheMiddleIsASourceError) {
  TempDir dir;
  const std::string path = write(dir, "list.csv", "email,,name\n");
  EXPECT_THAT(error_of([&] { (void)open_csv(path); }),
              HasSubstr(path + ":1: column 2 of the header has no name"));
}

// Many records, so quotes, "" pairs and CRLF fall on every offset of the read buffer.
TEST(CsvSource, StreamsALargeFileAcrossBufferBoundaries) {
  TempDir dir;
  const std::string path = dir.file("large.csv");
  constexpr std::size_t kRows = 60000;
  {
    std::ofstream out(path, std::ios::binary);
    out << "id,email,note,topics\r\n";
    for (std::size_t i = 1; i <= kRows; ++i) {
      out << i << ",user" << i << "@example.org,\"say \"\"" << i << "\"\",\nthen, go\",a b"
          << (i % 5) << "\r\n";
    }
  }
  auto source = open_csv(path);
  std::size_t n = 0;
  while (auto s = source->next()) {
    ++n;
    ASSERT_EQ(s->row, n);
    ASSERT_EQ(s->key, std::to_string(n));
    ASSERT_EQ(s->address, "user" + std::to_string(n) + "@example.org");
    ASSERT_THAT(s->field("note"),
                Optional(std::string_view("say \"" + std::to_string(n) + "\",\nthen, go")));
    ASSERT_THAT(s->topics, ElementsAre("a", "b" + std::to_string(n % 5)));
  }
  EXPECT_EQ(n, kRows);
}

// ---------------------------------------------------------------------------------------
// Topics and fields

TEST(Subscriber, TopicsAreSplitByCommasAndBlanksLowerCasedWithoutEmpties) {
  TempDir dir;
  auto source = open_csv(
      write(dir, "list.csv", "email,topics\nann@example.org,\" News,, Offers\tSPORTS , \"\n"));
  const auto s = source->next();
  ASSERT_TRUE(s);
  EXPECT_THAT(s->topics, ElementsAre("news", "offers", "sports"));
  EXPECT_TRUE(s->subscribed("offers"));
  EXPECT_FALSE(s->subscribed("weather"));
  EXPECT_FALSE(s->subscribed(""));
}

TEST(Subscriber, FieldFindsByLowerCaseName) {
  Subscriber s;
  s.fields = {{"email", "a@example.org"}, {"name", "A"}};
  EXPECT_THAT(s.field("name"), Optional(std::string_view("A")));
  EXPECT_FALSE(s.field("Name"));
  EXPECT_FALSE(s.field("city"));
}

// ---------------------------------------------------------------------------------------
// SQLite

constexpr const char* kSqliteList =
    "CREATE TABLE subscribers (id INTEGER PRIMARY KEY, Email TEXT, name TEXT, topics TEXT, "
    "score REAL, avatar BLOB);"
    "INSERT INTO subscribers VALUES (1, 'ann@example.org', 'Ann', 'News,Offers', 1.5, NULL);"
    "INSERT INTO subscribers VALUES (2, 'bob@example.org', NULL, NULL, 3, x'00ff');"
    "INSERT INTO subscribers VALUES (3, NULL, 'Nobody', 'news', NULL, NULL);";

TEST(SqliteSource, ReadsNullsNumbersAndBlobs) {
  TempDir dir;
  const std::string path = make_sqlite(dir, "list.db", kSqliteList);
  auto source = open_sqlite(path);
  EXPECT_EQ(source->describe(), path);
  const auto rows = read_all(*source);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].row, 1u);
  EXPECT_EQ(rows[0].key, "1");
  EXPECT_EQ(rows[0].address, "ann@example.org");
  EXPECT_EQ(rows[0].fields, (Fields{{"id", "1"},
                                    {"email", "ann@example.org"},
                                    {"name", "Ann"},
                                    {"topics", "News,Offers"},
                                    {"score", "1.5"}}));
  EXPECT_THAT(rows[0].topics, ElementsAre("news", "offers"));
  EXPECT_EQ(rows[1].row, 2u);
  EXPECT_FALSE(rows[1].field("name"));
  EXPECT_TRUE(rows[1].topics.empty());
  EXPECT_THAT(rows[1].field("score"), Optional(std::string_view("3.0")));
  EXPECT_THAT(rows[1].field("avatar"), Optional(std::string_view("\0\xff", 2)));
  EXPECT_EQ(rows[2].address, "");
  EXPECT_EQ(rows[2].key, "3");
  EXPECT_FALSE(rows[2].field("email"));
}

TEST(SqliteSource, CustomQuery) {
  TempDir dir;
  const std::string path = make_sqlite(dir, "list.db", kSqliteList);
  auto source = open_sqlite(path,
                            "SELECT email AS Address, id * 10 AS n FROM subscribers "
                            "WHERE email IS NOT NULL ORDER BY id DESC");
  const auto rows = read_all(*source);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].address, "bob@example.org");
  EXPECT_EQ(rows[0].key, "bob@example.org");
  EXPECT_EQ(rows[0].fields, (Fields{{"address", "bob@example.org"}, {"n", "20"}}));
  EXPECT_EQ(rows[1].row, 2u);
}

TEST(SqliteSource, BadSqlIsASourceErrorNamingTheFile) {
  TempDir dir;
  const std::string path = make_sqlite(dir, "list.db", kSqliteList);
  const std::string what = error_of([&] { (void)open_sqlite(path, "SELEKT * FROM subscribers"); });
  EXPECT_THAT(what, HasSubstr(path + ": "));
  EXPECT_THAT(what, HasSubstr("syntax error"));
  EXPECT_THAT(error_of([&] { (void)open_sqlite(path, "SELECT * FROM members"); }),
              HasSubstr(path + ": no such table: members"));
}

TEST(SqliteSource, MissingAddressColumnNamesTheColumnsFound) {
  TempDir dir;
  const std::string path = make_sqlite(dir, "list.db", kSqliteList);
  const std::string what =
      error_of([&] { (void)open_sqlite(path, "SELECT id, name FROM subscribers"); });
  EXPECT_THAT(what, HasSubstr(path));
  EXPECT_THAT(what, HasSubstr("columns: id, name"));
}

TEST(SqliteSource, MissingFileIsASourceErrorAndIsNotCreated) {
  TempDir dir;
  const std::string path = dir.file("typo.db");
  EXPECT_THAT(error_of([&] { (void)open_sqlite(path); }), HasSubstr(path + ": "));
  EXPECT_FALSE(fs::exists(path));
}

TEST(SqliteSource, NotADatabaseIsASourceError) {
  TempDir dir;
  const std::string path = write(dir, "list.txt", "email\nann@example.org\n");
  EXPECT_THAT(error_of([&] { (void)open_sqlite(path); }), HasSubstr(path + ": "));
}

TEST(OpenSource, ChoosesBySpecForm) {
  TempDir dir;
  const std::string db = make_sqlite(dir, "list.db", kSqliteList);
  const std::string csv = write(dir, "LIST.CSV", "email\nann@example.org\n");
  EXPECT_EQ(read_all(*open_source(db)).size(), 3u);
  EXPECT_EQ(read_all(*open_source(db, "SELECT email FROM subscribers LIMIT 1")).size(), 1u);
  EXPECT_EQ(read_all(*open_source(csv)).size(), 1u);
  EXPECT_THAT(error_of([&] { (void)open_source(csv, "SELECT 1"); }),
              HasSubstr("a query applies only to SQL sources"));
}

// ---------------------------------------------------------------------------------------
// validate()

Subscriber good_row() {
  Subscriber s;
  s.row = 1;
  s.key = "1";
  s.address = "ann@example.org";
  s.fields = {{"id", "1"}, {"email", "ann@example.org"}, {"name", "Ann"}};
  return s;
}

TEST(Validate, GoodRowPasses) {
  EXPECT_EQ(validate(good_row(), {"name"}), std::nullopt);
  Subscriber quoted = good_row();
  quoted.address = "\"ann smith\"@[192.0.2.1]";
  quoted.fields[1].second = quoted.address;
  EXPECT_EQ(validate(quoted, {}), std::nullopt);
}

TEST(Validate, LineBreaksAndNulAnywhereAreRefused) {
  Subscriber cr = good_row();
  cr.fields[2].second = "Ann\rBcc: x@example.net";
  EXPECT_THAT(validate(cr, {}), Optional(HasSubstr("'name' contains a CR")));
  Subscriber lf = good_row();
  lf.fields.emplace_back("city", "Paris\n");
  EXPECT_THAT(validate(lf, {}), Optional(HasSubstr("'city' contains a LF")));
  Subscriber nul = good_row();
  nul.fields.emplace_back("avatar", std::string("\0\xff", 2));
  EXPECT_THAT(validate(nul, {}), Optional(HasSubstr("'avatar' contains a NUL")));
}

TEST(Validate, BadAddressesAreRefusedNamingTheField) {
  const auto reason = [](const std::string& address) {
    Subscriber s = good_row();
    s.address = address;
    s.fields[1].second = address;
    return validate(s, {});
  };
  EXPECT_THAT(reason("ann"), Optional(HasSubstr("'email' is not a valid mailbox")));
  EXPECT_THAT(reason("ann@"), Optional(HasSubstr("'email' is not a valid mailbox")));
  EXPECT_THAT(reason("ann@example..org"), Optional(HasSubstr("not a valid mailbox")));
  EXPECT_THAT(reason("ann smith@example.org"), Optional(HasSubstr("not a valid mailbox")));
  EXPECT_THAT(reason("<ann@example.org>"), Optional(HasSubstr("not a valid mailbox")));
  EXPECT_THAT(reason("ann@example.org> x"), Optional(HasSubstr("not a valid mailbox")));
  EXPECT_THAT(reason("@relay.example:ann@example.org"), Optional(HasSubstr("source route")));
  EXPECT_THAT(reason("\xC3\xA9@example.org"), Optional(HasSubstr("not a valid mailbox")));
  EXPECT_THAT(reason(std::string(65, 'a') + "@example.org"), Optional(HasSubstr("too long")));
  EXPECT_THAT(reason(" ann@example.org"), Optional(HasSubstr("'email' has blanks")));
  EXPECT_THAT(reason("ann@example.org\t"), Optional(HasSubstr("'email' has blanks")));
  EXPECT_THAT(reason(""), Optional(HasSubstr("'email' is empty")));
}

TEST(Validate, NoAddressAtAll) {
  Subscriber s;
  s.fields = {{"id", "1"}};
  EXPECT_THAT(validate(s, {}), Optional(HasSubstr("neither an 'email' nor an 'address'")));
  Subscriber by_address;
  by_address.address = "bob";
  by_address.fields = {{"address", "bob"}};
  EXPECT_THAT(validate(by_address, {}), Optional(HasSubstr("'address' is not a valid mailbox")));
}

TEST(Validate, RequiredFieldsMissingOrEmpty) {
  EXPECT_THAT(validate(good_row(), {"name", "city"}),
              Optional(HasSubstr("required field 'city' is missing")));
  Subscriber blank = good_row();
  blank.fields[2].second = " \t";
  EXPECT_THAT(validate(blank, {"name"}), Optional(HasSubstr("required field 'name' is empty")));
  Subscriber empty = good_row();
  empty.fields[2].second.clear();
  EXPECT_THAT(validate(empty, {"Name"}), Optional(HasSubstr("required field 'name' is empty")));
}

// ---------------------------------------------------------------------------------------
// PostgreSQL, against a real server started for the suite

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (const char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string postgres_bin_dir() {
  const char* versions[] = {"15", "16", "17", "14", "13"};
  for (const char* v : versions) {
    const std::string dir = std::string("/usr/lib/postgresql/") + v + "/bin";
    if (::access((dir + "/initdb").c_str(), X_OK) == 0 &&
        ::access((dir + "/pg_ctl").c_str(), X_OK) == 0 &&
        ::access((dir + "/psql").c_str(), X_OK) == 0) {
      return dir;
    }
  }
  return {};
}

int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

// initdb + pg_ctl in a private directory that also holds the unix socket. initdb refuses to
// run as root, so as root the server runs as the `postgres` user.
class PostgresServer {
 public:
  explicit PostgresServer(std::string bin) : bin_(std::move(bin)) {}
  ~PostgresServer() { stop(); }
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // Empty on success, else what went wrong with the server's log.
  std::string start() {
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam("postgres");
      if (pw == nullptr) return "running as root and there is no postgres user";
      if (::chown(dir_.path().c_str(), pw->pw_uid, pw->pw_gid) != 0) return "chown failed";
      as_ = "runuser -u postgres -- ";
    }
    port_ = free_tcp_port();
    if (port_ == 0) return "no free TCP port";
    const std::string data = dir_.file("data");
    if (run(bin_ + "/initdb -D " + shell_quote(data) +
            " -U postgres -A trust -E UTF8 --locale=C --no-sync --no-instructions") != 0) {
      return "initdb failed:\n" + log();
    }
    const std::string options = "-c listen_addresses=127.0.0.1 -p " + std::to_string(port_) +
                                " -k " + dir_.path().string() +
                                " -c fsync=off -c full_page_writes=off -c max_connections=20";
    if (run(bin_ + "/pg_ctl -D " + shell_quote(data) + " -l " +
            shell_quote(dir_.file("server.log")) + " -w -t 30 -o " + shell_quote(options) +
            " start") != 0) {
      return "pg_ctl start failed:\n" + log();
    }
    started_ = true;
    return {};
  }

  void stop() {
    if (!started_) return;
    started_ = false;
    (void)run(bin_ + "/pg_ctl -D " + shell_quote(dir_.file("data")) + " -m immediate -w stop");
  }

  // Runs SQL through psql, as the superuser, over the socket.
  [[nodiscard]] bool psql(const std::string& sql) const {
    const std::string file = dir_.file("setup.sql");
    std::ofstream(file) << sql;
    return std::system((bin_ + "/psql -X -q -v ON_ERROR_STOP=1 -h " + shell_quote(socket_dir()) +
                        " -p " + std::to_string(port_) + " -U postgres -d postgres -f " +
                        shell_quote(file) + " >>" + shell_quote(dir_.file("psql.log")) + " 2>&1")
                           .c_str()) == 0;
  }

  [[nodiscard]] std::string socket_dir() const { return dir_.path().string(); }
  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] std::string conninfo() const {
    return "host=" + socket_dir() + " port=" + std::to_string(port_) +
           " dbname=postgres user=postgres";
  }
  [[nodiscard]] std::string log() const {
    std::ostringstream out;
    for (const char* name : {"command.log", "server.log", "psql.log"}) {
      std::ifstream in(dir_.file(name));
      if (in) out << "--- " << name << "\n" << in.rdbuf();
    }
    return out.str();
  }

 private:
  [[nodiscard]] int run(const std::string& command) const {
    const std::string logged = dir_.file("command.log");
    return std::system((as_ + command + " >>" + shell_quote(logged) + " 2>&1").c_str());
  }

  std::string bin_;
  TempDir dir_;
  std::string as_;
  int port_ = 0;
  bool started_ = false;
};

constexpr int kPostgresRows = 3000;

class PostgresSourceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string bin = postgres_bin_dir();
    if (bin.empty()) return;
    const auto began = std::chrono::steady_clock::now();
    server_ = std::make_unique<PostgresServer>(bin);
    setup_error_ = server_->start();
    if (setup_error_.empty() &&
        !server_->psql(
            "CREATE TABLE subscribers (id bigint PRIMARY KEY, \"Email\" text NOT NULL, name text,"
            " topics text, score integer, ratio double precision, avatar bytea, active boolean);\n"
            "INSERT INTO subscribers SELECT i, 'user' || i || '@example.org',"
            " CASE WHEN i % 7 = 0 THEN NULL ELSE 'User ' || i END,"
            " CASE i % 3 WHEN 0 THEN 'News, Offers' WHEN 1 THEN 'news' END,"
            " i * 10, i / 4.0, CASE WHEN i = 5 THEN '\\x00ff'::bytea END, i % 2 = 0"
            " FROM generate_series(1, " +
            std::to_string(kPostgresRows) + ") AS i;\n")) {
      setup_error_ = "creating the table failed:\n" + server_->log();
    }
    setup_seconds_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  }
  static void TearDownTestSuite() { server_.reset(); }

  void SetUp() override {
    if (!server_) GTEST_SKIP() << "no PostgreSQL binaries under /usr/lib/postgresql";
    ASSERT_EQ(setup_error_, "");
    RecordProperty("server_setup_seconds", std::to_string(setup_seconds_));
  }

  static std::unique_ptr<PostgresServer> server_;
  static std::string setup_error_;
  static double setup_seconds_;
};

std::unique_ptr<PostgresServer> PostgresSourceTest::server_;
std::string PostgresSourceTest::setup_error_;
double PostgresSourceTest::setup_seconds_ = 0;

TEST_F(PostgresSourceTest, StreamsEveryRowWithNullsTopicsAndTypes) {
  auto source = open_postgres(server_->conninfo(), "SELECT * FROM subscribers ORDER BY id");
  EXPECT_EQ(source->describe(), "postgresql " + server_->conninfo());
  int n = 0;
  while (auto s = source->next()) {
    ++n;
    ASSERT_EQ(s->row, static_cast<std::size_t>(n));
    ASSERT_EQ(s->key, std::to_string(n));
    ASSERT_EQ(s->address, "user" + std::to_string(n) + "@example.org");
    ASSERT_THAT(s->field("email"), Optional(std::string_view(s->address)));
    if (n % 7 == 0) {
      ASSERT_FALSE(s->field("name"));
    } else {
      ASSERT_THAT(s->field("name"), Optional(std::string_view("User " + std::to_string(n))));
    }
    if (n % 3 == 0) {
      ASSERT_THAT(s->topics, ElementsAre("news", "offers"));
    } else if (n % 3 == 1) {
      ASSERT_THAT(s->topics, ElementsAre("news"));
    } else {
      ASSERT_FALSE(s->field("topics"));
      ASSERT_TRUE(s->topics.empty());
    }
    ASSERT_THAT(s->field("score"), Optional(std::string_view(std::to_string(n * 10))));
    ASSERT_THAT(s->field("active"), Optional(std::string_view(n % 2 == 0 ? "t" : "f")));
    if (n == 5) {
      ASSERT_THAT(s->field("avatar"), Optional(std::string_view("\0\xff", 2)));
      ASSERT_THAT(s->field("ratio"), Optional(std::string_view("1.25")));
    } else {
      ASSERT_FALSE(s->field("avatar"));
    }
  }
  EXPECT_EQ(n, kPostgresRows);
  EXPECT_FALSE(source->next());
}

TEST_F(PostgresSourceTest, OpenSourceTakesKeywordsAndUris) {
  auto by_keywords = open_source(server_->conninfo());
  EXPECT_EQ(read_all(*by_keywords).size(), static_cast<std::size_t>(kPostgresRows));

  const std::string uri =
      "postgresql://postgres:hunter2@127.0.0.1:" + std::to_string(server_->port()) +
      "/postgres?connect_timeout=5";
  auto by_uri =
      open_source(uri, "SELECT id, \"Email\" FROM subscribers WHERE id <= 10 ORDER BY id");
  EXPECT_EQ(by_uri->describe(),
            "postgresql postgresql://postgres@127.0.0.1:" + std::to_string(server_->port()) +
                "/postgres?connect_timeout=5");
  const auto rows = read_all(*by_uri);
  ASSERT_EQ(rows.size(), 10u);
  EXPECT_EQ(rows[9].fields, (Fields{{"id", "10"}, {"email", "user10@example.org"}}));

  auto none = open_source(server_->conninfo(), "SELECT * FROM subscribers WHERE false");
  EXPECT_FALSE(none->next());
}

TEST_F(PostgresSourceTest, BadQueryIsASourceErrorWithoutThePassword) {
  const std::string conninfo = server_->conninfo() + " password='hunter 2'";
  const std::string what =
      error_of([&] { (void)open_postgres(conninfo, "SELECT * FROM nowhere"); });
  EXPECT_THAT(what, HasSubstr("postgresql " + server_->conninfo() + ": "));
  EXPECT_THAT(what, HasSubstr("nowhere"));
  EXPECT_THAT(what, Not(HasSubstr("hunter")));

  EXPECT_THAT(error_of([&] { (void)open_postgres(conninfo, "SELECT id FROM subscribers"); }),
              HasSubstr("columns: id"));
  EXPECT_THAT(error_of([&] { (void)open_postgres(conninfo, "SELECT 1 AS email; SELECT 2"); }),
              HasSubstr("postgresql"));
}

TEST_F(PostgresSourceTest, ErrorMidStreamIsASourceError) {
  auto source =
      open_postgres(server_->conninfo(),
                    // No ORDER BY: a sort would meet the error before the first row is sent.
                    "SELECT id, \"Email\", 1 / (id - 1500) AS x FROM subscribers");
  std::size_t rows = 0;
  const std::string what = error_of([&] {
    while (source->next()) ++rows;
  });
  EXPECT_THAT(what, HasSubstr("division by zero"));
  EXPECT_GT(rows, 0u);  // rows arrive before the error: the result is streamed
  EXPECT_LT(rows, 1500u);
  EXPECT_FALSE(source->next());
}

TEST_F(PostgresSourceTest, StoppingEarlyCancelsTheQuery) {
  const auto began = std::chrono::steady_clock::now();
  {
    auto source = open_postgres(server_->conninfo(),
                                // In the select list a set-returning function streams; in FROM it
                                // would be materialized first.
                                "SELECT i AS id, 'u' || i || '@example.org' AS email FROM "
                                "(SELECT generate_series(1, 100000000) AS i) AS series");
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(source->next());
  }
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(10));
  // The server is still usable afterwards.
  EXPECT_EQ(read_all(*open_postgres(server_->conninfo(), "SELECT 'a@example.org' AS email")).size(),
            1u);
}

TEST(PostgresSource, UnreachableServerIsASourceErrorWithoutThePassword) {
  const std::string what = error_of(
      [] { (void)open_postgres("host=/nonexistent-mma-dir port=1 dbname=x password=hunter2"); });
  EXPECT_THAT(what, HasSubstr("postgresql host=/nonexistent-mma-dir port=1 dbname=x: "));
  EXPECT_THAT(what, Not(HasSubstr("hunter2")));

  const std::string by_uri = error_of([] {
    (void)open_source(
        "postgres://bob:hunter2@/x?host=/nonexistent-mma-dir&password=hunter2&port=1");
  });
  EXPECT_THAT(by_uri, HasSubstr("postgresql postgres://bob@/x?host=/nonexistent-mma-dir&port=1: "));
  EXPECT_THAT(by_uri, Not(HasSubstr("hunter2")));
}

}  // namespace
}  // namespace mma::compose
