// shared/util/line_framer.cc: line framing with a length limit (line_framer.h).
#include "shared/util/line_framer.h"

#include <cstring>

namespace pf {

LineFramer::Result LineFramer::Next(const char* data, size_t len) {
  Result r;
  size_t start = 0;
  if (skipping_) {
    const void* nl = std::memchr(data, '\n', len);
    if (nl == nullptr) {
      r.consumed = len;  // drop the middle of the long line as it comes
      return r;
    }
    skipping_ = false;
    start = static_cast<size_t>(static_cast<const char*>(nl) - data) + 1;
    scanned_ = 0;
  }
  const char* p = data + start;
  size_t n = len - start;
  const void* found = scanned_ < n ? std::memchr(p + scanned_, '\n', n - scanned_) : nullptr;
  if (found == nullptr) {
    // Too long once the content (the line without "\r\n") is over the limit;
    // a trailing '\r' may still be part of the terminator.
    size_t content = (n > 0 && p[n - 1] == '\r') ? n - 1 : n;
    if (content > max_) {
      skipping_ = true;
      scanned_ = 0;
      r.kind = Result::kTooLong;
      r.consumed = len;
      return r;
    }
    scanned_ = n;
    r.consumed = start;
    return r;
  }
  size_t k = static_cast<size_t>(static_cast<const char*>(found) - p);
  size_t content = (k > 0 && p[k - 1] == '\r') ? k - 1 : k;
  scanned_ = 0;
  r.consumed = start + k + 1;
  if (content > max_) {
    r.kind = Result::kTooLong;
    return r;
  }
  r.kind = Result::kLine;
  r.line = std::string_view(p, content);
  return r;
}

}  // namespace pf
