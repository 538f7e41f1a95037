// shared/kv/arena.h: a shard's memory allocator: size classes, free lists
// per class, carving from the bump area, coalescing. Called with the shard's
// lock held; the crash-consistency rules are in arena.cc.
#pragma once

#include <cstdint>
#include <vector>

#include "shared/kv/layout.h"

namespace pf::kv::internal {

// Smallest class whose size >= need; -1 if none.
int ClassFor(const StoreHeader* h, uint64_t need);
// Largest class whose size <= size (size >= kMinChunk).
int FloorClass(const StoreHeader* h, uint32_t size);

void FreePush(const StoreHeader* h, ShardHeader* s, uint32_t off);
// A free (state kChunkFree) chunk of at least class_size[c] bytes, or 0.
uint32_t AllocChunk(const StoreHeader* h, ShardHeader* s, int c);
// Merges runs of adjacent free chunks, gives a free tail back to the bump
// area, and rebuilds the free lists. O(arena).
void Coalesce(const StoreHeader* h, ShardHeader* s);
// Would `needs` (class indexes) all get a chunk from this shard without
// eviction? A conservative dry run of AllocChunk.
bool DryRunFits(const StoreHeader* h, ShardHeader* s, const std::vector<int>& needs);

}  // namespace pf::kv::internal
