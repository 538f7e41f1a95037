// worker/http/util.h: small HTTP helpers: status texts, dates (cached per
// second), the MIME table (/etc/mime.types plus built-in defaults), HTML
// escaping, URL encoding, byte ranges.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace pf::http {

const char* StatusText(int status);
// IMF-fixdate of now, recomputed at most once a second.
std::string_view DateNow();
std::string HttpDate(time_t t);
// -1 if `s` is not an HTTP date (IMF-fixdate, RFC 850 or asctime).
time_t ParseHttpDate(const std::string& s);
// nginx's $time_local ("10/Oct/2000:13:55:36 -0700"), cached per second.
std::string_view LogTimeNow();

// Content-Type for a file name, by extension (case-insensitive). Loaded once
// per process.
std::string_view MimeType(std::string_view filename);

std::string HtmlEscape(std::string_view s);
// Percent-encodes everything but unreserved characters and '/'.
std::string UrlEncodePath(std::string_view s);

// Parses a Range header against a resource of `size` bytes.
enum class RangeResult { kNone, kSingle, kUnsatisfiable };
RangeResult ParseRange(std::string_view header, uint64_t size, uint64_t* first, uint64_t* last);

}  // namespace pf::http
