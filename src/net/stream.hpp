// net/stream: a byte stream a session reads and writes, whatever carries it.
//
// TCP and unix sockets, the process's stdin/stdout (`mma serve --stdio`, the patent's pipe
// input) and, later, TLS and program MTAs look the same to InboundSession and MtaWorker.
// Errors are values (IoResult), never exceptions.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <system_error>

#include "net/asio.hpp"

namespace mma::net {

struct IoResult {
  std::error_code ec;
  std::size_t bytes = 0;
};

class Stream {
 public:
  virtual ~Stream() = default;
  virtual Task<IoResult> read_some(asio::mutable_buffer buf) = 0;
  // Writes everything or fails.
  virtual Task<IoResult> write(std::span<const asio::const_buffer> bufs) = 0;
  // Aborts pending operations; the stream stays usable (the watchdog's tool).
  virtual void cancel() = 0;
  virtual void close() = 0;
  // Ends the sending direction only (the peer reads end of file), where the stream can.
  virtual void shutdown_send() {}
  // "1.2.3.4:5678", "unix", "stdio": for logs.
  [[nodiscard]] virtual std::string peer() const = 0;

  // A coroutine itself, so that the buffer lives in its frame until the write is done.
  Task<IoResult> write(std::string_view s) {
    const asio::const_buffer b(s.data(), s.size());
    co_return co_await write(std::span<const asio::const_buffer>(&b, 1));
  }
};

template <class Socket>
class SocketStream final : public Stream {
 public:
  explicit SocketStream(Socket socket) : socket_(std::move(socket)) {}

  Task<IoResult> read_some(asio::mutable_buffer buf) override {
    auto [ec, n] = co_await socket_.async_read_some(buf, use_tuple);
    co_return IoResult{ec, n};
  }
  Task<IoResult> write(std::span<const asio::const_buffer> bufs) override {
    auto [ec, n] = co_await asio::async_write(socket_, bufs, use_tuple);
    co_return IoResult{ec, n};
  }
  void cancel() override {
    std::error_code ignored;
    socket_.cancel(ignored);
  }
  void close() override {
    std::error_code ignored;
    socket_.shutdown(Socket::shutdown_both, ignored);
    socket_.close(ignored);
  }
  void shutdown_send() override {
    std::error_code ignored;
    socket_.shutdown(Socket::shutdown_send, ignored);
  }
  // Asked once: a session names its peer in every Received header, and getpeername is a
  // syscall. The peer of a connected socket never changes.
  [[nodiscard]] std::string peer() const override {
    if (peer_.empty()) {
      std::error_code ec;
      auto ep = socket_.remote_endpoint(ec);
      if (ec) return "?";  // not connected (yet, or any more): not remembered
      if constexpr (std::is_same_v<Socket, asio::ip::tcp::socket>) {
        const auto a = ep.address();
        peer_ = (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" +
                std::to_string(ep.port());
      } else {
        peer_ = "unix";
      }
    }
    return peer_;
  }
  Socket& socket() { return socket_; }

 private:
  Socket socket_;
  mutable std::string peer_;
};

using TcpStream = SocketStream<asio::ip::tcp::socket>;
using UnixStream = SocketStream<asio::local::stream_protocol::socket>;

// Two file descriptors: stdin/stdout, or a child process's pipes.
class PipeStream final : public Stream {
 public:
  // Takes ownership of the descriptors. Pipes and sockets only (regular files cannot be polled).
  PipeStream(asio::any_io_executor ex, int in_fd, int out_fd, std::string name);
  Task<IoResult> read_some(asio::mutable_buffer buf) override;
  Task<IoResult> write(std::span<const asio::const_buffer> bufs) override;
  void cancel() override;
  void close() override;
  [[nodiscard]] std::string peer() const override { return name_; }

 private:
  asio::posix::stream_descriptor in_;
  asio::posix::stream_descriptor out_;
  std::string name_;
};

}  // namespace mma::net
