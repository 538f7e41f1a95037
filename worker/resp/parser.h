// worker/resp/parser.h: resumable RESP2 request parser (multibulk and inline),
// modelled on Redis' processMultibulkBuffer / processInlineBuffer, with the
// same error texts. It never owns or copies the input of a multibulk request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shared/config.h"

namespace pf {

struct RespLimits {
  size_t max_line_bytes = 64 * 1024;           // inline line; `*N` / `$N` header lines
  size_t max_bulk_bytes = 4 * 1024 * 1024;     // one `$len`
  size_t max_multibulk_len = 1024 * 1024;      // `*N`
  size_t max_request_bytes = 8 * 1024 * 1024;  // sum of the bulk lengths of one command
  static RespLimits From(const LimitsConf& c) {
    return {c.max_line_bytes, c.max_bulk_bytes, c.max_multibulk_len, c.max_request_bytes};
  }
};

struct RespParseResult {
  enum Kind : uint8_t {
    kNeedMore,  // no complete command yet: wait until `need` bytes are buffered, call again
    kCommand,   // `argv` is one command (argc >= 1)
    kError,     // protocol error: reply `error` (as an error reply) and close the connection
  };
  Kind kind = kNeedMore;
  // Bytes at the front of the input the caller must drop after this call, for
  // every kind. kNeedMore may consume ignored input (empty lines, `*0`, `*-1`).
  // For kCommand they include the command: use `argv` first, then drop.
  size_t consumed = 0;
  // kNeedMore: call again once at least this many bytes are buffered, counted
  // from the front of the input after dropping `consumed` (always > what is
  // buffered now). For a bulk of known length this is the exact total, so a
  // large value arriving in small pieces costs O(n), not O(n^2).
  size_t need = 0;
  // kCommand: views into the caller's input (multibulk) or into the parser
  // (inline). Valid until the input bytes are dropped/moved or Parse() is
  // called again.
  std::span<const std::string_view> argv;
  // kCommand: it came as an inline line (telnet style), not a multibulk.
  bool is_inline = false;
  // kError: Redis' full text without CRLF, e.g. "ERR Protocol error: invalid bulk length".
  std::string_view error;
};

// One per connection. Contract for Parse(data, len):
//  - `data` starts at the first byte not yet dropped; every call sees the same
//    prefix as the previous call plus any new bytes (the buffer may move
//    between calls: the parser keeps offsets, never pointers).
//  - After each call the caller drops `consumed` bytes.
//  - kError is final: every later call returns the same error until Reset().
//    Redis replies "-<error>\r\n" and closes the connection; so must the caller.
//  - Pipelined commands come out one per call, in order: call again (without
//    waiting) after a kCommand.
class RespParser {
 public:
  explicit RespParser(const RespLimits& limits = {}) : limits_(limits) {}
  explicit RespParser(const LimitsConf& c) : limits_(RespLimits::From(c)) {}

  RespParseResult Parse(const char* data, size_t len);
  RespParseResult Parse(std::string_view s) { return Parse(s.data(), s.size()); }

  // Redis' "unauthenticated" limits: while set, `*N` over 10 and `$N` over
  // 16384 are protocol errors (a client that has not sent AUTH cannot make
  // the server buffer megabytes).
  void set_auth_required(bool v) { auth_required_ = v; }
  void set_limits(const RespLimits& l) { limits_ = l; }
  void Reset();
  // Between commands: frees the argument tables and the inline buffer
  // (an idle connection's parser then holds no heap).
  void Trim();

  // True while a command has been started but not completed.
  bool mid_command() const { return state_ != State::kIdle; }

  // Heap bytes the parser keeps between commands (argument tables, inline
  // buffer). After a command with a huge argc they shrink back once the
  // caller asks for the next command, so one such command does not pin
  // memory for the connection's life.
  size_t retained_bytes() const {
    return offs_.capacity() * sizeof(offs_[0]) + argv_.capacity() * sizeof(argv_[0]) +
           inline_buf_.capacity();
  }

 private:
  enum class State : uint8_t { kIdle, kMultibulk, kInline, kError };
  RespParseResult Fail(std::string_view text);
  RespParseResult ParseMultibulk(const char* p, size_t len, size_t skipped);
  RespParseResult ParseInline(const char* p, size_t len, size_t skipped);
  bool SplitInline(const char* line, size_t n);  // sdssplitargs; false: unbalanced quotes
  void ShrinkBuffers();  // between commands: give back capacity far above a usual command's

  RespLimits limits_;
  bool auth_required_ = false;
  State state_ = State::kIdle;
  // Multibulk progress, offsets from the command's first byte.
  size_t pos_ = 0;         // next unparsed byte
  size_t scanned_ = 0;     // a line terminator was searched for up to here (resume point)
  int64_t args_left_ = 0;  // bulks still to read
  int64_t bulk_len_ = -1;  // length of the bulk being read, -1 = header not read yet
  uint64_t request_bytes_ = 0;
  std::vector<std::pair<size_t, size_t>> offs_;  // (offset, length) of each arg read
  std::vector<std::string_view> argv_;
  std::string inline_buf_;  // inline args' bytes (after unescaping)
  std::string error_;
};

}  // namespace pf
