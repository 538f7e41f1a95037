// tests/unit/test_kv.cc: single-process semantics of the KV engine: every
// operation and status, expiry, eviction, the arena, collisions, SCAN, and
// Verify() after every test.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "shared/kv/kv.h"
#include "shared/kv/layout.h"
#include "shared/util/hash.h"

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
  void* get() const { return p_; }
  size_t size() const { return size_; }

 private:
  void* p_;
  size_t size_;
};

class KvTest : public ::testing::Test {
 protected:
  void Make(size_t size, uint32_t shards, Eviction ev = Eviction::kNoEviction, uint32_t buckets = 0,
            uint64_t large_bytes = 0, uint32_t max_value = 64 * 1024) {
    size += large_bytes;  // the shards get `size`; the large-object area comes on top
    region_ = std::make_unique<Region>(size);
    ASSERT_NE(region_->get(), nullptr);
    Limits l;
    l.max_key_bytes = 64;
    l.max_value_bytes = max_value;
    l.eviction = ev;
    testing::SetFormatBuckets(buckets);
    std::string why;
    store_ = Store::Format(region_->get(), size, shards, l, 0x1234, &why, large_bytes);
    testing::SetFormatBuckets(0);
    ASSERT_NE(store_, nullptr) << why;
  }
  void SetUp() override { Make(1 << 20, 4); }
  void TearDown() override {
    if (!store_) return;
    for (uint32_t i = 0; i < store_->shard_count(); ++i) {
      std::string why;
      EXPECT_TRUE(store_->Verify(i, &why)) << "shard " << i << ": " << why;
    }
  }
  void VerifyAll() {
    for (uint32_t i = 0; i < store_->shard_count(); ++i) {
      std::string why;
      ASSERT_TRUE(store_->Verify(i, &why)) << "shard " << i << ": " << why;
    }
  }
  Status Put(std::string_view k, std::string_view v, uint64_t now = 1000) {
    return store_->Set(k, v, SetOptions{}, now);
  }
  std::string GetOr(std::string_view k, uint64_t now = 1000, std::string dflt = "<none>") {
    std::string v;
    return store_->Get(k, now, &v) == Status::kOk ? v : dflt;
  }
  // Keys that hash to `shard`.
  std::vector<std::string> KeysInShard(uint32_t shard, size_t n, const std::string& pfx = "k") {
    std::vector<std::string> out;
    for (int i = 0; out.size() < n; ++i) {
      std::string k = pfx + std::to_string(i);
      if (store_->ShardOf(k) == shard) out.push_back(k);
    }
    return out;
  }

  std::unique_ptr<Region> region_;
  Store* store_ = nullptr;
};

TEST(SipHash, MatchesReferenceVectors) {
  uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
  unsigned char msg[64];
  for (int i = 0; i < 64; ++i) msg[i] = static_cast<unsigned char>(i);
  EXPECT_EQ(SipHash24(k0, k1, msg, 0), 0x726fdb47dd0e0e31ull);
  EXPECT_EQ(SipHash24(k0, k1, msg, 15), 0xa129ca6149be45e5ull);
  EXPECT_NE(SipHash13(k0, k1, msg, 15), SipHash13(k0 + 1, k1, msg, 15));
}

TEST_F(KvTest, GetSetDelExists) {
  std::string v;
  EXPECT_EQ(store_->Get("a", 1000, &v), Status::kNotFound);
  EXPECT_EQ(Put("a", "1"), Status::kOk);
  EXPECT_EQ(store_->Get("a", 1000, &v), Status::kOk);
  EXPECT_EQ(v, "1");
  EXPECT_TRUE(store_->Exists("a", 1000));
  EXPECT_EQ(Put("a", "second value"), Status::kOk);
  EXPECT_EQ(GetOr("a"), "second value");
  EXPECT_EQ(Put("", ""), Status::kOk);  // empty key and value are legal
  EXPECT_EQ(GetOr(""), "");
  EXPECT_EQ(store_->DbSize(), 2u);
  EXPECT_EQ(store_->Del("a", 1000), Status::kOk);
  EXPECT_EQ(store_->Del("a", 1000), Status::kNotFound);
  EXPECT_FALSE(store_->Exists("a", 1000));
  EXPECT_EQ(store_->DbSize(), 1u);
  Stats st = store_->GetStats();
  EXPECT_EQ(st.hits, 3u);
  EXPECT_EQ(st.misses, 1u);
  std::string bin("x\0y\xff", 4);
  EXPECT_EQ(Put(bin, bin), Status::kOk);
  EXPECT_EQ(GetOr(bin), bin);
}

TEST_F(KvTest, TooLarge) {
  EXPECT_EQ(Put(std::string(65, 'k'), "v"), Status::kTooLarge);
  EXPECT_EQ(Put(std::string(64, 'k'), "v"), Status::kOk);
  EXPECT_EQ(Put("k", std::string(64 * 1024 + 1, 'v')), Status::kTooLarge);
  EXPECT_EQ(Put("k", std::string(64 * 1024, 'v')), Status::kOk);
  int64_t r;
  EXPECT_EQ(store_->IncrBy(std::string(65, 'k'), 1, 1000, &r), Status::kTooLarge);
  store_->SetLimits(Limits{8, 8, Eviction::kNoEviction});
  EXPECT_EQ(Put("k", "123456789"), Status::kTooLarge);
  EXPECT_EQ(Put("123456789", "v"), Status::kTooLarge);
}

TEST_F(KvTest, SetConditionsKeepTtlAndOldValue) {
  SetOptions nx;
  nx.cond = SetOptions::kIfAbsent;
  SetOptions xx;
  xx.cond = SetOptions::kIfPresent;
  EXPECT_EQ(store_->Set("k", "x", xx, 1000), Status::kNotDone);
  EXPECT_FALSE(store_->Exists("k", 1000));
  EXPECT_EQ(store_->Set("k", "1", nx, 1000), Status::kOk);
  std::string old;
  bool had = true;
  EXPECT_EQ(store_->Set("k", "2", nx, 1000, &old, &had), Status::kNotDone);
  EXPECT_TRUE(had);
  EXPECT_EQ(old, "1");
  EXPECT_EQ(GetOr("k"), "1");
  EXPECT_EQ(store_->Set("k", "3", xx, 1000, &old, &had), Status::kOk);
  EXPECT_EQ(old, "1");
  EXPECT_EQ(GetOr("k"), "3");
  EXPECT_EQ(store_->Set("new", "v", SetOptions{}, 1000, &old, &had), Status::kOk);
  EXPECT_FALSE(had);

  SetOptions ex;
  ex.expire_at_ms = 5000;
  EXPECT_EQ(store_->Set("t", "v", ex, 1000), Status::kOk);
  int64_t at = 0;
  EXPECT_EQ(store_->GetExpire("t", 1000, &at), Status::kOk);
  EXPECT_EQ(at, 5000);
  SetOptions keep;
  keep.keep_ttl = true;
  EXPECT_EQ(store_->Set("t", "v2", keep, 1000), Status::kOk);
  EXPECT_EQ(store_->GetExpire("t", 1000, &at), Status::kOk);
  EXPECT_EQ(at, 5000);
  EXPECT_EQ(Put("t", "v3"), Status::kOk);  // a plain SET clears the TTL
  EXPECT_EQ(store_->GetExpire("t", 1000, &at), Status::kOk);
  EXPECT_EQ(at, -1);
  EXPECT_EQ(store_->Set("fresh", "v", keep, 1000), Status::kOk);
  EXPECT_EQ(store_->GetExpire("fresh", 1000, &at), Status::kOk);
  EXPECT_EQ(at, -1);
  EXPECT_EQ(store_->GetStats().expires, 0u);
}

TEST_F(KvTest, ExpiryIsLazyAndCounted) {
  SetOptions ex;
  ex.expire_at_ms = 2000;
  ASSERT_EQ(store_->Set("e", "v", ex, 1000), Status::kOk);
  EXPECT_EQ(store_->GetStats().expires, 1u);
  EXPECT_EQ(GetOr("e", 2000), "v");  // expired only after the deadline
  EXPECT_EQ(GetOr("e", 2001), "<none>");
  Stats st = store_->GetStats();
  EXPECT_EQ(st.keys, 0u);
  EXPECT_EQ(st.expires, 0u);
  EXPECT_EQ(st.expired, 1u);
  // NX sees an expired key as absent.
  ASSERT_EQ(store_->Set("e2", "v", ex, 1000), Status::kOk);
  SetOptions nx;
  nx.cond = SetOptions::kIfAbsent;
  EXPECT_EQ(store_->Set("e2", "w", nx, 3000), Status::kOk);
  EXPECT_EQ(GetOr("e2", 3000), "w");
  EXPECT_FALSE(store_->Exists("gone", 3000));
}

TEST_F(KvTest, SetExpireGetExpirePersist) {
  int64_t at;
  EXPECT_EQ(store_->SetExpire("missing", 5000, 1000), Status::kNotDone);
  EXPECT_EQ(store_->GetExpire("missing", 1000, &at), Status::kNotFound);
  ASSERT_EQ(Put("k", "v"), Status::kOk);
  EXPECT_EQ(store_->SetExpire("k", -1, 1000), Status::kNotDone);  // PERSIST without TTL
  EXPECT_EQ(store_->SetExpire("k", 5000, 1000), Status::kOk);
  EXPECT_EQ(store_->GetExpire("k", 1000, &at), Status::kOk);
  EXPECT_EQ(at, 5000);
  EXPECT_EQ(store_->GetStats().expires, 1u);
  EXPECT_EQ(store_->SetExpire("k", 6000, 1000), Status::kOk);
  EXPECT_EQ(store_->GetStats().expires, 1u);
  EXPECT_EQ(store_->SetExpire("k", -1, 1000), Status::kOk);
  EXPECT_EQ(store_->GetExpire("k", 1000, &at), Status::kOk);
  EXPECT_EQ(at, -1);
  EXPECT_EQ(store_->GetStats().expires, 0u);
  EXPECT_EQ(store_->SetExpire("k", 1000, 1000), Status::kOk);  // deadline now: deleted
  EXPECT_FALSE(store_->Exists("k", 1000));
}

TEST_F(KvTest, IncrBy) {
  int64_t r = 0;
  EXPECT_EQ(store_->IncrBy("n", 5, 1000, &r), Status::kOk);
  EXPECT_EQ(r, 5);
  EXPECT_EQ(store_->IncrBy("n", -7, 1000, &r), Status::kOk);
  EXPECT_EQ(r, -2);
  EXPECT_EQ(GetOr("n"), "-2");
  for (const char* bad :
       {"", " 1", "1 ", "+1", "01", "-0", "-", "1a", "0x10", "9223372036854775808",
        "-9223372036854775809", "99999999999999999999", "1.5"}) {
    ASSERT_EQ(Put("b", bad), Status::kOk);
    EXPECT_EQ(store_->IncrBy("b", 1, 1000, &r), Status::kNotInteger) << "'" << bad << "'";
    EXPECT_EQ(GetOr("b"), bad);
  }
  ASSERT_EQ(Put("m", "9223372036854775807"), Status::kOk);
  EXPECT_EQ(store_->IncrBy("m", 1, 1000, &r), Status::kOverflow);
  EXPECT_EQ(store_->IncrBy("m", -1, 1000, &r), Status::kOk);
  EXPECT_EQ(r, INT64_MAX - 1);
  ASSERT_EQ(Put("m", "-9223372036854775808"), Status::kOk);
  EXPECT_EQ(store_->IncrBy("m", -1, 1000, &r), Status::kOverflow);
  EXPECT_EQ(store_->IncrBy("m", 0, 1000, &r), Status::kOk);
  EXPECT_EQ(r, INT64_MIN);
  ASSERT_EQ(Put("z", "0"), Status::kOk);
  EXPECT_EQ(store_->IncrBy("z", 1, 1000, &r), Status::kOk);
  EXPECT_EQ(r, 1);
  // INCR keeps the TTL.
  SetOptions ex;
  ex.expire_at_ms = 9000;
  ASSERT_EQ(store_->Set("t", "10", ex, 1000), Status::kOk);
  EXPECT_EQ(store_->IncrBy("t", 1, 1000, &r), Status::kOk);
  int64_t at;
  EXPECT_EQ(store_->GetExpire("t", 1000, &at), Status::kOk);
  EXPECT_EQ(at, 9000);
  EXPECT_EQ(GetOr("t"), "11");
}

TEST_F(KvTest, RandomKeyIsAboutUniformAndSkipsExpiredKeys) {
  std::string k;
  EXPECT_FALSE(store_->RandomKey(1000, 1, &k));
  constexpr int kKeys = 500, kDraws = 50000;
  std::map<std::string, int> seen;
  for (int i = 0; i < kKeys; ++i) ASSERT_EQ(Put("r" + std::to_string(i), "v"), Status::kOk);
  SetOptions gone;
  gone.expire_at_ms = 1500;
  store_->Set("expired", "v", gone, 1000);
  for (int d = 0; d < kDraws; ++d) {
    ASSERT_TRUE(store_->RandomKey(2000, 0x1234 + d * 7919ull, &k));
    seen[k]++;
  }
  EXPECT_EQ(seen.count("expired"), 0u);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kKeys));  // every key drawn
  int lo = kDraws, hi = 0;
  for (const auto& [key, n] : seen) {
    lo = std::min(lo, n);
    hi = std::max(hi, n);
  }
  // 100 expected each (a key sharing its bucket with another, about 50, as
  // in Redis); a scan from a shard's start would give the first keys of each
  // shard thousands and most keys none.
  EXPECT_GT(lo, 20);
  EXPECT_LT(hi, 200);
}

TEST_F(KvTest, SweepEstimatesTheMeanRemainingTtl) {
  EXPECT_EQ(store_->GetStats().avg_ttl_ms, 0u);
  SetOptions a, b;
  a.expire_at_ms = 1000 + 10'000;
  b.expire_at_ms = 1000 + 30'000;
  for (int i = 0; i < 20; ++i) store_->Set("a" + std::to_string(i), "v", a, 1000);
  for (int i = 0; i < 20; ++i) store_->Set("b" + std::to_string(i), "v", b, 1000);
  ASSERT_EQ(Put("no-ttl", "v"), Status::kOk);
  for (uint32_t sh = 0; sh < store_->shard_count(); ++sh) store_->SweepExpired(sh, 1000, 100);
  // The first sample of each shard sets its average; keys without a TTL do not count.
  const uint64_t avg = store_->GetStats().avg_ttl_ms;
  EXPECT_GT(avg, 14'000u);
  EXPECT_LT(avg, 26'000u);
  // Later samples move it slowly, as Redis' does.
  for (uint32_t sh = 0; sh < store_->shard_count(); ++sh) store_->SweepExpired(sh, 9000, 100);
  EXPECT_LT(store_->GetStats().avg_ttl_ms, avg);
  EXPECT_GT(store_->GetStats().avg_ttl_ms, avg - 1000);
  // No key with a TTL left: 0.
  for (int i = 0; i < 20; ++i) store_->Del("a" + std::to_string(i), 1000);
  for (int i = 0; i < 20; ++i) store_->Del("b" + std::to_string(i), 1000);
  for (uint32_t sh = 0; sh < store_->shard_count(); ++sh) store_->SweepExpired(sh, 9000, 100);
  EXPECT_EQ(store_->GetStats().avg_ttl_ms, 0u);
}

TEST_F(KvTest, SweepExpiredRemovesOnlyExpiredWithBoundedWork) {
  Make(256 * 1024, 1);
  SetOptions ex;
  for (int i = 0; i < 300; ++i) {
    ex.expire_at_ms = (i % 3 == 0) ? 2000 : -1;
    ASSERT_EQ(store_->Set("s" + std::to_string(i), "v", ex, 1000), Status::kOk);
  }
  EXPECT_EQ(store_->SweepExpired(0, 1500, 1000), 0u);  // nothing expired yet
  size_t total = store_->SweepExpired(0, 3000, 10);    // bounded by max_keys
  EXPECT_GT(total, 0u);
  EXPECT_LE(total, 10u);
  for (int i = 0; i < 100; ++i) total += store_->SweepExpired(0, 3000, 1000);
  EXPECT_EQ(total, 100u);
  Stats st = store_->GetStats();
  EXPECT_EQ(st.keys, 200u);
  EXPECT_EQ(st.expires, 0u);
  EXPECT_EQ(st.expired, 100u);
  EXPECT_EQ(store_->SweepExpired(0, 3000, 1000), 0u);
}

TEST_F(KvTest, NoEvictionGivesOomAndDeleteMakesRoom) {
  Make(64 * 1024, 1);
  std::string val(200, 'v');
  int n = 0;
  Status st;
  while ((st = Put("f" + std::to_string(n), val)) == Status::kOk) ++n;
  EXPECT_EQ(st, Status::kOom);
  EXPECT_GT(n, 100);
  EXPECT_EQ(store_->DbSize(), static_cast<uint64_t>(n));
  EXPECT_EQ(GetOr("f0"), val);  // nothing evicted
  EXPECT_EQ(store_->GetStats().evictions, 0u);
  ASSERT_EQ(store_->Del("f3", 1000), Status::kOk);
  EXPECT_EQ(Put("again", val), Status::kOk);
  EXPECT_EQ(Put("more", val), Status::kOom);
  int64_t r;
  EXPECT_EQ(store_->IncrBy("f1", 1, 1000, &r), Status::kNotInteger);
  // A value larger than the whole shard can never fit.
  EXPECT_EQ(Put("huge", std::string(64 * 1024, 'h')), Status::kOom);
}

TEST_F(KvTest, AllKeysLruEvictsLeastRecentlyUsedFromSameShard) {
  Make(64 * 1024, 1, Eviction::kAllKeysLru);
  std::string val(200, 'v');
  int n = 0;
  while (store_->GetStats().evictions == 0) {
    ASSERT_EQ(Put("l" + std::to_string(n), val), Status::kOk);
    ++n;
    if (n % 10 == 0) {
      ASSERT_EQ(GetOr("l0"), val);  // keep l0 recent
    }
  }
  EXPECT_EQ(GetOr("l0"), val);
  EXPECT_FALSE(store_->Exists("l1", 1000));  // least recently used went first
  for (int i = 0; i < 3 * n; ++i) {
    ASSERT_EQ(Put("m" + std::to_string(i), val), Status::kOk);
    if (i % 10 == 0) {
      ASSERT_EQ(GetOr("l0"), val);
    }
  }
  EXPECT_EQ(GetOr("l0"), val);
  EXPECT_TRUE(store_->Exists("m" + std::to_string(3 * n - 1), 1000));
  EXPECT_GT(store_->GetStats().evictions, static_cast<uint64_t>(2 * n));
  // A larger value evicts as many small ones as needed.
  EXPECT_EQ(Put("big", std::string(8000, 'b')), Status::kOk);
  EXPECT_EQ(GetOr("big").size(), 8000u);
  // More than the shard can hold: kOom even with eviction.
  EXPECT_EQ(Put("huge", std::string(64 * 1024, 'h')), Status::kOom);
}

TEST_F(KvTest, ArenaReusesFreedChunksAndUsedBytesReturns) {
  Make(128 * 1024, 1);
  uint64_t start = store_->GetStats().used_bytes;
  EXPECT_EQ(start, 0u);
  auto fill = [&](const std::string& pfx, size_t vlen) {
    int n = 0;
    while (Put(pfx + std::to_string(n), std::string(vlen, 'x')) == Status::kOk) ++n;
    return n;
  };
  int n1 = fill("a", 100);
  VerifyAll();
  for (int i = 0; i < n1; ++i) ASSERT_EQ(store_->Del("a" + std::to_string(i), 1000), Status::kOk);
  EXPECT_EQ(store_->GetStats().used_bytes, start);
  int n2 = fill("a", 100);
  EXPECT_EQ(n1, n2);
  VerifyAll();
  for (int i = 0; i < n2; ++i) ASSERT_EQ(store_->Del("a" + std::to_string(i), 1000), Status::kOk);
  // Small chunks coalesce so larger items fit after them.
  int n3 = fill("b", 1000);
  EXPECT_GT(n3, n1 / 12);
  VerifyAll();
  for (int i = 0; i < n3; ++i) ASSERT_EQ(store_->Del("b" + std::to_string(i), 1000), Status::kOk);
  int n4 = fill("c", 100);
  EXPECT_GE(n4, n1 * 9 / 10);
  EXPECT_EQ(store_->GetStats().capacity_bytes, store_->GetShardStats(0).capacity_bytes);
}

TEST_F(KvTest, HashCollisionsInOneBucket) {
  Make(1 << 20, 2, Eviction::kNoEviction, /*buckets=*/1);
  for (int i = 0; i < 2000; ++i)
    ASSERT_EQ(Put("c" + std::to_string(i), std::to_string(i)), Status::kOk);
  VerifyAll();
  for (int i = 0; i < 2000; i += 2)
    ASSERT_EQ(store_->Del("c" + std::to_string(i), 1000), Status::kOk);
  for (int i = 0; i < 2000; ++i)
    ASSERT_EQ(GetOr("c" + std::to_string(i)), i % 2 ? std::to_string(i) : "<none>");
  std::set<std::string> seen;
  uint64_t cur = 0;
  do {
    std::vector<std::string> keys;
    cur = store_->Scan(cur, 1, 1000, &keys);
    seen.insert(keys.begin(), keys.end());
  } while (cur != 0);
  EXPECT_EQ(seen.size(), 1000u);
}

TEST_F(KvTest, ScanReturnsEveryStableKeyDespiteConcurrentChanges) {
  Make(1 << 20, 4);
  std::set<std::string> stable;
  for (int i = 0; i < 500; ++i) {
    stable.insert("s" + std::to_string(i));
    ASSERT_EQ(Put("s" + std::to_string(i), "v"), Status::kOk);
  }
  for (int i = 0; i < 500; ++i) ASSERT_EQ(Put("t" + std::to_string(i), "v"), Status::kOk);
  std::set<std::string> seen;
  uint64_t cur = 0;
  int step = 0, calls = 0;
  do {
    std::vector<std::string> keys;
    cur = store_->Scan(cur, 7, 1000, &keys);
    seen.insert(keys.begin(), keys.end());
    ++calls;
    // Between calls: delete transient keys, add new ones.
    for (int j = 0; j < 5; ++j, ++step) {
      store_->Del("t" + std::to_string(step % 500), 1000);
      ASSERT_EQ(Put("n" + std::to_string(step), "v"), Status::kOk);
    }
  } while (cur != 0);
  EXPECT_GT(calls, 10);
  for (const auto& k : stable) EXPECT_TRUE(seen.count(k)) << k;
  // Expired keys are not returned.
  SetOptions ex;
  ex.expire_at_ms = 1500;
  ASSERT_EQ(store_->Set("exp", "v", ex, 1000), Status::kOk);
  std::set<std::string> later;
  cur = 0;
  do {
    std::vector<std::string> keys;
    cur = store_->Scan(cur, 1000, 2000, &keys);
    later.insert(keys.begin(), keys.end());
  } while (cur != 0);
  EXPECT_FALSE(later.count("exp"));
  EXPECT_TRUE(later.count("s0"));
  EXPECT_EQ(store_->Scan(uint64_t{99} << 32, 10, 1000, nullptr), 0u);  // bad shard ends
}

// The cost of SCAN follows the keys, not the buckets: 64 MiB in 16 shards is
// about half a million buckets (the default sizing), and a full iteration of
// an empty, a small or a once-full-now-empty store is one call.
TEST_F(KvTest, ScanOfEmptyOrSmallStoreIsOneCall) {
  Make(64 << 20, 16);
  std::vector<std::string> keys;
  EXPECT_EQ(store_->Scan(0, 10, 1000, &keys), 0u);
  EXPECT_TRUE(keys.empty());
  for (const char* k : {"a", "b", "c"}) ASSERT_EQ(Put(k, "v"), Status::kOk);
  EXPECT_EQ(store_->Scan(0, 10, 1000, &keys), 0u);
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "b", "c"}));
  // Fill, then empty again: the summary's stale marks are found empty and
  // cleared, and never hide a key.
  for (int i = 0; i < 20000; ++i) ASSERT_EQ(Put("f" + std::to_string(i), "v"), Status::kOk);
  for (int i = 0; i < 20000; ++i)
    ASSERT_EQ(store_->Del("f" + std::to_string(i), 1000), Status::kOk);
  keys.clear();
  uint64_t cur = 0;
  int calls = 0;
  do {
    cur = store_->Scan(cur, 10, 1000, &keys);
    ++calls;
  } while (cur != 0 && calls < 100);
  EXPECT_LE(calls, 4);  // 20000 stale blocks at most cost a few budgets, once
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "b", "c"}));
  keys.clear();
  EXPECT_EQ(store_->Scan(0, 10, 1000, &keys), 0u);  // the marks are clear now
  EXPECT_EQ(keys.size(), 3u);
  VerifyAll();
  EXPECT_EQ(store_->FlushAll(), 3u);
  keys.clear();
  EXPECT_EQ(store_->Scan(0, 10, 1000, &keys), 0u);
  EXPECT_TRUE(keys.empty());
}

// A call returns about COUNT keys (whole buckets), not COUNT buckets.
TEST_F(KvTest, ScanReturnsCountKeysPerCall) {
  Make(64 << 20, 16);
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(Put("k" + std::to_string(i), "v"), Status::kOk);
  std::set<std::string> seen;
  uint64_t cur = 0;
  int calls = 0;
  do {
    std::vector<std::string> keys;
    cur = store_->Scan(cur, 100, 1000, &keys);
    if (cur != 0) {
      EXPECT_GE(keys.size(), 100u);
    }
    seen.insert(keys.begin(), keys.end());
    ++calls;
  } while (cur != 0);
  EXPECT_EQ(seen.size(), 5000u);
  EXPECT_LE(calls, 51);
}

// A key written after its block was found empty is still found: marking
// happens on every link, and a rebuilt shard (crash repair) re-marks.
TEST_F(KvTest, ScanFindsKeysAddedBehindAndAhead) {
  Make(64 << 20, 16);
  std::vector<std::string> keys;
  uint64_t cur = store_->Scan(0, 1, 1000, &keys);
  EXPECT_EQ(cur, 0u);
  std::set<std::string> seen;
  for (int i = 0; i < 300; ++i) ASSERT_EQ(Put("x" + std::to_string(i), "v"), Status::kOk);
  do {
    keys.clear();
    cur = store_->Scan(cur, 1, 1000, &keys);
    seen.insert(keys.begin(), keys.end());
  } while (cur != 0);
  EXPECT_EQ(seen.size(), 300u);
}

// WATCH: a key's write stamp moves on every write, TTL change, delete or
// expiry; writes to other keys leave it. Absent keys see their shard's removals.
TEST_F(KvTest, WatchStateChangesOnlyWithTheKey) {
  ASSERT_EQ(Put("w", "1"), Status::kOk);
  WatchState w = store_->Watch("w", 1000);
  EXPECT_TRUE(w.exists);
  for (const std::string& k : KeysInShard(store_->ShardOf("w"), 20, "o"))
    ASSERT_EQ(Put(k, "v"), Status::kOk);
  EXPECT_FALSE(store_->Changed("w", w, 1000));
  ASSERT_EQ(Put("w", "1"), Status::kOk);  // the same value still counts
  EXPECT_TRUE(store_->Changed("w", w, 1000));
  w = store_->Watch("w", 1000);
  ASSERT_EQ(store_->SetExpire("w", 5000, 1000), Status::kOk);
  EXPECT_TRUE(store_->Changed("w", w, 1000));
  w = store_->Watch("w", 1000);
  EXPECT_TRUE(store_->Changed("w", w, 6000));  // expired meanwhile
  WatchState absent = store_->Watch("nokey", 1000);
  EXPECT_FALSE(absent.exists);
  EXPECT_FALSE(store_->Changed("nokey", absent, 1000));
  ASSERT_EQ(Put("nokey", "x"), Status::kOk);
  EXPECT_TRUE(store_->Changed("nokey", absent, 1000));
}

// Exclusive holds the listed keys' shards: calls inside take no lock of
// their own, a shard outside the set throws instead of breaking the lock
// order, and everything inside is one journal group.
TEST_F(KvTest, ExclusiveSectionRunsCallsUnderItsLocks) {
  const std::vector<std::string> ks = KeysInShard(1, 2, "x");
  const std::vector<std::string> other = KeysInShard(2, 1, "y");
  std::vector<std::string_view> keys(ks.begin(), ks.end());
  bool threw = false;
  store_->Exclusive(keys, false, [&] {
    EXPECT_EQ(Put(ks[0], "a"), Status::kOk);
    EXPECT_EQ(store_->IncrBy(ks[1], 5, 1000, nullptr), Status::kOk);
    try {
      Put(other[0], "b");
    } catch (const std::logic_error&) {
      threw = true;
    }
  });
  EXPECT_TRUE(threw);
  EXPECT_EQ(GetOr(ks[0]), "a");
  EXPECT_EQ(GetOr(ks[1]), "5");
  EXPECT_EQ(GetOr(other[0]), "<none>");
  // Every shard: FLUSHALL and DBSIZE inside.
  store_->Exclusive({}, true, [&] {
    EXPECT_EQ(store_->DbSize(), 2u);
    EXPECT_EQ(store_->FlushAll(), 2u);
  });
  EXPECT_EQ(store_->DbSize(), 0u);
}

// DBSIZE counts an expired key until it is removed: in a large, sparse
// shard the sweep must find it in one call, not after a pass over every
// bucket (it took up to 17 s at the default sizing before the summary).
TEST_F(KvTest, SweepFindsTheExpiredKeyOfASparseShardInOneCall) {
  Make(64 << 20, 16);
  for (const char* k : {"a", "b"}) ASSERT_EQ(Put(k, "v"), Status::kOk);
  SetOptions ex;
  ex.expire_at_ms = 1001;
  ASSERT_EQ(store_->Set("t", "v", ex, 1000), Status::kOk);
  EXPECT_EQ(store_->DbSize(), 3u);
  EXPECT_EQ(store_->SweepExpired(store_->ShardOf("t"), 2000, 20), 1u);
  EXPECT_EQ(store_->DbSize(), 2u);
  // Many keys without a TTL (most 64-bucket blocks occupied): a pass costs
  // about a budget (4096 units) per 4096 buckets, here 32 k buckets a shard.
  for (int i = 0; i < 20000; ++i) ASSERT_EQ(Put("n" + std::to_string(i), "v"), Status::kOk);
  ASSERT_EQ(store_->Set("t", "v", ex, 1000), Status::kOk);
  size_t calls = 0, removed = 0;
  while (removed == 0 && calls < 100) {
    removed += store_->SweepExpired(store_->ShardOf("t"), 2000, 20);
    ++calls;
  }
  EXPECT_EQ(removed, 1u);
  EXPECT_LE(calls, 10u);
}

TEST_F(KvTest, FlushAllAndFlushPrefix) {
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(Put("users^" + std::to_string(i), "u"), Status::kOk);
    ASSERT_EQ(Put("orders^" + std::to_string(i), "o"), Status::kOk);
  }
  ASSERT_EQ(Put("users", "not in the namespace"), Status::kOk);
  EXPECT_EQ(store_->FlushPrefix("users^"), 100u);
  EXPECT_EQ(store_->DbSize(), 101u);
  EXPECT_EQ(GetOr("users"), "not in the namespace");
  EXPECT_EQ(GetOr("orders^7"), "o");
  EXPECT_EQ(store_->FlushPrefix("nothing^"), 0u);
  VerifyAll();
  EXPECT_EQ(store_->FlushAll(), 101u);
  EXPECT_EQ(store_->DbSize(), 0u);
  EXPECT_EQ(store_->GetStats().used_bytes, 0u);
  EXPECT_EQ(Put("after", "flush"), Status::kOk);
  EXPECT_EQ(GetOr("after"), "flush");
}

TEST_F(KvTest, MSetIsAllOrNothingAndMGet) {
  std::vector<std::pair<std::string_view, std::string_view>> kvs = {
      {"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}, {"a", "5"}};
  ASSERT_EQ(store_->MSet(kvs, 1000), Status::kOk);
  std::vector<std::string_view> keys = {"a", "b", "x", "d"};
  std::vector<std::optional<std::string>> out;
  store_->MGet(keys, 1000, &out);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0], "5");
  EXPECT_EQ(out[1], "2");
  EXPECT_FALSE(out[2].has_value());
  EXPECT_EQ(out[3], "4");
  std::string big(64 * 1024 + 1, 'x');
  std::vector<std::pair<std::string_view, std::string_view>> bad = {{"p", "1"}, {"q", big}};
  EXPECT_EQ(store_->MSet(bad, 1000), Status::kTooLarge);
  EXPECT_FALSE(store_->Exists("p", 1000));
  // MSET clears TTLs.
  SetOptions ex;
  ex.expire_at_ms = 5000;
  ASSERT_EQ(store_->Set("b", "t", ex, 1000), Status::kOk);
  ASSERT_EQ(store_->MSet(kvs, 1000), Status::kOk);
  int64_t at;
  ASSERT_EQ(store_->GetExpire("b", 1000, &at), Status::kOk);
  EXPECT_EQ(at, -1);
}

TEST_F(KvTest, MSetOomSetsNothing) {
  Make(64 * 1024, 2);
  std::string val(300, 'v');
  int n = 0;
  while (Put("f" + std::to_string(n), val) == Status::kOk) ++n;
  // Some shard is full; free a little room in every shard, then ask for more.
  ASSERT_GT(store_->FlushPrefix("f1"), 0u);
  uint64_t keys = store_->DbSize();
  std::vector<std::string> names;
  for (int i = 0; i < 200; ++i) names.push_back("ms" + std::to_string(i));
  std::vector<std::pair<std::string_view, std::string_view>> kvs;
  for (auto& k : names) kvs.emplace_back(k, val);
  EXPECT_EQ(store_->MSet(kvs, 1000), Status::kOom);
  EXPECT_EQ(store_->DbSize(), keys);
  for (auto& k : names) EXPECT_FALSE(store_->Exists(k, 1000));
  kvs.resize(2);
  EXPECT_EQ(store_->MSet(kvs, 1000), Status::kOk);
}

TEST_F(KvTest, AttachChecksMagicVersionAndSize) {
  std::string why;
  Store* s = Store::Attach(region_->get(), region_->size(), &why);
  ASSERT_EQ(s, store_) << why;
  EXPECT_EQ(Store::Attach(region_->get(), region_->size() - 4096, &why), nullptr);
  EXPECT_NE(why.find("formatted for"), std::string::npos) << why;
  auto* h = static_cast<internal::StoreHeader*>(region_->get());
  h->version++;
  EXPECT_EQ(Store::Attach(region_->get(), region_->size(), &why), nullptr);
  EXPECT_NE(why.find("layout version"), std::string::npos) << why;
  h->version--;
  h->magic ^= 1;
  EXPECT_EQ(Store::Attach(region_->get(), region_->size(), &why), nullptr);
  EXPECT_NE(why.find("magic"), std::string::npos) << why;
  h->magic ^= 1;
  Region other(4096);
  EXPECT_EQ(Store::Attach(other.get(), other.size(), &why), nullptr);
  EXPECT_EQ(Store::Format(other.get(), other.size(), 4, Limits{}, 1, &why), nullptr);
  EXPECT_NE(why.find("too small"), std::string::npos) << why;
  EXPECT_GE(Store::MinSize(4), 4 * 4096u);
}

TEST_F(KvTest, VerifyDetectsCorruption) {
  for (int i = 0; i < 50; ++i) ASSERT_EQ(Put("v" + std::to_string(i), "x"), Status::kOk);
  uint32_t shard = store_->ShardOf("v1");
  auto* h = static_cast<internal::StoreHeader*>(region_->get());
  auto* s = reinterpret_cast<internal::ShardHeader*>(static_cast<char*>(region_->get()) +
                                                     h->shards_off + shard * h->shard_stride);
  std::string why;
  s->keys++;
  EXPECT_FALSE(store_->Verify(shard, &why));
  EXPECT_NE(why.find("keys"), std::string::npos) << why;
  s->keys--;
  std::swap(s->lru_head, s->lru_tail);
  EXPECT_FALSE(store_->Verify(shard, &why));
  std::swap(s->lru_head, s->lru_tail);
  ASSERT_TRUE(store_->Verify(shard, &why)) << why;
  // Flip a byte of a live key: the stored hash no longer matches.
  auto* it = reinterpret_cast<internal::Item*>(reinterpret_cast<char*>(s) + s->lru_head);
  it->key()[0] ^= 0x20;
  EXPECT_FALSE(store_->Verify(shard, &why));
  EXPECT_NE(why.find("hash"), std::string::npos) << why;
  it->key()[0] ^= 0x20;
}

TEST_F(KvTest, LruOrderFollowsAccessAndStatsPerShard) {
  Make(64 * 1024, 1, Eviction::kAllKeysLru);
  std::string val(1000, 'v');
  for (int i = 0; i < 10; ++i) ASSERT_EQ(Put("o" + std::to_string(i), val), Status::kOk);
  // Read 0..4 so 5 becomes the least recently used.
  std::vector<std::string_view> ks = {"o0", "o1", "o2", "o3", "o4"};
  std::vector<std::optional<std::string>> out;
  store_->MGet(ks, 1000, &out);
  int i = 10;
  while (store_->GetStats().evictions == 0)
    ASSERT_EQ(Put("o" + std::to_string(i++), val), Status::kOk);
  EXPECT_FALSE(store_->Exists("o5", 1000));
  for (int j = 0; j < 5; ++j) EXPECT_TRUE(store_->Exists("o" + std::to_string(j), 1000));
  Stats st = store_->GetShardStats(0);
  EXPECT_EQ(st.hits, 5u);
  EXPECT_EQ(st.keys, store_->DbSize());
  EXPECT_LE(st.used_bytes, st.capacity_bytes);
}

TEST_F(KvTest, MGetStopsOnceValuesPassTheByteBudget) {
  ASSERT_EQ(Put("big", std::string(10000, 'x')), Status::kOk);
  ASSERT_EQ(Put("small", "s"), Status::kOk);
  std::vector<std::string_view> keys(100, "big");
  keys.push_back("small");
  std::vector<std::optional<std::string>> out;
  // 100 copies of 10000 bytes: far past a 50000-byte budget, and the engine
  // stops copying there instead of building the whole reply first.
  EXPECT_FALSE(store_->MGet(keys, 1000, &out, 50000));
  size_t copied = 0;
  for (const auto& v : out) copied += v ? v->size() : 0;
  EXPECT_LE(copied, 50000u);
  ASSERT_TRUE(store_->MGet(keys, 1000, &out, 2'000'000));
  ASSERT_EQ(out.size(), 101u);
  for (size_t i = 0; i < 100; ++i) EXPECT_EQ(out[i], std::string(10000, 'x'));
  EXPECT_EQ(out[100], "s");
  EXPECT_TRUE(store_->MGet(keys, 1000, &out));  // no budget given: unbounded
}

internal::ShardHeader* ShardAt(void* region, uint32_t i) {
  auto* h = static_cast<internal::StoreHeader*>(region);
  return reinterpret_cast<internal::ShardHeader*>(static_cast<char*>(region) + h->shards_off +
                                                  i * h->shard_stride);
}

// MGET is atomic (as Redis' and as MSet): it takes every involved shard's
// lock, in ascending order, before it reads any key. With shard 3 busy, an
// MGET of a shard-0 and a shard-3 key holds shard 0 while it waits.
TEST_F(KvTest, MGetHoldsEveryInvolvedShardAtOnce) {
  const std::string lo = KeysInShard(0, 1, "lo")[0], hi = KeysInShard(3, 1, "hi")[0];
  ASSERT_EQ(Put(lo, "L"), Status::kOk);
  ASSERT_EQ(Put(hi, "H"), Status::kOk);
  internal::ShardHeader* s0 = ShardAt(region_->get(), 0);
  internal::ShardHeader* s3 = ShardAt(region_->get(), 3);
  ASSERT_EQ(pthread_mutex_lock(&s3->mu), 0);
  std::vector<std::optional<std::string>> out;
  std::thread reader([&] {
    std::vector<std::string_view> keys = {hi, lo};
    store_->MGet(keys, 1000, &out);
  });
  bool shard0_held = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!shard0_held && std::chrono::steady_clock::now() < deadline) {
    if (pthread_mutex_trylock(&s0->mu) == 0) {
      EXPECT_EQ(s0->hits, 0u) << "MGET read shard 0 before it had shard 3";
      pthread_mutex_unlock(&s0->mu);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    } else {
      shard0_held = true;
    }
  }
  EXPECT_TRUE(shard0_held) << "MGET did not hold shard 0 while waiting for shard 3";
  pthread_mutex_unlock(&s3->mu);
  reader.join();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], "H");
  EXPECT_EQ(out[1], "L");
}

TEST_F(KvTest, ScanStopsAfterByteBudgetAtABucketBoundary) {
  std::set<std::string> all;
  for (int i = 0; i < 200; ++i) {
    all.insert("key" + std::to_string(1000 + i));
    ASSERT_EQ(Put("key" + std::to_string(1000 + i), "v"), Status::kOk);
  }
  std::vector<std::string> keys;
  std::vector<uint64_t> resume;
  uint64_t cur = store_->Scan(0, 1'000'000, 1000, &keys, /*max_bytes=*/100, &resume);
  EXPECT_NE(cur, 0u);  // one COUNT would cover everything; the budget stopped it
  EXPECT_GT(keys.size() * 7, 100u);
  EXPECT_LT(keys.size(), 40u);
  ASSERT_EQ(resume.size(), keys.size());
  EXPECT_EQ(resume.back(), cur);
  std::set<std::string> seen(keys.begin(), keys.end());
  int calls = 1;
  while (cur != 0) {
    keys.clear();
    resume.clear();
    cur = store_->Scan(cur, 1'000'000, 1000, &keys, 100, &resume);
    ASSERT_EQ(resume.size(), keys.size());
    seen.insert(keys.begin(), keys.end());
    ASSERT_LT(++calls, 1000);
  }
  EXPECT_EQ(seen, all);
}

TEST_F(KvTest, OverwriteThatCanNeverFitFailsWithoutEvicting) {
  Make(64 * 1024, 1, Eviction::kAllKeysLru);
  for (int i = 0; i < 10; ++i)
    ASSERT_EQ(Put("s" + std::to_string(i), std::string(100, 's')), Status::kOk);
  ASSERT_EQ(Put("B", std::string(25000, 'b')), Status::kOk);
  // Old and new copy of B cannot both fit in this arena, whatever is evicted.
  EXPECT_EQ(Put("B", std::string(40000, 'n')), Status::kOom);
  EXPECT_EQ(store_->GetStats().evictions, 0u);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(store_->Exists("s" + std::to_string(i), 1000)) << i;
  EXPECT_EQ(GetOr("B"), std::string(25000, 'b'));
  // Larger than the whole arena: kOom at once too.
  EXPECT_EQ(Put("C", std::string(64000, 'c')), Status::kOom);
  EXPECT_EQ(store_->GetStats().evictions, 0u);
}

TEST(KvSizing, MinShardBytesHoldThreeLargestItemsSoTheyCanBeOverwritten) {
  const uint32_t mk = 64, mv = 100'000;
  EXPECT_GT(Store::MinShardBytesFor(mk, 2 * mv), Store::MinShardBytesFor(mk, mv));
  const uint64_t size = Store::MinSizeFor(4, mk, mv);
  Region r(size);
  ASSERT_NE(r.get(), nullptr);
  std::string why;
  Store* st = Store::Format(r.get(), size, 4, Limits{mk, mv, Eviction::kNoEviction}, 7, &why);
  ASSERT_NE(st, nullptr) << why;
  for (uint32_t i = 0; i < 4; ++i)
    EXPECT_GE(st->GetShardStats(i).capacity_bytes, 3u * (sizeof(internal::Item) + mk + mv));
  // The largest value, with the longest key, set and overwritten over and over
  // while smaller keys come and go in the same shards.
  const std::string key(mk, 'K');
  for (int round = 0; round < 20; ++round) {
    ASSERT_EQ(st->Set(key, std::string(mv, static_cast<char>('a' + round)), SetOptions{}, 1000),
              Status::kOk)
        << "round " << round;
    ASSERT_EQ(st->Set("small" + std::to_string(round), std::string(5000, 's'), SetOptions{}, 1000),
              Status::kOk);
    if (round % 3 == 0) st->Del("small" + std::to_string(round / 2), 1000);
  }
  for (uint32_t i = 0; i < 4; ++i) EXPECT_TRUE(st->Verify(i, &why)) << why;
}

// ---- the large-object area --------------------------------------------------

std::string Big(size_t n, char seed) {
  std::string v(n, ' ');
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<char>(seed + i % 23);
  return v;
}

TEST_F(KvTest, LargeValuesLiveOutsideTheShardsAndRoundTrip) {
  // Shards of about 100 KiB each could never hold a 3 MiB value.
  Make(1 << 20, 8, Eviction::kNoEviction, 0, 8 << 20, 4 << 20);
  const Stats empty = store_->GetStats();
  EXPECT_GE(empty.large_capacity_bytes, 7u << 20);
  EXPECT_EQ(empty.large_used_bytes, 0u);
  const std::string a = Big(3 << 20, 'a'), b = Big(40000, 'b');
  ASSERT_EQ(Put("big", a), Status::kOk);
  EXPECT_EQ(GetOr("big"), a);
  EXPECT_EQ(store_->GetStats().large_values, 1u);
  // Overwrites: larger, smaller, then a small value back in the shard.
  ASSERT_EQ(Put("big", b), Status::kOk);
  EXPECT_EQ(GetOr("big"), b);
  ASSERT_EQ(Put("big", Big((4 << 20) - 1, 'c')), Status::kOk);
  EXPECT_EQ(GetOr("big"), Big((4 << 20) - 1, 'c'));
  ASSERT_EQ(Put("big", "small again"), Status::kOk);
  EXPECT_EQ(GetOr("big"), "small again");
  EXPECT_EQ(store_->GetStats().large_values, 0u);
  EXPECT_EQ(store_->GetStats().large_used_bytes, 0u);
  // The exact threshold: 16 KiB - 1 stays in the shard, 16 KiB goes out.
  ASSERT_EQ(Put("t1", std::string(internal::kLargeValueMin - 1, 'x')), Status::kOk);
  EXPECT_EQ(store_->GetStats().large_values, 0u);
  ASSERT_EQ(Put("t2", std::string(internal::kLargeValueMin, 'y')), Status::kOk);
  EXPECT_EQ(store_->GetStats().large_values, 1u);
  VerifyAll();
  // Every path that reads a value sees the large bytes.
  int64_t at = 0;
  EXPECT_EQ(store_->SetExpire("t2", 5000, 1000), Status::kOk);
  EXPECT_EQ(store_->GetExpire("t2", 1000, &at), Status::kOk);
  std::vector<std::optional<std::string>> got;
  std::vector<std::string_view> keys = {"t2", "nope", "big"};
  ASSERT_TRUE(store_->MGet(keys, 1000, &got));
  EXPECT_EQ(got[0], std::string(internal::kLargeValueMin, 'y'));
  EXPECT_EQ(got[2], "small again");
  size_t exported = 0;
  for (uint32_t i = 0; i < store_->shard_count(); ++i)
    store_->ExportShard(i, 1000, [&](std::string_view k, std::string_view v, int64_t) {
      if (k == "t2") exported = v.size();
    });
  EXPECT_EQ(exported, internal::kLargeValueMin);
  // Expiry, delete and flush free the runs.
  EXPECT_EQ(GetOr("t2", 6000), "<none>");
  EXPECT_EQ(store_->GetStats().large_values, 0u);
  ASSERT_EQ(Put("x1", b), Status::kOk);
  ASSERT_EQ(Put("x2", b), Status::kOk);
  EXPECT_EQ(store_->Del("x1", 1000), Status::kOk);
  EXPECT_EQ(store_->GetStats().large_values, 1u);
  store_->FlushAll();
  EXPECT_EQ(store_->GetStats().large_values, 0u);
  EXPECT_EQ(store_->GetStats().large_used_bytes, 0u);
}

TEST_F(KvTest, LargeAreaFullGivesOomUnderNoEvictionAndWritesNothing) {
  Make(1 << 20, 4, Eviction::kNoEviction, 0, 1 << 20, 512 << 10);
  int n = 0;
  while (Put("f" + std::to_string(n), Big(100000, 'f')) == Status::kOk) ++n;
  EXPECT_GE(n, 8);  // ~1 MiB of pages, 25 pages a value
  EXPECT_LE(n, 10);
  EXPECT_EQ(store_->DbSize(), static_cast<uint64_t>(n));
  // MSET with a large value that does not fit writes nothing, not even its small keys.
  std::vector<std::pair<std::string_view, std::string_view>> kvs;
  const std::string v = Big(100000, 'm');
  kvs.emplace_back("small", "1");
  kvs.emplace_back("large", v);
  EXPECT_EQ(store_->MSet(kvs, 1000), Status::kOom);
  EXPECT_FALSE(store_->Exists("small", 1000));
  // Room made by a delete is found again (first fit over the freed run).
  EXPECT_EQ(store_->Del("f0", 1000), Status::kOk);
  EXPECT_EQ(store_->MSet(kvs, 1000), Status::kOk);
  EXPECT_EQ(GetOr("large"), v);
}

TEST_F(KvTest, LargeValueOverTheWholeAreaFailsWithoutEvicting) {
  Make(1 << 20, 1, Eviction::kAllKeysLru, 0, 1 << 20, 2 << 20);
  ASSERT_EQ(Put("a", Big(300000, 'a')), Status::kOk);
  EXPECT_EQ(Put("huge", Big(3 << 19, 'h')), Status::kOom);
  EXPECT_EQ(GetOr("a"), Big(300000, 'a'));
  EXPECT_EQ(store_->GetStats().evictions, 0u);
}

TEST_F(KvTest, LargeAreaFullEvictsTheShardsLargeValuesUnderLru) {
  Make(1 << 20, 1, Eviction::kAllKeysLru, 0, 1 << 20, 512 << 10);
  for (int i = 0; i < 30; ++i)
    ASSERT_EQ(Put("e" + std::to_string(i), Big(100000, static_cast<char>('a' + i % 20))),
              Status::kOk)
        << i;
  EXPECT_GT(store_->GetStats().evictions, 0u);
  EXPECT_EQ(GetOr("e29"), Big(100000, static_cast<char>('a' + 29 % 20)));
  EXPECT_EQ(GetOr("e0"), "<none>");  // the oldest went first
  // Small keys of the shard are not evicted for a large value.
  ASSERT_EQ(Put("keep", "me"), Status::kOk);
  for (int i = 30; i < 40; ++i)
    ASSERT_EQ(Put("e" + std::to_string(i), Big(100000, 'z')), Status::kOk);
  EXPECT_EQ(GetOr("keep"), "me");
}

TEST(KvSizing, LargeAreaHoldsTwoCopiesOfTheLargestValue) {
  const uint32_t mv = 5 << 20;
  const uint64_t large = Store::MinLargeBytesFor(mv);
  EXPECT_GT(large, 2ull * mv);
  EXPECT_EQ(Store::MinLargeBytesFor(1000), 0u);  // fits a shard
  // With the area, a shard is sized for values below 16 KiB only.
  EXPECT_LT(Store::MinShardBytesFor(64, mv, true), Store::MinShardBytesFor(64, mv, false) / 100);
  const uint64_t size = Store::MinSizeFor(4, 64, mv, large);
  Region r(size);
  std::string why;
  Store* st =
      Store::Format(r.get(), size, 4, Limits{64, mv, Eviction::kNoEviction}, 7, &why, large);
  ASSERT_NE(st, nullptr) << why;
  for (int round = 0; round < 6; ++round) {
    ASSERT_EQ(st->Set("k", Big(mv, static_cast<char>('a' + round)), SetOptions{}, 1000),
              Status::kOk)
        << round;
    ASSERT_EQ(st->Set("s" + std::to_string(round), std::string(10000, 's'), SetOptions{}, 1000),
              Status::kOk);
  }
  std::string v;
  ASSERT_EQ(st->Get("k", 1000, &v), Status::kOk);
  EXPECT_EQ(v, Big(mv, 'f'));
  for (uint32_t i = 0; i < 4; ++i) EXPECT_TRUE(st->Verify(i, &why)) << why;
}

TEST_F(KvTest, VerifyFindsALeakedOrDanglingLargeRun) {
  Make(1 << 20, 1, Eviction::kNoEviction, 0, 1 << 20, 512 << 10);
  ASSERT_EQ(Put("a", Big(50000, 'a')), Status::kOk);
  VerifyAll();
  auto* h = static_cast<internal::StoreHeader*>(region_->get());
  internal::LargeHeader* l = internal::Large(h);
  uint8_t* map = internal::LargeMap(l);
  // A body page with no head (an allocation cut short) is found.
  const uint64_t stray = l->pages - 1;
  map[stray] = internal::kPageBody;
  std::string why;
  EXPECT_FALSE(store_->Verify(0, &why));
  EXPECT_NE(why.find("large area"), std::string::npos) << why;
  map[stray] = internal::kPageFree;
  // The item's run freed under it (a dangling reference) is found.
  map[0] = internal::kPageFree;
  EXPECT_FALSE(store_->Verify(0, &why));
  EXPECT_NE(why.find("large run"), std::string::npos) << why;
  map[0] = internal::kPageHead;
  VerifyAll();
}

TEST(KvCrashPoints, NamesAreDistinct) {
  std::set<std::string> names;
  for (int n = 1; n <= testing::CrashPointCount(); ++n) names.insert(testing::CrashPointName(n));
  EXPECT_EQ(names.size(), static_cast<size_t>(testing::CrashPointCount()));
  EXPECT_STREQ(testing::CrashPointName(0), "");
  EXPECT_STREQ(testing::CrashPointName(testing::CrashPointCount() + 1), "");
}

// A free list that hands out a chunk another key holds (memory scribbled on)
// must stop the process before it writes over that key: PF_ASSERT aborts
// (the master respawns a worker), and the lock it held is repaired by the
// next locker.
TEST_F(KvTest, FreeListPointingAtALiveChunkAbortsInsteadOfOverwriting) {
  Make(1 << 20, 1);
  ASSERT_EQ(Put("gone", std::string(100, 'x')), Status::kOk);
  ASSERT_EQ(store_->Del("gone", 1000), Status::kOk);
  auto* h = reinterpret_cast<internal::StoreHeader*>(store_);
  auto* sh =
      reinterpret_cast<internal::ShardHeader*>(reinterpret_cast<char*>(store_) + h->shards_off);
  internal::Item* freed = nullptr;
  for (uint32_t c = 0; c < h->class_count && !freed; ++c)
    if (sh->free_head[c])
      freed = reinterpret_cast<internal::Item*>(reinterpret_cast<char*>(sh) + sh->free_head[c]);
  ASSERT_NE(freed, nullptr);
  freed->state = internal::kChunkLive;  // the scribble
  EXPECT_DEATH(
      Put("next", std::string(100, 'y')),
      "invariant failed at .*arena.cc.*a shard's free list holds a chunk that is not free");
  freed->state = internal::kChunkFree;  // TearDown's Verify repairs the lock the child held
  EXPECT_EQ(GetOr("next"), "<none>");
}

// ---------------------------------------------------------------------------
// WithKeys: locked multi-key sections

TEST_F(KvTest, WithKeysReadsWritesAndDeletes) {
  ASSERT_EQ(Put("a", "1"), Status::kOk);
  std::vector<std::string_view> keys = {"a", "b", "c"};
  Status st = store_->WithKeys(keys, 1000, [](KeyView& v) {
    std::string_view val;
    int64_t exp = 0;
    EXPECT_EQ(v.Get("a", &val, &exp), Status::kOk);
    EXPECT_EQ(val, "1");
    EXPECT_EQ(exp, -1);
    EXPECT_EQ(v.Get("b", &val), Status::kNotFound);
    EXPECT_FALSE(v.Exists("b"));
    EXPECT_EQ(v.Put("b", val.empty() ? "x" : "2", 5000), Status::kOk);
    EXPECT_EQ(v.Put("c", "3", -1), Status::kOk);
    EXPECT_TRUE(v.Exists("b"));
    EXPECT_EQ(v.Del("a"), Status::kOk);
    EXPECT_EQ(v.Del("a"), Status::kNotFound);
    return Status::kNotDone;  // WithKeys returns what fn returns
  });
  EXPECT_EQ(st, Status::kNotDone);
  EXPECT_EQ(GetOr("a"), "<none>");
  EXPECT_EQ(GetOr("c"), "3");
  int64_t at;
  ASSERT_EQ(store_->GetExpire("b", 1000, &at), Status::kOk);
  EXPECT_EQ(at, 5000);
}

TEST_F(KvTest, WithKeysPutAcceptsAViewItJustRead) {
  ASSERT_EQ(Put("src", std::string(3000, 's')), Status::kOk);
  std::vector<std::string_view> keys = {"src", "dst"};
  ASSERT_EQ(store_->WithKeys(keys, 1000,
                             [](KeyView& v) {
                               std::string_view val;
                               if (v.Get("src", &val) != Status::kOk) return Status::kNotFound;
                               Status st = v.Put("dst", val, -1);
                               if (st != Status::kOk) return st;
                               // Overwriting a key with its own (moved) bytes.
                               EXPECT_EQ(v.Get("dst", &val), Status::kOk);
                               return v.Put("dst", val.substr(1), -1);
                             }),
            Status::kOk);
  EXPECT_EQ(GetOr("dst"), std::string(2999, 's'));
  EXPECT_EQ(GetOr("src"), std::string(3000, 's'));
}

TEST_F(KvTest, WithKeysExpiresLazilyAndKeepsTtls) {
  SetOptions o;
  o.expire_at_ms = 1500;
  ASSERT_EQ(store_->Set("old", "v", o, 1000), Status::kOk);
  o.expire_at_ms = 9000;
  ASSERT_EQ(store_->Set("ttl", "v", o, 1000), Status::kOk);
  std::vector<std::string_view> keys = {"old", "ttl"};
  store_->WithKeys(keys, 2000, [](KeyView& v) {
    std::string_view val;
    int64_t exp = 0;
    EXPECT_EQ(v.Get("old", &val), Status::kNotFound);
    EXPECT_FALSE(v.Exists("old"));
    EXPECT_EQ(v.Get("ttl", &val, &exp), Status::kOk);
    EXPECT_EQ(exp, 9000);
    EXPECT_EQ(v.now_ms(), 2000u);
    return Status::kOk;
  });
  EXPECT_EQ(store_->GetStats().keys, 1u);
  EXPECT_EQ(store_->GetStats().expires, 1u);
}

TEST_F(KvTest, WithKeysRefusesTooLargeAndWritesNothing) {
  std::vector<std::string_view> keys = {"k"};
  const std::string big(64 * 1024 + 1, 'b');
  EXPECT_EQ(store_->WithKeys(keys, 1000, [&](KeyView& v) { return v.Put("k", big, -1); }),
            Status::kTooLarge);
  EXPECT_EQ(GetOr("k"), "<none>");
  const std::string long_key(65, 'k');
  std::vector<std::string_view> lk = {long_key};
  EXPECT_EQ(store_->WithKeys(lk, 1000, [&](KeyView& v) { return v.Put(long_key, "v", -1); }),
            Status::kTooLarge);
  store_->WithKeys(keys, 1000, [&](KeyView& v) {
    EXPECT_EQ(v.max_value_bytes(), 64u * 1024);
    std::pair<std::string_view, size_t> ok[] = {{"k", 100}};
    std::pair<std::string_view, size_t> too[] = {{"k", 64 * 1024 + 1}};
    EXPECT_EQ(v.CanPut(ok), Status::kOk);
    EXPECT_EQ(v.CanPut(too), Status::kTooLarge);
    return Status::kOk;
  });
}

TEST_F(KvTest, WithKeysCanPutSeesAFullShard) {
  Make(Store::MinSizeFor(1, 64, 64 * 1024), 1);
  std::vector<std::string_view> keys = {"a", "b", "c", "d"};
  store_->WithKeys(keys, 1000, [&](KeyView& v) {
    std::pair<std::string_view, size_t> fits[] = {{"a", 60000}, {"b", 10}};
    std::pair<std::string_view, size_t> too_many[] = {
        {"a", 60000}, {"b", 60000}, {"c", 60000}, {"d", 60000}};
    EXPECT_EQ(v.CanPut(fits), Status::kOk);
    EXPECT_EQ(v.CanPut(too_many), Status::kOom);
    return Status::kOk;
  });
}

TEST_F(KvTest, WithKeysIsAtomicAcrossShards) {
  // A transfer between keys of two shards: a reader section always sees the
  // sum unchanged.
  const std::string a = KeysInShard(0, 1, "a")[0], b = KeysInShard(3, 1, "b")[0];
  ASSERT_EQ(Put(a, "1000"), Status::kOk);
  ASSERT_EQ(Put(b, "0"), Status::kOk);
  std::vector<std::string_view> keys = {a, b};
  auto read = [&](KeyView& v, std::string_view k) {
    std::string_view val;
    EXPECT_EQ(v.Get(k, &val), Status::kOk);
    return std::stoll(std::string(val));
  };
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; i < 3000; ++i) {
      store_->WithKeys(keys, 1000, [&](KeyView& v) {
        const int64_t x = read(v, a), y = read(v, b);
        const int64_t d = i % 2 ? 7 : -7;
        v.Put(a, std::to_string(x - d), -1);
        v.Put(b, std::to_string(y + d), -1);
        return Status::kOk;
      });
    }
    stop = true;
  });
  int checks = 0;
  while (!stop || checks == 0) {
    store_->WithKeys(keys, 1000, [&](KeyView& v) {
      EXPECT_EQ(read(v, a) + read(v, b), 1000);
      return Status::kOk;
    });
    ++checks;
  }
  writer.join();
  EXPECT_GT(checks, 0);
}

TEST_F(KvTest, WithKeysLocksInAscendingShardOrder) {
  const std::string lo = KeysInShard(0, 1, "lo")[0], mid = KeysInShard(1, 1, "mid")[0],
                    hi = KeysInShard(3, 1, "hi")[0];
  internal::ShardHeader* s0 = ShardAt(region_->get(), 0);
  internal::ShardHeader* s3 = ShardAt(region_->get(), 3);
  // Shard 3 is busy: a section over (hi, lo) takes shard 0 first and waits
  // for shard 3 while holding it.
  ASSERT_EQ(pthread_mutex_lock(&s3->mu), 0);
  std::atomic<bool> ran{false};
  std::thread t([&] {
    std::vector<std::string_view> keys = {hi, lo};
    store_->WithKeys(keys, 1000, [&](KeyView& v) {
      ran = true;
      return v.Put(lo, "x", -1);
    });
  });
  bool s0_held = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!s0_held && std::chrono::steady_clock::now() < deadline) {
    if (pthread_mutex_trylock(&s0->mu) == 0)
      pthread_mutex_unlock(&s0->mu);
    else
      s0_held = true;
    if (!s0_held) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(s0_held);
  EXPECT_FALSE(ran);
  pthread_mutex_unlock(&s3->mu);
  t.join();
  EXPECT_TRUE(ran);
  // Overlapping sections listing their keys in every order never deadlock.
  std::vector<std::thread> ts;
  for (int n = 0; n < 3; ++n) {
    ts.emplace_back([&, n] {
      std::vector<std::string_view> keys;
      if (n == 0) keys = {hi, mid, lo};
      if (n == 1) keys = {lo, hi};
      if (n == 2) keys = {mid, hi, mid};
      for (int i = 0; i < 2000; ++i)
        store_->WithKeys(keys, 1000, [&](KeyView& v) { return v.Put(keys[0], "v", -1); });
    });
  }
  for (auto& th : ts) th.join();
  EXPECT_EQ(GetOr(hi), "v");
}

struct RecordingJournal : Journal {
  std::vector<std::string> events;
  void Put(uint32_t, uint64_t, std::string_view key, std::string_view value,
           int64_t expire_at) override {
    events.push_back("put " + std::string(key) + "=" + std::string(value) + " " +
                     std::to_string(expire_at));
  }
  void Del(uint32_t, uint64_t, std::string_view key) override {
    events.push_back("del " + std::string(key));
  }
  void Clear(uint32_t, uint64_t) override { events.push_back("clear"); }
  void BeginGroup() override { events.push_back("begin"); }
  void EndGroup() override { events.push_back("end"); }
};

TEST_F(KvTest, WithKeysIsOneJournalGroup) {
  ASSERT_EQ(Put("src", "v"), Status::kOk);
  RecordingJournal j;
  SetJournal(&j);
  std::vector<std::string_view> keys = {"src", "dst"};
  Status st = store_->WithKeys(keys, 1000, [](KeyView& v) {  // RENAME src dst
    std::string_view val;
    int64_t exp;
    if (v.Get("src", &val, &exp) != Status::kOk) return Status::kNotFound;
    Status s = v.Put("dst", val, exp);
    if (s == Status::kOk) v.Del("src");
    return s;
  });
  // A section that throws still closes its group (and releases its locks).
  EXPECT_THROW(store_->WithKeys(keys, 1000,
                                [](KeyView& v) -> Status {
                                  v.Put("src", "w", -1);
                                  throw std::runtime_error("boom");
                                }),
               std::runtime_error);
  SetJournal(nullptr);
  EXPECT_EQ(st, Status::kOk);
  EXPECT_EQ(j.events, (std::vector<std::string>{"begin", "put dst=v -1", "del src", "end", "begin",
                                                "put src=w -1", "end"}));
  EXPECT_EQ(GetOr("dst"), "v");
  EXPECT_EQ(GetOr("src"), "w");
}

TEST_F(KvTest, WithKeysSetExpireKeepsTheValueAndCounts) {
  ASSERT_EQ(Put("k", std::string(1000, 'v')), Status::kOk);
  std::vector<std::string_view> keys = {"k", "none"};
  store_->WithKeys(keys, 1000, [](KeyView& v) {
    EXPECT_EQ(v.SetExpire("none", 5000), Status::kNotDone);
    EXPECT_EQ(v.SetExpire("k", -1), Status::kNotDone);  // PERSIST without a TTL
    EXPECT_EQ(v.SetExpire("k", 5000), Status::kOk);
    int64_t exp = 0;
    std::string_view val;
    EXPECT_EQ(v.Get("k", &val, &exp), Status::kOk);
    EXPECT_EQ(exp, 5000);
    EXPECT_EQ(val.size(), 1000u);
    return Status::kOk;
  });
  EXPECT_EQ(store_->GetStats().expires, 1u);
  store_->WithKeys(keys, 1000, [](KeyView& v) { return v.SetExpire("k", -1); });
  EXPECT_EQ(store_->GetStats().expires, 0u);
  store_->WithKeys(keys, 1000, [](KeyView& v) { return v.SetExpire("k", 1000); });  // not after now
  EXPECT_EQ(GetOr("k"), "<none>");
  EXPECT_EQ(store_->GetStats().keys, 0u);
}

TEST_F(KvTest, WithKeysAssertsOnAKeyNotListed) {
  std::vector<std::string_view> keys = {"a"};
  EXPECT_DEATH(store_->WithKeys(keys, 1000, [](KeyView& v) { return v.Put("b", "x", -1); }),
               "not given to WithKeys");
}

}  // namespace
}  // namespace pf::kv
