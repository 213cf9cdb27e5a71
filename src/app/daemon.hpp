// app/daemon: `mma serve`: wires config, event loops, queues, workers, router and listeners,
// and runs them until a signal says stop.
//
// Signals: SIGTERM/SIGINT stop accepting, deliver what is queued for up to shutdown_grace,
// then exit, reporting what was dropped; SIGUSR1 logs queue statistics; SIGHUP is not
// supported yet and is logged and ignored.
#pragma once

#include <string>

#include "config/config.hpp"

namespace mma::app {

struct ServeOptions {
  std::string config_path;
  bool stdio = false;  // one session on stdin/stdout (the patent's pipe input)
  bool stdio_lmtp = false;
  bool stdio_delivered = false;
};

int run_daemon(const config::Config& cfg, const ServeOptions& opts);

}  // namespace mma::app
