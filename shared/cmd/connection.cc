// shared/cmd/connection.cc: the connection commands: PING, ECHO, QUIT,
// SELECT, AUTH, HELLO, RESET and CLIENT (networking.c, acl.c).
#include <algorithm>
#include <climits>
#include <cstring>
#include <functional>
#include <vector>

#include "shared/clients.h"
#include "shared/cmd/internal.h"
#include "shared/util/clock.h"

namespace pf {

void CmdPing(CommandCtx& c) {
  if (c.argc() > 2) return ReplyArity(c);
  if (c.session.resp2 && c.session.pubsub && c.session.pubsub->subscription_count() > 0) {
    // A subscribed RESP2 connection: a reply shaped as a push (pubsub.c).
    c.out.ArrayBegin(2);
    c.out.Bulk("pong");
    c.out.Bulk(c.argc() == 2 ? c.arg(1) : std::string_view());
    return;
  }
  if (c.argc() == 1) return c.out.Status("PONG");
  c.out.Bulk(c.arg(1));
}

void CmdEcho(CommandCtx& c) { c.out.Bulk(c.arg(1)); }

void CmdQuit(CommandCtx& c) {
  c.session.close_after_reply = true;
  ReplyOk(c);
}

// networking.c resetCommand, for the state preforkd keeps: subscriptions,
// the admin right, the name, authentication when a password is set, and
// the protocol (RESP2 again after HELLO 3; +RESET comes in RESP2).
void CmdReset(CommandCtx& c) {
  if (c.session.pubsub) c.session.pubsub->UnsubscribeAll();
  if (c.session.resp3) {
    c.session.resp3 = false;
    c.session.resp2 = true;
  }
  c.session.admin = false;
  c.session.name.clear();
  c.session.txn = TxnState{};  // out of MULTI, nothing watched
  if (c.env.config && !c.env.config->kv.password.empty())
    c.session.authenticated = c.session.cert_authenticated;
  c.out.Status("RESET");
}

void CmdSelect(CommandCtx& c) {
  int64_t id;
  if (!ParseInt64(c.arg(1), &id) || id < INT_MIN || id > INT_MAX) return ReplyNotInteger(c);
  if (id != 0) return c.out.Error(ErrCode::kErr, errtext::kDbIndex);
  ReplyOk(c);
}

// Failed attempts are counted per client address over all workers; past
// limits.auth_failures_per_minute the address is refused without a check.
bool AuthThrottled(CommandCtx& c) {
  if (!c.env.auth_throttled || !c.env.auth_throttled(c.session.peer)) return false;
  c.out.Error(ErrCode::kErr, errtext::kAuthThrottled);
  return true;
}

void NoteAuth(CommandCtx& c, bool ok) {
  if (c.env.auth_result) c.env.auth_result(c.session.peer, ok);
}

void CmdAuth(CommandCtx& c) {
  if (c.argc() > 3) return ReplySyntax(c);
  const std::string& admin_token = c.env.config ? c.env.config->pubsub.admin_token : std::string();
  if (c.argc() == 3 && !admin_token.empty() && EqualsNoCase(c.arg(1), "admin")) {
    // The pub/sub admin (an ACL-style user): may publish under
    // pubsub.reserved_prefix. It is not the data user: with kv.password set,
    // reading and writing keys still needs AUTH <password>.
    if (AuthThrottled(c)) return;
    const bool ok = SecretEquals(c.arg(2), admin_token);
    NoteAuth(c, ok);
    if (!ok) return c.out.Error(ErrCode::kWrongPass, errtext::kWrongPass);
    c.session.admin = true;
    return ReplyOk(c);
  }
  std::string_view user = "default", pass;
  if (c.argc() == 2) {
    if (!c.env.config || c.env.config->kv.password.empty())
      return c.out.Error(ErrCode::kErr, errtext::kAuthNoPassword);
    pass = c.arg(1);
  } else {
    user = c.arg(1);
    pass = c.arg(2);
  }
  if (AuthThrottled(c)) return;
  const bool ok = CheckDefaultUser(c.env.config, user, pass);
  NoteAuth(c, ok);
  if (!ok) return c.out.Error(ErrCode::kWrongPass, errtext::kWrongPass);
  c.session.authenticated = true;
  ReplyOk(c);
}

void CmdHello(CommandCtx& c) {
  size_t next = 1;
  int64_t ver = 0;  // 0: HELLO without a version keeps the protocol
  if (c.argc() >= 2) {
    next++;
    if (!ParseInt64(c.arg(1), &ver)) return c.out.Error(ErrCode::kErr, errtext::kHelloProtoNotInt);
    if (ver < 2 || ver > 3) return c.out.Error(ErrCode::kErr, errtext::kNoProto);
  }
  for (size_t j = next; j < c.argc(); ++j) {
    size_t more = c.argc() - 1 - j;
    std::string_view opt = c.arg(j);
    if (EqualsNoCase(opt, "auth") && more >= 2) {
      if (AuthThrottled(c)) return;
      const bool ok = CheckDefaultUser(c.env.config, c.arg(j + 1), c.arg(j + 2));
      NoteAuth(c, ok);
      if (!ok) return c.out.Error(ErrCode::kWrongPass, errtext::kWrongPass);
      c.session.authenticated = true;
      j += 2;
    } else if (EqualsNoCase(opt, "setname") && more >= 1) {
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
  if (AuthRequired(c.env, c.session)) return c.out.Error(ErrCode::kNoAuth, errtext::kHelloNoAuth);
  // As Redis: the switch comes after authentication, and HELLO's own reply
  // is already in the new protocol. Only a RESP connection has one to switch
  // (kv-json and HTTP render the map as a JSON object either way).
  if (ver != 0 && (c.session.resp2 || c.session.resp3)) {
    c.session.resp3 = ver == 3;
    c.session.resp2 = ver == 2;
  }
  c.out.MapBegin(7);
  c.out.Bulk("server");
  c.out.Bulk("redis");
  c.out.Bulk("version");
  c.out.Bulk(kRedisCompatVersion);
  c.out.Bulk("proto");
  c.out.Integer(c.session.resp3 || ver == 3 ? 3 : 2);
  c.out.Bulk("id");
  c.out.Integer(static_cast<int64_t>(c.session.id));
  c.out.Bulk("mode");
  c.out.Bulk("standalone");
  c.out.Bulk("role");
  c.out.Bulk("master");
  c.out.Bulk("modules");
  c.out.ArrayBegin(0);
}

namespace {

// networking.c getClientTypeByName: -1 for an unknown name.
enum ClientType { kTypeNormal, kTypePubSub, kTypeReplica, kTypeMaster };
int ClientTypeByName(std::string_view n) {
  if (EqualsNoCase(n, "normal")) return kTypeNormal;
  if (EqualsNoCase(n, "pubsub")) return kTypePubSub;
  if (EqualsNoCase(n, "replica") || EqualsNoCase(n, "slave")) return kTypeReplica;
  if (EqualsNoCase(n, "master")) return kTypeMaster;
  return -1;
}
int ClientTypeOf(const clients::Record& r) {
  return (r.flags & clients::kFlagPubSub) ? kTypePubSub : kTypeNormal;
}

// The calling connection as it is now: its registry entry (bytes, idle)
// with the session's fields over it, which this command may have changed.
void SelfRecord(const CommandCtx& c, clients::Record* r) {
  const ClientSession& s = c.session;
  if (!(c.env.clients && s.client_slot >= 0 && c.env.clients->Read(s.client_slot, r) &&
        r->id == s.id)) {
    std::memset(static_cast<void*>(r), 0, sizeof *r);
    r->id = s.id;
    r->worker_slot = s.worker_slot;
    r->fd = s.fd;
    r->connected_ms = s.connected_ms;
    r->last_active_ms = MonoMs();
    clients::CopyField(r->peer, s.peer);
    clients::CopyField(r->local, s.local);
    r->proto = c.session.resp2 ? kProtoResp : kProtoKvJson;
  }
  r->last_active_ms = MonoMs();
  clients::CopyField(r->name, s.name);
  clients::CopyField(r->lib_name, s.lib_name);
  clients::CopyField(r->lib_ver, s.lib_ver);
  clients::CopyField(r->cmd, s.last_command);
  r->sub = r->psub = 0;
  if (s.pubsub) {
    r->sub = static_cast<int32_t>(s.pubsub->Subscribed(false).size());
    r->psub = static_cast<int32_t>(s.pubsub->Subscribed(true).size());
  }
  r->multi = s.txn.active ? static_cast<int32_t>(s.txn.argc.size()) : -1;
  r->flags = ClientFlagsOf(s, r->sub + r->psub);
}

}  // namespace

uint32_t ClientFlagsOf(const ClientSession& s, int subscriptions) {
  uint32_t f = 0;
  if (subscriptions > 0) f |= clients::kFlagPubSub;
  if (s.txn.active) f |= clients::kFlagMulti;
  if (s.no_evict) f |= clients::kFlagNoEvict;
  if (s.reply_off) f |= clients::kFlagReplyOff;
  if (s.reply_skip || s.reply_skip_next) f |= clients::kFlagReplySkip;
  if (s.close_after_reply) f |= clients::kFlagCloseAfterReply;
  if (s.resp3) f |= clients::kFlagResp3;
  return f;
}

// One line of CLIENT LIST in Redis 7's order (networking.c catClientInfoString),
// then what preforkd adds: proto=, listener= and worker= (the slot).
void AppendClientRecord(const clients::Record& r, uint64_t now_wall_ms, uint64_t now_mono_ms,
                        std::string* b) {
  auto field = [b](std::string_view k, std::string_view v) {
    *b += k;
    *b += '=';
    AppendSafe(b, v);
    *b += ' ';
  };
  auto num = [b](std::string_view k, int64_t v) {
    *b += k;
    *b += '=';
    AppendI64(b, v);
    *b += ' ';
  };
  num("id", static_cast<int64_t>(r.id));
  field("addr", clients::FieldOf(r.peer));
  field("laddr", clients::FieldOf(r.local));
  num("fd", r.fd);
  field("name", clients::FieldOf(r.name));
  num("age", static_cast<int64_t>(r.connected_ms && now_wall_ms > r.connected_ms
                                      ? (now_wall_ms - r.connected_ms) / 1000
                                      : 0));
  num("idle", static_cast<int64_t>(
                  now_mono_ms > r.last_active_ms ? (now_mono_ms - r.last_active_ms) / 1000 : 0));
  field("flags", clients::FlagLetters(r.flags));
  num("db", r.db);
  num("sub", r.sub);
  num("psub", r.psub);
  num("ssub", 0);
  num("multi", r.multi);
  num("qbuf", static_cast<int64_t>(r.qbuf));
  *b += "qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 ";
  num("omem", static_cast<int64_t>(r.obuf));
  num("tot-mem", static_cast<int64_t>(r.qbuf + r.obuf));
  *b += "events=r ";
  field("cmd", r.cmd[0] ? clients::FieldOf(r.cmd) : std::string_view("NULL"));
  *b += (r.flags & clients::kFlagResp3) ? "user=default redir=-1 resp=3 "
                                        : "user=default redir=-1 resp=2 ";
  field("lib-name", clients::FieldOf(r.lib_name));
  field("lib-ver", clients::FieldOf(r.lib_ver));
  num("tot-net-in", static_cast<int64_t>(r.bytes_in));
  num("tot-net-out", static_cast<int64_t>(r.bytes_out));
  num("tot-cmds", static_cast<int64_t>(r.commands));
  field("proto", ProtoIndexName(r.proto));
  field("listener", clients::FieldOf(r.listener));
  *b += "worker=";
  AppendI64(b, r.worker_slot);
  *b += '\n';
}

void AppendClientLine(const CommandCtx& c, std::string* b) {
  clients::Record r;
  SelfRecord(c, &r);
  AppendClientRecord(r, c.now_ms, MonoMs(), b);
}

// Every client over all workers (the registry), the caller as it is now;
// `keep` filters.
template <typename Keep>
void ForEachClient(const CommandCtx& c, Keep&& keep,
                   const std::function<void(const clients::Record&, int32_t slot)>& fn) {
  clients::Record self;
  SelfRecord(c, &self);
  bool self_seen = false;
  if (c.env.clients) {
    const clients::Table& t = *c.env.clients;
    const uint32_t hwm = t.hwm();
    clients::Record r;
    for (uint32_t i = 0; i < hwm; i++) {
      if (!t.Read(static_cast<int32_t>(i), &r)) continue;
      if (r.id == c.session.id) {
        self_seen = true;
        if (keep(self)) fn(self, static_cast<int32_t>(i));
        continue;
      }
      if (keep(r)) fn(r, static_cast<int32_t>(i));
    }
  }
  if (!self_seen && keep(self)) fn(self, -1);
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
  if (EqualsNoCase(attr, "lib-name"))
    dst = &c.session.lib_name;
  else if (EqualsNoCase(attr, "lib-ver"))
    dst = &c.session.lib_ver;
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
    e += EqualsNoCase(attr, "lib-name") ? "lib-name" : "lib-ver";
    e += " cannot contain spaces, newlines or special characters.";
    return c.out.Error(ErrCode::kErr, e);
  }
  if (val.size() > kMaxClientNameBytes) {
    std::string& e = ErrBuf();
    e += "ERR ";
    e += EqualsNoCase(attr, "lib-name") ? "lib-name" : "lib-ver";
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

// CLIENT LIST [TYPE normal|pubsub|master|replica] [ID id [id ...]], over
// every worker.
void CmdClientList(CommandCtx& c) {
  int type = -1;
  std::vector<uint64_t> ids;
  if (c.argc() == 4 && EqualsNoCase(c.arg(2), "type")) {
    type = ClientTypeByName(c.arg(3));
    if (type < 0) {
      std::string& e = ErrBuf();
      e += "ERR Unknown client type '";
      AppendSafe(&e, c.arg(3), 128);
      e += '\'';
      return c.out.Error(ErrCode::kErr, e);
    }
  } else if (c.argc() > 3 && EqualsNoCase(c.arg(2), "id")) {
    for (size_t j = 3; j < c.argc(); j++) {
      int64_t id;
      if (!ParseInt64(c.arg(j), &id)) return c.out.Error(ErrCode::kErr, "ERR Invalid client ID");
      ids.push_back(static_cast<uint64_t>(id));
    }
  } else if (c.argc() != 2) {
    return ReplySyntax(c);
  }
  std::string b;
  const uint64_t mono = MonoMs();
  auto keep = [&](const clients::Record& r) {
    if (type >= 0 && ClientTypeOf(r) != type) return false;
    if (!ids.empty() && std::find(ids.begin(), ids.end(), r.id) == ids.end()) return false;
    return true;
  };
  if (!c.env.clients && c.env.client_list && type < 0 && ids.empty()) {
    c.env.client_list(&b);
  } else {
    ForEachClient(c, keep, [&](const clients::Record& r, int32_t) {
      AppendClientRecord(r, c.now_ms, mono, &b);
    });
  }
  c.out.Bulk(b);
}

// CLIENT KILL addr:port (+OK or "No such client"), or the filter form
// (ID, TYPE, ADDR, LADDR, USER, SKIPME yes|no; the number killed). A client
// of another worker is closed by its own worker, which the kill request
// wakes; it is counted here and no longer listed from then on.
void CmdClientKill(CommandCtx& c) {
  std::string_view addr, laddr;
  bool has_addr = false, has_laddr = false;
  int type = -1;
  uint64_t id = 0;
  bool skipme = true;
  if (c.argc() == 3) {
    addr = c.arg(2);
    has_addr = true;
    skipme = false;  // with the old form a client may kill itself
  } else if (c.argc() > 3) {
    for (size_t i = 2; i < c.argc(); i += 2) {
      const bool more = c.argc() > i + 1;
      const std::string_view opt = c.arg(i);
      if (EqualsNoCase(opt, "id") && more) {
        int64_t v;
        if (!ParseInt64(c.arg(i + 1), &v) || v < 1)
          return c.out.Error(ErrCode::kErr, "ERR client-id should be greater than 0");
        id = static_cast<uint64_t>(v);
      } else if (EqualsNoCase(opt, "type") && more) {
        type = ClientTypeByName(c.arg(i + 1));
        if (type < 0) {
          std::string& e = ErrBuf();
          e += "ERR Unknown client type '";
          AppendSafe(&e, c.arg(i + 1), 128);
          e += '\'';
          return c.out.Error(ErrCode::kErr, e);
        }
      } else if (EqualsNoCase(opt, "addr") && more) {
        addr = c.arg(i + 1);
        has_addr = true;
      } else if (EqualsNoCase(opt, "laddr") && more) {
        laddr = c.arg(i + 1);
        has_laddr = true;
      } else if (EqualsNoCase(opt, "user") && more) {
        if (c.arg(i + 1) != "default") {  // the only user
          std::string& e = ErrBuf();
          e += "ERR No such user '";
          AppendSafe(&e, c.arg(i + 1), 128);
          e += '\'';
          return c.out.Error(ErrCode::kErr, e);
        }
      } else if (EqualsNoCase(opt, "skipme") && more) {
        if (EqualsNoCase(c.arg(i + 1), "yes"))
          skipme = true;
        else if (EqualsNoCase(c.arg(i + 1), "no"))
          skipme = false;
        else
          return ReplySyntax(c);
      } else {
        return ReplySyntax(c);
      }
    }
  } else {
    return ReplySyntax(c);
  }
  auto keep = [&](const clients::Record& r) {
    if (has_addr && clients::FieldOf(r.peer) != addr) return false;
    if (has_laddr && clients::FieldOf(r.local) != laddr) return false;
    if (type >= 0 && ClientTypeOf(r) != type) return false;
    if (id && r.id != id) return false;
    if (skipme && r.id == c.session.id) return false;
    return true;
  };
  int64_t killed = 0;
  bool self = false;
  std::vector<int> wake;
  ForEachClient(c, keep, [&](const clients::Record& r, int32_t slot) {
    if (r.id == c.session.id) {
      self = true;
      killed++;
      return;
    }
    if (slot < 0 || !c.env.clients->RequestKill(slot, r.id)) return;
    killed++;
    if (std::find(wake.begin(), wake.end(), r.worker_slot) == wake.end())
      wake.push_back(r.worker_slot);
  });
  if (c.env.wake_worker)
    for (int w : wake) c.env.wake_worker(w);
  if (self) c.session.close_after_reply = true;
  if (c.argc() == 3) {
    if (killed == 0) return c.out.Error(ErrCode::kErr, "ERR No such client");
    return ReplyOk(c);
  }
  c.out.Integer(killed);
}

// CLIENT PAUSE timeout [WRITE|ALL]: every worker holds the commands of its
// clients (all, or the writes) until the deadline or CLIENT UNPAUSE.
void CmdClientPause(CommandCtx& c) {
  if (c.argc() != 3 && c.argc() != 4) return ReplyArity(c);
  clients::PauseMode mode = clients::kPauseAll;
  if (c.argc() == 4) {
    if (EqualsNoCase(c.arg(3), "write"))
      mode = clients::kPauseWrite;
    else if (!EqualsNoCase(c.arg(3), "all"))
      return c.out.Error(ErrCode::kErr, "ERR CLIENT PAUSE mode must be WRITE or ALL");
  }
  int64_t ms;
  if (!ParseInt64(c.arg(2), &ms))
    return c.out.Error(ErrCode::kErr, "ERR timeout is not an integer or out of range");
  if (ms < 0) return c.out.Error(ErrCode::kErr, "ERR timeout is negative");
  if (!c.env.clients) return ReplyOk(c);  // no registry: nothing to pause
  const uint64_t len = std::min<uint64_t>(static_cast<uint64_t>(ms), clients::kMaxPauseMs);
  const uint64_t now = MonoMs();
  c.env.clients->Pause(now, now + len, mode);
  ReplyOk(c);
}

void CmdClientUnpause(CommandCtx& c) {
  if (c.env.clients) c.env.clients->Unpause();
  if (c.env.wake_worker) c.env.wake_worker(-1);  // held commands run now, on every worker
  ReplyOk(c);
}

void CmdClientNoEvict(CommandCtx& c) {
  if (EqualsNoCase(c.arg(2), "on"))
    c.session.no_evict = true;
  else if (EqualsNoCase(c.arg(2), "off"))
    c.session.no_evict = false;
  else
    return ReplySyntax(c);
  ReplyOk(c);
}

// CLIENT REPLY ON|OFF|SKIP (networking.c): OFF and SKIP answer nothing.
void CmdClientReply(CommandCtx& c) {
  if (EqualsNoCase(c.arg(2), "on")) {
    if (c.session.reply_off || c.session.reply_skip) c.session.reply_ack = true;
    c.session.reply_off = c.session.reply_skip = false;
    if (!c.session.reply_ack) ReplyOk(c);
  } else if (EqualsNoCase(c.arg(2), "off")) {
    c.session.reply_off = true;
  } else if (EqualsNoCase(c.arg(2), "skip")) {
    if (!c.session.reply_off) c.session.reply_skip_next = true;
  } else {
    ReplySyntax(c);
  }
}

void CmdClientHelp(CommandCtx& c) {
  ReplyHelp(
      c, "CLIENT",
      {"GETNAME",
       "    Return the name of the current connection.",
       "ID",
       "    Return the ID of the current connection.",
       "INFO",
       "    Return information about the current client connection.",
       "KILL <ip:port>",
       "    Kill connection made from <ip:port>.",
       "KILL <option> <value> [<option> <value> [...]]",
       "    Kill connections. Options are: ID <client-id>, TYPE (NORMAL|MASTER|REPLICA|PUBSUB),",
       "    USER <username>, ADDR <ip:port>, LADDR <ip:port>, SKIPME (YES|NO).",
       "LIST [options ...]",
       "    Return information about client connections of every worker. Options:",
       "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
       "    * ID <client-id> [<client-id> ...]",
       "NO-EVICT (ON|OFF)",
       "    Accepted; shown as flag e.",
       "PAUSE <timeout> [WRITE|ALL]",
       "    Suspend the clients (all, or their writes) of every worker for <timeout> ms.",
       "REPLY (ON|OFF|SKIP)",
       "    Control the replies sent to the current connection.",
       "SETNAME <name>",
       "    Assign the name <name> to the current connection.",
       "SETINFO <option> <value>",
       "    Set client meta attr (LIB-NAME, LIB-VER).",
       "UNPAUSE",
       "    Stop the current client pause, resuming traffic."});
}

}  // namespace pf
