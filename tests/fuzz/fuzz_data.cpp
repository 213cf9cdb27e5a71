// DATA content through smtp::DataReader. Beyond not crashing, the wire form it keeps must be
// safe to relay: CRLF line endings only, no line that is a lone "." (which would end the next
// hop's DATA early: SMTP smuggling), and no bare CR unless the message is flagged for refusal.
// And the disk cache's move of complete_bytes() to a file between feeds never changes it.
// The same input as BDAT content (smtp::ChunkReader) must give a wire form that is as safe, and
// that un-stuffs (smtp::unstuffed, what mma sends by BDAT) to the input itself, its line ends
// made CRLF, with the RFC 1870 size of that, whether or not the reader's dot_lines() spares the
// scan for stuffing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "smtp/chunk_reader.hpp"
#include "smtp/data_reader.hpp"
#include "smtp/header_scan.hpp"

namespace {

using namespace mma::smtp;

// Every stored line ends in CRLF, none is a lone "." (SMTP smuggling), a CR only ends a line.
void check_safe(const std::string& wire, bool done) {
  std::size_t start = 0;
  while (start < wire.size()) {
    const auto lf = wire.find('\n', start);
    if (lf == std::string::npos) break;  // an unterminated last line only if data never ended
    if (lf == start || wire[lf - 1] != '\r') std::abort();
    if (lf - start == 2 && wire[start] == '.') std::abort();
    start = lf + 1;
  }
  if (done && start != wire.size()) std::abort();
  for (std::size_t i = 0; i < wire.size(); ++i) {
    if (wire[i] == '\r' && (i + 1 >= wire.size() || wire[i + 1] != '\n')) {
      if (done || i + 1 < wire.size()) std::abort();  // (a CR at the very end may await its LF)
    }
  }
}

void check_chunks(std::string_view in) {
  std::string wire;
  ChunkReader chunks(wire, DataLimits{1 << 20, 1 << 20});
  for (std::size_t pos = 0; pos < in.size();) {
    const std::size_t n =
        std::min<std::size_t>(in.size() - pos, 1 + static_cast<unsigned char>(in[pos]) % 11);
    chunks.feed(in.substr(pos, n));
    pos += n;
  }
  chunks.finish();
  const DataReader& r = chunks.data();
  if (!r.done()) std::abort();
  if (r.bare_cr() || r.too_big() || r.line_too_long()) return;
  check_safe(wire, true);
  if (in.empty()) return;
  // What BDAT sends on is the input, bare LFs ended as CRLF and the last line ended.
  std::string expected;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r')) expected += '\r';
    expected += in[i];
  }
  if (expected.back() != '\n') expected += "\r\n";
  std::string back;
  for (auto span : unstuffed(wire).spans) back += span;
  if (back != expected || r.size() != expected.size()) std::abort();
  // The reader's note that no line starts with a dot spares BDAT the scan: it must be right.
  std::string unscanned;
  for (auto span : unstuffed(wire, r.dot_lines()).spans) unscanned += span;
  if (unscanned != expected) std::abort();
}

// No line of `wire` starts with a dot.
bool no_dot_lines(const std::string& wire) {
  return !wire.starts_with('.') && wire.find("\n.") == std::string::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string wire;
  DataReader reader(wire, DataLimits{1 << 20, 1 << 20});
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  check_chunks(in);
  std::string spilled_buffer, spilled;  // the same input, moved out as the disk cache does
  DataReader spilling(spilled_buffer, DataLimits{1 << 20, 1 << 20});
  std::size_t pos = 0;
  while (pos < in.size() && !reader.done()) {
    const std::size_t chunk =
        std::min<std::size_t>(in.size() - pos, 1 + static_cast<unsigned char>(in[pos]) % 13);
    const std::size_t used = reader.feed(in.substr(pos, chunk));
    if (used == 0 || used > chunk) std::abort();
    if (spilling.feed(in.substr(pos, chunk)) != used) std::abort();
    if (static_cast<unsigned char>(in[pos]) % 3 == 0 || spilling.done()) {
      const std::size_t n = spilling.complete_bytes();
      if (n > spilled_buffer.size()) std::abort();
      spilled.append(spilled_buffer, 0, n);
      spilled_buffer.erase(0, n);
    }
    pos += used;
  }
  if (!reader.bare_cr() && !reader.too_big() && !reader.line_too_long() &&
      spilled + spilled_buffer != wire) {
    std::abort();
  }
  // A message with a bare CR (or over a limit) is refused and its wire form, cut short where
  // the reader stopped storing, is never used. Any other must be safe to relay:
  if (reader.bare_cr() || reader.too_big() || reader.line_too_long()) return 0;
  check_safe(wire, reader.done());
  if (reader.done() && !reader.dot_lines() && !no_dot_lines(wire)) std::abort();
  (void)find_header(wire, "Message-ID");
  return 0;
}
