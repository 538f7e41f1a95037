// shared/util/hash.h: SipHash, the keyed hash the KV engine uses to pick a key's
// shard and bucket, so clients cannot flood one bucket (the seed is secret).
#pragma once

#include <cstddef>
#include <cstdint>

namespace pf {

// SipHash-c-d (Aumasson & Bernstein) with the 128-bit key (k0, k1).
uint64_t SipHash13(uint64_t k0, uint64_t k1, const void* data, size_t len);  // used by the engine
uint64_t SipHash24(uint64_t k0, uint64_t k1, const void* data, size_t len);  // reference vectors

}  // namespace pf
