// shared/cmd/dump.cc: DUMP and RESTORE (cluster.c): a key's value in Redis'
// serialized form (shared/util/dump_payload.h), so keys move between
// preforkd nodes, and from a Redis 7.0 into preforkd, as redis-cli and
// client libraries move them between Redis servers.
#include <climits>

#include "shared/cmd/internal.h"
#include "shared/util/dump_payload.h"

namespace pf {

void CmdDump(CommandCtx& c) {
  std::string& v = ValueBuf();
  const kv::Status st = c.env.store->Get(c.arg(1), c.now_ms, &v);
  if (st == kv::Status::kNotFound) return c.out.Nil();
  if (st != kv::Status::kOk) return ReplyKvError(c, st, c.arg(1));
  std::string payload;
  dump::Serialize(v, &payload);
  c.out.BulkTake(&payload);
}

namespace {

// What the RESTORE options say (cluster.c restoreCommand's parse).
struct RestoreArgs {
  bool replace = false, absttl = false;
  int64_t idletime = -1, freq = -1;  // accepted and checked, then ignored: no LRU/LFU clock per key
};

// False after replying.
bool ParseRestoreArgs(CommandCtx& c, RestoreArgs* a) {
  for (size_t j = 4; j < c.argc(); ++j) {
    const std::string_view o = c.arg(j);
    const bool more = j + 1 < c.argc();
    if (EqualsNoCase(o, "replace")) {
      a->replace = true;
    } else if (EqualsNoCase(o, "absttl")) {
      a->absttl = true;
    } else if (EqualsNoCase(o, "idletime") && more && a->freq == -1) {
      if (!ParseInt64(c.arg(++j), &a->idletime)) {
        ReplyNotInteger(c);
        return false;
      }
      if (a->idletime < 0) {
        c.out.Error(ErrCode::kErr, errtext::kInvalidIdletime);
        return false;
      }
    } else if (EqualsNoCase(o, "freq") && more && a->idletime == -1) {
      if (!ParseInt64(c.arg(++j), &a->freq)) {
        ReplyNotInteger(c);
        return false;
      }
      if (a->freq < 0 || a->freq > 255) {
        c.out.Error(ErrCode::kErr, errtext::kInvalidFreq);
        return false;
      }
    } else {
      ReplySyntax(c);
      return false;
    }
  }
  return true;
}

void ReplyNotAString(CommandCtx& c, uint8_t rdb_type) {
  std::string& e = ErrBuf();
  e += "ERR DUMP payload holds a ";
  e += dump::TypeName(rdb_type);
  e += " (RDB type ";
  AppendU64(&e, rdb_type);
  e += "); preforkd stores strings only";
  c.out.Error(ErrCode::kErr, e);
}

}  // namespace

// RESTORE key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]:
// Redis' checks in Redis' order (options, the key's absence, TTL, footer,
// body), then one locked section that writes the key as SET ... PXAT would
// (and persistence logs it the same way).
void CmdRestore(CommandCtx& c) {
  RestoreArgs a;
  if (!ParseRestoreArgs(c, &a)) return;
  const std::string_view key = c.arg(1);
  if (!a.replace && c.env.store->Exists(key, c.now_ms))
    return c.out.Error(ErrCode::kErr, errtext::kBusyKey);
  int64_t ttl;
  if (!ParseInt64(c.arg(2), &ttl)) return ReplyNotInteger(c);
  if (ttl < 0) return c.out.Error(ErrCode::kErr, errtext::kInvalidTtl);

  const size_t max_value =
      c.env.config ? c.env.config->kv.max_value_bytes : kv::Limits{}.max_value_bytes;
  std::string& scratch = ValueBuf();
  std::string_view value;
  uint8_t rdb_type = 0;
  switch (dump::Parse(c.arg(3), max_value, &scratch, &value, &rdb_type)) {
    case dump::ParseResult::kOk:
      break;
    case dump::ParseResult::kBadFooter:
      return c.out.Error(ErrCode::kErr, errtext::kDumpPayload);
    case dump::ParseResult::kBadFormat:
      return c.out.Error(ErrCode::kErr, errtext::kBadDataFormat);
    case dump::ParseResult::kNotString:
      return ReplyNotAString(c, rdb_type);
    case dump::ParseResult::kTooLarge:
      return c.out.Error(ErrCode::kTooLarge, errtext::kValueTooLarge);
  }

  // ttl 0: no expiry. Relative: Redis adds now without an overflow check, and
  // a sum past INT64_MAX wraps negative there: already expired, as here.
  const int64_t now = static_cast<int64_t>(c.now_ms);
  int64_t at = -1;
  bool expired = false;
  if (ttl != 0) {
    if (a.absttl)
      at = ttl;
    else if (ttl > LLONG_MAX - now)
      expired = true;
    else
      at = ttl + now;
    expired = expired || at <= now;
  }
  const kv::Status st = WithKey(c, key, [&](kv::KeyView& kv) {
    if (!a.replace && kv.Exists(key)) return kv::Status::kNotDone;  // created since the check
    // A deadline already past: nothing is created, and REPLACE still deletes (+OK, as Redis).
    if (expired) {
      if (a.replace) kv.Del(key);
      return kv::Status::kOk;
    }
    return kv.Put(key, value, at);
  });
  if (st == kv::Status::kOk) return ReplyOk(c);
  if (st == kv::Status::kNotDone) return c.out.Error(ErrCode::kErr, errtext::kBusyKey);
  ReplyKvError(c, st, key);
}

}  // namespace pf
