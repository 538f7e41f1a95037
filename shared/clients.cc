// shared/clients.cc: the client registry's entries (claim, seqlock reads,
// kill requests, reclaim of a dead process' entries) and the pause word.
#include "shared/clients.h"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

#include "shared/util/clock.h"

namespace pf::clients {
namespace {

constexpr uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
constexpr uint64_t kOwnersOff = AlignUp(sizeof(Header), 64);
uint64_t EntriesOff(uint32_t slots) { return AlignUp(kOwnersOff + 4ull * slots, 64); }
uint64_t NamesOff(uint32_t slots) {
  return AlignUp(EntriesOff(slots) + sizeof(Entry) * uint64_t{slots}, 64);
}
constexpr int kReadTries = 64;  // a writer holds an entry for a few hundred ns at most

}  // namespace

uint64_t Table::RegionBytes(uint32_t slots) {
  return AlignUp(NamesOff(slots) + sizeof(Names) * uint64_t{slots}, 4096);
}

void Table::Format(void* base, uint32_t slots) {
  auto* h = new (base) Header();
  h->slots = slots;
  for (auto& k : h->kills) k.store(0, std::memory_order_relaxed);
  // Entries are zero pages (an anonymous mapping): all free, none touched.
}

Entry& Table::entry(int32_t slot) const {
  return reinterpret_cast<Entry*>(reinterpret_cast<char*>(h_) + EntriesOff(h_->slots))[slot];
}

Names& Table::names(int32_t slot) const {
  return reinterpret_cast<Names*>(reinterpret_cast<char*>(h_) + NamesOff(h_->slots))[slot];
}

std::atomic<int32_t>& Table::owner(int32_t slot) const {
  return reinterpret_cast<std::atomic<int32_t>*>(reinterpret_cast<char*>(h_) + kOwnersOff)[slot];
}

int32_t Table::Claim(int32_t owner_index, int32_t pid) {
  const uint32_t n = h_->slots;
  for (uint32_t i = 0; i < n; i++) {
    std::atomic<int32_t>& o = owner(static_cast<int32_t>(i));
    int32_t expect = 0;
    if (o.load(std::memory_order_relaxed) != 0 ||
        !o.compare_exchange_strong(expect, owner_index + 1, std::memory_order_acq_rel))
      continue;
    Entry& e = entry(static_cast<int32_t>(i));
    e.pid.store(pid, std::memory_order_relaxed);
    e.kill_id.store(0, std::memory_order_relaxed);
    Write(static_cast<int32_t>(i), [&](Stored& r) {
      // The names are cleared only if the last connection here set one:
      // untouched, their page stays unallocated.
      if (r.names_set) {
        Names& n = names(static_cast<int32_t>(i));
        n.name[0] = n.lib_name[0] = n.lib_ver[0] = '\0';
      }
      std::memset(&r, 0, sizeof r);
    });
    uint32_t hwm = h_->hwm.load(std::memory_order_relaxed);
    while (hwm < i + 1 && !h_->hwm.compare_exchange_weak(hwm, i + 1, std::memory_order_acq_rel)) {
    }
    return static_cast<int32_t>(i);
  }
  h_->overflow.fetch_add(1, std::memory_order_relaxed);
  return -1;
}

void Table::Release(int32_t slot) {
  if (slot < 0) return;
  Entry& e = entry(slot);
  Write(slot, [](Stored& r) { r.id = 0; });
  e.pid.store(0, std::memory_order_relaxed);
  owner(slot).store(0, std::memory_order_release);
}

uint32_t Table::Kills(int32_t owner_index) const {
  if (owner_index < 0 || owner_index >= static_cast<int32_t>(kMaxProcSlots)) return 0;
  return h_->kills[owner_index].load(std::memory_order_acquire);
}

uint64_t Table::KillId(int32_t slot) const {
  return entry(slot).kill_id.load(std::memory_order_acquire);
}

bool Table::Read(int32_t slot, Record* out, int32_t* owner_index) const {
  const Entry& e = entry(slot);
  const int32_t own = owner(slot).load(std::memory_order_acquire);
  if (own == 0) return false;
  for (int t = 0; t < kReadTries; t++) {
    const uint64_t s1 = e.seq.load(std::memory_order_acquire);
    if (s1 & 1) continue;
    std::memcpy(static_cast<void*>(static_cast<Stored*>(out)), &e.rec, sizeof e.rec);
    Names* n = out;
    if (out->names_set)
      std::memcpy(static_cast<void*>(n), &names(slot), sizeof *n);
    else
      n->name[0] = n->lib_name[0] = n->lib_ver[0] = '\0';
    std::atomic_thread_fence(std::memory_order_acquire);
    if (e.seq.load(std::memory_order_relaxed) != s1) continue;
    if (out->id == 0 || e.kill_id.load(std::memory_order_relaxed) == out->id) return false;
    // A process killed before the master reaped it: its entries are stale.
    if (!Alive(e.pid.load(std::memory_order_relaxed))) return false;
    if (owner_index) *owner_index = own - 1;
    return true;
  }
  return false;
}

bool Table::Alive(int32_t pid) const {
  if (pid <= 0) return true;
  const uint64_t now = MonoMs();
  PidSeen* oldest = &seen_[0];
  for (PidSeen& s : seen_) {
    if (s.pid == pid && now - s.at_ms < 100) return s.alive;
    if (s.at_ms < oldest->at_ms) oldest = &s;
  }
  *oldest = PidSeen{pid, !(kill(pid, 0) != 0 && errno == ESRCH), now};
  return oldest->alive;
}

bool Table::RequestKill(int32_t slot, uint64_t id) {
  Entry& e = entry(slot);
  const int32_t own = owner(slot).load(std::memory_order_acquire);
  if (own == 0 || own > static_cast<int32_t>(kMaxProcSlots)) return false;
  e.kill_id.store(id, std::memory_order_release);
  h_->kills[own - 1].fetch_add(1, std::memory_order_acq_rel);
  return true;
}

uint32_t Table::ReleaseOwner(int32_t owner_index) {
  uint32_t n = 0;
  const uint32_t hwm = this->hwm();
  for (uint32_t i = 0; i < hwm; i++) {
    if (owner(static_cast<int32_t>(i)).load(std::memory_order_acquire) != owner_index + 1) continue;
    Entry& e = entry(static_cast<int32_t>(i));
    // The owner is dead, maybe mid-write: make the seqlock even again.
    uint64_t s = e.seq.load(std::memory_order_relaxed);
    if (s & 1) e.seq.store(s + 1, std::memory_order_relaxed);
    Release(static_cast<int32_t>(i));
    n++;
  }
  return n;
}

uint32_t Table::Used() const {
  uint32_t n = 0;
  const uint32_t hwm = this->hwm();
  for (uint32_t i = 0; i < hwm; i++)
    if (owner(static_cast<int32_t>(i)).load(std::memory_order_acquire) != 0) n++;
  return n;
}

void Table::Pause(uint64_t now_mono_ms, uint64_t end_mono_ms, PauseMode mode) {
  uint64_t w = h_->pause_word.load(std::memory_order_acquire);
  for (;;) {
    uint64_t end = end_mono_ms;
    uint32_t m = mode;
    if (w != 0 && (w >> 2) > now_mono_ms) {  // one in force: merge
      end = std::max(end, w >> 2);
      m = std::max<uint32_t>(m, static_cast<uint32_t>(w & 3));
    }
    if (h_->pause_word.compare_exchange_weak(w, (end << 2) | m, std::memory_order_acq_rel)) return;
  }
}

PauseMode Table::Paused(uint64_t now_mono_ms, uint64_t* end_mono_ms) const {
  const uint64_t w = h_->pause_word.load(std::memory_order_acquire);
  if (w == 0) return kPauseNone;
  const uint64_t end = w >> 2;
  if (now_mono_ms >= end) return kPauseNone;
  if (end_mono_ms) *end_mono_ms = end;
  return static_cast<PauseMode>(w & 3);
}

std::string FlagLetters(uint32_t f) {
  std::string s;
  if (f & kFlagPubSub) s += 'P';
  if (f & kFlagMulti) s += 'x';
  if (f & kFlagCloseAfterReply) s += 'c';
  if (f & kFlagNoEvict) s += 'e';
  return s.empty() ? "N" : s;
}

}  // namespace pf::clients
