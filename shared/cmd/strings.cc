// shared/cmd/strings.cc: the string commands (t_string.c): GET, SET and
// its variants, MGET, MSET, INCR/DECR and their BY forms, STRLEN.
#include <climits>

#include "shared/cmd/internal.h"

namespace pf {

void CmdGet(CommandCtx& c) {
  std::string& v = ValueBuf();
  kv::Status st = c.env.store->Get(c.arg(1), c.now_ms, &v);
  if (st == kv::Status::kOk) return c.out.BulkTake(&v);
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
  kv::Status st =
      c.env.store->Set(key, value, opt, c.now_ms, get ? &old : nullptr, get ? &had_old : nullptr);
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
    if (EqualsNoCase(o, "nx") && !(f & XX)) {
      f |= NX;
    } else if (EqualsNoCase(o, "xx") && !(f & NX)) {
      f |= XX;
    } else if (EqualsNoCase(o, "get")) {
      f |= GET;
    } else if (EqualsNoCase(o, "keepttl") && !(f & (EX | PX | EXAT | PXAT))) {
      f |= KEEPTTL;
    } else if (EqualsNoCase(o, "ex") && !(f & (KEEPTTL | PX | EXAT | PXAT)) && next) {
      f |= EX;
      expire = c.arg(++j);
    } else if (EqualsNoCase(o, "px") && !(f & (KEEPTTL | EX | EXAT | PXAT)) && next) {
      f |= PX;
      expire = c.arg(++j);
    } else if (EqualsNoCase(o, "exat") && !(f & (KEEPTTL | EX | PX | PXAT)) && next) {
      f |= EXAT;
      expire = c.arg(++j);
    } else if (EqualsNoCase(o, "pxat") && !(f & (KEEPTTL | EX | PX | EXAT)) && next) {
      f |= PXAT;
      expire = c.arg(++j);
    } else {
      return ReplySyntax(c);
    }
  }
  kv::SetOptions opt;
  opt.cond = (f & NX)   ? kv::SetOptions::kIfAbsent
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
    if (i < vals.size() && vals[i])
      c.out.Bulk(*vals[i]);
    else
      c.out.Nil();
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

}  // namespace pf
