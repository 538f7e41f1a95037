// worker/worker.cc: the worker's event loop: accept on the slot's sockets
// (pausing on EMFILE/ENFILE), enforce connection limits, sweep inactive
// connections, and stop gracefully (drain) or fast on the master's signal.
#include "worker/worker.h"

#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "shared/log.h"
#include "shared/persist/log_writer.h"
#include "shared/persist/persist.h"
#include "shared/tls/context.h"
#include "shared/util/clock.h"
#include "worker/clients.h"
#include "worker/connection.h"
#include "worker/durable.h"
#include "worker/event_util.h"
#include "worker/http/access_log.h"
#include "worker/pubsub.h"

namespace pf {

void WorkerContext::SampleRates() {
  if (!segment || !segment->valid()) return;
  ProcCounters t;
  segment->Totals(&t);
  RateSample& r = rate_samples[rate_next];
  r.ms = MonoMs();
  r.ops = 0;
  for (uint32_t p = 0; p < kProtoCount; p++) r.ops += t.requests[p].Get();
  r.in = t.bytes_in.Get();
  r.out = t.bytes_out.Get();
  rate_next = (rate_next + 1) % rate_samples.size();
  rate_count = std::min<uint32_t>(rate_count + 1, rate_samples.size());
}

void WorkerContext::Rates(double* ops, double* in, double* out) const {
  *ops = *in = *out = 0;
  if (rate_count < 2) return;
  const size_t n = rate_samples.size();
  const RateSample& last = rate_samples[(rate_next + n - 1) % n];
  const RateSample& first = rate_samples[(rate_next + n - rate_count) % n];
  if (last.ms <= first.ms) return;
  const double secs = static_cast<double>(last.ms - first.ms) / 1000.0;
  // Counters only grow, except a reaped process' figures move to `retired`
  // between two reads: never report a negative rate.
  auto per_sec = [secs](uint64_t a, uint64_t b) {
    return b > a ? static_cast<double>(b - a) / secs : 0.0;
  };
  *ops = per_sec(first.ops, last.ops);
  *in = per_sec(first.in, last.in);
  *out = per_sec(first.out, last.out);
}

void WorkerContext::Retire(Connection* c) {
  dead.push_back(c->id());
  event_active(reaper, EV_TIMEOUT, 0);
}

ptrdiff_t WorkerContext::QueueWrite(Connection* c) {
  if (!write_flush) return -1;
  pending_writes.push_back(c);
  if (!write_flush_armed) {
    write_flush_armed = true;
    event_active(write_flush, EV_TIMEOUT, 0);  // after the other callbacks of this turn
  }
  return static_cast<ptrdiff_t>(pending_writes.size() - 1);
}

void WorkerContext::OverClientsMemory() {
  if (clients_memory_armed || !clients_memory_ev) return;
  clients_memory_armed = true;
  event_active(clients_memory_ev, EV_TIMEOUT, 0);  // after this turn's callbacks
}

void WorkerContext::EnforceClientsMemory() {
  clients_memory_armed = false;
  const uint64_t cap = config->limits.clients_memory;
  std::vector<std::pair<uint64_t, Connection*>> by_size;
  uint64_t total = 0;
  for (auto& [id, c] : conns) {
    if (c->closing()) continue;
    total += c->buffered_bytes();
    if (c->buffered_bytes()) by_size.emplace_back(c->buffered_bytes(), c.get());
  }
  if (!cap || total <= cap) return;
  std::sort(by_size.begin(), by_size.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [bytes, c] : by_size) {
    if (total <= cap) break;
    counters->closed_clients_memory.Add(1);
    LogLimited(
        "conn {} {}: client buffers of this worker total {} bytes, over "
        "limits.clients_memory ({}): disconnecting the biggest ({} bytes)",
        c->id(), c->peer(), total, cap, bytes);
    c->Close("limits.clients_memory");
    total -= bytes;
  }
}

void WorkerContext::WritePending() {
  // A write may run a session (input that waited for the output to drain)
  // that queues output for others: appended, and written in this same pass.
  // (Connections are freed only by the reaper, never inside this loop.)
  for (size_t i = 0; i < pending_writes.size(); i++)
    if (Connection* c = pending_writes[i]) c->OnQueuedWrite();
  pending_writes.clear();
  write_flush_armed = false;
}

namespace {

// Connections trimmed in one sweep that make it worth a malloc_trim(0) (a
// walk of the heap's free lists: well under a millisecond).
constexpr size_t kTrimHeapAfter = 64;

// This process' CPU time into its counter slot, for INFO cpu's sum over
// every worker (the master folds it into `retired` when it reaps us).
void PublishCpuTime(ProcCounters* pc) {
  struct rusage ru;
  if (!pc || getrusage(RUSAGE_SELF, &ru) != 0) return;
  const auto us = [](const timeval& tv) {
    return static_cast<uint64_t>(tv.tv_sec) * 1000000 + static_cast<uint64_t>(tv.tv_usec);
  };
  pc->cpu_user_us.v.store(us(ru.ru_utime), std::memory_order_relaxed);
  pc->cpu_sys_us.v.store(us(ru.ru_stime), std::memory_order_relaxed);
  // Resident memory for the status views: statm's second field, in pages
  // (the file stays open; one pread a sweep). It is opened before a chroot
  // can hide /proc.
  static const int statm = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  char buf[128];
  const ssize_t n = statm >= 0 ? pread(statm, buf, sizeof buf - 1, 0) : -1;
  if (n > 0) {
    buf[n] = 0;
    unsigned long size = 0, resident = 0;
    if (std::sscanf(buf, "%lu %lu", &size, &resident) == 2)
      pc->rss_bytes.store(uint64_t{resident} * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)),
                          std::memory_order_relaxed);
  }
}

SessionFactory FactoryFor(Protocol p) {
  switch (p) {
    case Protocol::kEcho:
      return MakeEchoSession;
    case Protocol::kHttp:
      return MakeHttpSession;
    case Protocol::kResp:
      return MakeRespSession;
    case Protocol::kKvJson:
      return MakeKvJsonSession;
    case Protocol::kChat:
      return MakeChatSession;
    default:
      return nullptr;
  }
}

ProtoIndex ProtoIndexOf(Protocol p) {
  switch (p) {
    case Protocol::kEcho:
      return kProtoEcho;
    case Protocol::kResp:
      return kProtoResp;
    case Protocol::kKvJson:
      return kProtoKvJson;
    case Protocol::kHttp:
      return kProtoHttp;
    case Protocol::kChat:
      return kProtoChat;
  }
  return kProtoEcho;
}

class Worker {
 public:
  explicit Worker(const WorkerStart& s) : start_(s) {}

  int Run() {
    event_config* cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    base_.reset(event_base_new_with_config(cfg));
    event_config_free(cfg);
    if (!base_) {
      spdlog::critical("cannot create the event loop");
      return 2;
    }
    ctx_.config = start_.config;
    ctx_.segment = start_.segment;
    tls::UseTicketRing(&start_.segment->header()->tls_tickets);
    ctx_.slot = start_.slot;
    ctx_.generation = start_.generation;
    ctx_.base = base_.get();
    ctx_.store = start_.store;
    ctx_.counters =
        start_.counter_index >= 0 ? start_.segment->proc(start_.counter_index) : &private_counters_;
    ctx_.owner = start_.counter_index;
    ctx_.snapshot_fd = start_.snapshot_fd;
    if (start_.segment && start_.segment->valid()) {
      limiter_ = std::make_unique<limit::Table>(start_.segment->limiter_base());
      ctx_.limiter = limiter_.get();
    }
    ctx_.cmd_stats = start_.counter_index >= 0 ? start_.segment->cmd_stats(start_.counter_index)
                                               : private_cmd_stats_.get();
    if (start_.bus.valid()) {
      pubsub_ = std::make_unique<PubSubHub>(ctx_, start_.bus, start_.wake_fds);
      ctx_.pubsub = pubsub_.get();
    }
    if (start_.segment && start_.segment->valid()) {
      clients_ =
          std::make_unique<ClientRegistry>(ctx_, clients::Table(start_.segment->clients_base()));
      ctx_.clients = clients_.get();
    }
    reaper_.reset(event_new(base_.get(), -1, 0, ReaperCb, this));
    ctx_.reaper = reaper_.get();
    write_flush_.reset(event_new(base_.get(), -1, 0, WriteFlushCb, this));
    ctx_.write_flush = write_flush_.get();
    clients_memory_.reset(event_new(base_.get(), -1, 0, ClientsMemoryCb, this));
    ctx_.clients_memory_ev = clients_memory_.get();
    if (ctx_.config->persistence.enabled && ctx_.store) {
      log_ = std::make_unique<persist::LogWriter>(ctx_.config->persistence,
                                                  &ctx_.segment->header()->persist, ctx_.store);
      std::string why;
      if (!log_->Start(&why)) {
        spdlog::critical("persistence: {}", why);
        return 2;
      }
      ctx_.log = log_.get();
      kv::SetJournal(log_.get());
      durable_ = std::make_unique<DurableReplies>(ctx_, *log_);
      ctx_.durable = durable_.get();
    }

    for (const auto& s : start_.sockets) {
      auto* l = evconnlistener_new(base_.get(), AcceptCb, this, LEV_OPT_CLOSE_ON_FREE, 0, s.fd);
      if (!l) {
        spdlog::critical("listener {}: cannot watch fd {}", s.listener->name, s.fd);
        return 2;
      }
      evconnlistener_set_error_cb(l, AcceptErrorCb);
      listeners_.push_back({ListenerPtr(l), s.listener, FactoryFor(s.listener->protocol),
                            ProtoIndexOf(s.listener->protocol)});
      const auto& all = ctx_.config->listeners;
      const size_t i = static_cast<size_t>(s.listener - all.data());
      if (i < kListenerCounters) {
        listeners_.back().counter = static_cast<int>(i);
        ctx_.counters->listener_port[i].store(s.listener->port, std::memory_order_relaxed);
      }
    }
    AddSignal(SIGQUIT);
    AddSignal(SIGTERM);
    AddSignal(SIGUSR1);
    // The master forked us with its signals blocked; now that the handlers
    // exist, let them (and anything that arrived meanwhile) in.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    accept_retry_.reset(evtimer_new(base_.get(), AcceptRetryCb, this));
    PublishCpuTime(ctx_.counters);  // and the RSS: the status views have it from the start
    sweep_.reset(event_new(base_.get(), -1, EV_PERSIST, SweepCb, this));
    timeval tv = SweepPeriod();
    evtimer_add(sweep_.get(), &tv);
    if (ctx_.store) {
      expire_.reset(event_new(base_.get(), -1, EV_PERSIST, ExpireCb, this));
      const uint32_t ms = ctx_.config->kv.sweep_interval_ms;
      timeval etv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
      evtimer_add(expire_.get(), &etv);
    }
    // The master may have died between fork and PR_SET_PDEATHSIG.
    if (getppid() != start_.master_pid) return 0;

    (void)TicksPerNs();  // starts measuring the tick rate INFO commandstats converts with
    spdlog::info("worker started (generation {}, {} listener sockets)", ctx_.generation,
                 listeners_.size());
    event_base_dispatch(base_.get());
    if (durable_) {
      // Whatever was acknowledged is written; everysec and always also fsync.
      durable_->Shutdown();
      kv::SetJournal(nullptr);
    }
    ctx_.conns.clear();
    accesslog::Flush();
    spdlog::info("worker stopped");
    return 0;
  }

 private:
  struct Listener {
    ListenerPtr lev;
    const ListenerConf* conf;
    SessionFactory factory;
    ProtoIndex proto;
    int counter = -1;  // ProcCounters::listener_* index (-1: past kListenerCounters)
  };
  struct Signal {
    EventPtr ev;
    Worker* w;
  };

  void AddSignal(int sig) {
    signals_.push_back(std::make_unique<Signal>());
    Signal* s = signals_.back().get();
    s->w = this;
    s->ev.reset(evsignal_new(base_.get(), sig, SignalCb, s));
    event_add(s->ev.get(), nullptr);
  }

  timeval SweepPeriod() const {
    const auto& t = ctx_.config->timeouts;
    uint32_t m = 1000;
    for (uint32_t v :
         {t.idle_ms, t.header_ms, t.keepalive_ms, t.lingering_timeout_ms, t.chat_idle_ms})
      if (v) m = std::min(m, v / 4);
    for (const auto& l : ctx_.config->listeners)
      if (l.tls.enabled) m = std::min(m, l.tls.handshake_timeout_ms / 4);
    m = std::max<uint32_t>(m, 20);
    return timeval{static_cast<time_t>(m / 1000), static_cast<suseconds_t>((m % 1000) * 1000)};
  }

  static void SignalCb(evutil_socket_t sig, short, void* arg) {
    auto* s = static_cast<Signal*>(arg);
    NoThrow("signal", [&] { s->w->OnSignal(static_cast<int>(sig)); });
  }

  void OnSignal(int sig) {
    Worker* w = this;
    switch (sig) {
      case SIGQUIT:
        w->BeginDrain();
        break;
      case SIGTERM:
        spdlog::info("fast stop: closing {} connections", w->ctx_.conns.size());
        event_base_loopbreak(w->base_.get());
        break;
      case SIGUSR1:
        if (!log::Reopen()) spdlog::error("cannot reopen the error log: {}", std::strerror(errno));
        if (!accesslog::Reopen())
          spdlog::error("cannot reopen the access log: {}", std::strerror(errno));
        break;
    }
  }

  void BeginDrain() {
    if (ctx_.draining) return;
    ctx_.draining = true;
    ctx_.counters->draining.store(1, std::memory_order_relaxed);
    char name[16];
    snprintf(name, sizeof name, "preforkd-w%d-q", ctx_.slot);
    prctl(PR_SET_NAME, name);
    // On a stop, take what the kernel already queued on our sockets (the
    // master has closed its copies; ours are the last). On a reload, leave
    // the queue to the new worker of this slot, which shares these sockets:
    // connections accepted here would only live until the drain ends.
    if (ctx_.segment->header()->stopping.load(std::memory_order_acquire))
      for (auto& l : listeners_) DrainAcceptQueue(l);
    listeners_.clear();
    evtimer_del(accept_retry_.get());
    spdlog::info("graceful stop: draining {} connections (up to {} ms)", ctx_.conns.size(),
                 ctx_.config->timeouts.drain_ms);
    for (auto& [id, c] : ctx_.conns)
      if (!c->closing()) c->session()->OnDrain(*c);
    drain_deadline_ms_ = MonoMs() + ctx_.config->timeouts.drain_ms;
    // End the drain on time, not on the next sweep tick.
    const uint32_t d = ctx_.config->timeouts.drain_ms;
    timeval dtv{static_cast<time_t>(d / 1000), static_cast<suseconds_t>((d % 1000) * 1000)};
    event_base_once(base_.get(), -1, EV_TIMEOUT, DrainTimeoutCb, this, &dtv);
    MaybeExit();
  }

  // The drain time is over: stop reading, let every connection flush the
  // replies it has computed, and leave once they are written (or after a
  // last second for clients that do not read).
  static void DrainTimeoutCb(evutil_socket_t, short, void* arg) {
    auto* w = static_cast<Worker*>(arg);
    NoThrow("drain timeout", [w] { w->EndDrain(); });
  }

  void EndDrain() {
    if (drain_ended_) return;
    drain_ended_ = true;
    // Replies waiting for the log go out with the rest.
    if (durable_) durable_->Shutdown();
    spdlog::info("drain timeout: closing {} connections", ctx_.conns.size());
    for (auto& [id, c] : ctx_.conns)
      if (!c->closing()) c->CloseAfterWrite();
    timeval grace{1, 0};
    event_base_loopexit(base_.get(), &grace);
    MaybeExit();
  }

  void DrainAcceptQueue(Listener& l) {
    const int fd = evconnlistener_get_fd(l.lev.get());
    for (int i = 0; i < 4096; i++) {
      sockaddr_storage ss;
      socklen_t len = sizeof ss;
      int cfd = accept4(fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (cfd < 0) break;
      Accept(l, cfd, reinterpret_cast<sockaddr*>(&ss));
    }
  }

  void MaybeExit() {
    if (ctx_.draining && ctx_.conns.size() == ctx_.dead.size())
      event_base_loopexit(base_.get(), nullptr);
  }

  static void AcceptCb(evconnlistener* lev, evutil_socket_t fd, sockaddr* sa, int, void* arg) {
    auto* w = static_cast<Worker*>(arg);
    // The registry may or may not own fd when Accept throws; it is closed
    // either way when the registry entry goes.
    NoThrow("accept", [&] {
      for (auto& l : w->listeners_)
        if (l.lev.get() == lev) return w->Accept(l, fd, sa);
      evutil_closesocket(fd);
    });
  }

  void Accept(Listener& l, int fd, sockaddr* sa) {
    if (accept_paused_) {
      accept_paused_ = false;
      spdlog::info("accepting again");
    }
    const LimitsConf& lim = ctx_.config->limits;
    ShmHeader* h = ctx_.segment->header();
    if (ctx_.conns.size() >= lim.max_connections_per_worker ||
        h->conns_active_total.load(std::memory_order_relaxed) >=
            static_cast<int64_t>(lim.max_connections)) {
      evutil_closesocket(fd);
      ctx_.counters->conns_rejected.Add(1);
      if (l.counter >= 0) ctx_.counters->listener_refused[l.counter].Add(1);
      const uint64_t now = MonoMs();
      if (now - last_reject_log_ms_ >= 1000) {
        last_reject_log_ms_ = now;
        spdlog::warn("connection limit reached ({} here, {} in all): closing new connections",
                     lim.max_connections_per_worker, lim.max_connections);
      }
      return;
    }
    const uint64_t id = h->next_conn_id.fetch_add(1, std::memory_order_relaxed);
    std::unique_ptr<Connection> c;
    try {
      c = std::make_unique<Connection>(ctx_, *l.conf, fd, sa, id);
    } catch (...) {
      evutil_closesocket(fd);
      throw;
    }
    Connection* raw = c.get();
    ctx_.conns.emplace(id, std::move(c));
    h->conns_active_total.fetch_add(1, std::memory_order_relaxed);
    ctx_.counters->conns_active.Add(1);
    ctx_.counters->conns_by_proto[l.proto].Add(1);
    if (l.counter >= 0) ctx_.counters->listener_accepted[l.counter].Add(1);
    ctx_.counters->conns_total.Add(1);
    // Protected mode and limit_conn: the client reads one line saying why,
    // and nothing it sends is run.
    const std::string refusal = raw->Admit();
    if (!refusal.empty() && l.counter >= 0) ctx_.counters->listener_refused[l.counter].Add(1);
    if (!refusal.empty() && l.conf->tls.ctx) {
      // The line would have to wait for a handshake the client may never
      // finish: a TLS client is closed without it (the refusal is counted).
      raw->Close("refused");
      return;
    }
    if (!refusal.empty()) {
      if (raw->Start(MakeRefusedSession()))
        raw->RefuseWith(refusal);
      else
        raw->Close("cannot start");
      return;
    }
    // The data protocols are listed by CLIENT LIST and reachable by CLIENT KILL.
    if (ctx_.clients && (l.proto == kProtoResp || l.proto == kProtoKvJson || l.proto == kProtoChat))
      ctx_.clients->Add(*raw, l.proto);
    if (!raw->Start(l.factory(*l.conf, ctx_))) raw->Close("cannot start");
  }

  static void AcceptErrorCb(evconnlistener*, void* arg) {
    auto* w = static_cast<Worker*>(arg);
    const int err = errno;
    NoThrow("accept", [w, err] { w->OnAcceptError(err); });
  }

  void OnAcceptError(int err) {
    Worker* w = this;
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
      // Out of descriptors: the socket stays readable, so libevent would call
      // us again at once. Pause accepting and retry shortly.
      if (!w->accept_paused_) {
        w->accept_paused_ = true;
        spdlog::error("accept: {}: pausing accepts for 100 ms", std::strerror(err));
      }
      for (auto& l : w->listeners_) evconnlistener_disable(l.lev.get());
      timeval tv{0, 100'000};
      evtimer_add(w->accept_retry_.get(), &tv);
    } else {
      spdlog::warn("accept: {}", std::strerror(err));
    }
  }

  static void AcceptRetryCb(evutil_socket_t, short, void* arg) {
    auto* w = static_cast<Worker*>(arg);
    NoThrow("accept retry", [w] {
      for (auto& l : w->listeners_) evconnlistener_enable(l.lev.get());
    });
  }

  static void ReaperCb(evutil_socket_t, short, void* arg) {
    auto* w = static_cast<Worker*>(arg);
    NoThrow("reaper", [w] { w->Reap(); });
  }

  void Reap() {
    Worker* w = this;
    auto& ctx = w->ctx_;
    std::vector<uint64_t> dead;
    dead.swap(ctx.dead);
    for (uint64_t id : dead) {
      auto it = ctx.conns.find(id);
      if (it == ctx.conns.end()) continue;
      it->second->EndSession();
      ctx.counters->conns_by_proto[static_cast<uint32_t>(it->second->listener().protocol)].Sub(1);
      ctx.conns.erase(it);
      ctx.segment->header()->conns_active_total.fetch_sub(1, std::memory_order_relaxed);
      ctx.counters->conns_active.Sub(1);
    }
    w->MaybeExit();
  }

  static void ClientsMemoryCb(evutil_socket_t, short, void* arg) {
    auto* w = static_cast<Worker*>(arg);
    NoThrow("clients_memory", [w] { w->ctx_.EnforceClientsMemory(); });
  }

  static void WriteFlushCb(evutil_socket_t, short, void* arg) {
    auto* w = static_cast<Worker*>(arg);
    NoThrow("queued writes", [w] { w->ctx_.WritePending(); });
  }

  static void SweepCb(evutil_socket_t, short, void* arg) {
    auto* w = static_cast<Worker*>(arg);
    NoThrow("sweep", [w] { w->Sweep(); });
  }

  void Sweep() {
    Worker* w = this;
    auto& ctx = ctx_;
    const uint64_t now = MonoMs();
    ctx.counters->heartbeat_ms.store(now, std::memory_order_relaxed);
    PublishCpuTime(ctx.counters);
    if (ctx.draining && now >= w->drain_deadline_ms_) {
      EndDrain();
      return;
    }
    if (getppid() != w->start_.master_pid) {
      spdlog::warn("master is gone: stopping");
      event_base_loopexit(w->base_.get(), nullptr);
      return;
    }
    size_t trimmed = 0;
    for (auto& [id, c] : ctx.conns) {
      if (c->lingering()) {
        c->LingerExpired(now);
        continue;
      }
      if (c->closing()) continue;
      if (c->tls_pending()) {
        c->TlsDeadlinePassed(now);
        continue;
      }
      // A client that does not read: its output limits are checked here too.
      if (c->output_pending() > 0) {
        c->Account();
        if (c->closing()) continue;
      }
      if (ctx.clients) ctx.clients->PublishOutput(*c);
      if (c->last_activity_ms() + Connection::kTrimAfterMs <= now && c->Trim()) trimmed++;
      const uint32_t limit = c->session()->TimeoutMs(ctx);
      if (limit && c->last_activity_ms() + limit <= now && !(ctx.clients && ctx.clients->Held(id)))
        c->session()->OnTimeout(*c);
    }
    // What the trimmed connections gave back lies between live objects in
    // the heap: hand its whole pages back to the kernel (glibc keeps them
    // otherwise), at most once a sweep and only when enough went idle.
    if (trimmed) ctx.counters->conns_trimmed.Add(trimmed);
    if (trimmed >= kTrimHeapAfter) malloc_trim(0);
  }

  // Active expiry: this worker sweeps the shards s with s % workers == slot,
  // a bounded number of keys per shard per tick, and stops early once the
  // tick has used its time budget (1 ms), so a sweep never stalls clients.
  static void ExpireCb(evutil_socket_t, short, void* arg) {
    auto* w = static_cast<Worker*>(arg);
    auto& ctx = w->ctx_;
    ctx.SampleRates();
    if (ctx.draining) return;
    const uint32_t shards = ctx.store->shard_count();
    const uint32_t workers = std::max<uint32_t>(ctx.config->workers, 1);
    const uint64_t t0 = MonoNs();
    const uint64_t now = WallMs();
    for (uint32_t s = static_cast<uint32_t>(ctx.slot) % workers; s < shards; s += workers) {
      NoThrow("expiry sweep", [&] { ctx.store->SweepExpired(s, now, 20); });
      if (MonoNs() - t0 > 1'000'000) break;
    }
  }

  const WorkerStart& start_;
  // Before ctx_: connections freed with ctx_ release their limit_conn count.
  std::unique_ptr<limit::Table> limiter_;
  WorkerContext ctx_;
  ProcCounters private_counters_;
  std::unique_ptr<CmdStatsRow> private_cmd_stats_ = std::make_unique<CmdStatsRow>();
  EventBasePtr base_;
  std::unique_ptr<PubSubHub> pubsub_;        // before base_ goes (its events live in it)
  std::unique_ptr<ClientRegistry> clients_;  // likewise
  EventPtr reaper_, write_flush_, clients_memory_, accept_retry_, sweep_, expire_;
  std::unique_ptr<persist::LogWriter> log_;
  std::unique_ptr<DurableReplies> durable_;  // after log_: goes first
  std::vector<Listener> listeners_;
  std::vector<std::unique_ptr<Signal>> signals_;
  bool accept_paused_ = false;
  uint64_t last_reject_log_ms_ = 0;
  uint64_t drain_deadline_ms_ = 0;
  bool drain_ended_ = false;
};

}  // namespace

int RunWorker(const WorkerStart& start) {
  // Pub/sub fan-out queues megabytes of output in a loop turn and frees it
  // once written. glibc gives the top of the heap back to the kernel past
  // 128 KB free, so each turn paid brk calls and page faults to get the
  // memory again; keep up to kKeepFreeHeap. (Setting the trim threshold
  // stops glibc's dynamic mmap threshold, so it is set too, at glibc's own
  // ceiling: a large value's buffer is not mmapped and unmapped each time.)
  constexpr int kKeepFreeHeap = 64 << 20;
  mallopt(M_TRIM_THRESHOLD, kKeepFreeHeap);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  Worker w(start);
  return w.Run();
}

}  // namespace pf
