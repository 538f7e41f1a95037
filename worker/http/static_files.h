// worker/http/static_files.h: GET and HEAD of files under a listener's
// docroot through the per-worker open-file cache (filecache.h): validators
// and 304s, single byte ranges, directory redirects, index files and
// listings (docs/http.md, "Static files").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "shared/config.h"
#include "worker/http/parse.h"
#include "worker/http/reply.h"

namespace pf::http {

// `now_ms` is monotonic (the cache's clock); `path` is a buffer the caller
// keeps (the normalised path; it outlives the reply).
void ServeStatic(const ListenerConf& l, const Request& req, std::string_view raw_path,
                 std::string_view query, uint64_t now_ms, std::string* path, Reply* rep);

}  // namespace pf::http
