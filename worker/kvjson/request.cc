// worker/kvjson/request.cc: the kv-json request schema (request.h). The
// action table below is the schema: one row per action, with its allowed and
// required fields and the function that builds the command table's argv.
#include "worker/kvjson/request.h"

#include <simdjson.h>

#include <utility>
#include <vector>

#include "shared/util/strings.h"
#include "worker/json.h"

namespace pf::kvjson {

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
  kId,
  kAction,
  kNs,
  kKey,
  kKeys,
  kValue,
  kTtl,
  kPx,
  kNx,
  kXx,
  kKeepTtl,
  kGet,
  kBy,
  kItems,
  kPattern,
  kCursor,
  kMatch,
  kCount,
  kSection,
  kPassword,
  kMessage,
  kEncoding,
  kChannel,
  kFieldCount
};
enum class Type : uint8_t { kAny, kString, kInt, kBool, kStringArray, kItems };

struct FieldSpec {
  std::string_view name;
  Type type;
};
// Indexed by Field.
constexpr FieldSpec kFields[kFieldCount] = {
    {"id", Type::kAny},          {"action", Type::kString},    {"ns", Type::kString},
    {"key", Type::kString},      {"keys", Type::kStringArray}, {"value", Type::kString},
    {"ttl", Type::kInt},         {"px", Type::kInt},           {"nx", Type::kBool},
    {"xx", Type::kBool},         {"keepttl", Type::kBool},     {"get", Type::kBool},
    {"by", Type::kInt},          {"items", Type::kItems},      {"pattern", Type::kString},
    {"cursor", Type::kInt},      {"match", Type::kString},     {"count", Type::kInt},
    {"section", Type::kString},  {"password", Type::kString},  {"message", Type::kString},
    {"encoding", Type::kString}, {"channel", Type::kString},
};

using Mask = uint32_t;
constexpr Mask F(Field f) { return Mask{1} << f; }
template <typename... Fs>
constexpr Mask Fs_(Fs... fs) {
  return (Mask{0} | ... | F(fs));
}

struct Builder;
using BuildFn = bool (*)(Builder&);

struct ActionSpec {
  std::string_view name;
  Mask allowed;  // besides id and action
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
    AppendI64(storage, v);
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
    if (!json::DecodeBase64(v, storage)) {
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
      if (!b.PushValue(Str(kv.value), "items value")) return false;
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
      if (!b.PushValue(Str(v), "items value")) return false;
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
bool BuildClientList(Builder& b) {  // CLIENT LIST: every worker's clients
  b.Push("CLIENT");
  b.Push("LIST");
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
    {"SET", kKeyed | Fs_(kValue, kTtl, kPx, kNx, kXx, kKeepTtl, kGet, kEncoding), Fs_(kKey, kValue),
     BuildSet},
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
    {"CLIENT_LIST", 0, 0, BuildClientList},
    // Pub/sub: the table's commands; the reply is the subscription count.
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
    case Type::kAny:
      return true;
    case Type::kString:
      return e.type() == element_type::STRING;
    case Type::kInt:
      return e.type() == element_type::INT64;
    case Type::kBool:
      return e.type() == element_type::BOOL;
    case Type::kStringArray: {
      if (e.type() != element_type::ARRAY) return false;
      simdjson::dom::array a = Arr(e);
      if (a.size() == 0) return false;
      for (simdjson::dom::element x : a)
        if (x.type() != element_type::STRING) return false;
      return true;
    }
    case Type::kItems:
      return e.type() == element_type::OBJECT || e.type() == element_type::ARRAY;
  }
  return false;
}

const char* TypeName(Type t) {
  switch (t) {
    case Type::kAny:
      return "a value";
    case Type::kString:
      return "a string";
    case Type::kInt:
      return "an integer";
    case Type::kBool:
      return "a boolean";
    case Type::kStringArray:
      return "a non-empty array of strings";
    case Type::kItems:
      return "an object or an array of [key, value] pairs";
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

RequestParser::RequestParser(const LimitsConf&) {}
RequestParser::~RequestParser() = default;
ParsedLine RequestParser::Parse(std::string_view line) {
  if (!impl_) impl_ = std::make_unique<Impl>();
  return impl_->Parse(line);
}
void RequestParser::Trim() { impl_.reset(); }

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
      AppendI64(&id, Int(e));
    } else if (e.type() == simdjson::dom::element_type::UINT64) {
      uint64_t u = 0;
      [[maybe_unused]] auto err = e.get_uint64().get(u);
      id = std::to_string(u);
    } else if (e.type() == simdjson::dom::element_type::STRING) {
      json::AppendJsonString(&id, Str(e));
    } else {
      return Error(ErrCode::kErr, "field 'id' must be an integer or a string");
    }
  }
  if (!unknown.empty()) {
    std::string name = json::IsUtf8(unknown) ? std::string(unknown) : "?";
    return Error(ErrCode::kErr,
                 duplicate ? "duplicate field '" + name + "'" : "unknown field '" + name + "'");
  }
  if (!b.has(kAction)) return Error(ErrCode::kErr, "missing required field 'action'");
  if (!TypeOk(Type::kString, b.field[kAction]))
    return Error(ErrCode::kErr, "field 'action' must be a string");
  std::string_view action_name = b.str(kAction);
  b.action = FindAction(action_name);
  if (b.action == nullptr) {
    std::string shown = json::IsUtf8(action_name) ? std::string(action_name.substr(0, 64)) : "?";
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
  r.shape.count_only = a.build == BuildChannel;
  r.quit = a.name == "QUIT";
  return r;
}

}  // namespace pf::kvjson
