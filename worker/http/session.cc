// worker/http/session.cc: the http protocol: HTTP/1.0 and 1.1 with
// keep-alive and pipelining; routes each request (static_files.h, the store
// as REST in kv_route.h, the operations and admin endpoints in ops.h) and
// sends the reply. Parsing is llhttp's (parse.h); docs/http.md is the spec.
#include <event2/buffer.h>
#include <spdlog/spdlog.h>
#include <strings.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>

#include "shared/config.h"
#include "shared/shm.h"
#include "shared/util/clock.h"
#include "shared/util/net.h"
#include "shared/util/strings.h"
#include "worker/connection.h"
#include "worker/http/access_log.h"
#include "worker/http/basic_auth.h"
#include "worker/http/compress.h"
#include "worker/http/events.h"
#include "worker/http/filecache.h"
#include "worker/http/kv_route.h"
#include "worker/http/ops.h"
#include "worker/http/parse.h"
#include "worker/http/proxy.h"
#include "worker/http/reply.h"
#include "worker/http/static_files.h"
#include "worker/http/util.h"
#include "worker/protocol.h"
#include "worker/security.h"
#include "worker/worker.h"

namespace pf {
namespace {

using http::Request;

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
  if (evbuffer_reserve_space(out, static_cast<ev_ssize_t>(total), &v, 1) == 1 &&
      v.iov_len >= total) {
    char* p = static_cast<char*>(v.iov_base);
    std::memcpy(p, head.data(), head.size());
    if (!body.empty()) std::memcpy(p + head.size(), body.data(), body.size());
    v.iov_len = total;
    if (evbuffer_commit_space(out, &v, 1) == 0) return;
  }
  evbuffer_add(out, head.data(), head.size());
  evbuffer_add(out, body.data(), body.size());
}

// The listener's htpasswd file, parsed once per worker from the text the
// master read with the config (a reload starts new workers, which parse the
// new text). Null: the text does not parse (every covered request is 500).
const std::shared_ptr<const Htpasswd>& BasicAuthFile(const ListenerConf& l) {
  static std::unordered_map<const ListenerConf*, std::shared_ptr<const Htpasswd>> files;
  auto it = files.find(&l);
  if (it == files.end()) {
    std::string err;
    auto f = Htpasswd::Parse(l.auth_basic.htpasswd_text, l.auth_basic.htpasswd, &err);
    if (!f) spdlog::error("listener {}: auth_basic: {}", l.name, err);
    it = files.emplace(&l, std::move(f)).first;
  }
  return it->second;
}

// One per worker: a client that opens a connection per request also pays
// one hash per minute, not one per request.
BasicAuthCache& WorkerBasicAuthCache() {
  static BasicAuthCache cache;
  return cache;
}

class HttpSession final : public Session, public http::ProxyClient {
 public:
  HttpSession(const ListenerConf& l, WorkerContext& w)
      : l_(l), w_(w), parser_(LimitsFor(w.config->limits)) {
    accesslog::Init(w.config->logging.access_log, w.base);
  }

  void OnConnect(Connection& c) override { conn_ = &c; }

  ~HttpSession() override {
    if (proxy_) proxy_->Abort();
  }

  void OnClose(Connection& c) override {
    if (events_) http::EventStreams::Of(w_).Remove(&c);
    if (proxy_) {  // the client went: the upstream connection goes too (its response is not whole)
      proxy_->Abort();
      proxy_ = nullptr;
    }
  }

  void OnRead(Connection& c, evbuffer* in) override {
    const LimitsConf& lim = w_.config->limits;
    if (events_) {  // an event stream reads nothing more from the page
      evbuffer_drain(in, evbuffer_get_length(in));
      return;
    }
    if (proxy_) {
      // A tunnel (after a 101) passes the bytes on; otherwise the next
      // request waits until the proxied response is out.
      if (proxy_->tunnel()) proxy_->ClientData(in);
      return;
    }
    while (!c.closing() && !proxy_) {
      // Pipelined requests wait while the output is above the high-water
      // mark; the connection calls OnRead again once it drains.
      if (c.output_pending() > lim.output_high_water) break;
      evbuffer_iovec v;
      if (evbuffer_peek(in, -1, nullptr, &v, 1) < 1 || v.iov_len == 0) break;
      if (!parser_.in_request()) start_ms_ = MonoMs();
      size_t used = 0;
      const auto r = parser_.Feed(static_cast<const char*>(v.iov_base), v.iov_len, &used);
      evbuffer_drain(in, used);
      if (r == http::RequestParser::Result::kError) {
        SPDLOG_DEBUG("conn {} {}: bad request ({}): {}", c.id(), c.peer(), parser_.error_status(),
                     parser_.error_reason());
        evbuffer_drain(in, evbuffer_get_length(in));
        SendError(c, parser_.error_status(), /*force_close=*/true);
        return;
      }
      if (r == http::RequestParser::Result::kRequest) {
        input_empty_ = evbuffer_get_length(in) == 0;
        Handle(c, parser_.request());
        parser_.Next();
        continue;
      }
      if (parser_.head_done() && !continue_sent_) {
        continue_sent_ = true;
        const std::string* expect = parser_.request().Header("expect");
        if (expect && strcasecmp(expect->c_str(), "100-continue") == 0 &&
            parser_.request().minor == 1)
          c.Write("HTTP/1.1 100 Continue\r\n\r\n");
      }
      if (used == 0) break;
    }
  }

  Buffers buffers() const override { return Buffers::kHttp; }

  void OnWriteDrained(Connection&) override {
    if (proxy_) proxy_->ClientDrained();
  }

  void ProxyDone(int status, uint64_t body_bytes, bool keep) override {
    proxy_ = nullptr;
    proxy_pending_ = false;
    w_.counters->http_status[std::clamp(status / 100, 1, 5)].Add(1);
    if (accesslog::Enabled()) {
      const uint64_t now = MonoMs();
      const uint64_t took = now > start_ms_ && start_ms_ ? now - start_ms_ : 0;
      accesslog::Append(
          accesslog::FormatLine(proxied_client_.family ? proxied_client_.ToString() : "-",
                                &proxied_req_, status, body_bytes, took));
    }
    if (!keep || draining_ || w_.draining) {
      conn_->CloseAfterWrite();
      return;
    }
    // Requests the client pipelined behind this one (and its EOF) wait in
    // the input; inside Handle the read loop goes on by itself.
    if (!in_handle_) conn_->Resume();
  }

  void Trim() override {
    if (parser_.in_request()) return;
    parser_.Release();
    std::string().swap(path_);
  }

  void OnDrain(Connection& c) override {
    // The next response says "Connection: close"; an idle connection stays
    // until the drain timeout (closing it now races with a request in flight).
    draining_ = true;
    // An event stream ends now: the page reconnects to the new generation.
    if (events_) c.CloseAfterWrite();
  }

  uint32_t TimeoutMs(const WorkerContext& w) const override {
    const TimeoutsConf& t = w.config->timeouts;
    if (events_) return t.idle_ms;  // written every second: idle only if the page stopped reading
    // An exchange has the upstream's timeouts; a tunnel or a client that
    // does not read its response, the idle timeout.
    if (proxy_) return proxy_->tunnel() || conn_->output_pending() > 0 ? t.idle_ms : 0;
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
    http::Reply rep;
    proxied_ = false;
    in_handle_ = true;
    try {
      Route(c, req, &rep);
    } catch (const std::exception& e) {
      spdlog::error("http {}: {} {}: {}", c.peer(), req.method, req.target, e.what());
      rep = http::Reply{};
      http::ErrorReply(500, &rep);
    }
    in_handle_ = false;
    if (proxied_) {
      // The exchange writes the response (and logs it in ProxyDone).
    } else if (!events_) {  // an event stream wrote its own head
      if (l_.compression.enabled()) http::CompressReply(l_.compression, req, &rep);
      Send(c, &rep, false);
    }
    w_.NoteLatency(kProtoHttp);
    req_ = nullptr;
  }

  // The Host names this listener answers for (server_names), and the
  // socket's own address (a listener on 0.0.0.0 reached by its IP).
  bool KnownHost(const Connection& c, const std::string* host) {
    for (const std::string& n : l_.server_names)
      if (n == "*") return true;
    if (!host) return false;  // HTTP/1.0 without Host: nothing tells the name
    std::string_view name = *host;
    if (!name.empty() && name.front() == '[') {
      name = name.substr(0, name.find(']') + 1);
    } else if (const size_t colon = name.find(':'); colon != std::string_view::npos) {
      name = name.substr(0, colon);
    }
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);  // "localhost."
    for (const std::string& n : l_.server_names)
      if (EqualsNoCase(name, n)) return true;
    // An IP literal: the address this connection came in on (as an address:
    // "::ffff:10.0.0.1" on a dual-stack socket is 10.0.0.1).
    IpAddr named;
    if (!IpAddr::Parse(name, &named)) return false;
    if (local_.family == 0) {
      sockaddr_storage ss;
      socklen_t len = sizeof ss;
      if (getsockname(c.fd(), reinterpret_cast<sockaddr*>(&ss), &len) == 0)
        local_ = IpAddr::From(reinterpret_cast<const sockaddr*>(&ss));
    }
    return local_.family != 0 && named.family == local_.family &&
           std::memcmp(named.bytes, local_.bytes, sizeof named.bytes) == 0;
  }

  void Route(Connection& c, const Request& req, http::Reply* rep) {
    if (req.minor == 1 && !req.Header("host")) return http::ErrorReply(400, rep);
    client_ = ClientAddress(w_, c.addr(), req);
    // RFC 9110 9.3.6 / 9.3.7: no tunnels here; "OPTIONS *" asks about the server.
    if (req.method == "CONNECT") return http::ErrorReply(405, rep);
    if (req.target == "*") {
      if (req.method != "OPTIONS") return http::ErrorReply(400, rep);
      rep->status = 200;
      rep->headers = "Allow: GET, HEAD, PUT, DELETE, POST, OPTIONS\r\n";
      return;
    }
    std::string_view raw_path, query;
    if (!http::SplitTarget(req.target, &raw_path, &query)) return http::ErrorReply(400, rep);
    const bool kv = raw_path == "/kv" || raw_path.substr(0, 4) == "/kv/";
    const bool ops = raw_path.substr(0, 2) == "/_";
    // DNS rebinding: a hostile name that resolves to this address reaches it
    // from the user's browser with its own Host; the store and the
    // operations endpoints answer only their own names.
    if ((kv || ops || l_.strict_host) && !KnownHost(c, req.Header("host"))) {
      NoteRefusal(w_, kRefusedMisdirected, client_,
                  "Host '" + (req.Header("host") ? req.Header("host")->substr(0, 128) : "") +
                      "' is not in server_names of listener " + l_.name);
      return http::ErrorReply(421, rep);
    }
    if (l_.limit_req.enabled()) {
      if (const uint64_t wait = RequestRefusedFor(w_, l_, client_)) {
        http::ErrorReply(429, rep);
        rep->headers += "Retry-After: " + std::to_string((wait + 999) / 1000) + "\r\n";
        return;
      }
    }
    bool basic_ok = false;
    if (l_.auth_basic.enabled() && BasicAuthCovers(raw_path)) {
      if (!CheckBasicAuth(req, rep)) return;
      basic_ok = true;
    }
    if (kv) {
      if (!kv_) kv_ = std::make_unique<http::KvRoute>(l_, w_);  // its session: on first use
      return kv_->Serve(c, req, raw_path.substr(3), query, client_, basic_ok, rep);
    }
    if (raw_path == "/_health" || raw_path == "/_stats" || raw_path == "/_metrics" ||
        raw_path == "/_status")
      return http::ServeOps(w_, l_, client_, req, raw_path, query, rep);
    if (raw_path == "/_events") return StartEvents(c, req, rep);
    if (raw_path == "/_admin" || raw_path.substr(0, 8) == "/_admin/")
      return http::ServeAdmin(w_, l_, client_, req, raw_path, query, rep);
    // Routes match the normalised path (so "/%61pi/" and "/x/../api/" are
    // "/api/"); the request line goes upstream as sent.
    if (!l_.routes.empty() && http::NormalizePath(raw_path, &path_) == 0) {
      if (const RouteConf* r = http::MatchRoute(l_, path_)) return StartProxy(c, req, *r, query);
    }
    // The connection's last read is "now" for the cache (one clock read less per request).
    http::ServeStatic(l_, req, raw_path, query, c.last_activity_ms(), &path_, rep);
  }

  void StartProxy(Connection& c, const Request& req, const RouteConf& r, std::string_view query) {
    const LimitsConf& lim = w_.config->limits;
    const bool keep = req.keep_alive && !draining_ && !w_.draining &&
                      (lim.keepalive_requests == 0 || requests_ < lim.keepalive_requests);
    proxied_ = true;
    proxied_client_ = client_;
    if (accesslog::Enabled()) {  // the parser reuses `req` for the next request
      proxied_req_.method = req.method;
      proxied_req_.target = req.target;
      proxied_req_.major = req.major;
      proxied_req_.minor = req.minor;
      proxied_req_.headers = req.headers;
    }
    proxy_pending_ = true;
    http::ProxyExchange* e = http::StartProxy(w_, l_, r, c, req, path_, query, client_, keep, this);
    // It may have answered already (no server to try): ProxyDone ran, and
    // the exchange is on its way out.
    if (proxy_pending_) proxy_ = e;
  }

  // GET /_events (events.h): the ops endpoints' access rule, then a head
  // with no length (the stream ends when the connection does) and the
  // first snapshot; the worker's timer sends the rest.
  void StartEvents(Connection& c, const Request& req, http::Reply* rep) {
    if (!l_.ops_allow_all && !client_.loopback()) return http::ErrorReply(403, rep);
    if (req.method != "GET") {
      http::ErrorReply(405, rep);
      rep->headers += "Allow: GET\r\n";
      return;
    }
    events_ = true;
    std::string h = "HTTP/1.1 200 OK\r\nServer: preforkd\r\nDate: ";
    h += http::DateNow();
    h += "\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
         "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"
         "retry: 2000\n\n";
    c.Write(h);
    w_.counters->http_status[2].Add(1);
    Log(c, 200, 0);
    http::EventStreams::Of(w_).Add(&c);
  }

  // The prefixes are matched against the path as sent and as the static
  // handler resolves it (percent-decoded, dot segments removed), so
  // "/%70rivate/x" or "/pub/../private/x" is as covered as "/private/x".
  // A prefix "/p/" also covers "/p" itself (a listing, a redirect). The
  // admin endpoint is never covered: its Authorization header carries the
  // admin token.
  bool BasicAuthCovers(std::string_view raw_path) {
    if (raw_path == "/_admin" || raw_path.substr(0, 8) == "/_admin/") return false;
    auto covers = [&](std::string_view path) {
      for (const std::string& p : l_.auth_basic.paths) {
        if (path.substr(0, p.size()) == p) return true;
        if (p.size() > 1 && p.back() == '/' && path == std::string_view(p).substr(0, p.size() - 1))
          return true;
      }
      return false;
    };
    if (covers(raw_path)) return true;
    return http::NormalizePath(raw_path, &path_) == 0 && covers(path_);
  }

  // nginx auth_basic: 401 with a challenge until the request carries a user
  // and password of the htpasswd file. A verified credential is cached, so a
  // keep-alive client costs one hash; each failure costs one and counts
  // toward limits.auth_failures_per_minute of its address.
  bool CheckBasicAuth(const Request& req, http::Reply* rep) {
    const BasicAuthConf& a = l_.auth_basic;
    const std::shared_ptr<const Htpasswd>& file = BasicAuthFile(l_);
    const std::string* h = req.Header("authorization");
    const uint64_t now = MonoMs();
    auto challenge = [&](int status) {
      http::ErrorReply(status, rep);
      if (status == 401)
        rep->headers += "WWW-Authenticate: Basic realm=\"" + a.realm + "\", charset=\"UTF-8\"\r\n";
      return false;
    };
    if (!file) return challenge(500);
    if (!h) return challenge(401);
    BasicAuthCache& cache = WorkerBasicAuthCache();
    if (cache.Check(file.get(), *h, now)) return true;
    if (AuthThrottled(w_, client_)) return challenge(429);
    std::string user, password;
    const bool ok = ParseBasicCredentials(*h, &user, &password) && file->Verify(user, password);
    NoteAuthResult(w_, client_, ok, "basic auth on listener " + l_.name);
    if (!ok) return challenge(401);
    cache.Remember(file.get(), *h, now);
    return true;
  }

  // ---- responses ----------------------------------------------------------

  void SendError(Connection& c, int status, bool force_close) {
    http::Reply rep;
    http::ErrorReply(status, &rep);
    Send(c, &rep, force_close);
  }

  void Send(Connection& c, http::Reply* rep, bool force_close) {
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
    const std::string_view mem_body =
        rep->cached_body ? std::string_view(*rep->cached_body) : std::string_view(rep->body);
    const uint64_t len = f ? rep->file_len : mem_body.size();
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
    if (!keep)
      h += "Connection: close\r\n";
    else if (req->minor == 0)
      h += "Connection: keep-alive\r\n";
    h += "\r\n";
    evbuffer* out = c.output();
    const bool body = !head && rep->has_length && len > 0;
    uint64_t body_sent = body ? len : 0;
    if (!body) {
      evbuffer_add(out, h.data(), h.size());
    } else if (!f) {
      AddResponse(out, h, mem_body);
    } else if (f->in_memory) {
      AddResponse(out, h, std::string_view(f->body).substr(rep->file_off, len));
    } else {
      evbuffer_add(out, h.data(), h.size());
      if (evbuffer_add_file_segment(out, f->segment, static_cast<ev_off_t>(rep->file_off),
                                    static_cast<ev_off_t>(len)) != 0) {
        c.Close("cannot queue file");
        return;
      }
      c.NoteFileBytes(len);
    }
    w_.counters->http_status[std::clamp(rep->status / 100, 1, 5)].Add(1);
    Log(c, rep->status, body_sent);
    // A whole request that asked for the close, with nothing after it: the
    // client has said all it will (nginx closes such a connection without
    // lingering too).
    if (!keep) c.CloseAfterWrite(!force_close && req && !req->keep_alive && input_empty_);
  }

  void Log(const Connection& c, int status, uint64_t body_bytes) {
    if (!accesslog::Enabled()) return;
    const Request* req = req_;
    if (!req && parser_.in_request()) req = &parser_.request();
    const uint64_t now = MonoMs();
    const uint64_t took = now > start_ms_ && start_ms_ ? now - start_ms_ : 0;
    const IpAddr& who = req_ ? client_ : c.addr();
    accesslog::Append(
        accesslog::FormatLine(who.family ? who.ToString() : "-", req, status, body_bytes, took));
  }

  const ListenerConf& l_;
  WorkerContext& w_;
  Connection* conn_ = nullptr;
  http::RequestParser parser_;
  const Request* req_ = nullptr;  // the request being answered (nullptr for parse errors)
  std::string path_;              // the normalised path of a static request (reused)
  bool head_ = false;
  bool draining_ = false;
  bool events_ = false;  // this connection is a /_events stream (events.h)
  bool continue_sent_ = false;
  bool input_empty_ = false;  // nothing was buffered after the request being answered
  uint64_t requests_ = 0;
  uint64_t start_ms_ = 0;  // first byte of the current request
  std::unique_ptr<http::KvRoute> kv_;
  http::ProxyExchange* proxy_ = nullptr;  // the exchange answering the current request
  bool proxied_ = false;                  // the current request went to an upstream
  bool proxy_pending_ = false;            // its exchange has not called ProxyDone yet
  bool in_handle_ = false;
  http::Request proxied_req_;  // what the access log line of a proxied request needs
  IpAddr proxied_client_;
  IpAddr client_;  // the current request's client (trusted_proxies applied)
  IpAddr local_;   // this socket's address, for KnownHost (once per connection)
};

}  // namespace

std::unique_ptr<Session> MakeHttpSession(const ListenerConf& l, WorkerContext& w) {
  return std::make_unique<HttpSession>(l, w);
}

}  // namespace pf
