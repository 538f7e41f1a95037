// tests/unit/test_limiter.cc: the shared limiter table (shared/limiter.h):
// leaky buckets, connection and AUTH counts, eviction, and fork()ed processes
// sharing it, one of them killed while it holds a set lock.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "shared/limiter.h"

namespace pf::limit {
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
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
  char* get() const { return static_cast<char*>(p_); }

 private:
  void* p_;
  size_t size_;
};

void* g_mem = nullptr;  // the table of the running test (SameSet)

// Counted in the table (not refused, not admitted uncounted).
bool Acquire(Table& t, uint64_t key, int owner, uint32_t max) {
  return t.ConnAcquire(key, owner, max) == ConnResult::kCounted;
}

class LimiterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(region_.get(), nullptr);
    Format(region_.get());
    table_.emplace(region_.get());
    g_mem = region_.get();
  }
  Table& t() { return *table_; }

  Region region_{TableBytes()};
  std::optional<Table> table_;
};

// The i-th key from `base` up that falls in base's set (i = 0: base). Sets
// are picked with a seed random per table, so keys are searched, not computed.
uint64_t SameSet(uint64_t base, uint32_t i) {
  const uint32_t set = testing::SetIndexForTest(g_mem, base);
  uint64_t k = base;
  for (uint32_t found = 0; found < i;)
    if (testing::SetIndexForTest(g_mem, ++k) == set) found++;
  return k;
}

// Runs fn in a child and returns its exit status (-1: killed). The child
// never returns to gtest.
pid_t Spawn(const std::function<int()>& fn) {
  const pid_t pid = fork();
  if (pid == 0) _exit(fn());
  return pid;
}
int Wait(pid_t pid) {
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return -2;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(LimiterTableTest, BytesArePageAlignedAndSmall) {
  EXPECT_EQ(TableBytes() % 4096, 0u);
  EXPECT_LE(TableBytes(), 1u << 20);
}

TEST(LimiterKeyTest, KeyOfIsStableDistinctAndNeverZero) {
  EXPECT_EQ(KeyOf("req", "web", "192.0.2.1"), KeyOf("req", "web", "192.0.2.1"));
  EXPECT_NE(KeyOf("req", "web", "192.0.2.1"), KeyOf("conn", "web", "192.0.2.1"));
  EXPECT_NE(KeyOf("req", "web", "192.0.2.1"), KeyOf("req", "api", "192.0.2.1"));
  EXPECT_NE(KeyOf("req", "web", "192.0.2.1"), KeyOf("req", "web", "192.0.2.2"));
  // Field boundaries matter: ("ab", "c") is not ("a", "bc").
  EXPECT_NE(KeyOf("req", "ab", "c"), KeyOf("req", "a", "bc"));
  EXPECT_NE(KeyOf("", "", ""), 0u);
}

TEST_F(LimiterTest, BurstPlusOneAllowedThenRefusedWithRetryAfter) {
  const uint64_t k = KeyOf("req", "web", "192.0.2.1");
  for (int i = 0; i < 5; i++) EXPECT_TRUE(t().Request(k, 10, 4, 1000).allowed) << i;
  const ReqResult r = t().Request(k, 10, 4, 1000);
  EXPECT_FALSE(r.allowed);
  EXPECT_GE(r.retry_after_ms, 99u);
  EXPECT_LE(r.retry_after_ms, 101u);
  EXPECT_EQ(t().Stats().refused_req, 1u);
}

TEST_F(LimiterTest, BurstZeroAllowsOneAtTheRate) {
  const uint64_t k = 42;
  EXPECT_TRUE(t().Request(k, 2, 0, 5000).allowed);
  const ReqResult r = t().Request(k, 2, 0, 5000);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.retry_after_ms, 500u);
  EXPECT_FALSE(t().Request(k, 2, 0, 5499).allowed);
  EXPECT_TRUE(t().Request(k, 2, 0, 5500).allowed);
}

TEST_F(LimiterTest, BucketRefillsOverTime) {
  const uint64_t k = 7;
  uint64_t now = 10'000;
  for (int i = 0; i < 3; i++) ASSERT_TRUE(t().Request(k, 10, 2, now).allowed);
  ReqResult r = t().Request(k, 10, 2, now);
  ASSERT_FALSE(r.allowed);
  // Exactly when it said: one request fits, the next does not.
  now += r.retry_after_ms;
  EXPECT_TRUE(t().Request(k, 10, 2, now).allowed);
  r = t().Request(k, 10, 2, now);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.retry_after_ms, 100u);
  // A refused request is not counted: retrying often does not push it back.
  for (int i = 0; i < 50; i++) EXPECT_FALSE(t().Request(k, 10, 2, now + 50).allowed);
  EXPECT_TRUE(t().Request(k, 10, 2, now + 100).allowed);
  // Drained completely: burst + 1 again, no more.
  now += 100 + 300;
  for (int i = 0; i < 3; i++) EXPECT_TRUE(t().Request(k, 10, 2, now).allowed) << i;
  EXPECT_FALSE(t().Request(k, 10, 2, now).allowed);
  // A long idle time does not bank more than the burst.
  now += 3'600'000;
  for (int i = 0; i < 3; i++) EXPECT_TRUE(t().Request(k, 10, 2, now).allowed) << i;
  EXPECT_FALSE(t().Request(k, 10, 2, now).allowed);
}

TEST_F(LimiterTest, SlowRateAndClockReadOutOfOrder) {
  const uint64_t k = 9;
  // 600r/m with burst 0: one request per 100 ms.
  EXPECT_TRUE(t().Request(k, 10, 0, 1000).allowed);
  // Another process read the clock a little earlier and locked later.
  const ReqResult r = t().Request(k, 10, 0, 990);
  EXPECT_FALSE(r.allowed);
  EXPECT_GE(r.retry_after_ms, 1u);
  // 1 request a minute.
  const uint64_t s = 10;
  EXPECT_TRUE(t().Request(s, 1.0 / 60, 0, 0).allowed);
  EXPECT_EQ(t().Request(s, 1.0 / 60, 0, 1).retry_after_ms, 59'999u);
}

TEST_F(LimiterTest, SeparateKeysAreIndependent) {
  const uint64_t a = KeyOf("req", "web", "192.0.2.1"), b = KeyOf("req", "web", "192.0.2.2");
  const uint64_t c = SameSet(a, 1);  // same set as a
  EXPECT_TRUE(t().Request(a, 1, 0, 100).allowed);
  EXPECT_FALSE(t().Request(a, 1, 0, 100).allowed);
  EXPECT_TRUE(t().Request(b, 1, 0, 100).allowed);
  EXPECT_TRUE(t().Request(c, 1, 0, 100).allowed);
  EXPECT_FALSE(t().Request(b, 1, 0, 100).allowed);
  EXPECT_FALSE(t().Request(c, 1, 0, 100).allowed);
}

TEST_F(LimiterTest, ConnAcquireUpToMaxThenRefusesAndReleaseFrees) {
  const uint64_t k = KeyOf("conn", "web", "192.0.2.1");
  for (int i = 0; i < 3; i++) EXPECT_TRUE(Acquire(t(), k, 0, 3)) << i;
  EXPECT_EQ(t().ConnCount(k), 3u);
  EXPECT_FALSE(Acquire(t(), k, 0, 3));
  EXPECT_EQ(t().ConnCount(k), 3u);  // nothing counted
  EXPECT_EQ(t().Stats().refused_conn, 1u);
  t().ConnRelease(k, 0);
  EXPECT_EQ(t().ConnCount(k), 2u);
  EXPECT_TRUE(Acquire(t(), k, 0, 3));
  for (int i = 0; i < 3; i++) t().ConnRelease(k, 0);
  EXPECT_EQ(t().ConnCount(k), 0u);
  EXPECT_EQ(t().Stats().entries_used, 0u);  // an entry lives only while it counts
  t().ConnRelease(k, 0);                    // more releases than acquires: ignored
  EXPECT_EQ(t().ConnCount(k), 0u);
  EXPECT_FALSE(Acquire(t(), k, 0, 0));  // max 0 lets nothing in
}

TEST_F(LimiterTest, ConnCountsAreSummedOverOwners) {
  const uint64_t k = 1234;
  EXPECT_TRUE(Acquire(t(), k, 0, 4));
  EXPECT_TRUE(Acquire(t(), k, 1, 4));
  EXPECT_TRUE(Acquire(t(), k, 1, 4));
  EXPECT_TRUE(Acquire(t(), k, 2, 4));
  EXPECT_EQ(t().ConnCount(k), 4u);
  EXPECT_FALSE(Acquire(t(), k, 3, 4));
  EXPECT_FALSE(Acquire(t(), k, 0, 4));
  t().ConnRelease(k, 1);
  EXPECT_TRUE(Acquire(t(), k, 3, 4));
  t().ConnRelease(k, 5);  // an owner that holds nothing
  EXPECT_EQ(t().ConnCount(k), 4u);
}

TEST_F(LimiterTest, ReleaseOwnerDropsOnlyThatOwnersCounts) {
  const uint64_t a = 11, b = 12;
  ASSERT_TRUE(Acquire(t(), a, 0, 10));
  ASSERT_TRUE(Acquire(t(), a, 1, 10));
  ASSERT_TRUE(Acquire(t(), a, 1, 10));
  ASSERT_TRUE(Acquire(t(), b, 1, 10));
  ASSERT_TRUE(Acquire(t(), b, 2, 10));
  ASSERT_TRUE(t().Request(a, 1, 0, 100).allowed);
  t().ReleaseOwner(1);
  EXPECT_EQ(t().ConnCount(a), 1u);
  EXPECT_EQ(t().ConnCount(b), 1u);
  EXPECT_FALSE(t().Request(a, 1, 0, 100).allowed);  // request state untouched
  t().ConnRelease(a, 1);                            // the reaped worker's late release: ignored
  EXPECT_EQ(t().ConnCount(a), 1u);
  t().ReleaseOwner(0);
  t().ReleaseOwner(2);
  EXPECT_EQ(t().ConnCount(a), 0u);
  EXPECT_EQ(t().ConnCount(b), 0u);
}

TEST_F(LimiterTest, AuthFailuresCountAndRestartAfterAQuietMinute) {
  const uint64_t k = KeyOf("auth", "resp", "192.0.2.9");
  EXPECT_EQ(t().AuthFailures(k, 1000), 0u);
  EXPECT_EQ(t().NoteAuthFailure(k, 1000), 1u);
  EXPECT_EQ(t().NoteAuthFailure(k, 2000), 2u);
  EXPECT_EQ(t().NoteAuthFailure(k, 30'000), 3u);
  EXPECT_EQ(t().AuthFailures(k, 30'000), 3u);
  EXPECT_EQ(t().AuthFailures(k, 89'999), 3u);
  EXPECT_EQ(t().AuthFailures(k, 90'000), 0u);  // 60 s since the last failure
  EXPECT_EQ(t().NoteAuthFailure(k, 90'000), 1u);
  EXPECT_EQ(t().AuthFailures(KeyOf("auth", "resp", "192.0.2.10"), 90'000), 0u);
  EXPECT_EQ(t().NoteAuthFailure(k, 90'001), 2u);
  t().ClearAuthFailures(k);
  EXPECT_EQ(t().AuthFailures(k, 90'002), 0u);
  EXPECT_EQ(t().NoteAuthFailure(k, 90'003), 1u);
  EXPECT_EQ(t().Stats().auth_failures, 6u);
}

TEST_F(LimiterTest, OpenConnectionsLeaveRoomForRequestsAndGoUncountedWhenTheSetIsFull) {
  const uint64_t base = 77;
  for (uint32_t i = 0; i < kConnWays; i++)
    ASSERT_EQ(t().ConnAcquire(SameSet(base, i), 0, 1), ConnResult::kCounted) << i;
  // The set's connection ways are used: a new address there is admitted
  // uncounted (never refused for the table's sake), and so is a new owner.
  const uint64_t other = SameSet(base, kWays);
  EXPECT_EQ(t().ConnAcquire(other, 0, 1), ConnResult::kUncounted);
  EXPECT_EQ(t().ConnCount(other), 0u);
  EXPECT_EQ(t().ConnAcquire(SameSet(base, 0), 1, 5), ConnResult::kUncounted);
  // Over its limit an address is still refused.
  EXPECT_EQ(t().ConnAcquire(SameSet(base, 0), 1, 1), ConnResult::kRefused);
  // Request buckets and AUTH failures still get the reserved ways.
  EXPECT_TRUE(t().Request(other, 1, 0, 100).allowed);
  EXPECT_FALSE(t().Request(other, 1, 0, 100).allowed);
  EXPECT_EQ(t().NoteAuthFailure(SameSet(base, kWays + 1), 100), 1u);
  EXPECT_EQ(t().AuthFailures(SameSet(base, kWays + 1), 100), 1u);
  TableStats st = t().Stats();
  EXPECT_EQ(st.entries_used, kConnWays + 2);
  EXPECT_EQ(st.refused_conn, 1u);
  EXPECT_EQ(st.evictions_failed, 2u);
  // One connection closes: its entry is free again.
  t().ConnRelease(SameSet(base, 3), 0);
  EXPECT_EQ(t().ConnAcquire(other, 0, 1), ConnResult::kCounted);
  // Other sets never noticed.
  uint64_t elsewhere = base + 1;
  while (testing::SetIndexForTest(g_mem, elsewhere) == testing::SetIndexForTest(g_mem, base))
    elsewhere++;
  EXPECT_EQ(t().ConnAcquire(elsewhere, 0, 1), ConnResult::kCounted);
}

TEST_F(LimiterTest, EvictsTheLeastRecentlyUsedEntry) {
  const uint64_t base = 5;
  // Each key's bucket is full after one request (burst 0, a very slow rate).
  for (uint32_t i = 0; i < kWays; i++)
    ASSERT_TRUE(t().Request(SameSet(base, i), 0.001, 0, 100 + i).allowed);
  ASSERT_FALSE(t().Request(SameSet(base, 0), 0.001, 0, 200).allowed);  // key 0 used last
  ASSERT_TRUE(t().Request(SameSet(base, kWays), 0.001, 0, 201).allowed);
  EXPECT_EQ(t().Stats().evictions, 1u);
  EXPECT_FALSE(t().Request(SameSet(base, 0), 0.001, 0, 202).allowed);  // kept
  EXPECT_TRUE(t().Request(SameSet(base, 1), 0.001, 0, 203).allowed);   // evicted: starts empty
  // An entry with open connections is never the victim.
  ASSERT_TRUE(Acquire(t(), SameSet(base, 100), 0, 1));
  for (uint32_t i = 0; i < 3 * kWays; i++)
    ASSERT_TRUE(t().Request(SameSet(base, 200 + i), 0.001, 0, 300 + i).allowed);
  EXPECT_EQ(t().ConnCount(SameSet(base, 100)), 1u);
}

TEST_F(LimiterTest, LruEvictionKeepsTheTableBounded) {
  for (uint64_t i = 0; i < 100'000; i++) {
    const uint64_t k = KeyOf("req", "web", "10.0." + std::to_string(i));
    ASSERT_TRUE(t().Request(k, 1, 0, 1000 + i).allowed) << i;
  }
  const TableStats st = t().Stats();
  EXPECT_LE(st.entries_used, uint64_t{kSets} * kWays);
  EXPECT_GT(st.entries_used, uint64_t{kSets} * kWays * 9 / 10);  // the hash spreads keys
  EXPECT_EQ(st.evictions, 100'000 - st.entries_used);
  EXPECT_EQ(st.evictions_failed, 0u);
  // The most recent keys are still there.
  EXPECT_FALSE(t().Request(KeyOf("req", "web", "10.0.99999"), 1, 0, 1000 + 99'999).allowed);
}

// Two processes hammer the same keys: connection counts stay exact, the
// limit holds at every moment, and a bucket lets exactly burst + 1 through.
TEST_F(LimiterTest, ForkedProcessesKeepCountsExact) {
  struct Shared {
    std::atomic<int> holders{0};
    std::atomic<int> max_holders{0};
    std::atomic<uint64_t> allowed{0};
  };
  Region aux(4096);
  ASSERT_NE(aux.get(), nullptr);
  auto* sh = new (aux.get()) Shared();
  const uint64_t conn = KeyOf("conn", "web", "192.0.2.1");
  const uint64_t excl = KeyOf("conn", "web", "192.0.2.2");
  const uint64_t req = KeyOf("req", "web", "192.0.2.1");
  constexpr int kIters = 10'000;
  std::vector<pid_t> kids;
  for (int owner = 0; owner < 2; owner++) {
    kids.push_back(Spawn([&, owner] {
      Table table(region_.get());
      int bad = 0;
      for (int i = 0; i < kIters; i++) {
        if (!Acquire(table, conn, owner, 2 * kIters)) bad++;
        if (Acquire(table, excl, owner, 1)) {
          const int h = sh->holders.fetch_add(1) + 1;
          int m = sh->max_holders.load();
          while (h > m && !sh->max_holders.compare_exchange_weak(m, h)) {
          }
          sh->holders.fetch_sub(1);
          table.ConnRelease(excl, owner);
        }
        if (table.Request(req, 0.001, 99, 5000).allowed) sh->allowed.fetch_add(1);
        table.ConnRelease(conn, owner);
      }
      return bad == 0 ? 0 : 1;
    }));
  }
  for (pid_t p : kids) EXPECT_EQ(Wait(p), 0);
  EXPECT_EQ(t().ConnCount(conn), 0u);
  EXPECT_EQ(t().ConnCount(excl), 0u);
  EXPECT_EQ(sh->max_holders.load(), 1);
  EXPECT_EQ(sh->allowed.load(), 100u);
  EXPECT_EQ(t().Stats().refused_req, 2u * kIters - 100);
  EXPECT_EQ(t().Stats().entries_used, 1u);  // the bucket; no connection entry left
}

// A worker killed while it holds a set lock: the next locker recovers the
// robust mutex instead of waiting forever, and the master's ReleaseOwner()
// takes back the dead worker's connections.
void DieHoldingTheLock(void* mem, uint64_t key, bool sigkill) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    Table table(mem);
    bool ok = Acquire(table, key, 7, 100) && Acquire(table, key, 7, 100);
    ok = ok && pthread_mutex_lock(testing::SetMutexForTest(mem, key)) == 0;
    if (!sigkill) _exit(ok ? 0 : 1);  // exits holding the lock
    const char c = ok ? 'y' : 'n';
    if (write(ready[1], &c, 1) != 1) _exit(1);
    pause();
    _exit(1);
  }
  close(ready[1]);
  if (sigkill) {
    char c = 0;
    EXPECT_EQ(read(ready[0], &c, 1), 1);
    EXPECT_EQ(c, 'y');
    kill(pid, SIGKILL);
  }
  close(ready[0]);
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  if (sigkill)
    EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  else
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

TEST_F(LimiterTest, LockHolderKilledBySigkillDoesNotDeadlock) {
  const uint64_t k = KeyOf("conn", "web", "192.0.2.50");
  ASSERT_TRUE(Acquire(t(), k, 1, 100));
  DieHoldingTheLock(region_.get(), k, true);
  alarm(30);  // a deadlock fails the test instead of hanging it
  EXPECT_EQ(t().ConnCount(k), 3u);
  EXPECT_TRUE(Acquire(t(), k, 1, 100));
  EXPECT_TRUE(t().Request(SameSet(k, 1), 1, 0, 100).allowed);
  t().ReleaseOwner(7);
  EXPECT_EQ(t().ConnCount(k), 2u);
  // The mutex is healthy again: lock and unlock normally.
  pthread_mutex_t* mu = testing::SetMutexForTest(region_.get(), k);
  EXPECT_EQ(pthread_mutex_lock(mu), 0);
  EXPECT_EQ(pthread_mutex_unlock(mu), 0);
  alarm(0);
}

TEST_F(LimiterTest, LockHolderExitingWithoutUnlockDoesNotDeadlock) {
  const uint64_t k = KeyOf("conn", "web", "192.0.2.51");
  DieHoldingTheLock(region_.get(), k, false);
  alarm(30);
  t().ReleaseOwner(7);
  EXPECT_EQ(t().ConnCount(k), 0u);
  EXPECT_EQ(t().NoteAuthFailure(k, 100), 1u);
  EXPECT_EQ(t().Stats().entries_used, 1u);
  alarm(0);
}

}  // namespace
}  // namespace pf::limit
