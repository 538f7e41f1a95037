// worker/http/compress.cc: see compress.h. The codecs are Debian's
// libdeflate (gzip) and libbrotlienc; nothing here encodes by hand.
#include "worker/http/compress.h"

#include <brotli/encode.h>
#include <libdeflate.h>
#include <strings.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <memory>

#include "worker/http/filecache.h"

namespace pf::http {
namespace {

// Work buffers up to this size are kept for the next response; larger ones
// (a body near max_length) are freed after use, so one large response does
// not pin megabytes in every worker.
constexpr size_t kKeptBufferBytes = 1u << 20;

struct DeflateCompressorFree {
  void operator()(libdeflate_compressor* c) const { libdeflate_free_compressor(c); }
};

// One libdeflate compressor per level, made on first use and kept for the
// worker's life (each holds its hash tables: about 100 KiB to 1 MiB).
libdeflate_compressor* GzipCompressorFor(int level) {
  static std::array<std::unique_ptr<libdeflate_compressor, DeflateCompressorFree>, 13> by_level;
  if (level < 1 || level > 12) return nullptr;
  auto& c = by_level[static_cast<size_t>(level)];
  if (!c) c.reset(libdeflate_alloc_compressor(level));
  return c.get();
}

// Whether the header text holds a Content-Encoding line (the route set one).
bool HasContentEncoding(std::string_view headers) {
  static constexpr std::string_view kName = "content-encoding:";
  size_t line = 0;
  while (line < headers.size()) {
    const size_t end = headers.find("\r\n", line);
    const std::string_view l =
        headers.substr(line, end == std::string_view::npos ? end : end - line);
    if (l.size() >= kName.size() && strncasecmp(l.data(), kName.data(), kName.size()) == 0)
      return true;
    if (end == std::string_view::npos) break;
    line = end + 2;
  }
  return false;
}

}  // namespace

bool Compress(Coding c, int level, std::string_view in, std::string* out) {
  if (c == Coding::kGzip) {
    libdeflate_compressor* z = GzipCompressorFor(level);
    if (!z) return false;
    out->resize(libdeflate_gzip_compress_bound(z, in.size()));
    const size_t n = libdeflate_gzip_compress(z, in.data(), in.size(), out->data(), out->size());
    if (n == 0) return false;
    out->resize(n);
    return true;
  }
  if (c == Coding::kBrotli) {
    if (level < BROTLI_MIN_QUALITY || level > BROTLI_MAX_QUALITY) return false;
    size_t n = BrotliEncoderMaxCompressedSize(in.size());
    if (n == 0) return false;  // the input is too large for one call
    out->resize(n);
    // The window need not be larger than the input (less memory for small bodies).
    int lgwin = BROTLI_MIN_WINDOW_BITS;
    while (lgwin < BROTLI_DEFAULT_WINDOW && (size_t{1} << lgwin) - 16 < in.size()) lgwin++;
    if (!BrotliEncoderCompress(level, lgwin, BROTLI_MODE_TEXT, in.size(),
                               reinterpret_cast<const uint8_t*>(in.data()), &n,
                               reinterpret_cast<uint8_t*>(out->data())))
      return false;
    out->resize(n);
    return true;
  }
  return false;
}

AcceptEncoding AcceptOf(const Request& req) {
  AcceptEncoding ae;
  for (const auto& [name, value] : req.headers)
    if (name == "accept-encoding") ae.Add(value);
  return ae;
}

bool CompressibleBody(const CompressionConf& z, std::string_view content_type, uint64_t len) {
  if (!z.enabled() || len < z.min_length || len > z.max_length || len == 0) return false;
  const std::string media = MediaType(content_type);
  return TypeListed(z.types, media) && !AlreadyCompressedType(media);
}

std::string VariantEtag(std::string_view etag, Coding c) {
  std::string out(etag);
  const std::string suffix = std::string("-") + CodingName(c);
  if (!out.empty() && out.back() == '"')
    out.insert(out.size() - 1, suffix);
  else
    out += suffix;
  return out;
}

void CompressReply(const CompressionConf& z, const Request& req, Reply* rep) {
  if (rep->file || rep->cached_body || !rep->has_length || rep->status < 200 ||
      rep->status == 206 || rep->status == 204 || rep->status == 304)
    return;
  if (!CompressibleBody(z, rep->content_type, rep->body.size())) return;
  if (HasContentEncoding(rep->headers) || HasContentEncoding(rep->fixed_headers)) return;
  rep->headers += "Vary: Accept-Encoding\r\n";
  const Coding c = AcceptOf(req).Choose(z.gzip, z.brotli);
  if (c == Coding::kIdentity) return;
  static std::string packed;  // reused by every response of this (single-threaded) worker
  const int level = static_cast<int>(c == Coding::kGzip ? z.gzip_level : z.brotli_level);
  const bool smaller = Compress(c, level, rep->body, &packed) && packed.size() < rep->body.size();
  if (smaller) rep->body.swap(packed);
  if (packed.capacity() > kKeptBufferBytes) std::string().swap(packed);  // keep no large buffer
  if (!smaller) return;
  rep->headers += "Content-Encoding: ";
  rep->headers += CodingName(c);
  rep->headers += "\r\n";
}

CompressedFiles& CompressedFiles::For(const ListenerConf& l) {
  // Per listener: each has its own budget. Workers are single-threaded.
  static std::unordered_map<const ListenerConf*, std::unique_ptr<CompressedFiles>> caches;
  auto& c = caches[&l];
  if (!c) c = std::make_unique<CompressedFiles>(l.compression.cache_bytes);
  return *c;
}

bool CompressedFiles::Read(const CachedFile& f, std::string* out) {
  if (f.in_memory) {
    out->assign(f.body);
    return true;
  }
  if (f.fd < 0) return false;
  out->resize(f.size);
  size_t got = 0;
  while (got < f.size) {
    const ssize_t n = pread(f.fd, out->data() + got, f.size - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // an error, or truncated under us: serve identity
    got += static_cast<size_t>(n);
  }
  return true;
}

const std::string* CompressedFiles::Get(std::string_view path, const CachedFile& f, Coding c,
                                        int level) {
  std::string key(path);
  key += '\0';
  key += static_cast<char>('0' + static_cast<int>(c));
  auto same = [&](const Entry& e) {
    return e.dev == f.dev && e.ino == f.ino && e.size == f.size &&
           e.mtime.tv_sec == f.mtime.tv_sec && e.mtime.tv_nsec == f.mtime.tv_nsec &&
           e.ctime.tv_sec == f.ctime.tv_sec && e.ctime.tv_nsec == f.ctime.tv_nsec;
  };
  // The last request's result is no longer in use: a large one is not kept.
  if (scratch_.capacity() > kKeptBufferBytes) std::string().swap(scratch_);
  if (auto it = map_.find(key); it != map_.end()) {
    const List::iterator node = it->second;
    if (!f.racy && same(*node)) {
      if (node != lru_.begin()) lru_.splice(lru_.begin(), lru_, node);
      return &node->body;
    }
    bytes_ -= node->Cost();
    map_.erase(it);
    lru_.erase(node);
  }
  const std::string_view src = f.in_memory ? std::string_view(f.body) : std::string_view();
  if (!f.in_memory && !Read(f, &source_)) return nullptr;
  compressions_++;
  if (!Compress(c, level, f.in_memory ? src : std::string_view(source_), &scratch_)) return nullptr;
  if (source_.capacity() > kKeptBufferBytes) std::string().swap(source_);  // keep no large buffer
  const uint64_t cost = scratch_.size() + key.size() + 128;
  if (f.racy || cost > max_bytes_) return &scratch_;
  lru_.emplace_front();
  Entry& e = lru_.front();
  e.key = std::move(key);
  e.dev = f.dev;
  e.ino = f.ino;
  e.size = f.size;
  e.mtime = f.mtime;
  e.ctime = f.ctime;
  e.body = scratch_;
  e.body.shrink_to_fit();
  map_.emplace(e.key, lru_.begin());
  bytes_ += e.Cost();
  while (bytes_ > max_bytes_ && lru_.size() > 1) {
    Entry& old = lru_.back();
    bytes_ -= old.Cost();
    map_.erase(old.key);
    lru_.pop_back();
  }
  return &e.body;
}

}  // namespace pf::http
