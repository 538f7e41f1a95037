// worker/http/ops.h: the HTTP operations endpoints: /_health (JSON),
// /_stats (JSON: per worker process, totals, store) and /_metrics
// (Prometheus text format 0.0.4), all read from the shared segment; and the
// admin endpoint POST /_admin/broadcast (docs/http.md).
#pragma once

#include <string>
#include <string_view>

#include "shared/util/cidr.h"
#include "worker/http/reply.h"

namespace pf {

struct ListenerConf;
struct WorkerContext;
namespace http {
struct Request;

// GET /_health, /_stats, /_metrics, for the clients `ops_allow` lets in
// (`client`: the peer, or the address a trusted proxy forwarded).
// /_stats?clients=1 adds "clients": every worker's clients (CLIENT LIST).
void ServeOps(const WorkerContext& w, const ListenerConf& l, const IpAddr& client,
              const Request& req, std::string_view path, std::string_view query, Reply* rep);
// /_admin/...: answers in JSON, errors included (a tool reads them, not a browser).
void ServeAdmin(WorkerContext& w, const ListenerConf& l, const IpAddr& client, const Request& req,
                std::string_view path, std::string_view query, Reply* rep);

}  // namespace http

std::string HealthJson(const WorkerContext& w);
// The client registry (every worker's clients) as a JSON array.
void AppendClientsJson(const WorkerContext& w, std::string* out);
std::string StatsJson(const WorkerContext& w);
std::string MetricsText(const WorkerContext& w);

// An admin endpoint's answer: JSON, {"ok":true,...} or {"ok":false,"error":"..."}.
struct AdminReply {
  int status = 200;
  std::string body;
  std::string headers;  // extra header lines, each ending "\r\n"
};
AdminReply AdminError(int status, std::string_view message);
// POST /_admin/broadcast?listener=NAME[&exclude=ID,ID...], body = the text.
// The caller has applied ops_allow; this checks the admin token and the
// request, then queues the broadcast on the bus. `peer` (the client's
// address) is for the failed-authentication count and the log.
AdminReply AdminBroadcast(WorkerContext& w, const http::Request& req, std::string_view query,
                          const IpAddr& peer);

}  // namespace pf
