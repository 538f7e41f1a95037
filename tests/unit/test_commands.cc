// tests/unit/test_commands.cc: the command table against a real kv::Store in an
// anonymous mapping, asserting the exact RESP2 bytes Redis 7.0 would send.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <chrono>
#include <climits>
#include <initializer_list>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "shared/cmd/commands.h"

namespace pf {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Renders what a command writes as RESP2, or RESP3 while *resp3 (the
// session's flag, which HELLO switches), the way worker/resp/session.cc does.
class RespText : public ReplyWriter {
 public:
  explicit RespText(const bool* resp3 = nullptr) : resp3_(resp3) {}
  void Status(std::string_view s) override { out += "+" + std::string(s) + "\r\n"; }
  void Error(ErrCode code, std::string_view t) override {
    last_code = code;
    out += "-" + std::string(t) + "\r\n";
  }
  void Integer(int64_t v) override { out += ":" + std::to_string(v) + "\r\n"; }
  void Bulk(std::string_view v) override {
    out += "$" + std::to_string(v.size()) + "\r\n" + std::string(v) + "\r\n";
  }
  void Nil() override { out += R3() ? "_\r\n" : "$-1\r\n"; }
  void NilArray() override { out += R3() ? "_\r\n" : "*-1\r\n"; }
  void ArrayBegin(size_t n) override { out += "*" + std::to_string(n) + "\r\n"; }
  void MapBegin(size_t n) override {
    if (!R3()) return ReplyWriter::MapBegin(n);
    out += "%" + std::to_string(n) + "\r\n";
  }
  void SetBegin(size_t n) override { out += (R3() ? "~" : "*") + std::to_string(n) + "\r\n"; }
  void PushBegin(size_t n) override { out += (R3() ? ">" : "*") + std::to_string(n) + "\r\n"; }
  std::string out;
  ErrCode last_code = ErrCode::kInternal;

 private:
  bool R3() const { return resp3_ && *resp3_; }
  const bool* resp3_;
};

constexpr uint64_t kNow = 1'700'000'000'000;  // a fixed unix ms clock

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    region_size_ = 8u << 20;
    region_ =
        mmap(nullptr, region_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(region_, MAP_FAILED);
    config_.kv.shards = 4;
    config_.kv.max_key_bytes = 64;
    config_.kv.max_value_bytes = 4096;
    std::string why;
    store_ = kv::Store::Format(region_, region_size_, 4, kv::LimitsFrom(config_.kv), 42, &why);
    ASSERT_NE(store_, nullptr) << why;
    env_.store = store_;
    env_.config = &config_;
    env_.commands_processed = &processed_;
    env_.server_info = [](ServerInfo* si) {
      si->version = "9.9.9";
      si->tcp_port = 6380;
      si->workers = 2;
      si->worker_slot = 1;
      si->connected_clients = 3;
      si->total_commands_processed = 77;
    };
    session_.id = 7;
    session_.worker_slot = 1;
    session_.peer = "127.0.0.1:5555";
    session_.local = "127.0.0.1:6380";
  }
  void TearDown() override { munmap(region_, region_size_); }

  std::string Run(std::initializer_list<std::string_view> args, uint64_t now = kNow) {
    std::vector<std::string_view> argv(args);
    return RunV(argv, now);
  }
  std::string RunV(const std::vector<std::string_view>& argv, uint64_t now = kNow) {
    RespText w(&session_.resp3);
    Dispatch(env_, session_, argv, w, now);
    last_code_ = w.last_code;
    return w.out;
  }

  void* region_ = nullptr;
  size_t region_size_ = 0;
  Config config_;
  kv::Store* store_ = nullptr;
  CommandEnv env_;
  ClientSession session_;
  Counter processed_;
  ErrCode last_code_ = ErrCode::kInternal;
};

// ---------------------------------------------------------------------------
// Table and dispatch

TEST(CommandTable, LookupIsCaseInsensitive) {
  ASSERT_NE(LookupCommand("get"), nullptr);
  EXPECT_EQ(LookupCommand("GeT"), LookupCommand("get"));
  EXPECT_EQ(LookupCommand("gets"), nullptr);
  EXPECT_EQ(LookupCommand(""), nullptr);
  EXPECT_EQ(LookupCommand("SET")->arity, -3);
  const CommandSpec* client = LookupCommand("CLIENT");
  ASSERT_NE(client, nullptr);
  ASSERT_NE(LookupSubcommand(*client, "SetName"), nullptr);
  EXPECT_EQ(LookupSubcommand(*client, "setname")->name, "client|setname");
  EXPECT_EQ(LookupSubcommand(*client, "nope"), nullptr);
  for (const CommandSpec& s : CommandTable()) EXPECT_EQ(LookupCommand(s.name), &s) << s.name;
}

TEST_F(CommandsTest, UnknownCommandEchoesArgsLikeRedis) {
  EXPECT_EQ(Run({"foo", "a", "b"}),
            "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n");
  EXPECT_EQ(last_code_, ErrCode::kUnknownCommand);
  EXPECT_EQ(Run({"foo"}), "-ERR unknown command 'foo', with args beginning with: \r\n");
  // CR/LF in echoed bytes cannot end the frame.
  EXPECT_EQ(Run({"x\r\n+OK"}), "-ERR unknown command 'x  +OK', with args beginning with: \r\n");
  // The args text stops at 128 bytes.
  std::string big(300, 'z');
  std::string r = Run({"foo", big, "b"});
  EXPECT_EQ(r, "-ERR unknown command 'foo', with args beginning with: '" + std::string(128, 'z') +
                   "' \r\n");
}

TEST_F(CommandsTest, ArityErrorsUseTheTableName) {
  EXPECT_EQ(Run({"GET"}), "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(last_code_, ErrCode::kWrongArity);
  EXPECT_EQ(Run({"get", "a", "b"}), "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(Run({"SET", "k"}), "-ERR wrong number of arguments for 'set' command\r\n");
  EXPECT_EQ(Run({"MSET", "a", "1", "b"}), "-ERR wrong number of arguments for 'mset' command\r\n");
  EXPECT_EQ(Run({"PING", "a", "b"}), "-ERR wrong number of arguments for 'ping' command\r\n");
  EXPECT_EQ(Run({"CLIENT"}), "-ERR wrong number of arguments for 'client' command\r\n");
  EXPECT_EQ(Run({"CLIENT", "SETNAME"}),
            "-ERR wrong number of arguments for 'client|setname' command\r\n");
  EXPECT_EQ(Run({"CLIENT", "BOGUS"}), "-ERR unknown subcommand 'BOGUS'. Try CLIENT HELP.\r\n");
  EXPECT_EQ(Run({"config", "bogus"}), "-ERR unknown subcommand 'bogus'. Try CONFIG HELP.\r\n");
}

TEST_F(CommandsTest, CountsExecutedCommandsOnly) {
  Run({"PING"});
  Run({"GET"});     // arity error: not executed
  Run({"nosuch"});  // unknown: not executed
  Run({"GET", "x"});
  EXPECT_EQ(processed_.Get(), 2u);
  EXPECT_EQ(session_.commands, 2u);
  EXPECT_EQ(session_.last_command, "get");
}

// ---------------------------------------------------------------------------
// AUTH gating

TEST_F(CommandsTest, NoAuthGatesEverythingButAuthHelloQuit) {
  config_.kv.password = "s3cret";
  EXPECT_EQ(Run({"GET", "k"}), "-NOAUTH Authentication required.\r\n");
  EXPECT_EQ(last_code_, ErrCode::kNoAuth);
  EXPECT_EQ(Run({"PING"}), "-NOAUTH Authentication required.\r\n");
  EXPECT_EQ(Run({"CLIENT", "ID"}), "-NOAUTH Authentication required.\r\n");
  // Existence and arity are checked before authentication, as in Redis.
  EXPECT_THAT(Run({"nosuch"}), StartsWith("-ERR unknown command 'nosuch'"));
  EXPECT_EQ(Run({"GET"}), "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(Run({"AUTH", "wrong"}),
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  EXPECT_EQ(last_code_, ErrCode::kWrongPass);
  EXPECT_EQ(Run({"AUTH", "bob", "s3cret"}),
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  EXPECT_EQ(Run({"AUTH", "a", "b", "c"}), "-ERR syntax error\r\n");
  EXPECT_THAT(Run({"HELLO", "2"}), StartsWith("-NOAUTH HELLO must be called with the client"));
  EXPECT_EQ(Run({"AUTH", "s3cret"}), "+OK\r\n");
  EXPECT_EQ(Run({"GET", "k"}), "$-1\r\n");
}

TEST_F(CommandsTest, AuthDefaultUserAndHelloAuth) {
  config_.kv.password = "pw";
  EXPECT_EQ(Run({"AUTH", "default", "pw"}), "+OK\r\n");
  session_.authenticated = false;
  EXPECT_THAT(Run({"HELLO", "2", "AUTH", "default", "nope"}),
              StartsWith("-WRONGPASS invalid username-password pair"));
  EXPECT_THAT(Run({"HELLO", "2", "AUTH", "default", "pw"}), StartsWith("*14\r\n"));
  EXPECT_TRUE(session_.authenticated);
  EXPECT_EQ(Run({"PING"}), "+PONG\r\n");
}

TEST_F(CommandsTest, AuthWithoutConfiguredPassword) {
  EXPECT_EQ(Run({"AUTH", "x"}),
            "-ERR AUTH <password> called without any password configured for the default user. "
            "Are you sure your configuration is correct?\r\n");
  EXPECT_EQ(Run({"AUTH", "default", "anything"}), "+OK\r\n");  // nopass user
  EXPECT_EQ(Run({"AUTH", "bob", "x"}),
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
}

TEST_F(CommandsTest, QuitClosesAfterReplyEvenBeforeAuth) {
  config_.kv.password = "pw";
  EXPECT_EQ(Run({"QUIT"}), "+OK\r\n");
  EXPECT_TRUE(session_.close_after_reply);
}

// ---------------------------------------------------------------------------
// Connection commands

TEST_F(CommandsTest, PingEchoSelectTime) {
  EXPECT_EQ(Run({"ping"}), "+PONG\r\n");
  EXPECT_EQ(Run({"PING", "hi"}), "$2\r\nhi\r\n");
  EXPECT_EQ(Run({"ECHO", ""}), "$0\r\n\r\n");
  EXPECT_EQ(Run({"SELECT", "0"}), "+OK\r\n");
  EXPECT_EQ(Run({"SELECT", "1"}), "-ERR DB index is out of range\r\n");
  EXPECT_EQ(Run({"SELECT", "x"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"TIME"}), "*2\r\n$10\r\n1700000000\r\n$1\r\n0\r\n");
}

TEST_F(CommandsTest, HelloReplyAndRefusals) {
  EXPECT_EQ(Run({"HELLO"}),
            "*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n"
            "$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:7\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n"
            "$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n");
  EXPECT_THAT(Run({"HELLO", "2"}), StartsWith("*14\r\n"));
  EXPECT_EQ(Run({"HELLO", "1"}), "-NOPROTO unsupported protocol version\r\n");
  EXPECT_EQ(Run({"HELLO", "4"}), "-NOPROTO unsupported protocol version\r\n");
  EXPECT_EQ(Run({"HELLO", "-3"}), "-NOPROTO unsupported protocol version\r\n");
  EXPECT_EQ(Run({"HELLO", "x"}), "-ERR Protocol version is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"HELLO", "2", "FOO"}), "-ERR Syntax error in HELLO option 'FOO'\r\n");
  EXPECT_THAT(Run({"HELLO", "2", "SETNAME", "app"}), StartsWith("*14\r\n"));
  EXPECT_EQ(session_.name, "app");
}

// A RESP connection (session.resp2, as worker/resp/session.cc sets it):
// HELLO 3 switches it to RESP3, and HELLO's own reply is already a map.
TEST_F(CommandsTest, Hello3SwitchesToResp3AndBack) {
  session_.resp2 = true;
  EXPECT_EQ(Run({"HELLO", "3"}),
            "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n"
            "$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:7\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n"
            "$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n");
  EXPECT_TRUE(session_.resp3);
  EXPECT_FALSE(session_.resp2);
  EXPECT_EQ(Run({"GET", "missing"}), "_\r\n");
  EXPECT_THAT(Run({"CONFIG", "GET", "maxmemory"}), StartsWith("%1\r\n$9\r\nmaxmemory\r\n$"));
  EXPECT_EQ(Run({"COMMAND", "DOCS"}), "%0\r\n");
  EXPECT_THAT(Run({"COMMAND", "INFO", "get"}),
              StartsWith("*1\r\n*10\r\n$3\r\nget\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n"));
  // A bad version, or a refused HELLO, leaves the protocol as it was.
  EXPECT_EQ(Run({"HELLO", "4"}), "-NOPROTO unsupported protocol version\r\n");
  EXPECT_EQ(Run({"HELLO", "2", "FOO"}), "-ERR Syntax error in HELLO option 'FOO'\r\n");
  EXPECT_TRUE(session_.resp3);
  // HELLO without a version answers in the current protocol.
  EXPECT_THAT(Run({"HELLO"}), StartsWith("%7\r\n"));
  EXPECT_THAT(Run({"HELLO"}), HasSubstr("$5\r\nproto\r\n:3\r\n"));
  EXPECT_THAT(Run({"HELLO", "2"}), StartsWith("*14\r\n"));
  EXPECT_TRUE(session_.resp2);
  EXPECT_FALSE(session_.resp3);
  EXPECT_EQ(Run({"GET", "missing"}), "$-1\r\n");
  EXPECT_THAT(Run({"CONFIG", "GET", "maxmemory"}), StartsWith("*2\r\n$9\r\nmaxmemory\r\n$"));
  // RESET goes back to RESP2, as Redis' clearClientConnectionState.
  Run({"HELLO", "3"});
  EXPECT_EQ(Run({"RESET"}), "+RESET\r\n");
  EXPECT_TRUE(session_.resp2);
  EXPECT_FALSE(session_.resp3);
  EXPECT_EQ(Run({"GET", "missing"}), "$-1\r\n");
}

// HELLO on kv-json or HTTP (no RESP session) has no protocol to switch.
TEST_F(CommandsTest, Hello3WithoutRespSessionKeepsProtocol) {
  EXPECT_THAT(Run({"HELLO", "3"}), HasSubstr("$5\r\nproto\r\n:3\r\n"));
  EXPECT_FALSE(session_.resp3);
  EXPECT_FALSE(session_.resp2);
}

// Redis 7.0 LCS ... IDX: a map {matches, len}, RESP2 a flat array of four.
TEST_F(CommandsTest, LcsIdxIsMapInResp3) {
  Run({"SET", "a", "ohmytext"});
  Run({"SET", "b", "mynewtext"});
  const std::string matches =
      "$7\r\nmatches\r\n*2\r\n*2\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n"
      "*2\r\n*2\r\n:2\r\n:3\r\n*2\r\n:0\r\n:1\r\n$3\r\nlen\r\n:6\r\n";
  EXPECT_EQ(Run({"LCS", "a", "b", "IDX"}), "*4\r\n" + matches);
  session_.resp2 = true;
  Run({"HELLO", "3"});
  EXPECT_EQ(Run({"LCS", "a", "b", "IDX"}), "%2\r\n" + matches);
}

TEST_F(CommandsTest, ClientCommands) {
  EXPECT_EQ(Run({"CLIENT", "ID"}), ":7\r\n");
  EXPECT_EQ(Run({"CLIENT", "GETNAME"}), "$-1\r\n");
  EXPECT_EQ(Run({"CLIENT", "SETNAME", "my conn"}),
            "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
  EXPECT_EQ(Run({"CLIENT", "SETNAME", "worker-test"}), "+OK\r\n");
  EXPECT_EQ(Run({"client", "getname"}), "$11\r\nworker-test\r\n");
  std::string info = Run({"CLIENT", "INFO"});
  EXPECT_THAT(info, StartsWith("$"));
  EXPECT_THAT(info, HasSubstr("id=7 addr=127.0.0.1:5555 laddr=127.0.0.1:6380 "));
  EXPECT_THAT(info, HasSubstr(" name=worker-test "));
  EXPECT_THAT(info, HasSubstr(" cmd=client|info "));
  EXPECT_THAT(info, HasSubstr(" worker=1\n\r\n"));
  EXPECT_THAT(Run({"CLIENT", "LIST"}), HasSubstr("id=7 "));
  EXPECT_EQ(Run({"CLIENT", "SETINFO", "LIB-NAME", "redis-py"}), "+OK\r\n");
  EXPECT_EQ(Run({"CLIENT", "SETNAME", ""}), "+OK\r\n");
  EXPECT_EQ(Run({"CLIENT", "GETNAME"}), "$-1\r\n");
  EXPECT_THAT(Run({"CLIENT", "HELP"}), StartsWith("*"));
}

// ---------------------------------------------------------------------------
// Strings

TEST_F(CommandsTest, GetSetBasics) {
  EXPECT_EQ(Run({"GET", "k"}), "$-1\r\n");
  EXPECT_EQ(Run({"SET", "k", "v"}), "+OK\r\n");
  EXPECT_EQ(Run({"GET", "k"}), "$1\r\nv\r\n");
  EXPECT_EQ(Run({"SET", "k", ""}), "+OK\r\n");
  EXPECT_EQ(Run({"GET", "k"}), "$0\r\n\r\n");
  std::string bin("a\0b\r\n", 5);
  EXPECT_EQ(Run({"SET", "bin", bin}), "+OK\r\n");
  EXPECT_EQ(Run({"GET", "bin"}), "$5\r\n" + bin + "\r\n");
  EXPECT_EQ(Run({"STRLEN", "bin"}), ":5\r\n");
  EXPECT_EQ(Run({"STRLEN", "none"}), ":0\r\n");
  EXPECT_EQ(Run({"TYPE", "bin"}), "+string\r\n");
  EXPECT_EQ(Run({"TYPE", "none"}), "+none\r\n");
}

TEST_F(CommandsTest, SetConditionsAndGet) {
  EXPECT_EQ(Run({"SET", "k", "1", "XX"}), "$-1\r\n");
  EXPECT_EQ(Run({"SET", "k", "1", "NX"}), "+OK\r\n");
  EXPECT_EQ(Run({"SET", "k", "2", "nx"}), "$-1\r\n");
  EXPECT_EQ(Run({"SET", "k", "3", "XX"}), "+OK\r\n");
  EXPECT_EQ(Run({"SET", "k", "4", "GET"}), "$1\r\n3\r\n");
  EXPECT_EQ(Run({"SET", "new", "x", "GET"}), "$-1\r\n");
  EXPECT_EQ(Run({"GET", "new"}), "$1\r\nx\r\n");
  EXPECT_EQ(Run({"SET", "k", "5", "NX", "GET"}), "$1\r\n4\r\n");  // not set, old value shown
  EXPECT_EQ(Run({"GET", "k"}), "$1\r\n4\r\n");
  EXPECT_EQ(Run({"SETNX", "k", "z"}), ":0\r\n");
  EXPECT_EQ(Run({"SETNX", "k2", "z"}), ":1\r\n");
}

TEST_F(CommandsTest, SetOptionErrorsMatchRedis) {
  EXPECT_EQ(Run({"SET", "k", "v", "NX", "XX"}), "-ERR syntax error\r\n");
  EXPECT_EQ(last_code_, ErrCode::kSyntax);
  EXPECT_EQ(Run({"SET", "k", "v", "EX", "10", "PX", "100"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "EX", "10", "KEEPTTL"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "KEEPTTL", "PXAT", "1"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "EX"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "BOGUS"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "EX", "0"}), "-ERR invalid expire time in 'set' command\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "PX", "-5"}), "-ERR invalid expire time in 'set' command\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "EX", "9223372036854775"}),
            "-ERR invalid expire time in 'set' command\r\n");
  EXPECT_EQ(Run({"SET", "k", "v", "EX", "ten"}),
            "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"SETEX", "k", "0", "v"}), "-ERR invalid expire time in 'setex' command\r\n");
  EXPECT_EQ(Run({"PSETEX", "k", "-1", "v"}), "-ERR invalid expire time in 'psetex' command\r\n");
  EXPECT_EQ(Run({"GET", "k"}), "$-1\r\n");  // nothing above stored anything
  EXPECT_EQ(Run({"SET", "k", "v", "EX", "10", "EX", "20"}), "+OK\r\n");  // repeat is allowed
  EXPECT_EQ(Run({"TTL", "k"}), ":20\r\n");
}

TEST_F(CommandsTest, SetExpiryOptions) {
  EXPECT_EQ(Run({"SET", "a", "v", "EX", "100"}), "+OK\r\n");
  EXPECT_EQ(Run({"TTL", "a"}), ":100\r\n");
  EXPECT_EQ(Run({"PTTL", "a"}), ":100000\r\n");
  EXPECT_EQ(Run({"SET", "a", "w", "KEEPTTL"}), "+OK\r\n");
  EXPECT_EQ(Run({"PTTL", "a"}), ":100000\r\n");
  EXPECT_EQ(Run({"SET", "a", "x"}), "+OK\r\n");  // plain SET clears the TTL
  EXPECT_EQ(Run({"TTL", "a"}), ":-1\r\n");
  EXPECT_EQ(Run({"SET", "b", "v", "PXAT", std::to_string(kNow + 1500)}), "+OK\r\n");
  EXPECT_EQ(Run({"PTTL", "b"}), ":1500\r\n");
  EXPECT_EQ(Run({"TTL", "b"}), ":2\r\n");  // rounded as Redis: (ttl+500)/1000
  EXPECT_EQ(Run({"SET", "c", "v", "EXAT", std::to_string(kNow / 1000 + 10)}), "+OK\r\n");
  EXPECT_EQ(Run({"TTL", "c"}), ":10\r\n");
  EXPECT_EQ(Run({"GET", "b"}, kNow + 1500), "$1\r\nv\r\n");  // Redis: expired once now > at
  EXPECT_EQ(Run({"GET", "b"}, kNow + 1501), "$-1\r\n");
  EXPECT_EQ(Run({"SETEX", "d", "5", "v"}), "+OK\r\n");
  EXPECT_EQ(Run({"PTTL", "d"}), ":5000\r\n");
  EXPECT_EQ(Run({"PSETEX", "e", "250", "v"}), "+OK\r\n");
  EXPECT_EQ(Run({"PTTL", "e"}), ":250\r\n");
}

TEST_F(CommandsTest, IncrDecrAndOverflow) {
  EXPECT_EQ(Run({"INCR", "n"}), ":1\r\n");
  EXPECT_EQ(Run({"INCRBY", "n", "10"}), ":11\r\n");
  EXPECT_EQ(Run({"DECR", "n"}), ":10\r\n");
  EXPECT_EQ(Run({"DECRBY", "n", "-5"}), ":15\r\n");
  EXPECT_EQ(Run({"INCRBY", "n", "x"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(last_code_, ErrCode::kNotInteger);
  EXPECT_EQ(Run({"INCRBY", "n", "007"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"INCRBY", "n", "+1"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"INCRBY", "n", "9223372036854775808"}),
            "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"SET", "s", "abc"}), "+OK\r\n");
  EXPECT_EQ(Run({"INCR", "s"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"SET", "m", "9223372036854775807"}), "+OK\r\n");
  EXPECT_EQ(Run({"INCR", "m"}), "-ERR increment or decrement would overflow\r\n");
  EXPECT_EQ(last_code_, ErrCode::kOverflow);
  EXPECT_EQ(Run({"SET", "m", "-9223372036854775808"}), "+OK\r\n");
  EXPECT_EQ(Run({"DECR", "m"}), "-ERR increment or decrement would overflow\r\n");
  EXPECT_EQ(Run({"DECRBY", "z", "-9223372036854775808"}), "-ERR decrement would overflow\r\n");
  EXPECT_EQ(Run({"INCRBY", "z", "-9223372036854775808"}), ":-9223372036854775808\r\n");
}

TEST_F(CommandsTest, MsetMgetDelExists) {
  EXPECT_EQ(Run({"MSET", "a", "1", "b", "2", "c", "3"}), "+OK\r\n");
  EXPECT_EQ(Run({"MGET", "a", "nope", "c"}), "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n3\r\n");
  EXPECT_EQ(Run({"EXISTS", "a", "a", "nope", "b"}), ":3\r\n");
  EXPECT_EQ(Run({"DEL", "a", "a", "nope", "b"}), ":2\r\n");
  EXPECT_EQ(Run({"UNLINK", "c"}), ":1\r\n");
  EXPECT_EQ(Run({"DBSIZE"}), ":0\r\n");
}

TEST_F(CommandsTest, TooLargeAndOom) {
  std::string big_key(65, 'k'), big_val(4097, 'v');
  EXPECT_EQ(Run({"SET", big_key, "v"}), "-ERR key is larger than max-key-bytes\r\n");
  EXPECT_EQ(last_code_, ErrCode::kTooLarge);
  EXPECT_EQ(Run({"SET", "k", big_val}), "-ERR value is larger than max-value-bytes\r\n");
  EXPECT_EQ(Run({"MSET", "k", "v", big_key, "v"}), "-ERR key is larger than max-key-bytes\r\n");
  // Fill the store until the engine says no (noeviction).
  std::string val(4000, 'x');
  std::string reply;
  for (int i = 0; i < 10000; ++i) {
    reply = Run({"SET", "fill" + std::to_string(i), val});
    if (reply != "+OK\r\n") break;
  }
  EXPECT_EQ(reply, "-OOM command not allowed when used memory > 'maxmemory'.\r\n");
  EXPECT_EQ(last_code_, ErrCode::kOom);
}

// ---------------------------------------------------------------------------
// Expiry

TEST_F(CommandsTest, TtlPersistExpire) {
  EXPECT_EQ(Run({"TTL", "k"}), ":-2\r\n");
  EXPECT_EQ(Run({"PTTL", "k"}), ":-2\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "10"}), ":0\r\n");
  EXPECT_EQ(Run({"SET", "k", "v"}), "+OK\r\n");
  EXPECT_EQ(Run({"TTL", "k"}), ":-1\r\n");
  EXPECT_EQ(Run({"PERSIST", "k"}), ":0\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "10"}), ":1\r\n");
  EXPECT_EQ(Run({"TTL", "k"}), ":10\r\n");
  EXPECT_EQ(Run({"PEXPIRE", "k", "2500"}), ":1\r\n");
  EXPECT_EQ(Run({"PTTL", "k"}), ":2500\r\n");
  EXPECT_EQ(Run({"PERSIST", "k"}), ":1\r\n");
  EXPECT_EQ(Run({"TTL", "k"}), ":-1\r\n");
  EXPECT_EQ(Run({"EXPIREAT", "k", std::to_string(kNow / 1000 + 30)}), ":1\r\n");
  EXPECT_EQ(Run({"TTL", "k"}), ":30\r\n");
  EXPECT_EQ(Run({"PEXPIREAT", "k", std::to_string(kNow + 400)}), ":1\r\n");
  EXPECT_EQ(Run({"PTTL", "k"}), ":400\r\n");
  EXPECT_EQ(Run({"TTL", "k"}, kNow + 401), ":-2\r\n");
  // A deadline in the past deletes, answering 1.
  EXPECT_EQ(Run({"SET", "k", "v"}), "+OK\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "-1"}), ":1\r\n");
  EXPECT_EQ(Run({"EXISTS", "k"}), ":0\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "x"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "9223372036854775807"}),
            "-ERR invalid expire time in 'expire' command\r\n");
  EXPECT_EQ(Run({"PEXPIRE", "k", "9223372036854775807"}),
            "-ERR invalid expire time in 'pexpire' command\r\n");
}

TEST_F(CommandsTest, ExpireConditions) {
  EXPECT_EQ(Run({"SET", "k", "v"}), "+OK\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "10", "XX"}), ":0\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "10", "GT"}), ":0\r\n");  // no TTL = infinite
  EXPECT_EQ(Run({"EXPIRE", "k", "10", "NX"}), ":1\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "20", "NX"}), ":0\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "5", "GT"}), ":0\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "20", "GT"}), ":1\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "30", "LT"}), ":0\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "15", "lt"}), ":1\r\n");
  EXPECT_EQ(Run({"TTL", "k"}), ":15\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "15", "NX", "XX"}),
            "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "15", "GT", "LT"}),
            "-ERR GT and LT options at the same time are not compatible\r\n");
  EXPECT_EQ(Run({"EXPIRE", "k", "15", "FOO"}), "-ERR Unsupported option FOO\r\n");
}

// ---------------------------------------------------------------------------
// Keyspace iteration

TEST_F(CommandsTest, ScanIteratesEverythingAndMatches) {
  std::set<std::string> want, want_user;
  for (int i = 0; i < 300; ++i) {
    std::string k = (i % 3 ? "item:" : "user:") + std::to_string(i);
    ASSERT_EQ(Run({"SET", k, "v"}), "+OK\r\n");
    want.insert(k);
    if (i % 3 == 0) want_user.insert(k);
  }
  auto full_scan = [&](std::vector<std::string_view> extra) {
    std::set<std::string> got;
    std::string cursor = "0";
    int rounds = 0;
    do {
      std::vector<std::string_view> argv = {"SCAN", cursor};
      argv.insert(argv.end(), extra.begin(), extra.end());
      RespText w;
      Dispatch(env_, session_, argv, w, kNow);
      // Parse "*2\r\n$<n>\r\n<cursor>\r\n*<m>\r\n($<len>\r\n<key>\r\n)*"
      const std::string& r = w.out;
      EXPECT_EQ(r.substr(0, 4), "*2\r\n") << r;
      size_t p = r.find("\r\n", 4);
      size_t q = r.find("\r\n", p + 2);
      cursor = r.substr(p + 2, q - p - 2);
      size_t m_end = r.find("\r\n", q + 2);
      int m = std::stoi(r.substr(q + 3, m_end - q - 3));
      p = m_end + 2;
      for (int i = 0; i < m; ++i) {
        size_t le = r.find("\r\n", p);
        size_t len = std::stoul(r.substr(p + 1, le - p - 1));
        got.insert(r.substr(le + 2, len));
        p = le + 2 + len + 2;
      }
      EXPECT_LT(++rounds, 10000);
    } while (cursor != "0");
    return got;
  };
  EXPECT_EQ(full_scan({}), want);
  EXPECT_EQ(full_scan({"COUNT", "7"}), want);
  EXPECT_EQ(full_scan({"MATCH", "user:*", "COUNT", "50"}), want_user);
  EXPECT_EQ(full_scan({"TYPE", "string", "MATCH", "*"}), want);
  EXPECT_TRUE(full_scan({"TYPE", "hash"}).empty());
}

TEST_F(CommandsTest, ScanErrors) {
  EXPECT_EQ(Run({"SCAN", "abc"}), "-ERR invalid cursor\r\n");
  EXPECT_EQ(Run({"SCAN", " 1"}), "-ERR invalid cursor\r\n");
  EXPECT_EQ(Run({"SCAN", "99999999999999999999999"}), "-ERR invalid cursor\r\n");
  EXPECT_EQ(Run({"SCAN", "0", "COUNT", "0"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"SCAN", "0", "COUNT", "x"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"SCAN", "0", "MATCH"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"SCAN", "0", "FOO", "1"}), "-ERR syntax error\r\n");
  std::string r = Run({"SCAN", "0"});  // empty store: no keys (the cursor may go on)
  EXPECT_THAT(r, StartsWith("*2\r\n$"));
  EXPECT_THAT(r, ::testing::EndsWith("\r\n*0\r\n"));
}

TEST_F(CommandsTest, KeysGlob) {
  for (std::string_view k :
       {"hello", "hallo", "hxllo", "hllo", "heeeello", "h*llo", "h?llo", "a[b", "x\\y"})
    ASSERT_EQ(Run({"SET", k, "1"}), "+OK\r\n");
  auto keys = [&](std::string_view pat) {
    std::string r = Run({"KEYS", pat});
    std::multiset<std::string> got;
    size_t p = r.find("\r\n") + 2;
    while (p < r.size()) {
      size_t le = r.find("\r\n", p);
      size_t len = std::stoul(r.substr(p + 1, le - p - 1));
      got.insert(r.substr(le + 2, len));
      p = le + 2 + len + 2;
    }
    return got;
  };
  using S = std::multiset<std::string>;
  EXPECT_EQ(keys("h?llo"), (S{"hello", "hallo", "hxllo", "h*llo", "h?llo"}));
  EXPECT_EQ(keys("h*llo"), (S{"hello", "hallo", "hxllo", "hllo", "heeeello", "h*llo", "h?llo"}));
  EXPECT_EQ(keys("h[ae]llo"), (S{"hello", "hallo"}));
  EXPECT_EQ(keys("h[^e]llo"), (S{"hallo", "hxllo", "h*llo", "h?llo"}));
  EXPECT_EQ(keys("h[a-b]llo"), (S{"hallo"}));
  EXPECT_EQ(keys("h[b-a]llo"), (S{"hallo"}));  // reversed range, as Redis
  EXPECT_EQ(keys("h\\*llo"), (S{"h*llo"}));
  EXPECT_EQ(keys("h\\?llo"), (S{"h?llo"}));
  EXPECT_EQ(keys("a\\[b"), (S{"a[b"}));
  EXPECT_EQ(keys("x\\\\y"), (S{"x\\y"}));
  EXPECT_EQ(keys("*").size(), 9u);
  EXPECT_EQ(keys("nomatch*"), S{});
  EXPECT_EQ(Run({"KEYS", "zzz"}), "*0\r\n");
}

// ---------------------------------------------------------------------------
// Budgets: what one command may make a worker hold or do

// "*2\r\n$<n>\r\n<cursor>\r\n*<m>\r\n($<len>\r\n<key>\r\n)*" -> cursor, keys.
void ParseScanReply(const std::string& r, std::string* cursor, std::vector<std::string>* keys) {
  ASSERT_EQ(r.substr(0, 4), "*2\r\n") << r.substr(0, 200);
  size_t p = r.find("\r\n", 4);
  size_t q = r.find("\r\n", p + 2);
  *cursor = r.substr(p + 2, q - p - 2);
  size_t m_end = r.find("\r\n", q + 2);
  int m = std::stoi(r.substr(q + 3, m_end - q - 3));
  p = m_end + 2;
  for (int i = 0; i < m; ++i) {
    size_t le = r.find("\r\n", p);
    size_t len = std::stoul(r.substr(p + 1, le - p - 1));
    keys->push_back(r.substr(le + 2, len));
    p = le + 2 + len + 2;
  }
}

TEST_F(CommandsTest, MgetPastReplyBudgetIsAnError) {
  config_.limits.max_reply_bytes = 1 << 20;
  ASSERT_EQ(Run({"SET", "k", std::string(4000, 'v')}), "+OK\r\n");
  // 300 x 4000 bytes: past 1 MB, answered with an error instead of a reply
  // built in full (the real case: a 900 KB value asked for a million times).
  std::vector<std::string_view> argv(301, "k");
  argv[0] = "MGET";
  EXPECT_EQ(RunV(argv),
            "-ERR reply too large: MGET would return more than 1048576 bytes "
            "(limits.max_reply_bytes)\r\n");
  EXPECT_EQ(last_code_, ErrCode::kTooLarge);
  argv.resize(201);
  std::string ok = RunV(argv);
  EXPECT_THAT(ok, StartsWith("*200\r\n$4000\r\n"));
  EXPECT_EQ(ok.size(), 6 + 200 * (7 + 4000 + 2));
}

TEST_F(CommandsTest, MsetPastBudgetIsAnErrorAndWritesNothing) {
  config_.limits.max_reply_bytes = 10000;
  std::string val(3000, 'v');
  EXPECT_EQ(Run({"MSET", "a", val, "b", val, "c", val, "d", val}),
            "-ERR request too large: MSET would write more than 10000 bytes "
            "(limits.max_reply_bytes)\r\n");
  EXPECT_EQ(last_code_, ErrCode::kTooLarge);
  EXPECT_EQ(Run({"EXISTS", "a", "b", "c", "d"}), ":0\r\n");
  EXPECT_EQ(Run({"MSET", "a", val, "b", val, "c", val}), "+OK\r\n");
}

TEST_F(CommandsTest, KeysPastReplyBudgetIsAnErrorThatPointsToScan) {
  config_.limits.max_reply_bytes = 10000;
  for (int i = 0; i < 200; ++i)
    ASSERT_EQ(Run({"SET", std::string(50, 'k') + std::to_string(1000 + i), "v"}), "+OK\r\n");
  EXPECT_EQ(Run({"KEYS", "*"}),
            "-ERR reply too large: KEYS would return more than 10000 bytes "
            "(limits.max_reply_bytes); use SCAN\r\n");
  EXPECT_EQ(Run({"KEYS", "k*"}), Run({"KEYS", "*"}));
  EXPECT_THAT(Run({"KEYS", "*1000"}), StartsWith("*1\r\n"));
}

TEST_F(CommandsTest, ScanPastReplyBudgetReturnsEarlyAndResumes) {
  config_.limits.max_reply_bytes = 2000;
  std::set<std::string> want;
  for (int i = 0; i < 200; ++i) {
    std::string k = std::string(50, 'k') + std::to_string(1000 + i);
    want.insert(k);
    ASSERT_EQ(Run({"SET", k, "v"}), "+OK\r\n");
  }
  std::set<std::string> got;
  std::string cursor = "0";
  int calls = 0;
  do {
    std::vector<std::string> keys;
    ParseScanReply(Run({"SCAN", cursor, "COUNT", "1000000"}), &cursor, &keys);
    EXPECT_LT(keys.size(), 60u);  // ~2000 bytes of 54-byte keys, plus one bucket
    got.insert(keys.begin(), keys.end());
    ASSERT_LT(++calls, 1000);
  } while (cursor != "0");
  EXPECT_GT(calls, 3);  // COUNT alone would have finished in one call
  EXPECT_EQ(got, want);
}

// Each key costs the per-call glob cap: 64 start positions x a 20000-byte class.
std::string ExpensivePattern() { return "*[a" + std::string(20000, 'b') + "]z"; }

TEST_F(CommandsTest, KeysWithTooExpensivePatternIsAnError) {
  for (int i = 0; i < 100; ++i)
    ASSERT_EQ(Run({"SET", std::string(60, 'a') + std::to_string(1000 + i), "v"}), "+OK\r\n");
  std::string pat = ExpensivePattern();
  EXPECT_EQ(Run({"KEYS", pat}), "-ERR KEYS pattern too expensive; use SCAN\r\n");
  EXPECT_EQ(Run({"KEYS", "a*"}).substr(0, 6), "*100\r\n");  // cheap patterns still work
}

TEST_F(CommandsTest, ScanWithTooExpensivePatternStopsEarlyAndResumes) {
  for (int i = 0; i < 100; ++i)
    ASSERT_EQ(Run({"SET", std::string(60, 'a') + std::to_string(1000 + i), "v"}), "+OK\r\n");
  ASSERT_EQ(Run({"SET", "az", "v"}), "+OK\r\n");  // the one key the pattern matches
  std::string pat = ExpensivePattern();
  std::set<std::string> got;
  std::string cursor = "0";
  int calls = 0;
  do {
    std::vector<std::string> keys;
    auto t0 = std::chrono::steady_clock::now();
    ParseScanReply(Run({"SCAN", cursor, "MATCH", pat, "COUNT", "1000000"}), &cursor, &keys);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
    got.insert(keys.begin(), keys.end());
    ASSERT_LT(++calls, 100);
  } while (cursor != "0");
  EXPECT_GE(calls, 2);  // 100 keys x the per-key cap is past the per-command budget
  EXPECT_EQ(got, (std::set<std::string>{"az"}));
}

TEST_F(CommandsTest, ClientNamesAreCappedAt512Bytes) {
  std::string ok(512, 'n'), too_long(513, 'n');
  EXPECT_EQ(Run({"CLIENT", "SETNAME", too_long}),
            "-ERR Client names cannot be longer than 512 bytes.\r\n");
  EXPECT_EQ(Run({"CLIENT", "SETNAME", ok}), "+OK\r\n");
  EXPECT_EQ(session_.name, ok);
  EXPECT_EQ(Run({"HELLO", "2", "SETNAME", too_long}),
            "-ERR Client names cannot be longer than 512 bytes.\r\n");
  EXPECT_EQ(session_.name, ok);
  EXPECT_EQ(Run({"CLIENT", "SETINFO", "LIB-NAME", too_long}),
            "-ERR lib-name cannot be longer than 512 bytes.\r\n");
  EXPECT_EQ(Run({"CLIENT", "SETINFO", "lib-ver", too_long}),
            "-ERR lib-ver cannot be longer than 512 bytes.\r\n");
  EXPECT_TRUE(session_.lib_name.empty());
  EXPECT_EQ(Run({"CLIENT", "SETINFO", "LIB-NAME", ok}), "+OK\r\n");
}

TEST_F(CommandsTest, ScratchBuffersDoNotKeepAHugeReply) {
  ASSERT_EQ(Run({"SET", "k", std::string(4000, 'v')}), "+OK\r\n");
  std::vector<std::string_view> argv(2001, "k");
  argv[0] = "MGET";
  EXPECT_THAT(RunV(argv), StartsWith("*2000\r\n"));  // 8 MB of values
  EXPECT_LT(CommandScratchBytesForTesting(), size_t{1} << 20);
  for (int i = 0; i < 3000; ++i)
    ASSERT_EQ(Run({"SET", std::string(60, 'x') + std::to_string(i), "v"}), "+OK\r\n");
  EXPECT_THAT(Run({"KEYS", "*"}), StartsWith("*3001\r\n"));
  EXPECT_THAT(Run({"GET", "k"}), StartsWith("$4000\r\n"));
  EXPECT_LT(CommandScratchBytesForTesting(), size_t{1} << 20);
}

TEST(Glob, RedisSemantics) {
  EXPECT_TRUE(GlobMatch("", ""));
  EXPECT_FALSE(GlobMatch("*", ""));  // stringmatchlen quirk; KEYS/SCAN special-case "*"
  EXPECT_TRUE(GlobMatch("*", "abc"));
  EXPECT_TRUE(GlobMatch("a*", "a"));
  EXPECT_TRUE(GlobMatch("a**", "a"));
  EXPECT_TRUE(GlobMatch("*c", "abc"));
  EXPECT_FALSE(GlobMatch("*d", "abc"));
  EXPECT_TRUE(GlobMatch("a*b*c", "aXXbYYc"));
  EXPECT_TRUE(GlobMatch("a*b*c", "abbbc"));
  EXPECT_FALSE(GlobMatch("a*b*c", "acb"));
  EXPECT_TRUE(GlobMatch("?", "x"));
  EXPECT_FALSE(GlobMatch("?", "xy"));
  EXPECT_TRUE(GlobMatch("[abc]", "b"));
  EXPECT_FALSE(GlobMatch("[abc]", "d"));
  EXPECT_TRUE(GlobMatch("[^abc]", "d"));
  EXPECT_TRUE(GlobMatch("[a-z]x", "qx"));
  EXPECT_TRUE(GlobMatch("[\\]]", "]"));
  EXPECT_TRUE(GlobMatch("[a-]", "_"));  // Redis reads "a-]" as the range ]..a, unterminated
  EXPECT_FALSE(GlobMatch("[a-]", "b"));
  EXPECT_FALSE(GlobMatch("[]", "a"));
  EXPECT_TRUE(GlobMatch("[abc", "c"));  // unterminated class runs to the end
  EXPECT_TRUE(GlobMatch("[^", "z"));
  EXPECT_TRUE(GlobMatch("\\", "\\"));  // a trailing backslash is literal
  EXPECT_TRUE(GlobMatch("a\\*", "a*"));
  EXPECT_FALSE(GlobMatch("a\\*", "ab"));
  EXPECT_TRUE(GlobMatch("user^*", "user^42"));
}

// Reference: the recursive definition of Redis' stringmatchlen (exponential
// in the worst case, fine for short inputs), to check the iterative GlobMatch.
bool RefMatch(std::string_view p, std::string_view s) {
  while (!p.empty() && !s.empty()) {
    if (p[0] == '*') {
      while (p.size() > 1 && p[1] == '*') p.remove_prefix(1);
      if (p.size() == 1) return true;
      for (; !s.empty(); s.remove_prefix(1))
        if (RefMatch(p.substr(1), s)) return true;
      return false;
    }
    unsigned char c = static_cast<unsigned char>(s[0]);
    size_t used = 1;  // pattern bytes this token takes
    bool ok;
    if (p[0] == '?') {
      ok = true;
    } else if (p[0] == '[') {
      size_t i = 1;
      bool neg = i < p.size() && p[i] == '^';
      if (neg) i++;
      bool hit = false;
      for (;;) {
        if (i >= p.size()) {
          i = p.size() - 1;
          break;
        }
        if (p[i] == '\\' && p.size() - i >= 2) {
          i++;
          hit |= static_cast<unsigned char>(p[i]) == c;
        } else if (p[i] == ']') {
          break;
        } else if (p.size() - i >= 3 && p[i + 1] == '-') {
          unsigned char a = p[i], b = p[i + 2];
          if (a > b) std::swap(a, b);
          hit |= c >= a && c <= b;
          i += 2;
        } else {
          hit |= static_cast<unsigned char>(p[i]) == c;
        }
        i++;
      }
      ok = neg ? !hit : hit;
      used = i + 1;
    } else if (p[0] == '\\' && p.size() >= 2) {
      ok = static_cast<unsigned char>(p[1]) == c;
      used = 2;
    } else {
      ok = static_cast<unsigned char>(p[0]) == c;
    }
    if (!ok) return false;
    p.remove_prefix(std::min(used, p.size()));
    s.remove_prefix(1);
    if (s.empty()) {
      while (!p.empty() && p[0] == '*') p.remove_prefix(1);
      break;
    }
  }
  return p.empty() && s.empty();
}

TEST(Glob, AgreesWithRecursiveReference) {
  const char pat_alpha[] = "ab*?[]^-\\";
  const char str_alpha[] = "ab]^-\\*";
  uint64_t x = 88172645463325252ull;
  auto rnd = [&x](size_t n) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return static_cast<size_t>(x % n);
  };
  int matches = 0;
  for (int iter = 0; iter < 200000; ++iter) {
    std::string p, s;
    for (size_t n = rnd(9); n > 0; --n) p += pat_alpha[rnd(sizeof pat_alpha - 1)];
    for (size_t n = rnd(8); n > 0; --n) s += str_alpha[rnd(sizeof str_alpha - 1)];
    ASSERT_EQ(GlobMatch(p, s), RefMatch(p, s)) << "pattern '" << p << "' string '" << s << "'";
    matches += RefMatch(p, s);
  }
  EXPECT_GT(matches, 2000);  // the inputs do exercise the matching paths
}

TEST(Glob, PathologicalPatternFinishesFast) {
  std::string key(100000, 'a');
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(GlobMatch("*a*a*a*a*a*a*a*a*b", key));
  EXPECT_FALSE(GlobMatch(std::string(50, '*') + "a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", key));
  std::string pat;
  for (int i = 0; i < 200; ++i) pat += "*a";
  pat += "b";
  EXPECT_FALSE(GlobMatch(pat, key));
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_LT(ms, 500);
  EXPECT_TRUE(GlobMatch("*a*a*a*a*a*a*a*a*b", key + "b"));
}

TEST_F(CommandsTest, KeysWithPathologicalPatternOnLongKey) {
  std::string key(60, 'a');  // under max_key_bytes
  ASSERT_EQ(Run({"SET", key, "1"}), "+OK\r\n");
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(Run({"KEYS", "*a*a*a*a*a*a*a*a*b"}), "*0\r\n");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(200));
}

TEST_F(CommandsTest, FlushAndNamespaces) {
  EXPECT_EQ(Run({"MSET", "users^1", "a", "users^2", "b", "usersX", "c", "other^1", "d"}),
            "+OK\r\n");
  EXPECT_EQ(Run({"FLUSHNS", "users"}), ":2\r\n");
  EXPECT_EQ(Run({"EXISTS", "users^1", "users^2", "usersX", "other^1"}), ":2\r\n");
  EXPECT_EQ(Run({"FLUSHDB", "FOO"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"FLUSHALL", "ASYNC"}), "+OK\r\n");
  EXPECT_EQ(Run({"DBSIZE"}), ":0\r\n");
  EXPECT_EQ(Run({"SET", "a", "1"}), "+OK\r\n");
  EXPECT_EQ(Run({"FLUSHDB", "sync"}), "+OK\r\n");
  EXPECT_EQ(Run({"DBSIZE"}), ":0\r\n");
}

// ---------------------------------------------------------------------------
// INFO, CONFIG, COMMAND

TEST_F(CommandsTest, InfoHasWhatClientsRead) {
  std::string r = Run({"INFO"});
  EXPECT_THAT(r, StartsWith("$"));
  EXPECT_THAT(r, HasSubstr("# Server\r\nredis_version:7.0.0\r\npreforkd_version:9.9.9\r\n"));
  EXPECT_THAT(r, HasSubstr("\r\nredis_mode:standalone\r\n"));
  EXPECT_THAT(r, HasSubstr("\r\narch_bits:64\r\n"));
  EXPECT_THAT(r, HasSubstr("\r\ntcp_port:6380\r\n"));
  EXPECT_THAT(r, HasSubstr("\r\n\r\n# Clients\r\nconnected_clients:3\r\n"));
  EXPECT_THAT(r, HasSubstr("\r\nused_memory:"));
  EXPECT_THAT(r, HasSubstr("\r\nmaxmemory_policy:noeviction\r\n"));
  EXPECT_THAT(r, HasSubstr("\r\ntotal_commands_processed:77\r\n"));
  EXPECT_THAT(r, HasSubstr("\r\nkeyspace_hits:"));
  EXPECT_THAT(r, HasSubstr("# Keyspace\r\n"));
  EXPECT_THAT(r, Not(HasSubstr("db0:")));  // empty: no db0 line, as Redis
  Run({"SET", "a", "1"});
  Run({"SET", "b", "1", "EX", "100"});
  EXPECT_THAT(Run({"INFO", "keyspace"}),
              HasSubstr("# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=0\r\n"));
  std::string ks = Run({"INFO", "KEYSPACE"});
  EXPECT_THAT(ks, Not(HasSubstr("# Server")));
  EXPECT_EQ(Run({"INFO", "nosuchsection"}), "$0\r\n\r\n");
  std::string two = Run({"INFO", "server", "stats"});
  EXPECT_THAT(two, HasSubstr("# Server"));
  EXPECT_THAT(two, HasSubstr("# Stats"));
  EXPECT_THAT(two, Not(HasSubstr("# Memory")));
}

// Redis 7.0's sections and the fields redis-py's fixtures and tools read.
TEST_F(CommandsTest, InfoHasRedis7SectionsAndFields) {
  const std::string r = Run({"INFO"});
  for (const char* section :
       {"# Server\r\n", "# Clients\r\n", "# Memory\r\n", "# Persistence\r\n", "# Stats\r\n",
        "# Replication\r\n", "# CPU\r\n", "# Modules\r\n", "# Errorstats\r\n", "# Cluster\r\n",
        "# Keyspace\r\n", "# Preforkd\r\n"})
    EXPECT_THAT(r, HasSubstr(section));
  for (const char* field : {"\r\nredis_mode:standalone\r\n",
                            "\r\ncluster_enabled:0\r\n",
                            "\r\nrole:master\r\n",
                            "\r\nconnected_slaves:0\r\n",
                            "\r\nmaster_failover_state:no-failover\r\n",
                            "\r\nmaster_replid2:0000000000000000000000000000000000000000\r\n",
                            "\r\nsecond_repl_offset:-1\r\n",
                            "\r\nrepl_backlog_active:0\r\n",
                            "\r\nblocked_clients:0\r\n",
                            "\r\ntracking_clients:0\r\n",
                            "\r\nloading:0\r\n",
                            "\r\naof_enabled:0\r\n",
                            "\r\nmaxmemory_policy:noeviction\r\n",
                            "\r\nmem_fragmentation_ratio:",
                            "\r\nused_cpu_sys:",
                            "\r\nused_cpu_user:",
                            "\r\nhz:",
                            "\r\nexecutable:/",
                            "\r\ntotal_error_replies:0\r\n",
                            "\r\npubsub_channels:0\r\n",
                            "\r\nrun_id:",
                            "\r\nuptime_in_days:"})
    EXPECT_THAT(r, HasSubstr(field));
  EXPECT_THAT(r, Not(HasSubstr("# Commandstats")));  // "default" leaves it out, as Redis
  EXPECT_THAT(Run({"INFO", "all"}), HasSubstr("# Commandstats"));
  EXPECT_THAT(Run({"INFO", "everything"}), HasSubstr("# Commandstats"));
  EXPECT_THAT(Run({"INFO", "default"}), Not(HasSubstr("# Commandstats")));
  EXPECT_EQ(Run({"INFO", "modules"}), "$11\r\n# Modules\r\n\r\n");
  EXPECT_EQ(Run({"INFO", "cluster"}), "$30\r\n# Cluster\r\ncluster_enabled:0\r\n\r\n");
  const std::string two = Run({"INFO", "cluster", "nosuch", "REPLICATION"});
  EXPECT_THAT(two, HasSubstr("# Replication\r\nrole:master\r\n"));
  EXPECT_THAT(two, HasSubstr("\r\n\r\n# Cluster\r\n"));  // Redis' order, not the asked one
}

class CommandStatsTest : public CommandsTest {
 protected:
  void SetUp() override {
    CommandsTest::SetUp();
    env_.cmd_stats = &row_;
    env_.stats = &shared_;
  }
  CmdStatsRow row_;
  StatsShared shared_;
};

TEST_F(CommandStatsTest, RejectedFailedAndErrorStatsMoveAndResetstatClearsThem) {
  EXPECT_EQ(Run({"SET", "s", "text"}), "+OK\r\n");
  Run({"GET"});               // arity: rejected
  Run({"CONFIG", "NOSUCH"});  // unknown subcommand: rejected, on the container
  Run({"INCR", "s"});         // ran and failed
  Run({"NOSUCHCOMMAND"});     // no command to charge, but an ERR all the same
  std::string info = Run({"INFO", "commandstats"});
  EXPECT_THAT(info, HasSubstr("cmdstat_get:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,"
                              "failed_calls=0\r\n"));
  EXPECT_THAT(info, HasSubstr(",rejected_calls=1,failed_calls=0\r\n"));
  EXPECT_THAT(info, HasSubstr("cmdstat_config:calls=0,"));
  EXPECT_THAT(info, HasSubstr("cmdstat_incr:calls=1,"));
  EXPECT_THAT(info, HasSubstr(",rejected_calls=0,failed_calls=1\r\n"));
  EXPECT_THAT(Run({"INFO", "errorstats"}), HasSubstr("# Errorstats\r\nerrorstat_ERR:count=4\r\n"));
  EXPECT_THAT(Run({"INFO", "stats"}), HasSubstr("\r\ntotal_error_replies:4\r\n"));

  // NOAUTH is its own prefix, and refused before running.
  config_.kv.password = "pw";
  EXPECT_EQ(Run({"GET", "s"}), "-NOAUTH Authentication required.\r\n");
  EXPECT_THAT(Run({"AUTH", "pw"}), "+OK\r\n");
  EXPECT_THAT(Run({"INFO", "errorstats"}),
              HasSubstr("errorstat_ERR:count=4\r\nerrorstat_NOAUTH:count=1\r\n"));
  EXPECT_THAT(Run({"INFO", "commandstats"}),
              HasSubstr("cmdstat_get:calls=0,usec=0,usec_per_call=0.00,"
                        "rejected_calls=2,failed_calls=0\r\n"));

  EXPECT_EQ(Run({"CONFIG", "RESETSTAT"}), "+OK\r\n");
  info = Run({"INFO", "all"});
  EXPECT_THAT(info, Not(HasSubstr("cmdstat_get:")));
  EXPECT_THAT(info, Not(HasSubstr("cmdstat_incr:")));
  EXPECT_THAT(info, Not(HasSubstr("errorstat_")));
  EXPECT_THAT(info, HasSubstr("\r\ntotal_error_replies:0\r\n"));
  // RESETSTAT itself ran after the reset, as in Redis.
  EXPECT_THAT(info, HasSubstr("cmdstat_config|resetstat:calls=1,"));
  Run({"INCR", "s"});
  EXPECT_THAT(Run({"INFO", "errorstats"}), HasSubstr("# Errorstats\r\nerrorstat_ERR:count=1\r\n"));
}

TEST(ErrorStatTable, NamesOnceAndOverflowsIntoOther) {
  ErrorNames t;
  const uint32_t err = ErrorStatIndex(&t, "ERR");
  EXPECT_EQ(ErrorStatIndex(&t, "ERR"), err);
  EXPECT_NE(ErrorStatIndex(&t, "WRONGTYPE"), err);
  EXPECT_EQ(ErrorStatIndex(&t, ""), kErrorStatOther);
  EXPECT_EQ(ErrorStatIndex(&t, std::string(kMaxErrorNameBytes + 1, 'X')), kErrorStatOther);
  for (uint32_t i = 0; i < kMaxErrorStats; i++) ErrorStatIndex(&t, "E" + std::to_string(i));
  EXPECT_EQ(ErrorStatIndex(&t, "ONEMORE"), kErrorStatOther);
  EXPECT_EQ(ErrorStatIndex(&t, "ERR"), err);  // names already there still count by name
}

TEST_F(CommandsTest, ConfigGetForBenchmarksAndClients) {
  EXPECT_EQ(Run({"CONFIG", "GET", "save"}), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
  EXPECT_EQ(Run({"CONFIG", "GET", "appendonly"}), "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
  EXPECT_EQ(Run({"CONFIG", "GET", "MAXMEMORY-POLICY"}),
            "*2\r\n$16\r\nmaxmemory-policy\r\n$10\r\nnoeviction\r\n");
  EXPECT_THAT(Run({"CONFIG", "GET", "maxmemory*"}), StartsWith("*4\r\n$9\r\nmaxmemory\r\n"));
  EXPECT_EQ(Run({"CONFIG", "GET", "nosuch"}), "*0\r\n");
  EXPECT_EQ(Run({"CONFIG", "GET", "save", "save"}), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
  EXPECT_EQ(Run({"CONFIG", "GET"}), "-ERR wrong number of arguments for 'config|get' command\r\n");
  EXPECT_THAT(Run({"CONFIG", "SET", "save", ""}), StartsWith("-ERR CONFIG SET is not supported"));
}

TEST_F(CommandsTest, CommandIntrospection) {
  EXPECT_EQ(Run({"COMMAND", "COUNT"}), ":" + std::to_string(CommandTable().size()) + "\r\n");
  EXPECT_EQ(Run({"COMMAND", "DOCS"}), "*0\r\n");
  EXPECT_EQ(Run({"COMMAND", "INFO", "get", "nosuch"}),
            "*2\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n"
            "*0\r\n*0\r\n*0\r\n*0\r\n$-1\r\n");
  std::string all = Run({"COMMAND"});
  EXPECT_THAT(all, StartsWith("*" + std::to_string(CommandTable().size()) + "\r\n"));
  EXPECT_THAT(all, HasSubstr("$14\r\nclient|setname\r\n:3\r\n"));
  EXPECT_THAT(all,
              HasSubstr("$4\r\nmset\r\n:-3\r\n*2\r\n+write\r\n+denyoom\r\n:1\r\n:-1\r\n:2\r\n"));
  EXPECT_THAT(Run({"COMMAND", "LIST"}), HasSubstr("$4\r\nping\r\n"));
}

// ---------------------------------------------------------------------------
// String, keyspace and bit commands (Redis 7.0 replies)

std::string Bulk(std::string_view v) {
  return "$" + std::to_string(v.size()) + "\r\n" + std::string(v) + "\r\n";
}
constexpr std::string_view kStringTooLarge =
    "-ERR string exceeds maximum allowed size (kv.max_value_bytes)\r\n";

TEST_F(CommandsTest, GetdelGetsetGetrange) {
  EXPECT_EQ(Run({"SET", "k", "v"}), "+OK\r\n");
  EXPECT_EQ(Run({"GETDEL", "k"}), Bulk("v"));
  EXPECT_EQ(Run({"GET", "k"}), "$-1\r\n");
  EXPECT_EQ(Run({"GETDEL", "k"}), "$-1\r\n");
  EXPECT_EQ(Run({"GETDEL"}), "-ERR wrong number of arguments for 'getdel' command\r\n");
  EXPECT_EQ(Run({"GETSET", "k", "a"}), "$-1\r\n");
  EXPECT_EQ(Run({"SET", "k", "b", "EX", "100"}), "+OK\r\n");
  EXPECT_EQ(Run({"GETSET", "k", "c"}), Bulk("b"));
  EXPECT_EQ(Run({"TTL", "k"}), ":-1\r\n");  // GETSET clears the TTL
  EXPECT_EQ(Run({"SET", "s", "This is a string"}), "+OK\r\n");
  EXPECT_EQ(Run({"GETRANGE", "s", "0", "3"}), Bulk("This"));
  EXPECT_EQ(Run({"GETRANGE", "s", "-3", "-1"}), Bulk("ing"));
  EXPECT_EQ(Run({"GETRANGE", "s", "0", "-1"}), Bulk("This is a string"));
  EXPECT_EQ(Run({"GETRANGE", "s", "10", "100"}), Bulk("string"));
  EXPECT_EQ(Run({"GETRANGE", "s", "5", "3"}), Bulk(""));
  EXPECT_EQ(Run({"GETRANGE", "s", "-1", "-5"}), Bulk(""));
  EXPECT_EQ(Run({"GETRANGE", "nokey", "0", "-1"}), Bulk(""));
  EXPECT_EQ(Run({"GETRANGE", "s", "a", "1"}), "-ERR value is not an integer or out of range\r\n");
}

TEST_F(CommandsTest, GetexSetsAndClearsTtls) {
  EXPECT_EQ(Run({"GETEX", "k"}), "$-1\r\n");
  EXPECT_EQ(Run({"SET", "k", "v"}), "+OK\r\n");
  EXPECT_EQ(Run({"GETEX", "k", "EX", "100"}), Bulk("v"));
  EXPECT_EQ(Run({"PTTL", "k"}), ":100000\r\n");
  EXPECT_EQ(Run({"GETEX", "k", "PERSIST"}), Bulk("v"));
  EXPECT_EQ(Run({"TTL", "k"}), ":-1\r\n");
  EXPECT_EQ(Run({"GETEX", "k", "PXAT", std::to_string(kNow + 5000)}), Bulk("v"));
  EXPECT_EQ(Run({"PTTL", "k"}), ":5000\r\n");
  EXPECT_EQ(Run({"GETEX", "k", "EX", "0"}), "-ERR invalid expire time in 'getex' command\r\n");
  EXPECT_EQ(Run({"GETEX", "k", "EX", "x"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"GETEX", "k", "PERSIST", "EX", "1"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"GETEX", "k", "EX"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"GETEX", "k", "KEEPTTL"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"PTTL", "k"}), ":5000\r\n");  // nothing changed on error
  // A deadline in the past: the value is returned and the key deleted.
  EXPECT_EQ(Run({"GETEX", "k", "EXAT", "1"}), Bulk("v"));
  EXPECT_EQ(Run({"EXISTS", "k"}), ":0\r\n");
}

TEST_F(CommandsTest, SetrangeAndAppendKeepTtlAndRespectTheValueLimit) {
  EXPECT_EQ(Run({"SET", "k", "Hello World", "EX", "100"}), "+OK\r\n");
  EXPECT_EQ(Run({"SETRANGE", "k", "6", "Redis"}), ":11\r\n");
  EXPECT_EQ(Run({"GET", "k"}), Bulk("Hello Redis"));
  EXPECT_EQ(Run({"TTL", "k"}), ":100\r\n");
  EXPECT_EQ(Run({"SETRANGE", "k2", "6", "Redis"}), ":11\r\n");
  EXPECT_EQ(Run({"GET", "k2"}), Bulk(std::string(6, '\0') + "Redis"));
  EXPECT_EQ(Run({"SETRANGE", "k3", "5", ""}), ":0\r\n");
  EXPECT_EQ(Run({"EXISTS", "k3"}), ":0\r\n");
  EXPECT_EQ(Run({"SETRANGE", "k", "100", ""}), ":11\r\n");
  EXPECT_EQ(Run({"SETRANGE", "k", "-1", "x"}), "-ERR offset is out of range\r\n");
  EXPECT_EQ(Run({"SETRANGE", "k", "x", "x"}), "-ERR value is not an integer or out of range\r\n");
  // max_value_bytes is 4096 in this fixture.
  EXPECT_EQ(Run({"SETRANGE", "k", "4095", "x"}), ":4096\r\n");
  EXPECT_EQ(Run({"SETRANGE", "k", "4096", "x"}), kStringTooLarge);
  EXPECT_EQ(last_code_, ErrCode::kTooLarge);
  EXPECT_EQ(Run({"STRLEN", "k"}), ":4096\r\n");
  EXPECT_EQ(Run({"APPEND", "k", "x"}), kStringTooLarge);
  EXPECT_EQ(Run({"STRLEN", "k"}), ":4096\r\n");
  EXPECT_EQ(Run({"APPEND", "a", "Hello"}), ":5\r\n");
  EXPECT_EQ(Run({"APPEND", "a", " World"}), ":11\r\n");
  EXPECT_EQ(Run({"GET", "a"}), Bulk("Hello World"));
  EXPECT_EQ(Run({"APPEND", "a"}), "-ERR wrong number of arguments for 'append' command\r\n");
}

TEST_F(CommandsTest, IncrbyfloatFormatsLikeRedis) {
  EXPECT_EQ(Run({"SET", "f", "10.50", "EX", "100"}), "+OK\r\n");
  EXPECT_EQ(Run({"INCRBYFLOAT", "f", "0.1"}), Bulk("10.6"));
  EXPECT_EQ(Run({"INCRBYFLOAT", "f", "-5"}), Bulk("5.6"));
  EXPECT_EQ(Run({"TTL", "f"}), ":100\r\n");
  EXPECT_EQ(Run({"SET", "f", "5.0e3"}), "+OK\r\n");
  EXPECT_EQ(Run({"INCRBYFLOAT", "f", "2.0e2"}), Bulk("5200"));
  EXPECT_EQ(Run({"INCRBYFLOAT", "new", "-0"}), Bulk("0"));
  EXPECT_EQ(Run({"INCRBYFLOAT", "new", "3"}), Bulk("3"));
  EXPECT_EQ(Run({"INCRBYFLOAT", "new", "abc"}), "-ERR value is not a valid float\r\n");
  EXPECT_EQ(Run({"INCRBYFLOAT", "new", " 1"}), "-ERR value is not a valid float\r\n");
  EXPECT_EQ(Run({"INCRBYFLOAT", "new", "nan"}), "-ERR value is not a valid float\r\n");
  EXPECT_EQ(Run({"INCRBYFLOAT", "new", "inf"}), "-ERR increment would produce NaN or Infinity\r\n");
  EXPECT_EQ(Run({"SET", "s", "hello"}), "+OK\r\n");
  EXPECT_EQ(Run({"INCRBYFLOAT", "s", "1"}), "-ERR value is not a valid float\r\n");
  EXPECT_EQ(Run({"GET", "new"}), Bulk("3"));
}

TEST_F(CommandsTest, MsetnxSetsAllOrNone) {
  EXPECT_EQ(Run({"MSETNX", "a", "1", "b", "2"}), ":1\r\n");
  EXPECT_EQ(Run({"MSETNX", "b", "3", "c", "4"}), ":0\r\n");
  EXPECT_EQ(Run({"GET", "b"}), Bulk("2"));
  EXPECT_EQ(Run({"EXISTS", "c"}), ":0\r\n");
  EXPECT_EQ(Run({"MSETNX", "a"}), "-ERR wrong number of arguments for 'msetnx' command\r\n");
  EXPECT_EQ(Run({"MSETNX", "a", "1", "b"}),
            "-ERR wrong number of arguments for 'msetnx' command\r\n");
  const std::string big(4097, 'x');
  EXPECT_EQ(Run({"MSETNX", "c", "1", "d", big}), "-ERR value is larger than max-value-bytes\r\n");
  EXPECT_EQ(Run({"EXISTS", "c", "d"}), ":0\r\n");
}

TEST_F(CommandsTest, ExpiretimeTouchAndAtomicExpireOptions) {
  EXPECT_EQ(Run({"SET", "k", "v", "EXAT", "33177117420"}), "+OK\r\n");
  EXPECT_EQ(Run({"EXPIRETIME", "k"}), ":33177117420\r\n");
  EXPECT_EQ(Run({"PEXPIRETIME", "k"}), ":33177117420000\r\n");
  EXPECT_EQ(Run({"SET", "p", "v"}), "+OK\r\n");
  EXPECT_EQ(Run({"EXPIRETIME", "p"}), ":-1\r\n");
  EXPECT_EQ(Run({"PEXPIRETIME", "nokey"}), ":-2\r\n");
  EXPECT_EQ(Run({"TOUCH", "k", "p", "nokey"}), ":2\r\n");
  EXPECT_EQ(Run({"EXPIRE", "p", "100", "XX"}), ":0\r\n");
  EXPECT_EQ(Run({"EXPIRE", "p", "100", "NX"}), ":1\r\n");
  EXPECT_EQ(Run({"EXPIRE", "p", "200", "NX"}), ":0\r\n");
  EXPECT_EQ(Run({"EXPIRE", "p", "50", "GT"}), ":0\r\n");
  EXPECT_EQ(Run({"EXPIRE", "p", "200", "GT"}), ":1\r\n");
  EXPECT_EQ(Run({"EXPIRE", "p", "300", "LT"}), ":0\r\n");
  EXPECT_EQ(Run({"EXPIRE", "p", "150", "LT"}), ":1\r\n");
  EXPECT_EQ(Run({"TTL", "p"}), ":150\r\n");
  EXPECT_EQ(Run({"EXPIRE", "nokey", "100", "NX"}), ":0\r\n");
  EXPECT_EQ(Run({"EXPIRE", "p", "-1", "LT"}), ":1\r\n");  // a past deadline deletes
  EXPECT_EQ(Run({"EXISTS", "p"}), ":0\r\n");
}

TEST_F(CommandsTest, RenameCopyMoveSwapdb) {
  EXPECT_EQ(Run({"RENAME", "nokey", "x"}), "-ERR no such key\r\n");
  EXPECT_EQ(Run({"RENAMENX", "nokey", "x"}), "-ERR no such key\r\n");
  EXPECT_EQ(Run({"SET", "a", "1", "EX", "100"}), "+OK\r\n");
  EXPECT_EQ(Run({"RENAME", "a", "a"}), "+OK\r\n");
  EXPECT_EQ(Run({"RENAMENX", "a", "a"}), ":0\r\n");
  EXPECT_EQ(Run({"RENAME", "a", "b"}), "+OK\r\n");
  EXPECT_EQ(Run({"EXISTS", "a"}), ":0\r\n");
  EXPECT_EQ(Run({"GET", "b"}), Bulk("1"));
  EXPECT_EQ(Run({"TTL", "b"}), ":100\r\n");
  EXPECT_EQ(Run({"SET", "c", "3"}), "+OK\r\n");
  EXPECT_EQ(Run({"RENAMENX", "b", "c"}), ":0\r\n");
  EXPECT_EQ(Run({"RENAMENX", "b", "d"}), ":1\r\n");
  EXPECT_EQ(Run({"GET", "d"}), Bulk("1"));

  EXPECT_EQ(Run({"COPY", "d", "c"}), ":0\r\n");
  EXPECT_EQ(Run({"COPY", "d", "c", "REPLACE"}), ":1\r\n");
  EXPECT_EQ(Run({"GET", "c"}), Bulk("1"));
  EXPECT_EQ(Run({"TTL", "c"}), ":100\r\n");
  EXPECT_EQ(Run({"COPY", "nokey", "e"}), ":0\r\n");
  EXPECT_EQ(Run({"COPY", "d", "e", "DB", "0"}), ":1\r\n");
  EXPECT_EQ(Run({"COPY", "d", "d"}), "-ERR source and destination objects are the same\r\n");
  EXPECT_EQ(Run({"COPY", "d", "f", "DB", "1"}), "-ERR DB index is out of range\r\n");
  EXPECT_EQ(Run({"COPY", "d", "f", "DB", "x"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"COPY", "d", "f", "FOO"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"COPY", "d"}), "-ERR wrong number of arguments for 'copy' command\r\n");

  EXPECT_EQ(Run({"MOVE", "d", "1"}), "-ERR DB index is out of range\r\n");
  EXPECT_EQ(Run({"MOVE", "d", "0"}), "-ERR source and destination objects are the same\r\n");
  EXPECT_EQ(Run({"MOVE", "d", "x"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"SWAPDB", "0", "1"}), "-ERR DB index is out of range\r\n");
  EXPECT_EQ(Run({"SWAPDB", "x", "0"}), "-ERR invalid first DB index\r\n");
  EXPECT_EQ(Run({"SWAPDB", "5", "x"}), "-ERR invalid second DB index\r\n");
  EXPECT_EQ(Run({"SWAPDB", "0", "0"}), "+OK\r\n");
}

TEST_F(CommandsTest, RandomkeyAndObject) {
  EXPECT_EQ(Run({"RANDOMKEY"}), "$-1\r\n");
  EXPECT_EQ(Run({"SET", "only", "12345"}), "+OK\r\n");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Run({"RANDOMKEY"}), Bulk("only"));
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) Run({"SET", "k" + std::to_string(i), "v"});
  for (int i = 0; i < 50; ++i) seen.insert(Run({"RANDOMKEY"}));
  EXPECT_GT(seen.size(), 3u);

  EXPECT_EQ(Run({"OBJECT", "ENCODING", "only"}), Bulk("int"));
  EXPECT_EQ(Run({"SET", "e", "hello"}), "+OK\r\n");
  EXPECT_EQ(Run({"OBJECT", "ENCODING", "e"}), Bulk("embstr"));
  EXPECT_EQ(Run({"SET", "r", std::string(45, 'x')}), "+OK\r\n");
  EXPECT_EQ(Run({"OBJECT", "ENCODING", "r"}), Bulk("raw"));
  EXPECT_EQ(Run({"OBJECT", "ENCODING", "nokey"}), "$-1\r\n");
  EXPECT_EQ(Run({"OBJECT", "REFCOUNT", "e"}), ":1\r\n");
  EXPECT_EQ(Run({"SET", "n", "100"}), "+OK\r\n");
  EXPECT_EQ(Run({"OBJECT", "REFCOUNT", "n"}), ":2147483647\r\n");
  EXPECT_EQ(Run({"OBJECT", "IDLETIME", "e"}), ":0\r\n");
  EXPECT_EQ(Run({"OBJECT", "FREQ", "nokey"}), "$-1\r\n");
  EXPECT_THAT(Run({"OBJECT", "FREQ", "e"}),
              StartsWith("-ERR An LFU maxmemory policy is not selected, access frequency not "
                         "tracked."));
  EXPECT_THAT(Run({"OBJECT", "HELP"}),
              StartsWith("*15\r\n+OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands "
                         "are:\r\n+ENCODING <key>\r\n"));
  EXPECT_EQ(Run({"OBJECT", "foo"}), "-ERR unknown subcommand 'foo'. Try OBJECT HELP.\r\n");
  EXPECT_EQ(Run({"OBJECT", "ENCODING"}),
            "-ERR wrong number of arguments for 'object|encoding' command\r\n");
}

TEST_F(CommandsTest, LcsLikeTheRedisDocs) {
  Run({"SET", "key1", "ohmytext"});
  Run({"SET", "key2", "mynewtext"});
  EXPECT_EQ(Run({"LCS", "key1", "key2"}), Bulk("mytext"));
  EXPECT_EQ(Run({"LCS", "key1", "key2", "LEN"}), ":6\r\n");
  EXPECT_EQ(
      Run({"LCS", "key1", "key2", "IDX"}),
      "*4\r\n" + Bulk("matches") +
          "*2\r\n*2\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n*2\r\n*2\r\n:2\r\n:3\r\n*2\r\n:0\r\n:"
          "1\r\n" +
          Bulk("len") + ":6\r\n");
  EXPECT_EQ(Run({"LCS", "key1", "key2", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"}),
            "*4\r\n" + Bulk("matches") + "*1\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n" +
                Bulk("len") + ":6\r\n");
  EXPECT_EQ(Run({"LCS", "key1", "nokey"}), Bulk(""));
  EXPECT_EQ(Run({"LCS", "key1", "key2", "LEN", "IDX"}),
            "-ERR If you want both the length and indexes, please just use IDX.\r\n");
  EXPECT_EQ(Run({"LCS", "key1", "key2", "MINMATCHLEN"}), "-ERR syntax error\r\n");
  config_.limits.max_reply_bytes = 100;
  EXPECT_EQ(Run({"LCS", "key1", "key2"}),
            "-ERR Insufficient memory, transient memory for LCS exceeds "
            "limits.max_reply_bytes\r\n");
}

TEST_F(CommandsTest, SetbitGetbitBitcount) {
  EXPECT_EQ(Run({"SETBIT", "b", "7", "1"}), ":0\r\n");
  EXPECT_EQ(Run({"SETBIT", "b", "7", "0"}), ":1\r\n");
  EXPECT_EQ(Run({"GET", "b"}), Bulk(std::string(1, '\0')));
  EXPECT_EQ(Run({"SETBIT", "b", "1", "1"}), ":0\r\n");
  EXPECT_EQ(Run({"GETBIT", "b", "1"}), ":1\r\n");
  EXPECT_EQ(Run({"GETBIT", "b", "100"}), ":0\r\n");
  EXPECT_EQ(Run({"GETBIT", "nokey", "0"}), ":0\r\n");
  EXPECT_EQ(Run({"SETBIT", "b", "1", "2"}), "-ERR bit is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"SETBIT", "b", "-1", "1"}),
            "-ERR bit offset is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"SETBIT", "b", "4294967296", "1"}),
            "-ERR bit offset is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"GETBIT", "b", "x"}), "-ERR bit offset is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"SETBIT", "b", "32767", "1"}), ":0\r\n");  // byte 4095: the last allowed
  EXPECT_EQ(Run({"SETBIT", "b", "32768", "1"}), kStringTooLarge);
  EXPECT_EQ(Run({"STRLEN", "b"}), ":4096\r\n");

  Run({"SET", "m", "foobar"});
  EXPECT_EQ(Run({"BITCOUNT", "m"}), ":26\r\n");
  EXPECT_EQ(Run({"BITCOUNT", "m", "0", "0"}), ":4\r\n");
  EXPECT_EQ(Run({"BITCOUNT", "m", "1", "1"}), ":6\r\n");
  EXPECT_EQ(Run({"BITCOUNT", "m", "1", "1", "BYTE"}), ":6\r\n");
  EXPECT_EQ(Run({"BITCOUNT", "m", "5", "30", "BIT"}), ":17\r\n");
  EXPECT_EQ(Run({"BITCOUNT", "m", "-2", "-1"}), ":7\r\n");
  EXPECT_EQ(Run({"BITCOUNT", "m", "-1", "-2"}), ":0\r\n");
  EXPECT_EQ(Run({"BITCOUNT", "m", "0"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"BITCOUNT", "m", "0", "1", "FOO"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"BITCOUNT", "m", "a", "1"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"BITCOUNT", "nokey", "0"}), ":0\r\n");
  EXPECT_EQ(Run({"BITCOUNT"}), "-ERR wrong number of arguments for 'bitcount' command\r\n");
}

TEST_F(CommandsTest, BitposLikeTheRedisDocs) {
  Run({"SET", "m", "\xff\xf0\x00"});
  EXPECT_EQ(Run({"BITPOS", "m", "0"}), ":12\r\n");
  Run({"SET", "m", std::string("\x00\xff\xf0", 3)});
  EXPECT_EQ(Run({"BITPOS", "m", "1", "0"}), ":8\r\n");
  EXPECT_EQ(Run({"BITPOS", "m", "1", "2"}), ":16\r\n");
  EXPECT_EQ(Run({"BITPOS", "m", "1", "2", "-1", "BYTE"}), ":16\r\n");
  EXPECT_EQ(Run({"BITPOS", "m", "1", "7", "15", "BIT"}), ":8\r\n");
  EXPECT_EQ(Run({"BITPOS", "m", "0", "8", "15", "BIT"}), ":-1\r\n");
  EXPECT_EQ(Run({"BITPOS", "m", "0", "8", "-1", "BIT"}), ":20\r\n");
  Run({"SET", "m", std::string(3, '\0')});
  EXPECT_EQ(Run({"BITPOS", "m", "1"}), ":-1\r\n");
  EXPECT_EQ(Run({"BITPOS", "m", "1", "7", "-3", "BIT"}), ":-1\r\n");
  Run({"SET", "f", "\xff\xff\xff"});
  EXPECT_EQ(Run({"BITPOS", "f", "0"}), ":24\r\n");
  EXPECT_EQ(Run({"BITPOS", "f", "0", "0"}), ":24\r\n");
  EXPECT_EQ(Run({"BITPOS", "f", "0", "0", "-1"}), ":-1\r\n");
  EXPECT_EQ(Run({"BITPOS", "nokey", "0"}), ":0\r\n");
  EXPECT_EQ(Run({"BITPOS", "nokey", "1"}), ":-1\r\n");
  EXPECT_EQ(Run({"BITPOS", "f", "2"}), "-ERR The bit argument must be 1 or 0.\r\n");
  EXPECT_EQ(Run({"BITPOS", "f", "1", "0", "1", "WORD"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"BITPOS", "f", "1", "2", "1"}), ":-1\r\n");
}

TEST_F(CommandsTest, BitopComputesAndDeletesOnEmpty) {
  Run({"SET", "key1", "foobar"});
  Run({"SET", "key2", "abcdef"});
  EXPECT_EQ(Run({"BITOP", "AND", "dest", "key1", "key2"}), ":6\r\n");
  EXPECT_EQ(Run({"GET", "dest"}), Bulk("`bc`ab"));
  EXPECT_EQ(Run({"BITOP", "OR", "dest", "key1", "key2"}), ":6\r\n");
  EXPECT_EQ(Run({"GET", "dest"}), Bulk("goofev"));
  Run({"SET", "short", "a"});
  EXPECT_EQ(Run({"BITOP", "XOR", "dest", "short", "key1"}), ":6\r\n");
  EXPECT_EQ(Run({"GET", "dest"}), Bulk("\x07oobar"));
  EXPECT_EQ(Run({"BITOP", "NOT", "dest", "short"}), ":1\r\n");
  EXPECT_EQ(Run({"GET", "dest"}), Bulk("\x9e"));
  EXPECT_EQ(Run({"BITOP", "NOT", "dest", "key1", "key2"}),
            "-ERR BITOP NOT must be called with a single source key.\r\n");
  EXPECT_EQ(Run({"BITOP", "NAND", "dest", "key1"}), "-ERR syntax error\r\n");
  config_.limits.max_reply_bytes = 11;  // 2 sources x 6 bytes is past it
  EXPECT_EQ(Run({"BITOP", "OR", "dest", "key1", "key2"}),
            "-ERR request too large: BITOP would read more than 11 bytes "
            "(limits.max_reply_bytes)\r\n");
  EXPECT_EQ(Run({"GET", "dest"}), Bulk("\x9e"));  // nothing written
  config_.limits.max_reply_bytes = 12;
  EXPECT_EQ(Run({"BITOP", "OR", "dest", "key1", "key2"}), ":6\r\n");
  EXPECT_EQ(Run({"BITOP", "OR", "dest", "nokey1", "nokey2"}), ":0\r\n");
  EXPECT_EQ(Run({"EXISTS", "dest"}), ":0\r\n");
  EXPECT_EQ(Run({"BITOP", "AND", "dest"}),
            "-ERR wrong number of arguments for 'bitop' command\r\n");
}

TEST_F(CommandsTest, BitfieldLikeTheRedisDocs) {
  EXPECT_EQ(Run({"BITFIELD", "k", "INCRBY", "i5", "100", "1", "GET", "u4", "0"}),
            "*2\r\n:1\r\n:0\r\n");
  const std::string sat[] = {"*2\r\n:1\r\n:1\r\n", "*2\r\n:2\r\n:2\r\n", "*2\r\n:3\r\n:3\r\n",
                             "*2\r\n:0\r\n:3\r\n"};
  for (const std::string& want : sat)
    EXPECT_EQ(Run({"BITFIELD", "o", "incrby", "u2", "100", "1", "OVERFLOW", "SAT", "incrby", "u2",
                   "102", "1"}),
              want);
  EXPECT_EQ(Run({"BITFIELD", "o", "OVERFLOW", "FAIL", "incrby", "u2", "102", "1"}),
            "*1\r\n$-1\r\n");
  EXPECT_EQ(Run({"BITFIELD", "s", "SET", "i8", "#1", "-1", "GET", "u8", "8", "GET", "i8", "#1"}),
            "*3\r\n:0\r\n:255\r\n:-1\r\n");
  EXPECT_EQ(Run({"BITFIELD", "w", "SET", "i8", "0", "200", "GET", "i8", "0"}),
            "*2\r\n:0\r\n:-56\r\n");
  EXPECT_EQ(Run({"BITFIELD", "w", "OVERFLOW", "SAT", "INCRBY", "i8", "0", "-1000"}),
            "*1\r\n:-128\r\n");
  EXPECT_EQ(Run({"BITFIELD", "w", "SET", "i64", "0", "-1", "GET", "u63", "0"}),
            "*2\r\n:-9223372036854775808\r\n:9223372036854775807\r\n");
  EXPECT_EQ(Run({"BITFIELD", "nokey", "GET", "u8", "0"}), "*1\r\n:0\r\n");
  EXPECT_EQ(Run({"EXISTS", "nokey"}), ":0\r\n");
  EXPECT_EQ(Run({"BITFIELD", "k"}), "*0\r\n");
  const std::string type_err =
      "-ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but "
      "i64 is.\r\n";
  EXPECT_EQ(Run({"BITFIELD", "k", "GET", "u64", "0"}), type_err);
  EXPECT_EQ(Run({"BITFIELD", "k", "GET", "x8", "0"}), type_err);
  EXPECT_EQ(Run({"BITFIELD", "k", "GET", "i0", "0"}), type_err);
  EXPECT_EQ(Run({"BITFIELD", "k", "GET", "i8", "-1"}),
            "-ERR bit offset is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"BITFIELD", "k", "OVERFLOW", "FOO"}), "-ERR Invalid OVERFLOW type specified\r\n");
  EXPECT_EQ(Run({"BITFIELD", "k", "FOO", "u8", "0"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"BITFIELD", "k", "SET", "u8", "0"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"BITFIELD", "k", "SET", "u8", "0", "x"}),
            "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"BITFIELD", "k", "SET", "u8", "32768", "1"}), kStringTooLarge);
  EXPECT_EQ(Run({"BITFIELD_RO", "s", "GET", "u8", "8"}), "*1\r\n:255\r\n");
  EXPECT_EQ(Run({"BITFIELD_RO", "s", "SET", "u8", "0", "1"}),
            "-ERR BITFIELD_RO only supports the GET subcommand\r\n");
  EXPECT_EQ(Run({"BITFIELD_RO"}), "-ERR wrong number of arguments for 'bitfield_ro' command\r\n");
}

TEST_F(CommandsTest, NewCommandsHaveRedisArityAndKeys) {
  struct Want {
    const char* name;
    int arity, first, last, step;
  } wants[] = {{"append", 3, 1, 1, 1},       {"bitcount", -2, 1, 1, 1},   {"bitfield", -2, 1, 1, 1},
               {"bitfield_ro", -2, 1, 1, 1}, {"bitop", -4, 2, -1, 1},     {"bitpos", -3, 1, 1, 1},
               {"copy", -3, 1, 2, 1},        {"expiretime", 2, 1, 1, 1},  {"getbit", 3, 1, 1, 1},
               {"getdel", 2, 1, 1, 1},       {"getex", -2, 1, 1, 1},      {"getrange", 4, 1, 1, 1},
               {"getset", 3, 1, 1, 1},       {"incrbyfloat", 3, 1, 1, 1}, {"lcs", -3, 1, 2, 1},
               {"move", 3, 1, 1, 1},         {"msetnx", -3, 1, -1, 2},    {"object", -2, 0, 0, 0},
               {"pexpiretime", 2, 1, 1, 1},  {"randomkey", 1, 0, 0, 0},   {"rename", 3, 1, 2, 1},
               {"renamenx", 3, 1, 2, 1},     {"setbit", 4, 1, 1, 1},      {"setrange", 4, 1, 1, 1},
               {"swapdb", 3, 0, 0, 0},       {"touch", -2, 1, -1, 1}};
  for (const Want& w : wants) {
    const CommandSpec* s = LookupCommand(w.name);
    ASSERT_NE(s, nullptr) << w.name;
    EXPECT_EQ(s->arity, w.arity) << w.name;
    EXPECT_EQ(s->first_key, w.first) << w.name;
    EXPECT_EQ(s->last_key, w.last) << w.name;
    EXPECT_EQ(s->key_step, w.step) << w.name;
  }
}

// LookupCommand's (first letter, length) index finds every row in any case,
// and nothing else.
TEST(CommandLookup, FindsEveryRowInAnyCaseAndNothingElse) {
  for (const CommandSpec& s : CommandTable()) {
    EXPECT_EQ(LookupCommand(s.name), &s) << s.name;
    std::string upper(s.name);
    for (char& ch : upper) ch = static_cast<char>(ch >= 'a' && ch <= 'z' ? ch - 32 : ch);
    EXPECT_EQ(LookupCommand(upper), &s) << upper;
    std::string longer(s.name);
    longer += 'x';
    if (!LookupCommand(longer)) {
      EXPECT_EQ(LookupCommand(longer), nullptr);
    } else {
      EXPECT_EQ(LookupCommand(longer)->name, longer);
    }
    EXPECT_NE(LookupCommand(s.name.substr(0, s.name.size() - 1)), &s);
  }
  for (std::string_view miss :
       {"", "g", "gett", "_get", "GET ", "0", "\xff", "nosuchcommandatallhere"})
    EXPECT_EQ(LookupCommand(miss), nullptr) << miss;
}

}  // namespace
}  // namespace pf
