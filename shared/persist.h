// shared/persist.h: the store on disk (docs/persistence.md).
//
// Each worker process appends the mutations it makes to its own log file
// (LogWriter, the kv::Journal of that process): no lock is shared between
// workers to log a write. Every entry carries its shard and that shard's
// sequence number, stamped under the shard lock, so replay can merge the
// workers' logs shard by shard in the order the writes happened.
//
// A snapshot (WriteSnapshot, in a child of the master) walks the shards one
// at a time, holding each lock only while it copies that shard, and records
// each shard's sequence number as its watermark. Before the walk it moves the
// shared log generation on: a log entry is stamped with the generation it
// read under its shard lock, so every file of an older generation only holds
// entries the walk saw, and can go once the snapshot is durable.
//
// On start (Load, in the master before the workers exist): the newest
// snapshot, then the log entries past its watermarks, merged per shard by
// sequence; a torn or corrupt tail is cut off (and kept beside the file).
#pragma once

#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "shared/config.h"
#include "shared/kv.h"
#include "shared/persist_format.h"
#include "shared/shm.h"

namespace pf::persist {

// Sent to the master to ask for a snapshot (SAVE, BGSAVE, preforkctl snapshot).
inline int SnapshotSignal() { return SIGRTMIN + 1; }

// The shared "last error" text (a seqlock: many writers are fine, readers retry).
void SetLastError(PersistShared* ps, const std::string& msg);
std::string LastError(const PersistShared* ps, uint64_t* at_ms = nullptr);

// File names in the data folder.
std::string LogFileName(uint64_t epoch, uint64_t gen, uint64_t file_id);
std::string SnapshotFileName(uint64_t epoch, uint64_t gen);
inline constexpr const char* kStatusFile = "snapshot.status";  // last snapshot attempt, one line

// ---- start-up -------------------------------------------------------------
struct LoadStats {
  std::string snapshot;          // file loaded ("" = none)
  uint64_t snapshot_items = 0;
  uint64_t log_files = 0;
  uint64_t records = 0;          // log records applied
  uint64_t skipped_entries = 0;  // covered by the snapshot
  uint64_t expired = 0;          // items or puts whose expiry had passed
  uint64_t dropped_bytes = 0;    // torn or corrupt tails cut off
  uint64_t keys = 0;             // keys in the store afterwards
  uint64_t max_epoch = 0;        // highest epoch on disk: this run is max_epoch + 1
  uint64_t ms = 0;
};
// Creates `dir` if needed, loads the newest snapshot and replays the logs into
// `store` (which must be empty). False, with a reason for the operator, when
// the data cannot be loaded without losing some silently: a corrupt
// snapshot, a store too small for the data, an unreadable folder.
bool Load(const std::string& dir, kv::Store* store, uint64_t now_ms, LoadStats* out, std::string* why);

// ---- snapshots ------------------------------------------------------------
struct SnapshotResult {
  bool ok = false;
  std::string error;
  std::string path;
  uint64_t epoch = 0, gen = 0, keys = 0, bytes = 0;
};
// In a child process of the master: moves the log generation on, walks the
// store and writes dir/snapshot-E-G.pfs crash-safely (temp file, fsync,
// rename, fsync of the folder).
SnapshotResult WriteSnapshot(const std::string& dir, kv::Store* store, PersistShared* ps,
                             uint64_t now_ms);
// The master, after a snapshot covering (epoch, gen) is durable: removes the
// log files and older snapshots it covers. Returns files removed.
int RemoveCovered(const std::string& dir, uint64_t epoch, uint64_t gen);
// Writes dir/snapshot.status atomically (what `preforkctl snapshot` waits for).
void WriteStatus(const std::string& dir, const std::string& line);

// ---- the worker's log -----------------------------------------------------
// Positions are byte counts of this writer's records since it started:
// appended (encoded), written (write(2) done), synced (fdatasync done).
// Replies wait for `durable()`: written for everysec and no (an
// acknowledged write survives kill -9), synced for always.
class LogWriter final : public kv::Journal {
 public:
  LogWriter(const PersistenceConf& conf, PersistShared* ps, const kv::Store* store);
  ~LogWriter() override;
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  bool Start(std::string* why);  // opens the folder, starts the fsync thread

  // kv::Journal: called under shard locks; only encodes into memory.
  void Put(uint32_t shard, uint64_t seq, std::string_view key, std::string_view value,
           int64_t expire_at) override;
  void Del(uint32_t shard, uint64_t seq, std::string_view key) override;
  void Clear(uint32_t shard, uint64_t seq) override;
  void BeginGroup() override;
  void EndGroup() override;

  uint64_t appended() const { return appended_; }
  uint64_t written() const { return written_; }
  uint64_t synced() const { return synced_.load(std::memory_order_acquire); }
  uint64_t durable() const { return policy_ == FsyncPolicy::kAlways ? synced() : written_; }
  FsyncPolicy policy() const { return policy_; }
  bool has_pending() const { return pending_off_ < pending_.size(); }

  // Event loop: write(2) everything encoded (opening the next file when the
  // generation moved on); for `always`, wake the fsync thread. False after an
  // error (logged, data kept for the next try).
  bool Flush();
  // Readable when the fsync thread finished a round (or failed).
  int notify_fd() const { return notify_fd_; }
  void DrainNotify();
  // A write or fsync failed and nothing has fixed it yet: refuse writes.
  bool failing() const { return failing_; }
  const std::string& error() const { return error_; }
  // Worker exit: write and fsync everything, stop the thread.
  void Shutdown();

 private:
  struct File {
    int fd = -1;
    uint64_t end = UINT64_MAX;   // position where it ends (UINT64_MAX: still being written)
    bool dir_sync = true;        // its folder entry is not known to be durable yet
    bool drop = false;           // its fsync failed: close it, never trust a later fsync
  };
  void NoteGen();                // a new record: which generation is it in
  bool OpenFile(uint64_t gen);
  void Fail(const std::string& what, int err);
  void ThreadMain();

  FsyncPolicy policy_;
  std::string dir_;
  PersistShared* ps_;
  uint32_t shard_count_;
  uint64_t k0_, k1_;
  int dir_fd_ = -1;
  int notify_fd_ = -1;

  // Loop-side state.
  std::string pending_;          // encoded, not yet written
  size_t pending_off_ = 0;       // bytes of pending_ already written
  std::vector<std::pair<size_t, uint64_t>> gen_marks_;  // (offset in pending_, gen from there on)
  uint64_t tail_gen_ = 0;        // generation of the last encoded record
  uint64_t file_gen_ = 0;        // generation of the open file
  int fd_ = -1;                  // the open file
  RecordBuilder rb_{&pending_};
  int group_depth_ = 0;
  uint64_t appended_ = 0, written_ = 0;
  bool failing_ = false;
  bool sync_failed_ = false;     // an fsync failed: only a snapshot covering that file clears it
  uint64_t poisoned_gen_ = 0;    // generation of the file whose fsync failed
  std::string error_;
  uint64_t last_error_log_ms_ = 0;

  // Shared with the fsync thread (under mu_).
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<File> files_;
  uint64_t want_ = 0;            // always: sync at least to here
  bool stop_ = false;
  std::string thread_error_;
  uint64_t thread_errors_ = 0, thread_errors_seen_ = 0;
  std::atomic<uint64_t> written_pub_{0};
  std::atomic<uint64_t> synced_{0};
  std::thread thread_;
};

}  // namespace pf::persist
