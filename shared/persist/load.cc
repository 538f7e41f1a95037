// shared/persist/load.cc: start-up (persist.h Load): the newest snapshot,
// then the logs past its watermarks, merged per shard by sequence; torn or
// corrupt tails are cut off and kept beside their file.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <tuple>

#include "shared/persist/files.h"
#include "shared/persist/format.h"
#include "shared/persist/persist.h"
#include "shared/util/clock.h"
#include "shared/util/unique_fd.h"

namespace pf::persist {
namespace {

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

// One log entry in the merge: where it is and which record it belongs to.
struct Ref {
  uint64_t seq;
  uint32_t rec;  // index into recs
  uint32_t ent;  // index into ents
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
    *why = "the snapshot and the logs of run " + std::to_string(h0.epoch) +
           " disagree on the shard count";
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
            streams[x.shard].push_back(
                {x.seq, static_cast<uint32_t>(recs.size()), static_cast<uint32_t>(ents.size())});
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
      case Op::kPut:
        return ApplyPut(store, e.key, e.value, e.expire_at, now_ms, st, why);
      case Op::kDel:
        store->Del(e.key, now_ms);
        return true;
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
    spdlog::error(
        "persistence: run {}: {} log entries could not be ordered across shards; "
        "applying them shard by shard",
        h0.epoch, left);
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
          std::string* why) {
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
    if (!ReplayEpoch(run, base, store, now_ms, st, dir, why)) return false;
    i = j;
  }
  st->keys = store->DbSize();
  st->ms = MonoMs() - t0;
  return true;
}

}  // namespace pf::persist
