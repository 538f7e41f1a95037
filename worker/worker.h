// worker/worker.h: the worker process: one libevent event_base accepting on
// its slot's sockets, a connection registry, timers (idle sweep, drain) and
// signal handling (SIGQUIT graceful, SIGTERM fast, SIGUSR1 reopen logs).
#pragma once

#include <spdlog/spdlog.h>
#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "shared/bus.h"
#include "shared/config.h"
#include "shared/kv/kv.h"
#include "shared/limiter.h"
#include "shared/shm.h"
#include "shared/util/clock.h"

struct event_base;
struct event;

namespace pf {

class ClientRegistry;
class Connection;
class DurableReplies;
class PubSubHub;
namespace persist {
class LogWriter;
}

// What the master hands a new worker.
struct WorkerStart {
  const Config* config = nullptr;
  Segment* segment = nullptr;
  int slot = 0;
  uint32_t generation = 0;
  int counter_index = -1;  // this process' ProcCounters entry, -1 = none
  pid_t master_pid = 0;
  int snapshot_fd = -1;        // SAVE / BGSAVE: a byte here wakes the master (-1: persistence off)
  kv::Store* store = nullptr;  // formatted by the master in the segment
  bus::Bus bus;                // the pub/sub bus in the segment
  std::vector<int> wake_fds;   // eventfd per worker slot: ours is wake_fds[slot]
  struct Socket {
    const ListenerConf* listener;
    int fd;
  };
  std::vector<Socket> sockets;
};

// Resources every connection and protocol of this worker shares.
struct WorkerContext {
  const Config* config = nullptr;
  Segment* segment = nullptr;
  ProcCounters* counters = nullptr;
  CmdStatsRow* cmd_stats = nullptr;  // this process' command statistics (INFO commandstats)
  int slot = 0;
  uint32_t generation = 0;
  event_base* base = nullptr;
  kv::Store* store = nullptr;
  PubSubHub* pubsub = nullptr;        // this worker's end of the bus (worker/pubsub.h)
  ClientRegistry* clients = nullptr;  // the client registry (worker/clients.h); null: none
  int owner = -1;                     // this process' counter entry: owner of its bus subscriptions
  // The shared limiter table (limit_req, limit_conn, failed AUTH per address).
  limit::Table* limiter = nullptr;
  bool draining = false;
  // Persistence (null when off): this worker's log, and the replies that
  // wait for it (worker/durable.h).
  persist::LogWriter* log = nullptr;
  DurableReplies* durable = nullptr;
  int snapshot_fd = -1;  // WorkerStart::snapshot_fd

  // Connections with output queued outside their own callbacks (pub/sub
  // deliveries, timers): written once at the end of this loop turn
  // (Connection::OnQueuedWrite). A connection freed before that nulls its
  // entry (~Connection). QueueWrite returns the entry's index, or -1: no
  // loop to do it (the caller arms the connection's write event instead).
  std::vector<Connection*> pending_writes;
  event* write_flush = nullptr;  // active: write them after the other callbacks of this turn
  bool write_flush_armed = false;
  ptrdiff_t QueueWrite(Connection* c);
  void WritePending();

  std::unordered_map<uint64_t, std::unique_ptr<Connection>> conns;
  // Request counts and latency (ProcCounters::latency): the batch a
  // request came in started at batch_start_ns (Connection::Process).
  uint64_t batch_start_ns = 0;
  void NoteLatency(uint32_t proto) {
    const uint64_t now = MonoNs();
    counters->latency[proto].Record(now > batch_start_ns ? (now - batch_start_ns) / 1000 : 0);
  }
  void NoteRequest(uint32_t proto) {
    counters->requests[proto].Add(1);
    NoteLatency(proto);
  }
  // The client buffers of this worker's connections (Connection::Account),
  // and the end-of-turn pass that disconnects the biggest ones once the sum
  // is over limits.clients_memory.
  uint64_t client_bytes = 0;
  event* clients_memory_ev = nullptr;
  bool clients_memory_armed = false;
  void OverClientsMemory();
  void EnforceClientsMemory();
  // A warning line at most once a second (an attack must not flood the log);
  // the rest are only counted.
  template <typename... Args>
  void LogLimited(fmt::format_string<Args...> f, Args&&... args) {
    const uint64_t now = MonoMs();
    if (now - last_limit_log_ms < 1000) return;
    last_limit_log_ms = now;
    spdlog::warn(f, std::forward<Args>(args)...);
  }
  uint64_t last_limit_log_ms = 0;
  std::vector<uint64_t> dead;  // closed, freed from the loop (not inside their callbacks)
  event* reaper = nullptr;

  void Retire(Connection* c);  // called by Connection::Close

  // The command table's environment of each listener and protocol
  // (worker/cmd_env.h ListenerCommandEnv); `env` is a CommandEnv.
  struct ListenerEnv {
    const ListenerConf* listener;
    uint32_t proto;  // a ProtoIndex
    std::shared_ptr<const void> env;
  };
  std::vector<ListenerEnv> command_envs;

  // INFO's instantaneous_* figures, as Redis' serverCron keeps them: the
  // totals over every worker (requests of all protocols, bytes in and out)
  // sampled each expiry tick, the rate taken over the last 16 samples.
  struct RateSample {
    uint64_t ms = 0, ops = 0, in = 0, out = 0;
  };
  std::array<RateSample, 16> rate_samples{};
  uint32_t rate_next = 0, rate_count = 0;
  void SampleRates();
  // Per second: requests, bytes in, bytes out (0 until two samples exist).
  void Rates(double* ops, double* in, double* out) const;
};

// Runs the worker until it stops; returns the process exit code.
int RunWorker(const WorkerStart& start);

}  // namespace pf
