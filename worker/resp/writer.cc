// worker/resp/writer.cc: integer formatting for RESP headers (":", "$", "*"),
// shared by every RespWriter instantiation.
#include "worker/resp/writer.h"

namespace pf {

size_t FormatRespHeader(char prefix, int64_t v, char* out) {
  char tmp[24];
  size_t n = 0;
  // Work on the magnitude as unsigned so INT64_MIN does not overflow.
  uint64_t u = v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  do {
    tmp[n++] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u != 0);
  size_t len = 0;
  out[len++] = prefix;
  if (v < 0) out[len++] = '-';
  while (n > 0) out[len++] = tmp[--n];
  out[len++] = '\r';
  out[len++] = '\n';
  return len;
}

}  // namespace pf
