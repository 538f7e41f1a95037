// shared/cmd/helpers.cc: what the command families share (internal.h): the
// scratch buffers, the reply helpers that build Redis' error texts, and the
// rules several commands apply (authentication, expiry arguments, limits).
#include <unistd.h>

#include <climits>
#include <cstdio>

#include "shared/cmd/internal.h"

namespace pf {

// Appends `s`, truncated to `max` bytes, with CR/LF mapped to spaces: an error
// line that echoes user bytes must not be able to end the RESP frame early.
void AppendSafe(std::string* dst, std::string_view s, size_t max) {
  if (s.size() > max) s = s.substr(0, max);
  for (char c : s) dst->push_back((c == '\r' || c == '\n') ? ' ' : c);
}

Scratch& Tls() {
  static thread_local Scratch s;
  return s;
}

namespace {

// A scratch buffer holding more than this after a command is given back.
constexpr size_t kScratchKeepBytes = 1 << 20;

template <typename V>
size_t CapacityBytes(const V& v) {
  return v.capacity() * sizeof(typename V::value_type);
}

template <typename V>
void Release(V& v) {
  v.clear();
  if (CapacityBytes(v) > kScratchKeepBytes) V().swap(v);
}

}  // namespace

void ReleaseScratch() {
  Scratch& s = Tls();
  for (std::string* b : {&s.err, &s.value, &s.prefix, &s.lower}) Release(*b);
  Release(s.mget);
  Release(s.mset);
  for (auto* v : {&s.batch, &s.found, &s.keys}) Release(*v);
  Release(s.resume);
}

std::string& ErrBuf() {
  std::string& buf = Tls().err;
  buf.clear();
  return buf;
}

std::string& ValueBuf() { return Tls().value; }

void ReplyArity(CommandCtx& c, std::string_view name) {
  std::string& e = ErrBuf();
  e += "ERR wrong number of arguments for '";
  AppendSafe(&e, name);
  e += "' command";
  c.out.Error(ErrCode::kWrongArity, e);
}
void ReplyArity(CommandCtx& c) { ReplyArity(c, c.cmd->name); }

void ReplyUnknownCommand(ReplyWriter& out, std::span<const std::string_view> argv) {
  std::string& e = ErrBuf();
  e += "ERR unknown command '";
  AppendSafe(&e, argv[0], 128);
  e += "', with args beginning with: ";
  // Redis: while the args text is under 128 bytes, add "'%.*s' " with the
  // remaining budget as precision.
  size_t args_len = 0;
  for (size_t i = 1; i < argv.size() && args_len < 128; ++i) {
    size_t before = e.size();
    e += '\'';
    AppendSafe(&e, argv[i], 128 - args_len);
    e += "' ";
    args_len += e.size() - before;
  }
  out.Error(ErrCode::kUnknownCommand, e);
}

void ReplyUnknownSubcommand(ReplyWriter& out, std::string_view container, std::string_view sub) {
  std::string& e = ErrBuf();
  e += "ERR unknown subcommand '";
  AppendSafe(&e, sub, 128);
  e += "'. Try ";
  AppendUpper(&e, container);
  e += " HELP.";
  out.Error(ErrCode::kUnknownCommand, e);
}

void ReplyInvalidExpire(CommandCtx& c) {
  std::string& e = ErrBuf();
  e += "ERR invalid expire time in '";
  e += c.cmd->name;
  e += "' command";
  c.out.Error(ErrCode::kErr, e);
}

void ReplySyntax(CommandCtx& c) { c.out.Error(ErrCode::kSyntax, errtext::kSyntax); }
void ReplyNotInteger(CommandCtx& c) { c.out.Error(ErrCode::kNotInteger, errtext::kNotInteger); }
void ReplyOk(CommandCtx& c) { c.out.Status("OK"); }

// An engine status other than the command's expected ones.
void ReplyKvError(CommandCtx& c, kv::Status st, std::string_view key) {
  switch (st) {
    case kv::Status::kNotInteger:
      ReplyNotInteger(c);
      return;
    case kv::Status::kOverflow:
      c.out.Error(ErrCode::kOverflow, errtext::kOverflow);
      return;
    case kv::Status::kOom:
      c.out.Error(ErrCode::kOom, errtext::kOom);
      return;
    case kv::Status::kTooLarge:
      if (c.env.config && key.size() > c.env.config->kv.max_key_bytes)
        c.out.Error(ErrCode::kTooLarge, errtext::kKeyTooLarge);
      else
        c.out.Error(ErrCode::kTooLarge, errtext::kValueTooLarge);
      return;
    default:
      c.out.Error(ErrCode::kInternal, errtext::kInternal);
      return;
  }
}

bool AuthRequired(const CommandEnv& env, const ClientSession& s) {
  return env.config && !env.config->kv.password.empty() && !s.authenticated;
}

// acl.c ACLAuthenticateUser for the single "default" user: with no password
// configured the user is "nopass" and any password works.
bool CheckDefaultUser(const Config* config, std::string_view user, std::string_view pass) {
  if (user != "default") return false;
  if (!config || config->kv.password.empty()) return true;
  return SecretEquals(pass, config->kv.password);
}

// networking.c clientSetName: printable ASCII, no spaces.
bool ValidClientName(std::string_view n) {
  for (char ch : n)
    if (ch < '!' || ch > '~') return false;
  return true;
}

ServerInfo GetServerInfo(const CommandEnv& env, bool detail) {
  ServerInfo si;
  si.detail = detail;
  if (env.server_info) env.server_info(&si);
  if (si.pid == 0) si.pid = getpid();
  if (si.version.empty()) {
#ifdef PREFORKD_VERSION
    si.version = PREFORKD_VERSION;
#else
    si.version = "0.0.0";
#endif
  }
  return si;
}

// The expire argument of SET/SETEX/PSETEX to absolute unix ms
// (t_string.c getExpireMillisecondsOrReply). False after replying.
bool ExpireArgToAbsMs(CommandCtx& c, std::string_view arg, bool seconds, bool relative,
                      int64_t* at_ms) {
  int64_t v;
  if (!ParseInt64(arg, &v)) {
    ReplyNotInteger(c);
    return false;
  }
  if (v <= 0 || (seconds && v > LLONG_MAX / 1000)) {
    ReplyInvalidExpire(c);
    return false;
  }
  if (seconds) v *= 1000;
  if (relative) {
    int64_t now = static_cast<int64_t>(c.now_ms);
    if (v > LLONG_MAX - now) {
      ReplyInvalidExpire(c);
      return false;
    }
    v += now;
  }
  *at_ms = v;
  return true;
}

uint64_t MaxReplyBytes(const CommandCtx& c) {
  return c.env.config ? c.env.config->limits.max_reply_bytes : LimitsConf{}.max_reply_bytes;
}

// RESP bytes of a bulk string of `n` bytes: "$<n>\r\n" <bytes> "\r\n".
uint64_t BulkReplyBytes(size_t n) {
  uint64_t digits = 1;
  for (size_t v = n; v >= 10; v /= 10) ++digits;
  return n + digits + 5;
}

void ReplyReplyTooLarge(CommandCtx& c, std::string_view cmd, uint64_t max, std::string_view hint) {
  std::string& e = ErrBuf();
  e += "ERR reply too large: ";
  e += cmd;
  e += " would return more than ";
  AppendU64(&e, max);
  e += " bytes (limits.max_reply_bytes)";
  e += hint;
  c.out.Error(ErrCode::kTooLarge, e);
}

void ReplyHelp(CommandCtx& c, std::string_view container,
               std::initializer_list<std::string_view> lines) {
  c.out.ArrayBegin(lines.size() + 3);
  std::string& b = ErrBuf();
  b += container;
  b += " <subcommand> [<arg> [value] [opt] ...]. Subcommands are:";
  c.out.Status(b);
  for (std::string_view l : lines) c.out.Status(l);
  c.out.Status("HELP");
  c.out.Status("    Print this help.");
}

void AppendUpper(std::string* dst, std::string_view s) {
  for (char ch : s) dst->push_back((ch == '\r' || ch == '\n') ? ' ' : AsciiUpper(ch));
}

size_t CommandScratchBytesForTesting() {
  Scratch& s = Tls();
  size_t n = 0;
  for (std::string* b : {&s.err, &s.value, &s.prefix, &s.lower}) n += b->capacity();
  n += CapacityBytes(s.mget) + CapacityBytes(s.mset) + CapacityBytes(s.resume);
  for (auto* v : {&s.batch, &s.found, &s.keys}) {
    n += CapacityBytes(*v);
    for (const std::string& k : *v) n += k.capacity();
  }
  for (const auto& v : s.mget)
    if (v) n += v->capacity();
  return n;
}

void ReplyRequestTooLarge(CommandCtx& c, std::string_view cmd, std::string_view verb,
                          uint64_t max) {
  std::string& e = ErrBuf();
  e += "ERR request too large: ";
  e += cmd;
  e += " would ";
  e += verb;
  e += " more than ";
  AppendU64(&e, max);
  e += " bytes (limits.max_reply_bytes)";
  c.out.Error(ErrCode::kTooLarge, e);
}

bool WriteFitsRequestLimit(CommandCtx& c, std::string_view cmd) {
  const uint64_t max = MaxReplyBytes(c);
  uint64_t bytes = 0;
  for (size_t j = 1; j < c.argc(); ++j) bytes += c.arg(j).size();
  if (bytes <= max) return true;
  ReplyRequestTooLarge(c, cmd, "write", max);
  return false;
}

}  // namespace pf
