// tests/unit/test_security.cc: the rules of the security doors: secret
// comparison (shared/util/strings.h), networks (shared/util/cidr.h), and
// the client behind trusted proxies, as nginx's real_ip_recursive picks it
// (worker/security.h).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "shared/config.h"
#include "shared/util/cidr.h"
#include "shared/util/strings.h"
#include "worker/connection.h"
#include "worker/http/parse.h"
#include "worker/security.h"
#include "worker/worker.h"

namespace pf {
namespace {

IpAddr Ip(const std::string& s) {
  IpAddr a;
  EXPECT_TRUE(IpAddr::Parse(s, &a)) << s;
  return a;
}

Cidr Net(const std::string& s) {
  Cidr n;
  EXPECT_TRUE(Cidr::Parse(s, &n)) << s;
  return n;
}

TEST(Cidr, ParsesAndMatchesPrefixes) {
  EXPECT_TRUE(Net("10.0.0.0/8").Contains(Ip("10.255.1.2")));
  EXPECT_FALSE(Net("10.0.0.0/8").Contains(Ip("11.0.0.1")));
  EXPECT_TRUE(Net("192.168.1.0/23").Contains(Ip("192.168.0.9")));
  EXPECT_FALSE(Net("192.168.1.0/23").Contains(Ip("192.168.2.1")));
  EXPECT_TRUE(Net("0.0.0.0/0").Contains(Ip("203.0.113.9")));
  EXPECT_FALSE(Net("0.0.0.0/0").Contains(Ip("::1")));  // families never match
  EXPECT_TRUE(Net("2001:db8::/32").Contains(Ip("2001:db8:ffff::1")));
  EXPECT_TRUE(Net("::1").Contains(Ip("[::1]")));
  EXPECT_TRUE(Net("127.0.0.1/32").Contains(Ip("::ffff:127.0.0.1")));  // v4-mapped = IPv4
  Cidr n;
  for (const char* bad : {"", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1", "host",
                          "10.0.0.0/8/8", "1.2.3", "[::1"})
    EXPECT_FALSE(Cidr::Parse(bad, &n)) << bad;
}

TEST(SecretEquals, ComparesWholeSecretsOnly) {
  EXPECT_TRUE(SecretEquals("s3cret", "s3cret"));
  EXPECT_TRUE(SecretEquals("", ""));
  EXPECT_FALSE(SecretEquals("s3cre", "s3cret"));    // a prefix
  EXPECT_FALSE(SecretEquals("s3crets", "s3cret"));  // longer
  EXPECT_FALSE(SecretEquals("abcabc", "abc"));      // the secret repeated
  EXPECT_FALSE(SecretEquals("s3creT", "s3cret"));
  EXPECT_FALSE(SecretEquals("x", ""));
  EXPECT_FALSE(SecretEquals("", "s3cret"));
  EXPECT_FALSE(SecretEquals(std::string("s3cret\0", 7), "s3cret"));
}

TEST(IpAddr, LoopbackAndPeerText) {
  EXPECT_TRUE(Ip("127.0.0.2").loopback());
  EXPECT_TRUE(Ip("::1").loopback());
  EXPECT_TRUE(Ip("::ffff:127.0.0.1").loopback());
  EXPECT_FALSE(Ip("10.0.0.1").loopback());
  EXPECT_FALSE(Ip("::2").loopback());
  EXPECT_EQ(IpAddr::FromPeer("127.0.0.1:6380").ToString(), "127.0.0.1");
  EXPECT_EQ(IpAddr::FromPeer("[::1]:6380").ToString(), "::1");
  EXPECT_EQ(IpAddr::FromPeer("?").family, 0);
}

class ClientAddressTest : public ::testing::Test {
 protected:
  // X-Forwarded-For lines as sent, in order (none: no header).
  IpAddr Client(const std::string& peer, std::vector<std::string> xff) {
    WorkerContext w;
    w.config = &cfg_;
    http::Request req;
    req.headers.emplace_back("host", "localhost");
    for (auto& line : xff) req.headers.emplace_back("x-forwarded-for", line);
    return ClientAddress(w, Ip(peer), req);
  }
  IpAddr Client(const std::string& peer, const char* xff) {
    return Client(peer, xff ? std::vector<std::string>{xff} : std::vector<std::string>{});
  }
  Config cfg_;
};

TEST_F(ClientAddressTest, EveryHeaderLineCountsInOrder) {
  // haproxy's option forwardfor appends its own line after the client's: a
  // client that sends "X-Forwarded-For: 127.0.0.1" is not loopback.
  cfg_.trusted_proxies = {Net("127.0.0.1")};
  EXPECT_EQ(Client("127.0.0.1", {"127.0.0.1", "198.51.100.4"}).ToString(), "198.51.100.4");
  EXPECT_EQ(Client("127.0.0.1", {"127.0.0.1", "198.51.100.4, 127.0.0.1"}).ToString(),
            "198.51.100.4");
}

TEST_F(ClientAddressTest, HeaderIgnoredWithoutTrustedProxies) {
  EXPECT_EQ(Client("127.0.0.1", "203.0.113.7").ToString(), "127.0.0.1");
}

TEST_F(ClientAddressTest, HeaderIgnoredFromAnUntrustedPeer) {
  cfg_.trusted_proxies = {Net("10.0.0.0/8")};
  EXPECT_EQ(Client("192.0.2.1", "203.0.113.7").ToString(), "192.0.2.1");
}

TEST_F(ClientAddressTest, RightMostUntrustedAddressIsTheClient) {
  cfg_.trusted_proxies = {Net("10.0.0.0/8"), Net("127.0.0.1")};
  EXPECT_EQ(Client("127.0.0.1", "203.0.113.7").ToString(), "203.0.113.7");
  // The client may put anything in front; only hops of trusted proxies count.
  EXPECT_EQ(Client("127.0.0.1", "1.1.1.1, 203.0.113.7, 10.1.2.3").ToString(), "203.0.113.7");
  EXPECT_EQ(Client("127.0.0.1", " 2001:db8::5 ,10.0.0.9").ToString(), "2001:db8::5");
  // Every hop trusted: the left-most one.
  EXPECT_EQ(Client("127.0.0.1", "10.0.0.1, 10.0.0.2").ToString(), "10.0.0.1");
  // Garbage where a trusted hop put an address: the client is unknown, not
  // the (loopback) proxy.
  const IpAddr unknown = Client("127.0.0.1", "203.0.113.7, not-an-ip, 10.0.0.4");
  EXPECT_EQ(unknown.family, 0);
  EXPECT_FALSE(unknown.loopback());
  EXPECT_EQ(Client("127.0.0.1", "").ToString(), "127.0.0.1");
  EXPECT_EQ(Client("127.0.0.1", nullptr).ToString(), "127.0.0.1");
}

}  // namespace
}  // namespace pf
