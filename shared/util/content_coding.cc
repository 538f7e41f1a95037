// shared/util/content_coding.cc: Accept-Encoding negotiation and the MIME rules of
// compression (content_coding.h). Every loop here is bounded by the budget in
// content_coding.h, never by what the client sent.
#include "shared/util/content_coding.h"

#include <algorithm>

#include "shared/util/strings.h"

namespace pf::http {
namespace {

bool IsOws(char c) { return c == ' ' || c == '\t'; }

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && IsOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsOws(s.back())) s.remove_suffix(1);
  return s;
}

// One element: coding *( OWS ";" OWS name "=" value ). Returns false when it
// is malformed (ignored then); *q defaults to 1000.
bool ParseAcceptElement(std::string_view e, std::string_view* coding, int* q) {
  *q = 1000;
  const size_t semi = e.find(';');
  *coding = TrimOws(e.substr(0, semi));
  if (coding->empty()) return false;
  for (char c : *coding)
    if (IsOws(c) || c == '=' || c == '"') return false;
  if (semi == std::string_view::npos) return true;
  std::string_view params = e.substr(semi + 1);
  while (true) {
    const size_t next = params.find(';');
    const std::string_view p = TrimOws(params.substr(0, next));
    const size_t eq = p.find('=');
    if (eq == std::string_view::npos) return false;
    const std::string_view name = TrimOws(p.substr(0, eq));
    const std::string_view value = TrimOws(p.substr(eq + 1));
    if (EqualsNoCase(name, "q")) {
      *q = ParseQValue(value);
      if (*q < 0) return false;
    }
    if (next == std::string_view::npos) return true;
    params.remove_prefix(next + 1);
  }
}

}  // namespace

const char* CodingName(Coding c) {
  switch (c) {
    case Coding::kGzip:
      return "gzip";
    case Coding::kBrotli:
      return "br";
    case Coding::kIdentity:
      break;
  }
  return "identity";
}

int ParseQValue(std::string_view s) {
  if (s.empty() || s.size() > 5) return -1;
  if (s[0] != '0' && s[0] != '1') return -1;
  int v = (s[0] - '0') * 1000;
  if (s.size() == 1) return v;
  if (s[1] != '.') return -1;
  int scale = 100;
  for (size_t i = 2; i < s.size(); i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v += (s[i] - '0') * scale;
    scale /= 10;
  }
  return v > 1000 ? -1 : v;  // "1.5" is not a qvalue
}

void AcceptEncoding::Add(std::string_view value) {
  present = true;
  if (bytes >= kMaxAcceptEncodingBytes || items >= kMaxAcceptEncodingItems) return;
  const size_t room = kMaxAcceptEncodingBytes - bytes;
  const bool cut = value.size() > room;
  if (cut) value = value.substr(0, room);
  bytes += value.size();
  while (!value.empty() && items < kMaxAcceptEncodingItems) {
    const size_t comma = value.find(',');
    // The last element of a cut value may be cut itself: dropped.
    if (comma == std::string_view::npos && cut) return;
    const std::string_view e = value.substr(0, comma);
    value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
    if (TrimOws(e).empty()) continue;  // "gzip,,br": empty elements are allowed and free
    items++;
    std::string_view coding;
    int q = 0;
    if (!ParseAcceptElement(e, &coding, &q)) continue;
    int* slot = nullptr;
    if (EqualsNoCase(coding, "gzip") || EqualsNoCase(coding, "x-gzip"))
      slot = &gzip;
    else if (EqualsNoCase(coding, "br"))
      slot = &br;
    else if (EqualsNoCase(coding, "identity"))
      slot = &identity;
    else if (coding == "*")
      slot = &star;
    if (slot && *slot < 0) *slot = q;
  }
}

Coding AcceptEncoding::Choose(bool gzip_ok, bool br_ok) const {
  if (!present) return Coding::kIdentity;
  auto q_of = [&](int listed) { return listed >= 0 ? listed : std::max(star, 0); };
  const int qg = gzip_ok ? q_of(gzip) : 0;
  const int qb = br_ok ? q_of(br) : 0;
  const int best = std::max(qg, qb);
  if (best <= 0) return Coding::kIdentity;
  // Identity competes only where the client gave it a q (itself or `*`).
  const int qi = identity >= 0 ? identity : star;
  if (qi > best) return Coding::kIdentity;
  return qb == best ? Coding::kBrotli : Coding::kGzip;
}

std::string MediaType(std::string_view content_type) {
  const std::string_view t = TrimOws(content_type.substr(0, content_type.find(';')));
  std::string out(t);
  for (char& c : out) c = AsciiLower(c);
  return out;
}

bool AlreadyCompressedType(std::string_view t) {
  if (t.starts_with("image/"))
    return t != "image/svg+xml" && t != "image/x-icon" && t != "image/vnd.microsoft.icon" &&
           t != "image/bmp";
  if (t.starts_with("video/") || t.starts_with("audio/")) return true;
  static constexpr std::string_view kTypes[] = {
      "application/zip",
      "application/gzip",
      "application/x-gzip",
      "application/x-bzip2",
      "application/x-xz",
      "application/zstd",
      "application/x-7z-compressed",
      "application/x-rar-compressed",
      "application/vnd.rar",
      "application/x-brotli",
      "application/br",
      "application/x-compress",
      "application/java-archive",
      "application/epub+zip",
      "application/pdf",
      "font/woff",
      "font/woff2",
      "application/font-woff",
      "application/x-font-woff",
      "application/vnd.ms-fontobject",
  };
  return std::find(std::begin(kTypes), std::end(kTypes), t) != std::end(kTypes);
}

bool CompressedExtension(std::string_view filename) {
  const size_t dot = filename.rfind('.');
  if (dot == std::string_view::npos || filename.find('/', dot) != std::string_view::npos)
    return false;
  const std::string_view ext = filename.substr(dot + 1);
  static constexpr std::string_view kExts[] = {"gz",  "br",   "zst", "bz2", "xz",  "zip",  "7z",
                                               "tgz", "svgz", "rar", "lz",  "lz4", "woff", "woff2"};
  for (std::string_view e : kExts)
    if (EqualsNoCase(ext, e)) return true;
  return false;
}

bool TypeListed(const std::vector<std::string>& types, std::string_view t) {
  for (const std::string& x : types) {
    if (x == t) return true;
    if (x.size() >= 2 && x.ends_with("/*") && t.size() > x.size() - 1 &&
        t.substr(0, x.size() - 1) == std::string_view(x).substr(0, x.size() - 1))
      return true;
  }
  return false;
}

}  // namespace pf::http
