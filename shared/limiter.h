// shared/limiter.h: the limiter table in the shared segment, which every worker
// uses for limit_req-style request rates, limit_conn-style open connections per
// key and failed AUTH attempts per client address. It is a fixed
// set-associative table (kSets sets of kWays entries); a key's set is
// key % kSets. Lock rules: each set has its own robust process-shared mutex,
// an operation holds at most one of them, and only while it scans that set's
// kWays entries. Entries are plain numbers: a holder that dies leaves at worst
// a count slightly off, so EOWNERDEAD drops empty connection entries and goes
// on. Connection counts are kept per (key, owner process), so the master's
// ReleaseOwner() after reaping a worker takes back what it held.
#pragma once

#include <pthread.h>

#include <cstdint>
#include <string_view>

namespace pf::limit {

constexpr uint32_t kSets = 512;
constexpr uint32_t kWays = 16;
constexpr uint32_t kConnWays = kWays - 4;   // entries of a set open connections may hold
constexpr uint64_t kAuthWindowMs = 60'000;  // failures restart after this long without one

// Bytes to reserve in the segment (a multiple of the page size).
uint64_t TableBytes();
// Master, once, before the first fork: builds an empty table at `mem`
// (TableBytes() bytes, page aligned) and initializes the set mutexes.
void Format(void* mem);
// The key of (kind, scope, address), e.g. ("req", listener name, client IP).
// The hash key is fixed, so every process (and every run) agrees on it.
// Never 0.
uint64_t KeyOf(std::string_view kind, std::string_view scope, std::string_view address);

enum class ConnResult { kCounted, kRefused, kUncounted };

struct ReqResult {
  bool allowed;
  uint64_t retry_after_ms;  // >= 1 when refused: when one request fits again
};

struct TableStats {
  uint64_t entries_used;  // counted by a scan of every set
  uint64_t evictions;     // live entries replaced by least-recently-used eviction
  uint64_t refused_req;
  uint64_t refused_conn;  // every false ConnAcquire, over the limit or out of room
  uint64_t auth_failures;
  uint64_t evictions_failed;  // a set had no room: req/auth failed open, a
                              // connection went uncounted
};

class Table {
 public:
  explicit Table(void* mem);  // attach to a Format()ed region

  // nginx's limit_req with nodelay: the bucket holds up to burst + 1 requests
  // and leaks rate_per_s (> 0) of them per second. A request that does not
  // fit is refused and not counted. A new key starts empty, so its first
  // burst + 1 requests pass.
  ReqResult Request(uint64_t key, double rate_per_s, uint32_t burst, uint64_t now_ms);
  // kRefused (nothing counted) when the key has `max` open connections over
  // all owners. kUncounted: admitted but not counted, because its set has
  // no room (open connections hold at most kConnWays of a set's entries);
  // do not ConnRelease it.
  ConnResult ConnAcquire(uint64_t key, int owner, uint32_t max);
  void ConnRelease(uint64_t key, int owner);
  uint32_t ConnCount(uint64_t key);
  // Failed AUTH attempts of a key; the count restarts once kAuthWindowMs
  // passed since the last failure. Returns the failures including this one.
  uint32_t NoteAuthFailure(uint64_t key, uint64_t now_ms);
  uint32_t AuthFailures(uint64_t key, uint64_t now_ms);  // without adding one
  void ClearAuthFailures(uint64_t key);                  // after a success
  // Master, after reaping a worker: drops every connection count of
  // `owner`. Waits at most timeout_ms for each set's lock; false: some set
  // was busy (call again later; the others are done).
  bool ReleaseOwner(int owner, int timeout_ms = 50);
  TableStats Stats();

  struct Header;
  struct Set;

 private:
  Header* h_;
  Set* sets_;
};

namespace testing {
// The mutex of the set `key` falls in, for tests that die holding it.
pthread_mutex_t* SetMutexForTest(void* mem, uint64_t key);
// The set `key` falls in (a seed random per table decides it).
uint32_t SetIndexForTest(void* mem, uint64_t key);
}  // namespace testing

}  // namespace pf::limit
