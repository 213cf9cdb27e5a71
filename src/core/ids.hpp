// core/ids: queue ids for messages, unique across restarts of one host.
#pragma once

#include <string>

namespace mma {

// "5F3A9C21-0000001A": start time of the process, then a sequence number.
std::string next_message_id();

}  // namespace mma
