// shared/util/cidr.h: IP addresses and networks as the security settings
// name them (protected_mode's local_networks, trusted_proxies): parsed once
// at config load, matched per connection or request without allocating.
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are taken as the IPv4 address.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pf {

struct IpAddr {
  uint8_t family = 0;  // AF_INET, AF_INET6, 0 = none
  uint8_t bytes[16] = {};
  // From a socket address; family 0 for anything but IPv4/IPv6.
  static IpAddr From(const sockaddr* sa);
  // "1.2.3.4", "::1", "[::1]" (no port). false: not an address.
  static bool Parse(std::string_view text, IpAddr* out);
  // From FormatAddr's "ip:port" / "[ip]:port".
  static IpAddr FromPeer(std::string_view peer);
  bool loopback() const;
  std::string ToString() const;  // "" for family 0 (an unknown client)
  // What per-address limits count under: the IPv4 address, or the /64 of an
  // IPv6 address (one host usually gets a whole /64): "2001:db8::/64".
  std::string LimitKey() const;
};

struct Cidr {
  IpAddr net;
  uint8_t prefix = 0;  // bits
  // "10.0.0.0/8", "::1/128", "192.168.1.7" (a host). false: not a network.
  static bool Parse(std::string_view text, Cidr* out);
  bool Contains(const IpAddr& a) const;
};

bool AnyContains(const std::vector<Cidr>& nets, const IpAddr& a);

}  // namespace pf
