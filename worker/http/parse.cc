// worker/http/parse.cc: llhttp glue (one request at a time: the parser pauses
// at the end of each message) and request-target decoding and normalisation.
#include "worker/http/parse.h"

#include <llhttp.h>

#include <algorithm>
#include <cstring>

namespace pf::http {

const std::string* Request::Header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return &v;
  return nullptr;
}

namespace {

void LowerInPlace(std::string* s) {
  for (char& ch : *s)
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
}

// RFC 3986 host[:port] (no userinfo): an IP literal in brackets, or a
// reg-name / IPv4 address of unreserved, percent-encoded or sub-delim
// characters, then an optional port of digits. Empty is allowed (RFC 9112
// 3.2: a target without an authority sends an empty Host).
bool ValidHost(std::string_view h) {
  size_t i = 0;
  if (!h.empty() && h[0] == '[') {
    const size_t close = h.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (i = 1; i < close; i++) {
      const char c = h[i];
      if (!(isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.')) return false;
    }
    i = close + 1;
  } else {
    for (; i < h.size() && h[i] != ':'; i++) {
      const char c = h[i];
      if (isalnum(static_cast<unsigned char>(c))) continue;
      if (std::strchr("-._~%!$&'()*+,;=", c) == nullptr || c == '\0') return false;
    }
  }
  if (i == h.size()) return true;
  if (h[i] != ':') return false;
  for (i++; i < h.size(); i++)
    if (h[i] < '0' || h[i] > '9') return false;
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

int HexVal(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

}  // namespace

struct RequestParser::Impl {
  llhttp_t parser;
  static const llhttp_settings_t* Settings();  // one table for every connection

  static RequestParser* Self(llhttp_t* p) { return static_cast<RequestParser*>(p->data); }

  static int OnMessageBegin(llhttp_t* p) {
    Self(p)->started_ = true;
    return 0;
  }
  static int OnMethod(llhttp_t* p, const char* at, size_t n) {
    RequestParser* s = Self(p);
    s->started_ = true;
    s->req_.method.append(at, n);
    return 0;
  }
  static int OnUrl(llhttp_t* p, const char* at, size_t n) {
    RequestParser* s = Self(p);
    if (s->req_.target.size() + n > s->lim_.max_uri_bytes) return s->Fail(414, "URI too long");
    s->req_.target.append(at, n);
    return 0;
  }
  static int OnUrlComplete(llhttp_t* p) {
    Self(p)->url_done_ = true;
    return 0;
  }
  static int OnHeaderField(llhttp_t* p, const char* at, size_t n) {
    RequestParser* s = Self(p);
    s->field_.append(at, n);
    return 0;
  }
  static int OnHeaderValue(llhttp_t* p, const char* at, size_t n) {
    RequestParser* s = Self(p);
    s->value_.append(at, n);
    return 0;
  }
  static int OnHeaderValueComplete(llhttp_t* p) {
    RequestParser* s = Self(p);
    LowerInPlace(&s->field_);
    if (s->field_ == "host") {
      if (s->host_seen_) return s->Fail(400, "more than one Host header");
      s->host_seen_ = true;
      if (!ValidHost(Trim(s->value_))) return s->Fail(400, "a Host that is not host[:port]");
    }
    if (s->field_ == "transfer-encoding") {
      std::string v(Trim(s->value_));
      LowerInPlace(&v);
      s->te_ += s->te_.empty() ? v : ", " + v;
    }
    s->req_.headers.emplace_back(std::move(s->field_), std::string(Trim(s->value_)));
    s->field_.clear();
    s->value_.clear();
    return 0;
  }
  static int OnHeadersComplete(llhttp_t* p) {
    RequestParser* s = Self(p);
    s->head_done_ = true;
    s->req_.major = p->http_major;
    s->req_.minor = p->http_minor;
    if (!(p->http_major == 1 && (p->http_minor == 0 || p->http_minor == 1)))
      return s->Fail(505, "HTTP version not supported");
    // RFC 9112 3.2: an HTTP/1.1 request without Host is answered 400 now,
    // before any body.
    if (p->http_minor == 1 && !s->host_seen_) return s->Fail(400, "no Host header");
    if (!s->te_.empty()) {
      if (p->http_minor == 0) return s->Fail(400, "Transfer-Encoding in an HTTP/1.0 request");
      // RFC 9112 6.3: chunked must be the last coding; others before it
      // would need decoding, which is not implemented.
      const size_t last = s->te_.rfind(',');
      const std::string_view final_coding =
          Trim(last == std::string::npos ? std::string_view(s->te_)
                                         : std::string_view(s->te_).substr(last + 1));
      if (final_coding != "chunked") return s->Fail(400, "Transfer-Encoding not ending in chunked");
      if (s->te_ != "chunked") return s->Fail(501, "Transfer-Encoding other than chunked");
    }
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > s->lim_.max_body_bytes)
      return s->Fail(413, "body over max_request_bytes");
    s->req_.keep_alive = llhttp_should_keep_alive(p) != 0;
    return 0;
  }
  static int OnBody(llhttp_t* p, const char* at, size_t n) {
    RequestParser* s = Self(p);
    if (s->req_.body.size() + n > s->lim_.max_body_bytes)
      return s->Fail(413, "body over max_request_bytes");
    s->req_.body.append(at, n);
    return 0;
  }
  static int OnMessageComplete(llhttp_t* p) {
    RequestParser* s = Self(p);
    s->complete_ = true;
    if (p->upgrade) {
      s->req_.upgrade = true;
      s->req_.keep_alive = false;
    }
    return HPE_PAUSED;  // one request at a time: the caller answers it, then Next()
  }
};

const llhttp_settings_t* RequestParser::Impl::Settings() {
  static const llhttp_settings_t settings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = OnMessageBegin;
    s.on_method = OnMethod;
    s.on_url = OnUrl;
    s.on_url_complete = OnUrlComplete;
    s.on_header_field = OnHeaderField;
    s.on_header_value = OnHeaderValue;
    s.on_header_value_complete = OnHeaderValueComplete;
    s.on_headers_complete = OnHeadersComplete;
    s.on_body = OnBody;
    s.on_message_complete = OnMessageComplete;
    return s;
  }();
  return &settings;
}

RequestParser::RequestParser(const ParseLimits& lim) : lim_(lim), impl_(std::make_unique<Impl>()) {
  // llhttp keeps the pointer; the table is never written after this.
  llhttp_init(&impl_->parser, HTTP_REQUEST, const_cast<llhttp_settings_t*>(Impl::Settings()));
  impl_->parser.data = this;
}

void RequestParser::Release() {
  if (started_) return;
  std::string().swap(req_.method);
  std::string().swap(req_.target);
  decltype(req_.headers)().swap(req_.headers);
  std::string().swap(req_.body);
  std::string().swap(field_);
  std::string().swap(value_);
  std::string().swap(te_);
}

RequestParser::~RequestParser() = default;

int RequestParser::Fail(int status, const char* why) {
  if (error_status_ == 0) {
    error_status_ = status;
    error_reason_ = why;
  }
  return -1;
}

// llhttp 8 accepts a bare LF after the request line and obsolete line
// folding (a header line starting with a space continues the previous one:
// "X-A: 1\r\n Content-Length: 5" would hide a header from a front end that
// folds differently); RFC 9112 lets a server refuse both, and we do. The
// request line must be exactly "method SP target SP version".
size_t RequestParser::ScanHead(const char* data, size_t len) {
  HeadScan& h = scan_;
  // A defect is answered once llhttp has seen the bytes before it: llhttp's
  // own error earlier in the head wins, however the head arrives in pieces.
  auto Defect = [&h](const char* why, size_t at) {
    h.defect = why;
    h.done = true;
    return at;
  };
  for (size_t i = 0; i < len && !h.done; i++) {
    const char c = data[i];
    if (c == '\n') {
      if (h.prev != '\r') return Defect("a line of the request head ends in a bare LF", i);
      if (h.line == 0 && h.line_empty) {
        h.prev = c;  // an empty line before the request line is ignored (RFC 9112 2.2)
        continue;
      }
      if (h.line == 0 && h.spaces != 2) return Defect("a malformed request line", i);
      if (h.line > 0 && h.line_empty) h.done = true;  // the blank line: the head is over
      h.line++;
      h.line_empty = true;
      h.in_name = true;
    } else if (h.prev == '\r') {
      return Defect("a bare CR in the request head", i);
    } else if (c != '\r') {
      if (h.line_empty && h.line > 0 && (c == ' ' || c == '\t'))
        return Defect("obsolete line folding in the request head", i);
      if (h.line > 0 && h.in_name) {
        if (c == ':') h.in_name = false;
        if (c == ' ' || c == '\t')  // RFC 9112 5.1: MUST be rejected with 400
          return Defect("whitespace between a header field name and its colon", i);
      }
      if (h.line == 0 && (c == ' ' || c == '\t')) {
        if (c == '\t' || h.prev == ' ' || h.line_empty)
          return Defect("a malformed request line", i);
        h.spaces++;
      }
      h.line_empty = false;
    }
    h.prev = c;
  }
  return len;
}

RequestParser::Result RequestParser::Feed(const char* data, size_t len, size_t* consumed) {
  *consumed = 0;
  if (error_status_) return Result::kError;
  if (complete_) return Result::kRequest;
  // Never hand llhttp more head bytes than the limit allows: a head that has
  // not completed within max_head_bytes is answered 431 (414 in the URI).
  size_t feed = len;
  if (!head_done_)
    feed = std::min(len, lim_.max_head_bytes - std::min(head_bytes_, lim_.max_head_bytes));
  if (feed == 0 && len > 0) {
    const bool in_uri = !url_done_;
    Fail(in_uri ? 414 : 431, in_uri ? "URI too long" : "request head too large");
    return Result::kError;
  }
  if (!scan_.done) feed = ScanHead(data, feed);
  const llhttp_errno_t err = llhttp_execute(&impl_->parser, data, feed);
  size_t used = feed;
  if (err != HPE_OK) {
    const char* pos = llhttp_get_error_pos(&impl_->parser);
    used = pos && pos >= data && pos <= data + feed ? static_cast<size_t>(pos - data) : feed;
  }
  if (!head_done_) head_bytes_ += used;
  *consumed = used;
  if (err == HPE_PAUSED && complete_) return Result::kRequest;
  if (err == HPE_OK && scan_.defect) {
    Fail(400, scan_.defect);
    return Result::kError;
  }
  if (err == HPE_OK) return Result::kNeedMore;
  if (!error_status_) {
    switch (err) {
      case HPE_INVALID_VERSION:
        // A well-formed version we do not speak (HTTP/1.2, HTTP/3.0) is
        // 505; anything else about the version is a malformed request line.
        if (std::strcmp(llhttp_get_error_reason(&impl_->parser), "Invalid HTTP version") == 0)
          Fail(505, "HTTP version not supported");
        else
          Fail(400, "a malformed request line");
        break;
      case HPE_INVALID_TRANSFER_ENCODING:
        Fail(400, "Transfer-Encoding not ending in chunked");
        break;
      default:
        Fail(400, llhttp_errno_name(err));
        break;
    }
  }
  return Result::kError;
}

void RequestParser::Next() {
  // Cleared, not replaced: the strings and the header vector keep their
  // capacity, so a keep-alive connection parses without allocating.
  req_.method.clear();
  req_.target.clear();
  req_.major = req_.minor = 1;
  req_.headers.clear();
  if (req_.body.capacity() > 64 * 1024) std::string().swap(req_.body);  // do not pin a large upload
  req_.body.clear();
  req_.keep_alive = true;
  req_.upgrade = false;
  field_.clear();
  value_.clear();
  te_.clear();
  host_seen_ = false;
  scan_ = HeadScan{};
  started_ = head_done_ = complete_ = url_done_ = false;
  head_bytes_ = 0;
  llhttp_resume(&impl_->parser);
}

bool PercentDecode(std::string_view s, std::string* out, bool plus_is_space) {
  out->clear();
  out->reserve(s.size());
  for (size_t i = 0; i < s.size(); i++) {
    char ch = s[i];
    if (ch == '%') {
      if (i + 2 >= s.size()) return false;
      const int hi = HexVal(s[i + 1]), lo = HexVal(s[i + 2]);
      if (hi < 0 || lo < 0) return false;
      ch = static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (ch == '+' && plus_is_space) {
      ch = ' ';
    }
    if (ch == '\0') return false;
    out->push_back(ch);
  }
  return true;
}

bool SplitTarget(std::string_view target, std::string_view* path, std::string_view* query) {
  if (target.size() > 7 &&
      (target.substr(0, 7) == "http://" || target.substr(0, 8) == "https://")) {
    const size_t scheme = target.find("://") + 3;
    const size_t slash = target.find_first_of("/?", scheme);
    if (slash == std::string_view::npos) {
      *path = "/";
      *query = {};
      return true;
    }
    target.remove_prefix(slash);
    if (target.front() == '?') {  // "http://host?q": empty path
      *path = "/";
      *query = target.substr(1);
      return true;
    }
  }
  if (target.empty() || target.front() != '/') return false;
  const size_t q = target.find('?');
  std::string_view p = target.substr(0, q);
  if (const size_t h = p.find('#'); h != std::string_view::npos) p = p.substr(0, h);
  *path = p;
  *query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
  if (const size_t h = query->find('#'); h != std::string_view::npos) *query = query->substr(0, h);
  return true;
}

namespace {

// True if NormalizePath would return `p` unchanged: it starts with '/' and has
// no escape, NUL, empty segment (but a trailing '/'), "." or "..".
bool IsNormal(std::string_view p) {
  if (p.empty() || p.front() != '/') return false;
  for (size_t i = 0; i < p.size(); i++) {
    const char ch = p[i];
    if (ch == '%' || ch == '\0') return false;
    if (ch != '/') continue;
    // p[i] starts a segment ending at the next '/' or the end.
    const size_t j = i + 1;
    if (j < p.size() && p[j] == '/') return false;
    if (j < p.size() && p[j] == '.') {
      const size_t k = j + 1;
      if (k == p.size() || p[k] == '/') return false;
      if (p[k] == '.' && (k + 1 == p.size() || p[k + 1] == '/')) return false;
    }
  }
  return true;
}

}  // namespace

int NormalizePath(std::string_view raw_path, std::string* out) {
  if (IsNormal(raw_path)) {
    out->assign(raw_path);
    return 0;
  }
  std::string decoded;
  if (!PercentDecode(raw_path, &decoded)) return 400;
  if (decoded.empty() || decoded.front() != '/') return 400;
  std::vector<std::string_view> segs;
  std::string_view rest(decoded);
  bool trailing = false;
  while (!rest.empty()) {
    const size_t slash = rest.find('/');
    std::string_view seg = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    const bool last = slash == std::string_view::npos;
    if (seg.empty() || seg == ".") {
      trailing = true;
      continue;
    }
    if (seg == "..") {
      if (segs.empty()) return 400;  // above the root: nginx answers 400 too
      segs.pop_back();
      trailing = true;
      continue;
    }
    segs.push_back(seg);
    trailing = !last;
  }
  out->clear();
  for (auto seg : segs) {
    out->push_back('/');
    out->append(seg);
  }
  if (out->empty() || trailing) out->push_back('/');
  return 0;
}

std::optional<std::string> QueryParam(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const size_t eq = pair.find('=');
    std::string key, value;
    if (!PercentDecode(pair.substr(0, eq), &key, true) || key != name) continue;
    if (eq != std::string_view::npos && !PercentDecode(pair.substr(eq + 1), &value, true))
      return std::nullopt;
    return value;
  }
  return std::nullopt;
}

}  // namespace pf::http
