// shared/shm.h: the shared segment the master maps before the first fork and
// keeps across reloads: header (magic, layout version, sizes), per-process
// counter slots, the pub/sub bus (shared/bus.h), then the KV store region.
// Offsets only, never pointers.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace pf {

constexpr uint64_t kShmMagic = 0x31444b524f464550ull;  // "PEFORKD1" little-endian
// 4: per-command statistics rows; 5: the limiter table; 6: error statistics,
// the CONFIG RESETSTAT baseline, run id, CPU time per process; 7: the client
// registry (shared/clients.h) after the limiter table; 8: its names in an
// array of their own; 9: TLS counters and the session ticket key ring;
// 10: latency histograms, connections by protocol and by listener,
// subscribers, RSS, the master's reload outcome; 11: the upstream servers'
// shared health and figures (UpstreamShared)
constexpr uint32_t kShmLayoutVersion = 11;
constexpr uint32_t kMaxProcSlots = 1024;  // live + draining worker processes at once

// A counter with one writer (its process) and many readers: increments are a
// relaxed load + store (no lock prefix); readers load relaxed.
struct Counter {
  std::atomic<uint64_t> v{0};
  void Add(uint64_t n) {
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void Sub(uint64_t n) {
    v.store(v.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  uint64_t Get() const { return v.load(std::memory_order_relaxed); }
};

enum ProtoIndex : uint32_t {
  kProtoEcho,
  kProtoResp,
  kProtoKvJson,
  kProtoHttp,
  kProtoChat,
  kProtoCount
};
// "echo", "resp", "kv-json", "http", "chat" (the listener's `protocol:`).
inline const char* ProtoIndexName(uint32_t p) {
  static constexpr const char* kNames[kProtoCount] = {"echo", "resp", "kv-json", "http", "chat"};
  return p < kProtoCount ? kNames[p] : "other";
}

// Clients refused by a security door (worker/security.h), by reason.
enum Refusal : uint32_t {
  kRefusedCrossProtocol,  // an HTTP request on the RESP port, or not JSON first on kv-json
  kRefusedBadLines,       // kv-json: limits.max_bad_lines bad lines
  kRefusedProtectedMode,  // RESP / kv-json from outside local_networks with no kv.password
  kRefusedMisdirected,    // http: a Host that is not one of server_names (421)
  kRefusedAuthFailed,     // a wrong password, token or basic-auth credential
  kRefusedAuthThrottled,  // limits.auth_failures_per_minute reached: not even checked
  kRefusedRateLimited,    // limit_req
  kRefusedConnLimited,    // limit_conn
  kRefusalCount
};

// Request latency: from the start of the input batch that held the request
// to its reply being queued (so a pipelined request includes the ones
// before it), in log-linear buckets (1-2-5 per decade, microseconds); the
// last bucket is everything slower. Lock-free: one writer, its process.
constexpr uint32_t kLatencyBounds = 21;
inline constexpr uint32_t kLatencyBoundsUs[kLatencyBounds] = {
    1,    2,     5,     10,    20,     50,     100,    200,     500,     1000,   2000,
    5000, 10000, 20000, 50000, 100000, 200000, 500000, 1000000, 2000000, 5000000};
constexpr uint32_t kLatencyBuckets = kLatencyBounds + 1;
struct LatencyHist {
  Counter buckets[kLatencyBuckets];  // not cumulative; [kLatencyBounds]: slower than the last bound
  Counter sum_us;
  void Record(uint64_t us) {
    uint32_t i = 0;
    while (i < kLatencyBounds && us > kLatencyBoundsUs[i]) i++;
    buckets[i].Add(1);
    sum_us.Add(us);
  }
};

constexpr uint32_t kListenerCounters = 16;

// TLS handshakes that failed, by reason (shared/tls/context.h names them).
enum TlsFailure : uint32_t {
  kTlsFailPlainHttp,   // a plain HTTP request on a TLS port (answered 400)
  kTlsFailNotTls,      // other bytes that are not a TLS record
  kTlsFailTimeout,     // no finished handshake within tls.handshake_timeout
  kTlsFailEof,         // the client went away during the handshake
  kTlsFailVersion,     // no protocol version in common
  kTlsFailCipher,      // no cipher in common
  kTlsFailAlpn,        // ALPN offered only protocols the listener does not speak (h2)
  kTlsFailClientCert,  // client_auth: no certificate, or one the CA did not sign
  kTlsFailOther,       // any other alert or error (the log line names it)
  kTlsFailureCount
};

// One per worker *process* (not per slot: during a reload the old and the new
// worker of a slot run side by side, each with its own counters). The master
// assigns a free entry at fork and, when it reaps the process, folds the
// counters into `retired` and frees the entry.
struct alignas(64) ProcCounters {
  std::atomic<int32_t> pid{0};  // 0 = free
  std::atomic<int32_t> worker_slot{-1};
  std::atomic<uint32_t> generation{0};
  std::atomic<uint64_t> started_ms{0};  // CLOCK_REALTIME ms
  // CLOCK_MONOTONIC ms the worker's loop last ran its timers (and what
  // blocks it on purpose, SAVE, bumps): the master's watchdog reads it.
  std::atomic<uint64_t> heartbeat_ms{0};
  Counter conns_active;  // gauge
  Counter conns_total;
  Counter conns_rejected;  // closed at accept: over a connection limit
  Counter bytes_in, bytes_out;
  Counter requests[kProtoCount];
  Counter http_status[6];         // [1..5] = 1xx..5xx
  Counter closed_output_limit;    // normal clients past limits.client_output_*
  Counter closed_clients_memory;  // the biggest clients, past limits.clients_memory
  Counter conns_trimmed;          // idle connections whose buffers were freed (Connection::Trim)
  Counter refused[kRefusalCount];
  // CPU time of the process (getrusage), republished by its own timer: INFO
  // cpu sums them, and reaped processes' stay in `retired`.
  Counter cpu_user_us, cpu_sys_us;
  Counter conns_by_proto[kProtoCount];  // gauge: open connections by protocol
  // By listener, keyed by port (stable over reloads; listeners past
  // kListenerCounters are not counted): accepted, and closed at accept
  // (a connection limit, protected mode, limit_conn).
  std::atomic<uint32_t> listener_port[kListenerCounters];
  Counter listener_accepted[kListenerCounters];
  Counter listener_refused[kListenerCounters];
  Counter subscribers;              // gauge: connections with a subscription (chat included)
  Counter slow_subscribers_closed;  // cut at pubsub.output_{hard,soft}_limit
  LatencyHist latency[kProtoCount];
  std::atomic<uint64_t> rss_bytes{0};  // the process' resident memory, from its sweep
  std::atomic<uint32_t> draining{0};   // 1 once it retires (reload or stop)
  // TLS listeners: finished handshakes (of them resumed, by version) and failures.
  Counter tls_handshakes, tls_resumed, tls_v12, tls_v13;
  Counter tls_failed[kTlsFailureCount];
};
static_assert(std::is_standard_layout_v<ProcCounters>);

// Session ticket keys every worker uses, so a client resumes on whichever
// worker its next connection reaches (shared/tls/tickets.cc). The master
// writes a new key into the slot after the current one and then moves
// `current` to it; workers encrypt with the current key and still accept
// the one before. Each key has a sequence number (odd while it is being
// written) that readers check around their copy.
struct TlsTicketKey {
  std::atomic<uint64_t> seq{0};
  uint8_t name[16];
  uint8_t aes[32];
  uint8_t hmac[32];
};
struct alignas(64) TlsTicketRing {
  std::atomic<uint32_t> current{0};
  std::atomic<uint32_t> ready{0};       // 1 once the master wrote the first key
  std::atomic<uint64_t> rotated_ms{0};  // CLOCK_MONOTONIC ms of the last new key
  std::atomic<uint64_t> rotations{0};
  TlsTicketKey keys[3];
};

// Per-command statistics (INFO commandstats): one row per process, indexed
// by the command table's CommandIndex (shared/cmd/commands.h), one writer per
// row. They live after the segment's configured size, in pages only touched
// for processes that run commands, so they take nothing from the store.
constexpr uint32_t kMaxCommandStats = 512;
// Error replies by prefix (INFO errorstats): the first word of the error,
// as Redis' afterErrorReply takes it ("ERR", "WRONGTYPE", "NOAUTH"). Names
// live in one table (ErrorNames) every process shares; each process counts
// into its own row. Prefixes past kMaxErrorStats are counted in the last
// bucket, kErrorStatOther.
constexpr uint32_t kMaxErrorStats = 64;
constexpr uint32_t kErrorStatOther = kMaxErrorStats;
constexpr size_t kMaxErrorNameBytes = 31;  // Redis looks for the space in the first 32 bytes
struct CmdStat {
  Counter calls;     // the handler ran
  Counter ticks;     // time in the handler, in Ticks() (shared/util/clock.h)
  Counter rejected;  // refused before the handler (arity, NOAUTH, MISCONF, pub/sub context)
  Counter failed;    // the handler answered an error
};
struct alignas(64) CmdStatsRow {
  CmdStat cmd[kMaxCommandStats];
  Counter errors[kMaxErrorStats + 1];  // by ErrorNames index; [kErrorStatOther]: the rest
};
static_assert(std::is_standard_layout_v<CmdStatsRow>);
void AddInto(CmdStatsRow* to, const CmdStatsRow& from);

// The error prefixes seen so far. An entry is claimed with a CAS (0 -> 1),
// named, then published (2); it is never freed. Lock-free, so a process that
// dies while naming leaves one entry unused and nothing stuck. Two processes
// naming one new prefix at once may get two entries: readers add entries of
// one name together.
struct ErrorName {
  std::atomic<uint32_t> state{0};  // 0 free, 1 being named, 2 named
  char name[kMaxErrorNameBytes + 1];
};
struct ErrorNames {
  ErrorName e[kMaxErrorStats];
};
// The index `prefix` counts under: its entry, a new one, or kErrorStatOther
// when the table is full (or the prefix empty).
uint32_t ErrorStatIndex(ErrorNames* t, std::string_view prefix);

// What CONFIG RESETSTAT leaves behind. Counters have one writer each (their
// process), so no other process may zero them; RESETSTAT records the sums
// as they were instead, and INFO shows the sums minus this baseline (never
// below 0). Each figure is one atomic: a concurrent INFO or RESETSTAT can
// only see some figures old and some new, never a torn one; no lock, so a
// process dying here blocks nobody.
struct StatsBaseline {
  std::atomic<uint64_t> conns_total{0}, conns_rejected{0}, bytes_in{0}, bytes_out{0};
  std::atomic<uint64_t> expired{0}, evicted{0}, hits{0}, misses{0};
  std::atomic<uint64_t> evicted_clients{0}, forks{0};
};
struct alignas(64) StatsShared {
  ErrorNames error_names;
  StatsBaseline base;
  CmdStatsRow base_cmds;  // calls, ticks, rejected, failed and errors at the last RESETSTAT
};
static_assert(std::is_standard_layout_v<StatsShared>);

// Persistence state every process sees (shared/persist/persist.h). The master and
// its snapshot child write the snapshot fields; workers the log fields.
struct alignas(64) PersistShared {
  std::atomic<uint32_t> enabled{0};
  std::atomic<uint32_t> fsync{0};  // FsyncPolicy
  std::atomic<uint64_t> epoch{0};  // this run (log file headers)
  std::atomic<uint64_t> gen{1};    // log generation; a snapshot moves it on first
  std::atomic<uint64_t> next_file_id{1};
  std::atomic<uint64_t> log_bytes{0};  // appended by all workers since start
  std::atomic<uint64_t> log_bytes_at_snapshot{0};
  std::atomic<uint64_t> snapshot_requests{0};  // SAVE / BGSAVE / preforkctl snapshot
  std::atomic<uint64_t> snapshots_started{0};
  std::atomic<uint64_t> served_requests{0};  // snapshot_requests when the last finished one started
  std::atomic<uint64_t> snapshots_done{0};   // finished, ok or not
  std::atomic<uint32_t> snapshot_in_progress{0};
  std::atomic<uint32_t> last_snapshot_ok{1};
  std::atomic<uint64_t> last_snapshot_ms{0};  // unix ms of the last good one (LASTSAVE)
  std::atomic<uint64_t> last_snapshot_duration_ms{0};
  std::atomic<uint64_t> last_snapshot_bytes{0};
  std::atomic<uint64_t> last_snapshot_keys{0};
  std::atomic<uint64_t> last_snapshot_gen{0};  // the gen the last good snapshot covers
  std::atomic<uint64_t> loaded_keys{0};        // at start
  std::atomic<uint64_t> loaded_records{0};
  std::atomic<uint64_t> load_ms{0};
  std::atomic<uint64_t> dropped_tail_bytes{0};
  std::atomic<uint64_t> write_errors{0};  // failed log writes/fsyncs, all workers
  std::atomic<uint64_t> error_seq{0};     // seqlock over last_error (odd: being written)
  std::atomic<uint64_t> last_error_ms{0};
  char last_error[240];
};

// The reverse proxy's upstream servers (worker/http/proxy.h), one slot per
// server of the config in order (upstream by upstream): passive health that
// every worker agrees on, and the figures /_stats and /_metrics show. The
// master names the slots for each config generation (AssignUpstreamSlots),
// keeping the figures of a server a reload keeps; a worker of an older
// generation (draining) leaves the slots alone. Many writers: every update
// is one atomic operation, and a race only blurs a figure.
constexpr uint32_t kMaxUpstreamServers = 256;
constexpr uint32_t kUpstreamKeyBytes = 112;  // "upstream|address", NUL-terminated
struct alignas(64) UpstreamSlot {
  char key[kUpstreamKeyBytes];
  std::atomic<uint32_t> fails{0};           // failures in the window that started at first_fail_ms
  std::atomic<uint64_t> first_fail_ms{0};   // monotonic
  std::atomic<uint64_t> down_until_ms{0};   // monotonic; down while it is in the future
  std::atomic<uint64_t> requests{0};        // attempts sent to it
  std::atomic<uint64_t> failures{0};        // attempts that failed (connect, timeout, bad response)
  std::atomic<uint64_t> marked_down{0};     // times max_fails took it out
  std::atomic<uint64_t> responses[6] = {};  // by status class (1..5)
  std::atomic<uint64_t> latency[kLatencyBuckets] = {};  // first response byte, kLatencyBoundsUs
  std::atomic<uint64_t> latency_sum_us{0};
};
struct alignas(64) UpstreamShared {
  std::atomic<uint32_t> generation{0};  // the config generation the slots are named for
  std::atomic<uint32_t> count{0};
  UpstreamSlot slots[kMaxUpstreamServers];
};

// Copies one slot's key, health and figures (the master, naming the slots
// for a new config).
void CopyUpstreamSlot(const UpstreamSlot& from, UpstreamSlot* to);
// Clears a slot and names it `key` (truncated to fit).
void ResetUpstreamSlot(UpstreamSlot* slot, std::string_view key);

struct alignas(64) ShmHeader {
  uint64_t magic;
  uint32_t layout_version;
  uint32_t proc_slots;
  uint64_t total_size;
  uint64_t bus_offset, bus_size;
  uint64_t kv_offset, kv_size;
  uint64_t stats_offset;    // kMaxProcSlots + 1 CmdStatsRow (the last: reaped processes),
                            // then StatsShared
  uint64_t limiter_offset;  // limit::TableBytes() after the statistics rows (shared/limiter.h)
  uint64_t clients_offset;  // the client registry after the limiter table (shared/clients.h)
  uint32_t client_slots;
  uint64_t master_started_ms;
  // Random per master run, kept across reloads (INFO run_id, master_replid):
  // 40 hex digits and a NUL.
  char run_id[41];
  char replid[41];
  std::atomic<uint64_t> reloads{0};
  std::atomic<int64_t> conns_active_total{
      0};                                    // all workers; the master corrects it for dead workers
  std::atomic<uint64_t> next_conn_id{1};     // connection ids, unique over all workers
  std::atomic<uint32_t> stopping{0};         // set before SIGQUIT on a stop (not a reload)
  std::atomic<uint64_t> workers_stalled{0};  // killed by the watchdog (timeouts.worker_stall)
  // The master, for the status views: its pid, its worker generation, and
  // how the last reload went (last_config_error: why it was refused; a
  // seqlock, odd while written).
  std::atomic<int32_t> master_pid{0};
  std::atomic<uint32_t> generation{0};
  std::atomic<uint64_t> last_reload_ms{0};  // unix ms; 0 = none yet
  std::atomic<uint32_t> last_reload_ok{1};
  std::atomic<uint64_t> config_error_seq{0};
  char last_config_error[240] = {};
  ProcCounters retired;  // counters of reaped processes, summed by the master
  PersistShared persist;
  TlsTicketRing tls_tickets;
  UpstreamShared upstreams;
};

class Segment {
 public:
  // Maps an anonymous shared region of `size` bytes (plus the command
  // statistics rows and the limiter table after it) and formats the header
  // and the limiter table; the bus gets `bus_bytes` after the counter slots,
  // the KV store everything after the bus; the client registry of
  // `client_slots` entries comes last. Aborts on failure.
  static Segment Create(uint64_t size, uint64_t bus_bytes, uint32_t client_slots = 1024);
  // Where the KV store region starts for a bus of `bus_bytes`: a segment of
  // `size` bytes gives the store size - KvOffset(bus_bytes) bytes.
  static uint64_t KvOffset(uint64_t bus_bytes);
  Segment() = default;
  Segment(Segment&& o) noexcept;
  Segment& operator=(Segment&& o) noexcept;
  ~Segment();

  // Checks magic, version and sizes; false (with a reason) on mismatch.
  bool Verify(const char** why) const;

  ShmHeader* header() const { return reinterpret_cast<ShmHeader*>(base_); }
  ProcCounters* proc(uint32_t i) const { return procs_ + i; }
  // Process i's command statistics row; kMaxProcSlots: the reaped ones'.
  CmdStatsRow* cmd_stats(uint32_t i) const;
  // Every live process' row plus the reaped ones', added into *out.
  void SumCommandStats(CmdStatsRow* out) const;
  // Error prefixes and the CONFIG RESETSTAT baseline (after the rows).
  StatsShared* stats_shared() const;
  void* kv_base() const { return static_cast<char*>(base_) + header()->kv_offset; }
  void* bus_base() const { return static_cast<char*>(base_) + header()->bus_offset; }
  void* limiter_base() const { return static_cast<char*>(base_) + header()->limiter_offset; }
  void* clients_base() const { return static_cast<char*>(base_) + header()->clients_offset; }
  uint64_t bus_size() const { return header()->bus_size; }
  uint64_t kv_size() const { return header()->kv_size; }
  void* base() const { return base_; }
  bool valid() const { return base_ != nullptr; }

  // Master: claim a free ProcCounters entry for a new worker (-1 if none).
  int Claim(int worker_slot, uint32_t generation);
  // Master, after reaping `pid`: fold its counters into retired, fix the
  // global active-connection gauge and free the entry.
  void Release(int index);

  // Sum of every live process' counters plus retired ones.
  void Totals(ProcCounters* out) const;

 private:
  void* base_ = nullptr;
  uint64_t size_ = 0;
  ProcCounters* procs_ = nullptr;
};

}  // namespace pf
