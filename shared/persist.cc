// shared/persist.cc: see persist.h and docs/persistence.md.
#include "shared/persist.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <unordered_set>

#include <spdlog/spdlog.h>

namespace pf::persist {
namespace {

uint64_t WallMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}
uint64_t MonoMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

std::string Errno(int e) { return std::strerror(e); }

bool WriteAll(int fd, const char* p, size_t n, int* err) {
  while (n) {
    const ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool FsyncDir(const std::string& dir, int* err) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    return false;
  }
  const bool ok = fsync(fd) == 0;
  if (!ok) *err = errno;
  close(fd);
  return ok;
}

// A read-only view of a whole file.
class Mapped {
 public:
  Mapped() = default;
  ~Mapped() {
    if (p_ && p_ != MAP_FAILED) munmap(p_, n_);
  }
  Mapped(Mapped&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; }
  Mapped& operator=(Mapped&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  bool Open(const std::string& path, std::string* why) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      *why = "cannot open " + path + ": " + Errno(errno);
      return false;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
      *why = "cannot stat " + path + ": " + Errno(errno);
      close(fd);
      return false;
    }
    n_ = static_cast<size_t>(st.st_size);
    if (n_ > 0) {
      p_ = mmap(nullptr, n_, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
      if (p_ == MAP_FAILED) {
        *why = "cannot map " + path + ": " + Errno(errno);
        p_ = nullptr;
        close(fd);
        return false;
      }
    }
    close(fd);
    return true;
  }
  std::string_view view() const { return {static_cast<const char*>(p_), p_ ? n_ : 0}; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

struct LogName {
  uint64_t epoch, gen, id;
  std::string name;
};
struct SnapName {
  uint64_t epoch, gen;
  std::string name;
};

bool ParseLogName(const std::string& n, LogName* out) {
  unsigned long long e, g, i;
  int used = 0;
  if (sscanf(n.c_str(), "log-%llu-%llu-%llu.aof%n", &e, &g, &i, &used) != 3 ||
      static_cast<size_t>(used) != n.size())
    return false;
  *out = {e, g, i, n};
  return true;
}
bool ParseSnapName(const std::string& n, SnapName* out) {
  unsigned long long e, g;
  int used = 0;
  if (sscanf(n.c_str(), "snapshot-%llu-%llu.pfs%n", &e, &g, &used) != 2 ||
      static_cast<size_t>(used) != n.size())
    return false;
  *out = {e, g, n};
  return true;
}

bool ListDir(const std::string& dir, std::vector<std::string>* names, std::string* why) {
  DIR* d = opendir(dir.c_str());
  if (!d) {
    *why = "cannot read " + dir + ": " + Errno(errno);
    return false;
  }
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    names->emplace_back(e->d_name);
  }
  closedir(d);
  return true;
}

// Applies one key's state as the log or snapshot recorded it.
bool ApplyPut(kv::Store* store, std::string_view key, std::string_view value, int64_t expire_at,
              uint64_t now_ms, LoadStats* st, std::string* why) {
  if (expire_at >= 0 && static_cast<uint64_t>(expire_at) <= now_ms) {
    store->Del(key, now_ms);  // expired since: it stays gone
    st->expired++;
    return true;
  }
  kv::SetOptions o;
  o.expire_at_ms = expire_at;
  const kv::Status s = store->Set(key, value, o, now_ms);
  if (s == kv::Status::kOk) return true;
  *why = s == kv::Status::kTooLarge
             ? "a stored key or value is larger than kv.max_key_bytes / kv.max_value_bytes allow now (" +
                   std::to_string(key.size()) + "-byte key, " + std::to_string(value.size()) +
                   "-byte value): raise them to load the data"
             : "the store is full while loading (" + std::to_string(store->DbSize()) +
                   " keys so far): raise shared_memory to load the data";
  return false;
}

}  // namespace

// ===========================================================================
// Shared error text

void SetLastError(PersistShared* ps, const std::string& msg) {
  ps->error_seq.fetch_add(1, std::memory_order_acq_rel);  // odd: writing
  const size_t n = std::min(msg.size(), sizeof(ps->last_error) - 1);
  for (size_t i = 0; i < n; ++i) __atomic_store_n(&ps->last_error[i], msg[i], __ATOMIC_RELAXED);
  __atomic_store_n(&ps->last_error[n], '\0', __ATOMIC_RELAXED);
  ps->last_error_ms.store(WallMs(), std::memory_order_relaxed);
  ps->error_seq.fetch_add(1, std::memory_order_acq_rel);
}

std::string LastError(const PersistShared* ps, uint64_t* at_ms) {
  for (int tries = 0; tries < 100; ++tries) {
    const uint64_t s0 = ps->error_seq.load(std::memory_order_acquire);
    if (s0 & 1) continue;
    std::string out;
    for (size_t i = 0; i < sizeof(ps->last_error); ++i) {
      const char c = __atomic_load_n(&ps->last_error[i], __ATOMIC_RELAXED);
      if (!c) break;
      out.push_back(c);
    }
    if (at_ms) *at_ms = ps->last_error_ms.load(std::memory_order_relaxed);
    if (ps->error_seq.load(std::memory_order_acquire) == s0) return out;
  }
  return "(being updated)";
}

std::string LogFileName(uint64_t epoch, uint64_t gen, uint64_t file_id) {
  char b[96];
  snprintf(b, sizeof b, "log-%06" PRIu64 "-%06" PRIu64 "-%06" PRIu64 ".aof", epoch, gen, file_id);
  return b;
}

std::string SnapshotFileName(uint64_t epoch, uint64_t gen) {
  char b[96];
  snprintf(b, sizeof b, "snapshot-%06" PRIu64 "-%06" PRIu64 ".pfs", epoch, gen);
  return b;
}

// ===========================================================================
// Load

namespace {

struct LogFile {
  LogName name;
  LogHeader hdr;
  Mapped map;
};

// Cuts a file at `keep` bytes, saving what is cut beside it for inspection.
void CutTail(const std::string& dir, const std::string& name, std::string_view data, size_t keep,
             const std::string& why, LoadStats* st) {
  const size_t drop = data.size() - keep;
  const std::string path = dir + "/" + name;
  const std::string saved = path + ".tail-" + std::to_string(WallMs());
  int err = 0;
  const int fd = open(saved.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || !WriteAll(fd, data.data() + keep, drop, &err) || fsync(fd) != 0)
    spdlog::warn("persistence: cannot save the cut tail to {}: {}", saved, Errno(fd < 0 ? errno : err));
  if (fd >= 0) close(fd);
  if (truncate(path.c_str(), static_cast<off_t>(keep)) != 0)
    spdlog::error("persistence: cannot truncate {}: {}", path, Errno(errno));
  spdlog::warn("persistence: {}: {} at offset {}: dropped the last {} bytes (saved as {}), as "
               "Redis' aof-load-truncated does",
               name, why, keep, drop, saved);
  st->dropped_bytes += drop;
}

// One log entry in the merge: where it is and which record it belongs to.
struct Ref {
  uint64_t seq;
  uint32_t rec;   // index into recs
  uint32_t ent;   // index into ents
};

struct RecInfo {
  uint32_t first, count;  // entries [first, first+count) of ents
  uint32_t shards;        // distinct shards among its uncovered entries
  uint32_t arrived = 0;   // merge: heads waiting on it
};

// Replays the logs of one epoch (same shard count and hash key) in shard
// sequence order; a record spanning shards is applied when it is at the head
// of all of them (it held their locks at once, so that point exists).
bool ReplayEpoch(std::vector<LogFile*>& files, const SnapHeader* snap, kv::Store* store,
                 uint64_t now_ms, LoadStats* st, const std::string& dir, std::string* why) {
  const LogHeader& h0 = files.front()->hdr;
  for (LogFile* f : files) {
    if (f->hdr.shard_count != h0.shard_count || f->hdr.k0 != h0.k0 || f->hdr.k1 != h0.k1) {
      *why = "log files of run " + std::to_string(h0.epoch) + " disagree on the shard layout (" +
             f->name.name + ")";
      return false;
    }
  }
  const uint32_t nshards = h0.shard_count;
  const bool same_run = snap && snap->epoch == h0.epoch;
  if (same_run && snap->shard_count != nshards) {
    *why = "the snapshot and the logs of run " + std::to_string(h0.epoch) + " disagree on the shard count";
    return false;
  }
  std::vector<Entry> ents;
  std::vector<RecInfo> recs;
  std::vector<std::vector<Ref>> streams(nshards);
  std::vector<Entry> tmp;
  std::vector<uint32_t> seen;
  for (LogFile* f : files) {
    const std::string_view data = f->map.view();
    size_t pos = kLogHeaderBytes;
    for (;;) {
      std::string_view body;
      std::string e;
      const size_t at = pos;
      const Next n = NextRecord(data, &pos, &body, &e);
      if (n == Next::kEnd) break;
      if (n == Next::kRecord && !DecodeEntries(body, &tmp, &e)) {
        e = "malformed record: " + e;
        pos = at;
      } else if (n == Next::kRecord) {
        bool bad = false;
        for (const Entry& x : tmp) bad |= x.shard >= nshards;
        if (!bad) {
          RecInfo ri{static_cast<uint32_t>(ents.size()), 0, 0};
          seen.clear();
          for (const Entry& x : tmp) {
            if (same_run && x.seq <= snap->watermarks[x.shard]) {
              st->skipped_entries++;
              continue;
            }
            streams[x.shard].push_back({x.seq, static_cast<uint32_t>(recs.size()),
                                        static_cast<uint32_t>(ents.size())});
            ents.push_back(x);
            ri.count++;
            if (std::find(seen.begin(), seen.end(), x.shard) == seen.end()) seen.push_back(x.shard);
          }
          ri.shards = static_cast<uint32_t>(seen.size());
          if (ri.count) recs.push_back(ri);
          continue;
        }
        e = "entry for shard out of range";
        pos = at;
      }
      CutTail(dir, f->name.name, data, at, e, st);
      break;
    }
  }
  for (auto& s : streams)
    std::sort(s.begin(), s.end(), [](const Ref& a, const Ref& b) { return a.seq < b.seq; });

  auto apply = [&](const Entry& e) -> bool {
    switch (e.op) {
      case Op::kPut: return ApplyPut(store, e.key, e.value, e.expire_at, now_ms, st, why);
      case Op::kDel: store->Del(e.key, now_ms); return true;
      case Op::kClear: {
        const uint32_t s = e.shard;
        store->RemoveIf([&](std::string_view k) {
          return kv::Store::ShardOfWith(h0.k0, h0.k1, nshards, k) == s;
        });
        return true;
      }
    }
    return true;
  };
  std::vector<size_t> pos(nshards, 0);
  std::vector<int64_t> waiting(nshards, -1);
  size_t left = ents.size();
  bool progress = true;
  while (left && progress) {
    progress = false;
    for (uint32_t s = 0; s < nshards; ++s) {
      while (pos[s] < streams[s].size()) {
        const Ref& r = streams[s][pos[s]];
        RecInfo& ri = recs[r.rec];
        if (ri.shards == 1) {
          if (!apply(ents[r.ent])) return false;
          pos[s]++;
          left--;
          if (pos[s] == streams[s].size() || streams[s][pos[s]].rec != r.rec) st->records++;
          progress = true;
          continue;
        }
        if (waiting[s] != r.rec) {
          waiting[s] = r.rec;
          ri.arrived++;
        }
        if (ri.arrived < ri.shards) break;
        // At the head of every shard it spans: apply it whole.
        bool clears_all = true;
        uint32_t clears = 0;
        for (uint32_t i = ri.first; i < ri.first + ri.count; ++i) {
          clears_all &= ents[i].op == Op::kClear;
          clears += ents[i].op == Op::kClear;
        }
        if (clears_all && clears == nshards) {
          store->FlushAll();
        } else {
          for (uint32_t i = ri.first; i < ri.first + ri.count; ++i)
            if (!apply(ents[i])) return false;
        }
        for (uint32_t i = ri.first; i < ri.first + ri.count; ++i) {
          pos[ents[i].shard]++;
          waiting[ents[i].shard] = -1;
        }
        left -= ri.count;
        st->records++;
        progress = true;
      }
    }
  }
  if (left) {
    // Cannot happen with logs written by preforkd; keep going in shard order.
    spdlog::error("persistence: run {}: {} log entries could not be ordered across shards; "
                  "applying them shard by shard", h0.epoch, left);
    for (uint32_t s = 0; s < nshards; ++s)
      for (; pos[s] < streams[s].size(); ++pos[s])
        if (!apply(ents[streams[s][pos[s]].ent])) return false;
  }
  return true;
}

bool LoadSnapshot(const std::string& dir, const SnapName& sn, kv::Store* store, uint64_t now_ms,
                  SnapHeader* hdr, LoadStats* st, std::string* why) {
  Mapped m;
  const std::string path = dir + "/" + sn.name;
  if (!m.Open(path, why)) return false;
  const std::string_view d = m.view();
  size_t pos = 0;
  std::string e;
  if (!DecodeSnapHeader(d, hdr, &pos, &e)) {
    *why = path + ": " + e;
    return false;
  }
  std::vector<Item> items;
  uint64_t n = 0;
  for (;;) {
    std::string_view body;
    const size_t at = pos;
    const Next nx = NextRecord(d, &pos, &body, &e);
    if (nx != Next::kRecord) {
      *why = path + ": " + (nx == Next::kEnd ? std::string("no end marker (incomplete)") : e) +
             " at offset " + std::to_string(at);
      return false;
    }
    bool end = false;
    uint64_t count = 0;
    if (!DecodeBlock(body, &items, &end, &count, &e)) {
      *why = path + ": " + e + " at offset " + std::to_string(at);
      return false;
    }
    if (end) {
      if (count != n) {
        *why = path + ": end marker says " + std::to_string(count) + " items, found " + std::to_string(n);
        return false;
      }
      break;
    }
    for (const Item& it : items) {
      if (!ApplyPut(store, it.key, it.value, it.expire_at, now_ms, st, why)) return false;
      n++;
    }
  }
  st->snapshot = sn.name;
  st->snapshot_items = n;
  return true;
}

}  // namespace

bool Load(const std::string& dir, kv::Store* store, uint64_t now_ms, LoadStats* st, std::string* why) {
  const uint64_t t0 = MonoMs();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    *why = "cannot create " + dir + ": " + ec.message();
    return false;
  }
  std::vector<std::string> names;
  if (!ListDir(dir, &names, why)) return false;
  std::vector<SnapName> snaps;
  std::vector<LogName> logs;
  for (const std::string& n : names) {
    SnapName s;
    LogName l;
    if (ParseSnapName(n, &s)) snaps.push_back(s);
    else if (ParseLogName(n, &l)) logs.push_back(l);
    else if (n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0)
      unlink((dir + "/" + n).c_str());  // an unfinished snapshot
  }
  std::sort(snaps.begin(), snaps.end(), [](const SnapName& a, const SnapName& b) {
    return std::tie(a.epoch, a.gen) > std::tie(b.epoch, b.gen);
  });
  SnapHeader snap;
  const SnapHeader* base = nullptr;
  if (!snaps.empty()) {
    // Only the newest one: the logs it covers may be gone, so an older
    // snapshot would silently lose data. A damaged one stops the start.
    if (!LoadSnapshot(dir, snaps.front(), store, now_ms, &snap, st, why)) {
      *why += "; the snapshot is damaged: move it out of " + dir +
              " to start from what remains (the data only it held is lost)";
      return false;
    }
    base = &snap;
    st->max_epoch = snap.epoch;
  }
  std::vector<LogFile> files;
  files.reserve(logs.size());
  for (const LogName& l : logs) {
    st->max_epoch = std::max(st->max_epoch, l.epoch);
    if (base && (l.epoch < base->epoch || (l.epoch == base->epoch && l.gen <= base->gen))) continue;
    LogFile f;
    f.name = l;
    const std::string path = dir + "/" + l.name;
    if (!f.map.Open(path, why)) return false;
    std::string e;
    if (!DecodeLogHeader(f.map.view(), &f.hdr, &e)) {
      if (f.map.view().size() < kLogHeaderBytes) {
        // Created just before a crash: holds no record.
        spdlog::warn("persistence: {}: {}; removing it", l.name, e);
        unlink(path.c_str());
      } else {
        const std::string aside = path + ".bad";
        rename(path.c_str(), aside.c_str());
        spdlog::error("persistence: {}: {}; moved aside as {} (its records are not loaded)",
                      l.name, e, aside);
        st->dropped_bytes += f.map.view().size();
      }
      continue;
    }
    files.push_back(std::move(f));
  }
  std::sort(files.begin(), files.end(), [](const LogFile& a, const LogFile& b) {
    return std::tie(a.hdr.epoch, a.hdr.gen, a.hdr.file_id) < std::tie(b.hdr.epoch, b.hdr.gen, b.hdr.file_id);
  });
  st->log_files = files.size();
  for (size_t i = 0; i < files.size();) {
    std::vector<LogFile*> run;
    size_t j = i;
    for (; j < files.size() && files[j].hdr.epoch == files[i].hdr.epoch; ++j) run.push_back(&files[j]);
    if (!ReplayEpoch(run, base, store, now_ms, st, dir, why)) return false;
    i = j;
  }
  st->keys = store->DbSize();
  st->ms = MonoMs() - t0;
  return true;
}

// ===========================================================================
// Snapshots

SnapshotResult WriteSnapshot(const std::string& dir, kv::Store* store, PersistShared* ps,
                             uint64_t now_ms) {
  SnapshotResult r;
  r.epoch = ps->epoch.load();
  // Every log entry stamped with a generation <= r.gen was made before the
  // walk below locks its shard (persist.h), so the walk holds it.
  r.gen = ps->gen.fetch_add(1, std::memory_order_seq_cst);
  const std::string final_name = SnapshotFileName(r.epoch, r.gen);
  const std::string tmp = dir + "/" + final_name + ".tmp";
  r.path = dir + "/" + final_name;
  const uint32_t n = store->shard_count();
  auto [k0, k1] = store->HashSeed();
  int err = 0;
  for (int attempt = 0; attempt < 5; ++attempt) {
    const uint64_t flushes = store->Flushes();
    const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      r.error = "cannot create " + tmp + ": " + Errno(errno);
      return r;
    }
    SnapHeader h;
    h.shard_count = n;
    h.epoch = r.epoch;
    h.gen = r.gen;
    h.created_ms = now_ms;
    h.k0 = k0;
    h.k1 = k1;
    h.watermarks.resize(n);
    std::string buf(SnapHeaderBytes(n), '\0');  // the header is written last, in place
    uint64_t items = 0, bytes = 0;
    bool ok = true;
    for (uint32_t s = 0; s < n && ok; ++s) {
      const size_t start = buf.size();
      BeginItemsBlock(&buf);
      h.watermarks[s] = store->ExportShard(s, now_ms, [&](std::string_view k, std::string_view v, int64_t x) {
        AppendItem(&buf, k, v, x);
        items++;
      });
      EndBlock(&buf, start);
      if (buf.size() >= (4u << 20) || s + 1 == n) {
        ok = WriteAll(fd, buf.data(), buf.size(), &err);
        bytes += buf.size();
        buf.clear();
      }
    }
    if (ok && store->Flushes() != flushes) {
      // A FLUSHALL ran during the walk: some shards were copied before it
      // and some after, which no single log position describes. Walk again.
      close(fd);
      continue;
    }
    if (ok) {
      const std::string end = EndMarkerBlock(items);
      ok = WriteAll(fd, end.data(), end.size(), &err);
      bytes += end.size();
    }
    if (ok) {
      const std::string hdr = EncodeSnapHeader(h);
      ok = pwrite(fd, hdr.data(), hdr.size(), 0) == static_cast<ssize_t>(hdr.size());
      if (!ok) err = errno;
    }
    if (ok && fsync(fd) != 0) {
      ok = false;
      err = errno;
    }
    if (close(fd) != 0 && ok) {
      ok = false;
      err = errno;
    }
    if (ok && rename(tmp.c_str(), r.path.c_str()) != 0) {
      ok = false;
      err = errno;
    }
    if (ok && !FsyncDir(dir, &err)) ok = false;
    if (!ok) {
      unlink(tmp.c_str());
      r.error = "writing " + r.path + ": " + Errno(err);
      return r;
    }
    r.ok = true;
    r.keys = items;
    r.bytes = bytes;
    return r;
  }
  unlink(tmp.c_str());
  r.error = "FLUSHALL ran during every one of 5 walks; try again";
  return r;
}

int RemoveCovered(const std::string& dir, uint64_t epoch, uint64_t gen) {
  std::vector<std::string> names;
  std::string why;
  if (!ListDir(dir, &names, &why)) {
    spdlog::warn("persistence: {}", why);
    return 0;
  }
  int removed = 0;
  for (const std::string& n : names) {
    LogName l;
    SnapName s;
    bool covered = false;
    if (ParseLogName(n, &l)) covered = l.epoch < epoch || (l.epoch == epoch && l.gen <= gen);
    else if (ParseSnapName(n, &s)) covered = s.epoch < epoch || (s.epoch == epoch && s.gen < gen);
    if (covered && unlink((dir + "/" + n).c_str()) == 0) removed++;
  }
  return removed;
}

void WriteStatus(const std::string& dir, const std::string& line) {
  const std::string path = dir + "/" + kStatusFile, tmp = path + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  int err = 0;
  const std::string s = line + "\n";
  const bool ok = WriteAll(fd, s.data(), s.size(), &err);
  close(fd);
  if (ok) rename(tmp.c_str(), path.c_str());
  else unlink(tmp.c_str());
}

// ===========================================================================
// LogWriter

LogWriter::LogWriter(const PersistenceConf& conf, PersistShared* ps, const kv::Store* store)
    : policy_(conf.fsync), dir_(conf.dir), ps_(ps), shard_count_(store->shard_count()) {
  auto [a, b] = store->HashSeed();
  k0_ = a;
  k1_ = b;
}

LogWriter::~LogWriter() {
  Shutdown();
  if (dir_fd_ >= 0) close(dir_fd_);
  if (notify_fd_ >= 0) close(notify_fd_);
}

bool LogWriter::Start(std::string* why) {
  dir_fd_ = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd_ < 0) {
    *why = "cannot open " + dir_ + ": " + Errno(errno);
    return false;
  }
  notify_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (notify_fd_ < 0) {
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
  if (rb_.empty()) rb_.Abort();
  else rb_.End();
  appended_ = written_ + (pending_.size() - pending_off_);
}

bool LogWriter::OpenFile(uint64_t gen) {
  if (fd_ >= 0) {
    if (thread_.joinable()) {
      std::lock_guard lk(mu_);
      files_.back().end = written_;  // the fsync thread syncs and closes it
    } else {
      close(fd_);
    }
    fd_ = -1;
  }
  const uint64_t id = ps_->next_file_id.fetch_add(1);
  const std::string name = LogFileName(ps_->epoch.load(), gen, id);
  const int fd = openat(dir_fd_, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
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
  if (!WriteAll(fd, hdr.data(), hdr.size(), &err)) {
    close(fd);
    unlinkat(dir_fd_, name.c_str(), 0);
    Fail("cannot write the header of " + dir_ + "/" + name, err);
    return false;
  }
  fd_ = fd;
  file_gen_ = gen;
  if (thread_.joinable()) {
    std::lock_guard lk(mu_);
    files_.push_back(File{fd, UINT64_MAX, true});
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
  if (sync_failed_ && ps_->last_snapshot_gen.load() >= poisoned_gen_ && file_gen_ > poisoned_gen_) {
    sync_failed_ = false;  // a snapshot holds what the failed file may have lost
    spdlog::warn("persistence: a snapshot covers the log whose fsync failed; writes are accepted again");
  }
  while (pending_off_ < pending_.size()) {
    uint64_t g = file_gen_;
    size_t seg_end = pending_.size();
    for (const auto& [off, gg] : gen_marks_) {
      if (off <= pending_off_) g = gg;
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

void LogWriter::DrainNotify() {
  uint64_t v;
  while (read(notify_fd_, &v, sizeof v) > 0) {
  }
  std::string err;
  {
    std::lock_guard lk(mu_);
    if (thread_errors_ == thread_errors_seen_) return;
    thread_errors_seen_ = thread_errors_;
    err = thread_error_;
    // The failed file is suspect: new records go to a new file.
    if (fd_ >= 0 && !files_.empty() && files_.back().fd == fd_) {
      files_.back().end = written_;
      files_.back().drop = true;
    }
  }
  fd_ = -1;
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
  for (;;) {
    for (auto it = files_.begin(); it != files_.end();) {
      if (!it->drop) {
        ++it;
        continue;
      }
      close(it->fd);
      it = files_.erase(it);
    }
    if (policy_ == FsyncPolicy::kAlways)
      cv_.wait(lk, [&] { return stop_ || want_ > synced_.load(); });
    else
      cv_.wait_for(lk, std::chrono::seconds(1), [&] { return stop_; });
    const uint64_t target = policy_ == FsyncPolicy::kAlways ? want_ : written_pub_.load();
    if (target > synced_.load() && !files_.empty()) {
      std::vector<File> todo(files_.begin(), files_.end());
      const bool dir_sync = std::any_of(todo.begin(), todo.end(), [](const File& f) { return f.dir_sync; });
      lk.unlock();
      int err = 0;
      std::string what;
      if (dir_sync && fsync(dir_fd_) != 0) {
        err = errno;
        what = "fsync of " + dir_;
      }
      for (const File& f : todo) {
        if (err) break;
        if (fdatasync(f.fd) != 0) {
          err = errno;
          what = "fdatasync of a log in " + dir_;
        }
      }
      lk.lock();
      if (err) {
        thread_error_ = what + ": " + Errno(err);
        thread_errors_++;
        // Drop the files that failed and were finished; the loop hands the
        // current one over (DrainNotify) and writes to a new one.
        while (!files_.empty() && files_.front().end != UINT64_MAX) {
          close(files_.front().fd);
          files_.pop_front();
        }
      } else {
        for (File& f : files_)
          for (const File& t : todo)
            if (t.fd == f.fd) f.dir_sync = false;
        while (!files_.empty() && files_.front().end != UINT64_MAX && files_.front().end <= target) {
          close(files_.front().fd);
          files_.pop_front();
        }
        synced_.store(target, std::memory_order_release);
      }
      const uint64_t one = 1;
      (void)!write(notify_fd_, &one, sizeof one);
    } else {
      // Nothing new to sync: close files that ended at or before synced.
      while (!files_.empty() && files_.front().end != UINT64_MAX && files_.front().end <= synced_.load()) {
        close(files_.front().fd);
        files_.pop_front();
      }
    }
    if (stop_ && (policy_ != FsyncPolicy::kAlways || want_ <= synced_.load() || files_.empty() ||
                  thread_errors_ != thread_errors_seen_))
      break;
  }
  for (const File& f : files_) close(f.fd);
  files_.clear();
}

void LogWriter::Shutdown() {
  if (dir_fd_ < 0) return;
  if (has_pending()) Flush();
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
    close(fd_);
    fd_ = -1;
  }
}

}  // namespace pf::persist
