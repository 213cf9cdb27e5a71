// smtp/extensions: what a remote server offers in its EHLO/LHLO reply (RFC 5321 §4.1.1.1).
#pragma once

#include <cstdint>

#include "smtp/reply.hpp"

namespace mma::smtp {

struct Extensions {
  bool esmtp = false;       // the EHLO succeeded
  bool pipelining = false;  // RFC 2920
  bool size = false;        // RFC 1870
  std::uint64_t max_size = 0;
  bool eightbitmime = false;  // RFC 6152
  bool smtputf8 = false;      // RFC 6531
  bool starttls = false;      // RFC 3207
  bool enhanced = false;      // RFC 2034
  bool chunking = false;      // RFC 3030
};

// Reads the keywords of a 250 reply to EHLO/LHLO; the first line is the greeting.
Extensions parse_extensions(const Reply& ehlo);

}  // namespace mma::smtp
