// shared/util/strings.cc: integer parsing and ASCII helpers (strings.h).
#include "shared/util/strings.h"

#include <algorithm>
#include <charconv>

namespace pf {

bool ParseInt64(std::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  if (s.size() == 1 && s[0] == '0') {
    *out = 0;
    return true;
  }
  size_t i = 0;
  bool neg = false;
  if (s[0] == '-') {
    neg = true;
    if (++i == s.size()) return false;
  }
  if (s[i] < '1' || s[i] > '9') return false;
  uint64_t v = 0;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    const auto d = static_cast<uint64_t>(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (neg) {
    if (v > static_cast<uint64_t>(INT64_MAX) + 1) return false;
    *out = static_cast<int64_t>(0 - v);
  } else {
    if (v > static_cast<uint64_t>(INT64_MAX)) return false;
    *out = static_cast<int64_t>(v);
  }
  return true;
}

bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
    const auto d = static_cast<uint64_t>(ch - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

bool EqualsNoCase(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i)
    if (AsciiLower(s[i]) != lower[i]) return false;
  return true;
}

int CompareNoCase(std::string_view s, std::string_view lower) {
  const size_t n = std::min(s.size(), lower.size());
  for (size_t i = 0; i < n; ++i) {
    const auto a = static_cast<unsigned char>(AsciiLower(s[i]));
    const auto b = static_cast<unsigned char>(lower[i]);
    if (a != b) return a < b ? -1 : 1;
  }
  if (s.size() == lower.size()) return 0;
  return s.size() < lower.size() ? -1 : 1;
}

void AppendU64(std::string* dst, uint64_t v) {
  char tmp[24];
  const auto r = std::to_chars(tmp, tmp + sizeof tmp, v);
  dst->append(tmp, r.ptr);
}

void AppendI64(std::string* dst, int64_t v) {
  char tmp[24];
  const auto r = std::to_chars(tmp, tmp + sizeof tmp, v);
  dst->append(tmp, r.ptr);
}

bool SecretEquals(std::string_view guess, std::string_view secret) {
  // One pass over the guess, whatever the secret's length: the time tells
  // an attacker only the length of what it sent.
  size_t diff = guess.size() ^ secret.size();
  const size_t n = secret.size();
  for (size_t i = 0; i < guess.size(); ++i) {
    const unsigned char y = n ? static_cast<unsigned char>(secret[i % n]) : 0;
    diff |= static_cast<unsigned char>(static_cast<unsigned char>(guess[i]) ^ y);
  }
  return diff == 0;
}

}  // namespace pf
