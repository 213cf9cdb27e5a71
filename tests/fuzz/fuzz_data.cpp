// DATA content through smtp::DataReader. Beyond not crashing, the wire form it keeps must be
// safe to relay: CRLF line endings only, no line that is a lone "." (which would end the next
// hop's DATA early: SMTP smuggling), and no bare CR unless the message is flagged for refusal.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "smtp/data_reader.hpp"
#include "smtp/header_scan.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace mma::smtp;
  std::string wire;
  DataReader reader(wire, DataLimits{1 << 20, 1 << 20});
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::size_t pos = 0;
  while (pos < in.size() && !reader.done()) {
    const std::size_t chunk =
        std::min<std::size_t>(in.size() - pos, 1 + static_cast<unsigned char>(in[pos]) % 13);
    const std::size_t used = reader.feed(in.substr(pos, chunk));
    if (used == 0 || used > chunk) std::abort();
    pos += used;
  }
  // Every stored line ends in CRLF and none is a lone ".".
  std::size_t start = 0;
  while (start < wire.size()) {
    const auto lf = wire.find('\n', start);
    if (lf == std::string::npos) break;  // an unterminated last line only if data never ended
    if (lf == start || wire[lf - 1] != '\r') std::abort();
    if (lf - start == 2 && wire[start] == '.') std::abort();
    start = lf + 1;
  }
  if (reader.done() && start != wire.size()) std::abort();
  // A CR only ever ends a line: a message with a bare one is flagged (and refused by mma).
  if (!reader.bare_cr()) {
    for (std::size_t i = 0; i < wire.size(); ++i) {
      if (wire[i] == '\r' && (i + 1 >= wire.size() || wire[i + 1] != '\n')) std::abort();
    }
  }
  (void)find_header(wire, "Message-ID");
  return 0;
}
