// worker/kvjson/writer.h: the kv-json reply writer: the command table's
// protocol-neutral reply rendered as one JSON line (docs/protocol-kv-json.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shared/cmd/reply.h"

namespace pf::kvjson {

enum class Encoding : uint8_t { kUtf8, kBase64 };

// How the command's protocol-neutral reply becomes this request's JSON.
struct ReplyShape {
  bool nil_is_not_found = false;        // GET: a nil reply is error NOT_FOUND
  Encoding encoding = Encoding::kUtf8;  // "encoding":"base64" asked: every bulk in base64
  std::string_view strip_prefix;        // KEYS/SCAN with ns: returned keys lose "ns^"
  // SUBSCRIBE / UNSUBSCRIBE: the result is the connection's subscription
  // count, the last integer the command wrote (the table answers in RESP's
  // shape, one [kind, name, count] array per name).
  bool count_only = false;
};

// Renders one reply line: Begin(), exactly one top-level value written by the
// command table through the ReplyWriter interface, End() (which appends
// "}\n"). Appends to `*out`; the caller owns and reuses that buffer.
//   Status "OK" -> {"ok":true}   (no result; other statuses -> "result":"PONG")
//   Integer -> number, Bulk -> string, Nil/NilArray -> null, arrays nest.
//   Map -> object (a key is a string; an integer or null key becomes one, a
//   key that is not UTF-8 "base64:..."),
//   Set/Push -> array, Double -> number ("inf", "-inf", "nan" -> string),
//   Bool -> true/false.
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
  void MapBegin(size_t n) override;
  void SetBegin(size_t n) override { ArrayBegin(n); }
  void PushBegin(size_t n) override { ArrayBegin(n); }
  void Double(double d) override;
  void Bool(bool b) override;

 private:
  void Aggregate(size_t elements, bool map);
  bool BeforeValue();  // false: the reply is complete, drop the value
  void AfterValue();
  void WriteError(ErrCode code, std::string_view message);

  struct Level {
    size_t left;  // elements still to come (a map counts keys and values)
    bool first;
    bool map;
  };
  std::string* out_;
  ReplyShape shape_;
  std::vector<Level> stack_;
  bool has_id_ = false;
  bool done_ = false;
  bool top_base64_ = false;
  bool key_ = false;   // the value being written is a map key: it must be a JSON string
  int64_t count_ = 0;  // count_only: the last integer seen
};

// A whole error reply line, for requests that never reached the command table.
void WriteJsonError(std::string* out, std::string_view id_json, ErrCode code,
                    std::string_view message);

}  // namespace pf::kvjson
