// tests/unit/test_clients.cc: the client registry table (shared/clients.h):
// claims and the overflow policy, seqlock reads (never torn, a writer dead
// mid-write is skipped and repaired by ReleaseOwner), kill requests, the
// pause word, and a forked writer racing a reader.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "shared/clients.h"

namespace pf::clients {
namespace {

class ClientTableTest : public ::testing::Test {
 protected:
  void Make(uint32_t slots) {
    size_ = Table::RegionBytes(slots);
    mem_ = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mem_, MAP_FAILED);
    Table::Format(mem_, slots);
    t_ = Table(mem_);
  }
  void TearDown() override {
    if (mem_ && mem_ != MAP_FAILED) munmap(mem_, size_);
  }
  int32_t Add(int32_t owner, uint64_t id, std::string_view name = "") {
    const int32_t s = t_.Claim(owner, static_cast<int32_t>(getpid()));
    if (s >= 0)
      t_.Write(s, [&](Stored& r) {
        r.id = id;
        CopyField(t_.names(s).name, name);
        r.names_set = 1;
      });
    return s;
  }

  void* mem_ = nullptr;
  size_t size_ = 0;
  Table t_;
};

TEST_F(ClientTableTest, ClaimReadReleaseAndOverflow) {
  Make(3);
  EXPECT_EQ(t_.RegionBytes(3) % 4096, 0u);
  const int32_t a = Add(0, 11, "alpha"), b = Add(1, 12), c = Add(0, 13);
  ASSERT_EQ(a, 0);
  ASSERT_EQ(b, 1);
  ASSERT_EQ(c, 2);
  EXPECT_EQ(Add(0, 14), -1);  // full: served, not listed
  EXPECT_EQ(t_.header()->overflow.load(), 1u);
  EXPECT_EQ(t_.hwm(), 3u);
  Record r;
  int32_t owner = -1;
  ASSERT_TRUE(t_.Read(a, &r, &owner));
  EXPECT_EQ(r.id, 11u);
  EXPECT_EQ(FieldOf(r.name), "alpha");
  EXPECT_EQ(owner, 0);
  t_.Release(b);
  EXPECT_FALSE(t_.Read(b, &r));
  EXPECT_EQ(Add(2, 15), 1);  // the freed entry, zeroed
  ASSERT_TRUE(t_.Read(1, &r, &owner));
  EXPECT_EQ(r.id, 15u);
  EXPECT_EQ(owner, 2);
  EXPECT_EQ(t_.Used(), 3u);
}

TEST_F(ClientTableTest, FieldsAreCutToFit) {
  Make(1);
  const int32_t s = Add(0, 1, std::string(2000, 'n'));
  Record r;
  ASSERT_TRUE(t_.Read(s, &r));
  EXPECT_EQ(FieldOf(r.name).size(), kNameBytes);
}

TEST_F(ClientTableTest, KillRequestHidesTheEntryAndBumpsTheOwner) {
  Make(4);
  const int32_t s = Add(3, 42);
  const uint32_t before = t_.Kills(3);
  EXPECT_TRUE(t_.RequestKill(s, 42));
  EXPECT_EQ(t_.Kills(3), before + 1);
  EXPECT_EQ(t_.KillId(s), 42u);
  Record r;
  EXPECT_FALSE(t_.Read(s, &r));  // being killed: no longer listed
  t_.Release(s);
  EXPECT_FALSE(t_.RequestKill(s, 42));  // free
  // A reused entry starts with no kill request.
  EXPECT_EQ(Add(1, 43), s);
  EXPECT_EQ(t_.KillId(s), 0u);
}

TEST_F(ClientTableTest, ReleaseOwnerFreesOnlyThatOwnerEvenMidWrite) {
  Make(8);
  Add(0, 1);
  const int32_t dying = Add(5, 2);
  Add(5, 3);
  Add(1, 4);
  // The master reclaims while the owner is between the two seq stores of a
  // write (as when it died there).
  t_.Write(dying, [&](Stored&) {
    Record r;
    EXPECT_FALSE(t_.Read(dying, &r));  // odd seq: readers skip, never see it torn
    EXPECT_EQ(t_.ReleaseOwner(5), 2u);
  });
  EXPECT_EQ(t_.Used(), 2u);
  Record r;
  EXPECT_FALSE(t_.Read(dying, &r));
  // The repaired entry is claimable and readable again.
  const int32_t again = Add(2, 9);
  ASSERT_GE(again, 0);
  ASSERT_TRUE(t_.Read(again, &r));
  EXPECT_EQ(r.id, 9u);
}

TEST_F(ClientTableTest, EntriesOfADeadProcessAreNotListed) {
  Make(2);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const int32_t s = t_.Claim(0, static_cast<int32_t>(getpid()));
    t_.Write(s, [](Stored& r) { r.id = 77; });
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  Record r;
  EXPECT_FALSE(t_.Read(0, &r));  // claimed, but its process is gone
  EXPECT_EQ(t_.ReleaseOwner(0), 1u);
  EXPECT_EQ(t_.Used(), 0u);
}

TEST_F(ClientTableTest, ReadersNeverSeeATornRecord) {
  Make(1);
  const int32_t s = Add(0, 1, "aaaa");
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The writer: id and name always change together.
    for (uint64_t i = 2; i < 200000; i++)
      t_.Write(s, [&](Stored& r) {
        r.id = i;
        r.names_set = 1;
        std::memset(t_.names(s).name, 'a' + static_cast<char>(i % 26), 300);
        t_.names(s).name[300] = '\0';
      });
    _exit(0);
  }
  int bad = 0, reads = 0;
  for (;;) {
    Record r;
    if (t_.Read(s, &r)) {
      reads++;
      const std::string_view n = FieldOf(r.name);
      if (r.id >= 2 && (n.size() != 300 || n.find_first_not_of(n[0]) != std::string_view::npos ||
                        n[0] != 'a' + static_cast<char>(r.id % 26)))
        bad++;
    }
    int status;
    if (waitpid(child, &status, WNOHANG) == child) break;
  }
  EXPECT_EQ(bad, 0);
  EXPECT_GT(reads, 0);
}

TEST_F(ClientTableTest, PauseWord) {
  Make(1);
  EXPECT_EQ(t_.Paused(1000), kPauseNone);
  t_.Pause(1000, 5000, kPauseWrite);
  uint64_t end = 0;
  EXPECT_EQ(t_.Paused(1000, &end), kPauseWrite);
  EXPECT_EQ(end, 5000u);
  EXPECT_EQ(t_.Paused(5000), kPauseNone);  // over at its deadline
  t_.Pause(1000, 9000, kPauseAll);
  EXPECT_EQ(t_.Paused(1000), kPauseAll);
  t_.Unpause();
  EXPECT_EQ(t_.Paused(1000), kPauseNone);
}

// As Redis: a second pause while one is in force keeps the later end and
// the more restrictive mode; once the first is over, the second stands alone.
TEST_F(ClientTableTest, OverlappingPausesKeepTheLaterEndAndTheStricterMode) {
  Make(1);
  uint64_t end = 0;
  t_.Pause(1000, 9000, kPauseAll);
  t_.Pause(1100, 2000, kPauseWrite);  // shorter and weaker: changes nothing
  EXPECT_EQ(t_.Paused(1500, &end), kPauseAll);
  EXPECT_EQ(end, 9000u);
  t_.Pause(1200, 12000, kPauseWrite);  // later, weaker: the end moves, ALL stays
  EXPECT_EQ(t_.Paused(10000, &end), kPauseAll);
  EXPECT_EQ(end, 12000u);
  t_.Pause(20000, 21000, kPauseWrite);  // after the end: a fresh pause
  EXPECT_EQ(t_.Paused(20500, &end), kPauseWrite);
  EXPECT_EQ(end, 21000u);
}

}  // namespace
}  // namespace pf::clients
