// worker/connection_tls.cc: TLS on a Connection (docs/tls.md): the first
// bytes (a handshake record, or a plain HTTP request answered in plain
// text), the non-blocking handshake and its deadline, record reads and
// writes, client-certificate authentication, and the failure counters.
// OpenSSL runs on the connection's own socket, so every protocol, limit
// and closing rule of connection.cc applies unchanged.
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "shared/config.h"
#include "shared/tls/context.h"
#include "shared/util/clock.h"
#include "worker/connection.h"
#include "worker/worker.h"

namespace pf {

namespace {
constexpr size_t kTlsChunk = 16 * 1024;  // one TLS record of plaintext, at most
}  // namespace

namespace {

// What nginx answers a plain HTTP request on an HTTPS port.
constexpr std::string_view kPlainHttpOnTls =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 63\r\n"
    "Connection: close\r\n\r\n400 Bad Request: The plain HTTP request was sent to HTTPS port\n";
static_assert(kPlainHttpOnTls.size() - kPlainHttpOnTls.find("\r\n\r\n") - 4 == 63);

// The failure bucket of the last OpenSSL error of a handshake.
uint32_t Classify(unsigned long e) {
  if (ERR_GET_LIB(e) != ERR_LIB_SSL) return kTlsFailOther;
  switch (ERR_GET_REASON(e)) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
    case SSL_R_WRONG_SSL_VERSION:
    case SSL_R_UNKNOWN_PROTOCOL:
      return kTlsFailVersion;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_KEY_SHARE:
      return kTlsFailCipher;
    case SSL_R_NO_APPLICATION_PROTOCOL:
    case SSL_R_CALLBACK_FAILED:
      return kTlsFailAlpn;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
      return kTlsFailEof;
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_NO_CERTIFICATES_RETURNED:
      return kTlsFailClientCert;
    default:
      return kTlsFailOther;
  }
}

const char* kTlsFailureNames[kTlsFailureCount] = {
    "plain_http", "not_tls", "timeout", "eof", "version", "cipher", "alpn", "client_cert", "other"};

}  // namespace

const char* TlsFailureName(uint32_t r) { return r < kTlsFailureCount ? kTlsFailureNames[r] : "?"; }

void Connection::TlsFailed(uint32_t reason, const std::string& why) {
  w_.counters->tls_failed[reason].Add(1);
  // Info, as nginx logs handshake errors; at most one line a second, so a
  // flood of bad handshakes cannot fill the log.
  static uint64_t last_ms = 0;
  const uint64_t now = MonoMs();
  if (now - last_ms >= 1000) {
    last_ms = now;
    spdlog::info("tls: {} on {}: handshake failed: {} ({})", peer_, listener_.name, why,
                 TlsFailureName(reason));
  }
  tls_ = Tls::kDead;
  Close(nullptr);
}

bool Connection::TlsDeadlinePassed(uint64_t now_ms) {
  if (!tls_pending() || now_ms < linger_until_ms_) return false;
  TlsFailed(kTlsFailTimeout, "no finished handshake within tls.handshake_timeout");
  return true;
}

void Connection::Handshake() {
  if (closing_ != Closing::kNo) return;
  if (tls_ == Tls::kSniff) {
    // A TLS connection starts with a handshake record (0x16). Anything else
    // is a client speaking plain text to a TLS port.
    unsigned char first[8];
    ssize_t n;
    do {
      n = recv(fd_.get(), first, sizeof first, MSG_PEEK);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n == 0) {
      // Connected and closed without a byte (a TCP health check, a port
      // probe): counted, not logged.
      w_.counters->tls_failed[kTlsFailEof].Add(1);
      tls_ = Tls::kDead;
      Close(nullptr);
      return;
    }
    if (n < 0) {
      TlsFailed(kTlsFailEof, std::strerror(errno));
      return;
    }
    if (first[0] != 0x16) {
      // An HTTP method: capital letters up to the space.
      bool method = true;
      for (ssize_t i = 0; i < n && first[i] != ' '; i++)
        method = method && first[i] >= 'A' && first[i] <= 'Z';
      if (listener_.protocol == Protocol::kHttp && method) {
        w_.counters->tls_failed[kTlsFailPlainHttp].Add(1);
        tls_ = Tls::kOff;  // this reply goes in plain text, then a lingering close
        Write(kPlainHttpOnTls);
        CloseAfterWrite();
        return;
      }
      TlsFailed(kTlsFailNotTls, "not a TLS handshake record");
      return;
    }
    ssl_ = listener_.tls.ctx->NewSsl();
    if (!ssl_ || SSL_set_fd(ssl_, fd_.get()) != 1) {
      TlsFailed(kTlsFailOther, "SSL_new: " + tls::LastError());
      return;
    }
    tls_ = Tls::kHandshake;
  }
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_);
  if (r != 1) {
    const int err = SSL_get_error(ssl_, r);
    if (err == SSL_ERROR_WANT_READ) {
      write_armed_ = false;
      SetReading(true);
      return;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
      ArmWrite();
      return;
    }
    const unsigned long e = ERR_peek_last_error();
    if (err == SSL_ERROR_SYSCALL && e == 0) {
      TlsFailed(kTlsFailEof, errno ? std::strerror(errno) : "closed during the handshake");
      return;
    }
    if (err == SSL_ERROR_ZERO_RETURN) {
      TlsFailed(kTlsFailEof, "closed during the handshake");
      return;
    }
    std::string why = tls::LastError();
    const long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) why += std::string(": ") + X509_verify_cert_error_string(verify);
    TlsFailed(Classify(e), why);
    return;
  }
  tls_ = Tls::kOpen;
  last_activity_ms_ = MonoMs();
  linger_until_ms_ = 0;
  ProcCounters* pc = w_.counters;
  pc->tls_handshakes.Add(1);
  if (SSL_session_reused(ssl_)) pc->tls_resumed.Add(1);
  (SSL_version(ssl_) == TLS1_3_VERSION ? pc->tls_v13 : pc->tls_v12).Add(1);
  tls_cert_auth_ = CertificateAuthenticates();
  write_armed_ = false;
  SetReading(true);
  if (!InSession([this] { session_->OnConnect(*this); })) return;
  Flush();
  // Bytes that came with the end of the handshake (a request sent at once).
  if (closing_ == Closing::kNo && reading_) ReadCb(this);
}

// tls.auth_by_certificate: the subject's common name of a certificate the
// CA verified, against the listed names ("*": any verified certificate).
bool Connection::CertificateAuthenticates() const {
  const auto& names = listener_.tls.auth_by_certificate;
  if (names.empty() || SSL_get_verify_result(ssl_) != X509_V_OK) return false;
  X509* peer = SSL_get0_peer_certificate(ssl_);
  if (!peer) return false;
  char cn[256];
  const int n =
      X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
  if (n < 0 || static_cast<size_t>(n) >= sizeof cn) return false;
  const std::string_view subject(cn, static_cast<size_t>(n));
  for (const std::string& want : names)
    if (want == "*" || want == subject) {
      SPDLOG_DEBUG("conn {} {}: authenticated by its certificate (CN={})", id_, peer_, subject);
      return true;
    }
  return false;
}

// One callback reads what OpenSSL and the socket have, up to a bound: with
// read-ahead on, OpenSSL may hold records the socket no longer shows as
// readable, so stopping at the bound schedules another callback instead.
ssize_t Connection::TlsRead() {
  static char scratch[kTlsChunk];
  constexpr size_t kMaxPerCall = 4 * kTlsChunk;
  size_t total = 0;
  while (total < kMaxPerCall) {
    ERR_clear_error();
    const int n = SSL_read(ssl_, scratch, sizeof scratch);
    if (n > 0) {
      if (evbuffer_add(in(), scratch, static_cast<size_t>(n)) != 0) {
        errno = ENOMEM;
        return -1;
      }
      total += static_cast<size_t>(n);
      // A short record with nothing more in OpenSSL's buffer: the socket
      // is most likely empty too, and the read event (level-triggered)
      // comes back if not; asking again would cost a read(2) that answers
      // EAGAIN on nearly every request.
      if (static_cast<size_t>(n) < sizeof scratch && !SSL_has_pending(ssl_)) break;
      continue;
    }
    const int err = SSL_get_error(ssl_, n);
    if (total > 0 && (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)) break;
    switch (err) {
      case SSL_ERROR_WANT_READ:
        errno = EAGAIN;
        return -1;
      case SSL_ERROR_WANT_WRITE:  // a TLS 1.3 key update's answer waits for the socket
        ArmWrite();
        errno = EAGAIN;
        return -1;
      case SSL_ERROR_ZERO_RETURN:  // close_notify
        return total > 0 ? static_cast<ssize_t>(total) : 0;
      case SSL_ERROR_SYSCALL:
        tls_ = Tls::kDead;
        if (total > 0) return static_cast<ssize_t>(total);
        if (errno == 0 || ERR_peek_last_error() == 0) return 0;  // EOF without close_notify
        return -1;
      default:
        tls_ = Tls::kDead;
        SPDLOG_DEBUG("conn {} {}: tls: {}", id_, peer_, tls::LastError());
        if (total > 0) return static_cast<ssize_t>(total);
        errno = EPROTO;
        return -1;
    }
  }
  if (total >= kMaxPerCall && SSL_has_pending(ssl_) && ev_flags_) event_active(&ev_, EV_READ, 0);
  return static_cast<ssize_t>(total);
}

// One TLS record (up to 16 KiB) per SSL_write: small chains (an HTTP head
// and its body) are gathered first so they leave in one record and one
// write(2). A retry after WANT_WRITE offers the same first bytes again, at
// least as many (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows the new address).
int Connection::TlsWrite() {
  static char gather[kTlsChunk];
  evbuffer_iovec v;
  if (evbuffer_peek(out_.get(), -1, nullptr, &v, 1) < 1) return 0;
  const size_t total = evbuffer_get_length(out_.get());
  const char* data = static_cast<const char*>(v.iov_base);
  size_t len = std::min<size_t>(v.iov_len, sizeof gather);
  if (len < sizeof gather && total > len) {
    len = std::min(total, sizeof gather);
    if (evbuffer_copyout(out_.get(), gather, len) != static_cast<ev_ssize_t>(len)) {
      Close("cannot read the output");
      return -1;
    }
    data = gather;
  }
  ERR_clear_error();
  const int n = SSL_write(ssl_, data, static_cast<int>(len));
  if (n > 0) {
    evbuffer_drain(out_.get(), static_cast<size_t>(n));
    last_activity_ms_ = MonoMs();
    return 1;
  }
  const int err = SSL_get_error(ssl_, n);
  if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) return 0;  // output stays
  tls_ = Tls::kDead;
  Close("socket error");
  return -1;
}

}  // namespace pf
