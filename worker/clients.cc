// worker/clients.cc: the client registry in a worker (clients.h).
#include "worker/clients.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <unistd.h>

#include <vector>

#include "shared/cmd/commands.h"
#include "shared/config.h"
#include "shared/util/clock.h"
#include "shared/util/net.h"
#include "worker/connection.h"
#include "worker/pubsub.h"
#include "worker/worker.h"

namespace pf {

ClientRegistry::ClientRegistry(WorkerContext& w, clients::Table t) : w_(w), t_(t) {
  timer_.reset(evtimer_new(w.base, TimerCb, this));
  kills_seen_ = t_.Kills(w.owner);
}

ClientRegistry::~ClientRegistry() {
  if (w_.clients == this) w_.clients = nullptr;
}

void ClientRegistry::Add(Connection& c, ProtoIndex proto) {
  if (w_.owner < 0) return;  // no counter entry: no owner the master could clean up after
  const int32_t slot = t_.Claim(w_.owner, static_cast<int32_t>(getpid()));
  if (slot < 0) {
    w_.LogLimited(
        "client registry full ({} entries): new connections are served but not listed by "
        "CLIENT LIST nor reachable by CLIENT KILL",
        t_.slots());
    return;
  }
  c.set_client_slot(slot);
  t_.Write(slot, [&](clients::Stored& r) {
    r.id = c.id();
    r.worker_slot = w_.slot;
    r.proto = proto;
    r.fd = c.fd();
    r.multi = -1;
    r.connected_ms = c.connected_ms();
    r.last_active_ms = c.last_activity_ms();
    clients::CopyField(r.peer, c.peer());
    clients::CopyField(r.local, LocalAddr(c.fd()));
    clients::CopyField(r.listener, c.listener().name);
  });
}

void ClientRegistry::Publish(Connection& c) {
  const int32_t slot = c.client_slot();
  if (slot < 0) return;
  Session* session = c.session();
  const ClientSession* s = session ? session->client_session() : nullptr;
  const auto* sub = dynamic_cast<const PubSubClient*>(session);
  // A name is compared (and its page read) only when the connection has
  // one or had one: most connections never do.
  auto set_name = [this, slot](clients::Stored& r, auto field, std::string_view v) {
    if (!r.names_set && v.empty()) return;
    clients::Names& n = t_.names(slot);
    if (clients::FieldOf(n.*field) == v) return;
    clients::CopyField(n.*field, v);
    r.names_set = 1;
  };
  t_.Write(slot, [&](clients::Stored& r) {
    r.last_active_ms = c.last_activity_ms();
    r.bytes_in = c.bytes_in();
    r.bytes_out = c.bytes_out();
    if (!s) {
      // Chat: its rooms ride on the bus, but it is not a pub/sub client
      // (CLIENT KILL TYPE pubsub leaves it alone).
      const std::string_view name = session ? session->client_name() : std::string_view();
      set_name(r, &clients::Names::name, name);
      return;
    }
    if (sub) {
      r.sub = static_cast<int32_t>(sub->channels.size());
      r.psub = static_cast<int32_t>(sub->patterns.size());
    }
    r.commands = s->commands;
    r.flags = ClientFlagsOf(*s, r.sub + r.psub);
    r.multi = s->txn.active ? static_cast<int32_t>(s->txn.argc.size()) : -1;
    // Strings only when they changed: most turns change none.
    if (clients::FieldOf(r.cmd) != s->last_command) clients::CopyField(r.cmd, s->last_command);
    set_name(r, &clients::Names::name, s->name);
    set_name(r, &clients::Names::lib_name, s->lib_name);
    set_name(r, &clients::Names::lib_ver, s->lib_ver);
  });
}

void ClientRegistry::PublishOutput(Connection& c) {
  const int32_t slot = c.client_slot();
  if (slot < 0) return;
  const uint64_t out = c.output_pending();
  if (t_.OwnRecord(slot).obuf == out) return;
  t_.Write(slot, [&](clients::Stored& r) {
    r.obuf = out;
    r.bytes_out = c.bytes_out();
  });
}

void ClientRegistry::Remove(Connection& c) {
  const int32_t slot = c.client_slot();
  if (slot < 0) return;
  c.set_client_slot(-1);
  held_.erase(c.id());
  t_.Release(slot);
}

void ClientRegistry::OnWake() {
  const uint32_t k = t_.Kills(w_.owner);
  if (k != kills_seen_) {
    kills_seen_ = k;
    for (auto& [id, c] : w_.conns) {
      const int32_t slot = c->client_slot();
      if (slot >= 0 && !c->closing() && t_.KillId(slot) == id) c->Close("CLIENT KILL");
    }
  }
  if (!held_.empty() && t_.Paused(MonoMs()) == clients::kPauseNone) ResumeHeld();
}

void ClientRegistry::Hold(Connection& c, uint64_t until_mono_ms) {
  held_.insert(c.id());
  const uint64_t now = MonoMs();
  if (timer_at_ && timer_at_ <= until_mono_ms && timer_at_ > now) return;
  const uint64_t in = until_mono_ms > now ? until_mono_ms - now : 0;
  timeval tv{static_cast<time_t>(in / 1000), static_cast<suseconds_t>((in % 1000) * 1000)};
  evtimer_add(timer_.get(), &tv);
  timer_at_ = until_mono_ms;
}

void ClientRegistry::TimerCb(int, short, void* arg) {
  auto* r = static_cast<ClientRegistry*>(arg);
  r->timer_at_ = 0;
  NoThrow("client pause", [r] { r->ResumeHeld(); });
}

// Each held connection runs its input again; one whose command is still
// paused (a new CLIENT PAUSE) is held again.
void ClientRegistry::ResumeHeld() {
  std::vector<uint64_t> ids(held_.begin(), held_.end());
  held_.clear();
  for (uint64_t id : ids) {
    auto it = w_.conns.find(id);
    if (it != w_.conns.end() && !it->second->closing()) it->second->Resume();
  }
}

void ClientRegistry::Wake(int slot) {
  if (w_.pubsub) w_.pubsub->WakeSlot(slot);
}

}  // namespace pf
