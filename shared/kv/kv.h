// shared/kv/kv.h: the sharded key-value engine that lives in the shared segment.
// Each shard: a process-shared robust mutex, a fixed bucket index (chaining,
// never rehashed, so SCAN cursors stay valid), an arena with size classes, LRU
// order, expiry and counters. Offsets only; no malloc into shared memory.
//
// Values of 16 KiB and more live in the large-object area (Format's
// large_bytes), outside the shards.
//
// Lock order: an operation holds one shard lock; MSet, MGet, WithKeys and
// Exclusive (atomic) take all their shards' locks in ascending shard index;
// the large-object area's lock is taken last, inside one allocation or free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pf {

// What a full shard does: refuse writes, or evict its least recently used keys.
enum class Eviction : uint8_t { kNoEviction, kAllKeysLru };

}  // namespace pf

namespace pf::kv {

struct Limits {
  uint32_t max_key_bytes = 512;
  uint32_t max_value_bytes = 1024 * 1024;
  Eviction eviction = Eviction::kNoEviction;
};

enum class Status : uint8_t {
  kOk,
  kNotFound,    // no such key (or it expired)
  kNotDone,     // SET NX/XX condition not met, EXPIRE on a missing key, PERSIST without TTL
  kNotInteger,  // INCR on a value that is not a 64-bit decimal integer
  kOverflow,    // INCR would overflow int64
  kTooLarge,    // key or value over Limits
  kOom,         // no memory in the shard and eviction is off (or cannot free enough)
};

struct SetOptions {
  enum Cond : uint8_t { kAlways, kIfAbsent /*NX*/, kIfPresent /*XX*/ } cond = kAlways;
  int64_t expire_at_ms =
      -1;  // absolute unix ms; -1 = no expiry (clears an existing one unless keep_ttl)
  bool keep_ttl = false;
};

// Thrown by a Store call that needs a shard whose repair after a crash failed:
// its mutex is left unrecoverable and its data is never served again (restart).
struct ShardUnrecoverable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Stats {                     // summed over shards (GetStats) or of one shard (GetShardStats)
  uint64_t keys = 0, expires = 0;  // keys, keys with a TTL
  uint64_t used_bytes = 0;         // bytes in use (items incl. headers; GetStats: + large runs)
  uint64_t capacity_bytes = 0;     // arena bytes in all (GetStats: + the large-object area)
  uint64_t hits = 0, misses = 0, evictions = 0, expired = 0;
  // Mean remaining TTL of keys with one, in ms, estimated by the expiry
  // sweep as Redis' avg_ttl (0 until a sweep has seen one).
  uint64_t avg_ttl_ms = 0;
  // GetStats only: the large-object area (values of 16 KiB and more).
  uint64_t large_capacity_bytes = 0, large_used_bytes = 0, large_values = 0;
};

// Persistence hook (shared/persist/persist.h). Every mutation reports the state it
// left, while it still holds its shard's lock, with that shard's next
// sequence number: a key's new value and expiry (Put), its removal (Del,
// also for evictions), or a whole shard emptied (Clear, FLUSHALL). Entries
// between BeginGroup and EndGroup (MSET, FLUSHALL: several shards locked at
// once) are one atomic record. Lazily expired keys are not reported.
class Journal {
 public:
  virtual ~Journal() = default;
  virtual void Put(uint32_t shard, uint64_t seq, std::string_view key, std::string_view value,
                   int64_t expire_at) = 0;
  virtual void Del(uint32_t shard, uint64_t seq, std::string_view key) = 0;
  virtual void Clear(uint32_t shard, uint64_t seq) = 0;
  virtual void BeginGroup() = 0;
  virtual void EndGroup() = 0;
};
// This process' journal (nullptr: mutations are not reported).
void SetJournal(Journal* j);

class Store;

// The keys of one Store::WithKeys section, read and written under their
// shards' locks: everything done through it is atomic with respect to every
// other Store call (all see the section's effects at once or none). Only the
// keys given to WithKeys may be named (asserted). Persistence logs the
// section's writes as one record. Expired keys are removed lazily on access,
// as Store::Get does.
class KeyView {
 public:
  KeyView(const KeyView&) = delete;
  KeyView& operator=(const KeyView&) = delete;

  // kOk with a view of the value (into the shared segment: valid until the
  // next Put or Del of this section) and its expiry (-1: none); kNotFound.
  Status Get(std::string_view key, std::string_view* value, int64_t* expire_at = nullptr);
  bool Exists(std::string_view key);
  // Writes key=value (replacing any value; expire_at -1 = no TTL). kOk,
  // kTooLarge (key or value over Limits: nothing written), kOom. `value` may
  // be a view this section's Get returned.
  Status Put(std::string_view key, std::string_view value, int64_t expire_at);
  Status Del(std::string_view key);  // kOk or kNotFound
  // As Store::SetExpire, without rewriting the value: at_ms = -1 removes the
  // TTL (kNotDone if none); a deadline not after now deletes the key.
  Status SetExpire(std::string_view key, int64_t at_ms);
  // Whether Puts of these (key, value size) pairs would all succeed, checked
  // before writing any: kOk, kTooLarge or kOom (as MSet's dry run; under
  // allkeys-lru only the arena size is checked, eviction makes the room).
  Status CanPut(std::span<const std::pair<std::string_view, size_t>> items);
  uint64_t now_ms() const { return now_; }
  uint32_t max_value_bytes() const;

 private:
  friend class Store;
  struct Slot {
    std::string_view key;
    uint64_t hash;
    uint32_t shard;
  };
  KeyView(Store* st, uint64_t now) : st_(st), now_(now) {}
  const Slot& Find(std::string_view key) const;  // asserts that `key` was listed
  Store* st_;
  uint64_t now_;
  std::vector<Slot> slots_;  // sorted by key
  std::string copy_;         // Put of a value that lives in the segment
};

// What a key looked like when WATCHed (Store::Watch), for Store::Changed.
struct WatchState {
  uint64_t removals = 0;  // its shard's removals then
  uint32_t version = 0;   // its item's write stamp, if it existed
  bool exists = false;
};

class Store {
 public:
  // Smallest region that can hold `shards` shards.
  static size_t MinSize(uint32_t shards);
  // An overwrite needs the old and the new copy at once (crash consistency),
  // and other keys fragment the arena, so a shard must hold this many copies
  // of the largest item for every value the limits allow to be stored and
  // overwritten.
  static constexpr uint32_t kLargestItemCopies = 3;
  // Smallest shard (the per-shard share of the region: header, buckets and
  // arena) whose arena holds kLargestItemCopies items of the largest size
  // class that max_key + max_value bytes need; with a large-object area,
  // values of 16 KiB (kLargeValueMin) and more live there, not in a shard.
  static uint64_t MinShardBytesFor(uint32_t max_key_bytes, uint32_t max_value_bytes,
                                   bool large_area = false);
  // Smallest region whose `shards` shards are each MinShardBytesFor(...),
  // plus a large-object area of large_bytes.
  static uint64_t MinSizeFor(uint32_t shards, uint32_t max_key_bytes, uint32_t max_value_bytes,
                             uint64_t large_bytes = 0);
  // An overwrite of a large value holds both copies until the new one is
  // committed: the area must hold this many of the largest value.
  static constexpr uint32_t kLargestLargeCopies = 2;
  // Smallest large-object area for values up to max_value_bytes (0 if every
  // such value fits a shard).
  static uint64_t MinLargeBytesFor(uint32_t max_value_bytes);
  // Master, once, before forking: lay out a store in [base, base+size).
  // `seed` keys the hash (anti hash-flooding). The last `large_bytes` of the
  // region are the large-object area (0: none; every value lives in its
  // shard). Returns nullptr (and why) if the region is too small.
  static Store* Format(void* base, size_t size, uint32_t shards, const Limits& limits,
                       uint64_t seed, std::string* why, uint64_t large_bytes = 0);
  // Check magic/version/size of a formatted region; nullptr (and why) on mismatch.
  static Store* Attach(void* base, size_t size, std::string* why);

  void SetLimits(const Limits& l);  // on reload (shard count cannot change)
  uint32_t shard_count() const;
  uint32_t ShardOf(std::string_view key) const;

  // Every call takes now_ms (unix ms) so tests control time; expired keys are
  // removed lazily on access (counted in `expired`).
  Status Get(std::string_view key, uint64_t now_ms, std::string* value);
  // `old`: if non-null, receives the previous value (GET option); *had_old says if there was one.
  Status Set(std::string_view key, std::string_view value, const SetOptions& opt, uint64_t now_ms,
             std::string* old = nullptr, bool* had_old = nullptr);
  Status Del(std::string_view key, uint64_t now_ms);  // kOk or kNotFound
  bool Exists(std::string_view key, uint64_t now_ms);
  Status IncrBy(std::string_view key, int64_t delta, uint64_t now_ms, int64_t* result);
  // at_ms = -1 removes the TTL (PERSIST: kNotDone if there was none).
  Status SetExpire(std::string_view key, int64_t at_ms, uint64_t now_ms);
  // *at_ms = -1 when the key has no TTL.
  Status GetExpire(std::string_view key, uint64_t now_ms, int64_t* at_ms);

  // A locked multi-key section: takes the shards of `keys` in ascending
  // shard order (the lock order above), opens one journal group, calls
  // fn(view) and returns what fn returns. Every read-modify-write command
  // (GETSET, APPEND, RENAME, MSETNX, BITOP, ...) is one section; fn must be
  // quick (the locks are held) and its work bounded by the caller.
  Status WithKeys(std::span<const std::string_view> keys, uint64_t now_ms,
                  const std::function<Status(KeyView&)>& fn);

  // Atomic over all keys: locks every involved shard in ascending order. The
  // caller bounds the size of `kvs` (the locks are held while it is written).
  Status MSet(std::span<const std::pair<std::string_view, std::string_view>> kvs, uint64_t now_ms);
  // Atomic over all keys, as MSet: holds every involved shard's lock at
  // once (ascending). Returns false, with `out` incomplete, as soon as the
  // values copied total more than `max_bytes`.
  bool MGet(std::span<const std::string_view> keys, uint64_t now_ms,
            std::vector<std::optional<std::string>>* out, uint64_t max_bytes = UINT64_MAX);

  // Cursor = (shard << 32) | bucket; 0 starts and 0 ends. Buckets never move
  // (the index is not rehashed), so a key present for the whole scan is
  // returned at least once, whatever is written or expired meanwhile. A call
  // returns whole buckets until it has `count` keys, the keys total more than
  // `max_bytes`, or its work budget (about 65 k buckets or summary words,
  // plus 16 a key asked for) is spent: empty shards cost one step and empty
  // bucket runs one step per 4096 buckets (the occupancy summary), so an
  // empty or small store is one call. One shard's lock at a time. `resume`,
  // if given, gets one cursor per key returned: the one that continues after
  // that key's bucket.
  uint64_t Scan(uint64_t cursor, size_t count, uint64_t now_ms, std::vector<std::string>* keys,
                uint64_t max_bytes = UINT64_MAX, std::vector<uint64_t>* resume = nullptr);
  uint64_t DbSize();
  // A key chosen about uniformly (RANDOMKEY): a shard weighted by its keys,
  // random buckets until one holds keys (a bounded number of tries, then the
  // next non-empty bucket), a random live key of its chain. `seed` drives the
  // choices. False when no live key was found.
  bool RandomKey(uint64_t now_ms, uint64_t seed, std::string* key);

  // ---- transactions (MULTI/EXEC/WATCH) ----
  // The state of `key` now, for WATCH.
  WatchState Watch(std::string_view key, uint64_t now_ms);
  // Whether `key` may have been written, deleted or expired since `w`: exact
  // for a key that existed then (its item's write stamp; a TTL change counts)
  // and for one that exists now; for a key absent then and now, true if any
  // key of its shard was removed meanwhile (it may have come and gone).
  bool Changed(std::string_view key, const WatchState& w, uint64_t now_ms);
  // Runs fn holding the locks of the shards of `keys` (every shard if
  // `all_shards`), taken in ascending order, inside one journal group:
  // everything fn does through this Store is one atomic step for every other
  // process and one persistence record. Store calls inside take no locks of
  // their own and may only touch those shards (asserted). Does not nest.
  void Exclusive(std::span<const std::string_view> keys, bool all_shards,
                 const std::function<void()>& fn);
  // Atomic: holds every shard's lock at once (ascending), as MSet does.
  uint64_t FlushAll();                            // returns keys removed
  uint64_t FlushPrefix(std::string_view prefix);  // namespace flush ("ns^")
  Stats GetStats();
  Stats GetShardStats(uint32_t shard);

  // Active expiry: remove up to max_keys expired keys of one shard.
  size_t SweepExpired(uint32_t shard, uint64_t now_ms, size_t max_keys);
  // Walks one shard and checks every invariant (index, arena, LRU, counters).
  bool Verify(uint32_t shard, std::string* why);

  // ---- persistence ----
  // The hash key, and the shard a key has under another key and shard count
  // (replaying a log written by an earlier run).
  std::pair<uint64_t, uint64_t> HashSeed() const;
  static uint32_t ShardOfWith(uint64_t k0, uint64_t k1, uint32_t shards, std::string_view key);
  // Calls fn for every live, unexpired item of one shard while holding its
  // lock (fn must be quick: copy, do no I/O) and returns the shard's
  // sequence number at that moment: the snapshot's watermark.
  using ItemFn =
      std::function<void(std::string_view key, std::string_view value, int64_t expire_at)>;
  uint64_t ExportShard(uint32_t shard, uint64_t now_ms, const ItemFn& fn);
  // Faults in, writable, the arena pages the next `bytes` of items of one
  // shard will take (from its bump pointer): replay writes them next, and
  // one madvise(MADV_POPULATE_WRITE) costs less than a fault a page. False
  // if the kernel cannot (before Linux 5.14); the pages then fault as used.
  bool Prefault(uint32_t shard, uint64_t bytes);
  // FlushAll calls so far (a snapshot walk that saw one change retries).
  uint64_t Flushes() const;
  // Removes every key for which pred is true (replaying a FLUSHALL that a
  // snapshot only partly covers); not journaled.
  uint64_t RemoveIf(const std::function<bool(std::string_view key)>& pred);

 private:
  Store() = default;
};

// Test-only crash points: when the process-wide crash point equals `n`, the
// engine raises SIGKILL at that point inside a critical section.
namespace testing {
void SetCrashPoint(int n);
int CrashPointCount();              // how many distinct points exist (1..N)
const char* CrashPointName(int n);  // "Commit", "RebuildMid", ...; "" if out of range
uint64_t RecoveryCount();           // shard repairs (EOWNERDEAD) done by this process
void SetFormatBuckets(uint32_t n);  // buckets per shard for later Format()s (0 = sized from memory)
}  // namespace testing

}  // namespace pf::kv
