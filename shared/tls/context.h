// shared/tls/context.h: a TLS listener's OpenSSL server contexts, built by
// the master from the config (certificates, keys and CAs parsed before it
// drops privileges and forks) and used by every worker of that generation.
// Also the session ticket key ring in the shared segment (tickets.cc).
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shared/config.h"
#include "shared/shm.h"

namespace pf::tls {

class ServerContext {
 public:
  // Parses certificates, keys, the CA and the OCSP response and sets the
  // protocol options; nullptr with `*err` ("file: reason") when something
  // is unreadable, mismatched or refused by OpenSSL. `http`: ALPN selects
  // http/1.1 and refuses a client that offers only other protocols (h2).
  static std::shared_ptr<const ServerContext> Build(const TlsConf& conf, bool http,
                                                    std::string* err);
  ~ServerContext();
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  // A new server-side SSL on this listener's default certificate (SNI may
  // switch it during the handshake); nullptr when OpenSSL cannot make one.
  SSL* NewSsl() const;
  uint32_t handshake_timeout_ms() const { return handshake_timeout_ms_; }
  bool http() const { return http_; }

 private:
  ServerContext() = default;
  static int ServerNameCb(SSL* ssl, int* alert, void* arg);
  static int AlpnCb(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                    const unsigned char* in, unsigned int inlen, void* arg);
  static int OcspCb(SSL* ssl, void* arg);

  std::vector<SSL_CTX*> ctxs_;  // [0] the default certificate, then the SNI ones
  std::vector<X509*> leaves_;   // each context's leaf certificate (not owned)
  std::string ocsp_der_;
  uint32_t handshake_timeout_ms_ = 10'000;
  bool http_ = false;
};

// Builds the context of every TLS listener of r->config (errors are added to
// r->errors as "listeners[i].tls: file: reason"), so `-t` and a reload
// check the files the same way.
void CheckTls(ConfigResult* r);

// The shortest ticket_rotate of the TLS listeners with session tickets on
// (0: none): the master rotates the shared key ring that often.
uint64_t TicketRotateMs(const Config& c);

// Session tickets (tickets.cc). Master: writes the first key (at start) or
// a new one when `period_ms` passed since the last (on its timer).
void RotateTicketKeys(TlsTicketRing* ring, uint64_t now_ms, uint64_t period_ms);
// Worker, at start: where the ring lives (every ServerContext uses it).
void UseTicketRing(TlsTicketRing* ring);

// "TLSv1.3 TLS_AES_128_GCM_SHA256"-style text of the last OpenSSL error
// queue entry (and clears the queue): the reason a handshake failed.
std::string LastError();

}  // namespace pf::tls
