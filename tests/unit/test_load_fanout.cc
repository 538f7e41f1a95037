// tests/unit/test_load_fanout.cc: pf-load's fan-out wire code: payloads, RESP replies, chat
// lines, and the order checks and publisher window that must catch lost or reordered messages.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fanout_wire.h"

namespace pf::load {
namespace {

TEST(LoadPayload, RoundTripsAndPadsToSize) {
  std::string s;
  AppendPayload(s, Payload{3, 42, 123456789}, 64);
  EXPECT_EQ(s.size(), 64u);
  EXPECT_TRUE(s.starts_with("3:42:123456789:x"));
  Payload p;
  ASSERT_TRUE(ParsePayload(s, &p));
  EXPECT_EQ(p.publisher, 3u);
  EXPECT_EQ(p.seq, 42u);
  EXPECT_EQ(p.sent_ns, 123456789u);
}

TEST(LoadPayload, HeaderLongerThanSizeIsKept) {
  std::string s;
  AppendPayload(s, Payload{0, 7, 99}, 1);
  EXPECT_EQ(s, "0:7:99:");
}

TEST(LoadPayload, RejectsGarbageAndTellsProbesApart) {
  Payload p;
  EXPECT_FALSE(ParsePayload("", &p));
  EXPECT_FALSE(ParsePayload("1:2", &p));
  EXPECT_FALSE(ParsePayload("a:2:3:", &p));
  EXPECT_FALSE(ParsePayload("1:2:3", &p));  // the header ends with ':'
  std::string probe;
  AppendProbe(probe, 2, 5);
  EXPECT_FALSE(ParsePayload(probe, &p));
  uint32_t from = 9;
  ASSERT_TRUE(ParseProbe(probe, &from));
  EXPECT_EQ(from, 2u);
  EXPECT_FALSE(ParseProbe("1:2:3:", &from));
}

TEST(LoadResp, ParsesPushedMessageAndWaitsForTheRest) {
  const std::string msg = "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n";
  RespReply r;
  for (size_t cut = 0; cut < msg.size(); ++cut) {
    EXPECT_EQ(ParseRespReply(std::string_view(msg).substr(0, cut), &r), 0) << cut;
  }
  const std::string two = msg + ":1\r\n";  // the views point into the parsed buffer
  ASSERT_EQ(ParseRespReply(two, &r), static_cast<ptrdiff_t>(msg.size()));
  EXPECT_EQ(r.top.type, '*');
  EXPECT_EQ(r.top.num, 3);
  EXPECT_EQ(r.items[0].str, "message");
  EXPECT_EQ(r.items[1].str, "ch");
  EXPECT_EQ(r.items[2].str, "hello");
}

TEST(LoadResp, ParsesScalarsAndSubscribeReply) {
  RespReply r;
  EXPECT_EQ(ParseRespReply(":100\r\n", &r), 6);
  EXPECT_EQ(r.top.type, ':');
  EXPECT_EQ(r.top.num, 100);
  EXPECT_EQ(ParseRespReply("-ERR rate\r\n", &r), 11);
  EXPECT_EQ(r.top.type, '-');
  EXPECT_EQ(r.top.str, "ERR rate");
  const std::string sub = "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n";
  ASSERT_EQ(ParseRespReply(sub, &r), static_cast<ptrdiff_t>(sub.size()));
  EXPECT_EQ(r.items[0].str, "subscribe");
  EXPECT_EQ(r.items[2].type, ':');
  EXPECT_EQ(r.items[2].num, 1);
  EXPECT_EQ(ParseRespReply("$-1\r\n", &r), 5);
  EXPECT_TRUE(r.top.is_null);
}

TEST(LoadResp, RejectsWhatItCannotJudge) {
  RespReply r;
  EXPECT_EQ(ParseRespReply("?what\r\n", &r), -1);
  EXPECT_EQ(ParseRespReply("*5\r\n", &r), -1);              // longer than any pub/sub reply
  EXPECT_EQ(ParseRespReply("*1\r\n*1\r\n:1\r\n", &r), -1);  // nested
  EXPECT_EQ(ParseRespReply("$3\r\nabcd\r\n", &r), -1);      // bulk without its CRLF
  EXPECT_EQ(ParseRespReply(":12x\r\n", &r), -1);
}

TEST(LoadResp, BuildsMultibulk) {
  std::string s;
  AppendRespCommand(s, {"PUBLISH", "ch", "hi"});
  EXPECT_EQ(s, "*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$2\r\nhi\r\n");
}

TEST(LoadChat, ClassifiesLines) {
  std::string_view text;
  EXPECT_EQ(ClassifyChatLine("[r1] guest7: 0:1:2:xx", "[r1] ", &text), ChatLine::kMessage);
  EXPECT_EQ(text, "0:1:2:xx");
  // The text may itself hold ": ": only the first one after the nick splits.
  EXPECT_EQ(ClassifyChatLine("[r1] bob: a: b", "[r1] ", &text), ChatLine::kMessage);
  EXPECT_EQ(text, "a: b");
  EXPECT_EQ(ClassifyChatLine("* joined [r1] (3 members)", "[r1] ", &text), ChatLine::kInfo);
  EXPECT_EQ(ClassifyChatLine("! publish rate limit", "[r1] ", &text), ChatLine::kError);
  EXPECT_EQ(ClassifyChatLine("[lobby] bob: hi", "[r1] ", &text), ChatLine::kOther);
  EXPECT_EQ(ClassifyChatLine("[r10] bob: hi", "[r1] ", &text), ChatLine::kOther);
}

TEST(LoadOrder, CountsGapsAndDuplicatesPerPublisher) {
  OrderTracker t(2);
  uint64_t lost = 0;
  EXPECT_EQ(t.Observe(0, 0, &lost), OrderTracker::Result::kInOrder);
  EXPECT_EQ(t.Observe(1, 0, &lost), OrderTracker::Result::kInOrder);  // its own sequence
  EXPECT_EQ(t.Observe(0, 1, &lost), OrderTracker::Result::kInOrder);
  EXPECT_EQ(t.Observe(0, 4, &lost), OrderTracker::Result::kGap);  // 2 and 3 missing
  EXPECT_EQ(lost, 2u);
  EXPECT_EQ(t.Next(0), 5u);
  EXPECT_EQ(t.Observe(0, 3, &lost), OrderTracker::Result::kDuplicate);  // late: a reorder
  EXPECT_EQ(t.Observe(0, 4, &lost), OrderTracker::Result::kDuplicate);  // twice
  EXPECT_EQ(t.Next(0), 5u);
  EXPECT_EQ(t.Observe(0, 5, &lost), OrderTracker::Result::kInOrder);
  EXPECT_EQ(t.Next(1), 1u);
}

// A swapped pair costs one lost (at the jump) and one reorder (the late one): the run fails.
TEST(LoadOrder, SwappedPairIsCaught) {
  OrderTracker t(1);
  uint64_t lost = 0, total_lost = 0, reorders = 0;
  for (uint64_t seq : {0, 1, 3, 2, 4}) {
    if (t.Observe(0, seq, &lost) == OrderTracker::Result::kDuplicate) ++reorders;
    total_lost += lost;
  }
  EXPECT_EQ(total_lost, 1u);
  EXPECT_EQ(reorders, 1u);
}

TEST(LoadPassFloor, FollowsTheSlowestMember) {
  PassFloor f(3, 64);
  EXPECT_EQ(f.Floor(), 0u);
  ASSERT_TRUE(f.Advance(0, 5));  // member A passed 0..4
  ASSERT_TRUE(f.Advance(0, 2));  // member B passed 0..1
  EXPECT_EQ(f.Floor(), 0u);      // C has nothing yet
  ASSERT_TRUE(f.Advance(0, 3));  // C passed 0..2
  EXPECT_EQ(f.Floor(), 2u);      // B is the slowest
  ASSERT_TRUE(f.Advance(2, 6));  // B jumps (a gap counts as passed)
  EXPECT_EQ(f.Floor(), 3u);      // now C
}

TEST(LoadPassFloor, ADroppedMemberStopsHoldingItBack) {
  PassFloor f(2, 64);
  ASSERT_TRUE(f.Advance(0, 10));
  ASSERT_TRUE(f.Advance(0, 4));
  EXPECT_EQ(f.Floor(), 4u);
  f.Remove(4);
  EXPECT_EQ(f.Floor(), 10u);
  f.Remove(10);
  EXPECT_EQ(f.Floor(), UINT64_MAX);  // nobody left: the publishers stop
}

TEST(LoadPassFloor, RefusesSequencesBeyondTheSpan) {
  PassFloor f(1, 8);  // ring of 16
  EXPECT_FALSE(f.Advance(0, 1000));
  EXPECT_EQ(f.Floor(), 0u);
  ASSERT_TRUE(f.Advance(0, 16));
  EXPECT_EQ(f.Floor(), 16u);
  // Wrapping the ring many times keeps exact counts.
  PassFloor g(2, 8);
  uint64_t a = 0, b = 0;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(g.Advance(a, a + 3));
    a += 3;
    ASSERT_TRUE(g.Advance(b, a - 1));
    b = a - 1;
    EXPECT_EQ(g.Floor(), b);
  }
}

}  // namespace
}  // namespace pf::load
