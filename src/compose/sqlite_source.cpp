// compose/sqlite_source: subscribers from an SQLite query, opened read-only.
#include "compose/recipients.hpp"

#include <sqlite3.h>

#include "compose/recipients_internal.hpp"

namespace mma::compose::detail {
namespace {

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

}  // namespace
}  // namespace mma::compose::detail

namespace mma::compose {

std::unique_ptr<RecipientSource> open_sqlite(const std::string& path, const std::string& query) {
  return std::make_unique<detail::SqliteSource>(path, query);
}

}  // namespace mma::compose
