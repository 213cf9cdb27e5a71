#include "config/endpoint.hpp"

#include <cctype>
#include <charconv>

namespace mma::config {

std::string Endpoint::to_string() const {
  if (kind == Kind::Unix) return "unix:" + path;
  if (kind == Kind::Program) return "|" + path;
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::optional<Endpoint> parse_endpoint(std::string_view text, std::uint16_t default_port,
                                       std::string& error, bool allow_program) {
  Endpoint ep;
  if (text.starts_with("|")) {
    if (!allow_program) {
      error = "a program is not allowed here";
      return std::nullopt;
    }
    ep.kind = Endpoint::Kind::Program;
    ep.path = std::string(text.substr(1));
    while (!ep.path.empty() && ep.path.front() == ' ') ep.path.erase(0, 1);
    if (ep.path.empty() || ep.path.front() != '/') {
      error = "a program must be given with its absolute path: \"|/usr/sbin/sendmail -bs\"";
      return std::nullopt;
    }
    return ep;
  }
  if (text.starts_with("unix:")) {
    ep.kind = Endpoint::Kind::Unix;
    ep.path = std::string(text.substr(5));
    if (ep.path.empty() || ep.path.size() > 100) {
      error = "a unix socket path must have 1 to 100 characters";
      return std::nullopt;
    }
    return ep;
  }
  std::string_view host = text;
  std::string_view port;
  if (text.starts_with("[")) {
    const auto close = text.find(']');
    if (close == std::string_view::npos) {
      error = "missing ']' in an IPv6 address";
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    const std::string_view after = text.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        error = "expected ':port' after ']'";
        return std::nullopt;
      }
      port = after.substr(1);
    }
  } else {
    const auto colon = text.rfind(':');
    if (colon != std::string_view::npos) {
      if (text.find(':') != colon) {
        error = "write IPv6 addresses in brackets: [::1]:25";
        return std::nullopt;
      }
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
    }
  }
  if (host.empty()) {
    error = "missing host";
    return std::nullopt;
  }
  for (char c : host) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' ||
          c == '_')) {
      error = "invalid character in host '" + std::string(host) + "'";
      return std::nullopt;
    }
  }
  ep.host = std::string(host);
  if (port.empty()) {
    if (default_port == 0) {
      error = "missing port";
      return std::nullopt;
    }
    ep.port = default_port;
    return ep;
  }
  unsigned value = 0;
  const auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc{} || p != port.data() + port.size() || value == 0 || value > 65535) {
    error = "invalid port '" + std::string(port) + "'";
    return std::nullopt;
  }
  ep.port = static_cast<std::uint16_t>(value);
  return ep;
}

}  // namespace mma::config
