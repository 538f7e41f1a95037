// tests/integration/test_proxy.cc: the http reverse proxy (worker/http/proxy.cc)
// with the real preforkd in front of two kinds of upstream: a second preforkd
// (static files and /kv, well behaved) and FakeUpstream, a scripted server in
// this process that misbehaves on purpose (bad heads, cut bodies, silence,
// floods, WebSocket echo) and counts what it saw.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

using Clock = std::chrono::steady_clock;

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

std::string Lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
  return s;
}

// ---------------------------------------------------------------- the upstream fixture

// One request as the upstream received it.
struct UpRequest {
  std::string head;  // request line + headers, raw
  std::string method, target, version;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in order
  std::string body;
  std::string Header(const std::string& name) const {
    for (const auto& [n, v] : headers)
      if (n == name) return v;
    return "";
  }
  int Count(const std::string& name) const {
    int k = 0;
    for (const auto& [n, v] : headers) k += n == name;
    return k;
  }
};

class FakeUpstream;

// One accepted connection, driven by the test's script on its own thread.
// Every call is bounded (and ends at once when the fixture stops).
class UpConn {
 public:
  UpConn(int fd, FakeUpstream* f) : fd_(fd), f_(f) {}
  ~UpConn() { close(fd_); }
  UpConn(const UpConn&) = delete;
  UpConn& operator=(const UpConn&) = delete;

  // A request head and its Content-Length body; false on EOF, error or timeout.
  bool ReadRequest(UpRequest* r, int timeout_ms = 20000);
  bool Write(std::string_view data, int timeout_ms = 20000);
  // Whatever arrives (appended to *out): 1 data, 0 peer closed, -1 timeout/stop.
  int ReadSome(std::string* out, int timeout_ms);
  // Waits until the peer closes (true) or timeout_ms passes.
  bool WaitEof(int timeout_ms);
  int fd() const { return fd_; }

 private:
  void NotePeerClosed();
  int fd_;
  FakeUpstream* f_;
  std::string buf_;
  bool peer_closed_ = false;
};

// A listening socket on 127.0.0.1 (an ephemeral port) with one thread per
// connection running `script`. Counts accepts, requests and the connections
// whose peer (the proxy) closed them.
class FakeUpstream {
 public:
  using Script = std::function<void(UpConn&)>;
  explicit FakeUpstream(Script script) : script_(std::move(script)) {
    lfd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(lfd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(lfd_, 128) != 0 ||
        getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "FakeUpstream: bind/listen failed: " << strerror(errno);
      return;
    }
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
  ~FakeUpstream() { Stop(); }
  FakeUpstream(const FakeUpstream&) = delete;
  FakeUpstream& operator=(const FakeUpstream&) = delete;

  // An http script: for each request on the connection, `reply` writes its
  // response and says whether to wait for another (false: close).
  static Script Http(std::function<bool(UpConn&, const UpRequest&)> reply) {
    return [reply](UpConn& c) {
      UpRequest r;
      for (int i = 0; i < 100000 && c.ReadRequest(&r); i++)
        if (!reply(c, r)) return;
    };
  }
  // The same bytes for every request; `close_after`: then close.
  static Script Canned(std::string bytes, bool close_after = false) {
    return Http([bytes, close_after](UpConn& c, const UpRequest&) {
      return c.Write(bytes) && !close_after;
    });
  }

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int accepts() const { return accepts_.load(); }
  int peer_closed() const { return peer_closed_.load(); }
  size_t request_count() const {
    std::lock_guard<std::mutex> l(mu_);
    return requests_.size();
  }
  std::vector<UpRequest> requests() const {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }
  UpRequest last() const {
    std::lock_guard<std::mutex> l(mu_);
    return requests_.empty() ? UpRequest{} : requests_.back();
  }
  bool stopping() const { return stop_.load(); }

  // Closes the listener and every connection, joins every thread.
  void Stop() {
    if (stop_.exchange(true)) return;
    if (lfd_ >= 0) shutdown(lfd_, SHUT_RDWR);
    if (acceptor_.joinable()) acceptor_.join();
    {
      std::lock_guard<std::mutex> l(mu_);
      for (int fd : live_) shutdown(fd, SHUT_RDWR);
    }
    for (;;) {
      std::thread t;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (threads_.empty()) break;
        t = std::move(threads_.back());
        threads_.pop_back();
      }
      t.join();
    }
    if (lfd_ >= 0) close(lfd_);
    lfd_ = -1;
  }

 private:
  friend class UpConn;

  void AcceptLoop() {
    while (!stop_) {
      pollfd p{lfd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const int fd = accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      accepts_++;
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) {
        close(fd);
        break;
      }
      live_.insert(fd);
      threads_.emplace_back([this, fd] {
        {
          UpConn c(fd, this);
          script_(c);
          std::lock_guard<std::mutex> l2(mu_);
          live_.erase(fd);
        }  // closed here, after it left live_ (Stop never shuts a reused fd)
      });
    }
  }

  Script script_;
  int lfd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepts_{0}, peer_closed_{0};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::vector<std::thread> threads_;
  std::set<int> live_;
  std::vector<UpRequest> requests_;
};

void UpConn::NotePeerClosed() {
  if (!peer_closed_ && !f_->stopping()) f_->peer_closed_++;
  peer_closed_ = true;
}

int UpConn::ReadSome(std::string* out, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!f_->stopping() && Clock::now() < deadline) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    char chunk[65536];
    const ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      out->append(chunk, static_cast<size_t>(n));
      return 1;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    NotePeerClosed();
    return 0;
  }
  return -1;
}

bool UpConn::ReadRequest(UpRequest* r, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  size_t end;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
    const int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0 || ReadSome(&buf_, left) <= 0) return false;
  }
  *r = UpRequest{};
  r->head = buf_.substr(0, end + 4);
  buf_.erase(0, end + 4);
  std::istringstream in(r->head);
  std::string line;
  std::getline(in, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  std::istringstream rl(line);
  rl >> r->method >> r->target >> r->version;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string v = line.substr(colon + 1);
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    r->headers.emplace_back(Lower(line.substr(0, colon)), v);
  }
  const std::string cl = r->Header("content-length");
  const size_t len = cl.empty() ? 0 : std::stoul(cl);
  while (buf_.size() < len) {
    const int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0 || ReadSome(&buf_, left) <= 0) return false;
  }
  r->body = buf_.substr(0, len);
  buf_.erase(0, len);
  std::lock_guard<std::mutex> l(f_->mu_);
  f_->requests_.push_back(*r);
  return true;
}

bool UpConn::Write(std::string_view data, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!data.empty()) {
    if (f_->stopping() || Clock::now() >= deadline) return false;
    pollfd p{fd_, POLLOUT, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    NotePeerClosed();
    return false;
  }
  return true;
}

bool UpConn::WaitEof(int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  std::string sink;
  for (;;) {
    const int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) return false;
    const int r = ReadSome(&sink, left);
    if (r == 0) return true;
    if (r < 0) return false;
    sink.clear();
  }
}

std::string Reply(int status, const std::string& body, const std::string& extra = "") {
  return "HTTP/1.1 " + std::to_string(status) +
         " X\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
}

// Answers every request with 200 and `name` as the body.
FakeUpstream::Script Named(const std::string& name) {
  return FakeUpstream::Http(
      [name](UpConn& c, const UpRequest&) { return c.Write(Reply(200, name)); });
}

// ---------------------------------------------------------------- the client side

struct Response {
  int status = 0;
  std::string head;
  std::map<std::string, std::string> headers;  // names lower-cased (the last of a name)
  std::string body;                            // decoded
  bool chunked = false;
  bool close_delimited = false;
  bool has(const std::string& h) const { return headers.count(h) > 0; }
  std::string operator[](const std::string& h) const {
    auto it = headers.find(h);
    return it == headers.end() ? "" : it->second;
  }
};

// One response: Content-Length, chunked (decoded) or up to the close.
bool ReadResponse(Client& c, Response* r, bool head_only = false, int timeout_ms = 5000) {
  *r = Response{};
  if (!c.RecvUntil("\r\n\r\n", &r->head, timeout_ms)) return false;
  std::istringstream in(r->head);
  std::string line;
  std::getline(in, line);
  if (line.size() < 12 || line.substr(0, 9) != "HTTP/1.1 ") return false;
  r->status = std::stoi(line.substr(9, 3));
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    r->headers[Lower(line.substr(0, colon))] = line.substr(colon + 2);
  }
  if (head_only || r->status == 304 || r->status == 204 || r->status < 200) return true;
  if (Lower((*r)["transfer-encoding"]) == "chunked") {
    r->chunked = true;
    for (int i = 0; i < 1000000; i++) {
      std::string size;
      if (!c.RecvLine(&size, timeout_ms)) return false;
      const size_t n = std::stoul(size, nullptr, 16);
      if (n == 0) {
        std::string trailer;
        do {
          if (!c.RecvLine(&trailer, timeout_ms)) return false;
        } while (!trailer.empty());
        return true;
      }
      std::string data;
      if (!c.RecvExact(n + 2, &data, timeout_ms)) return false;
      r->body += data.substr(0, n);
    }
    return false;
  }
  if (r->has("content-length")) {
    const size_t len = std::stoul((*r)["content-length"]);
    return len == 0 || c.RecvExact(len, &r->body, timeout_ms);
  }
  r->close_delimited = true;
  if (!c.WaitClosed(timeout_ms)) return false;
  r->body = c.buffered();
  return true;
}

std::string Get(const std::string& target, const std::string& extra = "",
                const std::string& method = "GET") {
  return method + " " + target + " HTTP/1.1\r\nHost: front.test\r\n" + extra + "\r\n";
}

std::string WithBody(const std::string& method, const std::string& target,
                     const std::string& body) {
  return method + " " + target +
         " HTTP/1.1\r\nHost: front.test\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

// "{address: "127.0.0.1:1234", weight: 3}"
std::string Srv(const std::string& address, const std::string& extra = "") {
  return "{address: \"" + address + "\"" + (extra.empty() ? "" : ", " + extra) + "}";
}

// One item of `upstreams:`; `opts`: more "key: value" lines.
std::string Upstream(const std::string& name, const std::vector<std::string>& servers,
                     const std::string& opts = "") {
  std::string s = "  - name: " + name + "\n";
  std::istringstream lines(opts);
  std::string line;
  while (std::getline(lines, line))
    if (!line.empty()) s += "    " + line + "\n";
  s += "    servers:\n";
  for (const auto& sv : servers) s += "      - " + sv + "\n";
  return s;
}

long VmRssKb(pid_t pid) {
  const std::string s = ReadFile("/proc/" + std::to_string(pid) + "/status");
  const size_t at = s.find("VmRSS:");
  return at == std::string::npos ? -1 : std::stol(s.substr(at + 6));
}

// The names the tests' requests use (loopback listeners check Host).
constexpr const char* kServerNames = "server_names: [front.test, app.internal, localhost]";

class ProxyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/pf-proxy-XXXXXX";
    dir_ = new std::string(mkdtemp(tmpl));
    mkdir((*dir_ + "/front").c_str(), 0755);
    mkdir((*dir_ + "/up").c_str(), 0755);
    WriteFile(*dir_ + "/front/local.txt", "served by the proxy itself");
    WriteFile(*dir_ + "/up/a.txt", "0123456789");
    big_ = new std::string(RandomBytes(3 << 20, 7));
    WriteFile(*dir_ + "/up/big.bin", *big_);
    upstream_ = new Server(
        ListenerYaml("http", "http", 0, "root: " + *dir_ + "/up\n" + kServerNames), "", 1);
    ASSERT_TRUE(upstream_->Start());
  }
  static void TearDownTestSuite() {
    delete upstream_;
    upstream_ = nullptr;
    std::string out;
    Sh("rm -rf " + *dir_, &out);
    delete dir_;
    delete big_;
  }

  // Starts the proxy: one http listener "http" whose docroot holds
  // local.txt, with `routes` (YAML list items, one per line) and `upstreams`
  // (Upstream() items).
  void StartProxy(const std::string& upstreams, const std::string& routes,
                  const std::string& extra = "", int workers = 1) {
    std::string listener = "root: " + *dir_ + "/front\n" + kServerNames + "\nroutes:\n";
    std::istringstream lines(routes);
    std::string line;
    while (std::getline(lines, line))
      if (!line.empty()) listener += "  " + line + "\n";
    proxy_ = std::make_unique<Server>(ListenerYaml("http", "http", 0, listener),
                                      "upstreams:\n" + upstreams + extra, workers);
    ASSERT_TRUE(proxy_->Start());
  }

  uint16_t Port() const { return proxy_->Port("http"); }

  // One request on a new connection.
  Response Do(const std::string& req, int timeout_ms = 5000) {
    Client c;
    Response r;
    EXPECT_TRUE(c.Connect(Port()));
    EXPECT_TRUE(c.SendAll(req));
    EXPECT_TRUE(ReadResponse(c, &r, req.rfind("HEAD ", 0) == 0, timeout_ms))
        << req.substr(0, req.find('\r'));
    return r;
  }

  static std::string UpAddress() { return "127.0.0.1:" + std::to_string(upstream_->Port("http")); }

  // The 502/504 pages say nothing about the upstream.
  static void ExpectNoInternals(const Response& r, const FakeUpstream* f = nullptr) {
    EXPECT_LT(r.body.size(), 512u) << r.body;
    for (const char* s : {"127.0.0.1", "HPE_", "llhttp", "upstream", "refused", "closed"})
      EXPECT_EQ(r.body.find(s), std::string::npos) << s << " in " << r.body;
    if (f) {
      EXPECT_EQ(r.body.find(std::to_string(f->port())), std::string::npos) << r.body;
    }
  }

  std::unique_ptr<Server> proxy_;
  static Server* upstream_;
  static std::string* dir_;
  static std::string* big_;
};

Server* ProxyTest::upstream_ = nullptr;
std::string* ProxyTest::dir_ = nullptr;
std::string* ProxyTest::big_ = nullptr;

// ---------------------------------------------------------------- pass-through

TEST_F(ProxyTest, MethodsStatusAndBodiesPassThrough) {
  FakeUpstream echo(FakeUpstream::Http([](UpConn& c, const UpRequest& r) {
    return c.Write(Reply(r.method == "PUT" ? 201 : 200, r.method + ":" + r.body));
  }));
  StartProxy(Upstream("up", {Srv(UpAddress())}) + Upstream("echo", {Srv(echo.address())}),
             "- {prefix: /up/, proxy: up, strip_prefix: true}\n"
             "- {prefix: /echo/, proxy: echo}\n");
  Response r = Do(Get("/up/a.txt"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "0123456789");
  EXPECT_EQ(r["via"], "1.1 preforkd");
  r = Do(Get("/up/a.txt", "", "HEAD"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r["content-length"], "10");
  EXPECT_EQ(Do(Get("/up/missing.txt")).status, 404);
  // The store of the upstream preforkd, through the proxy.
  r = Do(WithBody("PUT", "/up/kv/proxied", "stored value"));
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(Do(Get("/up/kv/proxied")).body, "stored value");
  r = Do(Get("/up/big.bin"), 15000);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body.size(), big_->size());
  EXPECT_TRUE(r.body == *big_);
  // Bodies reach the upstream whole.
  const std::string body = RandomBytes(100000, 3);
  r = Do(WithBody("POST", "/echo/p", body));
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.body == "POST:" + body);
  EXPECT_EQ(echo.last().Header("content-length"), "100000");
  r = Do(WithBody("PUT", "/echo/p", "xyz"));
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, "PUT:xyz");
  // A HEAD through the proxy, then a GET on the same connection: no stray body.
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(c.SendAll(Get("/up/a.txt", "", "HEAD") + Get("/up/a.txt")));
  ASSERT_TRUE(ReadResponse(c, &r, true));
  EXPECT_EQ(r["content-length"], "10");
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.body, "0123456789");
}

// ---------------------------------------------------------------- headers

TEST_F(ProxyTest, ForwardedHeadersAndHopByHopBothWays) {
  FakeUpstream echo(FakeUpstream::Http([](UpConn& c, const UpRequest&) {
    return c.Write(Reply(200, "ok",
                         "Connection: X-Up\r\nX-Up: 1\r\nKeep-Alive: timeout=5\r\n"
                         "X-Kept: yes\r\nVia: 1.0 origin\r\n"));
  }));
  StartProxy(Upstream("echo", {Srv(echo.address())}),
             "- {prefix: /named/, proxy: echo, host: app.internal, set_headers: {X-App: web}}\n"
             "- {prefix: /, proxy: echo}\n");
  Response r =
      Do("GET /h?q=1 HTTP/1.1\r\nHost: front.test:8080\r\nX-Forwarded-For: 10.0.0.1\r\n"
         "Connection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=9\r\nTE: trailers\r\n"
         "Upgrade: h2c\r\nX-Forwarded-Proto: https\r\nX-Plain: kept\r\n\r\n");
  EXPECT_EQ(r.status, 200);
  UpRequest u = echo.last();
  EXPECT_EQ(u.method + " " + u.target + " " + u.version, "GET /h?q=1 HTTP/1.1");
  EXPECT_EQ(u.Header("x-forwarded-for"), "10.0.0.1, 127.0.0.1") << u.head;
  EXPECT_EQ(u.Header("x-forwarded-proto"), "http") << u.head;
  EXPECT_EQ(u.Count("x-forwarded-proto"), 1) << u.head;
  EXPECT_EQ(u.Header("x-forwarded-host"), "front.test:8080") << u.head;
  EXPECT_EQ(u.Header("forwarded"), "for=127.0.0.1;proto=http;host=\"front.test:8080\"") << u.head;
  EXPECT_EQ(u.Header("via"), "1.1 preforkd") << u.head;
  EXPECT_EQ(u.Header("host"), "front.test:8080") << u.head;
  EXPECT_EQ(u.Count("host"), 1) << u.head;
  EXPECT_EQ(u.Header("x-plain"), "kept") << u.head;
  for (const char* h : {"x-secret", "keep-alive", "te", "upgrade", "expect"})
    EXPECT_EQ(u.Count(h), 0) << h << " reached the upstream:\n" << u.head;
  EXPECT_NE(Lower(u.Header("connection")), "x-secret") << u.head;
  // ... and the other way.
  EXPECT_FALSE(r.has("x-up")) << r.head;
  EXPECT_FALSE(r.has("keep-alive")) << r.head;
  EXPECT_NE(Lower(r["connection"]), "x-up") << r.head;
  EXPECT_EQ(r["x-kept"], "yes");
  EXPECT_EQ(r["via"], "1.0 origin, 1.1 preforkd");

  // A route's host: and set_headers:.
  r = Do(Get("/named/x", "X-App: from-client\r\n"));
  EXPECT_EQ(r.status, 200);
  u = echo.last();
  EXPECT_EQ(u.target, "/named/x");
  EXPECT_EQ(u.Header("host"), "app.internal") << u.head;
  EXPECT_EQ(u.Count("host"), 1) << u.head;
  EXPECT_EQ(u.Header("x-app"), "web") << u.head;
  EXPECT_EQ(u.Count("x-app"), 1) << u.head;
  EXPECT_EQ(u.Header("x-forwarded-host"), "front.test") << u.head;

  // Expect: the proxy answers 100 itself; the upstream gets the body, no Expect.
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(
      c.SendAll("POST /e HTTP/1.1\r\nHost: front.test\r\nContent-Length: 5\r\n"
                "Expect: 100-continue\r\n\r\n"));
  std::string cont;
  ASSERT_TRUE(c.RecvUntil("\r\n\r\n", &cont, 3000));
  EXPECT_EQ(cont.substr(0, 12), "HTTP/1.1 100");
  ASSERT_TRUE(c.SendAll("hello"));
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.status, 200);
  u = echo.last();
  EXPECT_EQ(u.body, "hello");
  EXPECT_EQ(u.Count("expect"), 0) << u.head;
}

// ---------------------------------------------------------------- routes

TEST_F(ProxyTest, RoutesMatchTheNormalisedPath) {
  FakeUpstream echo(FakeUpstream::Http(
      [](UpConn& c, const UpRequest& r) { return c.Write(Reply(200, r.target)); }));
  StartProxy(Upstream("echo", {Srv(echo.address())}),
             "- {prefix: /app/, proxy: echo}\n"
             "- {exact: /login, proxy: echo}\n"
             "- {prefix: /strip/, proxy: echo, strip_prefix: true}\n");
  auto proxied = [&](const std::string& target) {
    const Response r = Do(Get(target));
    return r.status == 200 && r.has("via");
  };
  EXPECT_TRUE(proxied("/app/f"));
  EXPECT_EQ(Do(Get("/app/f?x=1")).body, "/app/f?x=1");
  EXPECT_TRUE(proxied("/app"));  // a prefix "/app/" covers "/app"
  EXPECT_TRUE(proxied("/x/../app/f"));
  EXPECT_TRUE(proxied("/%61pp/f"));
  EXPECT_TRUE(proxied("/login"));
  EXPECT_FALSE(proxied("/login/x"));  // exact
  EXPECT_FALSE(proxied("/application"));
  // Not routed: preforkd's own files.
  Response r = Do(Get("/local.txt"));
  EXPECT_EQ(r.body, "served by the proxy itself");
  EXPECT_FALSE(r.has("via"));
  // strip_prefix sends the rest of the normalised path, and the query.
  EXPECT_EQ(Do(Get("/strip/a/b?q=1")).body, "/a/b?q=1");
  EXPECT_EQ(Do(Get("/strip/")).body, "/");
  EXPECT_EQ(Do(Get("/strip")).body, "/");
  EXPECT_EQ(Do(Get("/strip/a%20b")).body, "/a%20b");
  EXPECT_EQ(Do(Get("/x/../strip/c")).body, "/c");
  // A decoded CR LF never becomes a header line upstream.
  Do(Get("/strip/a%0D%0AX-Injected:%201"));
  for (const UpRequest& u : echo.requests()) EXPECT_EQ(u.Count("x-injected"), 0) << u.head;
}

TEST_F(ProxyTest, KvAndOpsAreNeverRouted) {
  FakeUpstream echo(Named("upstream"));
  StartProxy(Upstream("echo", {Srv(echo.address())}), "- {prefix: /, proxy: echo}\n");
  EXPECT_EQ(Do(Get("/anything")).body, "upstream");
  Response r = Do("GET /_health HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.has("via"));
  r = Do("GET /kv/nothing HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_EQ(r.status, 404);
  EXPECT_FALSE(r.has("via"));
  EXPECT_EQ(echo.request_count(), 1u);
}

// ---------------------------------------------------------------- framing

TEST_F(ProxyTest, ChunkedUpstreamReachesTheClientChunked) {
  FakeUpstream up(
      FakeUpstream::Canned("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"));
  StartProxy(Upstream("app", {Srv(up.address())}), "- {prefix: /, proxy: app}\n");
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  for (int i = 0; i < 2; i++) {  // twice: the connections stay in step
    ASSERT_TRUE(c.SendAll(Get("/c")));
    Response r;
    ASSERT_TRUE(ReadResponse(c, &r));
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(r.chunked) << r.head;
    EXPECT_FALSE(r.has("content-length"));
    EXPECT_EQ(r.body, "hello world");
  }
  EXPECT_EQ(up.accepts(), 1);
}

TEST_F(ProxyTest, CloseDelimitedUpstreamBody) {
  const std::string body = RandomBytes(200000, 11);
  FakeUpstream up(FakeUpstream::Canned("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body,
                                       /*close_after=*/true));
  StartProxy(Upstream("app", {Srv(up.address())}), "- {prefix: /, proxy: app}\n");
  // HTTP/1.1: chunked, and the connection stays.
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  Response r;
  for (int i = 0; i < 2; i++) {
    ASSERT_TRUE(c.SendAll(Get("/close")));
    ASSERT_TRUE(ReadResponse(c, &r));
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(r.chunked) << r.head;
    EXPECT_TRUE(r.body == body) << r.body.size();
    EXPECT_NE(r["connection"], "close");
  }
  // HTTP/1.0: the body ends with the connection.
  Client old;
  ASSERT_TRUE(old.Connect(Port()));
  ASSERT_TRUE(
      old.SendAll("GET /close HTTP/1.0\r\nHost: front.test\r\nConnection: keep-alive\r\n\r\n"));
  ASSERT_TRUE(ReadResponse(old, &r));
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.chunked) << r.head;
  EXPECT_TRUE(r.close_delimited) << r.head;
  EXPECT_EQ(r["connection"], "close");
  EXPECT_TRUE(r.body == body) << r.body.size();
}

// The upstream's 1xx, 204 and 304 (and any response to HEAD) end at the
// head, whatever Content-Length says (RFC 9112 6.3).
FakeUpstream::Script NoBodyScript() {
  return FakeUpstream::Http([](UpConn& c, const UpRequest& r) {
    if (r.target == "/204") return c.Write("HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n");
    if (r.target == "/304")
      return c.Write("HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 50\r\n\r\n");
    if (r.target == "/100")
      return c.Write(
          "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal");
    if (r.method == "HEAD") return c.Write("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
    return c.Write(Reply(200, "after"));
  });
}

TEST_F(ProxyTest, NoContentAndHeadResponsesHaveNoBody) {
  FakeUpstream up(NoBodyScript());
  StartProxy(Upstream("app", {Srv(up.address())}), "- {prefix: /, proxy: app}\n");
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  Response r;
  ASSERT_TRUE(c.SendAll(Get("/204") + Get("/x")));
  ASSERT_TRUE(ReadResponse(c, &r)) << c.buffered();
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(r["x-a"], "1");
  EXPECT_FALSE(r.has("transfer-encoding")) << r.head;
  ASSERT_TRUE(ReadResponse(c, &r)) << c.buffered();
  EXPECT_EQ(r.body, "after");
  ASSERT_TRUE(c.SendAll(Get("/h", "", "HEAD") + Get("/x")));
  ASSERT_TRUE(ReadResponse(c, &r, true)) << c.buffered();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r["content-length"], "1000");
  ASSERT_TRUE(ReadResponse(c, &r)) << c.buffered();
  EXPECT_EQ(r.body, "after");
  EXPECT_EQ(up.accepts(), 1);
}

TEST_F(ProxyTest, NotModifiedWithContentLengthHasNoBody) {
  FakeUpstream up(NoBodyScript());
  StartProxy(Upstream("app", {Srv(up.address())}), "- {prefix: /, proxy: app}\n");
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  Response r;
  ASSERT_TRUE(c.SendAll(Get("/304") + Get("/x")));
  ASSERT_TRUE(ReadResponse(c, &r)) << c.buffered();
  EXPECT_EQ(r.status, 304);
  EXPECT_EQ(r["etag"], "\"e\"");
  EXPECT_FALSE(r.has("transfer-encoding")) << r.head;
  ASSERT_TRUE(ReadResponse(c, &r, false, 2000)) << "no response after the 304: " << c.buffered();
  EXPECT_EQ(r.body, "after");
  EXPECT_EQ(up.accepts(), 1);
}

TEST_F(ProxyTest, InterimContinueFromTheUpstreamIsSkipped) {
  FakeUpstream up(NoBodyScript());
  StartProxy(Upstream("app", {Srv(up.address())}), "- {prefix: /, proxy: app}\n");
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  Response r;
  ASSERT_TRUE(c.SendAll(Get("/100") + Get("/x")));
  ASSERT_TRUE(ReadResponse(c, &r)) << c.buffered();
  EXPECT_EQ(r.status, 200) << r.head;
  EXPECT_EQ(r.body, "final");
  ASSERT_TRUE(ReadResponse(c, &r)) << c.buffered();
  EXPECT_EQ(r.body, "after");
  EXPECT_EQ(up.accepts(), 1);
}

// ---------------------------------------------------------------- bad upstreams

TEST_F(ProxyTest, InvalidUpstreamResponsesGet502) {
  struct Case {
    const char* why;
    std::string bytes;
  };
  const std::vector<Case> cases = {
      {"invalid status line", "HTXP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
      {"garbage", "hello there\r\n\r\n"},
      {"conflicting Content-Length",
       "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"},
      {"Content-Length and Transfer-Encoding",
       "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: "
       "chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"},
      {"head over max_line_bytes",
       "HTTP/1.1 200 OK\r\nX-Big: " + std::string(6000, 'b') + "\r\nContent-Length: 2\r\n\r\nok"},
      {"closed before any byte", ""},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.why);
    FakeUpstream up(FakeUpstream::Canned(tc.bytes, /*close_after=*/true));
    StartProxy(Upstream("app", {Srv(up.address())}), "- {prefix: /, proxy: app}\n",
               "limits: {max_line_bytes: 4k}\n");
    Client c;
    ASSERT_TRUE(c.Connect(Port()));
    ASSERT_TRUE(c.SendAll(Get("/bad")));
    Response r;
    ASSERT_TRUE(ReadResponse(c, &r));
    EXPECT_EQ(r.status, 502) << r.head;
    ExpectNoInternals(r, &up);
    EXPECT_EQ(r.body.find("bbbb"), std::string::npos);
    // The client's connection is still good for the next request.
    ASSERT_TRUE(c.SendAll(Get("/local.txt")));
    ASSERT_TRUE(ReadResponse(c, &r));
    EXPECT_EQ(r.status, 502);  // "/" routes everything, and the upstream is still bad
    proxy_.reset();
  }
}

TEST_F(ProxyTest, BodyCutAfterTheHeadClosesTheClient) {
  FakeUpstream up(FakeUpstream::Canned(
      "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + std::string(50000, 'x'),
      /*close_after=*/true));
  FakeUpstream chunked(FakeUpstream::Canned(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n",
      /*close_after=*/true));
  StartProxy(Upstream("app", {Srv(up.address())}) + Upstream("ch", {Srv(chunked.address())}),
             "- {prefix: /ch/, proxy: ch}\n- {prefix: /, proxy: app}\n");
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(c.SendAll(Get("/cut")));
  std::string head;
  ASSERT_TRUE(c.RecvUntil("\r\n\r\n", &head));
  EXPECT_EQ(head.substr(0, 12), "HTTP/1.1 200");
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_LT(c.buffered().size(), 100000u);
  // Chunked to the client: it never sees the last chunk.
  Client d;
  ASSERT_TRUE(d.Connect(Port()));
  ASSERT_TRUE(d.SendAll(Get("/ch/cut")));
  ASSERT_TRUE(d.RecvUntil("\r\n\r\n", &head));
  EXPECT_EQ(head.substr(0, 12), "HTTP/1.1 200");
  EXPECT_TRUE(d.WaitClosed());
  EXPECT_EQ(d.buffered().find("0\r\n\r\n"), std::string::npos) << d.buffered();
}

// ---------------------------------------------------------------- timeouts, retries, health

TEST_F(ProxyTest, SilentUpstreamGets504AfterReadTimeout) {
  FakeUpstream silent(FakeUpstream::Http([](UpConn& c, const UpRequest&) {
    c.WaitEof(10000);
    return false;
  }));
  StartProxy(Upstream("app", {Srv(silent.address())}, "read_timeout: 300ms"),
             "- {prefix: /, proxy: app}\n");
  const auto t0 = Clock::now();
  Response r = Do(Get("/slow"));
  EXPECT_EQ(r.status, 504);
  EXPECT_GE(MsSince(t0), 250);
  EXPECT_LT(MsSince(t0), 2000);
  ExpectNoInternals(r, &silent);
  // The timed-out connection is closed, not pooled.
  EXPECT_TRUE(WaitFor([&] { return silent.peer_closed() == 1; }, 2000));
}

// The proxy's own error pages say what they are: "502 Bad Gateway", "504
// Gateway Timeout" (RFC 9110 15.6.3, 15.6.5), in the status line and the page.
TEST_F(ProxyTest, GatewayErrorsHaveTheirReasonPhrase) {
  FakeUpstream silent(FakeUpstream::Http([](UpConn& c, const UpRequest&) {
    c.WaitEof(10000);
    return false;
  }));
  StartProxy(Upstream("slow", {Srv(silent.address())}, "read_timeout: 200ms") +
                 Upstream("down", {Srv("127.0.0.1:" + std::to_string(FreePort()))}),
             "- {prefix: /down/, proxy: down}\n- {prefix: /, proxy: slow}\n");
  Response r = Do(Get("/down/x"));
  EXPECT_EQ(r.head.substr(0, r.head.find("\r\n")), "HTTP/1.1 502 Bad Gateway");
  EXPECT_NE(r.body.find("Bad Gateway"), std::string::npos) << r.body;
  r = Do(Get("/slow"));
  EXPECT_EQ(r.head.substr(0, r.head.find("\r\n")), "HTTP/1.1 504 Gateway Timeout");
  EXPECT_NE(r.body.find("Gateway Timeout"), std::string::npos) << r.body;
}

TEST_F(ProxyTest, RetriesIdempotentRequestsOnly) {
  // A closed port first: GETs go on to the next server.
  FakeUpstream good(Named("good"));
  const uint16_t closed = FreePort();
  StartProxy(Upstream("app", {Srv("127.0.0.1:" + std::to_string(closed)), Srv(good.address())}) +
                 Upstream("down", {Srv("127.0.0.1:" + std::to_string(FreePort())),
                                   Srv("127.0.0.1:" + std::to_string(FreePort()))}),
             "- {prefix: /down/, proxy: down}\n- {prefix: /, proxy: app}\n");
  for (int i = 0; i < 5; i++) {
    Response r = Do(Get("/r" + std::to_string(i)));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "good");
  }
  // Every server down: 502.
  Response r = Do(Get("/down/x"));
  EXPECT_EQ(r.status, 502);
  ExpectNoInternals(r);
  r = Do(WithBody("POST", "/down/x", "p"));
  EXPECT_EQ(r.status, 502);
}

TEST_F(ProxyTest, PostIsNotRetriedGetIs) {
  std::atomic<int> seen{0};
  auto hangup = FakeUpstream::Http([&](UpConn&, const UpRequest&) {
    seen++;
    return false;  // read the request, close without a byte
  });
  FakeUpstream a(hangup), b(hangup);
  StartProxy(Upstream("app", {Srv(a.address()), Srv(b.address())}), "- {prefix: /, proxy: app}\n");
  Response r = Do(WithBody("POST", "/p", "once"));
  EXPECT_EQ(r.status, 502);
  ExpectNoInternals(r);
  EXPECT_EQ(seen.load(), 1) << "a POST was sent to a second server";
  r = Do(Get("/g"));
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(seen.load(), 3) << "a GET goes to each server once";
}

TEST_F(ProxyTest, FailedServerIsSkippedUntilFailTimeout) {
  // Accepts, reads the request, closes: a broken server that counts its visits.
  FakeUpstream dead(FakeUpstream::Http([](UpConn&, const UpRequest&) { return false; }));
  FakeUpstream good(Named("good"));
  StartProxy(
      Upstream("app", {Srv(dead.address(), "max_fails: 1, fail_timeout: 2s"), Srv(good.address())}),
      "- {prefix: /, proxy: app}\n");
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  Response r;
  ASSERT_TRUE(c.SendAll(Get("/first")));
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.body, "good");  // the GET went on to the good server
  const auto marked = Clock::now();
  ASSERT_EQ(dead.request_count(), 1u);
  for (int i = 0; i < 20; i++) {
    ASSERT_TRUE(c.SendAll(Get("/n" + std::to_string(i))));
    ASSERT_TRUE(ReadResponse(c, &r));
    EXPECT_EQ(r.body, "good");
  }
  EXPECT_EQ(dead.request_count(), 1u) << "a server marked down was tried again";
  ASSERT_LT(MsSince(marked), 1800) << "too slow to tell";
  // After fail_timeout it gets requests again.
  EXPECT_TRUE(WaitFor(
      [&] {
        Response x;
        return c.SendAll(Get("/later")) && ReadResponse(c, &x) && x.body == "good" &&
               dead.request_count() >= 2;
      },
      5000, 50));
  EXPECT_GE(MsSince(marked), 1800);
}

// ---------------------------------------------------------------- balancing

TEST_F(ProxyTest, RoundRobinFollowsWeights) {
  FakeUpstream a(Named("a")), b(Named("b"));
  StartProxy(Upstream("app", {Srv(a.address(), "weight: 1"), Srv(b.address(), "weight: 3")}),
             "- {prefix: /, proxy: app}\n");
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  std::map<std::string, int> n;
  for (int i = 0; i < 400; i++) {
    ASSERT_TRUE(c.SendAll(Get("/rr")));
    Response r;
    ASSERT_TRUE(ReadResponse(c, &r));
    n[r.body]++;
  }
  EXPECT_NEAR(n["a"], 100, 10);
  EXPECT_NEAR(n["b"], 300, 10);
}

TEST_F(ProxyTest, LeastConnPrefersTheIdleServer) {
  std::atomic<bool> release{false};
  auto script = [&](const std::string& name) {
    return FakeUpstream::Http([&release, name](UpConn& c, const UpRequest& r) {
      if (r.target == "/slow") WaitFor([&] { return release.load(); }, 5000);
      return c.Write(Reply(200, name));
    });
  };
  FakeUpstream a(script("a")), b(script("b"));
  StartProxy(Upstream("app", {Srv(a.address()), Srv(b.address())}, "balance: least_conn"),
             "- {prefix: /, proxy: app}\n");
  Client slow;
  ASSERT_TRUE(slow.Connect(Port()));
  ASSERT_TRUE(slow.SendAll(Get("/slow")));
  ASSERT_TRUE(WaitFor([&] { return a.request_count() + b.request_count() == 1; }, 3000));
  const std::string busy = a.request_count() == 1 ? "a" : "b";
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  for (int i = 0; i < 10; i++) {
    ASSERT_TRUE(c.SendAll(Get("/fast")));
    Response r;
    ASSERT_TRUE(ReadResponse(c, &r));
    EXPECT_NE(r.body, busy) << "request " << i << " went to the busy server";
  }
  release = true;
  Response r;
  ASSERT_TRUE(ReadResponse(slow, &r));
  EXPECT_EQ(r.body, busy);
}

TEST_F(ProxyTest, HashByUriIsSticky) {
  FakeUpstream a(Named("a")), b(Named("b")), c3(Named("c"));
  StartProxy(Upstream("app", {Srv(a.address()), Srv(b.address()), Srv(c3.address())},
                      "balance: hash\nhash_key: uri"),
             "- {prefix: /, proxy: app}\n");
  std::set<std::string> used;
  for (int k = 0; k < 12; k++) {
    const std::string uri = "/item/" + std::to_string(k);
    std::string first;
    for (int i = 0; i < 5; i++) {
      const Response r = Do(Get(uri));
      ASSERT_EQ(r.status, 200);
      if (i == 0) first = r.body;
      EXPECT_EQ(r.body, first) << uri;
    }
    used.insert(first);
  }
  EXPECT_GT(used.size(), 1u) << "every URI hashed to one server";
}

TEST_F(ProxyTest, BackupOnlyWhenPrimariesAreDown) {
  auto primary = std::make_unique<FakeUpstream>(Named("primary"));
  FakeUpstream backup(Named("backup"));
  StartProxy(Upstream("app", {Srv(primary->address()), Srv(backup.address(), "backup: true")}),
             "- {prefix: /, proxy: app}\n");
  for (int i = 0; i < 20; i++) EXPECT_EQ(Do(Get("/b")).body, "primary");
  EXPECT_EQ(backup.accepts(), 0);
  primary->Stop();
  for (int i = 0; i < 5; i++) {
    const Response r = Do(Get("/b"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "backup");
  }
}

// ---------------------------------------------------------------- the pool

TEST_F(ProxyTest, KeepAlivePoolReusesOneConnection) {
  FakeUpstream up(Named("pooled"));
  FakeUpstream nopool(Named("fresh"));
  StartProxy(Upstream("app", {Srv(up.address())}) +
                 Upstream("nopool", {Srv(nopool.address())}, "keepalive: 0"),
             "- {prefix: /fresh/, proxy: nopool}\n- {prefix: /, proxy: app}\n");
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  for (int i = 0; i < 50; i++) {
    ASSERT_TRUE(c.SendAll(Get("/p")));
    Response r;
    ASSERT_TRUE(ReadResponse(c, &r));
    ASSERT_EQ(r.body, "pooled");
  }
  EXPECT_EQ(up.accepts(), 1);
  EXPECT_EQ(up.request_count(), 50u);
  for (int i = 0; i < 10; i++) {
    ASSERT_TRUE(c.SendAll(Get("/fresh/p")));
    Response r;
    ASSERT_TRUE(ReadResponse(c, &r));
    ASSERT_EQ(r.body, "fresh");
  }
  EXPECT_EQ(nopool.accepts(), 10);
  EXPECT_TRUE(WaitFor([&] { return nopool.peer_closed() == 10; }, 2000)) << nopool.peer_closed();
}

// An upstream response with "Connection: close": its connection is not pooled.
TEST_F(ProxyTest, UpstreamConnectionCloseIsNotPooled) {
  FakeUpstream up(FakeUpstream::Canned(Reply(200, "once", "Connection: close\r\n"),
                                       /*close_after=*/true));
  StartProxy(Upstream("app", {Srv(up.address())}), "- {prefix: /, proxy: app}\n");
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  for (int i = 0; i < 5; i++) {
    ASSERT_TRUE(c.SendAll(Get("/c")));
    Response r;
    ASSERT_TRUE(ReadResponse(c, &r));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "once");
    EXPECT_NE(r["connection"], "close");  // the client's connection is another matter
  }
  EXPECT_EQ(up.accepts(), 5);
}

// A pooled connection the upstream closes just as a request goes out on it
// (its keep-alive timeout raced with the proxy's reuse) is no failure of the
// server: the request goes again on a new connection, as nginx does for a
// cached connection, and the server is not marked down.
TEST_F(ProxyTest, StalePooledConnectionIsRetriedOnANewOne) {
  // One response per connection; the second request on it is read, then
  // the connection closes without a byte.
  FakeUpstream up([](UpConn& c) {
    UpRequest r;
    if (!c.ReadRequest(&r) || !c.Write(Reply(200, "fresh:" + r.target))) return;
    c.ReadRequest(&r);
  });
  StartProxy(Upstream("app", {Srv(up.address())}), "- {prefix: /, proxy: app}\n");
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  for (int i = 0; i < 3; i++) {
    ASSERT_TRUE(c.SendAll(Get("/s" + std::to_string(i))));
    Response r;
    ASSERT_TRUE(ReadResponse(c, &r));
    EXPECT_EQ(r.status, 200) << "request " << i;
    EXPECT_EQ(r.body, "fresh:/s" + std::to_string(i));
  }
}

// ---------------------------------------------------------------- streaming

TEST_F(ProxyTest, SlowClientHoldsBackAFastUpstream) {
  constexpr size_t kTotal = 256u << 20, kChunk = 1u << 20;
  FakeUpstream flood(FakeUpstream::Http([&](UpConn& c, const UpRequest&) {
    if (!c.Write("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(kTotal) + "\r\n\r\n"))
      return false;
    const std::string chunk(kChunk, 'f');
    for (size_t sent = 0; sent < kTotal; sent += kChunk)
      if (!c.Write(chunk, 30000)) return false;
    return true;
  }));
  // Under AddressSanitizer freed memory waits in a quarantine (256 MB by
  // default) that a stream's buffer churn fills: this proxy gets a small one.
  const char* asan = getenv("ASAN_OPTIONS");
  const std::string saved = asan ? asan : "";
  setenv("ASAN_OPTIONS", (saved.empty() ? "" : saved + ":").append("quarantine_size_mb=1").c_str(),
         1);
  StartProxy(Upstream("app", {Srv(flood.address())}), "- {prefix: /, proxy: app}\n");
  if (asan)
    setenv("ASAN_OPTIONS", saved.c_str(), 1);
  else
    unsetenv("ASAN_OPTIONS");
  const auto pids = proxy_->WorkerPids();
  ASSERT_EQ(pids.size(), 1u);
  const long start_kb = VmRssKb(pids[0]);
  ASSERT_GT(start_kb, 0);
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(c.SendAll(Get("/flood")));
  long max_kb = start_kb;
  size_t got = 0;
  std::vector<char> buf(kChunk);
  // About 1 MB every 20 ms for 1.5 s: far slower than the upstream writes.
  const auto t0 = Clock::now();
  while (MsSince(t0) < 1500) {
    size_t this_round = 0;
    while (this_round < kChunk) {
      pollfd p{c.fd(), POLLIN, 0};
      if (poll(&p, 1, 2000) <= 0) break;
      const ssize_t n = recv(c.fd(), buf.data(), kChunk - this_round, 0);
      if (n <= 0) break;
      this_round += static_cast<size_t>(n);
    }
    ASSERT_GT(this_round, 0u) << "the stream stalled after " << got << " bytes";
    got += this_round;
    max_kb = std::max(max_kb, VmRssKb(pids[0]));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the slow reader's pace
  }
  EXPECT_GT(got, 10u << 20);
  EXPECT_LT(got, kTotal);
  EXPECT_LT(max_kb - start_kb, 64 * 1024)
      << "worker RSS grew from " << start_kb << " kB to " << max_kb << " kB";
  // The client goes mid-transfer: the upstream connection is closed, not pooled.
  c.Close();
  EXPECT_TRUE(WaitFor([&] { return flood.peer_closed() == 1; }, 5000));
  EXPECT_EQ(flood.accepts(), 1);
}

// The client goes while its request waits for a slow upstream: the proxy
// closes the upstream connection (the response would go nowhere) instead of
// holding it until read_timeout (60 s here).
FakeUpstream::Script WaitsForEof() {
  return FakeUpstream::Http([](UpConn& c, const UpRequest&) {
    c.WaitEof(8000);
    return false;
  });
}

TEST_F(ProxyTest, ClientResetWhileWaitingClosesTheUpstream) {
  FakeUpstream slow(WaitsForEof());
  StartProxy(Upstream("app", {Srv(slow.address())}), "- {prefix: /, proxy: app}\n");
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(c.SendAll(Get("/wait")));
  ASSERT_TRUE(WaitFor([&] { return slow.request_count() == 1; }, 3000));
  c.ResetClose();
  EXPECT_TRUE(WaitFor([&] { return slow.peer_closed() == 1; }, 3000))
      << "the proxy kept the upstream connection of a client that reset";
}

TEST_F(ProxyTest, ClientCloseWhileWaitingClosesTheUpstream) {
  FakeUpstream slow(WaitsForEof());
  StartProxy(Upstream("app", {Srv(slow.address())}), "- {prefix: /, proxy: app}\n");
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(c.SendAll(Get("/wait")));
  ASSERT_TRUE(WaitFor([&] { return slow.request_count() == 1; }, 3000));
  c.Close();
  EXPECT_TRUE(WaitFor([&] { return slow.peer_closed() == 1; }, 3000))
      << "the proxy kept the upstream connection of a client that closed";
}

// ---------------------------------------------------------------- upgrade

TEST_F(ProxyTest, WebSocketUpgradeTunnelsBothWays) {
  FakeUpstream ws(FakeUpstream::Http([](UpConn& c, const UpRequest& r) {
    if (Lower(r.Header("upgrade")) != "websocket") {
      c.Write(Reply(400, "no upgrade"));
      return false;
    }
    if (!c.Write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: abc\r\n\r\n"))
      return false;
    // Echo until the peer closes, or "quit" (then this side closes).
    for (int i = 0; i < 100000; i++) {
      std::string got;
      if (c.ReadSome(&got, 10000) <= 0) return false;
      if (got.find("quit") != std::string::npos) return false;
      if (!c.Write(got)) return false;
    }
    return false;
  }));
  StartProxy(Upstream("app", {Srv(ws.address())}), "- {prefix: /, proxy: app}\n");
  const std::string upgrade = Get("/ws",
                                  "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Sec-WebSocket-Version: 13\r\n");
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(c.SendAll(upgrade));
  Response r;
  ASSERT_TRUE(ReadResponse(c, &r));
  ASSERT_EQ(r.status, 101) << r.head;
  EXPECT_EQ(Lower(r["upgrade"]), "websocket");
  EXPECT_EQ(Lower(r["connection"]), "upgrade");
  EXPECT_EQ(r["sec-websocket-accept"], "abc");
  UpRequest u = ws.last();
  EXPECT_EQ(Lower(u.Header("connection")), "upgrade") << u.head;
  EXPECT_EQ(u.Header("sec-websocket-key"), "dGhlIHNhbXBsZSBub25jZQ==");
  EXPECT_TRUE(c.Echo("hello through the tunnel"));
  EXPECT_TRUE(c.Echo(RandomBytes(200000, 5)));  // binary, bigger than one read
  // The client closes: the tunnel ends, the upstream sees it.
  c.Close();
  EXPECT_TRUE(WaitFor([&] { return ws.peer_closed() == 1; }, 3000));
  // The upstream closes: the client sees it.
  Client d;
  ASSERT_TRUE(d.Connect(Port()));
  ASSERT_TRUE(d.SendAll(upgrade));
  ASSERT_TRUE(ReadResponse(d, &r));
  ASSERT_EQ(r.status, 101);
  EXPECT_TRUE(d.Echo("ping"));
  ASSERT_TRUE(d.SendAll("quit"));
  EXPECT_TRUE(d.WaitClosed(3000));
}

// ---------------------------------------------------------------- pipelining

TEST_F(ProxyTest, PipelinedRequestsBehindAProxiedOneStayInOrder) {
  FakeUpstream up(FakeUpstream::Http([](UpConn& c, const UpRequest& r) {
    if (r.target == "/app/slow") std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return c.Write(Reply(200, "up:" + r.target));
  }));
  StartProxy(Upstream("app", {Srv(up.address())}), "- {prefix: /app/, proxy: app}\n");
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(c.SendAll(Get("/app/slow") + Get("/local.txt") + Get("/app/fast") +
                        Get("/local.txt", "Connection: close\r\n")));
  Response r;
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.body, "up:/app/slow");
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.body, "served by the proxy itself");
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.body, "up:/app/fast");
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.body, "served by the proxy itself");
  EXPECT_EQ(r["connection"], "close");
  EXPECT_TRUE(c.WaitClosed());
}

// ---------------------------------------------------------------- configuration

TEST_F(ProxyTest, ConfigErrorsNameTheKey) {
  const std::string root = "root: " + *dir_ + "/front";
  const std::string good = Upstream("app", {Srv("127.0.0.1:9")});
  struct Case {
    const char* why;
    std::string listeners, extra;
    std::vector<std::string> expect;  // in the output
  };
  const std::vector<Case> cases = {
      {"a route to an unknown upstream",
       ListenerYaml("http", "http", 0, root + "\nroutes:\n  - {prefix: /a/, proxy: nope}"),
       "upstreams:\n" + good,
       {"listeners[0].routes[0].proxy", "'nope' is not an upstream"}},
      {"routes on a non-http listener",
       ListenerYaml("http", "http", 0, root) +
           ListenerYaml("e", "echo", 0, "routes:\n  - {prefix: /a/, proxy: app}"),
       "upstreams:\n" + good,
       {"listeners[1].routes", "http"}},
      {"a bad server address",
       ListenerYaml("http", "http", 0, root),
       "upstreams:\n" + Upstream("app", {Srv("127.0.0.1:99999")}),
       {"upstreams[0].servers[0].address", "99999"}},
      {"an address without a port",
       ListenerYaml("http", "http", 0, root),
       "upstreams:\n" + Upstream("app", {Srv("localhost")}),
       {"upstreams[0].servers[0].address", "host:port"}},
      {"duplicate upstream names",
       ListenerYaml("http", "http", 0, root),
       "upstreams:\n" + good + good,
       {"upstreams[1].name", "'app'"}},
      {"every server a backup",
       ListenerYaml("http", "http", 0, root),
       "upstreams:\n" + Upstream("app", {Srv("127.0.0.1:9", "backup: true")}),
       {"upstreams[0].servers", "backup"}},
      {"a route over /kv",
       ListenerYaml("http", "http", 0, root + "\nroutes:\n  - {prefix: /kv/, proxy: app}"),
       "upstreams:\n" + good,
       {"listeners[0].routes[0]", "/kv"}},
      {"a route over /_health",
       ListenerYaml("http", "http", 0, root + "\nroutes:\n  - {exact: /_health, proxy: app}"),
       "upstreams:\n" + good,
       {"listeners[0].routes[0]", "/_health"}},
  };
  {
    Server ok(ListenerYaml("http", "http", 0, root + "\nroutes:\n  - {prefix: /a/, proxy: app}"),
              "upstreams:\n" + good);
    const RunResult rr = RunBinary({"-t", "-c", ok.config_path()});
    EXPECT_EQ(rr.exit_code, 0) << rr.output;
  }
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.why);
    Server s(tc.listeners, tc.extra);
    const RunResult rr = RunBinary({"-t", "-c", s.config_path()});
    EXPECT_NE(rr.exit_code, 0) << rr.output;
    for (const auto& e : tc.expect)
      EXPECT_NE(rr.output.find(e), std::string::npos) << "'" << e << "' not in:\n" << rr.output;
  }
}

}  // namespace
}  // namespace pf::test
