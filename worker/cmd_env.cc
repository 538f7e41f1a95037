// worker/cmd_env.cc: the command table's environment in a worker (cmd_env.h).
#include "worker/cmd_env.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "shared/util/clock.h"
#include "shared/util/net.h"
#include "worker/clients.h"
#include "worker/connection.h"
#include "worker/pubsub.h"
#include "worker/security.h"
#include "worker/worker.h"

namespace pf {
namespace {

uint64_t RusageUs(const timeval& tv) {
  return static_cast<uint64_t>(tv.tv_sec) * 1000000 + static_cast<uint64_t>(tv.tv_usec);
}

// INFO / HELLO numbers: this worker's identity plus the sums over every
// worker's counter slot in the shared segment (computed only when asked).
// total_commands_processed is INFO's own sum of the command statistics.
// With si->detail (INFO), also what costs more: pub/sub counts (the bus
// table's lock), CPU time and the list of worker processes.
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
  si->evicted_clients = t.closed_clients_memory.Get();
  w.Rates(&si->instantaneous_ops, &si->instantaneous_in_bytes, &si->instantaneous_out_bytes);
  const ShmHeader* h = w.segment->header();
  const uint64_t now = WallMs();
  si->uptime_s = now > h->master_started_ms ? (now - h->master_started_ms) / 1000 : 0;
  si->reloads = h->reloads.load(std::memory_order_relaxed);
  si->run_id.assign(h->run_id, strnlen(h->run_id, sizeof h->run_id));
  si->replid.assign(h->replid, strnlen(h->replid, sizeof h->replid));
  if (!si->detail) return;
  if (w.pubsub) {
    si->pubsub_channels = static_cast<int64_t>(w.pubsub->bus().Channels("").size());
    si->pubsub_patterns = w.pubsub->bus().NumPat();
  }
  if (w.counters) {
    // The others' figures are as of their last sweep; ours is fresh.
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    si->cpu_user_us = t.cpu_user_us.Get() - w.counters->cpu_user_us.Get() + RusageUs(ru.ru_utime);
    si->cpu_sys_us = t.cpu_sys_us.Get() - w.counters->cpu_sys_us.Get() + RusageUs(ru.ru_stime);
    si->cpu_summed = true;
  }
  for (uint32_t i = 0; i < kMaxProcSlots; i++) {
    const ProcCounters* p = w.segment->proc(i);
    const int32_t pid = p->pid.load(std::memory_order_acquire);
    if (pid <= 0) continue;
    ServerInfo::Worker wk;
    wk.slot = p->worker_slot.load(std::memory_order_relaxed);
    wk.pid = pid;
    wk.generation = p->generation.load(std::memory_order_relaxed);
    wk.connections = p->conns_active.Get();
    wk.connections_total = p->conns_total.Get();
    const CmdStatsRow* row = w.segment->cmd_stats(i);
    for (uint32_t c = 0; c < kMaxCommandStats; c++) wk.commands += row->cmd[c].calls.Get();
    si->worker_list.push_back(wk);
  }
  std::sort(si->worker_list.begin(), si->worker_list.end(),
            [](const ServerInfo::Worker& a, const ServerInfo::Worker& b) {
              return a.slot != b.slot ? a.slot < b.slot : a.generation < b.generation;
            });
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
  if (w.counters && proto != kProtoHttp) {
    env.latency = &w.counters->latency[proto];
    env.batch_start_ns = &w.batch_start_ns;
  }
  env.heartbeat_ms = w.counters ? &w.counters->heartbeat_ms : nullptr;
  env.segment = w.segment && w.segment->valid() ? w.segment : nullptr;
  env.stats = env.segment ? env.segment->stats_shared() : nullptr;
  if (w.clients) {
    env.clients = w.clients->table();
    env.wake_worker = [wp = &w](int slot) {
      if (wp->clients) wp->clients->Wake(slot);
    };
  }
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

const CommandEnv& ListenerCommandEnv(WorkerContext& w, const ListenerConf& l, ProtoIndex proto) {
  for (const auto& e : w.command_envs)
    if (e.listener == &l && e.proto == proto) return *static_cast<const CommandEnv*>(e.env.get());
  auto env = std::make_shared<CommandEnv>(MakeCommandEnv(w, l, proto));
  const CommandEnv& ref = *env;
  w.command_envs.push_back({&l, proto, std::move(env)});
  return ref;
}

void FillClientSession(const Connection& c, ClientSession* s) {
  s->id = c.id();
  s->peer = c.peer();
  s->worker_slot = c.worker().slot;
  s->fd = c.fd();
  s->local = LocalAddr(s->fd);
  s->connected_ms = c.connected_ms();
  s->client_slot = c.client_slot();
  // tls.auth_by_certificate: a verified client certificate stands for AUTH.
  if (c.tls_cert_authenticated()) s->authenticated = s->cert_authenticated = true;
}

}  // namespace pf
