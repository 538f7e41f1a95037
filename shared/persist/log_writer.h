// shared/persist/log_writer.h: a worker's append-only log: the kv::Journal
// of the process, encoding mutations under the shard locks, written by the
// event loop and made durable by an fsync thread (docs/persistence.md).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "shared/config.h"
#include "shared/kv/kv.h"
#include "shared/persist/format.h"
#include "shared/shm.h"
#include "shared/util/unique_fd.h"

namespace pf::persist {

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
  uint64_t durable() const {
    return policy_ == FsyncPolicy::kAlways ? std::min(synced(), durable_cap_) : written_;
  }
  FsyncPolicy policy() const { return policy_; }
  bool has_pending() const { return pending_off_ < pending_.size(); }

  // Event loop: write(2) everything encoded (opening the next file when the
  // generation moved on); for `always`, wake the fsync thread. False after an
  // error (logged, data kept for the next try).
  bool Flush();
  // Readable when the fsync thread finished a round (or failed).
  int notify_fd() const { return notify_fd_.get(); }
  void DrainNotify();
  // A write or fsync failed and nothing has fixed it yet: refuse writes.
  bool failing() const { return failing_; }
  const std::string& error() const { return error_; }
  // Worker exit: write everything (always and everysec: and fsync it), stop the thread.
  void Shutdown();

 private:
  struct File {
    UniqueFd fd;
    uint64_t end = UINT64_MAX;  // position where it ends (UINT64_MAX: still being written)
    bool dir_sync = true;       // its folder entry is not known to be durable yet
    bool drop = false;          // handed over after a failed fsync: close it
    bool failed = false;  // its fsync failed: never fsynced again (Linux reports an error once)
  };
  void NoteGen();  // a new record: which generation is it in
  bool OpenFile(uint64_t gen);
  void Fail(const std::string& what, int err);
  void RewindPartialRecord();
  void ThreadMain();

  FsyncPolicy policy_;
  std::string dir_;
  PersistShared* ps_;
  uint32_t shard_count_;
  uint64_t k0_, k1_;
  UniqueFd dir_fd_;
  UniqueFd notify_fd_;

  // Loop-side state.
  std::string pending_;                                 // encoded, not yet written
  size_t pending_off_ = 0;                              // bytes of pending_ already written
  std::vector<std::pair<size_t, uint64_t>> gen_marks_;  // (offset in pending_, gen from there on)
  uint64_t tail_gen_ = 0;                               // generation of the last encoded record
  uint64_t file_gen_ = 0;                               // generation of the open file
  int fd_ = -1;      // the open file: owned by files_ (fsync thread) or own_fd_
  UniqueFd own_fd_;  // the open file when there is no fsync thread (fsync: no)
  RecordBuilder rb_{&pending_};
  int group_depth_ = 0;
  uint64_t appended_ = 0, written_ = 0;
  bool failing_ = false;
  bool stopped_ = false;       // Shutdown() ran: nothing more is written
  bool sync_failed_ = false;   // an fsync failed: only a snapshot covering that file clears it
  uint64_t poisoned_gen_ = 0;  // generation of the file whose fsync failed
  uint64_t durable_cap_ =
      UINT64_MAX;  // while sync_failed_: the last position synced before the failure
  std::string error_;
  uint64_t last_error_log_ms_ = 0;

  // Shared with the fsync thread (under mu_).
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<File> files_;
  uint64_t want_ = 0;  // always: sync at least to here
  bool stop_ = false;
  std::string thread_error_;
  uint64_t thread_errors_ = 0, thread_errors_seen_ = 0;
  uint64_t synced_at_error_ = 0;
  std::atomic<uint64_t> written_pub_{0};
  std::atomic<uint64_t> synced_{0};
  std::thread thread_;
};

}  // namespace pf::persist
