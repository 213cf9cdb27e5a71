#include "spool/records.hpp"

namespace mma::spool {
namespace {

constexpr char kVersion = 1;

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

void put_str(std::string& out, std::string_view s) {
  put_u64(out, s.size());
  out.append(s);
}

struct Reader {
  std::string_view in;
  bool ok = true;
  std::uint64_t u64() {
    if (in.size() < 8) {
      ok = false;
      return 0;
    }
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
    in.remove_prefix(8);
    return v;
  }
  std::string str() {
    const auto n = u64();
    if (!ok || n > in.size()) {
      ok = false;
      return {};
    }
    std::string s(in.substr(0, n));
    in.remove_prefix(n);
    return s;
  }
  char byte() {
    if (in.empty()) {
      ok = false;
      return 0;
    }
    const char c = in[0];
    in.remove_prefix(1);
    return c;
  }
};

}  // namespace

std::string message_key(std::string_view id) {
  return "m" + std::string(id);
}
std::string body_key(std::string_view id) {
  return "b" + std::string(id);
}
std::string recipient_prefix(std::string_view id) {
  return "r" + std::string(id) + '\0';
}

std::string recipient_key(std::string_view id, std::uint32_t index) {
  std::string k = recipient_prefix(id);
  for (int i = 3; i >= 0; --i) k += static_cast<char>((index >> (8 * i)) & 0xff);
  return k;
}

bool parse_recipient_key(std::string_view key, std::string& id, std::uint32_t& index) {
  if (key.size() < 6 || key[0] != 'r' || key[key.size() - 5] != '\0') return false;
  id.assign(key.substr(1, key.size() - 6));
  index = 0;
  for (std::size_t i = key.size() - 4; i < key.size(); ++i)
    index = (index << 8) | static_cast<unsigned char>(key[i]);
  return true;
}

std::string encode(const MessageRecord& m) {
  std::string out;
  out += kVersion;
  out += static_cast<char>((m.smtputf8 ? 1 : 0) | (m.eightbit ? 2 : 0));
  put_u64(out, static_cast<std::uint64_t>(m.received_ms));
  put_u64(out, m.size);
  put_u64(out, m.recipients);
  put_str(out, m.sender);
  put_str(out, m.message_id);
  put_str(out, m.body_file);
  return out;
}

std::optional<MessageRecord> decode_message(std::string_view v) {
  Reader r{v};
  if (r.byte() != kVersion) return std::nullopt;
  const char flags = r.byte();
  MessageRecord m;
  m.smtputf8 = (flags & 1) != 0;
  m.eightbit = (flags & 2) != 0;
  m.received_ms = static_cast<std::int64_t>(r.u64());
  m.size = r.u64();
  m.recipients = static_cast<std::uint32_t>(r.u64());
  m.sender = r.str();
  m.message_id = r.str();
  m.body_file = r.str();
  if (!r.ok) return std::nullopt;
  return m;
}

std::string encode(const RecipientRecord& rec) {
  std::string out;
  out += kVersion;
  put_str(out, rec.address);
  return out;
}

std::optional<RecipientRecord> decode_recipient(std::string_view v) {
  Reader r{v};
  if (r.byte() != kVersion) return std::nullopt;
  RecipientRecord rec;
  rec.address = r.str();
  if (!r.ok) return std::nullopt;
  return rec;
}

}  // namespace mma::spool
