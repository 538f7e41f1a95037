// shared/kv/check.cc: the shard checker and crash repair (check.h).
#include "shared/kv/check.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "shared/kv/arena.h"
#include "shared/kv/index.h"
#include "shared/kv/kv.h"
#include "shared/kv/large.h"

namespace pf::kv::internal {

std::atomic<uint64_t> g_recoveries{0};

bool Fail(std::string* why, const std::string& msg) {
  if (why) *why = msg;
  return false;
}

namespace {

bool HeaderSane(ShardHeader* s, uint64_t stride, std::string* why) {
  if (s->nbuckets == 0 || s->buckets_off < sizeof(ShardHeader) ||
      uint64_t{s->buckets_off} + uint64_t{s->nbuckets} * 4 > s->arena_begin ||
      s->arena_begin > s->arena_end || s->arena_end > stride || s->bump < s->arena_begin ||
      s->bump > s->arena_end || (s->arena_begin & 7) || (s->occ_off & 7) ||
      s->occ_off < uint64_t{s->buckets_off} + uint64_t{s->nbuckets} * 4 ||
      s->occ_off + OccWords(s->nbuckets) * 8 > s->arena_begin)
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
    return Fail(why,
                "chunk at " + std::to_string(p) + " has bad state " + std::to_string(it->state));
  if ((it->flags & ~kItemLarge) || ((it->flags & kItemLarge) && !h->large_off))
    return Fail(why, "item at " + std::to_string(p) + " has bad flags");
  if (uint64_t{sizeof(Item)} + ItemPayload(it) > it->size)
    return Fail(why, "item at " + std::to_string(p) + " overflows its chunk");
  if (HashKey(h, it->key(), it->key_len) != it->hash)
    return Fail(why, "item at " + std::to_string(p) + " has a wrong hash");
  if (ShardFromHash(it->hash, h->shard_count) != s->index)
    return Fail(why, "item at " + std::to_string(p) + " belongs to another shard");
  return true;
}

}  // namespace

bool VerifyLocked(const StoreHeader* h, ShardHeader* s, std::string* why) {
  if (!HeaderSane(s, h->shard_stride, why)) return false;
  if (s->undo_off) return Fail(why, "an in-place write's undo record is still set");
  std::vector<uint32_t> starts;
  std::vector<uint8_t> seen;  // bit0 indexed, bit1 in lru, bit2 in a free list
  uint64_t live = 0, free_chunks = 0, used = 0, expires = 0, large = 0;
  for (uint32_t p = s->arena_begin; p < s->bump; p += It(s, p)->size) {
    if (!ChunkSane(h, s, p, why)) return false;
    starts.push_back(p);
    Item* it = It(s, p);
    if (it->state == kChunkLive) {
      ++live;
      if (it->flags & kItemLarge) {
        if (!LargeRefValid(h, LargeRefOf(it), s->index, it->val_len))
          return Fail(why, "item at " + std::to_string(p) + " names no valid large run");
        ++large;
      }
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
      if (!(Occ(s)[b / kBlockBuckets / 64] >> (b / kBlockBuckets % 64) & 1))
        return Fail(why, "bucket " + std::to_string(b) + " holds items but its block is unmarked");
      if (!keyset.insert(std::string_view(it->key(), it->key_len)).second)
        return Fail(why, "duplicate key in the index");
      ++indexed;
    }
  }
  if (indexed != live)
    return Fail(why,
                "indexed " + std::to_string(indexed) + " != live chunks " + std::to_string(live));
  if (s->keys != live)
    return Fail(why, "keys counter " + std::to_string(s->keys) + " != " + std::to_string(live));
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
  if (n != live)
    return Fail(why, "LRU length " + std::to_string(n) + " != keys " + std::to_string(live));
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
  if (listed != free_chunks)
    return Fail(why, "free chunks " + std::to_string(free_chunks) + " but " +
                         std::to_string(listed) + " listed");
  // Large runs: each item's run is checked above; no run of this shard is
  // left that no item names (two items naming one run would make this
  // count lower than `large` too, as the runs are distinct).
  if (h->large_off) {
    const uint64_t owned = LargeOwned(h, s->index);
    if (owned != large)
      return Fail(why, "shard owns " + std::to_string(owned) + " large runs but " +
                           std::to_string(large) + " items name one");
    if (!LargeVerify(h, why)) return false;
  }
  return true;
}

namespace {

// Recovery: rebuild every derived structure from the arena (see the
// invariant above). Idempotent, so a crash inside it is repaired the same way.
bool Rebuild(const StoreHeader* h, ShardHeader* s, std::string* why) {
  if (!HeaderSane(s, h->shard_stride, why)) return false;
  // An in-place overwrite cut short: put the old value back (index.cc WriteItem).
  if (s->undo_off) {
    const uint32_t off = s->undo_off;
    Item* it = It(s, off);
    if (off < s->arena_begin || off >= s->bump || (off & 7) || it->state != kChunkLive ||
        uint64_t{off} + it->size > s->bump || s->undo_val_len > kUndoBytes ||
        uint64_t{sizeof(Item)} + it->key_len + s->undo_val_len > it->size)
      return Fail(why, "the undo record names no item it fits");
    std::memcpy(it->val(), s->undo, s->undo_val_len);
    it->val_len = s->undo_val_len;
    it->expire_at = s->undo_expire_at;
    s->undo_off = 0;
  }
  std::memset(Buckets(s), 0, size_t{s->nbuckets} * 4);
  std::memset(Occ(s), 0, OccWords(s->nbuckets) * 8);
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
    // A committed large item's run was committed before it (index.cc
    // WriteItem); one that names no valid run is damage: drop the item.
    if ((it->flags & kItemLarge) && !LargeRefValid(h, LargeRefOf(it), s->index, it->val_len)) {
      it->state = kChunkFree;
      continue;
    }
    std::string_view key(it->key(), it->key_len);
    if (uint32_t dup = Find(s, it->hash, key)) {
      if (It(s, dup)->stamp > it->stamp) {
        it->state = kChunkFree;
        continue;
      }
      BucketUnlink(s, dup);
      It(s, dup)->state = kChunkFree;
    }
    const uint32_t bucket = BucketFromHash(it->hash, s->nbuckets);
    OccMark(s, bucket);
    uint32_t* b = &Buckets(s)[bucket];
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
  // Pass 3: free this shard's large runs that no live item names (a value
  // whose item was never committed, or whose item was removed or replaced).
  if (h->large_off) {
    std::vector<uint64_t> refs;
    for (const auto& e : order)
      if (It(s, e.second)->flags & kItemLarge) refs.push_back(LargeRefOf(It(s, e.second)));
    std::sort(refs.begin(), refs.end());
    LargeCollect(h, s->index, refs);
  }
  return VerifyLocked(h, s, why);
}

}  // namespace

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

}  // namespace pf::kv::internal
