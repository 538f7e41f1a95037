// tests/unit/test_pubsub_hub.cc: a worker's pub/sub hub (worker/pubsub.h)
// over a real bus in an anonymous mapping, with real Connections on socket
// pairs: delivery must survive a subscriber whose push throws.
#include <event2/event.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "shared/bus.h"
#include "shared/config.h"
#include "worker/connection.h"
#include "worker/event_util.h"
#include "worker/pubsub.h"
#include "worker/worker.h"

namespace pf {
namespace {

class FakeSubscriber final : public PubSubClient {
 public:
  FakeSubscriber(Connection& c, bool throws) : c_(c), throws_(throws) {}
  Connection& conn() override { return c_; }
  void Push(std::string_view, std::string_view, std::string_view data) override {
    if (throws_) throw std::runtime_error("this subscriber fails");
    got.emplace_back(data);
  }
  std::vector<std::string> got;

 private:
  Connection& c_;
  bool throws_;
};

class PubSubHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const bus::Sizes sizes = bus::SizesFrom(config_.pubsub);
    size_ = bus::Bus::RegionBytes(sizes);
    mem_ = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mem_, MAP_FAILED);
    std::string err;
    ASSERT_TRUE(bus::Bus::Format(mem_, size_, sizes, &err)) << err;
    base_.reset(event_base_new());
    ctx_.config = &config_;
    ctx_.base = base_.get();
    ctx_.counters = &counters_;
    ctx_.owner = 0;
    hub_ = std::make_unique<PubSubHub>(ctx_, bus::Bus(mem_), std::vector<int>{});
    ctx_.pubsub = hub_.get();
  }
  void TearDown() override {
    conns_.clear();
    hub_.reset();
    base_.reset();
    munmap(mem_, size_);
  }

  Connection& NewConnection() {
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    peers_.emplace_back(sv[1]);
    sockaddr sa{};
    sa.sa_family = AF_UNIX;
    conns_.push_back(std::make_unique<Connection>(ctx_, listener_, sv[0], &sa, conns_.size() + 1));
    return *conns_.back();
  }

  int64_t Publish(std::string_view channel, std::string_view data) {
    int64_t receivers = -1;
    EXPECT_EQ(hub_->Publish(nullptr, 0, channel, data, false, &receivers), PubStatus::kOk);
    return receivers;
  }

  Config config_;
  ListenerConf listener_;
  void* mem_ = nullptr;
  size_t size_ = 0;
  EventBasePtr base_;
  ProcCounters counters_;
  WorkerContext ctx_;
  std::unique_ptr<PubSubHub> hub_;
  std::vector<UniqueFd> peers_;
  std::vector<std::unique_ptr<Connection>> conns_;
};

// What one "address" is for pubsub.max_channels_per_address.
TEST(AddressKey, IPv4AsIsV4MappedAsIPv4IPv6ByItsSlash64) {
  EXPECT_EQ(AddressKeyOf("192.168.100.200:54321"), "192.168.100.200");
  EXPECT_EQ(AddressKeyOf("[::ffff:10.1.2.3]:80"), "10.1.2.3");
  EXPECT_EQ(AddressKeyOf("[2001:db8:1:2:3:4:5:6]:443"), "2001:db8:1:2::/64");
  EXPECT_EQ(AddressKeyOf("[2001:db8:1:2:ffff::1]:1"), "2001:db8:1:2::/64");
  EXPECT_EQ(AddressKeyOf("[::1]:6379"), "::/64");
}

TEST_F(PubSubHubTest, DeliversAgainAfterASubscriberThrew) {
  FakeSubscriber bad(NewConnection(), /*throws=*/true);
  FakeSubscriber good(NewConnection(), /*throws=*/false);
  ASSERT_EQ(hub_->Subscribe(bad, "ch", false), SubStatus::kOk);
  ASSERT_EQ(hub_->Subscribe(good, "ch", false), SubStatus::kOk);
  EXPECT_EQ(Publish("ch", "one"), 2);
  // The throw reaches Pump's caller (its libevent callback logs it)...
  EXPECT_THROW(hub_->Pump(), std::runtime_error);
  // ...and leaves the hub able to deliver: the next message reaches the
  // subscriber that did not fail.
  ASSERT_TRUE(hub_->Unsubscribe(bad, "ch", false));
  EXPECT_EQ(Publish("ch", "two"), 1);
  hub_->Pump();
  ASSERT_FALSE(good.got.empty());
  EXPECT_EQ(good.got.back(), "two");
  hub_->ReleaseAll(good);
}

TEST_F(PubSubHubTest, DeliversInOrderToEverySubscriber) {
  FakeSubscriber a(NewConnection(), false), b(NewConnection(), false);
  ASSERT_EQ(hub_->Subscribe(a, "news", false), SubStatus::kOk);
  ASSERT_EQ(hub_->Subscribe(b, "n*", true), SubStatus::kOk);
  for (int i = 0; i < 5; i++) Publish("news", std::to_string(i));
  hub_->Pump();
  const std::vector<std::string> want = {"0", "1", "2", "3", "4"};
  EXPECT_EQ(a.got, want);
  EXPECT_EQ(b.got, want);
  hub_->ReleaseAll(a);
  hub_->ReleaseAll(b);
}

}  // namespace
}  // namespace pf
