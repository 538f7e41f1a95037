// shared/cmd/dispatch.cc: the one dispatcher. Every protocol's argv comes
// through Dispatch(), which applies the table's rules in Redis' order
// (server.c processCommand: existence, arity, authentication, persistence
// errors, the pub/sub context), then runs the handler and counts it, and
// every error reply by its prefix (INFO commandstats, errorstats).
#include <exception>

#include "shared/clients.h"
#include "shared/cmd/internal.h"
#include "shared/persist/log_writer.h"
#include "shared/util/clock.h"

namespace pf {
namespace {

bool ArityOk(const CommandSpec& s, size_t argc) {
  return s.arity >= 0 ? argc == static_cast<size_t>(s.arity)
                      : argc >= static_cast<size_t>(-s.arity);
}

// The first word of an error reply, as Redis' afterErrorReply takes it: up
// to the first space within 32 bytes, else "ERR".
std::string_view ErrorPrefix(std::string_view text) {
  const size_t sp = text.substr(0, kMaxErrorNameBytes + 1).find(' ');
  return sp == std::string_view::npos || sp == 0 ? std::string_view("ERR") : text.substr(0, sp);
}

// Forwards every reply of one command and counts its errors: by prefix (INFO
// errorstats), and whether the handler answered one (failed_calls of INFO
// commandstats) or the store refused a write for memory; and about how many
// bytes it wrote (EXEC bounds its reply with it).
class CountingWriter final : public ReplyWriter {
 public:
  CountingWriter(ReplyWriter& w, const CommandEnv& env) : w_(w), env_(env) {}
  void Status(std::string_view s) override {
    bytes += s.size() + 3;
    w_.Status(s);
  }
  void Error(ErrCode code, std::string_view text) override {
    bytes += text.size() + 3;
    errors++;
    if (code == ErrCode::kOom) oom = true;
    if (env_.cmd_stats && env_.stats)
      env_.cmd_stats->errors[ErrorStatIndex(&env_.stats->error_names, ErrorPrefix(text))].Add(1);
    w_.Error(code, text);
  }
  void Integer(int64_t v) override {
    bytes += 24;
    w_.Integer(v);
  }
  void Bulk(std::string_view v) override {
    bytes += BulkReplyBytes(v.size());
    w_.Bulk(v);
  }
  void BulkTake(std::string* v) override {
    bytes += BulkReplyBytes(v->size());
    w_.BulkTake(v);
  }
  void Nil() override {
    bytes += 5;
    w_.Nil();
  }
  void NilArray() override {
    bytes += 5;
    w_.NilArray();
  }
  void ArrayBegin(size_t n) override {
    bytes += 16;
    w_.ArrayBegin(n);
  }
  void MapBegin(size_t n) override {
    bytes += 16;
    w_.MapBegin(n);
  }
  void SetBegin(size_t n) override {
    bytes += 16;
    w_.SetBegin(n);
  }
  void PushBegin(size_t n) override {
    bytes += 16;
    w_.PushBegin(n);
  }
  void Double(double d) override {
    bytes += 32;
    w_.Double(d);
  }
  void Bool(bool b) override {
    bytes += 4;
    w_.Bool(b);
  }
  ReplyWriter& inner() { return w_; }
  uint64_t bytes = 0;
  uint32_t errors = 0;
  bool oom = false;

 private:
  ReplyWriter& w_;
  const CommandEnv& env_;
};

// Where a muted command's reply goes (CLIENT REPLY OFF / SKIP).
class NullWriter final : public ReplyWriter {
 public:
  void Status(std::string_view) override {}
  void Error(ErrCode, std::string_view) override {}
  void Integer(int64_t) override {}
  void Bulk(std::string_view) override {}
  void Nil() override {}
  void NilArray() override {}
  void ArrayBegin(size_t) override {}
};

// After each command, as networking.c resetClient: SKIP lasts one command,
// and CLIENT REPLY SKIP itself arms it for the next one. ON while muted
// still answers +OK.
struct ReplyModeStep {
  ClientSession& s;
  ReplyWriter& out;
  ~ReplyModeStep() {
    if (s.reply_ack) {
      s.reply_ack = false;
      out.Status("OK");
    }
    s.reply_skip = false;
    if (s.reply_skip_next) {
      s.reply_skip_next = false;
      s.reply_skip = true;
    }
  }
};

void Reject(const CommandEnv& env, const CommandSpec& spec) {
  if (env.cmd_stats) env.cmd_stats->cmd[CommandIndex(spec)].rejected.Add(1);
}

void ReplyNotInPubSubContext(ReplyWriter& out, const CommandSpec& spec) {
  std::string& e = ErrBuf();
  e += "ERR Can't execute '";
  e += spec.name;
  e +=
      "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context";
  out.Error(ErrCode::kErr, e);
}

}  // namespace

namespace {

// Runs a command that passed its checks: the handler, then its statistics.
void Execute(CommandCtx& c, CountingWriter& w) {
  const CommandEnv& env = c.env;
  const CommandSpec* spec = c.cmd;
  c.session.commands++;
  c.session.last_command = spec->name;
  c.session.last_command_ms = c.now_ms;
  if (env.commands_processed) env.commands_processed->Add(1);
  const uint64_t t0 = env.cmd_stats ? Ticks() : 0;
  try {
    spec->proc(c);
  } catch (const std::exception&) {
    // The engine threw (bad_alloc in a worker-local buffer); the connection
    // and the worker live on. The caller's logger records the context.
    w.Error(ErrCode::kInternal, errtext::kInternal);
  }
  if (env.cmd_stats) {
    CmdStat& st = env.cmd_stats->cmd[CommandIndex(*spec)];
    if (w.oom && w.errors == 1 && (spec->flags & kCmdDenyOom)) {
      // Redis refuses a deny-oom command before running it; here the store
      // refuses the write, with nothing written: the same outcome, counted
      // the same way (rejected_calls, not calls).
      st.rejected.Add(1);
    } else {
      st.calls.Add(1);
      const uint64_t t1 = Ticks();
      st.ticks.Add(t1 > t0 ? t1 - t0 : 0);  // a TSC that is not in step across CPUs can go back
      if (w.errors) st.failed.Add(1);
    }
  }
  if (env.latency && env.batch_start_ns) {
    const uint64_t now = MonoNs(), start = *env.batch_start_ns;
    env.latency->Record(now > start ? (now - start) / 1000 : 0);
  }
  ReleaseScratch();  // the reply is written: its buffers are no longer needed
}

// The command (or subcommand) argv names, or nullptr.
const CommandSpec* Resolve(std::span<const std::string_view> argv) {
  const CommandSpec* spec = LookupCommand(argv[0]);
  if (spec && !spec->subcommands.empty() && argv.size() >= 2)
    spec = LookupSubcommand(*spec, argv[1]);
  return spec;
}

}  // namespace

void Dispatch(const CommandEnv& env, ClientSession& session, std::span<const std::string_view> argv,
              ReplyWriter& out, uint64_t now_ms) {
  if (argv.empty()) return;  // the protocol skips empty commands, as Redis does
  NullWriter muted;
  ReplyModeStep reply_mode{session, out};
  CountingWriter w(session.reply_off || session.reply_skip ? muted : out, env);
  // A command refused before it runs also dooms an open transaction
  // (multi.c flagTransaction): EXEC will answer EXECABORT.
  struct AbortOnRefusal {
    ClientSession& s;
    bool ran = false;
    ~AbortOnRefusal() {
      if (!ran && s.txn.active) s.txn.aborted = true;
    }
  } refusal{session};
  const CommandSpec* spec = LookupCommand(argv[0]);
  if (!spec) return ReplyUnknownCommand(w, argv);
  CommandCtx c{env, session, argv, w, now_ms, spec};
  if (!spec->subcommands.empty() && argv.size() >= 2) {
    const CommandSpec* sub = LookupSubcommand(*spec, argv[1]);
    if (!sub) {
      // Redis has no command to charge this to; the container row is ours.
      Reject(env, *spec);
      return ReplyUnknownSubcommand(w, argv[0], argv[1]);
    }
    spec = c.cmd = sub;
  }
  if (!ArityOk(*spec, argv.size()) || !spec->proc) {
    Reject(env, *spec);
    return ReplyArity(c);
  }
  if (AuthRequired(env, session) && !(spec->flags & kCmdNoAuth)) {
    Reject(env, *spec);
    return w.Error(ErrCode::kNoAuth, errtext::kNoAuth);
  }
  if ((spec->flags & kCmdWrite) && env.log && env.log->failing()) {
    Reject(env, *spec);
    return w.Error(ErrCode::kMisconf,
                   "MISCONF Errors writing to the append-only log: " + env.log->error() +
                       ". Writes are refused until it is fixed (see INFO persistence)");
  }
  if (session.resp2 && session.pubsub && session.pubsub->subscription_count() > 0 &&
      !(spec->flags & kCmdSubscribed)) {
    Reject(env, *spec);
    return ReplyNotInPubSubContext(w, *spec);
  }
  refusal.ran = true;
  if (QueueInMulti(c)) return;  // MULTI: queued (or refused there), reply written
  Execute(c, w);
}

namespace {

// Redis' may-replicate commands: the writes, PUBLISH, and an EXEC whose
// queue holds one of them.
bool MayWrite(const CommandSpec& spec, const ClientSession& s) {
  if ((spec.flags & kCmdWrite) || spec.name == "publish") return true;
  if (spec.name != "exec" || !s.txn.active) return false;
  size_t at = 0;
  for (const uint32_t n : s.txn.argc) {
    const std::string_view argv[2] = {
        s.txn.args[at], n >= 2 ? std::string_view(s.txn.args[at + 1]) : std::string_view()};
    const CommandSpec* q = Resolve(std::span<const std::string_view>(argv, n >= 2 ? 2 : 1));
    if (q && ((q->flags & kCmdWrite) || q->name == "publish")) return true;
    at += n;
  }
  return false;
}

}  // namespace

bool CommandPaused(const CommandEnv& env, const ClientSession& session,
                   std::span<const std::string_view> argv, uint64_t* until_mono_ms) {
  // One relaxed load when nothing is paused (every command pays it).
  if (!env.clients || argv.empty() ||
      env.clients->header()->pause_word.load(std::memory_order_relaxed) == 0)
    return false;
  const clients::PauseMode mode = env.clients->Paused(MonoMs(), until_mono_ms);
  if (mode == clients::kPauseNone) return false;
  if (mode == clients::kPauseAll) return true;
  // WRITE: what may change the data set or be propagated.
  const CommandSpec* spec = Resolve(argv);
  return spec && MayWrite(*spec, session);
}

uint64_t RunQueued(const CommandEnv& env, ClientSession& session,
                   std::span<const std::string_view> argv, ReplyWriter& out, uint64_t now_ms) {
  // EXEC's own writer counts EXEC's errors; each queued command counts its own.
  auto* exec_writer = dynamic_cast<CountingWriter*>(&out);
  CountingWriter w(exec_writer ? exec_writer->inner() : out, env);
  const CommandSpec* spec = Resolve(argv);
  if (!spec || !spec->proc) {
    ReplyUnknownCommand(w, argv);  // checked when queued: not reached
    return w.bytes;
  }
  CommandCtx c{env, session, argv, w, now_ms, spec};
  Execute(c, w);
  return w.bytes;
}

}  // namespace pf
