// tests/integration/test_compress.cc: gzip and brotli against the real
// binary (2 workers): static files compressed on the fly and precompressed
// (file.gz / file.br beside them, made by tools/preforkctl compress), /kv
// listings and the ops endpoints, each decoded (zlib, libbrotlidec, curl
// --compressed, Debian's Python gzip and brotli modules) and compared with
// the identity body; Vary; what is never compressed (ranges, HEAD bodies,
// small bodies, excluded types, identity); ETags and 304s per variant; stale
// variants; the Accept-Encoding bomb.
#include <brotli/decode.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <map>
#include <sstream>
#include <string>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  bool has(const std::string& h) const { return headers.count(h) > 0; }
  std::string operator[](const std::string& h) const {
    auto it = headers.find(h);
    return it == headers.end() ? "" : it->second;
  }
};

bool ReadResponse(Client& c, Response* r, bool head_only = false) {
  *r = Response{};
  std::string head;
  if (!c.RecvUntil("\r\n\r\n", &head)) return false;
  std::istringstream in(head);
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
    EXPECT_EQ(r->headers.count(name), 0u) << "header sent twice: " << name;
    r->headers[name] = line.substr(colon + 2);
  }
  if (head_only || r->status == 304 || r->status == 204 || r->status < 200) return true;
  const size_t len = std::stoul(r->has("content-length") ? r->headers["content-length"] : "0");
  return len == 0 || c.RecvExact(len, &r->body);
}

std::string Req(const std::string& target, const std::string& extra = "",
                const std::string& method = "GET") {
  return method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n" + extra + "\r\n";
}

std::string AE(const std::string& v) { return "Accept-Encoding: " + v + "\r\n"; }

std::string Gunzip(const std::string& in) {
  z_stream s{};
  if (inflateInit2(&s, 16 + MAX_WBITS) != Z_OK) return "<init>";
  std::string out;
  char buf[16384];
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  s.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    s.next_out = reinterpret_cast<Bytef*>(buf);
    s.avail_out = sizeof buf;
    rc = inflate(&s, Z_NO_FLUSH);
    out.append(buf, sizeof buf - s.avail_out);
  }
  const bool whole = rc == Z_STREAM_END && s.avail_in == 0;
  inflateEnd(&s);
  return whole ? out : "<corrupt gzip>";
}

std::string Unbrotli(const std::string& in) {
  std::string out(in.size() * 50 + 4096, '\0');
  size_t n = out.size();
  if (BrotliDecoderDecompress(in.size(), reinterpret_cast<const uint8_t*>(in.data()), &n,
                              reinterpret_cast<uint8_t*>(out.data())) !=
      BROTLI_DECODER_RESULT_SUCCESS)
    return "<corrupt brotli>";
  out.resize(n);
  return out;
}

// Text that compresses like a web page (words from a small set).
std::string PageText(size_t n, uint64_t seed) {
  static const char* words[] = {"<div class=\"row\">",
                                "preforkd ",
                                "compression ",
                                "</div>\n",
                                "gzip ",
                                "brotli ",
                                "static ",
                                "files "};
  std::string s;
  uint64_t x = seed;
  while (s.size() < n) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    s += words[(x >> 33) % 8];
  }
  s.resize(n);
  return s;
}

void SetMtime(const std::string& path, time_t t) {
  const timespec ts[2] = {{t, 0}, {t, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), ts, 0), 0) << path;
}

class CompressTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/pf-compress-XXXXXX";
    dir_ = new std::string(mkdtemp(tmpl));
    root_ = new std::string(*dir_ + "/www");
    mkdir(root_->c_str(), 0755);
    const time_t old = time(nullptr) - 3600;
    WriteFile(*root_ + "/page.html", PageText(100 * 1024, 1));  // on the fly, sendfile-sized
    WriteFile(*root_ + "/mid.js", PageText(3000, 2));           // on the fly, held in memory
    WriteFile(*root_ + "/small.txt", PageText(100, 3));         // under min_length
    WriteFile(*root_ + "/photo.png", PageText(5000, 4));        // an excluded type
    WriteFile(*root_ + "/blob.bin", PageText(5000, 5));         // not a listed type
    // Precompressed by tools/preforkctl compress (gzip -9 and brotli, the file's mtime).
    WriteFile(*root_ + "/pre.css", PageText(20000, 6));
    // A stale variant: older than its file, and holding other bytes.
    WriteFile(*root_ + "/stale.txt", PageText(20000, 7));
    for (const char* f :
         {"page.html", "mid.js", "small.txt", "photo.png", "blob.bin", "pre.css", "stale.txt"})
      SetMtime(*root_ + "/" + f, old);
    std::string out;
    EXPECT_EQ(Sh("mkdir -p " + *dir_ + "/pre && cp -p " + *root_ + "/pre.css " + *dir_ +
                     "/pre/ && timeout 60 " + SourceRoot() + "/tools/preforkctl compress " + *dir_ +
                     "/pre && mv " + *dir_ + "/pre/pre.css.gz " + *dir_ + "/pre/pre.css.br " +
                     *root_ + "/",
                 &out),
              0)
        << out;
    WriteFile(*root_ + "/stale.txt.gz", "");
    EXPECT_EQ(Sh("gzip -c " + *root_ + "/mid.js > " + *root_ + "/stale.txt.gz", &out), 0) << out;
    SetMtime(*root_ + "/stale.txt.gz", old - 100);
    const std::string listeners =
        ListenerYaml("http", "http", 0, "root: " + *root_) +
        ListenerYaml("nocache", "http", 0,
                     "root: " + *root_ +
                         "\ncompression: {brotli: false, cache_bytes: 0, min_length: 1k, "
                         "static_precompressed: false}") +
        ListenerYaml("off", "http", 0, "root: " + *root_ + "\ncompression: off");
    server_ = new Server(listeners, "limits: {max_line_bytes: 32k}\n");
    ASSERT_TRUE(server_->Start());
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    std::string out;
    Sh("rm -rf " + *dir_, &out);
    delete dir_;
    delete root_;
  }

  static Response Do(const std::string& req, const std::string& listener = "http") {
    Client c;
    Response r;
    EXPECT_TRUE(c.Connect(server_->Port(listener)));
    EXPECT_TRUE(c.SendAll(req));
    EXPECT_TRUE(ReadResponse(c, &r, req.rfind("HEAD ", 0) == 0)) << req;
    return r;
  }
  static std::string File(const std::string& name) { return ReadFile(*root_ + "/" + name); }
  static std::string Url(const std::string& path, const std::string& listener = "http") {
    return "http://127.0.0.1:" + std::to_string(server_->Port(listener)) + path;
  }

  static Server* server_;
  static std::string* dir_;
  static std::string* root_;
};

Server* CompressTest::server_ = nullptr;
std::string* CompressTest::dir_ = nullptr;
std::string* CompressTest::root_ = nullptr;

TEST_F(CompressTest, StaticFilesOnTheFlyDecodeToTheFile) {
  for (const char* name : {"/page.html", "/mid.js"}) {
    const std::string want = File(name);
    ASSERT_FALSE(want.empty());
    Response id = Do(Req(name));
    ASSERT_EQ(id.status, 200);
    EXPECT_EQ(id.body, want);
    EXPECT_EQ(id["vary"], "Accept-Encoding");
    EXPECT_FALSE(id.has("content-encoding"));
    Response gz = Do(Req(name, AE("gzip")));
    ASSERT_EQ(gz.status, 200) << name;
    EXPECT_EQ(gz["content-encoding"], "gzip");
    EXPECT_EQ(gz["vary"], "Accept-Encoding");
    EXPECT_EQ(gz["content-type"], id["content-type"]);
    EXPECT_EQ(gz["content-length"], std::to_string(gz.body.size()));
    EXPECT_LT(gz.body.size(), want.size() / 2);
    EXPECT_EQ(Gunzip(gz.body), want);
    Response br = Do(Req(name, AE("gzip, deflate, br")));
    ASSERT_EQ(br.status, 200);
    EXPECT_EQ(br["content-encoding"], "br");
    EXPECT_EQ(Unbrotli(br.body), want);
    // Each representation has its own ETag.
    EXPECT_NE(id["etag"], gz["etag"]);
    EXPECT_NE(id["etag"], br["etag"]);
    EXPECT_NE(gz["etag"], br["etag"]);
    // Again (the cached result): the same bytes.
    EXPECT_EQ(Do(Req(name, AE("gzip"))).body, gz.body);
  }
}

TEST_F(CompressTest, PrecompressedVariantsAreServedAsTheyAre) {
  const std::string want = File("pre.css"), gz_file = File("pre.css.gz"),
                    br_file = File("pre.css.br");
  ASSERT_FALSE(gz_file.empty());
  ASSERT_FALSE(br_file.empty());
  Response gz = Do(Req("/pre.css", AE("gzip")));
  ASSERT_EQ(gz.status, 200);
  EXPECT_EQ(gz["content-encoding"], "gzip");
  EXPECT_EQ(gz["content-type"], "text/css");
  EXPECT_EQ(gz.body, gz_file);  // the file's bytes, not a compression of our own
  EXPECT_EQ(Gunzip(gz.body), want);
  Response br = Do(Req("/pre.css", AE("br")));
  EXPECT_EQ(br["content-encoding"], "br");
  EXPECT_EQ(br.body, br_file);
  EXPECT_EQ(Unbrotli(br.body), want);
  EXPECT_EQ(br["vary"], "Accept-Encoding");
  Response id = Do(Req("/pre.css"));
  EXPECT_EQ(id.body, want);
  EXPECT_NE(gz["etag"], id["etag"]);
  EXPECT_NE(br["etag"], id["etag"]);
  EXPECT_NE(br["etag"], gz["etag"]);
  // A listener without static_precompressed compresses on its own.
  Response own = Do(Req("/pre.css", AE("gzip")), "nocache");
  EXPECT_EQ(own["content-encoding"], "gzip");
  EXPECT_EQ(Gunzip(own.body), want);
  EXPECT_NE(own.body, gz_file);
}

TEST_F(CompressTest, StaleVariantIsNotServed) {
  const std::string want = File("stale.txt");
  Response gz = Do(Req("/stale.txt", AE("gzip")));
  ASSERT_EQ(gz.status, 200);
  EXPECT_EQ(gz["content-encoding"], "gzip");
  EXPECT_NE(gz.body, File("stale.txt.gz"));
  EXPECT_EQ(Gunzip(gz.body), want);  // compressed on the fly from the file instead
}

TEST_F(CompressTest, ConditionalRequestsPerVariant) {
  for (const char* name : {"/page.html", "/pre.css"}) {
    const std::string id = Do(Req(name))["etag"], gz = Do(Req(name, AE("gzip")))["etag"],
                      br = Do(Req(name, AE("br")))["etag"];
    ASSERT_FALSE(id.empty() || gz.empty() || br.empty());
    auto inm = [](const std::string& tag) { return "If-None-Match: " + tag + "\r\n"; };
    Response r = Do(Req(name, AE("gzip") + inm(gz)));
    EXPECT_EQ(r.status, 304) << name;
    EXPECT_EQ(r["etag"], gz);
    EXPECT_EQ(r["vary"], "Accept-Encoding");
    EXPECT_EQ(Do(Req(name, AE("br") + inm(br))).status, 304);
    EXPECT_EQ(Do(Req(name, inm(id))).status, 304);
    // Another variant's tag does not match this one.
    r = Do(Req(name, AE("br") + inm(gz)));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r["content-encoding"], "br");
    EXPECT_EQ(Do(Req(name, AE("gzip") + inm(id))).status, 200);
    EXPECT_EQ(Do(Req(name, inm(gz))).status, 200);
    EXPECT_EQ(Do(Req(name, AE("gzip") + inm("\"x\", W/" + gz))).status, 304);
  }
}

TEST_F(CompressTest, RangesAreOfTheIdentityOnly) {
  Response r = Do(Req("/page.html", AE("gzip, br") + "Range: bytes=0-99\r\n"));
  EXPECT_EQ(r.status, 206);
  EXPECT_FALSE(r.has("content-encoding"));
  EXPECT_EQ(r.body, File("page.html").substr(0, 100));
  EXPECT_EQ(r["vary"], "Accept-Encoding");
  r = Do(Req("/pre.css", AE("gzip") + "Range: bytes=-10\r\n"));
  EXPECT_EQ(r.status, 206);
  EXPECT_FALSE(r.has("content-encoding"));
  EXPECT_EQ(r.body, File("pre.css").substr(File("pre.css").size() - 10));
  // The compressed answer does not offer ranges.
  EXPECT_FALSE(Do(Req("/page.html", AE("gzip"))).has("accept-ranges"));
}

TEST_F(CompressTest, HeadHasTheHeadersOfGetAndNoBody) {
  for (const char* name : {"/page.html", "/pre.css", "/_stats"}) {
    Client c;
    ASSERT_TRUE(c.Connect(server_->Port("http")));
    ASSERT_TRUE(c.SendAll(Req(name, AE("gzip"), "HEAD") + Req("/small.txt")));
    Response head, next;
    ASSERT_TRUE(ReadResponse(c, &head, true));
    ASSERT_TRUE(ReadResponse(c, &next));  // right after the head: HEAD sent no body
    EXPECT_EQ(next.body, File("small.txt"));
    EXPECT_EQ(head.status, 200);
    EXPECT_EQ(head["content-encoding"], "gzip") << name;
    EXPECT_EQ(head["vary"], "Accept-Encoding");
    if (std::string(name) != "/_stats") {  // its body changes from one request to the next
      Response get = Do(Req(name, AE("gzip")));
      EXPECT_EQ(head["content-length"], get["content-length"]);
      EXPECT_EQ(head["etag"], get["etag"]);
    }
  }
}

TEST_F(CompressTest, WhatIsNeverCompressed) {
  // Under min_length: as is, and no Vary (no request could get another answer).
  Response r = Do(Req("/small.txt", AE("gzip, br")));
  EXPECT_EQ(r.body, File("small.txt"));
  EXPECT_FALSE(r.has("content-encoding"));
  EXPECT_FALSE(r.has("vary"));
  // Compressed types and types not listed.
  for (const char* name : {"/photo.png", "/blob.bin"}) {
    r = Do(Req(name, AE("gzip, br")));
    EXPECT_EQ(r.status, 200);
    EXPECT_FALSE(r.has("content-encoding")) << name;
    EXPECT_FALSE(r.has("vary")) << name;
  }
  // Not accepted.
  for (const std::string ae : {"identity", "gzip;q=0, br;q=0", "deflate", "*;q=0", ""}) {
    r = Do(Req("/page.html", AE(ae)));
    EXPECT_FALSE(r.has("content-encoding")) << ae;
    EXPECT_EQ(r.body, File("page.html"));
    EXPECT_EQ(r["vary"], "Accept-Encoding");
  }
  // identity;q=0 with nothing else acceptable still gets the file (not a 406).
  r = Do(Req("/page.html", AE("identity;q=0, deflate")));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, File("page.html"));
  // A listener with compression off: nothing, and no Vary.
  r = Do(Req("/page.html", AE("gzip, br")), "off");
  EXPECT_FALSE(r.has("content-encoding"));
  EXPECT_FALSE(r.has("vary"));
  r = Do(Req("/_stats", AE("gzip, br")), "off");
  EXPECT_FALSE(r.has("content-encoding"));
  // brotli off: gzip only; below this listener's min_length (1k): as is.
  r = Do(Req("/mid.js", AE("br")), "nocache");
  EXPECT_FALSE(r.has("content-encoding"));
  r = Do(Req("/mid.js", AE("br, gzip;q=0.1")), "nocache");
  EXPECT_EQ(r["content-encoding"], "gzip");
  EXPECT_EQ(Gunzip(r.body), File("mid.js"));
  r = Do(Req("/pre.css", AE("gzip")), "nocache");
  EXPECT_EQ(r["content-encoding"], "gzip");
  r = Do(Req("/", AE("gzip")), "nocache");  // a 403 error page, 150 bytes: as is
  EXPECT_EQ(r.status, 403);
  EXPECT_FALSE(r.has("content-encoding"));
}

TEST_F(CompressTest, KvListingsAndOpsEndpoints) {
  // Enough keys for a listing of some KiB.
  Client c;
  ASSERT_TRUE(c.Connect(server_->Port("http")));
  for (int i = 0; i < 200; i++) {
    const std::string k = "/kv/zip/key-" + std::to_string(i);
    ASSERT_TRUE(
        c.SendAll("PUT " + k + " HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nv"));
    Response r;
    ASSERT_TRUE(ReadResponse(c, &r));
    ASSERT_EQ(r.status, 201);
  }
  const std::string list = "/kv/zip/?count=1000";
  Response id = Do(Req(list));
  ASSERT_EQ(id.status, 200);
  ASSERT_GT(id.body.size(), 2000u);
  EXPECT_EQ(id["vary"], "Accept-Encoding");
  Response gz = Do(Req(list, AE("gzip")));
  EXPECT_EQ(gz["content-encoding"], "gzip");
  EXPECT_EQ(gz["content-type"], "application/json");
  EXPECT_EQ(Gunzip(gz.body), id.body);
  Response br = Do(Req(list, AE("br;q=0.9, gzip;q=0.8")));
  EXPECT_EQ(br["content-encoding"], "br");
  EXPECT_EQ(Unbrotli(br.body), id.body);
  // A value is application/octet-stream: not a listed type.
  Response v = Do(Req("/kv/zip/key-1", AE("gzip")));
  EXPECT_EQ(v.body, "v");
  EXPECT_FALSE(v.has("content-encoding"));
  // The ops endpoints change between two requests: decode and check the shape.
  Response stats = Do(Req("/_stats", AE("gzip")));
  EXPECT_EQ(stats["content-encoding"], "gzip");
  const std::string s = Gunzip(stats.body);
  EXPECT_EQ(s.rfind("{\"uptime_s\":", 0), 0u) << s.substr(0, 80);
  EXPECT_EQ(s.back(), '\n');
  Response metrics = Do(Req("/_metrics", AE("br")));
  EXPECT_EQ(metrics["content-encoding"], "br");
  EXPECT_NE(Unbrotli(metrics.body).find("# TYPE preforkd_uptime_seconds"), std::string::npos);
}

TEST_F(CompressTest, CurlAndPythonDecodeTheSameBytes) {
  const std::string out_file = *dir_ + "/curl.out";
  std::string out;
  // curl --compressed asks for what it supports (Debian's curl: deflate, gzip, br) and decodes.
  for (const std::string path : {"/page.html", "/pre.css", "/mid.js"}) {
    ASSERT_EQ(Sh("timeout 20 curl -sS --compressed -o " + out_file + " " + Url(path), &out), 0)
        << out;
    EXPECT_EQ(ReadFile(out_file), File(path.substr(1))) << path;
  }
  ASSERT_EQ(Sh("timeout 20 curl -sS --compressed -o " + out_file + " " + Url("/kv/zip/?count=1000"),
               &out),
            0);
  EXPECT_EQ(ReadFile(out_file), Do(Req("/kv/zip/?count=1000")).body);
  // Raw bytes to files, decoded by Python's gzip and brotli (Debian's python3-brotli).
  const std::string gz_file = *dir_ + "/body.gz", br_file = *dir_ + "/body.br";
  WriteFile(gz_file, Do(Req("/page.html", AE("gzip"))).body);
  WriteFile(br_file, Do(Req("/page.html", AE("br"))).body);
  ASSERT_EQ(
      Sh("timeout 20 /usr/bin/python3 -c 'import gzip, brotli, sys; "
         "sys.stdout.buffer.write(gzip.decompress(open(sys.argv[1], \"rb\").read())); "
         "open(sys.argv[3], \"wb\").write(brotli.decompress(open(sys.argv[2], \"rb\").read()))' " +
             gz_file + " " + br_file + " " + *dir_ + "/py.br.out > " + *dir_ + "/py.gz.out",
         &out),
      0)
      << out;
  EXPECT_EQ(ReadFile(*dir_ + "/py.gz.out"), File("page.html"));
  EXPECT_EQ(ReadFile(*dir_ + "/py.br.out"), File("page.html"));
}

TEST_F(CompressTest, AcceptEncodingBombAnswersQuickly) {
  std::string bomb;
  while (bomb.size() < 8192) bomb += "x-token-" + std::to_string(bomb.size()) + ";q=0.5, ";
  Client c;
  ASSERT_TRUE(c.Connect(server_->Port("http")));
  const auto t0 = std::chrono::steady_clock::now();
  // Past the bound: the late gzip is not looked at, identity is correct.
  ASSERT_TRUE(c.SendAll(Req("/page.html", AE(bomb + "gzip"))));
  Response r;
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.has("content-encoding"));
  EXPECT_EQ(r.body, File("page.html"));
  // Before it: counted.
  ASSERT_TRUE(c.SendAll(Req("/page.html", AE("gzip, " + bomb))));
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r["content-encoding"], "gzip");
  EXPECT_EQ(Gunzip(r.body), File("page.html"));
  // Many Accept-Encoding lines share one budget.
  std::string lines;
  for (int i = 0; i < 300; i++) lines += AE("x-a, x-b, x-c");
  ASSERT_TRUE(c.SendAll(Req("/_stats", lines + AE("gzip"))));
  ASSERT_TRUE(ReadResponse(c, &r));
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.has("content-encoding"));
  // 100 bombs on one connection take far less than a second each.
  for (int i = 0; i < 100; i++) ASSERT_TRUE(c.SendAll(Req("/mid.js", AE(bomb))));
  for (int i = 0; i < 100; i++) {
    ASSERT_TRUE(ReadResponse(c, &r));
    ASSERT_EQ(r.status, 200);
  }
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_LT(ms, 3000);
}

TEST_F(CompressTest, ChangedFileIsCompressedAgain) {
  mkdir((*root_ + "/chg").c_str(), 0755);
  const std::string path = *root_ + "/chg/changing.html";
  WriteFile(path, PageText(8000, 11));
  Response first = Do(Req("/chg/changing.html", AE("gzip")));
  ASSERT_EQ(Gunzip(first.body), PageText(8000, 11));
  WriteFile(path, PageText(9000, 12));
  // Within about a second (the open-file cache's re-check), both workers answer the new bytes.
  Response now;
  EXPECT_TRUE(WaitFor(
      [&] {
        now = Do(Req("/chg/changing.html", AE("gzip")));
        Response again = Do(Req("/chg/changing.html", AE("gzip")));
        return Gunzip(now.body) == PageText(9000, 12) && Gunzip(again.body) == PageText(9000, 12);
      },
      5000, 50));
  EXPECT_NE(now["etag"], first["etag"]);
  // A variant appears (newer than the file): served from then on.
  std::string out;
  ASSERT_EQ(
      Sh("timeout 20 " + SourceRoot() + "/tools/preforkctl compress " + *root_ + "/chg", &out), 0)
      << out;
  const std::string gz_file = File("chg/changing.html.gz");
  ASSERT_FALSE(gz_file.empty());
  EXPECT_TRUE(WaitFor(
      [&] {
        return Do(Req("/chg/changing.html", AE("gzip"))).body == gz_file &&
               Do(Req("/chg/changing.html", AE("gzip"))).body == gz_file;
      },
      5000, 50));
}

}  // namespace
}  // namespace pf::test
