#include "config/cidr.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace mma::config {

bool parse_ip(std::string_view text, std::array<std::uint8_t, 16>& out) {
  const std::string s(text);
  out.fill(0);
  std::uint8_t v4[4];
  if (inet_pton(AF_INET, s.c_str(), v4) == 1) {
    out[10] = out[11] = 0xff;
    std::memcpy(out.data() + 12, v4, 4);
    return true;
  }
  return inet_pton(AF_INET6, s.c_str(), out.data()) == 1;
}

bool Cidr::is_v4_mapped() const {
  for (int i = 0; i < 10; ++i) {
    if (net[i] != 0) return false;
  }
  return net[10] == 0xff && net[11] == 0xff;
}

bool Cidr::contains(const std::array<std::uint8_t, 16>& addr) const {
  unsigned bits = prefix;
  for (std::size_t i = 0; i < 16 && bits > 0; ++i) {
    const unsigned take = bits >= 8 ? 8 : bits;
    const std::uint8_t mask = static_cast<std::uint8_t>(0xff << (8 - take));
    if ((addr[i] & mask) != (net[i] & mask)) return false;
    bits -= take;
  }
  return true;
}

std::optional<Cidr> parse_cidr(std::string_view text, std::string& error) {
  Cidr c;
  c.text = std::string(text);
  const auto slash = text.find('/');
  const std::string_view addr = text.substr(0, slash);
  if (!parse_ip(addr, c.net)) {
    error = "'" + std::string(addr) + "' is not an IP address";
    return std::nullopt;
  }
  const bool v4 = addr.find(':') == std::string_view::npos;
  unsigned prefix = v4 ? 32 : 128;
  if (slash != std::string_view::npos) {
    const std::string_view p = text.substr(slash + 1);
    const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (ec != std::errc{} || end != p.data() + p.size() || prefix > (v4 ? 32u : 128u)) {
      error = "invalid prefix length in '" + std::string(text) + "'";
      return std::nullopt;
    }
  }
  c.prefix = v4 ? prefix + 96 : prefix;
  return c;
}

}  // namespace mma::config
