#include "app/privileges.hpp"

#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace mma::app {
namespace {

std::runtime_error sys_error(const std::string& what) {
  return std::runtime_error(what + ": " + std::strerror(errno));
}

void chown_one(const RunAs& who, const std::string& path) {
  if (::lchown(path.c_str(), who.uid, who.gid) != 0 && errno != ENOENT) {
    throw sys_error("cannot give " + path + " to user " + who.name);
  }
}

}  // namespace

RunAs lookup_user(const std::string& user) {
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::string buf(16384, '\0');
  const int rc = ::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found);
  if (rc != 0 || found == nullptr) throw std::runtime_error("no such user: " + user);
  return RunAs{found->pw_uid, found->pw_gid, user};
}

void give_to(const RunAs& who, const std::vector<std::string>& paths) {
  for (const auto& p : paths) {
    struct stat st {};
    if (p.empty() || ::lstat(p.c_str(), &st) != 0) continue;
    chown_one(who, p);
    if (!S_ISDIR(st.st_mode)) continue;
    // The spool and its bodies/ directory: everything below, a few levels at most.
    DIR* d = ::opendir(p.c_str());
    if (d == nullptr) throw sys_error("cannot read " + p);
    std::vector<std::string> below;
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") below.push_back(p + "/" + name);
    }
    ::closedir(d);
    give_to(who, below);
  }
}

void drop_to(const RunAs& who) {
  if (::getuid() == who.uid && ::geteuid() == who.uid) return;  // already that user
  if (::geteuid() != 0) {
    throw std::runtime_error("[server] user = \"" + who.name +
                             "\": only root can become another user (running as uid " +
                             std::to_string(::geteuid()) + ")");
  }
  if (::initgroups(who.name.c_str(), who.gid) != 0) throw sys_error("initgroups");
  if (::setgid(who.gid) != 0) throw sys_error("setgid");
  if (::setuid(who.uid) != 0) throw sys_error("setuid");
  // setuid from root sets the saved uid too; verify rather than trust (CERT POS37-C).
  if (who.uid != 0 && (::setuid(0) == 0 || ::seteuid(0) == 0)) {
    throw std::runtime_error("privileges could be regained after dropping them: refusing to run");
  }
}

}  // namespace mma::app
