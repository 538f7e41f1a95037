// shared/clients.h: the client registry in the shared segment: one entry per
// live data connection (resp, kv-json, chat) of any worker, so CLIENT LIST,
// CLIENT KILL and /_stats?clients=1 see every worker, plus the CLIENT PAUSE
// deadline every worker honours.
//
// Rules. An entry is claimed with a CAS on `owner` and written only by the
// owning worker process, under a seqlock (`seq` odd while it writes), so a
// reader copies a consistent record or retries; it never locks, and a writer
// that dies mid-write leaves an entry readers skip (odd seq) until the
// master, which reaps that process, frees every entry it owned
// (ReleaseOwner). Any process may ask for an entry's connection to be closed
// (RequestKill): it stores the connection id in `kill_id` and bumps the
// owner's kill counter; the owner, woken through its bus eventfd, closes it.
// Past `slots` live connections a connection is still served but not
// listed (counted in `overflow`): the table never blocks an accept.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include "shared/shm.h"

namespace pf::clients {

constexpr uint32_t kMaxSlots = 1u << 16;  // cap on the entries, whatever limits.max_connections
constexpr size_t kAddrBytes = 48;         // "[v6]:port" needs at most 47
constexpr size_t kListenerBytes = 48;
constexpr size_t kCmdBytes = 48;
constexpr size_t kNameBytes = 512;  // = kMaxClientNameBytes (shared/cmd/errors.h)
constexpr size_t kLibBytes = 128;   // lib-name / lib-ver shown (longer ones are cut)
// A CLIENT PAUSE lasts at most this long (an operator's typo must not stop
// the server for days); longer timeouts are cut to it.
constexpr uint64_t kMaxPauseMs = 3600ull * 1000;

enum Flag : uint32_t {
  kFlagPubSub = 1u << 0,   // P: has subscriptions
  kFlagMulti = 1u << 1,    // x: inside MULTI
  kFlagNoEvict = 1u << 2,  // e: CLIENT NO-EVICT on
  kFlagReplyOff = 1u << 3,
  kFlagReplySkip = 1u << 4,
  kFlagCloseAfterReply = 1u << 5,  // c
  kFlagResp3 = 1u << 6,            // resp=3 (HELLO 3)
};

enum PauseMode : uint32_t { kPauseNone = 0, kPauseWrite = 1, kPauseAll = 2 };

// CLIENT LIST's flags= letters of `flags` ("N" for none).
std::string FlagLetters(uint32_t flags);

// What one entry says, without the names: the part every connection
// writes. Its names (set by few clients) live in an array of their own, so
// the pages of a connection that never sets one are never touched: an idle
// connection costs its entry (a few hundred bytes), not a kilobyte.
struct Stored {
  uint64_t id;  // 0: not (yet) a connection
  int32_t worker_slot;
  uint32_t proto;  // ProtoIndex
  int32_t fd;
  uint32_t flags;                // Flag bits
  int32_t db, sub, psub, multi;  // multi: queued commands, -1 outside MULTI
  uint64_t connected_ms;         // wall clock
  uint64_t last_active_ms;       // monotonic (MonoMs; one clock for every process)
  uint64_t bytes_in, bytes_out, commands;
  uint64_t qbuf, obuf;  // input / output bytes buffered, as last published
  uint32_t names_set;   // the Names entry was written since the claim (1)
  char peer[kAddrBytes], local[kAddrBytes], listener[kListenerBytes], cmd[kCmdBytes];
};
struct Names {
  char name[kNameBytes + 1], lib_name[kLibBytes + 1], lib_ver[kLibBytes + 1];
};
// What readers get: a plain copy of both, taken under the entry's seqlock.
struct Record : Stored, Names {};
static_assert(std::is_trivially_copyable_v<Record>);

// An entry's owner (ProcCounters index + 1; 0 = free) lives in a dense
// array after the header, so a claim scans 4 bytes per entry, not a record.
struct alignas(64) Entry {
  std::atomic<int32_t> pid{0};
  std::atomic<uint64_t> seq{0};
  std::atomic<uint64_t> kill_id{0};  // close the connection with this id (any process)
  Stored rec;
};

struct alignas(64) Header {
  uint32_t slots;
  std::atomic<uint32_t> hwm{0};                // entries at and past it were never claimed
  std::atomic<uint64_t> overflow{0};           // connections not listed: the table was full
  std::atomic<uint64_t> pause_word{0};         // (monotonic end ms << 2) | PauseMode; 0 = none
  std::atomic<uint32_t> kills[kMaxProcSlots];  // bumped per kill request, per owner
};

// Copies `s` into a fixed field, NUL-terminated, cut to fit.
template <size_t N>
void CopyField(char (&dst)[N], std::string_view s) {
  const size_t n = s.size() < N - 1 ? s.size() : N - 1;
  for (size_t i = 0; i < n; i++) dst[i] = s[i];
  dst[n] = '\0';
}
// A field written by CopyField, as a view.
template <size_t N>
std::string_view FieldOf(const char (&f)[N]) {
  size_t n = 0;
  while (n < N && f[n]) n++;
  return std::string_view(f, n);
}

class Table {
 public:
  static uint64_t RegionBytes(uint32_t slots);  // a multiple of the page size
  static void Format(void* base, uint32_t slots);

  Table() = default;
  explicit Table(void* base) : h_(static_cast<Header*>(base)) {}
  bool valid() const { return h_ != nullptr; }
  uint32_t slots() const { return h_->slots; }
  Header* header() const { return h_; }

  // ---- the owning worker ----
  // A free entry for a new connection (record zeroed), or -1 when full.
  int32_t Claim(int32_t owner_index, int32_t pid);
  // Runs `fn(Stored&)` under the entry's seqlock. A writer that changes a
  // name does so inside `fn`, through names(slot), and sets names_set.
  template <typename Fn>
  void Write(int32_t slot, Fn&& fn) {
    Entry& e = entry(slot);
    const uint64_t s = e.seq.load(std::memory_order_relaxed);
    e.seq.store(s + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    fn(e.rec);
    e.seq.store(s + 2, std::memory_order_release);
  }
  Names& names(int32_t slot) const;
  void Release(int32_t slot);
  // The owner's view of its own entry (no other process writes it).
  const Stored& OwnRecord(int32_t slot) const { return entry(slot).rec; }
  // Kill requests for `owner_index` so far: the owner scans its entries
  // when this moved.
  uint32_t Kills(int32_t owner_index) const;
  uint64_t KillId(int32_t slot) const;

  // ---- any process ----
  // A consistent copy of entry `slot` (false: free, being written, killed
  // or its process is dead).
  bool Read(int32_t slot, Record* out, int32_t* owner_index = nullptr) const;
  uint32_t hwm() const { return h_->hwm.load(std::memory_order_acquire); }
  // Asks the owner of `slot` to close connection `id`; false when the entry
  // no longer holds it (the caller then wakes the owner's worker slot).
  bool RequestKill(int32_t slot, uint64_t id);
  // The master, after reaping the process of `owner_index`: frees its
  // entries. Lock-free; returns how many.
  uint32_t ReleaseOwner(int32_t owner_index);
  uint32_t Used() const;  // live entries (tests)

  // ---- CLIENT PAUSE ----
  // As Redis: a pause while another is in force keeps the later end and the
  // more restrictive mode of the two (ALL over WRITE).
  void Pause(uint64_t now_mono_ms, uint64_t end_mono_ms, PauseMode mode);
  void Unpause() { h_->pause_word.store(0, std::memory_order_release); }
  // The pause in force at `now_mono_ms` (kPauseNone once its end passed).
  PauseMode Paused(uint64_t now_mono_ms, uint64_t* end_mono_ms = nullptr) const;

 private:
  Entry& entry(int32_t slot) const;
  std::atomic<int32_t>& owner(int32_t slot) const;
  bool Alive(int32_t pid) const;
  Header* h_ = nullptr;
  // Read's liveness checks, remembered for a moment: a CLIENT LIST of many
  // clients costs one kill(pid, 0) per worker, not one per client.
  struct PidSeen {
    int32_t pid = 0;
    bool alive = false;
    uint64_t at_ms = 0;
  };
  mutable PidSeen seen_[8];
};

}  // namespace pf::clients
