// shared/kv/layout.h: the in-segment layout of the KV store (store header,
// shard header, item/chunk header), addressing inside a shard, and the
// test-only crash points. Only shared/kv/*.cc include this; everything in
// the segment is offsets, never pointers.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

#include "shared/util/hash.h"

namespace pf::kv::internal {

constexpr uint64_t kStoreMagic = 0x3156'4b44'4b52'4f46ull;  // "FORKDKV1" little-endian
// 2: shard seq, store flushes; 3: occupancy summary; 4: large-object area
constexpr uint32_t kLayoutVersion = 4;
constexpr uint32_t kMaxClasses = 128;
constexpr uint32_t kMinChunk = 64;     // smallest size class; chunks are multiples of 8
constexpr double kClassFactor = 1.25;  // growth between size classes
constexpr uint32_t kMinArena = 4096;   // smallest arena Format accepts per shard
// Values up to this many bytes are overwritten in place when their chunk has
// room (ShardHeader::undo holds the old bytes meanwhile).
constexpr uint32_t kUndoBytes = 128;

// Chunk states. Distinct non-trivial patterns so a walk detects garbage.
enum : uint8_t { kChunkFree = 0xF5, kChunkLive = 0x1E };

// Every chunk of a shard's arena starts with this header, so the arena
// [arena_begin, bump) is walkable: chunk after chunk by `size`.
// DURABLE fields (the truth recovery rebuilds from): size, state, and for a
// live chunk flags, key_len, val_len, hash, expire_at, stamp and the bytes.
// A large item (flags & kItemLarge) holds its key and a LargeRef; its value's
// val_len bytes live in a run of the large-object area (see LargeHeader).
// DERIVED fields (rebuilt on recovery): hnext, lru_prev, lru_next.
struct Item {
  uint32_t size;  // chunk bytes
  uint8_t state;  // kChunkFree / kChunkLive: the commit point of a write
  uint8_t flags;  // kItemLarge
  uint8_t pad0[2];
  uint32_t key_len;
  uint32_t val_len;
  uint32_t hnext;     // live: next in bucket chain; free: next in free list
  uint32_t lru_prev;  // towards the head (more recent)
  uint32_t lru_next;  // towards the tail (less recent)
  uint32_t version;   // the shard's `writes` (low bits) when last written: WATCH
  uint64_t hash;      // SipHash of the key
  int64_t expire_at;  // absolute unix ms; -1 = none
  uint64_t stamp;     // shard clock at last write/touch: LRU order, newest copy wins
  char* key() { return reinterpret_cast<char*>(this + 1); }
  char* val() { return key() + key_len; }
};
static_assert(sizeof(Item) == 56);
enum : uint8_t { kItemLarge = 1 };
// What a large item stores after its key: the first page of its run.
struct LargeRef {
  uint64_t page;
};
static_assert(std::is_trivially_copyable_v<Item>);

// At the start of each shard's memory; offsets in a shard are relative to it
// (0 = null, since the header lives there).
struct alignas(64) ShardHeader {
  pthread_mutex_t mu;  // process-shared, robust
  uint32_t index;      // this shard's number
  uint32_t nbuckets;
  uint32_t buckets_off;  // uint32_t[nbuckets] (derived)
  uint32_t arena_begin, arena_end;
  uint32_t bump;                              // DURABLE: chunks exist in [arena_begin, bump)
  uint32_t lru_head, lru_tail;                // derived; head = most recently used
  uint32_t sweep_cursor;                      // advisory
  uint32_t occ_off;                           // uint64_t[OccWords(nbuckets)] (derived): see Occ()
  uint64_t clock;                             // last stamp handed out
  uint64_t keys, expires, used_bytes;         // derived
  uint64_t hits, misses, evictions, expired;  // statistics
  uint64_t frees_since_coalesce;
  uint64_t recoveries;
  uint64_t seq;  // mutations journaled (persistence order); kept by Rebuild
  // WATCH (kv.h Store::Watch): items written (each write stamps the item
  // with the count) and items removed, for the life of the segment.
  uint64_t writes, removals;
  // Advisory: the mean remaining TTL (ms) of the keys the expiry sweep saw
  // lately, a moving average as Redis' avg_ttl (0 = no key with a TTL).
  uint64_t avg_ttl_ms;
  // DURABLE while undo_off != 0: an in-place overwrite (index.cc WriteItem)
  // of the live item at undo_off is under way, and these are its old value
  // bytes, length and expiry; repair puts them back. 0 outside a write.
  uint32_t undo_off;
  uint32_t undo_val_len;
  int64_t undo_expire_at;
  char undo[kUndoBytes];
  uint32_t free_head[kMaxClasses];  // derived; list c holds chunks with floor class c
  uint32_t free_count[kMaxClasses];
};
static_assert(std::is_trivially_copyable_v<ShardHeader>);

struct alignas(64) StoreHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t header_bytes;  // sizeof(StoreHeader)
  uint64_t region_size;
  uint32_t shard_count;
  uint32_t class_count;
  uint64_t shards_off;  // from the store base
  uint64_t shard_stride;
  uint32_t item_header_bytes;   // sizeof(Item)
  uint32_t shard_header_bytes;  // sizeof(ShardHeader)
  uint64_t k0, k1;              // hash key
  uint32_t max_key_bytes;       // limits: written by SetLimits, read relaxed
  uint32_t max_value_bytes;
  uint32_t eviction;
  uint32_t pad;
  uint64_t flushes;    // FlushAll calls (atomic builtins: read without a lock)
  uint64_t large_off;  // the large-object area's LargeHeader, from the store base (0 = none)
  uint32_t class_size[kMaxClasses];
};
static_assert(std::is_trivially_copyable_v<StoreHeader>);

// ---- the large-object area --------------------------------------------------
// Values of kLargeValueMin bytes and more (when the store has the area) live
// outside the shards, so a shard's arena is sized for small items only: a
// run of whole pages per value, allocated first-fit from a page map under
// the area's own robust lock, which is only ever taken while holding the
// owning shard's lock (lock order: shards, then the area).
// DURABLE: the page map (kPageFree / kPageHead / kPageBody) and each run's
// LargeRun header. A run is allocated by writing its header and its body
// pages, then its head byte (the commit point); it is freed head byte first.
// So a body page without a head is garbage, and repair frees it. A run is
// referenced by at most one live item of its owner shard; a run no live item
// references (a crash between the run's commit and the item's, or between
// the item's removal and the run's free) is freed when that shard is
// repaired (check.cc).
constexpr uint32_t kLargePage = 4096;
constexpr uint32_t kLargeValueMin = 16 * 1024;
enum : uint8_t { kPageFree = 0, kPageHead = 0xA7, kPageBody = 0x5C };
constexpr uint32_t kLargeRunMagic = 0x4e55524c;  // "LRUN"

struct alignas(64) LargeHeader {
  pthread_mutex_t mu;  // process-shared, robust
  uint64_t pages;      // data pages
  uint64_t map_off;    // uint8_t[pages], from this header
  uint64_t data_off;   // page 0, from this header (page-aligned from the store base)
  // Derived (rebuilt by repair):
  uint64_t free_pages;
  uint64_t low_free;  // no free page below this one
  uint64_t runs;      // runs allocated
  uint64_t value_bytes;
  uint64_t recoveries;
};
static_assert(std::is_trivially_copyable_v<LargeHeader>);

struct LargeRun {  // at the start of a run's first page; the value follows
  uint32_t magic;
  uint32_t owner;  // shard index
  uint64_t pages;
  uint64_t len;  // value bytes
  uint64_t pad;
};
static_assert(sizeof(LargeRun) == 32);

// ---- addressing ------------------------------------------------------------
constexpr uint32_t Align8(uint64_t v) { return static_cast<uint32_t>((v + 7) & ~uint64_t{7}); }
constexpr uint64_t Align64(uint64_t v) { return (v + 63) & ~uint64_t{63}; }

inline Item* It(ShardHeader* s, uint32_t off) {
  return reinterpret_cast<Item*>(reinterpret_cast<char*>(s) + off);
}
inline uint32_t* Buckets(ShardHeader* s) {
  return reinterpret_cast<uint32_t*>(reinterpret_cast<char*>(s) + s->buckets_off);
}
// The occupancy summary of a shard's buckets, for SCAN: bit k of word w
// stands for the block of kBlockBuckets buckets numbered w*64+k. A bucket
// that holds an item always has its block's bit set (set before the bucket is
// linked); a set bit over an empty block is allowed and cleared by the next
// scan that finds the block empty. So a scan skips 4096 empty buckets per
// zero word it reads.
constexpr uint32_t kBlockBuckets = 64;
constexpr uint64_t OccWords(uint64_t nbuckets) {
  return (nbuckets + kBlockBuckets * 64 - 1) / (kBlockBuckets * 64);
}
inline uint64_t* Occ(ShardHeader* s) {
  return reinterpret_cast<uint64_t*>(reinterpret_cast<char*>(s) + s->occ_off);
}
inline void OccMark(ShardHeader* s, uint32_t bucket) {
  const uint32_t block = bucket / kBlockBuckets;
  uint64_t* w = &Occ(s)[block / 64];
  const uint64_t bit = uint64_t{1} << (block % 64);
  if (!(*w & bit)) *w |= bit;  // a hot bucket's word stays clean in the cache
}
inline uint32_t ShardFromHash(uint64_t h, uint32_t n) {
  return static_cast<uint32_t>(((h >> 32) * n) >> 32);
}
inline uint32_t BucketFromHash(uint64_t h, uint32_t n) {
  return static_cast<uint32_t>(((h & 0xffffffffull) * n) >> 32);
}
inline uint64_t HashKey(const StoreHeader* h, const void* p, size_t n) {
  return ::pf::SipHash13(h->k0, h->k1, p, n);
}
inline bool Expired(const Item* it, uint64_t now) {
  return it->expire_at >= 0 && static_cast<int64_t>(now) > it->expire_at;
}
inline uint32_t LoadU32(const uint32_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

inline LargeHeader* Large(const StoreHeader* h) {
  return h->large_off ? reinterpret_cast<LargeHeader*>(
                            const_cast<char*>(reinterpret_cast<const char*>(h)) + h->large_off)
                      : nullptr;
}
inline uint8_t* LargeMap(LargeHeader* l) { return reinterpret_cast<uint8_t*>(l) + l->map_off; }
inline LargeRun* LargeRunAt(LargeHeader* l, uint64_t page) {
  return reinterpret_cast<LargeRun*>(reinterpret_cast<char*>(l) + l->data_off + page * kLargePage);
}
inline uint64_t LargeRefOf(Item* it) {
  LargeRef r;
  std::memcpy(&r, it->val(), sizeof r);
  return r.page;
}
// An item's value bytes, wherever they live.
inline std::string_view ValueOf(const StoreHeader* h, Item* it) {
  if (__builtin_expect(it->flags & kItemLarge, 0))
    return {reinterpret_cast<char*>(LargeRunAt(Large(h), LargeRefOf(it)) + 1), it->val_len};
  return {it->val(), it->val_len};
}
// Bytes the item's chunk holds after its header.
inline uint64_t ItemPayload(const Item* it) {
  return uint64_t{it->key_len} + ((it->flags & kItemLarge) ? sizeof(LargeRef) : it->val_len);
}

// ---- test-only crash points ------------------------------------------------
// One per gap between dependent writes. Names are "k" + what was just written.
// clang-format off
#define PF_KV_CRASH_POINTS(X)                                                                \
  X(CarveHeader) X(CarveBump) X(FreePop) X(SplitHeader) X(SplitShrink) X(Fill) X(Commit)     \
  X(LinkBucket) X(LinkLru) X(Counters) X(Kill) X(UnlinkBucket) X(UnlinkLru) X(FreePush)      \
  X(TouchStamp) X(TouchUnlink) X(ExpireSet) X(Evict) X(Sweep) X(CoalesceClear)               \
  X(CoalesceMerge) X(TrimBump) X(FlushBump) X(FlushClear) X(MSetMid) X(RebuildClear)        \
  X(RebuildMid) X(UndoSet) X(InPlace) X(LargeBody) X(LargeHead) X(LargeFill) X(LargeFreeHead) X(LargeFreeBody)     \
  X(LargeCollect)
// clang-format on

enum CrashPoint : int {
  kCpNone = 0,
#define PF_KV_X(n) kCp##n,
  PF_KV_CRASH_POINTS(PF_KV_X)
#undef PF_KV_X
      kCpEnd
};

extern int g_crash_point;
[[noreturn]] void CrashNow();

// Compiler barriers around the point keep the dependent writes in program
// order (a SIGKILLed process' executed stores are all visible to the next
// locker; only compiler reordering could break the write order).
#define PF_KV_CRASH(id)                                                                        \
  do {                                                                                         \
    std::atomic_signal_fence(std::memory_order_seq_cst);                                       \
    if (__builtin_expect(::pf::kv::internal::g_crash_point == ::pf::kv::internal::kCp##id, 0)) \
      ::pf::kv::internal::CrashNow();                                                          \
    std::atomic_signal_fence(std::memory_order_seq_cst);                                       \
  } while (0)

}  // namespace pf::kv::internal
