// tests/fuzz/fuzz_accept_encoding.cc: libFuzzer target for Accept-Encoding
// negotiation (shared/util/content_coding.h). Invariants: the work budget
// holds (bytes and elements looked at), every q is in -1..1000, the choice is
// one the server offered with a q above 0, codings are case-insensitive
// (the input upper- or lower-cased negotiates the same), and splitting the
// input over several header lines never looks at more than the budget.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "shared/util/content_coding.h"

namespace {

using pf::http::AcceptEncoding;
using pf::http::Coding;

void Check(bool ok) {
  if (!ok) abort();
}

void CheckOne(const AcceptEncoding& ae) {
  Check(ae.bytes <= pf::http::kMaxAcceptEncodingBytes);
  Check(ae.items <= pf::http::kMaxAcceptEncodingItems);
  for (int q : {ae.gzip, ae.br, ae.identity, ae.star}) Check(q >= -1 && q <= 1000);
  for (int offer = 0; offer < 4; offer++) {
    const bool gzip_ok = offer & 1, br_ok = offer & 2;
    const Coding c = ae.Choose(gzip_ok, br_ok);
    if (c == Coding::kGzip) Check(gzip_ok && (ae.gzip > 0 || (ae.gzip < 0 && ae.star > 0)));
    if (c == Coding::kBrotli) Check(br_ok && (ae.br > 0 || (ae.br < 0 && ae.star > 0)));
  }
}

std::string Cased(std::string_view s, bool upper) {
  std::string out(s);
  for (char& ch : out) {
    if (upper && ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 'a' + 'A');
    if (!upper && ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  AcceptEncoding whole;
  whole.Add(in);
  CheckOne(whole);
  for (bool upper : {false, true}) {
    AcceptEncoding cased;
    cased.Add(Cased(in, upper));
    Check(cased.gzip == whole.gzip && cased.br == whole.br && cased.identity == whole.identity &&
          cased.star == whole.star);
  }
  // The input as header lines, split at every '\n' (the budget spans them).
  AcceptEncoding lines;
  size_t start = 0;
  while (start <= in.size()) {
    const size_t nl = in.find('\n', start);
    lines.Add(in.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start));
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  CheckOne(lines);
  return 0;
}
