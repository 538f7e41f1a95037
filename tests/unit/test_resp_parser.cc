// tests/unit/test_resp_parser.cc: the RESP2 request parser and the RESP writer.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "worker/resp/parser.h"
#include "worker/resp/writer.h"

namespace pf {
namespace {

using Argv = std::vector<std::string>;

struct Outcome {
  std::vector<Argv> commands;
  std::string error;  // empty: none
  size_t left = 0;    // bytes still buffered at the end
  bool operator==(const Outcome&) const = default;
};

// Drives the parser as the worker does: append a chunk, parse until it needs
// more bytes than are buffered, drop what it consumed.
class Driver {
 public:
  explicit Driver(RespLimits l = {}) : p_(l) {}
  void Feed(std::string_view chunk) {
    buf_.append(chunk);
    while (out_.error.empty()) {
      RespParseResult r = p_.Parse(buf_);
      if (r.kind == RespParseResult::kError) {
        out_.error = std::string(r.error);
        break;
      }
      if (r.kind == RespParseResult::kCommand) {
        EXPECT_FALSE(r.argv.empty());
        Argv a;
        for (auto v : r.argv) a.emplace_back(v);
        out_.commands.push_back(std::move(a));
        buf_.erase(0, r.consumed);
        continue;
      }
      EXPECT_GT(r.need, buf_.size() - r.consumed);
      buf_.erase(0, r.consumed);
      break;
    }
    out_.left = buf_.size();
  }
  Outcome out() const { return out_; }
  RespParser& parser() { return p_; }

 private:
  RespParser p_;
  std::string buf_;
  Outcome out_;
};

Outcome Whole(std::string_view in, RespLimits l = {}) {
  Driver d(l);
  d.Feed(in);
  return d.out();
}

// Every split of `in` into two pieces, and byte by byte, gives the same outcome.
void ExpectSplitInvariant(std::string_view in, RespLimits l = {}) {
  Outcome whole = Whole(in, l);
  for (size_t cut = 0; cut <= in.size(); cut++) {
    Driver d(l);
    d.Feed(in.substr(0, cut));
    d.Feed(in.substr(cut));
    ASSERT_EQ(d.out(), whole) << "cut at " << cut;
  }
  Driver d(l);
  for (char c : in) d.Feed(std::string_view(&c, 1));
  ASSERT_EQ(d.out(), whole) << "byte by byte";
}

TEST(RespParser, MultibulkCommand) {
  Outcome o = Whole("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n");
  ASSERT_EQ(o.commands, (std::vector<Argv>{{"SET", "k", "hello"}}));
  EXPECT_EQ(o.left, 0u);
}

TEST(RespParser, EverySplitGivesSameArgv) {
  ExpectSplitInvariant("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$10\r\n0123456789\r\n");
  ExpectSplitInvariant("PING\r\nSET a \"b c\"\r\n*1\r\n$4\r\nPING\r\n\r\n*0\r\n");
  ExpectSplitInvariant("*2\r\n$3\r\nGET\r\n$x\r\n");
  ExpectSplitInvariant("SET \"unterminated\r\n");
}

TEST(RespParser, PipelinedCommandsComeOutInOrder) {
  std::string in;
  for (int i = 0; i < 100; i++) {
    std::string v = std::to_string(i);
    in += "*2\r\n$4\r\nECHO\r\n$" + std::to_string(v.size()) + "\r\n" + v + "\r\n";
    in += "PING " + v + "\n";
  }
  Outcome o = Whole(in);
  ASSERT_EQ(o.commands.size(), 200u);
  for (int i = 0; i < 100; i++) {
    EXPECT_EQ(o.commands[2 * i], (Argv{"ECHO", std::to_string(i)}));
    EXPECT_EQ(o.commands[2 * i + 1], (Argv{"PING", std::to_string(i)}));
  }
}

TEST(RespParser, ZeroCopyForMultibulk) {
  RespParser p;
  std::string in = "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
  RespParseResult r = p.Parse(in);
  ASSERT_EQ(r.kind, RespParseResult::kCommand);
  EXPECT_EQ(r.argv[1].data(), in.data() + 17);
  EXPECT_EQ(r.consumed, in.size());
}

TEST(RespParser, HugeArgcDoesNotPinMemoryForTheConnectionsLife) {
  RespParser p;
  std::string big = "*100000\r\n";
  for (int i = 0; i < 100000; i++) big += "$1\r\na\r\n";
  RespParseResult r = p.Parse(big);
  ASSERT_EQ(r.kind, RespParseResult::kCommand);
  ASSERT_EQ(r.argv.size(), 100000u);
  EXPECT_GE(p.retained_bytes(), 100000u * 2 * 16);  // offsets and views of every argument
  // The next command (the caller has used and dropped the big one) gives it back.
  std::string ping = "*1\r\n$4\r\nPING\r\n";
  r = p.Parse(ping);
  ASSERT_EQ(r.kind, RespParseResult::kCommand);
  EXPECT_EQ(r.argv[0], "PING");
  EXPECT_LT(p.retained_bytes(), 4096u * 2 * 16 + 64 * 1024);
  // Usual commands keep their buffers (no reallocation per command).
  std::string mid = "*100\r\n";
  for (int i = 0; i < 100; i++) mid += "$1\r\nb\r\n";
  ASSERT_EQ(p.Parse(mid).kind, RespParseResult::kCommand);
  size_t kept = p.retained_bytes();
  ASSERT_EQ(p.Parse(ping).kind, RespParseResult::kCommand);
  EXPECT_EQ(p.retained_bytes(), kept);
}

TEST(RespParser, BinarySafeBulks) {
  std::string v("a\r\nb\0c\r\n", 8);
  std::string in = "*2\r\n$4\r\nECHO\r\n$8\r\n" + v + "\r\n";
  Outcome o = Whole(in);
  ASSERT_EQ(o.commands.size(), 1u);
  EXPECT_EQ(o.commands[0][1], v);
  ExpectSplitInvariant(in);
}

TEST(RespParser, NeedReportsExactBulkSize) {
  RespParser p;
  std::string in = "*2\r\n$4\r\nECHO\r\n$100000\r\nabc";
  RespParseResult r = p.Parse(in);
  ASSERT_EQ(r.kind, RespParseResult::kNeedMore);
  EXPECT_EQ(r.consumed, 0u);
  EXPECT_EQ(r.need, 14u + 9u + 100000u + 2u);  // "$100000\r\n" is 9 bytes
}

TEST(RespParser, LargeBulkInTinyChunksIsLinear) {
  // 1 MiB arriving 16 bytes at a time: with `need`, the driver only calls
  // Parse when enough is buffered, so this completes quickly.
  const size_t n = 1 << 20;
  std::string in =
      "*2\r\n$3\r\nSET\r\n$" + std::to_string(n) + "\r\n" + std::string(n, 'x') + "\r\n";
  RespParser p;
  std::string buf;
  size_t calls = 0, need = 1;
  std::vector<std::string_view> got;
  for (size_t i = 0; i < in.size(); i += 16) {
    buf.append(in, i, 16);
    if (buf.size() < need) continue;
    calls++;
    RespParseResult r = p.Parse(buf);
    if (r.kind == RespParseResult::kNeedMore) {
      need = r.need;
      continue;
    }
    ASSERT_EQ(r.kind, RespParseResult::kCommand);
    EXPECT_EQ(r.argv[1].size(), n);
  }
  EXPECT_LT(calls, 10u);
}

TEST(RespParser, InlineSplitsLikeSdssplitargs) {
  Outcome o = Whole(
      "set  key   value\r\n"
      "set \"a b\" 'c d'\n"
      "echo \"\\x41\\x4a\\n\\t\\\\\\\"\"\r\n"
      "echo 'it\\'s'\r\n"
      "echo foo\"bar baz\"\r\n"
      "echo \"\\xZZ\"\r\n"
      "echo \"\"\r\n");
  ASSERT_EQ(o.error, "");
  std::vector<Argv> want = {{"set", "key", "value"},
                            {"set", "a b", "c d"},
                            {"echo", "AJ\n\t\\\""},
                            {"echo", "it's"},
                            {"echo", "foobar baz"},
                            {"echo", "xZZ"},  // not hex: "\\x" is just "x"
                            {"echo", ""}};
  EXPECT_EQ(o.commands, want);
}

TEST(RespParser, EmptyLinesAndEmptyMultibulkAreIgnored) {
  Outcome o = Whole("\r\n\n   \r\n*0\r\n*-1\r\nPING\r\n");
  EXPECT_EQ(o.commands, (std::vector<Argv>{{"PING"}}));
  EXPECT_EQ(o.left, 0u);
  // Ignored input is consumed even while waiting for more.
  RespParser p;
  RespParseResult r = p.Parse("\r\n*0\r\n*1\r\n$4\r\nPI");
  EXPECT_EQ(r.kind, RespParseResult::kNeedMore);
  EXPECT_EQ(r.consumed, 6u);
}

TEST(RespParser, ErrorTextsMatchRedis) {
  EXPECT_EQ(Whole("*20000000\r\n").error, "ERR Protocol error: invalid multibulk length");
  EXPECT_EQ(Whole("*x\r\n").error, "ERR Protocol error: invalid multibulk length");
  EXPECT_EQ(Whole("*01\r\n").error, "ERR Protocol error: invalid multibulk length");
  EXPECT_EQ(Whole("*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n").error,
            "ERR Protocol error: expected '$', got 'f'");
  EXPECT_EQ(Whole("*3\r\n$3\r\nSET\r\n$1\r\nx\r\n\r\n").error,
            "ERR Protocol error: expected '$', got ' '");
  EXPECT_EQ(Whole("*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n").error,
            "ERR Protocol error: invalid bulk length");
  EXPECT_EQ(Whole("*1\r\n$+1\r\nx\r\n").error, "ERR Protocol error: invalid bulk length");
  EXPECT_EQ(Whole("set \"foo\r\n").error, "ERR Protocol error: unbalanced quotes in request");
  EXPECT_EQ(Whole("set \"foo\"bar\r\n").error, "ERR Protocol error: unbalanced quotes in request");
  EXPECT_EQ(Whole("set 'foo\r\n").error, "ERR Protocol error: unbalanced quotes in request");
  RespLimits l;
  l.max_line_bytes = 16;
  EXPECT_EQ(Whole("*" + std::string(20, '1'), l).error,
            "ERR Protocol error: too big mbulk count string");
  EXPECT_EQ(Whole("*1\r\n$" + std::string(20, '1'), l).error,
            "ERR Protocol error: too big bulk count string");
  EXPECT_EQ(Whole(std::string(17, 'a'), l).error, "ERR Protocol error: too big inline request");
  EXPECT_EQ(Whole(std::string(30, 'a') + "\r\n", l).error,
            "ERR Protocol error: too big inline request");
  EXPECT_EQ(Whole(std::string(16, 'a') + "\n", l).commands.size(), 1u);
}

TEST(RespParser, ErrorIsFinal) {
  RespParser p;
  RespParseResult r = p.Parse("*x\r\n");
  ASSERT_EQ(r.kind, RespParseResult::kError);
  r = p.Parse("*x\r\nPING\r\n");
  ASSERT_EQ(r.kind, RespParseResult::kError);
  p.Reset();
  EXPECT_EQ(p.Parse("PING\r\n").kind, RespParseResult::kCommand);
}

TEST(RespParser, LimitsFromConfig) {
  LimitsConf c;
  c.max_bulk_bytes = 10;
  c.max_multibulk_len = 3;
  c.max_request_bytes = 79;  // each argument counts its bytes + 32
  RespLimits l = RespLimits::From(c);
  EXPECT_EQ(Whole("*1\r\n$10\r\n0123456789\r\n", l).commands.size(), 1u);
  EXPECT_EQ(Whole("*1\r\n$11\r\n", l).error, "ERR Protocol error: invalid bulk length");
  EXPECT_EQ(Whole("*3\r\n", l).left, 4u);
  EXPECT_EQ(Whole("*4\r\n", l).error, "ERR Protocol error: invalid multibulk length");
  EXPECT_EQ(Whole("*2\r\n$8\r\n01234567\r\n$8\r\n", l).error,
            "ERR Protocol error: too big request");
}

TEST(RespParser, UnauthenticatedLimits) {
  RespLimits l;
  RespParser p(l);
  p.set_auth_required(true);
  EXPECT_EQ(p.Parse("*11\r\n").error, "ERR Protocol error: unauthenticated multibulk length");
  RespParser q(l);
  q.set_auth_required(true);
  EXPECT_EQ(q.Parse("*2\r\n$16385\r\n").error, "ERR Protocol error: unauthenticated bulk length");
}

TEST(RespWriter, EncodesEveryReplyKind) {
  std::string out;
  RespStringWriter w(StringSink{&out});
  w.Status("OK");
  w.Error(ErrCode::kErr, "ERR bad\r\nthing");
  w.Integer(0);
  w.Integer(-42);
  w.Integer(INT64_MIN);
  w.Bulk("foo");
  w.Bulk("");
  w.Nil();
  w.NilArray();
  w.ArrayBegin(2);
  w.Bulk(std::string(1000, 'z'));
  w.Integer(7);
  EXPECT_EQ(out,
            "+OK\r\n-ERR bad  thing\r\n:0\r\n:-42\r\n:-9223372036854775808\r\n$3\r\nfoo\r\n"
            "$0\r\n\r\n$-1\r\n*-1\r\n*2\r\n$1000\r\n" +
                std::string(1000, 'z') + "\r\n:7\r\n");
}

// The RESP3 types in both protocols: RESP2 as Redis 7.0 renders them for a
// client that did not send HELLO 3 (map: flat array of 2n, set and push:
// array, double: bulk "%.17g", bool: integer), RESP3 with their own prefixes.
TEST(RespWriter, Resp3TypesInBothProtocols) {
  auto render = [](bool resp3) {
    std::string out;
    RespStringWriter w(StringSink{&out}, &resp3);
    w.Nil();
    w.NilArray();
    w.MapBegin(2);
    w.Bulk("a");
    w.Integer(1);
    w.Bulk("b");
    w.SetBegin(0);
    w.PushBegin(1);
    w.Bulk("x");
    w.Double(1.5);
    w.Double(0.1);
    w.Double(-3);
    w.Double(1e300 * 1e300);
    w.Double(-1e300 * 1e300);
    w.Bool(true);
    w.Bool(false);
    return out;
  };
  EXPECT_EQ(render(false),
            "$-1\r\n*-1\r\n*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n*0\r\n*1\r\n$1\r\nx\r\n"
            "$3\r\n1.5\r\n$19\r\n0.10000000000000001\r\n$2\r\n-3\r\n$3\r\ninf\r\n"
            "$4\r\n-inf\r\n:1\r\n:0\r\n");
  EXPECT_EQ(render(true),
            "_\r\n_\r\n%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n~0\r\n>1\r\n$1\r\nx\r\n"
            ",1.5\r\n,0.10000000000000001\r\n,-3\r\n,inf\r\n,-inf\r\n#t\r\n#f\r\n");
}

// The writer reads the connection's flag at every reply, so HELLO 3 in the
// middle of a pipeline takes effect from its own reply on.
TEST(RespWriter, FollowsTheProtocolFlag) {
  std::string out;
  bool resp3 = false;
  RespStringWriter w(StringSink{&out}, &resp3);
  w.Nil();
  resp3 = true;
  w.Nil();
  resp3 = false;
  w.MapBegin(0);
  EXPECT_EQ(out, "$-1\r\n_\r\n*0\r\n");
  std::string plain;
  RespStringWriter p(StringSink{&plain});  // no flag: RESP2
  p.MapBegin(1);
  p.Double(2.25);
  EXPECT_EQ(plain, "*2\r\n$4\r\n2.25\r\n");
}

TEST(RespWriter, OutputParsesBackToTheSameArgv) {
  std::string out;
  RespStringWriter w(StringSink{&out});
  Argv argv = {"SET", std::string("k\0\r\n", 4), std::string(300, 'v')};
  w.ArrayBegin(argv.size());
  for (auto& a : argv) w.Bulk(a);
  EXPECT_EQ(Whole(out).commands, std::vector<Argv>{argv});
}

}  // namespace
}  // namespace pf
