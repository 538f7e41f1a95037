// worker/http/access_log.h: the HTTP access log: one file shared by all workers
// (O_APPEND), buffered per worker and written in whole lines, flushed every
// second and whenever the buffer passes 64 KiB; reopened on SIGUSR1.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

struct event_base;

namespace pf::http {
struct Request;
}

namespace pf::accesslog {

// One line in nginx's "combined" format plus the request time in seconds
// (docs/operations.md): `peer` is "ip:port" (the port is left out), `req`
// may be null (a request that did not parse).
// `addr` is the client's IP address (no port): the peer, or the address a
// trusted proxy forwarded.
std::string FormatLine(std::string_view addr, const http::Request* req, int status,
                       uint64_t body_bytes, uint64_t took_ms);

// Opens `path` ("off" = disabled) once per process and arms the flush timer
// on `base`. Later calls are no-ops.
void Init(const std::string& path, event_base* base);
bool Enabled();
// Appends one line (the caller includes the trailing '\n').
void Append(std::string_view line);
// Writes what is buffered. Safe to call when disabled.
void Flush();
// Flushes, then reopens the file at its path (logrotate moved it).
bool Reopen();

}  // namespace pf::accesslog
