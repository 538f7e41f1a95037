// tests/fuzz/fuzz_tls.cc: libFuzzer target for the TLS + protocol path: a
// server SSL built by the listener's ServerContext (shared/tls), fed through
// memory BIOs, its plaintext handed to the RESP parser as a connection would.
// The first byte picks what the input is:
//   0: the client's first flight (a ClientHello, or garbage instead of one);
//   1: records injected after a real handshake (garbage records, alerts,
//      renegotiation and key-update attempts, oversized records);
//   2: application data a real client encrypts: the RESP parser's input.
// Invariants: nothing crashes or leaks; plaintext only after a handshake.
// The certificate is a fixed test pair (fuzz.test, never used elsewhere).
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "shared/tls/context.h"
#include "worker/resp/parser.h"

namespace {

constexpr char kCert[] = R"(-----BEGIN CERTIFICATE-----
MIIBfjCCASWgAwIBAgIUTikI2QLNRx2bBHXtvlB5Ej6GLUowCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJZnV6ei50ZXN0MCAXDTI2MTIwNjE0Mjg0NloYDzIxMjYxMTEy
MTQyODQ2WjAUMRIwEAYDVQQDDAlmdXp6LnRlc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAATpinvUqf9HA/AHOzdNE4wsAzx7Qp8ddiuX1IpTMqbSjGbbyfHdAK1F
lLyhjR4FX0h1D1NSvau/GlFQkF3fCgwzo1MwUTAdBgNVHQ4EFgQU23bbfDo4eaAJ
66GVl1/lWMRq6tIwHwYDVR0jBBgwFoAU23bbfDo4eaAJ66GVl1/lWMRq6tIwDwYD
VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiAjgHAmfXJvq/sRnVGGAiCk
MsDhULhZVrl4eehjcbI9ZgIgaPneOvQQQjYZsdLxh5jRQ7Q9PsxuNFP0L9XntJru
TkE=
-----END CERTIFICATE-----
)";
constexpr char kKey[] = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgN70xzpdDm2NtM9lD
oT2YQX+OoRCMR542I/XgboGxuIuhRANCAATpinvUqf9HA/AHOzdNE4wsAzx7Qp8d
diuX1IpTMqbSjGbbyfHdAK1FlLyhjR4FX0h1D1NSvau/GlFQkF3fCgwz
-----END PRIVATE KEY-----
)";

void Check(bool ok) {
  if (!ok) abort();
}

const pf::tls::ServerContext& Server() {
  static std::shared_ptr<const pf::tls::ServerContext> sc = [] {
    static pf::TlsTicketRing ring;
    pf::tls::RotateTicketKeys(&ring, 1, 0);
    pf::tls::UseTicketRing(&ring);
    pf::TlsConf t;
    t.enabled = true;
    t.certs.push_back(pf::TlsCertConf{"fuzz.pem", "fuzz.key", kCert, kKey});
    std::string err;
    auto c = pf::tls::ServerContext::Build(t, /*http=*/false, &err);
    if (!c) abort();
    return c;
  }();
  return *sc;
}

SSL_CTX* ClientCtx() {
  static SSL_CTX* ctx = [] {
    SSL_CTX* c = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
    return c;
  }();
  return ctx;
}

// Moves what one side wrote to the other side's read BIO.
void Pump(BIO* from, BIO* to) {
  char buf[4096];
  int n;
  while ((n = BIO_read(from, buf, sizeof buf)) > 0) BIO_write(to, buf, n);
}

// Server-side plaintext into the RESP parser, as Connection::TlsRead and
// the RESP session do; returns whether the server is still usable.
bool Drain(SSL* s, std::string* plain) {
  char buf[16384];
  for (;;) {
    const int n = SSL_read(s, buf, sizeof buf);
    if (n > 0) {
      plain->append(buf, static_cast<size_t>(n));
      continue;
    }
    const int e = SSL_get_error(s, n);
    ERR_clear_error();
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
  }
}

void Parse(const std::string& plain) {
  pf::RespParser p(pf::RespLimits{});
  std::string buf = plain;
  for (int i = 0; i < 10000; i++) {
    pf::RespParseResult r = p.Parse(buf);
    if (r.kind != pf::RespParseResult::kCommand) break;
    Check(r.consumed <= buf.size() && r.consumed > 0);
    buf.erase(0, r.consumed);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int mode = data[0] % 3;
  const char* in = reinterpret_cast<const char*>(data + 1);
  const int len = static_cast<int>(size - 1);

  SSL* s = Server().NewSsl();
  BIO* s_in = BIO_new(BIO_s_mem());
  BIO* s_out = BIO_new(BIO_s_mem());
  SSL_set_bio(s, s_in, s_out);
  std::string plain;

  if (mode == 0) {
    BIO_write(s_in, in, len);
    const int r = SSL_do_handshake(s);
    ERR_clear_error();
    if (r == 1) Drain(s, &plain);
    Check(r == 1 || plain.empty());
    SSL_free(s);
    return 0;
  }

  SSL* c = SSL_new(ClientCtx());
  BIO* c_in = BIO_new(BIO_s_mem());
  BIO* c_out = BIO_new(BIO_s_mem());
  SSL_set_bio(c, c_in, c_out);
  SSL_set_connect_state(c);
  bool done = false;
  for (int round = 0; round < 8 && !done; round++) {
    SSL_do_handshake(c);
    Pump(c_out, s_in);
    const int r = SSL_do_handshake(s);
    Pump(s_out, c_in);
    done = r == 1 && SSL_is_init_finished(c);
  }
  ERR_clear_error();
  Check(done);
  if (mode == 1) {
    BIO_write(s_in, in, len);
  } else {
    for (int off = 0; off < len;) {
      const int n = SSL_write(c, in + off, std::min(len - off, 16384));
      Check(n > 0);
      off += n;
    }
    Pump(c_out, s_in);
  }
  const bool alive = Drain(s, &plain);
  if (mode == 2) Check(alive && plain == std::string(in, static_cast<size_t>(len)));
  Parse(plain);
  ERR_clear_error();
  SSL_free(c);
  SSL_free(s);
  return 0;
}
