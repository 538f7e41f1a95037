// tests/integration/test_transactions.cc: MULTI / EXEC / DISCARD / WATCH /
// UNWATCH over RESP on the real binary with 2 workers: queued replies,
// EXECABORT, errors inside EXEC, WATCH invalidated from the other worker,
// atomicity seen from the other worker, and the limits on what a client may
// queue.
#include <gtest/gtest.h>

#include <atomic>
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

class TxnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<Server>(ListenerYaml("resp", "resp"),
                                       "limits:\n  max_reply_bytes: 1m\n", 2);
    ASSERT_TRUE(server_->Start());
  }
  Client Connect() {
    Client c;
    EXPECT_TRUE(c.Connect(server_->Port("resp")));
    return c;
  }
  static int WorkerOf(Client& c) {
    const std::string info = Cmd(c, {"CLIENT", "INFO"});
    const size_t at = info.find("worker=");
    return at == std::string::npos ? -1 : std::atoi(info.c_str() + at + 7);
  }
  // Two clients served by different workers (SO_REUSEPORT spreads them).
  void TwoWorkers(Client* a, Client* b) {
    *a = Connect();
    const int wa = WorkerOf(*a);
    for (int i = 0; i < 200; ++i) {
      *b = Connect();
      if (WorkerOf(*b) != wa) return;
    }
    FAIL() << "no connection reached the second worker";
  }
  std::unique_ptr<Server> server_;
};

TEST_F(TxnTest, QueuedCommandsRunAtExecInOrder) {
  Client c = Connect();
  EXPECT_EQ(Cmd(c, {"MULTI"}), "+OK");
  EXPECT_EQ(Cmd(c, {"SET", "a", "1"}), "+QUEUED");
  EXPECT_EQ(Cmd(c, {"INCR", "a"}), "+QUEUED");
  EXPECT_EQ(Cmd(c, {"GET", "a"}), "+QUEUED");
  EXPECT_EQ(Cmd(c, {"GET", "nosuch"}), "+QUEUED");
  Client other = Connect();
  EXPECT_EQ(Cmd(other, {"GET", "a"}), "(nil)");  // nothing ran yet
  EXPECT_EQ(Cmd(c, {"EXEC"}), "[+OK,:2,$2,(nil)]");
  EXPECT_EQ(Cmd(c, {"GET", "a"}), "$2");  // out of MULTI again
  EXPECT_EQ(Cmd(c, {"EXEC"}), "-ERR EXEC without MULTI");
  EXPECT_EQ(Cmd(c, {"DISCARD"}), "-ERR DISCARD without MULTI");
  EXPECT_EQ(Cmd(c, {"MULTI"}), "+OK");
  EXPECT_EQ(Cmd(c, {"EXEC"}), "[]");
}

TEST_F(TxnTest, ErrorWhileQueueingAbortsAndWritesNothing) {
  Client c = Connect();
  EXPECT_EQ(Cmd(c, {"MULTI"}), "+OK");
  EXPECT_EQ(Cmd(c, {"SET", "k", "v"}), "+QUEUED");
  EXPECT_EQ(Cmd(c, {"NOSUCHCMD"}), "-ERR unknown command 'NOSUCHCMD', with args beginning with: ");
  EXPECT_EQ(Cmd(c, {"GET"}), "-ERR wrong number of arguments for 'get' command");
  EXPECT_EQ(Cmd(c, {"MULTI"}), "-ERR MULTI calls can not be nested");
  EXPECT_EQ(Cmd(c, {"WATCH", "k"}), "-ERR WATCH inside MULTI is not allowed");
  EXPECT_EQ(Cmd(c, {"EXEC"}), "-EXECABORT Transaction discarded because of previous errors.");
  EXPECT_EQ(Cmd(c, {"EXISTS", "k"}), ":0");
  // A command that cannot run inside a transaction is refused, and dooms it.
  EXPECT_EQ(Cmd(c, {"MULTI"}), "+OK");
  EXPECT_EQ(Cmd(c, {"SUBSCRIBE", "ch"}), "-ERR Command not allowed inside a transaction");
  EXPECT_EQ(Cmd(c, {"EXEC"}), "-EXECABORT Transaction discarded because of previous errors.");
  // DISCARD drops the queue.
  EXPECT_EQ(Cmd(c, {"MULTI"}), "+OK");
  EXPECT_EQ(Cmd(c, {"SET", "k", "v"}), "+QUEUED");
  EXPECT_EQ(Cmd(c, {"DISCARD"}), "+OK");
  EXPECT_EQ(Cmd(c, {"EXISTS", "k"}), ":0");
}

TEST_F(TxnTest, ErrorInsideExecDoesNotStopTheOthers) {
  Client c = Connect();
  EXPECT_EQ(Cmd(c, {"SET", "s", "text"}), "+OK");
  EXPECT_EQ(Cmd(c, {"MULTI"}), "+OK");
  EXPECT_EQ(Cmd(c, {"INCR", "s"}), "+QUEUED");
  EXPECT_EQ(Cmd(c, {"SET", "t", "1"}), "+QUEUED");
  EXPECT_EQ(Cmd(c, {"EXEC"}), "[-ERR value is not an integer or out of range,+OK]");
  EXPECT_EQ(Cmd(c, {"GET", "t"}), "$1");
}

TEST_F(TxnTest, WatchSeesWritesFromTheOtherWorker) {
  Client a, b;
  TwoWorkers(&a, &b);
  ASSERT_NE(WorkerOf(a), WorkerOf(b));
  EXPECT_EQ(Cmd(a, {"SET", "w", "1"}), "+OK");
  // Written by the other worker: EXEC answers a null array, nothing runs.
  EXPECT_EQ(Cmd(a, {"WATCH", "w"}), "+OK");
  EXPECT_EQ(Cmd(b, {"SET", "w", "2"}), "+OK");
  EXPECT_EQ(Cmd(a, {"MULTI"}), "+OK");
  EXPECT_EQ(Cmd(a, {"SET", "w", "from-a"}), "+QUEUED");
  EXPECT_EQ(Cmd(a, {"EXEC"}), "(nil)");
  EXPECT_EQ(Cmd(a, {"GET", "w"}), "$2");
  // EXEC unwatched it: the next transaction runs.
  EXPECT_EQ(Cmd(a, {"MULTI"}), "+OK");
  EXPECT_EQ(Cmd(a, {"SET", "w", "3"}), "+QUEUED");
  EXPECT_EQ(Cmd(a, {"EXEC"}), "[+OK]");
  // A TTL set elsewhere, a delete, and a key created after WATCH all count.
  const std::vector<std::vector<std::string>> touches = {
      {"EXPIRE", "w", "100"}, {"DEL", "w"}, {"SET", "fresh", "x"}};
  const std::vector<std::string> watched = {"w", "w", "fresh"};
  const std::vector<std::string> replies = {":1", ":1", "+OK"};
  for (size_t i = 0; i < touches.size(); ++i) {
    EXPECT_EQ(Cmd(a, {"SET", "w", "1"}), "+OK");
    EXPECT_EQ(Cmd(a, {"WATCH", watched[i]}), "+OK");
    EXPECT_EQ(Cmd(b, touches[i]), replies[i]);
    EXPECT_EQ(Cmd(a, {"MULTI"}), "+OK");
    EXPECT_EQ(Cmd(a, {"PING"}), "+QUEUED");
    EXPECT_EQ(Cmd(a, {"EXEC"}), "(nil)") << touches[i][0];
  }
  // Writes to other keys (many, so some share the watched key's shard) do
  // not: WATCH is per key.
  EXPECT_EQ(Cmd(a, {"SET", "w", "1"}), "+OK");
  EXPECT_EQ(Cmd(a, {"WATCH", "w", "absent"}), "+OK");
  for (int i = 0; i < 300; ++i) ASSERT_EQ(Cmd(b, {"SET", "o" + std::to_string(i), "v"}), "+OK");
  EXPECT_EQ(Cmd(a, {"MULTI"}), "+OK");
  EXPECT_EQ(Cmd(a, {"INCR", "w"}), "+QUEUED");
  EXPECT_EQ(Cmd(a, {"EXEC"}), "[:2]");
  // UNWATCH and DISCARD forget the watches.
  EXPECT_EQ(Cmd(a, {"WATCH", "w"}), "+OK");
  EXPECT_EQ(Cmd(a, {"UNWATCH"}), "+OK");
  EXPECT_EQ(Cmd(b, {"SET", "w", "9"}), "+OK");
  EXPECT_EQ(Cmd(a, {"MULTI"}), "+OK");
  EXPECT_EQ(Cmd(a, {"GET", "w"}), "+QUEUED");
  EXPECT_EQ(Cmd(a, {"EXEC"}), "[$9]");
}

// Three counters always move together in a transaction; a reader on the
// other worker, reading them in a transaction too, must never see them differ
// (EXEC holds every involved shard's lock at once).
TEST_F(TxnTest, ExecIsAtomicForTheOtherWorker) {
  Client a, b;
  TwoWorkers(&a, &b);
  ASSERT_EQ(Cmd(a, {"MSET", "c1", "0", "c2", "0", "c3", "0"}), "+OK");
  std::atomic<bool> done{false};
  std::atomic<int> torn{0}, reads{0};
  std::thread reader([&] {
    while (!done.load()) {
      // A transaction of three GETs (MGET, atomic too, is checked in
      // MgetSeesMsetWhole).
      if (!b.SendAll(Resp({"MULTI"}) + Resp({"GET", "c1"}) + Resp({"GET", "c2"}) +
                     Resp({"GET", "c3"}) + Resp({"EXEC"}))) {
        ++torn;
        break;
      }
      std::string r;
      for (int j = 0; j < 5; ++j) ReadReply(b, &r);
      // "[$X,$Y,$Z]": the three values must be equal.
      std::vector<std::string> vals;
      for (size_t at = 1; at < r.size();) {
        size_t end = r.find_first_of(",]", at);
        if (end == std::string::npos) break;
        vals.push_back(r.substr(at, end - at));
        at = end + 1;
      }
      if (vals.size() != 3 || vals[0] != vals[1] || vals[1] != vals[2]) ++torn;
      ++reads;
    }
  });
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(a.SendAll(Resp({"MULTI"}) + Resp({"INCR", "c1"}) + Resp({"INCR", "c2"}) +
                          Resp({"INCR", "c3"}) + Resp({"EXEC"})));
    std::string r;
    for (int j = 0; j < 5; ++j) ASSERT_TRUE(ReadReply(a, &r));
  }
  done = true;
  reader.join();
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(Cmd(a, {"GET", "c3"}), "$2000");
}

// MGET is atomic, as MSET is: a reader on the other worker never sees half
// of an MSET over keys of different shards.
TEST_F(TxnTest, MgetSeesMsetWhole) {
  Client a, b;
  TwoWorkers(&a, &b);
  std::vector<std::string> keys;
  for (int i = 0; i < 8; ++i) keys.push_back("m" + std::to_string(i));
  std::atomic<bool> done{false};
  std::atomic<int> torn{0}, reads{0};
  std::thread reader([&] {
    std::vector<std::string> argv = {"MGET"};
    argv.insert(argv.end(), keys.begin(), keys.end());
    while (!done.load()) {
      const std::string r = Cmd(b, argv);  // "[$v,$v,...]" or "[(nil),...]"
      std::vector<std::string> vals;
      for (size_t at = 1; at < r.size();) {
        const size_t end = r.find_first_of(",]", at);
        if (end == std::string::npos) break;
        vals.push_back(r.substr(at, end - at));
        at = end + 1;
      }
      for (const std::string& v : vals)
        if (v != vals[0]) ++torn;
      ++reads;
    }
  });
  for (int i = 0; i < 1500; ++i) {
    std::vector<std::string> argv = {"MSET"};
    for (const std::string& k : keys) {
      argv.push_back(k);
      argv.push_back(std::to_string(i));
    }
    ASSERT_EQ(Cmd(a, argv), "+OK");
  }
  done = true;
  reader.join();
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(torn.load(), 0);
}

TEST_F(TxnTest, QueueIsBounded) {
  Client c = Connect();
  EXPECT_EQ(Cmd(c, {"MULTI"}), "+OK");
  const std::string big(300 * 1024, 'x');
  int queued = 0;
  std::string last;
  for (int i = 0; i < 8; ++i) {
    last = Cmd(c, {"SET", "big" + std::to_string(i), big});
    if (last == "+QUEUED") ++queued;
  }
  EXPECT_EQ(queued, 3);  // 1 MiB (limits.max_reply_bytes) holds three
  EXPECT_NE(last.find("transaction too large"), std::string::npos) << last;
  EXPECT_NE(last.find("limits.max_reply_bytes"), std::string::npos) << last;
  EXPECT_EQ(Cmd(c, {"EXEC"}), "-EXECABORT Transaction discarded because of previous errors.");
  EXPECT_EQ(Cmd(c, {"EXISTS", "big0"}), ":0");
}

// The EXEC reply is bounded as one command's: past limits.max_reply_bytes
// (1 MiB here) the remaining queued commands do not run and say why.
TEST_F(TxnTest, ExecReplyIsBounded) {
  Client c = Connect();
  const std::string big(300 * 1024, 'x');
  ASSERT_EQ(Cmd(c, {"SET", "big", big}), "+OK");
  EXPECT_EQ(Cmd(c, {"MULTI"}), "+OK");
  for (int i = 0; i < 5; ++i) ASSERT_EQ(Cmd(c, {"GET", "big"}), "+QUEUED");
  ASSERT_EQ(Cmd(c, {"INCR", "after"}), "+QUEUED");
  const std::string r = Cmd(c, {"EXEC"});
  size_t values = 0;
  for (size_t at = 0; (at = r.find("$" + big, at)) != std::string::npos; at += big.size()) ++values;
  EXPECT_EQ(values, 4u);  // 3 x 300 KiB is under 1 MiB, so the 4th runs; then the limit
  EXPECT_NE(r.find("-ERR EXEC reply too large: more than 1048576 bytes "
                   "(limits.max_reply_bytes); this command did not run,-ERR EXEC reply too large"),
            std::string::npos);
  EXPECT_EQ(Cmd(c, {"EXISTS", "after"}), ":0");  // the INCR did not run
}

TEST_F(TxnTest, ResetLeavesMultiAndWatch) {
  Client c = Connect();
  EXPECT_EQ(Cmd(c, {"MULTI"}), "+OK");
  EXPECT_EQ(Cmd(c, {"SET", "r", "1"}), "+QUEUED");
  EXPECT_EQ(Cmd(c, {"RESET"}), "+RESET");
  EXPECT_EQ(Cmd(c, {"EXEC"}), "-ERR EXEC without MULTI");
  EXPECT_EQ(Cmd(c, {"EXISTS", "r"}), ":0");
}

// redis-cli's own MULTI/EXEC (it prints "QUEUED" and the EXEC array).
TEST_F(TxnTest, RedisCliTransaction) {
  const std::string cmd = "printf 'MULTI\\nSET rc 5\\nINCRBY rc 3\\nEXEC\\n' | redis-cli -p " +
                          std::to_string(server_->Port("resp")) + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[256];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  ASSERT_EQ(pclose(p), 0) << out;
  EXPECT_EQ(out, "OK\nQUEUED\nQUEUED\nOK\n8\n");
}

}  // namespace
}  // namespace pf::test
