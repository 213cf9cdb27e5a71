// The server side of a session: command lines through smtp::ServerProtocol, DATA content
// through smtp::DataReader and BDAT chunks through smtp::ChunkReader, as a composer (or an
// attacker) could send them.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "smtp/chunk_reader.hpp"
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
                                     .max_errors = 50,
                                     .chunking = true});
  LineBuffer in(1024);
  std::string out;
  std::string body;
  std::optional<DataReader> reader;
  std::optional<ChunkReader> chunks;
  std::uint64_t chunk_left = 0;  // octets of the current BDAT chunk still to read
  bool in_chunk = false;
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
      if (in_chunk) {
        const auto have = in.data();
        const auto take =
            static_cast<std::size_t>(std::min<std::uint64_t>(chunk_left, have.size()));
        if (proto.chunk().accepted) chunks->feed(have.substr(0, take));
        in.consume(take);
        chunk_left -= take;
        if (chunk_left > 0) break;
        in_chunk = false;
        if (proto.chunk().accepted && proto.chunk().last) {
          chunks->finish();
          if (!chunks->data().done()) std::abort();  // the last chunk always ends the content
          Envelope env = proto.finish_data();
          if (env.recipients.empty()) std::abort();  // BDAT content only with a recipient
          chunks.reset();
          body.clear();
        }
        continue;
      }
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
      if (r.next == Next::ReadChunk) {
        const Chunk& c = proto.chunk();
        if (c.accepted && c.first) {
          body.clear();
          chunks.emplace(body, DataLimits{4096, 998});
        }
        if (c.accepted && !chunks) std::abort();  // a later chunk without a first
        in_chunk = true;
        chunk_left = c.size;
      }
    }
  }
  return 0;
}
