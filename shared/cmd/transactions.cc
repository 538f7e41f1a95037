// shared/cmd/transactions.cc: MULTI, EXEC, DISCARD, WATCH, UNWATCH
// (multi.c). While a session is in MULTI the dispatcher queues every command
// except the ones flagged kCmdRunsInMulti (dispatch.cc QueueInMulti); EXEC
// runs the queue inside one Store::Exclusive section: the shards of every
// queued and watched key are locked in ascending order (all shards when a
// queued command names no keys), so no other worker sees the transaction
// half done, the WATCH check and the commands are one step, and persistence
// logs the whole EXEC as one record.
#include <algorithm>

#include "shared/cmd/internal.h"

namespace pf {
namespace {

// A queued command that names no keys but reads or writes the store (DBSIZE,
// FLUSHALL, KEYS, SCAN, INFO ...) needs every shard; one that does neither
// (PING, ECHO, TIME, PUBLISH ...) needs none.
bool NeedsAllShards(const CommandSpec& s) {
  if (s.first_key > 0) return false;
  return (s.flags & (kCmdWrite | kCmdReadonly)) || !(s.flags & kCmdFast);
}

// The keys of one command, from its table row (COMMAND INFO positions).
void AppendKeys(const CommandSpec& s, std::span<const std::string_view> argv,
                std::vector<std::string_view>* keys) {
  if (s.first_key <= 0) return;
  const size_t argc = argv.size();
  const size_t last = s.last_key < 0 ? argc + s.last_key : static_cast<size_t>(s.last_key);
  const size_t step = s.key_step > 0 ? static_cast<size_t>(s.key_step) : 1;
  for (size_t i = static_cast<size_t>(s.first_key); i <= last && i < argc; i += step)
    keys->push_back(argv[i]);
}

void EndTransaction(ClientSession& s) {
  s.txn.active = false;
  s.txn.aborted = false;
  s.txn.args.clear();
  s.txn.argc.clear();
  s.txn.bytes = 0;
  s.txn.watched.clear();  // EXEC and DISCARD unwatch everything
}

}  // namespace

void CmdMulti(CommandCtx& c) {
  if (c.session.txn.active) return c.out.Error(ErrCode::kErr, errtext::kMultiNested);
  c.session.txn.active = true;
  ReplyOk(c);
}

void CmdDiscard(CommandCtx& c) {
  if (!c.session.txn.active) return c.out.Error(ErrCode::kErr, errtext::kDiscardWithoutMulti);
  EndTransaction(c.session);
  ReplyOk(c);
}

void CmdWatch(CommandCtx& c) {
  TxnState& t = c.session.txn;
  if (t.active) return c.out.Error(ErrCode::kErr, errtext::kWatchInMulti);
  uint64_t bytes = 0;
  for (const TxnState::Watched& w : t.watched) bytes += w.key.size() + sizeof w;
  for (size_t j = 1; j < c.argc(); ++j) bytes += c.arg(j).size() + sizeof(TxnState::Watched);
  if (bytes > MaxReplyBytes(c)) {
    std::string& e = ErrBuf();
    e += "ERR too many watched keys: more than ";
    AppendU64(&e, MaxReplyBytes(c));
    e += " bytes (limits.max_reply_bytes)";
    return c.out.Error(ErrCode::kTooLarge, e);
  }
  for (size_t j = 1; j < c.argc(); ++j) {
    std::string_view key = c.arg(j);
    bool already = std::any_of(t.watched.begin(), t.watched.end(),
                               [key](const TxnState::Watched& w) { return w.key == key; });
    if (!already) t.watched.push_back({std::string(key), c.env.store->Watch(key, c.now_ms)});
  }
  ReplyOk(c);
}

void CmdUnwatch(CommandCtx& c) {
  c.session.txn.watched.clear();
  ReplyOk(c);
}

bool QueueInMulti(CommandCtx& c) {
  TxnState& t = c.session.txn;
  if (!t.active || (c.cmd->flags & kCmdRunsInMulti)) return false;
  if (c.cmd->flags & kCmdNoMulti) {
    t.aborted = true;
    c.out.Error(ErrCode::kErr, errtext::kNotInMulti);
    return true;
  }
  uint64_t bytes = t.bytes;
  for (std::string_view a : c.argv) bytes += a.size() + sizeof(std::string);
  if (bytes > MaxReplyBytes(c)) {
    t.aborted = true;
    std::string& e = ErrBuf();
    e += "ERR transaction too large: the queued commands pass ";
    AppendU64(&e, MaxReplyBytes(c));
    e += " bytes (limits.max_reply_bytes)";
    c.out.Error(ErrCode::kTooLarge, e);
    return true;
  }
  t.bytes = bytes;
  for (std::string_view a : c.argv) t.args.emplace_back(a);
  t.argc.push_back(static_cast<uint32_t>(c.argc()));
  c.out.Status("QUEUED");
  return true;
}

void CmdExec(CommandCtx& c) {
  TxnState& t = c.session.txn;
  if (!t.active) return c.out.Error(ErrCode::kErr, errtext::kExecWithoutMulti);
  if (t.aborted) {
    EndTransaction(c.session);
    return c.out.Error(ErrCode::kErr, errtext::kExecAbort);
  }
  // The session leaves MULTI before anything runs (a queued RESET may clear
  // it); the queue and the watches are this call's from here on.
  std::vector<std::string> queued = std::move(t.args);
  std::vector<uint32_t> counts = std::move(t.argc);
  std::vector<TxnState::Watched> watched = std::move(t.watched);
  EndTransaction(c.session);
  // Every queued command's argv as views into `queued`, and the lock set.
  std::vector<std::string_view> args(queued.begin(), queued.end());
  std::vector<std::span<const std::string_view>> cmds;
  std::vector<std::string_view> keys;
  bool all = false;
  size_t at = 0;
  for (uint32_t n : counts) {
    std::span<const std::string_view> argv(args.data() + at, n);
    at += n;
    cmds.push_back(argv);
    const CommandSpec* s = LookupCommand(argv[0]);
    if (s && !s->subcommands.empty() && argv.size() >= 2)
      if (const CommandSpec* sub = LookupSubcommand(*s, argv[1])) s = sub;
    if (!s) continue;  // refused while queueing: EXEC never gets here
    all |= NeedsAllShards(*s);
    AppendKeys(*s, argv, &keys);
  }
  for (const TxnState::Watched& w : watched) keys.push_back(w.key);
  c.env.store->Exclusive(keys, all, [&] {
    for (const TxnState::Watched& w : watched)
      if (c.env.store->Changed(w.key, w.state, c.now_ms)) return c.out.NilArray();
    c.out.ArrayBegin(cmds.size());
    // The whole reply is bounded as one command's is: once it passes
    // max_reply_bytes the remaining commands do not run (each answers why),
    // so a queue of a million KEYS * cannot hold every shard for long or
    // grow the worker's output without bound.
    const uint64_t max = MaxReplyBytes(c);
    uint64_t bytes = 0;
    for (std::span<const std::string_view> argv : cmds) {
      if (bytes > max) {
        std::string& e = ErrBuf();
        e += "ERR EXEC reply too large: more than ";
        AppendU64(&e, max);
        e += " bytes (limits.max_reply_bytes); this command did not run";
        c.out.Error(ErrCode::kTooLarge, e);
        continue;
      }
      bytes += RunQueued(c.env, c.session, argv, c.out, c.now_ms);
    }
  });
}

}  // namespace pf
