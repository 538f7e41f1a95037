// shared/util/cidr.cc: IP addresses and networks (cidr.h).
#include "shared/util/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "shared/util/strings.h"

namespace pf {
namespace {

void SetV4(IpAddr* a, const void* four) {
  a->family = AF_INET;
  std::memset(a->bytes, 0, sizeof a->bytes);
  std::memcpy(a->bytes, four, 4);
}

void SetV6(IpAddr* a, const in6_addr& in6) {
  if (IN6_IS_ADDR_V4MAPPED(&in6)) return SetV4(a, &in6.s6_addr[12]);
  a->family = AF_INET6;
  std::memcpy(a->bytes, in6.s6_addr, 16);
}

}  // namespace

IpAddr IpAddr::From(const sockaddr* sa) {
  IpAddr a;
  if (sa == nullptr) return a;
  if (sa->sa_family == AF_INET)
    SetV4(&a, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr);
  else if (sa->sa_family == AF_INET6)
    SetV6(&a, reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr);
  return a;
}

bool IpAddr::Parse(std::string_view text, IpAddr* out) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']')
    text = text.substr(1, text.size() - 2);
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return false;
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  in_addr a4;
  in6_addr a6;
  if (inet_pton(AF_INET, buf, &a4) == 1) {
    SetV4(out, &a4);
    return true;
  }
  if (inet_pton(AF_INET6, buf, &a6) == 1) {
    SetV6(out, a6);
    return true;
  }
  return false;
}

IpAddr IpAddr::FromPeer(std::string_view peer) {
  IpAddr a;
  const size_t colon = peer.rfind(':');
  if (colon != std::string_view::npos) peer = peer.substr(0, colon);
  if (!Parse(peer, &a)) a = IpAddr{};
  return a;
}

bool IpAddr::loopback() const {
  if (family == AF_INET) return bytes[0] == 127;
  if (family != AF_INET6) return false;
  for (int i = 0; i < 15; i++)
    if (bytes[i] != 0) return false;
  return bytes[15] == 1;
}

std::string IpAddr::ToString() const {
  char buf[INET6_ADDRSTRLEN] = "";
  if (family == AF_INET) inet_ntop(AF_INET, bytes, buf, sizeof buf);
  if (family == AF_INET6) inet_ntop(AF_INET6, bytes, buf, sizeof buf);
  return buf;
}

std::string IpAddr::LimitKey() const {
  if (family != AF_INET6) return ToString();
  IpAddr net = *this;
  std::memset(net.bytes + 8, 0, 8);
  return net.ToString() + "/64";
}

bool Cidr::Parse(std::string_view text, Cidr* out) {
  const size_t slash = text.find('/');
  if (!IpAddr::Parse(text.substr(0, slash), &out->net)) return false;
  const uint32_t max_bits = out->net.family == AF_INET ? 32 : 128;
  uint64_t bits = max_bits;
  if (slash != std::string_view::npos &&
      (!ParseU64(text.substr(slash + 1), &bits) || bits > max_bits))
    return false;
  out->prefix = static_cast<uint8_t>(bits);
  // Host bits are cleared so Contains compares only the network part.
  for (uint32_t i = 0; i < 16; i++) {
    const uint32_t lo = i * 8;
    if (lo >= bits)
      out->net.bytes[i] = 0;
    else if (lo + 8 > bits)
      out->net.bytes[i] &= static_cast<uint8_t>(0xff << (8 - (bits - lo)));
  }
  return true;
}

bool Cidr::Contains(const IpAddr& a) const {
  if (a.family != net.family) return false;
  uint32_t bits = prefix, i = 0;
  for (; bits >= 8; bits -= 8, i++)
    if (a.bytes[i] != net.bytes[i]) return false;
  if (bits == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - bits));
  return (a.bytes[i] & mask) == net.bytes[i];
}

bool AnyContains(const std::vector<Cidr>& nets, const IpAddr& a) {
  for (const Cidr& n : nets)
    if (n.Contains(a)) return true;
  return false;
}

}  // namespace pf
