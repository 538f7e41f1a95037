// shared/tls/tickets.cc: session ticket keys shared by every worker through
// the segment (TlsTicketRing in shared/shm.h): the master writes and rotates
// them, workers encrypt with the current key and accept the previous one,
// so a ticket issued by one worker resumes on any other.
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/random.h>

#include <cstring>

#include "shared/tls/context.h"

namespace pf::tls {

namespace {

TlsTicketRing* g_ring = nullptr;

struct KeyCopy {
  uint8_t name[16], aes[32], hmac[32];
};

// A consistent copy of slot i (false: it is being written, or never was).
bool ReadKey(const TlsTicketKey& k, KeyCopy* out) {
  for (int tries = 0; tries < 4; tries++) {
    const uint64_t s1 = k.seq.load(std::memory_order_acquire);
    if (s1 == 0 || (s1 & 1)) continue;
    std::memcpy(out->name, k.name, sizeof out->name);
    std::memcpy(out->aes, k.aes, sizeof out->aes);
    std::memcpy(out->hmac, k.hmac, sizeof out->hmac);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (k.seq.load(std::memory_order_relaxed) == s1) return true;
  }
  return false;
}

bool Random(uint8_t* p, size_t n) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = getrandom(p + got, n - got, 0);
    if (r <= 0) return RAND_bytes(p + got, static_cast<int>(n - got)) == 1;
    got += static_cast<size_t>(r);
  }
  return true;
}

bool SetKeys(const KeyCopy& k, const unsigned char* iv, EVP_CIPHER_CTX* cctx, EVP_MAC_CTX* hctx,
             int enc) {
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, const_cast<uint8_t*>(k.hmac),
                                        sizeof k.hmac),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
      OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(hctx, params) != 1) return false;
  return enc ? EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv) == 1
             : EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv) == 1;
}

}  // namespace

void UseTicketRing(TlsTicketRing* ring) { g_ring = ring; }

void RotateTicketKeys(TlsTicketRing* ring, uint64_t now_ms, uint64_t period_ms) {
  const bool first = ring->ready.load(std::memory_order_acquire) == 0;
  if (!first && (period_ms == 0 || now_ms - ring->rotated_ms.load() < period_ms)) return;
  const uint32_t next = first ? 0 : (ring->current.load() + 1) % 3;
  TlsTicketKey& k = ring->keys[next];
  uint8_t fresh[16 + 32 + 32];
  if (!Random(fresh, sizeof fresh)) return;  // keep the old key rather than a weak one
  // Only the master writes, so seq is even here; odd while the key changes.
  const uint64_t s = k.seq.load(std::memory_order_relaxed);
  k.seq.store(s + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  std::memcpy(k.name, fresh, 16);
  std::memcpy(k.aes, fresh + 16, 32);
  std::memcpy(k.hmac, fresh + 48, 32);
  k.seq.store(s + 2, std::memory_order_release);
  ring->current.store(next, std::memory_order_release);
  ring->rotated_ms.store(now_ms);
  if (first)
    ring->ready.store(1, std::memory_order_release);
  else
    ring->rotations.fetch_add(1);
}

// OpenSSL's ticket callback: 1 = use these keys, 2 = valid but issue a
// fresh ticket (the previous key), 0 = unknown key (full handshake), -1 = error.
int TicketKeyCb(SSL*, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cctx,
                EVP_MAC_CTX* hctx, int enc) {
  if (!g_ring || g_ring->ready.load(std::memory_order_acquire) == 0) return enc ? -1 : 0;
  const uint32_t cur = g_ring->current.load(std::memory_order_acquire);
  KeyCopy k;
  if (enc) {
    if (!ReadKey(g_ring->keys[cur], &k)) return -1;
    if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1) return -1;
    std::memcpy(name, k.name, sizeof k.name);
    return SetKeys(k, iv, cctx, hctx, 1) ? 1 : -1;
  }
  for (const uint32_t slot : {cur, (cur + 2) % 3}) {
    if (!ReadKey(g_ring->keys[slot], &k) || std::memcmp(name, k.name, sizeof k.name) != 0) continue;
    if (!SetKeys(k, iv, cctx, hctx, 0)) return -1;
    return slot == cur ? 1 : 2;
  }
  return 0;
}

}  // namespace pf::tls
