// shared/cmd/bits.cc: the bit commands (bitops.c): SETBIT, GETBIT, BITCOUNT,
// BITPOS, BITOP, BITFIELD and BITFIELD_RO, with Redis 7.0's replies. Writes
// are one locked section each (kv.h WithKeys); a value never grows past
// kv.max_value_bytes.
#include <bit>
#include <climits>
#include <cstring>
#include <optional>

#include "shared/cmd/internal.h"

namespace pf {
namespace {

// Redis' proto-max-bulk-len default: the largest offset it parses. Reads
// past a value see zeros; writes are bounded by kv.max_value_bytes.
constexpr uint64_t kProtoMaxBulkLen = 512ull << 20;

// bitops.c getBitOffsetFromArgument. `hash`: "#N" means N * bits.
bool ParseBitOffset(CommandCtx& c, std::string_view arg, bool hash, uint64_t bits,
                    uint64_t* offset) {
  bool usehash = hash && bits > 0 && !arg.empty() && arg[0] == '#';
  int64_t v;
  if (!ParseInt64(usehash ? arg.substr(1) : arg, &v) ||
      (usehash && __builtin_mul_overflow(v, static_cast<int64_t>(bits), &v)) || v < 0 ||
      static_cast<uint64_t>(v >> 3) >= kProtoMaxBulkLen) {
    c.out.Error(ErrCode::kErr, errtext::kBitOffset);
    return false;
  }
  *offset = static_cast<uint64_t>(v);
  return true;
}

uint64_t Popcount(const unsigned char* p, size_t n) {
  uint64_t count = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    count += static_cast<uint64_t>(std::popcount(w));
  }
  for (; i < n; ++i) count += static_cast<uint64_t>(std::popcount(static_cast<unsigned>(p[i])));
  return count;
}

// bitops.c redisBitpos: the first bit equal to `bit`; none: -1 for a 1, and
// for a 0 the bit just past the bytes (the string is zero-padded on the right).
int64_t Bitpos(const unsigned char* p, size_t n, int bit) {
  const unsigned char skip = bit ? 0x00 : 0xff;
  size_t i = 0;
  while (i < n && p[i] == skip) ++i;
  if (i == n) return bit ? -1 : static_cast<int64_t>(n) * 8;
  for (int b = 7; b >= 0; --b)
    if (((p[i] >> b) & 1) == bit) return static_cast<int64_t>(i) * 8 + (7 - b);
  return -1;  // unreachable: p[i] != skip has such a bit
}

}  // namespace

void CmdSetbit(CommandCtx& c) {
  uint64_t offset;
  if (!ParseBitOffset(c, c.arg(2), false, 0, &offset)) return;
  int64_t on;
  if (!ParseInt64(c.arg(3), &on) || (on & ~int64_t{1}))
    return c.out.Error(ErrCode::kErr, errtext::kBitValue);
  const size_t byte = static_cast<size_t>(offset >> 3);
  const int shift = 7 - static_cast<int>(offset & 7);
  std::string& nv = ValueBuf();
  int old = 0;
  kv::Status st = WithKey(c, c.arg(1), [&](kv::KeyView& kv) {
    std::string_view cur;
    int64_t exp = -1;
    const bool found = kv.Get(c.arg(1), &cur, &exp) == kv::Status::kOk;
    if (byte >= kv.max_value_bytes()) return kv::Status::kTooLarge;
    old = byte < cur.size() ? (static_cast<unsigned char>(cur[byte]) >> shift) & 1 : 0;
    if (found && byte < cur.size() && old == on) return kv::Status::kOk;  // nothing changes
    nv.assign(found ? cur : std::string_view());
    if (nv.size() <= byte) nv.resize(byte + 1, '\0');
    unsigned char b = static_cast<unsigned char>(nv[byte]);
    b = static_cast<unsigned char>((b & ~(1u << shift)) | (static_cast<unsigned>(on) << shift));
    nv[byte] = static_cast<char>(b);
    return kv.Put(c.arg(1), nv, found ? exp : -1);
  });
  if (st == kv::Status::kOk) return c.out.Integer(old);
  ReplyWriteError(c, st, c.arg(1));
}

void CmdGetbit(CommandCtx& c) {
  uint64_t offset;
  if (!ParseBitOffset(c, c.arg(2), false, 0, &offset)) return;
  std::string& v = ValueBuf();
  if (c.env.store->Get(c.arg(1), c.now_ms, &v) != kv::Status::kOk) return c.out.Integer(0);
  const uint64_t byte = offset >> 3;
  if (byte >= v.size()) return c.out.Integer(0);
  c.out.Integer((static_cast<unsigned char>(v[byte]) >> (7 - (offset & 7))) & 1);
}

// BITCOUNT's and BITPOS' range (bitops.c): negative indexes count from the
// end, both are clamped to the value; in BIT units the range becomes the
// bytes that hold it plus masks of the edge bytes' bits outside it.
void NormalizeBitRange(int64_t totlen, bool isbit, int64_t* start, int64_t* end,
                       unsigned* first_neg, unsigned* last_neg) {
  if (isbit) totlen <<= 3;
  if (*start < 0) *start += totlen;
  if (*end < 0) *end += totlen;
  if (*start < 0) *start = 0;
  if (*end < 0) *end = 0;
  if (*end >= totlen) *end = totlen - 1;
  if (isbit && *start <= *end) {
    *first_neg = ~((1u << (8 - (*start & 7))) - 1) & 0xff;
    *last_neg = (1u << (7 - (*end & 7))) - 1;
    *start >>= 3;
    *end >>= 3;
  }
}

// bitops.c bitcountCommand (7.0: the key is looked up before the range is parsed).
void CmdBitcount(CommandCtx& c) {
  std::string& v = ValueBuf();
  if (c.env.store->Get(c.arg(1), c.now_ms, &v) != kv::Status::kOk) return c.out.Integer(0);
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  int64_t start, end, totlen = static_cast<int64_t>(v.size());
  unsigned first_neg = 0, last_neg = 0;
  if (c.argc() == 4 || c.argc() == 5) {
    if (!ParseInt64(c.arg(2), &start) || !ParseInt64(c.arg(3), &end)) return ReplyNotInteger(c);
    bool isbit = false;
    if (c.argc() == 5) {
      if (EqualsNoCase(c.arg(4), "bit"))
        isbit = true;
      else if (!EqualsNoCase(c.arg(4), "byte"))
        return ReplySyntax(c);
    }
    if (start < 0 && end < 0 && start > end) return c.out.Integer(0);
    NormalizeBitRange(totlen, isbit, &start, &end, &first_neg, &last_neg);
  } else if (c.argc() == 2) {
    start = 0;
    end = totlen - 1;
  } else {
    return ReplySyntax(c);
  }
  if (start > end) return c.out.Integer(0);
  uint64_t count = Popcount(p + start, static_cast<size_t>(end - start + 1));
  if (first_neg) count -= static_cast<uint64_t>(std::popcount(p[start] & first_neg));
  if (last_neg) count -= static_cast<uint64_t>(std::popcount(p[end] & last_neg));
  c.out.Integer(static_cast<int64_t>(count));
}

// bitops.c bitposCommand.
void CmdBitpos(CommandCtx& c) {
  int64_t bit;
  if (!ParseInt64(c.arg(2), &bit)) return ReplyNotInteger(c);
  if (bit != 0 && bit != 1) return c.out.Error(ErrCode::kErr, errtext::kBitArg);
  std::string& v = ValueBuf();
  if (c.env.store->Get(c.arg(1), c.now_ms, &v) != kv::Status::kOk)
    return c.out.Integer(bit ? -1 : 0);  // a missing key is an infinite run of 0s
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  int64_t start, end;
  bool end_given = false;
  unsigned first_neg = 0, last_neg = 0;
  if (c.argc() >= 4 && c.argc() <= 6) {
    int64_t totlen = static_cast<int64_t>(v.size());
    if (!ParseInt64(c.arg(3), &start)) return ReplyNotInteger(c);
    bool isbit = false;
    if (c.argc() == 6) {
      if (EqualsNoCase(c.arg(5), "bit"))
        isbit = true;
      else if (!EqualsNoCase(c.arg(5), "byte"))
        return ReplySyntax(c);
    }
    if (c.argc() >= 5) {
      if (!ParseInt64(c.arg(4), &end)) return ReplyNotInteger(c);
      end_given = true;
    } else {
      end = totlen - 1;
    }
    NormalizeBitRange(totlen, isbit, &start, &end, &first_neg, &last_neg);
  } else if (c.argc() == 3) {
    start = 0;
    end = static_cast<int64_t>(v.size()) - 1;
  } else {
    return ReplySyntax(c);
  }
  if (start > end) return c.out.Integer(-1);  // an empty range holds neither bit
  int64_t bytes = end - start + 1;
  int64_t pos;
  unsigned char tmp;
  [&] {
    if (first_neg) {
      tmp = static_cast<unsigned char>(bit ? (p[start] & ~first_neg) : (p[start] | first_neg));
      if (last_neg && bytes == 1)
        tmp = static_cast<unsigned char>(bit ? (tmp & ~last_neg) : (tmp | last_neg));
      pos = Bitpos(&tmp, 1, static_cast<int>(bit));
      if (bytes == 1 || (pos != -1 && pos != 8)) return;
      start++;
      bytes--;
    }
    const int64_t curbytes = bytes - (last_neg ? 1 : 0);
    if (curbytes > 0) {
      pos = Bitpos(p + start, static_cast<size_t>(curbytes), static_cast<int>(bit));
      if (bytes == curbytes || (pos != -1 && pos != curbytes << 3)) return;
      start += curbytes;
      bytes -= curbytes;
    }
    tmp = static_cast<unsigned char>(bit ? (p[end] & ~last_neg) : (p[end] | last_neg));
    pos = Bitpos(&tmp, 1, static_cast<int>(bit));
  }();
  // Looking for a 0 in an explicit range: the bits right of it are not zeros.
  if (end_given && bit == 0 && pos == bytes << 3) return c.out.Integer(-1);
  if (pos != -1) pos += start << 3;
  c.out.Integer(pos);
}

// bitops.c bitopCommand: BITOP AND|OR|XOR|NOT destkey srckey [srckey ...].
void CmdBitop(CommandCtx& c) {
  enum Op { kAnd, kOr, kXor, kNot } op;
  std::string_view name = c.arg(1);
  if (EqualsNoCase(name, "and"))
    op = kAnd;
  else if (EqualsNoCase(name, "or"))
    op = kOr;
  else if (EqualsNoCase(name, "xor"))
    op = kXor;
  else if (EqualsNoCase(name, "not"))
    op = kNot;
  else
    return ReplySyntax(c);
  if (op == kNot && c.argc() != 4) return c.out.Error(ErrCode::kErr, errtext::kBitopNot);
  std::string_view dest = c.arg(2);
  auto keys = c.argv.subspan(2);  // dest and the sources
  std::string& out = ValueBuf();
  std::vector<std::string_view> src(c.argc() - 3);
  // Every shard of the keys stays locked while the result is computed: the
  // bytes it reads (sources x the longest) may not pass limits.max_reply_bytes.
  const uint64_t budget = MaxReplyBytes(c);
  bool too_much = false;
  kv::Status st = c.env.store->WithKeys(keys, c.now_ms, [&](kv::KeyView& kv) {
    size_t maxlen = 0;
    for (size_t i = 0; i < src.size(); ++i) {
      if (kv.Get(c.arg(3 + i), &src[i]) != kv::Status::kOk) src[i] = {};
      maxlen = std::max(maxlen, src[i].size());
    }
    if (uint64_t{maxlen} * src.size() > budget) {
      too_much = true;
      return kv::Status::kNotDone;
    }
    if (maxlen == 0) {
      kv.Del(dest);
      out.clear();
      return kv::Status::kOk;
    }
    out.assign(maxlen, '\0');
    for (size_t j = 0; j < maxlen; ++j) {
      auto at = [&](size_t i) {
        return j < src[i].size() ? static_cast<unsigned char>(src[i][j]) : 0u;
      };
      unsigned o = at(0);
      if (op == kNot) o = ~o;
      for (size_t i = 1; i < src.size(); ++i) {
        if (op == kAnd) o &= at(i);
        if (op == kOr) o |= at(i);
        if (op == kXor) o ^= at(i);
      }
      out[j] = static_cast<char>(o & 0xff);
    }
    return kv.Put(dest, out, -1);  // the result has no TTL (setKey)
  });
  if (too_much) return ReplyRequestTooLarge(c, "BITOP", "read", budget);
  if (st == kv::Status::kOk) return c.out.Integer(static_cast<int64_t>(out.size()));
  ReplyWriteError(c, st, dest);
}

// ---------------------------------------------------------------------------
// BITFIELD (bitops.c bitfieldGeneric)

namespace {

enum class BfOp : uint8_t { kGet, kSet, kIncrBy };
enum class BfOverflow : uint8_t { kWrap, kSat, kFail };
struct BfCmd {
  BfOp op;
  BfOverflow ow;
  bool sign;
  uint64_t bits, offset;
  int64_t value;
};

uint64_t GetUnsignedBits(const unsigned char* p, uint64_t offset, uint64_t bits) {
  uint64_t v = 0;
  for (uint64_t j = 0; j < bits; ++j, ++offset)
    v = (v << 1) | ((p[offset >> 3] >> (7 - (offset & 7))) & 1);
  return v;
}
int64_t GetSignedBits(const unsigned char* p, uint64_t offset, uint64_t bits) {
  uint64_t u = GetUnsignedBits(p, offset, bits);
  if (bits < 64 && (u & (uint64_t{1} << (bits - 1)))) u |= ~uint64_t{0} << bits;
  return static_cast<int64_t>(u);
}
void SetBits(unsigned char* p, uint64_t offset, uint64_t bits, uint64_t v) {
  for (uint64_t j = 0; j < bits; ++j, ++offset) {
    const unsigned bitval = (v >> (bits - 1 - j)) & 1;
    const unsigned shift = 7 - (offset & 7);
    p[offset >> 3] =
        static_cast<unsigned char>((p[offset >> 3] & ~(1u << shift)) | (bitval << shift));
  }
}

// checkUnsignedBitfieldOverflow: 0 none, 1 over, -1 under; *limit the
// wrapped or saturated value.
int UnsignedOverflow(uint64_t value, int64_t incr, uint64_t bits, BfOverflow ow, uint64_t* limit) {
  const uint64_t max = bits == 64 ? UINT64_MAX : (uint64_t{1} << bits) - 1;
  const int64_t maxincr = static_cast<int64_t>(max - value);
  const int64_t minincr = static_cast<int64_t>(uint64_t{0} - value);
  auto wrap = [&] { *limit = (value + static_cast<uint64_t>(incr)) & ~(~uint64_t{0} << bits); };
  if (value > max || (incr > 0 && incr > maxincr)) {
    if (ow == BfOverflow::kWrap) wrap();
    if (ow == BfOverflow::kSat) *limit = max;
    return 1;
  }
  if (incr < 0 && incr < minincr) {
    if (ow == BfOverflow::kWrap) {
      wrap();
      return 1;
    }
    if (ow == BfOverflow::kSat) *limit = 0;
    return -1;
  }
  return 0;
}

// checkSignedBitfieldOverflow.
int SignedOverflow(int64_t value, int64_t incr, uint64_t bits, BfOverflow ow, int64_t* limit) {
  const int64_t max = bits == 64 ? INT64_MAX : (int64_t{1} << (bits - 1)) - 1;
  const int64_t min = -max - 1;
  // As Redis, the differences are used only once `value` is in range.
  const int64_t maxincr =
      static_cast<int64_t>(static_cast<uint64_t>(max) - static_cast<uint64_t>(value));
  const int64_t minincr =
      static_cast<int64_t>(static_cast<uint64_t>(min) - static_cast<uint64_t>(value));
  auto wrap = [&] {
    uint64_t r = static_cast<uint64_t>(value) + static_cast<uint64_t>(incr);
    if (bits < 64) {
      const uint64_t mask = ~uint64_t{0} << bits;
      r = (r & (uint64_t{1} << (bits - 1))) ? (r | mask) : (r & ~mask);
    }
    *limit = static_cast<int64_t>(r);
  };
  if (value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr)) {
    if (ow == BfOverflow::kWrap) wrap();
    if (ow == BfOverflow::kSat) *limit = max;
    return 1;
  }
  if (value < min || (bits != 64 && incr < minincr) || (value < 0 && incr < 0 && incr < minincr)) {
    if (ow == BfOverflow::kWrap) {
      wrap();
      return 1;
    }
    if (ow == BfOverflow::kSat) *limit = min;
    return -1;
  }
  return 0;
}

// bitops.c getBitfieldTypeFromArgument: i1..i64, u1..u63.
bool ParseBitfieldType(CommandCtx& c, std::string_view t, bool* sign, uint64_t* bits) {
  int64_t n;
  const bool ok = !t.empty() && (t[0] == 'i' || t[0] == 'I' || t[0] == 'u' || t[0] == 'U') &&
                  ParseInt64(t.substr(1), &n) && n >= 1 &&
                  n <= ((t[0] == 'i' || t[0] == 'I') ? 64 : 63);
  if (!ok) {
    c.out.Error(ErrCode::kErr, errtext::kBitfieldType);
    return false;
  }
  *sign = t[0] == 'i' || t[0] == 'I';
  *bits = static_cast<uint64_t>(n);
  return true;
}

void BitfieldGeneric(CommandCtx& c, bool readonly_cmd) {
  std::vector<BfCmd> ops;
  BfOverflow ow = BfOverflow::kWrap;
  bool readonly = true;
  uint64_t highest_write = 0;
  for (size_t j = 2; j < c.argc(); ++j) {
    const size_t rem = c.argc() - j - 1;
    std::string_view sub = c.arg(j);
    BfOp op;
    if (EqualsNoCase(sub, "get") && rem >= 2) {
      op = BfOp::kGet;
    } else if (EqualsNoCase(sub, "set") && rem >= 3) {
      op = BfOp::kSet;
    } else if (EqualsNoCase(sub, "incrby") && rem >= 3) {
      op = BfOp::kIncrBy;
    } else if (EqualsNoCase(sub, "overflow") && rem >= 1) {
      std::string_view t = c.arg(++j);
      if (EqualsNoCase(t, "wrap"))
        ow = BfOverflow::kWrap;
      else if (EqualsNoCase(t, "sat"))
        ow = BfOverflow::kSat;
      else if (EqualsNoCase(t, "fail"))
        ow = BfOverflow::kFail;
      else
        return c.out.Error(ErrCode::kErr, errtext::kBitfieldOverflow);
      continue;
    } else {
      return ReplySyntax(c);
    }
    BfCmd cmd{op, ow, false, 0, 0, 0};
    if (!ParseBitfieldType(c, c.arg(j + 1), &cmd.sign, &cmd.bits)) return;
    if (!ParseBitOffset(c, c.arg(j + 2), true, cmd.bits, &cmd.offset)) return;
    if (op != BfOp::kGet) {
      readonly = false;
      highest_write = std::max(highest_write, cmd.offset + cmd.bits - 1);
      if (!ParseInt64(c.arg(j + 3), &cmd.value)) return ReplyNotInteger(c);
    }
    ops.push_back(cmd);
    j += op == BfOp::kGet ? 2 : 3;
  }
  if (!readonly && readonly_cmd) return c.out.Error(ErrCode::kErr, errtext::kBitfieldRo);
  std::vector<std::optional<int64_t>> results(ops.size());
  std::string& v = ValueBuf();
  auto get_op = [&](const BfCmd& op, std::string_view src) -> int64_t {
    // Up to 9 bytes from the offset's byte, zero-padded past the value.
    unsigned char buf[9] = {};
    const uint64_t byte = op.offset >> 3;
    for (uint64_t i = 0; i < 9 && byte + i < src.size(); ++i)
      buf[i] = static_cast<unsigned char>(src[byte + i]);
    if (op.sign) return GetSignedBits(buf, op.offset - byte * 8, op.bits);
    return static_cast<int64_t>(GetUnsignedBits(buf, op.offset - byte * 8, op.bits));
  };
  if (readonly) {
    if (c.env.store->Get(c.arg(1), c.now_ms, &v) != kv::Status::kOk) v.clear();
    for (size_t i = 0; i < ops.size(); ++i) results[i] = get_op(ops[i], v);
  } else {
    kv::Status st = WithKey(c, c.arg(1), [&](kv::KeyView& kv) {
      std::string_view cur;
      int64_t exp = -1;
      const bool found = kv.Get(c.arg(1), &cur, &exp) == kv::Status::kOk;
      const uint64_t need = (highest_write >> 3) + 1;
      if (need > kv.max_value_bytes()) return kv::Status::kTooLarge;
      v.assign(found ? cur : std::string_view());
      if (v.size() < need) v.resize(need, '\0');  // Redis pads even if every write fails
      auto* p = reinterpret_cast<unsigned char*>(v.data());
      for (size_t i = 0; i < ops.size(); ++i) {
        const BfCmd& op = ops[i];
        if (op.op == BfOp::kGet) {
          results[i] = get_op(op, v);
          continue;
        }
        int overflow;
        if (op.sign) {
          const int64_t oldval = GetSignedBits(p, op.offset, op.bits);
          int64_t wrapped = 0, newval, retval;
          if (op.op == BfOp::kIncrBy) {
            overflow = SignedOverflow(oldval, op.value, op.bits, op.ow, &wrapped);
            newval = overflow ? wrapped
                              : static_cast<int64_t>(static_cast<uint64_t>(oldval) +
                                                     static_cast<uint64_t>(op.value));
            retval = newval;
          } else {
            newval = op.value;
            overflow = SignedOverflow(newval, 0, op.bits, op.ow, &wrapped);
            if (overflow) newval = wrapped;
            retval = oldval;
          }
          if (!(overflow && op.ow == BfOverflow::kFail)) {
            results[i] = retval;
            SetBits(p, op.offset, op.bits, static_cast<uint64_t>(newval));
          }
        } else {
          const uint64_t oldval = GetUnsignedBits(p, op.offset, op.bits);
          uint64_t wrapped = 0, newval, retval;
          if (op.op == BfOp::kIncrBy) {
            overflow = UnsignedOverflow(oldval, op.value, op.bits, op.ow, &wrapped);
            newval = overflow ? wrapped : oldval + static_cast<uint64_t>(op.value);
            retval = newval;
          } else {
            newval = static_cast<uint64_t>(op.value);
            overflow = UnsignedOverflow(newval, 0, op.bits, op.ow, &wrapped);
            if (overflow) newval = wrapped;
            retval = oldval;
          }
          if (!(overflow && op.ow == BfOverflow::kFail)) {
            results[i] = static_cast<int64_t>(retval);
            SetBits(p, op.offset, op.bits, newval);
          }
        }
      }
      return kv.Put(c.arg(1), v, found ? exp : -1);
    });
    if (st != kv::Status::kOk) return ReplyWriteError(c, st, c.arg(1));
  }
  c.out.ArrayBegin(results.size());
  for (const auto& r : results) {
    if (r)
      c.out.Integer(*r);
    else
      c.out.Nil();
  }
}

}  // namespace

void CmdBitfield(CommandCtx& c) { BitfieldGeneric(c, false); }
void CmdBitfieldRo(CommandCtx& c) { BitfieldGeneric(c, true); }

}  // namespace pf
