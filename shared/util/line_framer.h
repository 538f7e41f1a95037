// shared/util/line_framer.h: the one line framer of the line protocols
// (kv-json, chat): splits a byte stream into lines ("\n" or "\r\n") without
// ever holding more than max_line_bytes of one line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pf {

// A longer line is reported once as kTooLong and its remainder is consumed
// (dropped) as it arrives, across reads. Contract as RespParser: `data`
// starts at the first byte not yet dropped; after each call drop `consumed`
// bytes; on kNeedMore wait for more input.
class LineFramer {
 public:
  explicit LineFramer(size_t max_line_bytes) : max_(max_line_bytes) {}
  struct Result {
    enum Kind : uint8_t { kNeedMore, kLine, kTooLong } kind = kNeedMore;
    size_t consumed = 0;
    std::string_view line;  // kLine: without the terminator; valid until dropped
  };
  Result Next(const char* data, size_t len);
  Result Next(std::string_view s) { return Next(s.data(), s.size()); }

 private:
  size_t max_;
  size_t scanned_ = 0;     // no '\n' in [0, scanned_) of the pending line
  bool skipping_ = false;  // inside a too-long line, dropping until its '\n'
};

}  // namespace pf
