// shared/commands.h: the one command table every protocol dispatches into
// (RESP directly, kv-json and HTTP /kv by building an argv). A command is data:
// name, arity, flags, key positions, handler; arity checks, AUTH gating and the
// COMMAND reply all come from the table. The error texts live here too, worded
// as Redis 7.0 words them, so clients that match on them keep working.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "shared/config.h"
#include "shared/kv.h"
#include "shared/reply.h"
#include "shared/shm.h"

namespace pf {

// ---------------------------------------------------------------------------
// Error texts (RESP shows them after '-'; kv-json/HTTP show ErrCodeName() and
// the text). Fixed texts are constants; the formatted ones (arity, unknown
// command, ...) are built in commands.cc from the templates noted here.
namespace errtext {
inline constexpr std::string_view kSyntax = "ERR syntax error";
inline constexpr std::string_view kNotInteger = "ERR value is not an integer or out of range";
inline constexpr std::string_view kOverflow = "ERR increment or decrement would overflow";
inline constexpr std::string_view kDecrOverflow = "ERR decrement would overflow";
inline constexpr std::string_view kOom = "OOM command not allowed when used memory > 'maxmemory'.";
inline constexpr std::string_view kNoAuth = "NOAUTH Authentication required.";
inline constexpr std::string_view kWrongPass =
    "WRONGPASS invalid username-password pair or user is disabled.";
inline constexpr std::string_view kAuthNoPassword =
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?";
inline constexpr std::string_view kHelloNoAuth =
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    "HELLO AUTH <user> <pass> option can be used to authenticate the client and select "
    "the RESP protocol version at the same time";
inline constexpr std::string_view kNoProto = "NOPROTO unsupported protocol version";
inline constexpr std::string_view kHelloProtoNotInt =
    "ERR Protocol version is not an integer or out of range";
inline constexpr std::string_view kDbIndex = "ERR DB index is out of range";
inline constexpr std::string_view kInvalidCursor = "ERR invalid cursor";
inline constexpr std::string_view kClientName =
    "ERR Client names cannot contain spaces, newlines or special characters.";
// CLIENT SETNAME / HELLO SETNAME / CLIENT SETINFO values are kept for the
// connection's life: capped at kMaxClientNameBytes (commands.cc).
inline constexpr std::string_view kClientNameTooLong =
    "ERR Client names cannot be longer than 512 bytes.";
inline constexpr std::string_view kKeysTooExpensive = "ERR KEYS pattern too expensive; use SCAN";
inline constexpr std::string_view kExpireNxConflict =
    "ERR NX and XX, GT or LT options at the same time are not compatible";
inline constexpr std::string_view kExpireGtLtConflict =
    "ERR GT and LT options at the same time are not compatible";
inline constexpr std::string_view kKeyTooLarge = "ERR key is larger than max-key-bytes";
inline constexpr std::string_view kValueTooLarge = "ERR value is larger than max-value-bytes";
inline constexpr std::string_view kConfigSet =
    "ERR CONFIG SET is not supported: edit the config file and reload (SIGHUP)";
inline constexpr std::string_view kInternal = "ERR internal error";
// Templates (printf-like, %s is the argument as given, CR/LF mapped to spaces):
//   "ERR wrong number of arguments for '%s' command"      (table name, e.g. 'get', 'client|setname')
//   "ERR unknown command '%.128s', with args beginning with: " + "'%s' " per arg, 128 bytes in all
//   "ERR unknown subcommand '%.128s'. Try %s HELP."        (%s 2 = container name upper-cased)
//   "ERR invalid expire time in '%s' command"
//   "ERR Unsupported option %s"                           (EXPIRE family)
//   "ERR Syntax error in HELLO option '%s'"
//   "ERR %s cannot be longer than 512 bytes."             (CLIENT SETINFO: lib-name, lib-ver)
//   "ERR reply too large: %s would return more than %llu bytes (limits.max_reply_bytes)"
//                                                         (MGET; KEYS adds "; use SCAN")
//   "ERR request too large: MSET would write more than %llu bytes (limits.max_reply_bytes)"
}  // namespace errtext

// Longest CLIENT SETNAME / HELLO SETNAME name and CLIENT SETINFO value.
inline constexpr size_t kMaxClientNameBytes = 512;

// What INFO (and HELLO/CLIENT) need that only the worker knows; the worker
// fills it from the shared counters when asked (CommandEnv::server_info).
struct ServerInfo {
  std::string version;               // preforkd version
  int64_t pid = 0;
  uint16_t tcp_port = 0;             // the RESP listener's port
  uint64_t uptime_s = 0;
  uint32_t workers = 0;
  int worker_slot = -1;
  uint64_t connected_clients = 0;
  uint64_t total_connections_received = 0;
  uint64_t total_commands_processed = 0;
  uint64_t rejected_connections = 0;
  uint64_t total_net_input_bytes = 0;
  uint64_t total_net_output_bytes = 0;
  uint64_t reloads = 0;
};

// Per-connection state the commands read and change. The protocol handler owns
// one per connection and fills the identity fields at accept.
struct ClientSession {
  uint64_t id = 0;                   // unique per worker process lifetime (CLIENT ID, HELLO)
  std::string name;                  // CLIENT SETNAME / HELLO SETNAME
  bool authenticated = false;        // set by AUTH / HELLO AUTH; not consulted when no password is set
  bool close_after_reply = false;    // QUIT: flush the reply, then close
  int worker_slot = -1;
  int fd = -1;
  std::string peer;                  // "ip:port" of the client
  std::string local;                 // "ip:port" of our socket
  uint64_t connected_ms = 0;         // unix ms, for CLIENT INFO age=
  uint64_t last_command_ms = 0;      // unix ms, for CLIENT INFO idle=
  uint64_t commands = 0;             // commands executed on this connection
  std::string_view last_command;     // table name of the last command (static storage)
  std::string lib_name, lib_ver;     // CLIENT SETINFO
};

struct PersistShared;
namespace persist {
class LogWriter;
}

// Everything a command may touch besides the session. Owned by the worker.
struct CommandEnv {
  kv::Store* store = nullptr;
  const Config* config = nullptr;
  std::function<void(ServerInfo*)> server_info;       // optional; INFO/HELLO fall back to defaults
  // Optional: CLIENT LIST appends one line per client of this worker (each
  // ending "\n"); without it CLIENT LIST shows the calling connection only.
  std::function<void(std::string*)> client_list;
  Counter* commands_processed = nullptr;              // optional; +1 per executed command
  // Persistence (null when off): INFO persistence, SAVE/BGSAVE/LASTSAVE, and
  // MISCONF for writes while this worker's log cannot be written.
  PersistShared* persist = nullptr;
  const persist::LogWriter* log = nullptr;
  int master_pid = 0;                                 // where SAVE/BGSAVE signal
};

// Command flags (the names COMMAND reports are Redis').
enum CmdFlag : uint32_t {
  kCmdWrite = 1u << 0,
  kCmdReadonly = 1u << 1,
  kCmdDenyOom = 1u << 2,
  kCmdAdmin = 1u << 3,
  kCmdNoScript = 1u << 4,
  kCmdLoading = 1u << 5,   // safe while loading (persistence replay)
  kCmdStale = 1u << 6,
  kCmdFast = 1u << 7,
  kCmdNoAuth = 1u << 8,    // may run before AUTH (AUTH, HELLO, QUIT)
};

struct CommandCtx;  // defined in commands.cc
using CommandProc = void (*)(CommandCtx&);

struct CommandSpec {
  std::string_view name;         // lower case; subcommands "client|setname"
  int arity;                     // Redis convention: counts the name; negative = at least -arity
  uint32_t flags;                // CmdFlag bits
  int first_key, last_key, key_step;  // COMMAND INFO key positions (0 0 0 = no keys)
  CommandProc proc;              // nullptr for a container whose subcommands do the work
  std::span<const CommandSpec> subcommands;  // CLIENT, COMMAND, CONFIG
};

// The table, sorted by name. Lookup is case-insensitive and allocates nothing.
std::span<const CommandSpec> CommandTable();
const CommandSpec* LookupCommand(std::string_view name);
// Subcommand of a container (name without the "container|" prefix).
const CommandSpec* LookupSubcommand(const CommandSpec& container, std::string_view sub);

// Runs one command: lookup, arity, AUTH gating, then the handler, which
// replies exactly once through `out`. Never throws for bad input; an
// exception from the engine (e.g. bad_alloc) is answered with kInternal.
// `now_ms` is unix time in ms (tests pass their own clock).
void Dispatch(const CommandEnv& env, ClientSession& session,
              std::span<const std::string_view> argv, ReplyWriter& out, uint64_t now_ms);

// Redis' glob (stringmatchlen semantics: * ? [abc] [^a] [a-z] \x), without
// recursion; work is bounded (O(len(pattern) * len(s)) at worst, and capped),
// so a hostile pattern cannot burn the worker's CPU. A capped match is "no".
bool GlobMatch(std::string_view pattern, std::string_view s);

// Bytes the handlers' worker-local scratch buffers hold on to between
// commands (tests: one huge reply must not pin its memory).
size_t CommandScratchBytesForTesting();

// Redis' string2ll: strict decimal int64 (no spaces, no '+', no leading zeros).
bool ParseInt64(std::string_view s, int64_t* out);

}  // namespace pf
