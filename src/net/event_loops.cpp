#include "net/event_loops.hpp"

#include <thread>

namespace mma::net {

EventLoops::EventLoops(unsigned threads) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < threads; ++i) {
    loops_.push_back(std::make_unique<asio::io_context>(1));
    guards_.emplace_back(asio::make_work_guard(*loops_.back()));
  }
}

asio::io_context& EventLoops::next() {
  return *loops_[next_.fetch_add(1, std::memory_order_relaxed) % loops_.size()];
}

void EventLoops::run() {
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < loops_.size(); ++i) {
    threads.emplace_back([ctx = loops_[i].get()] { ctx->run(); });
  }
  loops_[0]->run();
  for (auto& t : threads) t.join();
}

void EventLoops::release() {
  for (auto& g : guards_) g.reset();
}

void EventLoops::stop() {
  for (auto& l : loops_) l->stop();
}

}  // namespace mma::net
