// tests/integration/test_tls.cc: TLS listeners of the real binary (2
// workers) with real clients: curl, redis-cli, redis-py, wrk, openssl
// s_client, and a small OpenSSL client of this file for kv-json, chat and
// echo. Protocol versions, ALPN, SNI, session resumption across workers,
// client certificates, non-TLS bytes on a TLS port (and TLS on a plain one),
// the handshake timeout, renegotiation, certificate reloads, the /_stats and
// /_metrics counters, and `preforkd -t` on bad TLS setups. The certificates
// (a CA, server and client certificates) are made once per program with the
// openssl command.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kIndex = "<h1>tls home</h1>\n";

bool Contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

long MsSince(Clock::time_point t0) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
}

// `s` quoted for sh.
std::string Q(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// ------------------------------------------------------------ certificates

// The folder of this program's certificates and docroot (made once).
std::string& Dir() {
  static std::string dir;
  return dir;
}
std::string F(const std::string& rel) { return Dir() + "/" + rel; }
std::string Ca() { return F("ca.pem"); }
std::string Www() { return F("www"); }

// A certificate made by MakeCertificates: NAME.pem and NAME.key.
struct CertSpec {
  const char* name;
  const char* newkey;  // openssl req -newkey
  const char* subject;
  const char* san;  // "" for none
  const char* eku;
  const char* serial;
  bool by_ca;  // signed by ca.pem, else self-signed
};

constexpr const char* kEc = "ec -pkeyopt ec_paramgen_curve:P-256";
const CertSpec kCerts[] = {
    // The default server certificate: localhost and 127.0.0.1, ECDSA P-256.
    {"server", kEc, "/CN=localhost", "DNS:localhost,IP:127.0.0.1", "serverAuth", "0x1001", true},
    // Another name (SNI).
    {"other", kEc, "/CN=other.test", "DNS:other.test", "serverAuth", "0x1002", true},
    // The renewed certificate of the reload test, RSA-2048.
    {"rsa", "rsa:2048", "/CN=localhost", "DNS:localhost,IP:127.0.0.1", "serverAuth", "0x2002",
     true},
    // Client certificates: one the CA signed, one self-signed.
    {"client", kEc, "/CN=tls-test-client", "", "clientAuth", "0x3001", true},
    {"rogue", kEc, "/CN=rogue-client", "", "clientAuth", "0x3002", false},
};

bool Openssl(const std::string& args) {
  std::string out;
  const int rc = Sh("timeout 60 openssl " + args, &out);
  if (rc != 0) ADD_FAILURE() << "openssl " << args << " failed (" << rc << "):\n" << out;
  return rc == 0;
}

bool MakeCertificates() {
  char tmpl[] = "/tmp/preforkd-tls-XXXXXX";
  if (!mkdtemp(tmpl)) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    return false;
  }
  Dir() = tmpl;
  fs::create_directories(Www());
  WriteFile(Www() + "/index.html", kIndex);
  WriteFile(Www() + "/1k", std::string(1024, 'k'));
  WriteFile(F("request.txt"), "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  bool ok =
      Openssl("req -x509 -newkey " + std::string(kEc) + " -nodes -keyout " + Q(F("ca.key")) +
              " -out " + Q(Ca()) +
              " -days 30 -subj '/CN=preforkd test CA' -addext "
              "basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign");
  for (const CertSpec& c : kCerts) {
    std::string a = "req -x509 -newkey " + std::string(c.newkey) + " -nodes -keyout " +
                    Q(F(std::string(c.name) + ".key")) + " -out " +
                    Q(F(std::string(c.name) + ".pem")) + " -days 30 -subj " + Q(c.subject) +
                    " -set_serial " + c.serial + " -addext basicConstraints=critical,CA:FALSE" +
                    " -addext extendedKeyUsage=" + c.eku;
    if (*c.san) a += " -addext subjectAltName=" + std::string(c.san);
    if (c.by_ca) a += " -CA " + Q(Ca()) + " -CAkey " + Q(F("ca.key"));
    ok = ok && Openssl(a);
  }
  return ok;
}

// A `tls:` block for ListenerYaml's `extra`: the certificate and key (the
// default server pair unless given) and `more` lines of the block.
std::string TlsBlock(const std::string& more = "", const std::string& cert = "",
                     const std::string& key = "") {
  std::string s = "tls:\n  cert: " + (cert.empty() ? F("server.pem") : cert) +
                  "\n  key: " + (key.empty() ? F("server.key") : key) + "\n";
  std::istringstream lines(more);
  std::string line;
  while (std::getline(lines, line))
    if (!line.empty()) s += "  " + line + "\n";
  return s;
}

// An https listener on the test docroot.
std::string Https(const std::string& name = "https", const std::string& more = "",
                  const std::string& cert = "", const std::string& key = "") {
  return ListenerYaml(name, "http", 0, "root: " + Www() + "\n" + TlsBlock(more, cert, key));
}

// A plain http listener for /_stats and /_metrics.
std::string Ops(const std::string& name = "ops") {
  return ListenerYaml(name, "http", 0, "root: " + Www());
}

// ------------------------------------------------------------ plain HTTP

struct HttpReply {
  int status = 0;
  std::string head, body;
};

// One request (Connection: close) on a plain connection, read to the end.
HttpReply PlainGet(uint16_t port, const std::string& target) {
  HttpReply r;
  Client c;
  if (!c.Connect(port) ||
      !c.SendAll("GET " + target + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
    return r;
  c.WaitClosed(10000);
  const std::string& got = c.buffered();
  const size_t end = got.find("\r\n\r\n");
  if (got.compare(0, 9, "HTTP/1.1 ") != 0 || end == std::string::npos) return r;
  r.status = std::atoi(got.c_str() + 9);
  r.head = got.substr(0, end + 2);
  r.body = got.substr(end + 4);
  return r;
}

// ------------------------------------------------------------ counters

// The object that starts at json[at] == '{', through its matching '}'.
std::string ObjectAt(const std::string& json, size_t at) {
  if (at >= json.size() || json[at] != '{') return "";
  int depth = 0;
  bool in_str = false;
  for (size_t i = at; i < json.size(); i++) {
    const char c = json[i];
    if (in_str) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_str = false;
    } else if (c == '"') {
      in_str = true;
    } else if (c == '{') {
      depth++;
    } else if (c == '}' && --depth == 0) {
      return json.substr(at, i - at + 1);
    }
  }
  return "";
}

// One "tls" object of /_stats: handshakes, resumed, tls1_2, tls1_3 and
// failures.REASON; -1 for a counter that is not there.
struct TlsCounts {
  bool found = false;
  std::map<std::string, long> v;
  long operator[](const std::string& k) const {
    auto it = v.find(k);
    return it == v.end() ? -1 : it->second;
  }
};

TlsCounts CountsIn(const std::string& obj) {
  TlsCounts c;
  if (obj.empty()) return c;
  c.found = true;
  static const std::regex kPair(R"re("(\w+)":(-?\d+))re");
  std::string top = obj;
  const size_t f = top.find("\"failures\":{");
  if (f != std::string::npos) {
    const std::string fo = ObjectAt(top, f + 11);
    for (std::sregex_iterator it(fo.begin(), fo.end(), kPair), end; it != end; ++it)
      c.v["failures." + (*it)[1].str()] = std::stol((*it)[2].str());
    top.erase(f, 11 + fo.size());
  }
  for (std::sregex_iterator it(top.begin(), top.end(), kPair), end; it != end; ++it)
    c.v[(*it)[1].str()] = std::stol((*it)[2].str());
  return c;
}

struct TlsStats {
  bool ok = false;
  std::string raw;
  std::vector<TlsCounts> workers;  // one per worker entry, in the order of /_stats
  TlsCounts totals;
};

TlsStats ParseTlsStats(const std::string& json) {
  TlsStats s;
  s.raw = json;
  const size_t totals = json.find("\"totals\":");
  if (totals == std::string::npos) return s;
  size_t at = json.find("{\"slot\":");
  while (at != std::string::npos && at < totals) {
    const size_t next = json.find("{\"slot\":", at + 1);
    const size_t end = std::min(next, totals);
    const size_t t = json.find("\"tls\":{", at);
    s.workers.push_back(CountsIn(t < end ? ObjectAt(json, t + 6) : ""));
    at = next;
  }
  const size_t t = json.find("\"tls\":{", totals);
  s.totals = CountsIn(t == std::string::npos ? "" : ObjectAt(json, t + 6));
  s.ok = true;
  return s;
}

// /_stats of a plain http listener.
TlsStats Stats(uint16_t ops_port) { return ParseTlsStats(PlainGet(ops_port, "/_stats").body); }

// Totals' `key` ("handshakes", "failures.alpn", ...), -1 if not there.
long Total(uint16_t ops_port, const std::string& key) { return Stats(ops_port).totals[key]; }

// Waits until Total(key) >= n; the last value seen.
long WaitTotal(uint16_t ops_port, const std::string& key, long n, int timeout_ms = 5000) {
  long v = -1;
  WaitFor(
      [&] {
        v = Total(ops_port, key);
        return v >= n;
      },
      timeout_ms, 20);
  return v;
}

// Sum of the samples of metric `name` (one line per worker) whose labels
// contain `label` ("" for all); -1 if there is no such line.
long MetricSum(const std::string& text, const std::string& name, const std::string& label = "") {
  long sum = -1;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(name + "{", 0) != 0) continue;
    const size_t close = line.find("} ");
    if (close == std::string::npos || !Contains(line.substr(0, close), label)) continue;
    sum = (sum < 0 ? 0 : sum) + std::atol(line.c_str() + close + 2);
  }
  return sum;
}

// ------------------------------------------------------------ openssl CLI

// `openssl s_client` to 127.0.0.1:port trusting the test CA, failing when
// the certificate does not verify; `args`: more options. Stdin is
// /dev/null, or with `http` one GET / (Connection: close) and -ign_eof, so
// it reads to the server's close (and receives TLS 1.3 session tickets).
int SClient(uint16_t port, const std::string& args, std::string* out, bool http = false) {
  return Sh("timeout 10 openssl s_client -connect 127.0.0.1:" + std::to_string(port) + " -CAfile " +
                Q(Ca()) + " -verify_return_error " + args +
                (http ? " -ign_eof <" + Q(F("request.txt")) : " </dev/null"),
            out);
}

// The first "New, ..." or "Reused, ..." line of s_client's output.
std::string SessionLine(const std::string& out) {
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line))
    if (line.rfind("New, ", 0) == 0 || line.rfind("Reused, ", 0) == 0) return line;
  return "<no session line>";
}

// `openssl x509 -noout FIELD` of the certificate a new connection gets:
// "serial=1001", "subject=CN = localhost".
std::string Served(uint16_t port, const std::string& field, const std::string& args = "") {
  std::string out;
  Sh("timeout 10 openssl s_client -connect 127.0.0.1:" + std::to_string(port) + " " + args +
         " </dev/null 2>/dev/null | openssl x509 -noout " + field,
     &out);
  return Trim(out);
}

std::string RedisCli(uint16_t port, const std::string& args) {
  std::string out;
  Sh("timeout 10 redis-cli --tls --cacert " + Q(Ca()) + " -h 127.0.0.1 -p " + std::to_string(port) +
         " " + args,
     &out);
  return out;
}

std::string CurlBase(uint16_t port) {
  return "timeout 10 curl -sS --cacert " + Q(Ca()) +
         " --resolve localhost:" + std::to_string(port) + ":127.0.0.1 ";
}
std::string Url(uint16_t port, const std::string& path) {
  return "https://localhost:" + std::to_string(port) + path;
}

// ------------------------------------------------------------ TLS client

std::string OpensslErrors() {
  std::string s;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    s += (s.empty() ? "" : "; ") + std::string(buf);
  }
  return s.empty() ? "no OpenSSL error" : s;
}

// A blocking TLS client on 127.0.0.1 that verifies the server against the
// test CA (as `host`), with timeouts on every call.
class TlsClient {
 public:
  TlsClient() = default;
  ~TlsClient() { Close(); }
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  // `max_version`: 0 or e.g. TLS1_2_VERSION.
  bool Connect(uint16_t port, int max_version = 0, const std::string& host = "localhost",
               int timeout_ms = 5000) {
    Close();
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (fd_ < 0 || connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      err_ = std::string("connect: ") + std::strerror(errno);
      return false;
    }
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // Short socket timeouts: every blocking call below retries until its deadline.
    timeval tv{0, 100'000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (!ctx_ || SSL_CTX_load_verify_locations(ctx_, Ca().c_str(), nullptr) != 1) {
      err_ = "SSL_CTX: " + OpensslErrors();
      return false;
    }
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_options(ctx_, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (max_version) SSL_CTX_set_max_proto_version(ctx_, max_version);
    ssl_ = SSL_new(ctx_);
    SSL_set_tlsext_host_name(ssl_, host.c_str());
    SSL_set1_host(ssl_, host.c_str());
    SSL_set_fd(ssl_, fd_);
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      ERR_clear_error();
      const int r = SSL_connect(ssl_);
      if (r == 1) return true;
      const int e = SSL_get_error(ssl_, r);
      if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && Clock::now() < deadline)
        continue;
      err_ = "SSL_connect: error " + std::to_string(e) + ": " + OpensslErrors();
      return false;
    }
  }

  bool Write(std::string_view s, int timeout_ms = 5000) {
    if (!ssl_) return false;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!s.empty()) {
      ERR_clear_error();
      const int n =
          SSL_write(ssl_, s.data(), static_cast<int>(std::min<size_t>(s.size(), 1 << 20)));
      if (n > 0) {
        s.remove_prefix(static_cast<size_t>(n));
        continue;
      }
      const int e = SSL_get_error(ssl_, n);
      if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && Clock::now() < deadline)
        continue;
      err_ = "SSL_write: error " + std::to_string(e) + ": " + OpensslErrors();
      return false;
    }
    return true;
  }

  bool RecvUntil(std::string_view delim, std::string* out, int timeout_ms = 5000) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      const size_t at = buf_.find(delim);
      if (at != std::string::npos) {
        out->assign(buf_, 0, at + delim.size());
        buf_.erase(0, at + delim.size());
        return true;
      }
      if (Fill(deadline) <= 0) return false;
    }
  }

  bool RecvLine(std::string* line, int timeout_ms = 5000) {
    if (!RecvUntil("\n", line, timeout_ms)) return false;
    line->pop_back();
    if (!line->empty() && line->back() == '\r') line->pop_back();
    return true;
  }

  bool RecvExact(size_t n, std::string* out, int timeout_ms = 5000) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (buf_.size() < n)
      if (Fill(deadline) <= 0) return false;
    out->assign(buf_, 0, n);
    buf_.erase(0, n);
    return true;
  }

  // Asks the server for a renegotiation (TLS 1.2); true if it completed.
  bool Renegotiate(int timeout_ms = 5000) {
    ERR_clear_error();
    if (SSL_renegotiate(ssl_) != 1) {
      err_ = "SSL_renegotiate: " + OpensslErrors();
      return false;
    }
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      ERR_clear_error();
      const int r = SSL_do_handshake(ssl_);
      if (r == 1 && !SSL_renegotiate_pending(ssl_)) return true;
      const int e = r == 1 ? SSL_ERROR_WANT_READ : SSL_get_error(ssl_, r);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        err_ = "SSL_do_handshake: error " + std::to_string(e) + ": " + OpensslErrors();
        return false;
      }
      if (Clock::now() >= deadline) {
        err_ = "renegotiation did not finish";
        return false;
      }
      // The server's answer arrives through a read.
      char b[1024];
      const int n = SSL_read(ssl_, b, sizeof b);
      if (n > 0) buf_.append(b, static_cast<size_t>(n));
      if (n <= 0) {
        const int re = SSL_get_error(ssl_, n);
        if (re != SSL_ERROR_WANT_READ && re != SSL_ERROR_WANT_WRITE) {
          err_ = "SSL_read: error " + std::to_string(re) + ": " + OpensslErrors();
          return false;
        }
      }
    }
  }

  // The server certificate's serial number in hex ("1001").
  std::string PeerSerial() const {
    X509* x = ssl_ ? SSL_get1_peer_certificate(ssl_) : nullptr;
    if (!x) return "";
    BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), nullptr);
    char* hex = bn ? BN_bn2hex(bn) : nullptr;
    std::string s = hex ? hex : "";
    OPENSSL_free(hex);
    BN_free(bn);
    X509_free(x);
    return s;
  }
  std::string version() const { return ssl_ ? SSL_get_version(ssl_) : ""; }
  const std::string& error() const { return err_; }

  void Close() {
    if (ssl_) SSL_free(ssl_);
    if (ctx_) SSL_CTX_free(ctx_);
    if (fd_ >= 0) close(fd_);
    ssl_ = nullptr;
    ctx_ = nullptr;
    fd_ = -1;
    buf_.clear();
  }

 private:
  // Reads what arrives before `deadline`: 1 data, 0 closed, -1 timeout or error.
  int Fill(Clock::time_point deadline) {
    if (!ssl_) return -1;
    char b[16384];
    for (;;) {
      ERR_clear_error();
      const int n = SSL_read(ssl_, b, sizeof b);
      if (n > 0) {
        buf_.append(b, static_cast<size_t>(n));
        return 1;
      }
      const int e = SSL_get_error(ssl_, n);
      if (e == SSL_ERROR_ZERO_RETURN) return 0;
      if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && Clock::now() < deadline)
        continue;
      err_ = e == SSL_ERROR_WANT_READ
                 ? "timeout"
                 : "SSL_read: error " + std::to_string(e) + ": " + OpensslErrors();
      return -1;
    }
  }

  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::string buf_, err_;
};

// One HTTP/1.1 response on `c`: its status (0 if none) and body.
int ReadHttp(TlsClient& c, std::string* body, std::string* head = nullptr) {
  std::string h;
  if (!c.RecvUntil("\r\n\r\n", &h) || h.compare(0, 9, "HTTP/1.1 ") != 0) return 0;
  std::string lower = h;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  const size_t cl = lower.find("\r\ncontent-length: ");
  const size_t len = cl == std::string::npos ? 0 : std::strtoul(h.c_str() + cl + 18, nullptr, 10);
  if (len && !c.RecvExact(len, body)) return 0;
  if (head) *head = h;
  return std::atoi(h.c_str() + 9);
}

// ------------------------------------------------------------ fixture

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { certs_ok_ = MakeCertificates(); }
  static void TearDownTestSuite() {
    std::error_code ec;
    if (!Dir().empty() && !std::getenv("PREFORKD_KEEP_TMP")) fs::remove_all(Dir(), ec);
  }
  void SetUp() override { ASSERT_TRUE(certs_ok_) << "the test certificates could not be made"; }

  // A folder of this test's own (files the test rewrites).
  static std::string OwnDir(const std::string& name) {
    const std::string d = F(name);
    fs::create_directories(d);
    return d;
  }

  static bool certs_ok_;
};
bool TlsTest::certs_ok_ = false;

// ------------------------------------------------------------ tests

TEST_F(TlsTest, HttpsServesStaticFilesAndKvToCurl) {
  Server s(Https());
  ASSERT_TRUE(s.Start());
  const uint16_t p = s.Port("https");
  const std::string curl = CurlBase(p);
  std::string out;
  EXPECT_EQ(Sh(curl + Url(p, "/index.html"), &out), 0) << out;
  EXPECT_EQ(out, kIndex);
  // The certificate's IP address name.
  EXPECT_EQ(Sh("timeout 10 curl -sS --cacert " + Q(Ca()) +
                   " https://127.0.0.1:" + std::to_string(p) + "/1k",
               &out),
            0)
      << out;
  EXPECT_EQ(out, std::string(1024, 'k'));
  // curl offers h2 first; an http listener answers in HTTP/1.1.
  Sh(curl + "-o /dev/null -w '%{http_version}' " + Url(p, "/index.html"), &out);
  EXPECT_EQ(out, "1.1");
  // The REST view of the store.
  Sh(curl + "-o /dev/null -w '%{http_code}' -X PUT --data-binary 'over tls' " +
         Url(p, "/kv/tls/greeting"),
     &out);
  EXPECT_EQ(out, "201");
  Sh(curl + Url(p, "/kv/tls/greeting"), &out);
  EXPECT_EQ(out, "over tls");
  // Trusting another certificate instead of the CA, curl refuses the
  // server's (the chain is really checked).
  EXPECT_EQ(Sh("timeout 10 curl -sS --cacert " + Q(F("other.pem")) +
                   " --resolve localhost:" + std::to_string(p) + ":127.0.0.1 " + Url(p, "/"),
               &out),
            60)
      << out;

  // /_stats over TLS: a "tls" object in every worker entry and in the totals.
  EXPECT_EQ(Sh(curl + Url(p, "/_stats"), &out), 0) << out;
  const TlsStats st = ParseTlsStats(out);
  ASSERT_TRUE(st.ok) << out;
  EXPECT_EQ(st.workers.size(), 2u) << out;
  std::vector<const TlsCounts*> all;
  for (const auto& w : st.workers) all.push_back(&w);
  all.push_back(&st.totals);
  for (const TlsCounts* c : all) {
    ASSERT_TRUE(c->found) << out;
    for (const char* k :
         {"handshakes", "resumed", "tls1_2", "tls1_3", "failures.plain_http", "failures.not_tls",
          "failures.timeout", "failures.eof", "failures.version", "failures.cipher",
          "failures.alpn", "failures.client_cert", "failures.other"})
      EXPECT_GE((*c)[k], 0) << k << " in " << out;
  }
  // Five handshakes finished before this one (the failed curl is not one).
  EXPECT_GE(st.totals["handshakes"], 5) << out;
  EXPECT_GE(st.totals["tls1_3"], 5) << out;
  long sum = 0;
  for (const auto& w : st.workers) sum += w["handshakes"];
  EXPECT_EQ(sum, st.totals["handshakes"]) << out;

  EXPECT_EQ(Sh(curl + Url(p, "/_metrics"), &out), 0) << out;
  for (const char* re : {R"(\npreforkd_tls_handshakes_total\{worker="[01]",pid="\d+"\} \d+\n)",
                         R"(\npreforkd_tls_resumed_total\{worker="[01]",pid="\d+"\} \d+\n)",
                         R"(\npreforkd_tls_handshake_failures_total\{worker="[01]",pid="\d+",)"
                         R"(reason="timeout"\} \d+\n)"})
    EXPECT_TRUE(std::regex_search(out, std::regex(re))) << re << " in\n" << out;
  EXPECT_GE(MetricSum(out, "preforkd_tls_handshakes_total"), 5) << out;
}

TEST_F(TlsTest, RespWorksWithRedisCliAndRedisPy) {
  Server s(ListenerYaml("resp", "resp", 0, TlsBlock()));
  ASSERT_TRUE(s.Start());
  const uint16_t p = s.Port("resp");
  EXPECT_EQ(RedisCli(p, "SET tls:cli hello"), "OK\n");
  EXPECT_EQ(RedisCli(p, "GET tls:cli"), "hello\n");
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  const std::string py =
      "import redis\n"
      "r = redis.Redis(host='127.0.0.1', port=" +
      std::to_string(p) + ", ssl=True, ssl_ca_certs='" + Ca() +
      "', socket_timeout=5)\n"
      "assert r.set('tls:py', 'from python')\n"
      "print(r.get('tls:py').decode(), r.get('tls:cli').decode())\n";
  std::string out;
  EXPECT_EQ(Sh("timeout 20 /usr/bin/python3 -c " + Q(py), &out), 0) << out;
  EXPECT_EQ(out, "from python hello\n");
  // A plain RESP client on the TLS port gets nothing but a close.
  Client c;
  ASSERT_TRUE(c.Connect(p));
  EXPECT_EQ(RespCall(c, {"GET", "tls:cli"}), "<no reply>");
}

TEST_F(TlsTest, KvJsonChatAndEchoOverTls) {
  Server s(ListenerYaml("json", "kv-json", 0, TlsBlock()) +
           ListenerYaml("chat", "chat", 0, TlsBlock()) +
           ListenerYaml("echo", "echo", 0, TlsBlock()));
  ASSERT_TRUE(s.Start());
  std::string line;

  TlsClient e;
  ASSERT_TRUE(e.Connect(s.Port("echo"))) << e.error();
  EXPECT_EQ(e.PeerSerial(), "1001");
  ASSERT_TRUE(e.Write("hello over tls\n"));
  ASSERT_TRUE(e.RecvLine(&line)) << e.error();
  EXPECT_EQ(line, "hello over tls");
  // Many records each way.
  std::string big;
  for (int i = 0; i < 2000; i++) big += "line " + std::to_string(i) + std::string(90, 'x') + "\n";
  ASSERT_TRUE(e.Write(big)) << e.error();
  std::string back;
  ASSERT_TRUE(e.RecvExact(big.size(), &back, 10000)) << e.error();
  EXPECT_TRUE(back == big);

  TlsClient j;
  ASSERT_TRUE(j.Connect(s.Port("json"))) << j.error();
  ASSERT_TRUE(j.Write(R"({"id":1,"action":"SET","ns":"tls","key":"k","value":"v1"})"
                      "\n"));
  ASSERT_TRUE(j.RecvLine(&line)) << j.error();
  EXPECT_EQ(line, R"({"id":1,"ok":true})");
  ASSERT_TRUE(j.Write(R"({"id":2,"action":"GET","ns":"tls","key":"k"})"
                      "\n"));
  ASSERT_TRUE(j.RecvLine(&line)) << j.error();
  EXPECT_EQ(line, R"({"id":2,"ok":true,"result":"v1"})");

  TlsClient c;
  ASSERT_TRUE(c.Connect(s.Port("chat"))) << c.error();
  ASSERT_TRUE(c.RecvLine(&line)) << c.error();
  EXPECT_EQ(line.rfind("* welcome to preforkd chat, worker=", 0), 0u) << line;
  ASSERT_TRUE(c.RecvLine(&line)) << c.error();
  EXPECT_EQ(line.rfind("* joined [lobby]", 0), 0u) << line;
  ASSERT_TRUE(c.Write("/nick tlsuser\n"));
  std::string got = "<none>";
  while (c.RecvLine(&line))
    if (line.rfind("* you are now", 0) == 0 || line.rfind("!", 0) == 0) {
      got = line;
      break;
    }
  EXPECT_EQ(got, "* you are now tlsuser");
  ASSERT_TRUE(c.Write("hello room\n"));
  got = "<none>";
  while (c.RecvLine(&line))
    if (line.rfind("[lobby]", 0) == 0) {
      got = line;
      break;
    }
  EXPECT_EQ(got, "[lobby] tlsuser: hello room");
}

TEST_F(TlsTest, ProtocolVersionsFollowTheConfig) {
  Server s(ListenerYaml("both", "echo", 0, TlsBlock()) +
           ListenerYaml("only13", "echo", 0, TlsBlock("protocols: [TLSv1.3]")) + Ops());
  ASSERT_TRUE(s.Start());
  const uint16_t both = s.Port("both"), only13 = s.Port("only13");
  std::string out;
  EXPECT_EQ(SClient(both, "-brief -tls1_2", &out), 0) << out;
  EXPECT_TRUE(Contains(out, "Protocol version: TLSv1.2")) << out;
  EXPECT_EQ(SClient(both, "-brief -tls1_3", &out), 0) << out;
  EXPECT_TRUE(Contains(out, "Protocol version: TLSv1.3")) << out;
  EXPECT_EQ(SClient(only13, "-brief -tls1_3", &out), 0) << out;
  EXPECT_TRUE(Contains(out, "Protocol version: TLSv1.3")) << out;
  EXPECT_NE(SClient(only13, "-brief -tls1_2", &out), 0) << out;
  EXPECT_FALSE(Contains(out, "Protocol version:")) << out;
  // TLS 1.1 is never offered (the client needs security level 0 to try it).
  EXPECT_NE(SClient(both, "-brief -tls1_1 -cipher DEFAULT@SECLEVEL=0", &out), 0) << out;
  EXPECT_FALSE(Contains(out, "Protocol version:")) << out;

  EXPECT_EQ(WaitTotal(s.Port("ops"), "failures.version", 2), 2) << Stats(s.Port("ops")).raw;
  const TlsStats st = Stats(s.Port("ops"));
  EXPECT_EQ(st.totals["tls1_2"], 1) << st.raw;
  EXPECT_EQ(st.totals["tls1_3"], 2) << st.raw;
  EXPECT_EQ(st.totals["handshakes"], 3) << st.raw;
}

TEST_F(TlsTest, CipherListsFollowTheConfig) {
  Server s(ListenerYaml("def", "echo", 0, TlsBlock()) +
           ListenerYaml("narrow", "echo", 0,
                        TlsBlock("ciphers: ECDHE-ECDSA-AES256-GCM-SHA384\n"
                                 "ciphersuites: TLS_CHACHA20_POLY1305_SHA256")) +
           Ops());
  ASSERT_TRUE(s.Start());
  const uint16_t def = s.Port("def"), narrow = s.Port("narrow");
  std::string out;
  // The default (Mozilla intermediate) has no CBC suites; the narrow list
  // has exactly the one configured per version.
  EXPECT_NE(SClient(def, "-brief -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA", &out), 0) << out;
  EXPECT_EQ(SClient(narrow, "-brief -tls1_2", &out), 0) << out;
  EXPECT_TRUE(Contains(out, "Ciphersuite: ECDHE-ECDSA-AES256-GCM-SHA384")) << out;
  EXPECT_NE(SClient(narrow, "-brief -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256", &out), 0)
      << out;
  EXPECT_EQ(SClient(narrow, "-brief -tls1_3", &out), 0) << out;
  EXPECT_TRUE(Contains(out, "Ciphersuite: TLS_CHACHA20_POLY1305_SHA256")) << out;
  EXPECT_NE(SClient(narrow, "-brief -tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256", &out), 0) << out;
  EXPECT_EQ(WaitTotal(s.Port("ops"), "failures.cipher", 3), 3) << Stats(s.Port("ops")).raw;
}

TEST_F(TlsTest, AlpnSelectsHttp11AndRefusesH2Only) {
  Server s(Https() + ListenerYaml("resp", "resp", 0, TlsBlock()) + Ops());
  ASSERT_TRUE(s.Start());
  const uint16_t p = s.Port("https");
  std::string out;
  EXPECT_EQ(SClient(p, "-alpn http/1.1", &out), 0) << out;
  EXPECT_TRUE(Contains(out, "ALPN protocol: http/1.1")) << out;
  EXPECT_EQ(SClient(p, "-alpn h2,http/1.1", &out), 0) << out;
  EXPECT_TRUE(Contains(out, "ALPN protocol: http/1.1")) << out;
  EXPECT_EQ(SClient(p, "", &out), 0) << out;
  EXPECT_TRUE(Contains(out, "No ALPN negotiated")) << out;
  EXPECT_NE(SClient(p, "-alpn h2", &out), 0) << out;
  EXPECT_TRUE(Contains(out, "no application protocol")) << out;
  // Other protocols ignore ALPN.
  EXPECT_EQ(SClient(s.Port("resp"), "-alpn h2", &out), 0) << out;
  EXPECT_TRUE(Contains(out, "No ALPN negotiated")) << out;

  const uint16_t ops = s.Port("ops");
  EXPECT_EQ(WaitTotal(ops, "failures.alpn", 1), 1) << Stats(ops).raw;
  EXPECT_TRUE(WaitFor([&] { return Total(ops, "handshakes") == 4; }, 5000, 20)) << Stats(ops).raw;
  const std::string metrics = PlainGet(ops, "/_metrics").body;
  EXPECT_EQ(MetricSum(metrics, "preforkd_tls_handshake_failures_total", "reason=\"alpn\""), 1)
      << metrics;
  EXPECT_EQ(MetricSum(metrics, "preforkd_tls_handshakes_total"), 4) << metrics;
}

TEST_F(TlsTest, SniPicksTheMatchingCertificate) {
  // (server_names: the Host check lets other.test through, for curl below.)
  Server s(ListenerYaml(
      "https", "http", 0,
      "root: " + Www() + "\nserver_names: [localhost, other.test]\n" +
          TlsBlock("certificates: [{cert: " + F("other.pem") + ", key: " + F("other.key") + "}]")));
  ASSERT_TRUE(s.Start());
  const uint16_t p = s.Port("https");
  EXPECT_EQ(Served(p, "-subject", "-servername other.test"), "subject=CN = other.test");
  EXPECT_EQ(Served(p, "-subject", "-servername localhost"), "subject=CN = localhost");
  EXPECT_EQ(Served(p, "-subject", "-noservername"), "subject=CN = localhost");
  EXPECT_EQ(Served(p, "-subject", "-servername nowhere.test"), "subject=CN = localhost");
  std::string out;
  EXPECT_EQ(SClient(p, "-servername other.test -verify_hostname other.test", &out), 0) << out;
  EXPECT_TRUE(Contains(out, "Verification: OK")) << out;
  // curl checks the name too.
  EXPECT_EQ(
      Sh("timeout 10 curl -sS --cacert " + Q(Ca()) + " --resolve other.test:" + std::to_string(p) +
             ":127.0.0.1 https://other.test:" + std::to_string(p) + "/index.html",
         &out),
      0)
      << out;
  EXPECT_EQ(out, kIndex);
}

TEST_F(TlsTest, SessionsResumeOnEveryWorker) {
  Server s(Https() + Ops());
  ASSERT_TRUE(s.Start());
  const uint16_t p = s.Port("https"), ops = s.Port("ops");
  const std::string sess = F("session13.pem");
  std::string out;
  ASSERT_EQ(SClient(p, "-tls1_3 -sess_out " + Q(sess), &out, true), 0) << out;
  EXPECT_EQ(SessionLine(out).rfind("New, TLSv1.3", 0), 0u) << out;
  EXPECT_TRUE(Contains(out, kIndex)) << out;
  // Connections spread over both workers (SO_REUSEPORT); every one resumes.
  int runs = 0, reused = 0;
  bool both = false;
  TlsStats st;
  while (runs < 60 && !both) {
    SClient(p, "-tls1_3 -sess_in " + Q(sess), &out, true);
    runs++;
    if (SessionLine(out).rfind("Reused, TLSv1.3", 0) == 0)
      reused++;
    else if (runs - reused <= 3)
      ADD_FAILURE() << "run " << runs << " did not resume:\n" << out;
    if (runs >= 10) {
      st = Stats(ops);
      both = st.workers.size() == 2;
      for (const auto& w : st.workers) both = both && w["resumed"] > 0;
    }
  }
  EXPECT_EQ(reused, runs);
  EXPECT_TRUE(both) << "after " << runs << " resumptions: " << st.raw;
  // TLS 1.2 session tickets too.
  const std::string sess12 = F("session12.pem");
  ASSERT_EQ(SClient(p, "-tls1_2 -sess_out " + Q(sess12), &out, true), 0) << out;
  EXPECT_EQ(SessionLine(out).rfind("New, TLSv1.2", 0), 0u) << out;
  EXPECT_EQ(SClient(p, "-tls1_2 -sess_in " + Q(sess12), &out, true), 0) << out;
  EXPECT_EQ(SessionLine(out).rfind("Reused, TLSv1.2", 0), 0u) << out;
  EXPECT_GE(WaitTotal(ops, "resumed", runs + 1), runs + 1) << Stats(ops).raw;
  const std::string metrics = PlainGet(ops, "/_metrics").body;
  EXPECT_GE(MetricSum(metrics, "preforkd_tls_resumed_total"), runs + 1) << metrics;
}

TEST_F(TlsTest, ClientCertificatesAreRequiredAndVerified) {
  Server s(ListenerYaml("resp", "resp", 0, TlsBlock("ca: " + Ca() + "\nclient_auth: required")) +
           Ops());
  ASSERT_TRUE(s.Start());
  const uint16_t p = s.Port("resp"), ops = s.Port("ops");
  std::string out = RedisCli(p, "PING");
  EXPECT_FALSE(Contains(out, "PONG")) << "no client certificate: " << out;
  out = RedisCli(p, "--cert " + Q(F("rogue.pem")) + " --key " + Q(F("rogue.key")) + " PING");
  EXPECT_FALSE(Contains(out, "PONG")) << "self-signed client certificate: " << out;
  out = RedisCli(p, "--cert " + Q(F("client.pem")) + " --key " + Q(F("client.key")) + " PING");
  EXPECT_EQ(out, "PONG\n");
  EXPECT_EQ(WaitTotal(ops, "failures.client_cert", 2), 2) << Stats(ops).raw;
  EXPECT_EQ(Total(ops, "handshakes"), 1) << Stats(ops).raw;
}

TEST_F(TlsTest, NonTlsBytesAndStalledHandshakesAreClosed) {
  Server s(Https("https", "handshake_timeout: 1s") + ListenerYaml("tresp", "resp", 0, TlsBlock()) +
           ListenerYaml("plain", "http", 0, "root: " + Www()));
  ASSERT_TRUE(s.Start());
  const uint16_t https = s.Port("https"), tresp = s.Port("tresp"), plain = s.Port("plain");
  const std::vector<pid_t> pids = s.WorkerPids();
  // The counters once Start's probe connections are closed (and counted):
  // none open but the one asking.
  TlsStats before;
  EXPECT_TRUE(WaitFor(
      [&] {
        before = Stats(plain);
        return Contains(before.raw, "\"totals\":{\"connections\":{\"active\":1,");
      },
      5000, 20))
      << before.raw;
  ASSERT_TRUE(before.totals.found) << before.raw;

  // Plain HTTP to the HTTPS port: nginx's 400, in plain text, then close.
  Client c;
  ASSERT_TRUE(c.Connect(https));
  ASSERT_TRUE(c.SendAll("GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  EXPECT_TRUE(c.WaitClosed(3000));
  EXPECT_EQ(c.buffered().rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << c.buffered();
  EXPECT_TRUE(Contains(c.buffered(), "The plain HTTP request was sent to HTTPS port"))
      << c.buffered();
  EXPECT_FALSE(Contains(c.buffered(), kIndex));

  // Other bytes that are not TLS: closed at once (well before the 10 s handshake timeout).
  Client g;
  ASSERT_TRUE(g.Connect(tresp));
  ASSERT_TRUE(g.SendAll(Resp({"PING"})));
  EXPECT_TRUE(g.WaitClosed(3000));
  EXPECT_FALSE(Contains(g.buffered(), "PONG")) << g.buffered();

  // A TLS ClientHello on a plain port fails quickly, no hang.
  std::string out;
  auto t0 = Clock::now();
  EXPECT_NE(SClient(plain, "", &out), 0) << out;
  EXPECT_LT(MsSince(t0), 5000) << out;
  EXPECT_TRUE(Contains(out, "no peer certificate available")) << out;

  // A ClientHello that never completes: closed after handshake_timeout (1 s).
  const std::string partial("\x16\x03\x01\x00\xff\x01\x00\x00\xfb\x03\x03", 11);
  Client h;
  ASSERT_TRUE(h.Connect(https));
  t0 = Clock::now();
  ASSERT_TRUE(h.SendAll(partial));
  EXPECT_TRUE(h.WaitClosed(5000));
  const long waited = MsSince(t0);
  EXPECT_GE(waited, 800);
  EXPECT_LE(waited, 5000);
  // And one whose client goes away.
  Client q;
  ASSERT_TRUE(q.Connect(https));
  ASSERT_TRUE(q.SendAll(partial));
  q.Close();

  // Each is counted under its reason.
  for (const char* k :
       {"failures.plain_http", "failures.not_tls", "failures.timeout", "failures.eof"}) {
    const long want = before.totals[k] + 1;
    EXPECT_GE(WaitTotal(plain, k, want), want) << k << ": " << Stats(plain).raw;
  }
  // Nothing crashed, and TLS still works.
  EXPECT_EQ(s.WorkerPids(), pids);
  EXPECT_EQ(Sh(CurlBase(https) + Url(https, "/index.html"), &out), 0) << out;
  EXPECT_EQ(out, kIndex);
  EXPECT_EQ(RedisCli(tresp, "PING"), "PONG\n");
}

TEST_F(TlsTest, RenegotiationIsRefused) {
  Server s(ListenerYaml("echo", "echo", 0, TlsBlock()));
  ASSERT_TRUE(s.Start());
  const std::vector<pid_t> pids = s.WorkerPids();
  TlsClient c;
  ASSERT_TRUE(c.Connect(s.Port("echo"), TLS1_2_VERSION)) << c.error();
  EXPECT_EQ(c.version(), "TLSv1.2");
  std::string line;
  ASSERT_TRUE(c.Write("before\n"));
  ASSERT_TRUE(c.RecvLine(&line)) << c.error();
  EXPECT_EQ(line, "before");
  EXPECT_FALSE(c.Renegotiate()) << "the server renegotiated";
  // The server is fine: a new connection works.
  TlsClient d;
  ASSERT_TRUE(d.Connect(s.Port("echo"), TLS1_2_VERSION)) << d.error();
  ASSERT_TRUE(d.Write("after\n"));
  ASSERT_TRUE(d.RecvLine(&line)) << d.error();
  EXPECT_EQ(line, "after");
  EXPECT_EQ(s.WorkerPids(), pids);
}

TEST_F(TlsTest, ReloadServesARenewedCertificateWithoutErrors) {
  if (access("/usr/bin/wrk", X_OK) != 0) GTEST_SKIP() << "wrk not installed";
  const std::string live = OwnDir("reload-renew");
  WriteFile(live + "/cert.pem", ReadFile(F("server.pem")));
  WriteFile(live + "/key.pem", ReadFile(F("server.key")));
  // A long drain, so the connection opened before the reload is still served after it.
  Server s(Https("https", "", live + "/cert.pem", live + "/key.pem") + Ops(),
           "timeouts: {drain: 10s}\n");
  ASSERT_TRUE(s.Start());
  const uint16_t p = s.Port("https"), ops = s.Port("ops");
  EXPECT_EQ(Served(p, "-serial"), "serial=1001");
  TlsClient kept;
  ASSERT_TRUE(kept.Connect(p)) << kept.error();
  EXPECT_EQ(kept.PeerSerial(), "1001");
  std::string body;
  ASSERT_TRUE(kept.Write("GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  EXPECT_EQ(ReadHttp(kept, &body), 200) << kept.error();
  const std::vector<pid_t> old = s.WorkerPids();

  const long hs0 = Total(ops, "handshakes");
  std::string wrk_out;
  int wrk_rc = -1;
  std::thread load([&] {
    wrk_rc =
        Sh("timeout 30 wrk -t1 -c10 -d4s https://127.0.0.1:" + std::to_string(p) + "/1k", &wrk_out);
  });
  // wrk's ten connections are up.
  EXPECT_GE(WaitTotal(ops, "handshakes", hs0 + 10), hs0 + 10);
  WriteFile(live + "/cert.pem", ReadFile(F("rsa.pem")));
  WriteFile(live + "/key.pem", ReadFile(F("rsa.key")));
  s.Signal(SIGHUP);
  EXPECT_TRUE(WaitFor([&] { return Served(p, "-serial") == "serial=2002"; }, 8000, 50))
      << Served(p, "-serial");
  EXPECT_TRUE(WaitFor([&] { return s.GenerationUp(2, old); }, 5000));
  // The connection from before keeps its certificate and is answered.
  EXPECT_EQ(kept.PeerSerial(), "1001");
  ASSERT_TRUE(kept.Write("GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  EXPECT_EQ(ReadHttp(kept, &body), 200) << kept.error();
  EXPECT_EQ(body, kIndex);
  load.join();
  EXPECT_EQ(wrk_rc, 0) << wrk_out;
  EXPECT_TRUE(Contains(wrk_out, "requests in")) << wrk_out;
  EXPECT_FALSE(Contains(wrk_out, "Socket errors")) << wrk_out;
  EXPECT_FALSE(Contains(wrk_out, "Non-2xx")) << wrk_out;
  // New connections verify with the new certificate.
  std::string out;
  EXPECT_EQ(Sh(CurlBase(p) + Url(p, "/index.html"), &out), 0) << out;
  EXPECT_EQ(out, kIndex);
}

TEST_F(TlsTest, ReloadWithAMismatchedKeyKeepsTheOldCertificate) {
  const std::string live = OwnDir("reload-mismatch");
  WriteFile(live + "/cert.pem", ReadFile(F("server.pem")));
  WriteFile(live + "/key.pem", ReadFile(F("server.key")));
  Server s(Https("https", "", live + "/cert.pem", live + "/key.pem"));
  ASSERT_TRUE(s.Start());
  const uint16_t p = s.Port("https");
  EXPECT_EQ(Served(p, "-serial"), "serial=1001");
  const std::vector<pid_t> pids = s.WorkerPids();
  const size_t log_at = s.Log().size();
  // Another P-256 key: the same type, not the certificate's.
  WriteFile(live + "/key.pem", ReadFile(F("other.key")));
  s.Signal(SIGHUP);
  std::string tail;
  EXPECT_TRUE(WaitFor(
      [&] {
        tail = s.Log().substr(std::min(log_at, s.Log().size()));
        return Contains(tail, live + "/key.pem");
      },
      5000, 20))
      << s.Log();
  EXPECT_TRUE(Contains(tail, "listeners[0].tls")) << tail;
  EXPECT_TRUE(Contains(tail, "mismatch")) << tail;
  // Still the old workers, serving the old certificate.
  EXPECT_EQ(s.WorkerPids(), pids);
  EXPECT_EQ(Served(p, "-serial"), "serial=1001");
  std::string out;
  EXPECT_EQ(Sh(CurlBase(p) + Url(p, "/index.html"), &out), 0) << out;
  EXPECT_EQ(out, kIndex);
  // preforkd -t says the same.
  const RunResult r = RunBinary({"-t", "-c", s.config_path()});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(Contains(r.output, "listeners[0].tls")) << r.output;
  EXPECT_TRUE(Contains(r.output, live + "/key.pem")) << r.output;
  EXPECT_TRUE(Contains(r.output, "mismatch")) << r.output;
}

TEST_F(TlsTest, ConfigTestRejectsBadTlsSetups) {
  const uint16_t port = FreePort();
  auto listener = [&](const std::string& name, const std::string& addr, bool tls) {
    return "- name: " + name + "\n  address: " + addr + "\n  port: " + std::to_string(port) +
           "\n  protocol: echo\n" +
           (tls ? "  tls: {cert: " + F("server.pem") + ", key: " + F("server.key") + "}\n" : "");
  };
  Server s(listener("plain", "127.0.0.1", false) + listener("secure", "127.0.0.2", true));
  auto check = [&] { return RunBinary({"-t", "-c", s.config_path()}); };
  // One port number, plain on one address and TLS on another.
  RunResult r = check();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(Contains(r.output, "listeners[1].tls")) << r.output;
  EXPECT_TRUE(Contains(r.output, std::to_string(port))) << r.output;
  // TLS on both is fine.
  s.RewriteConfig(listener("a", "127.0.0.1", true) + listener("b", "127.0.0.2", true));
  r = check();
  EXPECT_EQ(r.exit_code, 0) << r.output;

  struct Bad {
    const char* what;
    std::string yaml;
    std::vector<std::string> says;
  };
  const std::vector<Bad> bad = {
      {"missing certificate",
       Https("h", "", F("missing.pem")),
       {"listeners[0].tls", F("missing.pem"), "No such file or directory"}},
      {"key of another certificate",
       Https("h", "", "", F("other.key")),
       {"listeners[0].tls", F("other.key"), "mismatch"}},
      {"RSA key for an ECDSA certificate",
       Https("h", "", "", F("rsa.key")),
       {"listeners[0].tls", F("rsa.key")}},
      {"a certificate as the key",
       Https("h", "", "", F("server.pem")),
       {"listeners[0].tls", F("server.pem")}},
      {"a key as the certificate",
       Https("h", "", F("server.key")),
       {"listeners[0].tls", F("server.key")}},
      {"TLS 1.1", Https("h", "protocols: [TLSv1.1]"), {"listeners[0].tls", "TLSv1.1"}},
      {"client_auth without ca", Https("h", "client_auth: required"), {"listeners[0].tls.ca"}},
      {"handshake_timeout too short",
       Https("h", "handshake_timeout: 50ms"),
       {"listeners[0].tls.handshake_timeout"}},
      {"unknown cipher", Https("h", "ciphers: NOT-A-CIPHER"), {"listeners[0].tls", "ciphers"}},
  };
  for (const Bad& b : bad) {
    s.RewriteConfig(b.yaml);
    r = check();
    EXPECT_EQ(r.exit_code, 1) << b.what << ":\n" << r.output;
    for (const std::string& needle : b.says)
      EXPECT_TRUE(Contains(r.output, needle)) << b.what << ": no '" << needle << "' in\n"
                                              << r.output;
  }
  // The good setup, for contrast.
  s.RewriteConfig(Https("h", "certificates: [{cert: " + F("other.pem") + ", key: " +
                                 F("other.key") + "}]\nca: " + Ca() + "\nclient_auth: optional"));
  r = check();
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace pf::test
