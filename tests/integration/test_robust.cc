// tests/integration/test_robust.cc: errors that reach the client. A reply
// that ends the connection while the client is still sending (a header or a
// body over the limits, an inline command without its newline) must arrive
// whole, not be thrown away by a TCP reset: the close lingers, reading and
// dropping input for a bounded time.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

class RobustTest : public ::testing::Test {
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
  std::unique_ptr<Server> server_;
};

// Sends `data` from a thread (the server may stop reading before the end)
// while the test reads; returns what arrived before the server closed.
std::string SendAndReadUntilClosed(Client& c, const std::string& data, int timeout_ms = 10000) {
  std::thread sender([&] { c.SendAll(data, timeout_ms); });
  c.WaitClosed(timeout_ms);
  sender.join();
  return c.buffered();
}

TEST_F(RobustTest, HugeHttpHeaderGets431NotAReset) {
  Start();
  Client c = Connect("http");
  const std::string req =
      "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + std::string(200 * 1024, 'b') + "\r\n\r\n";
  const std::string got = SendAndReadUntilClosed(c, req);
  EXPECT_EQ(got.substr(0, 12), "HTTP/1.1 431") << got.substr(0, 200);
  EXPECT_NE(c.last_errno(), ECONNRESET);
}

TEST_F(RobustTest, HttpBodyOverTheLimitGets413WhileStillSending) {
  Start("limits: {max_request_bytes: 64k}\n");
  Client c = Connect("http");
  const std::string body(2 << 20, 'x');
  const std::string req =
      "PUT /kv/big HTTP/1.1\r\nHost: localhost\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\n\r\n" + body;
  const std::string got = SendAndReadUntilClosed(c, req);
  EXPECT_EQ(got.substr(0, 12), "HTTP/1.1 413") << got.substr(0, 200);
  EXPECT_NE(c.last_errno(), ECONNRESET);
}

TEST_F(RobustTest, HugeInlineRespCommandGetsTheProtocolError) {
  Start();
  Client c = Connect("resp");
  const std::string got = SendAndReadUntilClosed(c, std::string(200 * 1024, 'a'));
  EXPECT_EQ(got.substr(0, 64), "-ERR Protocol error: too big inline request\r\n") << got.size();
  EXPECT_NE(c.last_errno(), ECONNRESET);
}

// Zero-length arguments were free against max_request_bytes: a million of
// them made MGET build about 100 MB of working state. Each argument now
// counts its overhead too.
TEST_F(RobustTest, AMillionEmptyArgumentsAreATooBigRequest) {
  Start();
  Client c = Connect("resp");
  std::string req = "*1048576\r\n$4\r\nMGET\r\n";  // limits.max_multibulk_len arguments
  req.reserve(req.size() + 6 * 1048575);
  for (int i = 0; i < 1048575; i++) req += "$0\r\n\r\n";
  const std::string got = SendAndReadUntilClosed(c, req);
  // (A prefix only: the old behaviour answered a million nils.)
  EXPECT_EQ(got.substr(0, 64), "-ERR Protocol error: too big request\r\n")
      << got.size() << " bytes";
  // The server is fine and answers the next client.
  Client d = Connect("resp");
  EXPECT_EQ(RespCall(d, {"PING"}), "+PONG");
}

// A top-level number of /_stats ("workers_stalled").
long StatsTotalTop(uint16_t http_port, const std::string& name) {
  std::string out;
  Sh("timeout 5 curl -s http://127.0.0.1:" + std::to_string(http_port) + "/_stats", &out);
  const size_t at = out.find("\"" + name + "\":");
  return at == std::string::npos ? -1 : std::atol(out.c_str() + at + name.size() + 3);
}

// A counter of /_stats' totals ("closed_output_limit", ...).
long StatsTotal(uint16_t http_port, const std::string& name) {
  std::string out;
  Sh("timeout 5 curl -s http://127.0.0.1:" + std::to_string(http_port) + "/_stats", &out);
  const size_t totals = out.find("\"totals\"");
  const size_t at = out.find("\"" + name + "\":", totals == std::string::npos ? 0 : totals);
  return at == std::string::npos ? -1 : std::atol(out.c_str() + at + name.size() + 3);
}

// Fills the store with one ~900 KB value and returns MGET of it `n` times.
std::vector<std::string> BigMget(Client& c, int n) {
  EXPECT_EQ(RespCall(c, {"SET", "big", std::string(900 * 1024, 'v')}), "+OK");
  std::vector<std::string> argv = {"MGET"};
  for (int i = 0; i < n; i++) argv.push_back("big");
  return argv;
}

// Clients that ask for big replies and never read them were unbounded:
// eight of them held hundreds of MB. Past limits.client_output_hard a normal
// client is disconnected (counted and logged).
TEST_F(RobustTest, ClientThatDoesNotReadIsCutAtTheOutputHardLimit) {
  Start("limits: {client_output_hard: 4m, client_output_soft: 0, clients_memory: 0}\n");
  Client setup = Connect("resp");
  const std::vector<std::string> mget = BigMget(setup, 16);  // a ~14 MB reply
  Client greedy = Connect("resp");
  ASSERT_TRUE(greedy.SendAll(Resp(mget)));
  // Not read until the server has cut it: a client that reads as fast as
  // the worker writes (two cores) may take the whole reply first.
  EXPECT_TRUE(WaitFor([&] { return StatsTotal(server_->Port("http"), "closed_output_limit") == 1; },
                      5000, 20));
  EXPECT_TRUE(server_->WaitLog("limits.client_output_hard"));
  EXPECT_TRUE(greedy.WaitClosed(5000));
  // A client that reads gets the same reply whole.
  Client reader = Connect("resp");
  ASSERT_TRUE(reader.SendAll(Resp({"MGET", "big", "big"})));
  std::string reply;
  EXPECT_TRUE(ReadReply(reader, &reply));
  EXPECT_EQ(reply.size(), 2 * (900 * 1024 + 1) + 3);  // "[$v...,$v...]"
}

TEST_F(RobustTest, ClientOverTheSoftLimitForTooLongIsCut) {
  Start(
      "limits: {client_output_hard: 0, client_output_soft: 2m, client_output_soft_seconds: 1, "
      "clients_memory: 0}\ntimeouts: {idle: 300s}\n");
  Client setup = Connect("resp");
  const std::vector<std::string> mget = BigMget(setup, 16);
  Client slow = Connect("resp");
  ASSERT_TRUE(slow.SendAll(Resp(mget)));
  // Not reading (WaitClosed would read): the server's counter says when it cut.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitFor([&] { return StatsTotal(server_->Port("http"), "closed_output_limit") == 1; },
                      5000, 20));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(700));
  EXPECT_TRUE(server_->WaitLog("limits.client_output_soft"));
}

// All client buffers of a worker together stay under limits.clients_memory:
// the biggest consumers go first, the others stay.
TEST_F(RobustTest, ClientsMemoryCapDisconnectsTheBiggestFirst) {
  Start(
      "workers: 1\nlimits: {client_output_hard: 0, client_output_soft: 0, clients_memory: 16m}\n");
  Client setup = Connect("resp");
  const std::vector<std::string> big = BigMget(setup, 16);  // ~14 MB
  std::vector<std::string> small = {"MGET", "big", "big"};  // ~1.8 MB
  Client a = Connect("resp"), b = Connect("resp"), s1 = Connect("resp"), s2 = Connect("resp");
  ASSERT_TRUE(s1.SendAll(Resp(small)));
  ASSERT_TRUE(s2.SendAll(Resp(small)));
  ASSERT_TRUE(a.SendAll(Resp(big)));
  ASSERT_TRUE(b.SendAll(Resp(big)));
  // Two big unread replies (less what the kernel took) are over 16 MB: one goes.
  EXPECT_TRUE(WaitFor(
      [&] { return StatsTotal(server_->Port("http"), "closed_clients_memory") >= 1; }, 5000, 20));
  EXPECT_TRUE(a.WaitClosed(2000) || b.WaitClosed(2000));
  // The small ones were not touched: they still get their replies.
  std::string reply;
  EXPECT_TRUE(ReadReply(s1, &reply));
  EXPECT_TRUE(ReadReply(s2, &reply));
  EXPECT_TRUE(server_->WaitLog("limits.clients_memory"));
}

// HTTP replies held in memory (KV values, small files) count too: clients
// that pipeline GETs of a large value and never read are cut at the cap.
TEST_F(RobustTest, UnreadHttpRepliesCountTowardClientsMemory) {
  Start("workers: 1\nlimits: {clients_memory: 4m}\n");
  Client setup = Connect("resp");
  ASSERT_EQ(RespCall(setup, {"SET", "big", std::string(900 * 1024, 'v')}), "+OK");
  std::string gets;
  for (int i = 0; i < 16; i++) gets += "GET /kv/big HTTP/1.1\r\nHost: localhost\r\n\r\n";
  std::vector<Client> hogs(12);
  for (Client& h : hogs) {
    ASSERT_TRUE(h.Connect(server_->Port("http")));
    ASSERT_TRUE(h.SendAll(gets));
  }
  EXPECT_TRUE(WaitFor(
      [&] { return StatsTotal(server_->Port("http"), "closed_clients_memory") >= 1; }, 5000, 20));
}

// Subscribes `c` to `n` channels `prefix`0.. in one SUBSCRIBE (PSUBSCRIBE
// when `pattern`); returns how many were refused, and the first refusal.
int SubscribeMany(Client& c, const std::string& prefix, int n, std::string* first_error,
                  bool pattern = false) {
  std::vector<std::string> argv{pattern ? "PSUBSCRIBE" : "SUBSCRIBE"};
  for (int i = 0; i < n; i++) argv.push_back(prefix + std::to_string(i));
  if (!c.SendAll(Resp(argv))) return -1;
  int refused = 0;
  for (int i = 0; i < n; i++) {
    std::string r;
    if (!ReadReply(c, &r)) return -1;
    if (r.starts_with("-")) {
      if (refused++ == 0 && first_error) *first_error = r;
    }
  }
  return refused;
}

// Five connections of 1,000 SUBSCRIBEs used to fill the one table the whole
// server shares, and then nobody could subscribe or chat. Now one address
// gets pubsub.max_channels_per_address over all workers; other hosts
// (another loopback address) still subscribe and chat.
TEST_F(RobustTest, OneAddressCannotFillTheSubscriptionTable) {
  server_ =
      std::make_unique<Server>(ListenerYaml("resp", "resp") + ListenerYaml("chat", "chat"), "", 2);
  ASSERT_TRUE(server_->Start());
  std::vector<Client> hogs(5);
  int refused = 0;
  std::string error;
  for (int i = 0; i < 5; i++) {
    ASSERT_TRUE(hogs[i].Connect(server_->Port("resp")));
    const int r = SubscribeMany(hogs[i], "hog" + std::to_string(i) + ".", 1000, &error);
    ASSERT_GE(r, 0);
    refused += r;
  }
  // (+ up to 4 of a chat connection the start-up probe may still hold)
  EXPECT_GE(refused, 5000 - 4096);
  EXPECT_LE(refused, 5000 - 4096 + 4);
  EXPECT_EQ(error,
            "-ERR too many subscriptions from your address: at most 4096 "
            "(pubsub.max_channels_per_address)");
  Client other;
  ASSERT_TRUE(other.Connect(server_->Port("resp"), 5000, "127.0.0.2"));
  EXPECT_EQ(SubscribeMany(other, "other.", 1000, &error), 0) << error;
  Client chat;
  ASSERT_TRUE(chat.Connect(server_->Port("chat"), 5000, "127.0.0.3"));
  std::string got;
  ASSERT_TRUE(chat.RecvUntil("joined [lobby]", &got)) << got;
  // The hogs' connections still work; closing them gives the share back.
  EXPECT_EQ(RespCall(hogs[0], {"PING"}), "[$pong,$]");
  for (Client& h : hogs) h.Close();
  Client again;
  ASSERT_TRUE(again.Connect(server_->Port("resp")));
  EXPECT_TRUE(WaitFor(
      [&] {
        std::string e;
        const int r = SubscribeMany(again, "again.", 1, &e);
        if (r == 1) RespCall(again, {"UNSUBSCRIBE"});
        return r == 0;
      },
      5000, 20));
}

// A full table refuses only the client that asks, with an error it can
// read; it keeps its connection and its other subscriptions.
TEST_F(RobustTest, AFullTableRefusesOnlyTheAsker) {
  server_ = std::make_unique<Server>(
      ListenerYaml("resp", "resp") + ListenerYaml("chat", "chat"),
      "pubsub: {channel_table_size: 64, max_channels_per_address: 0}\n", 1);
  ASSERT_TRUE(server_->Start());
  Client hog;
  ASSERT_TRUE(hog.Connect(server_->Port("resp")));
  std::string error;
  const int refused = SubscribeMany(hog, "c", 100, &error);
  EXPECT_GT(refused, 0);
  EXPECT_LT(refused, 100);
  // Connections of the start-up probe may still hold entries: take what
  // they free until the table stays full.
  int round = 0;
  ASSERT_TRUE(WaitFor(
      [&] { return SubscribeMany(hog, "more" + std::to_string(round++) + ".", 8, &error) == 8; },
      5000, 20));
  EXPECT_EQ(error, "-ERR the server's subscription table is full (pubsub.channel_table_size)");
  EXPECT_EQ(RespCall(hog, {"PING"}), "[$pong,$]");
  Client chat;
  ASSERT_TRUE(chat.Connect(server_->Port("chat")));
  std::string got;
  ASSERT_TRUE(chat.RecvUntil("\n", &got));
  EXPECT_EQ(got, "! the server's subscription table is full (pubsub.channel_table_size)\n");
  EXPECT_TRUE(chat.WaitClosed());
  EXPECT_TRUE(server_->WaitLog("the subscription table is full"));
  hog.Close();  // the space comes back (once the worker has seen the close)
  EXPECT_TRUE(WaitFor(
      [&] {
        got.clear();
        return chat.Connect(server_->Port("chat")) && chat.RecvUntil("joined [lobby]", &got);
      },
      5000, 20))
      << got;
}

// Patterns cost every PUBLISH a match each: a client gets a bounded number
// of them, each of bounded length.
TEST_F(RobustTest, PatternsAreCappedInNumberAndLength) {
  Start();
  Client c = Connect("resp");
  std::string error;
  EXPECT_EQ(SubscribeMany(c, "p*", 130, &error, true), 2);
  EXPECT_EQ(error,
            "-ERR too many patterns: at most 128 per client (pubsub.max_patterns_per_client)");
  Client d = Connect("resp");
  EXPECT_EQ(RespCall(d, {"PSUBSCRIBE", std::string(129, '*')}),
            "-ERR pattern is longer than pubsub.max_pattern_bytes (128 bytes)");
  // Channels are not patterns: the same client still subscribes to those.
  EXPECT_EQ(SubscribeMany(c, "ch", 10, &error), 0) << error;
}

// Chat clients have their own, long, idle timeout; they are told why.
TEST_F(RobustTest, AnIdleChatClientIsToldAndClosed) {
  server_ =
      std::make_unique<Server>(ListenerYaml("chat", "chat"), "timeouts: {chat_idle: 1s}\n", 1);
  ASSERT_TRUE(server_->Start());
  Client chat;
  ASSERT_TRUE(chat.Connect(server_->Port("chat")));
  std::string got;
  ASSERT_TRUE(chat.RecvUntil("joined [lobby]", &got)) << got;
  ASSERT_TRUE(chat.WaitClosed(10000));
  EXPECT_NE(chat.buffered().find("! closing: idle for 1 s (timeouts.chat_idle)\n"),
            std::string::npos)
      << chat.buffered();
}

// A worker that stops running its loop (here SIGSTOP) used to keep its share
// of new connections queued forever. The master's watchdog kills it after
// timeouts.worker_stall and the slot respawns.
TEST_F(RobustTest, WatchdogReplacesAStoppedWorker) {
  Start("timeouts: {worker_stall: 2s}\n");
  const auto before = server_->ActiveWorkers();
  ASSERT_EQ(before.size(), 2u);
  const pid_t stuck = before[1].pid;
  ASSERT_EQ(kill(stuck, SIGSTOP), 0);
  EXPECT_TRUE(server_->WaitLog("has not run its event loop", 10000));
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(stuck); }, 6000, 20));
  EXPECT_TRUE(WaitFor([&] { return server_->GenerationUp(2, {stuck}); }, 6000, 20));
  EXPECT_EQ(StatsTotalTop(server_->Port("http"), "workers_stalled"), 1);
  // Both slots serve again.
  for (int i = 0; i < 8; i++) {
    Client c = Connect("resp");
    EXPECT_EQ(RespCall(c, {"PING"}), "+PONG");
  }
}

// Workers that serve (a pipeline of writes, then SAVE, which holds the loop
// until the snapshot is written and keeps the heartbeat fresh meanwhile) are
// left alone.
TEST_F(RobustTest, WatchdogLeavesServingWorkersAlone) {
  Start("timeouts: {worker_stall: 2s}\npersistence: {dir: data}\n");
  const auto before = server_->ActiveWorkers();
  Client c = Connect("resp");
  for (int i = 0; i < 2000; i++)
    ASSERT_TRUE(c.SendAll(Resp({"SET", "k" + std::to_string(i), std::string(1000, 'x')})));
  for (int i = 0; i < 2000; i++) {
    std::string r;
    ASSERT_TRUE(ReadReply(c, &r));
  }
  EXPECT_EQ(RespCall(c, {"SAVE"}), "+OK");
  EXPECT_EQ(StatsTotalTop(server_->Port("http"), "workers_stalled"), 0);
  EXPECT_TRUE(server_->GenerationUp(2));
}

// A docroot of its own, outside the server's directory, so a test can build
// it before the server starts.
class Docroot {
 public:
  Docroot() {
    char tmpl[] = "/tmp/preforkd-root-XXXXXX";
    dir_ = mkdtemp(tmpl) ? tmpl : "";
  }
  ~Docroot() {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::string path(const std::string& rel = "") const {
    return rel.empty() ? dir_ : dir_ + "/" + rel;
  }
  void Write(const std::string& rel, const std::string& data) const {
    std::filesystem::create_directories(std::filesystem::path(path(rel)).parent_path());
    std::ofstream(path(rel), std::ios::binary | std::ios::trunc) << data;
  }

 private:
  std::string dir_;
};

// One GET on a fresh connection: the status code and the body ("" on failure).
int Get(uint16_t port, const std::string& target, std::string* body) {
  Client c;
  body->clear();
  if (!c.Connect(port)) return 0;
  if (!c.SendAll("GET " + target + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
    return 0;
  c.WaitClosed(5000);
  const std::string& got = c.buffered();
  const size_t end = got.find("\r\n\r\n");
  if (got.size() < 12 || end == std::string::npos) return 0;
  *body = got.substr(end + 4);
  return std::atoi(got.substr(9, 3).c_str());
}

// A deploy that swaps the docroot by rename: every worker serves the new
// one within the cache's second, and none goes back to the old one. A root
// that vanishes answers 404 until it is back (a failed open is retried).
TEST_F(RobustTest, ADocrootSwappedByRenameIsServedEverywhere) {
  Docroot d;
  d.Write("www/index.html", "A\n");
  server_ =
      std::make_unique<Server>(ListenerYaml("http", "http", 0, "root: " + d.path("www")), "", 2);
  ASSERT_TRUE(server_->Start());
  const uint16_t port = server_->Port("http");
  std::string body;
  for (int i = 0; i < 8; i++) {  // both workers cache the old file
    ASSERT_EQ(Get(port, "/", &body), 200);
    ASSERT_EQ(body, "A\n");
  }
  d.Write("new/index.html", "B\n");
  ASSERT_EQ(rename(d.path("www").c_str(), d.path("old").c_str()), 0);
  ASSERT_EQ(rename(d.path("new").c_str(), d.path("www").c_str()), 0);
  EXPECT_TRUE(WaitFor(
      [&] {
        for (int i = 0; i < 8; i++)
          if (Get(port, "/", &body) != 200 || body != "B\n") return false;
        return true;
      },
      5000, 50))
      << body;
  for (int i = 0; i < 20; i++) {
    EXPECT_EQ(Get(port, "/", &body), 200);
    EXPECT_EQ(body, "B\n");
  }
  ASSERT_EQ(rename(d.path("www").c_str(), d.path("gone").c_str()), 0);
  EXPECT_TRUE(WaitFor(
      [&] {
        for (int i = 0; i < 8; i++)
          if (Get(port, "/", &body) != 404) return false;
        return true;
      },
      5000, 50));
  d.Write("www/index.html", "C\n");
  EXPECT_TRUE(WaitFor(
      [&] {
        for (int i = 0; i < 8; i++)
          if (Get(port, "/", &body) != 200 || body != "C\n") return false;
        return true;
      },
      5000, 50))
      << body;
}

// A large file goes out with sendfile (it is never mapped into the worker),
// and when it shrinks during the transfer the connection is closed: the
// client gets a short body of the old bytes, never a SIGBUS in the worker
// or other bytes under the old ETag.
TEST_F(RobustTest, ALargeFileThatShrinksMidTransferEndsTheConnection) {
  Docroot d;
  std::string data(32 << 20, '\0');
  for (size_t i = 0; i < data.size(); i++)
    data[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  d.Write("www/big.bin", data);
  server_ =
      std::make_unique<Server>(ListenerYaml("http", "http", 0, "root: " + d.path("www")), "", 2);
  ASSERT_TRUE(server_->Start());
  const std::vector<pid_t> workers = server_->WorkerPids();
  Client c;
  ASSERT_TRUE(c.Connect(server_->Port("http")));
  ASSERT_TRUE(c.SendAll("GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  // One small read for the head (Client's reads take all that is there,
  // which here would be the whole file as fast as the worker sends it).
  pollfd p{c.fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 5000), 1);
  char buf[512];
  const ssize_t got = recv(c.fd(), buf, sizeof buf, 0);
  ASSERT_GT(got, 0);
  const std::string first(buf, static_cast<size_t>(got));
  const size_t head_end = first.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << first;
  ASSERT_NE(first.find("Content-Length: " + std::to_string(data.size())), std::string::npos)
      << first;
  // The client does not read: the worker stalls with the file in flight.
  for (pid_t w : workers) {
    std::ifstream maps("/proc/" + std::to_string(w) + "/maps");
    const std::string text((std::istreambuf_iterator<char>(maps)),
                           std::istreambuf_iterator<char>());
    EXPECT_EQ(text.find("big.bin"), std::string::npos) << "worker " << w << " maps the file";
  }
  ASSERT_EQ(truncate(d.path("www/big.bin").c_str(), 1 << 20), 0);
  ASSERT_TRUE(c.WaitClosed(10000)) << c.buffered().size() << " bytes of the body came";
  const std::string body = first.substr(head_end + 4) + c.buffered();
  EXPECT_LT(body.size(), data.size());
  EXPECT_GE(body.size(), size_t{1} << 20);
  // What the file still holds arrives as it was. (Bytes past the new end
  // that were already queued in the kernel may show the truncation: sendfile
  // queues page references, not copies. The short body is the signal.)
  const size_t kept = std::min(body.size(), size_t{1} << 20);
  size_t same = 0;
  while (same < kept && body[same] == data[same]) same++;
  EXPECT_EQ(same, kept) << "the body differs from the old file at byte " << same;
  EXPECT_EQ(server_->WorkerPids(), workers);  // no worker died
  EXPECT_TRUE(server_->WaitLog("a file being sent shrank"));
  std::string again;
  EXPECT_TRUE(WaitFor(
      [&] {
        return Get(server_->Port("http"), "/big.bin", &again) == 200 && again.size() == (1u << 20);
      },
      5000, 50))
      << again.size();
}

// The pid in a pidfile, 0 if none.
pid_t PidIn(const std::string& pidfile) {
  std::ifstream in(pidfile);
  long pid = 0;
  return in >> pid ? static_cast<pid_t>(pid) : 0;
}

// Stops a master this test started in the background (by the pid it wrote).
void StopDaemon(const std::string& pidfile) {
  const pid_t pid = PidIn(pidfile);
  ASSERT_GT(pid, 1);
  kill(pid, SIGTERM);
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(pid); }, 10000, 20));
}

// Two starts of one config at the same time: the pidfile lock lets exactly
// one through.
TEST_F(RobustTest, TwoConcurrentStartsOneWins) {
  Start();
  const std::string conf = server_->dir() + "/second.yaml";
  const std::string pidfile = server_->dir() + "/second.pid";
  {
    std::ofstream out(conf);
    out << "workers: 1\npidfile: " << pidfile << "\nlogging: {error_log: " << server_->dir()
        << "/second.log}\nlisteners:\n"
        << ListenerYaml("e", "echo");
  }
  RunResult a, b;
  std::thread ta([&] { a = RunBinary({"-c", conf}); });
  std::thread tb([&] { b = RunBinary({"-c", conf}); });
  ta.join();
  tb.join();
  EXPECT_EQ((a.exit_code == 0) + (b.exit_code == 0), 1) << a.output << "\n" << b.output;
  const std::string& loser = a.exit_code == 0 ? b.output : a.output;
  EXPECT_NE(loser.find("already running"), std::string::npos) << loser;
  StopDaemon(pidfile);
}

// Two servers of different configs (two pidfiles, so no lock between them)
// started at once on one port: never both serve it, as one SO_REUSEPORT
// group would have them share its connections.
TEST_F(RobustTest, TwoConfigsStartedAtOnceOnOnePortNeverBothServe) {
  Start();
  for (int round = 0; round < 5; round++) {
    const uint16_t port = FreePort();
    std::string conf[2];
    for (int i = 0; i < 2; i++) {
      const std::string base =
          server_->dir() + "/r" + std::to_string(round) + "-" + std::to_string(i);
      conf[i] = base + ".yaml";
      std::ofstream(conf[i]) << "workers: 2\npidfile: " << base
                             << ".pid\nlogging: {error_log: " << base << ".log}\nlisteners:\n"
                             << ListenerYaml("e", "echo", port);
    }
    RunResult r[2];
    std::thread t0([&] { r[0] = RunBinary({"-c", conf[0]}); });
    std::thread t1([&] { r[1] = RunBinary({"-c", conf[1]}); });
    t0.join();
    t1.join();
    const int won = (r[0].exit_code == 0) + (r[1].exit_code == 0);
    EXPECT_LE(won, 1) << r[0].output << "\n" << r[1].output;
    for (int i = 0; i < 2; i++) {
      if (r[i].exit_code != 0) {
        EXPECT_NE(r[i].output.find(std::to_string(port)), std::string::npos) << r[i].output;
        // ...and leaves no pidfile behind
        EXPECT_FALSE(std::filesystem::exists(conf[i].substr(0, conf[i].size() - 5) + ".pid"));
      } else {
        StopDaemon(conf[i].substr(0, conf[i].size() - 5) + ".pid");
      }
    }
  }
}

// A master killed with SIGKILL whose parent never reaps it stays a zombie
// holding its pid (no init in a container). It must not block a start.
TEST_F(RobustTest, AZombieMasterDoesNotBlockAStart) {
  Start();
  const pid_t old_master = server_->pid();
  const std::vector<pid_t> workers = server_->WorkerPids();
  ASSERT_EQ(kill(old_master, SIGKILL), 0);  // not reaped: the harness is its parent
  ASSERT_TRUE(WaitFor(
      [&] {
        for (pid_t w : workers)
          if (ProcessAlive(w)) return false;
        return true;
      },
      5000, 20));
  ASSERT_FALSE(ProcessAlive(old_master));  // a zombie: ProcessAlive says no
  ASSERT_EQ(PidIn(server_->pidfile_path()), old_master);
  const RunResult r = RunBinary({"-c", server_->config_path()});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::string status;
  EXPECT_EQ(Sh("timeout 10 " + SourceRoot() + "/tools/preforkctl -c " + server_->config_path() +
                   " status",
               &status),
            0)
      << status;
  EXPECT_NE(status.find("pid " + std::to_string(PidIn(server_->pidfile_path()))), std::string::npos)
      << status;
  if (r.exit_code == 0) StopDaemon(server_->pidfile_path());
}

// Active connections over every worker, from /_stats (the asking
// connection included).
int ActiveConnections(uint16_t http_port) {
  std::string out;
  Sh("timeout 5 curl -s http://127.0.0.1:" + std::to_string(http_port) + "/_stats", &out);
  const size_t totals = out.find("\"totals\"");
  const size_t at = out.find("\"active\":", totals == std::string::npos ? 0 : totals);
  return at == std::string::npos ? -1 : std::atoi(out.c_str() + at + 9);
}

TEST_F(RobustTest, LingeringEndsAfterLingeringTimeWhileThePeerKeepsSending) {
  Start("timeouts: {lingering_time: 1s, lingering_timeout: 300ms}\n");
  Client c = Connect("resp");
  ASSERT_TRUE(c.SendAll(std::string(100 * 1024, 'a')));
  std::string line;
  ASSERT_TRUE(c.RecvLine(&line));
  EXPECT_EQ(line, "-ERR Protocol error: too big inline request");
  // While it lingers the server reads and drops what comes; once
  // lingering_time is over it closes, and the next sends meet a reset.
  const auto t0 = std::chrono::steady_clock::now();
  const std::string chunk(1024, 'z');
  bool refused = false;
  while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5)) {
    if (!c.SendAll(chunk, 1000)) {
      refused = true;
      break;
    }
    c.WaitClosed(50);  // paces the sender: a slow client that never stops
  }
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_TRUE(refused);
  // (Counted from the reply's arrival, after the server's linger began.)
  EXPECT_GE(ms, 500);
  EXPECT_LT(ms, 4000);
}

TEST_F(RobustTest, LingeringEndsAfterLingeringTimeoutOfSilence) {
  Start("timeouts: {lingering_time: 30s, lingering_timeout: 1500ms}\n");
  const uint16_t http = server_->Port("http");
  ASSERT_TRUE(WaitFor([&] { return ActiveConnections(http) == 1; }, 5000, 20));
  Client c = Connect("resp");
  ASSERT_TRUE(c.SendAll(std::string(100 * 1024, 'a')));
  std::string line;
  ASSERT_TRUE(c.RecvLine(&line));
  EXPECT_TRUE(c.WaitClosed());  // the FIN after the reply
  // The server's side lingers (still counted: it reads and drops)...
  EXPECT_EQ(ActiveConnections(http), 2);
  // ...silent, then goes after lingering_timeout, well before lingering_time.
  EXPECT_TRUE(WaitFor([&] { return ActiveConnections(http) == 1; }, 6000, 50));
}

// An idle connection gives back its buffers and parser caches after a
// second of quiet (Connection::Trim, counted in /_stats "trimmed"). Trimming
// must lose nothing: a command cut in the middle, a MULTI with queued
// commands, a half-sent HTTP head and the kv-json parser all go on as if
// nothing happened once the client speaks again.
TEST_F(RobustTest, IdleConnectionsAreTrimmedAndLoseNothing) {
  Start();
  Client resp = Connect("resp");
  ASSERT_EQ(RespCall(resp, {"SET", "trim:k", "before"}), "+OK");
  ASSERT_TRUE(resp.SendAll("*3\r\n$3\r\nSET\r\n$6\r\ntrim:k\r\n$5\r\naf"));  // half a command
  Client txn = Connect("resp");
  ASSERT_EQ(RespCall(txn, {"MULTI"}), "+OK");
  ASSERT_EQ(RespCall(txn, {"INCR", "trim:n"}), "+QUEUED");
  Client http = Connect("http");
  // The status line of one whole response (head and Content-Length body).
  auto response = [&http] {
    std::string head, body;
    if (!http.RecvUntil("\r\n\r\n", &head)) return std::string("<no reply>");
    const size_t cl = head.find("Content-Length: ");
    if (cl != std::string::npos) http.RecvExact(std::stoul(head.substr(cl + 16)), &body);
    return head.substr(0, head.find("\r\n"));
  };
  ASSERT_TRUE(http.SendAll("GET /_health HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  ASSERT_EQ(response(), "HTTP/1.1 200 OK");
  ASSERT_TRUE(http.SendAll("GET /_health HTTP/1.1\r\nHo"));  // half a head
  Client json = Connect("json");
  ASSERT_NE(JsonCall(json, R"({"action":"SET","key":"trim:j","value":"1"})").find("\"ok\":true"),
            std::string::npos);

  // The four idle connections above; /_stats' own connections close at once.
  EXPECT_TRUE(
      WaitFor([&] { return StatsTotal(server_->Port("http"), "trimmed") >= 4; }, 10000, 100));

  ASSERT_TRUE(resp.SendAll("ter\r\n"));
  std::string reply;
  ASSERT_TRUE(ReadReply(resp, &reply));
  EXPECT_EQ(reply, "+OK");
  EXPECT_EQ(RespCall(resp, {"GET", "trim:k"}), "$after");
  EXPECT_EQ(RespCall(txn, {"EXEC"}), "[:1]");
  ASSERT_TRUE(http.SendAll("st: localhost\r\n\r\n"));
  EXPECT_EQ(response(), "HTTP/1.1 200 OK");
  EXPECT_NE(JsonCall(json, R"({"action":"GET","key":"trim:j"})").find("\"result\":\"1\""),
            std::string::npos);
}

// A client refused at accept that sends nothing and closes: the lingering
// close reads its EOF on a connection that never made an input buffer (they
// are made on first use). That read must not touch the missing buffer: it
// crashed the worker once. The workers must be the same afterwards.
TEST(RobustIdle, RefusedClientThatSendsNothingDoesNotCrashTheWorker) {
  const std::string www = SourceRoot() + "/conf/www";
  Server s(ListenerYaml("echo", "echo", 0, "limit_conn: 1") +
               ListenerYaml("http", "http", 0, "root: " + www),
           "", 2);
  ASSERT_TRUE(s.Start());
  const std::vector<pid_t> workers = s.WorkerPids();
  Client held;
  ASSERT_TRUE(held.Connect(s.Port("echo")));
  ASSERT_TRUE(held.Echo("hi\n"));
  for (int i = 0; i < 20; i++) {
    Client refused;
    ASSERT_TRUE(refused.Connect(s.Port("echo")));
    std::string line;
    ASSERT_TRUE(refused.RecvLine(&line)) << i;
    EXPECT_NE(line.find("too many connections"), std::string::npos) << line;
    refused.Close();  // EOF without a byte sent
  }
  // Every refused connection is gone (active: `held` and /_stats' own).
  EXPECT_TRUE(WaitFor([&] { return StatsTotal(s.Port("http"), "active") == 2; }, 10000, 20));
  EXPECT_EQ(s.WorkerPids(), workers);
  EXPECT_TRUE(held.Echo("still\n"));
}

}  // namespace
}  // namespace pf::test
