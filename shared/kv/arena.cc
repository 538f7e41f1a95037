// shared/kv/arena.cc: the per-shard allocator (arena.h): size classes, free
// lists, carving, splitting and coalescing, each step crash-consistent.
#include "shared/kv/arena.h"

#include <cstring>

#include "shared/util/assert.h"

namespace pf::kv::internal {

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
//     - except a small value overwritten in place (its chunk has room): the
//       old bytes, length and expiry go to the shard's undo record first,
//       and until undo_off is cleared repair puts them back;
//     - carving writes the new chunk header before moving `bump` over it;
//       splitting writes the tail header inside the free chunk before
//       shrinking it; merging grows a free chunk over its free neighbour with
//       one store; a flush resets `bump` with one store.
//   Everything else (bucket chains, LRU links, free lists, counters) is
//   derived, and on EOWNERDEAD MutexFailed() rebuilds it from the arena
//   (keeping the highest stamp of duplicate keys), checks it with
//   VerifyLocked(), and only then marks the mutex consistent.
// ---------------------------------------------------------------------------

int ClassFor(const StoreHeader* h, uint64_t need) {
  const uint32_t* cs = h->class_size;
  int lo = 0, hi = static_cast<int>(h->class_count);
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (cs[mid] >= need)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo < static_cast<int>(h->class_count) ? lo : -1;
}
int FloorClass(const StoreHeader* h, uint32_t size) {
  const uint32_t* cs = h->class_size;
  int lo = 0, hi = static_cast<int>(h->class_count) - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (cs[mid] <= size)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

void FreePush(const StoreHeader* h, ShardHeader* s, uint32_t off) {
  int c = FloorClass(h, It(s, off)->size);
  It(s, off)->hnext = s->free_head[c];
  s->free_head[c] = off;
  s->free_count[c]++;
}

namespace {

uint32_t FreePop(ShardHeader* s, int c) {
  uint32_t off = s->free_head[c];
  // A free list that points outside the arena, or at a live item, would hand
  // out memory another key holds.
  PF_ASSERT_MSG(off >= s->arena_begin && off < s->bump && It(s, off)->state == kChunkFree,
                "a shard's free list holds a chunk that is not free");
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

}  // namespace

uint32_t AllocChunk(const StoreHeader* h, ShardHeader* s, int c) {
  PF_ASSERT(c >= 0 && static_cast<uint32_t>(c) < h->class_count);
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

// Runs only when an allocation failed and something was freed since the
// last pass.
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

bool DryRunFits(const StoreHeader* h, ShardHeader* s, const std::vector<int>& needs) {
  uint32_t cnt[kMaxClasses];
  std::memcpy(cnt, s->free_count, sizeof cnt);
  uint64_t bump_left = s->arena_end - s->bump;
  for (int c : needs) {
    uint32_t need = h->class_size[c];
    if (cnt[c]) {
      cnt[c]--;
      continue;
    }
    if (bump_left >= need) {
      bump_left -= need;
      continue;
    }
    int d = c + 1;
    while (d < static_cast<int>(h->class_count) && !cnt[d]) ++d;
    if (d >= static_cast<int>(h->class_count)) return false;
    cnt[d]--;
    uint32_t rest = h->class_size[d] - need;
    if (rest >= kMinChunk) cnt[FloorClass(h, rest)]++;
  }
  return true;
}
}  // namespace pf::kv::internal
