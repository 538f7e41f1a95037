// tests/unit/test_http_filecache.cc: the static handler's open-file cache
// (worker/http/filecache.h) on a temporary docroot, with the clock passed in:
// hits within valid_ms, re-checks after it, bounds (entries, bytes, LRU), and
// refusal of anything that leaves the root.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "shared/config.h"
#include "worker/http/filecache.h"

namespace pf::http {
namespace {

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

class FileCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pf-filecache-XXXXXX";
    dir_ = mkdtemp(tmpl);
    l_.name = "http";
    l_.root = dir_;
  }
  void TearDown() override { (void)std::system(("rm -rf " + dir_).c_str()); }

  std::string dir_;
  ListenerConf l_;
};

TEST_F(FileCacheTest, HitsWithinValidPeriodThenRechecks) {
  FileCache c(FileCacheLimits{.valid_ms = 1000});
  WriteFile(dir_ + "/a.txt", "one");
  Resolved r = c.Resolve(l_, "/a.txt", 10'000);
  ASSERT_EQ(r.status, 0);
  ASSERT_TRUE(r.file->in_memory);
  EXPECT_EQ(r.file->body, "one");
  EXPECT_EQ(r.file->content_length, "Content-Length: 3\r\n");
  EXPECT_EQ(r.file->content_type, "text/plain");
  WriteFile(dir_ + "/a.txt", "two!");
  EXPECT_EQ(c.Resolve(l_, "/a.txt", 10'999).file->body, "one");   // within valid_ms: not re-checked
  EXPECT_EQ(c.Resolve(l_, "/a.txt", 11'000).file->body, "two!");  // re-checked
  WriteFile(dir_ + "/a.txt", "tri!");  // same size, same second: stat may not tell
  EXPECT_EQ(c.Resolve(l_, "/a.txt", 12'000).file->body, "tri!");  // racy entries are re-read
  unlink((dir_ + "/a.txt").c_str());
  EXPECT_EQ(c.Resolve(l_, "/a.txt", 13'000).status, 404);
  EXPECT_EQ(c.entries(), 0u);
}

TEST_F(FileCacheTest, RefusesWhatLeavesTheRootAfterASwap) {
  FileCache c(FileCacheLimits{.valid_ms = 1000});
  WriteFile(dir_ + "/s.txt", "inside");
  ASSERT_EQ(c.Resolve(l_, "/s.txt", 1'000).file->body, "inside");
  unlink((dir_ + "/s.txt").c_str());
  ASSERT_EQ(symlink("/etc/passwd", (dir_ + "/s.txt").c_str()), 0);
  const Resolved r = c.Resolve(l_, "/s.txt", 2'000);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.file, nullptr);
  EXPECT_EQ(c.entries(), 0u);
  EXPECT_EQ(c.Resolve(l_, "/s.txt", 2'001).status, 403);  // refusals are not cached as files
}

TEST_F(FileCacheTest, LargeFilesUseSegmentsAndBoundsHold) {
  FileCache c(FileCacheLimits{
      .max_entries = 3, .max_bytes = 250, .max_inline_bytes = 100, .valid_ms = 1000});
  WriteFile(dir_ + "/big", std::string(1000, 'x'));
  Resolved r = c.Resolve(l_, "/big", 1);
  ASSERT_EQ(r.status, 0);
  EXPECT_FALSE(r.file->in_memory);
  EXPECT_NE(r.file->segment, nullptr);
  EXPECT_EQ(r.file->size, 1000u);
  for (int i = 0; i < 5; i++) {
    WriteFile(dir_ + "/f" + std::to_string(i), std::string(100, 'a' + i));
    ASSERT_EQ(c.Resolve(l_, "/f" + std::to_string(i), 2 + i).status, 0);
    EXPECT_LE(c.entries(), 3u);
    EXPECT_LE(c.bytes(), 250u);
  }
  // The most recent ones survive (LRU).
  EXPECT_EQ(c.Resolve(l_, "/f4", 10).file->body, std::string(100, 'e'));
}

TEST_F(FileCacheTest, DirectoriesRedirectOrServeTheirIndex) {
  FileCache c;
  mkdir((dir_ + "/d").c_str(), 0755);
  EXPECT_TRUE(c.Resolve(l_, "/d", 1).redirect);
  EXPECT_EQ(c.Resolve(l_, "/d/", 1).status, 403);  // no index, no autoindex
  WriteFile(dir_ + "/d/index.html", "<p>");
  const Resolved r = c.Resolve(l_, "/d/", 1);
  ASSERT_EQ(r.status, 0);
  EXPECT_EQ(r.file->content_type, "text/html");
  l_.autoindex = true;
  EXPECT_GE(c.Resolve(l_, "/", 1).dir.get(), 0);
}

}  // namespace
}  // namespace pf::http
