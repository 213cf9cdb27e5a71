// net/connect: an outbound connection to a TCP or unix endpoint, within a time limit.
#pragma once

#include <chrono>
#include <memory>
#include <system_error>

#include "config/endpoint.hpp"
#include "net/asio.hpp"
#include "net/stream.hpp"

namespace mma::net {

struct Connected {
  std::unique_ptr<Stream> stream;  // null on failure
  std::error_code ec;
  std::string address;  // the address actually connected to (or tried last)
};

Task<Connected> connect(const config::Endpoint& to, std::chrono::milliseconds timeout);

}  // namespace mma::net
