// tests/integration/test_dispatch.cc: one command table for every protocol,
// seen from outside: HTTP /kv asks for kv.password as RESP and kv-json do
// (curl with Basic and Bearer credentials), COMMAND lists the pub/sub
// commands, and INFO commandstats counts each command once whatever protocol
// ran it, over both workers.
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

constexpr const char* kPassword = "s3cret pass";

struct CurlResult {
  int status = 0;
  std::string body;
  std::string headers;
};

// curl against the http listener: `args` go before the URL (quoted by the caller).
CurlResult Curl(uint16_t port, const std::string& args, const std::string& path) {
  CurlResult r;
  std::string out;
  const std::string cmd = "timeout 10 curl -s -D - -o - -w '\\n%{http_code}' " + args +
                          " 'http://127.0.0.1:" + std::to_string(port) + path + "'";
  Sh(cmd, &out);
  const size_t last_nl = out.rfind('\n');
  if (last_nl == std::string::npos) return r;
  r.status = std::atoi(out.c_str() + last_nl + 1);
  out.resize(last_nl);
  const size_t split = out.find("\r\n\r\n");
  if (split == std::string::npos) return r;
  r.headers = out.substr(0, split);
  r.body = out.substr(split + 4);
  return r;
}

// "cmdstat_get:calls=3,usec=..,usec_per_call=..,rejected_calls=0,failed_calls=0" -> fields.
std::map<std::string, long> CmdStat(const std::string& info, const std::string& name) {
  std::map<std::string, long> f;
  const std::string key = "cmdstat_" + name + ":";
  const size_t at = info.find(key);
  if (at == std::string::npos) return f;
  const size_t end = info.find('\r', at);
  std::string line = info.substr(at + key.size(), end - at - key.size());
  std::regex kv(R"((\w+)=([0-9.]+))");
  for (auto it = std::sregex_iterator(line.begin(), line.end(), kv); it != std::sregex_iterator();
       ++it)
    f[(*it)[1]] = std::atol((*it)[2].str().c_str());
  return f;
}

class DispatchTest : public ::testing::Test {
 protected:
  void Start(const std::string& extra = "") {
    const std::string www = SourceRoot() + "/conf/www";
    server_ =
        std::make_unique<Server>(ListenerYaml("resp", "resp") + ListenerYaml("json", "kv-json") +
                                     ListenerYaml("http", "http", 0, "root: " + www),
                                 extra, 2);
    ASSERT_TRUE(server_->Start());
  }
  Client Connect(const std::string& listener) {
    Client c;
    EXPECT_TRUE(c.Connect(server_->Port(listener)));
    return c;
  }
  uint16_t HttpPort() const { return server_->Port("http"); }

  std::unique_ptr<Server> server_;
};

TEST_F(DispatchTest, KvOverHttpNeedsThePasswordWhenOneIsSet) {
  Start(std::string("kv: {password: '") + kPassword + "'}\n");
  const uint16_t port = HttpPort();
  const std::string basic = std::string("-u 'default:") + kPassword + "'";
  const std::string bearer = std::string("-H 'Authorization: Bearer ") + kPassword + "'";

  // Every verb and the listing, without credentials: 401 asking for Basic.
  for (const std::string& req :
       {std::string("-X GET"), std::string("-X PUT --data-binary v"), std::string("-X DELETE")}) {
    const CurlResult r = Curl(port, req, "/kv/doc");
    EXPECT_EQ(r.status, 401) << req;
    EXPECT_NE(r.headers.find("WWW-Authenticate: Basic realm=\"preforkd\""), std::string::npos)
        << r.headers;
  }
  EXPECT_EQ(Curl(port, "", "/kv/?prefix=d").status, 401);
  EXPECT_EQ(Curl(port, "", "/kv/ns/doc").status, 401);
  // Wrong credentials, either scheme: the same 401, no hint which part was wrong.
  EXPECT_EQ(Curl(port, "-u 'default:nope'", "/kv/doc").status, 401);
  EXPECT_EQ(Curl(port, "-H 'Authorization: Bearer nope'", "/kv/doc").status, 401);
  EXPECT_EQ(Curl(port, "-H 'Authorization: Bearer'", "/kv/doc").status, 401);
  EXPECT_EQ(Curl(port, "-H 'Authorization: Digest x'", "/kv/doc").status, 401);
  EXPECT_EQ(Curl(port, "-H 'Authorization: Basic !!!'", "/kv/doc").status, 401);

  // Nothing was written by the refused requests.
  Client resp = Connect("resp");
  EXPECT_EQ(RespCall(resp, {"GET", "doc"}), "-NOAUTH Authentication required.");
  EXPECT_EQ(RespCall(resp, {"AUTH", kPassword}), "+OK");
  EXPECT_EQ(RespCall(resp, {"EXISTS", "doc"}), ":0");

  // With the password: Basic (any user name) and Bearer.
  EXPECT_EQ(Curl(port, basic + " -X PUT --data-binary hello", "/kv/doc").status, 201);
  CurlResult r = Curl(port, bearer, "/kv/doc");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello");
  r = Curl(port, std::string("-u 'anyone:") + kPassword + "'", "/kv/doc");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello");
  EXPECT_EQ(RespCall(resp, {"GET", "doc"}), "$hello");  // the same store
  // The listing: pages until the cursor comes back "0" (a page may be empty).
  std::string keys, cursor = "0";
  for (int page = 0; page < 1000; page++) {
    r = Curl(port, bearer, "/kv/?prefix=do&count=1000&cursor=" + cursor);
    ASSERT_EQ(r.status, 200) << r.body;
    keys += r.body;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.body, m, std::regex(R"re("cursor":"(\d+)")re"))) << r.body;
    cursor = m[1];
    if (cursor == "0") break;
  }
  EXPECT_EQ(cursor, "0");
  EXPECT_NE(keys.find("\"doc\""), std::string::npos) << keys;
  EXPECT_EQ(Curl(port, basic + " -X DELETE", "/kv/doc").status, 204);
  EXPECT_EQ(Curl(port, bearer, "/kv/doc").status, 404);
  EXPECT_EQ(RespCall(resp, {"EXISTS", "doc"}), ":0");
}

TEST_F(DispatchTest, KvOverHttpNeedsNoCredentialsWithoutAPassword) {
  Start();
  EXPECT_EQ(Curl(HttpPort(), "-X PUT --data-binary v", "/kv/open").status, 201);
  // Credentials are not needed, and wrong ones change nothing.
  const CurlResult r = Curl(HttpPort(), "-u 'default:whatever'", "/kv/open");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "v");
}

TEST_F(DispatchTest, CommandListsThePubSubCommandsWithTheirArity) {
  Start();
  Client c = Connect("resp");
  const std::string list = RespCall(c, {"COMMAND", "LIST"});
  for (const char* name :
       {"subscribe", "unsubscribe", "psubscribe", "punsubscribe", "publish", "pubsub", "reset"})
    EXPECT_TRUE(std::regex_search(list, std::regex(std::string("[\\[,]\\$") + name + "[,\\]]")))
        << name << " " << list;
  const std::string count = RespCall(c, {"COMMAND", "COUNT"});
  const size_t names = std::count(list.begin(), list.end(), '$');
  EXPECT_EQ(count, ":" + std::to_string(names));
  // name, arity, flags: Redis 7.0's for these.
  EXPECT_EQ(RespCall(c, {"COMMAND", "INFO", "subscribe"}).substr(0, 28),
            "[[$subscribe,:-2,[+pubsub,+n");
  EXPECT_EQ(RespCall(c, {"COMMAND", "INFO", "publish"}).substr(0, 25), "[[$publish,:3,[+pubsub,+l");
  EXPECT_EQ(RespCall(c, {"COMMAND", "INFO", "unsubscribe"}).substr(0, 19), "[[$unsubscribe,:-1,");
  EXPECT_EQ(RespCall(c, {"COMMAND", "INFO", "reset"}).substr(0, 13), "[[$reset,:1,[");
  const std::string pubsub = RespCall(c, {"COMMAND", "INFO", "pubsub"});
  EXPECT_EQ(pubsub.substr(0, 15), "[[$pubsub,:-2,[") << pubsub;
  EXPECT_NE(pubsub.find("$pubsub|numpat,:2,"), std::string::npos) << pubsub;
  EXPECT_NE(pubsub.find("$pubsub|channels,:-2,"), std::string::npos) << pubsub;
}

TEST_F(DispatchTest, CommandStatsCountEachCommandOnceWhateverTheProtocol) {
  Start();
  Client resp = Connect("resp"), json = Connect("json");
  // SET: once per protocol (HTTP PUT is one SET ... GET).
  EXPECT_EQ(RespCall(resp, {"SET", "a", "1"}), "+OK");
  EXPECT_EQ(JsonCall(json, R"({"action":"SET","key":"b","value":"2"})"), R"({"ok":true})");
  EXPECT_EQ(Curl(HttpPort(), "-X PUT --data-binary 3", "/kv/c").status, 201);
  // GET: once per protocol.
  EXPECT_EQ(RespCall(resp, {"GET", "a"}), "$1");
  EXPECT_EQ(JsonCall(json, R"({"action":"GET","key":"b"})"), R"({"ok":true,"result":"2"})");
  EXPECT_EQ(Curl(HttpPort(), "", "/kv/c").body, "3");
  // PUBLISH and SUBSCRIBE through the table from RESP and kv-json.
  EXPECT_EQ(RespCall(resp, {"PUBLISH", "news", "x"}), ":0");
  EXPECT_EQ(JsonCall(json, R"({"action":"PUBLISH","channel":"news","message":"y"})"),
            R"({"ok":true,"result":0})");
  Client sub = Connect("json");
  EXPECT_EQ(JsonCall(sub, R"({"action":"SUBSCRIBE","channel":"news"})"),
            R"({"ok":true,"result":1})");
  // Refused before running (arity) and failed while running (not an integer).
  EXPECT_EQ(RespCall(resp, {"GET"}), "-ERR wrong number of arguments for 'get' command");
  EXPECT_EQ(RespCall(resp, {"INCR", "a"}), ":2");
  EXPECT_EQ(RespCall(resp, {"SET", "s", "text"}), "+OK");
  EXPECT_EQ(RespCall(resp, {"INCR", "s"}), "-ERR value is not an integer or out of range");

  const std::string info = RespCall(resp, {"INFO", "commandstats"});
  ASSERT_NE(info.find("# Commandstats"), std::string::npos) << info;
  auto set = CmdStat(info, "set");
  EXPECT_EQ(set["calls"], 4) << info;
  EXPECT_EQ(set["rejected_calls"], 0);
  auto get = CmdStat(info, "get");
  EXPECT_EQ(get["calls"], 3) << info;
  EXPECT_EQ(get["rejected_calls"], 1);
  EXPECT_EQ(CmdStat(info, "publish")["calls"], 2) << info;
  EXPECT_EQ(CmdStat(info, "subscribe")["calls"], 1) << info;
  auto incr = CmdStat(info, "incr");
  EXPECT_EQ(incr["calls"], 2);
  EXPECT_EQ(incr["failed_calls"], 1);
  EXPECT_TRUE(CmdStat(info, "del").empty()) << "a command never called is not listed";
  // The default INFO leaves commandstats out, as Redis does; "all" has it.
  EXPECT_EQ(RespCall(resp, {"INFO"}).find("# Commandstats"), std::string::npos);
  EXPECT_NE(RespCall(resp, {"INFO", "all"}).find("cmdstat_set:calls=4,"), std::string::npos);
  // total_commands_processed is the sum of the calls, from every worker.
  const std::string stats = RespCall(resp, {"INFO", "stats"});
  std::smatch m;
  ASSERT_TRUE(std::regex_search(stats, m, std::regex(R"(total_commands_processed:(\d+))")));
  const std::string again = RespCall(resp, {"INFO", "commandstats"});
  long sum = 0;
  std::regex calls(R"(cmdstat_[^:]+:calls=(\d+))");
  for (auto it = std::sregex_iterator(again.begin(), again.end(), calls);
       it != std::sregex_iterator(); ++it)
    sum += std::atol((*it)[1].str().c_str());
  // The INFO that printed the total ran before the one that listed the calls.
  EXPECT_EQ(std::atol(m[1].str().c_str()) + 1, sum) << stats << again;
}

}  // namespace
}  // namespace pf::test
