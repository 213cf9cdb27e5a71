#include "spool/spool.hpp"

#include <fcntl.h>
#include <rocksdb/db.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <set>
#include <stdexcept>

#include "core/spool_ticket.hpp"
#include "spool/records.hpp"

namespace mma::spool {
namespace {

class Ticket final : public SpoolTicket {
 public:
  Ticket(Spool& spool, std::string id, std::uint32_t pending, std::string body_file)
      : spool_(spool), id_(std::move(id)), body_file_(std::move(body_file)), pending_(pending) {}
  void recipient_final(std::uint32_t index) override {
    const bool last = pending_.fetch_sub(1) == 1;
    spool_.forget(id_, index, last, last ? body_file_ : std::string());
  }

 private:
  Spool& spool_;
  std::string id_;
  std::string body_file_;  // the body's file, if it is not in the database
  std::atomic<std::uint32_t> pending_;
};

std::uint64_t free_bytes(const std::string& path) {
  struct statvfs st {};
  if (::statvfs(path.c_str(), &st) != 0) return std::numeric_limits<std::uint64_t>::max();
  return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
}

bool sync_directory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct Spool::Commit {
  explicit Commit(const asio::any_io_executor& ex) : wakeup(std::make_shared<net::Wakeup>(ex)) {}
  std::vector<std::pair<std::string, std::string>> records;  // message and recipients
  std::string body_key;
  BodyRef body;                   // written from where it lies, not copied until the batch
  std::vector<std::string> keys;  // to take back if the commit fails after the write
  std::shared_ptr<net::Wakeup> wakeup;
  std::error_code result;  // written by the writer before it wakes the session
};

Spool::Spool(SpoolOptions opts) : opts_(std::move(opts)) {
  if (!open_db())
    throw std::runtime_error("cannot open the spool " + opts_.path + ": " + open_error_);
  // After RocksDB has taken its lock: the spool's body directory is this process's alone.
  bodies_ = std::make_unique<BodyDirectory>(spool_body_directory(opts_.path));
  body_dir_ = bodies_->path();
  thread_ = std::thread([this] { writer(); });
}

bool Spool::open_db() {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.IncreaseParallelism(2);
  // Bodies are large values, written once and deleted once: keep them out of compactions.
  o.enable_blob_files = true;
  o.min_blob_size = 4096;
  o.enable_blob_garbage_collection = true;
  // What matters is in the log; a flush at close could only fail on a full disk.
  o.avoid_flush_during_shutdown = true;
  // The running relay only writes: records in, deletions after delivery, one writer thread.
  // A vector memtable appends each entry and sorts once, on the flush thread; the default skip
  // list sorted each of the ~6 entries per message on the writer thread, whose time every
  // waiting session shares (zero, spooled: 1.25x the messages/s, 0.81x the CPU). Reading a
  // vector memtable sorts a copy, so nothing may read one: recover() reads only through
  // iterators made just after Open, which has flushed what the log replayed into an SST
  // (avoid_flush_during_recovery).
  o.memtable_factory = std::make_shared<rocksdb::VectorRepFactory>();
  o.allow_concurrent_memtable_write = false;  // the vector is not for concurrent inserts
  o.avoid_flush_during_recovery = false;
  rocksdb::DB* db = nullptr;
  const rocksdb::Status s = rocksdb::DB::Open(o, opts_.path, &db);
  if (!s.ok()) {
    open_error_ = s.ToString();
    return false;
  }
  db_.reset(db);
  return true;
}

std::uint64_t Spool::free_space() const {
  return free_bytes(opts_.path);
}

bool Spool::recover_from_error() {
  db_.reset();
  if (!open_db()) return false;
  if (!undo_keys_.empty()) {
    // Commits that were refused (452) must not be delivered after all: take them back.
    rocksdb::WriteBatch undo;
    for (const auto& k : undo_keys_) undo.Delete(k);
    rocksdb::WriteOptions w;
    w.sync = true;
    if (!db_->Write(w, &undo).ok()) {
      db_.reset();
      return false;
    }
    undo_keys_.clear();
  }
  spdlog::info("spool: writable again");
  healthy_ = true;
  return true;
}

Spool::~Spool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
  if (db_ && healthy_) db_->FlushWAL(true);
}

std::shared_ptr<SpoolTicket> Spool::ticket(const std::string& id, std::uint32_t pending,
                                           const BodyRef& body) {
  return std::make_shared<Ticket>(*this, id, pending, body->file ? body->file->path() : "");
}

net::Task<std::error_code> Spool::store(Message& m, const std::vector<Recipient>& recipients) {
  auto c = std::make_shared<Commit>(co_await asio::this_coro::executor);
  MessageRecord rec;
  rec.sender = m.sender;
  rec.message_id = m.body->message_id;
  rec.received_ms = now_ms();
  rec.size = m.body->size;
  rec.recipients = static_cast<std::uint32_t>(recipients.size());
  rec.smtputf8 = m.smtputf8;
  rec.eightbit = m.body->type == BodyType::EightBitMime;
  if (m.body->file) rec.body_file = BodyDirectory::file_name(m.id);
  c->keys.push_back(message_key(m.id));
  c->records.emplace_back(c->keys.back(), encode(rec));
  c->keys.push_back(body_key(m.id));
  c->body_key = c->keys.back();
  c->body = m.body;
  for (const auto& r : recipients) {
    c->keys.push_back(recipient_key(m.id, r.index));
    c->records.emplace_back(c->keys.back(), encode(RecipientRecord{r.address}));
  }
  {
    std::lock_guard lock(mu_);
    commits_.push_back(c);
  }
  cv_.notify_one();
  const bool woken = co_await c->wakeup->wait(std::chrono::steady_clock::duration::max());
  static_cast<void>(woken);
  if (!c->result) m.spooled = ticket(m.id, rec.recipients, m.body);
  co_return c->result;
}

void Spool::forget(const std::string& id, std::uint32_t index, bool last,
                   const std::string& body_file) {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    removals_.push_back(recipient_key(id, index));
    if (last) {
      removals_.push_back(message_key(id));
      removals_.push_back(body_key(id));
      if (!body_file.empty()) file_removals_.push_back(body_file);
    }
    ++stats_.removed;
    wake = ++removal_count_ > 10'000;
  }
  if (wake) cv_.notify_one();
}

void Spool::flush() {
  // The writer owns the database: ask it for one more round and wait for it.
  std::unique_lock lock(mu_);
  const std::uint64_t request = ++flush_requests_;
  cv_.notify_all();
  done_cv_.wait_for(lock, std::chrono::seconds(5), [&] { return flushed_ >= request; });
}

void Spool::writer() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait_for(lock, std::chrono::milliseconds(100), [this] {
      return stopping_ || !commits_.empty() || removal_count_ > 10'000 ||
             flush_requests_ > flushed_;
    });
    const std::uint64_t flush_request = flush_requests_;
    auto commits = std::move(commits_);
    commits_.clear();
    auto removals = std::move(removals_);
    removals_.clear();
    auto file_removals = std::move(file_removals_);
    file_removals_.clear();
    removal_count_ = 0;
    const bool stop = stopping_;
    lock.unlock();

    if (!healthy_ && !recover_from_error()) {
      // Still no space: refuse what comes, keep the removals for later.
      for (auto& c : commits) {
        c->result = std::make_error_code(std::errc::no_space_on_device);
        c->wakeup->notify();
      }
      lock.lock();
      stats_.failures += commits.size();
      removals.insert(removals.end(), removals_.begin(), removals_.end());  // older ones first
      removals_ = std::move(removals);
      removal_count_ = removals_.size();
      file_removals_.insert(file_removals_.end(), file_removals.begin(), file_removals.end());
      flushed_ = flush_request;  // nothing more can be done now
      done_cv_.notify_all();
      if (stop) return;
      cv_.wait_for(lock, std::chrono::milliseconds(500));
      continue;
    }
    // Removals are not synced: losing one after a crash means a recipient delivered twice,
    // never one lost.
    if (!removals.empty()) {
      rocksdb::WriteBatch batch;
      for (const auto& k : removals) batch.Delete(k);
      // A body file goes only once its message's removal is durable: otherwise a crash could
      // leave a record whose body is gone.
      rocksdb::WriteOptions w;
      w.sync = opts_.sync && !file_removals.empty();
      const auto s = db_->Write(w, &batch);
      if (!s.ok()) {
        spdlog::error("spool: removing delivered recipients failed: {}", s.ToString());
        healthy_ = false;
        lock.lock();
        removals.insert(removals.end(), removals_.begin(), removals_.end());
        removals_ = std::move(removals);
        removal_count_ = removals_.size();
        file_removals_.insert(file_removals_.end(), file_removals.begin(), file_removals.end());
        lock.unlock();
      } else {
        for (const auto& f : file_removals) ::unlink(f.c_str());
      }
    }
    if (!commits.empty()) {
      const auto group_start = std::chrono::steady_clock::now();
      // Group commit: every waiting message in one write of the log, synced once for all.
      rocksdb::Status failure =
          healthy_ ? rocksdb::Status::OK() : rocksdb::Status::IOError("spool unwritable");
      // One batch for the whole group: one write of the log, one sync (group commit).
      rocksdb::WriteBatch group;
      bool files = false;
      for (const auto& c : commits) {
        for (const auto& [k, v] : c->records) group.Put(k, v);
        if (!c->body->file) {
          group.Put(c->body_key, rocksdb::Slice(c->body->wire));
        } else if (opts_.sync && failure.ok()) {
          // A body on disk is synced before the record that points at it.
          if (const std::error_code ec = c->body->file->sync()) {
            failure = rocksdb::Status::IOError("syncing " + c->body->file->path(), ec.message());
          }
          files = true;
        }
      }
      if (files && failure.ok() && !sync_directory(body_dir_)) {
        failure = rocksdb::Status::IOError("syncing " + body_dir_, std::strerror(errno));
      }
      const std::uint64_t bytes = group.GetDataSize();
      if (const std::uint64_t room = free_space(); room < bytes + opts_.min_free) {
        // Refuse before the disk is full: a full disk is RocksDB's worst case.
        if (!short_of_space_) {
          spdlog::error(
              "spool: {} MB free on {}, less than min_free ({} MB): answering 452 4.3.1 until "
              "there is room",
              room >> 20, opts_.path, opts_.min_free >> 20);
        }
        short_of_space_ = true;
        lock.lock();
        stats_.failures += commits.size();
        for (auto& c : commits) {
          c->result = std::make_error_code(std::errc::no_space_on_device);
          c->wakeup->notify();
        }
        flushed_ = flush_request;
        done_cv_.notify_all();
        if (stop) return;
        continue;
      }
      if (short_of_space_) {
        spdlog::info("spool: room again on {}", opts_.path);
        short_of_space_ = false;
      }
      if (failure.ok()) {
        rocksdb::WriteOptions w;
        w.sync = opts_.sync;
        failure = db_->Write(w, &group);
      }
      if (!failure.ok()) {
        // Disk full or an I/O error: nothing of this group is acknowledged, nothing of it may
        // be delivered later either. Taken back once the spool is open again.
        spdlog::error("spool: commit failed: {}; answering 452 4.3.1 until it works again",
                      failure.ToString());
        healthy_ = false;
        for (const auto& c : commits)
          undo_keys_.insert(undo_keys_.end(), c->keys.begin(), c->keys.end());
      }
      std::uint64_t recipients = 0;
      for (auto& c : commits) {
        c->result =
            failure.ok() ? std::error_code{} : std::make_error_code(std::errc::no_space_on_device);
        if (failure.ok()) recipients += c->keys.size() - 2;
        // The spool owns the file now: it goes with the message's last recipient.
        if (failure.ok() && c->body->file) c->body->file->keep(true);
      }
      const auto us =
          static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                         std::chrono::steady_clock::now() - group_start)
                                         .count());
      lock.lock();
      stats_.commits += commits.size();
      stats_.groups += 1;
      stats_.commit_us += us;
      stats_.commit_max_us = std::max(stats_.commit_max_us, us);
      stats_.syncs += opts_.sync && failure.ok() ? 1 : 0;
      stats_.messages_stored += failure.ok() ? commits.size() : 0;
      stats_.recipients_stored += recipients;
      stats_.failures += failure.ok() ? 0 : commits.size();
      lock.unlock();
      for (auto& c : commits) c->wakeup->notify();  // after the stats: a session may read them
    }
    lock.lock();
    flushed_ = flush_request;
    done_cv_.notify_all();
    if (stop) return;
  }
}

std::size_t Spool::recover(
    const std::function<void(std::shared_ptr<Message>, std::vector<Recipient>)>& requeue) {
  std::size_t total = 0;
  std::set<std::string> body_files;
  // Every read through iterators made now, while the memtable is empty (Open flushed what the
  // log replayed): `requeue` may finish recipients, whose deletions the writer thread then puts
  // in the memtable, and a Get would sort the whole vector memtable each time.
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions{}));
  std::unique_ptr<rocksdb::Iterator> rit(db_->NewIterator(rocksdb::ReadOptions{}));
  std::unique_ptr<rocksdb::Iterator> bit(db_->NewIterator(rocksdb::ReadOptions{}));
  rocksdb::WriteBatch orphans;
  for (it->Seek("m"); it->Valid() && it->key().starts_with("m"); it->Next()) {
    const std::string id = it->key().ToString().substr(1);
    const auto rec = decode_message(it->value().ToString());
    if (!rec) {
      spdlog::error("spool: unreadable record for message {}: skipped, kept for inspection", id);
      continue;
    }
    std::vector<Recipient> rcpts;
    const std::string prefix = recipient_prefix(id);
    for (rit->Seek(prefix); rit->Valid() && rit->key().starts_with(prefix); rit->Next()) {
      std::string rid;
      std::uint32_t index = 0;
      const auto r = decode_recipient(rit->value().ToString());
      if (!r || !parse_recipient_key(rit->key().ToString(), rid, index)) continue;
      rcpts.push_back(Recipient{r->address, index, 0});
    }
    if (rcpts.empty()) {
      // Every recipient was done; the message's own removal was lost: finish it now (its body
      // file, if any, is not kept below).
      orphans.Delete(message_key(id));
      orphans.Delete(body_key(id));
      continue;
    }
    auto b = std::make_shared<Body>();
    if (!rec->body_file.empty()) {
      const std::string path = body_dir_ + "/" + rec->body_file;
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0) {
        spdlog::error(
            "spool: message {} has lost its body {}: its {} recipient(s) cannot be "
            "delivered",
            id, path, rcpts.size());
        continue;
      }
      b->file = BodyFile::adopt(path, static_cast<std::uint64_t>(st.st_size));
      body_files.insert(rec->body_file);
    } else {
      const std::string key = body_key(id);
      bit->Seek(key);
      if (!bit->Valid() || bit->key() != rocksdb::Slice(key)) {
        spdlog::error(
            "spool: message {} has lost its body: its {} recipient(s) cannot be delivered", id,
            rcpts.size());
        continue;
      }
      b->wire = bit->value().ToString();
    }
    b->size = rec->size;
    b->message_id = rec->message_id;
    b->type = rec->eightbit ? BodyType::EightBitMime : BodyType::SevenBit;
    auto m = std::make_shared<Message>();
    m->id = id;
    m->sender = rec->sender;
    m->body = std::move(b);
    m->smtputf8 = rec->smtputf8;
    m->received = Clock::now();
    m->spooled = ticket(id, static_cast<std::uint32_t>(rcpts.size()), m->body);
    total += rcpts.size();
    requeue(std::move(m), std::move(rcpts));
  }
  if (orphans.Count() > 0) db_->Write(rocksdb::WriteOptions{}, &orphans);
  // Body files no record points at: written for a message that was then refused, or whose
  // removal was already durable when the process died.
  if (const std::size_t n = bodies_->remove_except(body_files); n > 0) {
    spdlog::info("spool: removed {} body file(s) of messages no longer spooled", n);
  }
  return total;
}

SpoolStats Spool::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace mma::spool
