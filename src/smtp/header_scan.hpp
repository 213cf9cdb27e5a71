// smtp/header_scan: finds a header field's value in a message in wire form (RFC 5322 §2.2),
// e.g. the Message-ID for logs and duplicate detection. Reads the header section only.
#pragma once

#include <string>
#include <string_view>

namespace mma::smtp {

// The unfolded value of the first field named `name` (case-insensitive), trimmed; empty if
// the header section has none.
std::string find_header(std::string_view message, std::string_view name);

}  // namespace mma::smtp
