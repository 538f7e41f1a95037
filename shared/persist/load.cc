// shared/persist/load.cc: start-up (persist.h Load): the newest snapshot,
// then the logs past its watermarks, merged per shard by sequence; torn or
// corrupt tails are cut off and kept beside their file.
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <system_error>
#include <thread>
#include <tuple>

#include "shared/persist/files.h"
#include "shared/persist/format.h"
#include "shared/persist/persist.h"
#include "shared/util/clock.h"
#include "shared/util/unique_fd.h"

namespace pf::persist {
namespace {

// Fewer log entries than this replay on one thread; more on up to this many.
constexpr uint64_t kParallelReplayMin = 50000;
constexpr unsigned kMaxReplayThreads = 4;

// Applies one key's state as the log or snapshot recorded it.
bool ApplyPut(kv::Store* store, std::string_view key, std::string_view value, int64_t expire_at,
              uint64_t now_ms, LoadStats* st, std::string* why) {
  if (expire_at >= 0 && static_cast<uint64_t>(expire_at) < now_ms) {  // as the engine's Expired()
    store->Del(key, now_ms);  // expired since: it stays gone
    st->expired++;
    return true;
  }
  kv::SetOptions o;
  o.expire_at_ms = expire_at;
  const kv::Status s = store->Set(key, value, o, now_ms);
  if (s == kv::Status::kOk) return true;
  *why = s == kv::Status::kTooLarge
             ? "a stored key or value is larger than kv.max_key_bytes / kv.max_value_bytes allow "
               "now (" +
                   std::to_string(key.size()) + "-byte key, " + std::to_string(value.size()) +
                   "-byte value): raise them to load the data"
             : "the store is full while loading (" + std::to_string(store->DbSize()) +
                   " keys so far): raise shared_memory to load the data";
  return false;
}

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
  const UniqueFd fd(CreateFresh(saved));
  int err = fd ? 0 : errno;
  if (!err) WriteAll(fd.get(), data.data() + keep, drop, &err);
  if (!err && fsync(fd.get()) != 0) err = errno;
  if (err) spdlog::warn("persistence: cannot save the cut tail to {}: {}", saved, Errno(err));
  // Through a descriptor opened without following links: the folder may
  // belong to the worker user, the master runs as root.
  const UniqueFd cut(open(path.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!cut || ftruncate(cut.get(), static_cast<off_t>(keep)) != 0)
    spdlog::error("persistence: cannot truncate {}: {}", path, Errno(errno));
  spdlog::warn(
      "persistence: {}: {} at offset {}: dropped the last {} bytes (saved as {}), as "
      "Redis' aof-load-truncated does",
      name, why, keep, drop, saved);
  st->dropped_bytes += drop;
}

// One log entry of a shard's stream: its sequence number and where it is
// (decoded again when applied: the streams stay small).
struct Ref {
  uint64_t seq;
  uint64_t off;      // of the entry in its file
  uint32_t file;     // index into the run's files
  uint32_t barrier;  // > 0: an entry of the barrier-th FLUSHALL record (every shard cleared)
};

// Runs fn(0) .. fn(n-1), fn(0) on this thread, and joins them all: no thread
// outlives the call (the master forks after Load). The threads block every
// signal: the master's handlers stay on the master's thread. An exception
// of any is rethrown here.
void RunOnThreads(unsigned n, const std::function<void(unsigned)>& fn) {
  std::vector<std::exception_ptr> errs(n);
  auto guarded = [&](unsigned t) {
    try {
      fn(t);
    } catch (...) {
      errs[t] = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  unsigned started = 1;
  if (n > 1) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pool.reserve(n - 1);
    try {
      for (; started < n; ++started) pool.emplace_back(guarded, started);
    } catch (const std::system_error& e) {
      spdlog::warn("persistence: cannot start a replay thread ({}): one does its work", e.what());
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }
  for (unsigned t = started; t < n; ++t) guarded(t);  // the streams are independent
  guarded(0);
  for (std::thread& th : pool) th.join();
  for (const std::exception_ptr& e : errs)
    if (e) std::rethrow_exception(e);
}

// Replay threads for `entries` log entries over `nshards` streams.
unsigned ReplayThreads(unsigned asked, uint64_t entries, uint32_t nshards) {
  unsigned n = asked;
  if (n == 0) {
    if (entries < kParallelReplayMin) return 1;  // a thread costs more than it saves
    cpu_set_t cpus;
    const int usable = sched_getaffinity(0, sizeof cpus, &cpus) == 0
                           ? CPU_COUNT(&cpus)
                           : static_cast<int>(std::thread::hardware_concurrency());
    n = std::min(static_cast<unsigned>(std::max(usable, 1)), kMaxReplayThreads);
  }
  return std::max(1u, std::min<unsigned>(n, nshards));
}

// Replays the logs of one epoch (same shard count and hash key) in shard
// sequence order.
//
// Every entry names the shard its key was in, and a shard's entries carry
// its sequence, stamped under its lock; a key's writes are all in its
// shard's stream, in order. So the shards' streams are independent: each is
// applied in sequence order on its own, and disjoint sets of streams go to
// up to kMaxReplayThreads threads (the store's own shard locks, and the
// large-object area's lock, keep their writes apart). A record over several
// shards (MSET) ends in the same state applied stream by stream as applied
// whole, as the end state of each key is its stream's last write. The one
// exception is a FLUSHALL (a record clearing every shard): it also removes
// keys that came from the snapshot or older runs, so it is a barrier: every
// stream is applied up to it, then the store is flushed once, then the
// streams go on. A record clearing only some shards (a FLUSHALL a snapshot
// partly covers) removes that shard's keys where it stands in its stream.
bool ReplayEpoch(std::vector<LogFile*>& files, const SnapHeader* snap, kv::Store* store,
                 uint64_t now_ms, unsigned threads, LoadStats* st, const std::string& dir,
                 std::string* why) {
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
    *why = "the snapshot and the logs of run " + std::to_string(h0.epoch) +
           " disagree on the shard count";
    return false;
  }
  auto covered = [&](const Entry& x) { return same_run && x.seq <= snap->watermarks[x.shard]; };
  std::vector<uint32_t> seen;
  auto is_flushall = [&](const std::vector<Entry>& es) {
    if (es.size() < nshards) return false;
    seen.clear();
    for (const Entry& x : es) {
      if (covered(x)) continue;
      if (x.op != Op::kClear || std::find(seen.begin(), seen.end(), x.shard) != seen.end())
        return false;
      seen.push_back(x.shard);
    }
    return seen.size() == nshards;
  };

  // Pass 1: check every record (length, checksum, entries), cut torn or
  // corrupt tails, count each shard's entries.
  std::vector<uint64_t> per_shard(nshards, 0);
  std::vector<size_t> valid(files.size());
  std::vector<Entry> tmp;
  uint64_t total = 0;
  for (size_t fi = 0; fi < files.size(); ++fi) {
    LogFile* f = files[fi];
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
          uint64_t live = 0;
          for (const Entry& x : tmp) {
            if (covered(x)) {
              st->skipped_entries++;
              continue;
            }
            per_shard[x.shard]++;
            live++;
          }
          total += live;
          st->records += live > 0;
          continue;
        }
        e = "entry for shard out of range";
        pos = at;
      }
      CutTail(dir, f->name.name, data, at, e, st);
      break;
    }
    valid[fi] = pos;
  }

  // Pass 2: each shard's stream, sized from pass 1 (no regrowth copies).
  std::vector<std::vector<Ref>> streams(nshards);
  for (uint32_t s = 0; s < nshards; ++s) streams[s].reserve(per_shard[s]);
  std::vector<size_t> offs;
  uint32_t barriers = 0;
  for (size_t fi = 0; fi < files.size(); ++fi) {
    const std::string_view data = files[fi]->map.view();
    for (size_t pos = kLogHeaderBytes; pos < valid[fi];) {
      uint32_t len;
      std::memcpy(&len, data.data() + pos, sizeof len);  // checked in pass 1 (little-endian)
      const size_t body_at = pos + kRecordHeaderBytes;
      const std::string_view body = data.substr(body_at, len);
      pos = body_at + len;
      tmp.clear();
      offs.clear();
      std::string e;
      for (size_t p = 0; p < body.size();) {
        offs.push_back(body_at + p);
        tmp.emplace_back();
        if (!DecodeEntry(body, &p, &tmp.back(), &e)) {
          *why = files[fi]->name.name + ": " + e + " (changed while loading?)";
          return false;
        }
      }
      const uint32_t b = is_flushall(tmp) ? ++barriers : 0;
      for (size_t i = 0; i < tmp.size(); ++i)
        if (!covered(tmp[i]))
          streams[tmp[i].shard].push_back({tmp[i].seq, offs[i], static_cast<uint32_t>(fi), b});
    }
  }

  // Disjoint sets of shards, balanced by entries, one set a thread.
  const unsigned nt = ReplayThreads(threads, total, nshards);
  std::vector<std::vector<uint32_t>> mine(nt);
  {
    std::vector<uint32_t> order(nshards);
    for (uint32_t s = 0; s < nshards; ++s) order[s] = s;
    std::sort(order.begin(), order.end(),
              [&](uint32_t a, uint32_t b) { return per_shard[a] > per_shard[b]; });
    std::vector<uint64_t> load(nt, 0);
    for (uint32_t s : order) {
      const size_t t = std::min_element(load.begin(), load.end()) - load.begin();
      mine[t].push_back(s);
      load[t] += per_shard[s];
    }
  }
  st->replay_threads = std::max<uint64_t>(st->replay_threads, nt);
  auto by_seq = [](const Ref& a, const Ref& b) {
    return std::tie(a.seq, a.file, a.off) < std::tie(b.seq, b.file, b.off);
  };
  // The store's arena pages the replay is about to write, faulted in ahead
  // (the log bytes of a key are about the store bytes of its item).
  uint64_t log_bytes = 0;
  for (size_t fi = 0; fi < files.size(); ++fi) log_bytes += valid[fi] - kLogHeaderBytes;
  const uint32_t store_shards = store->shard_count();
  const uint64_t ahead = log_bytes / store_shards + log_bytes / store_shards / 4;
  RunOnThreads(nt, [&](unsigned t) {
    for (uint32_t i = t; i < store_shards && ahead; i += nt)
      if (!store->Prefault(i, ahead)) break;
    for (uint32_t s : mine[t])
      if (!std::is_sorted(streams[s].begin(), streams[s].end(), by_seq))
        std::sort(streams[s].begin(), streams[s].end(), by_seq);
  });

  // The FLUSHALLs in the order every stream saw them; each stream is cut
  // into barriers + 1 parts at them.
  std::vector<std::vector<size_t>> cuts(nshards);
  bool ordered = true;
  std::vector<uint32_t> order0;
  for (uint32_t s = 0; s < nshards && barriers; ++s) {
    std::vector<uint32_t> order;
    for (size_t i = 0; i < streams[s].size(); ++i)
      if (streams[s][i].barrier) {
        order.push_back(streams[s][i].barrier);
        cuts[s].push_back(i);
      }
    if (s == 0) order0 = order;
    ordered &= order == order0 && order.size() == barriers;
  }
  if (!ordered) {
    // Cannot happen with logs written by preforkd: each clear where it
    // stands in its own shard's stream.
    spdlog::error(
        "persistence: run {}: {} FLUSHALL records could not be ordered across shards; "
        "applying them shard by shard",
        h0.epoch, barriers);
    barriers = 0;
    for (auto& c : cuts) c.clear();
  }
  for (uint32_t s = 0; s < nshards; ++s) cuts[s].push_back(streams[s].size());

  std::vector<LoadStats> tst(nt);
  std::vector<std::string> twhy(nt);
  std::atomic<bool> failed{false};
  for (uint32_t part = 0; part <= barriers; ++part) {
    RunOnThreads(nt, [&](unsigned t) {
      for (uint32_t s : mine[t]) {
        const size_t from = part ? cuts[s][part - 1] + 1 : 0;
        for (size_t i = from; i < cuts[s][part]; ++i) {
          if (failed.load(std::memory_order_relaxed)) return;
          const Ref& r = streams[s][i];
          const std::string_view data = files[r.file]->map.view();
          size_t p = r.off;
          Entry x;
          std::string e;
          DecodeEntry(data, &p, &x, &e);  // checked in passes 1 and 2
          bool ok = true;
          switch (x.op) {
            case Op::kPut:
              ok = ApplyPut(store, x.key, x.value, x.expire_at, now_ms, &tst[t], &twhy[t]);
              break;
            case Op::kDel:
              store->Del(x.key, now_ms);
              break;
            case Op::kClear:  // a barrier's entries are applied by FlushAll below
              if (!ordered || !r.barrier)
                store->RemoveIf([&](std::string_view k) {
                  return kv::Store::ShardOfWith(h0.k0, h0.k1, nshards, k) == x.shard;
                });
              break;
          }
          if (!ok) {
            failed.store(true);
            return;
          }
        }
      }
    });
    for (unsigned t = 0; t < nt; ++t) {
      if (!twhy[t].empty()) {
        *why = twhy[t];
        return false;
      }
    }
    if (part < barriers) store->FlushAll();
  }
  for (const LoadStats& t : tst) st->expired += t.expired;
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
        *why = path + ": end marker says " + std::to_string(count) + " items, found " +
               std::to_string(n);
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

bool Load(const std::string& dir, kv::Store* store, uint64_t now_ms, LoadStats* st,
          std::string* why, const LoadOptions& opt) {
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
    if (ParseSnapName(n, &s))
      snaps.push_back(s);
    else if (ParseLogName(n, &l))
      logs.push_back(l);
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
        spdlog::error("persistence: {}: {}; moved aside as {} (its records are not loaded)", l.name,
                      e, aside);
        st->dropped_bytes += f.map.view().size();
      }
      continue;
    }
    files.push_back(std::move(f));
  }
  std::sort(files.begin(), files.end(), [](const LogFile& a, const LogFile& b) {
    return std::tie(a.hdr.epoch, a.hdr.gen, a.hdr.file_id) <
           std::tie(b.hdr.epoch, b.hdr.gen, b.hdr.file_id);
  });
  st->log_files = files.size();
  for (size_t i = 0; i < files.size();) {
    std::vector<LogFile*> run;
    size_t j = i;
    for (; j < files.size() && files[j].hdr.epoch == files[i].hdr.epoch; ++j)
      run.push_back(&files[j]);
    if (!ReplayEpoch(run, base, store, now_ms, opt.threads, st, dir, why)) return false;
    i = j;
  }
  st->keys = store->DbSize();
  st->ms = MonoMs() - t0;
  return true;
}

}  // namespace pf::persist
