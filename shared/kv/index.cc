// shared/kv/index.cc: item removal, eviction and writes (index.h).
#include "shared/kv/index.h"

#include <algorithm>

#include "shared/kv/arena.h"
#include "shared/kv/large.h"
#include "shared/util/assert.h"

namespace pf::kv::internal {

Journal* g_journal = nullptr;

void Remove(const StoreHeader* h, ShardHeader* s, uint32_t off) {
  Item* it = It(s, off);
  PF_ASSERT_MSG(off >= s->arena_begin && off < s->bump && it->state == kChunkLive,
                "removing a chunk that is not a live item");
  const bool large = it->flags & kItemLarge;
  const uint64_t page = large ? LargeRefOf(it) : 0;
  it->state = kChunkFree;
  PF_KV_CRASH(Kill);
  BucketUnlink(s, off);
  PF_KV_CRASH(UnlinkBucket);
  LruUnlink(s, off);
  PF_KV_CRASH(UnlinkLru);
  s->keys--;
  s->removals++;
  s->used_bytes -= it->size;
  if (it->expire_at >= 0) s->expires--;
  FreePush(h, s, off);
  s->frees_since_coalesce++;
  PF_KV_CRASH(FreePush);
  if (large) LargeFree(h, page);  // after the kill: no live item ever names a freed run
}

namespace {
// A run for a large value: first fit, then (allkeys-lru) evicting this
// shard's large items from its LRU tail, never `protect` (the item being
// overwritten). Runs of other shards are out of reach (their locks are not
// held): with them filling the area the write fails with kOom.
Status ReserveLarge(const StoreHeader* h, ShardHeader* s, uint64_t len, uint32_t protect,
                    uint64_t* page) {
  const LargeHeader* l = Large(h);
  if (LargePages(len) > l->pages) return Status::kOom;
  if (LargeAlloc(h, s->index, len, page)) return Status::kOk;
  if (static_cast<Eviction>(LoadU32(&h->eviction)) != Eviction::kAllKeysLru) return Status::kOom;
  for (uint32_t o = s->lru_tail; o;) {
    Item* it = It(s, o);
    const uint32_t prev = it->lru_prev;
    if (o != protect && (it->flags & kItemLarge)) {
      PF_KV_CRASH(Evict);
      JDel(s, it);
      Remove(h, s, o);
      s->evictions++;
      if (LargeAlloc(h, s->index, len, page)) return Status::kOk;
    }
    o = prev;
  }
  return Status::kOom;
}
}  // namespace

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

Status WriteItem(const StoreHeader* h, ShardHeader* s, uint64_t hash, std::string_view key,
                 std::string_view value, int64_t expire_at, uint32_t old) {
  uint32_t off;
  const bool large = h->large_off && value.size() >= kLargeValueMin;
  const uint64_t need = sizeof(Item) + key.size() + (large ? sizeof(LargeRef) : value.size());
  // A small value whose chunk has room is overwritten in place under an undo
  // record: no allocation, no index or LRU relinking (INCR, SET of a
  // same-size value). A crash before undo_off is cleared rolls it back.
  if (old && !large && value.size() <= kUndoBytes) {
    Item* o = It(s, old);
    if (!(o->flags & kItemLarge) && o->size >= need && o->val_len <= kUndoBytes) {
      s->undo_val_len = o->val_len;
      s->undo_expire_at = o->expire_at;
      if (o->val_len) std::memcpy(s->undo, o->val(), o->val_len);
      s->undo_off = old;  // the intent is durable from here
      PF_KV_CRASH(UndoSet);
      if (!value.empty()) std::memcpy(o->val(), value.data(), value.size());
      o->val_len = static_cast<uint32_t>(value.size());
      if ((o->expire_at >= 0) != (expire_at >= 0)) {
        if (expire_at >= 0)
          s->expires++;
        else
          s->expires--;
      }
      o->expire_at = expire_at;
      StampWrite(s, o);
      PF_KV_CRASH(InPlace);
      s->undo_off = 0;  // commit
      Touch(s, old);
      return Status::kOk;
    }
  }
  LargeRef ref{0};
  if (large) {  // the run first, committed and filled; an orphan if we die before the item
    Status st = ReserveLarge(h, s, value.size(), old, &ref.page);
    if (st != Status::kOk) return st;
    std::memcpy(LargeRunAt(Large(h), ref.page) + 1, value.data(), value.size());
    PF_KV_CRASH(LargeFill);
  }
  Status st = Reserve(h, s, need, old, &off);
  if (st != Status::kOk) {
    if (large) LargeFree(h, ref.page);
    return st;
  }
  Item* it = It(s, off);
  // The bytes below go into this chunk: it must be free, inside the arena
  // and large enough.
  PF_ASSERT_MSG(off >= s->arena_begin && uint64_t{off} + it->size <= s->arena_end &&
                    it->state == kChunkFree && it->size >= need,
                "the allocator returned a chunk that cannot hold the item");
  it->flags = large ? kItemLarge : 0;
  it->key_len = static_cast<uint32_t>(key.size());
  it->val_len = static_cast<uint32_t>(value.size());
  it->hash = hash;
  it->expire_at = expire_at;
  if (!key.empty()) std::memcpy(it->key(), key.data(), key.size());
  if (large)
    std::memcpy(it->val(), &ref, sizeof ref);
  else if (!value.empty())
    std::memcpy(it->val(), value.data(), value.size());
  it->stamp = ++s->clock;
  StampWrite(s, it);
  PF_KV_CRASH(Fill);
  it->state = kChunkLive;  // commit
  PF_KV_CRASH(Commit);
  if (old) Remove(h, s, old);
  const uint32_t bucket = BucketFromHash(hash, s->nbuckets);
  OccMark(s, bucket);  // before the link: a linked bucket's block is always marked
  uint32_t* b = &Buckets(s)[bucket];
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

}  // namespace pf::kv::internal
