// worker/http_ops.cc: see http_ops.h. Counters are read relaxed from every
// live ProcCounters entry (pid != 0): a snapshot, not an atomic cut.
#include "worker/http_ops.h"

#include <string_view>

#include <fmt/format.h>

#include "shared/kv.h"
#include "shared/shm.h"
#include "worker/worker.h"

namespace pf {
namespace {

constexpr const char* kProtoNames[kProtoCount] = {"echo", "resp", "kv-json", "http", "chat"};

uint64_t UptimeS(const WorkerContext& w) {
  const uint64_t start = w.segment->header()->master_started_ms;
  const uint64_t now = WorkerContext::NowMs();
  return now > start ? (now - start) / 1000 : 0;
}

template <typename Fn>
void ForEachLive(const WorkerContext& w, Fn fn) {
  for (uint32_t i = 0; i < kMaxProcSlots; i++) {
    const ProcCounters* p = w.segment->proc(i);
    if (p->pid.load(std::memory_order_acquire) != 0) fn(*p);
  }
}

uint32_t WorkersAlive(const WorkerContext& w) {
  uint32_t n = 0;
  ForEachLive(w, [&](const ProcCounters&) { n++; });
  return n;
}

void AppendCounters(std::string* o, const ProcCounters& p) {
  fmt::format_to(std::back_inserter(*o),
                 "\"connections\":{{\"active\":{},\"total\":{},\"rejected\":{}}},"
                 "\"bytes\":{{\"in\":{},\"out\":{}}},\"requests\":{{",
                 p.conns_active.Get(), p.conns_total.Get(), p.conns_rejected.Get(),
                 p.bytes_in.Get(), p.bytes_out.Get());
  for (uint32_t i = 0; i < kProtoCount; i++)
    fmt::format_to(std::back_inserter(*o), "{}\"{}\":{}", i ? "," : "", kProtoNames[i],
                   p.requests[i].Get());
  o->append("},\"http_status\":{");
  for (int i = 1; i <= 5; i++)
    fmt::format_to(std::back_inserter(*o), "{}\"{}xx\":{}", i > 1 ? "," : "", i,
                   p.http_status[i].Get());
  o->append("}");
}

kv::Stats StoreStats(const WorkerContext& w) {
  if (!w.store) return {};
  try {
    return w.store->GetStats();
  } catch (const std::exception&) {
    return {};
  }
}

}  // namespace

std::string HealthJson(const WorkerContext& w) {
  return fmt::format("{{\"ok\":true,\"uptime_s\":{},\"workers_alive\":{}}}\n", UptimeS(w),
                     WorkersAlive(w));
}

std::string StatsJson(const WorkerContext& w) {
  std::string o;
  fmt::format_to(std::back_inserter(o), "{{\"uptime_s\":{},\"reloads\":{},\"workers\":[",
                 UptimeS(w), w.segment->header()->reloads.load(std::memory_order_relaxed));
  bool first = true;
  ForEachLive(w, [&](const ProcCounters& p) {
    fmt::format_to(std::back_inserter(o), "{}{{\"slot\":{},\"pid\":{},\"generation\":{},",
                   first ? "" : ",", p.worker_slot.load(std::memory_order_relaxed),
                   p.pid.load(std::memory_order_relaxed), p.generation.load(std::memory_order_relaxed));
    AppendCounters(&o, p);
    o.append("}");
    first = false;
  });
  ProcCounters t;
  w.segment->Totals(&t);
  o.append("],\"totals\":{");
  AppendCounters(&o, t);
  const kv::Stats s = StoreStats(w);
  fmt::format_to(std::back_inserter(o),
                 "}},\"store\":{{\"keys\":{},\"expires\":{},\"used_bytes\":{},\"capacity_bytes\":{},"
                 "\"hits\":{},\"misses\":{},\"evictions\":{},\"expired\":{}}}}}\n",
                 s.keys, s.expires, s.used_bytes, s.capacity_bytes, s.hits, s.misses, s.evictions,
                 s.expired);
  return o;
}

std::string MetricsText(const WorkerContext& w) {
  std::string o;
  auto out = std::back_inserter(o);
  auto head = [&](std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(out, "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  std::vector<const ProcCounters*> live;
  ForEachLive(w, [&](const ProcCounters& p) { live.push_back(&p); });
  // Two processes share a slot during a reload, so the pid is a label too.
  auto labels = [](const ProcCounters& p) {
    return fmt::format("worker=\"{}\",pid=\"{}\"", p.worker_slot.load(std::memory_order_relaxed),
                       p.pid.load(std::memory_order_relaxed));
  };
  head("preforkd_uptime_seconds", "gauge", "Seconds since the master started.");
  fmt::format_to(out, "preforkd_uptime_seconds {}\n", UptimeS(w));
  head("preforkd_reloads_total", "counter", "Configuration reloads (SIGHUP) applied.");
  fmt::format_to(out, "preforkd_reloads_total {}\n",
                 w.segment->header()->reloads.load(std::memory_order_relaxed));
  head("preforkd_workers_alive", "gauge", "Worker processes running (including draining ones).");
  fmt::format_to(out, "preforkd_workers_alive {}\n", live.size());

  struct Simple {
    const char* name;
    const char* type;
    const char* help;
    const Counter ProcCounters::*field;
  };
  static const Simple kSimple[] = {
      {"preforkd_connections_active", "gauge", "Open client connections.", &ProcCounters::conns_active},
      {"preforkd_connections_total", "counter", "Accepted client connections.", &ProcCounters::conns_total},
      {"preforkd_connections_rejected_total", "counter", "Connections closed at accept (over a limit).",
       &ProcCounters::conns_rejected},
      {"preforkd_received_bytes_total", "counter", "Bytes read from clients.", &ProcCounters::bytes_in},
      {"preforkd_sent_bytes_total", "counter", "Bytes written to clients.", &ProcCounters::bytes_out},
  };
  for (const Simple& s : kSimple) {
    head(s.name, s.type, s.help);
    for (const ProcCounters* p : live)
      fmt::format_to(out, "{}{{{}}} {}\n", s.name, labels(*p), (p->*s.field).Get());
  }
  head("preforkd_requests_total", "counter", "Requests (commands, lines, HTTP requests) by protocol.");
  for (const ProcCounters* p : live)
    for (uint32_t i = 0; i < kProtoCount; i++)
      fmt::format_to(out, "preforkd_requests_total{{{},protocol=\"{}\"}} {}\n", labels(*p),
                     kProtoNames[i], p->requests[i].Get());
  head("preforkd_http_responses_total", "counter", "HTTP responses by status class.");
  for (const ProcCounters* p : live)
    for (int i = 1; i <= 5; i++)
      fmt::format_to(out, "preforkd_http_responses_total{{{},code=\"{}xx\"}} {}\n", labels(*p), i,
                     p->http_status[i].Get());

  const kv::Stats s = StoreStats(w);
  const struct {
    const char* name;
    const char* type;
    const char* help;
    uint64_t v;
  } kStore[] = {
      {"preforkd_kv_keys", "gauge", "Keys in the store.", s.keys},
      {"preforkd_kv_expires", "gauge", "Keys with a TTL.", s.expires},
      {"preforkd_kv_used_bytes", "gauge", "Arena bytes in use.", s.used_bytes},
      {"preforkd_kv_capacity_bytes", "gauge", "Arena bytes in all.", s.capacity_bytes},
      {"preforkd_kv_hits_total", "counter", "Lookups that found a key.", s.hits},
      {"preforkd_kv_misses_total", "counter", "Lookups that found no key.", s.misses},
      {"preforkd_kv_evictions_total", "counter", "Keys evicted for memory.", s.evictions},
      {"preforkd_kv_expired_total", "counter", "Keys removed because their TTL passed.", s.expired},
  };
  for (const auto& m : kStore) {
    head(m.name, m.type, m.help);
    fmt::format_to(out, "{} {}\n", m.name, m.v);
  }
  return o;
}

}  // namespace pf
