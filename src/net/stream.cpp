#include "net/stream.hpp"

namespace mma::net {

PipeStream::PipeStream(asio::any_io_executor ex, int in_fd, int out_fd, std::string name)
    : in_(ex, in_fd), out_(ex, out_fd), name_(std::move(name)) {}

Task<IoResult> PipeStream::read_some(asio::mutable_buffer buf) {
  auto [ec, n] = co_await in_.async_read_some(buf, use_tuple);
  co_return IoResult{ec, n};
}

Task<IoResult> PipeStream::write(std::span<const asio::const_buffer> bufs) {
  auto [ec, n] = co_await asio::async_write(out_, bufs, use_tuple);
  co_return IoResult{ec, n};
}

void PipeStream::cancel() {
  std::error_code ignored;
  in_.cancel(ignored);
  out_.cancel(ignored);
}

void PipeStream::close() {
  std::error_code ignored;
  in_.close(ignored);
  out_.close(ignored);
}

}  // namespace mma::net
