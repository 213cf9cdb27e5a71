// compose/csv_source: subscribers from an RFC 4180 CSV file, read record by record.
#include "compose/recipients.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "compose/recipients_internal.hpp"

namespace mma::compose::detail {
namespace {

std::string trimmed(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return std::string(s);
}

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

}  // namespace
}  // namespace mma::compose::detail

namespace mma::compose {

std::unique_ptr<RecipientSource> open_csv(const std::string& path) {
  return std::make_unique<detail::CsvSource>(path);
}

}  // namespace mma::compose
