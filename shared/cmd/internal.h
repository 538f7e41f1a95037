// shared/cmd/internal.h: what the command families share: the call context,
// the worker-local scratch buffers, the reply helpers that build Redis'
// error texts, and the handler of every row of the table (table.cc). Only
// shared/cmd/*.cc include this.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shared/cmd/commands.h"

namespace pf {

struct CommandCtx {
  const CommandEnv& env;
  ClientSession& session;
  std::span<const std::string_view> argv;
  ReplyWriter& out;
  uint64_t now_ms;
  const CommandSpec* cmd;

  size_t argc() const { return argv.size(); }
  std::string_view arg(size_t i) const { return argv[i]; }
};

// The version Redis clients see (HELLO, INFO redis_version).
inline constexpr std::string_view kRedisCompatVersion = "7.0.0";

// ---------------------------------------------------------------------------
// Worker-local scratch buffers of the handlers, kept between commands to save
// allocations. ReleaseScratch() runs after every command: it drops what they
// hold and gives back any buffer above 1 MiB, so one huge reply does not pin
// its memory for the worker's life.
struct Scratch {
  std::string err, value, prefix, lower;
  std::vector<std::optional<std::string>> mget;
  std::vector<std::pair<std::string_view, std::string_view>> mset;
  std::vector<std::string> batch, found, keys;
  std::vector<uint64_t> resume;
};
Scratch& Tls();
void ReleaseScratch();
// Tls().err, cleared: the text of an error or a short bulk being built.
std::string& ErrBuf();
std::string& ValueBuf();

// Appends `s`, truncated to `max` bytes, with CR/LF mapped to spaces: an error
// line that echoes user bytes must not be able to end the RESP frame early.
void AppendSafe(std::string* dst, std::string_view s, size_t max = SIZE_MAX);

// ---------------------------------------------------------------------------
// Replies (texts in errors.h)
void ReplyArity(CommandCtx& c, std::string_view name);
void ReplyArity(CommandCtx& c);
void ReplyUnknownCommand(ReplyWriter& out, std::span<const std::string_view> argv);
void ReplyUnknownSubcommand(ReplyWriter& out, std::string_view container, std::string_view sub);
void ReplyInvalidExpire(CommandCtx& c);
void ReplySyntax(CommandCtx& c);
void ReplyNotInteger(CommandCtx& c);
void ReplyOk(CommandCtx& c);
// An engine status other than the command's expected ones.
void ReplyKvError(CommandCtx& c, kv::Status st, std::string_view key);
void ReplyReplyTooLarge(CommandCtx& c, std::string_view cmd, uint64_t max, std::string_view hint);
// "ERR request too large: <CMD> would <verb> more than <max> bytes
// (limits.max_reply_bytes)": a command that holds shard locks while it moves
// more than that (MSET, MSETNX write it, BITOP reads it).
void ReplyRequestTooLarge(CommandCtx& c, std::string_view cmd, std::string_view verb, uint64_t max);
// True if the arguments after the name total at most MaxReplyBytes(c);
// else replies ReplyRequestTooLarge(cmd, "write") and returns false.
bool WriteFitsRequestLimit(CommandCtx& c, std::string_view cmd);
// "<CONTAINER> <subcommand> ...", the lines, then HELP (Redis' addReplyHelp).
void ReplyHelp(CommandCtx& c, std::string_view container,
               std::initializer_list<std::string_view> lines);

// ---------------------------------------------------------------------------
// Shared rules
bool AuthRequired(const CommandEnv& env, const ClientSession& s);
// networking.c clientSetName: printable ASCII, no spaces.
bool ValidClientName(std::string_view n);
// `detail`: INFO's costlier fields too (ServerInfo::detail).
ServerInfo GetServerInfo(const CommandEnv& env, bool detail = false);
// The expire argument of SET/SETEX/PSETEX to absolute unix ms
// (t_string.c getExpireMillisecondsOrReply). False after replying.
bool ExpireArgToAbsMs(CommandCtx& c, std::string_view arg, bool seconds, bool relative,
                      int64_t* at_ms);
uint64_t MaxReplyBytes(const CommandCtx& c);
// RESP bytes of a bulk string of `n` bytes: "$<n>\r\n" <bytes> "\r\n".
uint64_t BulkReplyBytes(size_t n);
// The table's container name in upper case ("CLIENT"), for help and errors.
void AppendUpper(std::string* dst, std::string_view s);

// ---------------------------------------------------------------------------
// Handlers, one family a file. The table (table.cc) names each once.

// connection.cc
void CmdAuth(CommandCtx& c);
void CmdClientGetname(CommandCtx& c);
void CmdClientHelp(CommandCtx& c);
void CmdClientId(CommandCtx& c);
void CmdClientInfo(CommandCtx& c);
void CmdClientKill(CommandCtx& c);
void CmdClientList(CommandCtx& c);
void CmdClientNoEvict(CommandCtx& c);
void CmdClientPause(CommandCtx& c);
void CmdClientReply(CommandCtx& c);
void CmdClientSetinfo(CommandCtx& c);
void CmdClientSetname(CommandCtx& c);
void CmdClientUnpause(CommandCtx& c);
void CmdEcho(CommandCtx& c);
void CmdHello(CommandCtx& c);
void CmdPing(CommandCtx& c);
void CmdQuit(CommandCtx& c);
void CmdReset(CommandCtx& c);
void CmdSelect(CommandCtx& c);

// A single-key read-modify-write: one locked section (kv.h WithKeys).
kv::Status WithKey(CommandCtx& c, std::string_view key,
                   const std::function<kv::Status(kv::KeyView&)>& fn);
// ReplyKvError, but kTooLarge of a key that fits says the value would grow
// past kv.max_value_bytes (APPEND, SETRANGE, SETBIT, BITFIELD, BITOP).
void ReplyWriteError(CommandCtx& c, kv::Status st, std::string_view key);

// bits.cc
void CmdBitcount(CommandCtx& c);
void CmdBitfield(CommandCtx& c);
void CmdBitfieldRo(CommandCtx& c);
void CmdBitop(CommandCtx& c);
void CmdBitpos(CommandCtx& c);
void CmdGetbit(CommandCtx& c);
void CmdSetbit(CommandCtx& c);

// strings.cc
void CmdAppend(CommandCtx& c);
void CmdGetdel(CommandCtx& c);
void CmdGetex(CommandCtx& c);
void CmdGetrange(CommandCtx& c);
void CmdGetset(CommandCtx& c);
void CmdIncrbyfloat(CommandCtx& c);
void CmdLcs(CommandCtx& c);
void CmdMsetnx(CommandCtx& c);
void CmdSetrange(CommandCtx& c);
void CmdDecr(CommandCtx& c);
void CmdDecrby(CommandCtx& c);
void CmdGet(CommandCtx& c);
void CmdIncr(CommandCtx& c);
void CmdIncrby(CommandCtx& c);
void CmdMget(CommandCtx& c);
void CmdMset(CommandCtx& c);
void CmdPsetex(CommandCtx& c);
void CmdSet(CommandCtx& c);
void CmdSetex(CommandCtx& c);
void CmdSetnx(CommandCtx& c);
void CmdStrlen(CommandCtx& c);

// keyspace.cc
void CmdCopy(CommandCtx& c);
void CmdExpiretime(CommandCtx& c);
void CmdMove(CommandCtx& c);
void CmdObjectEncoding(CommandCtx& c);
void CmdObjectFreq(CommandCtx& c);
void CmdObjectHelp(CommandCtx& c);
void CmdObjectIdletime(CommandCtx& c);
void CmdObjectRefcount(CommandCtx& c);
void CmdPexpiretime(CommandCtx& c);
void CmdRandomkey(CommandCtx& c);
void CmdRename(CommandCtx& c);
void CmdRenamenx(CommandCtx& c);
void CmdSwapdb(CommandCtx& c);
void CmdTouch(CommandCtx& c);
void CmdDbsize(CommandCtx& c);
void CmdDel(CommandCtx& c);
void CmdExists(CommandCtx& c);
void CmdExpire(CommandCtx& c);
void CmdExpireat(CommandCtx& c);
void CmdFlushall(CommandCtx& c);
void CmdFlushdb(CommandCtx& c);
void CmdFlushns(CommandCtx& c);
void CmdKeys(CommandCtx& c);
void CmdPersist(CommandCtx& c);
void CmdPexpire(CommandCtx& c);
void CmdPexpireat(CommandCtx& c);
void CmdPttl(CommandCtx& c);
void CmdScan(CommandCtx& c);
void CmdTtl(CommandCtx& c);
void CmdType(CommandCtx& c);

// dump.cc
void CmdDump(CommandCtx& c);
void CmdRestore(CommandCtx& c);

// pubsub.cc
void CmdPsubscribe(CommandCtx& c);
void CmdPublish(CommandCtx& c);
void CmdPubsubChannels(CommandCtx& c);
void CmdPubsubHelp(CommandCtx& c);
void CmdPubsubNumpat(CommandCtx& c);
void CmdPubsubNumsub(CommandCtx& c);
void CmdPunsubscribe(CommandCtx& c);
void CmdSubscribe(CommandCtx& c);
void CmdUnsubscribe(CommandCtx& c);

// persistence.cc
void CmdBgsave(CommandCtx& c);
void CmdLastsave(CommandCtx& c);
void CmdSave(CommandCtx& c);

// info.cc
void CmdConfigResetstat(CommandCtx& c);
void CmdInfo(CommandCtx& c);

// transactions.cc
void CmdDiscard(CommandCtx& c);
void CmdExec(CommandCtx& c);
void CmdMulti(CommandCtx& c);
void CmdUnwatch(CommandCtx& c);
void CmdWatch(CommandCtx& c);
// Called by Dispatch once a command passed its checks: true if the session
// is in MULTI and the command was queued (or refused, aborting the
// transaction), with the reply written.
bool QueueInMulti(CommandCtx& c);
// Runs one queued command (EXEC): the handler and its statistics, as
// Dispatch does after its checks; errors become replies. Returns about how
// many reply bytes it wrote.
uint64_t RunQueued(const CommandEnv& env, ClientSession& session,
                   std::span<const std::string_view> argv, ReplyWriter& out, uint64_t now_ms);

// server.cc
void CmdCommandAll(CommandCtx& c);
void CmdCommandCount(CommandCtx& c);
void CmdCommandDocs(CommandCtx& c);
void CmdCommandHelp(CommandCtx& c);
void CmdCommandInfo(CommandCtx& c);
void CmdCommandList(CommandCtx& c);
void CmdConfigGet(CommandCtx& c);
void CmdConfigHelp(CommandCtx& c);
void CmdConfigSet(CommandCtx& c);
void CmdTime(CommandCtx& c);

}  // namespace pf
