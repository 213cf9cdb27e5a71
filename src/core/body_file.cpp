#include "core/body_file.hpp"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>

namespace mma {

std::shared_ptr<BodyFile> BodyFile::create(const std::string& dir, const std::string& name) {
  std::string path = dir + "/" + name;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "creating " + path);
  return std::shared_ptr<BodyFile>(new BodyFile(std::move(path), fd, 0));
}

std::shared_ptr<BodyFile> BodyFile::adopt(std::string path, std::uint64_t size) {
  auto f = std::shared_ptr<BodyFile>(new BodyFile(std::move(path), -1, size));
  f->keep(true);
  char tail[2] = {};
  const Reader r(*f);
  if (size >= 2 && r.read(size - 2, tail, 2) == 2)
    f->ends_crlf_ = tail[0] == '\r' && tail[1] == '\n';
  return f;
}

BodyFile::BodyFile(std::string path, int fd, std::uint64_t size)
    : path_(std::move(path)), fd_(fd), size_(size) {}

BodyFile::~BodyFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!keep_.load(std::memory_order_acquire)) ::unlink(path_.c_str());
}

std::error_code BodyFile::append(std::string_view data) {
  if (error_) return error_;
  if (data.empty()) return {};
  const char before = data.size() >= 2 ? data[data.size() - 2] : last_;
  ends_crlf_ = before == '\r' && data.back() == '\n';
  last_ = data.back();
  while (!data.empty()) {
    const ssize_t n = ::write(fd_, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error_ = std::error_code(errno, std::generic_category());
      return error_;
    }
    size_ += static_cast<std::uint64_t>(n);
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

std::error_code BodyFile::finish() {
  if (fd_ >= 0 && ::close(fd_) != 0 && !error_)
    error_ = std::error_code(errno, std::generic_category());
  fd_ = -1;
  return error_;
}

std::error_code BodyFile::sync() const {
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {errno, std::generic_category()};
  std::error_code ec;
  if (::fdatasync(fd) != 0) ec = std::error_code(errno, std::generic_category());
  ::close(fd);
  return ec;
}

BodyFile::Reader::Reader(const BodyFile& f) : fd_(::open(f.path().c_str(), O_RDONLY | O_CLOEXEC)) {}

BodyFile::Reader::~Reader() {
  if (fd_ >= 0) ::close(fd_);
}

long BodyFile::Reader::read(std::uint64_t offset, char* buf, std::size_t n) const {
  if (fd_ < 0) return -1;
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(fd_, buf + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  return static_cast<long>(got);
}

long BodyFile::Reader::read_cached(std::uint64_t offset, char* buf, std::size_t n) const {
  if (fd_ < 0) return -1;
  iovec v{buf, n};
  for (;;) {
    const ssize_t r = ::preadv2(fd_, &v, 1, static_cast<off_t>(offset), RWF_NOWAIT);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EOPNOTSUPP) errno = EAGAIN;  // a file system without it: not known
    return static_cast<long>(r);
  }
}

}  // namespace mma
