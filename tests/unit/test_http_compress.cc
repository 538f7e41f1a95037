// tests/unit/test_http_compress.cc: HTTP compression without a server:
// Accept-Encoding negotiation (q-values, case, whitespace, `*`,
// `identity;q=0`, garbage, the work bound on long headers), the MIME rules,
// the codec wrapper (round trips through zlib and libbrotlidec, decoders
// other than the encoders), the dynamic-reply step, the cache of compressed
// static files, and the `compression:` config block.
#include <brotli/decode.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>

#include "shared/config.h"
#include "shared/util/content_coding.h"
#include "worker/http/compress.h"
#include "worker/http/filecache.h"

namespace pf::http {
namespace {

Coding Pick(std::string_view header, bool gzip_ok = true, bool br_ok = true) {
  AcceptEncoding ae;
  ae.Add(header);
  return ae.Choose(gzip_ok, br_ok);
}

TEST(AcceptEncoding, AbsentHeaderMeansIdentity) {
  AcceptEncoding ae;
  EXPECT_EQ(ae.Choose(true, true), Coding::kIdentity);
}

TEST(AcceptEncoding, PlainListsPreferBrotliAtEqualQ) {
  EXPECT_EQ(Pick("gzip"), Coding::kGzip);
  EXPECT_EQ(Pick("br"), Coding::kBrotli);
  EXPECT_EQ(Pick("gzip, deflate, br"), Coding::kBrotli);
  EXPECT_EQ(Pick("gzip, deflate, br", true, false), Coding::kGzip);
  EXPECT_EQ(Pick("br", true, false), Coding::kIdentity);
  EXPECT_EQ(Pick("deflate, compress"), Coding::kIdentity);
  EXPECT_EQ(Pick(""), Coding::kIdentity);
}

TEST(AcceptEncoding, QValuesDecide) {
  EXPECT_EQ(Pick("gzip;q=1.0, br;q=0.5"), Coding::kGzip);
  EXPECT_EQ(Pick("gzip;q=0.4, br;q=0.5"), Coding::kBrotli);
  EXPECT_EQ(Pick("gzip;q=0, br;q=0"), Coding::kIdentity);
  EXPECT_EQ(Pick("br;q=0, gzip"), Coding::kGzip);
  EXPECT_EQ(Pick("gzip;q=0.001"), Coding::kGzip);
  EXPECT_EQ(Pick("gzip;q=0.000"), Coding::kIdentity);
  // Identity competes only where the client rated it.
  EXPECT_EQ(Pick("gzip;q=0.5, identity"), Coding::kIdentity);
  EXPECT_EQ(Pick("gzip;q=0.5, identity;q=0.5"), Coding::kGzip);
  EXPECT_EQ(Pick("gzip;q=0.5"), Coding::kGzip);
}

TEST(AcceptEncoding, StarCoversWhatIsNotListed) {
  EXPECT_EQ(Pick("*"), Coding::kBrotli);
  EXPECT_EQ(Pick("*", true, false), Coding::kGzip);
  EXPECT_EQ(Pick("br;q=0, *"), Coding::kGzip);
  EXPECT_EQ(Pick("*;q=0"), Coding::kIdentity);
  EXPECT_EQ(Pick("*;q=0, gzip"), Coding::kGzip);
  EXPECT_EQ(Pick("*;q=0.5, identity"), Coding::kIdentity);
  EXPECT_EQ(Pick("identity;q=0, *;q=0.1"), Coding::kBrotli);
}

TEST(AcceptEncoding, IdentityRefusedStillGetsIdentityWhenNothingElseFits) {
  EXPECT_EQ(Pick("identity;q=0"), Coding::kIdentity);
  EXPECT_EQ(Pick("identity;q=0, gzip"), Coding::kGzip);
  EXPECT_EQ(Pick("identity;q=0, gzip", false, false), Coding::kIdentity);
}

TEST(AcceptEncoding, CaseAndWhitespace) {
  EXPECT_EQ(Pick("GZIP"), Coding::kGzip);
  EXPECT_EQ(Pick("  gzip  ;  Q=0.5 ,\tBr ; q=0.4  "), Coding::kGzip);
  EXPECT_EQ(Pick("x-gzip"), Coding::kGzip);
  EXPECT_EQ(Pick("gzip,,,br"), Coding::kBrotli);
  EXPECT_EQ(Pick(",,, ,"), Coding::kIdentity);
  // Other parameters are allowed and ignored.
  EXPECT_EQ(Pick("gzip;level=9;q=0.3, br;q=0.2"), Coding::kGzip);
}

TEST(AcceptEncoding, GarbageIsIgnoredNotTrusted) {
  // A bad q makes its element void (not q=1).
  EXPECT_EQ(Pick("br;q=2, gzip;q=0.1"), Coding::kGzip);
  EXPECT_EQ(Pick("br;q=1.5, gzip;q=0.1"), Coding::kGzip);
  EXPECT_EQ(Pick("br;q=-1, gzip;q=0.1"), Coding::kGzip);
  EXPECT_EQ(Pick("br;q=0.12345, gzip;q=0.1"), Coding::kGzip);
  EXPECT_EQ(Pick("br;q=, gzip;q=0.1"), Coding::kGzip);
  EXPECT_EQ(Pick("br;q, gzip;q=0.1"), Coding::kGzip);
  EXPECT_EQ(Pick("br gzip"), Coding::kIdentity);
  EXPECT_EQ(Pick(std::string("gz\0ip", 5)), Coding::kIdentity);
  EXPECT_EQ(Pick("\"gzip\""), Coding::kIdentity);
  EXPECT_EQ(Pick(";q=1"), Coding::kIdentity);
  // The first occurrence of a coding counts.
  EXPECT_EQ(Pick("gzip;q=0, gzip;q=1"), Coding::kIdentity);
}

TEST(AcceptEncoding, QValueGrammar) {
  EXPECT_EQ(ParseQValue("1"), 1000);
  EXPECT_EQ(ParseQValue("1.000"), 1000);
  EXPECT_EQ(ParseQValue("0.5"), 500);
  EXPECT_EQ(ParseQValue("0.25"), 250);
  EXPECT_EQ(ParseQValue("0.001"), 1);
  EXPECT_EQ(ParseQValue("0"), 0);
  EXPECT_EQ(ParseQValue("0."), 0);
  EXPECT_EQ(ParseQValue("1.001"), -1);
  EXPECT_EQ(ParseQValue("2"), -1);
  EXPECT_EQ(ParseQValue(".5"), -1);
  EXPECT_EQ(ParseQValue("0.5000"), -1);
  EXPECT_EQ(ParseQValue("0,5"), -1);
  EXPECT_EQ(ParseQValue(""), -1);
}

TEST(AcceptEncoding, LongHeadersCostABoundedAmount) {
  // 8 KiB of tokens before gzip: only the first elements are looked at.
  std::string bomb;
  while (bomb.size() < 8192) bomb += "x-nope;q=0.5, ";
  AcceptEncoding ae;
  ae.Add(bomb + "gzip");
  EXPECT_LE(ae.bytes, kMaxAcceptEncodingBytes);
  EXPECT_LE(ae.items, kMaxAcceptEncodingItems);
  EXPECT_EQ(ae.Choose(true, true), Coding::kIdentity);
  // What comes first still counts.
  AcceptEncoding first;
  first.Add("gzip, " + bomb);
  EXPECT_EQ(first.Choose(true, true), Coding::kGzip);
  // A huge single token: no element inside the window, nothing chosen.
  AcceptEncoding one;
  one.Add(std::string(60000, 'a'));
  EXPECT_EQ(one.Choose(true, true), Coding::kIdentity);
  EXPECT_EQ(one.bytes, kMaxAcceptEncodingBytes);
  // An element cut by the byte bound is dropped, never read as its prefix.
  AcceptEncoding cut;
  cut.Add("gzip, " + std::string(kMaxAcceptEncodingBytes - 6 - 6, ' ') + "br;q=0.5");
  EXPECT_EQ(cut.br, -1);
  EXPECT_EQ(cut.gzip, 1000);
  // The budget spans several header lines.
  AcceptEncoding lines;
  for (int i = 0; i < 100; i++) lines.Add("x-a, x-b");
  lines.Add("gzip");
  EXPECT_EQ(lines.Choose(true, true), Coding::kIdentity);
  // And it is fast: a million calls on the bomb in well under the test timeout.
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 20000; i++) {
    AcceptEncoding x;
    x.Add(bomb);
  }
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_LT(ms, 2000);
}

TEST(MimeRules, TypesAndExtensions) {
  EXPECT_EQ(MediaType("Text/HTML; charset=utf-8"), "text/html");
  EXPECT_EQ(MediaType("  application/json  "), "application/json");
  EXPECT_TRUE(AlreadyCompressedType("image/png"));
  EXPECT_TRUE(AlreadyCompressedType("video/mp4"));
  EXPECT_TRUE(AlreadyCompressedType("application/zip"));
  EXPECT_TRUE(AlreadyCompressedType("application/gzip"));
  EXPECT_TRUE(AlreadyCompressedType("font/woff2"));
  EXPECT_FALSE(AlreadyCompressedType("image/svg+xml"));
  EXPECT_FALSE(AlreadyCompressedType("text/html"));
  EXPECT_TRUE(CompressedExtension("/a/b.svgz"));
  EXPECT_TRUE(CompressedExtension("x.GZ"));
  EXPECT_TRUE(CompressedExtension("x.br"));
  EXPECT_FALSE(CompressedExtension("x.html"));
  EXPECT_FALSE(CompressedExtension("/dir.gz/x"));
  EXPECT_TRUE(TypeListed({"text/*"}, "text/plain"));
  EXPECT_FALSE(TypeListed({"text/*"}, "textual/plain"));
  EXPECT_FALSE(TypeListed({"text/html"}, "text/htm"));
}

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
  return whole ? out : "<corrupt>";
}

std::string Unbrotli(const std::string& in) {
  std::string out(in.size() * 40 + 1024, '\0');
  size_t n = out.size();
  if (BrotliDecoderDecompress(in.size(), reinterpret_cast<const uint8_t*>(in.data()), &n,
                              reinterpret_cast<uint8_t*>(out.data())) !=
      BROTLI_DECODER_RESULT_SUCCESS)
    return "<corrupt>";
  out.resize(n);
  return out;
}

std::string SampleText(size_t n) {
  std::string s;
  uint64_t x = 12345;
  static const char* words[] = {"alpha ", "beta ", "<p>gamma</p> ", "delta\n", "\"json\": 1, "};
  while (s.size() < n) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    s += words[(x >> 33) % 5];
  }
  s.resize(n);
  return s;
}

TEST(Codec, RoundTripsThroughOtherDecoders) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{300}, size_t{65536}, size_t{1} << 20}) {
    const std::string in = SampleText(n);
    for (int level : {1, 6, 9, 12}) {
      std::string gz;
      ASSERT_TRUE(Compress(Coding::kGzip, level, in, &gz));
      EXPECT_EQ(Gunzip(gz), in) << "gzip level " << level << " size " << n;
    }
    for (int level : {0, 5, 11}) {
      std::string br;
      ASSERT_TRUE(Compress(Coding::kBrotli, level, in, &br));
      EXPECT_EQ(Unbrotli(br), in) << "brotli level " << level << " size " << n;
    }
  }
  // Binary input survives too.
  std::string bin(5000, '\0');
  for (size_t i = 0; i < bin.size(); i++) bin[i] = static_cast<char>(i * 7919 % 251);
  std::string gz, br;
  ASSERT_TRUE(Compress(Coding::kGzip, 6, bin, &gz));
  ASSERT_TRUE(Compress(Coding::kBrotli, 5, bin, &br));
  EXPECT_EQ(Gunzip(gz), bin);
  EXPECT_EQ(Unbrotli(br), bin);
}

TEST(Codec, RefusesLevelsOutOfRangeAndIdentity) {
  std::string out;
  EXPECT_FALSE(Compress(Coding::kGzip, 0, "x", &out));
  EXPECT_FALSE(Compress(Coding::kGzip, 13, "x", &out));
  EXPECT_FALSE(Compress(Coding::kBrotli, 12, "x", &out));
  EXPECT_FALSE(Compress(Coding::kIdentity, 1, "x", &out));
}

TEST(Codec, VariantEtags) {
  EXPECT_EQ(VariantEtag("\"5f-3\"", Coding::kGzip), "\"5f-3-gzip\"");
  EXPECT_EQ(VariantEtag("\"5f-3\"", Coding::kBrotli), "\"5f-3-br\"");
  EXPECT_NE(VariantEtag("\"5f-3\"", Coding::kGzip), VariantEtag("\"5f-3\"", Coding::kBrotli));
}

Request WithAccept(const std::string& ae, const std::string& method = "GET") {
  Request r;
  r.method = method;
  r.headers.emplace_back("accept-encoding", ae);
  return r;
}

TEST(CompressReply, CompressesListedTypesAboveMinLength) {
  CompressionConf z;
  Reply rep;
  rep.content_type = "application/json";
  rep.body = SampleText(4000);
  const std::string plain = rep.body;
  CompressReply(z, WithAccept("gzip"), &rep);
  EXPECT_NE(rep.headers.find("Content-Encoding: gzip\r\n"), std::string::npos);
  EXPECT_NE(rep.headers.find("Vary: Accept-Encoding\r\n"), std::string::npos);
  EXPECT_EQ(Gunzip(rep.body), plain);
}

TEST(CompressReply, LeavesOthersAlone) {
  CompressionConf z;
  auto run = [&](std::string_view type, size_t n, const Request& req, int status = 200,
                 std::string headers = "") {
    Reply rep;
    rep.status = status;
    rep.content_type = type;
    rep.body = SampleText(n);
    rep.headers = std::move(headers);
    CompressReply(z, req, &rep);
    return rep;
  };
  // Small: neither compressed nor Vary (it could not have been).
  Reply r = run("text/html", 100, WithAccept("gzip"));
  EXPECT_EQ(r.headers, "");
  // Not a listed type.
  r = run("application/octet-stream", 5000, WithAccept("gzip"));
  EXPECT_EQ(r.headers, "");
  r = run("image/png", 5000, WithAccept("gzip"));
  EXPECT_EQ(r.headers, "");
  // Not accepted: identity, with Vary.
  r = run("text/html", 5000, WithAccept("identity"));
  EXPECT_EQ(r.headers, "Vary: Accept-Encoding\r\n");
  EXPECT_EQ(r.body.size(), 5000u);
  Request none;
  none.method = "GET";
  r = run("text/html", 5000, none);
  EXPECT_EQ(r.headers, "Vary: Accept-Encoding\r\n");
  // Already encoded by the route.
  r = run("text/html", 5000, WithAccept("gzip"), 200, "Content-Encoding: gzip\r\n");
  EXPECT_EQ(r.headers, "Content-Encoding: gzip\r\n");
  EXPECT_EQ(r.body.size(), 5000u);
  // A partial response is never compressed.
  r = run("text/html", 5000, WithAccept("gzip"), 206);
  EXPECT_EQ(r.body.size(), 5000u);
  // Over max_length.
  z.max_length = 4096;
  r = run("text/html", 5000, WithAccept("gzip"));
  EXPECT_EQ(r.headers, "");
  // Both codings off.
  z = CompressionConf{};
  z.gzip = z.brotli = false;
  r = run("text/html", 5000, WithAccept("gzip, br"));
  EXPECT_EQ(r.headers, "");
}

TEST(CompressReply, HeadGetsTheSameHeadersAsGet) {
  CompressionConf z;
  Reply get, head;
  get.content_type = head.content_type = "text/plain; version=0.0.4";
  get.body = head.body = SampleText(3000);
  CompressReply(z, WithAccept("br"), &get);
  CompressReply(z, WithAccept("br", "HEAD"), &head);
  EXPECT_EQ(get.headers, head.headers);
  EXPECT_EQ(get.body.size(), head.body.size());
  EXPECT_EQ(Unbrotli(get.body), SampleText(3000));
}

// A file as the open-file cache describes it (not through FileCache, whose
// "racy" rule distrusts a file written in the last two seconds).
struct TestFile {
  int fd = -1;
  CachedFile f;
  ~TestFile() {
    if (fd >= 0) close(fd);
  }
};

class CompressedFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pf-compress-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { (void)std::system(("rm -rf " + dir_).c_str()); }
  // Writes `name` and describes it; in_memory as FileCache would for small files.
  void Load(const std::string& name, const std::string& data, bool in_memory, TestFile* t) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
    if (t->fd >= 0) close(t->fd);
    t->fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(t->fd, 0);
    struct stat st;
    ASSERT_EQ(fstat(t->fd, &st), 0);
    t->f.dev = st.st_dev;
    t->f.ino = st.st_ino;
    t->f.size = static_cast<uint64_t>(st.st_size);
    t->f.mtime = st.st_mtim;
    t->f.ctime = st.st_ctim;
    t->f.in_memory = in_memory;
    t->f.body = in_memory ? data : std::string();
    t->f.fd = in_memory ? -1 : t->fd;
  }
  std::string dir_;
};

TEST_F(CompressedFilesTest, CachesAndRecompressesAChangedFile) {
  CompressedFiles cf(1 << 20);
  const std::string v1 = SampleText(100000), v2 = SampleText(90000) + "changed";
  TestFile t;
  Load("a.txt", v1, /*in_memory=*/false, &t);  // read through the descriptor
  const std::string* gz = cf.Get("/a.txt", t.f, Coding::kGzip, 6);
  ASSERT_NE(gz, nullptr);
  EXPECT_EQ(Gunzip(*gz), v1);
  EXPECT_EQ(cf.compressions(), 1u);
  EXPECT_EQ(cf.Get("/a.txt", t.f, Coding::kGzip, 6), gz);  // a hit
  EXPECT_EQ(cf.compressions(), 1u);
  const std::string* br = cf.Get("/a.txt", t.f, Coding::kBrotli, 5);
  ASSERT_NE(br, nullptr);
  EXPECT_EQ(Unbrotli(*br), v1);
  EXPECT_EQ(cf.compressions(), 2u);
  EXPECT_EQ(cf.entries(), 2u);
  // The file changes (another size, mtime, ctime): compressed again.
  Load("a.txt", v2, /*in_memory=*/false, &t);
  gz = cf.Get("/a.txt", t.f, Coding::kGzip, 6);
  ASSERT_NE(gz, nullptr);
  EXPECT_EQ(Gunzip(*gz), v2);
  EXPECT_EQ(cf.compressions(), 3u);
  // Same size and times but another inode (a rename over it): compressed again.
  t.f.ino++;
  ASSERT_NE(cf.Get("/a.txt", t.f, Coding::kGzip, 6), nullptr);
  EXPECT_EQ(cf.compressions(), 4u);
  // A file that is changing right now is not cached.
  t.f.racy = true;
  ASSERT_NE(cf.Get("/a.txt", t.f, Coding::kGzip, 6), nullptr);
  ASSERT_NE(cf.Get("/a.txt", t.f, Coding::kGzip, 6), nullptr);
  EXPECT_EQ(cf.compressions(), 6u);
  // An in-memory file.
  TestFile small;
  Load("s.txt", v1.substr(0, 3000), /*in_memory=*/true, &small);
  const std::string* s = cf.Get("/s.txt", small.f, Coding::kBrotli, 5);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(Unbrotli(*s), v1.substr(0, 3000));
}

TEST_F(CompressedFilesTest, StaysWithinItsBudget) {
  const uint64_t budget = 64 << 10;
  CompressedFiles cf(budget);
  TestFile t;
  for (int i = 0; i < 40; i++) {
    // Random-ish letters compress poorly: each result is several KiB.
    std::string data(20000, '\0');
    uint64_t x = static_cast<uint64_t>(i) + 1;
    for (char& ch : data) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      ch = static_cast<char>('a' + (x >> 59));
    }
    const std::string name = "f" + std::to_string(i) + ".txt";
    Load(name, data, /*in_memory=*/true, &t);
    const std::string* gz = cf.Get("/" + name, t.f, Coding::kGzip, 6);
    ASSERT_NE(gz, nullptr);
    EXPECT_EQ(Gunzip(*gz), data);
    EXPECT_LE(cf.bytes(), budget);
  }
  EXPECT_LT(cf.entries(), 40u);
  EXPECT_GT(cf.entries(), 0u);
  // Budget 0: nothing kept, every request compresses.
  CompressedFiles none(0);
  ASSERT_NE(none.Get("/f0.txt", t.f, Coding::kGzip, 6), nullptr);
  ASSERT_NE(none.Get("/f0.txt", t.f, Coding::kGzip, 6), nullptr);
  EXPECT_EQ(none.entries(), 0u);
  EXPECT_EQ(none.compressions(), 2u);
}

TEST(CompressionConfig, DefaultsAndValidation) {
  auto parse = [](const std::string& block) {
    char tmpl[] = "/tmp/pf-zconf-XXXXXX";
    const std::string dir = mkdtemp(tmpl);
    const std::string text =
        "listeners:\n  - name: h\n    port: 8080\n    protocol: http\n"
        "    root: " +
        dir + "\n" + block;
    ConfigResult r = ParseConfig(text, dir + "/c.yaml");
    (void)std::system(("rm -rf " + dir).c_str());
    return r;
  };
  ConfigResult r = parse("");
  ASSERT_TRUE(r.ok());
  const CompressionConf& d = r.config.listeners[0].compression;
  EXPECT_TRUE(d.gzip && d.brotli && d.static_precompressed);
  EXPECT_EQ(d.gzip_level, 6u);
  EXPECT_EQ(d.min_length, 256u);
  r = parse("    compression: off\n");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.config.listeners[0].compression.enabled());
  r = parse(
      "    compression: {gzip: true, brotli: false, gzip_level: 9, min_length: 1k, "
      "types: [Text/HTML, text/*], cache_bytes: 0}\n");
  ASSERT_TRUE(r.ok()) << r.errors[0];
  const CompressionConf& z = r.config.listeners[0].compression;
  EXPECT_FALSE(z.brotli);
  EXPECT_EQ(z.gzip_level, 9u);
  EXPECT_EQ(z.min_length, 1024u);
  EXPECT_EQ(z.cache_bytes, 0u);
  EXPECT_EQ(z.types, (std::vector<std::string>{"text/html", "text/*"}));
  auto error_of = [&](const std::string& block) {
    ConfigResult e = parse(block);
    return e.errors.empty() ? std::string("<ok>") : e.errors[0];
  };
  EXPECT_NE(error_of("    compression: {gzip_level: 13}\n")
                .find("compression.gzip_level: 13 is out of range"),
            std::string::npos);
  EXPECT_NE(error_of("    compression: {brotli_level: 12}\n").find("out of range"),
            std::string::npos);
  EXPECT_NE(error_of("    compression: {types: [image/png]}\n").find("compressed already"),
            std::string::npos);
  EXPECT_NE(error_of("    compression: {types: [\"text/html; charset=utf-8\"]}\n")
                .find("is not a media type"),
            std::string::npos);
  EXPECT_NE(error_of("    compression: {types: [html]}\n").find("is not a media type"),
            std::string::npos);
  EXPECT_NE(error_of("    compression: {gzipp: true}\n").find("unknown key"), std::string::npos);
  EXPECT_NE(error_of("    compression: {min_length: 2m, max_length: 1m}\n").find("max_length"),
            std::string::npos);
  EXPECT_NE(error_of("    compression: maybe\n").find("not a boolean"), std::string::npos);
  // Only http listeners compress.
  char tmpl[] = "/tmp/pf-zconf-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  ConfigResult e = ParseConfig(
      "listeners:\n  - {name: e, port: 7007, protocol: echo, compression: {gzip: true}}\n",
      dir + "/c.yaml");
  (void)std::system(("rm -rf " + dir).c_str());
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.errors[0].find("only http listeners compress"), std::string::npos) << e.errors[0];
}

}  // namespace
}  // namespace pf::http
