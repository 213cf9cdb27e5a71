#include "spool/body_directory.hpp"

#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace mma::spool {
namespace {

constexpr const char* kLock = ".lock";

bool is_body_file(const std::string& name) {
  return name.size() > 5 && name.compare(name.size() - 5, 5, ".body") == 0;
}

}  // namespace

BodyDirectory::BodyDirectory(std::string path) : path_(std::move(path)) {
  if (path_.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/mma-bodies-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      throw std::runtime_error("cannot create a body directory " + tmpl + ": " +
                               std::strerror(errno));
    }
    path_ = tmpl;
    temporary_ = true;
  } else if (::mkdir(path_.c_str(), 0700) != 0 && errno != EEXIST) {
    throw std::runtime_error("cannot create the body directory " + path_ + ": " +
                             std::strerror(errno));
  }
  const std::string lock = path_ + "/" + kLock;
  lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) {
    throw std::runtime_error("cannot open " + lock + ": " + std::strerror(errno));
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(lock_fd_);
    lock_fd_ = -1;
    throw std::runtime_error("the body directory " + path_ +
                             " is in use by another mma: give each instance its own");
  }
}

BodyDirectory::~BodyDirectory() {
  if (temporary_) {
    remove_except({});
    ::unlink((path_ + "/" + kLock).c_str());
    ::rmdir(path_.c_str());
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::shared_ptr<BodyFile> BodyDirectory::create(const std::string& id) const {
  return BodyFile::create(path_, file_name(id));
}

std::size_t BodyDirectory::remove_except(const std::set<std::string>& keep) const {
  DIR* d = ::opendir(path_.c_str());
  if (d == nullptr) return 0;
  std::size_t removed = 0;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (!is_body_file(name) || keep.count(name) != 0) continue;
    if (::unlink((path_ + "/" + name).c_str()) == 0) ++removed;
  }
  ::closedir(d);
  return removed;
}

}  // namespace mma::spool
