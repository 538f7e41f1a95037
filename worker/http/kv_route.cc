// worker/http/kv_route.cc: /kv through the command table (kv_route.h).
#include "worker/http/kv_route.h"

#include <strings.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "shared/util/clock.h"
#include "shared/util/strings.h"
#include "worker/cmd_env.h"
#include "worker/connection.h"
#include "worker/json.h"
#include "worker/security.h"
#include "worker/worker.h"

namespace pf::http {
namespace {

// Longest ttl a PUT takes (seconds): 100 years.
constexpr uint64_t kMaxTtlSeconds = 100ull * 365 * 86400;
// A listing page: SCAN calls until `count` keys matched, the scan ended, or
// the calls visited about kMaxScanBuckets buckets (a sparse prefix may then
// return fewer keys with a non-zero cursor, as Redis SCAN does). The first
// call visits kFirstScanStep buckets and each next one twice as many, so a
// page is at most a handful of SCAN calls in INFO commandstats.
constexpr uint64_t kDefaultCount = 100, kMaxCount = 10000;
constexpr uint64_t kFirstScanStep = 1024, kMaxScanBuckets = 256 * 1024;

// An ErrCode as an HTTP status (the body is the error page).
int StatusOf(ErrCode code) {
  switch (code) {
    case ErrCode::kNoAuth:
    case ErrCode::kWrongPass:
      return 401;
    case ErrCode::kTooLarge:
      return 413;
    case ErrCode::kOom:
      return 507;
    case ErrCode::kMisconf:
      return 503;
    case ErrCode::kRateLimited:
      return 429;
    case ErrCode::kInternal:
    case ErrCode::kUnknownCommand:
      return 500;
    default:
      return 400;
  }
}

// The reply of one command, as /kv needs it: the first value at the top
// (a bulk, nil, an integer or "OK"), the bulks of nested arrays (SCAN's
// cursor, then its keys), or an error.
class CaptureWriter final : public ReplyWriter {
 public:
  explicit CaptureWriter(std::string* bulk) : bulk_(bulk) {}
  void Status(std::string_view) override { Top(kStatus); }
  void Error(ErrCode code, std::string_view) override {
    if (kind == kError) return;  // the first error is the answer
    kind = kError;
    error = code;
  }
  void Integer(int64_t v) override {
    if (Top(kInteger)) integer = v;
  }
  void Bulk(std::string_view v) override {
    if (depth_ > 0) {
      if (!cursor_seen_) {
        cursor.assign(v);
        cursor_seen_ = true;
      } else {
        items.emplace_back(v);
      }
      return;
    }
    if (Top(kBulk)) bulk_->assign(v);
  }
  void BulkTake(std::string* v) override {
    if (depth_ == 0 && Top(kBulk))
      bulk_->swap(*v);
    else
      Bulk(*v);
  }
  void Nil() override { Top(kNil); }
  void NilArray() override { Top(kNil); }
  void ArrayBegin(size_t) override {
    depth_++;
    Top(kArray);
  }

  enum Kind { kNone, kStatus, kError, kInteger, kBulk, kNil, kArray } kind = kNone;
  ErrCode error = ErrCode::kErr;
  int64_t integer = 0;
  std::string cursor;
  std::vector<std::string> items;

 private:
  bool Top(Kind k) {
    if (kind != kNone) return false;
    kind = k;
    return true;
  }
  std::string* bulk_;
  int depth_ = 0;
  bool cursor_seen_ = false;
};

// The command's error as the response (401 asks for credentials).
void ErrorOf(ErrCode code, Reply* rep) {
  ErrorReply(StatusOf(code), rep);
  if (rep->status == 401) rep->headers += "WWW-Authenticate: Basic realm=\"preforkd\"\r\n";
}

// A namespace prefix inside a glob pattern: the glob's special characters escaped.
void AppendGlobLiteral(std::string* out, std::string_view s) {
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out->push_back('\\');
    out->push_back(c);
  }
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

}  // namespace

KvRoute::KvRoute(const ListenerConf& l, WorkerContext& w) : l_(l), w_(w) {}

// RFC 7617 Basic (the user name is not checked: the one user is "default",
// as Redis 6's AUTH default <password>) or RFC 6750 Bearer.
bool KvRoute::Authorized(const Request& req) const {
  const std::string* h = req.Header("authorization");
  if (!h) return false;
  const std::string_view v = TrimSpaces(*h);
  const size_t sp = v.find(' ');
  if (sp == std::string_view::npos) return false;
  const std::string_view scheme = v.substr(0, sp), cred = TrimSpaces(v.substr(sp + 1));
  if (EqualsNoCase(scheme, "bearer")) return CheckDefaultUser(w_.config, "default", cred);
  if (!EqualsNoCase(scheme, "basic")) return false;
  std::string decoded;
  if (!json::DecodeBase64(cred, &decoded)) return false;
  const size_t colon = decoded.find(':');
  if (colon == std::string::npos) return false;
  return CheckDefaultUser(w_.config, "default", std::string_view(decoded).substr(colon + 1));
}

bool KvRoute::Call(std::span<const std::string_view> argv, ReplyWriter& out, Reply* rep) {
  if (uint64_t until = 0; CommandPaused(*env_, session_, argv, &until)) {
    const uint64_t now = MonoMs(), wait = until > now ? until - now : 0;
    ErrorReply(503, rep);
    rep->headers +=
        "Retry-After: " + std::to_string(std::max<uint64_t>(1, (wait + 999) / 1000)) + "\r\n";
    return false;
  }
  Dispatch(*env_, session_, argv, out, WallMs());
  return true;
}

// HTTP is stateless: every request brings its own credentials. Wrong ones
// count toward limits.auth_failures_per_minute of the client's address, as
// a wrong AUTH does; past it they are not even checked (429).
bool KvRoute::Authenticate(const Request& req, const IpAddr& client, bool basic_user, Reply* rep) {
  session_.authenticated = basic_user;
  if (basic_user || w_.config->kv.password.empty() || !req.Header("authorization")) return true;
  if (AuthThrottled(w_, client)) {
    ErrorReply(429, rep);
    return false;
  }
  session_.authenticated = Authorized(req);
  NoteAuthResult(w_, client, session_.authenticated, "/kv credentials");
  return true;
}

void KvRoute::Serve(const Connection& c, const Request& req, std::string_view rest,
                    std::string_view query, const IpAddr& client, bool basic_user, Reply* rep) {
  if (!w_.store) return ErrorReply(503, rep);
  if (!started_) {
    started_ = true;
    env_ = &ListenerCommandEnv(w_, l_, kProtoHttp);
    FillClientSession(c, &session_);
  }
  if (!Authenticate(req, client, basic_user, rep)) return;
  if (!rest.empty()) rest.remove_prefix(1);  // the '/' after /kv
  std::vector<std::string_view> segs;
  while (true) {
    const size_t slash = rest.find('/');
    segs.push_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  std::string a, b;
  if (segs.size() > 2 || !PercentDecode(segs[0], &a) ||
      (segs.size() == 2 && !PercentDecode(segs[1], &b)))
    return ErrorReply(400, rep);
  if (segs.size() == 1 && a.empty()) return List(req, "", query, rep);
  if (segs.size() == 2 && b.empty()) {
    if (a.empty()) return ErrorReply(400, rep);
    return List(req, a + "^", query, rep);
  }
  if (a.empty()) return ErrorReply(400, rep);
  const std::string key = segs.size() == 2 ? a + "^" + b : a;

  if (req.method == "GET" || req.method == "HEAD") {
    CaptureWriter out(&rep->body);
    const std::string_view argv[] = {"GET", key};
    if (!Call(argv, out, rep)) return;
    if (out.kind == CaptureWriter::kError) return ErrorOf(out.error, rep);
    if (out.kind != CaptureWriter::kBulk) return ErrorReply(404, rep);
    rep->status = 200;
    rep->content_type = "application/octet-stream";
    return;
  }
  if (req.method == "PUT") {
    std::string ttl_text;
    if (auto ttl = QueryParam(query, "ttl")) {
      uint64_t secs = 0;
      if (!ParseU64(*ttl, &secs) || secs == 0 || secs > kMaxTtlSeconds) return ErrorReply(400, rep);
      ttl_text = std::to_string(secs);
    }
    // GET: the old value tells 201 Created from 204 (replaced).
    std::string old;
    CaptureWriter out(&old);
    std::vector<std::string_view> argv = {"SET", key, req.body};
    if (!ttl_text.empty()) {
      argv.push_back("EX");
      argv.push_back(ttl_text);
    }
    argv.push_back("GET");
    if (!Call(argv, out, rep)) return;
    if (out.kind == CaptureWriter::kError) return ErrorOf(out.error, rep);
    const bool had_old = out.kind == CaptureWriter::kBulk;
    rep->status = had_old ? 204 : 201;
    rep->has_length = !had_old;
    if (!had_old)
      rep->headers =
          "Location: " + std::string(req.target.substr(0, req.target.find('?'))) + "\r\n";
    return;
  }
  if (req.method == "DELETE") {
    std::string unused;
    CaptureWriter out(&unused);
    const std::string_view argv[] = {"DEL", key};
    if (!Call(argv, out, rep)) return;
    if (out.kind == CaptureWriter::kError) return ErrorOf(out.error, rep);
    if (out.kind != CaptureWriter::kInteger || out.integer == 0) return ErrorReply(404, rep);
    rep->status = 204;
    rep->has_length = false;
    return;
  }
  ErrorReply(405, rep);
  rep->headers = "Allow: GET, HEAD, PUT, DELETE\r\n";
}

// GET /kv/?prefix=P&cursor=C&count=N: SCAN with MATCH on the prefix,
// resumable with the returned cursor ("0" = done). Keys that are valid
// UTF-8 go in "keys"; others, base64-encoded, in "keys_b64".
void KvRoute::List(const Request& req, std::string_view ns_prefix, std::string_view query,
                   Reply* rep) {
  if (req.method != "GET" && req.method != "HEAD") return ErrorReply(405, rep);
  std::string pattern;
  AppendGlobLiteral(&pattern, ns_prefix);
  AppendGlobLiteral(&pattern, QueryParam(query, "prefix").value_or(""));
  if (!pattern.empty()) pattern += '*';
  uint64_t cursor = 0, count = kDefaultCount;
  if (auto cs = QueryParam(query, "cursor"); cs && !ParseU64(*cs, &cursor))
    return ErrorReply(400, rep);
  if (auto n = QueryParam(query, "count"); n && (!ParseU64(*n, &count) || count == 0))
    return ErrorReply(400, rep);
  count = std::min(count, kMaxCount);
  std::vector<std::string> keys;
  std::string next = std::to_string(cursor);
  uint64_t visited = 0;
  for (uint64_t step = kFirstScanStep; visited < kMaxScanBuckets && keys.size() < count;
       step *= 2) {
    step = std::min(step, kMaxScanBuckets - visited);
    visited += step;
    std::string unused;
    CaptureWriter out(&unused);
    const std::string step_text = std::to_string(step);
    std::vector<std::string_view> argv = {"SCAN", next, "COUNT", step_text};
    if (!pattern.empty()) {
      argv.push_back("MATCH");
      argv.push_back(pattern);
    }
    if (!Call(argv, out, rep)) return;
    if (out.kind == CaptureWriter::kError) return ErrorOf(out.error, rep);
    for (std::string& k : out.items) keys.push_back(std::move(k));
    next = std::move(out.cursor);
    if (next == "0") break;
  }
  std::string body = "{\"keys\":[";
  std::string b64;
  bool first = true, first_b64 = true;
  for (const std::string& k : keys) {
    if (json::IsUtf8(k)) {
      if (!first) body += ',';
      json::AppendJsonString(&body, k);
      first = false;
    } else {
      if (!first_b64) b64 += ',';
      b64 += '"';
      json::AppendBase64(&b64, k);
      b64 += '"';
      first_b64 = false;
    }
  }
  body += "],\"keys_b64\":[" + b64 + "],\"cursor\":\"" + next + "\"}\n";
  rep->status = 200;
  rep->content_type = "application/json";
  rep->body = std::move(body);
}

}  // namespace pf::http
