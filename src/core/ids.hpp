// core/ids: queue ids for messages, unique across restarts of one host.
#pragma once

#include <string>

namespace mma {

// "641A2B3C4D5E6-0000001A": start time of the process in microseconds, then a sequence number.
std::string next_message_id();

}  // namespace mma
