// core/json: the little JSON writing mma needs on hot paths (accounting lines, reports),
// without pulling a JSON library into them.
#pragma once

#include <string>
#include <string_view>

namespace mma {

// Appends `s` as a JSON string literal, quotes included.
void append_json_string(std::string& out, std::string_view s);

}  // namespace mma
