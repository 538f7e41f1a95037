// shared/cmd/strings.cc: the string commands (t_string.c): GET, SET and
// its variants, MGET, MSET, MSETNX, INCR/DECR and their BY forms,
// INCRBYFLOAT, STRLEN, GETDEL, GETEX, GETSET, GETRANGE, SETRANGE, APPEND, LCS.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>

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
  if (!WriteFitsRequestLimit(c, "MSET")) return;
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
// Read-modify-write commands: each is one locked section (kv.h WithKeys), so
// nothing else sees or writes the key between the read and the write.

kv::Status WithKey(CommandCtx& c, std::string_view key,
                   const std::function<kv::Status(kv::KeyView&)>& fn) {
  std::string_view keys[1] = {key};
  return c.env.store->WithKeys(keys, c.now_ms, fn);
}

void ReplyWriteError(CommandCtx& c, kv::Status st, std::string_view key) {
  if (st == kv::Status::kTooLarge && !(c.env.config && key.size() > c.env.config->kv.max_key_bytes))
    return c.out.Error(ErrCode::kTooLarge, errtext::kStringTooLarge);
  ReplyKvError(c, st, key);
}

void CmdGetdel(CommandCtx& c) {
  std::string& v = ValueBuf();
  kv::Status st = WithKey(c, c.arg(1), [&](kv::KeyView& kv) {
    std::string_view cur;
    if (kv.Get(c.arg(1), &cur) != kv::Status::kOk) return kv::Status::kNotFound;
    v.assign(cur);
    return kv.Del(c.arg(1));
  });
  if (st == kv::Status::kOk) return c.out.BulkTake(&v);
  c.out.Nil();
}

// t_string.c getexCommand.
void CmdGetex(CommandCtx& c) {
  enum : unsigned { EX = 1, PX = 2, EXAT = 4, PXAT = 8, PERSIST = 16 };
  unsigned f = 0;
  std::string_view expire;
  for (size_t j = 2; j < c.argc(); ++j) {
    std::string_view o = c.arg(j);
    const bool next = j + 1 < c.argc();
    const unsigned others = EX | PX | EXAT | PXAT | PERSIST;
    if (EqualsNoCase(o, "persist") && !(f & (EX | PX | EXAT | PXAT))) {
      f |= PERSIST;
    } else if (EqualsNoCase(o, "ex") && !(f & (others & ~EX)) && next) {
      f |= EX;
      expire = c.arg(++j);
    } else if (EqualsNoCase(o, "px") && !(f & (others & ~PX)) && next) {
      f |= PX;
      expire = c.arg(++j);
    } else if (EqualsNoCase(o, "exat") && !(f & (others & ~EXAT)) && next) {
      f |= EXAT;
      expire = c.arg(++j);
    } else if (EqualsNoCase(o, "pxat") && !(f & (others & ~PXAT)) && next) {
      f |= PXAT;
      expire = c.arg(++j);
    } else {
      return ReplySyntax(c);
    }
  }
  int64_t at = -1;
  if ((f & (EX | PX | EXAT | PXAT)) &&
      !ExpireArgToAbsMs(c, expire, (f & (EX | EXAT)) != 0, (f & (EX | PX)) != 0, &at))
    return;
  std::string& v = ValueBuf();
  kv::Status st = WithKey(c, c.arg(1), [&](kv::KeyView& kv) {
    std::string_view cur;
    if (kv.Get(c.arg(1), &cur) != kv::Status::kOk) return kv::Status::kNotFound;
    v.assign(cur);
    if (at >= 0) kv.SetExpire(c.arg(1), at);  // a deadline already past deletes (as Redis)
    if (f & PERSIST) kv.SetExpire(c.arg(1), -1);
    return kv::Status::kOk;
  });
  if (st == kv::Status::kOk) return c.out.BulkTake(&v);
  c.out.Nil();
}

void CmdGetset(CommandCtx& c) { DoSet(c, c.arg(1), c.arg(2), kv::SetOptions{}, true, false); }

// t_string.c getrangeCommand.
void CmdGetrange(CommandCtx& c) {
  int64_t start, end;
  if (!ParseInt64(c.arg(2), &start) || !ParseInt64(c.arg(3), &end)) return ReplyNotInteger(c);
  std::string& v = ValueBuf();
  kv::Status st = c.env.store->Get(c.arg(1), c.now_ms, &v);
  if (st != kv::Status::kOk) return c.out.Bulk("");
  if (start < 0 && end < 0 && start > end) return c.out.Bulk("");
  const int64_t len = static_cast<int64_t>(v.size());
  if (start < 0) start += len;
  if (end < 0) end += len;
  if (start < 0) start = 0;
  if (end < 0) end = 0;
  if (end >= len) end = len - 1;
  if (start > end || len == 0) return c.out.Bulk("");
  c.out.Bulk(
      std::string_view(v).substr(static_cast<size_t>(start), static_cast<size_t>(end - start + 1)));
}

// t_string.c setrangeCommand: the value keeps its TTL.
void CmdSetrange(CommandCtx& c) {
  int64_t offset;
  if (!ParseInt64(c.arg(2), &offset)) return ReplyNotInteger(c);
  if (offset < 0) return c.out.Error(ErrCode::kErr, errtext::kOffsetRange);
  const std::string_view patch = c.arg(3);
  std::string& nv = ValueBuf();
  int64_t result = 0;
  kv::Status st = WithKey(c, c.arg(1), [&](kv::KeyView& kv) {
    std::string_view cur;
    int64_t exp = -1;
    const bool found = kv.Get(c.arg(1), &cur, &exp) == kv::Status::kOk;
    if (patch.empty()) {  // nothing to write, and an empty value is not created
      result = found ? static_cast<int64_t>(cur.size()) : 0;
      return kv::Status::kOk;
    }
    if (static_cast<uint64_t>(offset) + patch.size() > kv.max_value_bytes())
      return kv::Status::kTooLarge;
    nv.assign(found ? cur : std::string_view());
    const size_t end = static_cast<size_t>(offset) + patch.size();
    if (nv.size() < end) nv.resize(end, '\0');
    nv.replace(static_cast<size_t>(offset), patch.size(), patch);
    result = static_cast<int64_t>(nv.size());
    return kv.Put(c.arg(1), nv, found ? exp : -1);
  });
  if (st == kv::Status::kOk) return c.out.Integer(result);
  ReplyWriteError(c, st, c.arg(1));
}

// t_string.c appendCommand: the value keeps its TTL.
void CmdAppend(CommandCtx& c) {
  std::string& nv = ValueBuf();
  kv::Status st = WithKey(c, c.arg(1), [&](kv::KeyView& kv) {
    std::string_view cur;
    int64_t exp = -1;
    const bool found = kv.Get(c.arg(1), &cur, &exp) == kv::Status::kOk;
    if (cur.size() + c.arg(2).size() > kv.max_value_bytes()) return kv::Status::kTooLarge;
    nv.assign(found ? cur : std::string_view());
    nv += c.arg(2);
    return kv.Put(c.arg(1), nv, found ? exp : -1);
  });
  if (st == kv::Status::kOk) return c.out.Integer(static_cast<int64_t>(nv.size()));
  ReplyWriteError(c, st, c.arg(1));
}

namespace {
// util.c string2ld: the whole text is a long double, no leading space, no NaN.
constexpr size_t kMaxLongDoubleChars = 5 * 1024;
bool ParseLongDouble(std::string_view s, long double* out) {
  if (s.empty() || s.size() >= kMaxLongDoubleChars) return false;
  char buf[kMaxLongDoubleChars];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  errno = 0;
  char* end = nullptr;
  long double v = std::strtold(buf, &end);
  if (std::isspace(static_cast<unsigned char>(buf[0])) || *end != '\0' ||
      (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || std::fpclassify(v) == FP_ZERO)) ||
      std::isnan(v))
    return false;
  *out = v;
  return true;
}
// util.c ld2string LD_STR_HUMAN: "%.17Lf" without trailing zeros (nor a
// trailing '.'), "-0" as "0". The caller has excluded NaN and infinities.
void FormatHumanLongDouble(long double v, std::string* out) {
  char buf[kMaxLongDoubleChars];
  int l = std::snprintf(buf, sizeof buf, "%.17Lf", v);
  if (l < 0 || static_cast<size_t>(l) >= sizeof buf) {
    out->assign("0");
    return;
  }
  if (std::memchr(buf, '.', static_cast<size_t>(l))) {
    while (l > 0 && buf[l - 1] == '0') --l;
    if (l > 0 && buf[l - 1] == '.') --l;
  }
  if (l == 2 && buf[0] == '-' && buf[1] == '0') {
    buf[0] = '0';
    l = 1;
  }
  out->assign(buf, static_cast<size_t>(l));
}
}  // namespace

// t_string.c incrbyfloatCommand: the value keeps its TTL.
void CmdIncrbyfloat(CommandCtx& c) {
  long double incr;
  std::string& nv = ValueBuf();
  bool bad_value = false, nan_inf = false;
  kv::Status st = WithKey(c, c.arg(1), [&](kv::KeyView& kv) {
    std::string_view cur;
    int64_t exp = -1;
    long double v = 0;
    const bool found = kv.Get(c.arg(1), &cur, &exp) == kv::Status::kOk;
    if ((found && !ParseLongDouble(cur, &v)) || !ParseLongDouble(c.arg(2), &incr)) {
      bad_value = true;
      return kv::Status::kNotDone;
    }
    v += incr;
    if (std::isnan(v) || std::isinf(v)) {
      nan_inf = true;
      return kv::Status::kNotDone;
    }
    FormatHumanLongDouble(v, &nv);
    return kv.Put(c.arg(1), nv, found ? exp : -1);
  });
  if (bad_value) return c.out.Error(ErrCode::kErr, errtext::kNotFloat);
  if (nan_inf) return c.out.Error(ErrCode::kErr, errtext::kFloatNanInf);
  if (st == kv::Status::kOk) return c.out.Bulk(nv);
  ReplyWriteError(c, st, c.arg(1));
}

// t_string.c msetnxCommand: all keys are set, or none (if any exists).
void CmdMsetnx(CommandCtx& c) {
  if (c.argc() % 2 == 0) return ReplyArity(c);
  if (!WriteFitsRequestLimit(c, "MSETNX")) return;
  std::vector<std::string_view> keys;
  std::vector<std::pair<std::string_view, size_t>> sizes;
  for (size_t j = 1; j + 1 < c.argc(); j += 2) {
    keys.push_back(c.arg(j));
    sizes.emplace_back(c.arg(j), c.arg(j + 1).size());
  }
  std::string_view bad_key;
  kv::Status st = c.env.store->WithKeys(keys, c.now_ms, [&](kv::KeyView& kv) {
    for (std::string_view k : keys)
      if (kv.Exists(k)) return kv::Status::kNotDone;
    // Check every write fits before making any: MSETNX sets all or nothing.
    kv::Status fit = kv.CanPut(sizes);
    if (fit != kv::Status::kOk) return fit;
    for (size_t j = 1; j + 1 < c.argc(); j += 2) {
      kv::Status s = kv.Put(c.arg(j), c.arg(j + 1), -1);
      if (s != kv::Status::kOk) return s;  // only under allkeys-lru, badly fragmented
    }
    return kv::Status::kOk;
  });
  if (st == kv::Status::kOk) return c.out.Integer(1);
  if (st == kv::Status::kNotDone) return c.out.Integer(0);
  if (st == kv::Status::kTooLarge && c.env.config)
    for (std::string_view k : keys)
      if (k.size() > c.env.config->kv.max_key_bytes) bad_key = k;
  ReplyKvError(c, st, bad_key);
}

// t_string.c lcsCommand: LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len]
// [WITHMATCHLEN]. Both values are copied in one section; the dynamic
// programming table, (len1+1) * (len2+1) 32-bit cells, may not pass
// limits.max_reply_bytes.
void CmdLcs(CommandCtx& c) {
  bool getlen = false, getidx = false, withmatchlen = false;
  int64_t minmatchlen = 0;
  for (size_t j = 3; j < c.argc(); ++j) {
    std::string_view o = c.arg(j);
    const bool more = j + 1 < c.argc();
    if (EqualsNoCase(o, "idx")) {
      getidx = true;
    } else if (EqualsNoCase(o, "len")) {
      getlen = true;
    } else if (EqualsNoCase(o, "withmatchlen")) {
      withmatchlen = true;
    } else if (EqualsNoCase(o, "minmatchlen") && more) {
      if (!ParseInt64(c.arg(++j), &minmatchlen)) return ReplyNotInteger(c);
      if (minmatchlen < 0) minmatchlen = 0;
    } else {
      return ReplySyntax(c);
    }
  }
  if (getlen && getidx) return c.out.Error(ErrCode::kErr, errtext::kLcsLenAndIdx);
  std::string a, b;
  std::string_view keys[2] = {c.arg(1), c.arg(2)};
  c.env.store->WithKeys(keys, c.now_ms, [&](kv::KeyView& kv) {
    std::string_view v;
    if (kv.Get(keys[0], &v) == kv::Status::kOk) a.assign(v);
    if (kv.Get(keys[1], &v) == kv::Status::kOk) b.assign(v);
    return kv::Status::kOk;
  });
  const uint64_t alen = a.size(), blen = b.size();
  if ((alen + 1) * (blen + 1) > MaxReplyBytes(c) / sizeof(uint32_t))
    return c.out.Error(ErrCode::kTooLarge, errtext::kLcsMemory);
  std::vector<uint32_t> dp((alen + 1) * (blen + 1));
  auto at = [&](uint64_t i, uint64_t j) -> uint32_t& { return dp[i * (blen + 1) + j]; };
  for (uint64_t i = 1; i <= alen; ++i)
    for (uint64_t j = 1; j <= blen; ++j)
      at(i, j) = a[i - 1] == b[j - 1] ? at(i - 1, j - 1) + 1 : std::max(at(i - 1, j), at(i, j - 1));
  uint32_t idx = at(alen, blen);
  const uint32_t total = idx;
  if (getlen) return c.out.Integer(total);
  std::string result(idx, '\0');
  struct Match {
    uint64_t a0, a1, b0, b1;
  };
  std::vector<Match> matches;
  uint64_t a_start = alen, a_end = 0, b_start = 0, b_end = 0;
  uint64_t i = alen, j = blen;
  while (i > 0 && j > 0) {
    bool emit = false;
    if (a[i - 1] == b[j - 1]) {
      result[idx - 1] = a[i - 1];
      if (a_start == alen) {
        a_start = a_end = i - 1;
        b_start = b_end = j - 1;
      } else if (a_start == i && b_start == j) {
        a_start--;
        b_start--;
      } else {
        emit = true;
      }
      if (a_start == 0 || b_start == 0) emit = true;
      idx--;
      i--;
      j--;
    } else {
      if (at(i - 1, j) > at(i, j - 1))
        i--;
      else
        j--;
      if (a_start != alen) emit = true;
    }
    if (emit) {
      const uint64_t len = a_end - a_start + 1;
      if (minmatchlen == 0 || len >= static_cast<uint64_t>(minmatchlen))
        matches.push_back({a_start, a_end, b_start, b_end});
      a_start = alen;  // restart at the next match
    }
  }
  if (!getidx) return c.out.Bulk(result);
  c.out.MapBegin(2);  // {matches, len}: Redis' addReplyMapLen
  c.out.Bulk("matches");
  c.out.ArrayBegin(matches.size());
  for (const Match& m : matches) {
    c.out.ArrayBegin(withmatchlen ? 3 : 2);
    c.out.ArrayBegin(2);
    c.out.Integer(static_cast<int64_t>(m.a0));
    c.out.Integer(static_cast<int64_t>(m.a1));
    c.out.ArrayBegin(2);
    c.out.Integer(static_cast<int64_t>(m.b0));
    c.out.Integer(static_cast<int64_t>(m.b1));
    if (withmatchlen) c.out.Integer(static_cast<int64_t>(m.a1 - m.a0 + 1));
  }
  c.out.Bulk("len");
  c.out.Integer(total);
}

}  // namespace pf
