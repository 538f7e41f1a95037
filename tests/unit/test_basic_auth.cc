// tests/unit/test_basic_auth.cc: HTTP basic auth (worker/http/basic_auth.h):
// htpasswd files made at test time (bcrypt by Debian's htpasswd, sha512-crypt
// by crypt_r itself), what Load refuses and where, the Authorization parser,
// and the per-worker cache with the clock passed in.
#include <crypt.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

#include "worker/http/basic_auth.h"
#include "worker/json.h"

namespace pf {
namespace {

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

// stdout of `cmd`, the trailing newline(s) removed.
std::string Run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  std::array<char, 256> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

bool HaveHtpasswd() { return Run("command -v htpasswd") != ""; }

// "user:$2y$05$..." as `htpasswd -nbB -C 5 user pass` prints it.
std::string BcryptLine(const std::string& user, const std::string& pass) {
  return Run("htpasswd -nbB -C 5 '" + user + "' '" + pass + "'");
}

std::string Sha512(const std::string& pass) {
  auto d = std::make_unique<crypt_data>();
  const char* out = crypt_r(pass.c_str(), "$6$saltsaltsalt$", d.get());
  return out ? out : "";
}

std::string Basic(const std::string& user_pass) {
  std::string b64;
  json::AppendBase64(&b64, user_pass);
  return "Basic " + b64;
}

class BasicAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pf-basic-auth-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { (void)std::system(("rm -rf " + dir_).c_str()); }

  // Writes `text` to a fresh file and loads it.
  std::shared_ptr<const Htpasswd> LoadText(const std::string& text, std::string* error) {
    const std::string path = dir_ + "/htpasswd";
    WriteFile(path, text);
    return Htpasswd::Load(path, error);
  }
  // Expects Load to refuse `text` with an error naming "htpasswd:<line>:" and `what`.
  void ExpectRefused(const std::string& text, int line, const std::string& what) {
    std::string error;
    EXPECT_EQ(LoadText(text, &error), nullptr) << text;
    EXPECT_NE(error.find(dir_ + "/htpasswd:" + std::to_string(line) + ": "), std::string::npos)
        << error;
    EXPECT_NE(error.find(what), std::string::npos) << error;
  }

  std::string dir_;
};

TEST_F(BasicAuthTest, BcryptFromHtpasswdVerifiesOnlyTheRightPassword) {
  ASSERT_TRUE(HaveHtpasswd())
      << "htpasswd (apache2-utils) not installed: tools/preforkctl test installs it";
  const std::string alice = BcryptLine("alice", "s3cret");
  ASSERT_EQ(alice.rfind("alice:$2y$05$", 0), 0u) << alice;
  std::string error;
  auto f = LoadText(alice + "\n" + BcryptLine("bob", "hunter2") + "\n", &error);
  ASSERT_NE(f, nullptr) << error;
  EXPECT_EQ(f->users(), 2u);
  EXPECT_TRUE(f->Verify("alice", "s3cret"));
  EXPECT_TRUE(f->Verify("bob", "hunter2"));
  EXPECT_FALSE(f->Verify("alice", "hunter2"));
  EXPECT_FALSE(f->Verify("alice", "s3cre"));
  EXPECT_FALSE(f->Verify("alice", ""));
  EXPECT_FALSE(f->Verify("alice", std::string("s3cret\0x", 8)));  // crypt_r would stop at the NUL
  EXPECT_FALSE(f->Verify("Alice", "s3cret"));
}

TEST_F(BasicAuthTest, UnknownUserIsRefusedAfterOneHash) {
  ASSERT_TRUE(HaveHtpasswd())
      << "htpasswd (apache2-utils) not installed: tools/preforkctl test installs it";
  std::string error;
  auto f = LoadText(BcryptLine("alice", "s3cret") + "\n", &error);
  ASSERT_NE(f, nullptr) << error;
  EXPECT_FALSE(f->Verify("mallory", "s3cret"));
  EXPECT_FALSE(f->Verify("", ""));
  EXPECT_FALSE(f->Verify("mallory", "preforkd: no such user"));  // the dummy's own phrase
  // An unknown user costs a bcrypt like a known one: not the microseconds of a
  // map miss (a loose bound; the point is that crypt_r ran).
  const auto time_us = [&](std::string_view user) {
    timespec a{}, b{};
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < 5; ++i) (void)f->Verify(user, "wrong");
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a.tv_sec) * 1'000'000 + (b.tv_nsec - a.tv_nsec) / 1000;
  };
  const long known = time_us("alice"), unknown = time_us("mallory");
  EXPECT_GT(unknown, known / 4) << "known " << known << " us, unknown " << unknown << " us";
}

TEST_F(BasicAuthTest, Sha512CryptEntryAndUserHashCommentField) {
  const std::string hash = Sha512("pa:ss word");
  ASSERT_EQ(hash.rfind("$6$saltsaltsalt$", 0), 0u) << hash;
  std::string error;
  auto f = LoadText("carol:" + hash + ":the ops on-call\n", &error);
  ASSERT_NE(f, nullptr) << error;
  EXPECT_TRUE(f->Verify("carol", "pa:ss word"));
  EXPECT_FALSE(f->Verify("carol", "pa:ss wore"));
}

TEST_F(BasicAuthTest, MixedSchemesCommentsBlankLinesAndCrlf) {
  ASSERT_TRUE(HaveHtpasswd())
      << "htpasswd (apache2-utils) not installed: tools/preforkctl test installs it";
  std::string error;
  auto f = LoadText("# team accounts\n\n   \n" + BcryptLine("alice", "s3cret") +
                        "\r\n#carol:plaintext-in-a-comment\n\t\ndave:" + Sha512("d4ve") + "\n",
                    &error);
  ASSERT_NE(f, nullptr) << error;
  EXPECT_EQ(f->users(), 2u);
  EXPECT_TRUE(f->Verify("alice", "s3cret"));
  EXPECT_TRUE(f->Verify("dave", "d4ve"));
  EXPECT_FALSE(f->Verify("carol", "plaintext-in-a-comment"));
}

TEST_F(BasicAuthTest, AcceptsYescryptAndSha256Crypt) {
  auto d = std::make_unique<crypt_data>();
  std::string entries;
  for (const char* prefix : {"$y$", "$5$"}) {
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    ASSERT_NE(crypt_gensalt_rn(prefix, 0, nullptr, 0, setting, sizeof setting), nullptr) << prefix;
    const char* hash = crypt_r("pw", setting, d.get());
    ASSERT_NE(hash, nullptr);
    entries += std::string(prefix[1] == 'y' ? "yes" : "sha256") + ":" + hash + "\n";
  }
  std::string error;
  auto f = LoadText(entries, &error);
  ASSERT_NE(f, nullptr) << error;
  EXPECT_TRUE(f->Verify("yes", "pw"));
  EXPECT_TRUE(f->Verify("sha256", "pw"));
  EXPECT_FALSE(f->Verify("yes", "pW"));
  EXPECT_FALSE(f->Verify("sha256", "pW"));
}

TEST(HtpasswdParse, TextReadElsewhereNamesThePathInErrors) {
  std::string error;
  auto f = Htpasswd::Parse("# x\nalice:" + Sha512("s3cret") + "\n", "conf/users", &error);
  ASSERT_NE(f, nullptr) << error;
  EXPECT_TRUE(f->Verify("alice", "s3cret"));
  EXPECT_EQ(Htpasswd::Parse("# x\nalice:s3cret\n", "conf/users", &error), nullptr);
  EXPECT_EQ(error.rfind("conf/users:2: user \"alice\": ", 0), 0u) << error;
  EXPECT_EQ(Htpasswd::Parse(std::string(Htpasswd::kMaxFileBytes + 1, '#'), "conf/users", &error),
            nullptr);
  EXPECT_EQ(error.rfind("conf/users: larger than", 0), 0u) << error;
}

TEST_F(BasicAuthTest, EmptyFileLoadsWithNoUsers) {
  std::string error;
  auto f = LoadText("# nobody yet\n", &error);
  ASSERT_NE(f, nullptr) << error;
  EXPECT_EQ(f->users(), 0u);
  EXPECT_FALSE(f->Verify("alice", "s3cret"));
}

TEST_F(BasicAuthTest, RefusesWeakFormatsNamingTheLine) {
  const std::string good = "dave:" + Sha512("d4ve") + "\n";
  ExpectRefused("# c\n" + good + "alice:s3cret\n", 3, "plaintext");
  ExpectRefused(good + "alice:$apr1$9rF.9wWc$afT1GDj7cRsWDbynFCfpn/\n", 2, "$apr1$");
  ExpectRefused("alice:{SHA}UWuXg/ylF+7L0dBk2i0WUxCxl1k=\n", 1, "{SHA}");
  ExpectRefused(good + "\nalice\n", 3, "no ':'");
  ExpectRefused("alice:$1$abc$iUbCWW89D2V9MXDEFGV8x0\n", 1, "legacy");  // md5crypt
  ExpectRefused("alice:abccBcrPOxnLU\n", 1, "not a crypt hash");        // DES
  ExpectRefused("alice:" + Sha512("x").substr(0, 40) + "\n", 1, "truncated");
  ExpectRefused("alice:\n", 1, "no password hash");
  ExpectRefused(":" + Sha512("x") + "\n", 1, "empty user");
  ExpectRefused(good + good, 2, "already listed at line 1");
  // The refused secret is not repeated in the message.
  std::string error;
  EXPECT_EQ(LoadText("alice:s3cret\n", &error), nullptr);
  EXPECT_EQ(error.find("s3cret"), std::string::npos) << error;
}

TEST_F(BasicAuthTest, LoadErrorsForMissingAndOversizedFiles) {
  std::string error;
  EXPECT_EQ(Htpasswd::Load(dir_ + "/nope", &error), nullptr);
  EXPECT_NE(error.find(dir_ + "/nope: cannot open: No such file or directory"), std::string::npos)
      << error;
  error.clear();
  EXPECT_EQ(Htpasswd::Load(dir_, &error), nullptr);
  EXPECT_NE(error.find("not a regular file"), std::string::npos) << error;
  error.clear();
  std::string big = "# padding\n";
  while (big.size() <= Htpasswd::kMaxFileBytes) big += "# " + std::string(77, 'x') + "\n";
  EXPECT_EQ(LoadText(big, &error), nullptr);
  EXPECT_NE(error.find("limit"), std::string::npos) << error;
  error.clear();
  EXPECT_NE(LoadText(big.substr(0, Htpasswd::kMaxFileBytes - 1) + "\n", &error), nullptr) << error;
}

TEST(BasicCredentials, Parses) {
  std::string user, pass;
  ASSERT_TRUE(ParseBasicCredentials(Basic("alice:s3cret"), &user, &pass));
  EXPECT_EQ(user, "alice");
  EXPECT_EQ(pass, "s3cret");
  ASSERT_TRUE(ParseBasicCredentials("basic YWxpY2U6czNjcmV0", &user, &pass));  // case-insensitive
  EXPECT_EQ(user, "alice");
  ASSERT_TRUE(ParseBasicCredentials("BASIC   YWxpY2U6czNjcmV0", &user, &pass));  // several spaces
  EXPECT_EQ(pass, "s3cret");
  ASSERT_TRUE(ParseBasicCredentials(Basic("bob:a:b:c"), &user, &pass));  // ':' in the password
  EXPECT_EQ(user, "bob");
  EXPECT_EQ(pass, "a:b:c");
  ASSERT_TRUE(ParseBasicCredentials(Basic("bob:"), &user, &pass));
  EXPECT_EQ(user, "bob");
  EXPECT_EQ(pass, "");
}

TEST(BasicCredentials, Refuses) {
  std::string user, pass;
  EXPECT_FALSE(ParseBasicCredentials(Basic("alice"), &user, &pass));             // no ':'
  EXPECT_FALSE(ParseBasicCredentials("Basic YWxpY2U6czNjcmV0!", &user, &pass));  // bad base64
  EXPECT_FALSE(ParseBasicCredentials("Basic YWxpY2U6czNjcmV", &user, &pass));    // bad length
  EXPECT_FALSE(ParseBasicCredentials("Basic ", &user, &pass));
  EXPECT_FALSE(ParseBasicCredentials("Basic", &user, &pass));
  EXPECT_FALSE(ParseBasicCredentials("BasicYWxpY2U6czNjcmV0", &user, &pass));
  EXPECT_FALSE(ParseBasicCredentials("Basic\tYWxpY2U6czNjcmV0", &user, &pass));
  EXPECT_FALSE(ParseBasicCredentials("Bearer YWxpY2U6czNjcmV0", &user, &pass));
  EXPECT_FALSE(ParseBasicCredentials("Digest username=\"alice\"", &user, &pass));
  EXPECT_FALSE(ParseBasicCredentials("", &user, &pass));
}

class BasicAuthCacheTest : public BasicAuthTest {
 protected:
  void SetUp() override {
    BasicAuthTest::SetUp();
    std::string error;
    file_ = LoadText("alice:" + Sha512("s3cret") + "\n", &error);
    ASSERT_NE(file_, nullptr) << error;
  }
  std::shared_ptr<const Htpasswd> file_;
};

TEST_F(BasicAuthCacheTest, HitMissAndExpiry) {
  BasicAuthCache c;
  const std::string a = Basic("alice:s3cret");
  EXPECT_FALSE(c.Check(file_.get(), a, 1'000));
  c.Remember(file_.get(), a, 1'000);
  EXPECT_TRUE(c.Check(file_.get(), a, 1'000));
  EXPECT_TRUE(c.Check(file_.get(), a, 1'000 + BasicAuthCache::kTtlMs - 1));  // hits do not extend
  EXPECT_FALSE(c.Check(file_.get(), Basic("alice:s3creT"), 1'001));          // another value
  EXPECT_FALSE(c.Check(file_.get(), "basic" + a.substr(5), 1'001));  // the exact value is the key
  EXPECT_FALSE(c.Check(file_.get(), a, 1'000 + BasicAuthCache::kTtlMs));
  EXPECT_EQ(c.size(), 0u);  // the expired entry was dropped
  EXPECT_FALSE(c.Check(file_.get(), a, 1'001));
  c.Remember(file_.get(), a, 2'000);
  EXPECT_TRUE(c.Check(file_.get(), a, 2'000 + BasicAuthCache::kTtlMs - 1));
  EXPECT_FALSE(c.Check(nullptr, a, 2'000));
}

TEST_F(BasicAuthCacheTest, ANewObjectStartsCold) {
  BasicAuthCache c;
  const std::string a = Basic("alice:s3cret");
  c.Remember(file_.get(), a, 1'000);
  ASSERT_TRUE(c.Check(file_.get(), a, 1'000));
  std::string error;
  auto reloaded = Htpasswd::Load(dir_ + "/htpasswd", &error);  // same file, same contents
  ASSERT_NE(reloaded, nullptr) << error;
  EXPECT_NE(reloaded->id(), file_->id());
  EXPECT_FALSE(c.Check(reloaded.get(), a, 1'001));
  c.Remember(reloaded.get(), a, 1'002);
  EXPECT_TRUE(c.Check(reloaded.get(), a, 1'003));
  // An object freed and another allocated at its address: ids are never reused.
  const uint64_t old_id = file_->id();
  file_.reset();
  auto again = Htpasswd::Load(dir_ + "/htpasswd", &error);
  ASSERT_NE(again, nullptr) << error;
  EXPECT_NE(again->id(), old_id);
  EXPECT_FALSE(c.Check(again.get(), a, 1'004));
}

TEST_F(BasicAuthCacheTest, BoundedDroppingTheOldest) {
  BasicAuthCache c;
  const auto value = [](size_t i) { return Basic("user" + std::to_string(i) + ":pw"); };
  for (size_t i = 0; i < BasicAuthCache::kMaxEntries; ++i)
    c.Remember(file_.get(), value(i), 1'000 + i);
  EXPECT_EQ(c.size(), BasicAuthCache::kMaxEntries);
  c.Remember(file_.get(), value(0), 5'000);  // re-verified: now the newest
  c.Remember(file_.get(), value(BasicAuthCache::kMaxEntries), 5'001);
  EXPECT_EQ(c.size(), BasicAuthCache::kMaxEntries);
  EXPECT_FALSE(c.Check(file_.get(), value(1), 5'002));  // the oldest went
  EXPECT_TRUE(c.Check(file_.get(), value(0), 5'002));
  EXPECT_TRUE(c.Check(file_.get(), value(2), 5'002));
  EXPECT_TRUE(c.Check(file_.get(), value(BasicAuthCache::kMaxEntries), 5'002));
}

}  // namespace
}  // namespace pf
