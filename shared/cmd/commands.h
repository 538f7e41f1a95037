// shared/cmd/commands.h: the one command table every protocol dispatches
// into. A protocol is a codec (wire bytes to an argv) plus a ReplyWriter
// (reply to wire bytes): RESP, kv-json and HTTP /kv differ only there. A
// command is data: name, arity, flags, key positions, handler; lookup, arity,
// AUTH gating, the MISCONF refusal, the pub/sub context rule, statistics and
// the COMMAND reply all come from the table (dispatch.cc), so a check added
// there holds for every protocol at once. The handlers live in one file per
// family (connection.cc, strings.cc, keyspace.cc, pubsub.cc, persistence.cc,
// info.cc, server.cc); error texts are in errors.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shared/cmd/errors.h"
#include "shared/cmd/reply.h"
#include "shared/config.h"
#include "shared/kv/kv.h"
#include "shared/shm.h"
#include "shared/util/glob.h"
#include "shared/util/strings.h"

namespace pf {

// What INFO (and HELLO/CLIENT) need that only the worker knows; the worker
// fills it from the shared counters when asked (CommandEnv::server_info).
struct ServerInfo {
  bool detail = false;  // in: INFO asks for the costlier fields below (pub/sub, CPU, workers)
  std::string version;  // preforkd version
  int64_t pid = 0;
  uint16_t tcp_port = 0;  // the RESP listener's port
  uint64_t uptime_s = 0;
  uint32_t workers = 0;
  int worker_slot = -1;
  uint64_t connected_clients = 0;
  uint64_t total_connections_received = 0;
  uint64_t total_commands_processed = 0;  // 0: INFO sums the command statistics itself
  uint64_t rejected_connections = 0;
  uint64_t total_net_input_bytes = 0;
  uint64_t total_net_output_bytes = 0;
  // Per second over the last ~1.6 s, all workers (Redis' instantaneous_*).
  double instantaneous_ops = 0, instantaneous_in_bytes = 0, instantaneous_out_bytes = 0;
  uint64_t reloads = 0;
  std::string run_id;            // 40 hex digits, one per master run (all workers); "" = none known
  std::string replid;            // master_replid, likewise
  uint64_t evicted_clients = 0;  // closed past limits.clients_memory
  int64_t pubsub_channels = -1;  // over all workers; -1 = unknown (no bus)
  int64_t pubsub_patterns = -1;
  uint64_t cpu_user_us = 0, cpu_sys_us = 0;  // every worker process, live and reaped
  bool cpu_summed = false;                   // false: the fields above are unknown
  // One line each of INFO's preforkd section: the live worker processes.
  struct Worker {
    int slot = -1;
    int64_t pid = 0;
    uint32_t generation = 0;
    uint64_t connections = 0, connections_total = 0, commands = 0;
  };
  std::vector<Worker> worker_list;
};

// What a connection that can subscribe offers the pub/sub commands. The
// worker's SubscriberSession implements it over the bus (worker/pubsub.h);
// the commands (pubsub.cc) only render replies. Errors come back as Redis'
// texts ("ERR ...", "NOPERM ...").
class PubSubPort {
 public:
  virtual ~PubSubPort() = default;
  // Channels plus patterns this connection is subscribed to.
  virtual size_t subscription_count() const = 0;
  // Subscribing twice to one name is fine and counts once. False: *err says why.
  virtual bool Subscribe(std::string_view name, bool pattern, std::string* err) = 0;
  virtual void Unsubscribe(std::string_view name, bool pattern) = 0;
  // The names this connection is subscribed to (UNSUBSCRIBE without names).
  virtual std::vector<std::string> Subscribed(bool pattern) const = 0;
  // `admin`: may publish under pubsub.reserved_prefix. *receivers: clients
  // over all workers that get it.
  virtual bool Publish(std::string_view channel, std::string_view data, bool admin,
                       int64_t* receivers, std::string* err) = 0;
  virtual std::vector<std::string> Channels(std::string_view pattern) = 0;
  virtual int64_t NumSub(std::string_view channel) = 0;
  virtual int64_t NumPat() = 0;
  // Every subscription goes (RESET).
  virtual void UnsubscribeAll() = 0;
};

// MULTI/EXEC/WATCH state of a connection (transactions.cc).
struct TxnState {
  bool active = false;            // between MULTI and EXEC/DISCARD: commands are queued
  bool aborted = false;           // a command was refused while queueing: EXEC answers EXECABORT
  std::vector<std::string> args;  // the queued commands' arguments, back to back
  std::vector<uint32_t> argc;     // arguments of each queued command
  uint64_t bytes = 0;             // queued, bounded by limits.max_reply_bytes
  struct Watched {
    std::string key;
    kv::WatchState state;
  };
  std::vector<Watched> watched;  // WATCH; EXEC, DISCARD, UNWATCH and RESET clear it
};

// Per-connection state the commands read and change. The protocol handler owns
// one per connection and fills the identity fields at accept.
struct ClientSession {
  uint64_t id = 0;             // unique over all workers and reloads (CLIENT ID, HELLO)
  std::string name;            // CLIENT SETNAME / HELLO SETNAME
  bool authenticated = false;  // set by AUTH / HELLO AUTH; not consulted when no password is set
  // The client's TLS certificate is one tls.auth_by_certificate accepts:
  // authenticated from the start, and again after RESET.
  bool cert_authenticated = false;
  bool admin = false;  // AUTH admin <pubsub.admin_token>: may publish under the reserved prefix
  bool close_after_reply = false;  // QUIT: flush the reply, then close
  // A RESP2 connection: while it has subscriptions only the pub/sub commands,
  // PING, QUIT and RESET run (a reply could not be told from a push), and
  // PING answers ["pong", arg].
  bool resp2 = false;
  // A RESP connection after HELLO 3 (resp2 is then false): replies are RESP3,
  // pub/sub messages push frames, and any command runs while subscribed.
  bool resp3 = false;
  PubSubPort* pubsub = nullptr;  // null: this connection cannot subscribe
  int worker_slot = -1;
  int fd = -1;
  std::string peer;               // "ip:port" of the client
  std::string local;              // "ip:port" of our socket
  uint64_t connected_ms = 0;      // unix ms, for CLIENT INFO age=
  uint64_t last_command_ms = 0;   // unix ms, for CLIENT INFO idle=
  uint64_t commands = 0;          // commands executed on this connection
  std::string_view last_command;  // table name of the last command (static storage)
  std::string lib_name, lib_ver;  // CLIENT SETINFO
  TxnState txn;                   // MULTI/EXEC/WATCH
  // CLIENT REPLY (networking.c): OFF mutes every reply until ON; SKIP mutes
  // the next command's (reply_skip_next becomes reply_skip after SKIP runs).
  // reply_ack: ON ran while muted, so its +OK still goes out.
  bool reply_off = false, reply_skip = false, reply_skip_next = false, reply_ack = false;
  bool no_evict = false;     // CLIENT NO-EVICT (accepted and shown, flag e)
  int32_t client_slot = -1;  // this connection's client registry entry (-1: none)
};

namespace persist {
class LogWriter;
}
namespace clients {
class Table;
struct Record;
}  // namespace clients

// Everything a command may touch besides the session. Owned by the worker.
struct CommandEnv {
  kv::Store* store = nullptr;
  const Config* config = nullptr;
  std::function<void(ServerInfo*)> server_info;  // optional; INFO/HELLO fall back to defaults
  // Optional: CLIENT LIST appends one line per client of this worker (each
  // ending "\n"); without it CLIENT LIST shows the calling connection only.
  std::function<void(std::string*)> client_list;
  // The client registry of the segment (shared/clients.h): CLIENT LIST,
  // INFO and KILL over every worker, CLIENT PAUSE. Null: this connection
  // only. wake_worker(slot) wakes a worker slot's loop (-1: every slot) so
  // it acts on a kill request or the end of a pause now.
  clients::Table* clients = nullptr;
  std::function<void(int worker_slot)> wake_worker;
  Counter* commands_processed = nullptr;  // optional; +1 per executed command (per protocol)
  // Optional: each executed command's latency from *batch_start_ns (the
  // start of the input batch it came in) to the end of its handler.
  LatencyHist* latency = nullptr;
  const uint64_t* batch_start_ns = nullptr;
  // Per-command statistics (INFO commandstats): this process' row, and the
  // segment whose rows INFO sums over every process. Both optional.
  CmdStatsRow* cmd_stats = nullptr;
  const Segment* segment = nullptr;
  // Error prefixes (INFO errorstats) and the CONFIG RESETSTAT baseline; the
  // segment's in a worker. Null: errors are not counted by prefix and
  // RESETSTAT has nothing to reset.
  StatsShared* stats = nullptr;
  // Persistence (null when off): INFO persistence, SAVE/BGSAVE/LASTSAVE, and
  // MISCONF for writes while this worker's log cannot be written.
  PersistShared* persist = nullptr;
  const persist::LogWriter* log = nullptr;
  int master_pid = 0;    // the master (SAVE gives up once it is gone)
  int snapshot_fd = -1;  // SAVE/BGSAVE write a byte here to wake the master
  // This process' heartbeat (shm.h ProcCounters): SAVE, which holds the
  // worker until the snapshot is done, keeps it fresh for the watchdog.
  std::atomic<uint64_t>* heartbeat_ms = nullptr;
  // Failed authentication per client address, over all workers (optional;
  // worker/security.h): `auth_throttled(peer)` is true while that address
  // may not try again; `auth_result(peer, ok)` records an attempt.
  std::function<bool(std::string_view peer)> auth_throttled;
  std::function<void(std::string_view peer, bool ok)> auth_result;
};

// Command flags (the names COMMAND reports are Redis').
enum CmdFlag : uint32_t {
  kCmdWrite = 1u << 0,
  kCmdReadonly = 1u << 1,
  kCmdDenyOom = 1u << 2,
  kCmdAdmin = 1u << 3,
  kCmdNoScript = 1u << 4,
  kCmdLoading = 1u << 5,  // safe while loading (persistence replay)
  kCmdStale = 1u << 6,
  kCmdFast = 1u << 7,
  kCmdNoAuth = 1u << 8,        // may run before AUTH (AUTH, HELLO, QUIT, RESET)
  kCmdPubSub = 1u << 9,        // a pub/sub command ("pubsub")
  kCmdSubscribed = 1u << 10,   // allowed on a subscribed RESP2 connection
  kCmdMayBlock = 1u << 11,     // may hold the worker (SAVE waits for the snapshot): "blocking"
  kCmdRunsInMulti = 1u << 12,  // runs at once inside MULTI, not queued (EXEC, DISCARD, WATCH ...)
  kCmdNoMulti = 1u << 13,      // refused inside MULTI: "no-multi" (SUBSCRIBE, SAVE ...)
};

struct CommandCtx;  // internal.h
using CommandProc = void (*)(CommandCtx&);

struct CommandSpec {
  std::string_view name;  // lower case; subcommands "client|setname"
  int arity;              // Redis convention: counts the name; negative = at least -arity
  uint32_t flags;         // CmdFlag bits
  int first_key, last_key, key_step;  // COMMAND INFO key positions (0 0 0 = no keys)
  CommandProc proc;                   // nullptr for a container whose subcommands do the work
  std::span<const CommandSpec> subcommands;  // CLIENT, COMMAND, CONFIG, PUBSUB
};

// The table, sorted by name. Lookup is case-insensitive and allocates nothing.
std::span<const CommandSpec> CommandTable();
const CommandSpec* LookupCommand(std::string_view name);
// Subcommand of a container (name without the "container|" prefix).
const CommandSpec* LookupSubcommand(const CommandSpec& container, std::string_view sub);
// Every command and subcommand has an index below kMaxCommandStats: its row
// in the statistics (CmdStatsRow), stable for the life of the binary.
uint32_t CommandIndex(const CommandSpec& spec);
// The command or subcommand whose CommandIndex is `index` (nullptr past the
// last): INFO commandstats walks them.
const CommandSpec* CommandAt(uint32_t index);
uint32_t CommandCount();  // top-level commands plus subcommands

// Runs one command: lookup, arity, AUTH gating, then the handler, which
// replies exactly once through `out`. Never throws for bad input; an
// exception from the engine (e.g. bad_alloc) is answered with kInternal.
// `now_ms` is unix time in ms (tests pass their own clock).
void Dispatch(const CommandEnv& env, ClientSession& session, std::span<const std::string_view> argv,
              ReplyWriter& out, uint64_t now_ms);

// The flags (clients::Flag) a session shows in CLIENT LIST.
uint32_t ClientFlagsOf(const ClientSession& s, int subscriptions);
// One CLIENT LIST line (ending "\n") for a registry record.
void AppendClientRecord(const clients::Record& r, uint64_t now_wall_ms, uint64_t now_mono_ms,
                        std::string* out);

// CLIENT PAUSE: true when the command in `argv` must wait (a pause of
// every command, or of writes and this one writes: a write, PUBLISH, or
// an EXEC whose queue writes). *until_mono_ms: when the
// pause ends, unless CLIENT UNPAUSE comes first. A protocol leaves the
// command unread and runs it once the pause is over.
bool CommandPaused(const CommandEnv& env, const ClientSession& session,
                   std::span<const std::string_view> argv, uint64_t* until_mono_ms);

// True when `user`/`pass` are the credentials of the default user (the only
// user: `pass` is kv.password; with no password configured any works). HTTP
// /kv checks its Authorization header with this.
bool CheckDefaultUser(const Config* config, std::string_view user, std::string_view pass);

// Bytes the handlers' worker-local scratch buffers hold on to between
// commands (tests: one huge reply must not pin its memory).
size_t CommandScratchBytesForTesting();

}  // namespace pf
