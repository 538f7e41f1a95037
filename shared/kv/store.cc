// shared/kv/store.cc: the Store API (kv.h) over the shards: layout and
// attach, the per-key operations, multi-key operations in lock order, scans,
// flushes, statistics, active expiry and the persistence hooks.
#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "shared/kv/arena.h"
#include "shared/kv/check.h"
#include "shared/kv/index.h"
#include "shared/kv/kv.h"
#include "shared/kv/large.h"
#include "shared/kv/layout.h"
#include "shared/kv/shard_lock.h"
#include "shared/util/strings.h"

namespace pf::kv {

using namespace internal;

namespace internal {
int g_crash_point = 0;
const uint8_t* g_held = nullptr;
void CrashNow() {
  raise(SIGKILL);
  __builtin_unreachable();
}
}  // namespace internal

namespace {

uint32_t g_format_buckets = 0;

}  // namespace

// ===========================================================================
// Store

namespace {
// One journal record for everything between construction and destruction
// (also on an early return or a throw): MSET, a WithKeys or Exclusive
// section. Made after the locks are taken and gone before they are released,
// so no other writer of those shards can interleave its records.
struct JournalGroup {
  JournalGroup() {
    if (g_journal) g_journal->BeginGroup();
  }
  ~JournalGroup() {
    if (g_journal) g_journal->EndGroup();
  }
  JournalGroup(const JournalGroup&) = delete;
  JournalGroup& operator=(const JournalGroup&) = delete;
};

inline const StoreHeader* Hdr(const Store* st) { return reinterpret_cast<const StoreHeader*>(st); }
inline StoreHeader* Hdr(Store* st) { return reinterpret_cast<StoreHeader*>(st); }
inline ShardHeader* Sh(const Store* st, uint32_t i) {
  const StoreHeader* h = Hdr(st);
  return reinterpret_cast<ShardHeader*>(const_cast<char*>(reinterpret_cast<const char*>(st)) +
                                        h->shards_off + i * h->shard_stride);
}
// The hash of `key` and the shard that holds it.
struct Located {
  uint64_t hash;
  ShardHeader* s;
};
inline Located Locate(const Store* st, std::string_view key) {
  const StoreHeader* h = Hdr(st);
  const uint64_t hash = HashKey(h, key.data(), key.size());
  return {hash, Sh(st, ShardFromHash(hash, h->shard_count))};
}
constexpr uint64_t kStoreHeaderBytes = Align64(sizeof(StoreHeader));
constexpr uint64_t kMinShardBytes = Align64(sizeof(ShardHeader)) + 64 * 4 + kMinArena;
constexpr uint64_t kMaxStride = 0xFFFFFFC0ull;  // offsets in a shard are uint32_t

// The size class after `cs`: the one growth rule Format and
// MinShardBytesFor share.
uint64_t NextClass(uint64_t cs) {
  return std::max<uint64_t>(cs + 8,
                            Align8(static_cast<uint64_t>(static_cast<double>(cs) * kClassFactor)));
}

// Where a shard's occupancy summary and arena start: after the header and
// `nbuckets` buckets.
uint64_t OccOffsetOf(uint64_t nbuckets) {
  return Align64(Align64(sizeof(ShardHeader)) + nbuckets * 4);
}
uint64_t ArenaBeginOf(uint64_t nbuckets) {
  return Align64(OccOffsetOf(nbuckets) + OccWords(nbuckets) * 8);
}

// Arena bytes Format gives a shard of `stride` bytes (0 if none fits).
uint64_t ArenaBytesOf(uint64_t stride, uint64_t nbuckets) {
  uint64_t arena_begin = ArenaBeginOf(nbuckets);
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

size_t Store::MinSize(uint32_t shards) {
  return kStoreHeaderBytes + size_t{std::max<uint32_t>(shards, 1)} * kMinShardBytes;
}

uint64_t Store::MinShardBytesFor(uint32_t max_key_bytes, uint32_t max_value_bytes,
                                 bool large_area) {
  // With a large-object area, a shard holds values below kLargeValueMin only.
  const uint64_t inline_max =
      large_area ? std::min<uint64_t>(max_value_bytes, kLargeValueMin - 1) : max_value_bytes;
  const uint64_t need = sizeof(Item) + uint64_t{max_key_bytes} + inline_max;
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

uint64_t Store::MinSizeFor(uint32_t shards, uint32_t max_key_bytes, uint32_t max_value_bytes,
                           uint64_t large_bytes) {
  return kStoreHeaderBytes +
         uint64_t{std::max<uint32_t>(shards, 1)} *
             MinShardBytesFor(max_key_bytes, max_value_bytes, large_bytes > 0) +
         (large_bytes ? large_bytes + kLargePage : 0);  // + the area's page alignment
}

uint64_t Store::MinLargeBytesFor(uint32_t max_value_bytes) {
  if (max_value_bytes < kLargeValueMin) return 0;
  return LargeAreaBytes(kLargestLargeCopies * LargePages(max_value_bytes) * kLargePage);
}

Store* Store::Format(void* base, size_t size, uint32_t shards, const Limits& limits, uint64_t seed,
                     std::string* why, uint64_t large_bytes) {
  auto fail = [&](const std::string& m) -> Store* {
    if (why) *why = m;
    return nullptr;
  };
  if (shards == 0) return fail("kv: shards must be at least 1");
  if (reinterpret_cast<uintptr_t>(base) & 63) return fail("kv: region is not 64-byte aligned");
  // The large-object area takes the region's last large_bytes, from a page
  // boundary (relative to the store base); the shards share the rest.
  uint64_t large_off = 0;
  if (large_bytes) {
    if (large_bytes >= size) return fail("kv: the large-object area is larger than the store");
    large_off = (size - large_bytes) & ~uint64_t{kLargePage - 1};  // at least large_bytes
  }
  const uint64_t shards_end = large_off ? large_off : size;
  if (shards_end < MinSize(shards))
    return fail("kv: region of " + std::to_string(shards_end) + " bytes is too small for " +
                std::to_string(shards) + " shards (need at least " +
                std::to_string(MinSize(shards)) + ")");
  uint64_t stride =
      std::min<uint64_t>(((shards_end - kStoreHeaderBytes) / shards) & ~uint64_t{63}, kMaxStride);
  uint64_t buckets_off = Align64(sizeof(ShardHeader));
  uint64_t nbuckets = g_format_buckets ? g_format_buckets : DefaultBuckets(stride);
  uint64_t arena_begin = ArenaBeginOf(nbuckets);
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
  for (uint64_t cs = kMinChunk; n < kMaxClasses;) {
    if (cs >= arena_bytes || n == kMaxClasses - 1) {
      h->class_size[n++] = static_cast<uint32_t>(arena_bytes);
      break;
    }
    h->class_size[n++] = static_cast<uint32_t>(cs);
    cs = NextClass(cs);
  }
  h->class_count = n;
  if (large_off) {
    if (!LargeFormat(reinterpret_cast<LargeHeader*>(static_cast<char*>(base) + large_off),
                     size - large_off, why))
      return nullptr;
    h->large_off = large_off;
  }

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
    s->occ_off = static_cast<uint32_t>(OccOffsetOf(nbuckets));
    s->arena_begin = static_cast<uint32_t>(arena_begin);
    s->arena_end = static_cast<uint32_t>(arena_begin + arena_bytes);
    s->bump = s->arena_begin;
    std::memset(Buckets(s), 0, nbuckets * 4);
    std::memset(Occ(s), 0, OccWords(nbuckets) * 8);
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
    return fail("store was formatted for " + std::to_string(h->region_size) + " bytes, region is " +
                std::to_string(size));
  if (h->header_bytes != sizeof(StoreHeader) || h->item_header_bytes != sizeof(Item) ||
      h->shard_header_bytes != sizeof(ShardHeader))
    return fail("structure sizes differ from this build");
  if (h->shard_count == 0 || h->class_count == 0 || h->class_count > kMaxClasses ||
      h->shards_off + uint64_t{h->shard_count} * h->shard_stride > size ||
      h->shard_stride > kMaxStride ||
      (h->large_off && (h->large_off < h->shards_off + uint64_t{h->shard_count} * h->shard_stride ||
                        h->large_off + sizeof(LargeHeader) > size ||
                        h->large_off + Large(h)->data_off + Large(h)->pages * kLargePage > size)))
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
  const auto [hash, s] = Locate(this, key);
  ShardLock lk(h, s);
  uint32_t off = LookupLive(h, s, hash, key, now_ms);
  if (!off) {
    s->misses++;
    return Status::kNotFound;
  }
  s->hits++;
  Touch(s, off);
  Item* it = It(s, off);
  if (value) value->assign(ValueOf(h, it));
  return Status::kOk;
}

Status Store::Set(std::string_view key, std::string_view value, const SetOptions& opt,
                  uint64_t now_ms, std::string* old, bool* had_old) {
  const StoreHeader* h = Hdr(this);
  if (had_old) *had_old = false;
  if (key.size() > LoadU32(&h->max_key_bytes) || value.size() > LoadU32(&h->max_value_bytes))
    return Status::kTooLarge;
  const auto [hash, s] = Locate(this, key);
  ShardLock lk(h, s);
  uint32_t cur = LookupLive(h, s, hash, key, now_ms);
  if (cur) {
    if (had_old) *had_old = true;
    if (old) old->assign(ValueOf(h, It(s, cur)));
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
  const auto [hash, s] = Locate(this, key);
  ShardLock lk(h, s);
  uint32_t off = LookupLive(h, s, hash, key, now_ms);
  if (!off) return Status::kNotFound;
  JDel(s, It(s, off));
  Remove(h, s, off);
  return Status::kOk;
}

bool Store::Exists(std::string_view key, uint64_t now_ms) {
  const StoreHeader* h = Hdr(this);
  const auto [hash, s] = Locate(this, key);
  ShardLock lk(h, s);
  return LookupLive(h, s, hash, key, now_ms) != 0;
}

Status Store::IncrBy(std::string_view key, int64_t delta, uint64_t now_ms, int64_t* result) {
  const StoreHeader* h = Hdr(this);
  if (key.size() > LoadU32(&h->max_key_bytes)) return Status::kTooLarge;
  const auto [hash, s] = Locate(this, key);
  ShardLock lk(h, s);
  uint32_t cur = LookupLive(h, s, hash, key, now_ms);
  int64_t v = 0, expire = -1;
  if (cur) {
    Item* it = It(s, cur);
    if (!ParseInt64(ValueOf(h, it), &v)) return Status::kNotInteger;
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
  const auto [hash, s] = Locate(this, key);
  ShardLock lk(h, s);
  uint32_t off = LookupLive(h, s, hash, key, now_ms);
  if (!off) return Status::kNotDone;
  Item* it = It(s, off);
  if (at_ms < 0) {
    if (it->expire_at < 0) return Status::kNotDone;
    it->expire_at = -1;
    StampWrite(s, it);
    PF_KV_CRASH(ExpireSet);
    s->expires--;
    JPut(s, std::string_view(it->key(), it->key_len), ValueOf(h, it), -1);
    return Status::kOk;
  }
  if (at_ms <= static_cast<int64_t>(now_ms)) {  // a deadline in the past deletes (as Redis)
    JDel(s, it);
    Remove(h, s, off);
    return Status::kOk;
  }
  bool had = it->expire_at >= 0;
  it->expire_at = at_ms;
  StampWrite(s, it);
  PF_KV_CRASH(ExpireSet);
  if (!had) s->expires++;
  JPut(s, std::string_view(it->key(), it->key_len), ValueOf(h, it), at_ms);
  return Status::kOk;
}

Status Store::GetExpire(std::string_view key, uint64_t now_ms, int64_t* at_ms) {
  const StoreHeader* h = Hdr(this);
  const auto [hash, s] = Locate(this, key);
  ShardLock lk(h, s);
  uint32_t off = LookupLive(h, s, hash, key, now_ms);
  if (!off) return Status::kNotFound;
  if (at_ms) *at_ms = It(s, off)->expire_at;
  return Status::kOk;
}

// ---------------------------------------------------------------------------
// Locked multi-key sections (kv.h WithKeys, KeyView)

namespace {
struct PutNeed {
  uint32_t shard;
  size_t key_bytes, value_bytes;
};
// Whether writes of these sizes would all get memory, checked with the
// involved shards' locks held, before writing any (MSET, KeyView::CanPut):
// kOk or kOom. Under allkeys-lru only the sizes are checked (eviction makes
// the room); under noeviction a dry run of each shard's allocator and of
// the large-object area's.
Status DryRunPuts(Store* st, std::vector<PutNeed>& needs) {
  const StoreHeader* h = Hdr(st);
  const bool lru = static_cast<Eviction>(LoadU32(&h->eviction)) == Eviction::kAllKeysLru;
  std::sort(needs.begin(), needs.end(),
            [](const PutNeed& a, const PutNeed& b) { return a.shard < b.shard; });
  std::vector<int> classes;
  std::vector<uint64_t> large;
  for (size_t i = 0; i < needs.size();) {
    const uint32_t si = needs[i].shard;
    ShardHeader* s = Sh(st, si);
    classes.clear();
    uint64_t total = 0;
    for (; i < needs.size() && needs[i].shard == si; ++i) {
      const bool big = h->large_off && needs[i].value_bytes >= kLargeValueMin;
      if (big) large.push_back(needs[i].value_bytes);
      const int c = ClassFor(
          h, sizeof(Item) + needs[i].key_bytes + (big ? sizeof(LargeRef) : needs[i].value_bytes));
      if (c < 0) return Status::kOom;
      classes.push_back(c);
      total += h->class_size[c];
    }
    if (lru) {
      if (total > s->arena_end - s->arena_begin) return Status::kOom;
      continue;
    }
    if (!DryRunFits(h, s, classes)) {
      if (s->frees_since_coalesce) Coalesce(h, s);
      if (!DryRunFits(h, s, classes)) return Status::kOom;
    }
  }
  if (large.empty()) return Status::kOk;
  if (lru) {
    uint64_t pages = 0;
    for (uint64_t len : large) pages += LargePages(len);
    return pages <= Large(h)->pages ? Status::kOk : Status::kOom;
  }
  return LargeDryRun(h, large) ? Status::kOk : Status::kOom;
}
}  // namespace

Status Store::WithKeys(std::span<const std::string_view> keys, uint64_t now_ms,
                       const std::function<Status(KeyView&)>& fn) {
  const StoreHeader* h = Hdr(this);
  KeyView view(this, now_ms);
  view.slots_.reserve(keys.size());
  std::vector<uint32_t> order;
  order.reserve(keys.size());
  for (std::string_view k : keys) {
    const uint64_t hash = HashKey(h, k.data(), k.size());
    const uint32_t si = ShardFromHash(hash, h->shard_count);
    view.slots_.push_back({k, hash, si});
    order.push_back(si);
  }
  std::sort(view.slots_.begin(), view.slots_.end(),
            [](const KeyView::Slot& a, const KeyView::Slot& b) { return a.key < b.key; });
  std::sort(order.begin(), order.end());
  order.erase(std::unique(order.begin(), order.end()), order.end());
  std::vector<ShardLock> locks;  // ascending shard order: the lock order of kv.h
  locks.reserve(order.size());
  for (uint32_t si : order) locks.emplace_back(h, Sh(this, si));
  // One journal record for the section (EndGroup also when fn throws). The
  // group opens after the locks and closes before they are released, so
  // no other writer of these shards can interleave its records.
  JournalGroup group;
  return fn(view);
}

const KeyView::Slot& KeyView::Find(std::string_view key) const {
  auto it = std::lower_bound(slots_.begin(), slots_.end(), key,
                             [](const Slot& s, std::string_view k) { return s.key < k; });
  PF_ASSERT_MSG(it != slots_.end() && it->key == key,
                "KeyView: a key that was not given to WithKeys (its shard is not locked)");
  return *it;
}

uint32_t KeyView::max_value_bytes() const { return LoadU32(&Hdr(st_)->max_value_bytes); }

Status KeyView::Get(std::string_view key, std::string_view* value, int64_t* expire_at) {
  const Slot& k = Find(key);
  const StoreHeader* h = Hdr(st_);
  ShardHeader* s = Sh(st_, k.shard);
  uint32_t off = LookupLive(h, s, k.hash, key, now_);
  if (!off) {
    s->misses++;
    return Status::kNotFound;
  }
  s->hits++;
  Touch(s, off);
  Item* it = It(s, off);
  if (value) *value = ValueOf(h, it);
  if (expire_at) *expire_at = it->expire_at;
  return Status::kOk;
}

bool KeyView::Exists(std::string_view key) {
  const Slot& k = Find(key);
  return LookupLive(Hdr(st_), Sh(st_, k.shard), k.hash, key, now_) != 0;
}

Status KeyView::Put(std::string_view key, std::string_view value, int64_t expire_at) {
  const Slot& k = Find(key);
  const StoreHeader* h = Hdr(st_);
  if (key.size() > LoadU32(&h->max_key_bytes) || value.size() > LoadU32(&h->max_value_bytes))
    return Status::kTooLarge;
  // A value read from the segment (COPY, RENAME) may sit in a chunk that
  // eviction or the overwrite frees while the new item is written: copy it out.
  const char* base = reinterpret_cast<const char*>(h);
  if (!value.empty() && value.data() >= base && value.data() < base + h->region_size) {
    copy_.assign(value);
    value = copy_;
  }
  ShardHeader* s = Sh(st_, k.shard);
  uint32_t cur = LookupLive(h, s, k.hash, key, now_);
  Status st = WriteItem(h, s, k.hash, key, value, expire_at, cur);
  if (st == Status::kOk) JPut(s, key, value, expire_at);
  return st;
}

Status KeyView::Del(std::string_view key) {
  const Slot& k = Find(key);
  const StoreHeader* h = Hdr(st_);
  ShardHeader* s = Sh(st_, k.shard);
  uint32_t off = LookupLive(h, s, k.hash, key, now_);
  if (!off) return Status::kNotFound;
  JDel(s, It(s, off));
  Remove(h, s, off);
  return Status::kOk;
}

Status KeyView::SetExpire(std::string_view key, int64_t at_ms) {
  const Slot& k = Find(key);
  const StoreHeader* h = Hdr(st_);
  ShardHeader* s = Sh(st_, k.shard);
  uint32_t off = LookupLive(h, s, k.hash, key, now_);
  if (!off) return Status::kNotDone;
  Item* it = It(s, off);
  if (at_ms >= 0 && at_ms <= static_cast<int64_t>(now_)) {
    JDel(s, it);
    Remove(h, s, off);
    return Status::kOk;
  }
  if (at_ms < 0 && it->expire_at < 0) return Status::kNotDone;
  const bool had = it->expire_at >= 0;
  it->expire_at = at_ms < 0 ? -1 : at_ms;
  StampWrite(s, it);
  PF_KV_CRASH(ExpireSet);
  if (had && at_ms < 0) s->expires--;
  if (!had && at_ms >= 0) s->expires++;
  JPut(s, key, ValueOf(h, it), it->expire_at);
  return Status::kOk;
}

Status KeyView::CanPut(std::span<const std::pair<std::string_view, size_t>> items) {
  const StoreHeader* h = Hdr(st_);
  const uint32_t mk = LoadU32(&h->max_key_bytes), mv = LoadU32(&h->max_value_bytes);
  std::vector<PutNeed> needs;
  needs.reserve(items.size());
  for (const auto& [key, vsize] : items) {
    if (key.size() > mk || vsize > mv) return Status::kTooLarge;
    needs.push_back({Find(key).shard, key.size(), vsize});
  }
  return DryRunPuts(st_, needs);
}

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
  // Check every shard (and the large-object area) can take its items
  // before writing any.
  std::vector<PutNeed> needs;
  needs.reserve(kvs.size());
  for (size_t i = 0; i < kvs.size(); ++i)
    needs.push_back({shards[i], kvs[i].first.size(), kvs[i].second.size()});
  if (Status st = DryRunPuts(this, needs); st != Status::kOk) return st;
  // One journal record for the whole MSET (EndGroup also on an early return).
  JournalGroup group;
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
  // Atomic, as Redis' MGET and as MSet: every involved shard's lock at once,
  // taken in ascending order, so an MGET never sees half of an MSET. The
  // caller's max_bytes bounds how long they are held.
  std::vector<ShardLock> locks;
  for (size_t g = 0; g < order.size(); ++g)
    if (g == 0 || order[g].first != order[g - 1].first)
      locks.emplace_back(h, Sh(this, order[g].first));
  uint64_t bytes = 0;
  for (size_t g = 0; g < order.size();) {
    const uint32_t si = order[g].first;
    ShardHeader* s = Sh(this, si);
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
      (*out)[i].emplace(ValueOf(h, It(s, off)));
    }
  }
  return true;
}

namespace {

// Work units a Scan call may spend (an occupancy word, a bucket or a key
// looked at is one unit) on top of kScanWorkPerKey per key asked for: enough
// to cross every empty shard and summary word of a large store in one call,
// small enough that a call holds one shard's lock for tens of microseconds.
constexpr uint64_t kScanWorkBase = 1 << 16;
constexpr uint64_t kScanWorkPerKey = 16;

// The first bucket at or after `b` that holds an item, using the occupancy
// summary to skip empty blocks; clears the bit of a block it finds empty.
// Returns false, with *b where it stopped, if the budget ran out first or no
// bucket is left (*b == nbuckets).
bool NextNonEmptyBucket(ShardHeader* s, uint32_t* b, uint64_t* budget) {
  const uint64_t nb = s->nbuckets;
  const uint32_t* buckets = Buckets(s);
  uint64_t* occ = Occ(s);
  uint64_t i = *b;
  while (i<nb&& * budget> 0) {
    uint64_t block = i / kBlockBuckets;
    const uint64_t bits = occ[block / 64] >> (block % 64);
    --*budget;
    if (bits == 0) {  // no marked block left in this word
      i = (block / 64 + 1) * 64 * kBlockBuckets;
      continue;
    }
    block += static_cast<uint64_t>(__builtin_ctzll(bits));
    const uint64_t start = block * kBlockBuckets;
    const uint64_t first = std::max(i, start), end = std::min(nb, start + kBlockBuckets);
    for (uint64_t j = first; j < end; ++j) {
      if (buckets[j]) {
        *budget -= std::min(*budget, j - first);
        *b = static_cast<uint32_t>(j);
        return true;
      }
    }
    *budget -= std::min(*budget, end - first);
    if (first == start) occ[block / 64] &= ~(uint64_t{1} << (block % 64));  // stale: clear
    i = end;
  }
  *b = static_cast<uint32_t>(std::min(i, nb));
  return false;
}

}  // namespace

uint64_t Store::Scan(uint64_t cursor, size_t count, uint64_t now_ms, std::vector<std::string>* keys,
                     uint64_t max_bytes, std::vector<uint64_t>* resume) {
  const StoreHeader* h = Hdr(this);
  uint32_t si = static_cast<uint32_t>(cursor >> 32);
  uint32_t b = static_cast<uint32_t>(cursor);
  if (si >= h->shard_count) return 0;
  // The cursor that continues after bucket `bucket` of shard `shard` (0 = done).
  auto after = [h](uint32_t shard, uint32_t bucket, uint32_t nbuckets) -> uint64_t {
    if (bucket + 1 < nbuckets) return (uint64_t{shard} << 32) | (bucket + 1);
    return shard + 1 < h->shard_count ? uint64_t{shard + 1} << 32 : 0;
  };
  const size_t want = std::max<size_t>(count, 1);
  uint64_t budget = kScanWorkBase + kScanWorkPerKey * std::min<uint64_t>(want, 1u << 24);
  size_t got = 0;
  uint64_t bytes = 0;
  for (;;) {
    ShardHeader* s = Sh(this, si);
    {
      ShardLock lk(h, s);
      const uint32_t nb = s->nbuckets;
      --budget;
      if (s->keys == 0 || b >= nb) b = nb;  // an empty shard costs one unit
      while (b < nb) {
        if (!NextNonEmptyBucket(s, &b, &budget)) break;
        for (uint32_t o = Buckets(s)[b]; o; o = It(s, o)->hnext) {
          Item* it = It(s, o);
          budget -= std::min<uint64_t>(budget, 1);
          if (Expired(it, now_ms)) continue;
          keys->emplace_back(it->key(), it->key_len);
          bytes += it->key_len;
          ++got;
        }
        const uint64_t next = after(si, b, nb);
        if (resume) resume->resize(keys->size(), next);
        if (got >= want || bytes > max_bytes || budget == 0) return next;
        ++b;
      }
      if (b < nb) return (uint64_t{si} << 32) | b;  // the budget ran out inside this shard
    }
    if (++si >= h->shard_count) return 0;
    b = 0;
    if (budget == 0) return uint64_t{si} << 32;
  }
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

WatchState Store::Watch(std::string_view key, uint64_t now_ms) {
  const StoreHeader* h = Hdr(this);
  const auto [hash, s] = Locate(this, key);
  ShardLock lk(h, s);
  WatchState w;
  const uint32_t off = LookupLive(h, s, hash, key, now_ms);  // may remove: read removals after
  w.removals = s->removals;
  if (off) {
    w.exists = true;
    w.version = It(s, off)->version;
  }
  return w;
}

bool Store::Changed(std::string_view key, const WatchState& w, uint64_t now_ms) {
  const StoreHeader* h = Hdr(this);
  const auto [hash, s] = Locate(this, key);
  ShardLock lk(h, s);
  if (const uint32_t off = LookupLive(h, s, hash, key, now_ms))
    return !w.exists || It(s, off)->version != w.version;
  return w.exists || s->removals != w.removals;
}

void Store::Exclusive(std::span<const std::string_view> keys, bool all_shards,
                      const std::function<void()>& fn) {
  const StoreHeader* h = Hdr(this);
  PF_ASSERT_MSG(g_held == nullptr, "Store::Exclusive sections do not nest");
  std::vector<uint8_t> held(h->shard_count, all_shards ? 1 : 0);
  for (std::string_view k : keys) held[ShardOf(k)] = 1;
  std::vector<ShardLock> locks;  // ascending shard order: the lock order of kv.h
  for (uint32_t i = 0; i < h->shard_count; ++i)
    if (held[i]) locks.emplace_back(h, Sh(this, i));
  struct Held {  // destroyed before the locks are released
    explicit Held(const uint8_t* held) { g_held = held; }
    ~Held() { g_held = nullptr; }
  } held_now(held.data());
  JournalGroup group;
  fn();
}

uint64_t Store::DbSize() {
  uint64_t n = 0;
  for (uint32_t i = 0; i < shard_count(); ++i) n += GetShardStats(i).keys;
  return n;
}

bool Store::RandomKey(uint64_t now_ms, uint64_t seed, std::string* key) {
  const StoreHeader* h = Hdr(this);
  auto next = [&seed] { return Mix64(seed += 0x9e3779b97f4a7c15ull); };
  for (int attempt = 0; attempt < 8; ++attempt) {
    // The shard, weighted by key counts read without locks (a hint only).
    uint64_t total = 0;
    for (uint32_t i = 0; i < h->shard_count; ++i)
      total += __atomic_load_n(&Sh(this, i)->keys, __ATOMIC_RELAXED);
    if (total == 0) return false;
    uint64_t r = next() % total;
    uint32_t si = 0;
    for (; si + 1 < h->shard_count; ++si) {
      const uint64_t k = __atomic_load_n(&Sh(this, si)->keys, __ATOMIC_RELAXED);
      if (r < k) break;
      r -= k;
    }
    ShardHeader* s = Sh(this, si);
    ShardLock lk(h, s);
    if (s->keys == 0) continue;
    const uint32_t nb = s->nbuckets;
    const uint32_t* buckets = Buckets(s);
    // Random buckets, as Redis' dictGetFairRandomKey; a sparse index falls
    // back to the next non-empty bucket after a random one.
    uint32_t b = 0;
    bool found = false;
    for (int t = 0; t < 64 && !found; ++t) {
      b = static_cast<uint32_t>(next() % nb);
      found = buckets[b] != 0;
    }
    if (!found) {
      uint64_t budget = UINT64_MAX;
      b = static_cast<uint32_t>(next() % nb);
      if (!NextNonEmptyBucket(s, &b, &budget)) {
        b = 0;
        budget = UINT64_MAX;
        if (!NextNonEmptyBucket(s, &b, &budget)) continue;
      }
    }
    uint32_t live[64];
    uint32_t n = 0;
    for (uint32_t o = buckets[b]; o && n < 64; o = It(s, o)->hnext)
      if (!Expired(It(s, o), now_ms)) live[n++] = o;
    if (n == 0) continue;
    Item* it = It(s, live[next() % n]);
    key->assign(it->key(), it->key_len);
    return true;
  }
  return false;
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
    s->removals += s->keys;
    s->bump = s->arena_begin;  // commit: every chunk is gone
    PF_KV_CRASH(FlushBump);
    std::memset(Buckets(s), 0, size_t{s->nbuckets} * 4);
    std::memset(Occ(s), 0, OccWords(s->nbuckets) * 8);
    PF_KV_CRASH(FlushClear);
    s->lru_head = s->lru_tail = 0;
    for (uint32_t c = 0; c < kMaxClasses; ++c) s->free_head[c] = s->free_count[c] = 0;
    s->keys = s->expires = s->used_bytes = 0;
    s->frees_since_coalesce = 0;
  }
  // Every run's item is gone (a crash before this leaves orphan runs, which
  // each shard's repair frees).
  LargeFreeAll(h);
  if (g_journal) g_journal->EndGroup();
  return n;
}

uint64_t Store::FlushPrefix(std::string_view prefix) {
  return RemoveWhere(
      this,
      [prefix](std::string_view k) {
        return k.size() >= prefix.size() && k.compare(0, prefix.size(), prefix) == 0;
      },
      /*journal=*/true);
}

bool Store::Prefault(uint32_t shard, uint64_t bytes) {
  const StoreHeader* h = Hdr(this);
  if (shard >= h->shard_count) return true;
  ShardHeader* s = Sh(this, shard);
  uint64_t from, to;
  {
    ShardLock lk(h, s);
    from = s->bump;
    to = std::min<uint64_t>(s->arena_end, from + bytes);
  }
  if (to <= from) return true;
  // Whole pages only: madvise wants an aligned start. Populating changes no
  // byte, so it needs no lock (another writer may be using the same pages).
  const uintptr_t base = reinterpret_cast<uintptr_t>(s);
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t a = (base + from + page - 1) & ~(page - 1), b = (base + to) & ~(page - 1);
  if (b <= a) return true;
  return madvise(reinterpret_cast<void*>(a), b - a, MADV_POPULATE_WRITE) == 0;
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
  st.avg_ttl_ms = s->avg_ttl_ms;
  return st;
}

Stats Store::GetStats() {
  Stats t;
  double ttl_weighted = 0;  // each shard's average, weighted by its keys with a TTL
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
    ttl_weighted += static_cast<double>(s.avg_ttl_ms) * static_cast<double>(s.expires);
  }
  if (t.expires)
    t.avg_ttl_ms = static_cast<uint64_t>(ttl_weighted / static_cast<double>(t.expires));
  const LargeStats l = GetLargeStats(Hdr(this));
  t.large_capacity_bytes = l.capacity_bytes;
  t.large_used_bytes = l.used_bytes;
  t.large_values = l.runs;
  t.used_bytes += l.used_bytes;
  t.capacity_bytes += l.capacity_bytes;
  return t;
}

size_t Store::SweepExpired(uint32_t shard, uint64_t now_ms, size_t max_keys) {
  const StoreHeader* h = Hdr(this);
  if (shard >= h->shard_count || max_keys == 0) return 0;
  ShardHeader* s = Sh(this, shard);
  ShardLock lk(h, s);
  if (s->expires == 0) {
    s->avg_ttl_ms = 0;
    return 0;
  }
  // Bounded work, in Scan's units (a summary word, a bucket or a key looked
  // at): empty bucket runs cost one unit per 4096 buckets, so a pass over a
  // shard costs about its keys, and a shard of a few keys is swept in one
  // call (DBSIZE stops counting an expired key within a tick or two).
  uint64_t budget = std::max<uint64_t>(4096, 64 * uint64_t{max_keys});
  uint32_t b = s->sweep_cursor < s->nbuckets ? s->sweep_cursor : 0;
  size_t removed = 0;
  bool wrapped = false;
  uint64_t ttl_sum = 0, ttl_n = 0;  // remaining TTLs of the keys seen that stay
  while (budget > 0 && removed < max_keys && s->expires) {
    if (!NextNonEmptyBucket(s, &b, &budget)) {
      if (budget == 0 || wrapped) break;
      b = 0;  // the end of the shard: go on from its start, once
      wrapped = true;
      continue;
    }
    for (uint32_t o = Buckets(s)[b]; o && removed < max_keys;) {
      Item* it = It(s, o);
      const uint32_t next = it->hnext;
      budget -= std::min<uint64_t>(budget, 1);  // NextNonEmptyBucket may have spent it all
      if (Expired(it, now_ms)) {
        PF_KV_CRASH(Sweep);
        Remove(h, s, o);
        s->expired++;
        ++removed;
      } else if (it->expire_at >= 0) {
        ttl_sum += static_cast<uint64_t>(it->expire_at) - now_ms;
        ++ttl_n;
      }
      o = next;
    }
    if (removed >= max_keys) break;  // this bucket may hold more: start here next time
    if (++b >= s->nbuckets) {
      if (wrapped) break;  // at most one pass per call
      b = 0;
      wrapped = true;
    }
    if (budget > 0) --budget;
  }
  s->sweep_cursor = b < s->nbuckets ? b : 0;
  if (s->expires == 0) {
    s->avg_ttl_ms = 0;
  } else if (ttl_n) {  // Redis' estimate: each sample moves the average 2% of the way
    const uint64_t avg = ttl_sum / ttl_n;
    s->avg_ttl_ms = s->avg_ttl_ms ? s->avg_ttl_ms / 50 * 49 + avg / 50 : avg;
  }
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
      fn(std::string_view(it->key(), it->key_len), ValueOf(h, it), it->expire_at);
    }
  }
  return s->seq;
}

uint64_t Store::Flushes() const { return __atomic_load_n(&Hdr(this)->flushes, __ATOMIC_SEQ_CST); }

uint64_t Store::RemoveIf(const std::function<bool(std::string_view key)>& pred) {
  return RemoveWhere(this, pred, /*journal=*/false);
}

}  // namespace pf::kv
