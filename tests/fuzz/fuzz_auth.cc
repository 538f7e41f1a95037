// tests/fuzz/fuzz_auth.cc: libFuzzer target for what the security doors
// parse from clients and files: the Authorization header (basic
// credentials), IP addresses and networks (local_networks, trusted_proxies,
// X-Forwarded-For items) and htpasswd files.
// Invariants: parsed credentials re-encode to a header that parses the same;
// an address prints and parses back to itself; a network contains its own
// address; a parsed htpasswd never verifies a user it does not list.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "shared/util/cidr.h"
#include "worker/http/basic_auth.h"
#include "worker/json.h"

namespace {

void Check(bool ok) {
  if (!ok) abort();
}

void Credentials(std::string_view in) {
  std::string user, password;
  if (!pf::ParseBasicCredentials(in, &user, &password)) return;
  Check(user.find(':') == std::string::npos);
  std::string header = "Basic ";
  pf::json::AppendBase64(&header, user + ":" + password);
  std::string u2, p2;
  Check(pf::ParseBasicCredentials(header, &u2, &p2));
  Check(u2 == user && p2 == password);
}

void Addresses(std::string_view in) {
  pf::IpAddr a;
  if (pf::IpAddr::Parse(in, &a)) {
    Check(a.family == AF_INET || a.family == AF_INET6);
    pf::IpAddr b;
    Check(pf::IpAddr::Parse(a.ToString(), &b));
    Check(b.family == a.family && std::string_view(reinterpret_cast<const char*>(a.bytes), 16) ==
                                      std::string_view(reinterpret_cast<const char*>(b.bytes), 16));
  }
  pf::Cidr n;
  if (pf::Cidr::Parse(in, &n)) {
    Check(n.prefix <= (n.net.family == AF_INET ? 32 : 128));
    Check(n.Contains(n.net));
  }
}

// Hashes whose cost the input chooses (bcrypt, yescrypt, scrypt, sha-crypt
// rounds) would make one run take seconds; the parser's checks are the same
// for the cheap schemes.
bool Cheap(std::string_view in) {
  for (std::string_view slow : {"$2", "$y$", "$gy$", "$7$", "rounds="})
    if (in.find(slow) != std::string_view::npos) return false;
  return in.size() <= 4096;
}

void Htpasswd(std::string_view in) {
  if (!Cheap(in)) return;
  std::string err;
  auto f = pf::Htpasswd::Parse(in, "fuzz", &err);
  Check(f != nullptr || !err.empty());
  if (f) Check(!f->Verify("\x01no such user\x01", "x"));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  Credentials(in);
  Addresses(in);
  Htpasswd(in);
  return 0;
}
