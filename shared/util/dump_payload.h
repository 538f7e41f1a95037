// shared/util/dump_payload.h: Redis' serialized form of a value as DUMP
// writes it and RESTORE reads it (cluster.c createDumpPayload and
// verifyDumpPayload, rdb.c's string encodings), for strings, byte for byte
// as Redis 7.0: RDB type byte, the string, RDB version (2 bytes LE), CRC64.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pf::dump {

// Redis 7.0's RDB_VERSION: what Serialize writes and the newest Parse takes
// (Redis 7.0 refuses newer payloads, from 7.2 on, with the same error).
inline constexpr uint16_t kRdbVersion = 10;
// The footer: RDB version (2 bytes) and CRC64 (8 bytes), both little-endian.
inline constexpr size_t kFooterBytes = 10;

// Redis' crc64 (the "Jones" polynomial, reflected, init 0, no final xor;
// "123456789" gives 0xe9c6d914c4b8d9ca), continuing from `crc`.
uint64_t Crc64(uint64_t crc, std::string_view data);

// *out = DUMP's reply for a string holding `value`, as Redis 7.0 with
// rdbcompression on (its default) writes it: an integer encoding for a
// canonical decimal in int32 range, LZF (liblzf, the same algorithm and
// output as Redis' copy) for a value over 20 bytes that shrinks by at least
// 4 bytes, else the length-prefixed bytes.
void Serialize(std::string_view value, std::string* out);

enum class ParseResult : uint8_t {
  kOk,
  kBadFooter,  // shorter than the footer, RDB version above kRdbVersion, or a wrong CRC64
  kBadFormat,  // the body is not one string (or other object) in RDB encoding
  kNotString,  // a valid payload of another type: *rdb_type says which (TypeName)
  kTooLarge,   // the string is longer than max_value_bytes (LZF: its stated length)
};

// Reads a RESTORE payload. kOk: *value is the string, a view into `payload`
// (raw encoding) or into *scratch (integer and LZF encodings). Nothing is
// allocated for a length the payload states before it is checked: an LZF
// string's decompressed length against max_value_bytes, every length against
// the bytes that remain. The body must end where the footer starts (Redis
// ignores bytes after the object, and would read an object's bytes out of
// the footer; a payload DUMP wrote never does either).
ParseResult Parse(std::string_view payload, size_t max_value_bytes, std::string* scratch,
                  std::string_view* value, uint8_t* rdb_type);

// The kind of value an RDB 10 object type byte holds ("hash", "list", "set",
// "zset", "stream", "module", "string"), nullptr for a byte that is no
// object type of RDB 10.
const char* TypeName(uint8_t rdb_type);

}  // namespace pf::dump
