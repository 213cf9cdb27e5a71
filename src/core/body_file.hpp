// core/body_file: a message body kept on disk instead of in memory (the patent's disk cache,
// _FFR_DISK_CACHE): bodies above [server] memory_body_limit. Written once while the message
// is received, then read in blocks by every delivery; never copied per recipient.
//
// The file goes when the last Body holding it goes, unless the spool has taken it over
// (keep()): then the spool removes it with the message's last recipient.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

namespace mma {

class BodyFile {
 public:
  // Creates `dir`/`name` (exclusively). Throws std::system_error.
  static std::shared_ptr<BodyFile> create(const std::string& dir, const std::string& name);
  // An existing file (recovered from the spool); kept unless released with keep(false).
  static std::shared_ptr<BodyFile> adopt(std::string path, std::uint64_t size);

  ~BodyFile();
  BodyFile(const BodyFile&) = delete;
  BodyFile& operator=(const BodyFile&) = delete;

  // While writing: appends; an error (disk full) is returned and sticks.
  std::error_code append(std::string_view data);
  // Done writing: closes the descriptor.
  std::error_code finish();
  // fsync of the file, for the spool (called from its writer thread, never an event loop).
  [[nodiscard]] std::error_code sync() const;

  // Reads the file in order, block by block, for one delivery.
  class Reader {
   public:
    explicit Reader(const BodyFile& f);
    ~Reader();
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;
    // Up to `n` bytes at `offset`: how many (fewer only at the end), or -1 (errno set).
    long read(std::uint64_t offset, char* buf, std::size_t n) const;
    // The same without waiting for the disk: what the page cache holds there now, from 1 to
    // `n` bytes; 0 at the end; or -1 with errno EAGAIN (not cached: read() it where blocking
    // is allowed) or another error. (preadv2 with RWF_NOWAIT; EOPNOTSUPP reads as EAGAIN.)
    long read_cached(std::uint64_t offset, char* buf, std::size_t n) const;
    [[nodiscard]] bool ok() const { return fd_ >= 0; }

   private:
    int fd_ = -1;
  };

  // Whether the content ends with CRLF (the terminator to send depends on it).
  [[nodiscard]] bool ends_with_crlf() const { return ends_crlf_; }

  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::uint64_t size() const { return size_; }
  void keep(bool k) { keep_.store(k, std::memory_order_release); }

 private:
  BodyFile(std::string path, int fd, std::uint64_t size);

  std::string path_;
  int fd_ = -1;  // open while writing only
  std::uint64_t size_ = 0;
  std::error_code error_;
  bool ends_crlf_ = false;
  char last_ = 0;  // the last byte written
  std::atomic<bool> keep_{false};
};

}  // namespace mma
