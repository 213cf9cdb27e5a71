// net/event_loops: the small pool of event-loop threads everything runs on (DESIGN.md §4).
//
// One io_context per thread, so a connection and its coroutine stay on one thread and need no
// locks; work crosses threads only by posting. Connections are spread round-robin.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

#include "net/asio.hpp"

namespace mma::net {

class EventLoops {
 public:
  explicit EventLoops(unsigned threads);
  EventLoops(const EventLoops&) = delete;
  EventLoops& operator=(const EventLoops&) = delete;

  asio::io_context& main() { return *loops_[0]; }
  asio::io_context& next();
  [[nodiscard]] std::size_t size() const { return loops_.size(); }

  // Runs every loop; the calling thread runs the main one. Returns when all have stopped.
  void run();
  // Lets the loops return once their work is done.
  void release();
  // Stops every loop now.
  void stop();

 private:
  std::vector<std::unique_ptr<asio::io_context>> loops_;
  std::vector<std::optional<asio::executor_work_guard<asio::io_context::executor_type>>> guards_;
  std::atomic<std::size_t> next_{0};
};

}  // namespace mma::net
