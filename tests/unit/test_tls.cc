// tests/unit/test_tls.cc: the `tls:` block of a listener (parsing, file
// reading, the errors of each kind), building OpenSSL contexts from it
// (CheckTls: mismatched keys, bad cipher lists, OCSP files), and the
// session ticket key ring's rotation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "shared/config.h"
#include "shared/tls/context.h"

using ::testing::HasSubstr;

namespace pf {
namespace {

// A self-signed P-256 certificate for `cn` and its key, as PEM text.
struct Pair {
  std::string cert, key;
};
Pair MakePair(const char* cn) {
  EVP_PKEY* k = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, k);
  X509_NAME* n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1,
                             -1, 0);
  X509_set_issuer_name(x, n);
  X509_sign(x, k, EVP_sha256());
  Pair p;
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, x);
  char* data;
  long len = BIO_get_mem_data(b, &data);
  p.cert.assign(data, static_cast<size_t>(len));
  BIO_free(b);
  b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, k, nullptr, nullptr, 0, nullptr, nullptr);
  len = BIO_get_mem_data(b, &data);
  p.key.assign(data, static_cast<size_t>(len));
  BIO_free(b);
  X509_free(x);
  EVP_PKEY_free(k);
  return p;
}

class TlsConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pf-tls-unit-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const Pair a = MakePair("localhost"), b = MakePair("other.test");
    Write("a.pem", a.cert);
    Write("a.key", a.key);
    Write("b.pem", b.cert);
    Write("b.key", b.key);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
  }
  // One listener of `protocol` with `tls` as its flow-style tls block.
  ConfigResult Load(const std::string& tls, const std::string& protocol = "resp",
                    const std::string& more = "") {
    const std::string text = "listeners:\n  - {name: l, port: 7443, protocol: " + protocol +
                             (protocol == "http" ? ", root: /tmp" : "") + ", tls: " + tls + "}\n" +
                             more;
    ConfigResult r = ParseConfig(text, dir_ + "/preforkd.yaml");
    tls::CheckTls(&r);
    return r;
  }
  std::string OneError(const std::string& tls, const std::string& protocol = "resp",
                       const std::string& more = "") {
    ConfigResult r = Load(tls, protocol, more);
    EXPECT_EQ(r.errors.size(), 1u) << ::testing::PrintToString(r.errors);
    return r.errors.empty() ? "" : r.errors[0];
  }
  std::string dir_;
};

TEST_F(TlsConfig, BlockParsesWithSafeDefaultsAndReadsFilesBesideTheConfig) {
  ConfigResult r = Load("{cert: a.pem, key: a.key}");
  ASSERT_TRUE(r.ok()) << r.errors[0];
  const TlsConf& t = r.config.listeners[0].tls;
  EXPECT_TRUE(t.enabled);
  ASSERT_EQ(t.certs.size(), 1u);
  EXPECT_EQ(t.certs[0].cert, dir_ + "/a.pem");
  EXPECT_THAT(t.certs[0].cert_pem, HasSubstr("BEGIN CERTIFICATE"));
  EXPECT_EQ(t.min_version, TLS1_2_VERSION);
  EXPECT_EQ(t.max_version, TLS1_3_VERSION);
  EXPECT_TRUE(t.session_tickets);
  EXPECT_EQ(t.handshake_timeout_ms, 10'000u);
  EXPECT_EQ(t.ticket_rotate_ms, 3'600'000u);
  EXPECT_EQ(t.client_auth, TlsConf::ClientAuth::kNone);
  ASSERT_NE(t.ctx, nullptr);
  EXPECT_EQ(tls::TicketRotateMs(r.config), 3'600'000u);
}

TEST_F(TlsConfig, EveryOptionParses) {
  Write("ca.pem", MakePair("ca").cert);
  ConfigResult r = Load(
      "{cert: a.pem, key: a.key, certificates: [{cert: b.pem, key: b.key}], ca: ca.pem, "
      "client_auth: optional, protocols: [TLSv1.3], ciphersuites: TLS_AES_128_GCM_SHA256, "
      "groups: X25519, prefer_server_ciphers: true, session_tickets: false, ticket_rotate: 10m, "
      "handshake_timeout: 500ms, auth_by_certificate: [alice]}");
  ASSERT_TRUE(r.ok()) << r.errors[0];
  const TlsConf& t = r.config.listeners[0].tls;
  EXPECT_EQ(t.certs.size(), 2u);
  EXPECT_EQ(t.client_auth, TlsConf::ClientAuth::kOptional);
  EXPECT_EQ(t.min_version, TLS1_3_VERSION);
  EXPECT_FALSE(t.session_tickets);
  EXPECT_EQ(t.handshake_timeout_ms, 500u);
  EXPECT_EQ(t.auth_by_certificate, std::vector<std::string>{"alice"});
  EXPECT_NE(t.ctx, nullptr);
  EXPECT_EQ(tls::TicketRotateMs(r.config), 0u);  // tickets off: nothing to rotate
}

TEST_F(TlsConfig, MissingCertOrKeyIsAnError) {
  EXPECT_THAT(OneError("{cert: a.pem}"), HasSubstr("listeners[0].tls.key: missing"));
}

TEST_F(TlsConfig, UnreadableFileNamesIt) {
  const std::string e = OneError("{cert: nope.pem, key: a.key}");
  EXPECT_THAT(e, HasSubstr("listeners[0].tls.cert"));
  EXPECT_THAT(e, HasSubstr(dir_ + "/nope.pem"));
}

TEST_F(TlsConfig, KeyOfAnotherCertificateIsRefusedWithTheFileAndReason) {
  const std::string e = OneError("{cert: a.pem, key: b.key}");
  EXPECT_THAT(e, HasSubstr("listeners[0].tls: " + dir_ + "/b.key"));
  EXPECT_THAT(e, HasSubstr("key values mismatch"));
}

TEST_F(TlsConfig, NotPemIsRefused) {
  Write("junk.pem", "hello\n");
  EXPECT_THAT(OneError("{cert: junk.pem, key: a.key}"), HasSubstr("no PEM certificate"));
  EXPECT_THAT(OneError("{cert: a.pem, key: junk.pem}"), HasSubstr("no PEM private key"));
}

TEST_F(TlsConfig, OldProtocolsAreNotOffered) {
  EXPECT_THAT(OneError("{cert: a.pem, key: a.key, protocols: [TLSv1.1]}"),
              HasSubstr("'TLSv1.1' is not a protocol this build offers"));
}

TEST_F(TlsConfig, BadCipherListIsRefused) {
  EXPECT_THAT(OneError("{cert: a.pem, key: a.key, ciphers: NOPE-CIPHER}"),
              HasSubstr("ciphers 'NOPE-CIPHER'"));
  EXPECT_THAT(OneError("{cert: a.pem, key: a.key, groups: nope}"), HasSubstr("groups 'nope'"));
}

TEST_F(TlsConfig, ClientAuthNeedsACa) {
  EXPECT_THAT(OneError("{cert: a.pem, key: a.key, client_auth: required}"),
              HasSubstr("listeners[0].tls.ca: missing"));
  EXPECT_THAT(OneError("{cert: a.pem, key: a.key, client_auth: sometimes}"),
              HasSubstr("'sometimes' is not a choice"));
}

TEST_F(TlsConfig, AuthByCertificateOnlyWhereThereIsAuthAndClientCertificates) {
  Write("ca.pem", MakePair("ca").cert);
  EXPECT_THAT(OneError("{cert: a.pem, key: a.key, auth_by_certificate: ['*']}"),
              HasSubstr("set while client_auth is none"));
  EXPECT_THAT(OneError("{cert: a.pem, key: a.key, ca: ca.pem, client_auth: required, "
                       "auth_by_certificate: ['*']}",
                       "echo"),
              HasSubstr("only on resp and kv-json"));
}

TEST_F(TlsConfig, APortIsPlainOrTlsOnEveryAddress) {
  const std::string e = OneError("{cert: a.pem, key: a.key}", "resp",
                                 "  - {name: p, address: 127.0.0.2, port: 7443, protocol: resp}\n");
  EXPECT_THAT(e, HasSubstr("port 7443 is plain here and TLS on listeners[0]"));
}

TEST_F(TlsConfig, OcspFileMustBeAResponse) {
  Write("ocsp.der", "not der");
  EXPECT_THAT(OneError("{cert: a.pem, key: a.key, ocsp_stapling: ocsp.der}"),
              HasSubstr("not a DER OCSP response"));
}

TEST(TlsTickets, RingRotatesAndKeepsThePreviousKey) {
  TlsTicketRing ring;
  tls::RotateTicketKeys(&ring, 1000, 0);  // the first key, whatever the period
  ASSERT_EQ(ring.ready.load(), 1u);
  const uint32_t first = ring.current.load();
  uint8_t name0[16];
  std::memcpy(name0, ring.keys[first].name, 16);
  tls::RotateTicketKeys(&ring, 1500, 60'000);  // too early: nothing changes
  EXPECT_EQ(ring.current.load(), first);
  EXPECT_EQ(ring.rotations.load(), 0u);
  tls::RotateTicketKeys(&ring, 61'000, 60'000);
  const uint32_t second = ring.current.load();
  EXPECT_NE(second, first);
  EXPECT_EQ(ring.rotations.load(), 1u);
  EXPECT_NE(std::memcmp(ring.keys[second].name, name0, 16), 0);
  // The previous key is still whole (a ticket made with it still decrypts).
  EXPECT_EQ(std::memcmp(ring.keys[first].name, name0, 16), 0);
  EXPECT_EQ(ring.keys[first].seq.load() % 2, 0u);
  EXPECT_EQ(ring.keys[second].seq.load() % 2, 0u);
}

}  // namespace
}  // namespace pf
