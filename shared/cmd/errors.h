// shared/cmd/errors.h: the error texts of the command table, worded as
// Redis 7.0 words them (clients match on them). RESP shows them after '-';
// kv-json and HTTP show ErrCodeName() and the text. Fixed texts are
// constants; the formatted ones are built by the helpers in internal.h from
// the templates noted here.
#pragma once

#include <cstddef>
#include <string_view>

namespace pf {

namespace errtext {
inline constexpr std::string_view kSyntax = "ERR syntax error";
inline constexpr std::string_view kNotInteger = "ERR value is not an integer or out of range";
inline constexpr std::string_view kOverflow = "ERR increment or decrement would overflow";
inline constexpr std::string_view kDecrOverflow = "ERR decrement would overflow";
inline constexpr std::string_view kOom = "OOM command not allowed when used memory > 'maxmemory'.";
inline constexpr std::string_view kNoAuth = "NOAUTH Authentication required.";
inline constexpr std::string_view kWrongPass =
    "WRONGPASS invalid username-password pair or user is disabled.";
inline constexpr std::string_view kAuthNoPassword =
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?";
inline constexpr std::string_view kHelloNoAuth =
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    "HELLO AUTH <user> <pass> option can be used to authenticate the client and select "
    "the RESP protocol version at the same time";
inline constexpr std::string_view kAuthThrottled =
    "ERR too many failed authentication attempts from your address: try again in a minute";
inline constexpr std::string_view kNoProto = "NOPROTO unsupported protocol version";
inline constexpr std::string_view kHelloProtoNotInt =
    "ERR Protocol version is not an integer or out of range";
inline constexpr std::string_view kDbIndex = "ERR DB index is out of range";
inline constexpr std::string_view kInvalidCursor = "ERR invalid cursor";
inline constexpr std::string_view kClientName =
    "ERR Client names cannot contain spaces, newlines or special characters.";
// CLIENT SETNAME / HELLO SETNAME / CLIENT SETINFO values are kept for the
// connection's life: capped at kMaxClientNameBytes (below).
inline constexpr std::string_view kClientNameTooLong =
    "ERR Client names cannot be longer than 512 bytes.";
inline constexpr std::string_view kKeysTooExpensive = "ERR KEYS pattern too expensive; use SCAN";
inline constexpr std::string_view kExpireNxConflict =
    "ERR NX and XX, GT or LT options at the same time are not compatible";
inline constexpr std::string_view kExpireGtLtConflict =
    "ERR GT and LT options at the same time are not compatible";
inline constexpr std::string_view kKeyTooLarge = "ERR key is larger than max-key-bytes";
inline constexpr std::string_view kValueTooLarge = "ERR value is larger than max-value-bytes";
inline constexpr std::string_view kConfigSet =
    "ERR CONFIG SET is not supported: edit the config file and reload (SIGHUP)";
inline constexpr std::string_view kInternal = "ERR internal error";
// Templates (printf-like, %s is the argument as given, CR/LF mapped to spaces):
//   "ERR wrong number of arguments for '%s' command"      (table name, e.g. 'get',
//   'client|setname') "ERR unknown command '%.128s', with args beginning with: " + "'%s' " per arg,
//   128 bytes in all "ERR unknown subcommand '%.128s'. Try %s HELP."        (%s 2 = container name
//   upper-cased) "ERR invalid expire time in '%s' command" "ERR Unsupported option %s" (EXPIRE
//   family) "ERR Syntax error in HELLO option '%s'" "ERR %s cannot be longer than 512 bytes."
//   (CLIENT SETINFO: lib-name, lib-ver) "ERR reply too large: %s would return more than %llu bytes
//   (limits.max_reply_bytes)"
//                                                         (MGET; KEYS adds "; use SCAN")
//   "ERR request too large: MSET would write more than %llu bytes (limits.max_reply_bytes)"
//                                                         (MSETNX alike; BITOP "would read")
// String, keyspace and bit commands (t_string.c, db.c, bitops.c). A value
// may not grow past kv.max_value_bytes (Redis: proto-max-bulk-len).
inline constexpr std::string_view kStringTooLarge =
    "ERR string exceeds maximum allowed size (kv.max_value_bytes)";
inline constexpr std::string_view kNotFloat = "ERR value is not a valid float";
inline constexpr std::string_view kFloatNanInf = "ERR increment would produce NaN or Infinity";
inline constexpr std::string_view kOffsetRange = "ERR offset is out of range";
inline constexpr std::string_view kNoSuchKey = "ERR no such key";
inline constexpr std::string_view kSameObject = "ERR source and destination objects are the same";
inline constexpr std::string_view kFirstDbIndex = "ERR invalid first DB index";
inline constexpr std::string_view kSecondDbIndex = "ERR invalid second DB index";
inline constexpr std::string_view kBitOffset = "ERR bit offset is not an integer or out of range";
inline constexpr std::string_view kBitValue = "ERR bit is not an integer or out of range";
inline constexpr std::string_view kBitArg = "ERR The bit argument must be 1 or 0.";
inline constexpr std::string_view kBitopNot =
    "ERR BITOP NOT must be called with a single source key.";
inline constexpr std::string_view kBitfieldType =
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 "
    "is.";
inline constexpr std::string_view kBitfieldOverflow = "ERR Invalid OVERFLOW type specified";
inline constexpr std::string_view kBitfieldRo = "ERR BITFIELD_RO only supports the GET subcommand";
inline constexpr std::string_view kLcsLenAndIdx =
    "ERR If you want both the length and indexes, please just use IDX.";
inline constexpr std::string_view kLcsMemory =
    "ERR Insufficient memory, transient memory for LCS exceeds limits.max_reply_bytes";
inline constexpr std::string_view kNoLfu =
    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note "
    "that when switching between policies at runtime LRU and LFU data will take some time to "
    "adjust.";
inline constexpr std::string_view kPubSubUnavailable = "ERR pub/sub is not available";
// DUMP/RESTORE (cluster.c restoreCommand)
inline constexpr std::string_view kBusyKey = "BUSYKEY Target key name already exists.";
inline constexpr std::string_view kDumpPayload = "ERR DUMP payload version or checksum are wrong";
inline constexpr std::string_view kBadDataFormat = "ERR Bad data format";
inline constexpr std::string_view kInvalidTtl = "ERR Invalid TTL value, must be >= 0";
inline constexpr std::string_view kInvalidIdletime = "ERR Invalid IDLETIME value, must be >= 0";
inline constexpr std::string_view kInvalidFreq = "ERR Invalid FREQ value, must be >= 0 and <= 255";
// Template (preforkd's, for a valid payload of another type):
//   "ERR DUMP payload holds a %s (RDB type %u); preforkd stores strings only"
// MULTI/EXEC (multi.c)
inline constexpr std::string_view kMultiNested = "ERR MULTI calls can not be nested";
inline constexpr std::string_view kExecWithoutMulti = "ERR EXEC without MULTI";
inline constexpr std::string_view kDiscardWithoutMulti = "ERR DISCARD without MULTI";
inline constexpr std::string_view kWatchInMulti = "ERR WATCH inside MULTI is not allowed";
inline constexpr std::string_view kExecAbort =
    "EXECABORT Transaction discarded because of previous errors.";
inline constexpr std::string_view kNotInMulti = "ERR Command not allowed inside a transaction";
// Templates (continued):
//   "ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are
//    allowed in this context"                            (a RESP2 connection with subscriptions)
//   "MISCONF Errors writing to the append-only log: %s. Writes are refused until it is fixed
//    (see INFO persistence)"
}  // namespace errtext

// Longest CLIENT SETNAME / HELLO SETNAME name and CLIENT SETINFO value.
inline constexpr size_t kMaxClientNameBytes = 512;

}  // namespace pf
