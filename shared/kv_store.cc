// shared/kv_store.cc: the sharded KV engine in the shared segment: layout,
// the per-shard allocator (size classes, free lists, coalescing), index, LRU,
// expiry, the ShardLock guard and crash recovery (rebuild from the arena).
#include <errno.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>
#include <unordered_set>
#include <vector>

#include <spdlog/spdlog.h>

#include "shared/hash.h"
#include "shared/kv.h"
#include "shared/kv_internal.h"

namespace pf::kv {

using namespace internal;

namespace internal {
int g_crash_point = 0;
void CrashNow() {
  raise(SIGKILL);
  __builtin_unreachable();
}
}  // namespace internal

namespace {

std::atomic<uint64_t> g_recoveries{0};
uint32_t g_format_buckets = 0;
Journal* g_journal = nullptr;  // this process' persistence hook (kv.h)

// Journal helpers: called with the shard's lock held, after the change.
inline void JPut(ShardHeader* s, std::string_view key, std::string_view value, int64_t expire_at) {
  if (g_journal) g_journal->Put(s->index, ++s->seq, key, value, expire_at);
}
inline void JDel(ShardHeader* s, const Item* it) {
  if (g_journal) g_journal->Del(s->index, ++s->seq, std::string_view(const_cast<Item*>(it)->key(), it->key_len));
}

constexpr uint32_t Align8(uint64_t v) { return static_cast<uint32_t>((v + 7) & ~uint64_t{7}); }
constexpr uint64_t Align64(uint64_t v) { return (v + 63) & ~uint64_t{63}; }

// ---------------------------------------------------------------------------
// Addressing
inline Item* It(ShardHeader* s, uint32_t off) {
  return reinterpret_cast<Item*>(reinterpret_cast<char*>(s) + off);
}
inline uint32_t* Buckets(ShardHeader* s) {
  return reinterpret_cast<uint32_t*>(reinterpret_cast<char*>(s) + s->buckets_off);
}
inline uint32_t ShardFromHash(uint64_t h, uint32_t n) {
  return static_cast<uint32_t>(((h >> 32) * n) >> 32);
}
inline uint32_t BucketFromHash(uint64_t h, uint32_t n) {
  return static_cast<uint32_t>(((h & 0xffffffffull) * n) >> 32);
}
inline uint64_t HashKey(const StoreHeader* h, const void* p, size_t n) {
  return SipHash13(h->k0, h->k1, p, n);
}
inline bool Expired(const Item* it, uint64_t now) {
  return it->expire_at >= 0 && static_cast<int64_t>(now) > it->expire_at;
}
inline uint32_t LoadU32(const uint32_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

// Smallest class whose size >= need; -1 if none.
int ClassFor(const StoreHeader* h, uint64_t need) {
  const uint32_t* cs = h->class_size;
  int lo = 0, hi = static_cast<int>(h->class_count);
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (cs[mid] >= need) hi = mid; else lo = mid + 1;
  }
  return lo < static_cast<int>(h->class_count) ? lo : -1;
}
// Largest class whose size <= size (size >= kMinChunk).
int FloorClass(const StoreHeader* h, uint32_t size) {
  const uint32_t* cs = h->class_size;
  int lo = 0, hi = static_cast<int>(h->class_count) - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (cs[mid] <= size) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// ---------------------------------------------------------------------------
// THE CRASH-CONSISTENCY INVARIANT (enforced by every mutation below and by
// Rebuild()):
//   The durable state of a shard is `bump` plus, for every chunk in
//   [arena_begin, bump), its header's `size` and `state` and, when live, its
//   contents. That state is valid after every single store:
//     - a chunk's contents are written while its state is still kChunkFree and
//       it becomes live with ONE byte store (commit);
//     - an overwrite commits the new copy (with a higher stamp) before it
//       frees the old one, so a crash leaves either the old or the newest copy;
//     - carving writes the new chunk header before moving `bump` over it;
//       splitting writes the tail header inside the free chunk before
//       shrinking it; merging grows a free chunk over its free neighbour with
//       one store; a flush resets `bump` with one store.
//   Everything else (bucket chains, LRU links, free lists, counters) is
//   derived, and on EOWNERDEAD MutexFailed() rebuilds it from the arena
//   (keeping the highest stamp of duplicate keys), checks it with
//   VerifyLocked(), and only then marks the mutex consistent.
// ---------------------------------------------------------------------------

void FreePush(const StoreHeader* h, ShardHeader* s, uint32_t off) {
  int c = FloorClass(h, It(s, off)->size);
  It(s, off)->hnext = s->free_head[c];
  s->free_head[c] = off;
  s->free_count[c]++;
}

uint32_t FreePop(ShardHeader* s, int c) {
  uint32_t off = s->free_head[c];
  s->free_head[c] = It(s, off)->hnext;
  s->free_count[c]--;
  PF_KV_CRASH(FreePop);
  return off;
}

// Gives the tail of free chunk `off` beyond `need` back as a free chunk.
void Split(const StoreHeader* h, ShardHeader* s, uint32_t off, uint32_t need) {
  Item* it = It(s, off);
  uint32_t rest = it->size - need;
  if (rest < kMinChunk) return;
  Item* tail = It(s, off + need);
  tail->size = rest;
  tail->state = kChunkFree;
  PF_KV_CRASH(SplitHeader);
  it->size = need;
  PF_KV_CRASH(SplitShrink);
  FreePush(h, s, off + need);
}

// A free (state kChunkFree) chunk of at least class_size[c] bytes, or 0.
uint32_t AllocChunk(const StoreHeader* h, ShardHeader* s, int c) {
  uint32_t need = h->class_size[c];
  if (s->free_head[c]) {
    uint32_t off = FreePop(s, c);
    Split(h, s, off, need);
    return off;
  }
  if (s->arena_end - s->bump >= need) {
    uint32_t off = s->bump;
    Item* it = It(s, off);
    it->size = need;
    it->state = kChunkFree;
    PF_KV_CRASH(CarveHeader);
    s->bump = off + need;
    PF_KV_CRASH(CarveBump);
    return off;
  }
  for (int d = c + 1; d < static_cast<int>(h->class_count); ++d) {
    if (s->free_head[d]) {
      uint32_t off = FreePop(s, d);
      Split(h, s, off, need);
      return off;
    }
  }
  return 0;
}

// Merges runs of adjacent free chunks, gives a free tail back to the bump
// area, and rebuilds the free lists. O(arena); runs only when an allocation
// failed and something was freed since the last pass.
void Coalesce(const StoreHeader* h, ShardHeader* s) {
  for (uint32_t c = 0; c < h->class_count; ++c) s->free_head[c] = s->free_count[c] = 0;
  PF_KV_CRASH(CoalesceClear);
  uint32_t p = s->arena_begin;
  while (p < s->bump) {
    Item* it = It(s, p);
    if (it->state != kChunkFree) {
      p += it->size;
      continue;
    }
    uint32_t q = p + it->size;
    while (q < s->bump && It(s, q)->state == kChunkFree) {
      it->size += It(s, q)->size;
      PF_KV_CRASH(CoalesceMerge);
      q = p + it->size;
    }
    if (q >= s->bump) {
      s->bump = p;
      PF_KV_CRASH(TrimBump);
      break;
    }
    FreePush(h, s, p);
    p = q;
  }
  s->frees_since_coalesce = 0;
}

// ---- index and LRU (derived) ----------------------------------------------
void LruLinkHead(ShardHeader* s, uint32_t off) {
  Item* it = It(s, off);
  it->lru_prev = 0;
  it->lru_next = s->lru_head;
  if (s->lru_head) It(s, s->lru_head)->lru_prev = off; else s->lru_tail = off;
  s->lru_head = off;
}
void LruUnlink(ShardHeader* s, uint32_t off) {
  Item* it = It(s, off);
  if (it->lru_prev) It(s, it->lru_prev)->lru_next = it->lru_next; else s->lru_head = it->lru_next;
  if (it->lru_next) It(s, it->lru_next)->lru_prev = it->lru_prev; else s->lru_tail = it->lru_prev;
  it->lru_prev = it->lru_next = 0;
}
void BucketUnlink(ShardHeader* s, uint32_t off) {
  Item* it = It(s, off);
  uint32_t* link = &Buckets(s)[BucketFromHash(it->hash, s->nbuckets)];
  while (*link && *link != off) link = &It(s, *link)->hnext;
  if (*link) *link = it->hnext;
}

uint32_t Find(ShardHeader* s, uint64_t hash, std::string_view key) {
  for (uint32_t o = Buckets(s)[BucketFromHash(hash, s->nbuckets)]; o; o = It(s, o)->hnext) {
    Item* it = It(s, o);
    if (it->hash == hash && it->key_len == key.size() &&
        std::memcmp(it->key(), key.data(), key.size()) == 0)
      return o;
  }
  return 0;
}

// Deletes a live item: kill (durable), then the derived structures.
void Remove(const StoreHeader* h, ShardHeader* s, uint32_t off) {
  Item* it = It(s, off);
  it->state = kChunkFree;
  PF_KV_CRASH(Kill);
  BucketUnlink(s, off);
  PF_KV_CRASH(UnlinkBucket);
  LruUnlink(s, off);
  PF_KV_CRASH(UnlinkLru);
  s->keys--;
  s->used_bytes -= it->size;
  if (it->expire_at >= 0) s->expires--;
  FreePush(h, s, off);
  s->frees_since_coalesce++;
  PF_KV_CRASH(FreePush);
}

// Approximate LRU (as memcached's ITEM_UPDATE_INTERVAL): an item touched
// within the last keys/8 stamps is already near the head; leaving it saves
// the writes to its LRU neighbours' cache lines on most GETs of hot keys.
void Touch(ShardHeader* s, uint32_t off) {
  Item* it = It(s, off);
  if (s->clock - it->stamp < s->keys / 8) return;
  it->stamp = ++s->clock;
  if (s->lru_head == off) return;
  PF_KV_CRASH(TouchStamp);
  LruUnlink(s, off);
  PF_KV_CRASH(TouchUnlink);
  LruLinkHead(s, off);
}

// Finds a live, unexpired item; removes it if expired (lazy expiry).
uint32_t LookupLive(const StoreHeader* h, ShardHeader* s, uint64_t hash, std::string_view key,
                    uint64_t now) {
  uint32_t off = Find(s, hash, key);
  if (off && Expired(It(s, off), now)) {
    Remove(h, s, off);
    s->expired++;
    return 0;
  }
  return off;
}

// A free chunk for an item of `need` bytes: free lists, bump, larger
// classes, then coalescing, then (allkeys-lru) eviction from this shard's LRU
// tail, never evicting `protect` (the item being overwritten).
Status Reserve(const StoreHeader* h, ShardHeader* s, uint64_t need, uint32_t protect,
               uint32_t* out) {
  int c = ClassFor(h, need);
  if (c < 0) return Status::kOom;
  // A request that cannot fit even with every other key evicted fails now,
  // before eviction empties the shard for nothing: the most room there can
  // be is the arena, or beside `protect` the larger side of it.
  uint32_t room = s->arena_end - s->arena_begin;
  if (protect)
    room = std::max(protect - s->arena_begin, s->arena_end - (protect + It(s, protect)->size));
  if (h->class_size[c] > room) return Status::kOom;
  if ((*out = AllocChunk(h, s, c))) return Status::kOk;
  if (s->frees_since_coalesce) {
    Coalesce(h, s);
    if ((*out = AllocChunk(h, s, c))) return Status::kOk;
  }
  if (static_cast<Eviction>(LoadU32(&h->eviction)) != Eviction::kAllKeysLru) return Status::kOom;
  uint32_t n = 0;
  for (;;) {
    uint32_t victim = s->lru_tail;
    if (victim == protect && victim) victim = It(s, victim)->lru_prev;
    if (!victim) break;
    PF_KV_CRASH(Evict);
    JDel(s, It(s, victim));
    Remove(h, s, victim);
    s->evictions++;
    if ((*out = AllocChunk(h, s, c))) return Status::kOk;
    if (++n % 32 == 0) {
      Coalesce(h, s);
      if ((*out = AllocChunk(h, s, c))) return Status::kOk;
    }
  }
  if (s->frees_since_coalesce) {
    Coalesce(h, s);
    if ((*out = AllocChunk(h, s, c))) return Status::kOk;
  }
  return Status::kOom;
}

// Writes key=value as a new item; `old` (0 if none) is the live item it
// replaces. See the invariant above for the order.
Status WriteItem(const StoreHeader* h, ShardHeader* s, uint64_t hash, std::string_view key,
                 std::string_view value, int64_t expire_at, uint32_t old) {
  uint32_t off;
  Status st = Reserve(h, s, sizeof(Item) + key.size() + value.size(), old, &off);
  if (st != Status::kOk) return st;
  Item* it = It(s, off);
  it->key_len = static_cast<uint32_t>(key.size());
  it->val_len = static_cast<uint32_t>(value.size());
  it->hash = hash;
  it->expire_at = expire_at;
  if (!key.empty()) std::memcpy(it->key(), key.data(), key.size());
  if (!value.empty()) std::memcpy(it->val(), value.data(), value.size());
  it->stamp = ++s->clock;
  PF_KV_CRASH(Fill);
  it->state = kChunkLive;  // commit
  PF_KV_CRASH(Commit);
  if (old) Remove(h, s, old);
  uint32_t* b = &Buckets(s)[BucketFromHash(hash, s->nbuckets)];
  it->hnext = *b;
  *b = off;
  PF_KV_CRASH(LinkBucket);
  LruLinkHead(s, off);
  PF_KV_CRASH(LinkLru);
  s->keys++;
  s->used_bytes += it->size;
  if (expire_at >= 0) s->expires++;
  PF_KV_CRASH(Counters);
  return Status::kOk;
}

// Redis string2ll rules: optional '-', no leading zeros/spaces/'+', fits int64.
bool ParseCanonicalInt(const char* p, size_t n, int64_t* v) {
  if (n == 0 || n > 20) return false;
  if (n == 1 && p[0] == '0') {
    *v = 0;
    return true;
  }
  size_t i = 0;
  bool neg = false;
  if (p[0] == '-') {
    neg = true;
    if (++i == n) return false;
  }
  if (p[i] < '1' || p[i] > '9') return false;
  uint64_t acc = 0;
  for (; i < n; ++i) {
    if (p[i] < '0' || p[i] > '9') return false;
    uint64_t d = static_cast<uint64_t>(p[i] - '0');
    if (acc > (UINT64_MAX - d) / 10) return false;
    acc = acc * 10 + d;
  }
  if (neg) {
    if (acc > uint64_t{1} << 63) return false;
    *v = static_cast<int64_t>(0 - acc);
  } else {
    if (acc > static_cast<uint64_t>(INT64_MAX)) return false;
    *v = static_cast<int64_t>(acc);
  }
  return true;
}

// ---- checker ---------------------------------------------------------------
bool Fail(std::string* why, const std::string& msg) {
  if (why) *why = msg;
  return false;
}

bool HeaderSane(ShardHeader* s, uint64_t stride, std::string* why) {
  if (s->nbuckets == 0 || s->buckets_off < sizeof(ShardHeader) ||
      uint64_t{s->buckets_off} + uint64_t{s->nbuckets} * 4 > s->arena_begin ||
      s->arena_begin > s->arena_end || s->arena_end > stride || s->bump < s->arena_begin ||
      s->bump > s->arena_end || (s->arena_begin & 7))
    return Fail(why, "shard header geometry is corrupt");
  return true;
}

// Checks one chunk header at p (below bump); for a live chunk also its contents.
bool ChunkSane(const StoreHeader* h, ShardHeader* s, uint32_t p, std::string* why) {
  Item* it = It(s, p);
  if (it->size < kMinChunk || (it->size & 7) || it->size > s->bump - p)
    return Fail(why, "chunk at " + std::to_string(p) + " has bad size " + std::to_string(it->size));
  if (it->state == kChunkFree) return true;
  if (it->state != kChunkLive)
    return Fail(why, "chunk at " + std::to_string(p) + " has bad state " +
                         std::to_string(it->state));
  if (uint64_t{sizeof(Item)} + it->key_len + it->val_len > it->size)
    return Fail(why, "item at " + std::to_string(p) + " overflows its chunk");
  if (HashKey(h, it->key(), it->key_len) != it->hash)
    return Fail(why, "item at " + std::to_string(p) + " has a wrong hash");
  if (ShardFromHash(it->hash, h->shard_count) != s->index)
    return Fail(why, "item at " + std::to_string(p) + " belongs to another shard");
  return true;
}

bool VerifyLocked(const StoreHeader* h, ShardHeader* s, std::string* why) {
  if (!HeaderSane(s, h->shard_stride, why)) return false;
  std::vector<uint32_t> starts;
  std::vector<uint8_t> seen;  // bit0 indexed, bit1 in lru, bit2 in a free list
  uint64_t live = 0, free_chunks = 0, used = 0, expires = 0;
  for (uint32_t p = s->arena_begin; p < s->bump; p += It(s, p)->size) {
    if (!ChunkSane(h, s, p, why)) return false;
    starts.push_back(p);
    Item* it = It(s, p);
    if (it->state == kChunkLive) {
      ++live;
      used += it->size;
      if (it->expire_at >= 0) ++expires;
      if (it->stamp > s->clock) return Fail(why, "item stamp ahead of the shard clock");
    } else {
      ++free_chunks;
    }
  }
  seen.assign(starts.size(), 0);
  auto index_of = [&](uint32_t off) -> int64_t {
    auto i = std::lower_bound(starts.begin(), starts.end(), off);
    return (i != starts.end() && *i == off) ? i - starts.begin() : -1;
  };
  // Index: every entry a live chunk in its own bucket, once; keys unique.
  uint64_t indexed = 0;
  std::unordered_set<std::string_view> keyset;
  for (uint32_t b = 0; b < s->nbuckets; ++b) {
    for (uint32_t o = Buckets(s)[b]; o; o = It(s, o)->hnext) {
      int64_t i = index_of(o);
      if (i < 0) return Fail(why, "bucket " + std::to_string(b) + " links a non-chunk");
      if (It(s, o)->state != kChunkLive) return Fail(why, "bucket links a free chunk");
      if (seen[i] & 1) return Fail(why, "item indexed twice (or a chain cycle)");
      seen[i] |= 1;
      Item* it = It(s, o);
      if (BucketFromHash(it->hash, s->nbuckets) != b) return Fail(why, "item in the wrong bucket");
      if (!keyset.insert(std::string_view(it->key(), it->key_len)).second)
        return Fail(why, "duplicate key in the index");
      ++indexed;
    }
  }
  if (indexed != live) return Fail(why, "indexed " + std::to_string(indexed) + " != live chunks " +
                                            std::to_string(live));
  if (s->keys != live) return Fail(why, "keys counter " + std::to_string(s->keys) + " != " +
                                            std::to_string(live));
  if (s->used_bytes != used) return Fail(why, "used_bytes counter is wrong");
  if (s->expires != expires) return Fail(why, "expires counter is wrong");
  // LRU: every live item once, links symmetric, stamps decreasing head->tail.
  uint64_t n = 0;
  uint32_t prev = 0;
  uint64_t last_stamp = UINT64_MAX;
  for (uint32_t o = s->lru_head; o; prev = o, o = It(s, o)->lru_next) {
    int64_t i = index_of(o);
    if (i < 0 || It(s, o)->state != kChunkLive) return Fail(why, "LRU links a non-item");
    if (seen[i] & 2) return Fail(why, "LRU cycle or duplicate");
    seen[i] |= 2;
    if (It(s, o)->lru_prev != prev) return Fail(why, "LRU prev link broken");
    if (It(s, o)->stamp >= last_stamp) return Fail(why, "LRU order disagrees with stamps");
    last_stamp = It(s, o)->stamp;
    ++n;
  }
  if (s->lru_tail != prev) return Fail(why, "LRU tail is wrong");
  if (n != live) return Fail(why, "LRU length " + std::to_string(n) + " != keys " +
                                      std::to_string(live));
  // Free lists: only free chunks, each once, in the list of its floor class.
  uint64_t listed = 0;
  for (uint32_t c = 0; c < kMaxClasses; ++c) {
    if (c >= h->class_count) {
      if (s->free_head[c] || s->free_count[c]) return Fail(why, "free list beyond last class");
      continue;
    }
    uint32_t cnt = 0;
    for (uint32_t o = s->free_head[c]; o; o = It(s, o)->hnext) {
      int64_t i = index_of(o);
      if (i < 0) return Fail(why, "free list links a non-chunk");
      if (It(s, o)->state != kChunkFree) return Fail(why, "free list holds a live item");
      if (seen[i] & 4) return Fail(why, "free list cycle or duplicate");
      seen[i] |= 4;
      if (FloorClass(h, It(s, o)->size) != static_cast<int>(c))
        return Fail(why, "chunk in the wrong free list");
      ++cnt;
    }
    if (cnt != s->free_count[c]) return Fail(why, "free_count of class " + std::to_string(c));
    listed += cnt;
  }
  if (listed != free_chunks) return Fail(why, "free chunks " + std::to_string(free_chunks) +
                                                  " but " + std::to_string(listed) + " listed");
  return true;
}

// Recovery: rebuild every derived structure from the arena (see the
// invariant above). Idempotent, so a crash inside it is repaired the same way.
bool Rebuild(const StoreHeader* h, ShardHeader* s, std::string* why) {
  if (!HeaderSane(s, h->shard_stride, why)) return false;
  std::memset(Buckets(s), 0, size_t{s->nbuckets} * 4);
  s->lru_head = s->lru_tail = 0;
  for (uint32_t c = 0; c < kMaxClasses; ++c) s->free_head[c] = s->free_count[c] = 0;
  s->keys = s->expires = s->used_bytes = 0;
  s->frees_since_coalesce = 0;
  PF_KV_CRASH(RebuildClear);
  // Pass 1: index live items; of two copies of a key the higher stamp wins.
  for (uint32_t p = s->arena_begin; p < s->bump; p += It(s, p)->size) {
    if (!ChunkSane(h, s, p, why)) return false;
    Item* it = It(s, p);
    if (it->state != kChunkLive) continue;
    std::string_view key(it->key(), it->key_len);
    if (uint32_t dup = Find(s, it->hash, key)) {
      if (It(s, dup)->stamp > it->stamp) {
        it->state = kChunkFree;
        continue;
      }
      BucketUnlink(s, dup);
      It(s, dup)->state = kChunkFree;
    }
    uint32_t* b = &Buckets(s)[BucketFromHash(it->hash, s->nbuckets)];
    it->hnext = *b;
    *b = p;
    PF_KV_CRASH(RebuildMid);
  }
  // Pass 2: free lists, counters, and LRU in stamp order.
  std::vector<std::pair<uint64_t, uint32_t>> order;
  for (uint32_t p = s->arena_begin; p < s->bump; p += It(s, p)->size) {
    Item* it = It(s, p);
    if (it->state == kChunkFree) {
      FreePush(h, s, p);
      continue;
    }
    order.emplace_back(it->stamp, p);
    s->keys++;
    s->used_bytes += it->size;
    if (it->expire_at >= 0) s->expires++;
    s->clock = std::max(s->clock, it->stamp);
  }
  std::sort(order.begin(), order.end());
  bool ties = false;
  for (size_t i = 1; i < order.size(); ++i) ties |= order[i].first == order[i - 1].first;
  if (ties)  // cannot happen unless memory was scribbled on; keep stamps strictly ordered
    for (auto& e : order) It(s, e.second)->stamp = e.first = ++s->clock;
  for (auto& [stamp, off] : order) LruLinkHead(s, off);
  if (s->sweep_cursor >= s->nbuckets) s->sweep_cursor = 0;
  return VerifyLocked(h, s, why);
}

// Every EOWNERDEAD of a shard mutex comes here (as LMDB's mdb_mutex_failed):
// repair, check, and only then pthread_mutex_consistent(). If the repair
// fails the mutex is released without being marked consistent, so every
// later locker gets ENOTRECOVERABLE and nobody serves the corrupt shard.
void MutexFailed(const StoreHeader* h, ShardHeader* s) {
  std::string why;
  bool ok = false;
  try {
    ok = Rebuild(h, s, &why);
  } catch (const std::exception& e) {
    why = e.what();
  }
  if (ok) {
    pthread_mutex_consistent(&s->mu);
    s->recoveries++;
    g_recoveries.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("kv: shard {} repaired after its lock holder died ({} keys)", s->index, s->keys);
    return;
  }
  spdlog::critical("kv: shard {} is CORRUPT after its lock holder died, refusing to serve it: {}",
                   s->index, why);
  std::fprintf(stderr, "preforkd kv: shard %u unrecoverable: %s\n", s->index, why.c_str());
  pthread_mutex_unlock(&s->mu);
  throw ShardUnrecoverable("kv shard " + std::to_string(s->index) + " unrecoverable: " + why);
}

// The one lock guard of a shard.
class ShardLock {
 public:
  ShardLock(const StoreHeader* h, ShardHeader* s) : s_(s) {
    // Critical sections are a few hundred nanoseconds: spin briefly before
    // sleeping in the kernel (a futex wait + wake costs more than the wait).
    // trylock reports EOWNERDEAD like lock does, so recovery stays in one place.
    int r = pthread_mutex_trylock(&s->mu);
    for (int i = 0; r == EBUSY && i < 100; ++i) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      r = pthread_mutex_trylock(&s->mu);
    }
    if (r == EBUSY) r = pthread_mutex_lock(&s->mu);
    if (__builtin_expect(r == 0, 1)) return;
    if (r == EOWNERDEAD) {
      MutexFailed(h, s);  // throws (not holding the lock) if it cannot repair
      return;
    }
    s_ = nullptr;
    if (r == ENOTRECOVERABLE)
      throw ShardUnrecoverable("kv shard " + std::to_string(s->index) + " is unrecoverable");
    throw std::runtime_error("kv: pthread_mutex_lock failed: " + std::string(std::strerror(r)));
  }
  ShardLock(ShardLock&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  ShardLock(const ShardLock&) = delete;
  ShardLock& operator=(const ShardLock&) = delete;
  ShardLock& operator=(ShardLock&&) = delete;
  ~ShardLock() {
    if (s_) pthread_mutex_unlock(&s_->mu);
  }

 private:
  ShardHeader* s_;
};

}  // namespace

// ===========================================================================
// Store

namespace {
inline const StoreHeader* Hdr(const Store* st) { return reinterpret_cast<const StoreHeader*>(st); }
inline StoreHeader* Hdr(Store* st) { return reinterpret_cast<StoreHeader*>(st); }
inline ShardHeader* Sh(const Store* st, uint32_t i) {
  const StoreHeader* h = Hdr(st);
  return reinterpret_cast<ShardHeader*>(
      const_cast<char*>(reinterpret_cast<const char*>(st)) + h->shards_off + i * h->shard_stride);
}
constexpr uint64_t kStoreHeaderBytes = Align64(sizeof(StoreHeader));
constexpr uint64_t kMinShardBytes = Align64(sizeof(ShardHeader)) + 64 * 4 + kMinArena;
constexpr uint64_t kMaxStride = 0xFFFFFFC0ull;  // offsets in a shard are uint32_t

// The size class after `cs`: the one growth rule Format and
// MinShardBytesFor share.
uint64_t NextClass(uint64_t cs) {
  return std::max<uint64_t>(cs + 8, Align8(static_cast<uint64_t>(cs * kClassFactor)));
}

// Arena bytes Format gives a shard of `stride` bytes (0 if none fits).
uint64_t ArenaBytesOf(uint64_t stride, uint64_t nbuckets) {
  uint64_t arena_begin = Align64(Align64(sizeof(ShardHeader)) + nbuckets * 4);
  return stride > arena_begin ? (stride - arena_begin) & ~uint64_t{7} : 0;
}
uint64_t DefaultBuckets(uint64_t stride) { return std::max<uint64_t>(16, stride / 128); }

uint64_t Mix64(uint64_t x) {  // splitmix64 finalizer
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
}  // namespace

Limits LimitsFrom(const KvConf& c) {
  return Limits{c.max_key_bytes, c.max_value_bytes, c.eviction};
}

size_t Store::MinSize(uint32_t shards) {
  return kStoreHeaderBytes + size_t{std::max<uint32_t>(shards, 1)} * kMinShardBytes;
}

uint64_t Store::MinShardBytesFor(uint32_t max_key_bytes, uint32_t max_value_bytes) {
  const uint64_t need = sizeof(Item) + uint64_t{max_key_bytes} + max_value_bytes;
  uint64_t cls = kMinChunk;
  while (cls < need) cls = NextClass(cls);
  const uint64_t arena = kLargestItemCopies * cls;
  // Buckets take about 1/32 of a shard: start just above, then settle on the
  // smallest 64-byte multiple whose arena is large enough.
  uint64_t stride = Align64(arena + arena / 31 + Align64(sizeof(ShardHeader)) + 2 * 64);
  while (stride > 64 && ArenaBytesOf(stride - 64, DefaultBuckets(stride - 64)) >= arena)
    stride -= 64;
  while (ArenaBytesOf(stride, DefaultBuckets(stride)) < arena) stride += 64;
  return std::max(stride, kMinShardBytes);
}

uint64_t Store::MinSizeFor(uint32_t shards, uint32_t max_key_bytes, uint32_t max_value_bytes) {
  return kStoreHeaderBytes +
         uint64_t{std::max<uint32_t>(shards, 1)} * MinShardBytesFor(max_key_bytes, max_value_bytes);
}

Store* Store::Format(void* base, size_t size, uint32_t shards, const Limits& limits,
                     uint64_t seed, std::string* why) {
  auto fail = [&](const std::string& m) -> Store* {
    if (why) *why = m;
    return nullptr;
  };
  if (shards == 0) return fail("kv: shards must be at least 1");
  if (reinterpret_cast<uintptr_t>(base) & 63) return fail("kv: region is not 64-byte aligned");
  if (size < MinSize(shards))
    return fail("kv: region of " + std::to_string(size) + " bytes is too small for " +
                std::to_string(shards) + " shards (need at least " +
                std::to_string(MinSize(shards)) + ")");
  uint64_t stride = std::min<uint64_t>(((size - kStoreHeaderBytes) / shards) & ~uint64_t{63},
                                       kMaxStride);
  uint64_t buckets_off = Align64(sizeof(ShardHeader));
  uint64_t nbuckets = g_format_buckets ? g_format_buckets : DefaultBuckets(stride);
  uint64_t arena_begin = Align64(buckets_off + nbuckets * 4);
  if (arena_begin + kMinArena > stride)
    return fail("kv: shard of " + std::to_string(stride) + " bytes cannot hold " +
                std::to_string(nbuckets) + " buckets and an arena");
  uint64_t arena_bytes = (stride - arena_begin) & ~uint64_t{7};

  auto* h = static_cast<StoreHeader*>(base);
  std::memset(h, 0, sizeof(StoreHeader));
  h->version = kLayoutVersion;
  h->header_bytes = sizeof(StoreHeader);
  h->region_size = size;
  h->shard_count = shards;
  h->shards_off = kStoreHeaderBytes;
  h->shard_stride = stride;
  h->item_header_bytes = sizeof(Item);
  h->shard_header_bytes = sizeof(ShardHeader);
  h->k0 = Mix64(seed);
  h->k1 = Mix64(seed ^ 0x5bd1e9955bd1e995ull);
  h->max_key_bytes = limits.max_key_bytes;
  h->max_value_bytes = limits.max_value_bytes;
  h->eviction = static_cast<uint32_t>(limits.eviction);
  uint32_t n = 0;
  for (uint64_t cs = kMinChunk; n < kMaxClasses; ) {
    if (cs >= arena_bytes || n == kMaxClasses - 1) {
      h->class_size[n++] = static_cast<uint32_t>(arena_bytes);
      break;
    }
    h->class_size[n++] = static_cast<uint32_t>(cs);
    cs = NextClass(cs);
  }
  h->class_count = n;

  Store* st = reinterpret_cast<Store*>(base);
  for (uint32_t i = 0; i < shards; ++i) {
    ShardHeader* s = Sh(st, i);
    std::memset(static_cast<void*>(s), 0, sizeof(ShardHeader));
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    int r = pthread_mutex_init(&s->mu, &a);
    pthread_mutexattr_destroy(&a);
    if (r != 0) return fail(std::string("kv: pthread_mutex_init: ") + std::strerror(r));
    s->index = i;
    s->nbuckets = static_cast<uint32_t>(nbuckets);
    s->buckets_off = static_cast<uint32_t>(buckets_off);
    s->arena_begin = static_cast<uint32_t>(arena_begin);
    s->arena_end = static_cast<uint32_t>(arena_begin + arena_bytes);
    s->bump = s->arena_begin;
    std::memset(Buckets(s), 0, nbuckets * 4);
  }
  h->magic = kStoreMagic;
  return st;
}

Store* Store::Attach(void* base, size_t size, std::string* why) {
  auto fail = [&](const std::string& m) -> Store* {
    if (why) *why = "kv: " + m;
    return nullptr;
  };
  if (!base || size < sizeof(StoreHeader)) return fail("region too small for a store header");
  auto* h = static_cast<const StoreHeader*>(base);
  if (h->magic != kStoreMagic) return fail("bad magic: the region holds no formatted store");
  if (h->version != kLayoutVersion)
    return fail("layout version " + std::to_string(h->version) + ", this build reads " +
                std::to_string(kLayoutVersion));
  if (h->region_size != size)
    return fail("store was formatted for " + std::to_string(h->region_size) +
                " bytes, region is " + std::to_string(size));
  if (h->header_bytes != sizeof(StoreHeader) || h->item_header_bytes != sizeof(Item) ||
      h->shard_header_bytes != sizeof(ShardHeader))
    return fail("structure sizes differ from this build");
  if (h->shard_count == 0 || h->class_count == 0 || h->class_count > kMaxClasses ||
      h->shards_off + uint64_t{h->shard_count} * h->shard_stride > size ||
      h->shard_stride > kMaxStride)
    return fail("header geometry is inconsistent");
  return static_cast<Store*>(base);
}

void Store::SetLimits(const Limits& l) {
  StoreHeader* h = Hdr(this);
  __atomic_store_n(&h->max_key_bytes, l.max_key_bytes, __ATOMIC_RELAXED);
  __atomic_store_n(&h->max_value_bytes, l.max_value_bytes, __ATOMIC_RELAXED);
  __atomic_store_n(&h->eviction, static_cast<uint32_t>(l.eviction), __ATOMIC_RELAXED);
}

uint32_t Store::shard_count() const { return Hdr(this)->shard_count; }

uint32_t Store::ShardOf(std::string_view key) const {
  const StoreHeader* h = Hdr(this);
  return ShardFromHash(HashKey(h, key.data(), key.size()), h->shard_count);
}

Status Store::Get(std::string_view key, uint64_t now_ms, std::string* value) {
  const StoreHeader* h = Hdr(this);
  uint64_t hash = HashKey(h, key.data(), key.size());
  ShardHeader* s = Sh(this, ShardFromHash(hash, h->shard_count));
  ShardLock lk(h, s);
  uint32_t off = LookupLive(h, s, hash, key, now_ms);
  if (!off) {
    s->misses++;
    return Status::kNotFound;
  }
  s->hits++;
  Touch(s, off);
  Item* it = It(s, off);
  if (value) value->assign(it->val(), it->val_len);
  return Status::kOk;
}

Status Store::Set(std::string_view key, std::string_view value, const SetOptions& opt,
                  uint64_t now_ms, std::string* old, bool* had_old) {
  const StoreHeader* h = Hdr(this);
  if (had_old) *had_old = false;
  if (key.size() > LoadU32(&h->max_key_bytes) || value.size() > LoadU32(&h->max_value_bytes))
    return Status::kTooLarge;
  uint64_t hash = HashKey(h, key.data(), key.size());
  ShardHeader* s = Sh(this, ShardFromHash(hash, h->shard_count));
  ShardLock lk(h, s);
  uint32_t cur = LookupLive(h, s, hash, key, now_ms);
  if (cur) {
    if (had_old) *had_old = true;
    if (old) old->assign(It(s, cur)->val(), It(s, cur)->val_len);
  }
  if ((opt.cond == SetOptions::kIfAbsent && cur) || (opt.cond == SetOptions::kIfPresent && !cur))
    return Status::kNotDone;
  int64_t expire = opt.keep_ttl ? (cur ? It(s, cur)->expire_at : -1)
                                : (opt.expire_at_ms < 0 ? -1 : opt.expire_at_ms);
  Status st = WriteItem(h, s, hash, key, value, expire, cur);
  if (st == Status::kOk) JPut(s, key, value, expire);
  return st;
}

Status Store::Del(std::string_view key, uint64_t now_ms) {
  const StoreHeader* h = Hdr(this);
  uint64_t hash = HashKey(h, key.data(), key.size());
  ShardHeader* s = Sh(this, ShardFromHash(hash, h->shard_count));
  ShardLock lk(h, s);
  uint32_t off = LookupLive(h, s, hash, key, now_ms);
  if (!off) return Status::kNotFound;
  JDel(s, It(s, off));
  Remove(h, s, off);
  return Status::kOk;
}

bool Store::Exists(std::string_view key, uint64_t now_ms) {
  const StoreHeader* h = Hdr(this);
  uint64_t hash = HashKey(h, key.data(), key.size());
  ShardHeader* s = Sh(this, ShardFromHash(hash, h->shard_count));
  ShardLock lk(h, s);
  return LookupLive(h, s, hash, key, now_ms) != 0;
}

Status Store::IncrBy(std::string_view key, int64_t delta, uint64_t now_ms, int64_t* result) {
  const StoreHeader* h = Hdr(this);
  if (key.size() > LoadU32(&h->max_key_bytes)) return Status::kTooLarge;
  uint64_t hash = HashKey(h, key.data(), key.size());
  ShardHeader* s = Sh(this, ShardFromHash(hash, h->shard_count));
  ShardLock lk(h, s);
  uint32_t cur = LookupLive(h, s, hash, key, now_ms);
  int64_t v = 0, expire = -1;
  if (cur) {
    Item* it = It(s, cur);
    if (!ParseCanonicalInt(it->val(), it->val_len, &v)) return Status::kNotInteger;
    expire = it->expire_at;
  }
  int64_t r;
  if (__builtin_add_overflow(v, delta, &r)) return Status::kOverflow;
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, r);
  (void)ec;
  const std::string_view text(buf, static_cast<size_t>(end - buf));
  Status st = WriteItem(h, s, hash, key, text, expire, cur);
  if (st == Status::kOk) {
    JPut(s, key, text, expire);
    if (result) *result = r;
  }
  return st;
}

Status Store::SetExpire(std::string_view key, int64_t at_ms, uint64_t now_ms) {
  const StoreHeader* h = Hdr(this);
  uint64_t hash = HashKey(h, key.data(), key.size());
  ShardHeader* s = Sh(this, ShardFromHash(hash, h->shard_count));
  ShardLock lk(h, s);
  uint32_t off = LookupLive(h, s, hash, key, now_ms);
  if (!off) return Status::kNotDone;
  Item* it = It(s, off);
  if (at_ms < 0) {
    if (it->expire_at < 0) return Status::kNotDone;
    it->expire_at = -1;
    PF_KV_CRASH(ExpireSet);
    s->expires--;
    JPut(s, std::string_view(it->key(), it->key_len), std::string_view(it->val(), it->val_len), -1);
    return Status::kOk;
  }
  if (at_ms <= static_cast<int64_t>(now_ms)) {  // a deadline in the past deletes (as Redis)
    JDel(s, it);
    Remove(h, s, off);
    return Status::kOk;
  }
  bool had = it->expire_at >= 0;
  it->expire_at = at_ms;
  PF_KV_CRASH(ExpireSet);
  if (!had) s->expires++;
  JPut(s, std::string_view(it->key(), it->key_len), std::string_view(it->val(), it->val_len), at_ms);
  return Status::kOk;
}

Status Store::GetExpire(std::string_view key, uint64_t now_ms, int64_t* at_ms) {
  const StoreHeader* h = Hdr(this);
  uint64_t hash = HashKey(h, key.data(), key.size());
  ShardHeader* s = Sh(this, ShardFromHash(hash, h->shard_count));
  ShardLock lk(h, s);
  uint32_t off = LookupLive(h, s, hash, key, now_ms);
  if (!off) return Status::kNotFound;
  if (at_ms) *at_ms = It(s, off)->expire_at;
  return Status::kOk;
}

namespace {
// Would `needs` (class indexes) all get a chunk from this shard without
// eviction? A conservative dry run of AllocChunk.
bool DryRunFits(const StoreHeader* h, ShardHeader* s, const std::vector<int>& needs) {
  uint32_t cnt[kMaxClasses];
  std::memcpy(cnt, s->free_count, sizeof cnt);
  uint64_t bump_left = s->arena_end - s->bump;
  for (int c : needs) {
    uint32_t need = h->class_size[c];
    if (cnt[c]) { cnt[c]--; continue; }
    if (bump_left >= need) { bump_left -= need; continue; }
    int d = c + 1;
    while (d < static_cast<int>(h->class_count) && !cnt[d]) ++d;
    if (d >= static_cast<int>(h->class_count)) return false;
    cnt[d]--;
    uint32_t rest = h->class_size[d] - need;
    if (rest >= kMinChunk) cnt[FloorClass(h, rest)]++;
  }
  return true;
}
}  // namespace

Status Store::MSet(std::span<const std::pair<std::string_view, std::string_view>> kvs,
                   uint64_t now_ms) {
  const StoreHeader* h = Hdr(this);
  uint32_t mk = LoadU32(&h->max_key_bytes), mv = LoadU32(&h->max_value_bytes);
  std::vector<uint64_t> hashes(kvs.size());
  std::vector<uint32_t> shards;
  shards.reserve(kvs.size());
  for (size_t i = 0; i < kvs.size(); ++i) {
    if (kvs[i].first.size() > mk || kvs[i].second.size() > mv) return Status::kTooLarge;
    hashes[i] = HashKey(h, kvs[i].first.data(), kvs[i].first.size());
    shards.push_back(ShardFromHash(hashes[i], h->shard_count));
  }
  std::vector<uint32_t> order(shards);
  std::sort(order.begin(), order.end());
  order.erase(std::unique(order.begin(), order.end()), order.end());
  std::vector<ShardLock> locks;  // ascending shard order: the lock order of kv.h
  locks.reserve(order.size());
  for (uint32_t si : order) locks.emplace_back(h, Sh(this, si));
  // Check every shard can take its items before writing any.
  bool lru = static_cast<Eviction>(LoadU32(&h->eviction)) == Eviction::kAllKeysLru;
  for (uint32_t si : order) {
    ShardHeader* s = Sh(this, si);
    std::vector<int> needs;
    uint64_t total = 0;
    for (size_t i = 0; i < kvs.size(); ++i) {
      if (shards[i] != si) continue;
      int c = ClassFor(h, sizeof(Item) + kvs[i].first.size() + kvs[i].second.size());
      if (c < 0) return Status::kOom;
      needs.push_back(c);
      total += h->class_size[c];
    }
    if (lru) {
      if (total > s->arena_end - s->arena_begin) return Status::kOom;
      continue;
    }
    if (!DryRunFits(h, s, needs)) {
      if (s->frees_since_coalesce) Coalesce(h, s);
      if (!DryRunFits(h, s, needs)) return Status::kOom;
    }
  }
  // One journal record for the whole MSET (EndGroup also on an early return).
  struct Group {
    Group() { if (g_journal) g_journal->BeginGroup(); }
    ~Group() { if (g_journal) g_journal->EndGroup(); }
  } group;
  for (size_t i = 0; i < kvs.size(); ++i) {
    ShardHeader* s = Sh(this, shards[i]);
    uint32_t cur = LookupLive(h, s, hashes[i], kvs[i].first, now_ms);
    Status st = WriteItem(h, s, hashes[i], kvs[i].first, kvs[i].second, -1, cur);
    if (st != Status::kOk) return st;  // only under allkeys-lru with badly fragmented memory
    JPut(s, kvs[i].first, kvs[i].second, -1);
    if (i + 1 < kvs.size()) PF_KV_CRASH(MSetMid);
  }
  return Status::kOk;
}

bool Store::MGet(std::span<const std::string_view> keys, uint64_t now_ms,
                 std::vector<std::optional<std::string>>* out, uint64_t max_bytes) {
  const StoreHeader* h = Hdr(this);
  out->clear();
  out->resize(keys.size());
  std::vector<uint64_t> hashes(keys.size());
  std::vector<std::pair<uint32_t, size_t>> order(keys.size());  // (shard, key index)
  for (size_t i = 0; i < keys.size(); ++i) {
    hashes[i] = HashKey(h, keys[i].data(), keys[i].size());
    order[i] = {ShardFromHash(hashes[i], h->shard_count), i};
  }
  std::sort(order.begin(), order.end());
  // One shard's lock at a time, in ascending shard order (see kv.h): a huge
  // MGET never holds every shard at once.
  uint64_t bytes = 0;
  for (size_t g = 0; g < order.size();) {
    const uint32_t si = order[g].first;
    ShardHeader* s = Sh(this, si);
    ShardLock lk(h, s);
    for (; g < order.size() && order[g].first == si; ++g) {
      const size_t i = order[g].second;
      uint32_t off = LookupLive(h, s, hashes[i], keys[i], now_ms);
      if (!off) {
        s->misses++;
        continue;
      }
      s->hits++;
      Touch(s, off);
      bytes += It(s, off)->val_len;
      if (bytes > max_bytes) return false;
      (*out)[i].emplace(It(s, off)->val(), It(s, off)->val_len);
    }
  }
  return true;
}

uint64_t Store::Scan(uint64_t cursor, size_t count, uint64_t now_ms,
                     std::vector<std::string>* keys, uint64_t max_bytes,
                     std::vector<uint64_t>* resume) {
  const StoreHeader* h = Hdr(this);
  uint32_t si = static_cast<uint32_t>(cursor >> 32);
  uint32_t b = static_cast<uint32_t>(cursor);
  if (si >= h->shard_count) return 0;
  // The cursor that continues after bucket `bucket` of shard `shard` (0 = done).
  auto after = [h](uint32_t shard, uint32_t bucket, uint32_t nbuckets) -> uint64_t {
    if (bucket + 1 < nbuckets) return (uint64_t{shard} << 32) | (bucket + 1);
    return shard + 1 < h->shard_count ? uint64_t{shard + 1} << 32 : 0;
  };
  size_t visited = 0, want = std::max<size_t>(count, 1);
  uint64_t bytes = 0;
  while (visited < want) {
    ShardHeader* s = Sh(this, si);
    {
      ShardLock lk(h, s);
      if (b >= s->nbuckets) b = s->nbuckets;
      for (; b < s->nbuckets && visited < want; ++b, ++visited) {
        for (uint32_t o = Buckets(s)[b]; o; o = It(s, o)->hnext) {
          Item* it = It(s, o);
          if (Expired(it, now_ms)) continue;
          keys->emplace_back(it->key(), it->key_len);
          bytes += it->key_len;
        }
        if (resume) resume->resize(keys->size(), after(si, b, s->nbuckets));
        if (bytes > max_bytes) return after(si, b, s->nbuckets);
      }
      if (b < s->nbuckets) break;
    }
    if (++si >= h->shard_count) return 0;
    b = 0;
  }
  return (uint64_t{si} << 32) | b;
}

namespace {
// Removes every key for which pred(key) is true, one shard lock at a time
// (FLUSHNS, and replaying a partly covered FLUSHALL); journaled or not.
template <typename Pred>
uint64_t RemoveWhere(Store* st, const Pred& pred, bool journal) {
  const StoreHeader* h = Hdr(st);
  uint64_t n = 0;
  for (uint32_t i = 0; i < h->shard_count; ++i) {
    ShardHeader* s = Sh(st, i);
    ShardLock lk(h, s);
    for (uint32_t b = 0; b < s->nbuckets && s->keys; ++b) {
      for (uint32_t o = Buckets(s)[b]; o;) {
        Item* it = It(s, o);
        const uint32_t next = it->hnext;
        if (pred(std::string_view(it->key(), it->key_len))) {
          if (journal) JDel(s, it);
          Remove(h, s, o);
          ++n;
        }
        o = next;
      }
    }
  }
  return n;
}
}  // namespace

uint64_t Store::DbSize() {
  uint64_t n = 0;
  for (uint32_t i = 0; i < shard_count(); ++i) n += GetShardStats(i).keys;
  return n;
}

uint64_t Store::FlushAll() {
  StoreHeader* h = Hdr(this);
  uint64_t n = 0;
  std::vector<ShardLock> locks;  // every shard at once, ascending: FLUSHALL is atomic
  locks.reserve(h->shard_count);
  for (uint32_t i = 0; i < h->shard_count; ++i) locks.emplace_back(h, Sh(this, i));
  __atomic_fetch_add(&h->flushes, 1, __ATOMIC_SEQ_CST);
  if (g_journal) g_journal->BeginGroup();
  for (uint32_t i = 0; i < h->shard_count; ++i) {
    ShardHeader* s = Sh(this, i);
    if (g_journal) g_journal->Clear(s->index, ++s->seq);
    n += s->keys;
    s->bump = s->arena_begin;  // commit: every chunk is gone
    PF_KV_CRASH(FlushBump);
    std::memset(Buckets(s), 0, size_t{s->nbuckets} * 4);
    PF_KV_CRASH(FlushClear);
    s->lru_head = s->lru_tail = 0;
    for (uint32_t c = 0; c < kMaxClasses; ++c) s->free_head[c] = s->free_count[c] = 0;
    s->keys = s->expires = s->used_bytes = 0;
    s->frees_since_coalesce = 0;
  }
  if (g_journal) g_journal->EndGroup();
  return n;
}

uint64_t Store::FlushPrefix(std::string_view prefix) {
  return RemoveWhere(
      this,
      [prefix](std::string_view k) { return k.size() >= prefix.size() && k.compare(0, prefix.size(), prefix) == 0; },
      /*journal=*/true);
}

Stats Store::GetShardStats(uint32_t shard) {
  const StoreHeader* h = Hdr(this);
  Stats st;
  if (shard >= h->shard_count) return st;
  ShardHeader* s = Sh(this, shard);
  ShardLock lk(h, s);
  st.keys = s->keys;
  st.expires = s->expires;
  st.used_bytes = s->used_bytes;
  st.capacity_bytes = s->arena_end - s->arena_begin;
  st.hits = s->hits;
  st.misses = s->misses;
  st.evictions = s->evictions;
  st.expired = s->expired;
  return st;
}

Stats Store::GetStats() {
  Stats t;
  for (uint32_t i = 0; i < shard_count(); ++i) {
    Stats s = GetShardStats(i);
    t.keys += s.keys;
    t.expires += s.expires;
    t.used_bytes += s.used_bytes;
    t.capacity_bytes += s.capacity_bytes;
    t.hits += s.hits;
    t.misses += s.misses;
    t.evictions += s.evictions;
    t.expired += s.expired;
  }
  return t;
}

size_t Store::SweepExpired(uint32_t shard, uint64_t now_ms, size_t max_keys) {
  const StoreHeader* h = Hdr(this);
  if (shard >= h->shard_count || max_keys == 0) return 0;
  ShardHeader* s = Sh(this, shard);
  ShardLock lk(h, s);
  if (s->expires == 0) return 0;
  // Bounded work: at most max(64, 16 * max_keys) buckets per call.
  uint64_t budget = std::min<uint64_t>(s->nbuckets, std::max<uint64_t>(64, 16 * uint64_t{max_keys}));
  uint32_t b = s->sweep_cursor < s->nbuckets ? s->sweep_cursor : 0;
  size_t removed = 0;
  for (uint64_t i = 0; i < budget && removed < max_keys && s->expires; ++i) {
    for (uint32_t o = Buckets(s)[b]; o && removed < max_keys;) {
      Item* it = It(s, o);
      uint32_t next = it->hnext;
      if (Expired(it, now_ms)) {
        PF_KV_CRASH(Sweep);
        Remove(h, s, o);
        s->expired++;
        ++removed;
      }
      o = next;
    }
    if (removed < max_keys && ++b >= s->nbuckets) b = 0;
  }
  s->sweep_cursor = b;
  return removed;
}

bool Store::Verify(uint32_t shard, std::string* why) {
  const StoreHeader* h = Hdr(this);
  if (shard >= h->shard_count) return Fail(why, "no such shard");
  ShardHeader* s = Sh(this, shard);
  ShardLock lk(h, s);
  return VerifyLocked(h, s, why);
}

namespace testing {
void SetCrashPoint(int n) { g_crash_point = n; }
int CrashPointCount() { return kCpEnd - 1; }
const char* CrashPointName(int n) {
  static const char* const kNames[] = {"",
#define PF_KV_X(n) #n,
                                       PF_KV_CRASH_POINTS(PF_KV_X)
#undef PF_KV_X
  };
  return (n >= 1 && n < kCpEnd) ? kNames[n] : "";
}
uint64_t RecoveryCount() { return g_recoveries.load(std::memory_order_relaxed); }
void SetFormatBuckets(uint32_t n) { g_format_buckets = n; }
}  // namespace testing

// ===========================================================================
// Persistence support

void SetJournal(Journal* j) { g_journal = j; }

std::pair<uint64_t, uint64_t> Store::HashSeed() const { return {Hdr(this)->k0, Hdr(this)->k1}; }

uint32_t Store::ShardOfWith(uint64_t k0, uint64_t k1, uint32_t shards, std::string_view key) {
  StoreHeader h{};
  h.k0 = k0;
  h.k1 = k1;
  return ShardFromHash(HashKey(&h, key.data(), key.size()), shards);
}

uint64_t Store::ExportShard(uint32_t shard, uint64_t now_ms, const ItemFn& fn) {
  const StoreHeader* h = Hdr(this);
  if (shard >= h->shard_count) return 0;
  ShardHeader* s = Sh(this, shard);
  ShardLock lk(h, s);
  for (uint32_t b = 0; b < s->nbuckets; ++b) {
    for (uint32_t o = Buckets(s)[b]; o; o = It(s, o)->hnext) {
      Item* it = It(s, o);
      if (Expired(it, now_ms)) continue;
      fn(std::string_view(it->key(), it->key_len), std::string_view(it->val(), it->val_len),
         it->expire_at);
    }
  }
  return s->seq;
}

uint64_t Store::ShardSeq(uint32_t shard) {
  const StoreHeader* h = Hdr(this);
  if (shard >= h->shard_count) return 0;
  ShardHeader* s = Sh(this, shard);
  ShardLock lk(h, s);
  return s->seq;
}

uint64_t Store::Flushes() const {
  return __atomic_load_n(&Hdr(this)->flushes, __ATOMIC_SEQ_CST);
}

uint64_t Store::RemoveIf(const std::function<bool(std::string_view key)>& pred) {
  return RemoveWhere(this, pred, /*journal=*/false);
}

}  // namespace pf::kv
