// tests/unit/test_kv_multiproc.cc: the KV engine across fork()ed processes:
// atomic INCR and SET/GET storms over shared memory, and a SIGKILL at every
// crash point followed by recovery, Verify() and a check of untouched keys.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "shared/kv/kv.h"
#include "shared/kv/layout.h"

namespace pf::kv {
namespace {

class Region {
 public:
  explicit Region(size_t size) : size_(size) {
    p_ = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p_ == MAP_FAILED) p_ = nullptr;
  }
  ~Region() {
    if (p_) munmap(p_, size_);
  }
  char* get() const { return static_cast<char*>(p_); }

 private:
  void* p_;
  size_t size_;
};

Store* MakeStore(void* base, size_t size, uint32_t shards, Eviction ev, uint64_t large_bytes = 0) {
  Limits l;
  l.max_key_bytes = 128;
  l.max_value_bytes = large_bytes ? 64 * 1024 : 16 * 1024;
  l.eviction = ev;
  std::string why;
  Store* s = Store::Format(base, size, shards, l, 42, &why, large_bytes);
  EXPECT_NE(s, nullptr) << why;
  return s;
}

void ExpectVerified(Store* s, const char* what) {
  for (uint32_t i = 0; i < s->shard_count(); ++i) {
    std::string why;
    EXPECT_TRUE(s->Verify(i, &why)) << what << " shard " << i << ": " << why;
  }
}

// Runs fn in a child; returns its wait status. The child never returns to gtest.
int RunChild(const std::function<void()>& fn) {
  pid_t pid = fork();
  if (pid == 0) {
    try {
      fn();
    } catch (...) {
      _exit(3);
    }
    _exit(0);
  }
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  return status;
}

bool KilledBySigkill(int status) { return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL; }

TEST(KvMultiProc, ConcurrentIncrByIsExact) {
  constexpr size_t kSize = 1 << 20;
  Region r(kSize);
  Store* s = MakeStore(r.get(), kSize, 4, Eviction::kNoEviction);
  ASSERT_NE(s, nullptr);
  std::vector<pid_t> kids;
  for (int p = 0; p < 4; ++p) {
    pid_t pid = fork();
    if (pid == 0) {
      int64_t v;
      for (int i = 0; i < 100000; ++i)
        if (s->IncrBy("counter", 1, 1000, &v) != Status::kOk) _exit(2);
      _exit(0);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  }
  std::string v;
  ASSERT_EQ(s->Get("counter", 1000, &v), Status::kOk);
  EXPECT_EQ(v, "400000");
  ExpectVerified(s, "incr");
}

void Storm(Store* s, bool expect_all_present) {
  constexpr int kProcs = 4, kOps = 20000, kShared = 64, kOwn = 50;
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    pid_t pid = fork();
    if (pid == 0) {
      uint64_t x = 88172645463325252ull + p;
      std::string v;
      for (int i = 0; i < kOps; ++i) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int k = static_cast<int>(x % kShared);
        std::string sk = "shared:" + std::to_string(k);
        std::string dk = "own" + std::to_string(p) + ":" + std::to_string(i % kOwn);
        switch (x >> 60 & 3) {
          case 0:
            if (s->Set(sk, sk + "=" + std::to_string(p) + std::string(x % 300, '.'), SetOptions{},
                       1000) != Status::kOk)
              _exit(2);
            break;
          case 1:
            if (s->Get(sk, 1000, &v) == Status::kOk && v.rfind(sk + "=", 0) != 0) _exit(4);
            break;
          case 2:
            s->Del(sk, 1000);
            break;
          default:
            break;
        }
        std::string want = std::to_string(i) + std::string(i % 200, '#');
        if (s->Set(dk, want, SetOptions{}, 1000) != Status::kOk) _exit(5);
        if (s->Get(dk, 1000, &v) == Status::kOk) {
          if (v != want) _exit(6);
        } else if (expect_all_present) {
          _exit(7);
        }
      }
      _exit(0);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "child exit status " << st;
  }
  if (expect_all_present) {
    for (int p = 0; p < kProcs; ++p)
      for (int i = kOps - kOwn; i < kOps; ++i) {
        std::string v;
        std::string dk = "own" + std::to_string(p) + ":" + std::to_string(i % kOwn);
        ASSERT_EQ(s->Get(dk, 1000, &v), Status::kOk) << dk;
        EXPECT_EQ(v, std::to_string(i) + std::string(i % 200, '#')) << dk;
      }
  }
}

TEST(KvMultiProc, SetGetStormSharedAndDisjointKeys) {
  constexpr size_t kSize = 4 << 20;
  Region r(kSize);
  Store* s = MakeStore(r.get(), kSize, 8, Eviction::kNoEviction);
  ASSERT_NE(s, nullptr);
  Storm(s, true);
  ExpectVerified(s, "storm");
}

TEST(KvMultiProc, SetGetStormUnderEviction) {
  constexpr size_t kSize = 48 << 10;
  Region r(kSize);
  Store* s = MakeStore(r.get(), kSize, 2, Eviction::kAllKeysLru);
  ASSERT_NE(s, nullptr);
  Storm(s, false);
  ExpectVerified(s, "lru storm");
  EXPECT_GT(s->GetStats().evictions, 0u);
}

// ---- crash points -----------------------------------------------------------

int PointNamed(const char* name) {
  for (int n = 1; n <= testing::CrashPointCount(); ++n)
    if (std::strcmp(testing::CrashPointName(n), name) == 0) return n;
  ADD_FAILURE() << "no crash point " << name;
  return -1;
}

// Four stores in one region: A (noeviction, holds the keys that must survive),
// B (allkeys-lru, for eviction and flush), C (noeviction, tiny, for the
// allocator's split/coalesce/trim paths), D (allkeys-lru with a large-object
// area: large values written, replaced, evicted, deleted and flushed).
struct CrashEnv {
  static constexpr size_t kA = 256 << 10, kB = 32 << 10, kC = 32 << 10, kD = 256 << 10,
                          kDLarge = 192 << 10;
  static constexpr int kKeep = 200, kKeepLarge = 3;
  Region region{kA + kB + kC + kD};
  Store* a = nullptr;
  Store* b = nullptr;
  Store* c = nullptr;
  Store* d = nullptr;

  void Format() {
    a = MakeStore(region.get(), kA, 2, Eviction::kNoEviction);
    b = MakeStore(region.get() + kA, kB, 1, Eviction::kAllKeysLru);
    c = MakeStore(region.get() + kA + kB, kC, 1, Eviction::kNoEviction);
    d = MakeStore(region.get() + kA + kB + kC, kD, 2, Eviction::kAllKeysLru, kDLarge);
    for (int i = 0; i < kKeep; ++i)
      ASSERT_EQ(a->Set(Key(i), Value(i), SetOptions{}, 1000), Status::kOk);
    for (int i = 0; i < kKeepLarge; ++i)
      ASSERT_EQ(d->Set(Key(i), LargeValue(i), SetOptions{}, 1000), Status::kOk);
  }
  static std::string LargeValue(int i) {
    return std::string(20000 + i, static_cast<char>('A' + i));
  }
  static std::string Key(int i) { return "keep:" + std::to_string(i); }
  static std::string Value(int i) {
    return "keep-value-" + std::to_string(i) + std::string(i % 40, '~');
  }

  // Reaches every crash point outside recovery (in some order).
  void Scenario() {
    std::string v;
    SetOptions none;
    a->Set("s:new", "v1", none, 1000);         // carve, fill, commit, link, counters
    a->Set("s:new", "v2-longer", none, 1000);  // overwrite: kill, unlink, free
    a->Get(Key(0), 1000, &v);                  // touch
    a->Get(Key(1), 1000, &v);
    a->Set("s:new", "v3", none, 1000);    // reuse from a free list
    a->SetExpire("s:new", 999999, 1000);  // expiry write
    int64_t r;
    a->IncrBy("s:ctr", 1, 1000, &r);
    std::vector<std::pair<std::string_view, std::string_view>> kvs = {{"s:m1", "1"}, {"s:m2", "2"}};
    a->MSet(kvs, 1000);
    SetOptions ex;
    ex.expire_at_ms = 1500;
    a->Set("s:exp", "v", ex, 1000);
    a->SweepExpired(a->ShardOf("s:exp"), 2000, 100);  // active expiry
    a->FlushPrefix("s:");
    // C: fill, free three neighbours, ask for a larger item (coalesce + split),
    // free the last chunk and ask for more than fits (trim).
    int n = 0;
    while (c->Set("c" + std::to_string(n), std::string(100, 'c'), none, 1000) == Status::kOk) ++n;
    for (int i = 0; i < 3; ++i) c->Del("c" + std::to_string(i), 1000);
    c->Set("cbig", std::string(240, 'b'), none, 1000);
    c->Del("c" + std::to_string(n - 1), 1000);
    c->Set("chuge", std::string(2000, 'h'), none, 1000);
    // B: fill past capacity (evict), then flush everything.
    for (int i = 0; i < 1000 && b->GetStats().evictions == 0; ++i)
      b->Set("b" + std::to_string(i), std::string(100, 'b'), none, 1000);
    b->FlushAll();
    // D: a large value written, replaced (the old run freed), deleted; then
    // more than the area holds (eviction of large values), and a flush.
    d->Set("L:new", std::string(30000, 'n'), none, 1000);
    d->Set("L:new", std::string(25000, 'm'), none, 1000);
    d->Del("L:new", 1000);
    for (int i = 0; i < 12; ++i)
      d->Set("L:" + std::to_string(i), std::string(40000, 'f'), none, 1000);
    d->FlushAll();
  }

  void CheckAfterCrash(const std::string& what) {
    uint64_t before = testing::RecoveryCount();
    for (Store* s : {a, b, c, d}) ExpectVerified(s, what.c_str());
    EXPECT_GE(testing::RecoveryCount(), before + 1) << what << ": no shard needed repair";
    for (int i = 0; i < kKeep; ++i) {
      std::string v;
      ASSERT_EQ(a->Get(Key(i), 1000, &v), Status::kOk) << what << " lost " << Key(i);
      ASSERT_EQ(v, Value(i)) << what;
    }
    // D's large values survive unless the scenario flushed them.
    for (int i = 0; i < kKeepLarge; ++i) {
      std::string v;
      if (d->Get(Key(i), 1000, &v) == Status::kOk) {
        EXPECT_EQ(v, LargeValue(i)) << what;
      }
    }
    // The stores keep working, and no large run leaked: a value that needs
    // most of D's area still fits once the others are deleted.
    for (Store* s : {a, b, c, d}) {
      EXPECT_EQ(s->Set("after", "crash", SetOptions{}, 1000), Status::kOk) << what;
      std::string v;
      EXPECT_EQ(s->Get("after", 1000, &v), Status::kOk) << what;
      EXPECT_EQ(s->Del("after", 1000), Status::kOk) << what;
    }
    std::vector<std::string> left;  // every key, deleted one by one (a flush would hide a leak)
    uint64_t cursor = 0;
    do cursor = d->Scan(cursor, 100, 1000, &left);
    while (cursor);
    for (const std::string& k : left) d->Del(k, 1000);
    EXPECT_EQ(d->GetStats().large_used_bytes, 0u) << what << ": a large run leaked";
    for (int i = 0; i < kKeepLarge; ++i)
      EXPECT_EQ(d->Set(Key(i), LargeValue(i), SetOptions{}, 1000), Status::kOk) << what;
    for (Store* s : {a, b, c, d}) ExpectVerified(s, what.c_str());
  }
};

TEST(KvCrash, EveryCrashPointIsReachedAndRecovered) {
  CrashEnv env;
  const int commit = PointNamed("Commit");
  for (int n = 1; n <= testing::CrashPointCount(); ++n) {
    std::string name = testing::CrashPointName(n);
    SCOPED_TRACE("crash point " + std::to_string(n) + " " + name);
    env.Format();
    if (name == "LargeCollect") {
      // First leave an orphan run behind (its item never committed), then die
      // while the repair frees it.
      ASSERT_TRUE(KilledBySigkill(RunChild([&] {
        testing::SetCrashPoint(PointNamed("LargeFill"));
        env.d->Set("L:orphan", std::string(30000, 'o'), SetOptions{}, 1000);
      })));
      int st = RunChild([&] {
        testing::SetCrashPoint(n);
        std::string v;
        env.d->Get("L:orphan", 1000, &v);
      });
      ASSERT_TRUE(KilledBySigkill(st)) << name << " not reached (status " << st << ")";
    } else if (name.rfind("Rebuild", 0) == 0) {
      // First leave a dead owner behind, then die inside its repair.
      ASSERT_TRUE(KilledBySigkill(RunChild([&] {
        testing::SetCrashPoint(commit);
        env.a->Set("s:x", "v", SetOptions{}, 1000);
      })));
      int st = RunChild([&] {
        testing::SetCrashPoint(n);
        std::string v;
        env.a->Get("s:x", 1000, &v);
      });
      ASSERT_TRUE(KilledBySigkill(st)) << name << " not reached (status " << st << ")";
    } else {
      int st = RunChild([&] {
        testing::SetCrashPoint(n);
        env.Scenario();
      });
      ASSERT_TRUE(KilledBySigkill(st)) << name << " not reached (status " << st << ")";
    }
    env.CheckAfterCrash(name);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// Dying just before the commit store rolls back; just after it rolls forward
// (the new copy has the higher stamp and wins over the old one).
TEST(KvCrash, OverwriteIsAtomicAcrossACrash) {
  CrashEnv env;
  // A value too long for the old chunk: a new copy.
  const std::string longer(200, 'N');
  for (const char* point : {"Fill", "Commit", "Kill", "LinkBucket"}) {
    SCOPED_TRACE(point);
    env.Format();
    int n = PointNamed(point);
    ASSERT_TRUE(KilledBySigkill(RunChild([&] {
      testing::SetCrashPoint(n);
      env.a->Set(CrashEnv::Key(5), longer, SetOptions{}, 1000);
    })));
    std::string v;
    ASSERT_EQ(env.a->Get(CrashEnv::Key(5), 1000, &v), Status::kOk);
    EXPECT_EQ(v, std::strcmp(point, "Fill") == 0 ? CrashEnv::Value(5) : longer);
    ExpectVerified(env.a, point);
    EXPECT_EQ(env.a->DbSize(), static_cast<uint64_t>(CrashEnv::kKeep));
  }
}

// A value that fits the old chunk is written in place under the shard's
// undo record: a crash anywhere before the record is cleared rolls back to
// the old value and expiry, whole.
TEST(KvCrash, InPlaceOverwriteRollsBackAcrossACrash) {
  CrashEnv env;
  for (const char* point : {"UndoSet", "InPlace"}) {
    SCOPED_TRACE(point);
    env.Format();
    const int n = PointNamed(point);
    ASSERT_TRUE(KilledBySigkill(RunChild([&] {
      testing::SetCrashPoint(n);
      SetOptions ex;
      ex.expire_at_ms = 999999;
      env.a->Set(CrashEnv::Key(7), "short new", ex, 1000);
    })));
    std::string v;
    ASSERT_EQ(env.a->Get(CrashEnv::Key(7), 1000, &v), Status::kOk);
    EXPECT_EQ(v, CrashEnv::Value(7));
    int64_t at = 0;
    ASSERT_EQ(env.a->GetExpire(CrashEnv::Key(7), 1000, &at), Status::kOk);
    EXPECT_EQ(at, -1);
    ExpectVerified(env.a, point);
    // ... and the same write then goes through in place.
    ASSERT_EQ(env.a->Set(CrashEnv::Key(7), "short new", SetOptions{}, 1000), Status::kOk);
    ASSERT_EQ(env.a->Get(CrashEnv::Key(7), 1000, &v), Status::kOk);
    EXPECT_EQ(v, "short new");
    ExpectVerified(env.a, point);
  }
}

// A shard whose arena is corrupt is never served: the repair fails, the error
// is loud, and the mutex stays unrecoverable. Other shards keep working.
TEST(KvCrash, CorruptShardIsRefusedNotServed) {
  CrashEnv env;
  env.Format();
  const std::string victim = CrashEnv::Key(3);
  const uint32_t shard = env.a->ShardOf(victim);
  ASSERT_TRUE(KilledBySigkill(RunChild([&] {
    testing::SetCrashPoint(PointNamed("Commit"));
    env.a->Set(victim, std::string(200, 'x'), SetOptions{}, 1000);  // a new copy
  })));
  // Scribble over the start of that shard's arena (a wild write by the dead process).
  auto* h = reinterpret_cast<internal::StoreHeader*>(env.region.get());
  auto* sh = reinterpret_cast<internal::ShardHeader*>(env.region.get() + h->shards_off +
                                                      shard * h->shard_stride);
  std::memset(reinterpret_cast<char*>(sh) + sh->arena_begin, 0xAB, 4096);
  std::string v;
  EXPECT_THROW(env.a->Get(victim, 1000, &v), ShardUnrecoverable);
  EXPECT_THROW(env.a->Get(victim, 1000, &v), ShardUnrecoverable);  // stays refused
  for (int i = 0; i < CrashEnv::kKeep; ++i) {
    if (env.a->ShardOf(CrashEnv::Key(i)) == shard) continue;
    ASSERT_EQ(env.a->Get(CrashEnv::Key(i), 1000, &v), Status::kOk);
    EXPECT_EQ(v, CrashEnv::Value(i));
  }
}

}  // namespace
}  // namespace pf::kv
