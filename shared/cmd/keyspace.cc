// shared/cmd/keyspace.cc: the keyspace commands (db.c, expire.c): DEL,
// EXISTS, TYPE, the EXPIRE and TTL families (EXPIRETIME too), PERSIST,
// DBSIZE, the flushes, KEYS, SCAN, TOUCH, RENAME(NX), COPY, MOVE, SWAPDB,
// RANDOMKEY and OBJECT.
#include <algorithm>
#include <climits>

#include "shared/cmd/internal.h"

namespace pf {
namespace {

constexpr size_t kKeysScanBatch = 1024;     // keys per engine Scan call inside KEYS
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
  // One locked section: the NX/XX/GT/LT test and the change see the same TTL.
  kv::Status st = WithKey(c, key, [&](kv::KeyView& kv) {
    std::string_view v;
    int64_t cur = -1;
    if (kv.Get(key, &v, &cur) != kv::Status::kOk) return kv::Status::kNotDone;
    if ((f & NX) && cur != -1) return kv::Status::kNotDone;
    if ((f & XX) && cur == -1) return kv::Status::kNotDone;
    if ((f & GT) && (cur == -1 || when <= cur)) return kv::Status::kNotDone;
    if ((f & LT) && cur != -1 && when >= cur) return kv::Status::kNotDone;
    // A deadline not after now deletes the key (as Redis), answering 1.
    return kv.SetExpire(key, when);
  });
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

// ---------------------------------------------------------------------------
// expire.c ttlGenericCommand with output_abs: the absolute deadline.
void ExpiretimeGeneric(CommandCtx& c, bool ms) {
  int64_t at;
  if (c.env.store->GetExpire(c.arg(1), c.now_ms, &at) != kv::Status::kOk) return c.out.Integer(-2);
  if (at == -1) return c.out.Integer(-1);
  c.out.Integer(ms ? at : (at + 500) / 1000);
}
void CmdExpiretime(CommandCtx& c) { ExpiretimeGeneric(c, false); }
void CmdPexpiretime(CommandCtx& c) { ExpiretimeGeneric(c, true); }

void CmdTouch(CommandCtx& c) {
  int64_t n = 0;
  for (size_t j = 1; j < c.argc(); ++j) {
    // A read (Get) updates the key's LRU position; Exists does not.
    if (c.env.store->Get(c.arg(j), c.now_ms, nullptr) == kv::Status::kOk) n++;
  }
  c.out.Integer(n);
}

// db.c renameGenericCommand: the value and its TTL move in one section.
void RenameGeneric(CommandCtx& c, bool nx) {
  std::string_view src = c.arg(1), dst = c.arg(2);
  std::string_view keys[2] = {src, dst};
  kv::Status st = c.env.store->WithKeys(keys, c.now_ms, [&](kv::KeyView& kv) {
    std::string_view v;
    int64_t exp = -1;
    if (kv.Get(src, &v, &exp) != kv::Status::kOk) return kv::Status::kNotFound;
    if (src == dst) return nx ? kv::Status::kNotDone : kv::Status::kOk;
    if (nx && kv.Exists(dst)) return kv::Status::kNotDone;
    kv::Status s = kv.Put(dst, v, exp);
    if (s != kv::Status::kOk) return s;
    return kv.Del(src);
  });
  if (st == kv::Status::kNotFound) return c.out.Error(ErrCode::kErr, errtext::kNoSuchKey);
  if (st == kv::Status::kOk) return nx ? c.out.Integer(1) : ReplyOk(c);
  if (st == kv::Status::kNotDone) return c.out.Integer(0);
  ReplyKvError(c, st, dst);
}
void CmdRename(CommandCtx& c) { RenameGeneric(c, false); }
void CmdRenamenx(CommandCtx& c) { RenameGeneric(c, true); }

namespace {
// A DB index argument: there is one database, 0. False after replying.
bool ParseDbIndex(CommandCtx& c, std::string_view arg, int64_t* db) {
  if (!ParseInt64(arg, db) || *db < INT_MIN || *db > INT_MAX) {
    ReplyNotInteger(c);
    return false;
  }
  if (*db != 0) {
    c.out.Error(ErrCode::kErr, errtext::kDbIndex);
    return false;
  }
  return true;
}
}  // namespace

// db.c copyCommand: COPY source destination [DB destination-db] [REPLACE].
void CmdCopy(CommandCtx& c) {
  std::string_view src = c.arg(1), dst = c.arg(2);
  bool replace = false;
  for (size_t j = 3; j < c.argc(); ++j) {
    if (EqualsNoCase(c.arg(j), "replace")) {
      replace = true;
    } else if (EqualsNoCase(c.arg(j), "db") && j + 1 < c.argc()) {
      int64_t db;
      if (!ParseDbIndex(c, c.arg(++j), &db)) return;
    } else {
      return ReplySyntax(c);
    }
  }
  if (src == dst) return c.out.Error(ErrCode::kErr, errtext::kSameObject);
  std::string_view keys[2] = {src, dst};
  kv::Status st = c.env.store->WithKeys(keys, c.now_ms, [&](kv::KeyView& kv) {
    std::string_view v;
    int64_t exp = -1;
    if (kv.Get(src, &v, &exp) != kv::Status::kOk) return kv::Status::kNotDone;
    if (!replace && kv.Exists(dst)) return kv::Status::kNotDone;
    return kv.Put(dst, v, exp);
  });
  if (st == kv::Status::kOk) return c.out.Integer(1);
  if (st == kv::Status::kNotDone) return c.out.Integer(0);
  ReplyKvError(c, st, dst);
}

// db.c moveCommand: with one database, every target is out of range or the same.
void CmdMove(CommandCtx& c) {
  int64_t db;
  if (!ParseDbIndex(c, c.arg(2), &db)) return;
  c.out.Error(ErrCode::kErr, errtext::kSameObject);
}

// db.c swapdbCommand: swapping database 0 with itself changes nothing.
void CmdSwapdb(CommandCtx& c) {
  int64_t a, b;
  if (!ParseInt64(c.arg(1), &a) || a < INT_MIN || a > INT_MAX)
    return c.out.Error(ErrCode::kErr, errtext::kFirstDbIndex);
  if (!ParseInt64(c.arg(2), &b) || b < INT_MIN || b > INT_MAX)
    return c.out.Error(ErrCode::kErr, errtext::kSecondDbIndex);
  if (a != 0 || b != 0) return c.out.Error(ErrCode::kErr, errtext::kDbIndex);
  ReplyOk(c);
}

// db.c randomkeyCommand: a key near a random place of the index (scans from a
// random shard until it finds one; nil when the store is empty).
void CmdRandomkey(CommandCtx& c) {
  static thread_local uint64_t rng = 0x9e3779b97f4a7c15ull ^ c.now_ms;
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  std::string key;
  if (!c.env.store->RandomKey(c.now_ms, rng, &key)) return c.out.Nil();
  c.out.Bulk(key);
}

// object.c: OBJECT ENCODING / FREQ / IDLETIME / REFCOUNT / HELP. Values are
// byte strings; the encoding is what Redis would choose for the same bytes
// written by SET (APPEND/SETRANGE results, "raw" in Redis, are judged by
// their bytes here too).
namespace {
constexpr size_t kEmbstrMax = 44;  // OBJ_ENCODING_EMBSTR_SIZE_LIMIT
constexpr int64_t kSharedIntegers = 10000;
bool LooksLikeLong(std::string_view v, int64_t* n) { return v.size() <= 20 && ParseInt64(v, n); }
}  // namespace

void CmdObjectEncoding(CommandCtx& c) {
  std::string& v = ValueBuf();
  if (c.env.store->Get(c.arg(2), c.now_ms, &v) != kv::Status::kOk) return c.out.Nil();
  int64_t n;
  if (LooksLikeLong(v, &n)) return c.out.Bulk("int");
  c.out.Bulk(v.size() <= kEmbstrMax ? "embstr" : "raw");
}

void CmdObjectFreq(CommandCtx& c) {
  if (!c.env.store->Exists(c.arg(2), c.now_ms)) return c.out.Nil();
  // Access frequency is not tracked: no LFU policy exists (kv.eviction).
  c.out.Error(ErrCode::kErr, errtext::kNoLfu);
}

void CmdObjectIdletime(CommandCtx& c) {
  if (!c.env.store->Exists(c.arg(2), c.now_ms)) return c.out.Nil();
  c.out.Integer(0);  // access times are not tracked per key (docs/protocol-resp.md)
}

void CmdObjectRefcount(CommandCtx& c) {
  std::string& v = ValueBuf();
  if (c.env.store->Get(c.arg(2), c.now_ms, &v) != kv::Status::kOk) return c.out.Nil();
  // Redis shares the objects of 0..9999 (refcount INT_MAX) unless it evicts.
  int64_t n;
  const bool shared = LooksLikeLong(v, &n) && n >= 0 && n < kSharedIntegers &&
                      (!c.env.config || c.env.config->kv.eviction == Eviction::kNoEviction);
  c.out.Integer(shared ? INT_MAX : 1);
}

void CmdObjectHelp(CommandCtx& c) {
  ReplyHelp(c, "OBJECT",
            {"ENCODING <key>",
             "    Return the kind of internal representation used in order to store the value",
             "    associated with a <key>.", "FREQ <key>",
             "    Return the access frequency index of the <key>. The returned integer is",
             "    proportional to the logarithm of the recent access frequency of the key.",
             "IDLETIME <key>",
             "    Return the idle time of the <key>, that is the approximated number of",
             "    seconds elapsed since the last access to the key.", "REFCOUNT <key>",
             "    Return the number of references of the value associated with the specified",
             "    <key>."});
}

}  // namespace pf
