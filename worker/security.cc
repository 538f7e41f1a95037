// worker/security.cc: the shared doors of every protocol (security.h).
#include "worker/security.h"

#include <event2/buffer.h>
#include <spdlog/spdlog.h>

#include "shared/config.h"
#include "shared/limiter.h"
#include "shared/util/clock.h"
#include "worker/connection.h"
#include "worker/http/parse.h"
#include "worker/protocol.h"
#include "worker/worker.h"

namespace pf {
namespace {

// The refusal line of a protocol, before any session state exists.
std::string RefusalLine(Protocol p, std::string_view code, std::string_view text) {
  switch (p) {
    case Protocol::kResp:
      return "-" + std::string(code) + " " + std::string(text) + "\r\n";
    case Protocol::kKvJson:
      // The text is ours (ASCII, no quotes or backslashes).
      return "{\"ok\":false,\"error\":{\"code\":\"" + std::string(code) + "\",\"message\":\"" +
             std::string(text) + "\"}}\n";
    case Protocol::kHttp: {
      const std::string body = std::string(text) + "\n";
      const bool busy = code != "DENIED";
      return std::string(busy ? "HTTP/1.1 503 Service Unavailable\r\n"
                              : "HTTP/1.1 403 Forbidden\r\n") +
             "Server: preforkd\r\nContent-Type: text/plain\r\nContent-Length: " +
             std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    }
    case Protocol::kChat:
      return "! " + std::string(text) + "\n";
    case Protocol::kEcho:
      return std::string(text) + "\n";
  }
  return std::string(text) + "\n";
}

class RefusedSession final : public Session {
 public:
  void OnRead(Connection&, evbuffer* in) override { evbuffer_drain(in, evbuffer_get_length(in)); }
};

}  // namespace

std::unique_ptr<Session> MakeRefusedSession() { return std::make_unique<RefusedSession>(); }

const char* RefusalName(Refusal r) {
  switch (r) {
    case kRefusedCrossProtocol:
      return "cross_protocol";
    case kRefusedBadLines:
      return "bad_lines";
    case kRefusedProtectedMode:
      return "protected_mode";
    case kRefusedMisdirected:
      return "misdirected";
    case kRefusedAuthFailed:
      return "auth_failed";
    case kRefusedAuthThrottled:
      return "auth_throttled";
    case kRefusedRateLimited:
      return "rate_limited";
    case kRefusedConnLimited:
      return "conn_limited";
    case kRefusalCount:
      break;
  }
  return "?";
}

bool LooksLikeHttpRequestLine(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp1 == 0 || sp2 == sp1) return false;
  for (char ch : line.substr(0, sp1))
    if (ch < 'A' || ch > 'Z') return false;
  const std::string_view version = line.substr(sp2 + 1);
  return version.size() == 8 && version.substr(0, 5) == "HTTP/" && version[6] == '.';
}

void NoteRefusal(WorkerContext& w, Refusal r, const IpAddr& client, std::string_view what) {
  if (w.counters) w.counters->refused[r].Add(1);
  w.LogLimited("refused {} ({}): {}", client.family ? client.ToString() : "an unknown client",
               RefusalName(r), what);
}

std::string AdmitConnection(WorkerContext& w, const ListenerConf& l, const IpAddr& addr,
                            uint64_t* conn_key) {
  *conn_key = 0;
  const Config& cfg = *w.config;
  const bool guarded = l.protocol == Protocol::kResp || l.protocol == Protocol::kKvJson;
  if (guarded && cfg.protected_mode && cfg.kv.password.empty() &&
      !AnyContains(cfg.local_networks, addr)) {
    NoteRefusal(w, kRefusedProtectedMode, addr, l.name);
    return RefusalLine(
        l.protocol, "DENIED",
        "preforkd is running in protected mode: no kv.password is set, so only clients from "
        "local_networks may connect. Set kv.password in the configuration (then AUTH), or "
        "set protected_mode: false if every host that reaches this port is trusted, and reload");
  }
  // A process without a counter entry has no owner to count under.
  if (l.limit_conn > 0 && w.limiter && w.owner >= 0) {
    const uint64_t key = limit::KeyOf("conn", l.name, addr.LimitKey());
    const limit::ConnResult r = w.limiter->ConnAcquire(key, w.owner, l.limit_conn);
    if (r == limit::ConnResult::kRefused) {
      NoteRefusal(w, kRefusedConnLimited, addr, l.name);
      return RefusalLine(l.protocol, "ERR",
                         "too many connections from your address (limit_conn " +
                             std::to_string(l.limit_conn) + " on listener " + l.name + ")");
    }
    if (r == limit::ConnResult::kCounted) *conn_key = key;
  }
  return "";
}

void ReleaseConnection(WorkerContext& w, uint64_t conn_key) {
  if (conn_key && w.limiter) w.limiter->ConnRelease(conn_key, w.owner);
}

uint64_t RequestRefusedFor(WorkerContext& w, const ListenerConf& l, const IpAddr& client) {
  if (!l.limit_req.enabled() || !w.limiter) return 0;
  const limit::ReqResult r = w.limiter->Request(limit::KeyOf("req", l.name, client.LimitKey()),
                                                l.limit_req.rate, l.limit_req.burst, MonoMs());
  if (r.allowed) return 0;
  NoteRefusal(w, kRefusedRateLimited, client, l.name);
  return r.retry_after_ms ? r.retry_after_ms : 1;
}

bool AuthThrottled(WorkerContext& w, const IpAddr& client) {
  if (!w.limiter) return false;
  const uint64_t key = limit::KeyOf("auth", "", client.LimitKey());
  if (w.limiter->AuthFailures(key, MonoMs()) < w.config->limits.auth_failures_per_minute)
    return false;
  // A refused attempt counts too: the address stays out while it keeps trying.
  w.limiter->NoteAuthFailure(key, MonoMs());
  NoteRefusal(w, kRefusedAuthThrottled, client, "too many failed authentications");
  return true;
}

void NoteAuthResult(WorkerContext& w, const IpAddr& client, bool ok, std::string_view what) {
  if (!w.limiter) return;
  // A success does not clear the count: one right password (any password
  // when kv.password is empty) between guesses must not reset the guessing
  // of another secret. The count ends a minute after the last failure.
  if (ok) return;
  const uint64_t key = limit::KeyOf("auth", "", client.LimitKey());
  const uint32_t n = w.limiter->NoteAuthFailure(key, MonoMs());
  if (w.counters) w.counters->refused[kRefusedAuthFailed].Add(1);
  w.LogLimited("failed authentication from {} ({}): {} in the last minute",
               client.family ? client.ToString() : "an unknown client", what, n);
}

IpAddr ClientAddress(const WorkerContext& w, const IpAddr& peer, const http::Request& req) {
  const auto& trusted = w.config->trusted_proxies;
  if (trusted.empty() || !AnyContains(trusted, peer)) return peer;
  // Every X-Forwarded-For line, in order, is one list (RFC 9110 5.3): a
  // proxy that appends its own line after the client's (haproxy) is read
  // from its line, not the client's.
  std::string list;
  for (const auto& [name, value] : req.headers)
    if (name == "x-forwarded-for") list += (list.empty() ? "" : ",") + value;
  return ClientFromForwarded(trusted, peer, list);
}

IpAddr ClientFromForwarded(const std::vector<Cidr>& trusted, const IpAddr& peer,
                           std::string_view list) {
  // Right to left: each hop appended the address it received from; the first
  // one that is not a trusted proxy is the client.
  IpAddr last = peer;
  while (!list.empty()) {
    const size_t comma = list.rfind(',');
    std::string_view item = comma == std::string_view::npos ? list : list.substr(comma + 1);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    IpAddr a;
    // Not an address where a trusted hop put one: the client is unknown
    // (never the proxy's own, often loopback, address).
    if (!IpAddr::Parse(item, &a)) return IpAddr{};
    if (!AnyContains(trusted, a)) return a;
    last = a;
  }
  return last;  // every hop was a trusted proxy: the request is the proxy's own
}

}  // namespace pf
