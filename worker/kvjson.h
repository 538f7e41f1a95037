// worker/kvjson.h: the kv-json wire format (docs/protocol-kv-json.md): line
// framing, a schema-checked request parser (simdjson DOM) that turns one JSON
// line into the command table's argv, and a ReplyWriter that renders JSON.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shared/config.h"
#include "shared/reply.h"

namespace pf::kvjson {

// Splits a byte stream into lines ("\n" or "\r\n") without ever holding more
// than max_line_bytes of one line: a longer line is reported once as kTooLong
// and its remainder is consumed (dropped) as it arrives, across reads.
// Contract as RespParser: `data` starts at the first byte not yet dropped;
// after each call drop `consumed` bytes; on kNeedMore wait for more input.
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
  bool skipping() const { return skipping_; }

 private:
  size_t max_;
  size_t scanned_ = 0;     // no '\n' in [0, scanned_) of the pending line
  bool skipping_ = false;  // inside a too-long line, dropping until its '\n'
};

enum class Encoding : uint8_t { kUtf8, kBase64 };

// How the command's protocol-neutral reply becomes this request's JSON.
struct ReplyShape {
  bool nil_is_not_found = false;  // GET: a nil reply is error NOT_FOUND
  Encoding encoding = Encoding::kUtf8;  // "encoding":"base64" asked: every bulk in base64
  std::string_view strip_prefix;  // KEYS/SCAN with ns: returned keys lose "ns^"
};

struct ParsedLine {
  enum Kind : uint8_t {
    kRequest,  // run `argv` through the command table, reply with a JsonReplyWriter
    kBlank,    // an empty / whitespace-only line: no reply
    kError,    // reply WriteJsonError(id, error_code, error_message); go on with the next line
  } kind = kBlank;
  std::string_view id;  // JSON text of the request's "id" to echo ("" = none); also on kError
  std::span<const std::string_view> argv;
  ReplyShape shape;
  bool quit = false;    // QUIT: reply, flush, then close
  ErrCode error_code = ErrCode::kErr;
  std::string_view error_message;
};

// One per connection (it keeps simdjson's buffers and the argv storage, so a
// request costs no allocation once warmed up). The views in the result are
// valid until the next Parse().
class RequestParser {
 public:
  explicit RequestParser(const LimitsConf& limits = {});
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;
  ParsedLine Parse(std::string_view line);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Renders one reply line: Begin(), exactly one top-level value written by the
// command table through the ReplyWriter interface, End() (which appends
// "}\n"). Appends to `*out`; the caller owns and reuses that buffer.
//   Status "OK" -> {"ok":true}   (no result; other statuses -> "result":"PONG")
//   Integer -> number, Bulk -> string, Nil/NilArray -> null, arrays nest.
//   Error -> {"ok":false,"error":{"code":ErrCodeName(code),"message":...}}
//   A bulk that is not UTF-8: top level -> base64 string + "encoding":"base64";
//   inside an array -> {"base64":"..."}.
class JsonReplyWriter final : public ReplyWriter {
 public:
  explicit JsonReplyWriter(std::string* out) : out_(out) {}
  void Begin(std::string_view id_json, const ReplyShape& shape = {});
  void End();

  void Status(std::string_view s) override;
  void Error(ErrCode code, std::string_view redis_text) override;
  void Integer(int64_t v) override;
  void Bulk(std::string_view v) override;
  void Nil() override;
  void NilArray() override;
  void ArrayBegin(size_t n) override;

 private:
  bool BeforeValue();  // false: the reply is complete, drop the value
  void AfterValue();
  void WriteError(ErrCode code, std::string_view message);

  struct Level {
    size_t left;
    bool first;
  };
  std::string* out_;
  ReplyShape shape_;
  std::vector<Level> stack_;
  bool has_id_ = false;
  bool done_ = false;
  bool top_base64_ = false;
};

// A whole error reply line, for requests that never reached the command table.
void WriteJsonError(std::string* out, std::string_view id_json, ErrCode code,
                    std::string_view message);

// RFC 8259 string (quotes included). `s` must be valid UTF-8; control
// characters become \n, \t, ... or \u00XX.
void AppendJsonString(std::string* out, std::string_view s);
void AppendBase64(std::string* out, std::string_view bytes);
// Strict RFC 4648 (standard alphabet, padded). false: not base64.
bool DecodeBase64(std::string_view in, std::string* out);
bool IsUtf8(std::string_view s);

}  // namespace pf::kvjson
