// config/units: "250ms", "30s", "5m", "1h", "2d" and "512K", "10M", "1G" in configuration.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace mma::config {

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
// Binary multiples: K = 1024. A bare number is bytes.
std::optional<std::uint64_t> parse_size(std::string_view text);

}  // namespace mma::config
