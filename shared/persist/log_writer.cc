// shared/persist/log_writer.cc: the worker's append-only log (log_writer.h):
// encoding under the shard locks, write(2) from the event loop, and the
// fsync thread (group commit for `always`, once a second for `everysec`).
#include "shared/persist/log_writer.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "shared/persist/files.h"
#include "shared/persist/persist.h"
#include "shared/util/clock.h"

namespace pf::persist {

LogWriter::LogWriter(const PersistenceConf& conf, PersistShared* ps, const kv::Store* store)
    : policy_(conf.fsync), dir_(conf.dir), ps_(ps), shard_count_(store->shard_count()) {
  auto [a, b] = store->HashSeed();
  k0_ = a;
  k1_ = b;
}

LogWriter::~LogWriter() { Shutdown(); }

bool LogWriter::Start(std::string* why) {
  dir_fd_.Reset(open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd_) {
    *why = "cannot open " + dir_ + ": " + Errno(errno);
    return false;
  }
  notify_fd_.Reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!notify_fd_) {
    *why = "eventfd: " + Errno(errno);
    return false;
  }
  if (policy_ != FsyncPolicy::kNo) thread_ = std::thread(&LogWriter::ThreadMain, this);
  return true;
}

// Under the shard lock(s) of the record: see persist.h for why the
// generation read here decides which file the record may go to.
void LogWriter::NoteGen() {
  const uint64_t g = ps_->gen.load(std::memory_order_relaxed);
  if (g != tail_gen_) {
    gen_marks_.emplace_back(pending_.size(), g);
    tail_gen_ = g;
  }
}

void LogWriter::Put(uint32_t shard, uint64_t seq, std::string_view key, std::string_view value,
                    int64_t expire_at) {
  if (!group_depth_) {
    NoteGen();
    rb_.Begin();
  }
  rb_.Put(shard, seq, key, value, expire_at);
  if (!group_depth_) {
    rb_.End();
    appended_ = written_ + (pending_.size() - pending_off_);
  }
}

void LogWriter::Del(uint32_t shard, uint64_t seq, std::string_view key) {
  if (!group_depth_) {
    NoteGen();
    rb_.Begin();
  }
  rb_.Del(shard, seq, key);
  if (!group_depth_) {
    rb_.End();
    appended_ = written_ + (pending_.size() - pending_off_);
  }
}

void LogWriter::Clear(uint32_t shard, uint64_t seq) {
  if (!group_depth_) {
    NoteGen();
    rb_.Begin();
  }
  rb_.Clear(shard, seq);
  if (!group_depth_) {
    rb_.End();
    appended_ = written_ + (pending_.size() - pending_off_);
  }
}

void LogWriter::BeginGroup() {
  if (group_depth_++ == 0) {
    NoteGen();
    rb_.Begin();
  }
}

void LogWriter::EndGroup() {
  if (--group_depth_ > 0) return;
  if (rb_.empty())
    rb_.Abort();
  else
    rb_.End();
  appended_ = written_ + (pending_.size() - pending_off_);
}

bool LogWriter::OpenFile(uint64_t gen) {
  if (fd_ >= 0) {
    if (thread_.joinable()) {
      std::lock_guard lk(mu_);
      files_.back().end = written_;  // the fsync thread syncs and closes it
    } else {
      own_fd_.Reset();
    }
    fd_ = -1;
  }
  const uint64_t id = ps_->next_file_id.fetch_add(1);
  const std::string name = LogFileName(ps_->epoch.load(), gen, id);
  UniqueFd fd(openat(dir_fd_.get(), name.c_str(),
                     O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600));
  if (!fd) {
    Fail("cannot create " + dir_ + "/" + name, errno);
    return false;
  }
  LogHeader h;
  h.shard_count = shard_count_;
  h.epoch = ps_->epoch.load();
  h.gen = gen;
  h.file_id = id;
  h.k0 = k0_;
  h.k1 = k1_;
  const std::string hdr = EncodeLogHeader(h);
  int err = 0;
  if (!WriteAll(fd.get(), hdr.data(), hdr.size(), &err)) {
    fd.Reset();
    unlinkat(dir_fd_.get(), name.c_str(), 0);
    Fail("cannot write the header of " + dir_ + "/" + name, err);
    return false;
  }
  fd_ = fd.get();
  file_gen_ = gen;
  if (thread_.joinable()) {
    std::lock_guard lk(mu_);
    files_.push_back(File{std::move(fd), UINT64_MAX, true});
  } else {
    own_fd_ = std::move(fd);
  }
  return true;
}

void LogWriter::Fail(const std::string& what, int err) {
  failing_ = true;
  error_ = what + ": " + Errno(err);
  ps_->write_errors.fetch_add(1, std::memory_order_relaxed);
  SetLastError(ps_, "pid " + std::to_string(getpid()) + ": " + error_);
  const uint64_t now = MonoMs();
  if (now - last_error_log_ms_ >= 1000) {
    last_error_log_ms_ = now;
    spdlog::error("persistence: {}; writes are refused until it is fixed", error_);
  }
}

bool LogWriter::Flush() {
  if (stopped_) return !failing_;
  if (sync_failed_ && ps_->last_snapshot_gen.load() >= poisoned_gen_) {
    sync_failed_ = false;  // a snapshot holds what the failed file may have lost
    durable_cap_ = UINT64_MAX;
    spdlog::warn(
        "persistence: a snapshot covers the log whose fsync failed; writes are accepted again");
  }
  while (pending_off_ < pending_.size()) {
    uint64_t g = file_gen_;
    size_t seg_end = pending_.size();
    for (const auto& [off, gg] : gen_marks_) {
      if (off <= pending_off_)
        g = gg;
      else {
        seg_end = off;
        break;
      }
    }
    if (seg_end == pending_off_) continue;  // cannot happen: marks are increasing
    if (g != file_gen_ || fd_ < 0) {
      if (!OpenFile(g)) return false;
    }
    const ssize_t w = write(fd_, pending_.data() + pending_off_, seg_end - pending_off_);
    if (w < 0) {
      if (errno == EINTR) continue;
      Fail("write to " + dir_, errno);
      return false;
    }
    pending_off_ += static_cast<size_t>(w);
    written_ += static_cast<uint64_t>(w);
    ps_->log_bytes.fetch_add(static_cast<uint64_t>(w), std::memory_order_relaxed);
  }
  pending_.clear();
  if (pending_.capacity() > (4u << 20)) pending_.shrink_to_fit();  // after a huge MSET
  if (fd_ >= 0 && ps_->last_snapshot_gen.load() >= file_gen_) {
    // A snapshot holds everything in this file and removed it: let go of it
    // (an idle worker would otherwise keep the deleted file's space).
    if (thread_.joinable()) {
      std::lock_guard lk(mu_);
      files_.back().end = written_;
    } else {
      own_fd_.Reset();
    }
    fd_ = -1;
  }
  pending_off_ = 0;
  gen_marks_.clear();
  written_pub_.store(written_, std::memory_order_release);
  if (failing_ && !sync_failed_) {
    failing_ = false;
    spdlog::warn("persistence: log writes work again");
  }
  if (policy_ == FsyncPolicy::kAlways && written_ > synced()) {
    std::lock_guard lk(mu_);
    if (written_ > want_) {
      want_ = written_;
      cv_.notify_one();
    }
  }
  return !failing_;
}

// The open file is abandoned: a record it holds only part of (a short
// write) is written whole to the next file, and its bytes in the old file
// stop counting as written.
void LogWriter::RewindPartialRecord() {
  size_t pos = 0;
  while (pos < pending_off_) {
    uint32_t len;
    std::memcpy(&len, pending_.data() + pos, sizeof len);
    const size_t end = pos + kRecordHeaderBytes + len;
    if (end > pending_off_) break;
    pos = end;
  }
  if (pos == pending_off_) return;
  written_ -= pending_off_ - pos;
  pending_off_ = pos;
}

void LogWriter::DrainNotify() {
  uint64_t v;
  while (read(notify_fd_.get(), &v, sizeof v) > 0) {
  }
  std::string err;
  bool current_failed = false;
  uint64_t cap;
  {
    std::lock_guard lk(mu_);
    if (thread_errors_ == thread_errors_seen_) return;
    thread_errors_seen_ = thread_errors_;
    err = thread_error_;
    cap = synced_at_error_;
    // The failed files are suspect: closed unsynced; new records go to a new file.
    for (File& f : files_) {
      if (!f.failed) continue;
      f.drop = true;
      current_failed |= f.fd.get() == fd_;
    }
  }
  cv_.notify_one();
  if (current_failed) {
    fd_ = -1;
    RewindPartialRecord();
  }
  durable_cap_ = std::min(durable_cap_, cap);
  sync_failed_ = true;
  poisoned_gen_ = file_gen_;
  failing_ = true;
  error_ = err;
  ps_->write_errors.fetch_add(1, std::memory_order_relaxed);
  SetLastError(ps_, "pid " + std::to_string(getpid()) + ": " + err);
  spdlog::error("persistence: {}; writes are refused until a snapshot holds the data", err);
}

void LogWriter::ThreadMain() {
  std::unique_lock lk(mu_);
  const bool always = policy_ == FsyncPolicy::kAlways;
  auto last_sync = std::chrono::steady_clock::now();
  for (;;) {
    for (auto it = files_.begin(); it != files_.end();) {
      if (it->drop || (it->failed && it->end != UINT64_MAX)) {
        it = files_.erase(it);  // closed, never fsynced again: its failure was reported once
      } else {
        ++it;
      }
    }
    // After a failed fsync nothing is synced until the loop took the error
    // over (DrainNotify).
    const bool handed_over = thread_errors_ == thread_errors_seen_;
    const uint64_t target = always ? want_ : written_pub_.load();
    const bool syncable =
        std::any_of(files_.begin(), files_.end(), [](const File& f) { return !f.failed; });
    if (!handed_over || target <= synced_.load() || !syncable) {
      while (!files_.empty() && files_.front().end != UINT64_MAX &&
             files_.front().end <= synced_.load())
        files_.pop_front();
      if (stop_) break;
      if (always)
        cv_.wait(lk);
      else
        cv_.wait_for(lk, std::chrono::seconds(1));
      continue;
    }
    if (!always && !stop_) {
      const auto next = last_sync + std::chrono::seconds(1);
      if (std::chrono::steady_clock::now() < next) {
        cv_.wait_until(lk, next);
        continue;
      }
    }
    last_sync = std::chrono::steady_clock::now();
    // Only this thread closes the files, so their descriptors stay valid
    // while it syncs them unlocked.
    std::vector<int> todo;
    bool dir_sync = false;
    for (const File& f : files_) {
      if (f.failed) continue;
      todo.push_back(f.fd.get());
      dir_sync |= f.dir_sync;
    }
    auto in_todo = [&todo](const File& f) {
      return std::find(todo.begin(), todo.end(), f.fd.get()) != todo.end();
    };
    lk.unlock();
    int err = 0;
    std::string what;
    if (dir_sync && fsync(dir_fd_.get()) != 0) {
      err = errno;
      what = "fsync of " + dir_;
    }
    for (const int fd : todo) {
      if (err) break;
      if (fdatasync(fd) != 0) {
        err = errno;
        what = "fdatasync of a log in " + dir_;
      }
    }
    lk.lock();
    if (err) {
      thread_error_ = what + ": " + Errno(err);
      thread_errors_++;
      synced_at_error_ = synced_.load();
      for (File& f : files_)
        if (in_todo(f)) f.failed = true;
    } else {
      for (File& f : files_)
        if (in_todo(f)) f.dir_sync = false;
      while (!files_.empty() && files_.front().end != UINT64_MAX && files_.front().end <= target)
        files_.pop_front();
      synced_.store(target, std::memory_order_release);
    }
    const uint64_t one = 1;
    (void)!write(notify_fd_.get(), &one, sizeof one);
  }
  files_.clear();
}

void LogWriter::Shutdown() {
  if (!dir_fd_ || stopped_) return;
  if (has_pending()) Flush();
  stopped_ = true;
  if (thread_.joinable()) {
    {
      std::lock_guard lk(mu_);
      want_ = std::max(want_, written_);
      stop_ = true;
      // everysec: the last round syncs what was written
    }
    cv_.notify_one();
    thread_.join();
    fd_ = -1;
  } else if (fd_ >= 0) {
    own_fd_.Reset();
    fd_ = -1;
  }
}

}  // namespace pf::persist
