// shared/bus.h: the cross-worker pub/sub bus in the shared segment: a ring of
// sequence-numbered messages (publishers serialize on a robust mutex, readers
// never lock) and a table of subscription counts per (name, owner process),
// so PUBLISH and PUBSUB NUMSUB/CHANNELS/NUMPAT see every worker.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pf::bus {

constexpr uint32_t kMaxWakeSlots = 256;  // = the config's maximum of workers

// What a message is for: pub/sub of resp and kv-json, a chat event, or an
// operator broadcast to every connection of a listener (never delivered to
// channel subscribers; worker/pubsub.h has its format).
enum Kind : uint32_t { kPubSub = 0, kChat = 1, kBroadcast = 2 };

struct Message {
  uint64_t seq = 0;
  uint32_t kind = kPubSub;
  uint64_t origin = 0;       // the publishing connection id (0 = none)
  std::string_view channel;  // views into the buffer given to Read()
  std::string_view data;
};

enum class ReadStatus { kOk, kEmpty, kGap };

// The sizes a bus is formatted with (the config's pubsub section gives them:
// bus::SizesFrom in shared/config.h); fixed for the segment's life.
struct Sizes {
  uint32_t ring_slots = 1024;
  uint32_t max_message_bytes = 4096;
  uint32_t max_channel_bytes = 256;
  uint32_t table_size = 4096;
};

enum class AddStatus { kOk, kTableFull, kAddressFull };

// A process' copy of the distinct patterns that have subscribers, with
// their subscription counts (Bus::Receivers fills it).
struct PatternCache {
  uint64_t gen = ~0ull;  // the table's pattern generation it was copied at
  std::vector<std::pair<std::string, int64_t>> patterns;
};

// The shared header; the ring slots, the table entries and the pattern
// list follow it.
struct BusHeader;

// A process-local handle on the bus region of a segment. Cheap to copy.
class Bus {
 public:
  // Bytes a bus with these settings needs in the segment.
  static uint64_t RegionBytes(const Sizes& c);
  // Formats `size` bytes at `base` (master, before the first fork).
  static bool Format(void* base, uint64_t size, const Sizes& c, std::string* err);

  Bus() = default;
  explicit Bus(void* base) : h_(static_cast<BusHeader*>(base)) {}
  bool valid() const { return h_ != nullptr; }

  uint32_t ring_slots() const;
  uint32_t max_message_bytes() const;
  uint32_t max_channel_bytes() const;

  // ---- the ring ----
  // The next sequence number: messages [Head() - ring_slots, Head()) may be read.
  uint64_t Head() const;
  // Appends a message; false when channel or data are over the bus' sizes.
  bool Publish(uint32_t kind, uint64_t origin, std::string_view channel, std::string_view data,
               uint64_t* seq = nullptr);
  // Copies message `seq` into `buf` and points `out` into it. kEmpty: not
  // published yet. kGap: overwritten (the reader fell behind by more than the
  // ring); an overwritten slot is detected, never returned.
  ReadStatus Read(uint64_t seq, std::string* buf, Message* out) const;

  // ---- wake-ups (one eventfd per worker slot, owned by the processes) ----
  // Publisher: true when `slot` was not pending yet, so its eventfd must be written.
  bool MarkPending(uint32_t slot);
  // Reader: before reading the ring after a wake-up.
  void ClearPending(uint32_t slot);

  // ---- subscription counts ----
  // `owner` is the subscribing process' counter entry (Segment::Claim); the
  // master drops every entry of a process it reaps (ReleaseOwner), so a
  // crashed worker never leaks counts. `address` (the client's IP; "" =
  // none) is charged one subscription too, and with `address_limit` > 0 an
  // address that already holds that many over all workers is refused
  // (kAddressFull). RemoveSub must name the same address.
  AddStatus AddSub(int32_t owner, std::string_view name, bool pattern,
                   std::string_view address = {}, uint32_t address_limit = 0);
  void RemoveSub(int32_t owner, std::string_view name, bool pattern, std::string_view address = {});
  // Subscriptions the clients of `address` hold over all workers.
  int64_t AddressSubs(std::string_view address) const;
  // The master after reaping a worker: waits at most `wait_ms` for the table
  // lock (another worker may hold it, even be stopped) and returns false
  // without releasing when it could not take it; the caller retries later.
  bool ReleaseOwner(int32_t owner, uint32_t wait_ms = 1000);
  // Clients that receive a message on `channel`: channel subscribers plus one
  // per matching pattern subscription (as Redis counts PUBLISH receivers).
  // Patterns are matched outside the table lock, against `cache`, which is
  // refreshed only when the patterns changed.
  int64_t Receivers(std::string_view channel, PatternCache* cache) const;
  int64_t Receivers(std::string_view channel) const;  // with a fresh cache
  int64_t NumSub(std::string_view channel) const;     // channel subscribers only
  int64_t NumPat() const;                             // distinct patterns
  // Distinct channels with subscribers, matching `pattern` (empty = all).
  std::vector<std::string> Channels(std::string_view pattern) const;
  // Entries in use (tests: nothing dangles).
  uint32_t UsedEntries() const;
  // Tests: runs `fn` while this process holds the table lock.
  void WithTableLockForTesting(const std::function<void()>& fn);

 private:
  BusHeader* h_ = nullptr;
};

}  // namespace pf::bus
