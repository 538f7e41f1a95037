// worker/kvjson/writer.cc: kv-json reply rendering (writer.h).
#include "worker/kvjson/writer.h"

#include <cmath>

#include "shared/util/strings.h"
#include "worker/json.h"

namespace pf::kvjson {

namespace {
// "ERR value is not an integer" -> "value is not an integer": the code word
// is already in "code".
std::string_view MessageOf(std::string_view redis_text) {
  size_t sp = redis_text.find(' ');
  if (sp == std::string_view::npos || sp == 0) return redis_text;
  for (size_t i = 0; i < sp; i++)
    if (redis_text[i] < 'A' || redis_text[i] > 'Z') return redis_text;
  return redis_text.substr(sp + 1);
}
}  // namespace

void JsonReplyWriter::Begin(std::string_view id_json, const ReplyShape& shape) {
  shape_ = shape;
  count_ = 0;
  stack_.clear();
  done_ = false;
  top_base64_ = false;
  out_->push_back('{');
  has_id_ = !id_json.empty();
  if (has_id_) {
    out_->append("\"id\":");
    out_->append(id_json);
  }
}

bool JsonReplyWriter::BeforeValue() {
  if (done_) return false;
  if (stack_.empty()) {
    out_->append(has_id_ ? ",\"ok\":true,\"result\":" : "\"ok\":true,\"result\":");
    return true;
  }
  Level& l = stack_.back();
  // In a map, elements alternate key, value: `"key":value,"key":value`.
  key_ = l.map && l.left % 2 == 0;
  if (l.map && !key_)
    out_->push_back(':');
  else if (!l.first)
    out_->push_back(',');
  l.first = false;
  return true;
}

void JsonReplyWriter::AfterValue() {
  key_ = false;
  while (!stack_.empty()) {
    if (--stack_.back().left > 0) return;
    out_->push_back(stack_.back().map ? '}' : ']');
    stack_.pop_back();
  }
  done_ = true;
}

void JsonReplyWriter::WriteError(ErrCode code, std::string_view message) {
  out_->append("\"error\":{\"code\":");
  json::AppendJsonString(out_, ErrCodeName(code));
  out_->append(",\"message\":");
  json::AppendJsonString(out_, json::IsUtf8(message) ? message : std::string_view("(not UTF-8)"));
  out_->push_back('}');
}

void JsonReplyWriter::Status(std::string_view s) {
  if (stack_.empty() && !done_ && s == "OK") {  // {"id":7,"ok":true}
    out_->append(has_id_ ? ",\"ok\":true" : "\"ok\":true");
    done_ = true;
    return;
  }
  if (!BeforeValue()) return;
  json::AppendJsonString(out_, json::IsUtf8(s) ? s : std::string_view("?"));
  AfterValue();
}

void JsonReplyWriter::Error(ErrCode code, std::string_view redis_text) {
  if (done_) return;
  if (stack_.empty()) {
    out_->append(has_id_ ? ",\"ok\":false," : "\"ok\":false,");
    WriteError(code, MessageOf(redis_text));
    done_ = true;
    return;
  }
  BeforeValue();
  out_->push_back('{');
  WriteError(code, MessageOf(redis_text));
  out_->push_back('}');
  AfterValue();
}

void JsonReplyWriter::Integer(int64_t v) {
  if (shape_.count_only) {
    count_ = v;
    return;
  }
  if (!BeforeValue()) return;
  if (key_) out_->push_back('"');
  AppendI64(out_, v);
  if (key_) out_->push_back('"');
  AfterValue();
}

void JsonReplyWriter::Bulk(std::string_view v) {
  if (done_ || shape_.count_only) return;
  bool top = stack_.empty();
  if (!top && !shape_.strip_prefix.empty() && v.starts_with(shape_.strip_prefix))
    v.remove_prefix(shape_.strip_prefix.size());
  BeforeValue();
  // base64 when asked for, or for bytes that are not UTF-8: a top-level
  // value as a string (the reply says "encoding":"base64"), an element of an
  // array as {"base64":"..."}.
  const bool utf8 = shape_.encoding != Encoding::kBase64 && json::IsUtf8(v);
  if (utf8) {
    json::AppendJsonString(out_, v);
  } else if (shape_.encoding == Encoding::kBase64 || top) {
    out_->push_back('"');
    json::AppendBase64(out_, v);
    out_->push_back('"');
    top_base64_ = true;
  } else if (key_) {  // an object key must be a string: "base64:..."
    out_->append("\"base64:");
    json::AppendBase64(out_, v);
    out_->push_back('"');
  } else {
    out_->append("{\"base64\":\"");
    json::AppendBase64(out_, v);
    out_->append("\"}");
  }
  AfterValue();
}

void JsonReplyWriter::Nil() {
  if (shape_.count_only) return;
  if (stack_.empty() && !done_ && shape_.nil_is_not_found) {
    Error(ErrCode::kNotFound, "key not found");
    return;
  }
  if (!BeforeValue()) return;
  out_->append(key_ ? "\"\"" : "null");
  AfterValue();
}

void JsonReplyWriter::NilArray() {
  if (!BeforeValue()) return;
  out_->append(key_ ? "\"\"" : "null");
  AfterValue();
}

void JsonReplyWriter::ArrayBegin(size_t n) { Aggregate(n, false); }
void JsonReplyWriter::MapBegin(size_t n) { Aggregate(2 * n, true); }

void JsonReplyWriter::Aggregate(size_t elements, bool map) {
  if (shape_.count_only) return;
  if (!BeforeValue()) return;
  out_->push_back(map ? '{' : '[');
  if (elements == 0) {
    out_->push_back(map ? '}' : ']');
    AfterValue();
    return;
  }
  key_ = false;
  stack_.push_back({elements, true, map});
}

void JsonReplyWriter::Double(double d) {
  if (!BeforeValue()) return;
  char buf[kMaxDoubleChars];
  const std::string_view s(buf, FormatRedisDouble(d, buf));
  // JSON has no inf or nan: those (and any key) are strings.
  if (key_ || !std::isfinite(d)) {
    json::AppendJsonString(out_, s);
  } else {
    out_->append(s);
  }
  AfterValue();
}

void JsonReplyWriter::Bool(bool b) {
  if (!BeforeValue()) return;
  if (key_)
    out_->append(b ? "\"true\"" : "\"false\"");
  else
    out_->append(b ? "true" : "false");
  AfterValue();
}

void JsonReplyWriter::End() {
  if (!done_ && shape_.count_only) {
    BeforeValue();
    AppendI64(out_, count_);
    done_ = true;
  }
  if (!done_) {
    // The command wrote nothing, or fewer elements than announced: keep the
    // line valid JSON rather than desynchronising the client.
    if (stack_.empty()) {
      out_->append(has_id_ ? ",\"ok\":true" : "\"ok\":true");
    } else {
      while (!stack_.empty()) Nil();
    }
  }
  if (top_base64_) out_->append(",\"encoding\":\"base64\"");
  out_->append("}\n");
}

void WriteJsonError(std::string* out, std::string_view id_json, ErrCode code,
                    std::string_view message) {
  JsonReplyWriter w(out);
  w.Begin(id_json);
  w.Error(code, message);
  w.End();
}

}  // namespace pf::kvjson
