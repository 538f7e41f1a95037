// worker/http/reply.h: one HTTP response on its way out, as the routes
// (static files, /kv, the operations endpoints) fill it and the session
// sends it; and the nginx-style error page every route answers errors with.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace pf::http {

struct CachedFile;

struct Reply {
  int status = 200;
  std::string_view
      fixed_headers;    // header lines that outlive the reply (a cached file's validators)
  std::string headers;  // extra header lines, each ending "\r\n"
  std::string_view content_type;             // a literal, or the MIME table's
  std::string body;                          // in-memory body, or
  const std::string* cached_body = nullptr;  // bytes a cache keeps (valid during this request), or
  const CachedFile* file = nullptr;          // a range of a cached file (valid during this request)
  uint64_t file_off = 0, file_len = 0;
  bool has_length = true;  // false for 1xx/204/304: no Content-Length, no body
};

// The status with preforkd's HTML error page (and `Allow` for a 405).
void ErrorReply(int status, Reply* rep);

}  // namespace pf::http
