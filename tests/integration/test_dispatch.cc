// tests/integration/test_dispatch.cc: one command table for every protocol,
// seen from outside: HTTP /kv asks for kv.password as RESP and kv-json do
// (curl with Basic and Bearer credentials), COMMAND lists the pub/sub
// commands, and INFO commandstats counts each command once whatever protocol
// ran it, over both workers; INFO as Redis 7.0 lays it out, read by
// redis-cli, and CONFIG RESETSTAT.
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>
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

// "key:value" lines of an INFO reply.
std::map<std::string, std::string> InfoFields(const std::string& info) {
  std::map<std::string, std::string> f;
  std::regex line(R"(([A-Za-z0-9_|]+):([^\r\n]*))");
  for (auto it = std::sregex_iterator(info.begin(), info.end(), line); it != std::sregex_iterator();
       ++it)
    f[(*it)[1]] = (*it)[2];
  return f;
}

// redis-cli, one connection per call: the kernel spreads them over the workers.
std::string RedisCli(uint16_t port, const std::string& args) {
  std::string out;
  Sh("timeout 10 redis-cli -p " + std::to_string(port) + " " + args, &out);
  return out;
}

TEST_F(DispatchTest, InfoIsRedis7sAndCountsEveryWorkerUntilResetstat) {
  Start();
  const uint16_t port = server_->Port("resp");
  // 24 connections: both workers serve some (all on one: 2^-23).
  for (int i = 0; i < 24; i++)
    ASSERT_EQ(RedisCli(port, "SET k" + std::to_string(i) + " v"), "OK\n");
  EXPECT_EQ(RedisCli(port, "GET"), "ERR wrong number of arguments for 'get' command\n\n");
  EXPECT_EQ(RedisCli(port, "INCR k0"), "ERR value is not an integer or out of range\n\n");
  EXPECT_NE(RedisCli(port, "CONFIG NOSUCH").find("ERR unknown subcommand"), std::string::npos);

  const std::string info = RedisCli(port, "INFO everything");
  auto f = InfoFields(info);
  for (const char* name : {"redis_version",
                           "redis_mode",
                           "os",
                           "arch_bits",
                           "process_id",
                           "run_id",
                           "tcp_port",
                           "uptime_in_seconds",
                           "uptime_in_days",
                           "hz",
                           "executable",
                           "config_file",
                           "preforkd_version",
                           "connected_clients",
                           "blocked_clients",
                           "tracking_clients",
                           "maxclients",
                           "used_memory",
                           "used_memory_human",
                           "maxmemory",
                           "maxmemory_policy",
                           "mem_fragmentation_ratio",
                           "loading",
                           "aof_enabled",
                           "rdb_bgsave_in_progress",
                           "total_connections_received",
                           "total_commands_processed",
                           "total_net_input_bytes",
                           "total_net_output_bytes",
                           "rejected_connections",
                           "expired_keys",
                           "evicted_keys",
                           "keyspace_hits",
                           "keyspace_misses",
                           "pubsub_channels",
                           "pubsub_patterns",
                           "total_error_replies",
                           "role",
                           "connected_slaves",
                           "master_failover_state",
                           "master_replid",
                           "master_replid2",
                           "master_repl_offset",
                           "second_repl_offset",
                           "repl_backlog_active",
                           "used_cpu_sys",
                           "used_cpu_user",
                           "cluster_enabled",
                           "db0",
                           "errorstat_ERR",
                           "cmdstat_set",
                           "worker0",
                           "worker1"})
    EXPECT_EQ(f.count(name), 1u) << name << "\n" << info;
  for (const char* section : {"# Modules", "# Errorstats", "# Commandstats", "# Preforkd"})
    EXPECT_NE(info.find(section), std::string::npos) << section;
  EXPECT_EQ(f["redis_version"], "7.0.0");
  EXPECT_EQ(f["cluster_enabled"], "0");
  EXPECT_EQ(f["role"], "master");
  EXPECT_EQ(f["master_replid2"], std::string(40, '0'));
  EXPECT_TRUE(std::regex_match(f["run_id"], std::regex("[0-9a-f]{40}"))) << f["run_id"];
  EXPECT_TRUE(std::regex_match(f["master_replid"], std::regex("[0-9a-f]{40}")));
  EXPECT_EQ(f["tcp_port"], std::to_string(port));
  EXPECT_EQ(f["db0"], "keys=24,expires=0,avg_ttl=0");
  EXPECT_EQ(f["errorstat_ERR"], "count=3");
  EXPECT_EQ(f["total_error_replies"], "3");
  EXPECT_EQ(CmdStat(info, "set")["calls"], 24) << info;
  EXPECT_EQ(CmdStat(info, "get")["rejected_calls"], 1) << info;
  EXPECT_EQ(CmdStat(info, "incr")["failed_calls"], 1) << info;
  EXPECT_EQ(CmdStat(info, "config")["rejected_calls"], 1) << info;
  // Each worker served some of the SETs, and INFO's counts are their sum.
  long worker_commands = 0;
  for (const char* w : {"worker0", "worker1"}) {
    std::smatch m;
    ASSERT_TRUE(std::regex_search(f[w], m, std::regex(R"(slot=\d,pid=(\d+),.*,commands=(\d+))")))
        << f[w];
    EXPECT_GT(std::atol(m[2].str().c_str()), 0) << info;
    worker_commands += std::atol(m[2].str().c_str());
  }
  // 24 SETs and the INCR ran; the refused GET and CONFIG did not (nor this INFO yet).
  EXPECT_EQ(worker_commands, 25) << info;
  EXPECT_GE(std::atol(f["total_connections_received"].c_str()), 28);

  // The run id is the server's, not the worker's: the same from either worker.
  std::set<std::string> run_ids, pids;
  for (int i = 0; i < 12; i++) {
    auto s = InfoFields(RedisCli(port, "INFO server"));
    run_ids.insert(s["run_id"]);
    pids.insert(s["process_id"]);
  }
  EXPECT_EQ(run_ids.size(), 1u);
  EXPECT_EQ(pids.size(), 2u) << "both workers answered";

  // Section selection as Redis 7: several names, unknown ones add nothing.
  const std::string two = RedisCli(port, "INFO cluster clients");
  EXPECT_NE(two.find("# Clients"), std::string::npos);
  EXPECT_NE(two.find("# Cluster"), std::string::npos);
  EXPECT_EQ(two.find("# Server"), std::string::npos);
  EXPECT_EQ(RedisCli(port, "INFO nosuchsection"), "");  // an empty bulk
  EXPECT_EQ(RedisCli(port, "INFO").find("# Commandstats"), std::string::npos);

  // RESETSTAT clears the statistics over every worker, not the keys.
  EXPECT_EQ(RedisCli(port, "CONFIG RESETSTAT"), "OK\n");
  const std::string after = RedisCli(port, "INFO everything");
  auto g = InfoFields(after);
  EXPECT_EQ(g.count("errorstat_ERR"), 0u) << after;
  EXPECT_EQ(g["total_error_replies"], "0");
  EXPECT_TRUE(CmdStat(after, "set").empty()) << after;
  EXPECT_TRUE(CmdStat(after, "get").empty()) << after;
  EXPECT_EQ(CmdStat(after, "config|resetstat")["calls"], 1) << after;
  EXPECT_LE(std::atol(g["total_connections_received"].c_str()), 2) << after;
  EXPECT_EQ(g["db0"], "keys=24,expires=0,avg_ttl=0");
  // ... and they count again from there.
  EXPECT_EQ(RedisCli(port, "INCR k1"), "ERR value is not an integer or out of range\n\n");
  auto h = InfoFields(RedisCli(port, "INFO errorstats"));
  EXPECT_EQ(h["errorstat_ERR"], "count=1");
}

}  // namespace
}  // namespace pf::test
