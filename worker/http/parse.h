// worker/http/parse.h: HTTP/1.x request framing on top of llhttp (resumable,
// any chunking, pipelining) with preforkd's limits, and the request-target
// helpers (percent-decoding, dot-segment removal, query parsing). No libevent
// here, so the fuzz target builds it alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pf::http {

struct Request {
  std::string method;  // as sent ("GET")
  std::string target;  // request-target as sent ("/a%20b?x=1")
  int major = 1, minor = 1;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  bool keep_alive = true;  // what the request asks for (version + Connection)
  // CONNECT, or an Upgrade request: what follows the head is not HTTP we
  // parse, so the connection closes after the answer.
  bool upgrade = false;

  // First value of a header (name lower-case), nullptr if absent.
  const std::string* Header(std::string_view name) const;
};

struct ParseLimits {
  size_t max_head_bytes = 64 * 1024;  // request line + headers → 431 (414 for the URI alone)
  size_t max_uri_bytes = 64 * 1024;
  size_t max_body_bytes = 8 << 20;  // → 413
};

// One parser per connection. Feed() consumes bytes up to the end of the first
// complete request it finds (so pipelined requests come out one at a time).
class RequestParser {
 public:
  enum class Result { kNeedMore, kRequest, kError };

  explicit RequestParser(const ParseLimits& lim);
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Parses data[0..len). *consumed = bytes used. kRequest: request() holds a
  // complete request, call Next() before feeding again. kError: error_status()
  // says what to answer; the connection must close after it.
  Result Feed(const char* data, size_t len, size_t* consumed);
  Request& request() { return req_; }
  void Next();
  // Between requests: frees the strings and the header table Next() keeps
  // for reuse (the connection is idle).
  void Release();
  int error_status() const { return error_status_; }
  const char* error_reason() const { return error_reason_; }
  // True once the first byte of a request has been seen and until Next().
  bool in_request() const { return started_; }
  bool head_done() const { return head_done_; }

 private:
  struct Impl;
  friend struct Impl;
  int Fail(int status, const char* why);

  ParseLimits lim_;
  std::unique_ptr<Impl> impl_;
  Request req_;
  std::string field_, value_;
  bool started_ = false;
  bool head_done_ = false;
  bool url_done_ = false;
  bool complete_ = false;
  size_t head_bytes_ = 0;
  std::string te_;  // Transfer-Encoding value(s), lower-cased
  bool host_seen_ = false;
  // The head as sent, checked byte by byte for what llhttp 8 lets through
  // (ScanHead): CRLF line ends only, no obsolete line folding, a request line
  // of exactly three parts.
  struct HeadScan {
    char prev = '\n';     // the byte before (a request starts a line)
    uint32_t line = 0;    // 0 = the request line
    uint32_t spaces = 0;  // in the request line
    bool line_empty = true;
    bool in_name = true;           // a header line: its colon not seen yet
    bool done = false;             // the blank line ending the head was seen (or a defect)
    const char* defect = nullptr;  // what is wrong at the end of the bytes scanned
  } scan_;
  // Scans the head bytes in [data, data+len); returns how many are clean
  // (len, or the offset of the first defect, recorded in scan_.defect).
  size_t ScanHead(const char* data, size_t len);
  int error_status_ = 0;
  const char* error_reason_ = "";
};

// Decodes %XX in `s`. Returns false on a bad escape or a NUL (decoded or raw).
// `plus_is_space`: query-string rules ('+' → ' ').
bool PercentDecode(std::string_view s, std::string* out, bool plus_is_space = false);

// Splits a request-target into path and query (origin-form only; an
// absolute-form "http://host/p" is reduced to its path). Returns false if the
// target is not a path.
bool SplitTarget(std::string_view target, std::string_view* path, std::string_view* query);

// Percent-decodes `raw_path` and resolves "." and ".." segments and repeated
// slashes (RFC 3986 5.2.4, never above "/"). Result starts with "/"; a
// trailing "/" is kept. Returns 0 or the status to answer (400).
int NormalizePath(std::string_view raw_path, std::string* out);

// Value of `name` in an application/x-www-form-urlencoded query, decoded.
std::optional<std::string> QueryParam(std::string_view query, std::string_view name);

}  // namespace pf::http
