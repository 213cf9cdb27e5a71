// config/params: the one table of configuration keys (STYLE.md §10, as Postfix's VAR_/DEF_).
#pragma once

#include <span>
#include <string_view>

namespace mma::config {

struct Param {
  std::string_view section;  // "server", "listener", "delivery", "queue", "timeouts"
  std::string_view key;
  std::string_view type;
  std::string_view default_value;
  std::string_view doc;
};

std::span<const Param> all_params();
const Param* find_param(std::string_view section, std::string_view key);

}  // namespace mma::config
