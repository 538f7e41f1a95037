// shared/cmd/reply.cc: the wire names of ErrCode, as kv-json and HTTP /kv show them
// (a stable contract: docs/protocol-kv-json.md lists them), and Redis' double format.
#include "shared/cmd/reply.h"

#include <cmath>
#include <cstdio>

namespace pf {

size_t FormatRedisDouble(double d, char* out) {
  if (std::isinf(d)) {
    const std::string_view s = d > 0 ? "inf" : "-inf";
    s.copy(out, s.size());
    return s.size();
  }
  const int n = std::snprintf(out, kMaxDoubleChars, "%.17g", d);
  return n > 0 ? static_cast<size_t>(n) : 0;
}

void ReplyWriter::Double(double d) {
  char buf[kMaxDoubleChars];
  Bulk(std::string_view(buf, FormatRedisDouble(d, buf)));
}

const char* ErrCodeName(ErrCode c) {
  switch (c) {
    case ErrCode::kErr:
    case ErrCode::kSyntax:
    case ErrCode::kWrongArity:
    case ErrCode::kProtocol:
      return "BAD_REQUEST";
    case ErrCode::kUnknownCommand:
      return "UNKNOWN_ACTION";
    case ErrCode::kNotInteger:
    case ErrCode::kOverflow:
      return "NOT_INTEGER";
    case ErrCode::kTooLarge:
      return "TOO_LARGE";
    case ErrCode::kOom:
      return "OOM";
    case ErrCode::kNoAuth:
      return "NOAUTH";
    case ErrCode::kWrongPass:
      return "WRONGPASS";
    case ErrCode::kNotFound:
      return "NOT_FOUND";
    case ErrCode::kBadJson:
      return "BAD_JSON";
    case ErrCode::kLineTooLong:
      return "LINE_TOO_LONG";
    case ErrCode::kInternal:
      return "INTERNAL";
    case ErrCode::kMisconf:
      return "MISCONF";
    case ErrCode::kRateLimited:
      return "RATE_LIMITED";
  }
  return "INTERNAL";
}

}  // namespace pf
