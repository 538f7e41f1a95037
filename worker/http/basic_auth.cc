// worker/http/basic_auth.cc: see basic_auth.h. Hashing is libxcrypt's crypt_r,
// the cache key OpenSSL's SHA-256, the compare OpenSSL's CRYPTO_memcmp;
// nothing here hashes by hand.
#include "worker/http/basic_auth.h"

#include <crypt.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <iterator>

#include "shared/config.h"
#include "shared/util/unique_fd.h"
#include "worker/json.h"

namespace pf {

namespace {

std::atomic<uint64_t> g_next_id{1};

// struct crypt_data is 32 KiB: on the heap, one per thread that verifies
// (zeroed, as crypt_r wants it the first time).
crypt_data* CryptData() {
  thread_local std::unique_ptr<crypt_data> data;
  if (!data) data = std::make_unique<crypt_data>();
  return data.get();
}

// Hashes `phrase` with `setting` in `d`; null when crypt_r fails (it returns
// null or a string starting with '*', "*0"/"*1", on an unusable setting).
// The caller checks the sizes against CRYPT_MAX_PASSPHRASE_SIZE and
// CRYPT_OUTPUT_SIZE.
const char* CryptR(crypt_data* d, std::string_view phrase, std::string_view setting) {
  std::memcpy(d->input, phrase.data(), phrase.size());
  d->input[phrase.size()] = '\0';
  std::memcpy(d->setting, setting.data(), setting.size());
  d->setting[setting.size()] = '\0';
  const char* out = crypt_r(d->input, d->setting, d);
  if (!out || out[0] == '*') return nullptr;
  return out;
}

// The password and what was derived from it do not stay in memory.
void Wipe(crypt_data* d) { explicit_bzero(d, sizeof *d); }

bool PasswordUsable(std::string_view password) {
  return password.size() < CRYPT_MAX_PASSPHRASE_SIZE &&
         password.find('\0') == std::string_view::npos;
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// The length of the part after the last '$' for schemes whose output is
// known, so a truncated entry is refused at load rather than never matching.
struct SchemeShape {
  std::string_view prefix;
  size_t tail;
};
constexpr SchemeShape kShapes[] = {
    {"$2a$", 53}, {"$2b$", 53}, {"$2y$", 53}, {"$y$", 43},
    {"$gy$", 43}, {"$7$", 43},  {"$6$", 86},  {"$5$", 43},
};

constexpr int kMaxBcryptCost = 13;             // ~0.5 s a check on a current core
constexpr uint64_t kMaxShaRounds = 1'000'000;  // sha-crypt; the default is 5000

bool IsCryptChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '/';
}

// Why `hash` cannot be used ("" when it can). Never quotes the hash: a
// refused entry may be a plaintext password.
std::string HashProblem(std::string_view hash) {
  constexpr std::string_view kFix = " (re-create the entry with htpasswd -B)";
  if (hash.empty()) return "no password hash";
  if (StartsWith(hash, "{SHA}")) {
    return fmt::format("{{SHA}} (unsalted SHA-1) is not supported{}", kFix);
  }
  if (hash[0] == '{') return fmt::format("{{SCHEME}} entries are not supported{}", kFix);
  if (StartsWith(hash, "$apr1$")) {
    return fmt::format("Apache $apr1$ MD5 is not supported{}", kFix);
  }
  if (hash[0] != '$') return fmt::format("not a crypt hash (a plaintext password?){}", kFix);
  if (hash.size() >= CRYPT_OUTPUT_SIZE) return "the hash is too long";
  const std::string h(hash);
  switch (crypt_checksalt(h.c_str())) {
    case CRYPT_SALT_OK:
      break;
    case CRYPT_SALT_METHOD_LEGACY:
      // libxcrypt rates sha256-crypt legacy; it is still salted and iterated.
      if (StartsWith(hash, "$5$")) break;
      return fmt::format("a legacy crypt scheme, too weak{}", kFix);
    case CRYPT_SALT_METHOD_DISABLED:
      return "a crypt scheme disabled on this system";
    default:
      return fmt::format("not a hash this system's crypt_r knows{}", kFix);
  }
  for (const SchemeShape& s : kShapes) {
    if (!StartsWith(hash, s.prefix)) continue;
    const std::string_view tail = hash.substr(hash.rfind('$') + 1);
    bool ok = tail.size() == s.tail;
    for (char c : tail) ok = ok && IsCryptChar(c);
    if (!ok) return fmt::format("a malformed or truncated {} hash", s.prefix);
  }
  // A verification holds the worker's event loop for one hash: a cost that
  // makes it take seconds would stall every other client of that worker.
  if (hash.size() > 7 && hash[0] == '$' && hash[1] == '2' && hash[3] == '$') {
    const int cost = (hash[4] - '0') * 10 + (hash[5] - '0');
    if (cost > kMaxBcryptCost)
      return fmt::format(
          "bcrypt cost {} is over {}: one check would hold a worker for seconds "
          "(re-create the entry with htpasswd -B -C {})",
          cost, kMaxBcryptCost, kMaxBcryptCost);
  }
  if (StartsWith(hash, "$5$rounds=") || StartsWith(hash, "$6$rounds=")) {
    const std::string_view digits = hash.substr(10, hash.find('$', 10) - 10);
    uint64_t rounds = 0;
    for (char c : digits)
      rounds = c >= '0' && c <= '9' && rounds < 1'000'000'000 ? rounds * 10 + (c - '0') : rounds;
    if (rounds > kMaxShaRounds)
      return fmt::format("{} rounds are over {}: one check would hold a worker too long", rounds,
                         kMaxShaRounds);
  }
  return "";
}

std::string_view TrimRight(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

std::string TooBig(const std::string& path) {
  return fmt::format("{}: larger than the {} byte limit for an htpasswd file", path,
                     Htpasswd::kMaxFileBytes);
}

bool ReadSmallFile(const std::string& path, std::string* data, std::string* error) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) {
    *error = fmt::format("{}: cannot open: {}", path, std::strerror(errno));
    return false;
  }
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) {
    *error = fmt::format("{}: fstat: {}", path, std::strerror(errno));
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    *error = fmt::format("{}: not a regular file", path);
    return false;
  }
  const auto too_big = [&] {
    *error = TooBig(path);
    return false;
  };
  if (static_cast<uint64_t>(st.st_size) > Htpasswd::kMaxFileBytes) return too_big();
  data->clear();
  char buf[16384];
  for (;;) {  // the file may grow while read: the limit holds for what is read
    const ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = fmt::format("{}: read: {}", path, std::strerror(errno));
      return false;
    }
    if (n == 0) return true;
    data->append(buf, static_cast<size_t>(n));
    if (data->size() > Htpasswd::kMaxFileBytes) return too_big();
  }
}

}  // namespace

std::shared_ptr<const Htpasswd> Htpasswd::Load(const std::string& path, std::string* error) {
  std::string data;
  if (!ReadSmallFile(path, &data, error)) return nullptr;
  return Parse(data, path, error);
}

std::shared_ptr<const Htpasswd> Htpasswd::Parse(std::string_view data, const std::string& path,
                                                std::string* error) {
  if (data.size() > kMaxFileBytes) {
    *error = TooBig(path);
    return nullptr;
  }
  auto file = std::make_shared<Htpasswd>(Passkey{});
  std::map<std::string, size_t, std::less<>> line_of;
  std::string first_hash;
  size_t first_line = 0;
  size_t line_no = 0;
  for (size_t pos = 0; pos < data.size();) {
    size_t end = data.find('\n', pos);
    if (end == std::string_view::npos) end = data.size();
    const std::string_view line = TrimRight(data.substr(pos, end - pos));
    pos = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t") == std::string_view::npos || line[0] == '#') continue;
    const auto fail = [&](std::string_view why) {
      *error = fmt::format("{}:{}: {}", path, line_no, why);
      return nullptr;
    };
    if (line.find('\0') != std::string_view::npos) return fail("contains a NUL byte");
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return fail("no ':' (expected user:hash)");
    const std::string_view user = line.substr(0, colon);
    std::string_view hash = line.substr(colon + 1);
    hash = hash.substr(0, hash.find(':'));  // user:hash:comment
    if (user.empty()) return fail("empty user name");
    if (const std::string why = HashProblem(hash); !why.empty()) {
      return fail(fmt::format("user \"{}\": {}", user, why));
    }
    if (const auto it = line_of.find(user); it != line_of.end()) {
      return fail(fmt::format("user \"{}\" is already listed at line {}", user, it->second));
    }
    line_of.emplace(user, line_no);
    file->users_.emplace(user, hash);
    if (first_hash.empty()) {
      first_hash = hash;
      first_line = line_no;
    }
  }
  if (!first_hash.empty()) {
    // The dummy for unknown users: the first entry's setting (scheme, cost,
    // salt) over a phrase no one types; crypt_r also proves the entry usable.
    crypt_data* d = CryptData();
    const char* out = CryptR(d, "preforkd: no such user", first_hash);
    if (out) file->dummy_ = out;
    Wipe(d);
    if (file->dummy_.size() != first_hash.size()) {
      *error = fmt::format("{}:{}: crypt_r cannot use this hash", path, first_line);
      return nullptr;
    }
  }
  file->id_ = g_next_id.fetch_add(1, std::memory_order_relaxed);
  return file;
}

bool Htpasswd::Matches(std::string_view password, const std::string& hash) {
  crypt_data* d = CryptData();
  const char* out = CryptR(d, password, hash);
  // crypt_r's output has a fixed length per setting, so the length check
  // tells nothing about the password; the bytes are compared in constant time.
  const bool ok =
      out && std::strlen(out) == hash.size() && CRYPTO_memcmp(out, hash.data(), hash.size()) == 0;
  Wipe(d);
  return ok;
}

bool Htpasswd::Verify(std::string_view user, std::string_view password) const {
  if (!PasswordUsable(password)) return false;
  const auto it = users_.find(user);
  if (it == users_.end()) {
    if (!dummy_.empty()) (void)Matches(password, dummy_);
    return false;
  }
  return Matches(password, it->second);
}

bool ParseBasicCredentials(std::string_view authorization, std::string* user,
                           std::string* password) {
  constexpr std::string_view kScheme = "basic";
  if (authorization.size() <= kScheme.size() || authorization[kScheme.size()] != ' ') return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    const char c = authorization[i];
    if ((c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c) != kScheme[i]) return false;
  }
  std::string_view token = authorization.substr(kScheme.size());
  token.remove_prefix(std::min(token.find_first_not_of(' '), token.size()));
  std::string decoded;
  if (token.empty() || !json::DecodeBase64(token, &decoded)) return false;
  const size_t colon = decoded.find(':');
  if (colon == std::string::npos) return false;
  user->assign(decoded, 0, colon);
  password->assign(decoded, colon + 1);
  explicit_bzero(decoded.data(), decoded.size());
  return true;
}

size_t BasicAuthCache::KeyHash::operator()(const Key& k) const {
  // The digest is uniform already; mixing in the file id keeps two files'
  // entries for one value apart.
  size_t h;
  std::memcpy(&h, k.digest.data(), sizeof h);
  return h ^ (k.file_id * 0x9e3779b97f4a7c15ull);
}

BasicAuthCache::Key BasicAuthCache::KeyOf(const Htpasswd* file, std::string_view authorization) {
  Key k{};
  SHA256(reinterpret_cast<const unsigned char*>(authorization.data()), authorization.size(),
         k.digest.data());
  k.file_id = file->id();
  return k;
}

bool BasicAuthCache::Check(const Htpasswd* file, std::string_view authorization, uint64_t now_ms) {
  if (!file || map_.empty()) return false;
  const auto it = map_.find(KeyOf(file, authorization));
  if (it == map_.end()) return false;
  if (now_ms >= it->second->verified_ms + kTtlMs) {
    order_.erase(it->second);
    map_.erase(it);
    return false;
  }
  return true;
}

void BasicAuthCache::Remember(const Htpasswd* file, std::string_view authorization,
                              uint64_t now_ms) {
  if (!file) return;
  const Key key = KeyOf(file, authorization);
  if (const auto it = map_.find(key); it != map_.end()) {
    order_.erase(it->second);
    map_.erase(it);
  }
  order_.push_back(Entry{key, now_ms});
  map_.emplace(key, std::prev(order_.end()));
  while (map_.size() > kMaxEntries) {
    map_.erase(order_.front().key);
    order_.pop_front();
  }
}

void CheckAuthBasic(ConfigResult* r) {
  for (size_t i = 0; i < r->config.listeners.size(); i++) {
    const BasicAuthConf& a = r->config.listeners[i].auth_basic;
    if (!a.enabled()) continue;
    std::string err;
    if (!Htpasswd::Parse(a.htpasswd_text, r->config.Outside(a.htpasswd), &err))
      r->errors.push_back("listeners[" + std::to_string(i) + "].auth_basic.htpasswd: " + err);
  }
}

}  // namespace pf
