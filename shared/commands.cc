// shared/commands.cc: the command table and its handlers (see commands.h).
// Semantics and error texts follow Redis 7.0 (server.c processCommand,
// t_string.c, expire.c, db.c, networking.c, acl.c, util.c stringmatchlen).
#include "shared/commands.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <optional>
#include <utility>
#include <vector>

#include "shared/persist.h"

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

namespace {

// Redis tells a 64-bit build by this; we only build for 64-bit Linux.
constexpr std::string_view kRedisCompatVersion = "7.0.0";
constexpr size_t kKeysScanBatch = 1024;      // buckets per engine Scan call inside KEYS
constexpr int64_t kScanMaxCount = 1 << 20;  // a SCAN COUNT hint above this is clamped
constexpr size_t kGlobMaxWork = 1 << 20;    // token steps per GlobMatch call before giving up
// Token steps all GlobMatch calls of one KEYS or SCAN may take: KEYS answers
// kKeysTooExpensive past it, SCAN returns early with the cursor it reached.
constexpr uint64_t kGlobCommandBudget = 50'000'000;
// A scratch buffer holding more than this after a command is given back.
constexpr size_t kScratchKeepBytes = 1 << 20;
static_assert(errtext::kClientNameTooLong.find("512") != std::string_view::npos &&
              kMaxClientNameBytes == 512);

// ---------------------------------------------------------------------------
// Small helpers

// GlobMatch that adds the steps it took to *total (defined beside GlobMatch).
bool GlobMatchCounted(std::string_view pat, std::string_view s, uint64_t* total);

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// `lower` is already lower case (table names, option words).
bool EqNoCase(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i)
    if (Lower(s[i]) != lower[i]) return false;
  return true;
}

// <0, 0, >0 like strcmp, comparing `s` lower-cased against `lower`.
int CmpNoCase(std::string_view s, std::string_view lower) {
  size_t n = std::min(s.size(), lower.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char a = static_cast<unsigned char>(Lower(s[i]));
    unsigned char b = static_cast<unsigned char>(lower[i]);
    if (a != b) return a < b ? -1 : 1;
  }
  if (s.size() == lower.size()) return 0;
  return s.size() < lower.size() ? -1 : 1;
}

// Appends `s`, truncated to `max` bytes, with CR/LF mapped to spaces: an error
// line that echoes user bytes must not be able to end the RESP frame early.
void AppendSafe(std::string* dst, std::string_view s, size_t max = SIZE_MAX) {
  if (s.size() > max) s = s.substr(0, max);
  for (char c : s) dst->push_back((c == '\r' || c == '\n') ? ' ' : c);
}

// Worker-local scratch buffers of the handlers, kept between commands to save
// allocations. ReleaseScratch() runs after every command: it drops what they
// hold and gives back any buffer above kScratchKeepBytes, so one huge reply
// does not pin its memory for the worker's life.
struct Scratch {
  std::string err, value, prefix, lower;
  std::vector<std::optional<std::string>> mget;
  std::vector<std::pair<std::string_view, std::string_view>> mset;
  std::vector<std::string> batch, found, keys;
  std::vector<uint64_t> resume;
};

Scratch& Tls() {
  static thread_local Scratch s;
  return s;
}

template <typename V>
size_t CapacityBytes(const V& v) {
  return v.capacity() * sizeof(typename V::value_type);
}

template <typename V>
void Release(V& v) {
  v.clear();
  if (CapacityBytes(v) > kScratchKeepBytes) V().swap(v);
}

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

void AppendU64(std::string* dst, uint64_t v) {
  char tmp[24];
  int n = std::snprintf(tmp, sizeof tmp, "%llu", static_cast<unsigned long long>(v));
  dst->append(tmp, static_cast<size_t>(n));
}
void AppendI64(std::string* dst, int64_t v) {
  char tmp[24];
  int n = std::snprintf(tmp, sizeof tmp, "%lld", static_cast<long long>(v));
  dst->append(tmp, static_cast<size_t>(n));
}

// ---------------------------------------------------------------------------
// Error replies (texts in commands.h)

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
  for (char ch : container) {
    if (ch == '\r' || ch == '\n') ch = ' ';
    e += (ch >= 'a' && ch <= 'z') ? static_cast<char>(ch - 'a' + 'A') : ch;
  }
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
    case kv::Status::kNotInteger: ReplyNotInteger(c); return;
    case kv::Status::kOverflow: c.out.Error(ErrCode::kOverflow, errtext::kOverflow); return;
    case kv::Status::kOom: c.out.Error(ErrCode::kOom, errtext::kOom); return;
    case kv::Status::kTooLarge:
      if (c.env.config && key.size() > c.env.config->kv.max_key_bytes)
        c.out.Error(ErrCode::kTooLarge, errtext::kKeyTooLarge);
      else
        c.out.Error(ErrCode::kTooLarge, errtext::kValueTooLarge);
      return;
    default: c.out.Error(ErrCode::kInternal, errtext::kInternal); return;
  }
}

bool AuthRequired(const CommandCtx& c) {
  return c.env.config && !c.env.config->kv.password.empty() && !c.session.authenticated;
}

// Constant-time for equal lengths, so a password is not leaked by timing.
bool SecretEquals(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

// acl.c ACLAuthenticateUser for the single "default" user: with no password
// configured the user is "nopass" and any password works.
bool CheckUserPass(const CommandCtx& c, std::string_view user, std::string_view pass) {
  if (user != "default") return false;
  const std::string& want = c.env.config ? c.env.config->kv.password : std::string();
  if (want.empty()) return true;
  return SecretEquals(pass, want);
}

// networking.c clientSetName: printable ASCII, no spaces.
bool ValidClientName(std::string_view n) {
  for (char ch : n)
    if (ch < '!' || ch > '~') return false;
  return true;
}

ServerInfo GetServerInfo(const CommandEnv& env) {
  ServerInfo si;
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

std::string& ValueBuf() { return Tls().value; }

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

// ---------------------------------------------------------------------------
// Connection commands

void CmdPing(CommandCtx& c) {
  if (c.argc() > 2) return ReplyArity(c);
  if (c.argc() == 1) return c.out.Status("PONG");
  c.out.Bulk(c.arg(1));
}

void CmdEcho(CommandCtx& c) { c.out.Bulk(c.arg(1)); }

void CmdQuit(CommandCtx& c) {
  c.session.close_after_reply = true;
  ReplyOk(c);
}

void CmdSelect(CommandCtx& c) {
  int64_t id;
  if (!ParseInt64(c.arg(1), &id) || id < INT_MIN || id > INT_MAX) return ReplyNotInteger(c);
  if (id != 0) return c.out.Error(ErrCode::kErr, errtext::kDbIndex);
  ReplyOk(c);
}

void CmdAuth(CommandCtx& c) {
  if (c.argc() > 3) return ReplySyntax(c);
  std::string_view user = "default", pass;
  if (c.argc() == 2) {
    if (!c.env.config || c.env.config->kv.password.empty())
      return c.out.Error(ErrCode::kErr, errtext::kAuthNoPassword);
    pass = c.arg(1);
  } else {
    user = c.arg(1);
    pass = c.arg(2);
  }
  if (!CheckUserPass(c, user, pass)) return c.out.Error(ErrCode::kWrongPass, errtext::kWrongPass);
  c.session.authenticated = true;
  ReplyOk(c);
}

void CmdHello(CommandCtx& c) {
  size_t next = 1;
  if (c.argc() >= 2) {
    int64_t ver;
    next++;
    if (!ParseInt64(c.arg(1), &ver)) return c.out.Error(ErrCode::kErr, errtext::kHelloProtoNotInt);
    // Redis accepts 3; we speak RESP2 only, so 3 gets the answer a client
    // library takes as "fall back to RESP2".
    if (ver != 2) return c.out.Error(ErrCode::kErr, errtext::kNoProto);
  }
  for (size_t j = next; j < c.argc(); ++j) {
    size_t more = c.argc() - 1 - j;
    std::string_view opt = c.arg(j);
    if (EqNoCase(opt, "auth") && more >= 2) {
      if (!CheckUserPass(c, c.arg(j + 1), c.arg(j + 2)))
        return c.out.Error(ErrCode::kWrongPass, errtext::kWrongPass);
      c.session.authenticated = true;
      j += 2;
    } else if (EqNoCase(opt, "setname") && more >= 1) {
      if (!ValidClientName(c.arg(j + 1))) return c.out.Error(ErrCode::kErr, errtext::kClientName);
      if (c.arg(j + 1).size() > kMaxClientNameBytes)
        return c.out.Error(ErrCode::kErr, errtext::kClientNameTooLong);
      c.session.name.assign(c.arg(j + 1));
      j++;
    } else {
      std::string& e = ErrBuf();
      e += "ERR Syntax error in HELLO option '";
      AppendSafe(&e, opt);
      e += '\'';
      return c.out.Error(ErrCode::kSyntax, e);
    }
  }
  if (AuthRequired(c)) return c.out.Error(ErrCode::kNoAuth, errtext::kHelloNoAuth);
  c.out.ArrayBegin(14);
  c.out.Bulk("server");
  c.out.Bulk("redis");
  c.out.Bulk("version");
  c.out.Bulk(kRedisCompatVersion);
  c.out.Bulk("proto");
  c.out.Integer(2);
  c.out.Bulk("id");
  c.out.Integer(static_cast<int64_t>(c.session.id));
  c.out.Bulk("mode");
  c.out.Bulk("standalone");
  c.out.Bulk("role");
  c.out.Bulk("master");
  c.out.Bulk("modules");
  c.out.ArrayBegin(0);
}

void CmdTime(CommandCtx& c) {
  std::string& b = ErrBuf();
  c.out.ArrayBegin(2);
  AppendU64(&b, c.now_ms / 1000);
  c.out.Bulk(b);
  b.clear();
  AppendU64(&b, (c.now_ms % 1000) * 1000);
  c.out.Bulk(b);
}

// ---------------------------------------------------------------------------
// CLIENT

void AppendClientLine(const CommandCtx& c, std::string* b) {
  const ClientSession& s = c.session;
  auto field = [b](std::string_view k, std::string_view v) {
    *b += k;
    *b += '=';
    AppendSafe(b, v);
    *b += ' ';
  };
  *b += "id=";
  AppendU64(b, s.id);
  *b += ' ';
  field("addr", s.peer);
  field("laddr", s.local);
  *b += "fd=";
  AppendI64(b, s.fd);
  *b += ' ';
  field("name", s.name);
  *b += "age=";
  AppendU64(b, s.connected_ms && c.now_ms > s.connected_ms ? (c.now_ms - s.connected_ms) / 1000 : 0);
  *b += " idle=0 flags=N db=0 sub=0 psub=0 multi=-1 ";
  field("cmd", s.last_command);
  *b += "user=default ";
  field("lib-name", s.lib_name);
  field("lib-ver", s.lib_ver);
  *b += "resp=2 worker=";
  AppendI64(b, s.worker_slot);
  *b += '\n';
}

void CmdClientId(CommandCtx& c) { c.out.Integer(static_cast<int64_t>(c.session.id)); }

void CmdClientGetname(CommandCtx& c) {
  if (c.session.name.empty()) return c.out.Nil();
  c.out.Bulk(c.session.name);
}

void CmdClientSetname(CommandCtx& c) {
  if (!ValidClientName(c.arg(2))) return c.out.Error(ErrCode::kErr, errtext::kClientName);
  if (c.arg(2).size() > kMaxClientNameBytes)
    return c.out.Error(ErrCode::kErr, errtext::kClientNameTooLong);
  c.session.name.assign(c.arg(2));
  ReplyOk(c);
}

void CmdClientSetinfo(CommandCtx& c) {
  if (c.argc() != 4) return ReplyArity(c);
  std::string_view attr = c.arg(2), val = c.arg(3);
  std::string* dst = nullptr;
  if (EqNoCase(attr, "lib-name")) dst = &c.session.lib_name;
  else if (EqNoCase(attr, "lib-ver")) dst = &c.session.lib_ver;
  if (!dst) {
    std::string& e = ErrBuf();
    e += "ERR Unrecognized option '";
    AppendSafe(&e, attr, 128);
    e += '\'';
    return c.out.Error(ErrCode::kSyntax, e);
  }
  if (!ValidClientName(val)) {
    std::string& e = ErrBuf();
    e += "ERR ";
    e += EqNoCase(attr, "lib-name") ? "lib-name" : "lib-ver";
    e += " cannot contain spaces, newlines or special characters.";
    return c.out.Error(ErrCode::kErr, e);
  }
  if (val.size() > kMaxClientNameBytes) {
    std::string& e = ErrBuf();
    e += "ERR ";
    e += EqNoCase(attr, "lib-name") ? "lib-name" : "lib-ver";
    e += " cannot be longer than 512 bytes.";
    return c.out.Error(ErrCode::kErr, e);
  }
  dst->assign(val);
  ReplyOk(c);
}

void CmdClientInfo(CommandCtx& c) {
  std::string& b = ErrBuf();
  AppendClientLine(c, &b);
  c.out.Bulk(b);
}

void CmdClientList(CommandCtx& c) {
  if (c.argc() > 2) return ReplySyntax(c);  // TYPE/ID filters: not supported
  std::string& b = ErrBuf();
  if (c.env.client_list) c.env.client_list(&b);
  else AppendClientLine(c, &b);
  c.out.Bulk(b);
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

void CmdClientHelp(CommandCtx& c) {
  ReplyHelp(c, "CLIENT",
            {"GETNAME", "    Return the name of the current connection.", "ID",
             "    Return the ID of the current connection.", "INFO",
             "    Return information about the current client connection.", "LIST",
             "    Return information about client connections of this worker.",
             "SETNAME <name>", "    Assign the name <name> to the current connection.",
             "SETINFO <option> <value>", "    Set client meta attr (LIB-NAME, LIB-VER)."});
}

// ---------------------------------------------------------------------------
// String commands

void CmdGet(CommandCtx& c) {
  std::string& v = ValueBuf();
  kv::Status st = c.env.store->Get(c.arg(1), c.now_ms, &v);
  if (st == kv::Status::kOk) return c.out.Bulk(v);
  if (st == kv::Status::kNotFound) return c.out.Nil();
  ReplyKvError(c, st, c.arg(1));
}

void CmdStrlen(CommandCtx& c) {
  std::string& v = ValueBuf();
  kv::Status st = c.env.store->Get(c.arg(1), c.now_ms, &v);
  if (st == kv::Status::kOk) return c.out.Integer(static_cast<int64_t>(v.size()));
  if (st == kv::Status::kNotFound) return c.out.Integer(0);
  ReplyKvError(c, st, c.arg(1));
}

// t_string.c setGenericCommand. `ok_int` for SETNX (:1/:0 instead of +OK/nil).
void DoSet(CommandCtx& c, std::string_view key, std::string_view value, kv::SetOptions opt,
           bool get, bool ok_int) {
  std::string& old = ValueBuf();
  bool had_old = false;
  kv::Status st = c.env.store->Set(key, value, opt, c.now_ms, get ? &old : nullptr,
                                   get ? &had_old : nullptr);
  if (st == kv::Status::kOk || st == kv::Status::kNotDone) {
    if (get) return had_old ? c.out.Bulk(old) : c.out.Nil();
    if (ok_int) return c.out.Integer(st == kv::Status::kOk ? 1 : 0);
    return st == kv::Status::kOk ? ReplyOk(c) : c.out.Nil();
  }
  ReplyKvError(c, st, key);
}

void CmdSet(CommandCtx& c) {
  enum : unsigned { NX = 1, XX = 2, GET = 4, KEEPTTL = 8, EX = 16, PX = 32, EXAT = 64, PXAT = 128 };
  unsigned f = 0;
  std::string_view expire;
  for (size_t j = 3; j < c.argc(); ++j) {
    std::string_view o = c.arg(j);
    bool next = j + 1 < c.argc();
    if (EqNoCase(o, "nx") && !(f & XX)) {
      f |= NX;
    } else if (EqNoCase(o, "xx") && !(f & NX)) {
      f |= XX;
    } else if (EqNoCase(o, "get")) {
      f |= GET;
    } else if (EqNoCase(o, "keepttl") && !(f & (EX | PX | EXAT | PXAT))) {
      f |= KEEPTTL;
    } else if (EqNoCase(o, "ex") && !(f & (KEEPTTL | PX | EXAT | PXAT)) && next) {
      f |= EX;
      expire = c.arg(++j);
    } else if (EqNoCase(o, "px") && !(f & (KEEPTTL | EX | EXAT | PXAT)) && next) {
      f |= PX;
      expire = c.arg(++j);
    } else if (EqNoCase(o, "exat") && !(f & (KEEPTTL | EX | PX | PXAT)) && next) {
      f |= EXAT;
      expire = c.arg(++j);
    } else if (EqNoCase(o, "pxat") && !(f & (KEEPTTL | EX | PX | EXAT)) && next) {
      f |= PXAT;
      expire = c.arg(++j);
    } else {
      return ReplySyntax(c);
    }
  }
  kv::SetOptions opt;
  opt.cond = (f & NX) ? kv::SetOptions::kIfAbsent
             : (f & XX) ? kv::SetOptions::kIfPresent
                        : kv::SetOptions::kAlways;
  opt.keep_ttl = (f & KEEPTTL) != 0;
  if (f & (EX | PX | EXAT | PXAT)) {
    if (!ExpireArgToAbsMs(c, expire, (f & (EX | EXAT)) != 0, (f & (EX | PX)) != 0,
                          &opt.expire_at_ms))
      return;
  }
  DoSet(c, c.arg(1), c.arg(2), opt, (f & GET) != 0, false);
}

void CmdSetnx(CommandCtx& c) {
  kv::SetOptions opt;
  opt.cond = kv::SetOptions::kIfAbsent;
  DoSet(c, c.arg(1), c.arg(2), opt, false, true);
}

void SetexGeneric(CommandCtx& c, bool seconds) {
  kv::SetOptions opt;
  if (!ExpireArgToAbsMs(c, c.arg(2), seconds, true, &opt.expire_at_ms)) return;
  DoSet(c, c.arg(1), c.arg(3), opt, false, false);
}
void CmdSetex(CommandCtx& c) { SetexGeneric(c, true); }
void CmdPsetex(CommandCtx& c) { SetexGeneric(c, false); }

void CmdMget(CommandCtx& c) {
  std::vector<std::optional<std::string>>& vals = Tls().mget;
  vals.clear();
  auto keys = c.argv.subspan(1);
  // The engine stops copying once the values pass the budget, so MGET of one
  // big key repeated a million times costs at most max_reply_bytes.
  const uint64_t max = MaxReplyBytes(c);
  if (!c.env.store->MGet(keys, c.now_ms, &vals, max)) return ReplyReplyTooLarge(c, "MGET", max, "");
  c.out.ArrayBegin(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i < vals.size() && vals[i]) c.out.Bulk(*vals[i]);
    else c.out.Nil();
  }
}

void CmdMset(CommandCtx& c) {
  if (c.argc() % 2 == 0) return ReplyArity(c);
  // MSET is atomic: the engine holds every involved shard's lock while it
  // writes, so the data it may write is bounded before any lock is taken.
  const uint64_t max = MaxReplyBytes(c);
  uint64_t bytes = 0;
  for (size_t j = 1; j < c.argc(); ++j) bytes += c.arg(j).size();
  if (bytes > max) {
    std::string& e = ErrBuf();
    e += "ERR request too large: MSET would write more than ";
    AppendU64(&e, max);
    e += " bytes (limits.max_reply_bytes)";
    return c.out.Error(ErrCode::kTooLarge, e);
  }
  std::vector<std::pair<std::string_view, std::string_view>>& kvs = Tls().mset;
  kvs.clear();
  for (size_t j = 1; j + 1 < c.argc(); j += 2) kvs.emplace_back(c.arg(j), c.arg(j + 1));
  kv::Status st = c.env.store->MSet(kvs, c.now_ms);
  if (st == kv::Status::kOk) return ReplyOk(c);
  // Name the offending key when the engine says "too large".
  std::string_view key;
  if (st == kv::Status::kTooLarge && c.env.config)
    for (auto& [k, v] : kvs)
      if (k.size() > c.env.config->kv.max_key_bytes) key = k;
  ReplyKvError(c, st, key);
}

void IncrGeneric(CommandCtx& c, int64_t delta) {
  int64_t result;
  kv::Status st = c.env.store->IncrBy(c.arg(1), delta, c.now_ms, &result);
  if (st == kv::Status::kOk) return c.out.Integer(result);
  ReplyKvError(c, st, c.arg(1));
}
void CmdIncr(CommandCtx& c) { IncrGeneric(c, 1); }
void CmdDecr(CommandCtx& c) { IncrGeneric(c, -1); }
void CmdIncrby(CommandCtx& c) {
  int64_t d;
  if (!ParseInt64(c.arg(2), &d)) return ReplyNotInteger(c);
  IncrGeneric(c, d);
}
void CmdDecrby(CommandCtx& c) {
  int64_t d;
  if (!ParseInt64(c.arg(2), &d)) return ReplyNotInteger(c);
  if (d == LLONG_MIN) return c.out.Error(ErrCode::kOverflow, errtext::kDecrOverflow);
  IncrGeneric(c, -d);
}

// ---------------------------------------------------------------------------
// Keyspace commands

void CmdDel(CommandCtx& c) {
  int64_t n = 0;
  for (size_t j = 1; j < c.argc(); ++j)
    if (c.env.store->Del(c.arg(j), c.now_ms) == kv::Status::kOk) n++;
  c.out.Integer(n);
}

void CmdExists(CommandCtx& c) {
  int64_t n = 0;
  for (size_t j = 1; j < c.argc(); ++j)
    if (c.env.store->Exists(c.arg(j), c.now_ms)) n++;
  c.out.Integer(n);
}

void CmdType(CommandCtx& c) {
  c.out.Status(c.env.store->Exists(c.arg(1), c.now_ms) ? "string" : "none");
}

// expire.c expireGenericCommand: `basetime` is now (EXPIRE/PEXPIRE) or 0 (..AT).
void ExpireGeneric(CommandCtx& c, int64_t basetime, bool seconds) {
  enum : unsigned { NX = 1, XX = 2, GT = 4, LT = 8 };
  unsigned f = 0;
  for (size_t j = 3; j < c.argc(); ++j) {
    std::string_view o = c.arg(j);
    if (EqNoCase(o, "nx")) f |= NX;
    else if (EqNoCase(o, "xx")) f |= XX;
    else if (EqNoCase(o, "gt")) f |= GT;
    else if (EqNoCase(o, "lt")) f |= LT;
    else {
      std::string& e = ErrBuf();
      e += "ERR Unsupported option ";
      AppendSafe(&e, o);
      return c.out.Error(ErrCode::kSyntax, e);
    }
  }
  if ((f & NX) && (f & (XX | GT | LT))) return c.out.Error(ErrCode::kSyntax, errtext::kExpireNxConflict);
  if ((f & GT) && (f & LT)) return c.out.Error(ErrCode::kSyntax, errtext::kExpireGtLtConflict);

  int64_t when;
  if (!ParseInt64(c.arg(2), &when)) return ReplyNotInteger(c);
  if (seconds) {
    if (when > LLONG_MAX / 1000 || when < LLONG_MIN / 1000) return ReplyInvalidExpire(c);
    when *= 1000;
  }
  if (when > LLONG_MAX - basetime) return ReplyInvalidExpire(c);
  when += basetime;

  std::string_view key = c.arg(1);
  if (f) {
    // Not atomic with the SetExpire below (two shard lock sections); a
    // concurrent EXPIRE on the same key can interleave. Redis is single-threaded.
    int64_t cur;
    kv::Status st = c.env.store->GetExpire(key, c.now_ms, &cur);
    if (st != kv::Status::kOk) return c.out.Integer(0);
    if ((f & NX) && cur != -1) return c.out.Integer(0);
    if ((f & XX) && cur == -1) return c.out.Integer(0);
    if ((f & GT) && (cur == -1 || when <= cur)) return c.out.Integer(0);
    if ((f & LT) && cur != -1 && when >= cur) return c.out.Integer(0);
  }
  if (when <= static_cast<int64_t>(c.now_ms)) {
    // Already expired: Redis deletes the key and answers 1 if it existed.
    return c.out.Integer(c.env.store->Del(key, c.now_ms) == kv::Status::kOk ? 1 : 0);
  }
  kv::Status st = c.env.store->SetExpire(key, when, c.now_ms);
  c.out.Integer(st == kv::Status::kOk ? 1 : 0);
}
void CmdExpire(CommandCtx& c) { ExpireGeneric(c, static_cast<int64_t>(c.now_ms), true); }
void CmdPexpire(CommandCtx& c) { ExpireGeneric(c, static_cast<int64_t>(c.now_ms), false); }
void CmdExpireat(CommandCtx& c) { ExpireGeneric(c, 0, true); }
void CmdPexpireat(CommandCtx& c) { ExpireGeneric(c, 0, false); }

void TtlGeneric(CommandCtx& c, bool ms) {
  int64_t at;
  kv::Status st = c.env.store->GetExpire(c.arg(1), c.now_ms, &at);
  if (st != kv::Status::kOk) return c.out.Integer(-2);
  if (at == -1) return c.out.Integer(-1);
  int64_t ttl = at - static_cast<int64_t>(c.now_ms);
  if (ttl < 0) ttl = 0;
  c.out.Integer(ms ? ttl : (ttl + 500) / 1000);
}
void CmdTtl(CommandCtx& c) { TtlGeneric(c, false); }
void CmdPttl(CommandCtx& c) { TtlGeneric(c, true); }

void CmdPersist(CommandCtx& c) {
  kv::Status st = c.env.store->SetExpire(c.arg(1), -1, c.now_ms);
  c.out.Integer(st == kv::Status::kOk ? 1 : 0);
}

void CmdDbsize(CommandCtx& c) { c.out.Integer(static_cast<int64_t>(c.env.store->DbSize())); }

void FlushGeneric(CommandCtx& c) {
  if (c.argc() == 2 && !EqNoCase(c.arg(1), "sync") && !EqNoCase(c.arg(1), "async"))
    return ReplySyntax(c);
  if (c.argc() > 2) return ReplySyntax(c);
  c.env.store->FlushAll();  // ASYNC is done synchronously: the engine frees in place
  ReplyOk(c);
}
void CmdFlushall(CommandCtx& c) { FlushGeneric(c); }
void CmdFlushdb(CommandCtx& c) { FlushGeneric(c); }

void CmdFlushns(CommandCtx& c) {
  std::string& prefix = Tls().prefix;
  prefix.assign(c.arg(1));
  prefix += '^';
  c.out.Integer(static_cast<int64_t>(c.env.store->FlushPrefix(prefix)));
}

void CmdKeys(CommandCtx& c) {
  std::string_view pat = c.arg(1);
  bool all = pat == "*";
  std::vector<std::string>& batch = Tls().batch;
  std::vector<std::string>& found = Tls().found;
  found.clear();
  const uint64_t max = MaxReplyBytes(c);
  uint64_t cursor = 0, bytes = 0, work = 0;
  do {
    batch.clear();
    cursor = c.env.store->Scan(cursor, kKeysScanBatch, c.now_ms, &batch);
    for (std::string& k : batch) {
      if (!all) {
        bool match = GlobMatchCounted(pat, k, &work);
        if (work > kGlobCommandBudget)
          return c.out.Error(ErrCode::kErr, errtext::kKeysTooExpensive);
        if (!match) continue;
      }
      bytes += BulkReplyBytes(k.size());
      if (bytes > max) return ReplyReplyTooLarge(c, "KEYS", max, "; use SCAN");
      found.push_back(std::move(k));
    }
  } while (cursor != 0);
  c.out.ArrayBegin(found.size());
  for (const std::string& k : found) c.out.Bulk(k);
}

// db.c parseScanCursorOrReply (digits only; strtoul's sign and wrap are not kept).
bool ParseCursor(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
    uint64_t d = static_cast<uint64_t>(ch - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

void CmdScan(CommandCtx& c) {
  uint64_t cursor;
  if (!ParseCursor(c.arg(1), &cursor)) return c.out.Error(ErrCode::kErr, errtext::kInvalidCursor);
  int64_t count = 10;
  std::string_view pat;
  bool use_pattern = false, type_mismatch = false;
  for (size_t i = 2; i < c.argc();) {
    size_t left = c.argc() - i;
    std::string_view o = c.arg(i);
    if (EqNoCase(o, "count") && left >= 2) {
      if (!ParseInt64(c.arg(i + 1), &count)) return ReplyNotInteger(c);
      if (count < 1) return ReplySyntax(c);
      i += 2;
    } else if (EqNoCase(o, "match") && left >= 2) {
      pat = c.arg(i + 1);
      use_pattern = !(pat == "*");
      i += 2;
    } else if (EqNoCase(o, "type") && left >= 2) {
      type_mismatch = !EqNoCase(c.arg(i + 1), "string");  // every value is a string
      i += 2;
    } else {
      return ReplySyntax(c);
    }
  }
  count = std::min(count, kScanMaxCount);
  std::vector<std::string>& keys = Tls().keys;
  std::vector<uint64_t>& resume = Tls().resume;
  keys.clear();
  resume.clear();
  // The engine stops after max_reply_bytes of keys; the glob budget stops
  // matching at a bucket boundary. Either way `next` is where this call got
  // to, and the client goes on from there.
  uint64_t next = c.env.store->Scan(cursor, static_cast<size_t>(count), c.now_ms, &keys,
                                    MaxReplyBytes(c), &resume);
  size_t n = 0;
  uint64_t work = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    // Past the budget, finish the bucket in progress (so every call moves
    // on), then stop where the next bucket starts.
    if (work > kGlobCommandBudget && i > 0 && resume[i] != resume[i - 1]) {
      next = resume[i - 1];
      break;
    }
    if (type_mismatch || (use_pattern && !GlobMatchCounted(pat, keys[i], &work))) continue;
    if (n != i) keys[n] = std::move(keys[i]);
    n++;
  }
  c.out.ArrayBegin(2);
  std::string& b = ErrBuf();
  AppendU64(&b, next);
  c.out.Bulk(b);
  c.out.ArrayBegin(n);
  for (size_t i = 0; i < n; ++i) c.out.Bulk(keys[i]);
}

// ---------------------------------------------------------------------------
// INFO

void BytesToHuman(std::string* b, uint64_t n) {
  char tmp[48];
  int len;
  double d = static_cast<double>(n);
  if (n < 1024) len = std::snprintf(tmp, sizeof tmp, "%lluB", static_cast<unsigned long long>(n));
  else if (n < (1ull << 20)) len = std::snprintf(tmp, sizeof tmp, "%.2fK", d / 1024);
  else if (n < (1ull << 30)) len = std::snprintf(tmp, sizeof tmp, "%.2fM", d / (1 << 20));
  else if (n < (1ull << 40)) len = std::snprintf(tmp, sizeof tmp, "%.2fG", d / (1ull << 30));
  else len = std::snprintf(tmp, sizeof tmp, "%.2fT", d / (1ull << 40));
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

// ---------------------------------------------------------------------------
// SAVE / BGSAVE / LASTSAVE: the master takes snapshots (master/master.cc).

bool RequestSnapshot(CommandCtx& c, uint64_t* ticket) {
  PersistShared* ps = c.env.persist;
  if (!ps) {
    c.out.Error(ErrCode::kErr, "ERR persistence is off (no persistence section in the config)");
    return false;
  }
  *ticket = ps->snapshot_requests.fetch_add(1) + 1;
  if (c.env.master_pid > 0) kill(c.env.master_pid, persist::SnapshotSignal());
  return true;
}

void CmdBgsave(CommandCtx& c) {
  if (c.argc() > 1 && !EqNoCase(c.arg(1), "schedule")) return c.out.Error(ErrCode::kSyntax, errtext::kSyntax);
  if (c.env.persist && c.env.persist->snapshot_in_progress.load() && c.argc() == 1)
    return c.out.Error(ErrCode::kErr, "ERR Background save already in progress");
  uint64_t ticket;
  if (!RequestSnapshot(c, &ticket)) return;
  c.out.Status(c.argc() > 1 ? "Background saving scheduled" : "Background saving started");
}

// Blocks this worker (as Redis' SAVE blocks the server) until a snapshot
// that started after the call is finished.
void CmdSave(CommandCtx& c) {
  uint64_t ticket;
  if (!RequestSnapshot(c, &ticket)) return;
  PersistShared* ps = c.env.persist;
  for (int i = 0; i < 600'000 && ps->served_requests.load() < ticket; ++i) {
    timespec ts{0, 1'000'000};
    nanosleep(&ts, nullptr);
  }
  if (ps->served_requests.load() < ticket)
    return c.out.Error(ErrCode::kErr, "ERR timed out waiting for the snapshot; it goes on (see INFO persistence)");
  if (!ps->last_snapshot_ok.load())
    return c.out.Error(ErrCode::kErr, "ERR snapshot failed: " + persist::LastError(ps));
  c.out.Status("OK");
}

void CmdLastsave(CommandCtx& c) {
  c.out.Integer(c.env.persist ? static_cast<int64_t>(c.env.persist->last_snapshot_ms.load() / 1000) : 0);
}

void CmdInfo(CommandCtx& c) {
  enum : unsigned { SERVER = 1, CLIENTS = 2, MEMORY = 4, PERSIST = 8, STATS = 16, REPL = 32,
                    CPU = 64, KEYSPACE = 128, ALL = 255 };
  unsigned want = 0;
  if (c.argc() == 1) want = ALL;
  for (size_t j = 1; j < c.argc(); ++j) {
    std::string_view s = c.arg(j);
    if (EqNoCase(s, "all") || EqNoCase(s, "everything") || EqNoCase(s, "default")) want |= ALL;
    else if (EqNoCase(s, "server")) want |= SERVER;
    else if (EqNoCase(s, "clients")) want |= CLIENTS;
    else if (EqNoCase(s, "memory")) want |= MEMORY;
    else if (EqNoCase(s, "persistence")) want |= PERSIST;
    else if (EqNoCase(s, "stats")) want |= STATS;
    else if (EqNoCase(s, "replication")) want |= REPL;
    else if (EqNoCase(s, "cpu")) want |= CPU;
    else if (EqNoCase(s, "keyspace")) want |= KEYSPACE;
    // unknown sections add nothing, as in Redis
  }
  ServerInfo si = GetServerInfo(c.env);
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
      ib.U("aof_pending_fsync_bytes", lw ? lw->written() - std::min(lw->written(), lw->synced()) : 0);
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
  c.out.Bulk(b);
}

// ---------------------------------------------------------------------------
// CONFIG

struct ConfigParam {
  std::string_view name;
  void (*value)(const CommandCtx&, std::string*);
};

void ListenerPort(const CommandCtx& c, std::string* v) {
  if (!c.env.config) return AppendU64(v, 0);
  for (const ListenerConf& l : c.env.config->listeners)
    if (l.protocol == Protocol::kResp) return AppendU64(v, l.port);
  AppendU64(v, 0);
}

const ConfigParam kConfigParams[] = {
    {"appendonly", [](const CommandCtx&, std::string* v) { *v += "no"; }},
    {"databases", [](const CommandCtx&, std::string* v) { *v += "1"; }},
    {"maxclients",
     [](const CommandCtx& c, std::string* v) {
       AppendU64(v, c.env.config ? c.env.config->limits.max_connections : 0);
     }},
    {"maxmemory",
     [](const CommandCtx& c, std::string* v) { AppendU64(v, c.env.store->GetStats().capacity_bytes); }},
    {"maxmemory-policy",
     [](const CommandCtx& c, std::string* v) {
       bool lru = c.env.config && c.env.config->kv.eviction == Eviction::kAllKeysLru;
       *v += lru ? "allkeys-lru" : "noeviction";
     }},
    {"port", ListenerPort},
    {"proto-max-bulk-len",
     [](const CommandCtx& c, std::string* v) {
       AppendU64(v, c.env.config ? c.env.config->limits.max_bulk_bytes : 0);
     }},
    {"save", [](const CommandCtx&, std::string*) {}},
    {"timeout",
     [](const CommandCtx& c, std::string* v) {
       AppendU64(v, c.env.config ? c.env.config->timeouts.idle_ms / 1000 : 0);
     }},
};

void CmdConfigGet(CommandCtx& c) {
  // config.c configGetCommand: each parameter once, matched case-insensitively.
  bool hit[std::size(kConfigParams)] = {};
  size_t n = 0;
  std::string& lower = Tls().lower;
  for (size_t j = 2; j < c.argc(); ++j) {
    lower.clear();
    for (char ch : c.arg(j)) lower += Lower(ch);
    for (size_t i = 0; i < std::size(kConfigParams); ++i)
      if (!hit[i] && GlobMatch(lower, kConfigParams[i].name)) {
        hit[i] = true;
        n++;
      }
  }
  c.out.ArrayBegin(2 * n);
  std::string& v = ErrBuf();
  for (size_t i = 0; i < std::size(kConfigParams); ++i) {
    if (!hit[i]) continue;
    c.out.Bulk(kConfigParams[i].name);
    v.clear();
    kConfigParams[i].value(c, &v);
    c.out.Bulk(v);
  }
}

void CmdConfigSet(CommandCtx& c) { c.out.Error(ErrCode::kErr, errtext::kConfigSet); }

void CmdConfigHelp(CommandCtx& c) {
  ReplyHelp(c, "CONFIG",
            {"GET <pattern>", "    Return parameters matching the glob-like <pattern> and their values.",
             "SET <directive> <value>", "    Not supported: edit the config file and reload."});
}

// ---------------------------------------------------------------------------
// COMMAND

void ReplyCommandInfo(CommandCtx& c, const CommandSpec& s) {
  static constexpr std::pair<uint32_t, std::string_view> kFlagNames[] = {
      {kCmdWrite, "write"},     {kCmdReadonly, "readonly"}, {kCmdDenyOom, "denyoom"},
      {kCmdAdmin, "admin"},     {kCmdNoScript, "noscript"}, {kCmdLoading, "loading"},
      {kCmdStale, "stale"},     {kCmdFast, "fast"},         {kCmdNoAuth, "no_auth"},
  };
  c.out.ArrayBegin(10);
  c.out.Bulk(s.name);
  c.out.Integer(s.arity);
  size_t nflags = 0;
  for (auto& [bit, name] : kFlagNames) nflags += (s.flags & bit) ? 1 : 0;
  c.out.ArrayBegin(nflags);
  for (auto& [bit, name] : kFlagNames)
    if (s.flags & bit) c.out.Status(name);
  c.out.Integer(s.first_key);
  c.out.Integer(s.last_key);
  c.out.Integer(s.key_step);
  c.out.ArrayBegin(0);  // ACL categories
  c.out.ArrayBegin(0);  // tips
  c.out.ArrayBegin(0);  // key specs
  c.out.ArrayBegin(s.subcommands.size());
  for (const CommandSpec& sub : s.subcommands) ReplyCommandInfo(c, sub);
}

void CmdCommandAll(CommandCtx& c) {
  auto t = CommandTable();
  c.out.ArrayBegin(t.size());
  for (const CommandSpec& s : t) ReplyCommandInfo(c, s);
}

void CmdCommandCount(CommandCtx& c) { c.out.Integer(static_cast<int64_t>(CommandTable().size())); }

void CmdCommandDocs(CommandCtx& c) { c.out.ArrayBegin(0); }  // docs are not served

void CmdCommandInfo(CommandCtx& c) {
  if (c.argc() == 2) return CmdCommandAll(c);
  c.out.ArrayBegin(c.argc() - 2);
  for (size_t j = 2; j < c.argc(); ++j) {
    const CommandSpec* s = LookupCommand(c.arg(j));
    if (s) ReplyCommandInfo(c, *s);
    else c.out.Nil();
  }
}

void CmdCommandList(CommandCtx& c) {
  if (c.argc() > 2) return ReplySyntax(c);  // FILTERBY: not supported
  auto t = CommandTable();
  c.out.ArrayBegin(t.size());
  for (const CommandSpec& s : t) c.out.Bulk(s.name);
}

void CmdCommandHelp(CommandCtx& c) {
  ReplyHelp(c, "COMMAND",
            {"(no subcommand)", "    Return details about all commands.", "COUNT",
             "    Return the total number of commands.", "DOCS [<command-name> ...]",
             "    Return documentation (empty here).", "INFO [<command-name> ...]",
             "    Return details about the given commands, or all of them.", "LIST",
             "    Return the names of all commands."});
}

// ---------------------------------------------------------------------------
// The table. Sorted by name (checked at compile time below); names lower case.

constexpr uint32_t W = kCmdWrite, R = kCmdReadonly, M = kCmdDenyOom, A = kCmdAdmin,
                   NS = kCmdNoScript, L = kCmdLoading, ST = kCmdStale, F = kCmdFast,
                   NA = kCmdNoAuth;

constexpr CommandSpec kClientSubs[] = {
    {"client|getname", 2, NS | L | ST, 0, 0, 0, CmdClientGetname, {}},
    {"client|help", 2, L | ST, 0, 0, 0, CmdClientHelp, {}},
    {"client|id", 2, NS | L | ST, 0, 0, 0, CmdClientId, {}},
    {"client|info", 2, NS | L | ST, 0, 0, 0, CmdClientInfo, {}},
    {"client|list", -2, A | NS | L | ST, 0, 0, 0, CmdClientList, {}},
    {"client|setinfo", 4, NS | L | ST, 0, 0, 0, CmdClientSetinfo, {}},
    {"client|setname", 3, NS | L | ST, 0, 0, 0, CmdClientSetname, {}},
};

constexpr CommandSpec kCommandSubs[] = {
    {"command|count", 2, L | ST, 0, 0, 0, CmdCommandCount, {}},
    {"command|docs", -2, L | ST, 0, 0, 0, CmdCommandDocs, {}},
    {"command|help", 2, L | ST, 0, 0, 0, CmdCommandHelp, {}},
    {"command|info", -2, L | ST, 0, 0, 0, CmdCommandInfo, {}},
    {"command|list", -2, L | ST, 0, 0, 0, CmdCommandList, {}},
};

constexpr CommandSpec kConfigSubs[] = {
    {"config|get", -3, A | NS | L | ST, 0, 0, 0, CmdConfigGet, {}},
    {"config|help", 2, L | ST, 0, 0, 0, CmdConfigHelp, {}},
    {"config|set", -4, A | NS | L | ST, 0, 0, 0, CmdConfigSet, {}},
};

constexpr CommandSpec kTable[] = {
    {"auth", -2, NS | L | ST | F | NA, 0, 0, 0, CmdAuth, {}},
    {"bgsave", -1, A | NS, 0, 0, 0, CmdBgsave, {}},
    {"client", -2, 0, 0, 0, 0, nullptr, kClientSubs},
    {"command", -1, L | ST, 0, 0, 0, CmdCommandAll, kCommandSubs},
    {"config", -2, 0, 0, 0, 0, nullptr, kConfigSubs},
    {"dbsize", 1, R | F, 0, 0, 0, CmdDbsize, {}},
    {"decr", 2, W | M | F, 1, 1, 1, CmdDecr, {}},
    {"decrby", 3, W | M | F, 1, 1, 1, CmdDecrby, {}},
    {"del", -2, W, 1, -1, 1, CmdDel, {}},
    {"echo", 2, F, 0, 0, 0, CmdEcho, {}},
    {"exists", -2, R | F, 1, -1, 1, CmdExists, {}},
    {"expire", -3, W | F, 1, 1, 1, CmdExpire, {}},
    {"expireat", -3, W | F, 1, 1, 1, CmdExpireat, {}},
    {"flushall", -1, W, 0, 0, 0, CmdFlushall, {}},
    {"flushdb", -1, W, 0, 0, 0, CmdFlushdb, {}},
    {"flushns", 2, W, 0, 0, 0, CmdFlushns, {}},
    {"get", 2, R | F, 1, 1, 1, CmdGet, {}},
    {"hello", -1, NS | L | ST | F | NA, 0, 0, 0, CmdHello, {}},
    {"incr", 2, W | M | F, 1, 1, 1, CmdIncr, {}},
    {"incrby", 3, W | M | F, 1, 1, 1, CmdIncrby, {}},
    {"info", -1, L | ST, 0, 0, 0, CmdInfo, {}},
    {"keys", 2, R, 0, 0, 0, CmdKeys, {}},
    {"lastsave", 1, L | ST | F, 0, 0, 0, CmdLastsave, {}},
    {"mget", -2, R | F, 1, -1, 1, CmdMget, {}},
    {"mset", -3, W | M, 1, -1, 2, CmdMset, {}},
    {"persist", 2, W | F, 1, 1, 1, CmdPersist, {}},
    {"pexpire", -3, W | F, 1, 1, 1, CmdPexpire, {}},
    {"pexpireat", -3, W | F, 1, 1, 1, CmdPexpireat, {}},
    {"ping", -1, F, 0, 0, 0, CmdPing, {}},
    {"psetex", 4, W | M, 1, 1, 1, CmdPsetex, {}},
    {"pttl", 2, R | F, 1, 1, 1, CmdPttl, {}},
    {"quit", -1, NS | L | ST | F | NA, 0, 0, 0, CmdQuit, {}},
    {"save", 1, A | NS, 0, 0, 0, CmdSave, {}},
    {"scan", -2, R, 0, 0, 0, CmdScan, {}},
    {"select", 2, L | ST | F, 0, 0, 0, CmdSelect, {}},
    {"set", -3, W | M, 1, 1, 1, CmdSet, {}},
    {"setex", 4, W | M, 1, 1, 1, CmdSetex, {}},
    {"setnx", 3, W | M | F, 1, 1, 1, CmdSetnx, {}},
    {"strlen", 2, R | F, 1, 1, 1, CmdStrlen, {}},
    {"time", 1, L | ST | F, 0, 0, 0, CmdTime, {}},
    {"ttl", 2, R | F, 1, 1, 1, CmdTtl, {}},
    {"type", 2, R | F, 1, 1, 1, CmdType, {}},
    {"unlink", -2, W | F, 1, -1, 1, CmdDel, {}},
};

template <size_t N>
constexpr bool SortedByName(const CommandSpec (&t)[N]) {
  for (size_t i = 1; i < N; ++i)
    if (!(t[i - 1].name < t[i].name)) return false;
  return true;
}
static_assert(SortedByName(kTable), "kTable must be sorted by name for LookupCommand");
static_assert(SortedByName(kClientSubs) && SortedByName(kCommandSubs) && SortedByName(kConfigSubs));

bool ArityOk(const CommandSpec& s, size_t argc) {
  return s.arity >= 0 ? argc == static_cast<size_t>(s.arity) : argc >= static_cast<size_t>(-s.arity);
}

// Token of a glob at pat[p] (not '*'): does it match `ch`, and where does the
// next token start. Mirrors stringmatchlen's cases, quirks included (an
// unterminated class runs to the end; "[a-]" is the range 'a'..']').
size_t GlobToken(std::string_view pat, size_t p, unsigned char ch, bool* match) {
  const size_t m = pat.size();
  auto uc = [&](size_t i) { return static_cast<unsigned char>(pat[i]); };
  switch (pat[p]) {
    case '?':
      *match = true;
      return p + 1;
    case '[': {
      size_t i = p + 1;
      bool negate = i < m && pat[i] == '^';
      if (negate) i++;
      bool hit = false;
      while (i < m) {
        if (pat[i] == '\\' && m - i >= 2) {
          i++;
          if (uc(i) == ch) hit = true;
        } else if (pat[i] == ']') {
          break;
        } else if (m - i >= 3 && pat[i + 1] == '-') {
          unsigned char lo = uc(i), hi = uc(i + 2);
          if (lo > hi) std::swap(lo, hi);
          if (ch >= lo && ch <= hi) hit = true;
          i += 2;
        } else if (uc(i) == ch) {
          hit = true;
        }
        i++;
      }
      *match = negate ? !hit : hit;
      return i < m ? i + 1 : m;
    }
    case '\\':
      if (m - p >= 2) {
        *match = uc(p + 1) == ch;
        return p + 2;
      }
      [[fallthrough]];
    default:
      *match = uc(p) == ch;
      return p + 1;
  }
}

}  // namespace

// Redis' recursive stringmatchlen, made iterative: every token but '*' eats
// exactly one byte, so on a mismatch only the most recent '*' needs to absorb
// one more byte (earlier stars can never do better). That bounds the work to
// O(len(pattern) * len(s)); kGlobMaxWork caps it further.
namespace {
bool GlobMatchWork(std::string_view pat, std::string_view s, size_t& work) {
  // Redis: an empty string matches only an empty pattern (even "*" fails;
  // KEYS and SCAN special-case a lone "*" before calling this).
  if (s.empty()) return pat.empty();
  const size_t m = pat.size(), n = s.size();
  size_t p = 0, i = 0;
  size_t star_p = SIZE_MAX, star_i = 0;
  while (i < n) {
    if (++work > kGlobMaxWork) return false;
    if (p < m && pat[p] == '*') {
      while (p < m && pat[p] == '*') p++;
      if (p == m) return true;
      star_p = p;
      star_i = i;
      continue;
    }
    if (p < m) {
      bool match;
      size_t next = GlobToken(pat, p, static_cast<unsigned char>(s[i]), &match);
      work += next - p;
      if (match) {
        p = next;
        i++;
        continue;
      }
    }
    if (star_p == SIZE_MAX) return false;
    i = ++star_i;
    p = star_p;
  }
  while (p < m && pat[p] == '*') p++;
  return p == m;
}

bool GlobMatchCounted(std::string_view pat, std::string_view s, uint64_t* total) {
  size_t work = 0;
  bool match = GlobMatchWork(pat, s, work);
  *total += work + 1;  // +1: a key costs a step even when the match is instant
  return match;
}
}  // namespace

bool GlobMatch(std::string_view pat, std::string_view s) {
  size_t work = 0;
  return GlobMatchWork(pat, s, work);
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

bool ParseInt64(std::string_view s, int64_t* out) {
  if (s.empty()) return false;
  if (s.size() == 1 && s[0] == '0') {
    *out = 0;
    return true;
  }
  size_t i = 0;
  bool neg = false;
  if (s[0] == '-') {
    neg = true;
    i = 1;
    if (s.size() == 1) return false;
  }
  if (s[i] < '1' || s[i] > '9') return false;
  uint64_t v = 0;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    uint64_t d = static_cast<uint64_t>(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (neg) {
    if (v > static_cast<uint64_t>(INT64_MAX) + 1) return false;
    *out = v == static_cast<uint64_t>(INT64_MAX) + 1 ? INT64_MIN : -static_cast<int64_t>(v);
  } else {
    if (v > static_cast<uint64_t>(INT64_MAX)) return false;
    *out = static_cast<int64_t>(v);
  }
  return true;
}

std::span<const CommandSpec> CommandTable() { return kTable; }

const CommandSpec* LookupCommand(std::string_view name) {
  size_t lo = 0, hi = std::size(kTable);
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int cmp = CmpNoCase(name, kTable[mid].name);
    if (cmp == 0) return &kTable[mid];
    if (cmp < 0) hi = mid;
    else lo = mid + 1;
  }
  return nullptr;
}

const CommandSpec* LookupSubcommand(const CommandSpec& container, std::string_view sub) {
  for (const CommandSpec& s : container.subcommands) {
    std::string_view short_name = s.name.substr(container.name.size() + 1);
    if (EqNoCase(sub, short_name)) return &s;
  }
  return nullptr;
}

// server.c processCommand order: existence, arity, then authentication.
void Dispatch(const CommandEnv& env, ClientSession& session,
              std::span<const std::string_view> argv, ReplyWriter& out, uint64_t now_ms) {
  if (argv.empty()) return;  // the protocol skips empty commands, as Redis does
  const CommandSpec* spec = LookupCommand(argv[0]);
  if (!spec) return ReplyUnknownCommand(out, argv);
  CommandCtx c{env, session, argv, out, now_ms, spec};
  if (!spec->subcommands.empty() && argv.size() >= 2) {
    const CommandSpec* sub = LookupSubcommand(*spec, argv[1]);
    if (!sub) return ReplyUnknownSubcommand(out, argv[0], argv[1]);
    spec = c.cmd = sub;
  }
  if (!ArityOk(*spec, argv.size()) || !spec->proc) return ReplyArity(c);
  if (AuthRequired(c) && !(spec->flags & kCmdNoAuth))
    return out.Error(ErrCode::kNoAuth, errtext::kNoAuth);
  if ((spec->flags & kCmdWrite) && env.log && env.log->failing())
    return out.Error(ErrCode::kMisconf,
                     "MISCONF Errors writing to the append-only log: " + env.log->error() +
                         ". Writes are refused until it is fixed (see INFO persistence)");

  session.commands++;
  session.last_command = spec->name;
  session.last_command_ms = now_ms;
  if (env.commands_processed) env.commands_processed->Add(1);
  try {
    spec->proc(c);
  } catch (const std::exception&) {
    // The engine threw (bad_alloc in a worker-local buffer); the connection
    // and the worker live on. The caller's logger records the context.
    out.Error(ErrCode::kInternal, errtext::kInternal);
  }
  ReleaseScratch();  // the reply is written: its buffers are no longer needed
}

}  // namespace pf
