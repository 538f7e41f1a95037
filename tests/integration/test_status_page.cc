// tests/integration/test_status_page.cc: the live status page (GET /_status,
// conf/status.html embedded in the binary) and its data stream (GET /_events,
// server-sent events carrying the /_stats object once a second), against the
// real binary (2 workers, one http listener).
//
// The page is driven in headless Chromium (Debian's `chromium`, installed by
// tools/preforkctl with the test packages) through the DevTools protocol by
// tests/integration/status_page_cdp.py: `--dump-dom` with a virtual time
// budget cannot be used, because virtual time never advances past the
// EventSource request, which by design never ends. A missing chromium is a
// failure, not a skip.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

using Clock = std::chrono::steady_clock;

// The first executable named `name` on $PATH ("" if none).
std::string Which(const std::string& name) {
  const char* path = getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string p = (dir.empty() ? "." : dir) + "/" + name;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// $PF_CHROMIUM, else chromium or chromium-browser on $PATH.
std::string ChromiumPath() {
  if (const char* env = getenv("PF_CHROMIUM"); env && *env) return env;
  for (const char* n : {"chromium", "chromium-browser"})
    if (std::string p = Which(n); !p.empty()) return p;
  return "";
}

// The directory of this test binary (inside the build tree): artifacts go there.
std::string BuildDir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "/tmp";
  std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.rfind('/'));
}

// One HTTP response read from a Client (Content-Length bodies only).
struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

bool ParseHead(const std::string& head, Response* r) {
  std::istringstream in(head);
  std::string line;
  std::getline(in, line);
  if (line.size() < 12 || line.rfind("HTTP/1.1 ", 0) != 0) return false;
  r->status = std::stoi(line.substr(9, 3));
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (char& ch : name) ch = static_cast<char>(tolower(ch));
    size_t v = colon + 1;
    while (v < line.size() && line[v] == ' ') v++;
    r->headers[name] = line.substr(v);
  }
  return true;
}

bool ReadResponse(Client& c, Response* r, int timeout_ms = 5000) {
  *r = Response{};
  std::string head;
  if (!c.RecvUntil("\r\n\r\n", &head, timeout_ms) || !ParseHead(head, r)) return false;
  const auto it = r->headers.find("content-length");
  const size_t len = it == r->headers.end() ? 0 : std::stoul(it->second);
  return len == 0 || c.RecvExact(len, &r->body, timeout_ms);
}

Response Get(uint16_t port, const std::string& target) {
  Client c;
  Response r;
  EXPECT_TRUE(c.Connect(port));
  EXPECT_TRUE(c.SendAll("GET " + target + " HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  EXPECT_TRUE(ReadResponse(c, &r)) << target;
  return r;
}

// `n` GETs of a small file over keep-alive connections (a new one whenever
// the server closes one); returns how many got a 200.
int Burst(uint16_t port, int n) {
  int ok = 0;
  Client c;
  bool open = false;
  for (int i = 0; i < n; i++) {
    if (!open && !(open = c.Connect(port))) return ok;
    Response r;
    if (!c.SendAll("GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n") || !ReadResponse(c, &r)) {
      c.Close();
      open = false;
      continue;
    }
    if (r.status == 200) ok++;
    if (r.headers["connection"] == "close") {
      c.Close();
      open = false;
    }
  }
  return ok;
}

// Headless Chromium with one tab on `url`, driven by status_page_cdp.py over
// pipes: one command line in, one JSON line out.
class Browser {
 public:
  ~Browser() { Stop(); }

  // `preload`: JavaScript run in the page before its own scripts.
  bool Start(const std::string& url, std::string* error, const std::string& preload = "") {
    const std::string chromium = ChromiumPath();
    if (chromium.empty()) {
      *error =
          "chromium is not installed (Debian: apt-get install --no-install-recommends chromium; "
          "tools/preforkctl installs it with the test packages; or set PF_CHROMIUM)";
      return false;
    }
    std::string python = Which("python3");
    if (access("/usr/bin/python3", X_OK) == 0) python = "/usr/bin/python3";
    if (python.empty()) {
      *error = "python3 is not installed";
      return false;
    }
    const std::string script = SourceRoot() + "/tests/integration/status_page_cdp.py";
    int to_child[2], from_child[2];
    if (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(from_child, O_CLOEXEC) != 0) {
      *error = "pipe failed";
      return false;
    }
    pid_ = fork();
    if (pid_ == 0) {
      dup2(to_child[0], 0);
      dup2(from_child[1], 1);
      setpgid(0, 0);
      std::vector<std::string> args = {python,   script,   "--chromium",
                                       chromium, "--size", "1280,900"};
      if (!preload.empty()) args.insert(args.end(), {"--preload", preload});
      args.push_back(url);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(python.c_str(), argv.data());
      _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    in_ = to_child[1];
    out_ = from_child[0];
    std::string line;
    if (pid_ < 0 || !ReadLine(&line, 60000) || line.find("\"ready\": true") == std::string::npos) {
      *error = "status_page_cdp.py did not start the browser: " + line;
      return false;
    }
    return true;
  }

  // Evaluates a JavaScript expression that yields a string (or number).
  // "<error: ...>" when it fails.
  std::string Eval(const std::string& js) {
    std::string line;
    if (!Command("eval " + js, &line)) return "<error: no reply>";
    static const std::regex str(R"re(^\{"ok": true, "value": "((?:[^"\\]|\\.)*)"\}$)re");
    static const std::regex num(R"(^\{"ok": true, "value": (-?[0-9.e+]+|null|true|false)\}$)");
    std::smatch m;
    if (std::regex_match(line, m, str)) return m[1];
    if (std::regex_match(line, m, num)) return m[1];
    return "<error: " + line + ">";
  }

  bool Screenshot(const std::string& path, std::string* reply) {
    return Command("screenshot " + path, reply) && reply->find("\"ok\": true") != std::string::npos;
  }

  void Stop() {
    if (in_ >= 0) {
      const std::string q = "quit\n";
      (void)!write(in_, q.data(), q.size());
      close(in_);
      in_ = -1;
    }
    if (pid_ > 0) {
      int status;
      if (!WaitFor([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, 10000, 20)) {
        kill(-pid_, SIGKILL);
        waitpid(pid_, &status, 0);
      }
      pid_ = -1;
    }
    if (out_ >= 0) close(out_);
    out_ = -1;
  }

 private:
  bool Command(const std::string& cmd, std::string* reply) {
    const std::string l = cmd + "\n";
    if (in_ < 0 || write(in_, l.data(), l.size()) != static_cast<ssize_t>(l.size())) return false;
    return ReadLine(reply, 30000);
  }

  bool ReadLine(std::string* line, int timeout_ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      if (const size_t nl = buf_.find('\n'); nl != std::string::npos) {
        *line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return true;
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char b[65536];
      const ssize_t n = read(out_, b, sizeof b);
      if (n <= 0) {
        *line = buf_;
        return false;
      }
      buf_.append(b, static_cast<size_t>(n));
    }
  }

  pid_t pid_ = -1;
  int in_ = -1, out_ = -1;
  std::string buf_;
};

// What the page shows for one worker row.
struct Row {
  int slot = -1;
  pid_t pid = 0;
  int generation = 0;
  std::string state;
};

const char* kRowsJs =
    "[...document.querySelectorAll('#worker-rows tr[data-slot]')].map(r => [r.dataset.slot, "
    "r.dataset.pid, r.dataset.generation, r.dataset.state].join('/')).join(' ')";

std::vector<Row> Rows(Browser& b) {
  std::vector<Row> rows;
  std::istringstream in(b.Eval(kRowsJs));
  std::string item;
  static const std::regex re(R"((\d+)/(\d+)/(\d+)/([a-z]+))");
  while (in >> item) {
    std::smatch m;
    if (!std::regex_match(item, m, re)) continue;
    rows.push_back({std::stoi(m[1]), static_cast<pid_t>(std::stol(m[2])), std::stoi(m[3]), m[4]});
  }
  return rows;
}

std::string Describe(const std::vector<Row>& rows) {
  std::string s;
  for (const Row& r : rows)
    s += "[slot " + std::to_string(r.slot) + " pid " + std::to_string(r.pid) + " gen " +
         std::to_string(r.generation) + " " + r.state + "] ";
  return s.empty() ? "(no rows)" : s;
}

// True when the page's serving rows (serving or respawned) are exactly the
// server's active workers, one per slot, all of generation `gen` (rows of
// draining processes aside).
bool RowsMatch(const std::vector<Row>& rows, const std::vector<WorkerInfo>& active, int gen) {
  std::map<int, const Row*> by_slot;
  for (const Row& r : rows) {
    if (r.state != "serving" && r.state != "respawned") continue;  // draining: retiring
    // Two serving processes in one slot: a reload is under way (the old one
    // is not yet told to drain).
    if (by_slot.count(r.slot)) return false;
    by_slot[r.slot] = &r;
  }
  if (by_slot.size() != active.size() || active.empty()) return false;
  for (const WorkerInfo& w : active) {
    auto it = by_slot.find(w.slot);
    if (it == by_slot.end() || it->second->pid != w.pid || it->second->generation != gen)
      return false;
  }
  return true;
}

long long Number(Browser& b, const std::string& id) {
  const std::string v =
      b.Eval("String(document.getElementById('" + id + "').getAttribute('data-value'))");
  try {
    return std::stoll(v);
  } catch (...) {
    return -1;
  }
}

class StatusPageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<Server>(
        ListenerYaml("http", "http", 0, "root: " + SourceRoot() + "/conf/www"));
    ASSERT_TRUE(server_->Start());
  }
  uint16_t Port() const { return server_->Port("http"); }
  std::unique_ptr<Server> server_;
};

TEST_F(StatusPageTest, PageIsServedSelfContained) {
  const Response r = Get(Port(), "/_status");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.headers.at("content-type").rfind("text/html", 0), 0u) << r.headers.at("content-type");
  EXPECT_EQ(r.body, ReadFile(SourceRoot() + "/conf/status.html"))
      << "the binary serves the conf/status.html it was built with";
  EXPECT_LT(r.body.size(), 40u * 1024);
  // Nothing from elsewhere: no external scripts, styles, fonts or images.
  for (const char* bad : {"<script src", "<link", "@import", "url(http", "src=\"http",
                          "href=\"http", "//cdn", "fonts.googleapis"})
    EXPECT_EQ(r.body.find(bad), std::string::npos) << bad;
  EXPECT_TRUE(std::regex_search(r.body, std::regex(R"(new EventSource\(["']/_events["']\))")));
  EXPECT_NE(r.body.find("/_stats"), std::string::npos) << "the polling fallback";
  // The ids and data attributes tests and scripts read.
  for (const char* id : {"id=\"updated\"", "id=\"total-requests\"", "id=\"worker-rows\"",
                         "id=\"master-pid\"", "id=\"store-shards\"", "id=\"listener-rows\""})
    EXPECT_NE(r.body.find(id), std::string::npos) << id;
}

// The stream: headers, then `data: {...}\n\n` about once a second, each the
// /_stats object.
TEST_F(StatusPageTest, EventsStreamFormat) {
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(
      c.SendAll("GET /_events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"));
  std::string head;
  ASSERT_TRUE(c.RecvUntil("\r\n\r\n", &head, 5000)) << c.buffered();
  Response r;
  ASSERT_TRUE(ParseHead(head, &r)) << head;
  EXPECT_EQ(r.status, 200) << head;
  EXPECT_EQ(r.headers["content-type"].rfind("text/event-stream", 0), 0u) << head;
  EXPECT_EQ(r.headers.count("content-length"), 0u) << head;
  EXPECT_EQ(r.headers["cache-control"], "no-cache") << head;
  const bool chunked = r.headers["transfer-encoding"] == "chunked";

  // The event stream's bytes (chunked transfer coding undone).
  std::string stream;
  auto more = [&](int timeout_ms) {
    if (!chunked) {
      std::string got;
      if (!c.RecvSome(&got, timeout_ms)) return false;
      stream += got;
      return true;
    }
    std::string size_line;
    if (!c.RecvUntil("\r\n", &size_line, timeout_ms)) return false;
    const size_t n = std::stoul(size_line, nullptr, 16);
    std::string data;
    if (!c.RecvExact(n + 2, &data, timeout_ms)) return false;
    stream += data.substr(0, n);
    return n > 0;
  };
  struct Event {
    std::string data;
    Clock::time_point at;
  };
  std::vector<Event> events;
  const auto deadline = Clock::now() + std::chrono::seconds(8);
  while (events.size() < 3 && Clock::now() < deadline) {
    size_t end;
    while ((end = stream.find("\n\n")) != std::string::npos) {
      const std::string ev = stream.substr(0, end);
      stream.erase(0, end + 2);
      // Comment lines (": keep-alive") and other fields may come; collect data lines.
      std::string data;
      std::istringstream lines(ev);
      std::string line;
      while (std::getline(lines, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.rfind("data:", 0) == 0) data += line.substr(line.rfind("data: ", 0) == 0 ? 6 : 5);
      }
      if (!data.empty()) events.push_back({data, Clock::now()});
    }
    if (events.size() < 3 && !more(3000)) break;
  }
  ASSERT_GE(events.size(), 3u) << "events received: " << events.size() << "; pending: " << stream;
  for (const Event& e : events) {
    ASSERT_FALSE(e.data.empty());
    EXPECT_EQ(e.data.front(), '{') << e.data;
    EXPECT_EQ(e.data.back(), '}') << e.data;
    YAML::Node n;  // JSON is YAML: yaml-cpp parses it
    ASSERT_NO_THROW(n = YAML::Load(e.data)) << e.data;
    ASSERT_TRUE(n.IsMap()) << e.data;
    ASSERT_TRUE(n["workers"].IsSequence()) << e.data;
    EXPECT_EQ(n["workers"].size(), 2u) << e.data;
    EXPECT_TRUE(n["totals"].IsMap()) << e.data;
  }
  // The fields the page reads (the contract between the page and /_stats).
  const YAML::Node n = YAML::Load(events.back().data);
  EXPECT_EQ(n["master"]["pid"].as<long>(), server_->pid());
  EXPECT_EQ(n["master"]["generation"].as<int>(), 1);
  EXPECT_TRUE(n["master"]["last_config_error"].IsScalar());
  const size_t bounds = n["latency_bounds_us"].size();
  EXPECT_GE(bounds, 10u);
  std::vector<long> pids;
  for (const YAML::Node& w : n["workers"]) {
    pids.push_back(w["pid"].as<long>());
    EXPECT_EQ(w["state"].as<std::string>(), "serving");
    EXPECT_GT(w["rss_bytes"].as<uint64_t>(), 0u);
    EXPECT_TRUE(w["connections"]["by_protocol"]["http"].IsScalar());
    for (const char* proto : {"echo", "resp", "kv-json", "http", "chat"})
      EXPECT_EQ(w["latency"][proto].size(), bounds + 1) << proto;
  }
  const std::vector<pid_t> wp = server_->WorkerPids();
  std::vector<long> kids(wp.begin(), wp.end());
  std::sort(pids.begin(), pids.end());
  std::sort(kids.begin(), kids.end());
  EXPECT_EQ(pids, kids);
  EXPECT_EQ(n["store"]["shards"].size(), 8u);  // the harness' kv.shards
  EXPECT_TRUE(n["bus"]["messages"].IsScalar());
  EXPECT_TRUE(n["persistence"]["enabled"].IsScalar());
  ASSERT_EQ(n["listeners"].size(), 1u);
  EXPECT_EQ(n["listeners"][0]["port"].as<int>(), Port());
  // About a second apart (the first may come at once on connect).
  const auto gap =
      std::chrono::duration_cast<std::chrono::milliseconds>(events[2].at - events[1].at);
  EXPECT_GE(gap.count(), 600) << "events 2 and 3 came " << gap.count() << " ms apart";
  EXPECT_LE(gap.count(), 2000) << "events 2 and 3 came " << gap.count() << " ms apart";
  // The stream stays open: more follows.
  const size_t had = stream.size();
  EXPECT_TRUE(more(3000) && stream.size() > had) << "the stream ended after 3 events";
}

// The page in a real browser: rows match the worker processes; traffic,
// reloads and a killed worker show up; a screenshot is saved.
TEST_F(StatusPageTest, BrowserShowsWorkersTrafficReloadAndRespawn) {
  Browser b;
  std::string error;
  ASSERT_TRUE(b.Start("http://127.0.0.1:" + std::to_string(Port()) + "/_status", &error)) << error;

  // (a) one row per worker, pids as the kernel sees them (children of the master).
  std::vector<pid_t> kids = server_->WorkerPids();
  ASSERT_EQ(kids.size(), 2u);
  std::vector<Row> rows;
  EXPECT_TRUE(WaitFor(
      [&] {
        rows = Rows(b);
        return RowsMatch(rows, server_->ActiveWorkers(), 1) && rows.size() == 2 &&
               Number(b, "updated") >= 2;
      },
      10000, 100))
      << Describe(rows) << " updated=" << Number(b, "updated");
  for (const Row& r : rows) {
    EXPECT_NE(std::find(kids.begin(), kids.end(), r.pid), kids.end()) << r.pid;
    EXPECT_EQ(r.state, "serving");
  }
  EXPECT_EQ(b.Eval("document.getElementById('conn').dataset.mode"), "live")
      << "the page gets its data from the /_events stream";
  EXPECT_EQ(b.Eval("document.getElementById('master-pid').textContent"),
            std::to_string(server_->pid()));

  // (b) a burst of requests raises the page's total.
  const long long before = Number(b, "total-requests");
  ASSERT_GE(before, 0);
  EXPECT_EQ(Burst(Port(), 200), 200);
  long long after = 0;
  EXPECT_TRUE(WaitFor(
      [&] {
        after = Number(b, "total-requests");
        return after >= before + 200;
      },
      5000, 100))
      << "before " << before << ", after " << after;

  // (c) after SIGHUP the rows show generation 2 and the new pids.
  const std::vector<pid_t> gen1 = server_->WorkerPids();
  server_->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return server_->GenerationUp(2, gen1); }, 10000));
  EXPECT_TRUE(WaitFor(
      [&] {
        rows = Rows(b);
        return RowsMatch(rows, server_->ActiveWorkers(), 2);
      },
      8000, 100))
      << Describe(rows);
  EXPECT_TRUE(WaitFor(
      [&] { return b.Eval("document.getElementById('master-generation').textContent") == "2"; },
      3000, 100));
  EXPECT_TRUE(WaitFor([&] { return Number(b, "reloads") == 1; }, 3000, 100));

  // (d) kill -9 of slot 0's worker: the row shows the respawned process.
  std::vector<WorkerInfo> active = server_->ActiveWorkers();
  ASSERT_EQ(active.size(), 2u);
  const pid_t victim = active[0].pid;
  const int victim_slot = active[0].slot;
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  pid_t replacement = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const WorkerInfo& w : server_->ActiveWorkers())
          if (w.slot == victim_slot && w.pid != victim) replacement = w.pid;
        return replacement != 0;
      },
      10000, 20));
  EXPECT_TRUE(WaitFor(
      [&] {
        rows = Rows(b);
        for (const Row& r : rows)
          if (r.slot == victim_slot && r.pid == replacement && r.state == "respawned" &&
              r.generation == 2)
            return true;
        return false;
      },
      8000, 100))
      << "victim " << victim << ", replacement " << replacement << ": " << Describe(rows);
  // The other slot is untouched.
  for (const Row& r : rows)
    if (r.slot != victim_slot && r.state != "draining") {
      EXPECT_EQ(r.state, "serving") << Describe(rows);
    }

  // (e) a screenshot of the page in that state, next to the test binary.
  const std::string shot = BuildDir() + "/status_page.png";
  unlink(shot.c_str());
  std::string reply;
  EXPECT_TRUE(b.Screenshot(shot, &reply)) << reply;
  const std::string png = ReadFile(shot);
  EXPECT_GT(png.size(), 10000u) << shot;
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << shot;
  printf("status page screenshot: %s (%zu bytes)\n", shot.c_str(), png.size());
  b.Stop();
}

}  // namespace
}  // namespace pf::test

namespace pf::test {
namespace {

// Without EventSource (an old browser, or a proxy that breaks the stream),
// the page polls /_stats once a second and shows the same rows.
TEST_F(StatusPageTest, FallsBackToPollingStats) {
  Browser b;
  std::string error;
  ASSERT_TRUE(b.Start("http://127.0.0.1:" + std::to_string(Port()) + "/_status", &error,
                      "window.EventSource = undefined;"))
      << error;
  std::vector<Row> rows;
  EXPECT_TRUE(WaitFor(
      [&] {
        rows = Rows(b);
        return RowsMatch(rows, server_->ActiveWorkers(), 1) && Number(b, "updated") >= 3;
      },
      10000, 100))
      << Describe(rows) << " updated=" << Number(b, "updated");
  EXPECT_EQ(b.Eval("document.getElementById('conn').dataset.mode"), "polling");
}

// The page's arithmetic: quantiles from histogram buckets, and numbers for people.
TEST_F(StatusPageTest, QuantilesAndFormatting) {
  Browser b;
  std::string error;
  ASSERT_TRUE(b.Start("http://127.0.0.1:" + std::to_string(Port()) + "/_status", &error)) << error;
  // Bounds 10, 100, 1000 us (+Inf): 50 requests <= 10 us, 49 in (10, 100], 1 over 1000.
  const std::string q = "pfStatus.quantile([50,49,0,1],[10,100,1000],";
  EXPECT_EQ(b.Eval(q + "0.5)"), "10");
  EXPECT_EQ(b.Eval("String(" + q + "0.75))"), "55.91836734693878");  // 10 + 90 * 25/49
  EXPECT_EQ(b.Eval("String(" + q + "0.999))"), "Infinity");
  EXPECT_EQ(b.Eval("String(pfStatus.quantile([0,0,0,0],[10,100,1000],0.5))"), "null");
  EXPECT_EQ(b.Eval("pfStatus.fmtNum(1234)"), "1.23k");
  EXPECT_EQ(b.Eval("pfStatus.fmtNum(2500000)"), "2.50M");
  EXPECT_EQ(b.Eval("pfStatus.fmtBytes(1536)"), "1.50 KiB");
  EXPECT_EQ(b.Eval("pfStatus.fmtBytes(300 * 1048576)"), "300 MiB");
  EXPECT_EQ(b.Eval("pfStatus.fmtUs(250)"), "250 µs");
  EXPECT_EQ(b.Eval("pfStatus.fmtUs(12500)"), "12.5 ms");
  EXPECT_EQ(b.Eval("pfStatus.fmtDuration(3725)"), "1h 2m 5s");
}

}  // namespace
}  // namespace pf::test
