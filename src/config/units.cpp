#include "config/units.hpp"

#include <charconv>

namespace mma::config {

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  double value = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || value < 0) return std::nullopt;
  const std::string_view unit(p, text.data() + text.size() - p);
  double ms = 0;
  if (unit == "ms") {
    ms = value;
  } else if (unit == "s" || unit.empty()) {
    ms = value * 1e3;
  } else if (unit == "m" || unit == "min") {
    ms = value * 60e3;
  } else if (unit == "h") {
    ms = value * 3600e3;
  } else if (unit == "d") {
    ms = value * 86400e3;
  } else {
    return std::nullopt;
  }
  if (ms > 1e13) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms + 0.5));
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
  std::uint64_t value = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{}) return std::nullopt;
  std::string_view unit(p, text.data() + text.size() - p);
  if (unit.size() == 2 && (unit[1] == 'B' || unit[1] == 'b')) unit.remove_suffix(1);
  std::uint64_t mult = 1;
  if (unit.empty() || unit == "B" || unit == "b") {
    mult = 1;
  } else if (unit == "K" || unit == "k") {
    mult = 1ull << 10;
  } else if (unit == "M" || unit == "m") {
    mult = 1ull << 20;
  } else if (unit == "G" || unit == "g") {
    mult = 1ull << 30;
  } else {
    return std::nullopt;
  }
  if (value > (UINT64_MAX / mult)) return std::nullopt;
  return value * mult;
}

}  // namespace mma::config
