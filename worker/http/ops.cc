// worker/http/ops.cc: see ops.h. Counters are read relaxed from every
// live ProcCounters entry (pid != 0): a snapshot, not an atomic cut.
#include "worker/http/ops.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <strings.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <string_view>
#include <vector>

#include "shared/clients.h"
#include "shared/config.h"
#include "shared/kv/kv.h"
#include "shared/persist/persist.h"
#include "shared/shm.h"
#include "shared/util/clock.h"
#include "shared/util/strings.h"
#include "worker/clients.h"
#include "worker/connection.h"
#include "worker/http/parse.h"
#include "worker/http/util.h"
#include "worker/json.h"
#include "worker/pubsub.h"
#include "worker/security.h"
#include "worker/worker.h"

namespace pf {
namespace {

uint64_t UptimeS(const WorkerContext& w) {
  const uint64_t start = w.segment->header()->master_started_ms;
  const uint64_t now = WallMs();
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
                 "\"connections\":{{\"active\":{},\"total\":{},\"rejected\":{},"
                 "\"closed_output_limit\":{},\"closed_clients_memory\":{},\"trimmed\":{},"
                 "\"by_protocol\":{{",
                 p.conns_active.Get(), p.conns_total.Get(), p.conns_rejected.Get(),
                 p.closed_output_limit.Get(), p.closed_clients_memory.Get(), p.conns_trimmed.Get());
  for (uint32_t i = 0; i < kProtoCount; i++)
    fmt::format_to(std::back_inserter(*o), "{}\"{}\":{}", i ? "," : "", ProtoIndexName(i),
                   p.conns_by_proto[i].Get());
  fmt::format_to(std::back_inserter(*o), "}}}},\"bytes\":{{\"in\":{},\"out\":{}}},\"requests\":{{",
                 p.bytes_in.Get(), p.bytes_out.Get());
  for (uint32_t i = 0; i < kProtoCount; i++)
    fmt::format_to(std::back_inserter(*o), "{}\"{}\":{}", i ? "," : "", ProtoIndexName(i),
                   p.requests[i].Get());
  o->append("},\"http_status\":{");
  for (int i = 1; i <= 5; i++)
    fmt::format_to(std::back_inserter(*o), "{}\"{}xx\":{}", i > 1 ? "," : "", i,
                   p.http_status[i].Get());
  o->append("},\"refused\":{");
  for (uint32_t i = 0; i < kRefusalCount; i++)
    fmt::format_to(std::back_inserter(*o), "{}\"{}\":{}", i ? "," : "",
                   RefusalName(static_cast<Refusal>(i)), p.refused[i].Get());
  fmt::format_to(std::back_inserter(*o),
                 "}},\"tls\":{{\"handshakes\":{},\"resumed\":{},\"tls1_2\":{},\"tls1_3\":{},"
                 "\"failures\":{{",
                 p.tls_handshakes.Get(), p.tls_resumed.Get(), p.tls_v12.Get(), p.tls_v13.Get());
  for (uint32_t i = 0; i < kTlsFailureCount; i++)
    fmt::format_to(std::back_inserter(*o), "{}\"{}\":{}", i ? "," : "", TlsFailureName(i),
                   p.tls_failed[i].Get());
  o->append("}},\"latency\":{");
  for (uint32_t i = 0; i < kProtoCount; i++) {
    fmt::format_to(std::back_inserter(*o), "{}\"{}\":[", i ? "," : "", ProtoIndexName(i));
    for (uint32_t b = 0; b < kLatencyBuckets; b++)
      fmt::format_to(std::back_inserter(*o), "{}{}", b ? "," : "", p.latency[i].buckets[b].Get());
    o->append("]");
  }
  o->append("}");
}

limit::TableStats LimiterStats(const WorkerContext& w) {
  return w.limiter ? w.limiter->Stats() : limit::TableStats{};
}

kv::Stats StoreStats(const WorkerContext& w) {
  if (!w.store) return {};
  try {
    return w.store->GetStats();
  } catch (const std::exception&) {
    return {};
  }
}

// The query's parameters, percent-decoded. False, with the reason in *err,
// on a bad escape or a repeated name (an admin request is never guessed at).
bool ParseQuery(std::string_view query, std::map<std::string, std::string>* out, std::string* err) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    std::string name, value;
    if (!http::PercentDecode(pair.substr(0, eq), &name, true) ||
        (eq != std::string_view::npos && !http::PercentDecode(pair.substr(eq + 1), &value, true))) {
      *err =
          "bad percent-encoding in the query parameter '" + std::string(pair.substr(0, 64)) + "'";
      return false;
    }
    if (!out->emplace(name, std::move(value)).second) {
      *err = "the query parameter '" + name + "' is given twice";
      return false;
    }
  }
  return true;
}

// "12,40" → {12, 40}; ids are decimal, > 0, separated by single commas.
bool ParseIds(std::string_view s, std::vector<uint64_t>* out) {
  while (!s.empty()) {
    const size_t comma = s.find(',');
    uint64_t id = 0;
    if (!ParseU64(s.substr(0, comma), &id) || id == 0) return false;
    out->push_back(id);
    if (comma == std::string_view::npos) return true;
    s.remove_prefix(comma + 1);
    if (s.empty()) return false;
  }
  return true;
}

// Compares in time independent of where the first difference is.

bool Broadcasts(Protocol p) { return p == Protocol::kChat || p == Protocol::kKvJson; }

}  // namespace

AdminReply AdminError(int status, std::string_view message) {
  AdminReply r;
  r.status = status;
  // Messages quote what the client sent, which may not be UTF-8.
  std::string text(message);
  if (!json::IsUtf8(text))
    for (char& ch : text)
      if (static_cast<unsigned char>(ch) >= 0x80) ch = '?';
  r.body = "{\"ok\":false,\"error\":";
  json::AppendJsonString(&r.body, text);
  r.body += "}\n";
  return r;
}

AdminReply AdminBroadcast(WorkerContext& w, const http::Request& req, std::string_view query,
                          const IpAddr& peer) {
  const PubSubConf& pc = w.config->pubsub;
  if (pc.admin_token.empty())
    return AdminError(
        403, "the admin endpoints are disabled: set pubsub.admin_token in the configuration");
  if (req.method != "POST") {
    AdminReply r = AdminError(405, "use POST: the request body is the text to broadcast");
    r.headers = "Allow: POST\r\n";
    return r;
  }
  const std::string* auth = req.Header("authorization");
  if (!auth || auth->size() < 7 || strncasecmp(auth->c_str(), "Bearer ", 7) != 0) {
    AdminReply r =
        AdminError(401, "missing 'Authorization: Bearer TOKEN' (TOKEN = pubsub.admin_token)");
    r.headers = "WWW-Authenticate: Bearer realm=\"preforkd admin\"\r\n";
    return r;
  }
  std::string_view token = std::string_view(*auth).substr(7);
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  if (AuthThrottled(w, peer))
    return AdminError(429,
                      "too many failed authentication attempts from your address: try again "
                      "in a minute");
  const bool ok = SecretEquals(token, pc.admin_token);
  NoteAuthResult(w, peer, ok, "POST /_admin/broadcast");
  if (!ok) return AdminError(403, "wrong admin token");
  PubSubHub* hub = w.pubsub;
  if (!hub) return AdminError(503, "pub/sub is not available (no bus in the shared segment)");

  std::map<std::string, std::string> params;
  std::string err;
  if (!ParseQuery(query, &params, &err)) return AdminError(400, err);
  for (const auto& [name, value] : params)
    if (name != "listener" && name != "exclude")
      return AdminError(400, "unknown query parameter '" + name.substr(0, 64) +
                                 "', expected listener=NAME and optionally exclude=ID,ID,...");
  auto lp = params.find("listener");
  if (lp == params.end() || lp->second.empty())
    return AdminError(400, "missing listener=NAME: the listener whose connections get the text");
  const std::string& name = lp->second;
  const ListenerConf* listener = nullptr;
  std::string names;
  for (const ListenerConf& l : w.config->listeners) {
    if (l.name == name) listener = &l;
    if (Broadcasts(l.protocol)) names += (names.empty() ? "" : ", ") + l.name;
  }
  if (!listener)
    return AdminError(400, "unknown listener '" + name.substr(0, 64) + "', expected one of: " +
                               (names.empty() ? "(none: no chat or kv-json listener)" : names));
  if (!Broadcasts(listener->protocol))
    return AdminError(400, "listener '" + name + "' (protocol " + ProtocolName(listener->protocol) +
                               ") does not support broadcast: only chat and kv-json listeners do");
  std::vector<uint64_t> exclude;
  if (auto ep = params.find("exclude"); ep != params.end() && !ParseIds(ep->second, &exclude))
    return AdminError(400,
                      "bad exclude list '" + ep->second.substr(0, 64) +
                          "', expected connection ids separated by commas, e.g. exclude=12,40");

  // The text is one line: a single trailing newline (as `echo` or a file
  // adds) is dropped; other control characters would break chat's lines.
  std::string_view text = req.body;
  if (text.ends_with('\n')) text.remove_suffix(1);
  if (text.ends_with('\r')) text.remove_suffix(1);
  if (text.empty()) return AdminError(400, "empty text: the request body is the text to broadcast");
  const size_t max = hub->max_message_bytes();
  if (text.size() > max)
    return AdminError(413,
                      fmt::format("the text is {} bytes, over pubsub.max_message_bytes ({} bytes)",
                                  text.size(), max));
  if (!json::IsUtf8(text)) return AdminError(400, "the text must be UTF-8");
  for (size_t i = 0; i < text.size(); i++) {
    const unsigned char ch = static_cast<unsigned char>(text[i]);
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
      return AdminError(400, fmt::format("the text must be one line without control characters "
                                         "(byte {} is 0x{:02x})",
                                         i, ch));
  }
  const std::string encoded = EncodeBroadcast(name, exclude, text);
  const PubStatus st = hub->Broadcast(encoded);
  if (st == PubStatus::kTooLarge)
    return AdminError(413,
                      fmt::format("with the listener name and the exclude list the broadcast is {} "
                                  "bytes, over pubsub.max_message_bytes ({} bytes)",
                                  encoded.size(), max));
  if (st != PubStatus::kOk) return AdminError(500, "the broadcast could not be queued on the bus");
  spdlog::info("http {}: broadcast of {} bytes to listener {} ({} excluded)", peer.ToString(),
               text.size(), name, exclude.size());
  AdminReply r;
  r.body = "{\"ok\":true,\"queued\":true,\"listener\":";
  json::AppendJsonString(&r.body, name);
  fmt::format_to(std::back_inserter(r.body), ",\"protocol\":\"{}\",\"exclude\":[",
                 ProtocolName(listener->protocol));
  for (size_t i = 0; i < exclude.size(); i++)
    fmt::format_to(std::back_inserter(r.body), "{}{}", i ? "," : "", exclude[i]);
  fmt::format_to(std::back_inserter(r.body), "],\"workers\":{}}}\n", w.config->workers);
  return r;
}

namespace {

// `name=1` (or yes/true) among the &-separated parameters of `query`.
bool QueryFlag(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view p = query.substr(0, amp);
    if (p.substr(0, name.size()) == name && p.size() > name.size() && p[name.size()] == '=') {
      const std::string_view v = p.substr(name.size() + 1);
      return v == "1" || v == "yes" || v == "true";
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return false;
}

}  // namespace

// The client registry as a JSON array: what CLIENT LIST shows, one object a
// client, over every worker.
void AppendClientsJson(const WorkerContext& w, std::string* o) {
  o->push_back('[');
  if (w.clients) {
    const clients::Table& t = *w.clients->table();
    const uint64_t now_wall = WallMs(), now_mono = MonoMs();
    clients::Record r;
    bool first = true;
    for (uint32_t i = 0; i < t.hwm(); i++) {
      if (!t.Read(static_cast<int32_t>(i), &r)) continue;
      if (!first) o->push_back(',');
      first = false;
      fmt::format_to(std::back_inserter(*o), "{{\"id\":{},\"worker\":{},\"proto\":\"{}\",", r.id,
                     r.worker_slot, ProtoIndexName(r.proto));
      auto str = [o](const char* k, std::string_view v) {
        fmt::format_to(std::back_inserter(*o), "\"{}\":", k);
        json::AppendJsonString(o, v);
        o->push_back(',');
      };
      str("listener", clients::FieldOf(r.listener));
      str("addr", clients::FieldOf(r.peer));
      str("laddr", clients::FieldOf(r.local));
      str("name", clients::FieldOf(r.name));
      str("cmd", clients::FieldOf(r.cmd));
      str("lib_name", clients::FieldOf(r.lib_name));
      str("lib_ver", clients::FieldOf(r.lib_ver));
      fmt::format_to(
          std::back_inserter(*o),
          "\"age_s\":{},\"idle_s\":{},\"flags\":\"{}\",\"db\":{},\"sub\":{},\"psub\":{},"
          "\"multi\":{},\"commands\":{},\"bytes_in\":{},\"bytes_out\":{},\"output_bytes\":{}}}",
          now_wall > r.connected_ms ? (now_wall - r.connected_ms) / 1000 : 0,
          now_mono > r.last_active_ms ? (now_mono - r.last_active_ms) / 1000 : 0,
          clients::FlagLetters(r.flags), r.db, r.sub, r.psub, r.multi, r.commands, r.bytes_in,
          r.bytes_out, r.obuf);
    }
  }
  o->push_back(']');
}

std::string HealthJson(const WorkerContext& w) {
  return fmt::format("{{\"ok\":true,\"uptime_s\":{},\"workers_alive\":{}}}\n", UptimeS(w),
                     WorkersAlive(w));
}

// The reason the last reload was refused (a seqlock the master writes).
std::string LastConfigError(const ShmHeader* h) {
  for (int tries = 0; tries < 8; tries++) {
    const uint64_t s1 = h->config_error_seq.load(std::memory_order_acquire);
    if (s1 & 1) continue;
    std::string e(h->last_config_error, strnlen(h->last_config_error, sizeof h->last_config_error));
    std::atomic_thread_fence(std::memory_order_acquire);
    if (h->config_error_seq.load(std::memory_order_relaxed) == s1) return e;
  }
  return "";
}

namespace {

// The reverse proxy's upstream servers (UpstreamShared), named as this
// worker's config has them; the slots of another generation (this worker
// is draining, or the master is naming them) are left out.
template <typename Fn>
void ForEachUpstreamSlot(const WorkerContext& w, Fn&& fn) {
  const UpstreamShared& t = w.segment->header()->upstreams;
  if (t.generation.load(std::memory_order_relaxed) != w.generation) return;
  uint32_t flat = 0;
  for (const UpstreamConf& u : w.config->upstreams)
    for (const UpstreamServerConf& sv : u.servers) {
      if (flat >= kMaxUpstreamServers) return;
      fn(u, sv, t.slots[flat++]);
    }
}

void AppendUpstreamsJson(const WorkerContext& w, std::string* o) {
  o->append(",\"upstreams\":[");
  const uint64_t now = MonoMs();
  const UpstreamConf* current = nullptr;
  ForEachUpstreamSlot(
      w, [&](const UpstreamConf& u, const UpstreamServerConf& sv, const UpstreamSlot& s) {
        if (&u != current) {
          o->append(current ? "]}," : "");
          current = &u;
          o->append("{\"name\":");
          json::AppendJsonString(o, u.name);
          fmt::format_to(std::back_inserter(*o), ",\"balance\":\"{}\",\"servers\":[",
                         BalanceName(u.balance));
        } else {
          o->push_back(',');
        }
        const uint64_t down = s.down_until_ms.load(std::memory_order_relaxed);
        o->append("{\"address\":");
        json::AppendJsonString(o, sv.address);
        fmt::format_to(std::back_inserter(*o),
                       ",\"weight\":{},\"backup\":{},\"state\":\"{}\",\"down_for_ms\":{},"
                       "\"requests\":{},\"failures\":{},\"marked_down\":{},\"responses\":{{",
                       sv.weight, sv.backup ? "true" : "false", down > now ? "down" : "up",
                       down > now ? down - now : 0, s.requests.load(), s.failures.load(),
                       s.marked_down.load());
        for (int c = 1; c <= 5; c++)
          fmt::format_to(std::back_inserter(*o), "{}\"{}xx\":{}", c > 1 ? "," : "", c,
                         s.responses[c].load());
        o->append("},\"latency\":[");
        for (uint32_t b = 0; b < kLatencyBuckets; b++)
          fmt::format_to(std::back_inserter(*o), "{}{}", b ? "," : "", s.latency[b].load());
        o->append("]}");
      });
  o->append(current ? "]}]" : "]");
}

void AppendUpstreamMetrics(const WorkerContext& w, std::string* o) {
  auto out = std::back_inserter(*o);
  struct Row {
    std::string labels;
    const UpstreamSlot* s;
    bool up;
  };
  std::vector<Row> rows;
  const uint64_t now = MonoMs();
  ForEachUpstreamSlot(
      w, [&](const UpstreamConf& u, const UpstreamServerConf& sv, const UpstreamSlot& s) {
        rows.push_back({fmt::format("upstream=\"{}\",server=\"{}\"", u.name, sv.address), &s,
                        s.down_until_ms.load(std::memory_order_relaxed) <= now});
      });
  if (rows.empty()) return;
  auto head = [&](std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(out, "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  head("preforkd_upstream_up", "gauge",
       "1 while an upstream server is in use, 0 while passive health has it down.");
  for (const Row& r : rows)
    fmt::format_to(out, "preforkd_upstream_up{{{}}} {}\n", r.labels, r.up ? 1 : 0);
  head("preforkd_upstream_requests_total", "counter",
       "Requests sent to an upstream server (tries).");
  for (const Row& r : rows)
    fmt::format_to(out, "preforkd_upstream_requests_total{{{}}} {}\n", r.labels,
                   r.s->requests.load());
  head("preforkd_upstream_failures_total", "counter",
       "Tries that failed: connect, timeout, reset, invalid response.");
  for (const Row& r : rows)
    fmt::format_to(out, "preforkd_upstream_failures_total{{{}}} {}\n", r.labels,
                   r.s->failures.load());
  head("preforkd_upstream_responses_total", "counter", "Upstream responses by status class.");
  for (const Row& r : rows)
    for (int c = 1; c <= 5; c++)
      fmt::format_to(out, "preforkd_upstream_responses_total{{{},code=\"{}xx\"}} {}\n", r.labels, c,
                     r.s->responses[c].load());
  head("preforkd_upstream_response_duration_seconds", "histogram",
       "From sending the request to an upstream server to its response head.");
  for (const Row& r : rows) {
    uint64_t cum = 0;
    for (uint32_t b = 0; b < kLatencyBuckets; b++) {
      cum += r.s->latency[b].load();
      if (b < kLatencyBounds)
        fmt::format_to(out,
                       "preforkd_upstream_response_duration_seconds_bucket{{{},le=\"{:g}\"}} {}\n",
                       r.labels, kLatencyBoundsUs[b] / 1e6, cum);
      else
        fmt::format_to(out,
                       "preforkd_upstream_response_duration_seconds_bucket{{{},le=\"+Inf\"}} {}\n",
                       r.labels, cum);
    }
    fmt::format_to(out, "preforkd_upstream_response_duration_seconds_sum{{{}}} {:g}\n", r.labels,
                   r.s->latency_sum_us.load() / 1e6);
    fmt::format_to(out, "preforkd_upstream_response_duration_seconds_count{{{}}} {}\n", r.labels,
                   cum);
  }
}

}  // namespace

std::string StatsJson(const WorkerContext& w) {
  std::string o;
  const ShmHeader* h = w.segment->header();
  fmt::format_to(std::back_inserter(o),
                 "{{\"uptime_s\":{},\"reloads\":{},\"workers_stalled\":{},"
                 "\"master\":{{\"pid\":{},\"generation\":{},\"last_reload_ms\":{},"
                 "\"last_reload_ok\":{},\"last_config_error\":",
                 UptimeS(w), h->reloads.load(std::memory_order_relaxed),
                 h->workers_stalled.load(std::memory_order_relaxed), h->master_pid.load(),
                 h->generation.load(), h->last_reload_ms.load(),
                 h->last_reload_ok.load() ? "true" : "false");
  json::AppendJsonString(&o, LastConfigError(h));
  o.append("},\"latency_bounds_us\":[");
  for (uint32_t b = 0; b < kLatencyBounds; b++)
    fmt::format_to(std::back_inserter(o), "{}{}", b ? "," : "", kLatencyBoundsUs[b]);
  o.append("],\"workers\":[");
  bool first = true;
  ForEachLive(w, [&](const ProcCounters& p) {
    const uint64_t beat = p.heartbeat_ms.load(std::memory_order_relaxed), now = MonoMs();
    fmt::format_to(std::back_inserter(o),
                   "{}{{\"slot\":{},\"pid\":{},\"generation\":{},\"heartbeat_age_ms\":{},"
                   "\"state\":\"{}\",\"rss_bytes\":{},",
                   first ? "" : ",", p.worker_slot.load(std::memory_order_relaxed),
                   p.pid.load(std::memory_order_relaxed),
                   p.generation.load(std::memory_order_relaxed), now > beat ? now - beat : 0,
                   p.draining.load(std::memory_order_relaxed) ? "draining" : "serving",
                   p.rss_bytes.load(std::memory_order_relaxed));
    AppendCounters(&o, p);
    o.append("}");
    first = false;
  });
  ProcCounters t;
  w.segment->Totals(&t);
  o.append("],\"totals\":{");
  AppendCounters(&o, t);
  const kv::Stats s = StoreStats(w);
  fmt::format_to(
      std::back_inserter(o),
      "}},\"store\":{{\"keys\":{},\"expires\":{},\"used_bytes\":{},\"capacity_bytes\":{},"
      "\"hits\":{},\"misses\":{},\"evictions\":{},\"expired\":{},\"large_values\":{},"
      "\"large_used_bytes\":{},\"large_capacity_bytes\":{}}}",
      s.keys, s.expires, s.used_bytes, s.capacity_bytes, s.hits, s.misses, s.evictions, s.expired,
      s.large_values, s.large_used_bytes, s.large_capacity_bytes);
  // Each shard's arena in use (a heat strip on /_status): one lock each.
  o.resize(o.size() - 1);
  o.append(",\"shards\":[");
  if (w.store) {
    for (uint32_t i = 0; i < w.store->shard_count(); i++) {
      kv::Stats sh;
      try {
        sh = w.store->GetShardStats(i);
      } catch (const std::exception&) {
      }
      fmt::format_to(std::back_inserter(o), "{}{:.3f}", i ? "," : "",
                     sh.capacity_bytes ? static_cast<double>(sh.used_bytes) /
                                             static_cast<double>(sh.capacity_bytes)
                                       : 0.0);
    }
  }
  o.append("]}");
  if (w.pubsub) {
    const bus::Bus& b = w.pubsub->bus();
    fmt::format_to(std::back_inserter(o),
                   ",\"bus\":{{\"channels\":{},\"patterns\":{},\"messages\":{},"
                   "\"subscribers\":{},\"slow_subscribers_closed\":{}}}",
                   b.Channels("").size(), std::max<int64_t>(b.NumPat(), 0), b.Head(),
                   t.subscribers.Get(), t.slow_subscribers_closed.Get());
  }
  const PersistShared& ps = h->persist;
  fmt::format_to(
      std::back_inserter(o),
      ",\"persistence\":{{\"enabled\":{},\"fsync\":\"{}\",\"last_snapshot_ms\":{},"
      "\"last_snapshot_duration_ms\":{},\"last_snapshot_bytes\":{},\"log_bytes\":{},"
      "\"last_error\":",
      w.config->persistence.enabled ? "true" : "false",
      FsyncPolicyName(w.config->persistence.fsync), ps.last_snapshot_ms.load(),
      ps.last_snapshot_duration_ms.load(), ps.last_snapshot_bytes.load(),
      ps.log_bytes.load() - std::min(ps.log_bytes.load(), ps.log_bytes_at_snapshot.load()));
  json::AppendJsonString(&o, persist::LastError(&ps));
  o.append("},\"listeners\":[");
  for (size_t i = 0; i < w.config->listeners.size(); i++) {
    const ListenerConf& l = w.config->listeners[i];
    o.append(i ? ",{\"name\":" : "{\"name\":");
    json::AppendJsonString(&o, l.name);
    o.append(",\"address\":");
    json::AppendJsonString(&o, l.address);
    uint64_t accepted = 0, refused = 0;  // over every process, by port (ProcCounters)
    for (uint32_t j = 0; j < kListenerCounters; j++)
      if (t.listener_port[j].load(std::memory_order_relaxed) == l.port) {
        accepted = t.listener_accepted[j].Get();
        refused = t.listener_refused[j].Get();
      }
    fmt::format_to(std::back_inserter(o),
                   ",\"port\":{},\"protocol\":\"{}\",\"tls\":{},\"accepted\":{},\"refused\":{}}}",
                   l.port, ProtocolName(l.protocol), l.tls.enabled ? "true" : "false", accepted,
                   refused);
  }
  o.append("]");
  AppendUpstreamsJson(w, &o);
  const limit::TableStats l = LimiterStats(w);
  fmt::format_to(std::back_inserter(o),
                 ",\"limiter\":{{\"entries\":{},\"capacity\":{},\"evictions\":{},"
                 "\"evictions_failed\":{}}}}}\n",
                 l.entries_used, uint64_t{limit::kSets} * limit::kWays, l.evictions,
                 l.evictions_failed);
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
  head("preforkd_workers_stalled_total", "counter",
       "Workers killed by the watchdog (timeouts.worker_stall).");
  fmt::format_to(out, "preforkd_workers_stalled_total {}\n",
                 w.segment->header()->workers_stalled.load(std::memory_order_relaxed));
  head("preforkd_workers_alive", "gauge", "Worker processes running (including draining ones).");
  fmt::format_to(out, "preforkd_workers_alive {}\n", live.size());

  struct Simple {
    const char* name;
    const char* type;
    const char* help;
    const Counter ProcCounters::*field;
  };
  static const Simple kSimple[] = {
      {"preforkd_connections_active", "gauge", "Open client connections.",
       &ProcCounters::conns_active},
      {"preforkd_connections_total", "counter", "Accepted client connections.",
       &ProcCounters::conns_total},
      {"preforkd_connections_rejected_total", "counter",
       "Connections closed at accept (over a limit).", &ProcCounters::conns_rejected},
      {"preforkd_connections_closed_output_limit_total", "counter",
       "Normal clients disconnected for unsent output over limits.client_output_*.",
       &ProcCounters::closed_output_limit},
      {"preforkd_connections_closed_clients_memory_total", "counter",
       "Clients disconnected because this worker's client buffers were over "
       "limits.clients_memory.",
       &ProcCounters::closed_clients_memory},
      {"preforkd_connections_trimmed_total", "counter",
       "Idle connections whose buffers and parser caches were freed (after 1 s of quiet).",
       &ProcCounters::conns_trimmed},
      {"preforkd_pubsub_subscribers", "gauge",
       "Connections with at least one subscription (chat clients included).",
       &ProcCounters::subscribers},
      {"preforkd_pubsub_slow_subscribers_closed_total", "counter",
       "Subscribers disconnected at pubsub.output_hard_limit or output_soft_limit.",
       &ProcCounters::slow_subscribers_closed},
      {"preforkd_tls_handshakes_total", "counter", "TLS handshakes finished.",
       &ProcCounters::tls_handshakes},
      {"preforkd_tls_resumed_total", "counter",
       "TLS handshakes that resumed a session (a ticket from any worker).",
       &ProcCounters::tls_resumed},
      {"preforkd_received_bytes_total", "counter", "Bytes read from clients.",
       &ProcCounters::bytes_in},
      {"preforkd_sent_bytes_total", "counter", "Bytes written to clients.",
       &ProcCounters::bytes_out},
  };
  for (const Simple& s : kSimple) {
    head(s.name, s.type, s.help);
    for (const ProcCounters* p : live)
      fmt::format_to(out, "{}{{{}}} {}\n", s.name, labels(*p), (p->*s.field).Get());
  }
  head("preforkd_requests_total", "counter",
       "Requests (commands, lines, HTTP requests) by protocol.");
  for (const ProcCounters* p : live)
    for (uint32_t i = 0; i < kProtoCount; i++)
      fmt::format_to(out, "preforkd_requests_total{{{},protocol=\"{}\"}} {}\n", labels(*p),
                     ProtoIndexName(i), p->requests[i].Get());
  head("preforkd_refused_total", "counter",
       "Clients refused by a security door, by reason (docs/security.md).");
  for (const ProcCounters* p : live)
    for (uint32_t i = 0; i < kRefusalCount; i++)
      fmt::format_to(out, "preforkd_refused_total{{{},reason=\"{}\"}} {}\n", labels(*p),
                     RefusalName(static_cast<Refusal>(i)), p->refused[i].Get());
  head("preforkd_tls_handshakes_by_version_total", "counter",
       "TLS handshakes finished, by protocol version.");
  for (const ProcCounters* p : live) {
    fmt::format_to(out, "preforkd_tls_handshakes_by_version_total{{{},version=\"TLSv1.2\"}} {}\n",
                   labels(*p), p->tls_v12.Get());
    fmt::format_to(out, "preforkd_tls_handshakes_by_version_total{{{},version=\"TLSv1.3\"}} {}\n",
                   labels(*p), p->tls_v13.Get());
  }
  head("preforkd_tls_handshake_failures_total", "counter",
       "TLS handshakes that failed, by reason (docs/tls.md).");
  for (const ProcCounters* p : live)
    for (uint32_t i = 0; i < kTlsFailureCount; i++)
      fmt::format_to(out, "preforkd_tls_handshake_failures_total{{{},reason=\"{}\"}} {}\n",
                     labels(*p), TlsFailureName(i), p->tls_failed[i].Get());
  head("preforkd_connections_by_protocol", "gauge", "Open client connections by protocol.");
  for (const ProcCounters* p : live)
    for (uint32_t i = 0; i < kProtoCount; i++)
      fmt::format_to(out, "preforkd_connections_by_protocol{{{},protocol=\"{}\"}} {}\n", labels(*p),
                     ProtoIndexName(i), p->conns_by_proto[i].Get());
  head("preforkd_worker_rss_bytes", "gauge", "Resident memory of each worker process.");
  for (const ProcCounters* p : live)
    fmt::format_to(out, "preforkd_worker_rss_bytes{{{}}} {}\n", labels(*p),
                   p->rss_bytes.load(std::memory_order_relaxed));
  head("preforkd_request_duration_seconds", "histogram",
       "Request latency by protocol: from the start of the input batch that held the request "
       "to its reply being queued.");
  for (const ProcCounters* p : live)
    for (uint32_t i = 0; i < kProtoCount; i++) {
      const LatencyHist& hist = p->latency[i];
      uint64_t cum = 0;
      for (uint32_t b = 0; b < kLatencyBuckets; b++) {
        cum += hist.buckets[b].Get();
        if (b < kLatencyBounds)
          fmt::format_to(
              out,
              "preforkd_request_duration_seconds_bucket{{{},protocol=\"{}\",le=\"{:g}\"}} "
              "{}\n",
              labels(*p), ProtoIndexName(i), kLatencyBoundsUs[b] / 1e6, cum);
        else
          fmt::format_to(
              out,
              "preforkd_request_duration_seconds_bucket{{{},protocol=\"{}\",le=\"+Inf\"}} {}\n",
              labels(*p), ProtoIndexName(i), cum);
      }
      fmt::format_to(out, "preforkd_request_duration_seconds_sum{{{},protocol=\"{}\"}} {:g}\n",
                     labels(*p), ProtoIndexName(i), hist.sum_us.Get() / 1e6);
      fmt::format_to(out, "preforkd_request_duration_seconds_count{{{},protocol=\"{}\"}} {}\n",
                     labels(*p), ProtoIndexName(i), cum);
    }
  head("preforkd_http_responses_total", "counter", "HTTP responses by status class.");
  for (const ProcCounters* p : live)
    for (int i = 1; i <= 5; i++)
      fmt::format_to(out, "preforkd_http_responses_total{{{},code=\"{}xx\"}} {}\n", labels(*p), i,
                     p->http_status[i].Get());
  AppendUpstreamMetrics(w, &o);

  const kv::Stats s = StoreStats(w);
  struct Metric {
    const char* name;
    const char* type;
    const char* help;
    uint64_t v;
  } kStore[] = {
      {"preforkd_kv_keys", "gauge", "Keys in the store.", s.keys},
      {"preforkd_kv_expires", "gauge", "Keys with a TTL.", s.expires},
      {"preforkd_kv_used_bytes", "gauge", "Store bytes in use (arenas and large area).",
       s.used_bytes},
      {"preforkd_kv_capacity_bytes", "gauge", "Store bytes in all (arenas and large area).",
       s.capacity_bytes},
      {"preforkd_kv_large_values", "gauge", "Values in the large-object area.", s.large_values},
      {"preforkd_kv_large_used_bytes", "gauge", "Large-object area bytes in use (whole pages).",
       s.large_used_bytes},
      {"preforkd_kv_large_capacity_bytes", "gauge", "Large-object area bytes in all.",
       s.large_capacity_bytes},
      {"preforkd_kv_hits_total", "counter", "Lookups that found a key.", s.hits},
      {"preforkd_kv_misses_total", "counter", "Lookups that found no key.", s.misses},
      {"preforkd_kv_evictions_total", "counter", "Keys evicted for memory.", s.evictions},
      {"preforkd_kv_expired_total", "counter", "Keys removed because their TTL passed.", s.expired},
  };
  const limit::TableStats l = LimiterStats(w);
  const Metric kLimiter[] = {
      {"preforkd_limiter_entries", "gauge",
       "Entries in use in the shared limiter table (limit_req, limit_conn, failed auth).",
       l.entries_used},
      {"preforkd_limiter_evictions_total", "counter",
       "Limiter entries replaced by least-recently-used eviction.", l.evictions},
  };
  for (const auto& m : kLimiter) {
    head(m.name, m.type, m.help);
    fmt::format_to(out, "{} {}\n", m.name, m.v);
  }
  for (const auto& m : kStore) {
    head(m.name, m.type, m.help);
    fmt::format_to(out, "{} {}\n", m.name, m.v);
  }
  return o;
}

namespace embedded {
extern const std::string_view kStatusPage;  // conf/status.html (tools/embed-file)
}

namespace http {

void ServeOps(const WorkerContext& w, const ListenerConf& l, const IpAddr& client,
              const Request& req, std::string_view path, std::string_view query, Reply* rep) {
  if (!l.ops_allow_all && !client.loopback()) return ErrorReply(403, rep);
  if (req.method != "GET" && req.method != "HEAD") return ErrorReply(405, rep);
  rep->status = 200;
  if (path == "/_metrics") {
    rep->content_type = "text/plain; version=0.0.4; charset=utf-8";
    rep->body = MetricsText(w);
  } else if (path == "/_status") {
    // The page (conf/status.html, embedded at build time) is self-contained:
    // it may run its inline script and style and reach only this server.
    rep->content_type = "text/html; charset=utf-8";
    rep->body = std::string(embedded::kStatusPage);
    rep->headers =
        "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
        "style-src 'unsafe-inline'; img-src data:; connect-src 'self'; frame-ancestors 'none'\r\n"
        "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n";
    return;
  } else {
    rep->content_type = "application/json";
    rep->body = path == "/_health" ? HealthJson(w) : StatsJson(w);
    if (path == "/_stats" && QueryFlag(query, "clients")) {
      rep->body.resize(rep->body.size() - 2);  // the closing "}\n"
      rep->body += ",\"clients\":";
      AppendClientsJson(w, &rep->body);
      rep->body += "}\n";
    }
  }
  rep->headers = "Cache-Control: no-store\r\n";
}

void ServeAdmin(WorkerContext& w, const ListenerConf& l, const IpAddr& client, const Request& req,
                std::string_view path, std::string_view query, Reply* rep) {
  AdminReply a;
  if (!l.ops_allow_all && !client.loopback())
    a = AdminError(403, "the admin endpoints answer loopback peers only (ops_allow: loopback)");
  else if (path == "/_admin/broadcast")
    a = AdminBroadcast(w, req, query, client);
  else
    a = AdminError(404, "no such admin endpoint (there is POST /_admin/broadcast)");
  rep->status = a.status;
  rep->content_type = "application/json";
  rep->body = std::move(a.body);
  rep->headers = std::move(a.headers);
  rep->headers += "Cache-Control: no-store\r\n";
}

}  // namespace http

}  // namespace pf
