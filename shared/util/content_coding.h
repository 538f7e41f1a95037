// shared/util/content_coding.h: content-coding negotiation (Accept-Encoding with
// q-values, RFC 9110 12.5.3) and the MIME rules of compression: which types
// may be compressed, which are compressed already. No codec and no libevent
// here, so the fuzz target builds it alone, and the config loader checks
// its type lists with the same rules (docs/http.md, "Compression").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pf::http {

enum class Coding : uint8_t { kIdentity = 0, kGzip = 1, kBrotli = 2 };
// "identity", "gzip", "br" (the Content-Encoding token).
const char* CodingName(Coding c);

// The bound on what one request's Accept-Encoding may cost: only the first
// kMaxAcceptEncodingBytes of all its lines together and the first
// kMaxAcceptEncodingItems elements are looked at; an element cut by the byte
// bound is dropped whole (a cut "gzip;q=0.5" must not read as "gzip;q=0").
// Real browsers send fewer than 60 bytes and 5 elements.
constexpr size_t kMaxAcceptEncodingBytes = 1024;
constexpr size_t kMaxAcceptEncodingItems = 16;

// What a request accepts, in thousandths of q (0..1000); -1 = not listed.
struct AcceptEncoding {
  int gzip = -1, br = -1, identity = -1, star = -1;
  size_t bytes = 0, items = 0;  // the budget spent so far
  bool present = false;         // at least one Accept-Encoding line

  // One Accept-Encoding field line; call once per line, in order (the
  // budget spans all of them). The first occurrence of a coding counts.
  void Add(std::string_view value);
  // The coding to send, among those the server offers (gzip_ok, br_ok):
  // the highest q above 0, br before gzip at equal q; identity when nothing
  // offered is acceptable, when identity is listed (or `*` covers it) with a
  // higher q, or when the request has no Accept-Encoding. `identity;q=0`
  // with nothing else acceptable still gets identity (as nginx does; 406 is
  // optional).
  Coding Choose(bool gzip_ok, bool br_ok) const;
};

// A qvalue ("1", "0.5", "1.000"; RFC 9110 12.4.2) in thousandths, -1 if invalid.
int ParseQValue(std::string_view s);

// The media type of a Content-Type value: before any ';', spaces trimmed,
// lower-cased ("Text/HTML; charset=utf-8" -> "text/html").
std::string MediaType(std::string_view content_type);
// Types that are compressed already (images but SVG, audio, video, archives,
// woff/woff2, ...): never compressed again, and refused in the config.
bool AlreadyCompressedType(std::string_view media_type);
// File names whose bytes are compressed whatever their type says (x.svgz,
// x.gz, x.br, x.zip, ...): never compressed on the fly.
bool CompressedExtension(std::string_view filename);
// `media_type` (from MediaType) is one of `types`: exact, or "text/*" style.
bool TypeListed(const std::vector<std::string>& types, std::string_view media_type);

}  // namespace pf::http
