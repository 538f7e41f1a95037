// worker/kv_env.h: what the store's protocols (resp, kv-json) share: the
// CommandEnv of a connection (store, config, INFO numbers from the shared
// counters) and the identity fields of its ClientSession.
#pragma once

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "shared/commands.h"
#include "shared/shm.h"
#include "worker/connection.h"
#include "worker/worker.h"

namespace pf {

// INFO / HELLO numbers: this worker's identity plus the sums over every
// worker's counter slot in the shared segment (computed only when asked).
inline void FillServerInfo(const WorkerContext& w, uint16_t port, ServerInfo* si) {
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
  si->total_commands_processed = t.requests[kProtoResp].Get() + t.requests[kProtoKvJson].Get();
  const ShmHeader* h = w.segment->header();
  const uint64_t now = WorkerContext::NowMs();
  si->uptime_s = now > h->master_started_ms ? (now - h->master_started_ms) / 1000 : 0;
  si->reloads = h->reloads.load(std::memory_order_relaxed);
}

inline CommandEnv MakeCommandEnv(WorkerContext& w, const ListenerConf& l, ProtoIndex proto) {
  CommandEnv env;
  env.store = w.store;
  env.config = w.config;
  env.server_info = [wp = &w, port = l.port](ServerInfo* si) { FillServerInfo(*wp, port, si); };
  env.commands_processed = w.counters ? &w.counters->requests[proto] : nullptr;
  if (w.log) {
    env.persist = &w.segment->header()->persist;
    env.log = w.log;
    env.master_pid = static_cast<int>(getppid());
  }
  return env;
}

inline std::string SockName(int fd) {
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (fd < 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  char buf[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "";
}

inline void FillClientSession(const Connection& c, ClientSession* s) {
  s->id = c.id();
  s->peer = c.peer();
  s->worker_slot = c.worker().slot;
  s->fd = c.fd();
  s->local = SockName(s->fd);
  s->connected_ms = c.connected_ms();
}

}  // namespace pf
