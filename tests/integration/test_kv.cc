// tests/integration/test_kv.cc: the shared-memory store served over resp and
// kv-json by the real binary (2 workers): every command on both protocols,
// pipelining, split reads, cross-worker visibility, concurrency, protocol
// errors, QUIT, AUTH, crash and reload survival, redis-cli and redis-benchmark.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

std::string Cmd(Client& c, const std::vector<std::string>& argv) {
  if (!c.SendAll(Resp(argv))) return "<send failed>";
  std::string r;
  return ReadReply(c, &r) ? r : "<no reply>";
}

std::string JsonCmd(Client& c, const std::string& line) {
  if (!c.SendAll(line + "\n")) return "<send failed>";
  std::string r;
  return c.RecvLine(&r) ? r : "<no reply>";
}

class KvTest : public ::testing::Test {
 protected:
  void StartServer(const std::string& extra = "") {
    server_ = std::make_unique<Server>(
        ListenerYaml("resp", "resp") + ListenerYaml("json", "kv-json"), extra, 2);
    ASSERT_TRUE(server_->Start());
  }
  void SetUp() override {
    if (std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()).find("Auth") ==
        std::string::npos)
      StartServer();
  }
  uint16_t RespPort() const { return server_->Port("resp"); }
  uint16_t JsonPort() const { return server_->Port("json"); }
  Client RespClient() {
    Client c;
    EXPECT_TRUE(c.Connect(RespPort()));
    return c;
  }
  Client JsonClient() {
    Client c;
    EXPECT_TRUE(c.Connect(JsonPort()));
    return c;
  }
  // The worker slot serving `c` (from CLIENT INFO).
  static int WorkerOf(Client& c) {
    const std::string info = Cmd(c, {"CLIENT", "INFO"});
    const size_t at = info.find("worker=");
    return at == std::string::npos ? -1 : std::atoi(info.c_str() + at + 7);
  }

  std::unique_ptr<Server> server_;
};

// ---------------------------------------------------------------------------
// Every command, both protocols. Each row runs in order on a flushed store.

struct RespCase {
  std::vector<std::string> argv;
  std::string want;
};

TEST_F(KvTest, RespCommandsReplyAsRedis) {
  const std::vector<RespCase> cases = {
      {{"FLUSHALL"}, "+OK"},
      {{"PING"}, "+PONG"},
      {{"PING", "hi"}, "$hi"},
      {{"ECHO", "hello"}, "$hello"},
      {{"SET", "r^a", "1"}, "+OK"},
      {{"GET", "r^a"}, "$1"},
      {{"GET", "r^missing"}, "(nil)"},
      {{"INCR", "r^a"}, ":2"},
      {{"INCRBY", "r^a", "10"}, ":12"},
      {{"DECR", "r^a"}, ":11"},
      {{"DECRBY", "r^a", "3"}, ":8"},
      {{"SET", "r^a", "x", "NX"}, "(nil)"},
      {{"SET", "r^a", "9", "XX", "GET"}, "$8"},
      {{"EXISTS", "r^a", "r^nope"}, ":1"},
      {{"MSET", "r^b", "2", "r^c", "3"}, "+OK"},
      {{"MGET", "r^b", "r^x", "r^c"}, "[$2,(nil),$3]"},
      {{"EXPIRE", "r^b", "100"}, ":1"},
      {{"TTL", "r^b"}, ":100"},
      {{"TTL", "r^nope"}, ":-2"},
      {{"PTTL", "r^a"}, ":-1"},
      {{"PERSIST", "r^b"}, ":1"},
      {{"TTL", "r^b"}, ":-1"},
      {{"PEXPIRE", "r^nope", "100"}, ":0"},
      {{"STRLEN", "r^c"}, ":1"},
      {{"SETNX", "r^c", "z"}, ":0"},
      {{"TYPE", "r^c"}, "+string"},
      {{"DBSIZE"}, ":3"},
      {{"KEYS", "r^[ax]"}, "[$r^a]"},
      {{"DEL", "r^a", "r^b", "r^nope"}, ":2"},
      {{"SET", "r^s", "text"}, "+OK"},
      {{"INCR", "r^s"}, "-ERR value is not an integer or out of range"},
      {{"GET"}, "-ERR wrong number of arguments for 'get' command"},
      {{"NOSUCH", "x"}, "-ERR unknown command 'NOSUCH', with args beginning with: 'x' "},
      {{"SET", "r^a", "1", "EX", "0"}, "-ERR invalid expire time in 'set' command"},
      {{"SELECT", "0"}, "+OK"},
      {{"FLUSHDB"}, "+OK"},
      {{"DBSIZE"}, ":0"},
  };
  Client c = RespClient();
  for (const auto& k : cases) {
    std::string shown;
    for (const auto& a : k.argv) shown += a + " ";
    EXPECT_EQ(Cmd(c, k.argv), k.want) << shown;
  }
  // SCAN: COUNT is a hint, so iterate until the cursor is back at 0.
  EXPECT_EQ(Cmd(c, {"MSET", "r^s1", "1", "r^s2", "2", "other", "3"}), "+OK");
  std::set<std::string> seen;
  std::string cursor = "0";
  for (int i = 0; i < 10000; i++) {
    const std::string r = Cmd(c, {"SCAN", cursor, "MATCH", "r^s*", "COUNT", "100"});
    ASSERT_EQ(r.rfind("[$", 0), 0u) << r;
    const size_t comma = r.find(',');
    cursor = r.substr(2, comma - 2);
    std::string keys = r.substr(comma + 2, r.size() - comma - 4);  // "$a,$b"
    for (size_t at = 0; at < keys.size();) {
      size_t end = keys.find(',', at);
      if (end == std::string::npos) end = keys.size();
      seen.insert(keys.substr(at + 1, end - at - 1));
      at = end + 1;
    }
    if (cursor == "0") break;
  }
  EXPECT_EQ(cursor, "0");
  EXPECT_EQ(seen, (std::set<std::string>{"r^s1", "r^s2"}));
  EXPECT_EQ(Cmd(c, {"FLUSHALL"}), "+OK");
  // Inline commands, as telnet users type them.
  ASSERT_TRUE(c.SendAll("SET r^inline \"two words\"\r\nGET r^inline\r\n"));
  std::string r;
  ASSERT_TRUE(ReadReply(c, &r));
  EXPECT_EQ(r, "+OK");
  ASSERT_TRUE(ReadReply(c, &r));
  EXPECT_EQ(r, "$two words");
}

TEST_F(KvTest, KvJsonActionsReplyAsDocumented) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"id":1,"action":"FLUSHALL"})", R"({"id":1,"ok":true})"},
      {R"({"id":2,"action":"PING"})", R"({"id":2,"ok":true,"result":"PONG"})"},
      {R"({"id":"s","action":"ECHO","message":"hi"})", R"({"id":"s","ok":true,"result":"hi"})"},
      {R"({"id":3,"action":"SET","ns":"j","key":"a","value":"1"})", R"({"id":3,"ok":true})"},
      {R"({"id":4,"action":"GET","ns":"j","key":"a"})", R"({"id":4,"ok":true,"result":"1"})"},
      {R"({"id":5,"action":"GET","key":"nope"})",
       R"({"id":5,"ok":false,"error":{"code":"NOT_FOUND","message":"key not found"}})"},
      {R"({"id":6,"action":"INCR","ns":"j","key":"a"})", R"({"id":6,"ok":true,"result":2})"},
      {R"({"id":7,"action":"INCRBY","ns":"j","key":"a","by":10})",
       R"({"id":7,"ok":true,"result":12})"},
      {R"({"id":8,"action":"DECR","ns":"j","key":"a"})", R"({"id":8,"ok":true,"result":11})"},
      {R"({"id":9,"action":"DECRBY","ns":"j","key":"a","by":3})",
       R"({"id":9,"ok":true,"result":8})"},
      {R"({"id":10,"action":"SET","ns":"j","key":"a","value":"x","nx":true})",
       R"({"id":10,"ok":true,"result":null})"},
      {R"({"id":11,"action":"EXISTS","ns":"j","keys":["a","nope"]})",
       R"({"id":11,"ok":true,"result":1})"},
      {R"({"id":12,"action":"MSET","ns":"j","items":{"b":"2","c":"3"}})", R"({"id":12,"ok":true})"},
      {R"({"id":13,"action":"MGET","ns":"j","keys":["b","x","c"]})",
       R"({"id":13,"ok":true,"result":["2",null,"3"]})"},
      {R"({"id":14,"action":"EXPIRE","ns":"j","key":"b","ttl":100})",
       R"({"id":14,"ok":true,"result":1})"},
      {R"({"id":15,"action":"TTL","ns":"j","key":"b"})", R"({"id":15,"ok":true,"result":100})"},
      {R"({"id":16,"action":"PTTL","ns":"j","key":"a"})", R"({"id":16,"ok":true,"result":-1})"},
      {R"({"id":17,"action":"PERSIST","ns":"j","key":"b"})", R"({"id":17,"ok":true,"result":1})"},
      {R"({"id":18,"action":"PEXPIRE","ns":"j","key":"nope","ttl":100})",
       R"({"id":18,"ok":true,"result":0})"},
      {R"({"id":19,"action":"DBSIZE"})", R"({"id":19,"ok":true,"result":3})"},
      {R"({"id":20,"action":"KEYS","ns":"j","pattern":"[ax]"})",
       R"({"id":20,"ok":true,"result":["a"]})"},
      {R"({"id":21,"action":"DEL","ns":"j","keys":["a","b","nope"]})",
       R"({"id":21,"ok":true,"result":2})"},
      {R"({"id":23,"action":"SET","ns":"j","key":"s","value":"text"})", R"({"id":23,"ok":true})"},
      {R"({"id":24,"action":"INCR","ns":"j","key":"s"})",
       R"({"id":24,"ok":false,"error":{"code":"NOT_INTEGER","message":"value is not an integer or out of range"}})"},
      {R"({"id":25,"action":"NOSUCH"})", ""},  // UNKNOWN_ACTION, message not pinned
      {R"({"id":26,"action":"GET"})", ""},     // BAD_REQUEST (missing key)
      {R"({"id":27,"action":"SET","ns":"j","key":"b","value":"AAEC/w==","encoding":"base64"})",
       R"({"id":27,"ok":true})"},
      {R"({"id":28,"action":"GET","ns":"j","key":"b","encoding":"base64"})",
       R"({"id":28,"ok":true,"result":"AAEC/w==","encoding":"base64"})"},
      {R"({"id":29,"action":"FLUSHDB"})", R"({"id":29,"ok":true})"},
      {R"({"id":30,"action":"DBSIZE"})", R"({"id":30,"ok":true,"result":0})"},
  };
  Client c = JsonClient();
  for (const auto& [req, want] : cases) {
    const std::string got = JsonCmd(c, req);
    if (!want.empty()) {
      EXPECT_EQ(got, want) << req;
    } else {
      EXPECT_NE(got.find("\"ok\":false"), std::string::npos) << req << " -> " << got;
    }
  }
  EXPECT_NE(JsonCmd(c, R"({"id":31,"action":"NOSUCH"})").find("UNKNOWN_ACTION"), std::string::npos);
  const std::string info = JsonCmd(c, R"({"id":32,"action":"INFO","section":"server"})");
  EXPECT_NE(info.find("redis_version"), std::string::npos) << info;
  // A bad line gets an error reply and the connection stays open.
  EXPECT_NE(JsonCmd(c, "this is not json").find("BAD_JSON"), std::string::npos);
  EXPECT_NE(JsonCmd(c, R"({"id":33,"action":"GET","key":"a","colour":"red"})").find("BAD_REQUEST"),
            std::string::npos);
  ASSERT_TRUE(c.SendAll("\n   \n"));  // blank lines: no reply
  EXPECT_EQ(JsonCmd(c, R"({"id":34,"action":"PING"})"), R"({"id":34,"ok":true,"result":"PONG"})");
}

TEST_F(KvTest, ProtocolsShareTheStoreAndBinaryValuesComeBackAsBase64) {
  Client r = RespClient();
  Client j = JsonClient();
  const std::string bad_utf8("\xff\x00\x01\xc3(", 5);
  EXPECT_EQ(Cmd(r, {"SET", "bin", bad_utf8}), "+OK");
  EXPECT_EQ(JsonCmd(j, R"({"id":1,"action":"GET","key":"bin"})"),
            R"({"id":1,"ok":true,"result":"/wABwyg=","encoding":"base64"})");
  EXPECT_EQ(Cmd(r, {"SET", "txt", "héllo"}), "+OK");
  EXPECT_EQ(JsonCmd(j, R"({"id":2,"action":"MGET","keys":["txt","bin"]})"),
            R"({"id":2,"ok":true,"result":["héllo",{"base64":"/wABwyg="}]})");
  EXPECT_EQ(JsonCmd(j, R"({"id":3,"action":"SET","ns":"users","key":"42","value":"ann"})"),
            R"({"id":3,"ok":true})");
  EXPECT_EQ(Cmd(r, {"GET", "users^42"}), "$ann");
}

// ---------------------------------------------------------------------------
// Framing: pipelining, split reads, backpressure.

TEST_F(KvTest, RespPipelinedCommandsAnswerInOrder) {
  Client c = RespClient();
  std::string batch;
  for (int i = 0; i < 50; i++)
    batch += Resp({"SET", "p" + std::to_string(i), "v" + std::to_string(i)});
  for (int i = 0; i < 50; i++) batch += Resp({"GET", "p" + std::to_string(i)});
  ASSERT_TRUE(c.SendAll(batch));
  for (int i = 0; i < 50; i++) {
    std::string r;
    ASSERT_TRUE(ReadReply(c, &r)) << i;
    EXPECT_EQ(r, "+OK");
  }
  for (int i = 0; i < 50; i++) {
    std::string r;
    ASSERT_TRUE(ReadReply(c, &r)) << i;
    EXPECT_EQ(r, "$v" + std::to_string(i));
  }
}

TEST_F(KvTest, RequestsSplitAtEveryByteBoundary) {
  const std::vector<std::pair<std::string, std::string>> resp = {
      {Resp({"SET", "split", std::string("a\r\nb\0c", 6)}), "+OK"},
      {Resp({"GET", "split"}), std::string("$a\r\nb\0c", 7)},
      {"INCR splitn\r\n", ":1"},
      {Resp({"MSET", "s1", "x", "s2", "yy"}), "+OK"},
  };
  Client c = RespClient();
  for (const auto& [req, want] : resp) {
    for (size_t cut = 1; cut < req.size(); cut++) {
      ASSERT_TRUE(c.SendAll(req.substr(0, cut)));
      std::string early;
      // Also gives the server time to read the first part on its own.
      EXPECT_FALSE(c.RecvSome(&early, 2)) << "reply before the request was complete: " << early;
      ASSERT_TRUE(c.SendAll(req.substr(cut)));
      std::string r;
      ASSERT_TRUE(ReadReply(c, &r));
      if (want == ":1") {
        EXPECT_EQ(r, ":" + std::to_string(cut)) << cut;
      } else {
        EXPECT_EQ(r, want) << "cut at " << cut;
      }
    }
  }
  // Byte by byte.
  const std::string all = Resp({"SET", "bb", "1"}) + Resp({"GET", "bb"});
  for (char ch : all) ASSERT_TRUE(c.SendAll(std::string_view(&ch, 1)));
  std::string r;
  ASSERT_TRUE(ReadReply(c, &r));
  EXPECT_EQ(r, "+OK");
  ASSERT_TRUE(ReadReply(c, &r));
  EXPECT_EQ(r, "$1");

  Client j = JsonClient();
  const std::string line = R"({"id":7,"action":"SET","key":"js","value":"v"})"
                           "\r\n";
  for (size_t cut = 1; cut < line.size(); cut++) {
    ASSERT_TRUE(j.SendAll(line.substr(0, cut)));
    std::string early;
    EXPECT_FALSE(j.RecvSome(&early, 2)) << early;
    ASSERT_TRUE(j.SendAll(line.substr(cut)));
    std::string got;
    ASSERT_TRUE(j.RecvLine(&got));
    EXPECT_EQ(got, R"({"id":7,"ok":true})") << "cut at " << cut;
  }
}

TEST_F(KvTest, LargeRepliesPauseReadingAndResume) {
  Client c = RespClient();
  const std::string big = RandomBytes(100 * 1024, 7);
  EXPECT_EQ(Cmd(c, {"SET", "big", big}), "+OK");
  // 200 GETs = 20 MB of replies, far over the 1 MB output high-water mark.
  std::string batch;
  for (int i = 0; i < 200; i++) batch += Resp({"GET", "big"});
  ASSERT_TRUE(c.SendAll(batch));
  for (int i = 0; i < 200; i++) {
    std::string r;
    ASSERT_TRUE(ReadReply(c, &r, 10000)) << i;
    ASSERT_EQ(r, "$" + big) << i;
  }
  EXPECT_EQ(Cmd(c, {"PING"}), "+PONG");
}

// Values far past a shard's arena live in the large-object area: with the
// default limits (16m values) a 10 MB value is written, read from the other
// worker, edited in place by the string commands, and removed.
TEST_F(KvTest, MultiMegabyteValuesWorkWithTheDefaults) {
  Client c = RespClient();
  const std::string big = RandomBytes(10 << 20, 11);
  EXPECT_EQ(Cmd(c, {"SET", "big", big}), "+OK");
  EXPECT_EQ(Cmd(c, {"STRLEN", "big"}), ":" + std::to_string(big.size()));
  const int slot = WorkerOf(c);
  std::vector<Client> others;
  for (int attempt = 0; attempt < 64; attempt++) {
    Client o = RespClient();
    if (WorkerOf(o) != slot) {
      others.push_back(std::move(o));
      break;
    }
  }
  ASSERT_FALSE(others.empty()) << "every connection landed on worker " << slot;
  EXPECT_TRUE(Cmd(others[0], {"GET", "big"}) == "$" + big) << "the other worker read other bytes";
  EXPECT_EQ(Cmd(c, {"GETRANGE", "big", "-3", "-1"}), "$" + big.substr(big.size() - 3));
  EXPECT_EQ(Cmd(c, {"SETRANGE", "big", "5", "XYZ"}), ":" + std::to_string(big.size()));
  EXPECT_EQ(Cmd(c, {"APPEND", "big", "tail"}), ":" + std::to_string(big.size() + 4));
  std::string want = big;
  want.replace(5, 3, "XYZ");
  want += "tail";
  EXPECT_TRUE(Cmd(others[0], {"GET", "big"}) == "$" + want);
  // Two of them at once, replaced, then freed: the area's figures follow.
  EXPECT_EQ(Cmd(c, {"SET", "big2", big}), "+OK");
  EXPECT_NE(Cmd(c, {"INFO", "memory"}).find("large_values:2"), std::string::npos);
  EXPECT_EQ(Cmd(c, {"SET", "big2", "small now"}), "+OK");
  EXPECT_EQ(Cmd(c, {"DEL", "big"}), ":1");
  EXPECT_NE(Cmd(c, {"INFO", "memory"}).find("large_values:0"), std::string::npos);
  EXPECT_EQ(Cmd(c, {"GET", "big2"}), "$small now");
  // Over the limit: nothing written, the error names the config key, and
  // the connection goes on.
  const std::string at_limit(16 << 20, 'L');
  EXPECT_EQ(Cmd(c, {"SET", "limit", at_limit}), "+OK");
  EXPECT_EQ(Cmd(c, {"APPEND", "limit", "+"}),
            "-ERR string exceeds maximum allowed size (kv.max_value_bytes)");
  EXPECT_EQ(Cmd(c, {"STRLEN", "limit"}), ":" + std::to_string(16 << 20));
  EXPECT_EQ(Cmd(c, {"PING"}), "+PONG");
}

// A reload cannot grow the store (shared_memory, kv.shards, kv.large_memory
// need a restart), so a value limit only a larger store could hold is not
// taken: the old limit keeps refusing with its clear error, instead of
// writes failing with OOM later.
TEST(KvReload, AValueLimitTheRunningStoreCannotHoldIsNotTaken) {
  const std::string resp = ListenerYaml("resp", "resp");
  Server s(resp, "", 2);
  ASSERT_TRUE(s.Start());
  s.RewriteConfig(resp,
                  "shared_memory: 512m\n"
                  "kv: {shards: 8, max_value_bytes: 64m, large_memory: 200m}\n"
                  "limits: {max_bulk_bytes: 64m, max_request_bytes: 128m}\n");
  const auto old = s.WorkerPids();
  s.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return s.GenerationUp(2, old); }, 10000));
  EXPECT_TRUE(s.WaitLog("do not fit the running store"));
  Client c;
  ASSERT_TRUE(c.Connect(s.Port("resp")));
  EXPECT_EQ(Cmd(c, {"SET", "k", std::string(25 << 20, 'v')}),
            "-ERR value is larger than max-value-bytes");
  EXPECT_EQ(Cmd(c, {"SET", "k", std::string(10 << 20, 'v')}), "+OK");
}

// INFO's instantaneous_ops_per_sec follows the load on any worker, and
// falls back to 0 when it stops.
TEST_F(KvTest, InstantaneousOpsFollowTheLoad) {
  auto ops = [this] {
    Client i = RespClient();
    const std::string info = Cmd(i, {"INFO", "stats"});
    const size_t at = info.find("instantaneous_ops_per_sec:");
    return at == std::string::npos ? -1 : std::atoll(info.c_str() + at + 26);
  };
  EXPECT_EQ(ops(), 0);
  std::atomic<bool> stop{false};
  std::thread load([&] {
    Client c = RespClient();
    std::string batch;
    for (int i = 0; i < 100; i++) batch += Resp({"INCR", "load"});
    while (!stop.load()) {
      if (!c.SendAll(batch)) return;
      for (int i = 0; i < 100; i++) {
        std::string r;
        if (!ReadReply(c, &r, 5000)) return;
      }
    }
  });
  EXPECT_TRUE(WaitFor([&] { return ops() > 1000; }, 5000, 100)) << ops();
  stop = true;
  load.join();
  // Polled every 200 ms, INFO itself is 5 requests a second.
  EXPECT_TRUE(WaitFor([&] { return ops() < 50; }, 5000, 200)) << ops();
  Client c = RespClient();
  const std::string info = Cmd(c, {"INFO", "stats"});
  EXPECT_NE(info.find("instantaneous_input_kbps:"), std::string::npos) << info;
  EXPECT_NE(info.find("instantaneous_output_kbps:"), std::string::npos) << info;
}

TEST_F(KvTest, RedisCliSetsAndGetsATenMegabyteValue) {
  const std::string in = server_->dir() + "/in", out = server_->dir() + "/out";
  {
    const std::string big = RandomBytes(10 << 20, 12);
    FILE* f = std::fopen(in.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(big.data(), 1, big.size(), f), big.size());
    std::fclose(f);
  }
  const std::string cli = "timeout 20 redis-cli -p " + std::to_string(RespPort()) + " ";
  std::string said;
  ASSERT_EQ(Sh(cli + "-x SET tenmb < " + in, &said), 0) << said;
  EXPECT_EQ(said, "OK\n");
  // --raw GET prints the bytes and a newline.
  ASSERT_EQ(Sh(cli + "--raw GET tenmb > " + out + " && truncate -s -1 " + out + " && cmp " + in +
                   " " + out + " && echo same",
               &said),
            0)
      << said;
  EXPECT_EQ(said, "same\n");
}

// ---------------------------------------------------------------------------
// Many writes, many workers, many clients.

TEST_F(KvTest, ThousandSetsReadableFromAnotherWorker) {
  Client w = RespClient();
  for (int i = 0; i < 1000; i++)
    ASSERT_EQ(Cmd(w, {"SET", "seq:" + std::to_string(i), std::to_string(i * 7)}), "+OK") << i;
  const int writer_slot = WorkerOf(w);
  ASSERT_GE(writer_slot, 0);
  // Find a connection served by the other worker (SO_REUSEPORT spreads them).
  Client other;
  bool found = false;
  for (int attempt = 0; attempt < 64 && !found; attempt++) {
    Client c = RespClient();
    if (WorkerOf(c) != writer_slot) {
      other = std::move(c);
      found = true;
    }
  }
  ASSERT_TRUE(found) << "every connection landed on worker " << writer_slot;
  std::vector<std::string> mget = {"MGET"};
  std::string want = "[";
  for (int i = 0; i < 1000; i++) {
    mget.push_back("seq:" + std::to_string(i));
    want += (i ? ",$" : "$") + std::to_string(i * 7);
  }
  want += "]";
  EXPECT_EQ(Cmd(other, mget), want);
  Client j = JsonClient();
  EXPECT_EQ(JsonCmd(j, R"({"action":"GET","key":"seq:999"})"), R"({"ok":true,"result":"6993"})");
}

TEST_F(KvTest, ConcurrentIncrsAreExact) {
  constexpr int kThreads = 8, kEach = 400;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      Client c;
      const bool json = t % 2 == 1;
      if (!c.Connect(json ? JsonPort() : RespPort())) {
        errors++;
        return;
      }
      for (int i = 0; i < kEach; i++) {
        const std::string r =
            json ? JsonCmd(c, R"({"action":"INCR","key":"counter"})") : Cmd(c, {"INCR", "counter"});
        if (json ? r.find("\"ok\":true") == std::string::npos : r.empty() || r[0] != ':') errors++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  Client c = RespClient();
  EXPECT_EQ(Cmd(c, {"GET", "counter"}), "$" + std::to_string(kThreads * kEach));
}

TEST_F(KvTest, KvJsonPipelineOfThousandAnswersInOrder) {
  Client c = JsonClient();
  std::string batch;
  for (int i = 1; i <= 1000; i++) {
    if (i % 3 == 0)
      batch += R"({"id":)" + std::to_string(i) +
               R"(,"action":"INCR","key":"jp"})"
               "\n";
    else if (i % 3 == 1)
      batch += R"({"id":)" + std::to_string(i) + R"(,"action":"SET","key":"k)" + std::to_string(i) +
               R"(","value":"v"})"
               "\n";
    else
      batch += R"({"id":)" + std::to_string(i) + R"(,"action":"GET","key":"k)" +
               std::to_string(i - 1) +
               R"("})"
               "\n";
  }
  ASSERT_TRUE(c.SendAll(batch));
  int incr = 0;
  for (int i = 1; i <= 1000; i++) {
    std::string got;
    ASSERT_TRUE(c.RecvLine(&got)) << i;
    const std::string id = R"({"id":)" + std::to_string(i) + ",";
    if (i % 3 == 0)
      EXPECT_EQ(got, id + R"("ok":true,"result":)" + std::to_string(++incr) + "}");
    else if (i % 3 == 1)
      EXPECT_EQ(got, id + R"("ok":true})");
    else
      EXPECT_EQ(got, id + R"("ok":true,"result":"v"})");
  }
}

// ---------------------------------------------------------------------------
// Errors and closing.

TEST_F(KvTest, RespProtocolErrorsGiveRedisTextsAndClose) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"*abc\r\n", "-ERR Protocol error: invalid multibulk length"},
      {"*1\r\nx\r\n", "-ERR Protocol error: expected '$', got 'x'"},
      {"*1\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length"},
      {"*1\r\n$abc\r\n", "-ERR Protocol error: invalid bulk length"},
      {"SET \"a b\r\n", "-ERR Protocol error: unbalanced quotes in request"},
  };
  for (const auto& [req, want] : cases) {
    Client c = RespClient();
    // Commands before the bad one run and answer first.
    ASSERT_TRUE(c.SendAll(Resp({"SET", "before", "1"}) + req));
    std::string r;
    ASSERT_TRUE(ReadReply(c, &r));
    EXPECT_EQ(r, "+OK");
    ASSERT_TRUE(c.RecvLine(&r));
    EXPECT_EQ(r, want) << req;
    EXPECT_TRUE(c.WaitClosed()) << req;
  }
  // The worker is fine afterwards.
  Client c = RespClient();
  EXPECT_EQ(Cmd(c, {"GET", "before"}), "$1");
}

TEST_F(KvTest, QuitStopsPipelinedCommands) {
  Client c = RespClient();
  ASSERT_TRUE(c.SendAll(Resp({"SET", "q1", "1"}) + Resp({"QUIT"}) + Resp({"SET", "q2", "2"})));
  std::string r;
  ASSERT_TRUE(ReadReply(c, &r));
  EXPECT_EQ(r, "+OK");
  ASSERT_TRUE(ReadReply(c, &r));
  EXPECT_EQ(r, "+OK");
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ(c.buffered(), "");

  Client j = JsonClient();
  ASSERT_TRUE(j.SendAll(R"({"id":1,"action":"SET","key":"q3","value":"3"})"
                        "\n"
                        R"({"id":2,"action":"QUIT"})"
                        "\n"
                        R"({"id":3,"action":"SET","key":"q4","value":"4"})"
                        "\n"));
  ASSERT_TRUE(j.RecvLine(&r));
  EXPECT_EQ(r, R"({"id":1,"ok":true})");
  ASSERT_TRUE(j.RecvLine(&r));
  EXPECT_EQ(r, R"({"id":2,"ok":true})");
  EXPECT_TRUE(j.WaitClosed());
  EXPECT_EQ(j.buffered(), "");

  Client check = RespClient();
  EXPECT_EQ(Cmd(check, {"MGET", "q1", "q2", "q3", "q4"}), "[$1,(nil),$3,(nil)]");
}

TEST_F(KvTest, KvJsonLineTooLongThenConnectionStillWorks) {
  Client c = JsonClient();
  const std::string huge(100 * 1024, 'x');  // over the default 64 KiB max_line_bytes
  ASSERT_TRUE(c.SendAll(R"({"id":1,"action":"ECHO","message":")" + huge + "\"}\n" +
                        R"({"id":2,"action":"PING"})"
                        "\n"));
  std::string r;
  ASSERT_TRUE(c.RecvLine(&r));
  EXPECT_EQ(r.rfind(R"({"ok":false,"error":{"code":"LINE_TOO_LONG","message":)", 0), 0u) << r;
  ASSERT_TRUE(c.RecvLine(&r));
  EXPECT_EQ(r, R"({"id":2,"ok":true,"result":"PONG"})");
}

TEST_F(KvTest, AuthGatesBothProtocols) {
  StartServer("kv:\n  password: s3cret\n");
  Client c = RespClient();
  EXPECT_EQ(Cmd(c, {"GET", "a"}), "-NOAUTH Authentication required.");
  EXPECT_EQ(Cmd(c, {"AUTH", "wrong"}),
            "-WRONGPASS invalid username-password pair or user is disabled.");
  EXPECT_EQ(Cmd(c, {"PING"}), "-NOAUTH Authentication required.");
  EXPECT_EQ(Cmd(c, {"AUTH", "s3cret"}), "+OK");
  EXPECT_EQ(Cmd(c, {"SET", "a", "1"}), "+OK");
  // Once authenticated, long commands are fine.
  std::vector<std::string> mset = {"MSET"};
  for (int i = 0; i < 20; i++) mset.push_back("m" + std::to_string(i / 2));
  EXPECT_EQ(Cmd(c, mset), "+OK");

  // Before AUTH, Redis' unauthenticated limits apply.
  Client u = RespClient();
  ASSERT_TRUE(u.SendAll("*11\r\n"));
  std::string r;
  ASSERT_TRUE(u.RecvLine(&r));
  EXPECT_EQ(r, "-ERR Protocol error: unauthenticated multibulk length");
  EXPECT_TRUE(u.WaitClosed());

  Client j = JsonClient();
  EXPECT_NE(JsonCmd(j, R"({"id":1,"action":"GET","key":"a"})").find(R"("code":"NOAUTH")"),
            std::string::npos);
  EXPECT_NE(
      JsonCmd(j, R"({"id":2,"action":"AUTH","password":"nope"})").find(R"("code":"WRONGPASS")"),
      std::string::npos);
  EXPECT_EQ(JsonCmd(j, R"({"id":3,"action":"AUTH","password":"s3cret"})"), R"({"id":3,"ok":true})");
  EXPECT_EQ(JsonCmd(j, R"({"id":4,"action":"GET","key":"a"})"),
            R"({"id":4,"ok":true,"result":"1"})");

  std::string out;
  EXPECT_EQ(Sh("timeout 10 redis-cli --no-auth-warning -a s3cret -p " + std::to_string(RespPort()) +
                   " GET a",
               &out),
            0);
  EXPECT_EQ(out, "1\n");
}

// ---------------------------------------------------------------------------
// The store outlives workers.

TEST_F(KvTest, StoreSurvivesWorkerKill9) {
  Client c = RespClient();
  EXPECT_EQ(Cmd(c, {"SET", "survivor", "alive"}), "+OK");
  const std::vector<pid_t> before = server_->WorkerPids();
  ASSERT_EQ(before.size(), 2u);
  for (pid_t p : before) ASSERT_EQ(kill(p, SIGKILL), 0);
  ASSERT_TRUE(WaitFor([&] { return server_->GenerationUp(2, before); }, 10000));
  ASSERT_TRUE(WaitFor(
      [&] {
        Client n;
        return n.Connect(RespPort(), 500) && Cmd(n, {"GET", "survivor"}) == "$alive";
      },
      5000));
  Client j = JsonClient();
  EXPECT_EQ(JsonCmd(j, R"({"action":"GET","key":"survivor"})"), R"({"ok":true,"result":"alive"})");
  Client n = RespClient();
  EXPECT_EQ(Cmd(n, {"INCR", "after-crash"}), ":1");
}

TEST_F(KvTest, StoreSurvivesReloadAndOldConnectionsKeepServing) {
  Client c = RespClient();
  Client j = JsonClient();
  EXPECT_EQ(Cmd(c, {"SET", "reloaded", "yes"}), "+OK");
  const std::vector<pid_t> before = server_->WorkerPids();
  server_->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return server_->GenerationUp(2, before); }, 10000));
  // Connections of the retiring generation still answer (drain), then close
  // when the drain timeout (2 s in tests) ends.
  EXPECT_EQ(Cmd(c, {"GET", "reloaded"}), "$yes");
  EXPECT_EQ(JsonCmd(j, R"({"action":"GET","key":"reloaded"})"), R"({"ok":true,"result":"yes"})");
  Client n = RespClient();
  EXPECT_EQ(Cmd(n, {"GET", "reloaded"}), "$yes");
  EXPECT_TRUE(c.WaitClosed(5000));
  EXPECT_TRUE(j.WaitClosed(5000));
  std::string info = Cmd(n, {"INFO", "server"});
  EXPECT_NE(info.find("reloads:1"), std::string::npos) << info;
}

// ---------------------------------------------------------------------------
// Real clients.

TEST_F(KvTest, RedisCliWorks) {
  const std::string cli = "timeout 10 redis-cli -p " + std::to_string(RespPort()) + " ";
  std::string out;
  EXPECT_EQ(Sh(cli + "SET a b", &out), 0);
  EXPECT_EQ(out, "OK\n");
  EXPECT_EQ(Sh(cli + "GET a", &out), 0);
  EXPECT_EQ(out, "b\n");
  EXPECT_EQ(Sh(cli + "--no-raw PING", &out), 0);
  EXPECT_EQ(out, "PONG\n");
  EXPECT_EQ(Sh(cli + "INFO server", &out), 0);
  EXPECT_NE(out.find("redis_version:"), std::string::npos) << out;
  EXPECT_NE(out.find("tcp_port:" + std::to_string(RespPort())), std::string::npos) << out;
  EXPECT_EQ(Sh(cli + "INCRBY n 5", &out), 0);
  EXPECT_EQ(out, "5\n");
}

void RunBenchmark(uint16_t port, const std::string& extra) {
  std::string out;
  const int rc = Sh("timeout 60 redis-benchmark -p " + std::to_string(port) +
                        " -t set,get,incr,mset -n 20000 -c 20 -q " + extra,
                    &out);
  EXPECT_EQ(rc, 0) << out;
  // Progress lines end in '\r'; the final line of each test ends in '\n'.
  std::set<std::string> done;
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find_first_of("\r\n", start);
    if (end == std::string::npos) end = out.size();
    std::string line = out.substr(start, end - start);
    start = end + 1;
    if (line.find("requests per second") != std::string::npos &&
        line.find("rps=") == std::string::npos)
      done.insert(
          line.substr(line.find_first_not_of(' '), line.find(':') - line.find_first_not_of(' ')));
    EXPECT_EQ(line.find("rror"), std::string::npos) << line;
  }
  EXPECT_EQ(done, (std::set<std::string>{"SET", "GET", "INCR", "MSET (10 keys)"})) << out;
}

TEST_F(KvTest, RedisBenchmarkRunsWithoutErrors) {
  RunBenchmark(RespPort(), "");
  RunBenchmark(RespPort(), "-P 16");
  Client c = RespClient();
  EXPECT_EQ(Cmd(c, {"GET", "counter:__rand_int__"}).substr(0, 1), "$");
}

}  // namespace
}  // namespace pf::test
