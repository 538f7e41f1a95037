// worker/cmd_env.cc: the command table's environment in a worker (cmd_env.h).
#include "worker/cmd_env.h"

#include <unistd.h>

#include "shared/util/clock.h"
#include "shared/util/net.h"
#include "worker/connection.h"
#include "worker/security.h"
#include "worker/worker.h"

namespace pf {
namespace {

// INFO / HELLO numbers: this worker's identity plus the sums over every
// worker's counter slot in the shared segment (computed only when asked).
// total_commands_processed is INFO's own sum of the command statistics.
void FillServerInfo(const WorkerContext& w, uint16_t port, ServerInfo* si) {
#ifdef PREFORKD_VERSION
  si->version = PREFORKD_VERSION;
#endif
  si->pid = getpid();
  si->tcp_port = port;
  si->workers = w.config ? w.config->workers : 0;
  si->worker_slot = w.slot;
  if (!w.segment || !w.segment->valid()) return;
  ProcCounters t;
  w.segment->Totals(&t);
  si->connected_clients = t.conns_active.Get();
  si->total_connections_received = t.conns_total.Get();
  si->rejected_connections = t.conns_rejected.Get();
  si->total_net_input_bytes = t.bytes_in.Get();
  si->total_net_output_bytes = t.bytes_out.Get();
  const ShmHeader* h = w.segment->header();
  const uint64_t now = WallMs();
  si->uptime_s = now > h->master_started_ms ? (now - h->master_started_ms) / 1000 : 0;
  si->reloads = h->reloads.load(std::memory_order_relaxed);
}

}  // namespace

CommandEnv MakeCommandEnv(WorkerContext& w, const ListenerConf& l, ProtoIndex proto) {
  CommandEnv env;
  env.store = w.store;
  env.config = w.config;
  env.server_info = [wp = &w, port = l.port](ServerInfo* si) { FillServerInfo(*wp, port, si); };
  env.commands_processed =
      w.counters && proto != kProtoHttp ? &w.counters->requests[proto] : nullptr;
  env.cmd_stats = w.cmd_stats;
  env.heartbeat_ms = w.counters ? &w.counters->heartbeat_ms : nullptr;
  env.segment = w.segment && w.segment->valid() ? w.segment : nullptr;
  env.auth_throttled = [wp = &w](std::string_view peer) {
    return AuthThrottled(*wp, IpAddr::FromPeer(peer));
  };
  env.auth_result = [wp = &w](std::string_view peer, bool ok) {
    NoteAuthResult(*wp, IpAddr::FromPeer(peer), ok, "AUTH");
  };
  if (w.log) {
    env.persist = &w.segment->header()->persist;
    env.log = w.log;
    env.master_pid = static_cast<int>(getppid());
    env.snapshot_fd = w.snapshot_fd;
  }
  return env;
}

void FillClientSession(const Connection& c, ClientSession* s) {
  s->id = c.id();
  s->peer = c.peer();
  s->worker_slot = c.worker().slot;
  s->fd = c.fd();
  s->local = LocalAddr(s->fd);
  s->connected_ms = c.connected_ms();
}

}  // namespace pf
