// tests/integration/test_clients.cc: the client registry across workers (the
// real binary, 2 workers): CLIENT LIST and INFO see every worker's clients,
// CLIENT KILL closes a client of the other worker (by ID, ADDR, TYPE, the
// old addr form, SKIPME), CLIENT PAUSE holds commands on every worker until
// UNPAUSE, CLIENT REPLY mutes replies, and a worker killed with SIGKILL
// leaves no entries behind.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

std::string Cmd(Client& c, const std::vector<std::string>& argv) { return RespCall(c, argv); }

// "key=value" from a CLIENT INFO / LIST line ("" when absent).
std::string FieldOf(const std::string& line, const std::string& key) {
  const std::string k = " " + key + "=";
  size_t at = line.find(k);
  if (at == std::string::npos) {
    if (line.rfind(key + "=", 1) != 1) return "";  // the first field, after '$'
    at = 0;
  }
  at = line.find('=', at) + 1;
  const size_t end = line.find_first_of(" \n", at);
  return line.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

class ClientsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<Server>(
        ListenerYaml("resp", "resp") + ListenerYaml("json", "kv-json") +
            ListenerYaml("chat", "chat") +
            ListenerYaml("http", "http", 0, "root: " + SourceRoot() + "/conf/www"),
        "", 2);
    ASSERT_TRUE(server_->Start());
  }
  uint16_t Port() const { return server_->Port("resp"); }

  static int WorkerOf(Client& c) {
    const std::string w = FieldOf(Cmd(c, {"CLIENT", "INFO"}), "worker");
    return w.empty() ? -1 : std::atoi(w.c_str());
  }
  static std::string IdOf(Client& c) { return Cmd(c, {"CLIENT", "ID"}).substr(1); }
  static std::string AddrOf(Client& c) { return FieldOf(Cmd(c, {"CLIENT", "INFO"}), "addr"); }
  // A connection served by worker `slot` (the kernel spreads connections
  // over the slots' reuseport sockets: try until one lands there).
  Client On(int slot) {
    for (int i = 0; i < 200; i++) {
      Client c;
      if (!c.Connect(Port())) break;
      if (WorkerOf(c) == slot) return c;
    }
    ADD_FAILURE() << "no connection landed on worker " << slot;
    return Client();
  }
  pid_t PidOf(int slot) const {
    for (const auto& w : server_->ActiveWorkers())
      if (w.slot == slot) return w.pid;
    return 0;
  }
  // True once CLIENT LIST (asked on `c`) holds no client with id `id`.
  bool GoneFromList(Client& c, const std::string& id) {
    return WaitFor(
        [&] {
          return Cmd(c, {"CLIENT", "LIST"}).find("id=" + id + " ") == std::string::npos;
        },
        5000);
  }

  std::unique_ptr<Server> server_;
};

TEST_F(ClientsTest, ListShowsClientsOfEveryWorker) {
  Client a = On(0), b = On(1);
  ASSERT_EQ(Cmd(b, {"CLIENT", "SETNAME", "on-one"}), "+OK");
  const std::string ida = IdOf(a), idb = IdOf(b);
  ASSERT_EQ(Cmd(a, {"CLIENT", "SETNAME", "on-zero"}), "+OK");
  const std::string list = Cmd(a, {"CLIENT", "LIST"});
  EXPECT_NE(list.find("id=" + ida + " "), std::string::npos) << list;
  EXPECT_NE(list.find("id=" + idb + " "), std::string::npos) << list;
  EXPECT_NE(list.find(" name=on-one "), std::string::npos) << list;
  EXPECT_NE(list.find(" worker=0\n"), std::string::npos) << list;
  EXPECT_NE(list.find(" worker=1\n"), std::string::npos) << list;
  EXPECT_NE(list.find(" cmd=client|list "), std::string::npos) << list;  // the caller, now
  EXPECT_NE(list.find(" cmd=client|id "), std::string::npos) << list;    // b's last command
  // ID filter, from the other worker.
  const std::string only = Cmd(b, {"CLIENT", "LIST", "ID", ida});
  EXPECT_EQ(only.find("id=" + ida + " "), 1u) << only;
  EXPECT_EQ(only.find("id=" + idb + " "), std::string::npos) << only;
  EXPECT_EQ(Cmd(b, {"CLIENT", "LIST", "ID", "x"}), "-ERR Invalid client ID");
  EXPECT_EQ(Cmd(b, {"CLIENT", "LIST", "TYPE", "bogus"}), "-ERR Unknown client type 'bogus'");
  EXPECT_EQ(Cmd(b, {"CLIENT", "LIST", "FOO"}), "-ERR syntax error");
  // TYPE pubsub: only the subscriber.
  ASSERT_EQ(Cmd(b, {"SUBSCRIBE", "ch"}), "[$subscribe,$ch,:1]");
  const std::string pubsub = Cmd(a, {"CLIENT", "LIST", "TYPE", "pubsub"});
  EXPECT_NE(pubsub.find("id=" + idb + " "), std::string::npos) << pubsub;
  EXPECT_NE(pubsub.find(" flags=P "), std::string::npos) << pubsub;
  EXPECT_NE(pubsub.find(" sub=1 "), std::string::npos) << pubsub;
  EXPECT_EQ(pubsub.find("id=" + ida + " "), std::string::npos) << pubsub;
  const std::string normal = Cmd(a, {"CLIENT", "LIST", "TYPE", "normal"});
  EXPECT_EQ(normal.find("id=" + idb + " "), std::string::npos) << normal;
  // The same list over HTTP, as JSON.
  Client h;
  ASSERT_TRUE(h.Connect(server_->Port("http")));
  ASSERT_TRUE(
      h.SendAll("GET /_stats?clients=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"));
  ASSERT_TRUE(h.WaitClosed());
  const std::string body = h.buffered();
  EXPECT_NE(body.find("\"clients\":["), std::string::npos) << body;
  EXPECT_NE(body.find("\"id\":" + idb + ","), std::string::npos) << body;
  EXPECT_NE(body.find("\"name\":\"on-one\""), std::string::npos) << body;
}

TEST_F(ClientsTest, ChatClientsAreListedWithTheirNickAndKillable) {
  Client a = On(0);
  Client chat;
  ASSERT_TRUE(chat.Connect(server_->Port("chat")));
  std::string line;
  ASSERT_TRUE(chat.RecvLine(&line));  // the greeting
  ASSERT_TRUE(chat.SendAll("/nick carol\n"));
  std::string id;
  ASSERT_TRUE(WaitFor(
      [&] {
        const std::string list = Cmd(a, {"CLIENT", "LIST"});
        const size_t at = list.find(" name=carol ");
        if (at == std::string::npos) return false;
        const size_t start = list.rfind("id=", at);
        id = list.substr(start + 3, list.find(' ', start) - start - 3);
        return list.find("proto=chat", at) != std::string::npos;
      },
      5000));
  EXPECT_EQ(Cmd(a, {"CLIENT", "KILL", "TYPE", "pubsub"}), ":0");  // chat is not pub/sub
  EXPECT_EQ(Cmd(a, {"CLIENT", "KILL", "ID", id}), ":1");
  EXPECT_TRUE(chat.WaitClosed(5000));
}

TEST_F(ClientsTest, KillIdClosesAClientOfTheOtherWorker) {
  Client a = On(0), b = On(1);
  const std::string idb = IdOf(b);
  EXPECT_EQ(Cmd(a, {"CLIENT", "KILL", "ID", idb}), ":1");
  EXPECT_TRUE(b.WaitClosed(5000));
  EXPECT_TRUE(GoneFromList(a, idb));
  EXPECT_EQ(Cmd(a, {"CLIENT", "KILL", "ID", idb}), ":0");
  EXPECT_EQ(Cmd(a, {"CLIENT", "KILL", "ID", "999999999"}), ":0");
  EXPECT_EQ(Cmd(a, {"CLIENT", "KILL", "ID", "0"}), "-ERR client-id should be greater than 0");
  EXPECT_EQ(Cmd(a, {"CLIENT", "KILL", "TYPE", "x"}), "-ERR Unknown client type 'x'");
  EXPECT_EQ(Cmd(a, {"CLIENT", "KILL", "USER", "bob"}), "-ERR No such user 'bob'");
  EXPECT_EQ(Cmd(a, {"CLIENT", "KILL", "SKIPME", "maybe"}), "-ERR syntax error");
  EXPECT_EQ(Cmd(a, {"PING"}), "+PONG");
}

TEST_F(ClientsTest, KillIdClosesASubscriberOfTheOtherWorker) {
  Client a = On(0), b = On(1);
  const std::string idb = IdOf(b);
  ASSERT_EQ(Cmd(b, {"SUBSCRIBE", "news"}), "[$subscribe,$news,:1]");
  EXPECT_EQ(Cmd(a, {"CLIENT", "KILL", "ID", idb}), ":1");
  EXPECT_TRUE(b.WaitClosed(5000));
  EXPECT_TRUE(WaitFor([&] { return Cmd(a, {"PUBSUB", "NUMSUB", "news"}) == "[$news,:0]"; }, 5000));
}

TEST_F(ClientsTest, KillAddrOldAndNewForm) {
  Client a = On(0), b = On(1), c = On(1);
  const std::string addrb = AddrOf(b), addrc = AddrOf(c);
  EXPECT_EQ(Cmd(a, {"CLIENT", "KILL", addrb}), "+OK");
  EXPECT_TRUE(b.WaitClosed(5000));
  EXPECT_TRUE(WaitFor(
      [&] {
        return Cmd(a, {"CLIENT", "KILL", addrb}) == "-ERR No such client";
      },
      5000));
  EXPECT_EQ(Cmd(a, {"CLIENT", "KILL", "ADDR", addrc, "SKIPME", "yes"}), ":1");
  EXPECT_TRUE(c.WaitClosed(5000));
  EXPECT_EQ(Cmd(a, {"CLIENT", "KILL", "LADDR", "127.0.0.1:1"}), ":0");
}

TEST_F(ClientsTest, SkipMe) {
  Client a = On(0);
  const std::string ida = IdOf(a);
  EXPECT_EQ(Cmd(a, {"CLIENT", "KILL", "ID", ida}), ":0");  // SKIPME yes by default
  EXPECT_EQ(Cmd(a, {"CLIENT", "KILL", "ID", ida, "SKIPME", "no"}), ":1");
  EXPECT_TRUE(a.WaitClosed(5000));  // after the reply
}

TEST_F(ClientsTest, KillTypePubSub) {
  Client a = On(0), s0 = On(0), s1 = On(1), n1 = On(1);
  ASSERT_EQ(Cmd(s0, {"SUBSCRIBE", "x"}), "[$subscribe,$x,:1]");
  ASSERT_EQ(Cmd(s1, {"PSUBSCRIBE", "y*"}), "[$psubscribe,$y*,:1]");
  EXPECT_EQ(Cmd(a, {"CLIENT", "KILL", "TYPE", "pubsub"}), ":2");
  EXPECT_TRUE(s0.WaitClosed(5000));
  EXPECT_TRUE(s1.WaitClosed(5000));
  EXPECT_EQ(Cmd(n1, {"PING"}), "+PONG");
  EXPECT_EQ(Cmd(a, {"PING"}), "+PONG");
  EXPECT_EQ(Cmd(a, {"CLIENT", "KILL", "TYPE", "master"}), ":0");
}

TEST_F(ClientsTest, PauseWriteHoldsWritesOnTheOtherWorkerUntilUnpause) {
  Client a = On(0), w = On(1), r = On(1);
  ASSERT_EQ(Cmd(a, {"SET", "k", "old"}), "+OK");
  EXPECT_EQ(Cmd(a, {"CLIENT", "PAUSE", "20000", "WRITE"}), "+OK");
  ASSERT_TRUE(w.SendAll(Resp({"SET", "k", "new"})));
  std::string got;
  EXPECT_FALSE(w.RecvSome(&got, 300)) << got;  // held, not refused
  EXPECT_EQ(Cmd(r, {"GET", "k"}), "$old");     // reads still answer
  EXPECT_EQ(Cmd(a, {"CLIENT", "UNPAUSE"}), "+OK");
  std::string reply;
  ASSERT_TRUE(ReadReply(w, &reply, 5000));
  EXPECT_EQ(reply, "+OK");
  EXPECT_EQ(Cmd(r, {"GET", "k"}), "$new");
  EXPECT_EQ(Cmd(a, {"CLIENT", "PAUSE", "x"}), "-ERR timeout is not an integer or out of range");
  EXPECT_EQ(Cmd(a, {"CLIENT", "PAUSE", "-1"}), "-ERR timeout is negative");
  EXPECT_EQ(Cmd(a, {"CLIENT", "PAUSE", "1", "READ"}),
            "-ERR CLIENT PAUSE mode must be WRITE or ALL");
}

// HTTP cannot hold a request the way RESP holds a command: a paused /kv
// write gets 503 with Retry-After (seconds left of the pause); reads go on.
TEST_F(ClientsTest, PausedHttpKvWritesGet503WithRetryAfter) {
  Client a = On(0);
  const std::string url = "http://127.0.0.1:" + std::to_string(server_->Port("http")) + "/kv/hk";
  const std::string curl =
      "timeout 10 curl -s -o /dev/null -w '%{http_code} %header{retry-after}' ";
  std::string out;
  EXPECT_EQ(Cmd(a, {"CLIENT", "PAUSE", "20000", "WRITE"}), "+OK");
  ASSERT_EQ(Sh(curl + "-X PUT --data-binary v " + url, &out), 0);
  ASSERT_EQ(out.substr(0, 4), "503 ") << out;
  const int after = std::atoi(out.c_str() + 4);
  EXPECT_GE(after, 19) << out;
  EXPECT_LE(after, 20) << out;
  ASSERT_EQ(Sh(curl + url, &out), 0);
  EXPECT_EQ(out.substr(0, 3), "404") << out;  // a read is not paused by WRITE
  EXPECT_EQ(Cmd(a, {"GET", "hk"}), "(nil)");  // nothing was written
  EXPECT_EQ(Cmd(a, {"CLIENT", "UNPAUSE"}), "+OK");
  ASSERT_EQ(Sh(curl + "-X PUT --data-binary v " + url, &out), 0);
  EXPECT_EQ(out.substr(0, 3), "201") << out;
}

TEST_F(ClientsTest, KvJsonListsEveryWorkerAndHonoursThePause) {
  Client a = On(0), b = On(1);
  ASSERT_EQ(Cmd(b, {"CLIENT", "SETNAME", "resp-one"}), "+OK");
  Client j;
  ASSERT_TRUE(j.Connect(server_->Port("json")));
  const std::string list = JsonCall(j, R"({"id":1,"action":"CLIENT_LIST"})");
  EXPECT_EQ(list.rfind(R"({"id":1,"ok":true,"result":"id=)", 0), 0u) << list;
  EXPECT_NE(list.find("name=resp-one"), std::string::npos) << list;
  EXPECT_NE(list.find("proto=kv-json"), std::string::npos) << list;
  EXPECT_NE(list.find("id=" + IdOf(a) + " "), std::string::npos) << list;

  EXPECT_EQ(Cmd(a, {"CLIENT", "PAUSE", "20000", "WRITE"}), "+OK");
  ASSERT_TRUE(j.SendAll(R"({"id":2,"action":"SET","key":"jk","value":"v"})"
                        "\n"));
  std::string got;
  EXPECT_FALSE(j.RecvSome(&got, 300)) << got;  // held
  EXPECT_EQ(Cmd(b, {"GET", "jk"}), "(nil)");
  EXPECT_EQ(Cmd(a, {"CLIENT", "UNPAUSE"}), "+OK");
  ASSERT_TRUE(j.RecvLine(&got, 5000));
  EXPECT_EQ(got, R"({"id":2,"ok":true})");
}

TEST_F(ClientsTest, PauseWriteHoldsAnExecThatWrites) {
  Client a = On(0), w = On(1);
  const std::string idw = IdOf(w);
  ASSERT_EQ(Cmd(w, {"MULTI"}), "+OK");
  ASSERT_EQ(Cmd(w, {"SET", "t", "1"}), "+QUEUED");
  EXPECT_EQ(Cmd(a, {"CLIENT", "PAUSE", "20000", "WRITE"}), "+OK");
  ASSERT_TRUE(w.SendAll(Resp({"EXEC"})));
  std::string got;
  EXPECT_FALSE(w.RecvSome(&got, 300)) << got;
  EXPECT_NE(Cmd(a, {"CLIENT", "LIST", "ID", idw}).find(" flags=x "), std::string::npos);
  EXPECT_EQ(Cmd(a, {"CLIENT", "UNPAUSE"}), "+OK");
  ASSERT_TRUE(ReadReply(w, &got, 5000));
  EXPECT_EQ(got, "[+OK]");
}

TEST_F(ClientsTest, PauseEndsAtItsDeadline) {
  Client a = On(0), w = On(1);
  EXPECT_EQ(Cmd(a, {"CLIENT", "PAUSE", "200", "ALL"}), "+OK");
  ASSERT_TRUE(w.SendAll(Resp({"PING"})));
  std::string reply;
  ASSERT_TRUE(ReadReply(w, &reply, 5000));  // after ~200 ms
  EXPECT_EQ(reply, "+PONG");
}

// A client whose command waits for the pause is not idle: timeouts.idle
// (300 ms here) does not close it during a longer pause.
TEST(ClientsIdleTest, HeldClientIsNotClosedAsIdle) {
  Server s(ListenerYaml("resp", "resp"), "timeouts:\n  idle: 300ms\n", 2);
  ASSERT_TRUE(s.Start());
  Client a, w;
  ASSERT_TRUE(a.Connect(s.Port("resp")));
  ASSERT_TRUE(w.Connect(s.Port("resp")));
  EXPECT_EQ(RespCall(a, {"CLIENT", "PAUSE", "1200", "ALL"}), "+OK");
  ASSERT_TRUE(w.SendAll(Resp({"PING"})));
  std::string reply;
  ASSERT_TRUE(ReadReply(w, &reply, 5000));  // after ~1.2 s, still connected
  EXPECT_EQ(reply, "+PONG");
}

TEST_F(ClientsTest, ReplyOffAndSkip) {
  Client a = On(0);
  EXPECT_EQ(Cmd(a, {"CLIENT", "NO-EVICT", "on"}), "+OK");
  EXPECT_EQ(Cmd(a, {"CLIENT", "NO-EVICT", "maybe"}), "-ERR syntax error");
  ASSERT_TRUE(a.SendAll(Resp({"CLIENT", "REPLY", "OFF"}) + Resp({"SET", "k", "1"}) +
                        Resp({"GET", "nosuchcommand-x"}) + Resp({"CLIENT", "REPLY", "ON"})));
  std::string reply;
  ASSERT_TRUE(ReadReply(a, &reply));
  EXPECT_EQ(reply, "+OK");  // only ON's
  EXPECT_EQ(Cmd(a, {"GET", "k"}), "$1");
  ASSERT_TRUE(
      a.SendAll(Resp({"CLIENT", "REPLY", "SKIP"}) + Resp({"SET", "k", "2"}) + Resp({"GET", "k"})));
  ASSERT_TRUE(ReadReply(a, &reply));
  EXPECT_EQ(reply, "$2");  // neither SKIP's nor SET's
  EXPECT_EQ(Cmd(a, {"CLIENT", "REPLY", "MAYBE"}), "-ERR syntax error");
  EXPECT_NE(Cmd(a, {"CLIENT", "INFO"}).find(" flags=e "), std::string::npos);
}

TEST_F(ClientsTest, ListShowsTheProtocolVersion) {
  Client a = On(0), b = On(1);
  const std::string idb = IdOf(b);
  ASSERT_TRUE(b.SendAll(Resp({"HELLO", "3"})));
  std::string hello;  // a RESP3 map, ending with the empty modules array
  ASSERT_TRUE(b.RecvUntil("modules\r\n*0\r\n", &hello));
  const std::string line = Cmd(a, {"CLIENT", "LIST", "ID", idb});
  EXPECT_NE(line.find(" resp=3 "), std::string::npos) << line;
  EXPECT_NE(Cmd(a, {"CLIENT", "INFO"}).find(" resp=2 "), std::string::npos);
}

TEST_F(ClientsTest, SigkilledWorkerLeavesNoEntries) {
  Client a = On(0), b = On(1);
  ASSERT_EQ(Cmd(b, {"CLIENT", "SETNAME", "victim"}), "+OK");
  ASSERT_NE(Cmd(a, {"CLIENT", "LIST"}).find(" name=victim "), std::string::npos);
  const pid_t old = PidOf(1);
  ASSERT_GT(old, 0);
  ASSERT_EQ(kill(old, SIGKILL), 0);
  EXPECT_TRUE(b.WaitClosed(5000));
  ASSERT_TRUE(WaitFor([&] { return server_->GenerationUp(2, {old}); }, 10000));
  // Entries of the dead worker are gone, and the new worker lists its own.
  EXPECT_EQ(Cmd(a, {"CLIENT", "LIST"}).find(" name=victim "), std::string::npos);
  Client c = On(1);
  const std::string list = Cmd(a, {"CLIENT", "LIST"});
  EXPECT_NE(list.find("id=" + IdOf(c) + " "), std::string::npos) << list;
  EXPECT_EQ(list.find(" name=victim "), std::string::npos) << list;
}

}  // namespace
}  // namespace pf::test
