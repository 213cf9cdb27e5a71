// app/privileges: `[server] user`: mma binds its ports as root, then runs as an ordinary user
// (as Postfix's master hands its children to mail_owner). What the unprivileged process must
// still write (the spool directory, a unix listener's socket, the accounting log) is handed
// to that user first.
#pragma once

#include <string>
#include <vector>

namespace mma::app {

struct RunAs {
  unsigned uid = 0;
  unsigned gid = 0;
  std::string name;
};

// Looks the user up; throws std::runtime_error naming it when it does not exist.
RunAs lookup_user(const std::string& user);

// Gives `paths` (and everything below a directory) to the user; a path that does not exist
// is skipped. Only meaningful while still root.
void give_to(const RunAs& who, const std::vector<std::string>& paths);

// setgroups + setgid + setuid, then checks that root cannot be regained. Throws on failure.
void drop_to(const RunAs& who);

}  // namespace mma::app
