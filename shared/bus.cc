// shared/bus.cc: the pub/sub ring and the subscription count table in the
// shared segment. Crash consistency (a worker may die holding either mutex)
// is written once, above each lock.
#include "shared/bus.h"

#include <errno.h>
#include <sys/random.h>

#include <cstring>
#include <new>
#include <set>
#include <stdexcept>
#include <type_traits>
#include <unordered_map>

#include "shared/util/glob.h"
#include "shared/util/hash.h"

namespace pf::bus {

namespace {

constexpr uint64_t kBusMagic = 0x3153554246504650ull;  // "PFPFBUS1"
constexpr uint64_t kNever = ~0ull - 1;                 // a ring slot never written
constexpr uint64_t kWriting = ~0ull;                   // a ring slot being written
constexpr int32_t kEmpty = -1;  // table entry never used (ends a probe chain)
constexpr int32_t kTomb = -2;   // table entry freed (a probe chain goes on)

constexpr uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

struct SlotHdr {
  std::atomic<uint64_t> seq;
  uint32_t kind;
  uint32_t channel_len;
  uint32_t data_len;
  uint32_t pad;
  uint64_t origin;
};
static_assert(sizeof(SlotHdr) == 32);

// What a table entry counts: subscriptions to a channel or to a pattern,
// or (kAddress) the subscriptions held by the clients of one address, whose
// name is the address' keyed hash (AddressKey).
enum EntryKind : uint8_t { kChannel = 0, kPattern = 1, kAddress = 2 };

struct Entry {
  int32_t owner;   // kEmpty, kTomb, or a process' counter entry
  uint32_t count;  // subscriptions of that process to this name
  uint32_t hash;
  uint16_t len;
  uint8_t kind;  // EntryKind
  uint8_t pad;
  uint32_t pat_pos;  // kPattern: this entry's place in the pattern list
  char name[1];      // max_channel_bytes in the segment
};

}  // namespace

struct BusHeader {
  uint64_t magic;
  uint32_t ring_slots, max_message_bytes, max_channel_bytes, table_size;
  uint32_t slot_bytes, entry_bytes;
  uint64_t ring_off, table_off;
  uint64_t seed0, seed1;
  // Publishers. Invariant: `head` is stored last, after the slot is complete
  // and stamped with its sequence number; a publisher that dies holding the
  // lock leaves at most one slot stamped kWriting below no visible head, which
  // the next publisher overwrites. So EOWNERDEAD needs no repair.
  pthread_mutex_t ring_mu;
  // The subscription table. An entry's owner is written last when it is
  // taken and first when it is freed; the derived pattern_entries/used counts
  // are recounted on EOWNERDEAD before the mutex is marked consistent.
  // The pattern list holds the indexes of the kPattern entries, so PUBLISH
  // copies the patterns without walking the table; pattern_gen changes
  // whenever a pattern's subscriptions change (PatternCache).
  pthread_mutex_t table_mu;
  uint32_t pattern_entries, used_entries;
  uint64_t patlist_off;
  uint64_t pattern_gen;
  alignas(64) std::atomic<uint64_t> head;
  alignas(64) std::atomic<uint32_t> pending[kMaxWakeSlots];
};

namespace {

SlotHdr* SlotAt(BusHeader* h, uint64_t seq) {
  return reinterpret_cast<SlotHdr*>(reinterpret_cast<char*>(h) + h->ring_off +
                                    (seq % h->ring_slots) * h->slot_bytes);
}

Entry* EntryAt(BusHeader* h, uint32_t i) {
  return reinterpret_cast<Entry*>(reinterpret_cast<char*>(h) + h->table_off +
                                  static_cast<uint64_t>(i) * h->entry_bytes);
}

uint32_t* PatList(BusHeader* h) {
  return reinterpret_cast<uint32_t*>(reinterpret_cast<char*>(h) + h->patlist_off);
}

uint32_t SlotBytes(const Sizes& c) {
  return static_cast<uint32_t>(
      AlignUp(sizeof(SlotHdr) + c.max_channel_bytes + c.max_message_bytes, 64));
}
uint32_t EntryBytes(const Sizes& c) {
  return static_cast<uint32_t>(AlignUp(offsetof(Entry, name) + c.max_channel_bytes, 8));
}

void InitRobust(pthread_mutex_t* m) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
}

void Recount(BusHeader* h) {
  uint32_t used = 0, pats = 0;
  uint32_t* list = PatList(h);
  for (uint32_t i = 0; i < h->table_size; i++) {
    Entry* e = EntryAt(h, i);
    if (e->owner < 0) continue;
    used++;
    if (e->kind == kPattern) {
      e->pat_pos = pats;
      list[pats++] = i;
    }
  }
  h->used_entries = used;
  h->pattern_entries = pats;
  h->pattern_gen++;
}

class Lock {
 public:
  Lock(BusHeader* h, pthread_mutex_t* m, bool table) : m_(m) {
    const int r = pthread_mutex_lock(m);
    if (r == 0) return;
    if (r == EOWNERDEAD) {
      if (table) Recount(h);
      pthread_mutex_consistent(m);
      return;
    }
    throw std::runtime_error(std::string("bus: pthread_mutex_lock: ") + std::strerror(r));
  }
  ~Lock() { pthread_mutex_unlock(m_); }
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

 private:
  pthread_mutex_t* m_;
};

uint32_t HashName(const BusHeader* h, std::string_view name, uint8_t kind) {
  const uint64_t v = SipHash13(h->seed0, h->seed1 ^ kind, name.data(), name.size());
  return static_cast<uint32_t>(v ^ (v >> 32));
}

uint8_t KindOf(bool pattern) { return pattern ? kPattern : kChannel; }

bool Same(const Entry* e, uint32_t hash, std::string_view name, uint8_t kind) {
  return e->hash == hash && e->kind == kind && e->len == name.size() &&
         std::memcmp(e->name, name.data(), name.size()) == 0;
}

// An address as an entry name: 8 bytes of keyed hash, so any address fits
// however small max_channel_bytes is.
std::string AddressKey(const BusHeader* h, std::string_view address) {
  const uint64_t v = SipHash13(h->seed1, h->seed0, address.data(), address.size());
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}

std::string_view NameOf(const Entry* e) { return std::string_view(e->name, e->len); }

}  // namespace

uint64_t Bus::RegionBytes(const Sizes& c) {
  const uint64_t ring_off = AlignUp(sizeof(BusHeader), 4096);
  const uint64_t table_off = AlignUp(ring_off + uint64_t{c.ring_slots} * SlotBytes(c), 64);
  const uint64_t patlist_off = AlignUp(table_off + uint64_t{c.table_size} * EntryBytes(c), 64);
  return AlignUp(patlist_off + uint64_t{c.table_size} * sizeof(uint32_t), 4096);
}

bool Bus::Format(void* base, uint64_t size, const Sizes& c, std::string* err) {
  if (size < RegionBytes(c)) {
    *err =
        "the bus needs " + std::to_string(RegionBytes(c)) + " bytes, has " + std::to_string(size);
    return false;
  }
  auto* h = new (base) BusHeader();
  h->ring_slots = c.ring_slots;
  h->max_message_bytes = c.max_message_bytes;
  h->max_channel_bytes = c.max_channel_bytes;
  h->table_size = c.table_size;
  h->slot_bytes = SlotBytes(c);
  h->entry_bytes = EntryBytes(c);
  h->ring_off = AlignUp(sizeof(BusHeader), 4096);
  h->table_off = AlignUp(h->ring_off + uint64_t{c.ring_slots} * h->slot_bytes, 64);
  h->patlist_off = AlignUp(h->table_off + uint64_t{c.table_size} * h->entry_bytes, 64);
  h->pattern_gen = 0;
  uint64_t seed[2] = {0x736f6d6570736575ull, 0x646f72616e646f6dull};
  if (getrandom(seed, sizeof seed, 0) != sizeof seed) { /* keep the fixed seed */
  }
  h->seed0 = seed[0];
  h->seed1 = seed[1];
  InitRobust(&h->ring_mu);
  InitRobust(&h->table_mu);
  h->pattern_entries = h->used_entries = 0;
  h->head.store(0, std::memory_order_relaxed);
  for (auto& p : h->pending) p.store(0, std::memory_order_relaxed);
  for (uint32_t i = 0; i < h->ring_slots; i++) {
    SlotHdr* s = SlotAt(h, i);
    new (s) SlotHdr();
    s->seq.store(kNever, std::memory_order_relaxed);
  }
  for (uint32_t i = 0; i < h->table_size; i++) {
    Entry* e = EntryAt(h, i);
    e->owner = kEmpty;
    e->count = 0;
  }
  h->magic = kBusMagic;
  return true;
}

uint32_t Bus::ring_slots() const { return h_->ring_slots; }
uint32_t Bus::max_message_bytes() const { return h_->max_message_bytes; }
uint32_t Bus::max_channel_bytes() const { return h_->max_channel_bytes; }

uint64_t Bus::Head() const { return h_->head.load(std::memory_order_seq_cst); }

bool Bus::Publish(uint32_t kind, uint64_t origin, std::string_view channel, std::string_view data,
                  uint64_t* seq_out) {
  if (channel.size() > h_->max_channel_bytes || data.size() > h_->max_message_bytes) return false;
  Lock l(h_, &h_->ring_mu, false);
  const uint64_t seq = h_->head.load(std::memory_order_relaxed);
  SlotHdr* s = SlotAt(h_, seq);
  // Seqlock write: readers that see kWriting, or a changed stamp after their
  // copy, know the slot was overwritten under them.
  s->seq.store(kWriting, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  s->kind = kind;
  s->origin = origin;
  s->channel_len = static_cast<uint32_t>(channel.size());
  s->data_len = static_cast<uint32_t>(data.size());
  char* p = reinterpret_cast<char*>(s + 1);
  std::memcpy(p, channel.data(), channel.size());
  std::memcpy(p + channel.size(), data.data(), data.size());
  s->seq.store(seq, std::memory_order_release);
  h_->head.store(seq + 1, std::memory_order_seq_cst);
  if (seq_out) *seq_out = seq;
  return true;
}

ReadStatus Bus::Read(uint64_t seq, std::string* buf, Message* out) const {
  const uint64_t head = h_->head.load(std::memory_order_acquire);
  if (seq >= head) return ReadStatus::kEmpty;
  if (head - seq > h_->ring_slots) return ReadStatus::kGap;
  const SlotHdr* s = SlotAt(h_, seq);
  if (s->seq.load(std::memory_order_acquire) != seq) return ReadStatus::kGap;
  const uint32_t kind = s->kind;
  const uint64_t origin = s->origin;
  // Torn lengths (the slot is being overwritten) are clamped here and
  // rejected by the stamp check below.
  const uint32_t cl = std::min(s->channel_len, h_->max_channel_bytes);
  const uint32_t dl = std::min(s->data_len, h_->max_message_bytes);
  buf->resize(size_t{cl} + dl);
  std::memcpy(buf->data(), reinterpret_cast<const char*>(s + 1), buf->size());
  std::atomic_thread_fence(std::memory_order_acquire);
  if (s->seq.load(std::memory_order_relaxed) != seq) return ReadStatus::kGap;
  out->seq = seq;
  out->kind = kind;
  out->origin = origin;
  out->channel = std::string_view(buf->data(), cl);
  out->data = std::string_view(buf->data() + cl, dl);
  return ReadStatus::kOk;
}

bool Bus::MarkPending(uint32_t slot) {
  if (slot >= kMaxWakeSlots) return false;
  return h_->pending[slot].exchange(1, std::memory_order_seq_cst) == 0;
}

void Bus::ClearPending(uint32_t slot) {
  if (slot < kMaxWakeSlots) h_->pending[slot].store(0, std::memory_order_seq_cst);
}

namespace {

// The entry `owner` holds for (name, kind), or a new one (count 0) taken for
// it; nullptr when the table is full. *idx: its index.
Entry* FindOrTake(BusHeader* h, int32_t owner, uint32_t hash, std::string_view name, uint8_t kind,
                  uint32_t* idx) {
  const uint32_t size = h->table_size;
  int64_t free_at = -1;
  for (uint32_t i = 0; i < size; i++) {
    const uint32_t at = (hash + i) % size;
    Entry* e = EntryAt(h, at);
    if (e->owner == kEmpty) {
      if (free_at < 0) free_at = at;
      break;
    }
    if (e->owner == kTomb) {
      if (free_at < 0) free_at = at;
      continue;
    }
    if (e->owner == owner && Same(e, hash, name, kind)) {
      *idx = at;
      return e;
    }
  }
  if (free_at < 0) return nullptr;
  *idx = static_cast<uint32_t>(free_at);
  Entry* e = EntryAt(h, *idx);
  e->count = 0;
  e->hash = hash;
  e->len = static_cast<uint16_t>(name.size());
  e->kind = kind;
  std::memcpy(e->name, name.data(), name.size());
  if (kind == kPattern) {
    e->pat_pos = h->pattern_entries;
    PatList(h)[h->pattern_entries++] = *idx;
  }
  std::atomic_thread_fence(std::memory_order_release);
  e->owner = owner;
  h->used_entries++;
  return e;
}

// The entry `owner` holds for (name, kind), or nullptr.
Entry* FindOwn(BusHeader* h, int32_t owner, uint32_t hash, std::string_view name, uint8_t kind,
               uint32_t* idx) {
  const uint32_t size = h->table_size;
  for (uint32_t i = 0; i < size; i++) {
    const uint32_t at = (hash + i) % size;
    Entry* e = EntryAt(h, at);
    if (e->owner == kEmpty) return nullptr;
    if (e->owner == owner && Same(e, hash, name, kind)) {
      *idx = at;
      return e;
    }
  }
  return nullptr;
}

// Subscriptions to (name, kind) over all owners; the table lock is held.
int64_t SumLocked(BusHeader* h, uint32_t hash, std::string_view name, uint8_t kind) {
  int64_t n = 0;
  const uint32_t size = h->table_size;
  for (uint32_t i = 0; i < size; i++) {
    const Entry* e = EntryAt(h, (hash + i) % size);
    if (e->owner == kEmpty) break;
    if (e->owner >= 0 && Same(e, hash, name, kind)) n += e->count;
  }
  return n;
}

// Frees entry `idx`; when the entry after it ends the chain, the trailing
// tombstones become empty again so chains do not only grow.
void FreeEntry(BusHeader* h, uint32_t idx) {
  Entry* e = EntryAt(h, idx);
  if (e->kind == kPattern) {
    uint32_t* list = PatList(h);
    const uint32_t last = list[--h->pattern_entries];
    list[e->pat_pos] = last;
    EntryAt(h, last)->pat_pos = e->pat_pos;
    h->pattern_gen++;
  }
  e->owner = kTomb;
  h->used_entries--;
  const uint32_t size = h->table_size;
  if (EntryAt(h, (idx + 1) % size)->owner != kEmpty) return;
  for (uint32_t i = 0; i < size; i++) {
    Entry* t = EntryAt(h, (idx + size - i) % size);
    if (t->owner != kTomb) break;
    t->owner = kEmpty;
  }
}

// One subscription less on entry `idx`.
void Decrement(BusHeader* h, uint32_t idx) {
  Entry* e = EntryAt(h, idx);
  if (e->count > 1) {
    e->count--;
    if (e->kind == kPattern) h->pattern_gen++;
  } else {
    FreeEntry(h, idx);
  }
}

}  // namespace

AddStatus Bus::AddSub(int32_t owner, std::string_view name, bool pattern, std::string_view address,
                      uint32_t address_limit) {
  if (owner < 0 || name.size() > h_->max_channel_bytes) return AddStatus::kTableFull;
  const uint8_t kind = KindOf(pattern);
  const uint32_t hash = HashName(h_, name, kind);
  const std::string akey = address.empty() ? std::string() : AddressKey(h_, address);
  const uint32_t ahash = address.empty() ? 0 : HashName(h_, akey, kAddress);
  Lock l(h_, &h_->table_mu, true);
  uint32_t aidx = 0, idx = 0;
  Entry* a = nullptr;
  if (!address.empty()) {
    if (address_limit > 0 && SumLocked(h_, ahash, akey, kAddress) >= address_limit)
      return AddStatus::kAddressFull;
    a = FindOrTake(h_, owner, ahash, akey, kAddress, &aidx);
    if (!a) return AddStatus::kTableFull;
  }
  Entry* e = FindOrTake(h_, owner, hash, name, kind, &idx);
  if (!e) {
    if (a && a->count == 0) FreeEntry(h_, aidx);
    return AddStatus::kTableFull;
  }
  e->count++;
  if (pattern) h_->pattern_gen++;
  if (a) a->count++;
  return AddStatus::kOk;
}

void Bus::RemoveSub(int32_t owner, std::string_view name, bool pattern, std::string_view address) {
  if (name.size() > h_->max_channel_bytes) return;
  const uint8_t kind = KindOf(pattern);
  const uint32_t hash = HashName(h_, name, kind);
  const std::string akey = address.empty() ? std::string() : AddressKey(h_, address);
  const uint32_t ahash = address.empty() ? 0 : HashName(h_, akey, kAddress);
  Lock l(h_, &h_->table_mu, true);
  uint32_t idx = 0;
  if (!FindOwn(h_, owner, hash, name, kind, &idx)) return;
  Decrement(h_, idx);
  if (!address.empty() && FindOwn(h_, owner, ahash, akey, kAddress, &idx)) Decrement(h_, idx);
}

int64_t Bus::AddressSubs(std::string_view address) const {
  const std::string akey = AddressKey(h_, address);
  const uint32_t ahash = HashName(h_, akey, kAddress);
  Lock l(h_, &h_->table_mu, true);
  return SumLocked(h_, ahash, akey, kAddress);
}

void Bus::WithTableLockForTesting(const std::function<void()>& fn) {
  Lock l(h_, &h_->table_mu, true);
  fn();
}

bool Bus::ReleaseOwner(int32_t owner, uint32_t wait_ms) {
  timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += wait_ms / 1000;
  until.tv_nsec += static_cast<long>(wait_ms % 1000) * 1'000'000;
  if (until.tv_nsec >= 1'000'000'000) {
    until.tv_sec++;
    until.tv_nsec -= 1'000'000'000;
  }
  const int r = pthread_mutex_timedlock(&h_->table_mu, &until);
  if (r == ETIMEDOUT) return false;
  if (r == EOWNERDEAD) {
    Recount(h_);
    pthread_mutex_consistent(&h_->table_mu);
  } else if (r != 0) {
    throw std::runtime_error(std::string("bus: pthread_mutex_timedlock: ") + std::strerror(r));
  }
  for (uint32_t i = 0; i < h_->table_size; i++)
    if (EntryAt(h_, i)->owner == owner) FreeEntry(h_, i);
  pthread_mutex_unlock(&h_->table_mu);
  return true;
}

// The lock is held only to count the channel and, when the patterns changed
// since `cache` was filled, to copy them (the pattern list, not the table);
// patterns are matched after it is released, so a publisher facing many
// patterns never stalls other processes' subscribes or NUMSUBs.
int64_t Bus::Receivers(std::string_view channel, PatternCache* cache) const {
  const bool fits = channel.size() <= h_->max_channel_bytes;
  const uint32_t hash = fits ? HashName(h_, channel, kChannel) : 0;
  int64_t n = 0;
  {
    Lock l(h_, &h_->table_mu, true);
    if (fits) n = SumLocked(h_, hash, channel, kChannel);
    if (cache->gen != h_->pattern_gen) {
      cache->gen = h_->pattern_gen;
      cache->patterns.clear();
      std::unordered_map<std::string_view, size_t> at;
      const uint32_t* list = PatList(h_);
      for (uint32_t i = 0; i < h_->pattern_entries; i++) {
        const Entry* e = EntryAt(h_, list[i]);
        auto [it, fresh] = at.emplace(NameOf(e), cache->patterns.size());
        if (fresh) {
          cache->patterns.emplace_back(std::string(NameOf(e)), 0);
          it->second = cache->patterns.size() - 1;
        }
        cache->patterns[it->second].second += e->count;
      }
    }
  }
  for (const auto& [pattern, count] : cache->patterns)
    if (GlobMatch(pattern, channel)) n += count;
  return n;
}

int64_t Bus::Receivers(std::string_view channel) const {
  PatternCache cache;
  return Receivers(channel, &cache);
}

int64_t Bus::NumSub(std::string_view channel) const {
  if (channel.size() > h_->max_channel_bytes) return 0;
  const uint32_t hash = HashName(h_, channel, kChannel);
  Lock l(h_, &h_->table_mu, true);
  return SumLocked(h_, hash, channel, kChannel);
}

int64_t Bus::NumPat() const {
  std::set<std::string_view> seen;
  Lock l(h_, &h_->table_mu, true);
  const uint32_t* list = PatList(h_);
  for (uint32_t i = 0; i < h_->pattern_entries; i++) seen.insert(NameOf(EntryAt(h_, list[i])));
  return static_cast<int64_t>(seen.size());
}

std::vector<std::string> Bus::Channels(std::string_view pattern) const {
  std::set<std::string_view> seen;
  std::vector<std::string> out;
  Lock l(h_, &h_->table_mu, true);
  for (uint32_t i = 0; i < h_->table_size; i++) {
    const Entry* e = EntryAt(h_, i);
    if (e->owner < 0 || e->kind != kChannel) continue;
    const std::string_view name = NameOf(e);
    if (!pattern.empty() && !GlobMatch(pattern, name)) continue;
    if (seen.insert(name).second) out.emplace_back(name);
  }
  return out;
}

uint32_t Bus::UsedEntries() const {
  Lock l(h_, &h_->table_mu, true);
  return h_->used_entries;
}

}  // namespace pf::bus
