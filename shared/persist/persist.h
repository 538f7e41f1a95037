// shared/persist/persist.h: the store on disk (docs/persistence.md): the
// loader (load.cc), snapshots (snapshot.cc); the worker's log is in
// log_writer.h.
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

#include <cstdint>
#include <string>

#include "shared/config.h"
#include "shared/kv/kv.h"
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
  std::string snapshot;  // file loaded ("" = none)
  uint64_t snapshot_items = 0;
  uint64_t log_files = 0;
  uint64_t records = 0;          // log records applied
  uint64_t skipped_entries = 0;  // covered by the snapshot
  uint64_t expired = 0;          // items or puts whose expiry had passed
  uint64_t dropped_bytes = 0;    // torn or corrupt tails cut off
  uint64_t keys = 0;             // keys in the store afterwards
  uint64_t max_epoch = 0;        // highest epoch on disk: this run is max_epoch + 1
  uint64_t ms = 0;
  uint64_t replay_threads = 0;  // threads that applied the logs (the most of any run)
};
struct LoadOptions {
  // Threads replaying the logs: 0 = min(cores, 4), or one for a short replay.
  unsigned threads = 0;
};
// Creates `dir` if needed, loads the newest snapshot and replays the logs into
// `store` (which must be empty). False, with a reason for the operator, when
// the data cannot be loaded without losing some silently: a corrupt
// snapshot, a store too small for the data, an unreadable folder.
// The logs of a run are replayed on LoadOptions::threads threads (shards
// split between them), all joined before Load returns.
bool Load(const std::string& dir, kv::Store* store, uint64_t now_ms, LoadStats* out,
          std::string* why, const LoadOptions& opt = {});

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
// Removes unfinished snapshot files (*.tmp) a killed snapshot process left.
void RemoveTemporary(const std::string& dir);
// Writes dir/snapshot.status atomically (what `preforkctl snapshot` waits for).
void WriteStatus(const std::string& dir, const std::string& line);

}  // namespace pf::persist
