// worker/http/compress.h: gzip (libdeflate) and brotli (libbrotlienc) for
// HTTP responses: the codec wrapper, the dynamic-response step every route's
// reply passes through, and the per-worker cache of static files compressed
// on the fly (docs/http.md, "Compression").
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

#include "shared/config.h"
#include "shared/util/content_coding.h"
#include "worker/http/parse.h"
#include "worker/http/reply.h"

namespace pf::http {

struct CachedFile;

// `in` compressed whole as a gzip member (RFC 1952) or a brotli stream (RFC
// 7932) at `level` (gzip 1..12, brotli 0..11) into *out. False if the
// codec failed (out of memory); *out is then unspecified.
bool Compress(Coding c, int level, std::string_view in, std::string* out);

// The request's Accept-Encoding lines, within the bound of content_coding.h.
AcceptEncoding AcceptOf(const Request& req);

// Whether a body of this Content-Type and length is compressed on the fly:
// a listed type, not a compressed one, min_length <= len <= max_length.
bool CompressibleBody(const CompressionConf& z, std::string_view content_type, uint64_t len);

// The suffix that tells a variant's ETag from the identity's (RFC 9110
// 8.8.3: each representation has its own): "\"x-y\"" -> "\"x-y-gzip\"".
std::string VariantEtag(std::string_view etag, Coding c);

// Dynamic responses (/kv, the ops endpoints, error pages, listings): when
// the body qualifies (CompressibleBody, a final status other than 206, no
// Content-Encoding yet), adds `Vary: Accept-Encoding` and, if the request
// accepts a coding the listener offers, replaces the body with its
// compressed form and adds `Content-Encoding`. A compressed body that is not
// smaller goes as it was. HEAD is compressed too (the same headers as GET).
void CompressReply(const CompressionConf& z, const Request& req, Reply* rep);

// Static files compressed on the fly, per worker and listener: keyed by
// (path, coding) and checked against the file's identity (device, inode,
// size, mtime, ctime) at every use, so a changed file is compressed again.
// Bounded by the listener's cache_bytes (least recently used out first); 0,
// a file that is changing (CachedFile::racy) or a result larger than the
// budget is compressed for the request alone.
class CompressedFiles {
 public:
  explicit CompressedFiles(uint64_t max_bytes) : max_bytes_(max_bytes) {}
  CompressedFiles(const CompressedFiles&) = delete;
  CompressedFiles& operator=(const CompressedFiles&) = delete;

  // The compressed bytes of `f` (the version the open-file cache just
  // validated for `path`), valid until the next call; nullptr if the file
  // cannot be read or the codec failed.
  const std::string* Get(std::string_view path, const CachedFile& f, Coding c, int level);

  size_t entries() const { return map_.size(); }
  uint64_t bytes() const { return bytes_; }
  uint64_t compressions() const { return compressions_; }

  // The worker's cache of listener `l` (sized by its compression.cache_bytes).
  static CompressedFiles& For(const ListenerConf& l);

 private:
  struct Entry {
    std::string key;  // path, '\0', the coding
    dev_t dev = 0;
    ino_t ino = 0;
    uint64_t size = 0;
    timespec mtime{}, ctime{};
    std::string body;
    uint64_t Cost() const { return body.size() + key.size() + 128; }
  };
  using List = std::list<Entry>;
  bool Read(const CachedFile& f, std::string* out);

  uint64_t max_bytes_;
  uint64_t bytes_ = 0;
  uint64_t compressions_ = 0;
  List lru_;                                                  // most recently used first
  std::unordered_map<std::string_view, List::iterator> map_;  // views of Entry::key
  std::string scratch_, source_;
};

}  // namespace pf::http
