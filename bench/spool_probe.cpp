// A probe of durable stores for the spool (docs/SPOOL.md): how many synced commits of one
// 8 KB message (+ one recipient record) per second, from 1 and from 16 writer threads, for
// RocksDB (each writer syncs; RocksDB groups concurrent syncs), RocksDB with one explicit group
// commit per batch (mma's way), SQLite in WAL mode with synchronous=FULL, LMDB, and a plain
// append-only file with fdatasync. Run: build/release/bench/spool_probe [dir]
#include <fcntl.h>
#include <lmdb.h>
#include <rocksdb/db.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
const std::string kBody(8192, 'x');
constexpr double kSeconds = 3.0;

double run(int threads, const std::function<void(int, long)>& commit) {
  std::atomic<long> done{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (long i = 0; !stop; ++i) {
        commit(t, i);
        ++done;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(kSeconds));
  stop = true;
  for (auto& t : ts) t.join();
  return static_cast<double>(done) / std::chrono::duration<double>(Clock::now() - start).count();
}

void rocksdb_each(const std::string& dir, int threads) {
  std::filesystem::remove_all(dir);
  rocksdb::Options o;
  o.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  rocksdb::DB::Open(o, dir, &db);
  rocksdb::WriteOptions w;
  w.sync = true;
  const double r = run(threads, [&](int t, long i) {
    rocksdb::WriteBatch b;
    const std::string id = std::to_string(t) + "-" + std::to_string(i);
    b.Put("m" + id, kBody);
    b.Put("r" + id, "rcpt@example.com");
    db->Write(w, &b);
  });
  std::printf("| RocksDB, sync per write (its own write grouping) | %d | %.0f |\n", threads, r);
  delete db;
}

void rocksdb_group(const std::string& dir, int threads) {
  std::filesystem::remove_all(dir);
  rocksdb::Options o;
  o.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  rocksdb::DB::Open(o, dir, &db);
  std::mutex mu;
  // Writers write unsynced; the first to need durability syncs the log for everyone written so far.
  std::atomic<long> written{0}, synced{0};
  const double r = run(threads, [&](int t, long i) {
    rocksdb::WriteBatch b;
    const std::string id = std::to_string(t) + "-" + std::to_string(i);
    b.Put("m" + id, kBody);
    b.Put("r" + id, "rcpt@example.com");
    db->Write(rocksdb::WriteOptions{}, &b);
    const long mine = ++written;
    std::lock_guard lock(mu);
    if (synced < mine) {
      const long upto = written;
      db->SyncWAL();
      synced = upto;
    }
  });
  std::printf("| RocksDB, explicit group commit (SyncWAL per group: mma) | %d | %.0f |\n", threads,
              r);
  delete db;
}

void sqlite_wal(const std::string& dir, int threads) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  sqlite3* db = nullptr;
  sqlite3_open_v2((dir + "/spool.db").c_str(), &db,
                  SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  sqlite3_exec(db,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE m(k TEXT PRIMARY "
               "KEY, v BLOB);",
               nullptr, nullptr, nullptr);
  std::mutex mu;  // one writer at a time: SQLite's model
  const double r = run(threads, [&](int t, long i) {
    std::lock_guard lock(mu);
    const std::string id = std::to_string(t) + "-" + std::to_string(i);
    const std::string sql =
        "INSERT INTO m VALUES('m" + id + "', zeroblob(8192)), ('r" + id + "', 'rcpt');";
    sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  });
  std::printf("| SQLite, WAL, synchronous=FULL | %d | %.0f |\n", threads, r);
  sqlite3_close(db);
}

void lmdb(const std::string& dir, int threads) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  MDB_env* env = nullptr;
  mdb_env_create(&env);
  mdb_env_set_mapsize(env, 8ull << 30);
  mdb_env_open(env, dir.c_str(), 0, 0644);
  MDB_dbi dbi;
  {
    MDB_txn* txn = nullptr;
    mdb_txn_begin(env, nullptr, 0, &txn);
    mdb_dbi_open(txn, nullptr, 0, &dbi);
    mdb_txn_commit(txn);
  }
  const double r = run(threads, [&](int t, long i) {
    MDB_txn* txn = nullptr;
    mdb_txn_begin(env, nullptr, 0, &txn);  // one writer at a time
    std::string k = "m" + std::to_string(t) + "-" + std::to_string(i);
    MDB_val key{k.size(), k.data()}, val{kBody.size(), const_cast<char*>(kBody.data())};
    mdb_put(txn, dbi, &key, &val, 0);
    mdb_txn_commit(txn);
  });
  std::printf("| LMDB (one writer, sync per commit) | %d | %.0f |\n", threads, r);
  mdb_env_close(env);
}

void plain_file(const std::string& dir, int threads) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const int fd = ::open((dir + "/log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  std::mutex mu;
  std::atomic<long> written{0}, synced{0};
  const double r = run(threads, [&](int, long) {
    if (::write(fd, kBody.data(), kBody.size()) < 0) return;
    const long mine = ++written;
    std::lock_guard lock(mu);
    if (synced < mine) {
      const long upto = written;
      ::fdatasync(fd);
      synced = upto;
    }
  });
  std::printf("| append-only file, fdatasync per group (the floor of any log) | %d | %.0f |\n",
              threads, r);
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/tmp/mma-spool-probe";
  std::printf("| store | writer threads | synced commits/s |\n|---|---|---|\n");
  for (int threads : {1, 16}) {
    plain_file(dir + "/file", threads);
    rocksdb_each(dir + "/rocks1", threads);
    rocksdb_group(dir + "/rocks2", threads);
    sqlite_wal(dir + "/sqlite", threads);
    lmdb(dir + "/lmdb", threads);
  }
  std::filesystem::remove_all(dir);
}
