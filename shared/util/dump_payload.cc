// shared/util/dump_payload.cc: DUMP's serialized form of a string (see the
// header): rdb.c's length and string encodings, cluster.c's footer, and
// crc64.c's polynomial, with LZF from Debian's liblzf.
#include "shared/util/dump_payload.h"

#include <liblzf/lzf.h>

#include <array>
#include <charconv>
#include <climits>
#include <cstring>

namespace pf::dump {
namespace {

// ---------------------------------------------------------------------------
// CRC64, slicing by 8: a DUMP of a 16 MiB value checksums it twice (DUMP on
// one node, RESTORE on the other), where a byte at a time costs ~4 times more.

// 0xad93d23594c935a9 (crc64.c's polynomial), bit-reversed for the LSB-first loop.
constexpr uint64_t kCrc64Poly = 0x95ac9329ac4bc9b5ull;

using Crc64Tables = std::array<std::array<uint64_t, 256>, 8>;

constexpr Crc64Tables MakeCrc64Tables() {
  Crc64Tables t{};
  for (uint32_t n = 0; n < 256; ++n) {
    uint64_t crc = n;
    for (int k = 0; k < 8; ++k) crc = (crc & 1) ? (crc >> 1) ^ kCrc64Poly : crc >> 1;
    t[0][n] = crc;
  }
  for (size_t k = 1; k < 8; ++k)
    for (size_t n = 0; n < 256; ++n) t[k][n] = (t[k - 1][n] >> 8) ^ t[0][t[k - 1][n] & 0xff];
  return t;
}
constexpr Crc64Tables kCrc64Tables = MakeCrc64Tables();

// ---------------------------------------------------------------------------
// rdb.h's encodings.
constexpr uint8_t kRdbTypeString = 0;
constexpr uint8_t kRdb6BitLen = 0, kRdb14BitLen = 1, kRdbEncVal = 3;
constexpr uint8_t kRdb32BitLen = 0x80, kRdb64BitLen = 0x81;
constexpr uint8_t kRdbEncInt8 = 0, kRdbEncInt16 = 1, kRdbEncInt32 = 2, kRdbEncLzf = 3;
// rdbSaveRawString: at most this long, a value may be an integer ("-2147483648").
constexpr size_t kRdbIntMaxChars = 11;
// rdbSaveRawString: LZF is not tried for this many bytes or fewer.
constexpr size_t kRdbLzfMinBytes = 20;
// rdbSaveLzfStringObject: LZF only when it saves at least this many bytes.
constexpr size_t kRdbLzfMinSaving = 4;

// rdbSaveLen.
void AppendRdbLen(uint64_t len, std::string* out) {
  if (len < (1u << 6)) {
    out->push_back(static_cast<char>((kRdb6BitLen << 6) | len));
  } else if (len < (1u << 14)) {
    out->push_back(static_cast<char>((kRdb14BitLen << 6) | (len >> 8)));
    out->push_back(static_cast<char>(len & 0xff));
  } else if (len <= UINT32_MAX) {
    out->push_back(static_cast<char>(kRdb32BitLen));
    for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>(len >> shift));
  } else {
    out->push_back(static_cast<char>(kRdb64BitLen));
    for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(len >> shift));
  }
}

// rdbTryIntegerEncoding: a value that string2ll reads and ll2string writes
// back identically ("12", "-1"; not "012", "+1", "-0"), in int32 range.
bool CanonicalInt32(std::string_view s, int32_t* v) {
  if (s.empty() || s.size() > kRdbIntMaxChars) return false;
  int64_t n = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || end != s.data() + s.size() || n < INT32_MIN || n > INT32_MAX)
    return false;
  char buf[24];
  const auto printed = std::to_chars(buf, buf + sizeof buf, n);
  if (std::string_view(buf, static_cast<size_t>(printed.ptr - buf)) != s) return false;
  *v = static_cast<int32_t>(n);
  return true;
}

// rdbEncodeInteger.
void AppendRdbInt(int32_t v, std::string* out) {
  const uint32_t u = static_cast<uint32_t>(v);
  int bytes = 4;
  uint8_t enc = kRdbEncInt32;
  if (v >= INT8_MIN && v <= INT8_MAX) {
    bytes = 1;
    enc = kRdbEncInt8;
  } else if (v >= INT16_MIN && v <= INT16_MAX) {
    bytes = 2;
    enc = kRdbEncInt16;
  }
  out->push_back(static_cast<char>((kRdbEncVal << 6) | enc));
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((u >> (8 * i)) & 0xff));
}

// rdbSaveLzfStringObject: false when LZF does not save kRdbLzfMinSaving bytes.
bool AppendRdbLzf(std::string_view s, std::string* out) {
  if (s.size() > UINT_MAX) return false;
  std::string packed(s.size() - kRdbLzfMinSaving, '\0');
  const unsigned n = lzf_compress(s.data(), static_cast<unsigned>(s.size()), packed.data(),
                                  static_cast<unsigned>(packed.size()));
  if (n == 0) return false;
  out->push_back(static_cast<char>((kRdbEncVal << 6) | kRdbEncLzf));
  AppendRdbLen(n, out);
  AppendRdbLen(s.size(), out);
  out->append(packed.data(), n);
  return true;
}

// Reads the bytes of one payload body, front to back; every read is checked
// against what remains.
class BodyReader {
 public:
  explicit BodyReader(std::string_view body) : rest_(body) {}
  bool Byte(uint8_t* b) {
    if (rest_.empty()) return false;
    *b = static_cast<uint8_t>(rest_[0]);
    rest_.remove_prefix(1);
    return true;
  }
  bool Bytes(uint64_t n, std::string_view* out) {
    if (n > rest_.size()) return false;
    *out = rest_.substr(0, static_cast<size_t>(n));
    rest_.remove_prefix(static_cast<size_t>(n));
    return true;
  }
  // n bytes as an unsigned integer, big-endian (lengths) or little-endian (integers).
  bool Uint(int n, bool big_endian, uint64_t* v) {
    std::string_view b;
    if (!Bytes(static_cast<uint64_t>(n), &b)) return false;
    *v = 0;
    for (int i = 0; i < n; ++i) {
      const uint64_t byte = static_cast<uint8_t>(b[static_cast<size_t>(i)]);
      *v |= byte << (8 * (big_endian ? n - 1 - i : i));
    }
    return true;
  }
  bool done() const { return rest_.empty(); }

 private:
  std::string_view rest_;
};

// rdbLoadLenByRef. *encoded (when asked for) is true for an encoded string,
// *len then being its encoding. Without `encoded`, Redis reads the encoding
// bits as a length, and so does this (LZF's two lengths).
bool ReadRdbLen(BodyReader& r, uint64_t* len, bool* encoded = nullptr) {
  uint8_t b;
  if (!r.Byte(&b)) return false;
  if (encoded) *encoded = false;
  switch (b >> 6) {
    case kRdb6BitLen:
      *len = b & 0x3f;
      return true;
    case kRdb14BitLen: {
      uint8_t low;
      if (!r.Byte(&low)) return false;
      *len = (static_cast<uint64_t>(b & 0x3f) << 8) | low;
      return true;
    }
    case kRdbEncVal:
      if (encoded) *encoded = true;
      *len = b & 0x3f;
      return true;
    default:
      if (b == kRdb32BitLen) return r.Uint(4, true, len);
      if (b == kRdb64BitLen) return r.Uint(8, true, len);
      return false;  // rdb.c: "Unknown length encoding"
  }
}

void AssignDecimal(int64_t v, std::string* out) {
  char buf[24];
  const auto printed = std::to_chars(buf, buf + sizeof buf, v);
  out->assign(buf, static_cast<size_t>(printed.ptr - buf));
}

// rdbGenericLoadStringObject for a string of at most max_value_bytes.
ParseResult ReadRdbString(BodyReader& r, size_t max_value_bytes, std::string* scratch,
                          std::string_view* value) {
  uint64_t len;
  bool encoded;
  if (!ReadRdbLen(r, &len, &encoded)) return ParseResult::kBadFormat;
  if (!encoded) {
    if (!r.Bytes(len, value)) return ParseResult::kBadFormat;
    return value->size() > max_value_bytes ? ParseResult::kTooLarge : ParseResult::kOk;
  }
  uint64_t u;
  switch (len) {
    case kRdbEncInt8:
      if (!r.Uint(1, false, &u)) return ParseResult::kBadFormat;
      AssignDecimal(static_cast<int8_t>(u), scratch);
      break;
    case kRdbEncInt16:
      if (!r.Uint(2, false, &u)) return ParseResult::kBadFormat;
      AssignDecimal(static_cast<int16_t>(u), scratch);
      break;
    case kRdbEncInt32:
      if (!r.Uint(4, false, &u)) return ParseResult::kBadFormat;
      AssignDecimal(static_cast<int32_t>(u), scratch);
      break;
    case kRdbEncLzf: {
      uint64_t clen, ulen;
      std::string_view packed;
      if (!ReadRdbLen(r, &clen) || !ReadRdbLen(r, &ulen) || !r.Bytes(clen, &packed))
        return ParseResult::kBadFormat;
      // The stated length is checked before anything of that size exists.
      if (ulen > max_value_bytes) return ParseResult::kTooLarge;
      if (ulen > UINT_MAX || clen > UINT_MAX) return ParseResult::kBadFormat;
      scratch->resize(static_cast<size_t>(ulen));
      // As rdbLoadLzfStringObject: the data must decompress to exactly the stated length.
      const unsigned n = lzf_decompress(packed.data(), static_cast<unsigned>(clen), scratch->data(),
                                        static_cast<unsigned>(ulen));
      if (n != ulen) return ParseResult::kBadFormat;
      break;
    }
    default:
      return ParseResult::kBadFormat;  // rdb.c: "Unknown RDB string encoding type"
  }
  *value = *scratch;
  return value->size() > max_value_bytes ? ParseResult::kTooLarge : ParseResult::kOk;
}

}  // namespace

uint64_t Crc64(uint64_t crc, std::string_view data) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  size_t n = data.size();
  const Crc64Tables& t = kCrc64Tables;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t word = 0;
    for (int i = 0; i < 8; ++i) word |= static_cast<uint64_t>(p[i]) << (8 * i);
    crc ^= word;
    crc = t[7][crc & 0xff] ^ t[6][(crc >> 8) & 0xff] ^ t[5][(crc >> 16) & 0xff] ^
          t[4][(crc >> 24) & 0xff] ^ t[3][(crc >> 32) & 0xff] ^ t[2][(crc >> 40) & 0xff] ^
          t[1][(crc >> 48) & 0xff] ^ t[0][crc >> 56];
  }
  for (; n > 0; --n, ++p) crc = t[0][(crc ^ *p) & 0xff] ^ (crc >> 8);
  return crc;
}

void Serialize(std::string_view value, std::string* out) {
  out->clear();
  out->reserve(value.size() + 1 + 9 + kFooterBytes);
  out->push_back(static_cast<char>(kRdbTypeString));
  int32_t n;
  if (CanonicalInt32(value, &n)) {
    AppendRdbInt(n, out);
  } else if (value.size() <= kRdbLzfMinBytes || !AppendRdbLzf(value, out)) {
    AppendRdbLen(value.size(), out);
    out->append(value);
  }
  out->push_back(static_cast<char>(kRdbVersion & 0xff));
  out->push_back(static_cast<char>(kRdbVersion >> 8));
  const uint64_t crc = Crc64(0, *out);
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
}

ParseResult Parse(std::string_view payload, size_t max_value_bytes, std::string* scratch,
                  std::string_view* value, uint8_t* rdb_type) {
  // cluster.c verifyDumpPayload.
  if (payload.size() < kFooterBytes) return ParseResult::kBadFooter;
  const size_t body_len = payload.size() - kFooterBytes;
  const auto* footer = reinterpret_cast<const unsigned char*>(payload.data() + body_len);
  const uint16_t version = static_cast<uint16_t>(footer[0] | (footer[1] << 8));
  if (version > kRdbVersion) return ParseResult::kBadFooter;
  uint64_t stated = 0;
  for (int i = 0; i < 8; ++i) stated |= static_cast<uint64_t>(footer[2 + i]) << (8 * i);
  if (Crc64(0, payload.substr(0, body_len + 2)) != stated) return ParseResult::kBadFooter;

  BodyReader r(payload.substr(0, body_len));
  uint8_t type;
  if (!r.Byte(&type)) return ParseResult::kBadFormat;
  *rdb_type = type;
  if (type != kRdbTypeString)
    return TypeName(type) ? ParseResult::kNotString : ParseResult::kBadFormat;
  const ParseResult res = ReadRdbString(r, max_value_bytes, scratch, value);
  if (res == ParseResult::kOk && !r.done()) return ParseResult::kBadFormat;
  return res;
}

const char* TypeName(uint8_t rdb_type) {
  // rdb.h RDB_TYPE_*: the object types RDB 10 (Redis 7.0) knows (8 is unused).
  switch (rdb_type) {
    case 0:
      return "string";
    case 1:   // LIST
    case 10:  // LIST_ZIPLIST
    case 14:  // LIST_QUICKLIST
    case 18:  // LIST_QUICKLIST_2
      return "list";
    case 2:   // SET
    case 11:  // SET_INTSET
      return "set";
    case 3:   // ZSET
    case 5:   // ZSET_2
    case 12:  // ZSET_ZIPLIST
    case 17:  // ZSET_LISTPACK
      return "zset";
    case 4:   // HASH
    case 9:   // HASH_ZIPMAP
    case 13:  // HASH_ZIPLIST
    case 16:  // HASH_LISTPACK
      return "hash";
    case 6:  // MODULE_PRE_GA
    case 7:  // MODULE_2
      return "module";
    case 15:  // STREAM_LISTPACKS
    case 19:  // STREAM_LISTPACKS_2
      return "stream";
    default:
      return nullptr;
  }
}

}  // namespace pf::dump
