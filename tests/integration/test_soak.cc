// tests/integration/test_soak.cc: everything at once for a while (suite
// 'soak', not in the default run): wrk and redis-benchmark load, 1,000
// pub/sub subscribers, garbage on every port, 5,000 slowloris sockets, a
// worker stopped with SIGSTOP and a reload every 2 s. At the end every slot
// is served by a live worker, the stopped one was killed, workers' private
// memory is within the client caps, every acknowledged write reads back,
// and the error log names the refusals. PREFORKD_SOAK_SECONDS sets the
// length (30 by default).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

using Clock = std::chrono::steady_clock;

int SoakSeconds() {
  const char* s = std::getenv("PREFORKD_SOAK_SECONDS");
  const int v = s ? std::atoi(s) : 30;
  return v > 0 ? v : 30;
}

// Private (not shared) resident memory of a process, in bytes.
uint64_t RssAnon(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  uint64_t kb = 0;
  while (in >> key) {
    if (key == "RssAnon:") {
      in >> kb;
      return kb * 1024;
    }
    in.ignore(1 << 12, '\n');
  }
  return 0;
}

// Keeps `n` sockets open on a port, each sending a request head a line at a
// time, slowly; replaces those the server closes (408s).
void Slowloris(uint16_t port, int n, const std::atomic<bool>& stop, std::atomic<int>* closed) {
  std::vector<Client> socks(n);
  std::vector<int> sent(n, 0);
  for (int i = 0; i < n && !stop; i++) {
    if (socks[i].Connect(port, 2000))
      socks[i].SendAll("GET / HTTP/1.1\r\nHost: localhost\r\n", 1000);
  }
  while (!stop) {
    for (int i = 0; i < n && !stop; i++) {
      Client& c = socks[i];
      pollfd p{c.fd(), POLLIN, 0};
      const bool dead = c.fd() < 0 || (poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLHUP)));
      if (dead) {
        (*closed)++;
        c.Close();
        if (c.Connect(port, 2000)) c.SendAll("GET / HTTP/1.1\r\nHost: localhost\r\n", 1000);
        sent[i] = 0;
        continue;
      }
      c.SendAll("X-" + std::to_string(sent[i]++) + ": a\r\n", 100);
    }
    for (int t = 0; t < 10 && !stop; t++)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// `n` subscribers of one channel, drained as they receive; a publisher on
// its own connection. Lost subscribers are replaced.
void Subscribers(uint16_t port, int n, const std::atomic<bool>& stop, std::atomic<int>* lost) {
  std::vector<Client> subs(n);
  auto subscribe = [&](Client& c) {
    return c.Connect(port, 2000) && c.SendAll(Resp({"SUBSCRIBE", "soak.news"}), 1000);
  };
  for (Client& c : subs) subscribe(c);
  Client pub;
  pub.Connect(port, 2000);
  std::vector<pollfd> fds(n);
  char buf[1 << 16];
  int round = 0;
  while (!stop) {
    if (round++ % 5 == 0) {
      if (RespCall(pub, {"PUBLISH", "soak.news", std::string(200, 'm')})[0] != ':')
        pub.Connect(port, 2000);
    }
    for (int i = 0; i < n; i++) fds[i] = pollfd{subs[i].fd(), POLLIN, 0};
    poll(fds.data(), fds.size(), 10);
    for (int i = 0; i < n; i++) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)) && fds[i].fd >= 0) continue;
      const ssize_t got = fds[i].fd >= 0 ? recv(fds[i].fd, buf, sizeof buf, MSG_DONTWAIT) : 0;
      if (got > 0 || (got < 0 && (errno == EAGAIN || errno == EINTR))) continue;
      (*lost)++;
      subscribe(subs[i]);
    }
  }
}

// Random bytes at every port, one connection at a time.
void Garbage(const std::vector<uint16_t>& ports, const std::atomic<bool>& stop,
             std::atomic<int>* sent) {
  std::mt19937_64 rng(42);
  std::string junk(4096, '\0');
  while (!stop) {
    for (uint16_t port : ports) {
      for (char& ch : junk) ch = static_cast<char>(rng());
      Client c;
      if (!c.Connect(port, 1000)) continue;
      c.SendAll(junk, 500);
      std::string reply;
      c.RecvSome(&reply, 100);
      (*sent)++;
    }
  }
}

// SETs with distinct values; those answered +OK are acknowledged.
void Writer(uint16_t port, const std::atomic<bool>& stop, std::map<int, std::string>* acked) {
  Client c;
  c.Connect(port, 2000);
  for (int i = 0; !stop; i++) {
    const std::string key = "soak:" + std::to_string(i), value = "v" + std::to_string(i * 7919);
    if (RespCall(c, {"SET", key, value}) == "+OK")
      (*acked)[i] = value;
    else
      c.Connect(port, 2000);
  }
}

TEST(Soak, EverythingAtOnce) {
  const int seconds = SoakSeconds();
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, 20000);
  setrlimit(RLIMIT_NOFILE, &rl);  // the server inherits it too
  ASSERT_GE(rl.rlim_cur, 8000u) << "need ~7,000 descriptors for the clients";
  for (const char* tool : {"wrk", "redis-benchmark"}) {
    std::string out;
    ASSERT_EQ(Sh(std::string("command -v ") + tool, &out), 0) << tool << " is not installed";
  }
  const std::string www = SourceRoot() + "/conf/www";
  Server s(ListenerYaml("resp", "resp") + ListenerYaml("http", "http", 0, "root: " + www) +
               ListenerYaml("json", "kv-json") + ListenerYaml("chat", "chat") +
               ListenerYaml("echo", "echo"),
           "timeouts: {worker_stall: 3s, header: 5s, drain: 4s}\n"
           "limits: {clients_memory: 64m, client_output_hard: 16m}\n",
           2);
  ASSERT_TRUE(s.Start());
  const uint16_t resp = s.Port("resp"), http = s.Port("http");
  std::atomic<bool> stop{false};
  std::atomic<int> slow_closed{0}, subs_lost{0}, garbage{0};
  std::map<int, std::string> acked;
  std::string wrk_out;
  int wrk_rc = -1, bench_runs = 0;
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    wrk_rc = Sh("timeout " + std::to_string(seconds + 20) + " wrk -t1 -c32 -d" +
                    std::to_string(seconds) + "s http://127.0.0.1:" + std::to_string(http) +
                    "/index.html",
                &wrk_out);
  });
  threads.emplace_back([&] {
    while (!stop) {
      std::string out;
      Sh("timeout 5 redis-benchmark -p " + std::to_string(resp) +
             " -c 16 -n 20000 -r 1000 -t set,get -q",
         &out);
      bench_runs++;
    }
  });
  threads.emplace_back([&] { Subscribers(resp, 1000, stop, &subs_lost); });
  threads.emplace_back([&] { Slowloris(http, 5000, stop, &slow_closed); });
  threads.emplace_back([&] {
    Garbage({resp, http, s.Port("json"), s.Port("chat"), s.Port("echo")}, stop, &garbage);
  });
  threads.emplace_back([&] { Writer(resp, stop, &acked); });

  const auto end = Clock::now() + std::chrono::seconds(seconds);
  pid_t stopped = 0;
  int reloads = 0;
  for (int tick = 0; Clock::now() < end; tick++) {
    std::this_thread::sleep_for(std::chrono::seconds(2));
    if (tick == 2) {
      const std::vector<WorkerInfo> w = s.ActiveWorkers();
      if (!w.empty()) {
        stopped = w[0].pid;
        kill(stopped, SIGSTOP);
      }
    }
    // No reload for the 4 s after the stop: a reload retires the stopped
    // worker (then the drain deadline kills it), and this run wants the
    // watchdog to find it.
    if (tick >= 2 && tick <= 4) continue;
    s.Signal(SIGHUP);
    reloads++;
  }
  stop = true;
  for (std::thread& t : threads) t.join();

  // Every slot is served by a live worker again, and the stopped one is gone.
  EXPECT_TRUE(WaitFor([&] { return s.ActiveWorkers().size() == 2; }, 20000, 100));
  ASSERT_GT(stopped, 0);
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(stopped); }, 20000, 100))
      << "the SIGSTOPped worker " << stopped << " is still there";
  std::string rss_text;
  for (const WorkerInfo& w : s.ActiveWorkers()) {
    const uint64_t rss = RssAnon(w.pid);
    rss_text += " " + std::to_string(rss >> 20) + " MiB";
    EXPECT_LT(rss, (64ull + 64) << 20) << "worker " << w.pid << " private RSS " << rss;
  }
  // Still serving, and every acknowledged write reads back.
  Client c;
  ASSERT_TRUE(c.Connect(resp));
  EXPECT_EQ(RespCall(c, {"PING"}), "+PONG");
  ASSERT_GT(acked.size(), 100u);
  size_t missing = 0;
  for (const auto& [i, value] : acked)
    if (RespCall(c, {"GET", "soak:" + std::to_string(i)}) != "$" + value) missing++;
  EXPECT_EQ(missing, 0u) << "of " << acked.size() << " acknowledged writes";
  EXPECT_EQ(wrk_rc, 0) << wrk_out;
  EXPECT_NE(wrk_out.find("requests in"), std::string::npos) << wrk_out;
  EXPECT_GT(bench_runs, 0);
  EXPECT_GT(garbage.load(), 0);
  EXPECT_GT(slow_closed.load(), 0) << "the header timeout never closed a slowloris socket";
  const std::string log = s.Log();
  EXPECT_NE(log.find("has not run its event loop"), std::string::npos)
      << "the watchdog did not name the stopped worker";
  EXPECT_EQ(log.find("[critical]"), std::string::npos);
  std::cerr << "soak: " << seconds << " s, " << reloads << " reloads, " << acked.size()
            << " acknowledged writes, " << bench_runs << " redis-benchmark runs, "
            << slow_closed.load() << " slowloris sockets closed, " << subs_lost.load()
            << " subscribers lost, " << garbage.load()
            << " garbage connections; workers' private RSS" << rss_text << "\n";
}

}  // namespace
}  // namespace pf::test
