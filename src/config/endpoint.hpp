// config/endpoint: where to listen or connect: "host:port", "[v6]:port", "unix:/path".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mma::config {

struct Endpoint {
  enum class Kind : unsigned char { Tcp, Unix };
  Kind kind = Kind::Tcp;
  std::string host;  // Tcp: a name or an IP literal (without brackets)
  std::uint16_t port = 0;
  std::string path;  // Unix

  [[nodiscard]] std::string to_string() const;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

// `default_port` is used when the text has none (0: a port is required). On failure returns
// nullopt and says why in `error`.
std::optional<Endpoint> parse_endpoint(std::string_view text, std::uint16_t default_port,
                                       std::string& error);

}  // namespace mma::config
