// tests/integration/test_http.cc: the http protocol against the real binary
// (2 workers): static files (HEAD, directories, conditional and range
// requests), every error status, keep-alive, pipelining, timeouts, path
// traversal, /kv, the ops endpoints, the access log, draining, and smoke runs
// with curl, ab and wrk.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

struct Response {
  int status = 0;
  std::string head;                            // status line + headers, raw
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  bool has(const std::string& h) const { return headers.count(h) > 0; }
  std::string operator[](const std::string& h) const {
    auto it = headers.find(h);
    return it == headers.end() ? "" : it->second;
  }
};

// Reads one response; `head_only`: the request was HEAD (no body follows).
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
    std::string name = line.substr(0, colon);
    for (char& ch : name) ch = static_cast<char>(tolower(ch));
    r->headers[name] = line.substr(colon + 2);
  }
  if (head_only || r->status == 304 || r->status == 204 || r->status < 200) return true;
  const size_t len =
      std::stoul(r->headers.count("content-length") ? r->headers["content-length"] : "0");
  return len == 0 || c.RecvExact(len, &r->body, timeout_ms);
}

std::string Get(const std::string& target, const std::string& extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: localhost\r\n" + extra + "\r\n";
}

std::string RunCmd(const std::string& cmd) {
  std::string out;
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  pclose(f);
  return out;
}

class HttpTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/pf-http-XXXXXX";
    dir_ = new std::string(mkdtemp(tmpl));
    root_ = new std::string(*dir_ + "/www");
    mkdir(root_->c_str(), 0755);
    WriteFile(*root_ + "/index.html", "<h1>home</h1>\n");
    WriteFile(*root_ + "/a.txt", "0123456789");
    WriteFile(*root_ + "/style.css", "body{}");
    mkdir((*root_ + "/sub").c_str(), 0755);
    WriteFile(*root_ + "/sub/index.html", "sub index");
    mkdir((*root_ + "/noindex").c_str(), 0755);
    WriteFile(*root_ + "/noindex/file one.txt", "x");
    symlink("/etc", (*root_ + "/etclink").c_str());
    symlink("/etc/passwd", (*root_ + "/passwdlink").c_str());
    symlink("a.txt", (*root_ + "/inside.txt").c_str());
    mkfifo((*root_ + "/fifo").c_str(), 0644);
    const std::string listeners =
        ListenerYaml("http", "http", 0, "root: " + *root_) +
        ListenerYaml("http_ai", "http", 0, "root: " + *root_ + "\nautoindex: true");
    const std::string extra =
        "timeouts: {header: 1s, keepalive: 2s, drain: 2s}\n"
        "limits: {max_line_bytes: 8k, max_request_bytes: 64k, keepalive_requests: 5}\n"
        "kv: {max_value_bytes: 16k}\n"
        "logging: {access_log: " +
        *dir_ + "/access.log}\n";
    server_ = new Server(listeners, extra);
    ASSERT_TRUE(server_->Start());
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    RunCmd("rm -rf " + *dir_);
    delete dir_;
    delete root_;
  }

  static uint16_t Port(const std::string& name = "http") { return server_->Port(name); }

  // One request on a new connection.
  static Response Do(const std::string& req, const std::string& listener = "http") {
    Client c;
    Response r;
    EXPECT_TRUE(c.Connect(Port(listener)));
    EXPECT_TRUE(c.SendAll(req));
    EXPECT_TRUE(ReadResponse(c, &r, req.rfind("HEAD ", 0) == 0)) << req;
    return r;
  }

  static Server* server_;
  static std::string* dir_;
  static std::string* root_;
};

Server* HttpTest::server_ = nullptr;
std::string* HttpTest::dir_ = nullptr;
std::string* HttpTest::root_ = nullptr;

TEST_F(HttpTest, GetServesIndexWithHeaders) {
  Response r = Do(Get("/"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "<h1>home</h1>\n");
  EXPECT_EQ(r["server"], "preforkd");
  EXPECT_EQ(r["content-type"], "text/html");
  EXPECT_EQ(r["content-length"], "14");
  EXPECT_TRUE(r.has("date"));
  EXPECT_TRUE(r.has("last-modified"));
  EXPECT_TRUE(std::regex_match(r["etag"], std::regex("\"[0-9a-f]+-e\""))) << r["etag"];
  EXPECT_EQ(Do(Get("/style.css"))["content-type"], "text/css");
  EXPECT_EQ(Do(Get("/sub/")).body, "sub index");
  EXPECT_EQ(Do(Get("/inside.txt")).body, "0123456789");  // a symlink that stays inside the root
}

TEST_F(HttpTest, HeadSendsHeadersOnly) {
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(c.SendAll("HEAD /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n" + Get("/a.txt")));
  Response r;
  ASSERT_TRUE(ReadResponse(c, &r, true));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r["content-length"], "10");
  ASSERT_TRUE(ReadResponse(c, &r));  // the next response follows at once: HEAD had no body
  EXPECT_EQ(r.body, "0123456789");
}

TEST_F(HttpTest, DirectoriesRedirectListOrRefuse) {
  Response r = Do(Get("/sub?x=1"));
  EXPECT_EQ(r.status, 301);
  EXPECT_EQ(r["location"], "/sub/?x=1");
  EXPECT_EQ(Do(Get("/noindex/")).status, 403);
  r = Do(Get("/noindex/"), "http_ai");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("href=\"file%20one.txt\""), std::string::npos) << r.body;
  EXPECT_EQ(Do(Get("/fifo")).status, 403);
  EXPECT_EQ(Do(Get("/missing.txt")).status, 404);
  EXPECT_EQ(Do(Get("/a.txt/x")).status, 404);
}

TEST_F(HttpTest, OtherMethodsGet405WithAllow) {
  Response r = Do("POST /a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nab");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r["allow"], "GET, HEAD");
  EXPECT_EQ(Do("DELETE /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n").status, 405);
}

TEST_F(HttpTest, ConditionalRequestsGet304) {
  Response r = Do(Get("/a.txt"));
  const std::string etag = r["etag"], lm = r["last-modified"];
  r = Do(Get("/a.txt", "If-None-Match: " + etag + "\r\n"));
  EXPECT_EQ(r.status, 304);
  EXPECT_EQ(r["etag"], etag);
  EXPECT_EQ(Do(Get("/a.txt", "If-None-Match: \"other\", W/" + etag + "\r\n")).status, 304);
  EXPECT_EQ(Do(Get("/a.txt", "If-None-Match: \"other\"\r\n")).status, 200);
  EXPECT_EQ(Do(Get("/a.txt", "If-Modified-Since: " + lm + "\r\n")).status, 304);
  EXPECT_EQ(Do(Get("/a.txt", "If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT\r\n")).status, 200);
}

TEST_F(HttpTest, RangeRequests) {
  Response r = Do(Get("/a.txt", "Range: bytes=2-4\r\n"));
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.body, "234");
  EXPECT_EQ(r["content-range"], "bytes 2-4/10");
  r = Do(Get("/a.txt", "Range: bytes=-3\r\n"));
  EXPECT_EQ(r.body, "789");
  r = Do(Get("/a.txt", "Range: bytes=7-\r\n"));
  EXPECT_EQ(r.body, "789");
  r = Do(Get("/a.txt", "Range: bytes=20-\r\n"));
  EXPECT_EQ(r.status, 416);
  EXPECT_EQ(r["content-range"], "bytes */10");
  r = Do(Get("/a.txt", "Range: bytes=0-1,4-5\r\n"));  // multi-range: the whole file
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "0123456789");
  r = Do(Get("/a.txt", "Range: bytes=0-1\r\nIf-Range: \"stale\"\r\n"));
  EXPECT_EQ(r.status, 200);
}

TEST_F(HttpTest, KeepAlivePipeliningInOrder) {
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(c.SendAll(Get("/a.txt") + Get("/index.html") + Get("/missing") + Get("/sub/")));
  Response r;
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.body, "0123456789");
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.body, "<h1>home</h1>\n");
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.status, 404);
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.body, "sub index");
  EXPECT_FALSE(r.has("connection"));
  // keepalive_requests = 5: the fifth response says close, then the connection closes.
  ASSERT_TRUE(c.SendAll(Get("/a.txt")));
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r["connection"], "close");
  EXPECT_TRUE(c.WaitClosed());
}

TEST_F(HttpTest, PipelinedLargeFilesStayInOrder) {
  // 3 MiB each, over output_high_water (1 MiB): later requests wait for the drain.
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); i++) big[i] = static_cast<char>('a' + i % 26);
  WriteFile(*root_ + "/big.bin", big);
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(c.SendAll(Get("/big.bin") + Get("/a.txt") + Get("/big.bin", "Range: bytes=1-3\r\n") +
                        Get("/big.bin")));
  Response r;
  ASSERT_TRUE(ReadResponse(c, &r, false, 10000));
  EXPECT_EQ(r.body == big, true);
  EXPECT_EQ(r["content-type"], "application/octet-stream");
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.body, "0123456789");
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.body, "bcd");
  ASSERT_TRUE(ReadResponse(c, &r, false, 10000));
  EXPECT_EQ(r.body == big, true);
}

TEST_F(HttpTest, ExpectContinueGets100) {
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(
      c.SendAll("PUT /kv/expect HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: "
                "100-continue\r\n\r\n"));
  std::string line;
  ASSERT_TRUE(c.RecvUntil("\r\n\r\n", &line, 2000));
  EXPECT_EQ(line, "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(c.SendAll("hello"));
  Response r;
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_TRUE(r.status == 201 || r.status == 204);
}

TEST_F(HttpTest, RequestsInAnyChunking) {
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  const std::string req =
      "PUT /kv/chunky HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n" +
      Get("/kv/chunky");
  for (char ch : req) ASSERT_TRUE(c.SendAll(std::string(1, ch)));
  Response r;
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_TRUE(r.status == 201 || r.status == 204) << r.status;
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.body, "abcdefg");
}

TEST_F(HttpTest, ConnectionHeaderRules) {
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(c.SendAll("GET /a.txt HTTP/1.0\r\n\r\n"));  // 1.0: close by default
  Response r;
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r["connection"], "close");
  EXPECT_TRUE(c.WaitClosed());

  Client k;
  ASSERT_TRUE(k.Connect(Port()));
  ASSERT_TRUE(k.SendAll("GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  ASSERT_TRUE(ReadResponse(k, &r));
  EXPECT_EQ(r["connection"], "keep-alive");
  ASSERT_TRUE(k.SendAll(Get("/a.txt", "Connection: close\r\n")));
  ASSERT_TRUE(ReadResponse(k, &r));
  EXPECT_EQ(r["connection"], "close");
  EXPECT_TRUE(k.WaitClosed());
}

// A whole request with `Connection: close` and nothing after it closes
// without lingering (the client has said all it will); the reply must still
// arrive whole, also when it is bigger than the socket takes at once (the
// close then waits for the write event). Bytes sent after such a request
// make the close linger again: the reply is not lost to a reset.
TEST_F(HttpTest, ConnectionCloseRepliesArriveWhole) {
  std::string big(4 << 20, '\0');
  for (size_t i = 0; i < big.size(); i++) big[i] = static_cast<char>('A' + i % 23);
  WriteFile(*root_ + "/close.bin", big);
  for (int i = 0; i < 3; i++) {
    Client c;
    ASSERT_TRUE(c.Connect(Port()));
    ASSERT_TRUE(c.SendAll(Get("/close.bin", "Connection: close\r\n")));
    Response r;
    ASSERT_TRUE(ReadResponse(c, &r, false, 10000));
    EXPECT_TRUE(r.body == big) << r.body.size();
    EXPECT_EQ(r["connection"], "close");
    EXPECT_TRUE(c.WaitClosed());
    EXPECT_NE(c.last_errno(), ECONNRESET);
  }
  Client p;
  ASSERT_TRUE(p.Connect(Port()));
  ASSERT_TRUE(p.SendAll(Get("/a.txt", "Connection: close\r\n") + "GET /a.txt HTTP/1.1\r\n"));
  Response r;
  ASSERT_TRUE(ReadResponse(p, &r));
  EXPECT_EQ(r.body, "0123456789");
  EXPECT_TRUE(p.WaitClosed());
  EXPECT_NE(p.last_errno(), ECONNRESET);
}

TEST_F(HttpTest, ParseErrorsGetTheirStatus) {
  struct Case {
    std::string req;
    int status;
  };
  const std::vector<Case> cases = {
      {"GARBAGE\r\n\r\n", 400},
      {"GET /a%zz HTTP/1.1\r\nHost: localhost\r\n\r\n", 400},
      {"GET /a.txt HTTP/1.1\r\n\r\n", 400},  // 1.1 without Host
      {"GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: localhost\r\n\r\n", 414},
      {"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + std::string(9000, 'b') + "\r\n\r\n", 431},
      {"PUT /kv/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 70000\r\n\r\n", 413},
      // RFC 9112 6.3: chunked not last is a 400 (the body length is unknown).
      {"PUT /kv/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
      {"PUT /kv/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
      {"GET / HTTP/2.0\r\nHost: localhost\r\n\r\n", 505},
      {"GET / HTTP/1.2\r\nHost: localhost\r\n\r\n", 505},
  };
  for (const auto& tc : cases) {
    Client c;
    ASSERT_TRUE(c.Connect(Port()));
    ASSERT_TRUE(c.SendAll(tc.req));
    Response r;
    ASSERT_TRUE(ReadResponse(c, &r)) << tc.req.substr(0, 60);
    EXPECT_EQ(r.status, tc.status) << tc.req.substr(0, 60);
    EXPECT_NE(r.body.find(std::to_string(tc.status)), std::string::npos);
    EXPECT_EQ(r["connection"], "close");
    EXPECT_TRUE(c.WaitClosed());
  }
}

// RFC 9112, as a conformance suite checks it: what llhttp's defaults let
// through is refused here with 400 and a close, before any route runs.
TEST_F(HttpTest, StrictHeadRefusesWhatRfc9112Forbids) {
  struct Case {
    std::string req;
    int status;
    const char* why;
  };
  const std::vector<Case> cases = {
      {"GET / HTTP/1.1\r\nHost: localhost\r\nHost: u\r\n\r\n", 400, "two Host headers"},
      {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "a Host with a space"},
      {"GET / HTTP/1.1\r\nHost: user@t\r\n\r\n", 400, "userinfo in Host"},
      {"GET / HTTP/1.1\r\nHost: t:8o\r\n\r\n", 400, "a port that is not digits"},
      {"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400, "an unclosed IP literal"},
      {"GET / HTTP/1.1\r\nHost: localhost\r\nX-Invalid[]: 1\r\n\r\n", 400, "a bad field name"},
      {"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\x01b\r\n\r\n", 400, "a control character"},
      {"GET / HTTP/1.1\r\nHost: localhost\r\nX-A : 1\r\n\r\n", 400, "a space before the colon"},
      {"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length\t: 0\r\n\r\n", 400,
       "a tab before the colon"},
      {"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\n Content-Length: 5\r\n\r\nhello", 400,
       "obsolete line folding hiding a header"},
      {"PUT /kv/f HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
       400, "a folded Transfer-Encoding"},
      {"GET / HTTP/1.1\nHost: t\n\n", 400, "bare LF line ends"},
      {"GET / HTTP/1.1\r\nHost: t\rX: y\r\n\r\n", 400, "a bare CR"},
      {"PUT /kv/f HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
       "chunked in HTTP/1.0"},
      {"PUT /kv/f HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400,
       "chunked not last"},
      {"PUT /kv/f HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
       400, "duplicate Content-Length"},
      {"PUT /kv/f HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: "
       "chunked\r\n\r\n",
       400, "Content-Length with Transfer-Encoding"},
      {"GET / HTTP/1.1 x\r\nHost: localhost\r\n\r\n", 400, "junk after the version"},
      {"GET  / HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, "two spaces in the request line"},
      {"GET /\r\nHost: localhost\r\n\r\n", 400, "no version"},
      {"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405, "CONNECT"},
  };
  for (const auto& tc : cases) {
    Client c;
    ASSERT_TRUE(c.Connect(Port()));
    ASSERT_TRUE(c.SendAll(tc.req));
    Response r;
    ASSERT_TRUE(ReadResponse(c, &r)) << tc.why;
    EXPECT_EQ(r.status, tc.status) << tc.why;
    EXPECT_EQ(r["connection"], "close") << tc.why;
    EXPECT_TRUE(c.WaitClosed()) << tc.why;
  }
  // Nothing of the refused requests reached the store.
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(c.SendAll(Get("/kv/f")));
  Response r;
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.status, 404);
}

TEST_F(HttpTest, NoHostIsRefusedBeforeTheBody) {
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  // The body never comes: the answer must not wait for it.
  ASSERT_TRUE(c.SendAll("PUT /kv/x HTTP/1.1\r\nContent-Length: 10\r\n\r\n"));
  Response r;
  ASSERT_TRUE(ReadResponse(c, &r, false, 2000));
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(c.WaitClosed());
}

TEST_F(HttpTest, OptionsStarListsTheMethods) {
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(c.SendAll("OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  Response r;
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r["allow"], "GET, HEAD, PUT, DELETE, POST, OPTIONS");
  EXPECT_EQ(r["content-length"], "0");
  // Keep-alive goes on.
  ASSERT_TRUE(c.SendAll(Get("/")));
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.status, 200);
  // IP literals and ports are fine Host values.
  ASSERT_TRUE(c.SendAll("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"));
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.status, 200);
}

TEST_F(HttpTest, ChunkedBodyOverLimitGets413) {
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  std::string req = "PUT /kv/big HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 20; i++) req += "1000\r\n" + std::string(4096, 'z') + "\r\n";
  c.SendAll(req);  // the server may close before it has read everything
  Response r;
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.status, 413);
}

TEST_F(HttpTest, SlowHeadGets408WithinHeaderTimeout) {
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(c.SendAll("GET / HTTP/1.1\r\n"));
  // Trickling bytes does not extend the 1 s deadline for the whole head.
  for (int i = 0; i < 4; i++) {
    usleep(300'000);
    c.SendAll("X");
  }
  Response r;
  ASSERT_TRUE(ReadResponse(c, &r, false, 3000));
  EXPECT_EQ(r.status, 408);
  EXPECT_TRUE(c.WaitClosed());
}

TEST_F(HttpTest, IdleKeepAliveClosesAfterKeepaliveTimeout) {
  Client c;
  ASSERT_TRUE(c.Connect(Port()));
  ASSERT_TRUE(c.SendAll(Get("/a.txt")));
  Response r;
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_FALSE(c.WaitClosed(1000));  // keepalive is 2 s
  EXPECT_TRUE(c.WaitClosed(3000));
  EXPECT_TRUE(c.buffered().empty());  // closed silently, no 408
}

TEST_F(HttpTest, PathTraversalNeverEscapesTheRoot) {
  const std::vector<std::string> targets = {
      "/../etc/passwd",
      "/../../../../etc/passwd",
      "/%2e%2e/etc/passwd",
      "/%2e%2e/%2e%2e/etc/passwd",
      "/..%2f..%2fetc/passwd",
      "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
      "//etc/passwd",
      "/sub/../../etc/passwd",
      "/./../etc/passwd",
      "/etclink/passwd",
      "/etclink/",
      "/passwdlink",
      "/a.txt%00.html",
      "/%00",
      "/sub/%2e%2e/%2e%2e/etc/passwd",
      "/..\\..\\etc\\passwd",
      "/%252e%252e/etc/passwd",
      "/sub/..%5c..%5cetc/passwd",
      "/" + std::string(5000, 'x'),
      "/" +
          [] {
            std::string s;
            for (int i = 0; i < 600; i++) s += "a/";
            return s;
          }(),
      "http://evil/../../etc/passwd",
  };
  for (const auto& t : targets) {
    for (const char* listener : {"http", "http_ai"}) {
      Client c;
      ASSERT_TRUE(c.Connect(Port(listener)));
      ASSERT_TRUE(c.SendAll("GET " + t + " HTTP/1.1\r\nHost: localhost\r\n\r\n"));
      Response r;
      ASSERT_TRUE(ReadResponse(c, &r)) << t;
      EXPECT_TRUE(r.status == 400 || r.status == 403 || r.status == 404 || r.status == 414)
          << t << " -> " << r.status;
      EXPECT_EQ(r.body.find("root:"), std::string::npos) << t;
    }
  }
}

// The open-file cache (worker/http/filecache.h) re-checks an entry at most a
// second after its last check; both workers cache, so "fresh" means several
// new connections in a row get the new bytes.
TEST_F(HttpTest, ChangedFileIsServedFreshWithinASecond) {
  const std::string path = *root_ + "/fresh.txt";
  WriteFile(path, "version one");
  for (int i = 0; i < 4; i++) ASSERT_EQ(Do(Get("/fresh.txt")).body, "version one");
  const auto all_fresh = [](const std::string& want) {
    for (int i = 0; i < 6; i++)
      if (Do(Get("/fresh.txt")).body != want) return false;
    return true;
  };
  WriteFile(path, "version two");  // in place, same size, likely the same second
  EXPECT_TRUE(WaitFor([&] { return all_fresh("version two"); }, 2500, 50));
  const std::string tmp = path + ".new";
  WriteFile(tmp, "version three, longer");
  ASSERT_EQ(rename(tmp.c_str(), path.c_str()), 0);  // a new inode
  EXPECT_TRUE(WaitFor([&] { return all_fresh("version three, longer"); }, 2500, 50));
  Response r = Do(Get("/fresh.txt"));
  EXPECT_EQ(r["content-length"], "21");
  unlink(path.c_str());
  EXPECT_TRUE(WaitFor(
      [&] { return Do(Get("/fresh.txt")).status == 404 && Do(Get("/fresh.txt")).status == 404; },
      2500, 50));
}

TEST_F(HttpTest, CachedFileReplacedBySymlinkOutOfRootIsRefused) {
  const std::string path = *root_ + "/swap.txt";
  WriteFile(path, "inside the root");
  for (int i = 0; i < 4; i++) ASSERT_EQ(Do(Get("/swap.txt")).body, "inside the root");
  ASSERT_EQ(unlink(path.c_str()), 0);
  ASSERT_EQ(symlink("/etc/passwd", path.c_str()), 0);
  bool leaked = false;
  EXPECT_TRUE(WaitFor(
      [&] {
        for (int i = 0; i < 6; i++) {
          const Response r = Do(Get("/swap.txt"));
          if (r.body.find("root:") != std::string::npos) leaked = true;
          if (r.status != 403) return false;
        }
        return true;
      },
      2500, 50));
  EXPECT_FALSE(leaked);
  // The same for a directory's index replaced by a symlink out of the root.
  mkdir((*root_ + "/swapdir").c_str(), 0755);
  WriteFile(*root_ + "/swapdir/index.html", "dir index");
  for (int i = 0; i < 4; i++) ASSERT_EQ(Do(Get("/swapdir/")).body, "dir index");
  ASSERT_EQ(unlink((*root_ + "/swapdir/index.html").c_str()), 0);
  ASSERT_EQ(symlink("/etc/passwd", (*root_ + "/swapdir/index.html").c_str()), 0);
  EXPECT_TRUE(WaitFor(
      [&] {
        for (int i = 0; i < 6; i++) {
          const Response r = Do(Get("/swapdir/"));
          if (r.body.find("root:") != std::string::npos) leaked = true;
          if (r.status != 403) return false;
        }
        return true;
      },
      2500, 50));
  EXPECT_FALSE(leaked);
}

TEST_F(HttpTest, KvRoundTrip) {
  const std::string value("bin\0ary\xff", 8);
  // A listing page scans a bounded number of buckets, so it may end early
  // with a cursor: follow it to the end and return every page's body.
  auto list_all = [&](const std::string& url) {
    std::string bodies, cursor = "0";
    for (int page = 0; page < 1000; page++) {
      const Response p = Do(Get(url + (page ? "&cursor=" + cursor : "")));
      EXPECT_EQ(p.status, 200) << url;
      bodies += p.body;
      const size_t at = p.body.find("\"cursor\":\"");
      if (p.status != 200 || at == std::string::npos) break;
      cursor = p.body.substr(at + 10, p.body.find('"', at + 10) - at - 10);
      if (cursor == "0") break;
    }
    return bodies;
  };
  Response r =
      Do("PUT /kv/it%20key HTTP/1.1\r\nHost: localhost\r\nContent-Length: 8\r\n\r\n" + value);
  EXPECT_EQ(r.status, 201);
  r = Do("PUT /kv/it%20key HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nnew");
  EXPECT_EQ(r.status, 204);
  r = Do("PUT /kv/it%20key HTTP/1.1\r\nHost: localhost\r\nContent-Length: 8\r\n\r\n" + value);
  r = Do(Get("/kv/it%20key"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r["content-type"], "application/octet-stream");
  EXPECT_EQ(r.body, value);
  EXPECT_EQ(
      Do("PUT /kv/users/42?ttl=60 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nann")
          .status,
      201);
  EXPECT_EQ(Do(Get("/kv/users%5E42")).body, "ann");  // the namespace is the "ns^" prefix
  r = Do(Get("/kv/?prefix=users%5E&count=1000"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r["content-type"], "application/json");
  EXPECT_NE(r.body.find("\"cursor\":\""), std::string::npos);
  std::string all = list_all("/kv/?prefix=users%5E&count=1000");
  EXPECT_NE(all.find("\"users^42\""), std::string::npos) << all;
  all = list_all("/kv/users/?count=1000");
  EXPECT_NE(all.find("\"users^42\""), std::string::npos) << all;
  EXPECT_EQ(
      Do("PUT /kv/t?ttl=abc HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nx").status,
      400);
  EXPECT_EQ(Do("PUT /kv/big HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20000\r\n\r\n" +
               std::string(20000, 'v'))
                .status,
            413);  // over kv.max_value_bytes (16k)
  EXPECT_EQ(Do("DELETE /kv/users/42 HTTP/1.1\r\nHost: localhost\r\n\r\n").status, 204);
  EXPECT_EQ(Do("DELETE /kv/users/42 HTTP/1.1\r\nHost: localhost\r\n\r\n").status, 404);
  EXPECT_EQ(Do(Get("/kv/users/42")).status, 404);
  EXPECT_EQ(Do("POST /kv/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")["allow"],
            "GET, HEAD, PUT, DELETE");
  EXPECT_EQ(Do(Get("/kv/a/b/c")).status, 400);
  // Keys that are not UTF-8 come back base64-encoded.
  EXPECT_EQ(Do("PUT /kv/raw%FF HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nx").status,
            201);
  all = list_all("/kv/?prefix=raw&count=1000");
  EXPECT_NE(all.find("\"keys_b64\":[\"cmF3/w==\"]"), std::string::npos) << all;
}

TEST_F(HttpTest, OpsEndpointsShapes) {
  Do(Get("/a.txt"));
  Response r = Do(Get("/_health"));
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(
      std::regex_search(r.body, std::regex(R"(^\{"ok":true,"uptime_s":\d+,"workers_alive":2\})")))
      << r.body;
  r = Do(Get("/_stats"));
  EXPECT_EQ(r["content-type"], "application/json");
  for (const char* k :
       {"\"workers\":[{\"slot\":", "\"pid\":", "\"connections\":{\"active\":", "\"bytes\":{\"in\":",
        "\"http\":", "\"2xx\":", "\"totals\":", "\"store\":{\"keys\":", "\"hits\":",
        "\"evictions\":", "\"expired\":", "\"reloads\":", "\"uptime_s\":"})
    EXPECT_NE(r.body.find(k), std::string::npos) << k << " in " << r.body;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.body, m, std::regex(R"("totals":.*?"http":(\d+))")));
  EXPECT_GT(std::stoul(m[1]), 0u);
  r = Do(Get("/_metrics"));
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("# TYPE preforkd_requests_total counter"), std::string::npos);
  EXPECT_NE(r.body.find("# HELP preforkd_http_responses_total"), std::string::npos);
  EXPECT_TRUE(std::regex_search(
      r.body,
      std::regex(R"(preforkd_requests_total\{worker="[01]",pid="\d+",protocol="http"\} \d+)")));
  EXPECT_TRUE(std::regex_search(r.body, std::regex(R"(\npreforkd_kv_keys \d+\n)")));
  EXPECT_EQ(Do("POST /_stats HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n").status,
            405);
}

TEST_F(HttpTest, AccessLogCombinedFormatAndReopen) {
  Do(Get("/a.txt?log=1", "Referer: http://ref/\r\nUser-Agent: tester \"q\"\r\n"));
  const std::string path = *dir_ + "/access.log";
  const std::regex line(
      R"(127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /a\.txt\?log=1 HTTP/1\.1" 200 10 "http://ref/" "tester \\x22q\\x22" \d+\.\d{3})");
  EXPECT_TRUE(WaitFor([&] { return std::regex_search(ReadFile(path), line); }, 4000))
      << ReadFile(path);
  ASSERT_EQ(rename(path.c_str(), (path + ".1").c_str()), 0);
  server_->Signal(SIGUSR1);
  EXPECT_TRUE(WaitFor(
      [&] {
        Do(Get("/a.txt?after-reopen"));
        return ReadFile(path).find("after-reopen") != std::string::npos;
      },
      5000, 300));
}

TEST_F(HttpTest, CurlSmoke) {
  const std::string base = "http://127.0.0.1:" + std::to_string(Port());
  EXPECT_EQ(RunCmd("curl -sf " + base + "/a.txt"), "0123456789");
  EXPECT_EQ(RunCmd("curl -s -o /dev/null -w '%{http_code}' " + base + "/sub"), "301");
  EXPECT_EQ(RunCmd("curl -sfL " + base + "/sub"), "sub index");
  EXPECT_EQ(RunCmd("curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @/etc/hostname " +
                   base + "/kv/curl"),
            "201");
  EXPECT_EQ(RunCmd("curl -sf " + base + "/kv/curl"), ReadFile("/etc/hostname"));
  EXPECT_EQ(RunCmd("curl -sf -r 0-3 " + base + "/a.txt"), "0123");
}

TEST_F(HttpTest, AbSmokeHasNoFailures) {
  if (access("/usr/bin/ab", X_OK) != 0) GTEST_SKIP() << "ab not installed";
  const std::string out = RunCmd(
      "timeout 20 ab -q -n 10000 -c 50 http://127.0.0.1:" + std::to_string(Port()) + "/a.txt");
  EXPECT_NE(out.find("Complete requests:      10000"), std::string::npos) << out;
  EXPECT_NE(out.find("Failed requests:        0"), std::string::npos) << out;
  EXPECT_EQ(out.find("Non-2xx"), std::string::npos) << out;
  std::cout << out.substr(out.find("Requests per second")).substr(0, 60) << "\n";
}

TEST_F(HttpTest, WrkSmokeHasNoErrors) {
  if (access("/usr/bin/wrk", X_OK) != 0) GTEST_SKIP() << "wrk not installed";
  const std::string out = RunCmd(
      "timeout 20 wrk -t2 -c50 -d2s http://127.0.0.1:" + std::to_string(Port()) + "/index.html");
  EXPECT_NE(out.find("Requests/sec"), std::string::npos) << out;
  EXPECT_EQ(out.find("Socket errors"), std::string::npos) << out;
  EXPECT_EQ(out.find("Non-2xx"), std::string::npos) << out;
  std::cout << out << "\n";
}

// Draining: a keep-alive connection's next response says close, then it closes.
TEST(HttpDrain, NextResponseClosesAfterGracefulStop) {
  char tmpl[] = "/tmp/pf-http-drain-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  WriteFile(dir + "/index.html", "hi");
  Server s(ListenerYaml("http", "http", 0, "root: " + dir), "timeouts: {drain: 3s}\n", 1);
  ASSERT_TRUE(s.Start());
  Client busy, idle;
  ASSERT_TRUE(busy.Connect(s.Port("http")));
  ASSERT_TRUE(idle.Connect(s.Port("http")));
  Response r;
  for (Client* c : {&busy, &idle}) {
    ASSERT_TRUE(c->SendAll(Get("/")));
    ASSERT_TRUE(ReadResponse(*c, &r));
    EXPECT_FALSE(r.has("connection"));
  }
  s.Signal(SIGQUIT);
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& w : s.Workers())
          if (w.retiring) return true;
        return false;
      },
      3000));
  ASSERT_TRUE(busy.SendAll(Get("/")));
  ASSERT_TRUE(ReadResponse(busy, &r));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r["connection"], "close");
  EXPECT_TRUE(busy.WaitClosed());
  // The idle connection stays open until the drain timeout, not closed at once.
  EXPECT_FALSE(idle.WaitClosed(500));
  EXPECT_TRUE(s.WaitExit(6000));
  RunCmd("rm -rf " + dir);
}

}  // namespace
}  // namespace pf::test
