// worker/security.cc: the shared doors of every protocol (security.h).
#include "worker/security.h"

#include <event2/buffer.h>
#include <spdlog/spdlog.h>

#include "shared/config.h"
#include "shared/limiter.h"
#include "shared/util/clock.h"
#include "worker/connection.h"
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

void NoteRefusal(WorkerContext& w, Refusal r, std::string_view address, std::string_view what) {
  if (w.counters) w.counters->refused[r].Add(1);
  w.LogLimited("refused {} ({}): {}", address, RefusalName(r), what);
}

std::string AdmitConnection(WorkerContext& w, const ListenerConf& l, const IpAddr& addr,
                            uint64_t* conn_key) {
  *conn_key = 0;
  const Config& cfg = *w.config;
  const bool guarded = l.protocol == Protocol::kResp || l.protocol == Protocol::kKvJson;
  if (guarded && cfg.protected_mode && cfg.kv.password.empty() &&
      !AnyContains(cfg.local_networks, addr)) {
    NoteRefusal(w, kRefusedProtectedMode, addr.ToString(), l.name);
    return RefusalLine(
        l.protocol, "DENIED",
        "preforkd is running in protected mode: no kv.password is set, so only clients from "
        "local_networks may connect. Set kv.password in the configuration (then AUTH), or "
        "set protected_mode: false if every host that reaches this port is trusted, and reload");
  }
  if (l.limit_conn > 0 && w.limiter) {
    const std::string text = addr.ToString();
    const uint64_t key = limit::KeyOf("conn", l.name, text);
    if (!w.limiter->ConnAcquire(key, w.owner, l.limit_conn)) {
      NoteRefusal(w, kRefusedConnLimited, text, l.name);
      return RefusalLine(l.protocol, "ERR",
                         "too many connections from your address (limit_conn " +
                             std::to_string(l.limit_conn) + " on listener " + l.name + ")");
    }
    *conn_key = key;
  }
  return "";
}

void ReleaseConnection(WorkerContext& w, uint64_t conn_key) {
  if (conn_key && w.limiter) w.limiter->ConnRelease(conn_key, w.owner);
}

uint64_t RequestRefusedFor(WorkerContext& w, const ListenerConf& l, std::string_view address) {
  if (!l.limit_req.enabled() || !w.limiter) return 0;
  const limit::ReqResult r = w.limiter->Request(limit::KeyOf("req", l.name, address),
                                                l.limit_req.rate, l.limit_req.burst, MonoMs());
  if (r.allowed) return 0;
  NoteRefusal(w, kRefusedRateLimited, address, l.name);
  return r.retry_after_ms ? r.retry_after_ms : 1;
}

bool AuthThrottled(WorkerContext& w, std::string_view address) {
  if (!w.limiter) return false;
  const uint64_t key = limit::KeyOf("auth", "", address);
  if (w.limiter->AuthFailures(key, MonoMs()) < w.config->limits.auth_failures_per_minute)
    return false;
  // A refused attempt counts too: the address stays out while it keeps trying.
  w.limiter->NoteAuthFailure(key, MonoMs());
  NoteRefusal(w, kRefusedAuthThrottled, address, "too many failed authentications");
  return true;
}

void NoteAuthResult(WorkerContext& w, std::string_view address, bool ok, std::string_view what) {
  if (!w.limiter) return;
  const uint64_t key = limit::KeyOf("auth", "", address);
  if (ok) {
    w.limiter->ClearAuthFailures(key);
    return;
  }
  const uint32_t n = w.limiter->NoteAuthFailure(key, MonoMs());
  if (w.counters) w.counters->refused[kRefusedAuthFailed].Add(1);
  w.LogLimited("failed authentication from {} ({}): {} in the last minute", address, what, n);
}

IpAddr ClientAddress(const WorkerContext& w, const IpAddr& peer,
                     const std::string* x_forwarded_for) {
  const auto& trusted = w.config->trusted_proxies;
  if (trusted.empty() || !x_forwarded_for || !AnyContains(trusted, peer)) return peer;
  // Right to left: each hop appended the address it received from; the first
  // one that is not a trusted proxy is the client.
  std::string_view list = *x_forwarded_for;
  IpAddr last = peer;
  while (!list.empty()) {
    const size_t comma = list.rfind(',');
    std::string_view item = comma == std::string_view::npos ? list : list.substr(comma + 1);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    IpAddr a;
    if (!IpAddr::Parse(item, &a)) return last;  // garbage: trust no further
    if (!AnyContains(trusted, a)) return a;
    last = a;
  }
  return last;
}

}  // namespace pf
