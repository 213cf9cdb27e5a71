#include "compose/recipients.hpp"

#include <fcntl.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "smtp/address.hpp"

namespace mma::compose {

namespace {

constexpr std::string_view kDefaultQuery = "SELECT * FROM subscribers";
constexpr std::size_t kNone = static_cast<std::size_t>(-1);

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c;
}

std::string lowered(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

std::string trimmed(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return std::string(s);
}

bool ends_with_nocase(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  return lowered(s.substr(s.size() - suffix.size())) == suffix;
}

std::vector<std::string> split_topics(std::string_view text) {
  std::vector<std::string> topics;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ',' || is_blank(text[i]))) ++i;
    const std::size_t start = i;
    while (i < text.size() && text[i] != ',' && !is_blank(text[i])) ++i;
    if (i > start) topics.push_back(lowered(text.substr(start, i - start)));
  }
  return topics;
}

// The shape of a result, worked out once per source so that each row costs only its values.
class Columns {
 public:
  Columns(std::vector<std::string> names, const std::string& source) : names_(std::move(names)) {
    std::size_t alt_address = kNone;
    for (std::size_t i = 0; i < names_.size(); ++i) {
      const std::string& n = names_[i];
      if (n == "email" && address_ == kNone) address_ = i;
      if (n == "address" && alt_address == kNone) alt_address = i;
      if (n == "id" && id_ == kNone) id_ = i;
      if (n == "topics" && topics_ == kNone) topics_ = i;
    }
    if (address_ == kNone) address_ = alt_address;
    if (address_ == kNone) {
      std::string found;
      for (const auto& n : names_) found += (found.empty() ? "" : ", ") + n;
      throw SourceError(source + ": no address column (`email` or `address`); columns: " +
                        (found.empty() ? "(none)" : found));
    }
  }

  [[nodiscard]] std::size_t size() const { return names_.size(); }

  Subscriber start(std::size_t row) const {
    Subscriber s;
    s.row = row;
    s.fields.reserve(names_.size());
    return s;
  }

  void add(Subscriber& s, std::size_t column, std::string value) const {
    if (column == address_) s.address = value;
    if (column == id_) s.key = value;
    if (column == topics_) s.topics = split_topics(value);
    s.fields.emplace_back(names_[column], std::move(value));
  }

  static void finish(Subscriber& s) {
    if (s.key.empty()) s.key = s.address;
  }

 private:
  std::vector<std::string> names_;  // lower-case
  std::size_t address_ = kNone;
  std::size_t id_ = kNone;
  std::size_t topics_ = kNone;
};

// ---------------------------------------------------------------------------------------
// CSV

// An RFC 4180 record reader over read(2) with its own buffer: one pass, no line splitting
// first, because a quoted field may hold line ends.
class CsvReader {
 public:
  explicit CsvReader(std::string path) : path_(std::move(path)), buf_(kBufferSize) {
    do {
      fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) throw SourceError(path_ + ": " + std::strerror(errno));
#ifdef POSIX_FADV_SEQUENTIAL
    ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    if (available() && end_ >= 3 && std::memcmp(buf_.data(), "\xEF\xBB\xBF", 3) == 0) pos_ = 3;
  }
  ~CsvReader() {
    if (fd_ >= 0) ::close(fd_);
  }
  CsvReader(const CsvReader&) = delete;
  CsvReader& operator=(const CsvReader&) = delete;

  // Reads one record into `out`; false at the end of the file.
  bool read(std::vector<std::string>& out) {
    out.clear();
    if (!available()) return false;
    record_line_ = line_;
    for (;;) {
      std::string& field = out.emplace_back();
      const bool quoted = buf_[pos_] == '"';
      if (quoted) {
        read_quoted(field);
      } else {
        read_plain(field);
      }
      if (!available()) return true;  // the last record may lack its line end
      const char c = buf_[pos_];
      if (c == ',') {
        ++pos_;
        if (!available()) {
          out.emplace_back();  // "a,b," at the very end: an empty last field
          return true;
        }
        continue;
      }
      if (c == '\n' || c == '\r') {
        ++pos_;
        if (c == '\r' && available() && buf_[pos_] == '\n') ++pos_;
        ++line_;
        return true;
      }
      throw error(line_, "text after the closing quote of a field");
    }
  }

  [[nodiscard]] std::size_t record_line() const {
    return record_line_;
  }
  [[nodiscard]] const std::string& path() const {
    return path_;
  }

  [[nodiscard]] SourceError error(std::size_t line, const std::string& what) const {
    return SourceError(path_ + ":" + std::to_string(line) + ": " + what);
  }

 private:
  static constexpr std::size_t kBufferSize = std::size_t{256} << 10;
  // A per-recipient value has no business being this long; an unbalanced quote would
  // otherwise swallow the rest of a large file into one field.
  static constexpr std::size_t kMaxField = std::size_t{1} << 20;

  bool available() {
    if (pos_ < end_) return true;
    if (eof_) return false;
    ssize_t n = 0;
    do {
      n = ::read(fd_, buf_.data(), buf_.size());
    } while (n < 0 && errno == EINTR);
    if (n < 0) throw error(line_, std::string("read: ") + std::strerror(errno));
    pos_ = 0;
    end_ = static_cast<std::size_t>(n);
    eof_ = n == 0;
    return !eof_;
  }

  void append(std::string& field, const char* from, const char* to, std::size_t line) const {
    if (field.size() + static_cast<std::size_t>(to - from) > kMaxField) {
      throw error(line, "field longer than 1 MiB (an unbalanced quote?)");
    }
    field.append(from, to);
  }

  // Stops before the delimiter (',', CR, LF) or at the end of the file.
  void read_plain(std::string& field) {
    while (available()) {
      const char* p = buf_.data() + pos_;
      const char* e = buf_.data() + end_;
      const char* q = p;
      while (q < e && *q != ',' && *q != '\n' && *q != '\r') ++q;
      append(field, p, q, line_);
      pos_ = static_cast<std::size_t>(q - buf_.data());
      if (q < e) return;
    }
  }

  // Starts on the opening quote; stops after the closing one.
  void read_quoted(std::string& field) {
    const std::size_t open_line = line_;
    ++pos_;
    for (;;) {
      if (!available()) throw error(open_line, "quoted field never closes");
      const char* p = buf_.data() + pos_;
      const char* e = buf_.data() + end_;
      const char* q = p;
      while (q < e && *q != '"' && *q != '\n') ++q;
      append(field, p, q, open_line);
      pos_ = static_cast<std::size_t>(q - buf_.data());
      if (q == e) continue;
      ++pos_;
      if (*q == '\n') {
        field.push_back('\n');
        ++line_;
        continue;
      }
      if (available() && buf_[pos_] == '"') {  // "" stands for one quote
        field.push_back('"');
        ++pos_;
        continue;
      }
      return;
    }
  }

  std::string path_;
  int fd_ = -1;
  std::vector<char> buf_;
  std::size_t pos_ = 0;
  std::size_t end_ = 0;
  bool eof_ = false;
  std::size_t line_ = 1;
  std::size_t record_line_ = 1;
};

std::vector<std::string> csv_header(CsvReader& reader) {
  std::vector<std::string> names;
  if (!reader.read(names)) throw SourceError(reader.path() + ": empty file, expected a header row");
  // Spreadsheets export trailing commas; an empty name anywhere else is a broken header.
  while (names.size() > 1 && trimmed(names.back()).empty()) names.pop_back();
  for (std::size_t i = 0; i < names.size(); ++i) {
    names[i] = lowered(trimmed(names[i]));
    if (names[i].empty() && names.size() > 1) {
      throw reader.error(1, "column " + std::to_string(i + 1) + " of the header has no name");
    }
  }
  return names;
}

class CsvSource final : public RecipientSource {
 public:
  explicit CsvSource(const std::string& path)
      : reader_(path), columns_(csv_header(reader_), path) {}

  std::optional<Subscriber> next() override {
    for (;;) {
      if (!reader_.read(record_)) return std::nullopt;
      if (record_.size() == 1 && record_[0].empty()) continue;  // a blank line
      ++row_;
      if (record_.size() > columns_.size()) {
        const bool extra_empty =
            std::all_of(record_.begin() + static_cast<std::ptrdiff_t>(columns_.size()),
                        record_.end(), [](const std::string& f) { return f.empty(); });
        if (!extra_empty) {
          throw reader_.error(reader_.record_line(), "record " + std::to_string(row_) + " has " +
                                                         std::to_string(record_.size()) +
                                                         " fields, the header names " +
                                                         std::to_string(columns_.size()));
        }
        record_.resize(columns_.size());
      }
      Subscriber s = columns_.start(row_);
      for (std::size_t i = 0; i < record_.size(); ++i) columns_.add(s, i, std::move(record_[i]));
      Columns::finish(s);
      return s;
    }
  }

  std::string describe() const override { return reader_.path(); }

 private:
  CsvReader reader_;
  Columns columns_;
  std::vector<std::string> record_;
  std::size_t row_ = 0;
};

// ---------------------------------------------------------------------------------------
// SQLite

class SqliteSource final : public RecipientSource {
 public:
  SqliteSource(const std::string& path, const std::string& query) : path_(path) {
    // Read-only and without SQLITE_OPEN_CREATE: a mistyped path must not become an empty list.
    const int rc =
        sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      const std::string why = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      sqlite3_close(db_);
      throw SourceError(path_ + ": " + why);
    }
    // The list may be written to while a campaign reads it.
    sqlite3_busy_timeout(db_, 5000);
    const std::string& sql = query.empty() ? std::string(kDefaultQuery) : query;
    if (sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()) + 1, &stmt_, nullptr) !=
            SQLITE_OK ||
        stmt_ == nullptr) {
      const std::string why = stmt_ == nullptr && sqlite3_errcode(db_) == SQLITE_OK
                                  ? "the query is empty"
                                  : sqlite3_errmsg(db_);
      close();
      throw SourceError(path_ + ": " + why);
    }
    std::vector<std::string> names;
    const int n = sqlite3_column_count(stmt_);
    for (int i = 0; i < n; ++i) {
      const char* name = sqlite3_column_name(stmt_, i);
      names.push_back(lowered(name != nullptr ? name : ""));
    }
    try {
      columns_.emplace(std::move(names), path_);
    } catch (...) {
      close();
      throw;
    }
  }
  ~SqliteSource() override { close(); }
  SqliteSource(const SqliteSource&) = delete;
  SqliteSource& operator=(const SqliteSource&) = delete;

  std::optional<Subscriber> next() override {
    if (done_) return std::nullopt;
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_DONE) {
      done_ = true;
      return std::nullopt;
    }
    if (rc != SQLITE_ROW) {
      done_ = true;
      throw SourceError(path_ + ": " + sqlite3_errmsg(db_));
    }
    Subscriber s = columns_->start(++row_);
    const int n = sqlite3_column_count(stmt_);
    for (int i = 0; i < n; ++i) {
      const int type = sqlite3_column_type(stmt_, i);
      if (type == SQLITE_NULL) continue;
      // Text first, then its length: the documented order for a conversion to be counted.
      const void* data = type == SQLITE_BLOB
                             ? sqlite3_column_blob(stmt_, i)
                             : static_cast<const void*>(sqlite3_column_text(stmt_, i));
      const auto size = static_cast<std::size_t>(sqlite3_column_bytes(stmt_, i));
      std::string value =
          data != nullptr ? std::string(static_cast<const char*>(data), size) : std::string();
      columns_->add(s, static_cast<std::size_t>(i), std::move(value));
    }
    Columns::finish(s);
    return s;
  }

  std::string describe() const override { return path_; }

 private:
  void close() {
    sqlite3_finalize(stmt_);
    stmt_ = nullptr;
    sqlite3_close(db_);
    db_ = nullptr;
  }

  std::string path_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  std::optional<Columns> columns_;
  std::size_t row_ = 0;
  bool done_ = false;
};

// ---------------------------------------------------------------------------------------
// PostgreSQL

bool is_uri(std::string_view s) {
  return s.starts_with("postgresql://") || s.starts_with("postgres://");
}

// A URI without the password of its userinfo and without a password= parameter.
std::string redact_uri(std::string_view uri) {
  const std::size_t scheme_end = uri.find("://") + 3;
  std::string out(uri.substr(0, scheme_end));
  std::string_view rest = uri.substr(scheme_end);
  const std::size_t authority_end = std::min(rest.find_first_of("/?"), rest.size());
  std::string_view authority = rest.substr(0, authority_end);
  rest.remove_prefix(authority_end);
  const std::size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    out += userinfo.substr(0, userinfo.find(':'));
    authority.remove_prefix(at);
  }
  out += authority;
  const std::size_t question = rest.find('?');
  out += rest.substr(0, question);
  if (question == std::string_view::npos) return out;
  std::string_view params = rest.substr(question + 1);
  std::string kept;
  while (!params.empty()) {
    const std::size_t amp = std::min(params.find('&'), params.size());
    const std::string_view param = params.substr(0, amp);
    if (!lowered(param).starts_with("password=") && !param.empty()) {
      kept += (kept.empty() ? "" : "&") + std::string(param);
    }
    params.remove_prefix(std::min(amp + 1, params.size()));
  }
  if (!kept.empty()) out += "?" + kept;
  return out;
}

// key=value pairs (values may be 'quoted' with \ escapes) without the password pair.
std::string redact_keywords(std::string_view s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i])) != 0) ++i;
    if (i >= s.size()) break;
    const std::size_t start = i;
    while (i < s.size() && s[i] != '=' && std::isspace(static_cast<unsigned char>(s[i])) == 0) ++i;
    const std::string key = lowered(s.substr(start, i - start));
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i])) != 0) ++i;
    if (i < s.size() && s[i] == '=') {
      ++i;
      while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i])) != 0) ++i;
      if (i < s.size() && s[i] == '\'') {
        for (++i; i < s.size() && s[i] != '\''; ++i) {
          if (s[i] == '\\') ++i;
        }
        if (i < s.size()) ++i;
      } else {
        for (; i < s.size() && std::isspace(static_cast<unsigned char>(s[i])) == 0; ++i) {
          if (s[i] == '\\') ++i;
        }
      }
    }
    i = std::min(i, s.size());
    if (key != "password")
      out += (out.empty() ? "" : " ") + std::string(s.substr(start, i - start));
  }
  return out;
}

std::string describe_postgres(const std::string& conninfo) {
  return "postgresql " + (is_uri(conninfo) ? redact_uri(conninfo) : redact_keywords(conninfo));
}

std::string without_newline(const char* message) {
  std::string s = message != nullptr ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  // libpq's multi-line messages ("connection to server ... failed: ...\n\tIs the server ...")
  // read better on one log line.
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

constexpr Oid kByteaOid = 17;

class PostgresSource final : public RecipientSource {
 public:
  PostgresSource(const std::string& conninfo, const std::string& query)
      : name_(describe_postgres(conninfo)) {
    conn_ = PQconnectdb(conninfo.c_str());
    if (conn_ == nullptr) throw SourceError(name_ + ": out of memory");
    if (PQstatus(conn_) != CONNECTION_OK) fail(PQerrorMessage(conn_));
    // Templates and headers are UTF-8 whatever the database stores.
    if (PQsetClientEncoding(conn_, "UTF8") != 0) fail(PQerrorMessage(conn_));
    const std::string& sql = query.empty() ? std::string(kDefaultQuery) : query;
    // The extended protocol (PQsendQueryParams) takes one statement only, as a source should.
    if (PQsendQueryParams(conn_, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) == 0 ||
        PQsetSingleRowMode(conn_) == 0) {
      fail(PQerrorMessage(conn_));
    }
    // The first result carries the column names, so a wrong query fails here, at open.
    pending_ = PQgetResult(conn_);
    const ExecStatusType status =
        pending_ != nullptr ? PQresultStatus(pending_) : PGRES_FATAL_ERROR;
    if (status != PGRES_SINGLE_TUPLE && status != PGRES_TUPLES_OK) {
      if (status == PGRES_COMMAND_OK) fail("the query returns no rows");
      fail(pending_ != nullptr ? PQresultErrorMessage(pending_) : PQerrorMessage(conn_));
    }
    std::vector<std::string> names;
    const int n = PQnfields(pending_);
    for (int i = 0; i < n; ++i) {
      names.push_back(lowered(PQfname(pending_, i)));
      bytea_.push_back(PQftype(pending_, i) == kByteaOid);
    }
    try {
      columns_.emplace(std::move(names), name_);
    } catch (...) {
      close();
      throw;
    }
  }
  ~PostgresSource() override { close(); }
  PostgresSource(const PostgresSource&) = delete;
  PostgresSource& operator=(const PostgresSource&) = delete;

  std::optional<Subscriber> next() override {
    if (done_) return std::nullopt;
    PGresult* res = pending_ != nullptr ? pending_ : PQgetResult(conn_);
    pending_ = nullptr;
    const ExecStatusType status = res != nullptr ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (status == PGRES_SINGLE_TUPLE) {
      Subscriber s = row(res);
      PQclear(res);
      return s;
    }
    std::string why = status == PGRES_TUPLES_OK ? std::string()
                      : res != nullptr          ? without_newline(PQresultErrorMessage(res))
                                                : without_newline(PQerrorMessage(conn_));
    if (why.empty() && status != PGRES_TUPLES_OK) why = "the query ended without a result";
    PQclear(res);
    drain();
    done_ = true;
    if (!why.empty()) throw SourceError(name_ + ": " + why);
    return std::nullopt;
  }

  std::string describe() const override { return name_; }

 private:
  Subscriber row(const PGresult* res) {
    Subscriber s = columns_->start(++row_);
    const int n = PQnfields(res);
    for (int i = 0; i < n; ++i) {
      if (PQgetisnull(res, 0, i) != 0) continue;
      const char* value = PQgetvalue(res, 0, i);
      if (bytea_[static_cast<std::size_t>(i)]) {
        std::size_t size = 0;
        unsigned char* bytes =
            PQunescapeBytea(reinterpret_cast<const unsigned char*>(value), &size);
        if (bytes == nullptr) throw SourceError(name_ + ": out of memory");
        std::string text(reinterpret_cast<const char*>(bytes), size);
        PQfreemem(bytes);
        columns_->add(s, static_cast<std::size_t>(i), std::move(text));
      } else {
        const auto size = static_cast<std::size_t>(PQgetlength(res, 0, i));
        columns_->add(s, static_cast<std::size_t>(i), std::string(value, size));
      }
    }
    Columns::finish(s);
    return s;
  }

  void drain() {
    while (PGresult* r = PQgetResult(conn_)) PQclear(r);
  }

  [[noreturn]] void fail(const char* why) {
    std::string message = name_ + ": " + without_newline(why);
    close();
    throw SourceError(message);
  }

  void close() {
    PQclear(pending_);
    pending_ = nullptr;
    if (conn_ == nullptr) return;
    // Stopped early: cancel, or the server goes on producing rows nobody reads until it
    // notices the closed socket.
    if (!done_ && PQtransactionStatus(conn_) == PQTRANS_ACTIVE) {
      if (PGcancel* cancel = PQgetCancel(conn_)) {
        char buf[256];
        PQcancel(cancel, buf, sizeof buf);
        PQfreeCancel(cancel);
      }
    }
    PQfinish(conn_);
    conn_ = nullptr;
  }

  std::string name_;
  PGconn* conn_ = nullptr;
  PGresult* pending_ = nullptr;
  std::optional<Columns> columns_;
  std::vector<bool> bytea_;
  std::size_t row_ = 0;
  bool done_ = false;
};

// ---------------------------------------------------------------------------------------
// Validation

std::optional<std::string> check_address(const Subscriber& s) {
  const char* column = s.field("email") ? "email" : s.field("address") ? "address" : nullptr;
  const std::string name = column != nullptr ? column : "email";
  if (s.address.empty()) {
    if (column == nullptr) return "no address: the row has neither an 'email' nor an 'address'";
    return "field '" + name + "' is empty";
  }
  if (is_blank(s.address.front()) || is_blank(s.address.back())) {
    return "field '" + name + "' has blanks around the address";
  }
  // parse_path() accepts a source route, as SMTP must; a list has no excuse for one.
  if (s.address.front() == '@') return "field '" + name + "' is not a valid mailbox: source route";
  const std::string path = "<" + s.address + ">";
  const smtp::PathParse parsed = smtp::parse_path(path, false, false);
  if (!parsed.ok || !parsed.rest.empty()) {
    return "field '" + name +
           "' is not a valid mailbox: " + (parsed.ok ? "junk after the address" : parsed.error);
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string_view> Subscriber::field(std::string_view lower_name) const {
  for (const auto& [name, value] : fields) {
    if (name == lower_name) return value;
  }
  return std::nullopt;
}

bool Subscriber::subscribed(std::string_view lower_topic) const {
  return std::find(topics.begin(), topics.end(), lower_topic) != topics.end();
}

std::unique_ptr<RecipientSource> open_sqlite(const std::string& path, const std::string& query) {
  return std::make_unique<SqliteSource>(path, query);
}

std::unique_ptr<RecipientSource> open_csv(const std::string& path) {
  return std::make_unique<CsvSource>(path);
}

std::unique_ptr<RecipientSource> open_postgres(const std::string& conninfo,
                                               const std::string& query) {
  return std::make_unique<PostgresSource>(conninfo, query);
}

std::unique_ptr<RecipientSource> open_source(const std::string& spec, const std::string& query) {
  if (is_uri(spec) || spec.find("host=") != std::string::npos ||
      spec.find("dbname=") != std::string::npos) {
    return open_postgres(spec, query);
  }
  if (ends_with_nocase(spec, ".csv")) {
    if (!query.empty()) throw SourceError(spec + ": a query applies only to SQL sources");
    return open_csv(spec);
  }
  return open_sqlite(spec, query);
}

std::optional<std::string> validate(const Subscriber& s,
                                    const std::vector<std::string>& required_fields) {
  // Injection first: whatever else is wrong, a line break must be what the log reports.
  for (const auto& [name, value] : s.fields) {
    for (const char c : value) {
      if (c == '\r') return "field '" + name + "' contains a CR";
      if (c == '\n') return "field '" + name + "' contains a LF";
      if (c == '\0') return "field '" + name + "' contains a NUL byte";
    }
  }
  if (auto why = check_address(s)) return why;
  for (const auto& required : required_fields) {
    const std::string name = lowered(required);
    const auto value = s.field(name);
    if (!value) return "required field '" + name + "' is missing";
    if (std::all_of(value->begin(), value->end(), is_blank)) {
      return "required field '" + name + "' is empty";
    }
  }
  return std::nullopt;
}

}  // namespace mma::compose
