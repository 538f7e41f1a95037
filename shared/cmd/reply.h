// shared/cmd/reply.h: the protocol-neutral sink a command writes its reply into.
// RESP renders it as RESP2 or RESP3 (HELLO), kv-json as a JSON value, HTTP /kv as a body; the
// command table never knows which (see shared/cmd/commands.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pf {

// Stable error classes. RESP shows the Redis text; kv-json shows the code
// name from ErrCodeName() (the wire contract documented in docs/).
enum class ErrCode : uint8_t {
  kErr,             // generic (ERR ...)                        -> BAD_REQUEST
  kSyntax,          // ERR syntax error                          -> BAD_REQUEST
  kWrongArity,      // ERR wrong number of arguments for '%s'    -> BAD_REQUEST
  kUnknownCommand,  // ERR unknown command '%s', with args ...   -> UNKNOWN_ACTION
  kNotInteger,      // ERR value is not an integer or out of range -> NOT_INTEGER
  kOverflow,        // ERR increment or decrement would overflow -> NOT_INTEGER
  kTooLarge,        // ERR key/value too large                   -> TOO_LARGE
  kOom,             // OOM command not allowed when used memory > 'maxmemory'. -> OOM
  kNoAuth,          // NOAUTH Authentication required.           -> NOAUTH
  kWrongPass,       // WRONGPASS invalid username-password pair ... -> WRONGPASS
  kNotFound,        // (kv-json/HTTP only: a GET of a missing key) -> NOT_FOUND
  kProtocol,        // ERR Protocol error: ...                   -> BAD_REQUEST
  kBadJson,         // kv-json: the line is not JSON             -> BAD_JSON
  kLineTooLong,     // kv-json: the line is over the limit       -> LINE_TOO_LONG
  kInternal,        // an engine invariant failed; logged        -> INTERNAL
  kMisconf,         // MISCONF: the append-only log fails; writes refused -> MISCONF
  kRateLimited,     // ERR rate limited (limit_req)                -> RATE_LIMITED
};

const char* ErrCodeName(ErrCode c);  // "BAD_REQUEST", "NOT_INTEGER", ...

// A double as Redis 7.0's addReplyDouble prints it ("%.17g"; "inf", "-inf")
// into out (>= kMaxDoubleChars bytes); returns the length.
inline constexpr size_t kMaxDoubleChars = 32;
size_t FormatRedisDouble(double d, char* out);

class ReplyWriter {
 public:
  virtual ~ReplyWriter() = default;
  virtual void Status(std::string_view s) = 0;  // +OK
  virtual void Error(ErrCode code,
                     std::string_view redis_text) = 0;  // -ERR ... (full text, no CRLF)
  virtual void Integer(int64_t v) = 0;                  // :1
  virtual void Bulk(std::string_view v) = 0;            // $3 foo
  virtual void Nil() = 0;                               // $-1
  virtual void NilArray() = 0;                          // *-1
  virtual void ArrayBegin(size_t n) = 0;                // *n, then n values
  // RESP3 types. The defaults render them as RESP2 does (Redis' networking.c
  // addReplyMapLen & co. for c->resp == 2), so a writer with no RESP3 form
  // (HTTP /kv) needs nothing; RespWriter in RESP3 and kv-json override them.
  virtual void MapBegin(size_t n) { ArrayBegin(2 * n); }  // %n, then n key-value pairs
  virtual void SetBegin(size_t n) { ArrayBegin(n); }      // ~n, then n values
  virtual void PushBegin(size_t n) { ArrayBegin(n); }     // >n: out-of-band (pub/sub)
  virtual void Double(double d);                          // ,1.5 (RESP2: bulk "1.5")
  virtual void Bool(bool b) { Integer(b ? 1 : 0); }       // #t / #f (RESP2: :1 / :0)
  // A bulk whose bytes the writer may take (swap) instead of copying; the
  // caller's string holds anything afterwards. HTTP /kv GET answers a value
  // with one copy (from the store) instead of two.
  virtual void BulkTake(std::string* v) { Bulk(*v); }
};

}  // namespace pf
