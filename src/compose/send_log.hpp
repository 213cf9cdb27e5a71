// compose/send_log: which recipients of a campaign the server has accepted, so that a campaign
// interrupted (Ctrl-C, kill, crash) and started again sends only the rest.
//
// Each acceptance is written before the next message is composed: with SQLite in WAL mode
// (synchronous=NORMAL) or an append-only file, a write survives the composer being killed
// (not the machine losing power: that would take a sync per message). What cannot be avoided
// is the SMTP duplicate of RFC 1047: a message whose 250 was on its way when the composer died
// is sent again; at most one per connection.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace mma::compose {

class SendLog {
 public:
  virtual ~SendLog() = default;
  [[nodiscard]] virtual bool sent(const std::string& key) const = 0;
  virtual void record(const std::string& key) = 0;
  [[nodiscard]] virtual std::size_t count() const = 0;
  [[nodiscard]] virtual std::string describe() const = 0;
};

// A table mma_sent(campaign, key, accepted_at) in the SQLite database itself.
std::unique_ptr<SendLog> open_sqlite_send_log(const std::string& db_path,
                                              const std::string& campaign);
// A file of keys, one per line, appended (beside CSV input, or for PostgreSQL).
std::unique_ptr<SendLog> open_file_send_log(const std::string& path);

}  // namespace mma::compose
