// worker/security.h: the doors every protocol shares (docs/security.md):
// protected mode and limit_conn at accept, limit_req per request, failed
// authentication per client address, the client address behind trusted
// proxies, and one place that counts and logs each refusal.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "shared/shm.h"
#include "shared/util/cidr.h"

namespace pf {

class Connection;
struct ListenerConf;
struct WorkerContext;

// Why a client was refused; each is a counter (/_stats, /_metrics:
// preforkd_refused_total{reason}) and a warning line (at most one a second).
const char* RefusalName(Refusal r);

// Counts the refusal and logs it with the client's address (rate-limited).
void NoteRefusal(WorkerContext& w, Refusal r, std::string_view address, std::string_view what);

// At accept: the line that refuses a client before its session starts
// (protected mode, limit_conn), in the listener's protocol; "" = admit.
// On admission under limit_conn, *conn_key is the key to release at close.
std::string AdmitConnection(WorkerContext& w, const ListenerConf& l, const IpAddr& addr,
                            uint64_t* conn_key);
void ReleaseConnection(WorkerContext& w, uint64_t conn_key);

// limit_req of listener `l` for one request from `address` (an IP as
// text): 0 = go on, else the milliseconds after which one request fits.
uint64_t RequestRefusedFor(WorkerContext& w, const ListenerConf& l, std::string_view address);

// Failed authentication per client address (limits.auth_failures_per_minute,
// over all workers). Throttled: true while the address may not try again.
bool AuthThrottled(WorkerContext& w, std::string_view address);
void NoteAuthResult(WorkerContext& w, std::string_view address, bool ok, std::string_view what);

// The client of an HTTP request: the peer, or, when the peer is one of
// trusted_proxies, the nearest untrusted address of X-Forwarded-For (as
// nginx' real_ip_recursive).
IpAddr ClientAddress(const WorkerContext& w, const IpAddr& peer,
                     const std::string* x_forwarded_for);

}  // namespace pf
