// The client side: replies of a remote server through smtp::ReplyParser, EHLO keywords, and a
// pipelined smtp::ClientTransaction fed whatever the server says.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "smtp/client_transaction.hpp"
#include "smtp/extensions.hpp"
#include "smtp/line_buffer.hpp"
#include "smtp/reply_parser.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace mma::smtp;
  LineBuffer in(8192);
  ReplyParser parser;
  std::size_t pos = 0;
  bool first = true;
  Extensions ext;
  std::optional<ClientTransaction> tx;
  const std::string a = "a@example.test", b = "b@example.test", c = "c@example.test";
  while (pos < size) {
    auto room = in.prepare(64);
    const std::size_t n =
        std::min(room.size(), std::min<std::size_t>(size - pos, 1 + data[pos] % 61));
    std::copy(data + pos, data + pos + n, room.begin());
    in.commit(n);
    pos += n;
    for (;;) {
      const auto st = parser.parse(in);
      if (st == ReplyParser::Status::NeedMore) break;
      if (st == ReplyParser::Status::Garbled) return 0;
      Reply r = parser.take();
      if (r.code < 200 || r.code > 599) std::abort();
      (void)r.summary();
      if (first) {
        ext = parse_extensions(r);
        const bool lmtp = (r.code & 1) != 0, eightbit = (r.code & 2) != 0, utf8 = (r.code & 4) != 0;
        tx.emplace(TransactionInput{"s@example.test", {a, b, c}, 100, eightbit, lmtp, utf8}, ext);
        first = false;
        continue;
      }
      if (tx->step() == ClientTransaction::Step::Send) (void)tx->take_commands();
      if (tx->step() == ClientTransaction::Step::SendBody ||
          tx->step() == ClientTransaction::Step::SendEndOfData) {
        tx->body_sent();
      }
      if (tx->step() == ClientTransaction::Step::Done) {
        if (tx->results().size() != 3) std::abort();
        return 0;
      }
      tx->on_reply(r);
    }
  }
  return 0;
}
