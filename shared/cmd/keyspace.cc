// shared/cmd/keyspace.cc: the keyspace commands (db.c, expire.c): DEL,
// EXISTS, TYPE, the EXPIRE and TTL families, PERSIST, DBSIZE, the flushes,
// KEYS and SCAN.
#include <algorithm>
#include <climits>

#include "shared/cmd/internal.h"

namespace pf {
namespace {

constexpr size_t kKeysScanBatch = 1024;     // buckets per engine Scan call inside KEYS
constexpr int64_t kScanMaxCount = 1 << 20;  // a SCAN COUNT hint above this is clamped
// Token steps all GlobMatch calls of one KEYS or SCAN may take: KEYS answers
// kKeysTooExpensive past it, SCAN returns early with the cursor it reached.
constexpr uint64_t kGlobCommandBudget = 50'000'000;

}  // namespace

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
    if (EqualsNoCase(o, "nx"))
      f |= NX;
    else if (EqualsNoCase(o, "xx"))
      f |= XX;
    else if (EqualsNoCase(o, "gt"))
      f |= GT;
    else if (EqualsNoCase(o, "lt"))
      f |= LT;
    else {
      std::string& e = ErrBuf();
      e += "ERR Unsupported option ";
      AppendSafe(&e, o);
      return c.out.Error(ErrCode::kSyntax, e);
    }
  }
  if ((f & NX) && (f & (XX | GT | LT)))
    return c.out.Error(ErrCode::kSyntax, errtext::kExpireNxConflict);
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
  if (c.argc() == 2 && !EqualsNoCase(c.arg(1), "sync") && !EqualsNoCase(c.arg(1), "async"))
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

void CmdScan(CommandCtx& c) {
  uint64_t cursor;
  // db.c parseScanCursorOrReply (digits only; strtoul's sign and wrap are not kept).
  if (!ParseU64(c.arg(1), &cursor)) return c.out.Error(ErrCode::kErr, errtext::kInvalidCursor);
  int64_t count = 10;
  std::string_view pat;
  bool use_pattern = false, type_mismatch = false;
  for (size_t i = 2; i < c.argc();) {
    size_t left = c.argc() - i;
    std::string_view o = c.arg(i);
    if (EqualsNoCase(o, "count") && left >= 2) {
      if (!ParseInt64(c.arg(i + 1), &count)) return ReplyNotInteger(c);
      if (count < 1) return ReplySyntax(c);
      i += 2;
    } else if (EqualsNoCase(o, "match") && left >= 2) {
      pat = c.arg(i + 1);
      use_pattern = !(pat == "*");
      i += 2;
    } else if (EqualsNoCase(o, "type") && left >= 2) {
      type_mismatch = !EqualsNoCase(c.arg(i + 1), "string");  // every value is a string
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

}  // namespace pf
