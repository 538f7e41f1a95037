// worker/kvjson.cc: kv-json framing, request schema and reply rendering. The
// action table below is the schema: one row per action, with its allowed and
// required fields and the function that builds the command table's argv.
#include "worker/kvjson.h"

#include <simdjson.h>

#include <algorithm>
#include <cstring>

namespace pf::kvjson {

// ---------------------------------------------------------------- framing

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
  const void* found =
      scanned_ < n ? std::memchr(p + scanned_, '\n', n - scanned_) : nullptr;
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

// ---------------------------------------------------------------- encoding helpers

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int B64Val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

void AppendBase64(std::string* out, std::string_view s) {
  size_t i = 0;
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  out->reserve(out->size() + (s.size() + 2) / 3 * 4);
  for (; i + 3 <= s.size(); i += 3) {
    uint32_t v = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
    char q[4] = {kB64[v >> 18], kB64[(v >> 12) & 63], kB64[(v >> 6) & 63], kB64[v & 63]};
    out->append(q, 4);
  }
  if (size_t rest = s.size() - i; rest > 0) {
    uint32_t v = b[i] << 16;
    if (rest == 2) v |= b[i + 1] << 8;
    char q[4] = {kB64[v >> 18], kB64[(v >> 12) & 63], rest == 2 ? kB64[(v >> 6) & 63] : '=', '='};
    out->append(q, 4);
  }
}

bool DecodeBase64(std::string_view in, std::string* out) {
  if (in.size() % 4 != 0) return false;
  for (size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int j = 0; j < 4; j++) {
      unsigned char c = static_cast<unsigned char>(in[i + j]);
      if (c == '=' && i + 4 == in.size() && j >= 2) {
        pad++;
        v[j] = 0;
        continue;
      }
      if (pad > 0) return false;  // data after '='
      v[j] = B64Val(c);
      if (v[j] < 0) return false;
    }
    uint32_t w = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out->push_back(static_cast<char>(w >> 16));
    if (pad < 2) out->push_back(static_cast<char>((w >> 8) & 0xff));
    if (pad < 1) out->push_back(static_cast<char>(w & 0xff));
  }
  return true;
}

bool IsUtf8(std::string_view s) { return simdjson::validate_utf8(s.data(), s.size()); }

void AppendJsonString(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t run = 0;  // start of the current run of bytes that need no escaping
  for (size_t i = 0; i < s.size(); i++) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      default: {
        char u[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
        out->append(u, 6);
      }
    }
  }
  out->append(s.data() + run, s.size() - run);
  out->push_back('"');
}

// ---------------------------------------------------------------- reply writer

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

void AppendInt(std::string* out, int64_t v) {
  char buf[24];
  char* end = buf + sizeof(buf);
  char* p = end;
  uint64_t u = v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  do {
    *--p = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u != 0);
  if (v < 0) *--p = '-';
  out->append(p, static_cast<size_t>(end - p));
}
}  // namespace

void JsonReplyWriter::Begin(std::string_view id_json, const ReplyShape& shape) {
  shape_ = shape;
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
  if (!l.first) out_->push_back(',');
  l.first = false;
  return true;
}

void JsonReplyWriter::AfterValue() {
  while (!stack_.empty()) {
    if (--stack_.back().left > 0) return;
    out_->push_back(']');
    stack_.pop_back();
  }
  done_ = true;
}

void JsonReplyWriter::WriteError(ErrCode code, std::string_view message) {
  out_->append("\"error\":{\"code\":");
  AppendJsonString(out_, ErrCodeName(code));
  out_->append(",\"message\":");
  AppendJsonString(out_, IsUtf8(message) ? message : std::string_view("(not UTF-8)"));
  out_->push_back('}');
}

void JsonReplyWriter::Status(std::string_view s) {
  if (stack_.empty() && !done_ && s == "OK") {  // {"id":7,"ok":true}
    out_->append(has_id_ ? ",\"ok\":true" : "\"ok\":true");
    done_ = true;
    return;
  }
  if (!BeforeValue()) return;
  AppendJsonString(out_, IsUtf8(s) ? s : std::string_view("?"));
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
  if (!BeforeValue()) return;
  AppendInt(out_, v);
  AfterValue();
}

void JsonReplyWriter::Bulk(std::string_view v) {
  if (done_) return;
  bool top = stack_.empty();
  if (!top && !shape_.strip_prefix.empty() && v.starts_with(shape_.strip_prefix))
    v.remove_prefix(shape_.strip_prefix.size());
  BeforeValue();
  if (shape_.encoding == Encoding::kBase64) {
    out_->push_back('"');
    AppendBase64(out_, v);
    out_->push_back('"');
    top_base64_ = true;
  } else if (IsUtf8(v)) {
    AppendJsonString(out_, v);
  } else if (top) {
    out_->push_back('"');
    AppendBase64(out_, v);
    out_->push_back('"');
    top_base64_ = true;
  } else {
    out_->append("{\"base64\":\"");
    AppendBase64(out_, v);
    out_->append("\"}");
  }
  AfterValue();
}

void JsonReplyWriter::Nil() {
  if (stack_.empty() && !done_ && shape_.nil_is_not_found) {
    Error(ErrCode::kNotFound, "key not found");
    return;
  }
  if (!BeforeValue()) return;
  out_->append("null");
  AfterValue();
}

void JsonReplyWriter::NilArray() {
  if (!BeforeValue()) return;
  out_->append("null");
  AfterValue();
}

void JsonReplyWriter::ArrayBegin(size_t n) {
  if (!BeforeValue()) return;
  out_->push_back('[');
  if (n == 0) {
    out_->push_back(']');
    AfterValue();
    return;
  }
  stack_.push_back({n, true});
}

void JsonReplyWriter::End() {
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

// ---------------------------------------------------------------- request schema

namespace {

// Typed reads of elements whose type was checked. (Calling value_unsafe() on
// a temporary result leaves a dangling reference, so copy out with get().)
std::string_view Str(simdjson::dom::element e) {
  std::string_view s;
  [[maybe_unused]] auto err = e.get_string().get(s);
  return s;
}
int64_t Int(simdjson::dom::element e) {
  int64_t v = 0;
  [[maybe_unused]] auto err = e.get_int64().get(v);
  return v;
}
bool Bool(simdjson::dom::element e) {
  bool v = false;
  [[maybe_unused]] auto err = e.get_bool().get(v);
  return v;
}
simdjson::dom::array Arr(simdjson::dom::element e) {
  simdjson::dom::array a;
  [[maybe_unused]] auto err = e.get_array().get(a);
  return a;
}
simdjson::dom::object Obj(simdjson::dom::element e) {
  simdjson::dom::object o;
  [[maybe_unused]] auto err = e.get_object().get(o);
  return o;
}

enum Field : uint8_t {
  kId, kAction, kNs, kKey, kKeys, kValue, kTtl, kPx, kNx, kXx, kKeepTtl, kGet, kBy,
  kItems, kPattern, kCursor, kMatch, kCount, kSection, kPassword, kMessage, kEncoding,
  kChannel, kFieldCount
};
enum class Type : uint8_t { kAny, kString, kInt, kBool, kStringArray, kItems };

struct FieldSpec {
  std::string_view name;
  Type type;
};
// Indexed by Field.
constexpr FieldSpec kFields[kFieldCount] = {
    {"id", Type::kAny},          {"action", Type::kString},  {"ns", Type::kString},
    {"key", Type::kString},      {"keys", Type::kStringArray}, {"value", Type::kString},
    {"ttl", Type::kInt},         {"px", Type::kInt},         {"nx", Type::kBool},
    {"xx", Type::kBool},         {"keepttl", Type::kBool},   {"get", Type::kBool},
    {"by", Type::kInt},          {"items", Type::kItems},    {"pattern", Type::kString},
    {"cursor", Type::kInt},      {"match", Type::kString},   {"count", Type::kInt},
    {"section", Type::kString},  {"password", Type::kString}, {"message", Type::kString},
    {"encoding", Type::kString}, {"channel", Type::kString},
};

using Mask = uint32_t;
constexpr Mask F(Field f) { return Mask{1} << f; }
template <typename... Fs>
constexpr Mask Fs_(Fs... fs) { return (Mask{0} | ... | F(fs)); }

struct Builder;
using BuildFn = bool (*)(Builder&);

struct ActionSpec {
  std::string_view name;
  Mask allowed;   // besides id and action
  Mask required;
  BuildFn build;
};

// The state of one request being converted to argv.
struct Builder {
  const ActionSpec* action = nullptr;
  simdjson::dom::element field[kFieldCount];
  Mask present = 0;
  std::string* storage;
  std::vector<std::pair<size_t, size_t>>* offs;
  std::string prefix;  // "ns^" or ""
  Encoding encoding = Encoding::kUtf8;
  ErrCode code = ErrCode::kErr;
  std::string message;

  bool has(Field f) const { return (present & F(f)) != 0; }
  std::string_view str(Field f) const { return Str(field[f]); }
  int64_t num(Field f) const { return Int(field[f]); }
  bool flag(Field f) const { return has(f) && Bool(field[f]); }

  bool Fail(ErrCode c, std::string m) {
    code = c;
    message = std::move(m);
    return false;
  }
  void Push(std::string_view s) {
    offs->emplace_back(storage->size(), s.size());
    storage->append(s);
  }
  void PushInt(int64_t v) {
    size_t at = storage->size();
    AppendInt(storage, v);
    offs->emplace_back(at, storage->size() - at);
  }
  void PushKey(std::string_view k) {
    size_t at = storage->size();
    storage->append(prefix);
    storage->append(k);
    offs->emplace_back(at, storage->size() - at);
  }
  bool PushValue(std::string_view v, std::string_view what) {
    if (encoding == Encoding::kUtf8) {
      Push(v);
      return true;
    }
    size_t at = storage->size();
    if (!DecodeBase64(v, storage)) {
      storage->resize(at);
      return Fail(ErrCode::kErr, std::string(what) + " is not valid base64");
    }
    offs->emplace_back(at, storage->size() - at);
    return true;
  }
  // The action's name, upper case, as argv[0].
  void PushName() { Push(action->name); }
};

bool BuildNameOnly(Builder& b) {
  b.PushName();
  return true;
}
bool BuildKey(Builder& b) {  // GET, INCR, DECR, TTL, PTTL, PERSIST
  b.PushName();
  b.PushKey(b.str(kKey));
  return true;
}
bool BuildKeyBy(Builder& b) {  // INCRBY, DECRBY
  b.PushName();
  b.PushKey(b.str(kKey));
  b.PushInt(b.num(kBy));
  return true;
}
bool BuildKeyTtl(Builder& b) {  // EXPIRE (seconds), PEXPIRE (ms)
  b.PushName();
  b.PushKey(b.str(kKey));
  b.PushInt(b.num(kTtl));
  return true;
}
bool BuildMessage(Builder& b) {  // PING [message], ECHO message
  b.PushName();
  if (b.has(kMessage)) return b.PushValue(b.str(kMessage), "message");
  return true;
}
bool BuildChannel(Builder& b) {  // SUBSCRIBE channel, UNSUBSCRIBE [channel]
  b.PushName();
  if (b.has(kChannel)) b.Push(b.str(kChannel));
  return true;
}
bool BuildPublish(Builder& b) {  // PUBLISH channel message
  b.PushName();
  b.Push(b.str(kChannel));
  return b.PushValue(b.str(kMessage), "message");
}
bool BuildKeyOrKeys(Builder& b) {  // DEL, EXISTS
  if (b.has(kKey) == b.has(kKeys))
    return b.Fail(ErrCode::kErr, "exactly one of 'key' and 'keys' is required");
  b.PushName();
  if (b.has(kKey)) {
    b.PushKey(b.str(kKey));
    return true;
  }
  for (simdjson::dom::element e : Arr(b.field[kKeys])) b.PushKey(Str(e));
  return true;
}
bool BuildMget(Builder& b) {
  b.PushName();
  for (simdjson::dom::element e : Arr(b.field[kKeys])) b.PushKey(Str(e));
  return true;
}
bool BuildSet(Builder& b) {
  if (b.has(kTtl) && b.has(kPx)) return b.Fail(ErrCode::kErr, "'ttl' and 'px' exclude each other");
  if (b.flag(kNx) && b.flag(kXx)) return b.Fail(ErrCode::kErr, "'nx' and 'xx' exclude each other");
  if (b.flag(kKeepTtl) && (b.has(kTtl) || b.has(kPx)))
    return b.Fail(ErrCode::kErr, "'keepttl' excludes 'ttl' and 'px'");
  b.PushName();
  b.PushKey(b.str(kKey));
  if (!b.PushValue(b.str(kValue), "value")) return false;
  if (b.has(kTtl)) {
    b.Push("EX");
    b.PushInt(b.num(kTtl));
  }
  if (b.has(kPx)) {
    b.Push("PX");
    b.PushInt(b.num(kPx));
  }
  if (b.flag(kNx)) b.Push("NX");
  if (b.flag(kXx)) b.Push("XX");
  if (b.flag(kKeepTtl)) b.Push("KEEPTTL");
  if (b.flag(kGet)) b.Push("GET");
  return true;
}
bool BuildMset(Builder& b) {
  b.PushName();
  simdjson::dom::element items = b.field[kItems];
  size_t pairs = 0;
  if (items.is_object()) {
    for (auto kv : Obj(items)) {
      if (!kv.value.is_string())
        return b.Fail(ErrCode::kErr, "field 'items' must map keys to strings");
      b.PushKey(kv.key);
      if (!b.PushValue(Str(kv.value), "items value"))
        return false;
      pairs++;
    }
  } else {
    for (simdjson::dom::element pair : Arr(items)) {
      simdjson::dom::array a;
      simdjson::dom::element k, v;
      if (pair.get_array().get(a) != simdjson::SUCCESS || a.size() != 2 ||
          a.at(0).get(k) != simdjson::SUCCESS || a.at(1).get(v) != simdjson::SUCCESS ||
          !k.is_string() || !v.is_string())
        return b.Fail(ErrCode::kErr, "field 'items' must hold [key, value] pairs of strings");
      b.PushKey(Str(k));
      if (!b.PushValue(Str(v), "items value"))
        return false;
      pairs++;
    }
  }
  if (pairs == 0) return b.Fail(ErrCode::kErr, "field 'items' must not be empty");
  return true;
}
// A namespace prefix inside a glob pattern: escape the glob's special characters.
void AppendGlobLiteral(std::string* out, std::string_view s) {
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out->push_back('\\');
    out->push_back(c);
  }
}
void PushPattern(Builder& b, std::string_view pattern) {
  size_t at = b.storage->size();
  AppendGlobLiteral(b.storage, b.prefix);
  b.storage->append(pattern);
  b.offs->emplace_back(at, b.storage->size() - at);
}
bool BuildKeys(Builder& b) {
  b.PushName();
  PushPattern(b, b.has(kPattern) ? b.str(kPattern) : std::string_view("*"));
  return true;
}
bool BuildScan(Builder& b) {
  if (b.has(kCursor) && b.num(kCursor) < 0)
    return b.Fail(ErrCode::kErr, "field 'cursor' must not be negative");
  b.PushName();
  b.PushInt(b.has(kCursor) ? b.num(kCursor) : 0);
  if (b.has(kMatch) || !b.prefix.empty()) {
    b.Push("MATCH");
    PushPattern(b, b.has(kMatch) ? b.str(kMatch) : std::string_view("*"));
  }
  if (b.has(kCount)) {
    b.Push("COUNT");
    b.PushInt(b.num(kCount));
  }
  return true;
}
bool BuildFlushNs(Builder& b) {  // the command table's FLUSHNS takes the bare namespace
  b.PushName();
  b.Push(b.str(kNs));
  return true;
}
bool BuildInfo(Builder& b) {
  b.PushName();
  if (b.has(kSection)) b.Push(b.str(kSection));
  return true;
}
bool BuildClientId(Builder& b) {  // CLIENT ID: the id broadcasts can exclude
  b.Push("CLIENT");
  b.Push("ID");
  return true;
}
bool BuildAuth(Builder& b) {
  b.PushName();
  b.Push(b.str(kPassword));
  return true;
}

constexpr Mask kKeyed = Fs_(kNs, kKey);
// The schema. To add an action (SUBSCRIBE, PUBLISH, ...): add its fields to
// Field/kFields if new, then one row here with a build function.
constexpr ActionSpec kActions[] = {
    {"PING", Fs_(kMessage, kEncoding), 0, BuildMessage},
    {"ECHO", Fs_(kMessage, kEncoding), F(kMessage), BuildMessage},
    {"GET", kKeyed | F(kEncoding), F(kKey), BuildKey},
    {"SET", kKeyed | Fs_(kValue, kTtl, kPx, kNx, kXx, kKeepTtl, kGet, kEncoding),
     Fs_(kKey, kValue), BuildSet},
    {"DEL", kKeyed | F(kKeys), 0, BuildKeyOrKeys},
    {"EXISTS", kKeyed | F(kKeys), 0, BuildKeyOrKeys},
    {"INCR", kKeyed, F(kKey), BuildKey},
    {"DECR", kKeyed, F(kKey), BuildKey},
    {"INCRBY", kKeyed | F(kBy), Fs_(kKey, kBy), BuildKeyBy},
    {"DECRBY", kKeyed | F(kBy), Fs_(kKey, kBy), BuildKeyBy},
    {"MGET", Fs_(kNs, kKeys, kEncoding), F(kKeys), BuildMget},
    {"MSET", Fs_(kNs, kItems, kEncoding), F(kItems), BuildMset},
    {"EXPIRE", kKeyed | F(kTtl), Fs_(kKey, kTtl), BuildKeyTtl},
    {"PEXPIRE", kKeyed | F(kTtl), Fs_(kKey, kTtl), BuildKeyTtl},
    {"TTL", kKeyed, F(kKey), BuildKey},
    {"PTTL", kKeyed, F(kKey), BuildKey},
    {"PERSIST", kKeyed, F(kKey), BuildKey},
    {"KEYS", Fs_(kNs, kPattern, kEncoding), 0, BuildKeys},
    {"SCAN", Fs_(kNs, kCursor, kMatch, kCount, kEncoding), 0, BuildScan},
    {"DBSIZE", 0, 0, BuildNameOnly},
    {"FLUSHDB", 0, 0, BuildNameOnly},
    {"FLUSHALL", 0, 0, BuildNameOnly},
    {"FLUSHNS", F(kNs), F(kNs), BuildFlushNs},
    {"INFO", F(kSection), 0, BuildInfo},
    {"AUTH", F(kPassword), F(kPassword), BuildAuth},
    {"QUIT", 0, 0, BuildNameOnly},
    {"CLIENT_ID", 0, 0, BuildClientId},
    // Pub/sub: run by the protocol handler (worker/proto_kvjson.cc), not the table.
    {"SUBSCRIBE", F(kChannel), F(kChannel), BuildChannel},
    {"UNSUBSCRIBE", F(kChannel), 0, BuildChannel},
    {"PUBLISH", Fs_(kChannel, kMessage, kEncoding), Fs_(kChannel, kMessage), BuildPublish},
};

const ActionSpec* FindAction(std::string_view name) {
  for (const ActionSpec& a : kActions) {
    if (a.name.size() != name.size()) continue;
    bool eq = true;
    for (size_t i = 0; i < name.size() && eq; i++) {
      char c = name[i];
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      eq = c == a.name[i];
    }
    if (eq) return &a;
  }
  return nullptr;
}

bool TypeOk(Type t, simdjson::dom::element e) {
  using simdjson::dom::element_type;
  switch (t) {
    case Type::kAny: return true;
    case Type::kString: return e.type() == element_type::STRING;
    case Type::kInt: return e.type() == element_type::INT64;
    case Type::kBool: return e.type() == element_type::BOOL;
    case Type::kStringArray: {
      if (e.type() != element_type::ARRAY) return false;
      simdjson::dom::array a = Arr(e);
      if (a.size() == 0) return false;
      for (simdjson::dom::element x : a)
        if (x.type() != element_type::STRING) return false;
      return true;
    }
    case Type::kItems: return e.type() == element_type::OBJECT || e.type() == element_type::ARRAY;
  }
  return false;
}

const char* TypeName(Type t) {
  switch (t) {
    case Type::kAny: return "a value";
    case Type::kString: return "a string";
    case Type::kInt: return "an integer";
    case Type::kBool: return "a boolean";
    case Type::kStringArray: return "a non-empty array of strings";
    case Type::kItems: return "an object or an array of [key, value] pairs";
  }
  return "?";
}

bool IsBlank(std::string_view s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\r') return false;
  return true;
}

}  // namespace

struct RequestParser::Impl {
  LimitsConf limits;
  simdjson::dom::parser parser;
  std::string padded;   // the line + SIMDJSON_PADDING
  std::string id;       // JSON text of the id
  std::string storage;  // argv bytes
  std::vector<std::pair<size_t, size_t>> offs;
  std::vector<std::string_view> argv;
  std::string prefix;
  std::string message;

  ParsedLine Error(ErrCode c, std::string m) {
    message = std::move(m);
    ParsedLine r;
    r.kind = ParsedLine::kError;
    r.id = id;
    r.error_code = c;
    r.error_message = message;
    return r;
  }
  ParsedLine Parse(std::string_view line);
};

RequestParser::RequestParser(const LimitsConf& limits) : impl_(std::make_unique<Impl>()) {
  impl_->limits = limits;
}
RequestParser::~RequestParser() = default;
ParsedLine RequestParser::Parse(std::string_view line) { return impl_->Parse(line); }

ParsedLine RequestParser::Impl::Parse(std::string_view line) {
  id.clear();
  storage.clear();
  offs.clear();
  argv.clear();
  prefix.clear();
  if (IsBlank(line)) return ParsedLine{};

  padded.assign(line);
  padded.append(simdjson::SIMDJSON_PADDING, '\0');
  simdjson::dom::element root;
  if (auto err = parser.parse(padded.data(), line.size(), false).get(root); err)
    return Error(ErrCode::kBadJson, std::string("invalid JSON: ") + simdjson::error_message(err));
  simdjson::dom::object obj;
  if (root.get_object().get(obj) != simdjson::SUCCESS)
    return Error(ErrCode::kErr, "a request must be a JSON object");

  Builder b;
  b.storage = &storage;
  b.offs = &offs;
  std::string_view unknown;
  bool duplicate = false;
  for (auto kv : obj) {
    size_t f = 0;
    while (f < kFieldCount && kFields[f].name != kv.key) f++;
    if (f == kFieldCount) {
      if (unknown.empty()) unknown = kv.key;
      continue;
    }
    if (b.present & F(Field(f))) {
      if (unknown.empty()) unknown = kv.key;
      duplicate = true;
      continue;
    }
    b.present |= F(Field(f));
    b.field[f] = kv.value;
  }

  // The id first, so every later error can echo it.
  if (b.has(kId)) {
    simdjson::dom::element e = b.field[kId];
    if (e.type() == simdjson::dom::element_type::INT64) {
      AppendInt(&id, Int(e));
    } else if (e.type() == simdjson::dom::element_type::UINT64) {
      uint64_t u = 0;
      [[maybe_unused]] auto err = e.get_uint64().get(u);
      id = std::to_string(u);
    } else if (e.type() == simdjson::dom::element_type::STRING) {
      AppendJsonString(&id, Str(e));
    } else {
      return Error(ErrCode::kErr, "field 'id' must be an integer or a string");
    }
  }
  if (!unknown.empty()) {
    std::string name = IsUtf8(unknown) ? std::string(unknown) : "?";
    return Error(ErrCode::kErr, duplicate ? "duplicate field '" + name + "'"
                                          : "unknown field '" + name + "'");
  }
  if (!b.has(kAction)) return Error(ErrCode::kErr, "missing required field 'action'");
  if (!TypeOk(Type::kString, b.field[kAction]))
    return Error(ErrCode::kErr, "field 'action' must be a string");
  std::string_view action_name = b.str(kAction);
  b.action = FindAction(action_name);
  if (b.action == nullptr) {
    std::string shown = IsUtf8(action_name) ? std::string(action_name.substr(0, 64)) : "?";
    return Error(ErrCode::kUnknownCommand, "unknown action '" + shown + "'");
  }
  const ActionSpec& a = *b.action;
  for (size_t f = kNs; f < kFieldCount; f++) {
    if (!(b.present & F(Field(f)))) continue;
    if (!(a.allowed & F(Field(f))))
      return Error(ErrCode::kErr, "unknown field '" + std::string(kFields[f].name) +
                                      "' for action " + std::string(a.name));
    if (!TypeOk(kFields[f].type, b.field[f]))
      return Error(ErrCode::kErr, "field '" + std::string(kFields[f].name) + "' must be " +
                                      TypeName(kFields[f].type));
  }
  for (size_t f = kNs; f < kFieldCount; f++)
    if ((a.required & F(Field(f))) && !(b.present & F(Field(f))))
      return Error(ErrCode::kErr, "missing required field '" + std::string(kFields[f].name) +
                                      "' for action " + std::string(a.name));

  if (b.has(kEncoding)) {
    std::string_view enc = b.str(kEncoding);
    if (enc == "base64") {
      b.encoding = Encoding::kBase64;
    } else if (enc != "utf8") {
      return Error(ErrCode::kErr, "field 'encoding' must be \"base64\" or \"utf8\"");
    }
  }
  if (b.has(kNs)) {
    std::string_view ns = b.str(kNs);
    if (ns.empty() || ns.find('^') != std::string_view::npos)
      return Error(ErrCode::kErr, "field 'ns' must be non-empty and must not contain '^'");
    if (a.build != BuildFlushNs) {
      prefix.assign(ns);
      prefix.push_back('^');
      b.prefix = prefix;
    }
  }

  if (!a.build(b)) return Error(b.code, std::move(b.message));

  for (const auto& [off, len] : offs) argv.emplace_back(storage.data() + off, len);
  ParsedLine r;
  r.kind = ParsedLine::kRequest;
  r.id = id;
  r.argv = argv;
  r.shape.encoding = b.encoding;
  r.shape.nil_is_not_found = a.build == BuildKey && a.name == "GET";
  if (a.build == BuildKeys || a.build == BuildScan) r.shape.strip_prefix = prefix;
  r.quit = a.name == "QUIT";
  return r;
}

}  // namespace pf::kvjson
