// shared/cmd/connection.cc: the connection commands: PING, ECHO, QUIT,
// SELECT, AUTH, HELLO, RESET and CLIENT (networking.c, acl.c).
#include <climits>

#include "shared/cmd/internal.h"

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
  if (c.env.config && !c.env.config->kv.password.empty()) c.session.authenticated = false;
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
  AppendU64(b,
            s.connected_ms && c.now_ms > s.connected_ms ? (c.now_ms - s.connected_ms) / 1000 : 0);
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

void CmdClientList(CommandCtx& c) {
  if (c.argc() > 2) return ReplySyntax(c);  // TYPE/ID filters: not supported
  std::string& b = ErrBuf();
  if (c.env.client_list)
    c.env.client_list(&b);
  else
    AppendClientLine(c, &b);
  c.out.Bulk(b);
}

void CmdClientHelp(CommandCtx& c) {
  ReplyHelp(c, "CLIENT",
            {"GETNAME", "    Return the name of the current connection.", "ID",
             "    Return the ID of the current connection.", "INFO",
             "    Return information about the current client connection.", "LIST",
             "    Return information about client connections of this worker.", "SETNAME <name>",
             "    Assign the name <name> to the current connection.", "SETINFO <option> <value>",
             "    Set client meta attr (LIB-NAME, LIB-VER)."});
}

}  // namespace pf
