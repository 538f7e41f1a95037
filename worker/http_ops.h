// worker/http_ops.h: the HTTP operations endpoints' bodies: /_health (JSON),
// /_stats (JSON: per worker process, totals, store) and /_metrics
// (Prometheus text format 0.0.4), all read from the shared segment.
#pragma once

#include <string>

namespace pf {

struct WorkerContext;

std::string HealthJson(const WorkerContext& w);
std::string StatsJson(const WorkerContext& w);
std::string MetricsText(const WorkerContext& w);

}  // namespace pf
