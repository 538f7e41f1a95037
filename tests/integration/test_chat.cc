// tests/integration/test_chat.cc: the chat protocol across workers (the real
// binary, 2 workers): nick uniqueness, room and private messages, /who,
// history on /join, admin kick (and refused without /auth), and nicks
// released when a client vanishes.
#include <gtest/gtest.h>
#include <signal.h>

#include <memory>
#include <string>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

constexpr const char* kToken = "s3cret-admin";

class ChatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<Server>(
        ListenerYaml("chat", "chat"),
        std::string("pubsub: {admin_token: \"") + kToken + "\", chat_history: 3}\n", 2);
    ASSERT_TRUE(server_->Start());
  }

  // A chat client on worker `slot`, past its greeting and lobby join.
  Client On(int slot) {
    for (int i = 0; i < 200; i++) {
      Client c;
      if (!c.Connect(server_->Port("chat"))) break;
      std::string l;
      if (!c.RecvLine(&l)) break;
      const size_t at = l.find("worker=");
      if (at == std::string::npos) break;
      if (std::atoi(l.c_str() + at + 7) != slot) continue;
      if (!c.RecvLine(&l) || l.rfind("* joined [lobby]", 0) != 0) break;
      return c;
    }
    ADD_FAILURE() << "no chat connection landed on worker " << slot;
    return Client();
  }

  // Reads lines until one starts with `prefix` (returned), or "<none>".
  static std::string Until(Client& c, const std::string& prefix, int timeout_ms = 5000) {
    std::string l;
    while (c.RecvLine(&l, timeout_ms))
      if (l.rfind(prefix, 0) == 0) return l;
    return "<none>";
  }

  static std::string Say(Client& c, const std::string& line, const std::string& expect) {
    if (!c.SendAll(line + "\n")) return "<send failed>";
    return Until(c, expect);
  }

  // Sends `line`; the first reply line that is an error or starts with `expect`.
  static std::string SayOr(Client& c, const std::string& line, const std::string& expect) {
    if (!c.SendAll(line + "\n")) return "<send failed>";
    std::string l;
    while (c.RecvLine(&l))
      if (l.rfind("!", 0) == 0 || l.rfind(expect, 0) == 0) return l;
    return "<none>";
  }

  static bool NoLine(Client& c, const std::string& prefix, int ms = 300) {
    std::string l;
    while (c.RecvLine(&l, ms))
      if (l.rfind(prefix, 0) == 0) return false;
    return true;
  }

  std::unique_ptr<Server> server_;
};

TEST_F(ChatTest, NickIsUniqueAcrossWorkers) {
  Client a = On(0), b = On(1);
  EXPECT_EQ(Say(a, "/nick alice", "* you are now"), "* you are now alice");
  EXPECT_EQ(Say(b, "/nick alice", "!"), "! nick taken: alice");
  EXPECT_EQ(Say(b, "/nick bob", "* you are now"), "* you are now bob");
  EXPECT_EQ(Say(a, "/nick bob", "!"), "! nick taken: bob");
  // A renamed client releases its old nick.
  EXPECT_EQ(Say(a, "/nick carol", "* you are now"), "* you are now carol");
  EXPECT_EQ(Say(b, "/nick alice", "* you are now"), "* you are now alice");
}

TEST_F(ChatTest, RoomMessageReachesAnotherWorker) {
  Client a = On(0), b = On(1);
  Say(a, "/nick alice", "* you are now");
  Say(b, "/nick bob", "* you are now");
  EXPECT_EQ(Say(a, "/join dev", "* joined"), "* joined [dev] (1 members)");
  EXPECT_EQ(Say(b, "/join dev", "* joined"), "* joined [dev] (2 members)");
  EXPECT_EQ(Until(a, "* bob joined"), "* bob joined [dev]");
  ASSERT_TRUE(a.SendAll("hello from 0\n"));
  EXPECT_EQ(Until(b, "[dev]"), "[dev] alice: hello from 0");
  EXPECT_EQ(Until(a, "[dev]"), "[dev] alice: hello from 0");
  // Someone in another room does not get it.
  Client c = On(1);
  Say(c, "/nick carol", "* you are now");
  ASSERT_TRUE(b.SendAll("only dev\n"));
  EXPECT_EQ(Until(a, "[dev]"), "[dev] bob: only dev");
  EXPECT_TRUE(NoLine(c, "[dev]"));
}

TEST_F(ChatTest, PrivateMessageAcrossWorkers) {
  Client a = On(0), b = On(1), c = On(1);
  Say(a, "/nick alice", "* you are now");
  Say(b, "/nick bob", "* you are now");
  Say(c, "/nick carol", "* you are now");
  EXPECT_EQ(Say(a, "/msg bob psst hi", "* to"), "* to bob: psst hi");
  EXPECT_EQ(Until(b, "[pm]"), "[pm] alice: psst hi");
  EXPECT_TRUE(NoLine(c, "[pm]"));
  EXPECT_EQ(Say(b, "/msg alice back", "* to"), "* to alice: back");
  EXPECT_EQ(Until(a, "[pm]"), "[pm] bob: back");
  EXPECT_EQ(Say(a, "/msg nobody x", "!"), "! no such nick: nobody");
}

TEST_F(ChatTest, WhoListsMembersOnEveryWorker) {
  Client a = On(0), b = On(1), c = On(0);
  Say(a, "/nick alice", "* you are now");
  Say(b, "/nick bob", "* you are now");
  Say(c, "/nick carol", "* you are now");
  Say(a, "/join ops", "* joined");
  Say(b, "/join ops", "* joined");
  EXPECT_EQ(Say(a, "/who", "* members"), "* members of [ops] (2): alice bob");
  // Connections On() opened on the wrong worker and closed go away shortly.
  EXPECT_TRUE(WaitFor(
      [&] { return Say(c, "/who", "* members") == "* members of [lobby] (1): carol"; }, 5000, 50));
  std::string rooms;
  EXPECT_TRUE(WaitFor(
      [&] {
        rooms = Say(b, "/rooms", "* rooms");
        return rooms.find("ops(2)") != std::string::npos &&
               rooms.find("lobby(1)") != std::string::npos;
      },
      5000, 50))
      << rooms;
  EXPECT_EQ(Say(b, "/part", "* left"), "* left [ops]");
  EXPECT_EQ(Say(a, "/who", "* members"), "* members of [ops] (1): alice");
}

TEST_F(ChatTest, JoinReplaysTheRoomsLastMessages) {
  Client a = On(0);
  Say(a, "/nick alice", "* you are now");
  Say(a, "/join hist", "* joined");
  for (int i = 1; i <= 5; i++) {
    const std::string m = "m" + std::to_string(i);
    EXPECT_EQ(Say(a, m, "[hist]"), "[hist] alice: " + m);
  }
  Client b = On(1);  // chat_history: 3
  ASSERT_TRUE(b.SendAll("/join hist\n"));
  EXPECT_EQ(Until(b, "* joined"), "* joined [hist] (2 members)");
  std::string l;
  ASSERT_TRUE(b.RecvLine(&l));
  EXPECT_EQ(l, "[hist] alice: m3");
  ASSERT_TRUE(b.RecvLine(&l));
  EXPECT_EQ(l, "[hist] alice: m4");
  ASSERT_TRUE(b.RecvLine(&l));
  EXPECT_EQ(l, "[hist] alice: m5");
  // Then live traffic, not replayed again.
  ASSERT_TRUE(a.SendAll("live\n"));
  EXPECT_EQ(Until(b, "[hist]"), "[hist] alice: live");
}

TEST_F(ChatTest, AdminKicksAcrossWorkers) {
  Client admin = On(0), victim = On(1);
  Say(admin, "/nick root", "* you are now");
  Say(victim, "/nick mallory", "* you are now");
  EXPECT_EQ(Say(admin, "/auth wrong", "!"), "! wrong token");
  EXPECT_EQ(Say(admin, std::string("/auth ") + kToken, "*"), "* authenticated as admin");
  EXPECT_EQ(Say(admin, "/broadcast maintenance at 5", "[broadcast]"),
            "[broadcast] root: maintenance at 5");
  EXPECT_EQ(Until(victim, "[broadcast]"), "[broadcast] root: maintenance at 5");
  EXPECT_EQ(Say(admin, "/kick mallory", "* kicked"), "* kicked mallory");
  EXPECT_EQ(Until(victim, "!"), "! you were kicked by root");
  EXPECT_TRUE(victim.WaitClosed());
  // The nick is free again.
  Client again = On(1);
  EXPECT_TRUE(WaitFor(
      [&] { return SayOr(again, "/nick mallory", "* you are now") == "* you are now mallory"; },
      5000, 50));
}

TEST_F(ChatTest, KickWithoutAuthIsRefused) {
  Client a = On(0), b = On(1);
  Say(a, "/nick eve", "* you are now");
  Say(b, "/nick bob", "* you are now");
  EXPECT_EQ(Say(a, "/kick bob", "!"), "! permission denied: /kick needs /auth TOKEN first");
  EXPECT_EQ(Say(a, "/broadcast hi", "!"),
            "! permission denied: /broadcast needs /auth TOKEN first");
  const std::string who = Say(b, "/whoami", "* you are");
  EXPECT_EQ(who.substr(0, 39), "* you are bob in [lobby], worker=1, id=") << who;
  EXPECT_GT(std::atoi(who.c_str() + 39), 0) << who;
}

TEST_F(ChatTest, VanishedClientReleasesItsNick) {
  Client b = On(1);
  {
    Client a = On(0);
    Say(a, "/nick ghost", "* you are now");
    Say(a, "/join attic", "* joined");
    EXPECT_EQ(Say(b, "/nick ghost", "!"), "! nick taken: ghost");
    a.ResetClose();
  }
  EXPECT_TRUE(WaitFor(
      [&] { return SayOr(b, "/nick ghost", "* you are now") == "* you are now ghost"; }, 5000, 50));
  Say(b, "/join attic", "* joined");
  EXPECT_EQ(Say(b, "/who", "* members"), "* members of [attic] (1): ghost");
}

TEST_F(ChatTest, CrashedWorkerReleasesItsNicks) {
  Client a = On(0), b = On(1);
  Say(a, "/nick phoenix", "* you are now");
  EXPECT_EQ(Say(b, "/nick phoenix", "!"), "! nick taken: phoenix");
  pid_t w0 = 0;
  for (const auto& w : server_->ActiveWorkers())
    if (w.slot == 0) w0 = w.pid;
  ASSERT_GT(w0, 0);
  ASSERT_EQ(kill(w0, SIGKILL), 0);
  EXPECT_TRUE(
      WaitFor([&] { return SayOr(b, "/nick phoenix", "* you are now") == "* you are now phoenix"; },
              10000, 50));
}

TEST_F(ChatTest, LineLimitAndHelp) {
  Client a = On(0);
  {
    Client big = On(1);
    ASSERT_TRUE(big.SendAll(std::string(70 * 1024, 'x')));
    EXPECT_EQ(Until(big, "!"), "! line too long: at most 65536 bytes (limits.max_line_bytes)");
    EXPECT_TRUE(big.WaitClosed());
  }
  EXPECT_EQ(Say(a, "/help", "* commands"), "* commands:");
  EXPECT_EQ(Say(a, "/bogus", "!"), "! unknown command: /bogus (/help lists them)");
  EXPECT_EQ(Say(a, "/quit", "* bye"), "* bye");  // other notices (a leave) may come first
  EXPECT_TRUE(a.WaitClosed());
}

}  // namespace
}  // namespace pf::test
