// shared/shm.cc: maps and formats the shared segment, hands out per-process
// counter slots and sums them.
#include "shared/shm.h"

#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <new>

#include "shared/clients.h"
#include "shared/limiter.h"
#include "shared/util/clock.h"

namespace pf {
namespace {

constexpr uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

void AddInto(ProcCounters* to, const ProcCounters& from) {
  to->conns_active.Add(from.conns_active.Get());
  to->conns_total.Add(from.conns_total.Get());
  to->conns_rejected.Add(from.conns_rejected.Get());
  to->bytes_in.Add(from.bytes_in.Get());
  to->bytes_out.Add(from.bytes_out.Get());
  for (uint32_t i = 0; i < kProtoCount; i++) to->requests[i].Add(from.requests[i].Get());
  for (uint32_t i = 0; i < 6; i++) to->http_status[i].Add(from.http_status[i].Get());
  to->closed_output_limit.Add(from.closed_output_limit.Get());
  to->closed_clients_memory.Add(from.closed_clients_memory.Get());
  to->conns_trimmed.Add(from.conns_trimmed.Get());
  for (uint32_t i = 0; i < kRefusalCount; i++) to->refused[i].Add(from.refused[i].Get());
  to->cpu_user_us.Add(from.cpu_user_us.Get());
  to->cpu_sys_us.Add(from.cpu_sys_us.Get());
  for (uint32_t p = 0; p < kProtoCount; p++) {
    to->conns_by_proto[p].Add(from.conns_by_proto[p].Get());
    for (uint32_t i = 0; i < kLatencyBuckets; i++)
      to->latency[p].buckets[i].Add(from.latency[p].buckets[i].Get());
    to->latency[p].sum_us.Add(from.latency[p].sum_us.Get());
  }
  to->subscribers.Add(from.subscribers.Get());
  to->slow_subscribers_closed.Add(from.slow_subscribers_closed.Get());
  // Listener counters add up by port: another generation may list them in
  // another order.
  for (uint32_t i = 0; i < kListenerCounters; i++) {
    const uint32_t port = from.listener_port[i].load(std::memory_order_relaxed);
    if (!port) continue;
    for (uint32_t j = 0; j < kListenerCounters; j++) {
      const uint32_t have = to->listener_port[j].load(std::memory_order_relaxed);
      if (have && have != port) continue;
      to->listener_port[j].store(port, std::memory_order_relaxed);
      to->listener_accepted[j].Add(from.listener_accepted[i].Get());
      to->listener_refused[j].Add(from.listener_refused[i].Get());
      break;
    }
  }
  to->tls_handshakes.Add(from.tls_handshakes.Get());
  to->tls_resumed.Add(from.tls_resumed.Get());
  to->tls_v12.Add(from.tls_v12.Get());
  to->tls_v13.Add(from.tls_v13.Get());
  for (uint32_t i = 0; i < kTlsFailureCount; i++) to->tls_failed[i].Add(from.tls_failed[i].Get());
}

// 20 random bytes as 40 hex digits (Redis' getRandomHexChars).
void RandomHex40(char* out) {
  unsigned char raw[20] = {};
  size_t got = 0;
  while (got < sizeof raw) {
    const ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
    if (n <= 0) {
      // No entropy source (a very old kernel): time and address bits still
      // make two runs differ, which is all a run id promises.
      uint64_t x = WallMs() ^ reinterpret_cast<uintptr_t>(out) ^ (MonoMs() << 20);
      for (size_t i = got; i < sizeof raw;
           i++, x = x * 6364136223846793005ull + 1442695040888963407ull)
        raw[i] = static_cast<unsigned char>(x >> 56);
      break;
    }
    got += static_cast<size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < sizeof raw; i++) {
    out[2 * i] = kHex[raw[i] >> 4];
    out[2 * i + 1] = kHex[raw[i] & 15];
  }
  out[40] = '\0';
}

constexpr uint64_t kProcsOff = AlignUp(sizeof(ShmHeader), 4096);
constexpr uint64_t kBusOff = AlignUp(kProcsOff + sizeof(ProcCounters) * kMaxProcSlots, 4096);
constexpr uint64_t kStatsRowsBytes = sizeof(CmdStatsRow) * (kMaxProcSlots + 1);
constexpr uint64_t kStatsBytes = AlignUp(kStatsRowsBytes + sizeof(StatsShared), 4096);

}  // namespace

void AddInto(CmdStatsRow* to, const CmdStatsRow& from) {
  for (uint32_t i = 0; i < kMaxCommandStats; i++) {
    const CmdStat& f = from.cmd[i];
    if (!f.calls.Get() && !f.rejected.Get() && !f.failed.Get()) continue;
    CmdStat& t = to->cmd[i];
    t.calls.Add(f.calls.Get());
    t.ticks.Add(f.ticks.Get());
    t.rejected.Add(f.rejected.Get());
    t.failed.Add(f.failed.Get());
  }
  for (uint32_t i = 0; i <= kMaxErrorStats; i++) to->errors[i].Add(from.errors[i].Get());
}

uint32_t ErrorStatIndex(ErrorNames* t, std::string_view prefix) {
  if (prefix.empty() || prefix.size() > kMaxErrorNameBytes) return kErrorStatOther;
  for (uint32_t i = 0; i < kMaxErrorStats; i++) {
    ErrorName& e = t->e[i];
    uint32_t st = e.state.load(std::memory_order_acquire);
    if (st == 0) {
      if (!e.state.compare_exchange_strong(st, 1, std::memory_order_acq_rel)) {
        if (st != 2) continue;  // another process is naming it
      } else {
        std::memset(e.name, 0, sizeof e.name);
        std::memcpy(e.name, prefix.data(), prefix.size());
        e.state.store(2, std::memory_order_release);
        return i;
      }
    }
    if (st == 2 && std::string_view(e.name, strnlen(e.name, sizeof e.name)) == prefix) return i;
  }
  return kErrorStatOther;
}

StatsShared* Segment::stats_shared() const {
  return reinterpret_cast<StatsShared*>(static_cast<char*>(base_) + header()->stats_offset +
                                        kStatsRowsBytes);
}

CmdStatsRow* Segment::cmd_stats(uint32_t i) const {
  return reinterpret_cast<CmdStatsRow*>(static_cast<char*>(base_) + header()->stats_offset) + i;
}

void Segment::SumCommandStats(CmdStatsRow* out) const {
  AddInto(out, *cmd_stats(kMaxProcSlots));
  for (uint32_t i = 0; i < kMaxProcSlots; i++)
    if (procs_[i].pid.load(std::memory_order_acquire) != 0) AddInto(out, *cmd_stats(i));
}

uint64_t Segment::KvOffset(uint64_t bus_bytes) { return AlignUp(kBusOff + bus_bytes, 4096); }

Segment Segment::Create(uint64_t size, uint64_t bus_bytes, uint32_t client_slots) {
  const uint64_t procs_off = kProcsOff;
  const uint64_t kv_off = KvOffset(bus_bytes);
  if (size <= kv_off + 4096) {
    std::fprintf(stderr, "shared segment of %llu bytes is too small\n",
                 static_cast<unsigned long long>(size));
    std::abort();
  }
  // The statistics rows follow `size` (page-aligned: the rows hold atomics);
  // untouched pages cost nothing. The limiter table follows them.
  const uint64_t stats_off = AlignUp(size, 4096);
  const uint64_t limiter_off = stats_off + kStatsBytes;
  const uint64_t clients_off = limiter_off + limit::TableBytes();
  const uint64_t mapped = clients_off + clients::Table::RegionBytes(client_slots);
  void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap shared segment");
    std::abort();
  }
  Segment s;
  s.base_ = p;
  s.size_ = mapped;
  auto* h = new (p) ShmHeader();
  h->magic = kShmMagic;
  h->layout_version = kShmLayoutVersion;
  h->proc_slots = kMaxProcSlots;
  h->total_size = size;
  h->bus_offset = kBusOff;
  h->bus_size = kv_off - kBusOff;
  h->kv_offset = kv_off;
  h->kv_size = size - kv_off;
  h->stats_offset = stats_off;
  h->limiter_offset = limiter_off;
  h->clients_offset = clients_off;
  h->client_slots = client_slots;
  h->master_started_ms = WallMs();
  RandomHex40(h->run_id);
  RandomHex40(h->replid);
  s.procs_ = reinterpret_cast<ProcCounters*>(static_cast<char*>(p) + procs_off);
  for (uint32_t i = 0; i < kMaxProcSlots; i++) new (s.procs_ + i) ProcCounters();
  new (s.stats_shared()) StatsShared();
  limit::Format(static_cast<char*>(p) + limiter_off);
  clients::Table::Format(static_cast<char*>(p) + clients_off, client_slots);
  return s;
}

Segment::Segment(Segment&& o) noexcept { *this = std::move(o); }

Segment& Segment::operator=(Segment&& o) noexcept {
  if (this != &o) {
    if (base_) munmap(base_, size_);
    base_ = o.base_;
    size_ = o.size_;
    procs_ = o.procs_;
    o.base_ = nullptr;
    o.procs_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

Segment::~Segment() {
  if (base_) munmap(base_, size_);
}

bool Segment::Verify(const char** why) const {
  const ShmHeader* h = header();
  if (h->magic != kShmMagic)
    *why = "bad magic";
  else if (h->layout_version != kShmLayoutVersion)
    *why = "layout version mismatch";
  else if (h->stats_offset != AlignUp(h->total_size, 4096) ||
           h->limiter_offset != h->stats_offset + kStatsBytes ||
           h->clients_offset != h->limiter_offset + limit::TableBytes() ||
           h->clients_offset + clients::Table::RegionBytes(h->client_slots) != size_ ||
           h->proc_slots != kMaxProcSlots)
    *why = "size mismatch";
  else
    return true;
  return false;
}

void CopyUpstreamSlot(const UpstreamSlot& from, UpstreamSlot* to) {
  std::memcpy(to->key, from.key, sizeof to->key);
  auto copy = [](const auto& a, auto& b) { b.store(a.load(std::memory_order_relaxed)); };
  copy(from.fails, to->fails);
  copy(from.first_fail_ms, to->first_fail_ms);
  copy(from.down_until_ms, to->down_until_ms);
  copy(from.requests, to->requests);
  copy(from.failures, to->failures);
  copy(from.marked_down, to->marked_down);
  for (size_t i = 0; i < std::size(from.responses); i++) copy(from.responses[i], to->responses[i]);
  for (size_t i = 0; i < std::size(from.latency); i++) copy(from.latency[i], to->latency[i]);
  copy(from.latency_sum_us, to->latency_sum_us);
}

void ResetUpstreamSlot(UpstreamSlot* slot, std::string_view key) {
  std::memset(slot->key, 0, sizeof slot->key);
  std::memcpy(slot->key, key.data(), std::min(key.size(), sizeof slot->key - 1));
  slot->fails.store(0);
  slot->first_fail_ms.store(0);
  slot->down_until_ms.store(0);
  slot->requests.store(0);
  slot->failures.store(0);
  slot->marked_down.store(0);
  for (auto& r : slot->responses) r.store(0);
  for (auto& b : slot->latency) b.store(0);
  slot->latency_sum_us.store(0);
}

int Segment::Claim(int worker_slot, uint32_t generation) {
  for (uint32_t i = 0; i < kMaxProcSlots; i++) {
    ProcCounters* p = procs_ + i;
    if (p->pid.load(std::memory_order_relaxed) != 0) continue;
    p->~ProcCounters();
    new (p) ProcCounters();
    p->pid.store(-1, std::memory_order_relaxed);  // reserved until the child sets its pid
    p->worker_slot.store(worker_slot, std::memory_order_relaxed);
    p->generation.store(generation, std::memory_order_relaxed);
    p->started_ms.store(WallMs(), std::memory_order_relaxed);
    p->heartbeat_ms.store(MonoMs(), std::memory_order_relaxed);
    std::memset(static_cast<void*>(cmd_stats(i)), 0, sizeof(CmdStatsRow));
    return static_cast<int>(i);
  }
  return -1;
}

void Segment::Release(int index) {
  if (index < 0 || index >= static_cast<int>(kMaxProcSlots)) return;
  ProcCounters* p = procs_ + index;
  ShmHeader* h = header();
  // The process is dead: the connections its gauge counted are gone.
  h->conns_active_total.fetch_sub(static_cast<int64_t>(p->conns_active.Get()),
                                  std::memory_order_relaxed);
  p->conns_active.Sub(p->conns_active.Get());
  for (Counter& c : p->conns_by_proto) c.Sub(c.Get());
  p->subscribers.Sub(p->subscribers.Get());
  AddInto(&h->retired, *p);
  AddInto(cmd_stats(kMaxProcSlots), *cmd_stats(static_cast<uint32_t>(index)));
  p->pid.store(0, std::memory_order_release);
}

void Segment::Totals(ProcCounters* out) const {
  AddInto(out, header()->retired);
  for (uint32_t i = 0; i < kMaxProcSlots; i++) {
    const ProcCounters& p = procs_[i];
    if (p.pid.load(std::memory_order_acquire) != 0) AddInto(out, p);
  }
}

}  // namespace pf
