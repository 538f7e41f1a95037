// worker/resp/parser.cc: the RESP2 request state machine. Behaviour and error
// texts follow Redis' networking.c (processMultibulkBuffer/processInlineBuffer)
// and sds.c (sdssplitargs; string2ll is shared/util/strings.h ParseInt64); differences are noted
// where they are.
#include "worker/resp/parser.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "shared/util/strings.h"

namespace pf {
namespace {

// What one argument costs besides its bytes: its argv entry and the working
// state a multi-key command keeps per key (MGET's reply slot, ...).
constexpr uint64_t kArgOverhead = 32;

bool IsSpace(char c) {  // isspace() in the C locale, as sdssplitargs uses it
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Search for `c` in [from, limit) of p; nullptr if absent.
const char* Find(const char* p, size_t from, size_t limit, char c) {
  if (from >= limit) return nullptr;
  return static_cast<const char*>(std::memchr(p + from, c, limit - from));
}

// Capacity kept between commands: room for any usual command; more than this
// (left by a command with thousands of arguments) is given back.
constexpr size_t kKeepArgs = 4096;
constexpr size_t kKeepInlineBytes = 64 * 1024;

RespParseResult NeedMore(size_t consumed, size_t need) {
  RespParseResult r;
  r.kind = RespParseResult::kNeedMore;
  r.consumed = consumed;
  r.need = need;
  return r;
}

}  // namespace

void RespParser::Reset() {
  state_ = State::kIdle;
  pos_ = scanned_ = 0;
  args_left_ = 0;
  bulk_len_ = -1;
  request_bytes_ = 0;
  offs_.clear();
  argv_.clear();
  inline_buf_.clear();
  error_.clear();
  ShrinkBuffers();
}

void RespParser::Trim() {
  if (state_ != State::kIdle) return;
  decltype(offs_)().swap(offs_);
  decltype(argv_)().swap(argv_);
  std::string().swap(inline_buf_);
  std::string().swap(error_);
}

void RespParser::ShrinkBuffers() {
  if (offs_.capacity() > kKeepArgs) decltype(offs_)().swap(offs_);
  if (argv_.capacity() > kKeepArgs) decltype(argv_)().swap(argv_);
  if (inline_buf_.capacity() > kKeepInlineBytes) std::string().swap(inline_buf_);
}

RespParseResult RespParser::Fail(std::string_view text) {
  state_ = State::kError;
  error_.assign(text);
  RespParseResult r;
  r.kind = RespParseResult::kError;
  r.error = error_;
  return r;
}

RespParseResult RespParser::Parse(const char* data, size_t len) {
  if (state_ == State::kError) {
    RespParseResult r;
    r.kind = RespParseResult::kError;
    r.error = error_;
    return r;
  }
  // Between commands the previous argv is dead (see the contract above).
  if (state_ == State::kIdle) ShrinkBuffers();
  size_t skipped = 0;  // ignored input (empty inline lines, *0, *-1) before the command
  for (;;) {
    const char* p = data + skipped;
    size_t n = len - skipped;
    if (state_ == State::kIdle) {
      if (n == 0) return NeedMore(skipped, 1);
      // As processInputBuffer(): the first byte of a request picks its type.
      state_ = p[0] == '*' ? State::kMultibulk : State::kInline;
      pos_ = scanned_ = 0;
      args_left_ = 0;
      bulk_len_ = -1;
      request_bytes_ = 0;
      offs_.clear();
    }
    RespParseResult r =
        state_ == State::kMultibulk ? ParseMultibulk(p, n, skipped) : ParseInline(p, n, skipped);
    if (r.kind == RespParseResult::kCommand && r.argv.empty()) {
      skipped = r.consumed;  // an ignored request: go on with what follows
      continue;
    }
    return r;
  }
}

// p/n: the input from the command's first byte. Returns kCommand with empty
// argv for an ignored request; `consumed` then counts from `data`.
RespParseResult RespParser::ParseMultibulk(const char* p, size_t n, size_t skipped) {
  const size_t max_line = limits_.max_line_bytes;
  if (args_left_ == 0) {
    // "*<count>\r\n". Redis looks for '\r' only and does not check the '\n'.
    size_t limit = std::min(n, max_line + 1);
    const char* cr = Find(p, scanned_, limit, '\r');
    if (cr == nullptr) {
      // Redis: no '\r' and more than PROTO_INLINE_MAX_SIZE buffered. We also
      // reject a '\r' found beyond the limit, so the outcome does not depend
      // on how the bytes were split into reads.
      if (n > max_line) return Fail("ERR Protocol error: too big mbulk count string");
      scanned_ = limit;
      return NeedMore(skipped, n + 1);
    }
    size_t k = static_cast<size_t>(cr - p);
    scanned_ = k;
    if (k + 2 > n) return NeedMore(skipped, k + 2);
    int64_t ll = 0;
    if (!ParseInt64(std::string_view(p + 1, k - 1), &ll) ||
        ll > static_cast<int64_t>(limits_.max_multibulk_len))
      return Fail("ERR Protocol error: invalid multibulk length");
    if (ll > 10 && auth_required_)
      return Fail("ERR Protocol error: unauthenticated multibulk length");
    pos_ = scanned_ = k + 2;
    if (ll <= 0) {  // "*0", "*-1": nothing to run, as in Redis
      state_ = State::kIdle;
      RespParseResult r;
      r.kind = RespParseResult::kCommand;
      r.consumed = skipped + pos_;
      return r;
    }
    args_left_ = ll;
    offs_.reserve(static_cast<size_t>(std::min<int64_t>(ll, 1024)));
  }

  while (args_left_ > 0) {
    if (bulk_len_ == -1) {
      size_t avail = n - pos_;
      size_t limit = pos_ + std::min(avail, max_line + 1);
      const char* cr = Find(p, std::max(scanned_, pos_), limit, '\r');
      if (cr == nullptr) {
        if (avail > max_line) return Fail("ERR Protocol error: too big bulk count string");
        scanned_ = limit;
        return NeedMore(skipped, n + 1);
      }
      size_t k = static_cast<size_t>(cr - p);
      scanned_ = k;
      if (k + 2 > n) return NeedMore(skipped, k + 2);
      if (p[pos_] != '$') {
        // addReplyErrorFormat("... got '%c'"): CR/LF become spaces, and a NUL
        // ends the text (sdscatvprintf stops at it).
        char got = p[pos_];
        std::string text = "ERR Protocol error: expected '$', got '";
        if (got != '\0') {
          text += (got == '\r' || got == '\n') ? ' ' : got;
          text += '\'';
        }
        return Fail(text);
      }
      int64_t ll = 0;
      if (!ParseInt64(std::string_view(p + pos_ + 1, k - pos_ - 1), &ll) || ll < 0 ||
          static_cast<uint64_t>(ll) > limits_.max_bulk_bytes)
        return Fail("ERR Protocol error: invalid bulk length");
      if (ll > 16384 && auth_required_)
        return Fail("ERR Protocol error: unauthenticated bulk length");
      // Not in Redis (it has client-query-buffer-limit, which closes without
      // a reply): one command may not declare more than max_request_bytes,
      // each argument counting its bytes plus kArgOverhead, so a million
      // empty arguments cannot make a command's working state huge.
      request_bytes_ += static_cast<uint64_t>(ll) + kArgOverhead;
      if (request_bytes_ > limits_.max_request_bytes)
        return Fail("ERR Protocol error: too big request");
      pos_ = k + 2;
      bulk_len_ = ll;
    }
    size_t blen = static_cast<size_t>(bulk_len_);
    if (n - pos_ < blen + 2) return NeedMore(skipped, pos_ + blen + 2);
    // As Redis, the two bytes after the payload are skipped, not checked.
    offs_.emplace_back(pos_, blen);
    pos_ += blen + 2;
    scanned_ = pos_;
    bulk_len_ = -1;
    args_left_--;
  }

  argv_.clear();
  for (const auto& [off, l] : offs_) argv_.emplace_back(p + off, l);
  state_ = State::kIdle;
  RespParseResult r;
  r.kind = RespParseResult::kCommand;
  r.consumed = skipped + pos_;
  r.argv = argv_;
  return r;
}

RespParseResult RespParser::ParseInline(const char* p, size_t n, size_t skipped) {
  const size_t max_line = limits_.max_line_bytes;
  size_t limit = std::min(n, max_line + 1);
  const char* nl = Find(p, scanned_, limit, '\n');
  if (nl == nullptr) {
    // Redis: no '\n' and more than PROTO_INLINE_MAX_SIZE buffered; as for the
    // multibulk count, a '\n' past the limit is an error too.
    if (n > max_line) return Fail("ERR Protocol error: too big inline request");
    scanned_ = limit;
    return NeedMore(skipped, n + 1);
  }
  size_t k = static_cast<size_t>(nl - p);
  size_t query_len = (k > 0 && p[k - 1] == '\r') ? k - 1 : k;
  if (!SplitInline(p, query_len)) return Fail("ERR Protocol error: unbalanced quotes in request");
  state_ = State::kIdle;
  RespParseResult r;
  r.kind = RespParseResult::kCommand;
  r.consumed = skipped + k + 1;
  r.argv = argv_;  // empty for a blank line: ignored by Parse()
  r.is_inline = true;
  return r;
}

// sdssplitargs() over [line, line+n). Redis runs it on a C string, so the
// line ends at its first NUL byte; `at()` reproduces that.
bool RespParser::SplitInline(const char* line, size_t n) {
  if (const void* z = std::memchr(line, '\0', n))
    n = static_cast<size_t>(static_cast<const char*>(z) - line);
  auto at = [&](size_t i) -> char { return i < n ? line[i] : '\0'; };
  inline_buf_.clear();
  offs_.clear();
  argv_.clear();
  size_t i = 0;
  for (;;) {
    while (at(i) != '\0' && IsSpace(at(i))) i++;
    if (at(i) == '\0') break;
    size_t start = inline_buf_.size();
    bool inq = false, insq = false, done = false;
    while (!done) {
      char c = at(i);
      if (inq) {
        if (c == '\\' && at(i + 1) == 'x' && HexVal(at(i + 2)) >= 0 && HexVal(at(i + 3)) >= 0) {
          inline_buf_ += static_cast<char>(HexVal(at(i + 2)) * 16 + HexVal(at(i + 3)));
          i += 3;
        } else if (c == '\\' && at(i + 1) != '\0') {
          i++;
          char e = at(i);
          switch (e) {
            case 'n':
              e = '\n';
              break;
            case 'r':
              e = '\r';
              break;
            case 't':
              e = '\t';
              break;
            case 'b':
              e = '\b';
              break;
            case 'a':
              e = '\a';
              break;
            default:
              break;
          }
          inline_buf_ += e;
        } else if (c == '"') {
          // The closing quote must be followed by a space or nothing at all.
          if (at(i + 1) != '\0' && !IsSpace(at(i + 1))) return false;
          done = true;
        } else if (c == '\0') {
          return false;  // unterminated quotes
        } else {
          inline_buf_ += c;
        }
      } else if (insq) {
        if (c == '\\' && at(i + 1) == '\'') {
          i++;
          inline_buf_ += '\'';
        } else if (c == '\'') {
          if (at(i + 1) != '\0' && !IsSpace(at(i + 1))) return false;
          done = true;
        } else if (c == '\0') {
          return false;
        } else {
          inline_buf_ += c;
        }
      } else {
        switch (c) {
          case ' ':
          case '\n':
          case '\r':
          case '\t':
          case '\0':
            done = true;
            break;
          case '"':
            inq = true;
            break;
          case '\'':
            insq = true;
            break;
          default:
            inline_buf_ += c;
            break;
        }
      }
      if (at(i) != '\0') i++;
    }
    offs_.emplace_back(start, inline_buf_.size() - start);
  }
  for (const auto& [off, l] : offs_) argv_.emplace_back(inline_buf_.data() + off, l);
  return true;
}

}  // namespace pf
