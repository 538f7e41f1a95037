// tests/integration/test_pubsub.cc: pub/sub over resp across workers (the
// real binary, 2 workers): delivery and order across workers, Redis' reply
// shapes and subscribed-mode rules, fan-out, slow subscribers cut off with
// the worker's memory bounded, ring overrun, reserved channels, per-client
// limits, and subscriptions released when clients or workers vanish. Then
// the same bus over kv-json: push lines, counts, error codes.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

std::string Next(Client& c, int timeout_ms = 5000) {
  std::string r;
  return ReadReply(c, &r, timeout_ms) ? r : "<no reply>";
}

std::string Cmd(Client& c, const std::vector<std::string>& argv) {
  if (!c.SendAll(Resp(argv))) return "<send failed>";
  return Next(c);
}

long RssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

class PubSubTest : public ::testing::Test {
 protected:
  void StartServer(const std::string& extra = "") {
    server_ = std::make_unique<Server>(ListenerYaml("resp", "resp"), extra, 2);
    ASSERT_TRUE(server_->Start());
  }
  uint16_t Port() const { return server_->Port("resp"); }

  static int WorkerOf(Client& c) {
    const std::string info = Cmd(c, {"CLIENT", "INFO"});
    const size_t at = info.find("worker=");
    return at == std::string::npos ? -1 : std::atoi(info.c_str() + at + 7);
  }
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
  int64_t NumSub(Client& c, const std::string& ch) {
    const std::string r = Cmd(c, {"PUBSUB", "NUMSUB", ch});
    const size_t at = r.rfind(":");
    return at == std::string::npos ? -1 : std::stoll(r.substr(at + 1, r.size() - at - 2));
  }

  std::unique_ptr<Server> server_;
};

TEST_F(PubSubTest, PublishReachesSubscriberOnAnotherWorker) {
  StartServer();
  Client sub = On(0), psub = On(0), pub = On(1);
  EXPECT_EQ(Cmd(sub, {"SUBSCRIBE", "news", "sport"}), "[$subscribe,$news,:1]");
  EXPECT_EQ(Next(sub), "[$subscribe,$sport,:2]");
  EXPECT_EQ(Cmd(psub, {"PSUBSCRIBE", "n*"}), "[$psubscribe,$n*,:1]");
  EXPECT_EQ(Cmd(pub, {"PUBLISH", "news", "hello"}), ":2");
  EXPECT_EQ(Next(sub), "[$message,$news,$hello]");
  EXPECT_EQ(Next(psub), "[$pmessage,$n*,$news,$hello]");
  EXPECT_EQ(Cmd(pub, {"PUBLISH", "sport", "goal"}), ":1");
  EXPECT_EQ(Next(sub), "[$message,$sport,$goal]");
  EXPECT_EQ(Cmd(pub, {"PUBLISH", "nobody", "x"}), ":1");  // the pattern only
  EXPECT_EQ(Next(psub), "[$pmessage,$n*,$nobody,$x]");
  EXPECT_EQ(Cmd(pub, {"PUBLISH", "other", "x"}), ":0");
  // And the other direction: a subscriber on worker 1, a publisher on worker 0.
  Client sub1 = On(1), pub0 = On(0);
  EXPECT_EQ(Cmd(sub1, {"SUBSCRIBE", "back"}), "[$subscribe,$back,:1]");
  EXPECT_EQ(Cmd(pub0, {"PUBLISH", "back", std::string("bin\0\r\nary", 9)}), ":1");
  EXPECT_EQ(Next(sub1), "[$message,$back,$" + std::string("bin\0\r\nary", 9) + "]");
}

TEST_F(PubSubTest, MessagesFromOnePublisherArriveInOrder) {
  // A ring larger than the burst: a burst longer than the ring, while the
  // other worker is not scheduled, is the overrun case (tested below).
  StartServer("pubsub: {ring_slots: 8192, max_message_bytes: 256}\n");
  Client sub = On(0), local = On(1), pub = On(1);
  EXPECT_EQ(Cmd(sub, {"SUBSCRIBE", "seq"}), "[$subscribe,$seq,:1]");
  EXPECT_EQ(Cmd(local, {"SUBSCRIBE", "seq"}), "[$subscribe,$seq,:1]");
  const int n = 3000;
  std::string batch;
  for (int i = 0; i < n; i++) batch += Resp({"PUBLISH", "seq", std::to_string(i)});
  ASSERT_TRUE(pub.SendAll(batch));
  for (int i = 0; i < n; i++) ASSERT_EQ(Next(pub), ":2") << i;
  for (int i = 0; i < n; i++) {
    ASSERT_EQ(Next(sub), "[$message,$seq,$" + std::to_string(i) + "]") << "cross-worker, " << i;
    ASSERT_EQ(Next(local), "[$message,$seq,$" + std::to_string(i) + "]") << "same worker, " << i;
  }
}

TEST_F(PubSubTest, SubscribedConnectionFollowsRedisRules) {
  StartServer();
  Client c = On(0);
  EXPECT_EQ(Cmd(c, {"UNSUBSCRIBE"}), "[$unsubscribe,(nil),:0]");
  EXPECT_EQ(Cmd(c, {"SUBSCRIBE"}), "-ERR wrong number of arguments for 'subscribe' command");
  EXPECT_EQ(Cmd(c, {"SUBSCRIBE", "a"}), "[$subscribe,$a,:1]");
  EXPECT_EQ(Cmd(c, {"SUBSCRIBE", "a"}), "[$subscribe,$a,:1]");  // twice counts once
  EXPECT_EQ(Cmd(c, {"PSUBSCRIBE", "b*"}), "[$psubscribe,$b*,:2]");
  EXPECT_EQ(Cmd(c, {"GET", "k"}),
            "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
            "RESET are allowed in this context");
  EXPECT_EQ(Cmd(c, {"client", "info"}).substr(0, 30), "-ERR Can't execute 'client|inf");
  EXPECT_EQ(Cmd(c, {"PUBLISH", "a", "x"}).substr(0, 30), "-ERR Can't execute 'publish': ");
  EXPECT_EQ(Cmd(c, {"PING"}), "[$pong,$]");
  EXPECT_EQ(Cmd(c, {"PING", "hi"}), "[$pong,$hi]");
  EXPECT_EQ(Cmd(c, {"NOSUCH"}).substr(0, 24), "-ERR unknown command 'NO");
  EXPECT_EQ(Cmd(c, {"UNSUBSCRIBE"}), "[$unsubscribe,$a,:1]");
  EXPECT_EQ(Cmd(c, {"PUNSUBSCRIBE"}), "[$punsubscribe,$b*,:0]");
  EXPECT_EQ(Cmd(c, {"SET", "k", "v"}), "+OK");  // normal again
  EXPECT_EQ(Cmd(c, {"SUBSCRIBE", "z"}), "[$subscribe,$z,:1]");
  EXPECT_EQ(Cmd(c, {"RESET"}), "+RESET");
  EXPECT_EQ(Cmd(c, {"GET", "k"}), "$v");
  EXPECT_EQ(Cmd(c, {"SUBSCRIBE", "q"}), "[$subscribe,$q,:1]");
  EXPECT_EQ(Cmd(c, {"QUIT"}), "+OK");
  EXPECT_TRUE(c.WaitClosed());
}

TEST_F(PubSubTest, IntrospectionSeesEveryWorker) {
  StartServer();
  Client a = On(0), b = On(1), q = On(0);
  EXPECT_EQ(Cmd(a, {"SUBSCRIBE", "alpha", "beta"}), "[$subscribe,$alpha,:1]");
  EXPECT_EQ(Next(a), "[$subscribe,$beta,:2]");
  EXPECT_EQ(Cmd(b, {"SUBSCRIBE", "alpha"}), "[$subscribe,$alpha,:1]");
  EXPECT_EQ(Cmd(b, {"PSUBSCRIBE", "x*", "y*"}), "[$psubscribe,$x*,:2]");
  EXPECT_EQ(Next(b), "[$psubscribe,$y*,:3]");
  EXPECT_EQ(Cmd(q, {"PUBSUB", "NUMSUB", "alpha", "beta", "gamma"}),
            "[$alpha,:2,$beta,:1,$gamma,:0]");
  EXPECT_EQ(Cmd(q, {"PUBSUB", "NUMPAT"}), ":2");
  const std::string chans = Cmd(q, {"PUBSUB", "CHANNELS"});
  EXPECT_TRUE(chans == "[$alpha,$beta]" || chans == "[$beta,$alpha]") << chans;
  EXPECT_EQ(Cmd(q, {"PUBSUB", "CHANNELS", "a*"}), "[$alpha]");
  EXPECT_EQ(Cmd(q, {"PUBSUB", "NUMSUB"}), "[]");
  EXPECT_EQ(Cmd(q, {"PUBSUB", "NUMPAT", "x"}),
            "-ERR wrong number of arguments for 'pubsub|numpat' command");
  EXPECT_EQ(Cmd(q, {"PUBSUB", "BOGUS"}), "-ERR unknown subcommand 'BOGUS'. Try PUBSUB HELP.");
}

TEST_F(PubSubTest, VanishedClientsReleaseTheirSubscriptions) {
  StartServer();
  Client q = On(0);
  std::vector<Client> subs;
  for (int i = 0; i < 40; i++) {
    Client c;
    ASSERT_TRUE(c.Connect(Port()));
    ASSERT_EQ(Cmd(c, {"SUBSCRIBE", "gone", "gone2"}), "[$subscribe,$gone,:1]");
    ASSERT_EQ(Next(c), "[$subscribe,$gone2,:2]");
    ASSERT_EQ(Cmd(c, {"PSUBSCRIBE", "gone*"}), "[$psubscribe,$gone*,:3]");
    subs.push_back(std::move(c));
  }
  EXPECT_EQ(NumSub(q, "gone"), 40);
  EXPECT_EQ(Cmd(q, {"PUBSUB", "NUMPAT"}), ":1");
  for (size_t i = 0; i < subs.size(); i++) {
    if (i % 2)
      subs[i].ResetClose();
    else
      subs[i].Close();
  }
  EXPECT_TRUE(WaitFor([&] { return NumSub(q, "gone") == 0; }, 5000));
  EXPECT_EQ(NumSub(q, "gone2"), 0);
  EXPECT_EQ(Cmd(q, {"PUBSUB", "NUMPAT"}), ":0");
  EXPECT_EQ(Cmd(q, {"PUBSUB", "CHANNELS"}), "[]");
  EXPECT_EQ(Cmd(q, {"PUBLISH", "gone", "x"}), ":0");
}

TEST_F(PubSubTest, CrashedWorkerDoesNotLeakCounts) {
  StartServer();
  Client sub = On(1), q = On(0);
  ASSERT_EQ(Cmd(sub, {"SUBSCRIBE", "crash"}), "[$subscribe,$crash,:1]");
  ASSERT_EQ(NumSub(q, "crash"), 1);
  const pid_t victim = PidOf(1);
  ASSERT_GT(victim, 0);
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  EXPECT_TRUE(WaitFor([&] { return NumSub(q, "crash") == 0; }, 5000));
  EXPECT_EQ(Cmd(q, {"PUBLISH", "crash", "x"}), ":0");
}

TEST_F(PubSubTest, FanOutToAThousandSubscribers) {
  StartServer();
  constexpr int kSubs = 1000;
  std::vector<Client> subs(kSubs);
  std::string subscribe = Resp({"SUBSCRIBE", "fan"});
  for (auto& c : subs) ASSERT_TRUE(c.Connect(Port()));
  for (auto& c : subs) ASSERT_TRUE(c.SendAll(subscribe));
  for (auto& c : subs) ASSERT_EQ(Next(c), "[$subscribe,$fan,:1]");
  Client pub;
  ASSERT_TRUE(pub.Connect(Port()));
  for (int m = 0; m < 5; m++)
    ASSERT_EQ(Cmd(pub, {"PUBLISH", "fan", "m" + std::to_string(m)}), ":1000");
  for (auto& c : subs)
    for (int m = 0; m < 5; m++) ASSERT_EQ(Next(c), "[$message,$fan,$m" + std::to_string(m) + "]");
}

TEST_F(PubSubTest, SlowSubscriberIsCutOffAndWorkerMemoryStaysBounded) {
  StartServer(
      "pubsub: {output_hard_limit: 512k, output_soft_limit: 256k, output_soft_seconds: 1}\n");
  // `fast` reads everything and paces the test, so worker 0 keeps up with the
  // ring; `slow` never reads.
  Client slow = On(0), fast = On(0), pub = On(1), q = On(1);
  ASSERT_EQ(Cmd(slow, {"SUBSCRIBE", "flood"}), "[$subscribe,$flood,:1]");
  ASSERT_EQ(Cmd(fast, {"SUBSCRIBE", "flood"}), "[$subscribe,$flood,:1]");
  const pid_t w0 = PidOf(0);
  const long rss0 = RssKb(w0);
  ASSERT_GT(rss0, 0);
  // 4000-byte messages, up to 48 MB in all, until the server drops the reader.
  const std::string msg(4000, 'x');
  constexpr int kBatch = 64;
  std::string batch;
  for (int i = 0; i < kBatch; i++) batch += Resp({"PUBLISH", "flood", msg});
  bool cut = false;
  long peak = rss0;
  for (int round = 0; round < 192 && !cut; round++) {
    ASSERT_TRUE(pub.SendAll(batch));
    for (int i = 0; i < kBatch; i++) ASSERT_NE(Next(pub), "<no reply>");
    for (int i = 0; i < kBatch; i++) ASSERT_EQ(Next(fast), "[$message,$flood,$" + msg + "]");
    peak = std::max(peak, RssKb(w0));
    cut = NumSub(q, "flood") == 1;
  }
  EXPECT_TRUE(cut) << "the slow subscriber was never disconnected";
  EXPECT_TRUE(server_->WaitLog(
      "over pubsub.output_hard_limit (524288): disconnecting the slow subscriber"));
  EXPECT_LT(peak - rss0, 16 * 1024) << "worker 0 grew from " << rss0 << " kB to " << peak << " kB";
  EXPECT_TRUE(slow.WaitClosed(10000));
  EXPECT_EQ(Cmd(pub, {"PUBLISH", "flood", "still"}), ":1");
  EXPECT_EQ(Next(fast), "[$message,$flood,$still]");
}

TEST_F(PubSubTest, RingOverrunDisconnectsTheSubscribersThatMissedMessages) {
  StartServer("pubsub: {ring_slots: 16}\n");
  Client behind = On(0), keeps_up = On(1), pub = On(1), q = On(1);
  ASSERT_EQ(Cmd(behind, {"SUBSCRIBE", "ring"}), "[$subscribe,$ring,:1]");
  ASSERT_EQ(Cmd(keeps_up, {"SUBSCRIBE", "ring"}), "[$subscribe,$ring,:1]");
  const pid_t w0 = PidOf(0);
  ASSERT_GT(w0, 0);
  // Worker 0 cannot read the ring while stopped; 100 messages go by.
  ASSERT_EQ(kill(w0, SIGSTOP), 0);
  std::string batch;
  for (int i = 0; i < 100; i++) batch += Resp({"PUBLISH", "ring", std::to_string(i)});
  const bool sent = pub.SendAll(batch);
  std::vector<std::string> replies;
  for (int i = 0; i < 100; i++) replies.push_back(Next(pub));
  kill(w0, SIGCONT);
  ASSERT_TRUE(sent);
  for (int i = 0; i < 100; i++) ASSERT_EQ(replies[i], ":2") << i;
  // The worker that kept up delivered everything, in order.
  for (int i = 0; i < 100; i++)
    ASSERT_EQ(Next(keeps_up), "[$message,$ring,$" + std::to_string(i) + "]");
  // The one that fell behind never delivers an overwritten message: its
  // subscriber is disconnected, with the reason in the log.
  std::string got;
  EXPECT_TRUE(behind.WaitClosed(5000));
  EXPECT_EQ(behind.buffered(), "") << "a subscriber that missed messages got some of them";
  EXPECT_TRUE(server_->WaitLog("messages behind a ring of 16"));
  EXPECT_TRUE(WaitFor([&] { return NumSub(q, "ring") == 1; }, 5000));
}

TEST_F(PubSubTest, ReservedChannelsNeedAnAdmin) {
  StartServer("pubsub: {admin_token: admin-secret-1}\n");
  Client c = On(0), sub = On(1);
  ASSERT_EQ(Cmd(sub, {"SUBSCRIBE", "$sys.notice"}), "[$subscribe,$$sys.notice,:1]");
  EXPECT_EQ(Cmd(c, {"PUBLISH", "$sys.notice", "fake"}),
            "-NOPERM channel '$sys.notice' is reserved: only authenticated admins may publish "
            "under '$sys.'");
  EXPECT_EQ(Cmd(c, {"AUTH", "admin", "wrong-token"}),
            "-WRONGPASS invalid username-password pair or user is disabled.");
  EXPECT_EQ(Cmd(c, {"PUBLISH", "$sys.notice", "fake"}).substr(0, 7), "-NOPERM");
  EXPECT_EQ(Cmd(c, {"AUTH", "admin", "admin-secret-1"}), "+OK");
  EXPECT_EQ(Cmd(c, {"PUBLISH", "$sys.notice", "real"}), ":1");
  EXPECT_EQ(Next(sub), "[$message,$$sys.notice,$real]");  // and only this one
  EXPECT_EQ(Cmd(sub, {"PING"}), "[$pong,$]");
}

TEST_F(PubSubTest, PerClientLimits) {
  StartServer(
      "pubsub: {max_channels_per_client: 3, max_message_bytes: 64, publish_rate_per_client: 5}\n");
  Client c = On(0), p = On(1);
  EXPECT_EQ(Cmd(c, {"SUBSCRIBE", "a", "b"}), "[$subscribe,$a,:1]");
  EXPECT_EQ(Next(c), "[$subscribe,$b,:2]");
  EXPECT_EQ(Cmd(c, {"PSUBSCRIBE", "c*", "d*"}), "[$psubscribe,$c*,:3]");
  EXPECT_EQ(Next(c),
            "-ERR too many subscriptions: at most 3 channels and patterns per client "
            "(pubsub.max_channels_per_client)");
  EXPECT_EQ(Cmd(p, {"PUBLISH", "a", std::string(65, 'x')}),
            "-ERR message is larger than pubsub.max_message_bytes (64 bytes)");
  std::string batch;
  for (int i = 0; i < 10; i++) batch += Resp({"PUBLISH", "a", std::to_string(i)});
  ASSERT_TRUE(p.SendAll(batch));
  int ok = 0, limited = 0;
  for (int i = 0; i < 10; i++) {
    const std::string r = Next(p);
    if (r == ":1")
      ok++;
    else if (r.find("publish rate limit") != std::string::npos)
      limited++;
  }
  EXPECT_EQ(ok, 5);
  EXPECT_EQ(limited, 5);
  for (int i = 0; i < 5; i++) EXPECT_EQ(Next(c), "[$message,$a,$" + std::to_string(i) + "]");
}

TEST_F(PubSubTest, RedisCliSubscribeAndPublishAcrossWorkers) {
  StartServer();
  const std::string port = std::to_string(Port());
  const std::string pidfile = server_->dir() + "/cli.pid";
  FILE* f = popen(("sh -c 'echo $$ > " + pidfile + "; exec timeout 10 redis-cli -p " + port +
                   " SUBSCRIBE cli' 2>&1")
                      .c_str(),
                  "r");
  ASSERT_NE(f, nullptr);
  Client q = On(0);
  ASSERT_TRUE(WaitFor([&] { return NumSub(q, "cli") == 1; }, 5000));
  // One publisher on each worker: one of them is not redis-cli's worker.
  Client p0 = On(0), p1 = On(1);
  std::string out;
  EXPECT_EQ(Sh("timeout 10 redis-cli -p " + port + " PUBLISH cli from-cli", &out), 0);
  EXPECT_EQ(out, "1\n");
  EXPECT_EQ(Cmd(p0, {"PUBLISH", "cli", "from-w0"}), ":1");
  EXPECT_EQ(Cmd(p1, {"PUBLISH", "cli", "from-w1"}), ":1");
  std::string all;
  char line[512];
  while (all.find("from-w1") == std::string::npos && fgets(line, sizeof line, f)) all += line;
  pid_t cli = 0;
  std::ifstream(pidfile) >> cli;
  if (cli > 0) kill(cli, SIGTERM);  // timeout(1) ends redis-cli with it
  pclose(f);
  EXPECT_EQ(
      all,
      "subscribe\ncli\n1\nmessage\ncli\nfrom-cli\nmessage\ncli\nfrom-w0\nmessage\ncli\nfrom-w1\n");
}

// ---- kv-json (docs/protocol-kv-json.md, "Pub/sub") ----

class KvJsonPubSubTest : public ::testing::Test {
 protected:
  void StartServer(const std::string& extra = "") {
    server_ = std::make_unique<Server>(ListenerYaml("kv", "kv-json") + ListenerYaml("resp", "resp"),
                                       extra, 2);
    ASSERT_TRUE(server_->Start());
  }

  // One request line; its reply (or the next line, whatever it is).
  static std::string Req(Client& c, const std::string& json) {
    if (!c.SendAll(json + "\n")) return "<send failed>";
    return Line(c);
  }
  static std::string Line(Client& c, int timeout_ms = 5000) {
    std::string l;
    return c.RecvLine(&l, timeout_ms) ? l : "<no line>";
  }
  // A kv-json connection served by worker `slot` (INFO server says which).
  Client On(int slot) {
    for (int i = 0; i < 200; i++) {
      Client c;
      if (!c.Connect(server_->Port("kv"))) break;
      const std::string info = Req(c, R"({"action":"INFO","section":"server"})");
      const size_t at = info.find("worker_slot:");
      if (at == std::string::npos) break;
      if (std::atoi(info.c_str() + at + 12) == slot) return c;
    }
    ADD_FAILURE() << "no kv-json connection landed on worker " << slot;
    return Client();
  }

  std::unique_ptr<Server> server_;
};

TEST_F(KvJsonPubSubTest, SubscribePublishUnsubscribeAcrossWorkers) {
  StartServer();
  Client sub = On(0), pub = On(1);
  EXPECT_EQ(Req(sub, R"({"id":1,"action":"SUBSCRIBE","channel":"news"})"),
            R"({"id":1,"ok":true,"result":1})");
  EXPECT_EQ(Req(sub, R"({"id":2,"action":"SUBSCRIBE","channel":"sport"})"),
            R"({"id":2,"ok":true,"result":2})");
  // Twice counts once; actions are case-insensitive.
  EXPECT_EQ(Req(sub, R"({"id":3,"action":"subscribe","channel":"news"})"),
            R"({"id":3,"ok":true,"result":2})");
  EXPECT_EQ(Req(pub, R"({"id":"p1","action":"PUBLISH","channel":"news","message":"hi \"you\""})"),
            R"({"id":"p1","ok":true,"result":1})");
  EXPECT_EQ(Line(sub), R"({"type":"message","channel":"news","data":"hi \"you\""})");
  // Bytes that are not UTF-8: channel and data in base64.
  EXPECT_EQ(
      Req(pub,
          R"({"id":4,"action":"PUBLISH","channel":"sport","message":"AP8=","encoding":"base64"})"),
      R"({"id":4,"ok":true,"result":1})");
  EXPECT_EQ(Line(sub),
            R"({"type":"message","channel":"c3BvcnQ=","data":"AP8=","encoding":"base64"})");

  // The other direction, with a RESP subscriber of the same channel: the
  // count is over workers and protocols.
  Client sub1 = On(1), pub0 = On(0), rsub;
  ASSERT_TRUE(rsub.Connect(server_->Port("resp")));
  EXPECT_EQ(Cmd(rsub, {"SUBSCRIBE", "back"}), "[$subscribe,$back,:1]");
  EXPECT_EQ(Req(sub1, R"({"id":5,"action":"SUBSCRIBE","channel":"back"})"),
            R"({"id":5,"ok":true,"result":1})");
  EXPECT_EQ(Req(pub0, R"({"id":6,"action":"PUBLISH","channel":"back","message":"from 0"})"),
            R"({"id":6,"ok":true,"result":2})");
  EXPECT_EQ(Line(sub1), R"({"type":"message","channel":"back","data":"from 0"})");
  EXPECT_EQ(Next(rsub), "[$message,$back,$from 0]");

  // UNSUBSCRIBE one channel, then all; later messages on them never come
  // (the next line is the one published after them).
  EXPECT_EQ(Req(sub, R"({"id":7,"action":"UNSUBSCRIBE","channel":"news"})"),
            R"({"id":7,"ok":true,"result":1})");
  EXPECT_EQ(Req(pub, R"({"id":8,"action":"PUBLISH","channel":"news","message":"gone"})"),
            R"({"id":8,"ok":true,"result":0})");
  EXPECT_EQ(Req(pub, R"({"id":9,"action":"PUBLISH","channel":"sport","message":"still"})"),
            R"({"id":9,"ok":true,"result":1})");
  EXPECT_EQ(Line(sub), R"({"type":"message","channel":"sport","data":"still"})");
  EXPECT_EQ(Req(sub, R"({"id":10,"action":"UNSUBSCRIBE"})"), R"({"id":10,"ok":true,"result":0})");
  EXPECT_EQ(Req(pub, R"({"id":11,"action":"PUBLISH","channel":"sport","message":"x"})"),
            R"({"id":11,"ok":true,"result":0})");
  // Not subscribed any more: an ordinary connection again.
  EXPECT_EQ(Req(sub, R"({"id":12,"action":"PING"})"), R"({"id":12,"ok":true,"result":"PONG"})");
}

// A message is rendered once per protocol and pattern and shared by the
// subscribers of that shape: each still gets its own protocol's bytes, a
// client with a channel and a pattern subscription gets both pushes, in order.
TEST_F(KvJsonPubSubTest, OneMessageReachesEveryProtocolAndPatternInItsShape) {
  StartServer();
  auto resp_on = [&](int slot) {
    for (int i = 0; i < 200; i++) {
      Client c;
      if (!c.Connect(server_->Port("resp"))) break;
      const std::string info = Cmd(c, {"CLIENT", "INFO"});
      const size_t at = info.find("worker=");
      if (at != std::string::npos && std::atoi(info.c_str() + at + 7) == slot) return c;
    }
    ADD_FAILURE() << "no resp connection landed on worker " << slot;
    return Client();
  };
  Client r1 = resp_on(0), r2 = resp_on(0), rp = resp_on(0), j1 = On(0), j2 = On(0), pub = On(1);
  EXPECT_EQ(Cmd(r1, {"SUBSCRIBE", "mix"}), "[$subscribe,$mix,:1]");
  EXPECT_EQ(Cmd(r2, {"SUBSCRIBE", "mix"}), "[$subscribe,$mix,:1]");
  EXPECT_EQ(Cmd(r2, {"PSUBSCRIBE", "m*"}), "[$psubscribe,$m*,:2]");
  EXPECT_EQ(Cmd(rp, {"PSUBSCRIBE", "mi?"}), "[$psubscribe,$mi?,:1]");
  for (Client* j : {&j1, &j2})
    EXPECT_EQ(Req(*j, R"({"id":1,"action":"SUBSCRIBE","channel":"mix"})"),
              R"({"id":1,"ok":true,"result":1})");
  for (const char* text : {"one", "two"}) {
    EXPECT_EQ(Req(pub, std::string(R"({"id":2,"action":"PUBLISH","channel":"mix","message":")") +
                           text + "\"}"),
              R"({"id":2,"ok":true,"result":6})");
    EXPECT_EQ(Next(r1), std::string("[$message,$mix,$") + text + "]");
    EXPECT_EQ(Next(r2), std::string("[$message,$mix,$") + text + "]");
    EXPECT_EQ(Next(r2), std::string("[$pmessage,$m*,$mix,$") + text + "]");
    EXPECT_EQ(Next(rp), std::string("[$pmessage,$mi?,$mix,$") + text + "]");
    for (Client* j : {&j1, &j2})
      EXPECT_EQ(Line(*j),
                std::string(R"({"type":"message","channel":"mix","data":")") + text + "\"}");
  }
  // A pipelined burst reaches worker 0 as runs of messages on one channel
  // (five on "solo", which no pattern matches, then five on "mix", ...):
  // the same pushes, in the same order (r2: each message, then its pmessage).
  EXPECT_EQ(Cmd(r1, {"SUBSCRIBE", "solo"}), "[$subscribe,$solo,:2]");
  EXPECT_EQ(Req(j1, R"({"id":3,"action":"SUBSCRIBE","channel":"solo"})"),
            R"({"id":3,"ok":true,"result":2})");
  Client rpub = resp_on(1);
  const int n = 60;
  auto channel = [](int i) { return (i / 5) % 2 ? std::string("mix") : std::string("solo"); };
  std::string batch;
  for (int i = 0; i < n; i++) batch += Resp({"PUBLISH", channel(i), "m" + std::to_string(i)});
  ASSERT_TRUE(rpub.SendAll(batch));
  for (int i = 0; i < n; i++) ASSERT_EQ(Next(rpub), channel(i) == "mix" ? ":6" : ":2") << i;
  for (int i = 0; i < n; i++) {
    const std::string m = "m" + std::to_string(i), ch = channel(i);
    ASSERT_EQ(Next(r1), "[$message,$" + ch + ",$" + m + "]") << i;
    ASSERT_EQ(Line(j1), R"({"type":"message","channel":")" + ch + R"(","data":")" + m + "\"}") << i;
    if (ch != "mix") continue;
    ASSERT_EQ(Next(r2), "[$message,$mix,$" + m + "]") << i;
    ASSERT_EQ(Next(r2), "[$pmessage,$m*,$mix,$" + m + "]") << i;
    ASSERT_EQ(Next(rp), "[$pmessage,$mi?,$mix,$" + m + "]") << i;
    ASSERT_EQ(Line(j2), R"({"type":"message","channel":"mix","data":")" + m + "\"}") << i;
  }
}

TEST_F(KvJsonPubSubTest, OwnPublishIsPushedAfterItsReply) {
  StartServer();
  Client c = On(0);
  EXPECT_EQ(Req(c, R"({"id":1,"action":"SUBSCRIBE","channel":"self"})"),
            R"({"id":1,"ok":true,"result":1})");
  EXPECT_EQ(Req(c, R"({"id":2,"action":"PUBLISH","channel":"self","message":"me"})"),
            R"({"id":2,"ok":true,"result":1})");
  EXPECT_EQ(Line(c), R"({"type":"message","channel":"self","data":"me"})");
  // Pipelined: every reply whole, each followed by its push.
  std::string batch;
  for (int i = 0; i < 3; i++)
    batch += R"({"id":)" + std::to_string(10 + i) +
             R"(,"action":"PUBLISH","channel":"self","message":"m)" + std::to_string(i) + "\"}\n";
  ASSERT_TRUE(c.SendAll(batch));
  for (int i = 0; i < 3; i++) {
    EXPECT_EQ(Line(c), R"({"id":)" + std::to_string(10 + i) + R"(,"ok":true,"result":1})") << i;
    EXPECT_EQ(Line(c),
              R"({"type":"message","channel":"self","data":"m)" + std::to_string(i) + "\"}")
        << i;
  }
}

TEST_F(KvJsonPubSubTest, BadRequestsGetTheDocumentedErrors) {
  StartServer("pubsub: {max_message_bytes: 64, max_channels_per_client: 2}\n");
  Client c = On(0), sub = On(1);
  // A reserved channel: anyone may listen, no kv-json client may publish.
  EXPECT_EQ(Req(sub, R"({"id":1,"action":"SUBSCRIBE","channel":"$sys.notice"})"),
            R"({"id":1,"ok":true,"result":1})");
  EXPECT_EQ(
      Req(c, R"({"id":2,"action":"PUBLISH","channel":"$sys.notice","message":"fake"})"),
      R"({"id":2,"ok":false,"error":{"code":"BAD_REQUEST","message":"channel '$sys.notice' is )"
      R"(reserved: only authenticated admins may publish under '$sys.'"}})");
  EXPECT_EQ(
      Req(c, R"({"id":3,"action":"SUBSCRIBE"})"),
      R"({"id":3,"ok":false,"error":{"code":"BAD_REQUEST","message":"missing required field 'channel' )"
      R"(for action SUBSCRIBE"}})");
  EXPECT_EQ(
      Req(c, R"({"id":4,"action":"PUBLISH","channel":"a"})"),
      R"({"id":4,"ok":false,"error":{"code":"BAD_REQUEST","message":"missing required field 'message' )"
      R"(for action PUBLISH"}})");
  EXPECT_EQ(
      Req(c, R"({"id":5,"action":"SUBSCRIBE","channel":7})"),
      R"({"id":5,"ok":false,"error":{"code":"BAD_REQUEST","message":"field 'channel' must be a string"}})");
  EXPECT_EQ(
      Req(c, R"({"id":6,"action":"SUBSCRIBE","channel":"a","pattern":"a*"})"),
      R"({"id":6,"ok":false,"error":{"code":"BAD_REQUEST","message":"unknown field 'pattern' for action )"
      R"(SUBSCRIBE"}})");
  EXPECT_EQ(Req(c, R"({"id":7,"action":"PUBLISH","channel":"a","message":")" +
                       std::string(65, 'x') + "\"}"),
            R"({"id":7,"ok":false,"error":{"code":"BAD_REQUEST","message":"message is larger than )"
            R"J(pubsub.max_message_bytes (64 bytes)"}})J");
  EXPECT_EQ(
      Req(c, R"({"id":8,"action":"PUBLISH","channel":"a","message":"%%","encoding":"base64"})"),
      R"({"id":8,"ok":false,"error":{"code":"BAD_REQUEST","message":"message is not valid base64"}})");
  EXPECT_EQ(Req(c, R"({"id":9,"action":"SUBSCRIBE","channel":"a"})"),
            R"({"id":9,"ok":true,"result":1})");
  EXPECT_EQ(Req(c, R"({"id":10,"action":"SUBSCRIBE","channel":"b"})"),
            R"({"id":10,"ok":true,"result":2})");
  EXPECT_EQ(
      Req(c, R"({"id":11,"action":"SUBSCRIBE","channel":"c"})"),
      R"({"id":11,"ok":false,"error":{"code":"BAD_REQUEST","message":"too many subscriptions: at most 2 )"
      R"J(channels and patterns per client (pubsub.max_channels_per_client)"}})J");
  EXPECT_EQ(Req(c, "{\"id\":12,").substr(0, 41), R"({"ok":false,"error":{"code":"BAD_JSON","m)");
  EXPECT_EQ(
      Req(c, R"({"id":13,"action":"PSUBSCRIBE","channel":"a*"})"),
      R"({"id":13,"ok":false,"error":{"code":"UNKNOWN_ACTION","message":"unknown action 'PSUBSCRIBE'"}})");
  // None of that closed the connection or dropped its subscriptions, and the
  // refused publish reached nobody (the next push is the later message).
  EXPECT_EQ(Req(sub, R"({"id":14,"action":"PUBLISH","channel":"b","message":"ok"})"),
            R"({"id":14,"ok":true,"result":1})");
  EXPECT_EQ(Line(c), R"({"type":"message","channel":"b","data":"ok"})");
  EXPECT_EQ(Req(sub, R"({"id":15,"action":"UNSUBSCRIBE"})"), R"({"id":15,"ok":true,"result":0})");
}

TEST_F(KvJsonPubSubTest, PasswordGuardsPubSub) {
  StartServer("kv: {password: kv-pass-1, shards: 8}\n");
  Client c;
  ASSERT_TRUE(c.Connect(server_->Port("kv")));
  EXPECT_EQ(
      Req(c, R"({"id":1,"action":"SUBSCRIBE","channel":"a"})"),
      R"({"id":1,"ok":false,"error":{"code":"NOAUTH","message":"Authentication required."}})");
  EXPECT_EQ(Req(c, R"({"id":2,"action":"PUBLISH","channel":"a","message":"m"})").substr(0, 54),
            R"({"id":2,"ok":false,"error":{"code":"NOAUTH","message":)");
  EXPECT_EQ(Req(c, R"({"id":3,"action":"AUTH","password":"kv-pass-1"})"), R"({"id":3,"ok":true})");
  EXPECT_EQ(Req(c, R"({"id":4,"action":"SUBSCRIBE","channel":"a"})"),
            R"({"id":4,"ok":true,"result":1})");
}

}  // namespace
}  // namespace pf::test
