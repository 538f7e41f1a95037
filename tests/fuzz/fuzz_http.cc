// tests/fuzz/fuzz_http.cc: libFuzzer target for the HTTP request path:
// llhttp framing with preforkd's limits (worker/http/parse.h), then the target
// decoding and normalisation the static handler relies on, and Range parsing.
// Invariants: parsing at once and in chunks gives the same requests and the
// same error; a normalised path starts with '/', has no NUL, no empty, "." or
// ".." segment; normalising is idempotent; a parsed range lies in the file.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "worker/http/parse.h"
#include "worker/http/util.h"

namespace {

void Check(bool ok) {
  if (!ok) abort();
}

struct Outcome {
  std::vector<std::string> requests;  // method, target, version, headers, body flattened
  int error = 0;
  bool operator==(const Outcome&) const = default;
};

void CheckPath(const std::string& target) {
  std::string_view path, query;
  if (!pf::http::SplitTarget(target, &path, &query)) return;
  std::string norm;
  if (pf::http::NormalizePath(path, &norm) != 0) return;
  Check(!norm.empty() && norm[0] == '/');
  Check(norm.find('\0') == std::string::npos);
  Check(norm.find("//") == std::string::npos);
  Check(norm.find("/./") == std::string::npos && norm.find("/../") == std::string::npos);
  Check(!(norm.size() >= 3 && norm.compare(norm.size() - 3, 3, "/..") == 0));
  Check(!(norm.size() >= 2 && norm.compare(norm.size() - 2, 2, "/.") == 0));
  // Normalising the (re-encoded) result again changes nothing.
  std::string again;
  Check(pf::http::NormalizePath(pf::http::UrlEncodePath(norm), &again) == 0 && again == norm);
  (void)pf::http::QueryParam(query, "ttl");
}

Outcome Run(const char* data, size_t size, uint32_t seed) {
  pf::http::ParseLimits lim;
  lim.max_head_bytes = 4096;
  lim.max_uri_bytes = 2048;
  lim.max_body_bytes = 8192;
  pf::http::RequestParser p(lim);
  Outcome o;
  size_t off = 0;
  uint32_t rng = seed;
  while (off < size) {
    size_t chunk = size - off;
    if (seed) {
      rng = rng * 1103515245u + 12345u;
      chunk = std::min<size_t>(chunk, 1 + (rng >> 16) % 17);
    }
    while (chunk > 0) {
      size_t used = 0;
      const auto r = p.Feed(data + off, chunk, &used);
      Check(used <= chunk);
      off += used;
      chunk -= used;
      if (r == pf::http::RequestParser::Result::kError) {
        o.error = p.error_status();
        Check(o.error >= 400 && o.error <= 505);
        return o;
      }
      if (r == pf::http::RequestParser::Result::kRequest) {
        const auto& q = p.request();
        std::string flat = q.method + ' ' + q.target + ' ' + std::to_string(q.major) + '.' +
                           std::to_string(q.minor) + (q.keep_alive ? " ka" : " close");
        for (const auto& [k, v] : q.headers) flat += '\n' + k + ':' + v;
        flat += "\n\n" + q.body;
        Check(q.body.size() <= lim.max_body_bytes);
        Check(q.target.size() <= lim.max_uri_bytes);
        CheckPath(q.target);
        if (const std::string* range = q.Header("range")) {
          for (uint64_t fsize : {0ull, 1ull, 10ull, 1000ull}) {
            uint64_t a = 0, b = 0;
            if (pf::http::ParseRange(*range, fsize, &a, &b) == pf::http::RangeResult::kSingle)
              Check(a <= b && b < fsize);
          }
        }
        o.requests.push_back(std::move(flat));
        p.Next();
        continue;
      }
      if (used == 0) break;
    }
  }
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* d = reinterpret_cast<const char*>(data);
  // The raw bytes as a request-target too (paths need not be valid requests).
  CheckPath(std::string(d, size));
  const Outcome whole = Run(d, size, 0);
  const Outcome chunked = Run(d, size, size ? data[0] + 1u : 1u);
  Check(whole == chunked);
  return 0;
}
