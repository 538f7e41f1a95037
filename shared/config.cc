// shared/config.cc: reads conf/preforkd.yaml with yaml-cpp into pf::Config and
// reports every problem as "file:line:col: key: what is wrong, expected ...".
// Unknown keys, wrong types and out-of-range values are errors, never ignored.
#include "shared/config.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netdb.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "shared/bus.h"
#include "shared/kv/kv.h"
#include "shared/shm.h"
#include "shared/util/content_coding.h"
#include "shared/util/strings.h"

namespace pf {

const char* ProtocolName(Protocol p) {
  switch (p) {
    case Protocol::kEcho:
      return "echo";
    case Protocol::kResp:
      return "resp";
    case Protocol::kKvJson:
      return "kv-json";
    case Protocol::kHttp:
      return "http";
    case Protocol::kChat:
      return "chat";
  }
  return "?";
}

const char* FsyncPolicyName(FsyncPolicy p) {
  switch (p) {
    case FsyncPolicy::kAlways:
      return "always";
    case FsyncPolicy::kEverySec:
      return "everysec";
    case FsyncPolicy::kNo:
      return "no";
  }
  return "?";
}

const char* BalanceName(Balance b) {
  switch (b) {
    case Balance::kRoundRobin:
      return "round_robin";
    case Balance::kLeastConn:
      return "least_conn";
    case Balance::kRandomTwo:
      return "random_two";
    case Balance::kHash:
      return "hash";
  }
  return "?";
}

namespace {

// Protocols this build serves. A listener naming another one is a config
// error, so a config never starts half of what it asks for.
const std::map<std::string, Protocol>& SupportedProtocols() {
  static const std::map<std::string, Protocol> m = {
      {"echo", Protocol::kEcho},      {"http", Protocol::kHttp}, {"resp", Protocol::kResp},
      {"kv-json", Protocol::kKvJson}, {"chat", Protocol::kChat},
  };
  return m;
}

std::string Expected(const std::map<std::string, Protocol>& m) {
  std::string s;
  for (const auto& [k, v] : m) s += (s.empty() ? "" : ", ") + k;
  return s;
}

class Checker {
 public:
  Checker(std::string file, std::vector<std::string>* errors)
      : file_(std::move(file)), errors_(errors) {}

  void Error(const YAML::Node& at, const std::string& key, const std::string& what) {
    const YAML::Mark m = at.Mark();
    std::ostringstream o;
    o << file_ << ':' << (m.line + 1) << ':' << (m.column + 1) << ": " << key << ": " << what;
    errors_->push_back(o.str());
  }

  bool Scalar(const YAML::Node& n, const std::string& key, const char* expected) {
    if (n.IsScalar()) return true;
    Error(n, key,
          std::string(n.IsMap()        ? "a mapping"
                      : n.IsSequence() ? "a list"
                                       : "empty") +
              " is the wrong type, expected " + expected);
    return false;
  }

  // Integer (decimal digits only) in [lo, hi].
  template <typename T>
  void Uint(const YAML::Node& n, const std::string& key, uint64_t lo, uint64_t hi, T* out) {
    if (!Scalar(n, key, "an integer")) return;
    const std::string& s = n.Scalar();
    uint64_t v = 0;
    if (!ParseU64(s, &v)) {
      Error(n, key, "'" + s + "' is not an integer, expected an integer in " + Range(lo, hi));
      return;
    }
    if (v < lo || v > hi) {
      Error(n, key, s + " is out of range, expected " + Range(lo, hi));
      return;
    }
    *out = static_cast<T>(v);
  }

  // Byte size: 1234, 64k, 64kb, 8m, 1g (binary multiples).
  template <typename T>
  void Size(const YAML::Node& n, const std::string& key, uint64_t lo, uint64_t hi, T* out) {
    if (!Scalar(n, key, "a size such as 4096, 64k, 8m or 1g")) return;
    const std::string& s = n.Scalar();
    size_t i = 0;
    while (i < s.size() && isdigit(static_cast<unsigned char>(s[i]))) i++;
    uint64_t v = 0, mult = 1;
    std::string unit = s.substr(i);
    for (auto& c : unit) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
    if (unit == "" || unit == "b")
      mult = 1;
    else if (unit == "k" || unit == "kb")
      mult = 1ull << 10;
    else if (unit == "m" || unit == "mb")
      mult = 1ull << 20;
    else if (unit == "g" || unit == "gb")
      mult = 1ull << 30;
    else
      mult = 0;
    if (i == 0 || mult == 0 || !ParseU64(s.substr(0, i), &v) || v > UINT64_MAX / mult) {
      Error(n, key, "'" + s + "' is not a size, expected a size such as 4096, 64k, 8m or 1g");
      return;
    }
    v *= mult;
    if (v < lo || v > hi) {
      Error(n, key, s + " is out of range, expected " + SizeText(lo) + ".." + SizeText(hi));
      return;
    }
    *out = static_cast<T>(v);
  }

  // Duration: 500ms, 10s, 5m, 1h; a bare number is seconds.
  void Millis(const YAML::Node& n, const std::string& key, uint64_t lo, uint64_t hi,
              uint32_t* out) {
    if (!Scalar(n, key, "a duration such as 500ms, 10s or 5m")) return;
    const std::string& s = n.Scalar();
    size_t i = 0;
    while (i < s.size() && isdigit(static_cast<unsigned char>(s[i]))) i++;
    const std::string unit = s.substr(i);
    uint64_t v = 0, mult = 0;
    if (unit == "ms")
      mult = 1;
    else if (unit == "" || unit == "s")
      mult = 1000;
    else if (unit == "m")
      mult = 60'000;
    else if (unit == "h")
      mult = 3'600'000;
    if (i == 0 || mult == 0 || !ParseU64(s.substr(0, i), &v) || v > UINT32_MAX / mult) {
      Error(n, key, "'" + s + "' is not a duration, expected a duration such as 500ms, 10s or 5m");
      return;
    }
    v *= mult;
    if (v < lo || v > hi) {
      Error(n, key,
            s + " is out of range, expected " + std::to_string(lo) + "ms.." + std::to_string(hi) +
                "ms");
      return;
    }
    *out = static_cast<uint32_t>(v);
  }

  // Requests per time: 100r/s, 600r/m, or a bare number (a second).
  void Rate(const YAML::Node& n, const std::string& key, double* out) {
    if (!Scalar(n, key, "a rate such as 100r/s or 600r/m")) return;
    const std::string& s = n.Scalar();
    size_t i = 0;
    while (i < s.size() && isdigit(static_cast<unsigned char>(s[i]))) i++;
    const std::string unit = s.substr(i);
    uint64_t v = 0;
    double per = 0;
    if (unit.empty() || unit == "r/s")
      per = 1;
    else if (unit == "r/m")
      per = 60;
    if (i == 0 || per == 0 || !ParseU64(s.substr(0, i), &v) || v == 0 || v > 10'000'000) {
      Error(n, key, "'" + s + "' is not a rate, expected e.g. 100r/s or 600r/m (1..10000000)");
      return;
    }
    *out = static_cast<double>(v) / per;
  }

  void String(const YAML::Node& n, const std::string& key, std::string* out) {
    if (!Scalar(n, key, "a string")) return;
    *out = n.Scalar();
  }

  void Bool(const YAML::Node& n, const std::string& key, bool* out) {
    if (!Scalar(n, key, "true or false")) return;
    const std::string& s = n.Scalar();
    if (s == "true" || s == "yes" || s == "on")
      *out = true;
    else if (s == "false" || s == "no" || s == "off")
      *out = false;
    else
      Error(n, key, "'" + s + "' is not a boolean, expected true or false");
  }

  // A list of scalars.
  void Strings(const YAML::Node& n, const std::string& key, std::vector<std::string>* out) {
    out->clear();
    if (!n.IsSequence()) {
      Error(n, key, "wrong type, expected a list");
      return;
    }
    for (size_t i = 0; i < n.size(); i++) {
      std::string s;
      const std::string k = key + "[" + std::to_string(i) + "]";
      if (!Scalar(n[i], k, "a string")) continue;
      out->push_back(n[i].Scalar());
    }
  }

  // A list of networks: 10.0.0.0/8, ::1/128, or single addresses.
  void Networks(const YAML::Node& n, const std::string& key, std::vector<Cidr>* out) {
    std::vector<std::string> items;
    Strings(n, key, &items);
    out->clear();
    for (size_t i = 0; i < items.size(); i++) {
      Cidr net;
      if (Cidr::Parse(items[i], &net))
        out->push_back(net);
      else
        Error(
            n[i], key + "[" + std::to_string(i) + "]",
            "'" + items[i] + "' is not a network, expected e.g. 10.0.0.0/8, ::1/128 or 192.0.2.7");
    }
  }

  // Walks a mapping: every key must be known (and appear once).
  using Handler = std::function<void(const YAML::Node& value, const std::string& key)>;
  void Map(const YAML::Node& n, const std::string& prefix,
           const std::map<std::string, Handler>& handlers) {
    if (!n.IsMap()) {
      Error(n, prefix.empty() ? "(top level)" : prefix,
            std::string(n.IsSequence() ? "a list"
                        : n.IsNull()   ? "an empty value"
                                       : "a scalar") +
                " is the wrong type, expected a mapping");
      return;
    }
    std::set<std::string> seen;
    for (auto it = n.begin(); it != n.end(); ++it) {
      const std::string k = it->first.IsScalar() ? it->first.Scalar() : "?";
      const std::string full = prefix.empty() ? k : prefix + "." + k;
      auto h = handlers.find(k);
      if (h == handlers.end()) {
        std::string known;
        for (const auto& [name, fn] : handlers) known += (known.empty() ? "" : ", ") + name;
        Error(it->first, full, "unknown key, expected one of " + known);
        continue;
      }
      if (!seen.insert(k).second) {
        Error(it->first, full, "duplicate key, expected each key once");
        continue;
      }
      h->second(it->second, full);
    }
  }

  const std::string& file() const { return file_; }

 private:
  static std::string Range(uint64_t lo, uint64_t hi) {
    return std::to_string(lo) + ".." + std::to_string(hi);
  }
  static std::string SizeText(uint64_t v) {
    if (v && v % (1ull << 30) == 0) return std::to_string(v >> 30) + "g";
    if (v && v % (1ull << 20) == 0) return std::to_string(v >> 20) + "m";
    if (v && v % (1ull << 10) == 0) return std::to_string(v >> 10) + "k";
    return std::to_string(v);
  }

  std::string file_;
  std::vector<std::string>* errors_;
};

std::string Resolve(const std::string& base_dir, const std::string& p) {
  if (p.empty() || p[0] == '/') return p;
  return (std::filesystem::path(base_dir) / p).lexically_normal().string();
}

// A whole file of at most `max` bytes.
bool ReadSmallFile(const std::string& path, size_t max, std::string* out, std::string* why) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *why = std::strerror(errno);
    return false;
  }
  out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad()) {
    *why = "read error";
    return false;
  }
  if (out->size() > max) {
    *why = "over " + std::to_string(max) + " bytes";
    return false;
  }
  return true;
}

// The files of a `tls:` block, read now (by the master: workers never
// open them). The certificates and keys are parsed by CheckTls.
void ReadTlsFiles(Checker& c, const YAML::Node& n, const std::string& key, const std::string& dir,
                  TlsConf* t) {
  auto read = [&](const YAML::Node& at, const std::string& k, std::string* path, std::string* text,
                  const char* what) {
    *path = Resolve(dir, *path);
    std::string why;
    if (!ReadSmallFile(*path, 4 << 20, text, &why))
      c.Error(at, k, "'" + *path + "': " + why + ", expected a readable " + what);
  };
  for (size_t i = 0; i < t->certs.size(); i++) {
    TlsCertConf& cc = t->certs[i];
    const YAML::Node at = i == 0 ? n : n["certificates"][i - 1];
    const std::string k = i == 0 ? key : key + ".certificates[" + std::to_string(i - 1) + "]";
    if (!cc.cert.empty())
      read(at["cert"], k + ".cert", &cc.cert, &cc.cert_pem, "certificate file (PEM)");
    if (!cc.key.empty()) read(at["key"], k + ".key", &cc.key, &cc.key_pem, "private key (PEM)");
  }
  if (!t->ca.empty()) read(n["ca"], key + ".ca", &t->ca, &t->ca_pem, "CA file (PEM)");
  if (!t->ocsp_stapling.empty())
    read(n["ocsp_stapling"], key + ".ocsp_stapling", &t->ocsp_stapling, &t->ocsp_der,
         "OCSP response (DER)");
}

uint32_t OnlineCpus() {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<uint32_t>(n) : 1;
}

// Without server_names an http listener answers for the loopback names and
// its own address; without strict_host the Host check covers static files
// too when the listener is on a loopback address (a page in the local
// browser is the attacker there).
void DefaultHostRules(ListenerConf* l, bool have_names, bool have_strict) {
  IpAddr a;
  const bool parsed = IpAddr::Parse(l->address, &a);
  if (!have_strict) l->strict_host = parsed && a.loopback();
  if (have_names) return;
  l->server_names = {"localhost", "127.0.0.1", "[::1]"};
  if (parsed && !a.loopback()) {
    bool any = true;
    for (uint8_t b : a.bytes) any = any && b == 0;
    if (!any)
      l->server_names.push_back(a.family == AF_INET6 ? "[" + a.ToString() + "]" : a.ToString());
  }
}

int TlsVersionNumber(const std::string& s) {
  if (s == "TLSv1.2") return 0x0303;
  if (s == "TLSv1.3") return 0x0304;
  return 0;
}

// A listener's `tls:` block; the files are read later (ReadTlsFiles), once
// relative paths can be resolved.
void ParseTls(Checker& c, const YAML::Node& v, const std::string& k, TlsConf* t) {
  t->enabled = true;
  TlsCertConf main;
  bool have_cert = false, have_key = false;
  c.Map(
      v, k,
      {
          {"cert",
           [&](const YAML::Node& x, const std::string& kk) {
             have_cert = true;
             c.String(x, kk, &main.cert);
           }},
          {"key",
           [&](const YAML::Node& x, const std::string& kk) {
             have_key = true;
             c.String(x, kk, &main.key);
           }},
          {"certificates",
           [&](const YAML::Node& x, const std::string& kk) {
             if (!x.IsSequence()) {
               c.Error(x, kk, "not a list, expected a list of {cert: FILE, key: FILE}");
               return;
             }
             for (size_t i = 0; i < x.size(); i++) {
               TlsCertConf more;
               const std::string ik = kk + "[" + std::to_string(i) + "]";
               bool hc = false, hk = false;
               c.Map(x[i], ik,
                     {
                         {"cert",
                          [&](const YAML::Node& y, const std::string& yk) {
                            hc = true;
                            c.String(y, yk, &more.cert);
                          }},
                         {"key",
                          [&](const YAML::Node& y, const std::string& yk) {
                            hk = true;
                            c.String(y, yk, &more.key);
                          }},
                     });
               if (!x[i].IsMap()) continue;
               if (!hc) c.Error(x[i], ik + ".cert", "missing, expected a certificate file");
               if (!hk) c.Error(x[i], ik + ".key", "missing, expected a private key file");
               t->certs.push_back(std::move(more));
             }
           }},
          {"ca", [&](const YAML::Node& x, const std::string& kk) { c.String(x, kk, &t->ca); }},
          {"client_auth",
           [&](const YAML::Node& x, const std::string& kk) {
             std::string s;
             c.String(x, kk, &s);
             if (s == "none")
               t->client_auth = TlsConf::ClientAuth::kNone;
             else if (s == "optional")
               t->client_auth = TlsConf::ClientAuth::kOptional;
             else if (s == "required")
               t->client_auth = TlsConf::ClientAuth::kRequired;
             else if (x.IsScalar())
               c.Error(x, kk, "'" + s + "' is not a choice, expected none, optional or required");
           }},
          {"protocols",
           [&](const YAML::Node& x, const std::string& kk) {
             std::vector<std::string> ps;
             c.Strings(x, kk, &ps);
             int lo = 0, hi = 0;
             for (size_t i = 0; i < ps.size(); i++) {
               const int n = TlsVersionNumber(ps[i]);
               if (!n) {
                 c.Error(x[i], kk + "[" + std::to_string(i) + "]",
                         "'" + ps[i] +
                             "' is not a protocol this build offers, expected TLSv1.2 "
                             "or TLSv1.3");
                 continue;
               }
               lo = lo ? std::min(lo, n) : n;
               hi = std::max(hi, n);
             }
             if (x.IsSequence() && ps.empty())
               c.Error(x, kk, "empty, expected TLSv1.2, TLSv1.3 or both");
             if (lo) {
               t->min_version = lo;
               t->max_version = hi;
             }
           }},
          {"ciphers",
           [&](const YAML::Node& x, const std::string& kk) { c.String(x, kk, &t->ciphers); }},
          {"ciphersuites",
           [&](const YAML::Node& x, const std::string& kk) { c.String(x, kk, &t->ciphersuites); }},
          {"groups",
           [&](const YAML::Node& x, const std::string& kk) { c.String(x, kk, &t->groups); }},
          {"auth_by_certificate",
           [&](const YAML::Node& x, const std::string& kk) {
             c.Strings(x, kk, &t->auth_by_certificate);
           }},
          {"prefer_server_ciphers",
           [&](const YAML::Node& x, const std::string& kk) {
             c.Bool(x, kk, &t->prefer_server_ciphers);
           }},
          {"session_tickets",
           [&](const YAML::Node& x, const std::string& kk) { c.Bool(x, kk, &t->session_tickets); }},
          {"ticket_rotate",
           [&](const YAML::Node& x, const std::string& kk) {
             c.Millis(x, kk, 60'000, 7 * 24 * 3'600'000ull, &t->ticket_rotate_ms);
           }},
          {"handshake_timeout",
           [&](const YAML::Node& x, const std::string& kk) {
             c.Millis(x, kk, 100, 300'000, &t->handshake_timeout_ms);
           }},
          {"ocsp_stapling",
           [&](const YAML::Node& x, const std::string& kk) { c.String(x, kk, &t->ocsp_stapling); }},
      });
  if (!v.IsMap()) return;
  if (!have_cert) c.Error(v, k + ".cert", "missing, expected a certificate file (PEM)");
  if (!have_key) c.Error(v, k + ".key", "missing, expected a private key file (PEM)");
  t->certs.insert(t->certs.begin(), std::move(main));
  if (!t->auth_by_certificate.empty() && t->client_auth == TlsConf::ClientAuth::kNone)
    c.Error(v, k + ".auth_by_certificate",
            "set while client_auth is none, expected client_auth: required (or optional)");
  if (t->client_auth != TlsConf::ClientAuth::kNone && t->ca.empty())
    c.Error(v, k + ".ca",
            "missing, expected the CA file that signs client certificates "
            "(client_auth is on)");
}

// A listener's `compression:` block, or `compression: off` (both codings off).
void ParseCompression(Checker& c, const YAML::Node& v, const std::string& k, CompressionConf* z) {
  if (v.IsScalar()) {
    bool on = true;
    c.Bool(v, k, &on);  // `true` keeps the defaults
    if (!on) z->gzip = z->brotli = false;
    return;
  }
  c.Map(
      v, k,
      {
          {"gzip", [&](const YAML::Node& x, const std::string& kk) { c.Bool(x, kk, &z->gzip); }},
          {"brotli",
           [&](const YAML::Node& x, const std::string& kk) { c.Bool(x, kk, &z->brotli); }},
          {"gzip_level", [&](const YAML::Node& x,
                             const std::string& kk) { c.Uint(x, kk, 1, 12, &z->gzip_level); }},
          {"brotli_level", [&](const YAML::Node& x,
                               const std::string& kk) { c.Uint(x, kk, 0, 11, &z->brotli_level); }},
          {"min_length",
           [&](const YAML::Node& x, const std::string& kk) {
             c.Size(x, kk, 0, 1ull << 30, &z->min_length);
           }},
          {"max_length",
           [&](const YAML::Node& x, const std::string& kk) {
             c.Size(x, kk, 1ull << 10, 1ull << 30, &z->max_length);
           }},
          {"types",
           [&](const YAML::Node& x, const std::string& kk) {
             c.Strings(x, kk, &z->types);
             for (size_t i = 0; i < z->types.size(); i++) {
               std::string& t = z->types[i];
               for (auto& ch : t) ch = AsciiLower(ch);
               const size_t slash = t.find('/');
               const bool shaped = slash != std::string::npos && slash > 0 &&
                                   slash + 1 < t.size() &&
                                   t.find('/', slash + 1) == std::string::npos &&
                                   t.find_first_of(" \t;,\"") == std::string::npos &&
                                   (t.find('*') == std::string::npos || t.ends_with("/*"));
               const std::string ik = kk + "[" + std::to_string(i) + "]";
               if (!shaped)
                 c.Error(x[i], ik,
                         "'" + t +
                             "' is not a media type, expected e.g. text/html or text/* "
                             "(no parameters)");
               else if (http::AlreadyCompressedType(t))
                 c.Error(x[i], ik,
                         "'" + t +
                             "' is compressed already (images, audio, video, archives, fonts); "
                             "compressing it again only costs time, expected a text type");
             }
           }},
          {"static_precompressed",
           [&](const YAML::Node& x, const std::string& kk) {
             c.Bool(x, kk, &z->static_precompressed);
           }},
          {"cache_bytes",
           [&](const YAML::Node& x, const std::string& kk) {
             c.Size(x, kk, 0, 1ull << 30, &z->cache_bytes);
           }},
      });
  if (v.IsMap() && z->min_length > z->max_length)
    c.Error(v["min_length"] ? v["min_length"] : v, k + ".min_length",
            std::to_string(z->min_length) + " is above max_length " +
                std::to_string(z->max_length) + ", expected min_length <= max_length");
}

// "host:port" or "[v6]:port" → an address to connect to. A name is looked up
// once, here (the master reads the config; a reload looks it up again).
bool ResolveUpstream(const std::string& text, UpstreamServerConf* s, std::string* why) {
  std::string host, port;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      *why = "expected [IPv6]:port";
      return false;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      *why = "expected host:port";
      return false;
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  uint64_t p = 0;
  if (!ParseU64(port, &p) || p == 0 || p > 65535) {
    *why = "'" + port + "' is not a port 1..65535";
    return false;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_UNSPEC;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || !res) {
    *why = "cannot resolve '" + host + "': " + gai_strerror(rc);
    return false;
  }
  std::memcpy(&s->sa, res->ai_addr, res->ai_addrlen);
  s->sa_len = static_cast<socklen_t>(res->ai_addrlen);
  freeaddrinfo(res);
  return true;
}

void ParseUpstream(Checker& c, const YAML::Node& n, const std::string& key, UpstreamConf* u) {
  bool have_name = false, have_servers = false;
  c.Map(n, key,
        {
            {"name",
             [&](const YAML::Node& v, const std::string& k) {
               have_name = true;
               c.String(v, k, &u->name);
             }},
            {"servers",
             [&](const YAML::Node& v, const std::string& k) {
               have_servers = true;
               if (!v.IsSequence() || v.size() == 0) {
                 c.Error(v, k, "expected a list of servers (address: host:port, ...)");
                 return;
               }
               for (size_t i = 0; i < v.size(); i++) {
                 const std::string sk = k + "[" + std::to_string(i) + "]";
                 UpstreamServerConf s;
                 bool have_address = false;
                 c.Map(v[i], sk,
                       {
                           {"address",
                            [&](const YAML::Node& x, const std::string& kk) {
                              have_address = true;
                              c.String(x, kk, &s.address);
                              std::string why;
                              if (x.IsScalar() && !ResolveUpstream(s.address, &s, &why))
                                c.Error(x, kk, "'" + s.address + "': " + why);
                            }},
                           {"weight",
                            [&](const YAML::Node& x, const std::string& kk) {
                              c.Uint(x, kk, 1, 1000, &s.weight);
                            }},
                           {"max_fails",
                            [&](const YAML::Node& x, const std::string& kk) {
                              c.Uint(x, kk, 0, 1000, &s.max_fails);
                            }},
                           {"fail_timeout",
                            [&](const YAML::Node& x, const std::string& kk) {
                              c.Millis(x, kk, 100, 3'600'000, &s.fail_timeout_ms);
                            }},
                           {"backup", [&](const YAML::Node& x,
                                          const std::string& kk) { c.Bool(x, kk, &s.backup); }},
                       });
                 if (v[i].IsMap() && !have_address)
                   c.Error(v[i], sk + ".address", "missing, expected host:port");
                 u->servers.push_back(std::move(s));
               }
             }},
            {"balance",
             [&](const YAML::Node& v, const std::string& k) {
               std::string b;
               c.String(v, k, &b);
               if (b == "round_robin")
                 u->balance = Balance::kRoundRobin;
               else if (b == "least_conn")
                 u->balance = Balance::kLeastConn;
               else if (b == "random_two")
                 u->balance = Balance::kRandomTwo;
               else if (b == "hash")
                 u->balance = Balance::kHash;
               else if (v.IsScalar())
                 c.Error(v, k,
                         "'" + b +
                             "' is not a method, expected round_robin, least_conn, "
                             "random_two or hash");
             }},
            {"hash_key",
             [&](const YAML::Node& v, const std::string& k) {
               c.String(v, k, &u->hash_key);
               if (v.IsScalar() && u->hash_key != "uri" && u->hash_key != "client")
                 c.Error(v, k, "'" + u->hash_key + "' is not a key, expected uri or client");
             }},
            {"keepalive", [&](const YAML::Node& v,
                              const std::string& k) { c.Uint(v, k, 0, 10'000, &u->keepalive); }},
            {"keepalive_timeout",
             [&](const YAML::Node& v, const std::string& k) {
               c.Millis(v, k, 100, 3'600'000, &u->keepalive_timeout_ms);
             }},
            {"connect_timeout",
             [&](const YAML::Node& v, const std::string& k) {
               c.Millis(v, k, 10, 600'000, &u->connect_timeout_ms);
             }},
            {"send_timeout",
             [&](const YAML::Node& v, const std::string& k) {
               c.Millis(v, k, 10, 3'600'000, &u->send_timeout_ms);
             }},
            {"read_timeout",
             [&](const YAML::Node& v, const std::string& k) {
               c.Millis(v, k, 10, 3'600'000, &u->read_timeout_ms);
             }},
            {"tries",
             [&](const YAML::Node& v, const std::string& k) { c.Uint(v, k, 0, 100, &u->tries); }},
        });
  if (!n.IsMap()) return;
  if (!have_name) c.Error(n, key + ".name", "missing, expected the upstream's name");
  if (!have_servers) c.Error(n, key + ".servers", "missing, expected a list of servers");
}

// A header name or value the proxy may send: a token, and a value without
// control characters (no header injection through the config).
bool HeaderToken(std::string_view s) {
  if (s.empty()) return false;
  for (char ch : s)
    if (!(isalnum(static_cast<unsigned char>(ch)) || std::strchr("!#$%&'*+-.^_`|~", ch)))
      return false;
  return true;
}
bool HeaderValue(std::string_view s) {
  for (char ch : s)
    if ((static_cast<unsigned char>(ch) < 0x20 && ch != '\t') || ch == 0x7f) return false;
  return true;
}

void ParseRoutes(Checker& c, const YAML::Node& n, const std::string& key,
                 std::vector<RouteConf>* routes) {
  if (!n.IsSequence()) {
    c.Error(n, key, "wrong type, expected a list of routes ({prefix: /api/, proxy: NAME})");
    return;
  }
  for (size_t i = 0; i < n.size(); i++) {
    const std::string rk = key + "[" + std::to_string(i) + "]";
    RouteConf r;
    bool have_path = false, have_proxy = false;
    auto path = [&](bool exact) {
      return [&, exact](const YAML::Node& v, const std::string& k) {
        if (have_path) {
          c.Error(v, k, "a route has one of prefix and exact, expected only one");
          return;
        }
        have_path = true;
        r.exact = exact;
        c.String(v, k, &r.path);
        if (v.IsScalar() && (r.path.empty() || r.path[0] != '/'))
          c.Error(v, k, "'" + r.path + "' does not start with /, expected a path such as /api/");
      };
    };
    c.Map(n[i], rk,
          {
              {"prefix", path(false)},
              {"exact", path(true)},
              {"proxy",
               [&](const YAML::Node& v, const std::string& k) {
                 have_proxy = true;
                 c.String(v, k, &r.proxy);
               }},
              {"strip_prefix",
               [&](const YAML::Node& v, const std::string& k) { c.Bool(v, k, &r.strip_prefix); }},
              {"host",
               [&](const YAML::Node& v, const std::string& k) {
                 c.String(v, k, &r.host);
                 if (v.IsScalar() && (r.host.empty() || !HeaderValue(r.host) ||
                                      r.host.find_first_of(" /") != std::string::npos))
                   c.Error(v, k, "'" + r.host + "' is not a host name, expected e.g. app.internal");
               }},
              {"set_headers",
               [&](const YAML::Node& v, const std::string& k) {
                 if (!v.IsMap()) {
                   c.Error(v, k, "wrong type, expected a mapping of header: value");
                   return;
                 }
                 for (auto it = v.begin(); it != v.end(); ++it) {
                   const std::string name = it->first.IsScalar() ? it->first.Scalar() : "";
                   const std::string hk = k + "." + name;
                   std::string value;
                   c.String(it->second, hk, &value);
                   std::string lower = name;
                   for (char& ch : lower)
                     ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
                   if (!HeaderToken(name) || !HeaderValue(value))
                     c.Error(it->second, hk,
                             "not a header name and value, expected e.g. X-App: web");
                   else if (lower == "host" || lower == "content-length" ||
                            lower == "transfer-encoding" || lower == "connection")
                     c.Error(it->first, hk,
                             "the proxy sets " + name +
                                 " itself, expected another header (host: "
                                 "for Host)");
                   else
                     r.set_headers.emplace_back(lower, value);
                 }
               }},
          });
    if (!n[i].IsMap()) continue;
    if (!have_path)
      c.Error(n[i], rk + ".prefix", "missing, expected prefix: /path/ or exact: /path");
    if (!have_proxy) c.Error(n[i], rk + ".proxy", "missing, expected the name of an upstream");
    routes->push_back(std::move(r));
  }
}

void ParseListener(Checker& c, const YAML::Node& n, const std::string& key, ListenerConf* l,
                   bool* have_names, bool* have_strict, bool* have_compression) {
  bool have_port = false, have_name = false, have_proto = false;
  c.Map(
      n, key,
      {
          {"name",
           [&](const YAML::Node& v, const std::string& k) {
             c.String(v, k, &l->name);
             have_name = true;
           }},
          {"address",
           [&](const YAML::Node& v, const std::string& k) {
             c.String(v, k, &l->address);
             in6_addr a6;
             in_addr a4;
             if (v.IsScalar() && inet_pton(AF_INET, l->address.c_str(), &a4) != 1 &&
                 inet_pton(AF_INET6, l->address.c_str(), &a6) != 1)
               c.Error(v, k,
                       "'" + l->address + "' is not an IP address, expected e.g. 127.0.0.1 or ::1");
           }},
          {"port",
           [&](const YAML::Node& v, const std::string& k) {
             c.Uint(v, k, 1, 65535, &l->port);
             have_port = true;
           }},
          {"protocol",
           [&](const YAML::Node& v, const std::string& k) {
             have_proto = true;
             std::string s;
             c.String(v, k, &s);
             if (!v.IsScalar()) return;
             auto it = SupportedProtocols().find(s);
             if (it == SupportedProtocols().end())
               c.Error(v, k,
                       "'" + s + "' is not a protocol this build serves, expected one of " +
                           Expected(SupportedProtocols()));
             else
               l->protocol = it->second;
           }},
          {"backlog",
           [&](const YAML::Node& v, const std::string& k) { c.Uint(v, k, 1, 65535, &l->backlog); }},
          {"root", [&](const YAML::Node& v, const std::string& k) { c.String(v, k, &l->root); }},
          {"index", [&](const YAML::Node& v, const std::string& k) { c.String(v, k, &l->index); }},
          {"autoindex",
           [&](const YAML::Node& v, const std::string& k) { c.Bool(v, k, &l->autoindex); }},
          {"ops_allow",
           [&](const YAML::Node& v, const std::string& k) {
             std::string s;
             c.String(v, k, &s);
             if (s == "loopback")
               l->ops_allow_all = false;
             else if (s == "all")
               l->ops_allow_all = true;
             else if (v.IsScalar())
               c.Error(v, k, "'" + s + "' is not a choice, expected loopback or all");
           }},
          {"server_names",
           [&](const YAML::Node& v, const std::string& k) {
             *have_names = true;
             c.Strings(v, k, &l->server_names);
             for (size_t i = 0; i < l->server_names.size(); i++) {
               std::string& name = l->server_names[i];
               for (auto& ch : name) ch = AsciiLower(ch);
               const bool bracketed = name.size() > 2 && name.front() == '[' && name.back() == ']';
               if (name.empty() || (name.find(':') != std::string::npos && !bracketed))
                 c.Error(v[i], k + "[" + std::to_string(i) + "]",
                         "'" + name +
                             "' is not a host name, expected e.g. example.com, 10.0.0.1, "
                             "[::1] or \"*\" (no port: any port matches)");
             }
           }},
          {"strict_host",
           [&](const YAML::Node& v, const std::string& k) {
             *have_strict = true;
             c.Bool(v, k, &l->strict_host);
           }},
          {"auth_basic",
           [&](const YAML::Node& v, const std::string& k) {
             auto& a = l->auth_basic;
             bool have_file = false;
             c.Map(v, k,
                   {
                       {"realm", [&](const YAML::Node& x,
                                     const std::string& kk) { c.String(x, kk, &a.realm); }},
                       {"htpasswd",
                        [&](const YAML::Node& x, const std::string& kk) {
                          have_file = true;
                          c.String(x, kk, &a.htpasswd);
                        }},
                       {"paths",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Strings(x, kk, &a.paths);
                          // Matched against the request's decoded, normalised
                          // path: a prefix must be written that way too.
                          for (size_t i = 0; i < a.paths.size(); i++) {
                            const std::string& p = a.paths[i];
                            const bool normal = !p.empty() && p[0] == '/' &&
                                                p.find('%') == std::string::npos &&
                                                p.find("//") == std::string::npos &&
                                                p.find("/./") == std::string::npos &&
                                                p.find("/../") == std::string::npos &&
                                                !p.ends_with("/.") && !p.ends_with("/..");
                            if (!normal)
                              c.Error(x[i], kk + "[" + std::to_string(i) + "]",
                                      "'" + p +
                                          "' is not a plain path, expected e.g. /kv or /private/ "
                                          "(no %, //, . or .. segments)");
                          }
                        }},
                   });
             if (!v.IsMap()) return;
             if (!have_file) c.Error(v, k + ".htpasswd", "missing, expected an htpasswd file");
             if (a.paths.empty()) a.paths.push_back("/");
             for (char ch : a.realm)
               if (ch == '"' || ch == '\\' || static_cast<unsigned char>(ch) < 0x20)
                 return c.Error(v, k + ".realm",
                                "has a quote, backslash or control character, expected plain text");
           }},
          {"tls", [&](const YAML::Node& v, const std::string& k) { ParseTls(c, v, k, &l->tls); }},
          {"compression",
           [&](const YAML::Node& v, const std::string& k) {
             *have_compression = true;
             ParseCompression(c, v, k, &l->compression);
           }},
          {"limit_req",
           [&](const YAML::Node& v, const std::string& k) {
             auto& r = l->limit_req;
             c.Map(v, k,
                   {
                       {"rate", [&](const YAML::Node& x,
                                    const std::string& kk) { c.Rate(x, kk, &r.rate); }},
                       {"burst",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Uint(x, kk, 0, 1'000'000, &r.burst);
                        }},
                       {"nodelay",
                        [&](const YAML::Node& x, const std::string& kk) {
                          bool nodelay = true;
                          c.Bool(x, kk, &nodelay);
                          if (x.IsScalar() && !nodelay)
                            c.Error(x, kk,
                                    "false is not supported: requests over the rate are refused "
                                    "at once (nginx's nodelay), never queued; expected true");
                        }},
                   });
             if (v.IsMap() && !v["rate"])
               c.Error(v, k + ".rate", "missing, expected a rate such as 100r/s or 600r/m");
           }},
          {"limit_conn",
           [&](const YAML::Node& v, const std::string& k) {
             c.Uint(v, k, 0, 10'000'000, &l->limit_conn);
           }},
          {"routes",
           [&](const YAML::Node& v, const std::string& k) { ParseRoutes(c, v, k, &l->routes); }},
      });
  if (!n.IsMap()) return;
  if (!have_name) c.Error(n, key + ".name", "missing, expected a listener name");
  if (!have_port) c.Error(n, key + ".port", "missing, expected a port 1..65535");
  if (!have_proto)
    c.Error(n, key + ".protocol", "missing, expected one of " + Expected(SupportedProtocols()));
}

// Every value kv.max_value_bytes allows must be storable and overwritable:
// each shard's arena has to hold kv::Store::kLargestItemCopies copies of the
// largest item (see kv.h), or such values fail with OOM forever.
void CheckShardRoom(Checker& c, const Config& cfg, const YAML::Node& at,
                    const YAML::Node& large_at) {
  const KvConf& kv = cfg.kv;
  // With a large-object area, values of 16 KiB and more live there: it must
  // hold two copies of the largest (an overwrite keeps the old one until the
  // new one is committed).
  if (kv.large_memory && kv.large_memory < (64 << 10)) {
    c.Error(large_at, "kv.large_memory",
            std::to_string(kv.large_memory) + " is too small to hold a value, expected 0 (none) " +
                "or at least 64k");
    return;
  }
  const uint64_t large_need = kv::Store::MinLargeBytesFor(kv.max_value_bytes);
  if (kv.large_memory && kv.large_memory < large_need) {
    auto mib = [](uint64_t v) { return std::to_string((v + (1ull << 20) - 1) >> 20) + "m"; };
    c.Error(large_at, "kv.large_memory",
            std::to_string(kv.large_memory) + " bytes cannot hold " +
                std::to_string(kv::Store::kLargestLargeCopies) + " values of kv.max_value_bytes " +
                std::to_string(kv.max_value_bytes) + " (so the largest can be overwritten); " +
                "expected kv.large_memory >= " + mib(large_need) +
                " or a smaller kv.max_value_bytes");
    return;
  }
  const uint64_t kv_off = Segment::KvOffset(bus::Bus::RegionBytes(bus::SizesFrom(cfg.pubsub)));
  const uint64_t need = kv_off + kv::Store::MinSizeFor(kv.shards, kv.max_key_bytes,
                                                       kv.max_value_bytes, kv.large_memory);
  if (cfg.shm_size >= need) return;
  if (kv.large_memory) {  // the shards hold small values only: the area is what does not fit
    c.Error(large_at, "kv.large_memory",
            "shared_memory " + std::to_string(cfg.shm_size) + " cannot hold the pub/sub bus, " +
                std::to_string(kv.shards) + " kv.shards and a large-object area of " +
                std::to_string(kv.large_memory) + " bytes (" + std::to_string(need) +
                " needed); expected a larger shared_memory or a smaller kv.large_memory");
    return;
  }
  auto mib = [](uint64_t v) {  // rounded up, so a suggested size is enough
    return std::to_string((v + (1ull << 20) - 1) >> 20) + "m";
  };
  const uint64_t per_shard =
      (cfg.shm_size - std::min(cfg.shm_size, kv_off)) / std::max<uint32_t>(cfg.kv.shards, 1);
  std::ostringstream o;
  o << cfg.kv.max_value_bytes << " bytes needs "
    << kv::Store::MinShardBytesFor(cfg.kv.max_key_bytes, cfg.kv.max_value_bytes)
    << " bytes per shard (" << kv::Store::kLargestItemCopies
    << " copies of the largest item, so it can be overwritten), but shared_memory " << cfg.shm_size
    << " / kv.shards " << cfg.kv.shards << " gives " << per_shard
    << "; expected shared_memory >= " << mib(need) << ", fewer kv.shards, or a smaller "
    << "kv.max_value_bytes";
  c.Error(at, "kv.max_value_bytes", o.str());
}

void ParsePubSub(Checker& c, const YAML::Node& n, const std::string& key, PubSubConf* p) {
  c.Map(
      n, key,
      {
          {"ring_slots", [&](const YAML::Node& x,
                             const std::string& k) { c.Uint(x, k, 16, 1u << 20, &p->ring_slots); }},
          {"max_message_bytes",
           [&](const YAML::Node& x, const std::string& k) {
             c.Size(x, k, 64, 16ull << 20, &p->max_message_bytes);
           }},
          {"max_channel_bytes",
           [&](const YAML::Node& x, const std::string& k) {
             c.Size(x, k, 8, 4096, &p->max_channel_bytes);
           }},
          {"channel_table_size",
           [&](const YAML::Node& x, const std::string& k) {
             c.Uint(x, k, 16, 1u << 22, &p->channel_table_size);
           }},
          {"max_channels_per_client",
           [&](const YAML::Node& x, const std::string& k) {
             c.Uint(x, k, 1, 1'000'000, &p->max_channels_per_client);
           }},
          {"max_patterns_per_client",
           [&](const YAML::Node& x, const std::string& k) {
             c.Uint(x, k, 0, 1'000'000, &p->max_patterns_per_client);
           }},
          {"max_pattern_bytes",
           [&](const YAML::Node& x, const std::string& k) {
             c.Size(x, k, 1, 4096, &p->max_pattern_bytes);
           }},
          {"max_channels_per_address",
           [&](const YAML::Node& x, const std::string& k) {
             c.Uint(x, k, 0, 1u << 22, &p->max_channels_per_address);
           }},
          {"publish_rate_per_client",
           [&](const YAML::Node& x, const std::string& k) {
             c.Uint(x, k, 1, 100'000'000, &p->publish_rate_per_client);
           }},
          {"output_hard_limit",
           [&](const YAML::Node& x, const std::string& k) {
             c.Size(x, k, 4096, 64ull << 30, &p->output_hard_limit);
           }},
          {"output_soft_limit",
           [&](const YAML::Node& x, const std::string& k) {
             c.Size(x, k, 4096, 64ull << 30, &p->output_soft_limit);
           }},
          {"output_soft_seconds",
           [&](const YAML::Node& x, const std::string& k) {
             c.Uint(x, k, 0, 86'400, &p->output_soft_seconds);
           }},
          {"reserved_prefix",
           [&](const YAML::Node& x, const std::string& k) { c.String(x, k, &p->reserved_prefix); }},
          {"admin_token",
           [&](const YAML::Node& x, const std::string& k) {
             c.String(x, k, &p->admin_token);
             if (x.IsScalar() && !p->admin_token.empty() && p->admin_token.size() < 8)
               c.Error(x, k,
                       "too short (" + std::to_string(p->admin_token.size()) +
                           " bytes), expected at least 8 bytes or empty (no admins)");
           }},
          {"chat_history", [&](const YAML::Node& x,
                               const std::string& k) { c.Uint(x, k, 0, 1000, &p->chat_history); }},
      });
  if (!n.IsMap()) return;
  if (p->output_soft_limit > p->output_hard_limit)
    c.Error(n, key + ".output_soft_limit",
            std::to_string(p->output_soft_limit) + " is above output_hard_limit (" +
                std::to_string(p->output_hard_limit) + "), expected at most the hard limit");
  if (p->reserved_prefix.size() > p->max_channel_bytes)
    c.Error(n, key + ".reserved_prefix",
            "longer than max_channel_bytes, expected a shorter prefix");
}

}  // namespace

ConfigResult ParseConfig(const std::string& text, const std::string& path) {
  ConfigResult r;
  Config& cfg = r.config;
  std::error_code ec;
  cfg.path = std::filesystem::absolute(path, ec).lexically_normal().string();
  const std::string dir = std::filesystem::path(cfg.path).parent_path().string();
  Checker c(path, &r.errors);

  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    std::ostringstream o;
    o << path << ':' << (e.mark.line + 1) << ':' << (e.mark.column + 1) << ": (yaml): " << e.msg
      << ", expected valid YAML";
    r.errors.push_back(o.str());
    return r;
  }

  std::string workers = "auto";
  std::string pidfile = "preforkd.pid";
  YAML::Node workers_node, listeners_node, shm_node, max_value_node, large_node, persistence_node;
  YAML::Node chroot_node, upstreams_node;
  bool have_shm = false, have_max_value = false, have_large = false, have_local = false;
  bool have_listeners = false;
  c.Map(
      root, "",
      {
          {"workers",
           [&](const YAML::Node& v, const std::string& k) {
             workers_node = v;
             if (!c.Scalar(v, k, "auto or an integer 1..256")) return;
             if (v.Scalar() == "auto") return;
             c.Uint(v, k, 1, 256, &cfg.workers);
           }},
          {"pidfile", [&](const YAML::Node& v, const std::string& k) { c.String(v, k, &pidfile); }},
          {"user", [&](const YAML::Node& v, const std::string& k) { c.String(v, k, &cfg.user); }},
          {"group", [&](const YAML::Node& v, const std::string& k) { c.String(v, k, &cfg.group); }},
          {"chroot",
           [&](const YAML::Node& v, const std::string& k) {
             chroot_node = v;
             c.String(v, k, &cfg.chroot);
           }},
          {"protected_mode",
           [&](const YAML::Node& v, const std::string& k) { c.Bool(v, k, &cfg.protected_mode); }},
          {"local_networks",
           [&](const YAML::Node& v, const std::string& k) {
             have_local = true;
             c.Networks(v, k, &cfg.local_networks);
           }},
          {"trusted_proxies",
           [&](const YAML::Node& v, const std::string& k) {
             c.Networks(v, k, &cfg.trusted_proxies);
           }},
          {"shared_memory",
           [&](const YAML::Node& v, const std::string& k) {
             shm_node = v;
             have_shm = true;
             c.Size(v, k, 1ull << 20, 64ull << 30, &cfg.shm_size);
           }},
          {"listeners",
           [&](const YAML::Node& v, const std::string& k) {
             listeners_node = v;
             have_listeners = true;
             if (!v.IsSequence()) {
               c.Error(v, k, "wrong type, expected a list of listeners");
               return;
             }
             for (size_t i = 0; i < v.size(); i++) {
               ListenerConf l;
               bool have_names = false, have_strict = false, have_compression = false;
               ParseListener(c, v[i], k + "[" + std::to_string(i) + "]", &l, &have_names,
                             &have_strict, &have_compression);
               if (have_compression && l.protocol != Protocol::kHttp)
                 c.Error(v[i]["compression"], k + "[" + std::to_string(i) + "].compression",
                         "only http listeners compress, expected it on an http listener");
               DefaultHostRules(&l, have_names, have_strict);
               cfg.listeners.push_back(std::move(l));
             }
           }},
          {"upstreams",
           [&](const YAML::Node& v, const std::string& k) {
             upstreams_node = v;
             if (!v.IsSequence()) {
               c.Error(v, k, "wrong type, expected a list of upstreams ({name, servers})");
               return;
             }
             for (size_t i = 0; i < v.size(); i++) {
               UpstreamConf u;
               ParseUpstream(c, v[i], k + "[" + std::to_string(i) + "]", &u);
               cfg.upstreams.push_back(std::move(u));
             }
           }},
          {"timeouts",
           [&](const YAML::Node& v, const std::string& k) {
             auto& t = cfg.timeouts;
             c.Map(v, k,
                   {
                       {"idle",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Millis(x, kk, 0, 86'400'000, &t.idle_ms);
                        }},
                       {"drain",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Millis(x, kk, 0, 3'600'000, &t.drain_ms);
                        }},
                       {"header",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Millis(x, kk, 100, 3'600'000, &t.header_ms);
                        }},
                       {"keepalive",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Millis(x, kk, 0, 3'600'000, &t.keepalive_ms);
                        }},
                       {"lingering_time",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Millis(x, kk, 0, 3'600'000, &t.lingering_ms);
                        }},
                       {"lingering_timeout",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Millis(x, kk, 1, 3'600'000, &t.lingering_timeout_ms);
                        }},
                       {"chat_idle",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Millis(x, kk, 0, 7 * 86'400'000u, &t.chat_idle_ms);
                        }},
                       {"worker_stall",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Millis(x, kk, 0, 3'600'000, &t.worker_stall_ms);
                          // Workers stamp their heartbeat once a sweep (up to 1 s apart).
                          if (t.worker_stall_ms != 0 && t.worker_stall_ms < 2000)
                            c.Error(x, kk,
                                    std::to_string(t.worker_stall_ms) +
                                        " ms is below the 2 s minimum, expected 0 (off) or "
                                        "at least 2s");
                        }},
                   });
           }},
          {"limits",
           [&](const YAML::Node& v, const std::string& k) {
             auto& l = cfg.limits;
             c.Map(v, k,
                   {
                       {"max_connections_per_worker",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Uint(x, kk, 1, 1'000'000, &l.max_connections_per_worker);
                        }},
                       {"max_connections",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Uint(x, kk, 1, 10'000'000, &l.max_connections);
                        }},
                       {"max_line_bytes",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Size(x, kk, 64, 64ull << 20, &l.max_line_bytes);
                        }},
                       {"max_request_bytes",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Size(x, kk, 1024, 1ull << 30, &l.max_request_bytes);
                        }},
                       {"max_bulk_bytes",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Size(x, kk, 64, 512ull << 20, &l.max_bulk_bytes);
                        }},
                       {"max_multibulk_len",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Uint(x, kk, 1, 1ull << 31, &l.max_multibulk_len);
                        }},
                       {"output_high_water",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Size(x, kk, 4096, 1ull << 30, &l.output_high_water);
                        }},
                       {"keepalive_requests",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Uint(x, kk, 1, 100'000'000, &l.keepalive_requests);
                        }},
                       {"max_reply_bytes",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Size(x, kk, 1ull << 20, 4ull << 30, &l.max_reply_bytes);
                        }},
                       {"client_output_hard",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Size(x, kk, 0, 64ull << 30, &l.client_output_hard);
                        }},
                       {"client_output_soft",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Size(x, kk, 0, 64ull << 30, &l.client_output_soft);
                        }},
                       {"client_output_soft_seconds",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Uint(x, kk, 0, 86'400, &l.client_output_soft_seconds);
                        }},
                       {"clients_memory",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Size(x, kk, 0, 1ull << 40, &l.clients_memory);
                        }},
                       {"max_bad_lines",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Uint(x, kk, 1, 1'000'000, &l.max_bad_lines);
                        }},
                       {"auth_failures_per_minute",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Uint(x, kk, 1, 1'000'000, &l.auth_failures_per_minute);
                        }},
                   });
           }},
          {"logging",
           [&](const YAML::Node& v, const std::string& k) {
             auto& g = cfg.logging;
             c.Map(
                 v, k,
                 {
                     {"error_log", [&](const YAML::Node& x,
                                       const std::string& kk) { c.String(x, kk, &g.error_log); }},
                     {"access_log", [&](const YAML::Node& x,
                                        const std::string& kk) { c.String(x, kk, &g.access_log); }},
                     {"level",
                      [&](const YAML::Node& x, const std::string& kk) {
                        c.String(x, kk, &g.level);
                        static const std::set<std::string> levels = {
                            "trace", "debug", "info", "warn", "error", "critical", "off"};
                        if (x.IsScalar() && !levels.count(g.level))
                          c.Error(x, kk,
                                  "'" + g.level +
                                      "' is not a level, expected one of trace, debug, info, warn, "
                                      "error, critical, off");
                      }},
                 });
           }},
          {"kv",
           [&](const YAML::Node& v, const std::string& k) {
             auto& kv = cfg.kv;
             c.Map(v, k,
                   {
                       {"shards",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Uint(x, kk, 1, 4096, &kv.shards);
                          if (x.IsScalar() && kv.shards & (kv.shards - 1))
                            c.Error(
                                x, kk,
                                x.Scalar() + " is not a power of two, expected 1, 2, 4, ... 4096");
                        }},
                       {"max_key_bytes",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Size(x, kk, 1, 64 * 1024, &kv.max_key_bytes);
                        }},
                       {"max_value_bytes",
                        [&](const YAML::Node& x, const std::string& kk) {
                          max_value_node = x;
                          have_max_value = true;
                          c.Size(x, kk, 1, 512ull << 20, &kv.max_value_bytes);
                        }},
                       {"large_memory",
                        [&](const YAML::Node& x, const std::string& kk) {
                          large_node = x;
                          have_large = true;
                          c.Size(x, kk, 0, 1ull << 40, &kv.large_memory);
                        }},
                       {"eviction",
                        [&](const YAML::Node& x, const std::string& kk) {
                          std::string s;
                          c.String(x, kk, &s);
                          if (s == "noeviction")
                            kv.eviction = Eviction::kNoEviction;
                          else if (s == "allkeys-lru")
                            kv.eviction = Eviction::kAllKeysLru;
                          else if (x.IsScalar())
                            c.Error(
                                x, kk,
                                "'" + s + "' is not a policy, expected noeviction or allkeys-lru");
                        }},
                       {"sweep_interval",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Millis(x, kk, 1, 60'000, &kv.sweep_interval_ms);
                        }},
                       {"password",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.String(x, kk, &kv.password);
                          // conf/production.yaml's placeholder must not go live.
                          if (kv.password.starts_with("CHANGE-ME"))
                            c.Error(x, kk,
                                    "is the example's placeholder, expected a secret of your own "
                                    "(e.g. openssl rand -base64 32)");
                        }},
                   });
           }},
          {"pubsub",
           [&](const YAML::Node& v, const std::string& k) { ParsePubSub(c, v, k, &cfg.pubsub); }},
          {"persistence",
           [&](const YAML::Node& v, const std::string& k) {
             auto& p = cfg.persistence;
             p.enabled = true;
             persistence_node = v;
             c.Map(v, k,
                   {
                       {"enabled", [&](const YAML::Node& x,
                                       const std::string& kk) { c.Bool(x, kk, &p.enabled); }},
                       {"dir", [&](const YAML::Node& x,
                                   const std::string& kk) { c.String(x, kk, &p.dir); }},
                       {"fsync",
                        [&](const YAML::Node& x, const std::string& kk) {
                          std::string s;
                          c.String(x, kk, &s);
                          if (s == "always")
                            p.fsync = FsyncPolicy::kAlways;
                          else if (s == "everysec")
                            p.fsync = FsyncPolicy::kEverySec;
                          else if (s == "no")
                            p.fsync = FsyncPolicy::kNo;
                          else if (x.IsScalar())
                            c.Error(x, kk,
                                    "'" + s + "' is not a policy, expected always, everysec or no");
                        }},
                       {"snapshot_every",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Millis(x, kk, 0, 7 * 24 * 3'600'000u, &p.snapshot_every_ms);
                          if (x.IsScalar() && p.snapshot_every_ms && p.snapshot_every_ms < 1000)
                            c.Error(x, kk,
                                    x.Scalar() + " is too short, expected 0 (off) or at least 1s");
                        }},
                       {"snapshot_log_size",
                        [&](const YAML::Node& x, const std::string& kk) {
                          c.Size(x, kk, 0, 1ull << 40, &p.snapshot_log_bytes);
                        }},
                   });
           }},
      });
  if (!root.IsMap()) return r;

  if (cfg.workers == 0) cfg.workers = std::min<uint32_t>(OnlineCpus(), 256);
  if (!have_local) {
    Cidr v4, v6;
    Cidr::Parse("127.0.0.0/8", &v4);
    Cidr::Parse("::1/128", &v6);
    cfg.local_networks = {v4, v6};
  }
  if (!cfg.chroot.empty()) {
    if (cfg.chroot[0] != '/')
      c.Error(chroot_node, "chroot", "'" + cfg.chroot + "' is relative, expected an absolute path");
    else
      cfg.chroot = std::filesystem::path(cfg.chroot).lexically_normal().string();
    while (cfg.chroot.size() > 1 && cfg.chroot.back() == '/') cfg.chroot.pop_back();
  }
  if (cfg.persistence.enabled && cfg.persistence.dir.empty())
    c.Error(persistence_node, "persistence.dir",
            "missing, expected the folder for the logs and snapshots");
  cfg.pidfile = Resolve(dir, pidfile);
  // With chroot every path but the pidfile (the master's own) is as seen
  // inside it: absolute, and not spelled with the chroot in front.
  auto inner = [&](const YAML::Node& at, const std::string& key, std::string* p) {
    if (cfg.chroot.empty() || cfg.chroot[0] != '/') {
      *p = Resolve(dir, *p);
      return;
    }
    // "/../x" is "/x" inside the chroot as outside of it (the master's view).
    if (!p->empty() && (*p)[0] == '/') *p = std::filesystem::path(*p).lexically_normal().string();
    if (p->empty() || (*p)[0] != '/') {
      c.Error(at, key,
              "'" + *p + "' is relative, expected an absolute path as seen inside chroot " +
                  cfg.chroot);
    } else if (cfg.chroot != "/" && p->compare(0, cfg.chroot.size() + 1, cfg.chroot + "/") == 0) {
      c.Error(at, key,
              "'" + *p + "' names the chroot folder; paths are as seen inside chroot " +
                  cfg.chroot + ", expected " + p->substr(cfg.chroot.size()));
    }
  };
  if (cfg.persistence.enabled && !cfg.persistence.dir.empty())
    inner(persistence_node["dir"], "persistence.dir", &cfg.persistence.dir);
  if (cfg.logging.error_log != "stderr")
    inner(root["logging"]["error_log"], "logging.error_log", &cfg.logging.error_log);
  if (cfg.logging.access_log != "off")
    inner(root["logging"]["access_log"], "logging.access_log", &cfg.logging.access_log);

  if (!have_listeners) {
    c.Error(root, "listeners", "missing, expected a list with at least one listener");
  } else if (listeners_node.IsSequence() && listeners_node.size() == 0) {
    c.Error(listeners_node, "listeners", "empty, expected at least one listener");
  }
  size_t upstream_servers = 0;
  for (const UpstreamConf& u : cfg.upstreams) upstream_servers += u.servers.size();
  if (upstream_servers > kMaxUpstreamServers)
    c.Error(upstreams_node, "upstreams",
            std::to_string(upstream_servers) + " servers in all, expected at most " +
                std::to_string(kMaxUpstreamServers));
  std::map<std::string, size_t> upstream_names;
  for (size_t i = 0; i < cfg.upstreams.size(); i++) {
    const UpstreamConf& u = cfg.upstreams[i];
    if (!u.name.empty() && !upstream_names.emplace(u.name, i).second)
      c.Error(upstreams_node[i], "upstreams[" + std::to_string(i) + "].name",
              "'" + u.name + "' is used by upstreams[" + std::to_string(upstream_names[u.name]) +
                  "], expected a unique name");
    if (!u.servers.empty() && std::all_of(u.servers.begin(), u.servers.end(),
                                          [](const UpstreamServerConf& x) { return x.backup; }))
      c.Error(upstreams_node[i], "upstreams[" + std::to_string(i) + "].servers",
              "every server is a backup, expected at least one that is not");
  }
  std::map<std::string, size_t> names, sockets;
  for (size_t i = 0; i < cfg.listeners.size(); i++) {
    auto& l = cfg.listeners[i];
    const std::string key = "listeners[" + std::to_string(i) + "]";
    const YAML::Node node = listeners_node[i];
    if (!l.name.empty() && !names.emplace(l.name, i).second)
      c.Error(node, key + ".name",
              "'" + l.name + "' is used by listeners[" + std::to_string(names[l.name]) +
                  "], expected a unique name");
    if (l.port && !sockets.emplace(l.SocketKey(), i).second)
      c.Error(node, key + ".port",
              l.SocketKey() + " is used by listeners[" + std::to_string(sockets[l.SocketKey()]) +
                  "], expected a unique address and port");
    if (l.tls.enabled) ReadTlsFiles(c, node["tls"], key + ".tls", dir, &l.tls);
    if (!l.routes.empty() && l.protocol != Protocol::kHttp)
      c.Error(node["routes"], key + ".routes", "only http listeners proxy, expected it on one");
    for (size_t j = 0; j < l.routes.size(); j++) {
      RouteConf& r = l.routes[j];
      auto u = std::find_if(cfg.upstreams.begin(), cfg.upstreams.end(),
                            [&](const UpstreamConf& x) { return x.name == r.proxy; });
      if (u == cfg.upstreams.end()) {
        std::string names;
        for (const UpstreamConf& x : cfg.upstreams) names += (names.empty() ? "" : ", ") + x.name;
        c.Error(node["routes"][j]["proxy"], key + ".routes[" + std::to_string(j) + "].proxy",
                "'" + r.proxy + "' is not an upstream, expected one of the upstreams' names" +
                    (names.empty() ? std::string(" (there are none)") : " (" + names + ")"));
        continue;
      }
      r.upstream = static_cast<size_t>(u - cfg.upstreams.begin());
      if (r.path == "/kv" || r.path.substr(0, 4) == "/kv/" || r.path.substr(0, 2) == "/_")
        c.Error(node["routes"][j], key + ".routes[" + std::to_string(j) + "]",
                "'" + r.path + "' is served by preforkd itself (/kv, /_*), expected another path");
    }
    if (!l.tls.auth_by_certificate.empty() && l.protocol != Protocol::kResp &&
        l.protocol != Protocol::kKvJson)
      c.Error(node["tls"]["auth_by_certificate"], key + ".tls.auth_by_certificate",
              "set on a " + std::string(ProtocolName(l.protocol)) +
                  " listener, expected it only on resp and kv-json (which have AUTH)");
    if (l.protocol == Protocol::kHttp) {
      if (l.root.empty()) {
        c.Error(node, key + ".root", "missing, expected the docroot of an http listener");
      } else {
        inner(node["root"], key + ".root", &l.root);
        struct stat st;
        const std::string at = cfg.Outside(l.root);
        if (stat(at.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
          c.Error(node, key + ".root",
                  "'" + l.root + "' is not a directory" +
                      (at != l.root ? " (looked at " + at + ")" : std::string()) +
                      ", expected an existing docroot");
      }
      if (l.auth_basic.enabled()) {
        auto& a = l.auth_basic;
        inner(node["auth_basic"]["htpasswd"], key + ".auth_basic.htpasswd", &a.htpasswd);
        std::string why;
        if (!ReadSmallFile(cfg.Outside(a.htpasswd), 1 << 20, &a.htpasswd_text, &why))
          c.Error(
              node["auth_basic"]["htpasswd"], key + ".auth_basic.htpasswd",
              "'" + cfg.Outside(a.htpasswd) + "': " + why + ", expected a readable htpasswd file");
      }
    } else {
      if (!l.root.empty()) c.Error(node, key + ".root", "only http listeners have a root");
      if (l.auth_basic.enabled())
        c.Error(node, key + ".auth_basic", "only http listeners have basic auth");
    }
  }
  // A port number is plain or TLS on every address: a client that picks
  // another address of this host must not fall to plain text unawares.
  for (size_t i = 0; i < cfg.listeners.size(); i++)
    for (size_t j = 0; j < i; j++) {
      const auto &a = cfg.listeners[i], &b = cfg.listeners[j];
      if (a.port && a.port == b.port && a.tls.enabled != b.tls.enabled)
        c.Error(listeners_node[i], "listeners[" + std::to_string(i) + "].tls",
                "port " + std::to_string(a.port) + " is " + (a.tls.enabled ? "TLS" : "plain") +
                    " here and " + (b.tls.enabled ? "TLS" : "plain") + " on listeners[" +
                    std::to_string(j) + "], expected the same on every address");
    }
  // An error about room points at the key that was set: the limit, the
  // area, or shared_memory (else the top of the file).
  const YAML::Node& room_at = have_shm ? shm_node : root;
  CheckShardRoom(c, cfg, have_max_value ? max_value_node : room_at,
                 have_large ? large_node : room_at);
  if (cfg.user.empty() && !cfg.group.empty())
    c.Error(root["group"], "group", "set without user, expected user too");
  if (!cfg.chroot.empty() && cfg.user.empty())
    c.Error(chroot_node, "chroot",
            "set without user: a worker running as root can leave a chroot, expected user too");
  return r;
}

ConfigResult LoadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ConfigResult r;
    r.errors.push_back(path + ":1:1: (file): cannot open: " + std::strerror(errno) +
                       ", expected a readable YAML file");
    return r;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path);
}

namespace kv {
Limits LimitsFrom(const KvConf& c) {
  return Limits{c.max_key_bytes, c.max_value_bytes, c.eviction};
}
}  // namespace kv

namespace bus {
Sizes SizesFrom(const PubSubConf& c) {
  return Sizes{c.ring_slots, c.max_message_bytes, c.max_channel_bytes, c.channel_table_size};
}
}  // namespace bus

}  // namespace pf
