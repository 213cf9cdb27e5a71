// config/endpoint: where to listen or connect: "host:port", "[v6]:port", "unix:/path".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mma::config {

struct Endpoint {
  enum class Kind : unsigned char { Tcp, Unix, Program };
  Kind kind = Kind::Tcp;
  std::string host;  // Tcp: a name or an IP literal (without brackets)
  std::uint16_t port = 0;
  std::string path;  // Unix: the socket; Program: the command line (after "|")

  [[nodiscard]] std::string to_string() const;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

// `default_port` is used when the text has none (0: a port is required). "|command args" is a
// program that speaks SMTP on its stdin/stdout (the patent's program MTAs), accepted only when
// `allow_program`. On failure returns nullopt and says why in `error`.
std::optional<Endpoint> parse_endpoint(std::string_view text, std::uint16_t default_port,
                                       std::string& error, bool allow_program = false);

}  // namespace mma::config
