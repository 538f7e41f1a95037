// worker/proto_http.cc: the http protocol: HTTP/1.0 and 1.1 with keep-alive
// and pipelining, static files from the listener's docroot (sendfile), the
// store as REST (/kv/...), the operations endpoints (/_health, /_stats,
// /_metrics) and the admin endpoint (/_admin/broadcast). Parsing is llhttp's
// (http_parse.h); docs/http.md is the spec.
#include <dirent.h>
#include <fcntl.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "shared/config.h"
#include "shared/persist.h"
#include "shared/kv.h"
#include "shared/shm.h"
#include "worker/access_log.h"
#include "worker/connection.h"
#include "worker/http_filecache.h"
#include "worker/http_ops.h"
#include "worker/http_parse.h"
#include "worker/http_util.h"
#include "worker/kvjson.h"
#include "worker/protocol.h"
#include "worker/worker.h"

namespace pf {
namespace {

using http::Request;
using http::UniqueFd;

bool IsLoopback(std::string_view peer) {
  return peer.substr(0, 4) == "127." || peer.substr(0, 6) == "[::1]:" ||
         peer.substr(0, 15) == "[::ffff:127.0.0";
}

std::string EscapeLogField(std::string_view s) {
  std::string out;
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f) {
      out += fmt::format("\\x{:02X}", ch);
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out;
}


void AppendUint(std::string* s, uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  s->append(buf, r.ptr);
}

// Queues head and body as one contiguous chunk: one writev, one packet for a
// small response.
void AddResponse(evbuffer* out, std::string_view head, std::string_view body) {
  const size_t total = head.size() + body.size();
  evbuffer_iovec v;
  if (evbuffer_reserve_space(out, static_cast<ev_ssize_t>(total), &v, 1) == 1 && v.iov_len >= total) {
    char* p = static_cast<char*>(v.iov_base);
    std::memcpy(p, head.data(), head.size());
    if (!body.empty()) std::memcpy(p + head.size(), body.data(), body.size());
    v.iov_len = total;
    if (evbuffer_commit_space(out, &v, 1) == 0) return;
  }
  evbuffer_add(out, head.data(), head.size());
  evbuffer_add(out, body.data(), body.size());
}

// One response on its way out: what the access log and the counters need.
struct Reply {
  int status = 200;
  std::string_view fixed_headers;  // header lines that outlive the reply (a cached file's validators)
  std::string headers;        // extra header lines, each ending "\r\n"
  std::string_view content_type;  // a literal, or the MIME table's
  std::string body;           // in-memory body, or
  const http::CachedFile* file = nullptr;  // a range of a cached file (valid during this request)
  uint64_t file_off = 0, file_len = 0;
  bool has_length = true;     // false for 1xx/204/304: no Content-Length, no body
};

class HttpSession final : public Session {
 public:
  HttpSession(const ListenerConf& l, WorkerContext& w)
      : l_(l), w_(w), parser_(LimitsFor(w.config->limits)) {
    accesslog::Init(w.config->logging.access_log, w.base);
  }

  void OnConnect(Connection& c) override { conn_ = &c; }

  void OnRead(Connection& c, evbuffer* in) override {
    const LimitsConf& lim = w_.config->limits;
    while (!c.closing()) {
      // Pipelined requests wait while the output is above the high-water
      // mark; the connection calls OnRead again once it drains.
      if (c.output_pending() > lim.output_high_water) break;
      evbuffer_iovec v;
      if (evbuffer_peek(in, -1, nullptr, &v, 1) < 1 || v.iov_len == 0) break;
      if (!parser_.in_request()) start_ms_ = WorkerContext::MonoMs();
      size_t used = 0;
      const auto r = parser_.Feed(static_cast<const char*>(v.iov_base), v.iov_len, &used);
      evbuffer_drain(in, used);
      if (r == http::RequestParser::Result::kError) {
        evbuffer_drain(in, evbuffer_get_length(in));
        SendError(c, parser_.error_status(), /*force_close=*/true);
        return;
      }
      if (r == http::RequestParser::Result::kRequest) {
        Handle(c, parser_.request());
        parser_.Next();
        continue;
      }
      if (parser_.head_done() && !continue_sent_) {
        continue_sent_ = true;
        const std::string* expect = parser_.request().Header("expect");
        if (expect && strcasecmp(expect->c_str(), "100-continue") == 0 && parser_.request().minor == 1)
          c.Write("HTTP/1.1 100 Continue\r\n\r\n");
      }
      if (used == 0) break;
    }
  }

  void OnDrain(Connection&) override {
    // The next response says "Connection: close"; an idle connection stays
    // until the drain timeout (closing it now races with a request in flight).
    draining_ = true;
  }

  uint32_t TimeoutMs(const WorkerContext& w) const override {
    const TimeoutsConf& t = w.config->timeouts;
    if (conn_ && conn_->output_pending() > 0) return t.idle_ms;
    if (parser_.in_request()) {
      if (parser_.head_done()) return t.header_ms;  // body: inactivity limit
      if (!t.header_ms) return 0;
      // The head has a deadline from its first byte, however slowly it trickles.
      const uint64_t deadline = start_ms_ + t.header_ms;
      const uint64_t last = conn_ ? conn_->last_activity_ms() : start_ms_;
      return deadline > last ? static_cast<uint32_t>(deadline - last) : 1;
    }
    return requests_ == 0 ? t.header_ms : t.keepalive_ms;
  }

  void OnTimeout(Connection& c) override {
    if (parser_.in_request() && c.output_pending() == 0) {
      SendError(c, 408, /*force_close=*/true);
      return;
    }
    c.Close(parser_.in_request() ? "send timeout" : "keep-alive timeout");
  }

 private:
  static http::ParseLimits LimitsFor(const LimitsConf& lim) {
    http::ParseLimits p;
    p.max_head_bytes = lim.max_line_bytes;
    p.max_uri_bytes = lim.max_line_bytes;
    p.max_body_bytes = lim.max_request_bytes;
    return p;
  }

  // ---- dispatch -----------------------------------------------------------

  void Handle(Connection& c, const Request& req) {
    requests_++;
    continue_sent_ = false;
    w_.counters->requests[kProtoHttp].Add(1);
    req_ = &req;
    head_ = req.method == "HEAD";
    Reply rep;
    try {
      Route(c, req, &rep);
    } catch (const std::exception& e) {
      spdlog::error("http {}: {} {}: {}", c.peer(), req.method, req.target, e.what());
      rep = Reply{};
      ErrorReply(500, &rep);
    }
    Send(c, &rep, false);
    req_ = nullptr;
  }

  void Route(Connection& c, const Request& req, Reply* rep) {
    if (req.minor == 1 && !req.Header("host")) return ErrorReply(400, rep);
    std::string_view raw_path, query;
    if (!http::SplitTarget(req.target, &raw_path, &query)) return ErrorReply(400, rep);
    if (raw_path == "/kv" || raw_path.substr(0, 4) == "/kv/") return ServeKv(req, raw_path.substr(3), query, rep);
    if (raw_path == "/_health" || raw_path == "/_stats" || raw_path == "/_metrics")
      return ServeOps(c, req, raw_path, rep);
    if (raw_path == "/_admin" || raw_path.substr(0, 8) == "/_admin/")
      return ServeAdmin(c, req, raw_path, query, rep);
    ServeStatic(req, raw_path, query, rep);
  }

  // ---- responses ----------------------------------------------------------

  static void ErrorReply(int status, Reply* rep) {
    rep->status = status;
    rep->content_type = "text/html";
    rep->body = fmt::format(
        "<html>\r\n<head><title>{0} {1}</title></head>\r\n<body>\r\n<center><h1>{0} {1}</h1></center>\r\n"
        "<hr><center>preforkd</center>\r\n</body>\r\n</html>\r\n",
        status, http::StatusText(status));
    if (status == 405) rep->headers += "Allow: GET, HEAD\r\n";
  }

  void SendError(Connection& c, int status, bool force_close) {
    Reply rep;
    ErrorReply(status, &rep);
    Send(c, &rep, force_close);
  }

  void Send(Connection& c, Reply* rep, bool force_close) {
    const Request* req = req_;
    const LimitsConf& lim = w_.config->limits;
    // As nginx: a malformed request ends the connection (framing may be lost).
    if (rep->status == 400) force_close = true;
    const bool keep = !force_close && req && req->keep_alive && !draining_ && !w_.draining &&
                      (lim.keepalive_requests == 0 || requests_ < lim.keepalive_requests);
    const bool head = req && head_;
    // The head is built in one buffer reused by every response of this
    // (single-threaded) worker: no allocation once it has grown.
    static std::string h;
    h.clear();
    if (rep->status == 200) {
      h += "HTTP/1.1 200 OK\r\n";
    } else {
      h += "HTTP/1.1 ";
      AppendUint(&h, static_cast<uint64_t>(rep->status));
      h += ' ';
      h += http::StatusText(rep->status);
      h += "\r\n";
    }
    h += "Server: preforkd\r\nDate: ";
    h += http::DateNow();
    h += "\r\n";
    const http::CachedFile* f = rep->file;
    const uint64_t len = f ? rep->file_len : rep->body.size();
    if (!rep->content_type.empty() && rep->has_length) {
      h += "Content-Type: ";
      h += rep->content_type;
      h += "\r\n";
    }
    if (rep->has_length) {
      if (f && rep->file_off == 0 && len == f->size) {
        h += f->content_length;
      } else {
        h += "Content-Length: ";
        AppendUint(&h, len);
        h += "\r\n";
      }
    }
    h += rep->fixed_headers;
    h += rep->headers;
    if (!keep) h += "Connection: close\r\n";
    else if (req->minor == 0) h += "Connection: keep-alive\r\n";
    h += "\r\n";
    evbuffer* out = c.output();
    const bool body = !head && rep->has_length && len > 0;
    uint64_t body_sent = body ? len : 0;
    if (!body) {
      evbuffer_add(out, h.data(), h.size());
    } else if (!f) {
      AddResponse(out, h, rep->body);
    } else if (f->in_memory) {
      AddResponse(out, h, std::string_view(f->body).substr(rep->file_off, len));
    } else {
      evbuffer_add(out, h.data(), h.size());
      if (evbuffer_add_file_segment(out, f->segment, static_cast<ev_off_t>(rep->file_off),
                                    static_cast<ev_off_t>(len)) != 0) {
        c.Close("cannot queue file");
        return;
      }
    }
    w_.counters->http_status[std::clamp(rep->status / 100, 1, 5)].Add(1);
    Log(c, rep->status, body_sent);
    if (!keep) c.CloseAfterWrite();
  }

  void Log(const Connection& c, int status, uint64_t body_bytes) {
    if (!accesslog::Enabled()) return;
    const Request* req = req_;
    if (!req && parser_.in_request()) req = &parser_.request();
    std::string_view addr = c.peer();
    if (const size_t colon = addr.rfind(':'); colon != std::string_view::npos) addr = addr.substr(0, colon);
    if (addr.size() > 2 && addr.front() == '[') addr = addr.substr(1, addr.size() - 2);
    std::string line_req;
    const std::string* referer = nullptr;
    const std::string* ua = nullptr;
    if (req && !req->method.empty()) {
      line_req = fmt::format("{} {} HTTP/{}.{}", req->method, req->target, req->major, req->minor);
      referer = req->Header("referer");
      ua = req->Header("user-agent");
    }
    const uint64_t now = WorkerContext::MonoMs();
    const uint64_t took = now > start_ms_ && start_ms_ ? now - start_ms_ : 0;
    accesslog::Append(fmt::format("{} - - [{}] \"{}\" {} {} \"{}\" \"{}\" {}.{:03}\n", addr,
                                  http::LogTimeNow(), EscapeLogField(line_req), status, body_bytes,
                                  referer ? EscapeLogField(*referer) : "-",
                                  ua ? EscapeLogField(*ua) : "-", took / 1000, took % 1000));
  }

  // ---- static files -------------------------------------------------------

  void ServeStatic(const Request& req, std::string_view raw_path, std::string_view query, Reply* rep) {
    if (req.method != "GET" && req.method != "HEAD") return ErrorReply(405, rep);
    if (http::NormalizePath(raw_path, &path_) != 0) return ErrorReply(400, rep);
    // The connection's last read is "now" for the cache (one clock read less per request).
    const uint64_t now = conn_ ? conn_->last_activity_ms() : WorkerContext::MonoMs();
    http::Resolved r = http::FileCache::Get().Resolve(l_, path_, now);
    if (r.redirect) {
      rep->headers = "Location: " + http::UrlEncodePath(path_) + "/" +
                     (query.empty() ? "" : "?" + std::string(query)) + "\r\n";
      return ErrorReply(301, rep);
    }
    if (r.dir.get() >= 0) return Listing(r.dir.get(), path_, rep);
    if (r.status != 0) return ErrorReply(r.status, rep);
    ServeFile(req, *r.file, rep);
  }

  static void ServeFile(const Request& req, const http::CachedFile& f, Reply* rep) {
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
      switch (http::ParseRange(*range, size, &first, &last)) {
        case http::RangeResult::kNone: break;
        case http::RangeResult::kUnsatisfiable: {
          ErrorReply(416, rep);
          rep->headers += fmt::format("Content-Range: bytes */{}\r\n", size);
          return;
        }
        case http::RangeResult::kSingle:
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

  static bool NotModified(const Request& req, const std::string& etag, time_t mtime) {
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
      const time_t t = http::ParseHttpDate(*ims);
      return t >= 0 && mtime <= t;
    }
    return false;
  }

  void Listing(int dirfd, const std::string& path, Reply* rep) {
    UniqueFd dup_fd(dup(dirfd));
    DIR* d = dup_fd.get() >= 0 ? fdopendir(dup_fd.get()) : nullptr;
    if (!d) return ErrorReply(403, rep);
    dup_fd.release();  // owned by DIR now
    std::vector<std::pair<std::string, bool>> entries;
    while (dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      struct stat st;
      const bool dir = fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
      entries.emplace_back(n, dir);
    }
    closedir(d);
    std::sort(entries.begin(), entries.end());
    const std::string title = http::HtmlEscape(path);
    std::string b = "<html>\r\n<head><title>Index of " + title + "</title></head>\r\n<body>\r\n<h1>Index of " +
                    title + "</h1><hr><pre>\r\n";
    if (path != "/") b += "<a href=\"../\">../</a>\r\n";
    for (const auto& [n, dir] : entries) {
      const std::string shown = n + (dir ? "/" : "");
      b += "<a href=\"" + http::HtmlEscape(http::UrlEncodePath(n)) + (dir ? "/" : "") + "\">" +
           http::HtmlEscape(shown) + "</a>\r\n";
    }
    b += "</pre><hr></body>\r\n</html>\r\n";
    rep->status = 200;
    rep->content_type = "text/html";
    rep->body = std::move(b);
  }

  // ---- /kv ----------------------------------------------------------------

  void ServeKv(const Request& req, std::string_view rest, std::string_view query, Reply* rep) {
    if (!w_.store) return ErrorReply(503, rep);
    if (!rest.empty()) rest.remove_prefix(1);  // the '/' after /kv
    std::vector<std::string_view> segs;
    while (true) {
      const size_t slash = rest.find('/');
      segs.push_back(rest.substr(0, slash));
      if (slash == std::string_view::npos) break;
      rest.remove_prefix(slash + 1);
    }
    std::string a, b;
    if (segs.size() > 2 || !http::PercentDecode(segs[0], &a) ||
        (segs.size() == 2 && !http::PercentDecode(segs[1], &b)))
      return ErrorReply(400, rep);
    if (segs.size() == 1 && a.empty()) return KvList(req, "", query, rep);
    if (segs.size() == 2 && b.empty()) {
      if (a.empty()) return ErrorReply(400, rep);
      return KvList(req, a + "^", query, rep);
    }
    if (a.empty()) return ErrorReply(400, rep);
    const std::string key = segs.size() == 2 ? a + "^" + b : a;
    const uint64_t now = WorkerContext::NowMs();
    if (req.method == "GET" || req.method == "HEAD") {
      std::string value;
      const kv::Status s = w_.store->Get(key, now, &value);
      if (s == kv::Status::kNotFound) return ErrorReply(404, rep);
      if (s != kv::Status::kOk) return KvError(s, rep);
      rep->status = 200;
      rep->content_type = "application/octet-stream";
      rep->body = std::move(value);
      return;
    }
    if ((req.method == "PUT" || req.method == "DELETE") && w_.log && w_.log->failing()) {
      // The append-only log cannot be written: refuse rather than acknowledge a write that could be lost.
      return ErrorReply(503, rep);
    }
    if (req.method == "PUT") {
      kv::SetOptions opt;
      if (auto ttl = http::QueryParam(query, "ttl")) {
        uint64_t secs = 0;
        if (!http::ParseU64(*ttl, &secs) || secs == 0 || secs > 100ull * 365 * 86400) return ErrorReply(400, rep);
        opt.expire_at_ms = static_cast<int64_t>(now + secs * 1000);
      }
      std::string old;
      bool had_old = false;
      const kv::Status s = w_.store->Set(key, req.body, opt, now, &old, &had_old);
      if (s != kv::Status::kOk) return KvError(s, rep);
      rep->status = had_old ? 204 : 201;
      rep->has_length = had_old ? false : true;
      if (!had_old) rep->headers = "Location: " + std::string(req.target.substr(0, req.target.find('?'))) + "\r\n";
      return;
    }
    if (req.method == "DELETE") {
      const kv::Status s = w_.store->Del(key, now);
      if (s == kv::Status::kNotFound) return ErrorReply(404, rep);
      if (s != kv::Status::kOk) return KvError(s, rep);
      rep->status = 204;
      rep->has_length = false;
      return;
    }
    ErrorReply(405, rep);
    rep->headers = "Allow: GET, HEAD, PUT, DELETE\r\n";
  }

  static void KvError(kv::Status s, Reply* rep) {
    switch (s) {
      case kv::Status::kTooLarge: return ErrorReply(413, rep);
      case kv::Status::kOom: return ErrorReply(507, rep);
      default: return ErrorReply(500, rep);
    }
  }

  // GET /kv/?prefix=P&cursor=C&count=N: Store::Scan filtered by prefix,
  // resumable with the returned cursor ("0" = done). Keys that are valid
  // UTF-8 go in "keys"; others, base64-encoded, in "keys_b64".
  void KvList(const Request& req, const std::string& ns_prefix, std::string_view query, Reply* rep) {
    if (req.method != "GET" && req.method != "HEAD") return ErrorReply(405, rep);
    const std::string prefix = ns_prefix + http::QueryParam(query, "prefix").value_or("");
    uint64_t cursor = 0, count = 100;
    if (auto cs = http::QueryParam(query, "cursor"); cs && !http::ParseU64(*cs, &cursor)) return ErrorReply(400, rep);
    if (auto n = http::QueryParam(query, "count"); n && (!http::ParseU64(*n, &count) || count == 0))
      return ErrorReply(400, rep);
    count = std::min<uint64_t>(count, 10000);
    // Scan steps until `count` keys match, the scan ends, or the work bound
    // (kMaxScanSteps steps of kScanStep buckets) is reached: a sparse prefix
    // may then return fewer keys with a non-zero cursor, as Redis SCAN does.
    constexpr size_t kScanStep = 1024, kMaxScanSteps = 256;
    std::vector<std::string> keys, step;
    uint64_t next = cursor;
    const uint64_t now = WorkerContext::NowMs();
    for (size_t i = 0; i < kMaxScanSteps && keys.size() < count; i++) {
      step.clear();
      next = w_.store->Scan(next, kScanStep, now, &step);
      for (auto& k : step)
        if (k.compare(0, prefix.size(), prefix) == 0) keys.push_back(std::move(k));
      if (next == 0) break;
    }
    std::string body = "{\"keys\":[";
    std::string b64 = "";
    bool first = true, first_b64 = true;
    for (const std::string& k : keys) {
      if (kvjson::IsUtf8(k)) {
        if (!first) body += ',';
        kvjson::AppendJsonString(&body, k);
        first = false;
      } else {
        if (!first_b64) b64 += ',';
        b64 += '"';
        kvjson::AppendBase64(&b64, k);
        b64 += '"';
        first_b64 = false;
      }
    }
    body += "],\"keys_b64\":[" + b64 + "],\"cursor\":\"" + std::to_string(next) + "\"}\n";
    rep->status = 200;
    rep->content_type = "application/json";
    rep->body = std::move(body);
  }

  // ---- operations ---------------------------------------------------------

  void ServeOps(const Connection& c, const Request& req, std::string_view path, Reply* rep) {
    if (!l_.ops_allow_all && !IsLoopback(c.peer())) return ErrorReply(403, rep);
    if (req.method != "GET" && req.method != "HEAD") return ErrorReply(405, rep);
    rep->status = 200;
    if (path == "/_metrics") {
      rep->content_type = "text/plain; version=0.0.4; charset=utf-8";
      rep->body = MetricsText(w_);
    } else {
      rep->content_type = "application/json";
      rep->body = path == "/_health" ? HealthJson(w_) : StatsJson(w_);
    }
    rep->headers = "Cache-Control: no-store\r\n";
  }

  // Answers in JSON, errors included (a tool reads them, not a browser).
  void ServeAdmin(const Connection& c, const Request& req, std::string_view path,
                  std::string_view query, Reply* rep) {
    AdminReply a;
    if (!l_.ops_allow_all && !IsLoopback(c.peer()))
      a = AdminError(403, "the admin endpoints answer loopback peers only (ops_allow: loopback)");
    else if (path == "/_admin/broadcast")
      a = AdminBroadcast(w_, req, query, c.peer());
    else
      a = AdminError(404, "no such admin endpoint (there is POST /_admin/broadcast)");
    rep->status = a.status;
    rep->content_type = "application/json";
    rep->body = std::move(a.body);
    rep->headers = std::move(a.headers);
    rep->headers += "Cache-Control: no-store\r\n";
  }

  const ListenerConf& l_;
  WorkerContext& w_;
  Connection* conn_ = nullptr;
  http::RequestParser parser_;
  const Request* req_ = nullptr;  // the request being answered (nullptr for parse errors)
  std::string path_;               // the normalised path of a static request (reused)
  bool head_ = false;
  bool draining_ = false;
  bool continue_sent_ = false;
  uint64_t requests_ = 0;
  uint64_t start_ms_ = 0;          // first byte of the current request
};

}  // namespace

std::unique_ptr<Session> MakeHttpSession(const ListenerConf& l, WorkerContext& w) {
  return std::make_unique<HttpSession>(l, w);
}

}  // namespace pf
