// worker/http/basic_auth.h: the verification half of HTTP basic auth (nginx's
// auth_basic): an htpasswd file checked with the system's crypt_r (libxcrypt),
// the Authorization header's parser, and a per-worker cache of credentials
// that verified.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace pf {

struct ConfigResult;

// An htpasswd file: "user:hash" lines (an optional third ":comment" field as
// nginx allows; '#' comment lines and blank lines ignored), hashes in any
// scheme the system crypt_r rates as strong, plus sha256-crypt: bcrypt
// $2y$/$2b$/$2a$ (htpasswd -B), yescrypt $y$, sha512-crypt $6$, sha256-crypt $5$.
// Refuses, with a message naming file:line (never the secret itself):
// plaintext, Apache $apr1$ MD5, {SHA} and other {SCHEME} entries, legacy crypt
// schemes (DES, md5crypt $1$, ...), truncated hashes, lines without ':', a user
// listed twice; also files over 1 MiB. Immutable once loaded.
class Htpasswd {
  struct Passkey {
    explicit Passkey() = default;
  };

 public:
  static constexpr size_t kMaxFileBytes = 1u << 20;

  // Null with `*error` set ("path:line: ...") when the file cannot be used.
  // Runs crypt_r once (the dummy hash below).
  static std::shared_ptr<const Htpasswd> Load(const std::string& path, std::string* error);
  // The same over a file's contents read elsewhere (the master reads it with
  // the config); `path` only names it in messages.
  static std::shared_ptr<const Htpasswd> Parse(std::string_view text, const std::string& path,
                                               std::string* error);

  // Constant time in the password for a known user (crypt_r over the stored
  // setting, then a constant-time compare of the whole output). An unknown
  // user still runs one crypt_r, against a dummy hash made at load with the
  // first entry's setting (scheme, cost, salt), so timing does not tell users
  // apart. A password with a NUL byte or over 511 bytes is refused outright
  // (crypt_r would truncate or reject it).
  bool Verify(std::string_view user, std::string_view password) const;
  size_t users() const { return users_.size(); }
  // Unique per loaded object within the process, never reused (BasicAuthCache
  // ties its entries to this rather than to an address that may be recycled).
  uint64_t id() const { return id_; }

  explicit Htpasswd(Passkey) {}

 private:
  // True when crypt_r(password, hash) reproduces `hash` exactly.
  static bool Matches(std::string_view password, const std::string& hash);

  std::map<std::string, std::string, std::less<>> users_;  // user -> hash
  std::string dummy_;                                      // empty only when there are no users
  uint64_t id_ = 0;
};

// "Basic <base64(user:password)>" -> user, password. false: not Basic, bad
// base64 (strict RFC 4648, padded), no ':'. The scheme name is
// case-insensitive and followed by one or more spaces; the password may
// contain ':' (the user may not: RFC 7617).
bool ParseBasicCredentials(std::string_view authorization, std::string* user,
                           std::string* password);

// A per-worker cache of credentials that verified, so a keep-alive client
// costs one hash, not one per request. The key is the SHA-256 of the exact
// Authorization value (the cache holds no password). Bounded (the oldest
// verification is dropped first); an entry counts only for the Htpasswd
// object it was verified against (a reload = a new object = a cold cache)
// and for kTtlMs after the verification (hits do not extend it). One per
// worker: not thread-safe.
class BasicAuthCache {
 public:
  static constexpr size_t kMaxEntries = 1024;
  static constexpr uint64_t kTtlMs = 60'000;

  // True when `authorization` verified against `file` less than kTtlMs ago.
  // Drops a stale entry it finds.
  bool Check(const Htpasswd* file, std::string_view authorization, uint64_t now_ms);
  // Call after file->Verify() succeeded for these credentials.
  void Remember(const Htpasswd* file, std::string_view authorization, uint64_t now_ms);
  size_t size() const { return map_.size(); }

 private:
  // An entry belongs to one Htpasswd object: a value verified against one
  // file never counts for another, and an old object's entries just age out.
  struct Key {
    std::array<unsigned char, 32> digest;  // SHA-256 of the Authorization value
    uint64_t file_id;                      // Htpasswd::id()
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Entry {
    Key key;
    uint64_t verified_ms;
  };
  using List = std::list<Entry>;

  static Key KeyOf(const Htpasswd* file, std::string_view authorization);

  List order_;  // oldest verification first (Remember moves an entry to the back)
  std::unordered_map<Key, List::iterator, KeyHash> map_;
};

// Parses every http listener's auth_basic file as the workers will, adding
// each problem to r->errors: `preforkd -t`, the start and a reload refuse a
// file a worker could not use.
void CheckAuthBasic(ConfigResult* r);

}  // namespace pf
