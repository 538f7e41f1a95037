// worker/security.h: the doors every protocol shares (docs/security.md):
// protected mode and limit_conn at accept, limit_req per request, failed
// authentication per client address, the client address behind trusted
// proxies, and one place that counts and logs each refusal.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shared/shm.h"
#include "shared/util/cidr.h"

namespace pf {

class Connection;
struct ListenerConf;
struct WorkerContext;
namespace http {
struct Request;
}

// Why a client was refused; each is a counter (/_stats, /_metrics:
// preforkd_refused_total{reason}) and a warning line (at most one a second).
const char* RefusalName(Refusal r);

// "METHOD target HTTP/x.y": the first line a browser sends, which no line
// protocol client does (a web page can POST to any loopback port).
bool LooksLikeHttpRequestLine(std::string_view line);

// Counts the refusal and logs it with the client's address (rate-limited).
void NoteRefusal(WorkerContext& w, Refusal r, const IpAddr& client, std::string_view what);

// At accept: the line that refuses a client before its session starts
// (protected mode, limit_conn), in the listener's protocol; "" = admit.
// On admission under limit_conn, *conn_key is the key to release at close.
std::string AdmitConnection(WorkerContext& w, const ListenerConf& l, const IpAddr& addr,
                            uint64_t* conn_key);
void ReleaseConnection(WorkerContext& w, uint64_t conn_key);

// limit_req of listener `l` for one request from `client`: 0 = go on, else
// the milliseconds after which one request fits. Every per-address count is
// kept under IpAddr::LimitKey (an IPv6 client's /64).
uint64_t RequestRefusedFor(WorkerContext& w, const ListenerConf& l, const IpAddr& client);

// Failed authentication per client address (limits.auth_failures_per_minute,
// over all workers). Throttled: true while the address may not try again.
bool AuthThrottled(WorkerContext& w, const IpAddr& client);
void NoteAuthResult(WorkerContext& w, const IpAddr& client, bool ok, std::string_view what);

// The client of an HTTP request: the peer, or, when the peer is one of
// trusted_proxies, the nearest untrusted address of X-Forwarded-For (all its
// lines, as nginx' real_ip_recursive). An unparsable hop makes the client
// unknown (family 0: not loopback, no address).
IpAddr ClientAddress(const WorkerContext& w, const IpAddr& peer, const http::Request& req);
// The walk itself, over the joined header value.
IpAddr ClientFromForwarded(const std::vector<Cidr>& trusted, const IpAddr& peer,
                           std::string_view x_forwarded_for);

}  // namespace pf
