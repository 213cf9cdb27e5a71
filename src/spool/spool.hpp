// spool/spool: the durable spool behind `ack = "spooled"` (DESIGN.md §6), on RocksDB.
//
// A session asks store() to commit a message and its recipients and waits; one writer thread
// takes every commit waiting at that moment, writes them, and syncs the write-ahead log once
// for all of them (group commit: the cost of an fsync is shared by many messages). Final
// outcomes remove recipients (batched, not synced: a lost removal means a redelivery, never a
// loss), and a message goes with its last recipient, so the spool holds what is still queued.
// At start, recover() hands back every message with recipients still pending. No event-loop
// thread ever waits for the disk.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "core/message.hpp"
#include "net/asio.hpp"
#include "net/wakeup.hpp"
#include "spool/body_directory.hpp"

namespace rocksdb {
class DB;
class WriteBatch;
}  // namespace rocksdb

namespace mma::spool {

struct SpoolOptions {
  std::string path;
  bool sync = true;  // fsync the write-ahead log at each group commit
  // Mail is refused (452 4.3.1) while the spool's file system has less free space than this
  // after the commit, as Postfix's queue_minfree: RocksDB is never run into a full disk.
  std::uint64_t min_free = 128ull << 20;
};

struct SpoolStats {
  // `commits` counts messages; `groups` the writes of the log that took them, each synced once
  // when `sync` is on: commits / groups is how many messages shared a sync.
  std::uint64_t messages_stored = 0, recipients_stored = 0, commits = 0, groups = 0, syncs = 0;
  std::uint64_t removed = 0, failures = 0;
  // Time from the start of a group's write to its sync's end: what every message in it waited.
  std::uint64_t commit_us = 0, commit_max_us = 0;
};

class Spool {
 public:
  // Opens (or creates) the spool; throws std::runtime_error naming the path and the reason.
  explicit Spool(SpoolOptions opts);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Commits `m` with `recipients` durably, then sets m.spooled so that final outcomes reach the
  // spool. Resumes on the caller's executor. An error (disk full...) means nothing was kept.
  net::Task<std::error_code> store(Message& m, const std::vector<Recipient>& recipients);

  // Every message with pending recipients, for the caller to queue again; returns how many
  // recipients. Before any store().
  std::size_t recover(
      const std::function<void(std::shared_ptr<Message>, std::vector<Recipient>)>& requeue);

  [[nodiscard]] SpoolStats stats() const;
  // Writes what is batched (removals) now; for shutdown.
  void flush();

  // For tickets: the recipient is done; `last`: and so is its message (and `body_file`).
  void forget(const std::string& id, std::uint32_t index, bool last,
              const std::string& body_file = {});

  // Where this spool keeps bodies above memory_body_limit.
  [[nodiscard]] BodyDirectory& bodies() { return *bodies_; }

 private:
  struct Commit;
  void writer();
  bool open_db();
  // After a write error RocksDB's log writer must not be touched again (the Debian build
  // asserts): the writer reopens the database instead, once there is space again.
  bool recover_from_error();
  [[nodiscard]] std::uint64_t free_space() const;
  std::shared_ptr<SpoolTicket> ticket(const std::string& id, std::uint32_t pending,
                                      const BodyRef& body);

  SpoolOptions opts_;
  std::unique_ptr<rocksdb::DB> db_;
  std::unique_ptr<BodyDirectory> bodies_;
  std::string body_dir_;
  bool healthy_ = true;  // writer thread only
  std::string open_error_;
  bool short_of_space_ = false;         // writer thread only
  std::vector<std::string> undo_keys_;  // writer thread only: refused commits to take back
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  std::uint64_t flush_requests_ = 0, flushed_ = 0;
  std::vector<std::shared_ptr<Commit>> commits_;
  std::vector<std::string> removals_;       // keys to delete, batched
  std::vector<std::string> file_removals_;  // body files to delete once their keys are gone
  std::size_t removal_count_ = 0;
  bool stopping_ = false;
  SpoolStats stats_;
  std::thread thread_;
};

}  // namespace mma::spool
