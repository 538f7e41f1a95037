// tests/integration/test_dump.cc: DUMP and RESTORE through the real binary
// over RESP: payloads a Redis 7.0 wrote restore here and DUMP writes them
// back byte for byte (also as redis-cli shows them), keys move between
// workers, and restored keys (values, TTLs, deletes) survive a kill -9 and
// restart with persistence on, as SET's writes do.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

namespace fs = std::filesystem;

std::string Cmd(Client& c, const std::vector<std::string>& argv) {
  if (!c.SendAll(Resp(argv), 15000)) return "<send failed>";
  std::string r;
  return ReadReply(c, &r, 15000) ? r : "<no reply>";
}

std::string FromHex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// From redis-server 7.0.15: `SET short hello` then `redis-cli --no-raw DUMP
// short` printed "\x00\x05hello\n\x00cr\xdfve4 \n".
const std::string kHelloHex = "000568656c6c6f0a006372df766534200a";
// `SET mil 1000000`: "\x00\xc2@B\x0f\x00\n\x00O\xf5\xebT\a\b\x8b\x03" (INT32).
const std::string kMillionHex = "00c240420f000a004ff5eb5407088b03";
// `SET text100 abcdefghij...` (10 times): LZF.
const std::string kText100Hex =
    "00c31240640a6162636465666768696a61e04e0901696a0a00d485292a1f2eff66";

std::string Text100() {
  std::string s;
  for (int i = 0; i < 10; ++i) s += "abcdefghij";
  return s;
}

class DumpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    data_ = std::string(tmp && *tmp ? tmp : "/tmp") + "/preforkd-dump-data-XXXXXX";
    ASSERT_NE(mkdtemp(data_.data()), nullptr);
  }
  void TearDown() override {
    server_.reset();
    std::error_code ec;
    fs::remove_all(data_, ec);
  }

  bool Start() {
    server_ = std::make_unique<Server>(
        ListenerYaml("resp", "resp"),
        "persistence:\n  dir: " + data_ + "\n  fsync: \"always\"\nkv:\n  sweep_interval: 60s\n", 2);
    return server_->Start(20000);
  }
  Client Connect() {
    Client c;
    EXPECT_TRUE(c.Connect(server_->Port("resp")));
    return c;
  }
  // SIGKILL to the whole server (it leads its own process group); returns
  // once every process of it is gone (the next start takes the data folder).
  void Kill9() {
    const pid_t m = server_->pid();
    std::vector<pid_t> all = server_->WorkerPids();
    all.push_back(m);
    ASSERT_EQ(kill(-m, SIGKILL), 0);
    int st = 0;
    ASSERT_TRUE(server_->WaitExit(10000, &st));
    EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "status " << st;
    ASSERT_TRUE(WaitFor(
        [&] {
          for (pid_t p : all)
            if (ProcessAlive(p)) return false;
          return true;
        },
        10000));
  }
  static int WorkerOf(Client& c) {
    const std::string info = Cmd(c, {"CLIENT", "INFO"});
    const size_t at = info.find("worker=");
    return at == std::string::npos ? -1 : std::atoi(info.c_str() + at + 7);
  }

  std::string data_;
  std::unique_ptr<Server> server_;
};

TEST_F(DumpTest, RedisPayloadsRestoreAndDumpBackIdentically) {
  ASSERT_TRUE(Start());
  Client c = Connect();
  const std::pair<std::string, std::string> fixtures[] = {
      {kHelloHex, "hello"},
      {kMillionHex, "1000000"},
      {kText100Hex, Text100()},
  };
  for (const auto& [hex, value] : fixtures) {
    const std::string payload = FromHex(hex);
    EXPECT_EQ(Cmd(c, {"RESTORE", "k:" + value.substr(0, 8), "0", payload}), "+OK");
    EXPECT_EQ(Cmd(c, {"GET", "k:" + value.substr(0, 8)}), "$" + value);
    EXPECT_EQ(Cmd(c, {"DUMP", "k:" + value.substr(0, 8)}), "$" + payload);
  }
  // redis-cli shows DUMP's reply as it shows Redis'.
  std::string out;
  ASSERT_EQ(Sh("timeout 10 redis-cli -h 127.0.0.1 -p " + std::to_string(server_->Port("resp")) +
                   " --no-raw DUMP k:hello",
               &out),
            0)
      << out;
  EXPECT_EQ(out, "\"\\x00\\x05hello\\n\\x00cr\\xdfve4 \\n\"\n");
  EXPECT_EQ(Cmd(c, {"DUMP", "missing"}), "(nil)");
  EXPECT_EQ(Cmd(c, {"RESTORE", "k:hello", "0", FromHex(kHelloHex)}),
            "-BUSYKEY Target key name already exists.");
  std::string bad = FromHex(kHelloHex);
  bad[3] = 'X';
  EXPECT_EQ(Cmd(c, {"RESTORE", "k:bad", "0", bad}),
            "-ERR DUMP payload version or checksum are wrong");
}

TEST_F(DumpTest, KeysMoveBetweenWorkersWithTheirTtl) {
  ASSERT_TRUE(Start());
  Client a = Connect();
  Client b;
  for (int i = 0; i < 200 && (b.fd() < 0 || WorkerOf(b) == WorkerOf(a)); ++i) b = Connect();
  ASSERT_NE(WorkerOf(a), WorkerOf(b)) << "no connection on the other worker";
  // Binary, big (LZF and raw), integer: DUMP on one worker, RESTORE on the other.
  const std::vector<std::string> values = {std::string("\0\r\n\xff", 4), std::string(300000, 'z'),
                                           RandomBytes(200000, 5), "-42", ""};
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string src = "src:" + std::to_string(i), dst = "dst:" + std::to_string(i);
    ASSERT_EQ(Cmd(a, {"SET", src, values[i], "PX", "500000"}), "+OK");
    const std::string dumped = Cmd(a, {"DUMP", src});
    ASSERT_EQ(dumped[0], '$');
    const std::string pttl = Cmd(a, {"PTTL", src});
    EXPECT_EQ(Cmd(b, {"RESTORE", dst, pttl.substr(1), dumped.substr(1)}), "+OK") << i;
    EXPECT_EQ(Cmd(a, {"GET", dst}), "$" + values[i]) << i;
    const long long ms = std::stoll(Cmd(a, {"PTTL", dst}).substr(1));
    EXPECT_TRUE(ms > 490'000 && ms <= 500'000) << ms;
    EXPECT_EQ(Cmd(b, {"DUMP", dst}), dumped) << i;
  }
}

TEST_F(DumpTest, RestoredKeysSurviveKill9AndRestart) {
  ASSERT_TRUE(Start());
  const int64_t at = WallMs() + 900'000;
  const std::string big(100'000, 'q');
  std::string big_payload;
  {
    Client c = Connect();
    ASSERT_EQ(Cmd(c, {"SET", "src", big}), "+OK");
    big_payload = Cmd(c, {"DUMP", "src"}).substr(1);
    EXPECT_EQ(Cmd(c, {"RESTORE", "plain", "0", FromHex(kHelloHex)}), "+OK");
    EXPECT_EQ(Cmd(c, {"RESTORE", "rel", "700000", FromHex(kMillionHex)}), "+OK");
    EXPECT_EQ(Cmd(c, {"RESTORE", "abs", std::to_string(at), FromHex(kText100Hex), "ABSTTL"}),
              "+OK");
    EXPECT_EQ(Cmd(c, {"RESTORE", "big", "0", big_payload}), "+OK");
    // Replaced, then replaced by a deadline already past: gone.
    ASSERT_EQ(Cmd(c, {"SET", "gone", "x"}), "+OK");
    EXPECT_EQ(Cmd(c, {"RESTORE", "gone", "1", FromHex(kHelloHex), "ABSTTL", "REPLACE"}), "+OK");
    ASSERT_EQ(Cmd(c, {"SET", "swapped", "old", "EX", "100"}), "+OK");
    EXPECT_EQ(Cmd(c, {"RESTORE", "swapped", "0", FromHex(kHelloHex), "REPLACE"}), "+OK");
  }
  Kill9();
  ASSERT_TRUE(Start());
  Client c = Connect();
  // They came back from the workers' logs (no snapshot was taken).
  const std::string info = Cmd(c, {"INFO", "persistence"});
  const size_t at_records = info.find("loaded_log_records:");
  ASSERT_NE(at_records, std::string::npos) << info;
  EXPECT_GE(std::atoi(info.c_str() + at_records + 19), 8) << info;
  EXPECT_EQ(Cmd(c, {"DBSIZE"}), ":6");
  EXPECT_EQ(Cmd(c, {"GET", "plain"}), "$hello");
  EXPECT_EQ(Cmd(c, {"PTTL", "plain"}), ":-1");
  EXPECT_EQ(Cmd(c, {"GET", "rel"}), "$1000000");
  const long long rel = std::stoll(Cmd(c, {"PTTL", "rel"}).substr(1));
  EXPECT_TRUE(rel > 640'000 && rel <= 700'000) << rel;
  EXPECT_EQ(Cmd(c, {"PEXPIRETIME", "abs"}), ":" + std::to_string(at));
  EXPECT_EQ(Cmd(c, {"DUMP", "abs"}), "$" + FromHex(kText100Hex));
  EXPECT_EQ(Cmd(c, {"GET", "big"}), "$" + big);
  EXPECT_EQ(Cmd(c, {"DUMP", "big"}), "$" + big_payload);
  EXPECT_EQ(Cmd(c, {"EXISTS", "gone"}), ":0");
  EXPECT_EQ(Cmd(c, {"GET", "swapped"}), "$hello");
  EXPECT_EQ(Cmd(c, {"PTTL", "swapped"}), ":-1");
}

}  // namespace
}  // namespace pf::test
