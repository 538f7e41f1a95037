// shared/limiter.cc: the limiter table (shared/limiter.h): set layout, the set
// lock and its EOWNERDEAD repair, leaky buckets, connection and AUTH counts.
#include "shared/limiter.h"

#include <errno.h>
#include <sys/random.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <new>
#include <type_traits>

#include "shared/util/assert.h"
#include "shared/util/clock.h"
#include "shared/util/hash.h"

namespace pf::limit {

namespace {

constexpr uint64_t kMagic = 0x3154494d494c4650ull;  // "PFLIMIT1" little-endian
constexpr int64_t kMilli = 1000;                    // excess_milli per request
// The hash key of KeyOf(): fixed, so that every process agrees without sharing it.
constexpr uint64_t kKey0 = 0x70726566'6f726b64ull;
constexpr uint64_t kKey1 = 0x6c696d69'74657231ull;

constexpr uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// One key's state. owner < 0: request bucket and AUTH failures of `key`;
// owner >= 0: the connections `owner` holds open for `key` (such an entry
// exists only while conns > 0, so only these entries are never evicted).
struct Entry {
  uint64_t key;  // 0 = free
  uint64_t last_ms;
  int64_t excess_milli;  // requests in the bucket, in 1/1000, as of bucket_ms
  uint64_t bucket_ms;
  uint64_t fail_last_ms;  // the latest failure
  uint32_t failures;
  uint32_t conns;
  int32_t owner;
};
static_assert(std::is_trivially_copyable_v<Entry> && sizeof(Entry) <= 64);

}  // namespace

struct alignas(64) Table::Header {
  uint64_t magic = kMagic;
  std::atomic<uint64_t> evictions{0};
  std::atomic<uint64_t> evictions_failed{0};
  std::atomic<uint64_t> refused_req{0};
  std::atomic<uint64_t> refused_conn{0};
  std::atomic<uint64_t> auth_failures{0};
  // Picks a key's set (SetOf), random per run: keys are public (KeyOf's
  // hash key is fixed), so without it an attacker could choose addresses
  // that all fall in one set and crowd out everyone else there.
  uint64_t set_seed = 0;
};

struct alignas(64) Table::Set {
  pthread_mutex_t mu;
  Entry e[kWays];
};
static_assert(std::is_standard_layout_v<Table::Header> && std::is_standard_layout_v<Table::Set>);

namespace {

using Set = Table::Set;
using Header = Table::Header;

Set* SetsOf(void* mem) { return reinterpret_cast<Set*>(static_cast<char*>(mem) + sizeof(Header)); }
Set* SetOf(Set* sets, const Header* h, uint64_t key) {
  return sets + SipHash13(h->set_seed, kKey0, &key, sizeof key) % kSets;
}

// A holder died mid-operation: its entry may be half written. Entries are
// plain numbers, so nothing needs more than dropping connection entries
// left with no connection (ReleaseOwner() takes the dead owner's others).
void Repair(Set* s) {
  for (Entry& e : s->e)
    if (e.key != 0 && e.owner >= 0 && e.conns == 0) e.key = 0;
}

class SetLock {
 public:
  explicit SetLock(Set* s) : s_(s) {
    const int r = pthread_mutex_lock(&s->mu);
    if (r == EOWNERDEAD) {
      Repair(s);
      pthread_mutex_consistent(&s->mu);
      return;
    }
    PF_ASSERT_MSG(r == 0, "a limiter set mutex failed to lock");
  }
  ~SetLock() { pthread_mutex_unlock(&s_->mu); }
  SetLock(const SetLock&) = delete;
  SetLock& operator=(const SetLock&) = delete;

 private:
  Set* s_;
};

Entry* Find(Set* s, uint64_t key, int owner) {
  for (Entry& e : s->e)
    if (e.key == key && e.owner == owner) return &e;
  return nullptr;
}

uint32_t SumConns(const Set* s, uint64_t key) {
  uint64_t n = 0;
  for (const Entry& e : s->e)
    if (e.key == key && e.owner >= 0) n += e.conns;
  return static_cast<uint32_t>(std::min<uint64_t>(n, std::numeric_limits<uint32_t>::max()));
}

// A free entry, else the least recently used one without open connections,
// cleared and given `key` and `owner`; nullptr when every entry holds
// connections.
Entry* Claim(Header* h, Set* s, uint64_t key, int owner, uint64_t now_ms) {
  Entry* victim = nullptr;
  for (Entry& e : s->e) {
    if (e.key == 0) {
      victim = &e;
      break;
    }
    if (e.owner >= 0 && e.conns > 0) continue;
    if (!victim || e.last_ms < victim->last_ms) victim = &e;
  }
  if (!victim) {
    h->evictions_failed.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  if (victim->key != 0) h->evictions.fetch_add(1, std::memory_order_relaxed);
  *victim = Entry{};
  victim->owner = owner;
  victim->last_ms = now_ms;
  victim->key = key;
  return victim;
}

void Touch(Entry* e, uint64_t now_ms) { e->last_ms = std::max(e->last_ms, now_ms); }

// Milliseconds from `from` to `now`, 0 if `now` is earlier (another process
// read the clock first and took the lock later).
uint64_t Since(uint64_t from, uint64_t now) { return now > from ? now - from : 0; }

// What a bucket leaks in `ms` at `rate_per_s` requests a second, in whole
// milli-requests (a request a second leaks one a millisecond). Rounded down,
// but not below a whole number that rounding error put just under it (1/60
// a second times 60 s is 1000). Request() decides and FirstFit() predicts
// with this one function, so a retry after the predicted wait fits.
constexpr double kLeakCap = 1e18;
int64_t Leak(double rate_per_s, uint64_t ms) {
  const double v = rate_per_s * static_cast<double>(ms);
  return v >= kLeakCap ? static_cast<int64_t>(kLeakCap) : static_cast<int64_t>(v + 1e-3);
}

// The fewest milliseconds that leak `need` (> 0).
uint64_t FirstFit(double rate_per_s, int64_t need) {
  const double guess = std::ceil(static_cast<double>(need) / rate_per_s);
  if (!(guess < 1e15)) return static_cast<uint64_t>(1e15);  // a rate near 0: "much later"
  uint64_t ms = static_cast<uint64_t>(guess);
  while (Leak(rate_per_s, ms) < need) ms++;
  while (ms > 1 && Leak(rate_per_s, ms - 1) >= need) ms--;
  return ms;
}

}  // namespace

uint64_t TableBytes() { return AlignUp(sizeof(Header) + sizeof(Set) * kSets, 4096); }

void Format(void* mem) {
  auto* h = new (mem) Header();
  if (getrandom(&h->set_seed, sizeof h->set_seed, 0) != sizeof h->set_seed)
    h->set_seed = static_cast<uint64_t>(MonoMs()) * 0x9e3779b97f4a7c15ull;
  Set* sets = SetsOf(mem);
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  for (uint32_t i = 0; i < kSets; i++) {
    Set* s = new (sets + i) Set();
    pthread_mutex_init(&s->mu, &a);
    for (Entry& e : s->e) e = Entry{};
  }
  pthread_mutexattr_destroy(&a);
}

uint64_t KeyOf(std::string_view kind, std::string_view scope, std::string_view address) {
  // Each part hashed whole and chained: no two triples share an input.
  uint64_t k = SipHash13(kKey0, kKey1, kind.data(), kind.size());
  k = SipHash13(k, kKey1, scope.data(), scope.size());
  k = SipHash13(k, kKey0, address.data(), address.size());
  return k != 0 ? k : 1;
}

Table::Table(void* mem) : h_(static_cast<Header*>(mem)), sets_(SetsOf(mem)) {
  PF_ASSERT_MSG(h_->magic == kMagic, "the limiter table was not formatted");
}

ReqResult Table::Request(uint64_t key, double rate_per_s, uint32_t burst, uint64_t now_ms) {
  PF_ASSERT_MSG(rate_per_s > 0, "a request rate must be positive");
  Set* s = SetOf(sets_, h_, key);
  SetLock l(s);
  Entry* e = Find(s, key, -1);
  if (!e) {
    e = Claim(h_, s, key, -1, now_ms);
    if (!e) return {true, 0};  // fail open
    e->bucket_ms = now_ms;
  }
  Touch(e, now_ms);
  // rate_per_s requests per second leak rate_per_s milli-requests per ms.
  // This is nginx's bucket plus the request being served: nginx refuses when
  // its excess would pass burst, this one when it would pass burst + 1.
  // The request fits once the bucket leaked `need` since bucket_ms.
  const uint64_t elapsed = Since(e->bucket_ms, now_ms);
  const int64_t need = e->excess_milli + kMilli - (static_cast<int64_t>(burst) + 1) * kMilli;
  const int64_t leaked = Leak(rate_per_s, elapsed);
  if (leaked < need) {
    h_->refused_req.fetch_add(1, std::memory_order_relaxed);
    const uint64_t fit = FirstFit(rate_per_s, need);
    return {false, fit > elapsed ? fit - elapsed : 1};
  }
  e->excess_milli = std::max<int64_t>(0, e->excess_milli - leaked) + kMilli;
  e->bucket_ms = std::max(e->bucket_ms, now_ms);
  return {true, 0};
}

ConnResult Table::ConnAcquire(uint64_t key, int owner, uint32_t max) {
  PF_ASSERT_MSG(owner >= 0, "a connection owner is a process index");
  Set* s = SetOf(sets_, h_, key);
  SetLock l(s);
  if (SumConns(s, key) >= max) {
    h_->refused_conn.fetch_add(1, std::memory_order_relaxed);
    return ConnResult::kRefused;
  }
  Entry* e = Find(s, key, owner);
  if (!e) {
    // Open connections may hold at most kConnWays of a set: the rest stays
    // for request buckets and failure counts. A set full of them admits the
    // connection uncounted rather than refuse every address that falls there.
    uint32_t conn_entries = 0;
    for (const Entry& x : s->e) conn_entries += x.key != 0 && x.owner >= 0;
    if (conn_entries < kConnWays) e = Claim(h_, s, key, owner, 0);
  }
  if (!e) {
    h_->evictions_failed.fetch_add(1, std::memory_order_relaxed);
    return ConnResult::kUncounted;
  }
  e->conns++;
  return ConnResult::kCounted;
}

void Table::ConnRelease(uint64_t key, int owner) {
  if (owner < 0) return;
  Set* s = SetOf(sets_, h_, key);
  SetLock l(s);
  Entry* e = Find(s, key, owner);
  if (!e) return;  // ReleaseOwner() came first
  if (e->conns > 0) e->conns--;
  if (e->conns == 0) e->key = 0;
}

uint32_t Table::ConnCount(uint64_t key) {
  Set* s = SetOf(sets_, h_, key);
  SetLock l(s);
  return SumConns(s, key);
}

uint32_t Table::NoteAuthFailure(uint64_t key, uint64_t now_ms) {
  h_->auth_failures.fetch_add(1, std::memory_order_relaxed);
  Set* s = SetOf(sets_, h_, key);
  SetLock l(s);
  Entry* e = Find(s, key, -1);
  if (!e) e = Claim(h_, s, key, -1, now_ms);
  if (!e) return 1;  // fail open: only this failure is known
  Touch(e, now_ms);
  if (Since(e->fail_last_ms, now_ms) >= kAuthWindowMs) e->failures = 0;
  if (e->failures < std::numeric_limits<uint32_t>::max()) e->failures++;
  e->fail_last_ms = std::max(e->fail_last_ms, now_ms);
  return e->failures;
}

uint32_t Table::AuthFailures(uint64_t key, uint64_t now_ms) {
  Set* s = SetOf(sets_, h_, key);
  SetLock l(s);
  const Entry* e = Find(s, key, -1);
  if (!e || Since(e->fail_last_ms, now_ms) >= kAuthWindowMs) return 0;
  return e->failures;
}

void Table::ClearAuthFailures(uint64_t key) {
  Set* s = SetOf(sets_, h_, key);
  SetLock l(s);
  Entry* e = Find(s, key, -1);
  if (!e) return;
  e->failures = 0;
  e->fail_last_ms = 0;
  // An empty bucket is what a new key starts with: the entry holds nothing.
  if (e->excess_milli == 0) e->key = 0;
}

bool Table::ReleaseOwner(int owner, int timeout_ms) {
  if (owner < 0) return true;
  bool all = true;
  for (uint32_t i = 0; i < kSets; i++) {
    Set* s = sets_ + i;
    // The master never waits long: a stopped worker may hold a set lock
    // (the watchdog kills it; its death frees the lock), so "later".
    timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += static_cast<long>(timeout_ms) * 1'000'000;
    until.tv_sec += until.tv_nsec / 1'000'000'000;
    until.tv_nsec %= 1'000'000'000;
    const int r = pthread_mutex_timedlock(&s->mu, &until);
    if (r == EOWNERDEAD) {
      Repair(s);
      pthread_mutex_consistent(&s->mu);
    } else if (r != 0) {
      all = false;
      continue;
    }
    for (Entry& e : s->e)
      if (e.key != 0 && e.owner == owner) e.key = 0;
    pthread_mutex_unlock(&s->mu);
  }
  return all;
}

TableStats Table::Stats() {
  TableStats st{};
  for (uint32_t i = 0; i < kSets; i++) {
    Set* s = sets_ + i;
    SetLock l(s);
    for (const Entry& e : s->e) st.entries_used += e.key != 0;
  }
  st.evictions = h_->evictions.load(std::memory_order_relaxed);
  st.evictions_failed = h_->evictions_failed.load(std::memory_order_relaxed);
  st.refused_req = h_->refused_req.load(std::memory_order_relaxed);
  st.refused_conn = h_->refused_conn.load(std::memory_order_relaxed);
  st.auth_failures = h_->auth_failures.load(std::memory_order_relaxed);
  return st;
}

namespace testing {
uint32_t SetIndexForTest(void* mem, uint64_t key) {
  return static_cast<uint32_t>(SetOf(SetsOf(mem), static_cast<const Header*>(mem), key) -
                               SetsOf(mem));
}

pthread_mutex_t* SetMutexForTest(void* mem, uint64_t key) {
  return &SetOf(SetsOf(mem), static_cast<const Header*>(mem), key)->mu;
}
}  // namespace testing

}  // namespace pf::limit
