// tests/unit/test_kvjson.cc: kv-json framing, request schema -> argv, and the
// JSON reply writer.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "shared/util/line_framer.h"
#include "worker/json.h"
#include "worker/kvjson/request.h"
#include "worker/kvjson/writer.h"

namespace pf::kvjson {
namespace {

using json::AppendBase64;
using json::AppendJsonString;
using json::DecodeBase64;

using Argv = std::vector<std::string>;

Argv ArgvOf(const ParsedLine& p) {
  Argv a;
  for (auto v : p.argv) a.emplace_back(v);
  return a;
}

class KvJsonParse : public ::testing::Test {
 protected:
  Argv ArgvFor(std::string_view line) {
    ParsedLine p = parser_.Parse(line);
    EXPECT_EQ(p.kind, ParsedLine::kRequest) << line << ": " << p.error_message;
    return ArgvOf(p);
  }
  // "CODE: message" of a rejected line.
  std::string ErrorFor(std::string_view line) {
    ParsedLine p = parser_.Parse(line);
    EXPECT_EQ(p.kind, ParsedLine::kError) << line;
    return std::string(ErrCodeName(p.error_code)) + ": " + std::string(p.error_message);
  }
  RequestParser parser_;
};

TEST_F(KvJsonParse, EachActionMapsToItsCommand) {
  struct Case {
    const char* json;
    Argv argv;
  } cases[] = {
      {R"({"action":"PING"})", {"PING"}},
      {R"({"action":"PING","message":"hi"})", {"PING", "hi"}},
      {R"({"action":"ECHO","message":"hi"})", {"ECHO", "hi"}},
      {R"({"action":"GET","key":"k"})", {"GET", "k"}},
      {R"({"action":"get","ns":"users","key":"42"})", {"GET", "users^42"}},
      {R"({"id":7,"action":"SET","ns":"users","key":"42","value":"ann","ttl":60})",
       {"SET", "users^42", "ann", "EX", "60"}},
      {R"({"action":"SET","key":"k","value":"v","px":1500,"nx":true,"get":true})",
       {"SET", "k", "v", "PX", "1500", "NX", "GET"}},
      {R"({"action":"SET","key":"k","value":"v","xx":true,"keepttl":true,"nx":false})",
       {"SET", "k", "v", "XX", "KEEPTTL"}},
      {R"({"action":"DEL","key":"a"})", {"DEL", "a"}},
      {R"({"action":"DEL","ns":"n","keys":["a","b"]})", {"DEL", "n^a", "n^b"}},
      {R"({"action":"EXISTS","keys":["a","b"]})", {"EXISTS", "a", "b"}},
      {R"({"action":"INCR","key":"c"})", {"INCR", "c"}},
      {R"({"action":"DECR","key":"c"})", {"DECR", "c"}},
      {R"({"action":"INCRBY","key":"c","by":-5})", {"INCRBY", "c", "-5"}},
      {R"({"action":"DECRBY","key":"c","by":9223372036854775807})",
       {"DECRBY", "c", "9223372036854775807"}},
      {R"({"action":"MGET","ns":"n","keys":["a","b"]})", {"MGET", "n^a", "n^b"}},
      {R"({"action":"MSET","items":{"a":"1","b":"2"}})", {"MSET", "a", "1", "b", "2"}},
      {R"({"action":"MSET","ns":"n","items":[["a","1"],["b","2"]]})",
       {"MSET", "n^a", "1", "n^b", "2"}},
      {R"({"action":"EXPIRE","key":"k","ttl":10})", {"EXPIRE", "k", "10"}},
      {R"({"action":"PEXPIRE","key":"k","ttl":10})", {"PEXPIRE", "k", "10"}},
      {R"({"action":"TTL","key":"k"})", {"TTL", "k"}},
      {R"({"action":"PTTL","key":"k"})", {"PTTL", "k"}},
      {R"({"action":"PERSIST","key":"k"})", {"PERSIST", "k"}},
      {R"({"action":"KEYS"})", {"KEYS", "*"}},
      {R"({"action":"KEYS","ns":"a*b","pattern":"u?"})", {"KEYS", "a\\*b^u?"}},
      {R"({"action":"SCAN"})", {"SCAN", "0"}},
      {R"({"action":"SCAN","cursor":17,"match":"x*","count":100})",
       {"SCAN", "17", "MATCH", "x*", "COUNT", "100"}},
      {R"({"action":"SCAN","ns":"n"})", {"SCAN", "0", "MATCH", "n^*"}},
      {R"({"action":"DBSIZE"})", {"DBSIZE"}},
      {R"({"action":"FLUSHDB"})", {"FLUSHDB"}},
      {R"({"action":"FLUSHALL"})", {"FLUSHALL"}},
      {R"({"action":"FLUSHNS","ns":"users"})", {"FLUSHNS", "users"}},
      {R"({"action":"INFO"})", {"INFO"}},
      {R"({"action":"INFO","section":"keyspace"})", {"INFO", "keyspace"}},
      {R"({"action":"AUTH","password":"s3cret"})", {"AUTH", "s3cret"}},
      {R"({"action":"QUIT"})", {"QUIT"}},
  };
  for (const Case& c : cases) EXPECT_EQ(ArgvFor(c.json), c.argv) << c.json;
}

TEST_F(KvJsonParse, ShapesAndFlags) {
  ParsedLine p = parser_.Parse(R"({"action":"GET","key":"k"})");
  EXPECT_TRUE(p.shape.nil_is_not_found);
  p = parser_.Parse(R"({"action":"MGET","keys":["k"]})");
  EXPECT_FALSE(p.shape.nil_is_not_found);
  p = parser_.Parse(R"({"action":"KEYS","ns":"users"})");
  EXPECT_EQ(p.shape.strip_prefix, "users^");
  p = parser_.Parse(R"({"action":"QUIT"})");
  EXPECT_TRUE(p.quit);
}

TEST_F(KvJsonParse, SchemaErrors) {
  EXPECT_EQ(ErrorFor(R"({"key":"k"})"), "BAD_REQUEST: missing required field 'action'");
  EXPECT_EQ(ErrorFor(R"({"action":"GET"})"),
            "BAD_REQUEST: missing required field 'key' for action GET");
  EXPECT_EQ(ErrorFor(R"({"action":"SET","key":"k"})"),
            "BAD_REQUEST: missing required field 'value' for action SET");
  EXPECT_EQ(ErrorFor(R"({"action":7})"), "BAD_REQUEST: field 'action' must be a string");
  EXPECT_EQ(ErrorFor(R"({"action":"SET","key":"k","value":"v","ttl":"60"})"),
            "BAD_REQUEST: field 'ttl' must be an integer");
  EXPECT_EQ(ErrorFor(R"({"action":"SET","key":"k","value":"v","ttl":1.5})"),
            "BAD_REQUEST: field 'ttl' must be an integer");
  EXPECT_EQ(ErrorFor(R"({"action":"SET","key":"k","value":7})"),
            "BAD_REQUEST: field 'value' must be a string");
  EXPECT_EQ(ErrorFor(R"({"action":"SET","key":"k","value":"v","nx":1})"),
            "BAD_REQUEST: field 'nx' must be a boolean");
  EXPECT_EQ(ErrorFor(R"({"action":"MGET","keys":[]})"),
            "BAD_REQUEST: field 'keys' must be a non-empty array of strings");
  EXPECT_EQ(ErrorFor(R"({"action":"MGET","keys":["a",1]})"),
            "BAD_REQUEST: field 'keys' must be a non-empty array of strings");
  EXPECT_EQ(ErrorFor(R"({"action":"GET","key":"k","colour":"red"})"),
            "BAD_REQUEST: unknown field 'colour'");
  EXPECT_EQ(ErrorFor(R"({"action":"GET","key":"k","ttl":5})"),
            "BAD_REQUEST: unknown field 'ttl' for action GET");
  EXPECT_EQ(ErrorFor(R"({"action":"GET","key":"k","key":"j"})"),
            "BAD_REQUEST: duplicate field 'key'");
  EXPECT_EQ(ErrorFor(R"({"action":"FROB"})"), "UNKNOWN_ACTION: unknown action 'FROB'");
  EXPECT_EQ(ErrorFor(R"({"action":"DEL"})"),
            "BAD_REQUEST: exactly one of 'key' and 'keys' is required");
  EXPECT_EQ(ErrorFor(R"({"action":"DEL","key":"a","keys":["b"]})"),
            "BAD_REQUEST: exactly one of 'key' and 'keys' is required");
  EXPECT_EQ(ErrorFor(R"({"action":"GET","ns":"","key":"k"})"),
            "BAD_REQUEST: field 'ns' must be non-empty and must not contain '^'");
  EXPECT_EQ(ErrorFor(R"({"action":"GET","ns":"a^b","key":"k"})"),
            "BAD_REQUEST: field 'ns' must be non-empty and must not contain '^'");
  EXPECT_EQ(ErrorFor(R"({"action":"SET","key":"k","value":"v","ttl":1,"px":1})"),
            "BAD_REQUEST: 'ttl' and 'px' exclude each other");
  EXPECT_EQ(ErrorFor(R"({"action":"MSET","items":{}})"),
            "BAD_REQUEST: field 'items' must not be empty");
  EXPECT_EQ(ErrorFor(R"({"action":"MSET","items":[["a"]]})"),
            "BAD_REQUEST: field 'items' must hold [key, value] pairs of strings");
  EXPECT_EQ(ErrorFor(R"({"action":"MSET","items":{"a":1}})"),
            "BAD_REQUEST: field 'items' must map keys to strings");
  EXPECT_EQ(ErrorFor(R"({"action":"SET","key":"k","value":"v","encoding":"hex"})"),
            "BAD_REQUEST: field 'encoding' must be \"base64\" or \"utf8\"");
  EXPECT_EQ(ErrorFor(R"([1,2])"), "BAD_REQUEST: a request must be a JSON object");
  EXPECT_EQ(ErrorFor(R"({"id":1.5,"action":"PING"})"),
            "BAD_REQUEST: field 'id' must be an integer or a string");
  EXPECT_EQ(ErrorFor(R"({"action":"PING"} x)").substr(0, 10), "BAD_JSON: ");
  EXPECT_EQ(ErrorFor(R"({"action":"PING")").substr(0, 10), "BAD_JSON: ");
  EXPECT_EQ(ErrorFor("{\"action\":\"ECHO\",\"message\":\"\xff\"}").substr(0, 10), "BAD_JSON: ");
}

TEST_F(KvJsonParse, BlankLinesAreSkipped) {
  EXPECT_EQ(parser_.Parse("").kind, ParsedLine::kBlank);
  EXPECT_EQ(parser_.Parse(" \t\r").kind, ParsedLine::kBlank);
}

TEST_F(KvJsonParse, IdIsEchoedOnSuccessAndError) {
  ParsedLine p = parser_.Parse(R"({"id":7,"action":"PING"})");
  EXPECT_EQ(p.id, "7");
  p = parser_.Parse(R"({"id":"req-\"1\"","action":"PING"})");
  EXPECT_EQ(p.id, R"("req-\"1\"")");
  p = parser_.Parse(R"({"id":-3,"action":"NOPE"})");
  EXPECT_EQ(p.kind, ParsedLine::kError);
  EXPECT_EQ(p.id, "-3");
  p = parser_.Parse(R"({"id":18446744073709551615,"action":"GET"})");
  EXPECT_EQ(p.id, "18446744073709551615");
  std::string out;
  WriteJsonError(&out, p.id, p.error_code, p.error_message);
  EXPECT_EQ(out, R"({"id":18446744073709551615,"ok":false,"error":{"code":"BAD_REQUEST",)"
                 R"("message":"missing required field 'key' for action GET"}})"
                 "\n");
}

TEST_F(KvJsonParse, Base64Values) {
  EXPECT_EQ(ArgvFor(R"({"action":"SET","key":"k","value":"AAEC/w==","encoding":"base64"})"),
            (Argv{"SET", "k", std::string("\x00\x01\x02\xff", 4)}));
  EXPECT_EQ(ArgvFor(R"({"action":"MSET","items":{"a":"aGk="},"encoding":"base64"})"),
            (Argv{"MSET", "a", "hi"}));
  EXPECT_EQ(ErrorFor(R"({"action":"SET","key":"k","value":"AAE","encoding":"base64"})"),
            "BAD_REQUEST: value is not valid base64");
  EXPECT_EQ(ParsedLine{}.shape.encoding, Encoding::kUtf8);
  ParsedLine p = parser_.Parse(R"({"action":"GET","key":"k","encoding":"base64"})");
  EXPECT_EQ(p.shape.encoding, Encoding::kBase64);
}

TEST_F(KvJsonParse, EscapedJsonStringsBecomeBytes) {
  EXPECT_EQ(ArgvFor(R"({"action":"SET","key":"a\u0000b","value":"\n\u00e9\ud83d\ude00"})"),
            (Argv{"SET", std::string("a\0b", 3), "\n\xc3\xa9\xf0\x9f\x98\x80"}));
}

TEST(Base64, RoundTrip) {
  for (size_t n = 0; n < 40; n++) {
    std::string in;
    for (size_t i = 0; i < n; i++) in.push_back(static_cast<char>(i * 37 + 11));
    std::string enc, dec;
    AppendBase64(&enc, in);
    ASSERT_TRUE(DecodeBase64(enc, &dec));
    EXPECT_EQ(dec, in);
  }
  std::string d;
  EXPECT_FALSE(DecodeBase64("a=bc", &d));
  EXPECT_FALSE(DecodeBase64("ab=c", &d));
  EXPECT_FALSE(DecodeBase64("a===", &d));
  EXPECT_FALSE(DecodeBase64("ab!c", &d));
}

// ------------------------------------------------------------ reply writer

std::string Reply(std::string_view id, const ReplyShape& shape, void (*fill)(ReplyWriter&)) {
  std::string out;
  JsonReplyWriter w(&out);
  w.Begin(id, shape);
  fill(w);
  w.End();
  return out;
}

TEST(JsonReply, ValueKinds) {
  EXPECT_EQ(Reply("7", {}, [](ReplyWriter& w) { w.Status("OK"); }), "{\"id\":7,\"ok\":true}\n");
  EXPECT_EQ(Reply("", {}, [](ReplyWriter& w) { w.Status("PONG"); }),
            "{\"ok\":true,\"result\":\"PONG\"}\n");
  EXPECT_EQ(Reply("\"a\"", {}, [](ReplyWriter& w) { w.Integer(-12); }),
            "{\"id\":\"a\",\"ok\":true,\"result\":-12}\n");
  EXPECT_EQ(Reply("1", {}, [](ReplyWriter& w) { w.Bulk("ann"); }),
            "{\"id\":1,\"ok\":true,\"result\":\"ann\"}\n");
  EXPECT_EQ(Reply("1", {}, [](ReplyWriter& w) { w.Nil(); }),
            "{\"id\":1,\"ok\":true,\"result\":null}\n");
  EXPECT_EQ(Reply("1", {},
                  [](ReplyWriter& w) {
                    w.ArrayBegin(3);
                    w.Bulk("a");
                    w.ArrayBegin(0);
                    w.ArrayBegin(2);
                    w.Integer(1);
                    w.NilArray();
                  }),
            "{\"id\":1,\"ok\":true,\"result\":[\"a\",[],[1,null]]}\n");
  EXPECT_EQ(Reply("1", {},
                  [](ReplyWriter& w) {
                    w.Error(ErrCode::kNotInteger, "ERR value is not an integer or out of range");
                  }),
            "{\"id\":1,\"ok\":false,\"error\":{\"code\":\"NOT_INTEGER\",\"message\":\"value is not "
            "an integer or out of range\"}}\n");
  EXPECT_EQ(
      Reply("", {},
            [](ReplyWriter& w) { w.Error(ErrCode::kNoAuth, "NOAUTH Authentication required."); }),
      "{\"ok\":false,\"error\":{\"code\":\"NOAUTH\",\"message\":\"Authentication "
      "required.\"}}\n");
}

TEST(JsonReply, GetOfMissingKeyIsNotFoundButMgetGivesNull) {
  ReplyShape get;
  get.nil_is_not_found = true;
  EXPECT_EQ(Reply("2", get, [](ReplyWriter& w) { w.Nil(); }),
            "{\"id\":2,\"ok\":false,\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"key not "
            "found\"}}\n");
  EXPECT_EQ(Reply("3", {},
                  [](ReplyWriter& w) {
                    w.ArrayBegin(2);
                    w.Nil();
                    w.Bulk("x");
                  }),
            "{\"id\":3,\"ok\":true,\"result\":[null,\"x\"]}\n");
}

TEST(JsonReply, InvalidUtf8ComesBackAsBase64) {
  EXPECT_EQ(Reply("1", {}, [](ReplyWriter& w) { w.Bulk("\xff\x00\x01"); }),
            "{\"id\":1,\"ok\":true,\"result\":\"/w==\",\"encoding\":\"base64\"}\n");
  EXPECT_EQ(Reply("1", {}, [](ReplyWriter& w) { w.Bulk(std::string_view("\xff\x00\x01", 3)); }),
            "{\"id\":1,\"ok\":true,\"result\":\"/wAB\",\"encoding\":\"base64\"}\n");
  EXPECT_EQ(Reply("1", {},
                  [](ReplyWriter& w) {
                    w.ArrayBegin(2);
                    w.Bulk("ok");
                    w.Bulk("\xc3\x28");
                  }),
            "{\"id\":1,\"ok\":true,\"result\":[\"ok\",{\"base64\":\"wyg=\"}]}\n");
}

TEST(JsonReply, Base64RequestedGivesBase64Everywhere) {
  ReplyShape s;
  s.encoding = Encoding::kBase64;
  EXPECT_EQ(Reply("1", s,
                  [](ReplyWriter& w) {
                    w.ArrayBegin(2);
                    w.Bulk("hi");
                    w.Nil();
                  }),
            "{\"id\":1,\"ok\":true,\"result\":[\"aGk=\",null],\"encoding\":\"base64\"}\n");
}

TEST(JsonReply, NamespacePrefixIsStrippedFromKeys) {
  ReplyShape s;
  s.strip_prefix = "users^";
  EXPECT_EQ(Reply("1", s,
                  [](ReplyWriter& w) {
                    w.ArrayBegin(2);
                    w.Bulk("0");
                    w.ArrayBegin(2);
                    w.Bulk("users^1");
                    w.Bulk("users^2");
                  }),
            "{\"id\":1,\"ok\":true,\"result\":[\"0\",[\"1\",\"2\"]]}\n");
}

// RESP3's types as JSON: a map is an object (keys as strings), a set or push
// an array, a double a number (inf as a string), a bool true/false.
TEST(JsonReply, MapsSetsDoublesAndBools) {
  EXPECT_EQ(Reply("1", {},
                  [](ReplyWriter& w) {
                    w.MapBegin(5);
                    w.Bulk("proto");
                    w.Integer(3);
                    w.Bulk("modules");
                    w.ArrayBegin(0);
                    w.Integer(7);  // an integer key becomes a string
                    w.SetBegin(2);
                    w.Bulk("a");
                    w.Bool(true);
                    w.Bulk("inner");
                    w.MapBegin(1);
                    w.Bulk("x");
                    w.Double(1.5);
                    w.Bulk("\xff");  // not UTF-8
                    w.Double(1e300 * 1e300);
                  }),
            "{\"id\":1,\"ok\":true,\"result\":{\"proto\":3,\"modules\":[],\"7\":[\"a\",true],"
            "\"inner\":{\"x\":1.5},\"base64:/w==\":\"inf\"}}\n");
  EXPECT_EQ(Reply("1", {}, [](ReplyWriter& w) { w.MapBegin(0); }),
            "{\"id\":1,\"ok\":true,\"result\":{}}\n");
  EXPECT_EQ(Reply("1", {},
                  [](ReplyWriter& w) {
                    w.PushBegin(2);
                    w.Double(-0.25);
                    w.Bool(false);
                  }),
            "{\"id\":1,\"ok\":true,\"result\":[-0.25,false]}\n");
  // A map cut short still closes as an object.
  EXPECT_EQ(Reply("1", {},
                  [](ReplyWriter& w) {
                    w.MapBegin(2);
                    w.Bulk("a");
                    w.Integer(1);
                  }),
            "{\"id\":1,\"ok\":true,\"result\":{\"a\":1,\"\":null}}\n");
}

TEST(JsonReply, IncompleteReplyStaysValidJson) {
  EXPECT_EQ(Reply("1", {}, [](ReplyWriter&) {}), "{\"id\":1,\"ok\":true}\n");
  EXPECT_EQ(Reply("1", {},
                  [](ReplyWriter& w) {
                    w.ArrayBegin(3);
                    w.Integer(1);
                  }),
            "{\"id\":1,\"ok\":true,\"result\":[1,null,null]}\n");
  EXPECT_EQ(Reply("1", {},
                  [](ReplyWriter& w) {
                    w.Integer(1);
                    w.Integer(2);  // a second top-level value is dropped
                  }),
            "{\"id\":1,\"ok\":true,\"result\":1}\n");
}

TEST(JsonEscape, ControlCharactersAndQuotes) {
  std::string out;
  AppendJsonString(&out, std::string_view("a\"b\\c\n\r\t\b\f\x01\x1f\x7f\0z\xc3\xa9", 17));
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\x7f\\u0000z\xc3\xa9\"");
}

// ------------------------------------------------------------ line framing

struct FrameLog {
  std::vector<std::string> lines;  // "TOO_LONG" for a rejected line
  bool operator==(const FrameLog&) const = default;
};

void FeedFramer(LineFramer& f, std::string& buf, std::string_view chunk, FrameLog* log) {
  buf.append(chunk);
  for (;;) {
    LineFramer::Result r = f.Next(buf);
    if (r.kind == LineFramer::Result::kLine) log->lines.emplace_back(r.line);
    if (r.kind == LineFramer::Result::kTooLong) log->lines.emplace_back("TOO_LONG");
    buf.erase(0, r.consumed);
    if (r.kind == LineFramer::Result::kNeedMore) break;
  }
}

TEST(LineFramer, SplitsLinesAndRejectsLongOnesAcrossChunks) {
  std::string in = "short\r\n" + std::string(25, 'x') + "\n" + "ok\n" + std::string(10, 'y') +
                   "\r\n" + std::string(11, 'z') + "\r\n" + "\n" + "tail";
  FrameLog whole;
  {
    LineFramer f(10);
    std::string buf;
    FeedFramer(f, buf, in, &whole);
  }
  FrameLog want{{"short", "TOO_LONG", "ok", std::string(10, 'y'), "TOO_LONG", ""}};
  EXPECT_EQ(whole, want);
  for (size_t step = 1; step <= 7; step++) {
    LineFramer f(10);
    std::string buf;
    FrameLog log;
    size_t max_buffered = 0;
    for (size_t i = 0; i < in.size(); i += step) {
      FeedFramer(f, buf, std::string_view(in).substr(i, step), &log);
      max_buffered = std::max(max_buffered, buf.size());
    }
    EXPECT_EQ(log, want) << "step " << step;
    EXPECT_LE(max_buffered, 11u + step) << "a long line must not be buffered";
    EXPECT_EQ(buf, "tail");
  }
}

}  // namespace
}  // namespace pf::kvjson
