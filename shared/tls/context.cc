// shared/tls/context.cc: building a TLS listener's SSL_CTXs from PEM text the
// config loader read (context.h): certificates and chains, keys, client CAs,
// protocol versions, ciphers, groups, SNI, ALPN and OCSP stapling.
#include "shared/tls/context.h"

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstring>

namespace pf::tls {

// tickets.cc: encrypts and decrypts session tickets with the shared ring.
int TicketKeyCb(SSL* ssl, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cctx,
                EVP_MAC_CTX* hctx, int enc);

namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr MemBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// Loads a chain (leaf first) and its key into ctx.
bool LoadCert(SSL_CTX* ctx, const TlsCertConf& c, X509** leaf, std::string* err) {
  BioPtr b = MemBio(c.cert_pem);
  X509* x = b ? PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr) : nullptr;
  if (!x) {
    *err = c.cert + ": no PEM certificate in it (" + LastError() + ")";
    return false;
  }
  const int used = SSL_CTX_use_certificate(ctx, x);
  *leaf = x;
  X509_free(x);  // the context holds its own reference
  if (used != 1) {
    *err = c.cert + ": " + LastError();
    return false;
  }
  // The rest of the file is the chain, sent after the leaf.
  while (X509* ca = PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
      X509_free(ca);
      *err = c.cert + ": " + LastError();
      return false;
    }
  }
  ERR_clear_error();  // the end of the file reads as "no start line"
  BioPtr kb = MemBio(c.key_pem);
  EVP_PKEY* k = kb ? PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr) : nullptr;
  if (!k) {
    *err = c.key + ": no PEM private key in it, or one with a passphrase (" + LastError() + ")";
    return false;
  }
  const int kused = SSL_CTX_use_PrivateKey(ctx, k);
  EVP_PKEY_free(k);
  if (kused != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    *err = c.key + ": " + LastError() + " (does it belong to " + c.cert + "?)";
    return false;
  }
  return true;
}

bool LoadClientCa(SSL_CTX* ctx, const TlsConf& t, std::string* err) {
  BioPtr b = MemBio(t.ca_pem);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  STACK_OF(X509_NAME)* names = sk_X509_NAME_new_null();
  int n = 0;
  while (X509* x = b ? PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr) : nullptr) {
    n++;
    X509_STORE_add_cert(store, x);
    if (X509_NAME* nm = X509_NAME_dup(X509_get_subject_name(x))) sk_X509_NAME_push(names, nm);
    X509_free(x);
  }
  ERR_clear_error();
  if (n == 0) {
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    *err = t.ca + ": no PEM certificate in it";
    return false;
  }
  SSL_CTX_set_client_CA_list(ctx, names);  // takes the list
  int mode = SSL_VERIFY_PEER;
  if (t.client_auth == TlsConf::ClientAuth::kRequired) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(ctx, mode, nullptr);
  return true;
}

}  // namespace

std::string LastError() {
  const unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (!e) return "no OpenSSL error";
  const char* reason = ERR_reason_error_string(e);
  if (reason) return reason;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

std::shared_ptr<const ServerContext> ServerContext::Build(const TlsConf& t, bool http,
                                                          std::string* err) {
  std::shared_ptr<ServerContext> sc(new ServerContext());
  sc->http_ = http;
  sc->handshake_timeout_ms_ = t.handshake_timeout_ms;
  sc->ocsp_der_ = t.ocsp_der;
  if (!t.ocsp_der.empty()) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(t.ocsp_der.data());
    OCSP_RESPONSE* r = d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(t.ocsp_der.size()));
    if (!r) {
      *err = t.ocsp_stapling + ": not a DER OCSP response (" + LastError() + ")";
      return nullptr;
    }
    OCSP_RESPONSE_free(r);
  }
  for (const TlsCertConf& c : t.certs) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
      *err = "SSL_CTX_new: " + LastError();
      return nullptr;
    }
    sc->ctxs_.push_back(ctx);
    X509* leaf = nullptr;
    if (!LoadCert(ctx, c, &leaf, err)) return nullptr;
    sc->leaves_.push_back(leaf);
    if (SSL_CTX_set_min_proto_version(ctx, t.min_version) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, t.max_version) != 1) {
      *err = "protocols: " + LastError();
      return nullptr;
    }
    // TLS 1.2 ciphers only matter when TLS 1.2 is on (OpenSSL refuses a
    // list with nothing it knows).
    if (t.min_version <= TLS1_2_VERSION && SSL_CTX_set_cipher_list(ctx, t.ciphers.c_str()) != 1) {
      *err = "ciphers '" + t.ciphers + "': " + LastError();
      return nullptr;
    }
    if (SSL_CTX_set_ciphersuites(ctx, t.ciphersuites.c_str()) != 1) {
      *err = "ciphersuites '" + t.ciphersuites + "': " + LastError();
      return nullptr;
    }
    if (SSL_CTX_set1_groups_list(ctx, t.groups.c_str()) != 1) {
      *err = "groups '" + t.groups + "': " + LastError();
      return nullptr;
    }
    // A client that closes without close_notify (most do) is a plain EOF,
    // as in nginx: its replies may still be written.
    uint64_t opts = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF;
    if (t.prefer_server_ciphers) opts |= SSL_OP_CIPHER_SERVER_PREFERENCE;
    if (!t.session_tickets) opts |= SSL_OP_NO_TICKET;
    SSL_CTX_set_options(ctx, opts);
    // Writes take a buffer that may move between retries (the output
    // evbuffer), and one record at most per call.
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_RELEASE_BUFFERS);
    // Read as much as the socket has in one read(2), not a record header
    // and then its body (Connection::TlsRead reads until OpenSSL is empty).
    SSL_CTX_set_read_ahead(ctx, 1);
    static const unsigned char kSidCtx[] = "preforkd";
    SSL_CTX_set_session_id_context(ctx, kSidCtx, sizeof kSidCtx - 1);
    if (t.session_tickets) {
      // Stateless resumption with the shared keys; no per-worker cache
      // (another worker would not find the session).
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
      SSL_CTX_set_num_tickets(ctx, 1);
      SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, TicketKeyCb);
    } else {
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
      SSL_CTX_set_num_tickets(ctx, 0);
    }
    if (!t.ca_pem.empty() && t.client_auth != TlsConf::ClientAuth::kNone &&
        !LoadClientCa(ctx, t, err))
      return nullptr;
    SSL_CTX_set_alpn_select_cb(ctx, AlpnCb, sc.get());
    if (!sc->ocsp_der_.empty()) {
      SSL_CTX_set_tlsext_status_cb(ctx, OcspCb);
      SSL_CTX_set_tlsext_status_arg(ctx, sc.get());
    }
  }
  if (sc->ctxs_.size() > 1) {
    SSL_CTX_set_tlsext_servername_callback(sc->ctxs_[0], ServerNameCb);
    SSL_CTX_set_tlsext_servername_arg(sc->ctxs_[0], sc.get());
  }
  return sc;
}

ServerContext::~ServerContext() {
  for (SSL_CTX* c : ctxs_) SSL_CTX_free(c);
}

SSL* ServerContext::NewSsl() const {
  SSL* s = SSL_new(ctxs_[0]);
  if (s) SSL_set_accept_state(s);
  return s;
}

// SNI: the first extra certificate whose names cover the server name the
// client asked for; the default one otherwise (as nginx's default server).
int ServerContext::ServerNameCb(SSL* ssl, int*, void* arg) {
  const auto* sc = static_cast<const ServerContext*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!name || !*name) return SSL_TLSEXT_ERR_OK;
  for (size_t i = 1; i < sc->ctxs_.size(); i++) {
    if (X509_check_host(sc->leaves_[i], name, std::strlen(name), 0, nullptr) == 1) {
      SSL_set_SSL_CTX(ssl, sc->ctxs_[i]);
      break;
    }
  }
  return SSL_TLSEXT_ERR_OK;
}

// HTTP listeners speak http/1.1 only: a client that offers ALPN without it
// (h2 alone) gets the no_application_protocol alert rather than a
// connection it would misread. Other protocols take no ALPN.
int ServerContext::AlpnCb(SSL*, const unsigned char** out, unsigned char* outlen,
                          const unsigned char* in, unsigned int inlen, void* arg) {
  const auto* sc = static_cast<const ServerContext*>(arg);
  if (!sc->http_) return SSL_TLSEXT_ERR_NOACK;
  static const unsigned char kHttp11[] = "\x08http/1.1";
  unsigned char* sel = nullptr;
  if (SSL_select_next_proto(&sel, outlen, kHttp11, sizeof kHttp11 - 1, in, inlen) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

int ServerContext::OcspCb(SSL* ssl, void* arg) {
  const auto* sc = static_cast<const ServerContext*>(arg);
  if (SSL_get_tlsext_status_type(ssl) != TLSEXT_STATUSTYPE_ocsp) return SSL_TLSEXT_ERR_NOACK;
  auto* copy = static_cast<unsigned char*>(OPENSSL_malloc(sc->ocsp_der_.size()));
  if (!copy) return SSL_TLSEXT_ERR_NOACK;
  std::memcpy(copy, sc->ocsp_der_.data(), sc->ocsp_der_.size());
  SSL_set_tlsext_status_ocsp_resp(ssl, copy, static_cast<long>(sc->ocsp_der_.size()));
  return SSL_TLSEXT_ERR_OK;
}

void CheckTls(ConfigResult* r) {
  for (size_t i = 0; i < r->config.listeners.size(); i++) {
    ListenerConf& l = r->config.listeners[i];
    if (!l.tls.enabled) continue;
    // Files the loader could not read were reported already.
    bool read = !l.tls.certs.empty();
    for (const auto& c : l.tls.certs) read = read && !c.cert_pem.empty() && !c.key_pem.empty();
    if (!read) continue;
    std::string err;
    l.tls.ctx = ServerContext::Build(l.tls, l.protocol == Protocol::kHttp, &err);
    if (!l.tls.ctx) r->errors.push_back("listeners[" + std::to_string(i) + "].tls: " + err);
  }
}

uint64_t TicketRotateMs(const Config& c) {
  uint64_t ms = 0;
  for (const auto& l : c.listeners)
    if (l.tls.enabled && l.tls.session_tickets)
      ms = ms ? std::min<uint64_t>(ms, l.tls.ticket_rotate_ms) : l.tls.ticket_rotate_ms;
  return ms;
}

}  // namespace pf::tls
