#include "compose/send_log.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <stdexcept>
#include <unordered_set>

namespace mma::compose {
namespace {

class SqliteSendLog : public SendLog {
 public:
  SqliteSendLog(const std::string& path, std::string campaign)
      : path_(path), campaign_(std::move(campaign)) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK)
      fail("cannot open");
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=NORMAL");
    exec("PRAGMA busy_timeout=5000");
    exec(
        "CREATE TABLE IF NOT EXISTS mma_sent (campaign TEXT NOT NULL, key TEXT NOT NULL, "
        "accepted_at INTEGER NOT NULL, PRIMARY KEY (campaign, key))");
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(db_, "SELECT key FROM mma_sent WHERE campaign = ?", -1, &q, nullptr) !=
        SQLITE_OK)
      fail("cannot read mma_sent");
    sqlite3_bind_text(q, 1, campaign_.data(), static_cast<int>(campaign_.size()), SQLITE_STATIC);
    while (sqlite3_step(q) == SQLITE_ROW) {
      sent_.emplace(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)),
                    static_cast<std::size_t>(sqlite3_column_bytes(q, 0)));
    }
    sqlite3_finalize(q);
    if (sqlite3_prepare_v2(db_,
                           "INSERT OR IGNORE INTO mma_sent (campaign, key, accepted_at) "
                           "VALUES (?, ?, ?)",
                           -1, &insert_, nullptr) != SQLITE_OK)
      fail("cannot prepare the insert into mma_sent");
  }
  ~SqliteSendLog() override {
    sqlite3_finalize(insert_);
    sqlite3_close(db_);
  }
  SqliteSendLog(const SqliteSendLog&) = delete;
  SqliteSendLog& operator=(const SqliteSendLog&) = delete;

  [[nodiscard]] bool sent(const std::string& key) const override { return sent_.contains(key); }
  void record(const std::string& key) override {
    sqlite3_bind_text(insert_, 1, campaign_.data(), static_cast<int>(campaign_.size()),
                      SQLITE_STATIC);
    sqlite3_bind_text(insert_, 2, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    sqlite3_bind_int64(insert_, 3, static_cast<sqlite3_int64>(std::time(nullptr)));
    const int rc = sqlite3_step(insert_);
    sqlite3_reset(insert_);
    if (rc != SQLITE_DONE) fail("cannot record an accepted recipient");
    sent_.insert(key);
  }
  [[nodiscard]] std::size_t count() const override { return sent_.size(); }
  [[nodiscard]] std::string describe() const override {
    return path_ + " (table mma_sent, campaign " + campaign_ + ")";
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(path_ + ": " + what + ": " +
                             (db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory"));
  }
  void exec(const char* sql) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) fail(sql);
  }

  std::string path_, campaign_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
  std::unordered_set<std::string> sent_;
};

class FileSendLog : public SendLog {
 public:
  explicit FileSendLog(std::string path) : path_(std::move(path)) {
    {
      std::ifstream in(path_);
      std::string line;
      while (std::getline(in, line)) {
        if (!line.empty()) sent_.insert(line);
      }
    }
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error(path_ + ": cannot open: " + std::strerror(errno));
  }
  ~FileSendLog() override { ::close(fd_); }
  FileSendLog(const FileSendLog&) = delete;
  FileSendLog& operator=(const FileSendLog&) = delete;

  [[nodiscard]] bool sent(const std::string& key) const override { return sent_.contains(key); }
  void record(const std::string& key) override {
    // One write(2) per key: the kernel has it even if the composer is killed the next instant.
    // A key holds no line break (rows with CR or LF are refused before they are sent).
    const std::string line = key + "\n";
    if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
      throw std::runtime_error(path_ +
                               ": cannot record an accepted recipient: " + std::strerror(errno));
    sent_.insert(key);
  }
  [[nodiscard]] std::size_t count() const override { return sent_.size(); }
  [[nodiscard]] std::string describe() const override { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::unordered_set<std::string> sent_;
};

}  // namespace

std::unique_ptr<SendLog> open_sqlite_send_log(const std::string& db_path,
                                              const std::string& campaign) {
  return std::make_unique<SqliteSendLog>(db_path, campaign);
}

std::unique_ptr<SendLog> open_file_send_log(const std::string& path) {
  return std::make_unique<FileSendLog>(path);
}

}  // namespace mma::compose
