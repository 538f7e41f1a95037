// worker/http/util.cc: see util.h.
#include "worker/http/util.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "shared/util/strings.h"

namespace pf::http {

const char* StatusText(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 416:
      return "Range Not Satisfiable";
    case 421:
      return "Misdirected Request";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    case 507:
      return "Insufficient Storage";
  }
  return "Unknown";
}

std::string HttpDate(time_t t) {
  tm g;
  gmtime_r(&t, &g);
  char buf[64];
  strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &g);
  return buf;
}

std::string_view DateNow() {
  static time_t cached = 0;
  static std::string text;
  const time_t now = time(nullptr);
  if (now != cached) {
    cached = now;
    text = HttpDate(now);
  }
  return text;
}

std::string_view LogTimeNow() {
  static time_t cached = 0;
  static std::string text;
  const time_t now = time(nullptr);
  if (now != cached) {
    cached = now;
    tm l;
    localtime_r(&now, &l);
    char buf[64];
    strftime(buf, sizeof buf, "%d/%b/%Y:%H:%M:%S %z", &l);
    text = buf;
  }
  return text;
}

time_t ParseHttpDate(const std::string& s) {
  static const char* const kFormats[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
                                         "%a %b %e %H:%M:%S %Y"};
  for (const char* f : kFormats) {
    tm t{};
    const char* end = strptime(s.c_str(), f, &t);
    if (end && *end == '\0') return timegm(&t);
  }
  return -1;
}

namespace {

std::string Lower(std::string_view s) {
  std::string r(s);
  for (char& ch : r)
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  return r;
}

std::unordered_map<std::string, std::string> LoadMime() {
  // Defaults first; /etc/mime.types (when present) adds and overrides.
  std::unordered_map<std::string, std::string> m = {
      {"html", "text/html"},
      {"htm", "text/html"},
      {"css", "text/css"},
      {"js", "application/javascript"},
      {"mjs", "application/javascript"},
      {"json", "application/json"},
      {"txt", "text/plain"},
      {"xml", "text/xml"},
      {"svg", "image/svg+xml"},
      {"png", "image/png"},
      {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},
      {"webp", "image/webp"},
      {"ico", "image/x-icon"},
      {"pdf", "application/pdf"},
      {"wasm", "application/wasm"},
      {"woff", "font/woff"},
      {"woff2", "font/woff2"},
      {"mp4", "video/mp4"},
      {"gz", "application/gzip"},
      {"tar", "application/x-tar"},
      {"zip", "application/zip"},
      {"md", "text/markdown"},
      {"csv", "text/csv"},
  };
  std::ifstream f("/etc/mime.types");
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line);
    std::string type, ext;
    if (!(in >> type)) continue;
    while (in >> ext) m[Lower(ext)] = type;
  }
  // The browser-facing essentials stay as the defaults say.
  m["html"] = "text/html";
  m["js"] = "application/javascript";
  return m;
}

}  // namespace

std::string_view MimeType(std::string_view filename) {
  static const std::unordered_map<std::string, std::string> table = LoadMime();
  const size_t slash = filename.rfind('/');
  if (slash != std::string_view::npos) filename.remove_prefix(slash + 1);
  const size_t dot = filename.rfind('.');
  if (dot != std::string_view::npos && dot + 1 < filename.size()) {
    auto it = table.find(Lower(filename.substr(dot + 1)));
    if (it != table.end()) return it->second;
  }
  return "application/octet-stream";
}

std::string HtmlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string UrlEncodePath(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

RangeResult ParseRange(std::string_view h, uint64_t size, uint64_t* first, uint64_t* last) {
  while (!h.empty() && h.front() == ' ') h.remove_prefix(1);
  if (h.substr(0, 6) != "bytes=") return RangeResult::kNone;
  h.remove_prefix(6);
  // Several ranges: served as a plain 200 (RFC 9110 allows ignoring Range).
  if (h.find(',') != std::string_view::npos) return RangeResult::kNone;
  while (!h.empty() && h.back() == ' ') h.remove_suffix(1);
  const size_t dash = h.find('-');
  if (dash == std::string_view::npos) return RangeResult::kNone;
  const std::string_view a = h.substr(0, dash), b = h.substr(dash + 1);
  uint64_t x = 0, y = 0;
  if (a.empty()) {  // suffix: the last y bytes
    if (!ParseU64(b, &y)) return RangeResult::kNone;
    if (y == 0 || size == 0) return RangeResult::kUnsatisfiable;
    *first = y >= size ? 0 : size - y;
    *last = size - 1;
    return RangeResult::kSingle;
  }
  if (!ParseU64(a, &x)) return RangeResult::kNone;
  if (b.empty()) {
    y = UINT64_MAX;
  } else if (!ParseU64(b, &y) || y < x) {
    return RangeResult::kNone;
  }
  if (x >= size) return RangeResult::kUnsatisfiable;
  *first = x;
  *last = std::min(y, size - 1);
  return RangeResult::kSingle;
}

}  // namespace pf::http
