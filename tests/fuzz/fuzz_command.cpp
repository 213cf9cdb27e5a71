// The server side of a session: command lines through smtp::ServerProtocol, DATA content
// through smtp::DataReader, as a composer (or an attacker) could send them.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "smtp/data_reader.hpp"
#include "smtp/line_buffer.hpp"
#include "smtp/server_protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace mma::smtp;
  const bool lmtp = size > 0 && (data[0] & 1);
  ServerProtocol proto(ServerOptions{.lmtp = lmtp,
                                     .hostname = "fuzz",
                                     .max_message_size = 4096,
                                     .max_recipients = 5,
                                     .max_errors = 50});
  LineBuffer in(1024);
  std::string out;
  std::string body;
  std::optional<DataReader> reader;
  std::size_t pos = 0;
  bool discarding = false;
  while (pos < size) {
    auto room = in.prepare(64);
    const std::size_t n =
        std::min(room.size(), std::min<std::size_t>(size - pos, 1 + data[pos] % 97));
    std::copy(data + pos, data + pos + n, room.begin());
    in.commit(n);
    pos += n;
    for (;;) {
      if (reader) {
        in.consume(reader->feed(in.data()));
        if (!reader->done()) break;
        Envelope env = proto.finish_data();
        if (env.recipients.empty()) std::abort();  // DATA is only reached with a recipient
        reader.reset();
        body.clear();
        continue;
      }
      if (discarding) {
        if (!in.discard_line()) break;
        discarding = false;
      }
      LineBuffer::Line line;
      const auto st = in.next_line(510, line);
      if (st == LineBuffer::Status::NeedMore) break;
      Response r;
      if (st == LineBuffer::Status::TooLong) {
        r = proto.on_line_too_long();
        discarding = true;
      } else {
        r = proto.on_command(line.text);
      }
      if (r.reply.code < 200 || r.reply.code > 599) std::abort();
      out.clear();
      append_reply(out, r.reply, proto.enhanced());
      if (r.next == Next::Close) return 0;
      if (r.next == Next::ReadData) reader.emplace(body, DataLimits{4096, 998});
    }
  }
  return 0;
}
