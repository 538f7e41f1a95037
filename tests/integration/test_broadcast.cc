// tests/integration/test_broadcast.cc: operator broadcasts (the real binary,
// 2 workers): POST /_admin/broadcast reaches every chat and kv-json
// connection of a listener on both workers, except the excluded ids; wrong
// tokens and bad requests are refused and deliver nothing; slow readers are
// cut off by the pub/sub output limits; tools/preforkctl broadcast end to end.
//
// "Got nothing" is checked with a fence: a second broadcast follows, and the
// first broadcast line a client reads must be the fence's (the bus delivers
// in order on every worker).
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

constexpr const char* kToken = "broadcast-admin-1";

struct HttpReply {
  int status = 0;
  std::string head, body;
};

// One request on its own connection (Connection: close), read to the end.
HttpReply Http(uint16_t port, const std::string& method, const std::string& target,
               const std::string& body, const std::string& extra_headers = "") {
  HttpReply r;
  Client c;
  if (!c.Connect(port)) return r;
  const std::string req = method + " " + target +
                          " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + extra_headers +
                          "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  if (!c.SendAll(req) || !c.WaitClosed()) return r;
  const std::string& all = c.buffered();
  const size_t end = all.find("\r\n\r\n");
  if (all.rfind("HTTP/1.1 ", 0) != 0 || end == std::string::npos) return r;
  r.status = std::atoi(all.c_str() + 9);
  r.head = all.substr(0, end + 2);
  r.body = all.substr(end + 4);
  return r;
}

std::string Bearer(const std::string& token) { return "Authorization: Bearer " + token + "\r\n"; }

class BroadcastTest : public ::testing::Test {
 protected:
  void StartServer(const std::string& pubsub = std::string("{admin_token: ") + kToken + "}") {
    server_ = std::make_unique<Server>(
        ListenerYaml("web", "http", 0, "root: " + SourceRoot() + "/conf/www") +
            ListenerYaml("chat", "chat") + ListenerYaml("kv", "kv-json") +
            ListenerYaml("resp", "resp"),
        "pubsub: " + pubsub + "\n", 2);
    ASSERT_TRUE(server_->Start());
  }

  HttpReply Broadcast(const std::string& query, const std::string& text,
                      const std::string& token = kToken) {
    return Http(server_->Port("web"), "POST", "/_admin/broadcast?" + query, text, Bearer(token));
  }
  // A broadcast that must be accepted.
  void Send(const std::string& query, const std::string& text) {
    const HttpReply r = Broadcast(query, text);
    ASSERT_EQ(r.status, 200) << r.head << r.body;
    ASSERT_NE(r.body.find("\"ok\":true,\"queued\":true"), std::string::npos) << r.body;
  }

  static std::string Line(Client& c, int timeout_ms = 5000) {
    std::string l;
    return c.RecvLine(&l, timeout_ms) ? l : "<no line>";
  }
  // The next line starting with `prefix`, skipping others ("<none>" if none comes).
  static std::string Until(Client& c, const std::string& prefix) {
    std::string l;
    while (c.RecvLine(&l))
      if (l.rfind(prefix, 0) == 0) return l;
    return "<none>";
  }

  // A chat client on worker `slot`, past its greeting and lobby join; *id
  // is its connection id, from /whoami.
  Client ChatOn(int slot, uint64_t* id) {
    for (int i = 0; i < 200; i++) {
      Client c;
      if (!c.Connect(server_->Port("chat"))) break;
      std::string l = Line(c);
      const size_t at = l.find("worker=");
      if (at == std::string::npos) break;
      if (std::atoi(l.c_str() + at + 7) != slot) continue;
      if (Until(c, "* joined [lobby]") == "<none>" || !c.SendAll("/whoami\n")) break;
      l = Until(c, "* you are");
      const size_t idat = l.find(", id=");
      if (idat == std::string::npos) break;
      *id = std::strtoull(l.c_str() + idat + 5, nullptr, 10);
      return c;
    }
    ADD_FAILURE() << "no chat connection landed on worker " << slot;
    return Client();
  }

  // A kv-json client on worker `slot`; *id from the CLIENT_ID action.
  Client KvOn(int slot, uint64_t* id) {
    for (int i = 0; i < 200; i++) {
      Client c;
      if (!c.Connect(server_->Port("kv")) ||
          !c.SendAll("{\"action\":\"INFO\",\"section\":\"server\"}\n"))
        break;
      const std::string info = Line(c);
      const size_t at = info.find("worker_slot:");
      if (at == std::string::npos) break;
      if (std::atoi(info.c_str() + at + 12) != slot) continue;
      if (!c.SendAll("{\"action\":\"CLIENT_ID\"}\n")) break;
      const std::string r = Line(c);
      const std::string want = "{\"ok\":true,\"result\":";
      if (r.rfind(want, 0) != 0) break;
      *id = std::strtoull(r.c_str() + want.size(), nullptr, 10);
      return c;
    }
    ADD_FAILURE() << "no kv-json connection landed on worker " << slot;
    return Client();
  }

  std::string Json(const std::string& text) {
    return "{\"type\":\"broadcast\",\"data\":\"" + text + "\"}";
  }

  std::unique_ptr<Server> server_;
};

TEST_F(BroadcastTest, ReachesChatAndKvJsonClientsOnBothWorkers) {
  StartServer();
  uint64_t ids[4];
  Client c0 = ChatOn(0, &ids[0]), c1 = ChatOn(1, &ids[1]);
  Client k0 = KvOn(0, &ids[2]), k1 = KvOn(1, &ids[3]);
  EXPECT_NE(ids[0], ids[1]);
  EXPECT_NE(ids[2], ids[3]);

  const HttpReply r = Broadcast("listener=chat", "maintenance at 5 \xc3\xa9t\xc3\xa9");
  EXPECT_EQ(r.status, 200) << r.head << r.body;
  EXPECT_NE(r.head.find("Content-Type: application/json\r\n"), std::string::npos) << r.head;
  EXPECT_EQ(
      r.body,
      "{\"ok\":true,\"queued\":true,\"listener\":\"chat\",\"protocol\":\"chat\",\"exclude\":[],"
      "\"workers\":2}\n");
  EXPECT_EQ(Until(c0, "[broadcast]"), "[broadcast] maintenance at 5 \xc3\xa9t\xc3\xa9");
  EXPECT_EQ(Until(c1, "[broadcast]"), "[broadcast] maintenance at 5 \xc3\xa9t\xc3\xa9");

  // kv-json: a push line; the chat broadcast did not reach it (its first
  // line is this one). A trailing newline of the body is not part of the text.
  Send("listener=kv", "tab\there \"quoted\"\n");
  EXPECT_EQ(Line(k0), Json("tab\\there \\\"quoted\\\""));
  EXPECT_EQ(Line(k1), Json("tab\\there \\\"quoted\\\""));
  // Requests still work after it, and their replies keep their order.
  ASSERT_TRUE(k1.SendAll("{\"id\":1,\"action\":\"PING\"}\n"));
  EXPECT_EQ(Line(k1), "{\"id\":1,\"ok\":true,\"result\":\"PONG\"}");
}

TEST_F(BroadcastTest, ExcludedConnectionsGetNothing) {
  StartServer();
  uint64_t a0, a1, b0, b1, k0id, k1id;
  Client ca0 = ChatOn(0, &a0), ca1 = ChatOn(1, &a1), cb0 = ChatOn(0, &b0), cb1 = ChatOn(1, &b1);
  Client k0 = KvOn(0, &k0id), k1 = KvOn(1, &k1id);

  const HttpReply r = Broadcast(
      "listener=chat&exclude=" + std::to_string(a0) + "," + std::to_string(a1), "not for a");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"exclude\":[" + std::to_string(a0) + "," + std::to_string(a1) + "]"),
            std::string::npos)
      << r.body;
  Send("listener=chat", "fence");
  EXPECT_EQ(Until(cb0, "[broadcast]"), "[broadcast] not for a");
  EXPECT_EQ(Until(cb1, "[broadcast]"), "[broadcast] not for a");
  EXPECT_EQ(Until(cb0, "[broadcast]"), "[broadcast] fence");
  EXPECT_EQ(Until(cb1, "[broadcast]"), "[broadcast] fence");
  EXPECT_EQ(Until(ca0, "[broadcast]"), "[broadcast] fence");
  EXPECT_EQ(Until(ca1, "[broadcast]"), "[broadcast] fence");

  // The same for kv-json; an id of another listener's connection changes nothing.
  Send("listener=kv&exclude=" + std::to_string(k1id) + "," + std::to_string(b0), "not for k1");
  Send("listener=kv", "fence");
  EXPECT_EQ(Line(k0), Json("not for k1"));
  EXPECT_EQ(Line(k0), Json("fence"));
  EXPECT_EQ(Line(k1), Json("fence"));
}

TEST_F(BroadcastTest, WrongOrMissingTokenIsRefusedAndDeliversNothing) {
  StartServer();
  uint64_t id0, id1;
  Client c0 = ChatOn(0, &id0), c1 = ChatOn(1, &id1);
  HttpReply r = Broadcast("listener=chat", "forged", "not-the-token");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.body, "{\"ok\":false,\"error\":\"wrong admin token\"}\n");
  r = Broadcast("listener=chat", "forged", std::string(kToken) + "x");
  EXPECT_EQ(r.status, 403);
  r = Http(server_->Port("web"), "POST", "/_admin/broadcast?listener=chat", "forged");
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.head.find("WWW-Authenticate: Bearer realm=\"preforkd admin\"\r\n"), std::string::npos)
      << r.head;
  EXPECT_NE(r.body.find("missing 'Authorization: Bearer TOKEN'"), std::string::npos) << r.body;
  r = Http(server_->Port("web"), "POST", "/_admin/broadcast?listener=chat", "forged",
           std::string("Authorization: Basic ") + kToken + "\r\n");
  EXPECT_EQ(r.status, 401);
  // Counted toward limits.auth_failures_per_minute of the address, and logged with it.
  EXPECT_TRUE(server_->WaitLog("failed authentication from 127.0.0.1 (POST /_admin/broadcast)"));
  Send("listener=chat", "fence");
  EXPECT_EQ(Until(c0, "[broadcast]"), "[broadcast] fence");
  EXPECT_EQ(Until(c1, "[broadcast]"), "[broadcast] fence");
}

TEST_F(BroadcastTest, BadRequestsAreRefusedWithClearErrors) {
  StartServer("{admin_token: " + std::string(kToken) + ", max_message_bytes: 64}");
  uint64_t id;
  Client c = ChatOn(0, &id);
  struct Case {
    std::string query, text;
    int status;
    std::string body;
  } cases[] = {
      {"listener=nope", "x", 400, "unknown listener 'nope', expected one of: chat, kv"},
      {"listener=resp", "x", 400,
       "listener 'resp' (protocol resp) does not support broadcast: only chat and kv-json "
       "listeners do"},
      {"listener=web", "x", 400,
       "listener 'web' (protocol http) does not support broadcast: only chat and kv-json listeners "
       "do"},
      {"", "x", 400, "missing listener=NAME: the listener whose connections get the text"},
      {"listener=", "x", 400, "missing listener=NAME: the listener whose connections get the text"},
      {"listener=chat&exlude=3", "x", 400,
       "unknown query parameter 'exlude', expected listener=NAME and optionally exclude=ID,ID,..."},
      {"listener=chat&listener=kv", "x", 400, "the query parameter 'listener' is given twice"},
      {"listener=ch%zzat", "x", 400,
       "bad percent-encoding in the query parameter 'listener=ch%zzat'"},
      {"listener=chat&exclude=1,,2", "x", 400,
       "bad exclude list '1,,2', expected connection ids separated by commas, e.g. exclude=12,40"},
      {"listener=chat&exclude=7,", "x", 400,
       "bad exclude list '7,', expected connection ids separated by commas, e.g. exclude=12,40"},
      {"listener=chat&exclude=abc", "x", 400,
       "bad exclude list 'abc', expected connection ids separated by commas, e.g. exclude=12,40"},
      {"listener=chat", "", 400, "empty text: the request body is the text to broadcast"},
      {"listener=chat", "\n", 400, "empty text: the request body is the text to broadcast"},
      {"listener=chat", "two\nlines", 400,
       "the text must be one line without control characters (byte 3 is 0x0a)"},
      {"listener=chat", "bad \xff utf8", 400, "the text must be UTF-8"},
      {"listener=chat", std::string(65, 'x'), 413,
       "the text is 65 bytes, over pubsub.max_message_bytes (64 bytes)"},
      {"listener=chat", std::string(59, 'x'), 413,
       "with the listener name and the exclude list the broadcast is 65 bytes, over "
       "pubsub.max_message_bytes (64 bytes)"},
      {"listener=chat&exclude=1111111111,2222222222,3333333333,4444444444", std::string(40, 'x'),
       413,
       "with the listener name and the exclude list the broadcast is 89 bytes, over "
       "pubsub.max_message_bytes (64 bytes)"},
  };
  for (const Case& k : cases) {
    const HttpReply r = Broadcast(k.query, k.text);
    EXPECT_EQ(r.status, k.status) << k.query;
    EXPECT_EQ(r.body, "{\"ok\":false,\"error\":\"" + k.body + "\"}\n") << k.query;
  }
  HttpReply r =
      Http(server_->Port("web"), "GET", "/_admin/broadcast?listener=chat", "", Bearer(kToken));
  EXPECT_EQ(r.status, 405);
  EXPECT_NE(r.head.find("Allow: POST\r\n"), std::string::npos) << r.head;
  r = Http(server_->Port("web"), "POST", "/_admin/other", "x", Bearer(kToken));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(
      r.body,
      "{\"ok\":false,\"error\":\"no such admin endpoint (there is POST /_admin/broadcast)\"}\n");
  // What fits ("chat\n\n" + 58 bytes) goes; none of the refused ones came.
  Send("listener=chat", std::string(58, 'y'));
  EXPECT_EQ(Until(c, "[broadcast]"), "[broadcast] " + std::string(58, 'y'));
}

TEST_F(BroadcastTest, DisabledWithoutAnAdminToken) {
  StartServer("{}");
  const HttpReply r = Broadcast("listener=chat", "x");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.body,
            "{\"ok\":false,\"error\":\"the admin endpoints are disabled: set pubsub.admin_token in "
            "the configuration\"}\n");
}

TEST_F(BroadcastTest, SlowReaderIsCutOffByTheOutputLimit) {
  // Large texts and a small hard limit; `pacer` reads every broadcast on the
  // slow reader's worker, so that worker never falls behind the ring.
  StartServer(std::string("{admin_token: ") + kToken +
              ", max_message_bytes: 256k, ring_slots: 64, output_hard_limit: 512k, "
              "output_soft_limit: 256k}");
  uint64_t id;
  Client slow = KvOn(0, &id), pacer = KvOn(0, &id);
  const std::string text(256 * 1024 - 16, 'z');
  bool cut = false;
  for (int i = 0; i < 160 && !cut; i++) {
    Send("listener=kv", text);
    ASSERT_EQ(Line(pacer).size(), text.size() + 30) << i;
    cut = server_->Log().find(
              "over pubsub.output_hard_limit (524288): disconnecting the slow subscriber") !=
          std::string::npos;
  }
  EXPECT_TRUE(cut) << "the slow reader was never disconnected";
  EXPECT_TRUE(slow.WaitClosed(10000));
  // The pacer, which reads, stays.
  ASSERT_TRUE(pacer.SendAll("{\"id\":1,\"action\":\"PING\"}\n"));
  EXPECT_EQ(Line(pacer), "{\"id\":1,\"ok\":true,\"result\":\"PONG\"}");
}

TEST_F(BroadcastTest, PreforkctlBroadcastEndToEnd) {
  StartServer();
  uint64_t a, b;
  Client ca = ChatOn(0, &a), cb = ChatOn(1, &b);
  const std::string ctl =
      "timeout 20 " + SourceRoot() + "/tools/preforkctl -c " + server_->config_path();
  std::string out;
  EXPECT_EQ(
      Sh(ctl + " broadcast --exclude " + std::to_string(a) + " chat '@everyone: back in 5'", &out),
      0)
      << out;
  EXPECT_EQ(
      out,
      "{\"ok\":true,\"queued\":true,\"listener\":\"chat\",\"protocol\":\"chat\",\"exclude\":[" +
          std::to_string(a) + "],\"workers\":2}\n");
  EXPECT_EQ(Sh(ctl + " broadcast chat fence", &out), 0) << out;
  EXPECT_EQ(Until(cb, "[broadcast]"), "[broadcast] @everyone: back in 5");
  EXPECT_EQ(Until(cb, "[broadcast]"), "[broadcast] fence");
  EXPECT_EQ(Until(ca, "[broadcast]"), "[broadcast] fence");

  EXPECT_EQ(Sh(ctl + " broadcast resp hi", &out), 1);
  EXPECT_EQ(
      out,
      "preforkctl: broadcast refused (HTTP 400): listener 'resp' (protocol resp) does not support "
      "broadcast: only chat and kv-json listeners do\n");
  EXPECT_EQ(Sh(ctl + " broadcast chat", &out), 2) << out;
  EXPECT_EQ(Sh(ctl + " broadcast --exclude 1,x chat hi", &out), 2) << out;
  EXPECT_NE(out.find("--exclude '1,x': expected connection ids separated by commas"),
            std::string::npos)
      << out;
  server_->Signal(SIGTERM);
  ASSERT_TRUE(server_->WaitExit(10000));
  EXPECT_EQ(Sh(ctl + " broadcast chat hi", &out), 3) << out;
  EXPECT_NE(out.find("preforkd is not running"), std::string::npos) << out;
}

}  // namespace
}  // namespace pf::test
