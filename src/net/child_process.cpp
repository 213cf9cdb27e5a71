#include "net/child_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>
#include <vector>

extern char** environ;

namespace mma::net {

std::unique_ptr<ProgramStream> ProgramStream::start(const asio::any_io_executor& ex,
                                                    const std::string& command,
                                                    std::error_code& ec) {
  std::vector<std::string> args;
  std::istringstream words(command);
  for (std::string w; words >> w;) args.push_back(w);
  if (args.empty()) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return nullptr;
  }
  int to_child[2], from_child[2];
  if (::pipe2(to_child, O_CLOEXEC) != 0) {
    ec = std::error_code(errno, std::system_category());
    return nullptr;
  }
  if (::pipe2(from_child, O_CLOEXEC) != 0) {
    ec = std::error_code(errno, std::system_category());
    ::close(to_child[0]);
    ::close(to_child[1]);
    return nullptr;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, to_child[0], 0);
  posix_spawn_file_actions_adddup2(&fa, from_child[1], 1);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int err = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(to_child[0]);
  ::close(from_child[1]);
  if (err != 0) {
    ec = std::error_code(err, std::system_category());
    ::close(to_child[1]);
    ::close(from_child[0]);
    return nullptr;
  }
  return std::make_unique<ProgramStream>(ex, pid, from_child[0], to_child[1], "|" + command);
}

ProgramStream::ProgramStream(const asio::any_io_executor& ex, pid_t pid, int from_child,
                             int to_child, std::string name)
    : pipes_(ex, from_child, to_child, std::move(name)), pid_(pid) {}

ProgramStream::~ProgramStream() {
  close();
}

void ProgramStream::close() {
  if (closed_) return;
  closed_ = true;
  pipes_.close();  // EOF on its stdin: an SMTP server in stdio mode ends
  // Reap it off the event loop: a program may take its time to exit.
  std::thread([pid = pid_] {
    for (int i = 0; i < 50; ++i) {
      if (::waitpid(pid, nullptr, WNOHANG) != 0) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }).detach();
}

}  // namespace mma::net
