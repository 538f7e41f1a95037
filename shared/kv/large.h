// shared/kv/large.h: the large-object area (layout.h LargeHeader): runs of
// pages for values of kLargeValueMin bytes and more, first-fit from a page
// map, with crash repair. Every call here is made holding the lock of the
// shard that owns (or will own) the run, and takes the area's lock itself.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "shared/kv/layout.h"

namespace pf::kv::internal {

// Bytes the area needs (header, page map, pages) to hold `data_bytes` of pages.
uint64_t LargeAreaBytes(uint64_t data_bytes);
// Pages a value of `len` bytes takes (its LargeRun header included).
inline uint64_t LargePages(uint64_t len) {
  return (sizeof(LargeRun) + len + kLargePage - 1) / kLargePage;
}
// Lays out an area of `bytes` at `l` (page-aligned from the store base).
// False (and why) if it cannot hold one page.
bool LargeFormat(LargeHeader* l, uint64_t bytes, std::string* why);

// A committed run for a value of `len` bytes owned by shard `owner`; its
// bytes (LargeRunAt(page) + 1) are the caller's to fill. False if no free
// run is long enough.
bool LargeAlloc(const StoreHeader* h, uint32_t owner, uint64_t len, uint64_t* page);
// Frees a run (head byte first: see layout.h).
void LargeFree(const StoreHeader* h, uint64_t page);
// Frees every run (FLUSHALL, holding every shard's lock).
void LargeFreeAll(const StoreHeader* h);
// Whether runs of these lengths would all be allocated, in this order, now.
bool LargeDryRun(const StoreHeader* h, std::span<const uint64_t> lens);
// Whether `page` is the head of a run owned by `owner` holding `len` bytes.
bool LargeRefValid(const StoreHeader* h, uint64_t page, uint32_t owner, uint64_t len);
// Shard repair: frees the runs of shard `owner` that are not in `referenced`
// (sorted); returns how many.
uint64_t LargeCollect(const StoreHeader* h, uint32_t owner, std::span<const uint64_t> referenced);
// Runs owned by shard `owner`.
uint64_t LargeOwned(const StoreHeader* h, uint32_t owner);
// Checks the page map and the derived counters.
bool LargeVerify(const StoreHeader* h, std::string* why);

struct LargeStats {
  uint64_t capacity_bytes = 0, used_bytes = 0, runs = 0, value_bytes = 0, recoveries = 0;
};
LargeStats GetLargeStats(const StoreHeader* h);

}  // namespace pf::kv::internal
