// tests/integration/test_foundation.cc: the foundation (master supervision,
// signals, reload, workers, limits, the echo protocol) driven through the real
// binary on loopback.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

using Clock = std::chrono::steady_clock;

int64_t MsSince(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

bool Refused(uint16_t port) {
  Client c;
  return !c.Connect(port, 1000) && c.last_errno() == ECONNREFUSED;
}

// Connects and proves the server serves it (an accepted and echoed line).
bool ConnectAndEcho(Client* c, uint16_t port, const std::string& msg = "ping\n") {
  return c->Connect(port) && c->Echo(msg);
}

std::vector<pid_t> Pids(const std::vector<WorkerInfo>& ws) {
  std::vector<pid_t> v;
  for (const auto& w : ws) v.push_back(w.pid);
  return v;
}

// ------------------------------------------------------------------ echo

TEST(Echo, OneMiBOfRandomBinaryInRandomChunksComesBackByteExact) {
  Server s(ListenerYaml("echo"));
  ASSERT_TRUE(s.Start());
  Client c;
  ASSERT_TRUE(c.Connect(s.Port("echo")));
  const std::string data = RandomBytes(1 << 20, 42);
  std::string got;
  bool recv_ok = false;
  std::thread reader([&] { recv_ok = c.RecvExact(data.size(), &got, 20000); });
  std::mt19937 rng(7);
  size_t off = 0;
  bool send_ok = true;
  while (off < data.size() && send_ok) {
    const size_t n = std::min<size_t>(data.size() - off, 1 + rng() % 65536);
    send_ok = c.SendAll(std::string_view(data).substr(off, n), 20000);
    off += n;
  }
  reader.join();
  EXPECT_TRUE(send_ok);
  ASSERT_TRUE(recv_ok) << "received " << got.size() << " of " << data.size();
  EXPECT_TRUE(got == data) << "echoed bytes differ";
}

TEST(Echo, TwoHundredConcurrentClientsEachGetTheirOwnBytesBack) {
  Server s(ListenerYaml("echo"));
  ASSERT_TRUE(s.Start());
  constexpr int kThreads = 8, kPerThread = 25;
  std::atomic<int> failures{0}, ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      std::vector<Client> cs(kPerThread);
      for (auto& c : cs)
        if (!c.Connect(s.Port("echo"))) failures++;
      // All 200 are connected at once; each round sends on every client
      // first, then reads every reply.
      for (int round = 0; round < 3; round++) {
        std::vector<std::string> msgs;
        for (int i = 0; i < kPerThread; i++) {
          msgs.push_back("client " + std::to_string(t * kPerThread + i) + " round " +
                         std::to_string(round) + " " + RandomBytes(100 + i, t * 1000 + i + round) +
                         "\n");
          if (!cs[i].SendAll(msgs.back())) failures++;
        }
        for (int i = 0; i < kPerThread; i++) {
          std::string got;
          if (cs[i].RecvExact(msgs[i].size(), &got, 10000) && got == msgs[i])
            ok++;
          else
            failures++;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(ok.load(), kThreads * kPerThread * 3);
}

TEST(Echo, QuitLineClosesAfterEchoingWhatCameBefore) {
  Server s(ListenerYaml("echo"));
  ASSERT_TRUE(s.Start());
  {
    Client c;
    ASSERT_TRUE(c.Connect(s.Port("echo")));
    ASSERT_TRUE(c.SendAll("hello\nworld\nquit\nnot echoed\n"));
    EXPECT_TRUE(c.WaitClosed(3000));
    EXPECT_EQ(c.buffered(), "hello\nworld\n");
  }
  {
    Client c;  // CRLF
    ASSERT_TRUE(c.Connect(s.Port("echo")));
    ASSERT_TRUE(c.SendAll("a\r\nquit\r\nb\r\n"));
    EXPECT_TRUE(c.WaitClosed(3000));
    EXPECT_EQ(c.buffered(), "a\r\n");
  }
  {
    Client c;  // the quit line split across writes
    ASSERT_TRUE(c.Connect(s.Port("echo")));
    ASSERT_TRUE(c.Echo("x\nqu"));
    ASSERT_TRUE(c.SendAll("it\nafter\n"));
    EXPECT_TRUE(c.WaitClosed(3000));
    EXPECT_EQ(c.buffered(), "");
  }
  {
    Client c;  // "quit" inside a line, or "quitx", is data
    ASSERT_TRUE(c.Connect(s.Port("echo")));
    EXPECT_TRUE(c.Echo("please quit\nquitx\nquit \n"));
  }
}

// ------------------------------------------------------------------ limits

TEST(Limits, IdleConnectionIsClosedAfterIdleTimeoutAndActiveOneIsNot) {
  Server s(ListenerYaml("echo"), "timeouts: {idle: 300ms}");
  ASSERT_TRUE(s.Start());
  Client idle, active;
  ASSERT_TRUE(ConnectAndEcho(&active, s.Port("echo")));
  const auto t0 = Clock::now();
  ASSERT_TRUE(idle.Connect(s.Port("echo")));
  ASSERT_TRUE(idle.Echo("once\n"));
  // The active client talks every 50 ms while the idle one waits for the close.
  std::atomic<bool> stop{false};
  std::atomic<int> active_failures{0};
  std::thread talker([&] {
    WaitFor(
        [&] {
          if (!active.Echo("still here\n", 2000)) active_failures++;
          return stop.load();
        },
        5000, 50);
  });
  const bool closed = idle.WaitClosed(3000);
  const int64_t after = MsSince(t0);
  // Keep talking for more than one idle period after the idle one was closed.
  WaitFor([] { return false; }, 500, 50);
  stop = true;
  talker.join();
  EXPECT_TRUE(closed);
  EXPECT_GE(after, 280);
  EXPECT_LE(after, 1500);
  EXPECT_EQ(active_failures.load(), 0);
  EXPECT_TRUE(active.Echo("and now\n"));
}

TEST(Limits, MaxConnectionsClosesTheSixthAndAdmitsANewOneAfterAClose) {
  Server s(ListenerYaml("echo"), "limits: {max_connections_per_worker: 5, max_connections: 5}",
           /*workers=*/1);
  ASSERT_TRUE(s.Start());
  const uint16_t port = s.Port("echo");
  std::vector<Client> cs(5);
  // Start()'s probe connections may still be counted for a moment: retry.
  for (auto& c : cs) ASSERT_TRUE(WaitFor([&] { return ConnectAndEcho(&c, port); }, 3000));
  Client sixth;
  ASSERT_TRUE(sixth.Connect(port));  // the kernel completes the handshake
  (void)sixth.SendAll("x\n");
  EXPECT_TRUE(sixth.WaitClosed(2000)) << "the 6th connection was not closed";
  EXPECT_EQ(sixth.buffered(), "");
  for (auto& c : cs) EXPECT_TRUE(c.Echo("still served\n"));
  cs[0].Close();
  Client fresh;
  EXPECT_TRUE(WaitFor([&] { return ConnectAndEcho(&fresh, port); }, 3000));
  EXPECT_TRUE(s.WaitLog("connection limit reached"));
}

TEST(Limits, ClientThatDoesNotReadIsThrottledNotBufferedWithoutBound) {
  Server s(ListenerYaml("echo"), "limits: {output_high_water: 256k}", /*workers=*/1);
  ASSERT_TRUE(s.Start());
  Client c;
  ASSERT_TRUE(c.Connect(s.Port("echo")));
  // Send without reading until the server stops taking bytes.
  const std::string chunk = RandomBytes(256 * 1024, 11);
  size_t sent = 0;
  while (sent < (256u << 20) && c.SendAll(chunk, 500)) sent += chunk.size();
  EXPECT_LT(sent, 64u << 20) << "the server kept reading from a client that does not read";
  // The worker stays responsive to others meanwhile.
  Client other;
  EXPECT_TRUE(ConnectAndEcho(&other, s.Port("echo")));
  c.Close();
}

TEST(Echo, ClientResetMidStreamDoesNotDisturbOtherClients) {
  Server s(ListenerYaml("echo"), "", /*workers=*/1);
  ASSERT_TRUE(s.Start());
  const uint16_t port = s.Port("echo");
  const auto workers = s.WorkerPids();
  Client other;
  ASSERT_TRUE(ConnectAndEcho(&other, port));
  // A second client in the middle of its own large echo.
  Client big;
  ASSERT_TRUE(big.Connect(port));
  const std::string big_data = RandomBytes(2 << 20, 9);
  std::string big_got;
  bool big_ok = false;
  std::thread big_reader([&] { big_ok = big.RecvExact(big_data.size(), &big_got, 20000); });
  std::thread big_sender([&] { big.SendAll(big_data, 20000); });

  for (int i = 0; i < 5; i++) {
    Client rude;
    ASSERT_TRUE(rude.Connect(port));
    ASSERT_TRUE(rude.SendAll(RandomBytes(1 << 20, 100 + i), 5000));
    std::string first;
    ASSERT_TRUE(rude.RecvExact(64 * 1024, &first, 5000));  // the server is writing
    rude.ResetClose();
    EXPECT_TRUE(other.Echo("after reset " + std::to_string(i) + "\n"));
  }
  big_sender.join();
  big_reader.join();
  EXPECT_TRUE(big_ok);
  EXPECT_TRUE(big_got == big_data);
  EXPECT_TRUE(other.Echo("still fine\n"));
  EXPECT_EQ(s.WorkerPids(), workers) << "a worker died";
}

// ------------------------------------------------------------------ stop

TEST(Stop, SigquitLetsAnInFlightEchoFinishThenExitsZero) {
  Server s(ListenerYaml("echo"));
  ASSERT_TRUE(s.Start());
  const uint16_t port = s.Port("echo");
  Client c;
  ASSERT_TRUE(c.Connect(port));
  // Nobody reads the echo until after the signal, so the server's output
  // passes its high-water mark, it stops reading, and the sender stalls:
  // the echo is certainly in flight when SIGQUIT arrives.
  const std::string data = RandomBytes(32 << 20, 3);
  std::atomic<size_t> sent{0};
  std::thread sender([&] {
    for (size_t off = 0; off < data.size(); off += 64 * 1024) {
      if (!c.SendAll(std::string_view(data).substr(off, 64 * 1024), 30000)) return;
      sent = off + 64 * 1024;
    }
  });
  ASSERT_TRUE(WaitFor([&] { return sent.load() >= (1u << 20); }, 10000));
  const size_t sent_at_signal = sent.load();
  s.Signal(SIGQUIT);
  std::string got;
  const bool recv_ok = c.RecvExact(data.size(), &got, 30000);
  sender.join();
  EXPECT_LT(sent_at_signal, data.size()) << "the echo was not in flight at SIGQUIT";
  ASSERT_TRUE(recv_ok) << "received " << got.size() << " of " << data.size();
  EXPECT_TRUE(got == data);
  c.Close();
  int status = -1;
  ASSERT_TRUE(s.WaitExit(5000, &status));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  EXPECT_TRUE(Refused(port));
  EXPECT_FALSE(std::filesystem::exists(s.pidfile_path()));
}

TEST(Start, CreatesMissingLogFolders) {
  // A fresh checkout has no var/log: the server creates the folders.
  Server s(ListenerYaml("web", "http", 0, "root: " + SourceRoot() + "/conf/www"),
           "logging: {error_log: new/logs/error.log, access_log: other/access.log}");
  ASSERT_TRUE(s.Start());
  EXPECT_TRUE(std::filesystem::exists(s.dir() + "/new/logs/error.log"));
  Client c;
  ASSERT_TRUE(c.Connect(s.Port("web")));
  ASSERT_TRUE(c.SendAll("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"));
  EXPECT_TRUE(c.WaitClosed(5000));
  EXPECT_TRUE(
      WaitFor([&] { return std::filesystem::exists(s.dir() + "/other/access.log"); }, 3000));
}

TEST(Stop, SigquitRefusesNewConnectionsWhileDraining) {
  Server s(ListenerYaml("echo"));
  ASSERT_TRUE(s.Start());
  const uint16_t port = s.Port("echo");
  Client busy;  // keeps the old workers draining
  ASSERT_TRUE(ConnectAndEcho(&busy, port));
  s.Signal(SIGQUIT);
  EXPECT_TRUE(WaitFor([&] { return Refused(port); }, 2000));
  EXPECT_TRUE(busy.Echo("still draining\n"));
  busy.Close();
  EXPECT_TRUE(s.WaitExit(5000));
}

TEST(Stop, SigtermStopsMasterAndWorkersWithinOneSecond) {
  Server s(ListenerYaml("echo"));
  ASSERT_TRUE(s.Start());
  Client c;  // an open connection does not hold up a fast stop
  ASSERT_TRUE(ConnectAndEcho(&c, s.Port("echo")));
  const auto workers = s.WorkerPids();
  ASSERT_EQ(workers.size(), 2u);
  const auto t0 = Clock::now();
  s.Signal(SIGTERM);
  int status = -1;
  ASSERT_TRUE(s.WaitExit(1000, &status));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  for (pid_t p : workers) EXPECT_FALSE(ProcessAlive(p)) << "worker " << p;
  EXPECT_LE(MsSince(t0), 1000);
  EXPECT_TRUE(c.WaitClosed(1000));
}

TEST(Stop, NoChildProcessOrListeningSocketRemainsAfterStop) {
  const std::string listeners = ListenerYaml("a") + ListenerYaml("b");
  for (int sig : {SIGQUIT, SIGTERM, SIGINT}) {
    SCOPED_TRACE(strsignal(sig));
    Server s(listeners);
    ASSERT_TRUE(s.Start());
    const auto workers = s.WorkerPids();
    ASSERT_EQ(workers.size(), 2u);
    s.Signal(sig);
    ASSERT_TRUE(s.WaitExit(5000));
    for (pid_t p : workers) EXPECT_FALSE(ProcessAlive(p)) << "worker " << p;
    for (const char* name : {"a", "b"}) {
      const uint16_t port = s.Port(name);
      EXPECT_TRUE(Refused(port)) << name;
      // Nobody holds the port: a plain bind (no SO_REUSEADDR/SO_REUSEPORT) works.
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(port);
      EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0)
          << name << ": " << strerror(errno);
      close(fd);
    }
    EXPECT_FALSE(std::filesystem::exists(s.pidfile_path()));
  }
}

// ------------------------------------------------------------------ supervision

TEST(Supervision, KilledWorkerIsReplacedInTheSameSlotAndTrafficContinues) {
  Server s(ListenerYaml("echo"));
  ASSERT_TRUE(s.Start());
  const uint16_t port = s.Port("echo");
  for (int slot : {0, 1}) {
    SCOPED_TRACE("slot " + std::to_string(slot));
    const auto before = s.ActiveWorkers();
    ASSERT_EQ(before.size(), 2u);
    const pid_t victim = before[slot].pid;
    const auto t0 = Clock::now();
    ASSERT_EQ(kill(victim, SIGKILL), 0);
    EXPECT_TRUE(WaitFor(
        [&] {
          const auto now = s.ActiveWorkers();
          return now.size() == 2 && now[slot].slot == slot && now[slot].pid != victim;
        },
        1000))
        << "no new worker in slot " << slot;
    EXPECT_LE(MsSince(t0), 1000);
    EXPECT_EQ(s.ActiveWorkers()[1 - slot].pid, before[1 - slot].pid);
    for (int i = 0; i < 20; i++) {
      Client c;
      EXPECT_TRUE(ConnectAndEcho(&c, port)) << "connection " << i;
    }
  }
  EXPECT_TRUE(s.WaitLog("killed by signal"));
}

TEST(Supervision, KilledWorkerReleasesItsConnectionsFromTheGlobalLimit) {
  Server s(ListenerYaml("echo"), "limits: {max_connections_per_worker: 5, max_connections: 5}",
           /*workers=*/1);
  ASSERT_TRUE(s.Start());
  const uint16_t port = s.Port("echo");
  std::vector<Client> cs(5);
  for (auto& c : cs) ASSERT_TRUE(WaitFor([&] { return ConnectAndEcho(&c, port); }, 3000));
  const pid_t victim = s.ActiveWorkers().at(0).pid;
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  for (auto& c : cs) EXPECT_TRUE(c.WaitClosed(2000));
  ASSERT_TRUE(WaitFor(
      [&] {
        const auto w = s.ActiveWorkers();
        return w.size() == 1 && w[0].pid != victim;
      },
      2000));
  // The dead worker's 5 connections no longer count against max_connections.
  std::vector<Client> again(5);
  for (auto& c : again) EXPECT_TRUE(ConnectAndEcho(&c, port));
}

TEST(Supervision, WorkerOutOfDescriptorsPausesAcceptingAndResumes) {
  Server s(ListenerYaml("echo"), "", /*workers=*/1);
  ASSERT_TRUE(s.Start());
  const uint16_t port = s.Port("echo");
  const pid_t w = s.ActiveWorkers().at(0).pid;
  int max_fd = 0, open_fds = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(w) + "/fd")) {
    max_fd = std::max(max_fd, std::stoi(e.path().filename().string()));
    open_fds++;
  }
  // Room for the free numbers below max_fd plus 3.
  const int room = (max_fd + 1 - open_fds) + 3;
  rlimit lim{};
  ASSERT_EQ(prlimit(w, RLIMIT_NOFILE, nullptr, &lim), 0);
  rlimit low = lim;
  low.rlim_cur = static_cast<rlim_t>(max_fd + 1 + 3);
  ASSERT_EQ(prlimit(w, RLIMIT_NOFILE, &low, nullptr), 0) << strerror(errno);
  std::vector<Client> cs(static_cast<size_t>(room + 4));
  for (auto& c : cs) {
    ASSERT_TRUE(c.Connect(port));  // the kernel queues what the worker cannot take
    ASSERT_TRUE(c.SendAll("hi\n"));
  }
  std::vector<Client*> served, waiting;
  for (auto& c : cs) {
    std::string got;
    (c.RecvExact(3, &got, 300) ? served : waiting).push_back(&c);
  }
  EXPECT_GE(served.size(), 1u);
  EXPECT_GE(waiting.size(), 1u) << "room for " << room << ", max fd " << max_fd;
  EXPECT_TRUE(s.WaitLog("pausing accepts"));
  for (Client* c : served) c->Close();
  // Room again: the queued connections are accepted and answered.
  ASSERT_EQ(prlimit(w, RLIMIT_NOFILE, &lim, nullptr), 0);
  for (Client* c : waiting) {
    std::string got;
    EXPECT_TRUE(c->RecvExact(3, &got, 3000));
    EXPECT_EQ(got, "hi\n");
  }
  EXPECT_EQ(s.ActiveWorkers().at(0).pid, w);
}

TEST(Supervision, KilledMasterTakesItsWorkersDown) {
  Server s(ListenerYaml("echo"));
  ASSERT_TRUE(s.Start());
  const auto workers = s.WorkerPids();
  ASSERT_EQ(workers.size(), 2u);
  kill(s.pid(), SIGKILL);
  ASSERT_TRUE(s.WaitExit(1000));
  EXPECT_TRUE(WaitFor(
      [&] {
        for (pid_t p : workers)
          if (ProcessAlive(p)) return false;
        return true;
      },
      2000))
      << "workers outlived the master";
  EXPECT_TRUE(WaitFor([&] { return Refused(s.Port("echo")); }, 2000));
}

// ------------------------------------------------------------------ reload

TEST(Reload, InvalidConfigKeepsServingAndLogsFileLine) {
  Server s(ListenerYaml("echo"));
  ASSERT_TRUE(s.Start());
  const auto workers = s.WorkerPids();
  Client c;
  ASSERT_TRUE(ConnectAndEcho(&c, s.Port("echo")));
  s.WriteRawConfig(s.ConfigText() + "bogus_key: 1\n");
  s.Signal(SIGHUP);
  ASSERT_TRUE(s.WaitLog("still serving the old one"));
  EXPECT_TRUE(std::regex_search(
      s.Log(), std::regex("preforkd\\.yaml:[0-9]+:[0-9]+: bogus_key: unknown key")))
      << s.Log();
  EXPECT_EQ(s.WorkerPids(), workers);
  EXPECT_TRUE(c.Echo("same connection\n"));
  Client d;
  EXPECT_TRUE(ConnectAndEcho(&d, s.Port("echo")));
}

TEST(Reload, ListenerOnATakenPortKeepsTheOldConfiguration) {
  const std::string echo = ListenerYaml("echo");
  Server s(echo);
  ASSERT_TRUE(s.Start());
  const auto workers = s.WorkerPids();
  const uint16_t taken = FreePort();
  int holder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(taken);
  ASSERT_EQ(bind(holder, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(holder, 1), 0);
  s.RewriteConfig(echo + ListenerYaml("other", "echo", taken));
  s.Signal(SIGHUP);
  EXPECT_TRUE(s.WaitLog("still serving the old configuration"));
  EXPECT_NE(s.Log().find("127.0.0.1:" + std::to_string(taken)), std::string::npos);
  EXPECT_EQ(s.WorkerPids(), workers);
  Client c;
  EXPECT_TRUE(ConnectAndEcho(&c, s.Port("echo")));
  close(holder);
}

TEST(Reload, ChangedIdleTimeoutAppliesToNewConnections) {
  const std::string echo = ListenerYaml("echo");
  Server s(echo, "timeouts: {idle: 0}");
  ASSERT_TRUE(s.Start());
  const auto old = Pids(s.ActiveWorkers());
  s.RewriteConfig(echo, "timeouts: {idle: 300ms}");
  s.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return s.GenerationUp(2, old); }, 5000));
  Client c;
  ASSERT_TRUE(ConnectAndEcho(&c, s.Port("echo")));
  const auto t0 = Clock::now();
  EXPECT_TRUE(c.WaitClosed(3000));
  EXPECT_GE(MsSince(t0), 250);
}

TEST(Reload, ChangedWorkerCountApplies) {
  const std::string echo = ListenerYaml("echo");
  Server s(echo);
  ASSERT_TRUE(s.Start());
  auto old = Pids(s.ActiveWorkers());
  s.RewriteConfig(echo, "workers: 3");
  s.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return s.GenerationUp(3, old); }, 5000));
  EXPECT_TRUE(WaitFor([&] { return s.WorkerPids().size() == 3; }, 5000)) << "old workers stay";
  for (int i = 0; i < 10; i++) {
    Client c;
    EXPECT_TRUE(ConnectAndEcho(&c, s.Port("echo")));
  }
  old = Pids(s.ActiveWorkers());
  s.RewriteConfig(echo, "workers: 1");
  s.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return s.GenerationUp(1, old); }, 5000));
  EXPECT_TRUE(WaitFor([&] { return s.WorkerPids().size() == 1; }, 5000));
  for (int i = 0; i < 10; i++) {
    Client c;
    EXPECT_TRUE(ConnectAndEcho(&c, s.Port("echo")));
  }
}

TEST(Reload, AddedListenerIsBoundAndRemovedOneIsClosed) {
  const std::string a = ListenerYaml("a"), b = ListenerYaml("b");
  Server s(a);
  ASSERT_TRUE(s.Start());
  auto old = Pids(s.ActiveWorkers());
  s.RewriteConfig(a + b);
  s.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return s.GenerationUp(2, old); }, 5000));
  Client cb;
  EXPECT_TRUE(WaitFor([&] { return ConnectAndEcho(&cb, s.Port("b")); }, 3000));
  Client ca;
  EXPECT_TRUE(ConnectAndEcho(&ca, s.Port("a")));
  old = Pids(s.ActiveWorkers());
  s.RewriteConfig(b);
  s.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return s.GenerationUp(2, old); }, 5000));
  EXPECT_TRUE(WaitFor([&] { return Refused(s.Port("a")); }, 5000)) << "listener a still accepts";
  EXPECT_TRUE(ca.Echo("an open connection of a removed listener drains\n"));
  Client cb2;
  EXPECT_TRUE(ConnectAndEcho(&cb2, s.Port("b")));
}

// `clients` threads that loop connect -> echo 3 lines -> close until Stop(),
// counting echoes and every failed connect or echo.
class Load {
 public:
  Load(uint16_t port, int clients) {
    for (int t = 0; t < clients; t++) threads_.emplace_back([this, port, t] { Run(port, t); });
  }
  ~Load() { Stop(); }
  void Stop() {
    stop_ = true;
    for (auto& th : threads_)
      if (th.joinable()) th.join();
  }
  int echoes() const { return echoes_.load(); }
  int failures() const { return failures_.load(); }
  std::string errors() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string s;
    for (const auto& e : errors_) s += e + "\n";
    return s;
  }

 private:
  void Fail(const std::string& what, int err) {
    failures_++;
    std::lock_guard<std::mutex> lock(mu_);
    if (errors_.size() < 10) errors_.push_back(what + ": " + strerror(err));
  }
  void Run(uint16_t port, int t) {
    for (int n = 0; !stop_.load(); n++) {
      Client c;
      if (!c.Connect(port)) {
        Fail("connect", c.last_errno());
        continue;
      }
      for (int i = 0; i < 3; i++) {
        const std::string msg = "client " + std::to_string(t) + " conn " + std::to_string(n) +
                                " msg " + std::to_string(i) + "\n";
        if (!c.Echo(msg, 10000)) {
          Fail("echo", c.last_errno());
          break;
        }
        echoes_++;
      }
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<int> echoes_{0}, failures_{0};
  std::mutex mu_;
  std::vector<std::string> errors_;
  std::vector<std::thread> threads_;
};

TEST(Reload, FiftyReloadsUnderLoadFailNoConnectionOrEcho) {
  const std::string echo = ListenerYaml("echo");
  Server s(echo);
  ASSERT_TRUE(s.Start());
  Load load(s.Port("echo"), 50);
  // Traffic first, then reload under it.
  ASSERT_TRUE(WaitFor([&] { return load.echoes() > 500; }, 10000));
  const int before = load.echoes();
  int reloads = 0;
  for (; reloads < 50; reloads++) {
    const auto old = Pids(s.ActiveWorkers());
    s.Signal(SIGHUP);
    if (!WaitFor([&] { return s.GenerationUp(2, old); }, 5000)) break;
  }
  const int during = load.echoes() - before;
  load.Stop();
  EXPECT_EQ(reloads, 50);
  EXPECT_EQ(load.failures(), 0) << load.errors();
  EXPECT_GT(during, 0);
  std::printf("echoes during 50 reloads: %d\n", during);
}

// Shrinking closes the sockets of the slots that go away: what is queued on
// them must still be served.
TEST(Reload, WorkerCountChangesUnderLoadFailNoConnectionOrEcho) {
  const std::string echo = ListenerYaml("echo");
  Server s(echo, "", 3);
  ASSERT_TRUE(s.Start());
  Load load(s.Port("echo"), 50);
  ASSERT_TRUE(WaitFor([&] { return load.echoes() > 500; }, 10000));
  const int before = load.echoes();
  int changes = 0;
  for (; changes < 10; changes++) {
    const int n = changes % 2 == 0 ? 1 : 3;
    const auto old = Pids(s.ActiveWorkers());
    s.RewriteConfig(echo, "workers: " + std::to_string(n));
    s.Signal(SIGHUP);
    if (!WaitFor([&] { return s.GenerationUp(n, old); }, 5000)) break;
    // Let the load run on the new generation before the next change.
    const int at = load.echoes();
    WaitFor([&] { return load.echoes() > at + 200; }, 2000);
  }
  const int during = load.echoes() - before;
  load.Stop();
  EXPECT_EQ(changes, 10);
  EXPECT_EQ(load.failures(), 0) << load.errors();
  EXPECT_GT(during, 0);
}

// ------------------------------------------------------------------ logs

TEST(Logs, SigusrOneReopensAMovedErrorLog) {
  Server s(ListenerYaml("echo"));
  ASSERT_TRUE(s.Start());
  ASSERT_TRUE(s.WaitLog("worker started"));
  const std::string rotated = s.log_path() + ".1";
  ASSERT_EQ(std::rename(s.log_path().c_str(), rotated.c_str()), 0);
  s.Signal(SIGUSR1);
  ASSERT_TRUE(s.WaitLog("log files reopened")) << "no new error.log";
  const auto old = Pids(s.ActiveWorkers());
  s.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return s.GenerationUp(2, old); }, 5000));
  // Master and the old workers (which reopened on SIGUSR1) write to the new file.
  EXPECT_TRUE(s.WaitLog("reload: generation 2 started"));
  EXPECT_TRUE(s.WaitLog(std::to_string(old[0]) + " worker 0: graceful stop"));
  std::ifstream in(rotated);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str().find("reload:"), std::string::npos) << "the moved file still gets lines";
}

// ------------------------------------------------------------------ command line

TEST(CommandLine, SecondStartWhileRunningIsRefused) {
  Server s(ListenerYaml("echo"));
  ASSERT_TRUE(s.Start());
  const RunResult r = RunBinary({"-c", s.config_path()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("already running"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(std::to_string(s.pid())), std::string::npos) << r.output;
  Client c;
  EXPECT_TRUE(ConnectAndEcho(&c, s.Port("echo"))) << "the running server was disturbed";
}

TEST(CommandLine, BackgroundStartReturnsOnceServingAndWritesThePidfile) {
  Server s(ListenerYaml("echo"));
  const RunResult r = RunBinary({"-c", s.config_path()});
  pid_t daemon = 0;
  {
    std::ifstream in(s.pidfile_path());
    in >> daemon;
  }
  // Whatever happens below, the daemon (not our child) goes.
  struct Guard {
    pid_t pid;
    ~Guard() {
      if (pid > 0 && ProcessAlive(pid)) kill(pid, SIGKILL);
    }
  } guard{daemon};
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_GT(daemon, 1);
  EXPECT_TRUE(ProcessAlive(daemon));
  Client c;
  EXPECT_TRUE(ConnectAndEcho(&c, s.Port("echo")));  // serving when the command returned
  c.Close();
  kill(daemon, SIGQUIT);
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(daemon); }, 5000));
  EXPECT_FALSE(std::filesystem::exists(s.pidfile_path()));
  EXPECT_TRUE(Refused(s.Port("echo")));
}

TEST(CommandLine, TakenPortFailsStartNamingThePort) {
  const uint16_t port = FreePort();
  int holder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  ASSERT_EQ(bind(holder, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(holder, 1), 0);
  Server s(ListenerYaml("echo", "echo", port));
  for (const bool foreground : {true, false}) {
    std::vector<std::string> args{"-c", s.config_path()};
    if (foreground) args.insert(args.begin(), "-g");
    const RunResult r = RunBinary(args);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << r.output;
  }
  close(holder);
}

TEST(CommandLine, ConfigTestExitsZeroOnValidAndListsFileLineColKeyOnInvalid) {
  Server s(ListenerYaml("echo"));
  RunResult r = RunBinary({"-t", "-c", s.config_path()});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("test is successful"), std::string::npos) << r.output;

  const std::string bad = s.dir() + "/bad.yaml";
  {
    std::ofstream o(bad);
    o << "listeners:\n"
         "  - name: echo\n"
         "    port: 99999\n"
         "    protocol: echo\n"
         "workers: lots\n"
         "timeouts:\n"
         "  idle: soon\n";
  }
  r = RunBinary({"-t", "-c", bad});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(bad + ":3:11: listeners[0].port: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(bad + ":5:10: workers: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(bad + ":7:9: timeouts.idle: "), std::string::npos) << r.output;
  // Every problem line has the file:line:col: key: form.
  std::istringstream lines(r.output);
  std::string line;
  int problems = 0;
  const std::regex form("^.+:[0-9]+:[0-9]+: [A-Za-z0-9_.\\[\\]()]+: .+$");
  while (std::getline(lines, line)) {
    if (line.rfind("preforkd:", 0) == 0) continue;  // the summary line
    EXPECT_TRUE(std::regex_match(line, form)) << line;
    problems++;
  }
  EXPECT_EQ(problems, 3) << r.output;
}

}  // namespace
}  // namespace pf::test
