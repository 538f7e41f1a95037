// shared/cmd/info.cc: INFO, in Redis' sections and field names (server.c
// genRedisInfoString), from the worker's numbers, the store and the shared
// counters, and the per-command statistics of every process.
#include <sys/resource.h>
#include <sys/utsname.h>

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
};

// 16 KiB: a worker-local buffer, not a stack array.
CmdStatsRow& CommandStatsBuf() {
  static thread_local CmdStatsRow row;
  return row;
}

}  // namespace

void CmdInfo(CommandCtx& c) {
  enum : unsigned {
    SERVER = 1,
    CLIENTS = 2,
    MEMORY = 4,
    PERSIST = 8,
    STATS = 16,
    REPL = 32,
    CPU = 64,
    KEYSPACE = 128,
    DEFAULT = 255,
    COMMANDSTATS = 256
  };
  unsigned want = 0;
  if (c.argc() == 1) want = DEFAULT;
  for (size_t j = 1; j < c.argc(); ++j) {
    std::string_view s = c.arg(j);
    // As Redis: "default" leaves commandstats out, "all" and "everything" add it.
    if (EqualsNoCase(s, "all") || EqualsNoCase(s, "everything"))
      want |= DEFAULT | COMMANDSTATS;
    else if (EqualsNoCase(s, "default"))
      want |= DEFAULT;
    else if (EqualsNoCase(s, "commandstats"))
      want |= COMMANDSTATS;
    else if (EqualsNoCase(s, "server"))
      want |= SERVER;
    else if (EqualsNoCase(s, "clients"))
      want |= CLIENTS;
    else if (EqualsNoCase(s, "memory"))
      want |= MEMORY;
    else if (EqualsNoCase(s, "persistence"))
      want |= PERSIST;
    else if (EqualsNoCase(s, "stats"))
      want |= STATS;
    else if (EqualsNoCase(s, "replication"))
      want |= REPL;
    else if (EqualsNoCase(s, "cpu"))
      want |= CPU;
    else if (EqualsNoCase(s, "keyspace"))
      want |= KEYSPACE;
    // unknown sections add nothing, as in Redis
  }
  ServerInfo si = GetServerInfo(c.env);
  // Command statistics: every process' row in the segment, or this
  // process' own when there is no segment (tests).
  CmdStatsRow* cmds = nullptr;
  if ((want & (STATS | COMMANDSTATS)) && (c.env.segment || c.env.cmd_stats)) {
    cmds = &CommandStatsBuf();
    std::memset(static_cast<void*>(cmds), 0, sizeof *cmds);
    if (c.env.segment)
      c.env.segment->SumCommandStats(cmds);
    else
      AddInto(cmds, *c.env.cmd_stats);
    uint64_t calls = 0;
    for (uint32_t i = 0; i < kMaxCommandStats; i++) calls += cmds->cmd[i].calls.Get();
    si.total_commands_processed = calls;
  }
  kv::Stats st;
  if (want & (MEMORY | STATS | KEYSPACE)) st = c.env.store->GetStats();
  const Config* cfg = c.env.config;
  bool lru = cfg && cfg->kv.eviction == Eviction::kAllKeysLru;

  std::string& b = ErrBuf();
  InfoBuilder ib{&b};
  if (want & SERVER) {
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
#if defined(__GNUC__) && !defined(__clang__)
    ib.S("gcc_version", std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__) + "." +
                            std::to_string(__GNUC_PATCHLEVEL__));
#endif
    ib.I("process_id", si.pid);
    ib.I("worker_slot", si.worker_slot);
    ib.U("workers", si.workers);
    ib.U("tcp_port", si.tcp_port);
    ib.U("server_time_usec", c.now_ms * 1000);
    ib.U("uptime_in_seconds", si.uptime_s);
    ib.U("uptime_in_days", si.uptime_s / 86400);
    ib.U("reloads", si.reloads);
    ib.S("config_file", cfg ? cfg->path : "");
  }
  if (want & CLIENTS) {
    ib.Section("Clients");
    ib.U("connected_clients", si.connected_clients);
    ib.U("maxclients", cfg ? cfg->limits.max_connections : 0);
    ib.U("blocked_clients", 0);
  }
  if (want & MEMORY) {
    ib.Section("Memory");
    ib.U("used_memory", st.used_bytes);
    b += "used_memory_human:";
    BytesToHuman(&b, st.used_bytes);
    b += "\r\n";
    ib.U("maxmemory", st.capacity_bytes);
    b += "maxmemory_human:";
    BytesToHuman(&b, st.capacity_bytes);
    b += "\r\n";
    ib.S("maxmemory_policy", lru ? "allkeys-lru" : "noeviction");
  }
  if (want & PERSIST) {
    ib.Section("Persistence");
    ib.U("loading", 0);
    ib.U("async_loading", 0);
    const PersistShared* ps = c.env.persist;
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
      const uint64_t logged = ps->log_bytes.load(), base = ps->log_bytes_at_snapshot.load();
      ib.U("aof_current_size", logged > base ? logged - base : 0);
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
  if (want & STATS) {
    ib.Section("Stats");
    ib.U("total_connections_received", si.total_connections_received);
    ib.U("total_commands_processed", si.total_commands_processed);
    ib.U("total_net_input_bytes", si.total_net_input_bytes);
    ib.U("total_net_output_bytes", si.total_net_output_bytes);
    ib.U("rejected_connections", si.rejected_connections);
    ib.U("expired_keys", st.expired);
    ib.U("evicted_keys", st.evictions);
    ib.U("keyspace_hits", st.hits);
    ib.U("keyspace_misses", st.misses);
  }
  if (want & REPL) {
    ib.Section("Replication");
    ib.S("role", "master");
    ib.U("connected_slaves", 0);
  }
  if (want & CPU) {
    ib.Section("CPU");
    struct rusage self;
    getrusage(RUSAGE_SELF, &self);
    char tmp[64];
    std::snprintf(tmp, sizeof tmp, "%ld.%06ld", static_cast<long>(self.ru_stime.tv_sec),
                  static_cast<long>(self.ru_stime.tv_usec));
    ib.S("used_cpu_sys", tmp);
    std::snprintf(tmp, sizeof tmp, "%ld.%06ld", static_cast<long>(self.ru_utime.tv_sec),
                  static_cast<long>(self.ru_utime.tv_usec));
    ib.S("used_cpu_user", tmp);
  }
  if (want & KEYSPACE) {
    ib.Section("Keyspace");
    if (st.keys > 0) {
      b += "db0:keys=";
      AppendU64(&b, st.keys);
      b += ",expires=";
      AppendU64(&b, st.expires);
      b += ",avg_ttl=0\r\n";
    }
  }
  if ((want & COMMANDSTATS) && cmds) {
    ib.Section("Commandstats");
    const double ticks_per_us = TicksPerNs() * 1000.0;
    for (uint32_t i = 0; i < CommandCount(); i++) {
      const CmdStat& st = cmds->cmd[i];
      const uint64_t calls = st.calls.Get();
      if (!calls && !st.rejected.Get() && !st.failed.Get()) continue;
      const double us = static_cast<double>(st.ticks.Get()) / ticks_per_us;
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
      AppendU64(&b, st.rejected.Get());
      b += ",failed_calls=";
      AppendU64(&b, st.failed.Get());
      b += "\r\n";
    }
  }
  c.out.Bulk(b);
}

}  // namespace pf
