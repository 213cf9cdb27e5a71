// config/cidr: client networks, as in `allow = ["127.0.0.0/8", "::1/128"]`.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mma::config {

struct Cidr {
  // IPv4 is kept as an IPv4-mapped IPv6 address, so one comparison serves both families.
  std::array<std::uint8_t, 16> net{};
  unsigned prefix = 0;  // over the 128-bit form
  std::string text;

  [[nodiscard]] bool contains(const std::array<std::uint8_t, 16>& addr) const;
  [[nodiscard]] bool matches_everything() const {
    return prefix == 0 || (is_v4_mapped() && prefix == 96);
  }
  [[nodiscard]] bool is_v4_mapped() const;
  friend bool operator==(const Cidr&, const Cidr&) = default;
};

std::optional<Cidr> parse_cidr(std::string_view text, std::string& error);
// Text address to the 16-byte form (IPv4 mapped); false if not an IP address.
bool parse_ip(std::string_view text, std::array<std::uint8_t, 16>& out);

}  // namespace mma::config
