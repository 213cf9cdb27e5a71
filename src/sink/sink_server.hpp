// sink/sink_server: `mma sink`, the simulated internet: listens on every given address, runs a
// SinkSession per connection, and writes its counts as JSON on exit (SIGTERM/SIGINT), on
// SIGUSR1 and every report_every.
#pragma once

#include "sink/sink_options.hpp"

namespace mma::sink {

// Runs until signalled; returns the process exit code.
int run_sink(const SinkOptions& opts);

}  // namespace mma::sink
