// worker/kvjson/request.h: the kv-json request schema: one JSON line
// (simdjson DOM) checked against the action table and turned into the
// command table's argv, with the shape its reply takes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "shared/cmd/reply.h"
#include "shared/config.h"
#include "worker/kvjson/writer.h"

namespace pf::kvjson {

struct ParsedLine {
  enum Kind : uint8_t {
    kRequest,  // run `argv` through the command table, reply with a JsonReplyWriter
    kBlank,    // an empty / whitespace-only line: no reply
    kError,    // reply WriteJsonError(id, error_code, error_message); go on with the next line
  } kind = kBlank;
  std::string_view id;  // JSON text of the request's "id" to echo ("" = none); also on kError
  std::span<const std::string_view> argv;
  ReplyShape shape;
  bool quit = false;  // QUIT: reply, flush, then close
  ErrCode error_code = ErrCode::kErr;
  std::string_view error_message;
};

// One per connection (it keeps simdjson's buffers and the argv storage, so a
// request costs no allocation once warmed up; Trim gives them back while the
// connection is idle). The views in the result are valid until the next
// Parse() or Trim().
class RequestParser {
 public:
  explicit RequestParser(const LimitsConf& limits = {});
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;
  ParsedLine Parse(std::string_view line);
  void Trim();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pf::kvjson
