// spool/body_directory: where bodies above [server] memory_body_limit are written (the
// patent's disk cache). With a spool it is <spool.path>/bodies and spooled bodies stay there
// until their last recipient is done; without one it is [server] body_dir, or a private
// directory under $TMPDIR removed at exit.
//
// One mma per directory: it is locked (flock) while in use, so that cleaning out what a
// previous run left can never touch another running instance's files.
#pragma once

#include <memory>
#include <set>
#include <string>

#include "core/body_file.hpp"

namespace mma::spool {

class BodyDirectory {
 public:
  // Creates and locks `path`; empty: a private temporary directory. Throws std::runtime_error
  // naming the path when it cannot, or when another process holds it.
  explicit BodyDirectory(std::string path);
  ~BodyDirectory();
  BodyDirectory(const BodyDirectory&) = delete;
  BodyDirectory& operator=(const BodyDirectory&) = delete;

  // A new file for message `id`. Throws std::system_error.
  std::shared_ptr<BodyFile> create(const std::string& id) const;
  // Removes every body file not named in `keep` (left by a previous run); returns how many.
  std::size_t remove_except(const std::set<std::string>& keep) const;

  [[nodiscard]] const std::string& path() const { return path_; }
  static std::string file_name(const std::string& id) { return id + ".body"; }

 private:
  std::string path_;
  int lock_fd_ = -1;
  bool temporary_ = false;
};

// The body directory of the spool at `spool_path`.
inline std::string spool_body_directory(const std::string& spool_path) {
  return spool_path + "/bodies";
}

}  // namespace mma::spool
