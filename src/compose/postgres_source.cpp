// compose/postgres_source: subscribers from a PostgreSQL query (libpq), streamed row by row.
#include "compose/recipients.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <cctype>

#include "compose/recipients_internal.hpp"

namespace mma::compose::detail {

bool is_postgres_uri(std::string_view s) {
  return s.starts_with("postgresql://") || s.starts_with("postgres://");
}

namespace {

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
  return "postgresql " +
         (is_postgres_uri(conninfo) ? redact_uri(conninfo) : redact_keywords(conninfo));
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

}  // namespace
}  // namespace mma::compose::detail

namespace mma::compose {

std::unique_ptr<RecipientSource> open_postgres(const std::string& conninfo,
                                               const std::string& query) {
  return std::make_unique<detail::PostgresSource>(conninfo, query);
}

}  // namespace mma::compose
