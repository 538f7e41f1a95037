// tests/integration/test_security.cc: attacks against the real binary, and
// the defences that stop them (docs/security.md): a browser page speaking
// HTTP to the Redis and kv-json ports, DNS rebinding (the Host check),
// protected mode, password guessing, request and connection floods, basic
// auth, X-Forwarded-For spoofing, log files swapped for links while the
// workers run as `user`, and the privilege drop (user, chroot, systemd).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

namespace fs = std::filesystem;

void WriteAll(const std::string& path, const std::string& data) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

// A folder of its own under /tmp (docroots, htpasswd files, logs), removed at the end.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/preforkd-sec-XXXXXX";
    dir_ = mkdtemp(tmpl) ? tmpl : "";
    EXPECT_FALSE(dir_.empty()) << "mkdtemp: " << std::strerror(errno);
  }
  ~TempDir() {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& rel = "") const {
    return rel.empty() ? dir_ : dir_ + "/" + rel;
  }
  void Write(const std::string& rel, const std::string& data) const { WriteAll(path(rel), data); }

 private:
  std::string dir_;
};

bool Contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

std::string Base64(const std::string& in) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], k[v & 63]};
  }
  if (in.size() - i == 1) {
    const uint32_t v = uint8_t(in[i]) << 16;
    out += {k[v >> 18], k[(v >> 12) & 63], '=', '='};
  } else if (in.size() - i == 2) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], '='};
  }
  return out;
}

std::string BasicHeader(const std::string& user, const std::string& password) {
  return "Authorization: Basic " + Base64(user + ":" + password) + "\r\n";
}

// ------------------------------------------------------------------ HTTP

struct HttpReply {
  int status = 0;  // 0: no (complete) response
  std::string head, body;
  // The value of header `name` (case-insensitive), "" when absent.
  std::string Header(const std::string& name) const {
    std::istringstream lines(head);
    std::string line;
    while (std::getline(lines, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.size() <= name.size() || line[name.size()] != ':') continue;
      if (strncasecmp(line.c_str(), name.c_str(), name.size()) != 0) continue;
      size_t v = name.size() + 1;
      while (v < line.size() && line[v] == ' ') v++;
      return line.substr(v);
    }
    return "";
  }
  bool Has(const std::string& name) const {
    std::string lower = "\n" + name + ":";
    std::string h = "\n" + head;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    std::transform(h.begin(), h.end(), h.begin(), ::tolower);
    return Contains(h, lower);
  }
};

// One request on a fresh connection (Connection: close), read to the end.
// `host` "" sends no Host header.
HttpReply Http(uint16_t port, const std::string& target, const std::string& host,
               const std::string& more_headers = "", const char* from = nullptr,
               const std::string& method = "GET", const std::string& body = "") {
  HttpReply r;
  Client c;
  if (!c.Connect(port, 5000, from)) return r;
  std::string req = method + " " + target + " HTTP/1.1\r\n";
  if (!host.empty()) req += "Host: " + host + "\r\n";
  req += more_headers;
  if (!body.empty() || method == "PUT" || method == "POST")
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "Connection: close\r\n\r\n" + body;
  if (!c.SendAll(req)) return r;
  c.WaitClosed(10000);
  const std::string& got = c.buffered();
  const size_t end = got.find("\r\n\r\n");
  if (got.size() < 12 || end == std::string::npos || got.compare(0, 5, "HTTP/") != 0) return r;
  r.head = got.substr(0, end + 2);
  r.body = got.substr(end + 4);
  r.status = std::atoi(got.substr(9, 3).c_str());
  return r;
}

std::string Local(uint16_t port) { return "localhost:" + std::to_string(port); }

// Sum of preforkd_refused_total{...,reason="REASON"} over every line of
// /_metrics (one line per worker); -1 if /_metrics did not answer.
long Refused(uint16_t http_port, const std::string& reason) {
  const HttpReply r = Http(http_port, "/_metrics", Local(http_port));
  if (r.status != 200) return -1;
  long sum = 0;
  std::istringstream lines(r.body);
  std::string line;
  const std::string tag = "reason=\"" + reason + "\"}";
  while (std::getline(lines, line)) {
    if (line.rfind("preforkd_refused_total{", 0) != 0) continue;
    const size_t at = line.find(tag);
    if (at == std::string::npos) continue;
    sum += std::atol(line.c_str() + at + tag.size());
  }
  return sum;
}

// Waits until the refusal counter `reason` is at least `n`; the last value seen.
long WaitRefused(uint16_t http_port, const std::string& reason, long n) {
  long v = -1;
  WaitFor(
      [&] {
        v = Refused(http_port, reason);
        return v >= n;
      },
      5000, 20);
  return v;
}

// An http listener for /_metrics (root: the examples' docroot).
std::string OpsListener(const std::string& name = "ops") {
  return ListenerYaml(name, "http", 0, "root: " + SourceRoot() + "/conf/www");
}

// Exactly what Firefox 128 sends for
//   fetch('http://127.0.0.1:PORT/', {method: 'POST', body: BODY})
// from a page of another origin (a text body: no CORS preflight).
std::string FirefoxPost(uint16_t port, const std::string& body) {
  return "POST / HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 "
         "Firefox/128.0\r\nAccept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nContent-Type: "
         "text/plain;charset=UTF-8\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\nOrigin: null\r\nConnection: keep-alive\r\n\r\n" + body;
}

// The error log written after byte `from` contains `needle` (polled).
bool WaitLogAfter(const Server& s, size_t from, const std::string& needle, int ms = 5000) {
  return WaitFor(
      [&] {
        const std::string log = s.Log();
        return log.size() > from && Contains(log.substr(from), needle);
      },
      ms, 10);
}

// The worker (one of `workers`) holding the server side of `c`'s
// connection to `server_port`, from /proc/net/tcp and the workers' fds;
// 0 when none does (not accepted yet, or closed).
pid_t HolderOf(const Client& c, uint16_t server_port, const std::vector<pid_t>& workers) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  if (getsockname(c.fd(), reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
  const unsigned long client_port = ntohs(a.sin_port);
  auto port_of = [](const std::string& s) {
    const size_t colon = s.find(':');
    return colon == std::string::npos ? 0ul : std::stoul(s.substr(colon + 1), nullptr, 16);
  };
  std::ifstream in("/proc/net/tcp");
  std::string line, inode;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string sl, local, remote, st, queues, timer, retr, uid, timeout, ino;
    f >> sl >> local >> remote >> st >> queues >> timer >> retr >> uid >> timeout >> ino;
    if (port_of(local) == static_cast<unsigned long>(server_port) &&
        port_of(remote) == client_port) {
      inode = ino;
      break;
    }
  }
  if (inode.empty() || inode == "0") return 0;
  const std::string want = "socket:[" + inode + "]";
  for (pid_t p : workers) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(p) + "/fd", ec)) {
      char buf[128];
      const ssize_t n = readlink(e.path().c_str(), buf, sizeof buf - 1);
      if (n > 0 && std::string(buf, static_cast<size_t>(n)) == want) return p;
    }
  }
  return 0;
}

bool IsRoot() { return geteuid() == 0; }

uid_t NobodyUid() {
  const passwd* pw = getpwnam("nobody");
  return pw ? pw->pw_uid : static_cast<uid_t>(-1);
}

// =====================================================================
// 1. RESP: a web page's POST must not run Redis commands.

const char* kCrossProtocolError = "-ERR HTTP request on the Redis protocol port";

TEST(CrossProtocol, BrowserPostToTheRedisPortRunsNothing) {
  Server s(ListenerYaml("resp", "resp") + OpsListener());
  ASSERT_TRUE(s.Start());
  const uint16_t port = s.Port("resp");
  Client setter;
  ASSERT_TRUE(setter.Connect(port));
  ASSERT_EQ(RespCall(setter, {"SET", "keep", "1"}), "+OK");

  Client attacker;
  ASSERT_TRUE(attacker.Connect(port));
  ASSERT_TRUE(attacker.SendAll(FirefoxPost(port, "FLUSHALL\r\nSET ff 1\r\n")));
  std::string line;
  ASSERT_TRUE(attacker.RecvLine(&line));
  EXPECT_TRUE(line.starts_with(kCrossProtocolError)) << line;
  EXPECT_TRUE(attacker.WaitClosed());
  EXPECT_EQ(attacker.buffered(), "") << "more than the one error line";

  Client check;
  ASSERT_TRUE(check.Connect(port));
  EXPECT_EQ(RespCall(check, {"GET", "keep"}), "$1") << "FLUSHALL ran";
  EXPECT_EQ(RespCall(check, {"EXISTS", "ff"}), ":0") << "SET ff ran";
  EXPECT_TRUE(s.WaitLog("Possible SECURITY ATTACK detected"));
  EXPECT_GE(WaitRefused(s.Port("ops"), "cross_protocol", 1), 1);
}

// POST and Host: are never commands (any case, any position, inline or
// multibulk); an HTTP request line as the first inline command is not one
// either. Commands pipelined after the trigger never run.
TEST(CrossProtocol, PostHostAndRequestLinesAnywhereCloseTheConnection) {
  Server s(ListenerYaml("resp", "resp") + OpsListener());
  ASSERT_TRUE(s.Start());
  const uint16_t port = s.Port("resp");
  struct Case {
    std::string send;
    std::vector<std::string> before;  // replies expected before the error
    std::string marker;               // a key the pipelined SET after the trigger names
  };
  const std::vector<Case> cases = {
      {"post / HTTP/1.1\r\nSET m1 1\r\n", {}, "m1"},
      {"PING\r\nhOsT: 127.0.0.1\r\nSET m2 1\r\n", {"+PONG"}, "m2"},
      {Resp({"PING"}) + Resp({"POST", "/"}) + Resp({"SET", "m3", "1"}), {"+PONG"}, "m3"},
      {Resp({"Host:", "evil.example"}) + Resp({"SET", "m4", "1"}), {}, "m4"},
      {Resp({"SET", "m5a", "1"}) + Resp({"pOsT"}) + Resp({"SET", "m5", "1"}), {"+OK"}, "m5"},
      {"GET / HTTP/1.1\r\nSET m6 1\r\n", {}, "m6"},
      {"PUT /x HTTP/1.0\r\nSET m7 1\r\n", {}, "m7"},
      {"CONNECT a:1 HTTP/1.1\r\nSET m8 1\r\n", {}, "m8"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.send);
    Client c;
    ASSERT_TRUE(c.Connect(port));
    ASSERT_TRUE(c.SendAll(k.send));
    for (const std::string& want : k.before) {
      std::string r;
      ASSERT_TRUE(ReadReply(c, &r));
      EXPECT_EQ(r, want);
    }
    std::string line;
    ASSERT_TRUE(c.RecvLine(&line)) << c.buffered();
    EXPECT_TRUE(line.starts_with(kCrossProtocolError)) << line;
    EXPECT_TRUE(c.WaitClosed());
    Client check;
    ASSERT_TRUE(check.Connect(port));
    EXPECT_EQ(RespCall(check, {"EXISTS", k.marker}), ":0");
  }
  EXPECT_GE(WaitRefused(s.Port("ops"), "cross_protocol", static_cast<long>(cases.size())),
            static_cast<long>(cases.size()));

  // Telnet users are fine: inline commands that are not HTTP-shaped run.
  Client t;
  ASSERT_TRUE(t.Connect(port));
  ASSERT_TRUE(t.SendAll("SET a b\r\n"));
  std::string r;
  ASSERT_TRUE(ReadReply(t, &r));
  EXPECT_EQ(r, "+OK");
  ASSERT_TRUE(t.SendAll("GET a\r\n"));
  ASSERT_TRUE(ReadReply(t, &r));
  EXPECT_EQ(r, "$b");
  Client t2;  // "GET somekey" as the very first inline command
  ASSERT_TRUE(t2.Connect(port));
  ASSERT_TRUE(t2.SendAll("GET a\r\n"));
  ASSERT_TRUE(ReadReply(t2, &r));
  EXPECT_EQ(r, "$b");
  EXPECT_EQ(RespCall(t2, {"PING"}), "+PONG");
}

// =====================================================================
// 2. kv-json: the first line must be a JSON object; bad lines are bounded.

TEST(KvJsonGuard, BrowserPostWithAJsonBodyRunsNothing) {
  Server s(ListenerYaml("json", "kv-json") + ListenerYaml("resp", "resp") + OpsListener());
  ASSERT_TRUE(s.Start());
  const uint16_t port = s.Port("json");
  Client a;
  ASSERT_TRUE(a.Connect(port));
  ASSERT_TRUE(a.SendAll(FirefoxPost(port, "{\"action\":\"set\",\"key\":\"x\",\"value\":\"1\"}\n")));
  std::string line;
  ASSERT_TRUE(a.RecvLine(&line));
  EXPECT_TRUE(Contains(line, "\"ok\":false")) << line;
  EXPECT_TRUE(Contains(line, "\"code\":\"BAD_JSON\"")) << line;
  EXPECT_TRUE(a.WaitClosed());
  EXPECT_EQ(a.buffered(), "") << "more than the one error line";

  Client b;
  ASSERT_TRUE(b.Connect(port));
  const std::string got = JsonCall(b, "{\"action\":\"get\",\"key\":\"x\"}");
  EXPECT_TRUE(Contains(got, "NOT_FOUND")) << got;
  Client r;
  ASSERT_TRUE(r.Connect(s.Port("resp")));
  EXPECT_EQ(RespCall(r, {"EXISTS", "x"}), ":0");
  EXPECT_GE(WaitRefused(s.Port("ops"), "cross_protocol", 1), 1);
}

// Sends `n` bad lines (alternately not JSON and an unknown action), each
// answered with an error line.
void SendBadLines(Client& c, int n) {
  for (int i = 0; i < n; i++) {
    const std::string got = JsonCall(c, i % 2 ? "nope" : "{\"action\":\"nope\"}");
    EXPECT_TRUE(Contains(got, "\"ok\":false")) << "bad line " << i + 1 << ": " << got;
    EXPECT_FALSE(Contains(got, "max_bad_lines")) << "bad line " << i + 1 << ": " << got;
  }
}

const char* kPing = "{\"action\":\"ping\"}";

// `max` bad lines close the connection; one less does not.
void ExpectMaxBadLines(uint16_t port, int max) {
  Client open;
  ASSERT_TRUE(open.Connect(port));
  ASSERT_TRUE(Contains(JsonCall(open, kPing), "\"ok\":true"));
  SendBadLines(open, max - 1);
  EXPECT_TRUE(Contains(JsonCall(open, kPing), "\"ok\":true")) << "closed after " << max - 1;

  Client cut;
  ASSERT_TRUE(cut.Connect(port));
  ASSERT_TRUE(Contains(JsonCall(cut, kPing), "\"ok\":true"));
  SendBadLines(cut, max);
  std::string last;
  ASSERT_TRUE(cut.RecvLine(&last)) << "no line after the bad line that reached the limit";
  EXPECT_TRUE(Contains(last, "max_bad_lines")) << last;
  EXPECT_TRUE(Contains(last, "\"ok\":false")) << last;
  EXPECT_TRUE(cut.WaitClosed());
}

TEST(KvJsonGuard, EightBadLinesCloseTheConnectionSevenDoNot) {
  Server s(ListenerYaml("json", "kv-json"));
  ASSERT_TRUE(s.Start());
  ExpectMaxBadLines(s.Port("json"), 8);
}

TEST(KvJsonGuard, MaxBadLinesIsConfigurable) {
  Server s(ListenerYaml("json", "kv-json"), "limits: {max_bad_lines: 3}\n");
  ASSERT_TRUE(s.Start());
  ExpectMaxBadLines(s.Port("json"), 3);
}

// =====================================================================
// 3. HTTP Host check (DNS rebinding).

TEST(HostCheck, UnknownHostsGet421) {
  TempDir d;
  d.Write("www/index.html", "<p>hi</p>\n");
  const std::string root = "root: " + d.path("www");
  Server s(ListenerYaml("resp", "resp") + ListenerYaml("http", "http", 0, root) +
           ListenerYaml("lax", "http", 0, root + "\nstrict_host: false") +
           ListenerYaml("app", "http", 0, root + "\nserver_names: [app.test]") +
           ListenerYaml("any", "http", 0, root + "\nserver_names: [\"*\"]"));
  ASSERT_TRUE(s.Start());
  Client r;
  ASSERT_TRUE(r.Connect(s.Port("resp")));
  ASSERT_EQ(RespCall(r, {"SET", "present", "value1"}), "+OK");
  long misdirected = 0;
  auto expect421 = [&](uint16_t port, const std::string& target, const std::string& host) {
    const HttpReply h = Http(port, target, host);
    EXPECT_EQ(h.status, 421) << target << " Host: " << host << "\n" << h.head;
    misdirected++;
  };

  const uint16_t http = s.Port("http");
  const std::string evil = "evil.example:" + std::to_string(http);
  expect421(http, "/kv/somekey", evil);
  expect421(http, "/kv/present", evil);
  EXPECT_EQ(Http(http, "/kv/somekey", Local(http)).status, 404);
  HttpReply h = Http(http, "/kv/present", Local(http));
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "value1");
  // Port ignored, case-insensitive; the loopback names and the socket's own address.
  for (const std::string& host :
       std::vector<std::string>{"LocalHost", "localhost:1", "127.0.0.1:" + std::to_string(http),
                                "[::1]:" + std::to_string(http), "127.0.0.1"}) {
    h = Http(http, "/kv/present", host);
    EXPECT_EQ(h.status, 200) << "Host: " << host;
  }
  for (const char* ops : {"/_stats", "/_metrics", "/_health"}) expect421(http, ops, evil);
  EXPECT_EQ(Http(http, "/_health", Local(http)).status, 200);
  // A loopback listener is strict by default: static files too.
  expect421(http, "/index.html", evil);
  h = Http(http, "/index.html", Local(http));
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "<p>hi</p>\n");

  // strict_host: false: files for any name, the store still not.
  const uint16_t lax = s.Port("lax");
  h = Http(lax, "/index.html", evil);
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "<p>hi</p>\n");
  expect421(lax, "/kv/present", evil);
  expect421(lax, "/_stats", evil);

  // server_names replaces the defaults.
  const uint16_t app = s.Port("app");
  h = Http(app, "/kv/present", "app.test:" + std::to_string(app));
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "value1");
  EXPECT_EQ(Http(app, "/index.html", "APP.test").status, 200);
  expect421(app, "/kv/present", Local(app));
  expect421(app, "/index.html", "localhost");
  expect421(app, "/kv/present", evil);

  // "*": anything.
  const uint16_t any = s.Port("any");
  h = Http(any, "/kv/present", evil);
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "value1");
  EXPECT_EQ(Http(any, "/index.html", "whatever.example").status, 200);
  EXPECT_EQ(Http(any, "/_health", "whatever.example").status, 200);

  EXPECT_GE(WaitRefused(http, "misdirected", misdirected), misdirected);
}

// =====================================================================
// 4. Protected mode.

TEST(ProtectedMode, ClientsOutsideLocalNetworksAreDenied) {
  Server s(ListenerYaml("resp", "resp") + ListenerYaml("json", "kv-json") + OpsListener(),
           "local_networks: [127.0.0.1/32]\n");
  ASSERT_TRUE(s.Start());
  Client r;
  ASSERT_TRUE(r.Connect(s.Port("resp"), 5000, "127.0.0.2"));
  ASSERT_TRUE(r.SendAll(Resp({"SET", "pm", "1"})));
  std::string line;
  ASSERT_TRUE(r.RecvLine(&line));
  EXPECT_TRUE(line.starts_with("-DENIED preforkd is running in protected mode")) << line;
  EXPECT_TRUE(r.WaitClosed());

  Client j;
  ASSERT_TRUE(j.Connect(s.Port("json"), 5000, "127.0.0.2"));
  ASSERT_TRUE(j.SendAll("{\"action\":\"set\",\"key\":\"pj\",\"value\":\"1\"}\n"));
  ASSERT_TRUE(j.RecvLine(&line));
  EXPECT_TRUE(Contains(line, "\"code\":\"DENIED\"")) << line;
  EXPECT_TRUE(j.WaitClosed());

  // From 127.0.0.1 both work, and nothing the denied clients sent ran.
  Client lr;
  ASSERT_TRUE(lr.Connect(s.Port("resp")));
  EXPECT_EQ(RespCall(lr, {"EXISTS", "pm", "pj"}), ":0");
  EXPECT_EQ(RespCall(lr, {"SET", "here", "1"}), "+OK");
  Client lj;
  ASSERT_TRUE(lj.Connect(s.Port("json")));
  const std::string got = JsonCall(lj, "{\"action\":\"get\",\"key\":\"here\"}");
  EXPECT_TRUE(Contains(got, "\"result\":\"1\"")) << got;

  EXPECT_GE(WaitRefused(s.Port("ops"), "protected_mode", 2), 2);
}

TEST(ProtectedMode, APasswordAdmitsRemoteClientsThatMustAuth) {
  Server s(ListenerYaml("resp", "resp"),
           "local_networks: [127.0.0.1/32]\nkv: {password: secret}\n");
  ASSERT_TRUE(s.Start());
  Client r;
  ASSERT_TRUE(r.Connect(s.Port("resp"), 5000, "127.0.0.2"));
  const std::string first = RespCall(r, {"GET", "k"});
  EXPECT_TRUE(first.starts_with("-NOAUTH")) << first;
  EXPECT_EQ(RespCall(r, {"AUTH", "secret"}), "+OK");
  EXPECT_EQ(RespCall(r, {"SET", "k", "v"}), "+OK");
  EXPECT_EQ(RespCall(r, {"GET", "k"}), "$v");
}

TEST(ProtectedMode, OffAdmitsRemoteClientsWithoutAPassword) {
  Server s(ListenerYaml("resp", "resp") + ListenerYaml("json", "kv-json"),
           "local_networks: [127.0.0.1/32]\nprotected_mode: false\n");
  ASSERT_TRUE(s.Start());
  Client r;
  ASSERT_TRUE(r.Connect(s.Port("resp"), 5000, "127.0.0.2"));
  EXPECT_EQ(RespCall(r, {"SET", "k", "v"}), "+OK");
  EXPECT_EQ(RespCall(r, {"GET", "k"}), "$v");
  Client j;
  ASSERT_TRUE(j.Connect(s.Port("json"), 5000, "127.0.0.2"));
  const std::string got = JsonCall(j, "{\"action\":\"get\",\"key\":\"k\"}");
  EXPECT_TRUE(Contains(got, "\"result\":\"v\"")) << got;
}

TEST(ProtectedMode, TheMasterWarnsAboutListenersOpenBeyondLocalNetworks) {
  // With only 127.0.0.2 local, 127.0.0.1 stands for a network address.
  Server s(ListenerYaml("resp", "resp") + ListenerYaml("echo", "echo"),
           "local_networks: [127.0.0.2/32]\n");
  ASSERT_TRUE(s.Start());
  EXPECT_TRUE(s.WaitLog("listener resp (127.0.0.1:" + std::to_string(s.Port("resp")) +
                        ") is open beyond local_networks and kv.password is empty"))
      << s.Log();
  EXPECT_FALSE(Contains(s.Log(), "listener echo")) << s.Log();  // no data there
}

// =====================================================================
// 5. The pub/sub admin token does not open the store.

TEST(AdminToken, IsNotTheDataPassword) {
  Server s(ListenerYaml("resp", "resp") + OpsListener("http"),
           "kv: {password: datapw}\npubsub: {admin_token: admintok}\n");
  ASSERT_TRUE(s.Start());
  Client c;
  ASSERT_TRUE(c.Connect(s.Port("resp")));
  EXPECT_EQ(RespCall(c, {"AUTH", "admin", "admintok"}), "+OK");
  std::string got = RespCall(c, {"GET", "k"});
  EXPECT_TRUE(got.starts_with("-NOAUTH")) << got;
  got = RespCall(c, {"SET", "k", "v"});
  EXPECT_TRUE(got.starts_with("-NOAUTH")) << got;
  EXPECT_EQ(RespCall(c, {"AUTH", "datapw"}), "+OK");
  EXPECT_EQ(RespCall(c, {"SET", "k", "v"}), "+OK");
  EXPECT_EQ(RespCall(c, {"GET", "k"}), "$v");

  const uint16_t http = s.Port("http");
  EXPECT_EQ(Http(http, "/kv/k", Local(http)).status, 401);
  EXPECT_EQ(Http(http, "/kv/k", Local(http), "Authorization: Bearer admintok\r\n").status, 401);
  const HttpReply h = Http(http, "/kv/k", Local(http), "Authorization: Bearer datapw\r\n");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "v");
}

// =====================================================================
// 6. Password guessing is throttled per client address, over all workers.

const char* kThrottled = "-ERR too many failed authentication attempts from your address";

TEST(AuthBruteForce, FailuresAreCountedPerAddressOverAllWorkers) {
  Server s(ListenerYaml("resp", "resp") + OpsListener("http"),
           "kv: {password: right}\nlimits: {auth_failures_per_minute: 5}\n");
  ASSERT_TRUE(s.Start());
  const uint16_t port = s.Port("resp");
  const std::vector<pid_t> workers = s.WorkerPids();
  ASSERT_EQ(workers.size(), 2u);
  // Connections on both workers: five for the failures (neither worker
  // sees five of them), one more for the refused attempt.
  std::vector<Client> conns;
  std::map<pid_t, int> per;
  for (int i = 0; i < 200 && conns.size() < 6; i++) {
    Client c;
    ASSERT_TRUE(c.Connect(port));
    RespCall(c, {"PING"});  // accepted (the reply is NOAUTH or PONG)
    const pid_t w = HolderOf(c, port, workers);
    ASSERT_NE(w, 0) << "no worker holds the connection";
    if (conns.size() < 5 && per[w] >= 3) continue;
    per[w]++;
    conns.push_back(std::move(c));
  }
  ASSERT_EQ(conns.size(), 6u);
  ASSERT_EQ(per.size(), 2u) << "the connections did not reach both workers";
  for (int i = 0; i < 5; i++) {
    const std::string got = RespCall(conns[i], {"AUTH", "x"});
    EXPECT_TRUE(got.starts_with("-WRONGPASS")) << "attempt " << i + 1 << ": " << got;
  }
  std::string got = RespCall(conns[5], {"AUTH", "right"});
  EXPECT_TRUE(got.starts_with(kThrottled)) << got;
  got = RespCall(conns[0], {"AUTH", "right"});
  EXPECT_TRUE(got.starts_with(kThrottled)) << got;
  got = RespCall(conns[5], {"GET", "k"});
  EXPECT_TRUE(got.starts_with("-NOAUTH")) << got;

  // Another address is not affected.
  Client other;
  ASSERT_TRUE(other.Connect(port, 5000, "127.0.0.2"));
  EXPECT_EQ(RespCall(other, {"AUTH", "right"}), "+OK");
  EXPECT_EQ(RespCall(other, {"SET", "k", "v"}), "+OK");

  // HTTP /kv credentials count the same way (from a third address).
  const uint16_t http = s.Port("http");
  for (int i = 0; i < 5; i++) {
    const HttpReply h =
        Http(http, "/kv/k", Local(http), BasicHeader("default", "wrong"), "127.0.0.3");
    EXPECT_EQ(h.status, 401) << "attempt " << i + 1;
  }
  EXPECT_EQ(Http(http, "/kv/k", Local(http), BasicHeader("default", "right"), "127.0.0.3").status,
            429);
  // ...and 127.0.0.1, throttled by its RESP failures, is refused over HTTP too.
  EXPECT_EQ(Http(http, "/kv/k", Local(http), BasicHeader("default", "right")).status, 429);
  // A fresh address with the right password reads the key.
  const HttpReply ok =
      Http(http, "/kv/k", Local(http), BasicHeader("default", "right"), "127.0.0.4");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "v");

  EXPECT_TRUE(s.WaitLog("failed authentication from 127.0.0.1"));
  EXPECT_GE(WaitRefused(http, "auth_failed", 10), 10);
  EXPECT_GE(WaitRefused(http, "auth_throttled", 1), 1);
}

// Reads chat lines until one starts with "!" or "* authenticated"; "" if none.
std::string ChatAuthReply(Client& c) {
  std::string line;
  while (c.RecvLine(&line)) {
    if (line.starts_with("!") || line.starts_with("* authenticated")) return line;
  }
  return "";
}

TEST(AuthBruteForce, ChatAuthCountsToo) {
  Server s(ListenerYaml("chat", "chat") + OpsListener("http"),
           "pubsub: {admin_token: chatadmin1}\nlimits: {auth_failures_per_minute: 5}\n");
  ASSERT_TRUE(s.Start());
  Client c;
  ASSERT_TRUE(c.Connect(s.Port("chat")));
  std::string got;
  ASSERT_TRUE(c.RecvUntil("joined [lobby]", &got)) << got;
  for (int i = 0; i < 5; i++) {
    ASSERT_TRUE(c.SendAll("/auth wrongtoken\n"));
    EXPECT_EQ(ChatAuthReply(c), "! wrong token") << "attempt " << i + 1;
  }
  ASSERT_TRUE(c.SendAll("/auth chatadmin1\n"));
  EXPECT_TRUE(ChatAuthReply(c).starts_with("! too many failed authentication attempts"));
  // Another address is admitted with the right token.
  Client d;
  ASSERT_TRUE(d.Connect(s.Port("chat"), 5000, "127.0.0.2"));
  ASSERT_TRUE(d.RecvUntil("joined [lobby]", &got)) << got;
  ASSERT_TRUE(d.SendAll("/auth chatadmin1\n"));
  EXPECT_EQ(ChatAuthReply(d), "* authenticated as admin");
  EXPECT_GE(WaitRefused(s.Port("http"), "auth_failed", 5), 5);
}

TEST(CrossProtocol, BrowserPostToTheChatPortSaysNothing) {
  // A page's POST body would be chat lines in the victim's name.
  Server s(ListenerYaml("chat", "chat"));
  ASSERT_TRUE(s.Start());
  Client watcher;
  ASSERT_TRUE(watcher.Connect(s.Port("chat")));
  std::string got;
  ASSERT_TRUE(watcher.RecvUntil("joined [lobby]", &got)) << got;
  Client page;
  ASSERT_TRUE(page.Connect(s.Port("chat")));
  const std::string body = "/nick mallory\nhello from a web page\n";
  ASSERT_TRUE(page.SendAll("POST / HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(s.Port("chat")) +
                           "\r\nContent-Type: text/plain\r\nContent-Length: " +
                           std::to_string(body.size()) + "\r\n\r\n" + body));
  ASSERT_TRUE(page.WaitClosed(5000));
  EXPECT_TRUE(Contains(page.buffered(), "HTTP request on the chat port")) << page.buffered();
  EXPECT_FALSE(Contains(page.buffered(), "mallory")) << page.buffered();
  // The watcher saw no message: a line of its own arrives first.
  Client other;
  ASSERT_TRUE(other.Connect(s.Port("chat")));
  ASSERT_TRUE(other.RecvUntil("joined [lobby]", &got)) << got;
  ASSERT_TRUE(other.SendAll("fence\n"));
  ASSERT_TRUE(watcher.RecvUntil("fence", &got)) << got;
  EXPECT_FALSE(Contains(got, "hello from a web page")) << got;
  // A nick that starts a line as a method would is still a chat line.
  ASSERT_TRUE(other.SendAll("GET me a coffee\n"));
  ASSERT_TRUE(watcher.RecvUntil("GET me a coffee", &got)) << got;
}

// =====================================================================
// 7. limit_req, one bucket per client address over all workers.

struct AbResult {
  int exit_code = -1;
  long complete = -1, non2xx = 0;
  double seconds = -1;
  std::string output;
};

AbResult RunAb(const std::string& args) {
  AbResult r;
  r.exit_code = Sh("timeout 30 ab " + args, &r.output);
  std::istringstream lines(r.output);
  std::string line;
  while (std::getline(lines, line)) {
    auto value = [&](const char* key) -> const char* {
      return line.rfind(key, 0) == 0 ? line.c_str() + std::strlen(key) : nullptr;
    };
    if (const char* v = value("Complete requests:")) r.complete = std::atol(v);
    if (const char* v = value("Non-2xx responses:")) r.non2xx = std::atol(v);
    if (const char* v = value("Time taken for tests:")) r.seconds = std::atof(v);
  }
  return r;
}

TEST(RateLimit, HttpRequestsOverTheRateGet429SharedByAllWorkers) {
  std::string which;
  if (Sh("command -v ab", &which) != 0)
    GTEST_FAIL() << "ab (apache2-utils) is missing: apt-get install -y apache2-utils";
  TempDir d;
  d.Write("www/index.html", "<p>hi</p>\n");
  Server s(ListenerYaml("http", "http", 0,
                        "root: " + d.path("www") + "\nlimit_req: {rate: 20r/s, burst: 10}") +
           OpsListener());
  ASSERT_TRUE(s.Start());
  const uint16_t http = s.Port("http");
  const AbResult ab = RunAb("-n 300 -c 4 http://127.0.0.1:" + std::to_string(http) + "/index.html");
  ASSERT_EQ(ab.exit_code, 0) << ab.output;
  ASSERT_EQ(ab.complete, 300) << ab.output;
  ASSERT_GT(ab.seconds, 0) << ab.output;
  const long ok = ab.complete - ab.non2xx;
  // rate 20/s with burst 10: 11 at once, then 20 a second, for the whole
  // server (per-worker buckets would let through about twice as many).
  EXPECT_GE(ok, 11) << ab.output;
  EXPECT_LE(static_cast<double>(ok), 11 + 20 * ab.seconds + 5) << ab.output;
  EXPECT_GT(ab.non2xx, 0) << ab.output;

  // One more raw request over the rate: 429 with Retry-After.
  HttpReply h;
  for (int i = 0; i < 100 && h.status != 429; i++) h = Http(http, "/index.html", Local(http));
  ASSERT_EQ(h.status, 429) << h.head;
  EXPECT_TRUE(h.Has("Retry-After")) << h.head;
  EXPECT_GE(std::atoi(h.Header("Retry-After").c_str()), 1) << h.head;
  // Another address has its own bucket.
  h = Http(http, "/index.html", Local(http), "", "127.0.0.2");
  EXPECT_EQ(h.status, 200) << h.head;
  EXPECT_GE(WaitRefused(s.Port("ops"), "rate_limited", ab.non2xx), ab.non2xx);
}

TEST(RateLimit, RespAndKvJsonCommandsOverTheRateAreRefused) {
  const std::string limit = "limit_req: {rate: 1r/m, burst: 2}";
  Server s(ListenerYaml("resp", "resp", 0, limit) + ListenerYaml("json", "kv-json", 0, limit) +
           OpsListener());
  ASSERT_TRUE(s.Start());
  Client c;
  ASSERT_TRUE(c.Connect(s.Port("resp")));
  for (int i = 0; i < 3; i++) EXPECT_EQ(RespCall(c, {"PING"}), "+PONG") << "ping " << i + 1;
  std::string got = RespCall(c, {"PING"});
  EXPECT_TRUE(got.starts_with("-ERR rate limited: retry in ")) << got;
  // The bucket is per address, not per connection...
  Client c2;
  ASSERT_TRUE(c2.Connect(s.Port("resp")));
  got = RespCall(c2, {"PING"});
  EXPECT_TRUE(got.starts_with("-ERR rate limited: retry in ")) << got;
  // ...and another address has its own.
  Client other;
  ASSERT_TRUE(other.Connect(s.Port("resp"), 5000, "127.0.0.2"));
  EXPECT_EQ(RespCall(other, {"PING"}), "+PONG");

  Client j;
  ASSERT_TRUE(j.Connect(s.Port("json")));
  for (int i = 0; i < 3; i++) {
    got = JsonCall(j, kPing);
    EXPECT_TRUE(Contains(got, "\"ok\":true")) << "ping " << i + 1 << ": " << got;
  }
  got = JsonCall(j, kPing);
  EXPECT_TRUE(Contains(got, "\"code\":\"RATE_LIMITED\"")) << got;
  Client jo;
  ASSERT_TRUE(jo.Connect(s.Port("json"), 5000, "127.0.0.2"));
  got = JsonCall(jo, kPing);
  EXPECT_TRUE(Contains(got, "\"ok\":true")) << got;
  EXPECT_GE(WaitRefused(s.Port("ops"), "rate_limited", 3), 3);
}

// =====================================================================
// 8. limit_conn.

// Connects to the echo port and says "hi": true (the connection kept in
// *c) when it comes back, false when refused (*said: the line that came).
bool TryEcho(uint16_t port, Client* c, std::string* said = nullptr, const char* from = nullptr) {
  if (!c->Connect(port, 5000, from)) return false;
  std::string line;
  if (!c->SendAll("hi\n") || !c->RecvLine(&line)) {
    if (said) *said = "<nothing: " + c->buffered() + ">";
    return false;
  }
  if (said) *said = line;
  return line == "hi";
}

TEST(ConnLimit, ConnectionsPerAddressAreCappedAndReleased) {
  Server s(ListenerYaml("echo", "echo", 0, "limit_conn: 3") + OpsListener());
  ASSERT_TRUE(s.Start());
  const uint16_t port = s.Port("echo");
  std::vector<Client> held(3);
  for (int i = 0; i < 3; i++) {
    std::string said;
    ASSERT_TRUE(TryEcho(port, &held[i], &said)) << "connection " << i + 1 << ": " << said;
  }
  Client fourth;
  std::string said;
  EXPECT_FALSE(TryEcho(port, &fourth, &said));
  EXPECT_TRUE(Contains(said, "too many connections")) << said;
  EXPECT_TRUE(fourth.WaitClosed());
  // Another address meanwhile.
  Client other;
  EXPECT_TRUE(TryEcho(port, &other, &said, "127.0.0.2")) << said;
  other.Close();

  // Closing one gives its place back.
  held[0].Close();
  EXPECT_TRUE(WaitFor([&] { return TryEcho(port, &held[0]); }, 5000, 20));
  EXPECT_TRUE(held[0].Echo("again\n"));
  EXPECT_GE(WaitRefused(s.Port("ops"), "conn_limited", 1), 1);

  // A worker killed with SIGKILL never closes its connections itself: the
  // master takes back what it held when it reaps it.
  const std::vector<pid_t> workers = s.WorkerPids();
  ASSERT_EQ(workers.size(), 2u);
  const pid_t victim = HolderOf(held[0], port, workers);
  ASSERT_NE(victim, 0);
  std::vector<Client> survivors;
  size_t on_victim = 0;
  for (Client& c : held) {
    const pid_t w = HolderOf(c, port, workers);
    ASSERT_NE(w, 0);
    if (w == victim) {
      on_victim++;
    } else {
      survivors.push_back(std::move(c));
    }
  }
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  ASSERT_TRUE(WaitFor([&] { return s.GenerationUp(2, {victim}); }, 10000, 20));
  for (Client& c : survivors) EXPECT_TRUE(c.Echo("still\n"));
  std::vector<Client> fresh;
  EXPECT_TRUE(WaitFor(
      [&] {
        Client c;
        if (TryEcho(port, &c)) fresh.push_back(std::move(c));
        return fresh.size() == on_victim;
      },
      10000, 20))
      << fresh.size() << " of " << on_victim << " places came back";
  Client over;
  EXPECT_FALSE(TryEcho(port, &over, &said)) << "more than 3 admitted";
  EXPECT_TRUE(Contains(said, "too many connections")) << said;
  // All of them released by closing: three new ones.
  survivors.clear();
  fresh.clear();
  std::vector<Client> three;
  EXPECT_TRUE(WaitFor(
      [&] {
        Client c;
        if (TryEcho(port, &c)) three.push_back(std::move(c));
        return three.size() == 3;
      },
      10000, 20));
}

// =====================================================================
// 9. Basic auth (htpasswd), reload, and /kv behind it.

TEST(BasicAuth, HtpasswdProtectsPathsAndReloads) {
  std::string out;
  if (Sh("command -v htpasswd", &out) != 0)
    GTEST_FAIL() << "htpasswd (apache2-utils) is missing: apt-get install -y apache2-utils";
  TempDir d;
  d.Write("www/private/a.txt", "private a\n");
  d.Write("www/pub.txt", "public\n");
  const std::string file = d.path("htpasswd");
  ASSERT_EQ(Sh("htpasswd -cbB -C 5 " + file + " alice wonderland", &out), 0) << out;
  Server s(ListenerYaml("http", "http", 0,
                        "root: " + d.path("www") + "\nauth_basic: {realm: \"Staff\", htpasswd: " +
                            file + ", paths: [/private/, /kv]}") +
               ListenerYaml("resp", "resp"),
           "kv: {password: kvpw}\n");
  ASSERT_TRUE(s.Start());
  const uint16_t http = s.Port("http");
  const std::string host = Local(http);

  HttpReply h = Http(http, "/private/a.txt", host);
  EXPECT_EQ(h.status, 401);
  EXPECT_TRUE(h.Header("WWW-Authenticate").starts_with("Basic realm=\"Staff\"")) << h.head;
  EXPECT_NE(h.body, "private a\n");
  h = Http(http, "/private/a.txt", host, BasicHeader("alice", "wonderland"));
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "private a\n");
  std::string curl;  // the same with curl -u
  EXPECT_EQ(Sh("timeout 5 curl -s -u alice:wonderland http://127.0.0.1:" + std::to_string(http) +
                   "/private/a.txt",
               &curl),
            0);
  EXPECT_EQ(curl, "private a\n");
  h = Http(http, "/private/a.txt", host, BasicHeader("alice", "wrong"));
  EXPECT_EQ(h.status, 401);
  EXPECT_NE(h.body, "private a\n");
  EXPECT_EQ(Http(http, "/private/a.txt", host, BasicHeader("bob", "builder")).status, 401);
  h = Http(http, "/pub.txt", host);
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "public\n");
  // Spelled another way, the same file is as covered.
  for (const char* other : {"/%70rivate/a.txt", "/pub/../private/a.txt", "//private/a.txt",
                            "/private/./a.txt", "/private"}) {
    h = Http(http, other, host);
    EXPECT_EQ(h.status, 401) << other;
    EXPECT_NE(h.body, "private a\n") << other;
  }

  // /kv under auth_basic: the basic user is authenticated for the store,
  // though kv.password is set (and not sent).
  Client r;
  ASSERT_TRUE(r.Connect(s.Port("resp")));
  ASSERT_EQ(RespCall(r, {"AUTH", "kvpw"}), "+OK");
  ASSERT_EQ(RespCall(r, {"SET", "k", "v"}), "+OK");
  h = Http(http, "/kv/k", host);
  EXPECT_EQ(h.status, 401);
  EXPECT_TRUE(h.Header("WWW-Authenticate").starts_with("Basic realm=\"Staff\"")) << h.head;
  h = Http(http, "/kv/k", host, BasicHeader("alice", "wonderland"));
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "v");
  h = Http(http, "/kv/k2", host, BasicHeader("alice", "wonderland"), nullptr, "PUT", "w");
  EXPECT_GE(h.status, 200);
  EXPECT_LT(h.status, 300);
  EXPECT_EQ(RespCall(r, {"GET", "k2"}), "$w");

  // A new user, then SIGHUP: the new generation knows bob.
  ASSERT_EQ(Sh("htpasswd -bB -C 5 " + file + " bob builder", &out), 0) << out;
  std::vector<pid_t> old = s.WorkerPids();
  s.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return s.GenerationUp(2, old); }, 10000, 20));
  h = Http(http, "/private/a.txt", host, BasicHeader("bob", "builder"));
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "private a\n");
  EXPECT_EQ(Http(http, "/private/a.txt", host, BasicHeader("alice", "wonderland")).status, 200);

  // A broken line: -t names the file and line; a reload keeps the old config.
  { std::ofstream(file, std::ios::app) << "carol:plaintext\n"; }
  const RunResult t = RunBinary({"-t", "-c", s.config_path()});
  EXPECT_NE(t.exit_code, 0) << t.output;
  EXPECT_TRUE(Contains(t.output, file + ":3")) << t.output;
  old = s.WorkerPids();
  const size_t log_at = s.Log().size();
  s.Signal(SIGHUP);
  EXPECT_TRUE(WaitLogAfter(s, log_at, file + ":3")) << s.Log().substr(log_at);
  EXPECT_TRUE(WaitLogAfter(s, log_at, "still serving the old one")) << s.Log().substr(log_at);
  EXPECT_TRUE(s.GenerationUp(2));
  EXPECT_EQ(s.WorkerPids(), old);
  EXPECT_EQ(Http(http, "/private/a.txt", host, BasicHeader("alice", "wonderland")).status, 200);
  EXPECT_EQ(Http(http, "/private/a.txt", host, BasicHeader("bob", "builder")).status, 200);
  EXPECT_EQ(Http(http, "/private/a.txt", host, BasicHeader("carol", "plaintext")).status, 401);
}

// =====================================================================
// 10. X-Forwarded-For counts only from trusted_proxies.

// The access log line of `needle` (waited for: lines are flushed on a timer).
std::string AccessLine(const std::string& path, const std::string& needle) {
  std::string found;
  WaitFor(
      [&] {
        std::istringstream lines(ReadFile(path));
        std::string line;
        while (std::getline(lines, line))
          if (Contains(line, needle)) {
            found = line;
            return true;
          }
        return false;
      },
      5000, 20);
  return found;
}

void ExpectForwardedFor(bool trusted) {
  SCOPED_TRACE(trusted ? "trusted_proxies: [127.0.0.1/32]" : "no trusted_proxies");
  TempDir logs;
  const std::string access = logs.path("access.log");
  Server s(OpsListener("http"), std::string(trusted ? "trusted_proxies: [127.0.0.1/32]\n" : "") +
                                    "logging: {access_log: " + access + "}\n");
  ASSERT_TRUE(s.Start());
  const uint16_t http = s.Port("http");
  const HttpReply h = Http(http, "/_stats?xff", Local(http), "X-Forwarded-For: 203.0.113.7\r\n");
  EXPECT_EQ(h.status, trusted ? 403 : 200) << h.head;
  const std::string line = AccessLine(access, "/_stats?xff");
  ASSERT_FALSE(line.empty()) << ReadFile(access);
  EXPECT_TRUE(line.starts_with(trusted ? "203.0.113.7 " : "127.0.0.1 ")) << line;
}

TEST(TrustedProxies, ForwardedForIsIgnoredUnlessThePeerIsTrusted) {
  ExpectForwardedFor(false);
  ExpectForwardedFor(true);
}

// =====================================================================
// 11. Log reopen (as root, workers as `user`) does not follow links.

TEST(LogReopen, ALinkPlantedAtTheLogPathIsNotFollowed) {
  if (!IsRoot()) GTEST_SKIP() << "needs root (user: nobody)";
  if (NobodyUid() == static_cast<uid_t>(-1)) GTEST_SKIP() << "no user nobody";
  Server s(OpsListener("http"), "user: nobody\n");
  ASSERT_EQ(chmod(s.dir().c_str(), 0755), 0);
  const std::string access = s.dir() + "/access.log";
  s.RewriteConfig(ListenerYaml("http", "http", 0, "root: " + s.dir()),
                  "user: nobody\nlogging: {access_log: " + access + "}\n");
  ASSERT_TRUE(s.Start());
  struct stat st;
  ASSERT_EQ(stat(access.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, NobodyUid()) << "the master hands a log file it created to `user`";

  char victim[] = "/tmp/victim-XXXXXX";
  const int fd = mkstemp(victim);
  ASSERT_GE(fd, 0);
  const std::string secret = "root only\n";
  ASSERT_EQ(write(fd, secret.data(), secret.size()), static_cast<ssize_t>(secret.size()));
  ASSERT_EQ(fchmod(fd, 0600), 0);
  close(fd);
  struct Cleanup {
    std::string path;
    ~Cleanup() { unlink(path.c_str()); }
  } cleanup{victim};

  // What a compromised worker (uid nobody) can do in the log folder.
  ASSERT_EQ(unlink(access.c_str()), 0);
  ASSERT_EQ(symlink(victim, access.c_str()), 0);
  const size_t log_at = s.Log().size();
  s.Signal(SIGUSR1);
  EXPECT_TRUE(WaitLogAfter(s, log_at, access)) << s.Log().substr(log_at);
  const uint16_t http = s.Port("http");
  Http(http, "/after-reopen", Local(http));

  ASSERT_EQ(stat(victim, &st), 0);
  EXPECT_EQ(st.st_uid, 0u) << "the victim was handed to uid " << st.st_uid;
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(ReadFile(victim), secret);
}

// =====================================================================
// 12. user + persistence: SAVE works without signal permissions, and the
// data is private.

TEST(Privileges, UserNobodyWithPersistence) {
  if (!IsRoot()) GTEST_SKIP() << "needs root (user: nobody)";
  const uid_t nobody = NobodyUid();
  if (nobody == static_cast<uid_t>(-1)) GTEST_SKIP() << "no user nobody";
  Server s(ListenerYaml("resp", "resp"), "user: nobody\n");
  ASSERT_EQ(chmod(s.dir().c_str(), 0755), 0);
  const std::string data = s.dir() + "/data";
  const std::string extra = "user: nobody\npersistence: {dir: " + data + "}\n";
  s.RewriteConfig(ListenerYaml("resp", "resp"), extra);
  ASSERT_TRUE(s.Start());
  {
    Client c;
    ASSERT_TRUE(c.Connect(s.Port("resp")));
    EXPECT_EQ(RespCall(c, {"SET", "k", "v"}), "+OK");
    EXPECT_EQ(RespCall(c, {"SAVE"}), "+OK");
  }
  struct stat st;
  ASSERT_EQ(stat(data.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u) << std::oct << (st.st_mode & 07777);
  EXPECT_EQ(st.st_uid, nobody);
  int files = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(data, ec)) {
    struct stat fst;
    if (lstat(e.path().c_str(), &fst) != 0) {
      // The snapshot's clean-up removes covered logs after SAVE answers:
      // a file listed a moment ago may be gone.
      ASSERT_EQ(errno, ENOENT) << e.path();
      continue;
    }
    if (S_ISDIR(fst.st_mode)) {
      EXPECT_EQ(fst.st_mode & 077, 0u) << e.path() << " " << std::oct << (fst.st_mode & 07777);
      continue;
    }
    files++;
    EXPECT_EQ(fst.st_mode & 077, 0u) << e.path() << " " << std::oct << (fst.st_mode & 07777);
  }
  EXPECT_GT(files, 0) << "SAVE wrote nothing in " << data;

  // The worker user owns the folder: a link it plants where root (or the
  // snapshot child) writes must not make them write elsewhere.
  const std::string victim = s.dir() + "/victim";
  { std::ofstream(victim) << "untouched\n"; }
  ASSERT_EQ(chmod(victim.c_str(), 0600), 0);
  ASSERT_EQ(symlink(victim.c_str(), (data + "/STATUS.tmp").c_str()), 0);
  {
    Client c;
    ASSERT_TRUE(c.Connect(s.Port("resp")));
    EXPECT_EQ(RespCall(c, {"SET", "k2", "v2"}), "+OK");
    EXPECT_EQ(RespCall(c, {"SAVE"}), "+OK");
  }
  std::ifstream vin(victim);
  std::string vtext((std::istreambuf_iterator<char>(vin)), std::istreambuf_iterator<char>());
  EXPECT_EQ(vtext, "untouched\n");
  ASSERT_EQ(stat(victim.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);

  s.Signal(SIGQUIT);
  int status = 0;
  ASSERT_TRUE(s.WaitExit(20000, &status));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  Server again(ListenerYaml("resp", "resp"), extra);
  ASSERT_EQ(chmod(again.dir().c_str(), 0755), 0);
  ASSERT_TRUE(again.Start(20000));
  Client c;
  ASSERT_TRUE(c.Connect(again.Port("resp")));
  EXPECT_EQ(RespCall(c, {"GET", "k"}), "$v");
}

// =====================================================================
// 13. chroot.

TEST(Privileges, ChrootToTheServerFolder) {
  if (!IsRoot()) GTEST_SKIP() << "needs root (chroot, user: nobody)";
  if (NobodyUid() == static_cast<uid_t>(-1)) GTEST_SKIP() << "no user nobody";
  const std::string listeners =
      ListenerYaml("resp", "resp") + ListenerYaml("http", "http", 0, "root: /www");
  Server s(listeners, "");
  const std::string dir = s.dir();
  ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
  WriteAll(dir + "/www/index.html", "<p>jailed</p>\n");
  const std::string extra = "chroot: " + dir +
                            "\nuser: nobody\nlogging: {error_log: /error.log}\npersistence: {dir: "
                            "/data}\n";
  s.RewriteConfig(listeners, extra);
  ASSERT_TRUE(s.Start());
  const uint16_t http = s.Port("http");
  HttpReply h = Http(http, "/index.html", Local(http));
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "<p>jailed</p>\n");
  {
    Client c;
    ASSERT_TRUE(c.Connect(s.Port("resp")));
    EXPECT_EQ(RespCall(c, {"SET", "jailed", "yes"}), "+OK");
  }
  s.Signal(SIGQUIT);
  int status = 0;
  ASSERT_TRUE(s.WaitExit(20000, &status));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;

  // The same chroot again (its error log is still dir/error.log: s.Log()).
  Server again(ListenerYaml("resp", "resp") + ListenerYaml("http", "http", 0, "root: /www"), extra);
  if (!again.Start(20000)) FAIL() << "restart in the chroot failed; its error log:\n" << s.Log();
  Client c;
  ASSERT_TRUE(c.Connect(again.Port("resp")));
  EXPECT_EQ(RespCall(c, {"GET", "jailed"}), "$yes") << s.Log();
  h = Http(again.Port("http"), "/index.html", Local(again.Port("http")));
  EXPECT_EQ(h.status, 200);

  // Paths are as seen inside the chroot: absolute, without the chroot in front.
  auto config_with_root = [&](const std::string& root) {
    const std::string path = dir + "/check-" + std::to_string(FreePort()) + ".yaml";
    WriteAll(path, "chroot: " + dir + "\nuser: nobody\npidfile: " + dir +
                       "/check.pid\nlogging: {error_log: /error.log}\nlisteners:\n" +
                       ListenerYaml("http", "http", 0, "root: " + root));
    return path;
  };
  RunResult t = RunBinary({"-t", "-c", config_with_root(dir + "/www")});
  EXPECT_NE(t.exit_code, 0) << t.output;
  EXPECT_TRUE(Contains(t.output, "names the chroot folder")) << t.output;
  t = RunBinary({"-t", "-c", config_with_root("www")});
  EXPECT_NE(t.exit_code, 0) << t.output;
  EXPECT_TRUE(Contains(t.output, "is relative")) << t.output;
  t = RunBinary({"-t", "-c", config_with_root("/www")});
  EXPECT_EQ(t.exit_code, 0) << t.output;
}

// =====================================================================
// 14. The systemd unit is valid.

TEST(Systemd, UnitVerifies) {
  if (access("/usr/bin/systemd-analyze", X_OK) != 0)
    GTEST_SKIP() << "/usr/bin/systemd-analyze is not installed";
  TempDir d;
  std::string unit = ReadFile(SourceRoot() + "/conf/preforkd.service");
  ASSERT_FALSE(unit.empty());
  const std::string placeholder = "/opt/preforkd/build/preforkd";
  ASSERT_TRUE(Contains(unit, placeholder));
  for (size_t at; (at = unit.find(placeholder)) != std::string::npos;)
    unit.replace(at, placeholder.size(), fs::absolute(BinaryPath()).string());
  const std::string path = d.path("preforkd.service");
  WriteAll(path, unit);
  std::string out;
  const int rc = Sh("timeout 60 systemd-analyze verify " + path, &out);
  EXPECT_EQ(rc, 0) << out;
  // Every line is a finding (unknown keys, bad values are only warnings,
  // with exit 0). Accepted: the unit's user and config file do not exist here.
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    // (The unit's own name and path say nothing about what the line is about.)
    std::string what = line;
    for (const std::string& name : {path, std::string("preforkd.service")})
      for (size_t at; (at = what.find(name)) != std::string::npos;)
        what.replace(at, name.size(), "UNIT");
    std::transform(what.begin(), what.end(), what.begin(), ::tolower);
    const bool expected = Contains(what, "/etc/preforkd/preforkd.yaml") ||
                          (Contains(what, "preforkd") && Contains(what, "user"));
    EXPECT_TRUE(expected) << "systemd-analyze: " << line;
  }
}

// =====================================================================
// The production example, end to end: conf/production.yaml as shipped, run
// the "root without systemd" way (user + chroot), on loopback ports, with
// its production paths inside a temporary chroot.

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << "conf/production.yaml no longer has: " << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

TEST(Production, ExampleConfigRunsWithUserChrootAndPersistence) {
  if (!IsRoot()) GTEST_SKIP() << "needs root (chroot, user: nobody)";
  if (NobodyUid() == static_cast<uid_t>(-1)) GTEST_SKIP() << "no user nobody";
  std::string out;
  if (Sh("command -v htpasswd", &out) != 0)
    GTEST_FAIL() << "htpasswd (apache2-utils) is missing: apt-get install -y apache2-utils";
  const std::string shipped = ReadFile(SourceRoot() + "/conf/production.yaml");
  ASSERT_FALSE(shipped.empty());
  TempDir jail;
  ASSERT_EQ(chmod(jail.path("").c_str(), 0755), 0);
  const std::string root = jail.path("");
  jail.Write("var/www/preforkd/index.html", "<p>production</p>\n");
  std::filesystem::create_directories(root + "/etc/preforkd");
  ASSERT_EQ(Sh("htpasswd -cbB -C 5 " + root + "/etc/preforkd/htpasswd alice wonderland", &out), 0)
      << out;

  // The shipped text, with only what a test machine must change.
  auto config = [&](const Server& s) {
    std::string t = shipped;
    t = Replace(t, "pidfile: /run/preforkd/preforkd.pid", "pidfile: " + root + "/preforkd.pid");
    t = Replace(t, "# user: preforkd", "user: nobody");
    t = Replace(t, "# chroot: /srv/preforkd", "chroot: " + root);
    t = Replace(t, "address: 0.0.0.0\n    port: 80\n",
                "address: 127.0.0.1\n    port: " + std::to_string(s.Port("http")) + "\n");
    t = Replace(t, "address: 0.0.0.0\n    port: 6379\n",
                "address: 127.0.0.1\n    port: " + std::to_string(s.Port("resp")) + "\n");
    t = Replace(t, "\"CHANGE-ME: openssl rand -base64 32\"", "\"a-test-secret\"");
    t = Replace(t, "workers: auto", "workers: 2");
    return t;
  };
  const std::string listeners =
      ListenerYaml("http", "http", 0, "root: " + root) + ListenerYaml("resp", "resp");
  Server s(listeners);
  s.WriteRawConfig(config(s));
  const RunResult check = RunBinary({"-t", "-c", s.config_path()});
  ASSERT_EQ(check.exit_code, 0) << check.output;
  ASSERT_TRUE(s.Start(20000)) << ReadFile(root + "/var/log/preforkd/error.log");
  const uint16_t http = s.Port("http");
  const std::string site = "example.com";

  HttpReply h = Http(http, "/", site);
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "<p>production</p>\n");
  EXPECT_EQ(Http(http, "/", Local(http)).status, 421);      // not a server_name
  EXPECT_EQ(Http(http, "/kv/greeting", site).status, 401);  // auth_basic on /kv
  h = Http(http, "/kv/greeting", site, BasicHeader("alice", "wonderland"), nullptr, "PUT", "hi");
  EXPECT_GE(h.status, 200);
  EXPECT_LT(h.status, 300);
  {
    Client c;
    ASSERT_TRUE(c.Connect(s.Port("resp")));
    EXPECT_TRUE(RespCall(c, {"GET", "greeting"}).starts_with("-NOAUTH"));
    EXPECT_EQ(RespCall(c, {"AUTH", "a-test-secret"}), "+OK");
    EXPECT_EQ(RespCall(c, {"GET", "greeting"}), "$hi");
    EXPECT_EQ(RespCall(c, {"SAVE"}), "+OK");
  }
  struct stat st;
  ASSERT_EQ(stat((root + "/var/lib/preforkd").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, NobodyUid());
  s.Signal(SIGQUIT);
  int status = 0;
  ASSERT_TRUE(s.WaitExit(20000, &status));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;

  // A restart finds the key.
  Server again(listeners);
  again.WriteRawConfig(config(again));
  ASSERT_TRUE(again.Start(20000)) << ReadFile(root + "/var/log/preforkd/error.log");
  h = Http(again.Port("http"), "/kv/greeting", site, BasicHeader("alice", "wonderland"));
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "hi");
}

}  // namespace
}  // namespace pf::test
