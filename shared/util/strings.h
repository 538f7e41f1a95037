// shared/util/strings.h: the one family of integer parsers and ASCII
// case helpers every layer uses (Redis' string2ll rules for signed values,
// digits only for unsigned ones). No allocation, no locale.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pf {

// Redis' string2ll: strict decimal int64 (an optional leading '-', no '+',
// no spaces, no leading zeros, no overflow).
bool ParseInt64(std::string_view s, int64_t* out);
// Digits only (no sign, no spaces; leading zeros allowed), no overflow.
bool ParseU64(std::string_view s, uint64_t* out);

inline char AsciiLower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
inline char AsciiUpper(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}
// `lower` is already lower case (table names, option words).
bool EqualsNoCase(std::string_view s, std::string_view lower);
// <0, 0, >0 as strcmp, comparing `s` lower-cased against `lower`.
int CompareNoCase(std::string_view s, std::string_view lower);

// Decimal text of an integer appended to `dst` (no allocation beyond dst's).
void AppendU64(std::string* dst, uint64_t v);
void AppendI64(std::string* dst, int64_t v);

// Whether a client's `guess` is the `secret`, in a time that depends only
// on the guess's length: neither the secret's bytes nor its length leak.
bool SecretEquals(std::string_view guess, std::string_view secret);

}  // namespace pf
