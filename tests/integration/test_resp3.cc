// tests/integration/test_resp3.cc: HELLO 3 / RESP3 on the real binary (2
// workers): the HELLO map, RESP3 nulls, maps and sets on the wire, pub/sub
// push frames across workers with any command allowed while subscribed,
// HELLO 2 back to RESP2, and redis-cli -3 reading all of it.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

// Reads one RESP2 or RESP3 value and renders it with its type visible:
// +OK, -ERR .., :5, $value, (nil) for $-1, _ for RESP3 null, ,1.5, #t,
// *[a,b] arrays, ~[a,b] sets, >[a,b] pushes, %{k:v,k:v} maps.
bool Read3(Client& c, std::string* out, int timeout_ms = 5000) {
  std::string line;
  if (!c.RecvLine(&line, timeout_ms) || line.empty()) return false;
  const char type = line[0];
  const std::string rest = line.substr(1);
  switch (type) {
    case '+':
    case '-':
    case ':':
    case ',':
    case '#':
      *out += line;
      return true;
    case '_':
      *out += "_";
      return true;
    case '$': {
      const long n = std::stol(rest);
      if (n < 0) {
        *out += "(nil)";
        return true;
      }
      std::string data;
      if (!c.RecvExact(static_cast<size_t>(n) + 2, &data, timeout_ms)) return false;
      *out += "$" + data.substr(0, static_cast<size_t>(n));
      return true;
    }
    case '*':
    case '~':
    case '>':
    case '%': {
      const long n = std::stol(rest);
      if (n < 0) {
        *out += "(nil-array)";
        return true;
      }
      const bool map = type == '%';
      *out += type;
      *out += map ? '{' : '[';
      for (long i = 0; i < n; i++) {
        if (i > 0) *out += ',';
        if (!Read3(c, out, timeout_ms)) return false;
        if (map) {
          *out += ':';
          if (!Read3(c, out, timeout_ms)) return false;
        }
      }
      *out += map ? '}' : ']';
      return true;
    }
    default:
      *out += "<unknown type " + line + ">";
      return false;
  }
}

std::string Next(Client& c, int timeout_ms = 5000) {
  std::string r;
  return Read3(c, &r, timeout_ms) ? r : "<no reply: " + r + ">";
}

std::string Cmd(Client& c, const std::vector<std::string>& argv) {
  if (!c.SendAll(Resp(argv))) return "<send failed>";
  return Next(c);
}

class Resp3Test : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<Server>(ListenerYaml("resp", "resp"), "", 2);
    ASSERT_TRUE(server_->Start());
  }
  uint16_t Port() const { return server_->Port("resp"); }
  std::string P() const { return std::to_string(Port()); }

  static int WorkerOf(Client& c) {
    const std::string info = Cmd(c, {"CLIENT", "INFO"});
    const size_t at = info.find("worker=");
    return at == std::string::npos ? -1 : std::atoi(info.c_str() + at + 7);
  }
  // A connection served by worker `slot`.
  Client On(int slot) {
    for (int i = 0; i < 200; i++) {
      Client c;
      if (!c.Connect(Port())) break;
      if (WorkerOf(c) == slot) return c;
    }
    ADD_FAILURE() << "no connection landed on worker " << slot;
    return Client();
  }
  // HELLO 3's reply with the connection id masked.
  static std::string HelloMap(const std::string& reply) {
    const size_t at = reply.find("$id::");
    if (at == std::string::npos) return reply;
    const size_t end = reply.find(',', at);
    return reply.substr(0, at + 5) + "N" + reply.substr(end);
  }

  std::unique_ptr<Server> server_;
};

TEST_F(Resp3Test, Hello3AnswersTheMapAndSwitchesTheConnection) {
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  EXPECT_EQ(Cmd(c, {"GET", "missing"}), "(nil)");  // RESP2 until HELLO 3
  EXPECT_EQ(HelloMap(Cmd(c, {"HELLO", "3"})),
            "%{$server:$redis,$version:$7.0.0,$proto::3,$id::N,$mode:$standalone,"
            "$role:$master,$modules:*[]}");
  EXPECT_EQ(Cmd(c, {"GET", "missing"}), "_");
  EXPECT_EQ(Cmd(c, {"MGET", "missing", "also"}), "*[_,_]");
  EXPECT_EQ(Cmd(c, {"SET", "k", "v"}), "+OK");
  EXPECT_EQ(Cmd(c, {"GET", "k"}), "$v");
  EXPECT_EQ(Cmd(c, {"INCRBYFLOAT", "f", "1.5"}), "$1.5");  // a bulk string in Redis 7 too
  EXPECT_EQ(Cmd(c, {"CONFIG", "GET", "maxmemory-policy"}), "%{$maxmemory-policy:$noeviction}");
  EXPECT_EQ(Cmd(c, {"COMMAND", "DOCS", "get"}), "%{}");
  const std::string info = Cmd(c, {"COMMAND", "INFO", "get"});
  EXPECT_EQ(info.substr(0, 39), "*[*[$get,:2,~[+readonly,+fast],:1,:1,:1");
  EXPECT_EQ(Cmd(c, {"SET", "a", "ohmytext"}), "+OK");
  EXPECT_EQ(Cmd(c, {"SET", "b", "mynewtext"}), "+OK");
  EXPECT_EQ(Cmd(c, {"LCS", "a", "b", "IDX"}),
            "%{$matches:*[*[*[:4,:7],*[:5,:8]],*[*[:2,:3],*[:0,:1]]],$len::6}");
  EXPECT_EQ(Cmd(c, {"PUBSUB", "NUMSUB", "x"}), "*[$x,:0]");  // an array in Redis 7 too
  // A refused HELLO keeps the protocol; the error texts are Redis'.
  EXPECT_EQ(Cmd(c, {"HELLO", "4"}), "-NOPROTO unsupported protocol version");
  EXPECT_EQ(Cmd(c, {"HELLO", "1"}), "-NOPROTO unsupported protocol version");
  EXPECT_EQ(Cmd(c, {"HELLO", "three"}), "-ERR Protocol version is not an integer or out of range");
  EXPECT_EQ(Cmd(c, {"GET", "missing"}), "_");
  // HELLO 2 switches back, and its reply is the RESP2 flat array.
  EXPECT_EQ(Cmd(c, {"HELLO", "2"}).substr(0, 30), "*[$server,$redis,$version,$7.0");
  EXPECT_EQ(Cmd(c, {"GET", "missing"}), "(nil)");
  EXPECT_EQ(Cmd(c, {"CONFIG", "GET", "maxmemory-policy"}), "*[$maxmemory-policy,$noeviction]");
}

// HELLO 3 pipelined with other commands: every reply after it is RESP3.
TEST_F(Resp3Test, Hello3InAPipelineTakesEffectAtOnce) {
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(c.SendAll(Resp({"GET", "x"}) + Resp({"HELLO", "3", "SETNAME", "r3"}) +
                        Resp({"GET", "x"}) + Resp({"CLIENT", "GETNAME"})));
  EXPECT_EQ(Next(c), "(nil)");
  EXPECT_EQ(Next(c).substr(0, 2), "%{");
  EXPECT_EQ(Next(c), "_");
  EXPECT_EQ(Next(c), "$r3");
  // Inside EXEC the replies keep their RESP3 types; a WATCH abort is _.
  EXPECT_EQ(Cmd(c, {"MULTI"}), "+OK");
  EXPECT_EQ(Cmd(c, {"GET", "x"}), "+QUEUED");
  EXPECT_EQ(Cmd(c, {"CONFIG", "GET", "maxmemory-policy"}), "+QUEUED");
  EXPECT_EQ(Cmd(c, {"EXEC"}), "*[_,%{$maxmemory-policy:$noeviction}]");
  Client other;
  ASSERT_TRUE(other.Connect(Port()));
  EXPECT_EQ(Cmd(c, {"WATCH", "w"}), "+OK");
  EXPECT_EQ(Cmd(other, {"SET", "w", "1"}), "+OK");
  EXPECT_EQ(Cmd(c, {"MULTI"}), "+OK");
  EXPECT_EQ(Cmd(c, {"GET", "w"}), "+QUEUED");
  EXPECT_EQ(Cmd(c, {"EXEC"}), "_");
}

// Redis 7.0 in RESP3: (un)subscribe confirmations and messages are push
// frames, and a subscribed connection may run any command.
TEST_F(Resp3Test, SubscribedResp3ConnectionGetsPushesAndRunsCommands) {
  Client sub = On(0), pub0 = On(0), pub1 = On(1);
  EXPECT_EQ(Cmd(sub, {"HELLO", "3"}).substr(0, 2), "%{");
  EXPECT_EQ(Cmd(sub, {"SUBSCRIBE", "news", "sport"}), ">[$subscribe,$news,:1]");
  EXPECT_EQ(Next(sub), ">[$subscribe,$sport,:2]");
  EXPECT_EQ(Cmd(sub, {"PSUBSCRIBE", "n*"}), ">[$psubscribe,$n*,:3]");
  EXPECT_EQ(Cmd(pub1, {"SET", "k", "v"}), "+OK");
  // The commands a RESP2 subscriber may not run.
  EXPECT_EQ(Cmd(sub, {"GET", "k"}), "$v");
  EXPECT_EQ(Cmd(sub, {"GET", "missing"}), "_");
  EXPECT_EQ(Cmd(sub, {"PING"}), "+PONG");  // not RESP2's ["pong", ""]
  // From the other worker and from this one.
  EXPECT_EQ(Cmd(pub1, {"PUBLISH", "news", "hello"}), ":2");  // news and n*
  EXPECT_EQ(Next(sub), ">[$message,$news,$hello]");
  EXPECT_EQ(Next(sub), ">[$pmessage,$n*,$news,$hello]");
  EXPECT_EQ(Cmd(pub0, {"PUBLISH", "sport", "goal"}), ":1");
  EXPECT_EQ(Next(sub), ">[$message,$sport,$goal]");
  // A command while messages arrive: each reply and each push stays whole.
  EXPECT_EQ(Cmd(pub1, {"PUBLISH", "sport", "again"}), ":1");
  ASSERT_TRUE(sub.SendAll(Resp({"GET", "k"})));
  std::vector<std::string> got = {Next(sub), Next(sub)};
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::string>{"$v", ">[$message,$sport,$again]"}));
  EXPECT_EQ(Cmd(sub, {"UNSUBSCRIBE"}), ">[$unsubscribe,$news,:2]");
  EXPECT_EQ(Next(sub), ">[$unsubscribe,$sport,:1]");
  EXPECT_EQ(Cmd(sub, {"PUNSUBSCRIBE"}), ">[$punsubscribe,$n*,:0]");
  EXPECT_EQ(Cmd(sub, {"UNSUBSCRIBE"}), ">[$unsubscribe,_,:0]");
  // RESET drops the subscriptions and goes back to RESP2 (Redis 7.0).
  EXPECT_EQ(Cmd(sub, {"SUBSCRIBE", "news"}), ">[$subscribe,$news,:1]");
  EXPECT_EQ(Cmd(sub, {"RESET"}), "+RESET");
  EXPECT_EQ(Cmd(sub, {"GET", "missing"}), "(nil)");
}

// The RESP2 rule still holds for a connection that went back with HELLO 2.
TEST_F(Resp3Test, Hello2WhileSubscribedRestoresTheResp2Rules) {
  Client sub;
  ASSERT_TRUE(sub.Connect(Port()));
  EXPECT_EQ(Cmd(sub, {"HELLO", "3"}).substr(0, 2), "%{");
  EXPECT_EQ(Cmd(sub, {"SUBSCRIBE", "c"}), ">[$subscribe,$c,:1]");
  EXPECT_EQ(Cmd(sub, {"HELLO", "2"}).substr(0, 2), "*[");  // Redis lets RESP3 run HELLO
  EXPECT_EQ(Cmd(sub, {"GET", "k"}),
            "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
            "RESET are allowed in this context");
  EXPECT_EQ(Cmd(sub, {"PING"}), "*[$pong,$]");
  Client pub;
  ASSERT_TRUE(pub.Connect(Port()));
  EXPECT_EQ(Cmd(pub, {"PUBLISH", "c", "m"}), ":1");
  EXPECT_EQ(Next(sub), "*[$message,$c,$m]");
}

// redis-cli -3 (hiredis in RESP3): the HELLO map, a null, a map reply.
TEST_F(Resp3Test, RedisCliResp3ReadsMapsAndNulls) {
  const std::string cli = "timeout 10 redis-cli -3 --no-raw -p " + P() + " ";
  std::string out;
  ASSERT_EQ(Sh(cli + "HELLO 3", &out), 0) << out;
  EXPECT_NE(out.find("1# \"server\" => \"redis\"\n"), std::string::npos) << out;
  EXPECT_NE(out.find("3# \"proto\" => (integer) 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("7# \"modules\" => (empty array)\n"), std::string::npos) << out;
  ASSERT_EQ(Sh(cli + "GET missing", &out), 0);
  EXPECT_EQ(out, "(nil)\n");
  ASSERT_EQ(Sh(cli + "CONFIG GET maxmemory-policy", &out), 0);
  EXPECT_EQ(out, "1# \"maxmemory-policy\" => \"noeviction\"\n");  // a map, not 1) 2)
  ASSERT_EQ(Sh(cli + "COMMAND INFO get", &out), 0);
  EXPECT_NE(out.find("1~ readonly"), std::string::npos) << out;  // a set
}

// redis-cli -3 SUBSCRIBE prints the pushes that PUBLISH on both workers sends.
TEST_F(Resp3Test, RedisCliResp3SubscribeReceivesPushes) {
  const std::string pidfile = server_->dir() + "/cli.pid";
  FILE* f = popen(("sh -c 'echo $$ > " + pidfile + "; exec timeout 10 redis-cli -3 -p " + P() +
                   " SUBSCRIBE cli3' 2>&1")
                      .c_str(),
                  "r");
  ASSERT_NE(f, nullptr);
  Client q;
  ASSERT_TRUE(q.Connect(Port()));
  ASSERT_TRUE(WaitFor([&] { return Cmd(q, {"PUBSUB", "NUMSUB", "cli3"}) == "*[$cli3,:1]"; }, 5000));
  Client p0 = On(0), p1 = On(1);
  EXPECT_EQ(Cmd(p0, {"PUBLISH", "cli3", "from-w0"}), ":1");
  EXPECT_EQ(Cmd(p1, {"PUBLISH", "cli3", "from-w1"}), ":1");
  std::string all;
  char line[512];
  while (all.find("from-w1") == std::string::npos && fgets(line, sizeof line, f)) all += line;
  pid_t cli = 0;
  std::ifstream(pidfile) >> cli;
  if (cli > 0) kill(cli, SIGTERM);  // timeout(1) ends redis-cli with it
  pclose(f);
  EXPECT_EQ(all, "subscribe\ncli3\n1\nmessage\ncli3\nfrom-w0\nmessage\ncli3\nfrom-w1\n");
}

}  // namespace
}  // namespace pf::test
