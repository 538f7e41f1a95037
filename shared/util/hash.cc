// shared/util/hash.cc: SipHash-1-3 and SipHash-2-4 (reference algorithm, one
// template for both round counts).
#include "shared/util/hash.h"

#include <cstring>

namespace pf {
namespace {

inline uint64_t Rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

struct SipState {
  uint64_t v0, v1, v2, v3;
  inline void Round() {
    v0 += v1;
    v1 = Rotl(v1, 13);
    v1 ^= v0;
    v0 = Rotl(v0, 32);
    v2 += v3;
    v3 = Rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = Rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = Rotl(v1, 17);
    v1 ^= v2;
    v2 = Rotl(v2, 32);
  }
};

inline uint64_t Load64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

template <int C, int D>
uint64_t Sip(uint64_t k0, uint64_t k1, const void* data, size_t len) {
  SipState s{0x736f6d6570736575ull ^ k0, 0x646f72616e646f6dull ^ k1, 0x6c7967656e657261ull ^ k0,
             0x7465646279746573ull ^ k1};
  const auto* p = static_cast<const unsigned char*>(data);
  const unsigned char* end = p + (len & ~size_t{7});
  for (; p != end; p += 8) {
    uint64_t m = Load64(p);
    s.v3 ^= m;
    for (int i = 0; i < C; ++i) s.Round();
    s.v0 ^= m;
  }
  uint64_t b = static_cast<uint64_t>(len) << 56;
  switch (len & 7) {
    case 7:
      b |= uint64_t{p[6]} << 48;
      [[fallthrough]];
    case 6:
      b |= uint64_t{p[5]} << 40;
      [[fallthrough]];
    case 5:
      b |= uint64_t{p[4]} << 32;
      [[fallthrough]];
    case 4:
      b |= uint64_t{p[3]} << 24;
      [[fallthrough]];
    case 3:
      b |= uint64_t{p[2]} << 16;
      [[fallthrough]];
    case 2:
      b |= uint64_t{p[1]} << 8;
      [[fallthrough]];
    case 1:
      b |= uint64_t{p[0]};
      break;
    case 0:
      break;
  }
  s.v3 ^= b;
  for (int i = 0; i < C; ++i) s.Round();
  s.v0 ^= b;
  s.v2 ^= 0xff;
  for (int i = 0; i < D; ++i) s.Round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

}  // namespace

uint64_t SipHash13(uint64_t k0, uint64_t k1, const void* data, size_t len) {
  return Sip<1, 3>(k0, k1, data, len);
}
uint64_t SipHash24(uint64_t k0, uint64_t k1, const void* data, size_t len) {
  return Sip<2, 4>(k0, k1, data, len);
}

}  // namespace pf
