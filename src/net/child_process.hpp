// net/child_process: a program that speaks SMTP on its stdin/stdout (the patent's program
// MTAs, `mx = ["|/usr/sbin/sendmail -bs"]`), as a Stream.
//
// The command line is split on spaces (no shell). Closing the stream closes the program's
// stdin; it is then given a few seconds to exit before SIGKILL, and reaped off the event loop.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <system_error>

#include "net/stream.hpp"

namespace mma::net {

class ProgramStream final : public Stream {
 public:
  // Starts `command`; on failure returns nullptr and sets `ec`.
  static std::unique_ptr<ProgramStream> start(const asio::any_io_executor& ex,
                                              const std::string& command, std::error_code& ec);
  ProgramStream(const asio::any_io_executor& ex, pid_t pid, int from_child, int to_child,
                std::string name);
  ~ProgramStream() override;
  Task<IoResult> read_some(asio::mutable_buffer buf) override { return pipes_.read_some(buf); }
  Task<IoResult> write(std::span<const asio::const_buffer> bufs) override {
    return pipes_.write(bufs);
  }
  void cancel() override { pipes_.cancel(); }
  void close() override;
  [[nodiscard]] std::string peer() const override { return pipes_.peer(); }

 private:
  PipeStream pipes_;
  pid_t pid_;
  bool closed_ = false;
};

}  // namespace mma::net
