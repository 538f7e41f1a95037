// tests/integration/test_status.cc: what the status views read: the latency
// histograms (in /_stats and as Prometheus histograms in /_metrics), the
// reload outcome and worker states in /_stats, and /_events (one snapshot a
// second; streams end when their worker retires, so pages reconnect to the
// new generation). The page itself is test_status_page.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <regex>
#include <sstream>
#include <string>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

std::string Get(uint16_t port, const std::string& path) {
  Client c;
  if (!c.Connect(port)) return "";
  if (!c.SendAll("GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
    return "";
  c.WaitClosed(5000);
  const std::string& all = c.buffered();
  const size_t body = all.find("\r\n\r\n");
  return body == std::string::npos ? "" : all.substr(body + 4);
}

// The sum of the numbers in "NAME":[a,b,...] inside the "totals" object.
uint64_t TotalsLatencyCount(const std::string& stats, const std::string& proto) {
  const size_t totals = stats.find("\"totals\":");
  if (totals == std::string::npos) return 0;
  const std::string key = "\"" + proto + "\":[";
  const size_t at = stats.find(key, stats.find("\"latency\":{", totals));
  if (at == std::string::npos) return 0;
  const size_t end = stats.find(']', at);
  uint64_t sum = 0;
  std::string num;
  for (size_t i = at + key.size(); i <= end; i++) {
    if (isdigit(static_cast<unsigned char>(stats[i]))) {
      num += stats[i];
    } else if (!num.empty()) {
      sum += std::stoull(num);
      num.clear();
    }
  }
  return sum;
}

uint64_t MetricSum(const std::string& metrics, const std::string& prefix) {
  uint64_t sum = 0;
  std::istringstream lines(metrics);
  std::string line;
  while (std::getline(lines, line))
    if (line.rfind(prefix, 0) == 0) sum += std::stoull(line.substr(line.rfind(' ') + 1));
  return sum;
}

TEST(StatusTest, EveryRequestLandsInTheLatencyHistogram) {
  Server s(ListenerYaml("http", "http", 0, "root: " + SourceRoot() + "/conf/www") +
           ListenerYaml("resp", "resp"));
  ASSERT_TRUE(s.Start());
  Client r;
  ASSERT_TRUE(r.Connect(s.Port("resp")));
  for (int i = 0; i < 25; i++) ASSERT_EQ(RespCall(r, {"SET", "k" + std::to_string(i), "v"}), "+OK");
  // Pipelined: one batch, each command's latency counted from its start.
  std::string batch;
  for (int i = 0; i < 15; i++) batch += Resp({"GET", "k1"});
  ASSERT_TRUE(r.SendAll(batch));
  for (int i = 0; i < 15; i++) {
    std::string reply;
    ASSERT_TRUE(ReadReply(r, &reply));
  }
  for (int i = 0; i < 10; i++) ASSERT_FALSE(Get(s.Port("http"), "/").empty());

  std::string stats;
  ASSERT_TRUE(WaitFor(
      [&] {
        stats = Get(s.Port("http"), "/_stats");
        return TotalsLatencyCount(stats, "resp") == 40;
      },
      3000))
      << stats;
  // The 10 page requests; the /_stats requests themselves count too.
  EXPECT_GE(TotalsLatencyCount(stats, "http"), 10u) << stats;
  EXPECT_THAT(stats, ::testing::HasSubstr("\"latency_bounds_us\":[1,2,5,10,"));

  const std::string m = Get(s.Port("http"), "/_metrics");
  EXPECT_THAT(m, ::testing::HasSubstr("# TYPE preforkd_request_duration_seconds histogram"));
  EXPECT_GE(MetricSum(m, "preforkd_request_duration_seconds_count{"), 50u);
  uint64_t resp_count = 0;
  std::smatch mm;
  std::regex re("preforkd_request_duration_seconds_count\\{[^}]*protocol=\"resp\"\\} (\\d+)");
  for (std::sregex_iterator it(m.begin(), m.end(), re), end; it != end; ++it)
    resp_count += std::stoull((*it)[1]);
  EXPECT_EQ(resp_count, 40u) << m;
  // Buckets are cumulative and end with +Inf equal to the count.
  std::regex inf("protocol=\"resp\",le=\"\\+Inf\"\\} (\\d+)");
  uint64_t inf_sum = 0;
  for (std::sregex_iterator it(m.begin(), m.end(), inf), end; it != end; ++it)
    inf_sum += std::stoull((*it)[1]);
  EXPECT_EQ(inf_sum, 40u);
  EXPECT_THAT(m, ::testing::HasSubstr("preforkd_worker_rss_bytes{"));
  EXPECT_THAT(m, ::testing::HasSubstr("preforkd_connections_by_protocol{"));
}

TEST(StatusTest, StatsShowTheReloadOutcomeAndWorkerStates) {
  const std::string listeners =
      ListenerYaml("http", "http", 0, "root: " + SourceRoot() + "/conf/www");
  Server s(listeners);
  ASSERT_TRUE(s.Start());
  const uint16_t port = s.Port("http");
  std::string st = Get(port, "/_stats");
  EXPECT_THAT(st, ::testing::HasSubstr("\"master\":{\"pid\":" + std::to_string(s.pid()) +
                                       ",\"generation\":1,\"last_reload_ms\":0,"
                                       "\"last_reload_ok\":true,\"last_config_error\":\"\"}"));
  EXPECT_THAT(st, ::testing::HasSubstr("\"state\":\"serving\",\"rss_bytes\":"));
  EXPECT_THAT(st, ::testing::Not(::testing::HasSubstr("\"rss_bytes\":0,")));
  EXPECT_THAT(st, ::testing::HasSubstr("\"listeners\":[{\"name\":\"http\""));

  // A broken file: the reload is refused, and /_stats says why.
  const std::string good = s.ConfigText();
  s.WriteRawConfig(good + "\nlimits: {max_line_bytes: nope}\n");
  s.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor(
      [&] {
        st = Get(port, "/_stats");
        return st.find("\"last_reload_ok\":false") != std::string::npos;
      },
      5000))
      << st;
  EXPECT_THAT(st, ::testing::HasSubstr("limits.max_line_bytes"));
  EXPECT_THAT(st, ::testing::HasSubstr("\"generation\":1,"));

  // A good one: a new generation, the error cleared.
  s.WriteRawConfig(good);
  const std::vector<pid_t> old = s.WorkerPids();
  s.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return s.GenerationUp(2, old); }, 10000));
  ASSERT_TRUE(WaitFor(
      [&] {
        st = Get(port, "/_stats");
        return st.find("\"generation\":2,") != std::string::npos &&
               st.find("\"last_reload_ok\":true,\"last_config_error\":\"\"") != std::string::npos;
      },
      5000))
      << st;
}

TEST(StatusTest, SubscribersAndListenerCountsAreShown) {
  Server s(ListenerYaml("http", "http", 0, "root: " + SourceRoot() + "/conf/www") +
           ListenerYaml("resp", "resp", 0, "limit_conn: 2"));
  ASSERT_TRUE(s.Start());
  const uint16_t port = s.Port("http");
  Client sub;
  ASSERT_TRUE(sub.Connect(s.Port("resp")));
  ASSERT_TRUE(sub.SendAll(Resp({"SUBSCRIBE", "news", "weather"})));
  std::string reply;
  ASSERT_TRUE(ReadReply(sub, &reply));
  ASSERT_TRUE(ReadReply(sub, &reply));
  std::string st;
  EXPECT_TRUE(WaitFor(
      [&] {
        st = Get(port, "/_stats");
        return st.find("\"subscribers\":1,") != std::string::npos;
      },
      3000))
      << st;
  // A third connection from this address is over limit_conn: refused.
  Client second, third;
  ASSERT_TRUE(second.Connect(s.Port("resp")));
  EXPECT_EQ(RespCall(second, {"PING"}), "+PONG");
  ASSERT_TRUE(third.Connect(s.Port("resp")));
  EXPECT_TRUE(third.WaitClosed(3000));
  // The harness' readiness probe connected too (from 127.0.0.254).
  const std::regex counts(
      "\"port\":" + std::to_string(s.Port("resp")) +
      ",\"protocol\":\"resp\",\"tls\":false,\"accepted\":(\\d+),\"refused\":(\\d+)\\}");
  std::smatch m;
  EXPECT_TRUE(WaitFor(
      [&] {
        st = Get(port, "/_stats");
        return std::regex_search(st, m, counts) && std::stoul(m[2]) == 1 && std::stoul(m[1]) >= 3;
      },
      3000))
      << st;
  ASSERT_TRUE(sub.SendAll(Resp({"UNSUBSCRIBE"})));
  EXPECT_TRUE(WaitFor(
      [&] {
        st = Get(port, "/_stats");
        return st.find("\"subscribers\":0,") != std::string::npos;
      },
      3000))
      << st;
}

TEST(StatusTest, EventsStreamSnapshotsAndEndsWhenItsWorkerRetires) {
  Server s(ListenerYaml("http", "http", 0, "root: " + SourceRoot() + "/conf/www"), "", 1);
  ASSERT_TRUE(s.Start());
  Client c;
  ASSERT_TRUE(c.Connect(s.Port("http")));
  ASSERT_TRUE(c.SendAll("GET /_events HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  std::string head;
  ASSERT_TRUE(c.RecvUntil("\r\n\r\n", &head));
  EXPECT_THAT(head, ::testing::HasSubstr("Content-Type: text/event-stream\r\n"));
  EXPECT_THAT(head, ::testing::Not(::testing::HasSubstr("Content-Length")));
  std::string ev1, ev2;
  ASSERT_TRUE(c.RecvUntil("}\n\n", &ev1));
  EXPECT_THAT(ev1, ::testing::HasSubstr("retry: 2000\n\ndata: {\"uptime_s\":"));
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(c.RecvUntil("}\n\n", &ev2, 3000));
  const auto gap = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(gap, std::chrono::milliseconds(500));  // one a second, not a flood
  EXPECT_EQ(ev2.rfind("data: {", 0), 0u) << ev2;
  EXPECT_THAT(ev2, ::testing::HasSubstr("\"workers\":["));
  // Other methods are refused; POST cannot open a stream.
  Client p;
  ASSERT_TRUE(p.Connect(s.Port("http")));
  ASSERT_TRUE(p.SendAll("POST /_events HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"));
  std::string ph;
  ASSERT_TRUE(p.RecvUntil("\r\n\r\n", &ph));
  EXPECT_THAT(ph, ::testing::StartsWith("HTTP/1.1 405"));
  // A reload retires the worker: the stream ends (EventSource reconnects).
  const std::vector<pid_t> old = s.WorkerPids();
  s.Signal(SIGHUP);
  EXPECT_TRUE(c.WaitClosed(5000));
  ASSERT_TRUE(WaitFor([&] { return s.GenerationUp(1, old); }, 10000));
}

}  // namespace
}  // namespace pf::test
