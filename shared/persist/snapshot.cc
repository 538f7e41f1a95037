// shared/persist/snapshot.cc: snapshots (persist.h): the walk of the
// shards into a temp file made durable and renamed, and the clean-up of
// what a durable snapshot covers.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "shared/persist/files.h"
#include "shared/persist/format.h"
#include "shared/persist/persist.h"
#include "shared/util/unique_fd.h"

namespace pf::persist {

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
    UniqueFd fd(CreateFresh(tmp));
    if (!fd) {
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
      h.watermarks[s] =
          store->ExportShard(s, now_ms, [&](std::string_view k, std::string_view v, int64_t x) {
            AppendItem(&buf, k, v, x);
            items++;
          });
      EndBlock(&buf, start);
      if (buf.size() >= (4u << 20) || s + 1 == n) {
        ok = WriteAll(fd.get(), buf.data(), buf.size(), &err);
        bytes += buf.size();
        buf.clear();
      }
    }
    if (ok && store->Flushes() != flushes) {
      // A FLUSHALL ran during the walk: some shards were copied before it
      // and some after, which no single log position describes. Walk again.
      continue;
    }
    if (ok) {
      const std::string end = EndMarkerBlock(items);
      ok = WriteAll(fd.get(), end.data(), end.size(), &err);
      bytes += end.size();
    }
    if (ok) {
      const std::string hdr = EncodeSnapHeader(h);
      ok = pwrite(fd.get(), hdr.data(), hdr.size(), 0) == static_cast<ssize_t>(hdr.size());
      if (!ok) err = errno;
    }
    if (ok && fsync(fd.get()) != 0) {
      ok = false;
      err = errno;
    }
    // close(2) reports errors of the last writes on some filesystems.
    if (close(fd.Release()) != 0 && ok) {
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
    if (ParseLogName(n, &l))
      covered = l.epoch < epoch || (l.epoch == epoch && l.gen <= gen);
    else if (ParseSnapName(n, &s))
      covered = s.epoch < epoch || (s.epoch == epoch && s.gen < gen);
    if (covered && unlink((dir + "/" + n).c_str()) == 0) removed++;
  }
  return removed;
}

void RemoveTemporary(const std::string& dir) {
  std::vector<std::string> names;
  std::string why;
  if (!ListDir(dir, &names, &why)) return;
  for (const std::string& n : names)
    if (n.rfind("snapshot-", 0) == 0 && n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0)
      unlink((dir + "/" + n).c_str());
}

void WriteStatus(const std::string& dir, const std::string& line) {
  const std::string path = dir + "/" + kStatusFile, tmp = path + ".tmp";
  bool ok;
  {
    const UniqueFd fd(CreateFresh(tmp));
    if (!fd) return;
    int err = 0;
    const std::string s = line + "\n";
    ok = WriteAll(fd.get(), s.data(), s.size(), &err);
  }
  if (ok)
    rename(tmp.c_str(), path.c_str());
  else
    unlink(tmp.c_str());
}

}  // namespace pf::persist
