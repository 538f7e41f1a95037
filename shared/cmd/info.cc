// shared/cmd/info.cc: INFO, in Redis 7.0's sections and field names (server.c
// genRedisInfoString), from the worker's numbers, the store and the shared
// counters, and the per-command and per-error statistics of every process;
// and CONFIG RESETSTAT, which moves the baseline INFO subtracts.
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "shared/cmd/internal.h"
#include "shared/persist/log_writer.h"
#include "shared/persist/persist.h"
#include "shared/util/clock.h"

namespace pf {
namespace {

void BytesToHuman(std::string* b, uint64_t n) {
  char tmp[48];
  int len;
  double d = static_cast<double>(n);
  if (n < 1024)
    len = std::snprintf(tmp, sizeof tmp, "%lluB", static_cast<unsigned long long>(n));
  else if (n < (1ull << 20))
    len = std::snprintf(tmp, sizeof tmp, "%.2fK", d / 1024);
  else if (n < (1ull << 30))
    len = std::snprintf(tmp, sizeof tmp, "%.2fM", d / (1 << 20));
  else if (n < (1ull << 40))
    len = std::snprintf(tmp, sizeof tmp, "%.2fG", d / (1ull << 30));
  else
    len = std::snprintf(tmp, sizeof tmp, "%.2fT", d / (1ull << 40));
  b->append(tmp, static_cast<size_t>(len));
}

struct InfoBuilder {
  std::string* b;
  int sections = 0;
  void Section(std::string_view title) {
    if (sections++) *b += "\r\n";
    *b += "# ";
    *b += title;
    *b += "\r\n";
  }
  void S(std::string_view k, std::string_view v) {
    *b += k;
    *b += ':';
    AppendSafe(b, v);
    *b += "\r\n";
  }
  void U(std::string_view k, uint64_t v) {
    *b += k;
    *b += ':';
    AppendU64(b, v);
    *b += "\r\n";
  }
  void I(std::string_view k, int64_t v) {
    *b += k;
    *b += ':';
    AppendI64(b, v);
    *b += "\r\n";
  }
  void Human(std::string_view k, uint64_t v) {
    *b += k;
    *b += ':';
    BytesToHuman(b, v);
    *b += "\r\n";
  }
  void Seconds(std::string_view k, uint64_t us) {  // "12.345678", as Redis prints rusage
    char tmp[48];
    std::snprintf(tmp, sizeof tmp, "%llu.%06llu", static_cast<unsigned long long>(us / 1000000),
                  static_cast<unsigned long long>(us % 1000000));
    S(k, tmp);
  }
};

uint64_t Less(uint64_t v, uint64_t base) { return v > base ? v - base : 0; }
uint64_t Less(uint64_t v, const std::atomic<uint64_t>& base) {
  return Less(v, base.load(std::memory_order_relaxed));
}
void Set(Counter& c, uint64_t v) { c.v.store(v, std::memory_order_relaxed); }

uint64_t Us(const timeval& tv) {
  return static_cast<uint64_t>(tv.tv_sec) * 1000000 + static_cast<uint64_t>(tv.tv_usec);
}

std::string Executable() {
  char path[4096];
  const ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  return n > 0 ? std::string(path, static_cast<size_t>(n)) : std::string();
}

uint64_t ProcessRssBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long long size = 0, resident = 0;
  const int got = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return got == 2 ? resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) : 0;
}

uint64_t TotalSystemMemory() {
  struct sysinfo si;
  if (sysinfo(&si) != 0) return 0;
  return static_cast<uint64_t>(si.totalram) * si.mem_unit;
}

// 16 KiB: a worker-local buffer, not a stack array.
CmdStatsRow& CommandStatsBuf() {
  static thread_local CmdStatsRow row;
  return row;
}

// Every process' command and error counters (this process' own when there
// is no segment: tests), less the CONFIG RESETSTAT baseline when `net`.
// False when nothing is counted.
bool SumStats(const CommandEnv& env, CmdStatsRow* out, bool net) {
  if (!env.segment && !env.cmd_stats) return false;
  std::memset(static_cast<void*>(out), 0, sizeof *out);
  if (env.segment)
    env.segment->SumCommandStats(out);
  else
    AddInto(out, *env.cmd_stats);
  if (!net || !env.stats) return true;
  const CmdStatsRow& base = env.stats->base_cmds;
  for (uint32_t i = 0; i < kMaxCommandStats; i++) {
    CmdStat& s = out->cmd[i];
    const CmdStat& b = base.cmd[i];
    Set(s.calls, Less(s.calls.Get(), b.calls.Get()));
    Set(s.ticks, Less(s.ticks.Get(), b.ticks.Get()));
    Set(s.rejected, Less(s.rejected.Get(), b.rejected.Get()));
    Set(s.failed, Less(s.failed.Get(), b.failed.Get()));
  }
  for (uint32_t i = 0; i <= kMaxErrorStats; i++)
    Set(out->errors[i], Less(out->errors[i].Get(), base.errors[i].Get()));
  return true;
}

// errorstat lines in name order (Redis keeps them in a radix tree); entries
// of one name (two processes named it at once) are added together.
std::vector<std::pair<std::string, uint64_t>> ErrorCounts(const StatsShared* ss,
                                                          const CmdStatsRow& sums) {
  std::vector<std::pair<std::string, uint64_t>> v;
  if (ss) {
    for (uint32_t i = 0; i < kMaxErrorStats; i++) {
      const ErrorName& e = ss->error_names.e[i];
      const uint64_t n = sums.errors[i].Get();
      if (e.state.load(std::memory_order_acquire) != 2 || n == 0) continue;
      v.emplace_back(std::string(e.name, strnlen(e.name, sizeof e.name)), n);
    }
  }
  std::sort(v.begin(), v.end());
  std::vector<std::pair<std::string, uint64_t>> merged;
  for (auto& [name, n] : v) {
    if (!merged.empty() && merged.back().first == name)
      merged.back().second += n;
    else
      merged.emplace_back(std::move(name), n);
  }
  if (const uint64_t other = sums.errors[kErrorStatOther].Get())
    merged.emplace_back("OTHER", other);  // prefixes past the table's kMaxErrorStats
  return merged;
}

enum InfoSection : unsigned {
  kServer = 1u << 0,
  kClients = 1u << 1,
  kMemory = 1u << 2,
  kPersistence = 1u << 3,
  kStats = 1u << 4,
  kReplication = 1u << 5,
  kCpu = 1u << 6,
  kModules = 1u << 7,
  kCommandstats = 1u << 8,
  kErrorstats = 1u << 9,
  kCluster = 1u << 10,
  kKeyspace = 1u << 11,
  kPreforkd = 1u << 12,
  // Redis 7.0's default sections, plus ours; "all" adds commandstats (we
  // keep no latency histograms, so there is no latencystats section).
  kDefault = kServer | kClients | kMemory | kPersistence | kStats | kReplication | kCpu | kModules |
             kErrorstats | kCluster | kKeyspace | kPreforkd,
  kAll = kDefault | kCommandstats,
};

constexpr std::pair<std::string_view, unsigned> kSectionNames[] = {
    {"server", kServer},
    {"clients", kClients},
    {"memory", kMemory},
    {"persistence", kPersistence},
    {"stats", kStats},
    {"replication", kReplication},
    {"cpu", kCpu},
    {"modules", kModules},
    {"commandstats", kCommandstats},
    {"errorstats", kErrorstats},
    {"cluster", kCluster},
    {"keyspace", kKeyspace},
    {"preforkd", kPreforkd},
    {"default", kDefault},
    {"all", kAll},
    {"everything", kAll},  // Redis adds module sections; we have none
};

unsigned WantedSections(const CommandCtx& c) {
  if (c.argc() == 1) return kDefault;
  unsigned want = 0;
  for (size_t j = 1; j < c.argc(); ++j)
    for (const auto& [name, bits] : kSectionNames)
      if (EqualsNoCase(c.arg(j), name)) want |= bits;
  return want;  // unknown sections add nothing, as in Redis
}

}  // namespace

void CmdInfo(CommandCtx& c) {
  const unsigned want = WantedSections(c);
  ServerInfo si = GetServerInfo(c.env, (want & (kStats | kCpu | kPreforkd)) != 0);
  const StatsShared* ss = c.env.stats;
  const StatsBaseline* base = ss ? &ss->base : nullptr;
  CmdStatsRow* sums = nullptr;
  if (want & (kStats | kCommandstats | kErrorstats)) {
    sums = &CommandStatsBuf();
    if (SumStats(c.env, sums, true)) {
      uint64_t calls = 0;
      for (uint32_t i = 0; i < kMaxCommandStats; i++) calls += sums->cmd[i].calls.Get();
      si.total_commands_processed = calls;
    } else {
      sums = nullptr;
    }
  }
  kv::Stats st;
  if ((want & (kMemory | kStats | kKeyspace)) && c.env.store) st = c.env.store->GetStats();
  const Config* cfg = c.env.config;
  const bool lru = cfg && cfg->kv.eviction == Eviction::kAllKeysLru;
  const PersistShared* ps = c.env.persist;

  std::string& b = ErrBuf();
  InfoBuilder ib{&b};
  if (want & kServer) {
    ib.Section("Server");
    ib.S("redis_version", kRedisCompatVersion);
    ib.S("preforkd_version", si.version);
    ib.S("redis_git_sha1", "00000000");
    ib.S("redis_git_dirty", "0");
    ib.S("redis_mode", "standalone");
    struct utsname u;
    std::string os;
    if (uname(&u) == 0) {
      os = std::string(u.sysname) + " " + u.release + " " + u.machine;
    }
    ib.S("os", os);
    ib.U("arch_bits", sizeof(void*) * 8);
    ib.S("multiplexing_api", "epoll");
    ib.S("atomicvar_api", "c11-builtin");
#if defined(__GNUC__) && !defined(__clang__)
    ib.S("gcc_version", std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__) + "." +
                            std::to_string(__GNUC_PATCHLEVEL__));
#endif
    ib.I("process_id", si.pid);
    ib.S("run_id", si.run_id);
    // preforkd's, kept here where tools have always read them.
    ib.I("worker_slot", si.worker_slot);
    ib.U("workers", si.workers);
    ib.U("tcp_port", si.tcp_port);
    ib.U("server_time_usec", c.now_ms * 1000);
    ib.U("uptime_in_seconds", si.uptime_s);
    ib.U("uptime_in_days", si.uptime_s / 86400);
    // serverCron's work that we have is the active expiry sweep.
    const uint32_t sweep_ms = cfg && cfg->kv.sweep_interval_ms ? cfg->kv.sweep_interval_ms : 100;
    ib.U("hz", std::max<uint32_t>(1, 1000 / sweep_ms));
    ib.U("configured_hz", std::max<uint32_t>(1, 1000 / sweep_ms));
    ib.S("executable", Executable());
    ib.S("config_file", cfg ? cfg->path : "");
    ib.U("io_threads_active", 0);
    ib.U("reloads", si.reloads);
  }
  if (want & kClients) {
    ib.Section("Clients");
    ib.U("connected_clients", si.connected_clients);
    ib.U("cluster_connections", 0);
    ib.U("maxclients", cfg ? cfg->limits.max_connections : 0);
    ib.U("blocked_clients", 0);  // no command blocks a client
    ib.U("tracking_clients", 0);
    ib.U("clients_in_timeout_table", 0);
  }
  if (want & kMemory) {
    ib.Section("Memory");
    ib.U("used_memory", st.used_bytes);
    ib.Human("used_memory_human", st.used_bytes);
    const uint64_t rss = ProcessRssBytes();
    ib.U("used_memory_rss", rss);
    ib.Human("used_memory_rss_human", rss);
    const uint64_t sys = TotalSystemMemory();
    ib.U("total_system_memory", sys);
    ib.Human("total_system_memory_human", sys);
    ib.U("maxmemory", st.capacity_bytes);
    ib.Human("maxmemory_human", st.capacity_bytes);
    ib.S("maxmemory_policy", lru ? "allkeys-lru" : "noeviction");
    // Redis' definition, rss / used_memory, with this worker's rss (which
    // includes the pages of the shared segment it touched).
    char ratio[32];
    std::snprintf(
        ratio, sizeof ratio, "%.2f",
        st.used_bytes ? static_cast<double>(rss) / static_cast<double>(st.used_bytes) : 0.0);
    ib.S("mem_fragmentation_ratio", ratio);
    ib.S("mem_allocator", "preforkd-arena");
    // The large-object area (values of 16 KiB and more), part of the figures above.
    ib.U("large_memory_used", st.large_used_bytes);
    ib.U("large_memory", st.large_capacity_bytes);
    ib.U("large_values", st.large_values);
  }
  if (want & kPersistence) {
    ib.Section("Persistence");
    ib.U("loading", 0);  // the master loads before the first worker runs
    ib.U("async_loading", 0);
    if (!ps) {
      ib.U("persistence_enabled", 0);
      ib.U("rdb_bgsave_in_progress", 0);
      ib.S("rdb_last_bgsave_status", "ok");
      ib.U("aof_enabled", 0);
      ib.U("aof_rewrite_in_progress", 0);
    } else {
      ib.U("persistence_enabled", 1);
      ib.S("persistence_dir", cfg ? cfg->persistence.dir : "");
      ib.S("aof_fsync", FsyncPolicyName(static_cast<FsyncPolicy>(ps->fsync.load())));
      ib.U("rdb_bgsave_in_progress", ps->snapshot_in_progress.load());
      ib.U("rdb_saves", ps->snapshots_done.load());
      ib.S("rdb_last_bgsave_status", ps->last_snapshot_ok.load() ? "ok" : "err");
      ib.U("rdb_last_save_time", ps->last_snapshot_ms.load() / 1000);
      ib.U("rdb_last_bgsave_time_ms", ps->last_snapshot_duration_ms.load());
      ib.U("snapshot_last_keys", ps->last_snapshot_keys.load());
      ib.U("snapshot_last_bytes", ps->last_snapshot_bytes.load());
      ib.U("aof_enabled", 1);
      ib.U("aof_rewrite_in_progress", ps->snapshot_in_progress.load());
      const uint64_t logged = ps->log_bytes.load(), lbase = ps->log_bytes_at_snapshot.load();
      ib.U("aof_current_size", logged > lbase ? logged - lbase : 0);
      ib.U("aof_written_bytes_total", logged);
      const persist::LogWriter* lw = c.env.log;
      ib.U("aof_pending_bytes", lw ? lw->appended() - lw->written() : 0);
      ib.U("aof_pending_fsync_bytes", lw && lw->policy() != FsyncPolicy::kNo
                                          ? lw->written() - std::min(lw->written(), lw->synced())
                                          : 0);
      ib.S("aof_last_write_status", lw && lw->failing() ? "err" : "ok");
      ib.U("aof_write_errors", ps->write_errors.load());
      uint64_t at = 0;
      const std::string err = persist::LastError(ps, &at);
      ib.S("persistence_last_error", err);
      ib.U("persistence_last_error_time", at / 1000);
      ib.U("loaded_keys", ps->loaded_keys.load());
      ib.U("loaded_log_records", ps->loaded_records.load());
      ib.U("loading_time_ms", ps->load_ms.load());
      ib.U("loading_dropped_tail_bytes", ps->dropped_tail_bytes.load());
    }
  }
  if (want & kStats) {
    const auto less = [base](uint64_t v, const std::atomic<uint64_t> StatsBaseline::*f) {
      return base ? Less(v, base->*f) : v;
    };
    uint64_t errors = 0;
    if (sums)
      for (uint32_t i = 0; i <= kMaxErrorStats; i++) errors += sums->errors[i].Get();
    ib.Section("Stats");
    ib.U("total_connections_received",
         less(si.total_connections_received, &StatsBaseline::conns_total));
    ib.U("total_commands_processed", si.total_commands_processed);
    // Requests of every protocol on every worker, per second (HTTP and
    // kv-json count too: they are the same store's operations).
    ib.U("instantaneous_ops_per_sec", static_cast<uint64_t>(si.instantaneous_ops + 0.5));
    ib.U("total_net_input_bytes", less(si.total_net_input_bytes, &StatsBaseline::bytes_in));
    ib.U("total_net_output_bytes", less(si.total_net_output_bytes, &StatsBaseline::bytes_out));
    ib.U("total_net_repl_input_bytes", 0);  // no replication
    ib.U("total_net_repl_output_bytes", 0);
    char kbps[32];
    std::snprintf(kbps, sizeof kbps, "%.2f", si.instantaneous_in_bytes / 1024);
    ib.S("instantaneous_input_kbps", kbps);
    std::snprintf(kbps, sizeof kbps, "%.2f", si.instantaneous_out_bytes / 1024);
    ib.S("instantaneous_output_kbps", kbps);
    ib.S("instantaneous_input_repl_kbps", "0.00");
    ib.S("instantaneous_output_repl_kbps", "0.00");
    ib.U("rejected_connections", less(si.rejected_connections, &StatsBaseline::conns_rejected));
    ib.U("sync_full", 0);
    ib.U("sync_partial_ok", 0);
    ib.U("sync_partial_err", 0);
    ib.U("expired_keys", less(st.expired, &StatsBaseline::expired));
    ib.U("evicted_keys", less(st.evictions, &StatsBaseline::evicted));
    ib.U("evicted_clients", less(si.evicted_clients, &StatsBaseline::evicted_clients));
    ib.U("keyspace_hits", less(st.hits, &StatsBaseline::hits));
    ib.U("keyspace_misses", less(st.misses, &StatsBaseline::misses));
    ib.U("pubsub_channels", static_cast<uint64_t>(std::max<int64_t>(si.pubsub_channels, 0)));
    ib.U("pubsub_patterns", static_cast<uint64_t>(std::max<int64_t>(si.pubsub_patterns, 0)));
    // The master forks one child per snapshot.
    ib.U("total_forks", less(ps ? ps->snapshots_started.load() : 0, &StatsBaseline::forks));
    ib.U("unexpected_error_replies", 0);  // Redis: errors in replies from a master or the AOF
    ib.U("total_error_replies", errors);
  }
  if (want & kReplication) {
    ib.Section("Replication");
    ib.S("role", "master");
    ib.U("connected_slaves", 0);
    ib.S("master_failover_state", "no-failover");
    ib.S("master_replid", si.replid);
    ib.S("master_replid2", "0000000000000000000000000000000000000000");
    ib.U("master_repl_offset", 0);
    ib.I("second_repl_offset", -1);
    ib.U("repl_backlog_active", 0);
    ib.U("repl_backlog_first_byte_offset", 0);
    ib.U("repl_backlog_histlen", 0);
  }
  if (want & kCpu) {
    ib.Section("CPU");
    struct rusage self, thread;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_THREAD, &thread);
    // Every worker process' time when the segment has it; else this process'.
    ib.Seconds("used_cpu_sys", si.cpu_summed ? si.cpu_sys_us : Us(self.ru_stime));
    ib.Seconds("used_cpu_user", si.cpu_summed ? si.cpu_user_us : Us(self.ru_utime));
    ib.Seconds("used_cpu_sys_main_thread", Us(thread.ru_stime));
    ib.Seconds("used_cpu_user_main_thread", Us(thread.ru_utime));
  }
  if (want & kModules) ib.Section("Modules");
  if (want & kCommandstats) ib.Section("Commandstats");
  if ((want & kCommandstats) && sums) {
    const double ticks_per_us = TicksPerNs() * 1000.0;
    for (uint32_t i = 0; i < CommandCount(); i++) {
      const CmdStat& cs = sums->cmd[i];
      const uint64_t calls = cs.calls.Get();
      if (!calls && !cs.rejected.Get() && !cs.failed.Get()) continue;
      const double us = static_cast<double>(cs.ticks.Get()) / ticks_per_us;
      const auto usec = static_cast<uint64_t>(us);
      b += "cmdstat_";
      b += CommandAt(i)->name;
      b += ":calls=";
      AppendU64(&b, calls);
      b += ",usec=";
      AppendU64(&b, usec);
      char per[32];
      std::snprintf(per, sizeof per, ",usec_per_call=%.2f",
                    calls ? us / static_cast<double>(calls) : 0.0);
      b += per;
      b += ",rejected_calls=";
      AppendU64(&b, cs.rejected.Get());
      b += ",failed_calls=";
      AppendU64(&b, cs.failed.Get());
      b += "\r\n";
    }
  }
  if (want & kErrorstats) {
    ib.Section("Errorstats");
    if (sums) {
      for (const auto& [name, n] : ErrorCounts(ss, *sums)) {
        b += "errorstat_";
        b += name;
        b += ":count=";
        AppendU64(&b, n);
        b += "\r\n";
      }
    }
  }
  if (want & kCluster) {
    ib.Section("Cluster");
    ib.U("cluster_enabled", 0);
  }
  if (want & kKeyspace) {
    ib.Section("Keyspace");
    if (st.keys > 0) {
      // avg_ttl: the expiry sweep's estimate, as Redis' (0 until it has
      // sampled a key with a TTL).
      b += "db0:keys=";
      AppendU64(&b, st.keys);
      b += ",expires=";
      AppendU64(&b, st.expires);
      b += ",avg_ttl=";
      AppendU64(&b, st.avg_ttl_ms);
      b += "\r\n";
    }
  }
  if (want & kPreforkd) {
    ib.Section("Preforkd");
    ib.U("worker_processes", si.worker_list.size());
    size_t n = 0;
    for (const ServerInfo::Worker& w : si.worker_list) {
      b += "worker";
      AppendU64(&b, n++);
      b += ":slot=";
      AppendI64(&b, w.slot);
      b += ",pid=";
      AppendI64(&b, w.pid);
      b += ",generation=";
      AppendU64(&b, w.generation);
      b += ",connections=";
      AppendU64(&b, w.connections);
      b += ",connections_received=";
      AppendU64(&b, w.connections_total);
      b += ",commands=";
      AppendU64(&b, w.commands);
      b += "\r\n";
    }
  }
  c.out.Bulk(b);
}

void CmdConfigResetstat(CommandCtx& c) {
  // config.c resetServerStats: the counters INFO stats shows, commandstats
  // and errorstats. Gauges (connected clients, keys) and the preforkd
  // section's per-process figures are not statistics and stay.
  if (StatsShared* ss = c.env.stats) {
    const ServerInfo si = GetServerInfo(c.env);
    kv::Stats st;
    if (c.env.store) st = c.env.store->GetStats();
    StatsBaseline& base = ss->base;
    constexpr auto r = std::memory_order_relaxed;
    base.conns_total.store(si.total_connections_received, r);
    base.conns_rejected.store(si.rejected_connections, r);
    base.bytes_in.store(si.total_net_input_bytes, r);
    base.bytes_out.store(si.total_net_output_bytes, r);
    base.expired.store(st.expired, r);
    base.evicted.store(st.evictions, r);
    base.hits.store(st.hits, r);
    base.misses.store(st.misses, r);
    base.evicted_clients.store(si.evicted_clients, r);
    base.forks.store(c.env.persist ? c.env.persist->snapshots_started.load() : 0, r);
    CmdStatsRow& sums = CommandStatsBuf();
    if (SumStats(c.env, &sums, false)) {
      for (uint32_t i = 0; i < kMaxCommandStats; i++) {
        const CmdStat& s = sums.cmd[i];
        CmdStat& d = ss->base_cmds.cmd[i];
        Set(d.calls, s.calls.Get());
        Set(d.ticks, s.ticks.Get());
        Set(d.rejected, s.rejected.Get());
        Set(d.failed, s.failed.Get());
      }
      for (uint32_t i = 0; i <= kMaxErrorStats; i++)
        Set(ss->base_cmds.errors[i], sums.errors[i].Get());
    }
  }
  ReplyOk(c);
}

}  // namespace pf
