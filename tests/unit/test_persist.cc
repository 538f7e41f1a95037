// tests/unit/test_persist.cc: persistence in one process: CRC-32C, the on-disk
// format (round trips, every truncation, bit flips), Load() of logs that
// LogWriter wrote through the engine API, snapshots, the fsync policies and
// failed fsyncs (this binary replaces fdatasync to inject them).
#include <errno.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "shared/kv/kv.h"
#include "shared/persist/crc32c.h"
#include "shared/persist/format.h"
#include "shared/persist/log_writer.h"
#include "shared/persist/persist.h"
#include "shared/shm.h"

// Fault injection: this binary's fdatasync takes the place of libc's for the
// persistence code linked into it. >0: fail that many calls with EIO (as
// Linux reports a writeback error once); -1: fail every call.
std::atomic<int> g_fail_fdatasync{0};
std::atomic<int> g_fdatasync_calls{0};
extern "C" int fdatasync(int fd) {
  g_fdatasync_calls.fetch_add(1);
  for (int f = g_fail_fdatasync.load(); f != 0;) {
    if (f < 0 || g_fail_fdatasync.compare_exchange_weak(f, f - 1)) {
      errno = EIO;
      return -1;
    }
  }
  return static_cast<int>(syscall(SYS_fdatasync, fd));
}

namespace pf::persist {
namespace {

namespace fs = std::filesystem;
using kv::Status;

constexpr uint64_t kNow = 1'700'000'000'000ull;  // unix ms every write and load uses unless told

// ---------------------------------------------------------------------------
// Helpers

// Bitwise CRC-32C: the reference the table and SSE4.2 paths must both match.
uint32_t ReferenceCrc32c(std::string_view s) {
  uint32_t c = ~0u;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
  }
  return ~c;
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

template <typename T>
void PutLe(std::string* s, size_t at, T v) {
  std::memcpy(s->data() + at, &v, sizeof v);
}

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "pf-persist-XXXXXX").string();
    if (mkdtemp(t.data())) path_ = t;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void WriteFile(const std::string& path, std::string_view data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// Names in `dir` that contain `part`, sorted.
std::vector<std::string> Names(const std::string& dir, const std::string& part = "") {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.find(part) != std::string::npos) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}
std::vector<std::string> LogNames(const std::string& dir) {
  std::vector<std::string> out;
  for (const std::string& n : Names(dir, "log-"))
    if (n.size() > 4 && n.compare(n.size() - 4, 4, ".aof") == 0) out.push_back(n);
  return out;
}

// A store formatted on an anonymous shared mapping, as the master does.
class StoreBox {
 public:
  StoreBox(uint32_t shards, uint64_t seed, size_t size = 4u << 20, uint64_t large_bytes = 0)
      : size_(size) {
    p_ = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p_ == MAP_FAILED) {
      p_ = nullptr;
      why_ = "mmap failed";
      return;
    }
    kv::Limits l;
    l.max_key_bytes = 256;
    l.max_value_bytes = 64 * 1024;
    store_ = kv::Store::Format(p_, size, shards, l, seed, &why_, large_bytes);
  }
  ~StoreBox() {
    if (p_) munmap(p_, size_);
  }
  StoreBox(const StoreBox&) = delete;
  StoreBox& operator=(const StoreBox&) = delete;
  kv::Store* get() const { return store_; }
  const std::string& why() const { return why_; }

 private:
  void* p_ = nullptr;
  size_t size_;
  kv::Store* store_ = nullptr;
  std::string why_;
};

struct Val {
  std::string value;
  int64_t expire_at = -1;
  bool operator==(const Val&) const = default;
};
void PrintTo(const Val& v, std::ostream* os) { *os << '"' << v.value << "\" ttl@" << v.expire_at; }
using Contents = std::map<std::string, Val>;

// Every live key with its value and expiry, read through the public API.
Contents Dump(kv::Store* s, uint64_t now) {
  std::vector<std::string> keys;
  uint64_t cur = 0;
  do {
    cur = s->Scan(cur, 1000, now, &keys);
  } while (cur != 0);
  Contents out;
  for (const std::string& k : keys) {
    Val v;
    if (s->Get(k, now, &v.value) != Status::kOk) continue;
    EXPECT_EQ(s->GetExpire(k, now, &v.expire_at), Status::kOk);
    out[k] = v;
  }
  return out;
}

// The process-wide journal for a scope (a "worker" logging its writes).
class JournalScope {
 public:
  explicit JournalScope(kv::Journal* j) { kv::SetJournal(j); }
  ~JournalScope() { kv::SetJournal(nullptr); }
  JournalScope(const JournalScope&) = delete;
  JournalScope& operator=(const JournalScope&) = delete;
};

std::unique_ptr<LogWriter> NewWriter(const std::string& dir, FsyncPolicy policy, PersistShared* ps,
                                     const kv::Store* store) {
  PersistenceConf c;
  c.enabled = true;
  c.dir = dir;
  c.fsync = policy;
  auto w = std::make_unique<LogWriter>(c, ps, store);
  std::string why;
  EXPECT_TRUE(w->Start(&why)) << why;
  return w;
}

struct Loaded {
  std::unique_ptr<StoreBox> box;
  LoadStats st;
  bool ok = false;
  std::string why;
  kv::Store* store() const { return box->get(); }
};
// Loads `dir` into a fresh store (another hash seed: a new run has its own).
// The journal is cleared first: replay must never be logged.
Loaded LoadFresh(const std::string& dir, uint32_t shards, uint64_t now = kNow, uint64_t seed = 99) {
  kv::SetJournal(nullptr);
  Loaded l;
  l.box = std::make_unique<StoreBox>(shards, seed);
  EXPECT_NE(l.box->get(), nullptr) << l.box->why();
  if (!l.box->get()) return l;
  l.ok = Load(dir, l.box->get(), now, &l.st, &l.why);
  return l;
}

// Loops that cut a file at every offset would log a warning each time.
class QuietLogs {
 public:
  QuietLogs() : old_(spdlog::default_logger()->level()) { spdlog::set_level(spdlog::level::err); }
  ~QuietLogs() { spdlog::set_level(old_); }
  QuietLogs(const QuietLogs&) = delete;
  QuietLogs& operator=(const QuietLogs&) = delete;

 private:
  spdlog::level::level_enum old_;
};

bool WaitFor(const std::function<bool()>& cond, int timeout_ms) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!cond()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// One random engine mutation over a small key space (so writes collide).
void RandomOp(kv::Store* s, std::mt19937& rng, int i, uint32_t flushall_per_mille = 5) {
  const std::string key = "key" + std::to_string(rng() % 30);
  const uint32_t op = rng() % 1000;
  if (op < flushall_per_mille) {
    s->FlushAll();
  } else if (op < 400) {
    kv::SetOptions o;
    if (rng() % 4 == 0) o.expire_at_ms = static_cast<int64_t>(kNow + 1000 + rng() % 100000);
    s->Set(key, "v" + std::to_string(i), o, kNow);
  } else if (op < 500) {
    s->Del(key, kNow);
  } else if (op < 600) {
    int64_t r;
    s->IncrBy("ctr" + std::to_string(rng() % 3), static_cast<int64_t>(rng() % 21) - 10, kNow, &r);
  } else if (op < 680) {
    const uint32_t how = rng() % 4;
    const int64_t at = how == 0   ? -1
                       : how == 1 ? static_cast<int64_t>(kNow) - 1
                                  : static_cast<int64_t>(kNow + 5000 + rng() % 1000);
    s->SetExpire(key, at, kNow);
  } else if (op < 850) {
    std::vector<std::string> ks, vs;
    for (int j = 0; j < 3; ++j) {
      ks.push_back("key" + std::to_string(rng() % 30));
      vs.push_back("m" + std::to_string(i) + "." + std::to_string(j));
    }
    std::vector<std::pair<std::string_view, std::string_view>> kvs;
    for (int j = 0; j < 3; ++j) kvs.emplace_back(ks[j], vs[j]);
    s->MSet(kvs, kNow);
  } else if (op < 870) {
    s->FlushPrefix("key1");  // key1, key10..key19
  } else {
    kv::SetOptions keep;
    keep.keep_ttl = true;
    s->Set(key, "kept" + std::to_string(i), keep, kNow);
  }
}

// ---------------------------------------------------------------------------
// CRC-32C

TEST(Crc32c, MatchesKnownVectors) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c(0, nullptr, 0), 0u);
  // RFC 3720 (iSCSI) B.4.
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string up(32, '\0'), down(32, '\0');
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<char>(i);
    down[i] = static_cast<char>(31 - i);
  }
  EXPECT_EQ(Crc32c(up), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(down), 0x113FDB5Cu);
}

TEST(Crc32c, IncrementalEqualsOneShotAtEverySplit) {
  const std::string s = RandomBytes(300, 1);
  const uint32_t one = Crc32c(s);
  for (size_t a = 0; a <= s.size(); ++a) {
    const uint32_t head = Crc32c(0, s.data(), a);
    ASSERT_EQ(Crc32c(head, s.data() + a, s.size() - a), one) << "split at " << a;
  }
  for (size_t a = 0; a <= 40; ++a)
    for (size_t b = a; b <= 40; ++b) {
      uint32_t c = Crc32c(0, s.data(), a);
      c = Crc32c(c, s.data() + a, b - a);
      ASSERT_EQ(Crc32c(c, s.data() + b, 40 - b), Crc32c(0, s.data(), 40)) << a << "," << b;
    }
}

TEST(Crc32c, MatchesBitwiseReferenceAtEveryLengthAndAlignment) {
  const std::string s = RandomBytes(200, 2);
  for (size_t off = 0; off < 9; ++off)
    for (size_t len = 0; len + off <= 170; ++len)
      ASSERT_EQ(Crc32c(0, s.data() + off, len),
                ReferenceCrc32c(std::string_view(s).substr(off, len)))
          << "offset " << off << " length " << len;
}

// ---------------------------------------------------------------------------
// Format: log header, records, entries

struct WantEntry {
  Op op;
  uint32_t shard;
  uint64_t seq;
  std::string key, value;
  int64_t expire_at;
};

void ExpectEntries(const std::vector<Entry>& got, const std::vector<WantEntry>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].op, want[i].op) << i;
    EXPECT_EQ(got[i].shard, want[i].shard) << i;
    EXPECT_EQ(got[i].seq, want[i].seq) << i;
    EXPECT_EQ(got[i].key, want[i].key) << i;
    if (want[i].op == Op::kPut) {
      EXPECT_EQ(got[i].value, want[i].value) << i;
      EXPECT_EQ(got[i].expire_at, want[i].expire_at) << i;
    }
  }
}

// A log file: header, then four records (one Put, one Del, two Puts with a
// binary key and a 1000-byte value, a FLUSHALL over four shards).
struct SampleLog {
  std::string bytes;
  std::vector<size_t> ends;                  // where each record ends
  std::vector<std::vector<WantEntry>> recs;  // what each holds
};
SampleLog MakeSampleLog() {
  SampleLog s;
  LogHeader h;
  h.shard_count = 4;
  h.epoch = 3;
  h.gen = 2;
  h.file_id = 9;
  h.k0 = 0x1111;
  h.k1 = 0x2222;
  s.bytes = EncodeLogHeader(h);
  const std::string bin("k\0e\xffy", 5);
  s.recs = {
      {{Op::kPut, 0, 1, "key", "value", -1}},
      {{Op::kDel, 1, 2, "gone", "", -1}},
      {{Op::kPut, 2, 3, bin, "", 12345}, {Op::kPut, 3, 4, "k2", std::string(1000, 'v'), -1}},
      {{Op::kClear, 0, 5, "", "", -1},
       {Op::kClear, 1, 6, "", "", -1},
       {Op::kClear, 2, 7, "", "", -1},
       {Op::kClear, 3, 8, "", "", -1}},
  };
  RecordBuilder b(&s.bytes);
  for (const auto& rec : s.recs) {
    b.Begin();
    for (const WantEntry& e : rec) {
      if (e.op == Op::kPut)
        b.Put(e.shard, e.seq, e.key, e.value, e.expire_at);
      else if (e.op == Op::kDel)
        b.Del(e.shard, e.seq, e.key);
      else
        b.Clear(e.shard, e.seq);
    }
    b.End();
    s.ends.push_back(s.bytes.size());
  }
  return s;
}

TEST(PersistFormat, LogHeaderRoundTrips) {
  LogHeader h;
  h.shard_count = 17;
  h.epoch = 0x0102030405060708ull;
  h.gen = 42;
  h.file_id = 7;
  h.k0 = ~0ull;
  h.k1 = 0x8000000000000001ull;
  const std::string b = EncodeLogHeader(h);
  ASSERT_EQ(b.size(), kLogHeaderBytes);
  LogHeader g;
  std::string why;
  ASSERT_TRUE(DecodeLogHeader(b, &g, &why)) << why;
  EXPECT_EQ(g.shard_count, h.shard_count);
  EXPECT_EQ(g.epoch, h.epoch);
  EXPECT_EQ(g.gen, h.gen);
  EXPECT_EQ(g.file_id, h.file_id);
  EXPECT_EQ(g.k0, h.k0);
  EXPECT_EQ(g.k1, h.k1);
}

TEST(PersistFormat, LogHeaderRejectsDamage) {
  LogHeader h;
  h.shard_count = 4;
  const std::string good = EncodeLogHeader(h);
  LogHeader g;
  std::string why;
  for (size_t n = 0; n < kLogHeaderBytes; ++n) {
    why.clear();
    EXPECT_FALSE(DecodeLogHeader(good.substr(0, n), &g, &why)) << n;
    EXPECT_FALSE(why.empty());
  }
  for (size_t i = 0; i < kLogHeaderBytes; ++i)
    for (int bit = 0; bit < 8; ++bit) {
      std::string b = good;
      b[i] = static_cast<char>(b[i] ^ (1 << bit));
      EXPECT_FALSE(DecodeLogHeader(b, &g, &why)) << "byte " << i << " bit " << bit;
    }
  // Well-formed but refused: another format version, or zero shards.
  std::string v2 = good;
  PutLe<uint32_t>(&v2, 8, kFormatVersion + 1);
  PutLe<uint32_t>(&v2, kLogHeaderBytes - 4, Crc32c(0, v2.data(), kLogHeaderBytes - 4));
  EXPECT_FALSE(DecodeLogHeader(v2, &g, &why));
  EXPECT_NE(why.find("version"), std::string::npos) << why;
  h.shard_count = 0;
  EXPECT_FALSE(DecodeLogHeader(EncodeLogHeader(h), &g, &why));
}

TEST(PersistFormat, RecordsRoundTrip) {
  const SampleLog s = MakeSampleLog();
  size_t pos = kLogHeaderBytes;
  std::vector<Entry> ents;
  for (size_t r = 0; r < s.recs.size(); ++r) {
    std::string_view body;
    std::string why;
    ASSERT_EQ(NextRecord(s.bytes, &pos, &body, &why), Next::kRecord) << r << ": " << why;
    EXPECT_EQ(pos, s.ends[r]);
    ASSERT_TRUE(DecodeEntries(body, &ents, &why)) << why;
    ExpectEntries(ents, s.recs[r]);
  }
  std::string_view body;
  std::string why;
  EXPECT_EQ(NextRecord(s.bytes, &pos, &body, &why), Next::kEnd);
}

TEST(PersistFormat, EveryTruncationIsTornNeverAWrongRecord) {
  const SampleLog s = MakeSampleLog();
  for (size_t cut = kLogHeaderBytes; cut <= s.bytes.size(); ++cut) {
    const std::string_view d = std::string_view(s.bytes).substr(0, cut);
    size_t pos = kLogHeaderBytes;
    size_t n = 0;
    Next last;
    std::string why;
    for (;;) {
      std::string_view body;
      last = NextRecord(d, &pos, &body, &why);
      if (last != Next::kRecord) break;
      std::vector<Entry> ents;
      ASSERT_LT(n, s.recs.size());
      ASSERT_TRUE(DecodeEntries(body, &ents, &why)) << "cut " << cut << ": " << why;
      ExpectEntries(ents, s.recs[n]);
      ASSERT_LE(pos, cut);
      ++n;
    }
    const size_t whole =
        std::count_if(s.ends.begin(), s.ends.end(), [&](size_t e) { return e <= cut; });
    EXPECT_EQ(n, whole) << "cut " << cut;
    const bool boundary =
        cut == kLogHeaderBytes || std::find(s.ends.begin(), s.ends.end(), cut) != s.ends.end();
    EXPECT_EQ(last, boundary ? Next::kEnd : Next::kTorn) << "cut " << cut;
    EXPECT_EQ(pos, n ? s.ends[n - 1] : kLogHeaderBytes) << "a torn record must not move pos";
    if (!boundary) {
      EXPECT_FALSE(why.empty());
    }
  }
}

TEST(PersistFormat, BitFlipsAreCorruptNeverARecord) {
  const SampleLog s = MakeSampleLog();
  for (size_t i = kLogHeaderBytes; i < s.bytes.size(); ++i) {
    const size_t r = std::upper_bound(s.ends.begin(), s.ends.end(), i) - s.ends.begin();
    const size_t rec_start = r ? s.ends[r - 1] : kLogHeaderBytes;
    for (int bit = 0; bit < 8; ++bit) {
      std::string b = s.bytes;
      b[i] = static_cast<char>(b[i] ^ (1 << bit));
      size_t pos = kLogHeaderBytes;
      std::string_view body;
      std::string why;
      for (size_t k = 0; k < r; ++k) ASSERT_EQ(NextRecord(b, &pos, &body, &why), Next::kRecord);
      const Next n = NextRecord(b, &pos, &body, &why);
      if (i - rec_start < 4) {
        // The length field: a longer length past the end of the data looks
        // torn; anything else fails the checksum or the range check.
        EXPECT_TRUE(n == Next::kCorrupt || n == Next::kTorn) << "byte " << i << " bit " << bit;
      } else {
        EXPECT_EQ(n, Next::kCorrupt) << "byte " << i << " bit " << bit;
      }
      EXPECT_EQ(pos, rec_start);
    }
  }
}

TEST(PersistFormat, RecordLengthsOutOfRangeAreCorrupt) {
  std::string_view body;
  std::string why;
  auto with_len = [](uint32_t len, size_t extra) {
    std::string b(kRecordHeaderBytes + extra, 'x');
    PutLe<uint32_t>(&b, 0, len);
    return b;
  };
  for (uint32_t len : {0u, kMaxRecordBytes + 1, 0xFFFFFFFFu}) {
    size_t pos = 0;
    EXPECT_EQ(NextRecord(with_len(len, 16), &pos, &body, &why), Next::kCorrupt) << len;
    EXPECT_NE(why.find("out of range"), std::string::npos) << why;
    EXPECT_EQ(pos, 0u);
  }
  size_t pos = 0;
  EXPECT_EQ(NextRecord(with_len(kMaxRecordBytes, 16), &pos, &body, &why), Next::kTorn);
  for (size_t n = 1; n < kRecordHeaderBytes; ++n) {
    pos = 0;
    EXPECT_EQ(NextRecord(std::string(n, '\0'), &pos, &body, &why), Next::kTorn) << n;
  }
  pos = 5;
  EXPECT_EQ(NextRecord(std::string(5, '\0'), &pos, &body, &why), Next::kEnd);
}

TEST(PersistFormat, DecodeEntriesRejectsMalformedBodies) {
  std::vector<Entry> ents;
  std::string why;
  EXPECT_FALSE(DecodeEntries("", &ents, &why));
  std::string body;
  RecordBuilder b(&body);
  b.Begin();
  b.Put(1, 10, "key", "value", 99);
  const size_t first_end = body.size() - kRecordHeaderBytes;
  b.Del(2, 11, "other");
  b.End();
  const std::string full = body.substr(kRecordHeaderBytes);
  for (size_t n = 0; n <= full.size(); ++n) {
    const bool ok = DecodeEntries(full.substr(0, n), &ents, &why);
    if (n == first_end || n == full.size()) {
      ASSERT_TRUE(ok) << n << ": " << why;
      EXPECT_EQ(ents.size(), n == full.size() ? 2u : 1u);
    } else {
      EXPECT_FALSE(ok) << "prefix of " << n << " bytes decoded";
    }
  }
  std::string bad = full;
  bad[0] = 9;  // no such op
  EXPECT_FALSE(DecodeEntries(bad, &ents, &why));
  EXPECT_NE(why.find("unknown"), std::string::npos) << why;
  std::string huge = full.substr(0, first_end);
  PutLe<uint32_t>(&huge, 13, 0xFFFFFFFFu);  // key length past the end
  EXPECT_FALSE(DecodeEntries(huge, &ents, &why));
}

// ---------------------------------------------------------------------------
// Format: snapshots

TEST(PersistFormat, SnapshotHeaderRoundTripsAndRejectsDamage) {
  SnapHeader h;
  h.shard_count = 5;
  h.epoch = 4;
  h.gen = 6;
  h.created_ms = kNow;
  h.k0 = 1;
  h.k1 = 2;
  h.watermarks = {10, 0, 7, ~0ull, 3};
  const std::string b = EncodeSnapHeader(h);
  ASSERT_EQ(b.size(), SnapHeaderBytes(5));
  SnapHeader g;
  size_t size = 0;
  std::string why;
  ASSERT_TRUE(DecodeSnapHeader(b + "trailing blocks", &g, &size, &why)) << why;
  EXPECT_EQ(size, b.size());
  EXPECT_EQ(g.shard_count, 5u);
  EXPECT_EQ(g.epoch, 4u);
  EXPECT_EQ(g.gen, 6u);
  EXPECT_EQ(g.created_ms, kNow);
  EXPECT_EQ(g.k0, 1u);
  EXPECT_EQ(g.k1, 2u);
  EXPECT_EQ(g.watermarks, h.watermarks);
  for (size_t n = 0; n < b.size(); ++n)
    EXPECT_FALSE(DecodeSnapHeader(b.substr(0, n), &g, &size, &why)) << n;
  for (size_t i = 0; i < b.size(); ++i) {
    std::string d = b;
    d[i] = static_cast<char>(d[i] ^ 0x10);
    EXPECT_FALSE(DecodeSnapHeader(d, &g, &size, &why)) << "byte " << i;
  }
  for (uint32_t n : {0u, (1u << 20) + 1, 0xFFFFFFFFu}) {
    std::string d = b;
    PutLe<uint32_t>(&d, 12, n);
    EXPECT_FALSE(DecodeSnapHeader(d, &g, &size, &why)) << n;
  }
}

TEST(PersistFormat, SnapshotBlocksRoundTrip) {
  std::string file;
  BeginItemsBlock(&file);
  const std::string bin("\0\1\2", 3);
  AppendItem(&file, "a", "1", -1);
  AppendItem(&file, bin, std::string(3000, 'z'), 777);
  AppendItem(&file, "", "", 0);
  EndBlock(&file, 0);
  const size_t second = file.size();
  BeginItemsBlock(&file);  // an empty items block is legal (an empty shard)
  EndBlock(&file, second);
  file += EndMarkerBlock(3);
  size_t pos = 0;
  std::string_view body;
  std::string why;
  std::vector<Item> items;
  bool end = true;
  uint64_t count = 0;
  ASSERT_EQ(NextRecord(file, &pos, &body, &why), Next::kRecord) << why;
  ASSERT_TRUE(DecodeBlock(body, &items, &end, &count, &why)) << why;
  EXPECT_FALSE(end);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].key, "a");
  EXPECT_EQ(items[0].value, "1");
  EXPECT_EQ(items[0].expire_at, -1);
  EXPECT_EQ(items[1].key, bin);
  EXPECT_EQ(items[1].value, std::string(3000, 'z'));
  EXPECT_EQ(items[1].expire_at, 777);
  EXPECT_EQ(items[2].key, "");
  EXPECT_EQ(items[2].expire_at, 0);
  ASSERT_EQ(NextRecord(file, &pos, &body, &why), Next::kRecord) << why;
  ASSERT_TRUE(DecodeBlock(body, &items, &end, &count, &why)) << why;
  EXPECT_FALSE(end);
  EXPECT_TRUE(items.empty());
  ASSERT_EQ(NextRecord(file, &pos, &body, &why), Next::kRecord) << why;
  ASSERT_TRUE(DecodeBlock(body, &items, &end, &count, &why)) << why;
  EXPECT_TRUE(end);
  EXPECT_EQ(count, 3u);
  EXPECT_EQ(NextRecord(file, &pos, &body, &why), Next::kEnd);
}

TEST(PersistFormat, DecodeBlockRejectsMalformedBodies) {
  std::vector<Item> items;
  bool end = false;
  uint64_t count = 0;
  std::string why;
  EXPECT_FALSE(DecodeBlock("", &items, &end, &count, &why));
  EXPECT_FALSE(DecodeBlock("X", &items, &end, &count, &why));
  EXPECT_FALSE(DecodeBlock(std::string("E") + std::string(7, '\0'), &items, &end, &count, &why));
  EXPECT_FALSE(DecodeBlock(std::string("E") + std::string(9, '\0'), &items, &end, &count, &why));
  EXPECT_TRUE(DecodeBlock(std::string("E") + std::string(8, '\0'), &items, &end, &count, &why));
  std::string blk;
  BeginItemsBlock(&blk);
  AppendItem(&blk, "key", "value", 5);
  const size_t first_end = blk.size() - kRecordHeaderBytes;
  AppendItem(&blk, "k2", "v2", -1);
  const std::string body = blk.substr(kRecordHeaderBytes);
  for (size_t n = 1; n <= body.size(); ++n) {
    const bool ok = DecodeBlock(body.substr(0, n), &items, &end, &count, &why);
    if (n == 1 || n == first_end || n == body.size()) {
      ASSERT_TRUE(ok) << n << ": " << why;
      EXPECT_EQ(items.size(), n == 1 ? 0u : n == first_end ? 1u : 2u);
    } else {
      EXPECT_FALSE(ok) << "prefix of " << n << " bytes decoded";
    }
  }
}

// ---------------------------------------------------------------------------
// Load: logs written by LogWriter through the engine

class PersistLoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    ps_ = std::make_unique<PersistShared>();
    ps_->epoch.store(1);
    live_ = std::make_unique<StoreBox>(4, 1);
    ASSERT_NE(live_->get(), nullptr) << live_->why();
  }
  void TearDown() override { kv::SetJournal(nullptr); }
  kv::Store* live() const { return live_->get(); }
  const std::string& dir() const { return dir_.path(); }
  std::string OnlyLog() {
    const auto logs = LogNames(dir());
    EXPECT_EQ(logs.size(), 1u);
    return logs.empty() ? "" : dir() + "/" + logs[0];
  }
  Status Set(std::string_view k, std::string_view v, int64_t expire_at = -1) {
    kv::SetOptions o;
    o.expire_at_ms = expire_at;
    return live()->Set(k, v, o, kNow);
  }

  TempDir dir_;
  std::unique_ptr<PersistShared> ps_;
  std::unique_ptr<StoreBox> live_;
};

TEST_F(PersistLoadTest, ReloadEqualsLiveStoreAfterEveryKindOfWrite) {
  auto w = NewWriter(dir(), FsyncPolicy::kNo, ps_.get(), live());
  {
    JournalScope js(w.get());
    kv::Store* s = live();
    for (int i = 0; i < 50; ++i)
      ASSERT_EQ(Set("k" + std::to_string(i), "v" + std::to_string(i)), Status::kOk);
    ASSERT_EQ(Set("ttl", "x", kNow + 60000), Status::kOk);
    kv::SetOptions keep;
    keep.keep_ttl = true;
    ASSERT_EQ(s->Set("ttl", "y", keep, kNow), Status::kOk);  // new value, same TTL
    int64_t r;
    ASSERT_EQ(s->IncrBy("counter", 5, kNow, &r), Status::kOk);
    ASSERT_EQ(s->IncrBy("counter", -7, kNow, &r), Status::kOk);
    ASSERT_EQ(s->Del("k3", kNow), Status::kOk);
    ASSERT_EQ(s->SetExpire("k4", kNow + 5000, kNow), Status::kOk);
    ASSERT_EQ(s->SetExpire("k5", kNow + 5000, kNow), Status::kOk);
    ASSERT_EQ(s->SetExpire("k5", -1, kNow), Status::kOk);        // PERSIST
    ASSERT_EQ(s->SetExpire("k6", kNow - 1, kNow), Status::kOk);  // a past deadline deletes
    const std::vector<std::pair<std::string_view, std::string_view>> kvs = {
        {"m1", "a"}, {"m2", "b"}, {"k7", "overwritten"}, {"m1", "again"}, {"k8", ""}};
    ASSERT_EQ(s->MSet(kvs, kNow), Status::kOk);
    ASSERT_EQ(s->MSet({}, kNow), Status::kOk);  // an empty group: no record
    for (int i = 0; i < 5; ++i) ASSERT_EQ(Set("ns^" + std::to_string(i), "x"), Status::kOk);
    ASSERT_EQ(Set("ns", "not in the namespace"), Status::kOk);
    EXPECT_EQ(s->FlushPrefix("ns^"), 5u);
    const std::string bin("b\0i\xffn", 5);
    ASSERT_EQ(Set(bin, bin), Status::kOk);
    ASSERT_EQ(Set("", "empty key"), Status::kOk);
    ASSERT_EQ(Set("big", std::string(60000, 'B')), Status::kOk);
  }
  EXPECT_GT(w->appended(), 0u);
  ASSERT_TRUE(w->Flush()) << w->error();
  w->Shutdown();
  const Contents want = Dump(live(), kNow);
  ASSERT_EQ(want.count("k6"), 0u);
  ASSERT_EQ(want.at("ttl"), (Val{"y", static_cast<int64_t>(kNow + 60000)}));
  ASSERT_EQ(want.at("counter").value, "-2");
  Loaded got = LoadFresh(dir(), 4);
  ASSERT_TRUE(got.ok) << got.why;
  EXPECT_EQ(Dump(got.store(), kNow), want);
  EXPECT_EQ(got.st.keys, want.size());
  EXPECT_EQ(got.st.log_files, 1u);
  EXPECT_GT(got.st.records, 60u);
  EXPECT_EQ(got.st.dropped_bytes, 0u);
  EXPECT_EQ(got.st.max_epoch, 1u);
  EXPECT_TRUE(got.st.snapshot.empty());
  EXPECT_TRUE(Names(dir(), ".tail-").empty());
}

TEST_F(PersistLoadTest, EmptyOrMissingFolderLoadsNothing) {
  Loaded got = LoadFresh(dir() + "/not/yet", 4);
  ASSERT_TRUE(got.ok) << got.why;
  EXPECT_TRUE(fs::is_directory(dir() + "/not/yet"));
  EXPECT_EQ(got.st.keys, 0u);
  EXPECT_EQ(got.st.max_epoch, 0u);
}

// Two "workers" log to their own files while writing the same keys; replay
// merges the files per shard by sequence, so the last write wins whichever
// file holds it, whatever the shard count of the store it loads into.
TEST_F(PersistLoadTest, TwoWritersInterleavingOnSameKeysReplayInShardOrder) {
  for (uint32_t seed = 1; seed <= 4; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    TempDir d;
    StoreBox box(4, seed);
    ASSERT_NE(box.get(), nullptr);
    PersistShared ps{};
    ps.epoch.store(1);
    std::unique_ptr<LogWriter> w[2] = {NewWriter(d.path(), FsyncPolicy::kNo, &ps, box.get()),
                                       NewWriter(d.path(), FsyncPolicy::kEverySec, &ps, box.get())};
    std::mt19937 rng(seed);
    for (int i = 0; i < 3000; ++i) {
      kv::SetJournal(w[rng() % 2].get());
      RandomOp(box.get(), rng, i);
      if (rng() % 8 == 0) {
        ASSERT_TRUE(w[rng() % 2]->Flush());
      }
    }
    kv::SetJournal(nullptr);
    ASSERT_TRUE(w[1]->Flush());  // the second writer's file ends up written first
    ASSERT_TRUE(w[0]->Flush());
    w[0]->Shutdown();
    w[1]->Shutdown();
    ASSERT_EQ(LogNames(d.path()).size(), 2u);
    const Contents want = Dump(box.get(), kNow);
    ASSERT_FALSE(want.empty());
    for (uint32_t shards : {4u, 1u, 7u}) {
      Loaded got = LoadFresh(d.path(), shards);
      ASSERT_TRUE(got.ok) << got.why;
      EXPECT_EQ(Dump(got.store(), kNow), want) << "loaded into " << shards << " shards";
      EXPECT_EQ(got.st.dropped_bytes, 0u);
    }
  }
}

TEST_F(PersistLoadTest, ExpiredKeysStayGone) {
  auto w = NewWriter(dir(), FsyncPolicy::kNo, ps_.get(), live());
  {
    JournalScope js(w.get());
    ASSERT_EQ(Set("short", "1", kNow + 100), Status::kOk);
    ASSERT_EQ(Set("long", "2", kNow + 100000), Status::kOk);
    ASSERT_EQ(Set("forever", "3"), Status::kOk);
    ASSERT_EQ(Set("renewed", "4", kNow + 100), Status::kOk);
    ASSERT_EQ(Set("renewed", "5"), Status::kOk);  // overwritten without a TTL: kept
    ASSERT_EQ(Set("expire-later", "6"), Status::kOk);
    ASSERT_EQ(live()->SetExpire("expire-later", kNow + 200, kNow), Status::kOk);
  }
  ASSERT_TRUE(w->Flush());
  w->Shutdown();
  const uint64_t later = kNow + 1000;
  Loaded got = LoadFresh(dir(), 4, later);
  ASSERT_TRUE(got.ok) << got.why;
  const Contents want = {{"long", {"2", static_cast<int64_t>(kNow + 100000)}},
                         {"forever", {"3", -1}},
                         {"renewed", {"5", -1}}};
  EXPECT_EQ(Dump(got.store(), later), want);
  EXPECT_EQ(Dump(got.store(), later), Dump(live(), later));
  EXPECT_EQ(got.st.keys, 3u);  // not loaded at all, not merely hidden
  EXPECT_GE(got.st.expired, 2u);
}

// The last record cut at every byte: everything before it loads, the cut
// bytes are reported and kept beside the file, the file ends at the record.
TEST_F(PersistLoadTest, TornTailIsCutAtEveryOffsetOfTheLastRecord) {
  auto w = NewWriter(dir(), FsyncPolicy::kNo, ps_.get(), live());
  kv::SetJournal(w.get());
  for (int i = 0; i < 20; ++i)
    ASSERT_EQ(Set("k" + std::to_string(i), "v" + std::to_string(i)), Status::kOk);
  ASSERT_TRUE(w->Flush());
  const Contents before = Dump(live(), kNow);
  const std::string path = OnlyLog();
  const size_t good = fs::file_size(path);
  ASSERT_EQ(Set("k5", "a new value for k5", kNow + 50000), Status::kOk);
  ASSERT_TRUE(w->Flush());
  kv::SetJournal(nullptr);
  w->Shutdown();
  const Contents after = Dump(live(), kNow);
  const std::string full = ReadFile(path);
  ASSERT_GT(full.size(), good + kRecordHeaderBytes);
  const std::string name = fs::path(path).filename().string();
  QuietLogs quiet;
  for (size_t cut = good; cut <= full.size(); ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut) + " of " + std::to_string(full.size()));
    TempDir d;
    WriteFile(d.path() + "/" + name, std::string_view(full).substr(0, cut));
    Loaded got = LoadFresh(d.path(), 4);
    ASSERT_TRUE(got.ok) << got.why;
    EXPECT_EQ(Dump(got.store(), kNow), cut == full.size() ? after : before);
    const size_t dropped = cut == full.size() ? 0 : cut - good;
    EXPECT_EQ(got.st.dropped_bytes, dropped);
    EXPECT_EQ(fs::file_size(d.path() + "/" + name), cut == full.size() ? full.size() : good);
    const auto tails = Names(d.path(), ".tail-");
    if (dropped == 0) {
      EXPECT_TRUE(tails.empty());
    } else {
      ASSERT_EQ(tails.size(), 1u);
      EXPECT_EQ(tails[0].rfind(name + ".tail-", 0), 0u) << tails[0];
      EXPECT_EQ(ReadFile(d.path() + "/" + tails[0]), full.substr(good, dropped));
      // A second load finds a clean file and cuts nothing more.
      Loaded again = LoadFresh(d.path(), 4);
      ASSERT_TRUE(again.ok) << again.why;
      EXPECT_EQ(again.st.dropped_bytes, 0u);
      EXPECT_EQ(Dump(again.store(), kNow), before);
    }
  }
}

TEST_F(PersistLoadTest, TornMsetIsAllOrNothing) {
  auto w = NewWriter(dir(), FsyncPolicy::kNo, ps_.get(), live());
  kv::SetJournal(w.get());
  std::vector<std::string> keys;
  std::set<uint32_t> shards;
  for (int i = 0; i < 8; ++i) {
    keys.push_back("mk" + std::to_string(i));
    shards.insert(live()->ShardOf(keys.back()));
    ASSERT_EQ(Set(keys.back(), "old"), Status::kOk);
  }
  ASSERT_GE(shards.size(), 2u) << "the MSET must span shards";
  ASSERT_TRUE(w->Flush());
  const Contents before = Dump(live(), kNow);
  const std::string path = OnlyLog();
  const size_t good = fs::file_size(path);
  std::vector<std::pair<std::string_view, std::string_view>> kvs;
  for (const std::string& k : keys) kvs.emplace_back(k, "new");
  kvs.emplace_back("fresh", "new");
  ASSERT_EQ(live()->MSet(kvs, kNow), Status::kOk);
  ASSERT_TRUE(w->Flush());
  kv::SetJournal(nullptr);
  w->Shutdown();
  const Contents after = Dump(live(), kNow);
  const std::string full = ReadFile(path);
  const std::string name = fs::path(path).filename().string();
  QuietLogs quiet;
  for (size_t cut = good; cut <= full.size(); ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    TempDir d;
    WriteFile(d.path() + "/" + name, std::string_view(full).substr(0, cut));
    Loaded got = LoadFresh(d.path(), 3);
    ASSERT_TRUE(got.ok) << got.why;
    EXPECT_EQ(Dump(got.store(), kNow), cut == full.size() ? after : before);
  }
}

// A record that fails its checksum in the middle of a file: the records
// before it load, it and the rest of that file are cut; other workers'
// files are not affected.
TEST_F(PersistLoadTest, CorruptRecordInTheMiddleCutsTheRestOfThatFile) {
  auto w = NewWriter(dir(), FsyncPolicy::kNo, ps_.get(), live());
  auto other = NewWriter(dir(), FsyncPolicy::kNo, ps_.get(), live());
  std::vector<size_t> ends;
  for (int i = 0; i < 30; ++i) {
    kv::SetJournal(w.get());
    ASSERT_EQ(Set("a" + std::to_string(i), "v"), Status::kOk);
    ASSERT_TRUE(w->Flush());
    ends.push_back(w->written());
    kv::SetJournal(other.get());
    ASSERT_EQ(Set("b" + std::to_string(i), "v"), Status::kOk);
  }
  kv::SetJournal(nullptr);
  ASSERT_TRUE(other->Flush());
  w->Shutdown();
  other->Shutdown();
  const auto logs = LogNames(dir());
  ASSERT_EQ(logs.size(), 2u);
  const std::string path = dir() + "/" + logs[0];  // file ids in creation order: w's first
  std::string bytes = ReadFile(path);
  ASSERT_EQ(bytes.size(), kLogHeaderBytes + ends.back());
  const size_t rec10 = kLogHeaderBytes + ends[9];  // record of "a10"
  bytes[rec10 + kRecordHeaderBytes + 3] ^= 0x40;   // inside its body
  WriteFile(path, bytes);
  Loaded got = LoadFresh(dir(), 4);
  ASSERT_TRUE(got.ok) << got.why;
  Contents want;
  for (int i = 0; i < 30; ++i) {
    if (i < 10) want["a" + std::to_string(i)] = {"v", -1};
    want["b" + std::to_string(i)] = {"v", -1};
  }
  EXPECT_EQ(Dump(got.store(), kNow), want);
  EXPECT_EQ(got.st.dropped_bytes, bytes.size() - rec10);
  EXPECT_EQ(fs::file_size(path), rec10);
  EXPECT_EQ(Names(dir(), ".tail-").size(), 1u);
}

TEST_F(PersistLoadTest, ZeroLengthRecordIsCorruptAndCut) {
  auto w = NewWriter(dir(), FsyncPolicy::kNo, ps_.get(), live());
  kv::SetJournal(w.get());
  ASSERT_EQ(Set("a", "1"), Status::kOk);
  ASSERT_TRUE(w->Flush());
  kv::SetJournal(nullptr);
  w->Shutdown();
  const std::string path = OnlyLog();
  // What a file system can leave after a crash: the size grew, the data is zeros.
  WriteFile(path, ReadFile(path) + std::string(100, '\0'));
  Loaded got = LoadFresh(dir(), 4);
  ASSERT_TRUE(got.ok) << got.why;
  EXPECT_EQ(Dump(got.store(), kNow), (Contents{{"a", {"1", -1}}}));
  EXPECT_EQ(got.st.dropped_bytes, 100u);
}

TEST_F(PersistLoadTest, FlushAllReplaysAsOneRecordOverEveryShard) {
  auto w = NewWriter(dir(), FsyncPolicy::kNo, ps_.get(), live());
  {
    JournalScope js(w.get());
    for (int i = 0; i < 40; ++i) ASSERT_EQ(Set("old" + std::to_string(i), "x"), Status::kOk);
    EXPECT_EQ(live()->FlushAll(), 40u);
    ASSERT_EQ(Set("old3", "after"), Status::kOk);
    ASSERT_EQ(Set("new", "after", kNow + 9999), Status::kOk);
  }
  ASSERT_TRUE(w->Flush());
  w->Shutdown();
  const Contents want = Dump(live(), kNow);
  ASSERT_EQ(want.size(), 2u);
  for (uint32_t shards : {4u, 1u, 5u}) {
    Loaded got = LoadFresh(dir(), shards);
    ASSERT_TRUE(got.ok) << got.why;
    EXPECT_EQ(Dump(got.store(), kNow), want) << shards << " shards";
    EXPECT_EQ(got.st.records, 43u);  // 40 + FLUSHALL + 2
  }
}

TEST_F(PersistLoadTest, DamagedLogHeaderIsMovedAsideAndShortFileRemoved) {
  auto w = NewWriter(dir(), FsyncPolicy::kNo, ps_.get(), live());
  auto other = NewWriter(dir(), FsyncPolicy::kNo, ps_.get(), live());
  kv::SetJournal(w.get());
  ASSERT_EQ(Set("lost", "1"), Status::kOk);
  kv::SetJournal(other.get());
  ASSERT_EQ(Set("kept", "2"), Status::kOk);
  kv::SetJournal(nullptr);
  ASSERT_TRUE(w->Flush());
  ASSERT_TRUE(other->Flush());
  w->Shutdown();
  other->Shutdown();
  const auto logs = LogNames(dir());
  ASSERT_EQ(logs.size(), 2u);
  std::string bytes = ReadFile(dir() + "/" + logs[0]);
  bytes[20] ^= 1;
  WriteFile(dir() + "/" + logs[0], bytes);
  const std::string stub = LogFileName(1, 1, 99);
  WriteFile(dir() + "/" + stub, std::string(30, 'x'));  // created just before a crash
  Loaded got = LoadFresh(dir(), 4);
  ASSERT_TRUE(got.ok) << got.why;
  EXPECT_EQ(Dump(got.store(), kNow), (Contents{{"kept", {"2", -1}}}));
  EXPECT_EQ(got.st.dropped_bytes, bytes.size());
  EXPECT_TRUE(fs::exists(dir() + "/" + logs[0] + ".bad"));
  EXPECT_FALSE(fs::exists(dir() + "/" + logs[0]));
  EXPECT_FALSE(fs::exists(dir() + "/" + stub));
}

// Several server runs: each loads the previous one's files into a store
// with another shard count and hash key, then writes its own log. A start
// replays every run in order.
TEST_F(PersistLoadTest, LogsOfSeveralRunsReplayInRunOrder) {
  std::unique_ptr<StoreBox> cur = std::make_unique<StoreBox>(4, 11);
  const uint32_t shard_counts[] = {4, 3, 6, 2};
  std::mt19937 rng(5);
  for (uint64_t run = 1; run <= 3; ++run) {
    SCOPED_TRACE("run " + std::to_string(run));
    PersistShared ps{};
    ps.epoch.store(run);
    auto w = NewWriter(dir(), FsyncPolicy::kNo, &ps, cur->get());
    kv::SetJournal(w.get());
    for (int i = 0; i < 600; ++i) RandomOp(cur->get(), rng, i, 3);
    kv::SetJournal(nullptr);
    ASSERT_TRUE(w->Flush());
    w->Shutdown();
    const Contents want = Dump(cur->get(), kNow);
    Loaded got = LoadFresh(dir(), shard_counts[run], kNow, 100 + run);
    ASSERT_TRUE(got.ok) << got.why;
    EXPECT_EQ(Dump(got.store(), kNow), want);
    EXPECT_EQ(got.st.max_epoch, run);
    EXPECT_EQ(got.st.log_files, run);
    cur = std::move(got.box);
  }
}

// The logs of several runs, three writers each, over 32 shards (FLUSHALL
// holds every shard's lock; TSan tracks at most 64 held locks): replayed on
// four threads (streams of disjoint shards at once, FLUSHALLs as barriers,
// values of the large-object area allocated concurrently) they load the
// same keys, values and TTLs as on one thread, and as the live store held.
TEST_F(PersistLoadTest, ParallelReplayEqualsOneThread) {
  constexpr size_t kSize = 48u << 20;
  constexpr uint64_t kLarge = 8u << 20;
  auto cur = std::make_unique<StoreBox>(32, 21, kSize, kLarge);
  ASSERT_NE(cur->get(), nullptr) << cur->why();
  std::mt19937 rng(77);
  for (uint64_t run = 1; run <= 2; ++run) {
    SCOPED_TRACE("run " + std::to_string(run));
    PersistShared ps{};
    ps.epoch.store(run);
    std::unique_ptr<LogWriter> w[3];
    for (auto& x : w) x = NewWriter(dir(), FsyncPolicy::kNo, &ps, cur->get());
    kv::Store* s = cur->get();
    for (int i = 0; i < 20000; ++i) {
      kv::SetJournal(w[rng() % 3].get());
      const uint32_t op = rng() % 1000;
      const std::string key = "k" + std::to_string(rng() % 3000);
      kv::SetOptions o;
      if (op < 2 && i > 8000 && i < 14000) {
        s->FlushAll();  // a barrier, with thousands of entries on either side
      } else if (op < 450) {
        if (rng() % 3 == 0) o.expire_at_ms = static_cast<int64_t>(kNow + 1000 + rng() % 100000);
        ASSERT_EQ(s->Set(key, "v" + std::to_string(i) + std::string(rng() % 200, 'x'), o, kNow),
                  Status::kOk);
      } else if (op < 470) {
        ASSERT_EQ(
            s->Set("big" + std::to_string(rng() % 40),
                   std::string(16384 + rng() % 20000, static_cast<char>('a' + i % 26)), o, kNow),
            Status::kOk);
      } else if (op < 600) {
        s->Del(key, kNow);
        s->Del("big" + std::to_string(rng() % 40), kNow);
      } else if (op < 700) {
        const uint32_t how = rng() % 3;
        s->SetExpire(key,
                     how == 0   ? -1
                     : how == 1 ? static_cast<int64_t>(kNow) - 1
                                : static_cast<int64_t>(kNow + 5000 + rng() % 1000),
                     kNow);
      } else if (op < 900) {
        std::vector<std::string> ks, vs;
        for (int j = 0; j < 4; ++j) {
          ks.push_back("k" + std::to_string(rng() % 3000));
          vs.push_back("m" + std::to_string(i) + "." + std::to_string(j));
        }
        std::vector<std::pair<std::string_view, std::string_view>> kvs;
        for (int j = 0; j < 4; ++j) kvs.emplace_back(ks[j], vs[j]);
        ASSERT_EQ(s->MSet(kvs, kNow), Status::kOk);
      } else if (op < 905) {
        s->FlushPrefix("k12");
      } else {
        int64_t r;
        s->IncrBy("ctr" + std::to_string(rng() % 50), 3, kNow, &r);
      }
      if (rng() % 64 == 0) {
        ASSERT_TRUE(w[rng() % 3]->Flush());
      }
    }
    kv::SetJournal(nullptr);
    for (int j = 2; j >= 0; --j) {
      ASSERT_TRUE(w[j]->Flush());
      w[j]->Shutdown();
    }
    const Contents want = Dump(s, kNow);
    ASSERT_GT(want.size(), 500u);
    std::unique_ptr<StoreBox> next;
    for (unsigned threads : {1u, 4u, 2u, 3u}) {
      for (uint32_t shards : {32u, 7u}) {
        SCOPED_TRACE(std::to_string(threads) + " threads into " + std::to_string(shards) +
                     " shards");
        auto box = std::make_unique<StoreBox>(shards, 300 + run, kSize, kLarge);
        ASSERT_NE(box->get(), nullptr) << box->why();
        LoadStats st;
        std::string why;
        LoadOptions opt;
        opt.threads = threads;
        ASSERT_TRUE(Load(dir(), box->get(), kNow, &st, &why, opt)) << why;
        EXPECT_EQ(st.replay_threads, threads);
        EXPECT_EQ(Dump(box->get(), kNow), want);
        EXPECT_EQ(st.keys, want.size());
        EXPECT_EQ(st.dropped_bytes, 0u);
        for (uint32_t i = 0; i < shards; ++i) {
          std::string bad;
          EXPECT_TRUE(box->get()->Verify(i, &bad)) << "shard " << i << ": " << bad;
        }
        if (threads == 4 && shards == 32) next = std::move(box);
      }
    }
    cur = std::move(next);  // the next run writes on top of what was loaded
  }
}

// ---------------------------------------------------------------------------
// Snapshots

// Entries stamped with the new generation but made before the walk reached
// their shard are in the snapshot and must be skipped by watermark; later
// ones are replayed. ps.gen is moved by hand to put writes in that window.
TEST_F(PersistLoadTest, SnapshotPlusLaterLogsEqualsLiveStore) {
  auto w = NewWriter(dir(), FsyncPolicy::kEverySec, ps_.get(), live());
  kv::SetJournal(w.get());
  for (int i = 0; i < 40; ++i) ASSERT_EQ(Set("k" + std::to_string(i), "a"), Status::kOk);
  ASSERT_TRUE(w->Flush());
  ASSERT_EQ(ps_->gen.load(), 1u);
  ps_->gen.store(2);  // what WriteSnapshot's fetch_add does before its walk
  for (int i = 0; i < 10; ++i)
    ASSERT_EQ(Set("k" + std::to_string(i * 3), "b", kNow + 7777), Status::kOk);
  ASSERT_TRUE(w->Flush());
  ASSERT_EQ(LogNames(dir()).size(), 2u) << "a new generation goes to a new file";
  ps_->gen.store(1);
  const SnapshotResult r = WriteSnapshot(dir(), live(), ps_.get(), kNow);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.epoch, 1u);
  EXPECT_EQ(r.gen, 1u);
  EXPECT_EQ(ps_->gen.load(), 2u);
  EXPECT_EQ(r.keys, 40u);
  EXPECT_EQ(r.path, dir() + "/" + SnapshotFileName(1, 1));
  EXPECT_TRUE(Names(dir(), ".tmp").empty());
  // After the walk: replayed on top of the snapshot.
  for (int i = 0; i < 10; ++i) ASSERT_EQ(Set("k" + std::to_string(i), "c"), Status::kOk);
  ASSERT_EQ(live()->Del("k39", kNow), Status::kOk);
  ASSERT_EQ(Set("new", "d"), Status::kOk);
  ASSERT_TRUE(w->Flush());
  const Contents want = Dump(live(), kNow);
  {
    Loaded got = LoadFresh(dir(), 4);
    ASSERT_TRUE(got.ok) << got.why;
    EXPECT_EQ(got.st.snapshot, SnapshotFileName(1, 1));
    EXPECT_EQ(got.st.snapshot_items, 40u);
    EXPECT_EQ(got.st.skipped_entries, 10u);
    EXPECT_EQ(got.st.records, 12u);
    EXPECT_EQ(got.st.log_files, 1u);  // the gen-1 file is covered: not even opened
    EXPECT_EQ(Dump(got.store(), kNow), want);
  }
  // The master removes what the snapshot covers: the gen-1 log only.
  const std::string gen1 = LogNames(dir())[0];
  EXPECT_EQ(RemoveCovered(dir(), r.epoch, r.gen), 1);
  EXPECT_FALSE(fs::exists(dir() + "/" + gen1));
  {
    Loaded got = LoadFresh(dir(), 2);
    ASSERT_TRUE(got.ok) << got.why;
    EXPECT_EQ(Dump(got.store(), kNow), want);
  }
  // A second snapshot covers the gen-2 log and replaces the first snapshot.
  const SnapshotResult r2 = WriteSnapshot(dir(), live(), ps_.get(), kNow);
  ASSERT_TRUE(r2.ok) << r2.error;
  EXPECT_EQ(r2.gen, 2u);
  kv::SetJournal(w.get());  // LoadFresh cleared it
  ASSERT_EQ(Set("after2", "e"), Status::kOk);
  ASSERT_TRUE(w->Flush());  // goes to a gen-3 file
  kv::SetJournal(nullptr);
  EXPECT_EQ(RemoveCovered(dir(), r2.epoch, r2.gen), 2);  // gen-2 log, first snapshot
  EXPECT_EQ(Names(dir(), "snapshot-"), std::vector<std::string>{SnapshotFileName(1, 2)});
  ASSERT_EQ(LogNames(dir()).size(), 1u);
  EXPECT_NE(LogNames(dir())[0].find("-000003-"), std::string::npos) << LogNames(dir())[0];
  Loaded got = LoadFresh(dir(), 5);
  ASSERT_TRUE(got.ok) << got.why;
  EXPECT_EQ(Dump(got.store(), kNow), Dump(live(), kNow));
  EXPECT_EQ(got.st.skipped_entries, 0u);
}

// The real race: a writer thread logs while snapshots are taken; whatever
// the interleaving, the newest snapshot plus the logs equal the live store.
TEST_F(PersistLoadTest, SnapshotsDuringConcurrentWritesLoseNothing) {
  auto w = NewWriter(dir(), FsyncPolicy::kEverySec, ps_.get(), live());
  std::atomic<bool> done{false};
  std::thread writer([&] {
    JournalScope js(w.get());  // the journal is process-wide: only this thread writes
    std::mt19937 rng(3);
    for (int i = 0; i < 20000; ++i) {
      RandomOp(live(), rng, i, 1);
      if (i % 16 == 0) w->Flush();
    }
    w->Flush();
    done.store(true);
  });
  SnapshotResult last;
  int snapshots = 0;
  while (!done.load() && snapshots < 30) {
    SnapshotResult r = WriteSnapshot(dir(), live(), ps_.get(), kNow);
    if (!r.ok) {
      EXPECT_NE(r.error.find("FLUSHALL"), std::string::npos) << r.error;
      continue;
    }
    ++snapshots;
    last = r;
  }
  writer.join();
  ASSERT_GE(snapshots, 1);
  ASSERT_TRUE(w->Flush());
  w->Shutdown();
  const Contents want = Dump(live(), kNow);
  Loaded got = LoadFresh(dir(), 4);
  ASSERT_TRUE(got.ok) << got.why;
  EXPECT_EQ(Dump(got.store(), kNow), want);
  EXPECT_EQ(got.st.snapshot, SnapshotFileName(1, last.gen));
  RemoveCovered(dir(), last.epoch, last.gen);
  EXPECT_EQ(Names(dir(), "snapshot-"), std::vector<std::string>{SnapshotFileName(1, last.gen)});
  for (const std::string& n : LogNames(dir()))
    EXPECT_GT(std::stoull(n.substr(11, 6)), last.gen) << n << " is covered and should be gone";
  Loaded again = LoadFresh(dir(), 3);
  ASSERT_TRUE(again.ok) << again.why;
  EXPECT_EQ(Dump(again.store(), kNow), want);
}

TEST_F(PersistLoadTest, SnapshotDropsKeysExpiredByLoadTime) {
  ASSERT_EQ(Set("soon", "1", kNow + 100), Status::kOk);
  ASSERT_EQ(Set("later", "2", kNow + 100000), Status::kOk);
  ASSERT_EQ(Set("never", "3"), Status::kOk);
  const SnapshotResult r = WriteSnapshot(dir(), live(), ps_.get(), kNow);
  ASSERT_TRUE(r.ok) << r.error;
  Loaded got = LoadFresh(dir(), 4, kNow + 1000);
  ASSERT_TRUE(got.ok) << got.why;
  EXPECT_EQ(
      Dump(got.store(), kNow + 1000),
      (Contents{{"later", {"2", static_cast<int64_t>(kNow + 100000)}}, {"never", {"3", -1}}}));
  EXPECT_EQ(got.st.keys, 2u);
  EXPECT_EQ(got.st.expired, 1u);
}

TEST_F(PersistLoadTest, RemoveCoveredRemovesExactlyTheCoveredFiles) {
  const std::vector<std::string> covered = {LogFileName(1, 5, 1), LogFileName(2, 2, 3),
                                            LogFileName(2, 3, 4), SnapshotFileName(1, 9),
                                            SnapshotFileName(2, 2)};
  const std::vector<std::string> kept = {LogFileName(2, 4, 5),
                                         LogFileName(3, 1, 6),
                                         SnapshotFileName(2, 3),
                                         SnapshotFileName(2, 4),
                                         SnapshotFileName(3, 1),
                                         LogFileName(2, 1, 7) + ".tail-123",
                                         LogFileName(2, 1, 8) + ".bad",
                                         std::string(kStatusFile),
                                         "LOCK",
                                         "notes.txt"};
  for (const auto& n : covered) WriteFile(dir() + "/" + n, "x");
  for (const auto& n : kept) WriteFile(dir() + "/" + n, "x");
  EXPECT_EQ(RemoveCovered(dir(), 2, 3), static_cast<int>(covered.size()));
  std::vector<std::string> want = kept;
  std::sort(want.begin(), want.end());
  EXPECT_EQ(Names(dir()), want);
}

TEST_F(PersistLoadTest, DamagedSnapshotFailsLoadNamingTheFile) {
  for (int i = 0; i < 100; ++i)
    ASSERT_EQ(Set("k" + std::to_string(i), std::string(50, 'v')), Status::kOk);
  const SnapshotResult r = WriteSnapshot(dir(), live(), ps_.get(), kNow);
  ASSERT_TRUE(r.ok) << r.error;
  const std::string good = ReadFile(r.path);
  const size_t hdr = SnapHeaderBytes(4);
  const std::string end = EndMarkerBlock(100);
  ASSERT_EQ(good.substr(good.size() - end.size()), end);
  struct Damage {
    const char* what;
    std::string bytes;
  };
  std::vector<Damage> cases;
  std::string b = good;
  b[hdr + 40] ^= 0x01;
  cases.push_back({"a flipped bit in an items block", b});
  b = good;
  b[20] ^= 0x01;
  cases.push_back({"a flipped bit in the header", b});
  cases.push_back({"no end marker", good.substr(0, good.size() - end.size())});
  cases.push_back({"cut inside a block", good.substr(0, hdr + 30)});
  cases.push_back({"cut inside the header", good.substr(0, 40)});
  b = good.substr(0, good.size() - end.size()) + EndMarkerBlock(99);
  cases.push_back({"an end marker with the wrong count", b});
  for (const Damage& c : cases) {
    SCOPED_TRACE(c.what);
    WriteFile(r.path, c.bytes);
    Loaded got = LoadFresh(dir(), 4);
    EXPECT_FALSE(got.ok);
    EXPECT_NE(got.why.find(r.path), std::string::npos) << got.why;
  }
  WriteFile(r.path, good);
  Loaded got = LoadFresh(dir(), 4);
  ASSERT_TRUE(got.ok) << got.why;
  EXPECT_EQ(got.st.snapshot_items, 100u);
  EXPECT_EQ(Dump(got.store(), kNow), Dump(live(), kNow));
}

TEST_F(PersistLoadTest, LeftoverSnapshotTempFileIsRemoved) {
  WriteFile(dir() + "/" + SnapshotFileName(1, 1) + ".tmp", "half a snapshot");
  Loaded got = LoadFresh(dir(), 4);
  ASSERT_TRUE(got.ok) << got.why;
  EXPECT_TRUE(Names(dir()).empty());
}

// ---------------------------------------------------------------------------
// LogWriter: when a write may be acknowledged

TEST_F(PersistLoadTest, DurableIsWrittenForEverysecAndNo) {
  for (FsyncPolicy p : {FsyncPolicy::kEverySec, FsyncPolicy::kNo}) {
    SCOPED_TRACE(FsyncPolicyName(p));
    TempDir d;
    auto w = NewWriter(d.path(), p, ps_.get(), live());
    EXPECT_EQ(w->policy(), p);
    kv::SetJournal(w.get());
    ASSERT_EQ(Set("a", "1"), Status::kOk);
    kv::SetJournal(nullptr);
    EXPECT_GT(w->appended(), 0u);
    EXPECT_TRUE(w->has_pending());
    EXPECT_EQ(w->written(), 0u);
    EXPECT_EQ(w->durable(), 0u);
    ASSERT_TRUE(w->Flush()) << w->error();
    EXPECT_FALSE(w->has_pending());
    EXPECT_EQ(w->written(), w->appended());
    EXPECT_EQ(w->durable(), w->written());
    EXPECT_EQ(fs::file_size(d.path() + "/" + LogNames(d.path()).at(0)),
              kLogHeaderBytes + w->written());
    if (p == FsyncPolicy::kEverySec) {
      EXPECT_TRUE(WaitFor([&] { return w->synced() == w->written(); }, 5000))
          << "the once-a-second fsync";
    } else {
      EXPECT_EQ(w->synced(), 0u);
    }
    EXPECT_FALSE(w->failing());
  }
}

TEST_F(PersistLoadTest, AlwaysIsDurableOnlyAfterTheFsync) {
  auto w = NewWriter(dir(), FsyncPolicy::kAlways, ps_.get(), live());
  for (int round = 0; round < 5; ++round) {
    kv::SetJournal(w.get());
    ASSERT_EQ(Set("a" + std::to_string(round), "1"), Status::kOk);
    ASSERT_EQ(Set("b" + std::to_string(round), "2"), Status::kOk);
    kv::SetJournal(nullptr);
    const uint64_t appended = w->appended();
    ASSERT_TRUE(w->Flush()) << w->error();
    EXPECT_EQ(w->written(), appended);
    EXPECT_EQ(w->durable(), w->synced());
    EXPECT_LE(w->durable(), appended);
    // The event loop's side: wait on notify_fd until the fsync covers it.
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (w->synced() < appended && std::chrono::steady_clock::now() < end) {
      pollfd p{w->notify_fd(), POLLIN, 0};
      ASSERT_GE(poll(&p, 1, 100), 0);
      if (p.revents & POLLIN) w->DrainNotify();
    }
    ASSERT_GE(w->synced(), appended) << "round " << round;
    EXPECT_EQ(w->durable(), appended);
    EXPECT_FALSE(w->failing()) << w->error();
  }
}

TEST_F(PersistLoadTest, ShutdownWritesAndSyncsEverything) {
  for (FsyncPolicy p : {FsyncPolicy::kAlways, FsyncPolicy::kEverySec, FsyncPolicy::kNo}) {
    SCOPED_TRACE(FsyncPolicyName(p));
    TempDir d;
    auto w = NewWriter(d.path(), p, ps_.get(), live());
    kv::SetJournal(w.get());
    ASSERT_EQ(Set("x", "1"), Status::kOk);
    ASSERT_TRUE(w->Flush());
    ASSERT_EQ(Set("y", "2"), Status::kOk);  // encoded, never flushed by the "loop"
    kv::SetJournal(nullptr);
    const uint64_t appended = w->appended();
    w->Shutdown();
    EXPECT_FALSE(w->has_pending());
    EXPECT_EQ(w->written(), appended);
    if (p != FsyncPolicy::kNo) {
      EXPECT_EQ(w->synced(), appended);
    }
    Loaded got = LoadFresh(d.path(), 4);
    ASSERT_TRUE(got.ok) << got.why;
    EXPECT_EQ(Dump(got.store(), kNow), (Contents{{"x", {"1", -1}}, {"y", {"2", -1}}}));
  }
}

TEST_F(PersistLoadTest, NewGenerationStartsANewFile) {
  auto w = NewWriter(dir(), FsyncPolicy::kEverySec, ps_.get(), live());
  kv::SetJournal(w.get());
  ASSERT_EQ(Set("a", "1"), Status::kOk);
  ps_->gen.store(5);
  ASSERT_EQ(Set("b", "2"), Status::kOk);  // same Flush, two generations
  ASSERT_TRUE(w->Flush());
  ASSERT_EQ(Set("c", "3"), Status::kOk);
  ASSERT_TRUE(w->Flush());
  kv::SetJournal(nullptr);
  w->Shutdown();
  const auto logs = LogNames(dir());
  ASSERT_EQ(logs.size(), 2u);
  EXPECT_EQ(logs[0].rfind("log-000001-000001-", 0), 0u) << logs[0];
  EXPECT_EQ(logs[1].rfind("log-000001-000005-", 0), 0u) << logs[1];
  EXPECT_EQ(ps_->log_bytes.load(), w->written());
  Loaded got = LoadFresh(dir(), 4);
  ASSERT_TRUE(got.ok) << got.why;
  EXPECT_EQ(Dump(got.store(), kNow), Dump(live(), kNow));
  EXPECT_EQ(got.st.log_files, 2u);
}

// ---------------------------------------------------------------------------
// LogWriter: a failed fdatasync (injected)

uint64_t ProcessCpuMs() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

// Runs `body` in a child process, forked before any LogWriter thread exists:
// it returns "" when every check passed, else what failed. A child still
// running after `timeout_ms` is killed, so a blocked event loop fails the
// test instead of hanging the suite.
std::string InChild(const std::function<std::string()>& body, int timeout_ms = 15000) {
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  const pid_t pid = fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    close(fds[0]);
    std::string r;
    try {
      r = body();
    } catch (const std::exception& e) {
      r = std::string("exception: ") + e.what();
    }
    (void)!write(fds[1], r.data(), r.size());
    _exit(0);  // no LogWriter shutdown: it may be the thing that hangs
  }
  close(fds[1]);
  int status = 0;
  if (!WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, timeout_ms)) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    close(fds[0]);
    return "timed out: the event loop blocked (DrainNotify waits for the fsync thread's mutex)";
  }
  std::string out;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return "child died (status " + std::to_string(status) + ") " + out;
  return out;
}

// The `always` policy with an injected fdatasync failure. Everything runs in
// a child (InChild); checks append to `failed_`.
class FsyncFailureTest : public PersistLoadTest {
 protected:
  void TearDown() override {
    g_fail_fdatasync.store(0);
    PersistLoadTest::TearDown();
  }
  void Check(bool ok, const std::string& what) {
    if (!ok) failed_ += what + "; ";
  }
  // A worker's writer with one write synced.
  bool StartWriter() {
    w_ = NewWriter(dir(), FsyncPolicy::kAlways, ps_.get(), live());
    kv::SetJournal(w_.get());
    Set("before", "1");
    w_->Flush();
    return PumpUntil([&] { return w_->synced() >= w_->appended(); });
  }
  // The worker's event loop: on notify_fd, DrainNotify, until cond (bounded).
  bool PumpUntil(const std::function<bool()>& cond, int timeout_ms = 5000) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!cond()) {
      if (std::chrono::steady_clock::now() >= end) return false;
      pollfd p{w_->notify_fd(), POLLIN, 0};
      if (poll(&p, 1, 20) > 0) w_->DrainNotify();
    }
    return true;
  }
  // A write whose fdatasync fails: returns the position its reply waits for.
  // *at_failure: durable() right after the DrainNotify that reported the
  // failure (what the worker's ReleaseDurable sees).
  uint64_t WriteThatFailsToSync(int failures, uint64_t* at_failure) {
    g_fail_fdatasync.store(failures);
    Set("lost?", "2");
    const uint64_t gate = w_->appended();
    w_->Flush();
    Check(PumpUntil([&] {
            *at_failure = w_->durable();
            return w_->failing();
          }),
          "the failed fdatasync was not reported");
    return gate;
  }
  static std::string N(uint64_t v) { return std::to_string(v); }

  std::unique_ptr<LogWriter> w_;
  std::string failed_;
};

// Linux reports a writeback error to one fdatasync and then forgets it: a
// second fdatasync of the same file succeeds although the data may be gone.
// So while the worker refuses writes after the failure, durable() must stay
// below the write whose fsync failed (its reply is withheld and the
// connection closed), whatever the fsync thread does afterwards.
TEST_F(FsyncFailureTest, AlwaysNeverAcknowledgesAWriteWhoseFsyncFailed) {
  const std::string failed = InChild([&] {
    if (!StartWriter()) return std::string("the first write never synced");
    uint64_t at_failure = 0;
    const uint64_t gate = WriteThatFailsToSync(1, &at_failure);
    Check(at_failure < gate, "durable() " + N(at_failure) + " covered the failed write (" +
                                 N(gate) + ") when the loop saw the error");
    Check(w_->error().find("fdatasync") != std::string::npos, "error(): " + w_->error());
    Check(ps_->write_errors.load() >= 1, "write_errors not counted");
    Check(LastError(ps_.get()).find("fdatasync") != std::string::npos,
          "LastError: " + LastError(ps_.get()));
    PumpUntil([] { return false; }, 200);  // later rounds of the fsync thread
    Check(w_->durable() < gate,
          "later, durable() " + N(w_->durable()) + " covered the failed write (" + N(gate) + ")");
    Check(w_->failing(), "writes accepted again without a snapshot");
    return failed_;
  });
  EXPECT_TRUE(failed.empty()) << failed;
}

// The same when the loop moved on to a new file (a snapshot moved the
// generation) after the failure and before it read the notification: the
// failed file, now finished, must not be fsynced again and counted.
TEST_F(FsyncFailureTest, FailedFileFinishedBeforeTheLoopSawTheErrorIsNotTrusted) {
  const std::string failed = InChild([&] {
    if (!StartWriter()) return std::string("the first write never synced");
    g_fail_fdatasync.store(1);
    Set("lost?", "2");
    const uint64_t gate = w_->appended();
    w_->Flush();
    // The fsync thread failed and said so; the loop has not looked yet.
    pollfd p{w_->notify_fd(), POLLIN, 0};
    if (!WaitFor([&] { return g_fail_fdatasync.load() == 0; }, 5000) || poll(&p, 1, 5000) != 1)
      return std::string("the injected failure did not happen");
    ps_->gen.fetch_add(1);
    Set("next", "3");
    w_->Flush();
    Check(LogNames(dir()).size() == 2, "no new file for the new generation");
    uint64_t at_failure = 0;
    Check(PumpUntil([&] {
            at_failure = w_->durable();
            return w_->failing();
          }),
          "the failed fdatasync was not reported");
    Check(at_failure < gate, "durable() " + N(at_failure) + " covered the failed write (" +
                                 N(gate) + ") when the loop saw the error");
    PumpUntil([] { return false; }, 200);
    Check(w_->durable() < gate,
          "later, durable() " + N(w_->durable()) + " covered the failed write (" + N(gate) + ")");
    return failed_;
  });
  EXPECT_TRUE(failed.empty()) << failed;
}

// With fdatasync failing every time, the worker refuses writes and idles:
// its fsync thread must neither retry in a loop nor hold the mutex the event
// loop needs (DrainNotify).
TEST_F(FsyncFailureTest, PersistentFsyncErrorNeitherSpinsNorBlocksTheLoop) {
  const std::string failed = InChild([&] {
    if (!StartWriter()) return std::string("the first write never synced");
    uint64_t at_failure = 0;
    WriteThatFailsToSync(-1, &at_failure);
    const int calls0 = g_fdatasync_calls.load();
    const uint64_t cpu0 = ProcessCpuMs();
    PumpUntil([] { return false; }, 300);  // idle: no client writes while failing
    const int calls = g_fdatasync_calls.load() - calls0;
    const uint64_t cpu = ProcessCpuMs() - cpu0;
    Check(calls < 10, "fdatasync retried " + std::to_string(calls) + " times in 300 ms");
    Check(cpu < 100, "the fsync thread spins (" + N(cpu) + " ms of CPU in 300 ms idle)");
    return failed_;
  });
  EXPECT_TRUE(failed.empty()) << failed;
}

// The master takes a snapshot after a log error; once one covers the failed
// file the worker accepts writes again, without needing a write to notice
// (it refuses them all meanwhile: only its 1 s retry timer calls Flush).
TEST_F(FsyncFailureTest, SnapshotCoveringTheFailedLogEndsTheRefusal) {
  const std::string failed = InChild([&] {
    if (!StartWriter()) return std::string("the first write never synced");
    uint64_t at_failure = 0;
    WriteThatFailsToSync(1, &at_failure);
    if (!failed_.empty()) return failed_;
    kv::SetJournal(nullptr);
    const SnapshotResult r = WriteSnapshot(dir(), live(), ps_.get(), kNow);
    if (!r.ok) return "snapshot: " + r.error;
    ps_->last_snapshot_gen.store(r.gen);  // as the master does when it finishes
    for (int i = 0; i < 3; ++i) w_->Flush();
    if (w_->failing()) return std::string("writes stay refused after the covering snapshot");
    kv::SetJournal(w_.get());
    Set("after", "3");
    const uint64_t gate = w_->appended();
    Check(w_->Flush(), "Flush: " + w_->error());
    Check(PumpUntil([&] { return w_->durable() >= gate; }), "the next write never became durable");
    w_->Shutdown();
    Loaded got = LoadFresh(dir(), 4);
    if (!got.ok) return "load: " + got.why;
    Check(Dump(got.store(), kNow) == Dump(live(), kNow), "the reloaded store differs");
    return failed_;
  });
  EXPECT_TRUE(failed.empty()) << failed;
}

}  // namespace
}  // namespace pf::persist
