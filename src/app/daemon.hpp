// app/daemon: `mma serve`: wires config, event loops, queues, workers, router and listeners,
// and runs them until a signal says stop.
//
// Signals: SIGTERM/SIGINT stop accepting, deliver what is queued for up to shutdown_grace,
// then cut off the transactions still in flight and exit: what was not delivered is logged as
// failed, or stays in the spool for the next start. SIGUSR1 logs queue statistics. SIGHUP
// reloads the configuration file: queues added, changed or removed (a removed queue delivers
// what it holds), listeners opened or closed, routing replaced, all without dropping a
// connection or a message; a file that does not load, or that changes what only a restart
// can ([server] threads, user, the spool, DNS...), is refused with the reason and the running
// configuration stays.
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
