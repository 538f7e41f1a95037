// worker/http/static_files.cc: static files from a listener's docroot
// (static_files.h): conditional requests, ranges, directory listings.
#include "worker/http/static_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "shared/util/unique_fd.h"
#include "worker/http/compress.h"
#include "worker/http/filecache.h"
#include "worker/http/util.h"

namespace pf::http {
namespace {

bool NotModified(const Request& req, const std::string& etag, time_t mtime) {
  if (const std::string* inm = req.Header("if-none-match")) {
    std::string_view v(*inm);
    while (!v.empty()) {
      const size_t comma = v.find(',');
      std::string_view tag = v.substr(0, comma);
      v = comma == std::string_view::npos ? std::string_view{} : v.substr(comma + 1);
      while (!tag.empty() && tag.front() == ' ') tag.remove_prefix(1);
      while (!tag.empty() && tag.back() == ' ') tag.remove_suffix(1);
      if (tag.substr(0, 2) == "W/") tag.remove_prefix(2);
      if (tag == "*" || tag == etag) return true;
    }
    return false;  // If-None-Match present: If-Modified-Since is ignored (RFC 9110 13.1.3)
  }
  if (const std::string* ims = req.Header("if-modified-since")) {
    const time_t t = ParseHttpDate(*ims);
    return t >= 0 && mtime <= t;
  }
  return false;
}

// `vary`: the file has compressed variants (the identity answer says so too).
void ServeFile(const Request& req, const CachedFile& f, bool vary, Reply* rep) {
  if (vary) rep->headers += "Vary: Accept-Encoding\r\n";
  if (NotModified(req, f.etag, f.mtime.tv_sec)) {
    rep->status = 304;
    rep->has_length = false;
    rep->fixed_headers = std::string_view(f.validators).substr(0, f.validators_len);
    return;
  }
  rep->content_type = f.content_type;
  rep->fixed_headers = f.validators;
  const uint64_t size = f.size;
  uint64_t first = 0, last = size ? size - 1 : 0;
  const std::string* range = req.Header("range");
  const std::string* if_range = req.Header("if-range");
  if (range && (!if_range || *if_range == f.etag || *if_range == f.last_modified)) {
    switch (ParseRange(*range, size, &first, &last)) {
      case RangeResult::kNone:
        break;
      case RangeResult::kUnsatisfiable: {
        ErrorReply(416, rep);
        rep->headers += fmt::format("Content-Range: bytes */{}\r\n", size);
        return;
      }
      case RangeResult::kSingle:
        rep->status = 206;
        rep->headers += fmt::format("Content-Range: bytes {}-{}/{}\r\n", first, last, size);
        rep->file = &f;
        rep->file_off = first;
        rep->file_len = last - first + 1;
        return;
    }
  }
  rep->status = 200;
  rep->file = &f;
  rep->file_off = 0;
  rep->file_len = size;
}

// gzip_static / brotli_static and on-the-fly compression of one static file
// (docs/http.md, "Compression"). Returns true when the reply is a compressed
// variant (or its 304); false: the caller serves the identity file, with
// `Vary` when *vary. Only `path` survives the Resolve() calls here (each may
// evict what an earlier one returned), so the file is re-resolved before use.
bool ServeCompressed(const ListenerConf& l, const Request& req, const std::string& path,
                     uint64_t now_ms, bool* vary, Reply* rep) {
  const CompressionConf& z = l.compression;
  FileCache& cache = FileCache::Get();
  const Resolved orig = cache.Resolve(l, path, now_ms);
  if (!orig.file) return false;
  const CachedFile& f0 = *orig.file;
  const std::string name = path.back() == '/' ? path + l.index : path;
  const bool on_the_fly =
      CompressibleBody(z, f0.content_type, f0.size) && !CompressedExtension(name);
  const std::string_view type = f0.content_type;  // the MIME table's: lives for the process
  const timespec mtime = f0.mtime;
  const std::string etag = f0.etag, last_modified = f0.last_modified;
  // A variant counts when it is a regular file not older than the file.
  auto fresh = [&](const CachedFile* v) {
    return v && (v->mtime.tv_sec > mtime.tv_sec ||
                 (v->mtime.tv_sec == mtime.tv_sec && v->mtime.tv_nsec >= mtime.tv_nsec));
  };
  bool have_gz = false, have_br = false;
  if (z.static_precompressed) {
    if (z.gzip) have_gz = fresh(cache.Resolve(l, name + ".gz", now_ms, true).file);
    if (z.brotli) have_br = fresh(cache.Resolve(l, name + ".br", now_ms, true).file);
  }
  const bool gzip_ok = z.gzip && (have_gz || on_the_fly);
  const bool br_ok = z.brotli && (have_br || on_the_fly);
  *vary = gzip_ok || br_ok;
  if (!*vary || req.Header("range")) return false;  // ranges are of the identity only
  const Coding c = AcceptOf(req).Choose(gzip_ok, br_ok);
  if (c == Coding::kIdentity) return false;
  const bool stored = c == Coding::kGzip ? have_gz : have_br;
  const CachedFile* variant = nullptr;
  std::string tag;
  if (stored) {
    variant = cache.Resolve(l, name + (c == Coding::kGzip ? ".gz" : ".br"), now_ms, true).file;
    if (!variant) return false;
    tag = VariantEtag(variant->etag, c);  // the stored file's own validator
  } else {
    tag = VariantEtag(etag, c);
  }
  std::string validators = "Last-Modified: " + last_modified + "\r\nETag: " + tag + "\r\n";
  if (NotModified(req, tag, mtime.tv_sec)) {
    rep->status = 304;
    rep->has_length = false;
    rep->headers = std::move(validators) + "Vary: Accept-Encoding\r\n";
    return true;
  }
  if (!stored) {
    const Resolved again = cache.Resolve(l, path, now_ms);
    if (!again.file) return false;
    const int level = static_cast<int>(c == Coding::kGzip ? z.gzip_level : z.brotli_level);
    rep->cached_body = CompressedFiles::For(l).Get(path, *again.file, c, level);
    if (!rep->cached_body) return false;
  } else {
    rep->file = variant;
    rep->file_off = 0;
    rep->file_len = variant->size;
  }
  rep->status = 200;
  rep->content_type = type;
  rep->headers = std::move(validators) + "Content-Encoding: " + CodingName(c) +
                 "\r\nVary: Accept-Encoding\r\n";
  return true;
}

void Listing(int dirfd, const std::string& path, Reply* rep) {
  UniqueFd dup_fd(dup(dirfd));
  const std::unique_ptr<DIR, int (*)(DIR*)> d(dup_fd ? fdopendir(dup_fd.get()) : nullptr, closedir);
  if (!d) return ErrorReply(403, rep);
  (void)dup_fd.Release();  // owned by the DIR now
  std::vector<std::pair<std::string, bool>> entries;
  while (dirent* e = readdir(d.get())) {
    const std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    struct stat st;
    const bool dir =
        fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    entries.emplace_back(n, dir);
  }
  std::sort(entries.begin(), entries.end());
  const std::string title = HtmlEscape(path);
  std::string b = "<html>\r\n<head><title>Index of " + title +
                  "</title></head>\r\n<body>\r\n<h1>Index of " + title + "</h1><hr><pre>\r\n";
  if (path != "/") b += "<a href=\"../\">../</a>\r\n";
  for (const auto& [n, dir] : entries) {
    const std::string shown = n + (dir ? "/" : "");
    b += "<a href=\"" + HtmlEscape(UrlEncodePath(n)) + (dir ? "/" : "") + "\">" +
         HtmlEscape(shown) + "</a>\r\n";
  }
  b += "</pre><hr></body>\r\n</html>\r\n";
  rep->status = 200;
  rep->content_type = "text/html";
  rep->body = std::move(b);
}

}  // namespace

void ServeStatic(const ListenerConf& l, const Request& req, std::string_view raw_path,
                 std::string_view query, uint64_t now_ms, std::string* path, Reply* rep) {
  if (req.method != "GET" && req.method != "HEAD") return ErrorReply(405, rep);
  if (NormalizePath(raw_path, path) != 0) return ErrorReply(400, rep);
  Resolved r = FileCache::Get().Resolve(l, *path, now_ms);
  if (r.redirect) {
    rep->headers = "Location: " + UrlEncodePath(*path) + "/" +
                   (query.empty() ? "" : "?" + std::string(query)) + "\r\n";
    return ErrorReply(301, rep);
  }
  if (r.dir.get() >= 0) return Listing(r.dir.get(), *path, rep);
  if (r.status != 0) return ErrorReply(r.status, rep);
  bool vary = false;
  if (l.compression.enabled()) {
    if (ServeCompressed(l, req, *path, now_ms, &vary, rep)) return;
    r = FileCache::Get().Resolve(l, *path, now_ms);  // the lookups above may have evicted it
    if (!r.file) return ErrorReply(r.status ? r.status : 404, rep);
  }
  ServeFile(req, *r.file, vary, rep);
}

}  // namespace pf::http
