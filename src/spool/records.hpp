// spool/records: how a message and its recipients are written in the spool (RocksDB keys and
// values), and read back. Pure functions, versioned, unit-tested.
//
//   "m" id          -> MessageRecord (sender, times, flags, recipient count, body location)
//   "b" id          -> the body, when it is kept in the spool itself
//   "r" id 0x00 idx -> RecipientRecord (address), idx big-endian: recipients in RCPT order
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mma::spool {

struct MessageRecord {
  std::string sender;
  std::string message_id;        // the header, for logs
  std::int64_t received_ms = 0;  // wall clock, ms since the epoch
  std::uint64_t size = 0;        // RFC 1870 size
  std::uint32_t recipients = 0;
  bool smtputf8 = false;
  bool eightbit = false;
  std::string body_file;  // empty: the body is under the "b" key
};

struct RecipientRecord {
  std::string address;
};

std::string message_key(std::string_view id);
std::string body_key(std::string_view id);
std::string recipient_key(std::string_view id, std::uint32_t index);
std::string recipient_prefix(std::string_view id);
// The id and index of a recipient key; false if it is not one.
bool parse_recipient_key(std::string_view key, std::string& id, std::uint32_t& index);

std::string encode(const MessageRecord& m);
std::optional<MessageRecord> decode_message(std::string_view v);
std::string encode(const RecipientRecord& r);
std::optional<RecipientRecord> decode_recipient(std::string_view v);

}  // namespace mma::spool
