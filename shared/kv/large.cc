// shared/kv/large.cc: the large-object area (large.h). The crash-consistency
// rules are in layout.h, above LargeHeader.
#include "shared/kv/large.h"

#include <errno.h>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "shared/kv/check.h"
#include "shared/kv/kv.h"
#include "shared/util/assert.h"

namespace pf::kv::internal {

namespace {

constexpr uint64_t kHeaderBytes = Align64(sizeof(LargeHeader));

uint64_t AlignPage(uint64_t v) { return (v + kLargePage - 1) & ~uint64_t{kLargePage - 1}; }

// Where the walk of the page map finds the end of the run or stray page at
// `i`: a valid run's pages, or one page. `valid` says whether a head is a
// whole, well-formed run.
bool RunValid(LargeHeader* l, uint64_t i) {
  const uint8_t* map = LargeMap(l);
  if (map[i] != kPageHead) return false;
  const LargeRun* r = LargeRunAt(l, i);
  if (r->magic != kLargeRunMagic || r->pages == 0 || r->pages > l->pages - i ||
      LargePages(r->len) != r->pages)
    return false;
  for (uint64_t j = i + 1; j < i + r->pages; ++j)
    if (map[j] != kPageBody) return false;
  return true;
}

// Rebuilds the derived counters from the page map, freeing stray pages:
// bodies without a head (an allocation or a free cut short) and malformed
// heads. Idempotent.
void Repair(LargeHeader* l) {
  uint8_t* map = LargeMap(l);
  uint64_t free_pages = 0, runs = 0, bytes = 0, low = l->pages;
  for (uint64_t i = 0; i < l->pages;) {
    if (RunValid(l, i)) {
      ++runs;
      bytes += LargeRunAt(l, i)->len;
      i += LargeRunAt(l, i)->pages;
      continue;
    }
    map[i] = kPageFree;
    ++free_pages;
    low = std::min(low, i);
    ++i;
  }
  l->free_pages = free_pages;
  l->runs = runs;
  l->value_bytes = bytes;
  l->low_free = low;
}

class LargeLock {
 public:
  explicit LargeLock(LargeHeader* l) : l_(l) {
    int r = pthread_mutex_lock(&l->mu);
    if (__builtin_expect(r == 0, 1)) return;
    if (r == EOWNERDEAD) {
      // A process died inside an allocation or a free: every such step
      // leaves the page map repairable (layout.h), so this cannot fail.
      Repair(l);
      pthread_mutex_consistent(&l->mu);
      l->recoveries++;
      g_recoveries.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("kv: large-object area repaired after its lock holder died ({} runs)", l->runs);
      return;
    }
    throw std::runtime_error("kv: large-object area lock: " + std::string(std::strerror(r)));
  }
  ~LargeLock() { pthread_mutex_unlock(&l_->mu); }
  LargeLock(const LargeLock&) = delete;
  LargeLock& operator=(const LargeLock&) = delete;

 private:
  LargeHeader* l_;
};

// First fit at or after l->low_free: the first page of a free run of `n`
// pages, or l->pages if none.
uint64_t FindFree(LargeHeader* l, uint64_t n) {
  const uint8_t* map = LargeMap(l);
  uint64_t i = l->low_free;
  while (i + n <= l->pages) {
    const void* f = std::memchr(map + i, kPageFree, l->pages - i);
    if (!f) break;
    i = static_cast<uint64_t>(static_cast<const uint8_t*>(f) - map);
    uint64_t j = i;
    while (j < i + n && j < l->pages && map[j] == kPageFree) ++j;
    if (j == i + n) return i;
    if (j >= l->pages) break;
    i = map[j] == kPageHead ? j + LargeRunAt(l, j)->pages : j + 1;  // skip a whole run
  }
  return l->pages;
}

void FreeLocked(LargeHeader* l, uint64_t page) {
  uint8_t* map = LargeMap(l);
  LargeRun* r = LargeRunAt(l, page);
  PF_ASSERT_MSG(page < l->pages && map[page] == kPageHead && r->magic == kLargeRunMagic,
                "freeing a large run that is not allocated");
  const uint64_t n = r->pages;
  map[page] = kPageFree;  // commit: the run is gone
  PF_KV_CRASH(LargeFreeHead);
  std::memset(map + page + 1, kPageFree, n - 1);
  PF_KV_CRASH(LargeFreeBody);
  l->free_pages += n;
  l->runs--;
  l->value_bytes -= r->len;
  l->low_free = std::min(l->low_free, page);
}

}  // namespace

uint64_t LargeAreaBytes(uint64_t data_bytes) {
  const uint64_t pages = data_bytes / kLargePage;
  return AlignPage(kHeaderBytes + pages) + pages * kLargePage;
}

bool LargeFormat(LargeHeader* l, uint64_t bytes, std::string* why) {
  PF_ASSERT_MSG((reinterpret_cast<uintptr_t>(l) & 63) == 0, "large area misaligned");
  // pages such that header + map + pages fit: p * (kLargePage + 1) <= bytes - header.
  if (bytes < kHeaderBytes + 2 * kLargePage + 1) {
    if (why)
      *why = "kv: the large-object area of " + std::to_string(bytes) + " bytes holds no page";
    return false;
  }
  uint64_t pages = (bytes - kHeaderBytes) / (kLargePage + 1);
  while (pages && AlignPage(kHeaderBytes + pages) + pages * kLargePage > bytes) --pages;
  if (pages == 0) {
    if (why)
      *why = "kv: the large-object area of " + std::to_string(bytes) + " bytes holds no page";
    return false;
  }
  std::memset(static_cast<void*>(l), 0, sizeof(LargeHeader));
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  const int r = pthread_mutex_init(&l->mu, &a);
  pthread_mutexattr_destroy(&a);
  if (r != 0) {
    if (why) *why = std::string("kv: pthread_mutex_init: ") + std::strerror(r);
    return false;
  }
  l->pages = pages;
  l->map_off = kHeaderBytes;
  l->data_off = AlignPage(kHeaderBytes + pages);
  std::memset(LargeMap(l), kPageFree, pages);
  l->free_pages = pages;
  l->low_free = 0;
  return true;
}

bool LargeAlloc(const StoreHeader* h, uint32_t owner, uint64_t len, uint64_t* page) {
  LargeHeader* l = Large(h);
  if (!l) return false;
  const uint64_t n = LargePages(len);
  LargeLock lk(l);
  if (n > l->free_pages) return false;
  const uint64_t i = FindFree(l, n);
  if (i >= l->pages) return false;
  uint8_t* map = LargeMap(l);
  LargeRun* r = LargeRunAt(l, i);
  r->magic = kLargeRunMagic;
  r->owner = owner;
  r->pages = n;
  r->len = len;
  r->pad = 0;
  std::memset(map + i + 1, kPageBody, n - 1);
  PF_KV_CRASH(LargeBody);
  map[i] = kPageHead;  // commit
  PF_KV_CRASH(LargeHead);
  l->free_pages -= n;
  l->runs++;
  l->value_bytes += len;
  if (l->low_free == i) l->low_free = i + n;
  *page = i;
  return true;
}

void LargeFree(const StoreHeader* h, uint64_t page) {
  LargeHeader* l = Large(h);
  LargeLock lk(l);
  FreeLocked(l, page);
}

void LargeFreeAll(const StoreHeader* h) {
  LargeHeader* l = Large(h);
  if (!l) return;
  LargeLock lk(l);
  std::memset(LargeMap(l), kPageFree, l->pages);
  l->free_pages = l->pages;
  l->runs = l->value_bytes = 0;
  l->low_free = 0;
}

bool LargeDryRun(const StoreHeader* h, std::span<const uint64_t> lens) {
  LargeHeader* l = Large(h);
  if (lens.empty()) return true;
  if (!l) return false;
  LargeLock lk(l);
  // The free runs, first-fit as LargeAlloc takes them.
  std::vector<std::pair<uint64_t, uint64_t>> free_runs;  // (first page, pages)
  const uint8_t* map = LargeMap(l);
  for (uint64_t i = l->low_free; i < l->pages;) {
    if (map[i] == kPageHead) {
      i += LargeRunAt(l, i)->pages;
      continue;
    }
    uint64_t j = i;
    while (j < l->pages && map[j] == kPageFree) ++j;
    if (j > i) free_runs.emplace_back(i, j - i);
    i = j > i ? j : i + 1;
  }
  for (uint64_t len : lens) {
    const uint64_t n = LargePages(len);
    auto it = std::find_if(free_runs.begin(), free_runs.end(),
                           [n](const auto& fr) { return fr.second >= n; });
    if (it == free_runs.end()) return false;
    it->first += n;
    it->second -= n;
  }
  return true;
}

bool LargeRefValid(const StoreHeader* h, uint64_t page, uint32_t owner, uint64_t len) {
  LargeHeader* l = Large(h);
  if (!l) return false;
  LargeLock lk(l);
  if (page >= l->pages || !RunValid(l, page)) return false;
  const LargeRun* r = LargeRunAt(l, page);
  return r->owner == owner && r->len == len;
}

uint64_t LargeCollect(const StoreHeader* h, uint32_t owner, std::span<const uint64_t> referenced) {
  LargeHeader* l = Large(h);
  if (!l) return 0;
  LargeLock lk(l);
  const uint8_t* map = LargeMap(l);
  uint64_t n = 0;
  for (uint64_t i = 0; i < l->pages;) {
    if (map[i] != kPageHead) {
      ++i;
      continue;
    }
    LargeRun* r = LargeRunAt(l, i);
    const uint64_t next = i + std::max<uint64_t>(r->pages, 1);
    if (r->owner == owner && !std::binary_search(referenced.begin(), referenced.end(), i)) {
      PF_KV_CRASH(LargeCollect);
      FreeLocked(l, i);
      ++n;
    }
    i = next;
  }
  return n;
}

uint64_t LargeOwned(const StoreHeader* h, uint32_t owner) {
  LargeHeader* l = Large(h);
  if (!l) return 0;
  LargeLock lk(l);
  uint64_t n = 0;
  for (uint64_t i = 0; i < l->pages;) {
    if (!RunValid(l, i)) {
      ++i;
      continue;
    }
    n += LargeRunAt(l, i)->owner == owner;
    i += LargeRunAt(l, i)->pages;
  }
  return n;
}

bool LargeVerify(const StoreHeader* h, std::string* why) {
  LargeHeader* l = Large(h);
  if (!l) return true;
  LargeLock lk(l);
  const uint8_t* map = LargeMap(l);
  uint64_t free_pages = 0, runs = 0, bytes = 0, low = l->pages;
  for (uint64_t i = 0; i < l->pages;) {
    if (map[i] == kPageFree) {
      ++free_pages;
      low = std::min(low, i);
      ++i;
      continue;
    }
    if (!RunValid(l, i))
      return Fail(why, "large area: page " + std::to_string(i) + " is not the head of a valid run");
    ++runs;
    bytes += LargeRunAt(l, i)->len;
    i += LargeRunAt(l, i)->pages;
  }
  if (free_pages != l->free_pages || runs != l->runs || bytes != l->value_bytes)
    return Fail(why, "large area: counters disagree with the page map");
  if (low < l->low_free) return Fail(why, "large area: a free page below low_free");
  return true;
}

LargeStats GetLargeStats(const StoreHeader* h) {
  LargeStats st;
  LargeHeader* l = Large(h);
  if (!l) return st;
  LargeLock lk(l);
  st.capacity_bytes = l->pages * kLargePage;
  st.used_bytes = (l->pages - l->free_pages) * kLargePage;
  st.runs = l->runs;
  st.value_bytes = l->value_bytes;
  st.recoveries = l->recoveries;
  return st;
}

}  // namespace pf::kv::internal
