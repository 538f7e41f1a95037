// shared/util/glob.cc: Redis' stringmatchlen, made iterative (glob.h).
#include "shared/util/glob.h"

#include <utility>

namespace pf {
namespace {

// Token of a glob at pat[p] (not '*'): does it match `ch`, and where does the
// next token start. Mirrors stringmatchlen's cases, quirks included (an
// unterminated class runs to the end; "[a-]" is the range 'a'..']').
size_t GlobToken(std::string_view pat, size_t p, unsigned char ch, bool* match) {
  const size_t m = pat.size();
  auto uc = [&](size_t i) { return static_cast<unsigned char>(pat[i]); };
  switch (pat[p]) {
    case '?':
      *match = true;
      return p + 1;
    case '[': {
      size_t i = p + 1;
      bool negate = i < m && pat[i] == '^';
      if (negate) i++;
      bool hit = false;
      while (i < m) {
        if (pat[i] == '\\' && m - i >= 2) {
          i++;
          if (uc(i) == ch) hit = true;
        } else if (pat[i] == ']') {
          break;
        } else if (m - i >= 3 && pat[i + 1] == '-') {
          unsigned char lo = uc(i), hi = uc(i + 2);
          if (lo > hi) std::swap(lo, hi);
          if (ch >= lo && ch <= hi) hit = true;
          i += 2;
        } else if (uc(i) == ch) {
          hit = true;
        }
        i++;
      }
      *match = negate ? !hit : hit;
      return i < m ? i + 1 : m;
    }
    case '\\':
      if (m - p >= 2) {
        *match = uc(p + 1) == ch;
        return p + 2;
      }
      [[fallthrough]];
    default:
      *match = uc(p) == ch;
      return p + 1;
  }
}

// Redis' recursive stringmatchlen, made iterative: every token but '*' eats
// exactly one byte, so on a mismatch only the most recent '*' needs to absorb
// one more byte (earlier stars can never do better). That bounds the work to
// O(len(pattern) * len(s)); kGlobMaxWork caps it further.
bool GlobMatchWork(std::string_view pat, std::string_view s, size_t& work) {
  // Redis: an empty string matches only an empty pattern (even "*" fails;
  // KEYS and SCAN special-case a lone "*" before calling this).
  if (s.empty()) return pat.empty();
  const size_t m = pat.size(), n = s.size();
  size_t p = 0, i = 0;
  size_t star_p = SIZE_MAX, star_i = 0;
  while (i < n) {
    if (++work > kGlobMaxWork) return false;
    if (p < m && pat[p] == '*') {
      while (p < m && pat[p] == '*') p++;
      if (p == m) return true;
      star_p = p;
      star_i = i;
      continue;
    }
    if (p < m) {
      bool match;
      size_t next = GlobToken(pat, p, static_cast<unsigned char>(s[i]), &match);
      work += next - p;
      if (match) {
        p = next;
        i++;
        continue;
      }
    }
    if (star_p == SIZE_MAX) return false;
    i = ++star_i;
    p = star_p;
  }
  while (p < m && pat[p] == '*') p++;
  return p == m;
}

}  // namespace

bool GlobMatchCounted(std::string_view pat, std::string_view s, uint64_t* total) {
  size_t work = 0;
  bool match = GlobMatchWork(pat, s, work);
  *total += work + 1;  // +1: a key costs a step even when the match is instant
  return match;
}

bool GlobMatch(std::string_view pat, std::string_view s) {
  size_t work = 0;
  return GlobMatchWork(pat, s, work);
}

}  // namespace pf
