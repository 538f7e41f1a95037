// worker/http/proxy.cc: the reverse proxy (proxy.h). Upstream sockets are
// libevent bufferevents on the worker's loop; responses are parsed by llhttp
// (response mode, strict) and re-serialised for the client, never copied raw.
#include "worker/http/proxy.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <strings.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "shared/config.h"
#include "shared/shm.h"
#include "shared/util/clock.h"
#include "shared/util/strings.h"
#include "worker/connection.h"
#include "worker/http/parse.h"
#include "worker/http/reply.h"
#include "worker/http/util.h"
#include "worker/worker.h"

namespace pf::http {
namespace {

// Headers that describe one connection, not the message (RFC 9110 7.6.1),
// dropped both ways; so are those a Connection header names.
bool HopByHop(std::string_view name) {
  static constexpr std::string_view kNames[] = {"connection",
                                                "keep-alive",
                                                "proxy-connection",
                                                "te",
                                                "trailer",
                                                "transfer-encoding",
                                                "upgrade",
                                                "proxy-authenticate",
                                                "proxy-authorization"};
  for (std::string_view n : kNames)
    if (name == n) return true;
  return false;
}

// "a, b" → {"a", "b"}, lower-cased (the names a Connection header lists).
std::vector<std::string> Tokens(std::string_view v) {
  std::vector<std::string> out;
  while (!v.empty()) {
    const size_t comma = v.find(',');
    std::string_view t = v.substr(0, comma);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    if (!t.empty() && out.size() < 32) {
      std::string s(t);
      for (char& ch : s) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
      out.push_back(std::move(s));
    }
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  return out;
}

bool Listed(const std::vector<std::string>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// A decoded path, encoded again for a request line (strip_prefix sends the
// normalised path): unreserved and path characters as they are, the rest %XX.
void AppendEncodedPath(std::string_view path, std::string* out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (const char ch : path) {
    const auto u = static_cast<unsigned char>(ch);
    if (isalnum(u) || std::strchr("-._~/!$&'()*+,;=:@", ch) != nullptr) {
      out->push_back(ch);
    } else {
      out->push_back('%');
      out->push_back(kHex[u >> 4]);
      out->push_back(kHex[u & 15]);
    }
  }
}

// ---- per-worker upstream state ---------------------------------------------

// This worker's view of a server. Health and figures live in the shared
// segment (UpstreamSlot) so every worker agrees; `local` stands in when the
// worker is draining (the slots then belong to a newer config) or has no
// segment.
struct ServerState {
  UpstreamSlot local;
  UpstreamSlot* shared = nullptr;
  int64_t current = 0;  // smooth weighted round robin (per worker, as nginx's)
  uint32_t active = 0;  // exchanges of this worker using it now (least_conn, random_two)
};

struct Group;

// An idle keep-alive connection: watched for the server closing it (or
// sending what nobody asked for) until an exchange takes it.
struct IdleConn {
  bufferevent* bev;
  size_t server;
  Group* group;
};

struct Group {
  const UpstreamConf* conf = nullptr;
  std::vector<ServerState> servers;
  const UpstreamShared* table = nullptr;
  uint32_t generation = 0;  // this worker's; the slots are ours while the table has it
  UpstreamSlot& Slot(size_t i) {
    ServerState& s = servers[i];
    return s.shared && table->generation.load(std::memory_order_relaxed) == generation ? *s.shared
                                                                                       : s.local;
  }
  std::vector<IdleConn*> idle;  // most recently used last

  void DropIdle(IdleConn* ic) {
    idle.erase(std::find(idle.begin(), idle.end(), ic));
    bufferevent_free(ic->bev);
    delete ic;
  }
};

std::vector<Group>& Groups(WorkerContext& w) {
  // One worker process, one config for its life (a reload starts new workers).
  static std::vector<Group> groups;
  const Config& cfg = *w.config;
  if (groups.size() != cfg.upstreams.size()) {
    groups.resize(cfg.upstreams.size());
    UpstreamShared* table = w.segment ? &w.segment->header()->upstreams : nullptr;
    uint32_t flat = 0;  // the slot of each server: the master names them in this order
    for (size_t i = 0; i < cfg.upstreams.size(); i++) {
      Group& g = groups[i];
      g.conf = &cfg.upstreams[i];
      g.servers = std::vector<ServerState>(cfg.upstreams[i].servers.size());
      g.table = table;
      g.generation = w.generation;
      for (ServerState& s : g.servers) {
        if (table && flat < kMaxUpstreamServers) s.shared = &table->slots[flat];
        flat++;
      }
    }
  }
  return groups;
}

void IdleEventCb(bufferevent*, short, void* arg) {
  auto* ic = static_cast<IdleConn*>(arg);
  ic->group->DropIdle(ic);  // closed, reset or timed out while idle
}
void IdleReadCb(bufferevent*, void* arg) {
  auto* ic = static_cast<IdleConn*>(arg);
  ic->group->DropIdle(ic);  // bytes nobody asked for: the connection is out of step
}

timeval Tv(uint32_t ms) {
  return timeval{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>(ms % 1000 * 1000)};
}

bool Up(Group& g, size_t i, uint64_t now) {
  return g.Slot(i).down_until_ms.load(std::memory_order_relaxed) <= now;
}

// The next server for a request, among those not tried yet: the primaries
// that are up, else the backups that are up, else (all down) the primaries
// anyway, as nginx does, so a blip does not become an outage for
// fail_timeout. npos: every server was tried.
size_t PickServer(Group& g, const std::vector<bool>& tried, uint64_t hash, uint64_t now,
                  std::mt19937& rng) {
  const UpstreamConf& u = *g.conf;
  std::vector<size_t> cand;
  for (int pass = 0; pass < 3 && cand.empty(); pass++) {
    for (size_t i = 0; i < u.servers.size(); i++) {
      if (tried[i]) continue;
      const bool backup = u.servers[i].backup;
      if (pass == 0 && !backup && Up(g, i, now)) cand.push_back(i);
      if (pass == 1 && backup && Up(g, i, now)) cand.push_back(i);
      if (pass == 2 && !backup) cand.push_back(i);
    }
  }
  if (cand.empty()) return static_cast<size_t>(-1);
  if (cand.size() == 1) return cand[0];
  switch (u.balance) {
    case Balance::kRoundRobin: {
      // nginx's smooth weighted round robin: spreads a heavy server's turns.
      int64_t total = 0;
      size_t best = cand[0];
      for (size_t i : cand) {
        g.servers[i].current += u.servers[i].weight;
        total += u.servers[i].weight;
        if (g.servers[i].current > g.servers[best].current) best = i;
      }
      g.servers[best].current -= total;
      return best;
    }
    case Balance::kLeastConn: {
      size_t best = cand[0];
      for (size_t i : cand) {
        // active/weight, compared without division.
        const uint64_t a = uint64_t{g.servers[i].active} * u.servers[best].weight;
        const uint64_t b = uint64_t{g.servers[best].active} * u.servers[i].weight;
        if (a < b) best = i;
      }
      return best;
    }
    case Balance::kRandomTwo: {
      std::uniform_int_distribution<size_t> d(0, cand.size() - 1);
      const size_t a = cand[d(rng)];
      size_t b = cand[d(rng)];
      if (b == a)
        b = cand[(std::find(cand.begin(), cand.end(), a) - cand.begin() + 1) % cand.size()];
      return g.servers[a].active <= g.servers[b].active ? a : b;
    }
    case Balance::kHash: {
      uint64_t total = 0;
      for (size_t i : cand) total += u.servers[i].weight;
      uint64_t at = hash % total;
      for (size_t i : cand) {
        if (at < u.servers[i].weight) return i;
        at -= u.servers[i].weight;
      }
      return cand.back();
    }
  }
  return cand[0];
}

// Passive health: max_fails failures within fail_timeout take a server out
// for fail_timeout, for every worker (the slot is shared).
void NoteFailure(Group& g, size_t i, uint64_t now) {
  UpstreamSlot& s = g.Slot(i);
  const UpstreamServerConf& sc = g.conf->servers[i];
  s.failures.fetch_add(1, std::memory_order_relaxed);
  if (s.fails.load(std::memory_order_relaxed) == 0 ||
      now - s.first_fail_ms.load(std::memory_order_relaxed) > sc.fail_timeout_ms) {
    s.fails.store(0, std::memory_order_relaxed);
    s.first_fail_ms.store(now, std::memory_order_relaxed);
  }
  const uint32_t fails = s.fails.fetch_add(1, std::memory_order_relaxed) + 1;
  if (sc.max_fails && fails >= sc.max_fails) {
    if (s.down_until_ms.load(std::memory_order_relaxed) <= now) {
      s.marked_down.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("upstream {}: server {} marked down for {} ms after {} failure(s)", g.conf->name,
                   sc.address, sc.fail_timeout_ms, fails);
    }
    s.down_until_ms.store(now + sc.fail_timeout_ms, std::memory_order_relaxed);
    s.fails.store(0, std::memory_order_relaxed);
  }
}

void NoteResponse(Group& g, size_t i, int status, uint64_t us) {
  UpstreamSlot& s = g.Slot(i);
  if (s.fails.load(std::memory_order_relaxed) != 0) s.fails.store(0, std::memory_order_relaxed);
  s.responses[std::clamp(status / 100, 1, 5)].fetch_add(1, std::memory_order_relaxed);
  uint32_t b = 0;
  while (b < kLatencyBounds && us > kLatencyBoundsUs[b]) b++;
  s.latency[b].fetch_add(1, std::memory_order_relaxed);
  s.latency_sum_us.fetch_add(us, std::memory_order_relaxed);
}

// ---- one exchange ------------------------------------------------------------

class Exchange final : public ProxyExchange {
 public:
  Exchange(WorkerContext& w, const ListenerConf& l, Group& g, Connection& c, ProxyClient* done)
      : w_(w), l_(l), g_(g), c_(&c), done_(done), tried_(g.conf->servers.size(), false) {}

  ~Exchange() override {
    ReleaseUpstream(false);
    evbuffer_free(rx_);
  }

  void Begin(const Request& req, const RouteConf& r, std::string_view path, std::string_view query,
             const IpAddr& client, bool client_keep) {
    const UpstreamConf& u = *g_.conf;
    head_ = req.method == "HEAD";
    upgrade_req_ = req.upgrade && req.method != "CONNECT";
    client_minor0_ = req.minor == 0;
    client_keep_ = client_keep && !upgrade_req_;
    static constexpr std::string_view kIdempotent[] = {"GET",    "HEAD",    "PUT",
                                                       "DELETE", "OPTIONS", "TRACE"};
    idempotent_ = std::find(std::begin(kIdempotent), std::end(kIdempotent), req.method) !=
                  std::end(kIdempotent);
    tries_left_ = u.tries ? u.tries : static_cast<uint32_t>(u.servers.size());
    hash_ =
        std::hash<std::string_view>{}(u.hash_key == "client" ? std::string_view(client.ToString())
                                                             : std::string_view(req.target));
    BuildRequest(req, r, path, query);
    Attempt();
  }

  void ClientDrained() override {
    if (bev_ && reading_paused_) {
      reading_paused_ = false;
      bufferevent_enable(bev_, EV_READ);
      // What the upstream sent while paused is already read.
      if (evbuffer_get_length(rx_) > 0 || evbuffer_get_length(bufferevent_get_input(bev_)) > 0)
        OnRead();
    }
  }

  bool tunnel() const override { return tunnel_; }

  void ClientData(evbuffer* in) override {
    if (!tunnel_ || !bev_) {
      evbuffer_drain(in, evbuffer_get_length(in));
      return;
    }
    evbuffer* out = bufferevent_get_output(bev_);
    evbuffer_add_buffer(out, in);
    // A client that sends faster than the upstream takes: bounded.
    if (evbuffer_get_length(out) > 2 * w_.config->limits.max_request_bytes) {
      spdlog::warn("upstream {}: tunnel from {} over its buffer limit, closing", g_.conf->name,
                   c_ ? c_->peer() : std::string("?"));
      EndTunnel();
    }
  }

  void Abort() override {
    if (finished_) return;
    finished_ = true;
    done_ = nullptr;
    c_ = nullptr;
    ReleaseUpstream(false);
    ScheduleDelete();
  }

 private:
  enum class Framing { kNone, kLength, kChunked, kClose };

  // ---- the request, once ----

  void BuildRequest(const Request& req, const RouteConf& r, std::string_view path,
                    std::string_view query) {
    std::string& s = request_;
    s.reserve(512 + req.target.size() + req.body.size());
    s += req.method;
    s += ' ';
    if (r.strip_prefix) {
      std::string_view rest = path.substr(std::min(path.size(), r.path.size()));
      if (rest.empty() || rest.front() != '/') s += '/';
      AppendEncodedPath(rest, &s);
      if (!query.empty()) {
        s += '?';
        s += query;
      }
    } else {
      std::string_view target = req.target;
      if (target.empty() || target.front() != '/') {  // absolute-form: send the origin-form
        std::string_view p, q;
        SplitTarget(target, &p, &q);
        s += p;
        if (!q.empty()) {
          s += '?';
          s += q;
        }
      } else {
        s += target;
      }
    }
    s += " HTTP/1.1\r\n";
    const std::string* host = req.Header("host");
    std::vector<std::string> conn_listed;
    if (const std::string* ch = req.Header("connection")) conn_listed = Tokens(*ch);
    std::string xff, fwd, via;
    for (const auto& [name, value] : req.headers) {
      if (HopByHop(name) || Listed(conn_listed, name) || name == "host" ||
          name == "content-length" || name == "expect")
        continue;
      if (name == "x-forwarded-for") {
        xff += (xff.empty() ? "" : ", ") + value;
        continue;
      }
      if (name == "forwarded") {
        fwd += (fwd.empty() ? "" : ", ") + value;
        continue;
      }
      if (name == "via") {
        via += (via.empty() ? "" : ", ") + value;
        continue;
      }
      if (name == "x-forwarded-proto" || name == "x-forwarded-host") continue;  // ours replace them
      bool replaced = false;
      for (const auto& [sn, sv] : r.set_headers) replaced |= sn == name;
      if (replaced) continue;
      s += name;
      s += ": ";
      s += value;
      s += "\r\n";
    }
    s += "Host: ";
    s += r.host.empty() ? (host ? std::string_view(*host) : std::string_view("localhost"))
                        : std::string_view(r.host);
    s += "\r\n";
    // The peer this worker heard from, as nginx's $proxy_add_x_forwarded_for.
    const std::string peer = c_->addr().ToString();
    const std::string proto = l_.tls.enabled ? "https" : "http";
    s += "X-Forwarded-For: " + (xff.empty() ? peer : xff + ", " + peer) + "\r\n";
    s += "X-Forwarded-Proto: " + proto + "\r\n";
    if (host) s += "X-Forwarded-Host: " + *host + "\r\n";
    const std::string node = c_->addr().family == AF_INET6 ? "\"[" + peer + "]\"" : peer;
    std::string f = "for=" + node + ";proto=" + proto;
    if (host) f += ";host=\"" + *host + "\"";
    s += "Forwarded: " + (fwd.empty() ? f : fwd + ", " + f) + "\r\n";
    s += "Via: " + (via.empty() ? std::string() : via + ", ") + "1.1 preforkd\r\n";
    for (const auto& [sn, sv] : r.set_headers) s += sn + ": " + sv + "\r\n";
    if (upgrade_req_) {
      const std::string* up = req.Header("upgrade");
      s += "Connection: upgrade\r\nUpgrade: " + (up ? *up : std::string("websocket")) + "\r\n";
    }
    if (!req.body.empty() || req.method == "POST" || req.method == "PUT" || req.method == "PATCH") {
      s += "Content-Length: " + std::to_string(req.body.size()) + "\r\n";
    }
    s += "\r\n";
    s += req.body;
  }

  // ---- choosing a server, connecting ----

  void Attempt() {
    const uint64_t now = MonoMs();
    const size_t pick = PickServer(g_, tried_, hash_, now, Rng());
    if (pick == static_cast<size_t>(-1)) return FailNoUpstream(last_fail_status_);
    server_ = pick;
    tried_[server_] = true;
    tries_left_--;
    Connect(/*pooled_ok=*/true);
  }

  // A try on server_: a pooled connection when there is one (and
  // pooled_ok), else a new one.
  void Connect(bool pooled_ok) {
    g_.servers[server_].active++;
    g_.Slot(server_).requests.fetch_add(1, std::memory_order_relaxed);
    attempt_start_us_ = MonoNs() / 1000;
    have_server_ = true;
    ResetParser();
    const UpstreamConf& u = *g_.conf;
    got_bytes_ = false;
    reused_ = false;
    // A pooled connection to this server, most recently used first.
    for (size_t i = g_.idle.size(); pooled_ok && i-- > 0;) {
      IdleConn* ic = g_.idle[i];
      if (ic->server != server_) continue;
      reused_ = true;
      bev_ = ic->bev;
      g_.idle.erase(g_.idle.begin() + static_cast<long>(i));
      delete ic;
      connected_ = true;
      bufferevent_setcb(bev_, ReadCb, WriteCb, EventCb, this);
      const timeval rt = Tv(u.read_timeout_ms), wt = Tv(u.send_timeout_ms);
      bufferevent_set_timeouts(bev_, &rt, &wt);
      bufferevent_enable(bev_, EV_READ);  // EV_WRITE only if Send leaves bytes
      Send();
      return;
    }
    connected_ = false;
    bev_ = bufferevent_socket_new(w_.base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev_) return FailNoUpstream(502);
    bufferevent_setcb(bev_, ReadCb, WriteCb, EventCb, this);
    // libevent times a connect with the write timeout.
    const timeval ct = Tv(u.connect_timeout_ms);
    bufferevent_set_timeouts(bev_, nullptr, &ct);
    bufferevent_enable(bev_, EV_READ | EV_WRITE);
    const UpstreamServerConf& sc = u.servers[server_];
    if (bufferevent_socket_connect(bev_, reinterpret_cast<const sockaddr*>(&sc.sa),
                                   static_cast<int>(sc.sa_len)) != 0) {
      // Refused at once (no route, no descriptors): the event callback does not run.
      return AttemptFailed(502, "connect failed");
    }
    Send();  // queued; written once connected
  }

  // On a pooled connection the request usually fits the socket at once:
  // written here, it needs no write event (two epoll_ctl and a loop turn
  // per request otherwise); what does not fit goes through the bufferevent.
  void Send() {
    evbuffer* out = bufferevent_get_output(bev_);
    size_t sent = 0;
    if (connected_ && evbuffer_get_length(out) == 0) {
      const ssize_t n = ::send(bufferevent_getfd(bev_), request_.data(), request_.size(),
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) sent = static_cast<size_t>(n);
      // An error shows again on the next read or write: the event callback handles it.
    }
    if (sent < request_.size()) {
      evbuffer_add(out, request_.data() + sent, request_.size() - sent);
      if (!(bufferevent_get_enabled(bev_) & EV_WRITE)) bufferevent_enable(bev_, EV_WRITE);
    }
  }

  static std::mt19937& Rng() {
    static std::mt19937 rng{std::random_device{}()};
    return rng;
  }

  // ---- upstream events ----

  static void ReadCb(bufferevent*, void* arg) { static_cast<Exchange*>(arg)->OnRead(); }
  static void WriteCb(bufferevent*, void*) {}
  static void EventCb(bufferevent*, short what, void* arg) {
    static_cast<Exchange*>(arg)->OnEvent(what);
  }

  void OnEvent(short what) {
    if (what & BEV_EVENT_CONNECTED) {
      connected_ = true;
      const int fd = bufferevent_getfd(bev_);
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      const UpstreamConf& u = *g_.conf;
      const timeval rt = Tv(u.read_timeout_ms), wt = Tv(u.send_timeout_ms);
      bufferevent_set_timeouts(bev_, &rt, &wt);
      return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
      if (tunnel_) return EndTunnel();  // read_timeout of silence ends a tunnel
      return AttemptFailed(504, !connected_                  ? "connect timed out"
                                : (what & BEV_EVENT_READING) ? "read timed out"
                                                             : "send timed out");
    }
    if (what & BEV_EVENT_EOF) {
      if (tunnel_) return EndTunnel();
      // A response without a length ends with the connection.
      if (head_sent_ && framing_in_close_) {
        llhttp_finish(&parser_);
        if (message_done_) return Finish();
      }
      if (StalePooled()) return;
      return AttemptFailed(502, "upstream closed the connection early");
    }
    if (what & BEV_EVENT_ERROR) {
      if (tunnel_) return EndTunnel();
      if (StalePooled()) return;
      return AttemptFailed(502, connected_ ? "connection reset" : "connect refused");
    }
  }

  // A pooled connection the server closed (its keep-alive timeout racing
  // with our reuse) before a byte of the response: not the server's
  // failure. An idempotent request is sent again on a new connection to
  // the same server, without using up a try (nginx gives the try back too).
  bool StalePooled() {
    if (!reused_ || got_bytes_ || head_sent_ || tunnel_) return false;
    ReleaseUpstream(false);
    if (!idempotent_) {
      spdlog::warn(
          "upstream {}: {} closed a pooled connection under a non-idempotent request, "
          "not sent again",
          g_.conf->name, g_.conf->servers[server_].address);
      FailNoUpstream(502);
      return true;
    }
    SPDLOG_DEBUG("upstream {}: {} closed a pooled connection: a new one", g_.conf->name,
                 g_.conf->servers[server_].address);
    Connect(/*pooled_ok=*/false);
    return true;
  }

  // libevent 2.1's bufferevent reads at most 4 KiB a call, each after an
  // ioctl(FIONREAD): a 100 KiB response took 26 of each. After its read,
  // take what else the socket holds in one recv (bounded by the room the
  // client's output has left) into rx_ (the bufferevent's input cannot be
  // added to outside its own reads); the socket's EOF or error stays for
  // the bufferevent to report.
  void ReadMore(evbuffer* in) {
    if (!c_ || reading_paused_) return;
    const size_t high = w_.config->limits.output_high_water, pending = c_->output_pending();
    const size_t room = std::min<size_t>(kReadMore, pending < high ? high - pending : 0);
    if (room < 4096) return;
    evbuffer_iovec v;
    if (evbuffer_reserve_space(in, static_cast<ev_ssize_t>(room), &v, 1) < 1) return;
    const ssize_t n =
        ::recv(bufferevent_getfd(bev_), v.iov_base, std::min(v.iov_len, room), MSG_DONTWAIT);
    v.iov_len = n > 0 ? static_cast<size_t>(n) : 0;
    evbuffer_commit_space(in, &v, 1);
  }
  static constexpr size_t kReadMore = 256 * 1024;

  void OnRead() {
    if (finished_ || !bev_) return;
    evbuffer* in = rx_;
    evbuffer* got = bufferevent_get_input(bev_);
    got_bytes_ = true;
    // A read of less than libevent's 4 KiB took all the socket had.
    const bool more = evbuffer_get_length(got) >= 4096;
    evbuffer_add_buffer(in, got);
    if (more) ReadMore(in);
    if (tunnel_) {
      if (c_) evbuffer_add_buffer(c_->output(), in);
      Backpressure();
      return;
    }
    while (!finished_ && evbuffer_get_length(in) > 0) {
      evbuffer_iovec v;
      if (evbuffer_peek(in, -1, nullptr, &v, 1) < 1) break;
      const char* data = static_cast<const char*>(v.iov_base);
      const llhttp_errno_t e = llhttp_execute(&parser_, data, v.iov_len);
      size_t used = v.iov_len;
      if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
        used = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
      } else if (e != HPE_OK) {
        evbuffer_drain(in, used);
        return ProtocolError(llhttp_errno_name(e));
      }
      evbuffer_drain(in, used);
      if (error_status_) return ProtocolError(error_why_);
      if (e == HPE_PAUSED_UPGRADE) return EnterTunnel();
      if (e == HPE_PAUSED) {
        // The whole response: anything after it was not asked for.
        if (evbuffer_get_length(in) > 0) upstream_keep_ = false;
        return Finish();
      }
      if (reading_paused_) break;
    }
    Backpressure();
  }

  void Backpressure() {
    if (!c_ || !bev_ || reading_paused_) return;
    if (c_->output_pending() > w_.config->limits.output_high_water) {
      reading_paused_ = true;
      bufferevent_disable(bev_, EV_READ);
    }
  }

  // ---- the response ----

  void ResetParser() {
    llhttp_init(&parser_, HTTP_RESPONSE, Settings());
    parser_.data = this;
    ResetMessage();
  }
  void ResetMessage() {
    status_ = 0;
    reason_.clear();
    headers_.clear();
    field_.clear();
    value_.clear();
    head_bytes_ = 0;
  }

  static Exchange* Self(llhttp_t* p) { return static_cast<Exchange*>(p->data); }

  static const llhttp_settings_t* Settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t x;
      llhttp_settings_init(&x);
      x.on_message_begin = [](llhttp_t* p) {
        Self(p)->ResetMessage();
        return 0;
      };
      x.on_status = [](llhttp_t* p, const char* at, size_t n) {
        Exchange* e = Self(p);
        if (!e->Count(n)) return -1;
        e->reason_.append(at, n);
        return 0;
      };
      x.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
        Exchange* e = Self(p);
        if (!e->Count(n)) return -1;
        e->field_.append(at, n);
        return 0;
      };
      x.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
        Exchange* e = Self(p);
        if (!e->Count(n)) return -1;
        e->value_.append(at, n);
        return 0;
      };
      x.on_header_value_complete = [](llhttp_t* p) {
        Exchange* e = Self(p);
        if (e->headers_.size() >= kMaxHeaders) return e->Error("too many response headers");
        for (char& ch : e->field_) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
        std::string_view v = e->value_;
        while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
        e->headers_.emplace_back(std::move(e->field_), std::string(v));
        e->field_.clear();
        e->value_.clear();
        return 0;
      };
      x.on_headers_complete = [](llhttp_t* p) { return Self(p)->HeadersComplete(); };
      x.on_body = [](llhttp_t* p, const char* at, size_t n) {
        Self(p)->Body(at, n);
        return 0;
      };
      x.on_message_complete = [](llhttp_t* p) { return Self(p)->MessageComplete(); };
      return x;
    }();
    return &s;
  }

  static constexpr size_t kMaxHeaders = 256;

  bool Count(size_t n) {
    head_bytes_ += n;
    if (head_bytes_ <= w_.config->limits.max_line_bytes) return true;
    Error("response head too large");
    return false;
  }
  int Error(const char* why) {
    error_status_ = 502;
    error_why_ = why;
    return -1;
  }

  int HeadersComplete() {
    status_ = parser_.status_code;
    if (parser_.http_major != 1) return Error("not an HTTP/1.x response");
    if (status_ >= 100 && status_ < 200 && status_ != 101)
      return 0;  // interim: wait for the real one
    if (status_ == 101 && !upgrade_req_) return Error("101 to a request that did not ask for it");
    std::vector<std::string> conn_listed;
    for (const auto& [n, v] : headers_)
      if (n == "connection")
        for (std::string& t : Tokens(v)) conn_listed.push_back(std::move(t));
    const bool chunked = (parser_.flags & F_CHUNKED) != 0;
    const bool has_length = (parser_.flags & F_CONTENT_LENGTH) != 0;
    const bool no_body = head_ || status_ == 204 || status_ == 304 || status_ == 101;
    framing_in_close_ = !no_body && !chunked && !has_length;
    if (no_body)
      framing_ = Framing::kNone;
    else if (has_length && !chunked)
      framing_ = Framing::kLength;
    else
      framing_ = client_minor0_ ? Framing::kClose : Framing::kChunked;
    keep_client_ = client_keep_ && framing_ != Framing::kClose;
    std::string h;
    h.reserve(256 + head_bytes_);
    h += "HTTP/1.1 ";
    h += std::to_string(status_);
    h += ' ';
    h += reason_.empty() ? std::string(StatusText(status_)) : reason_;
    h += "\r\n";
    std::string via;
    for (const auto& [n, v] : headers_) {
      if (status_ == 101 && (n == "upgrade" || n == "connection")) continue;  // added below
      if (HopByHop(n) || Listed(conn_listed, n)) continue;
      if (n == "content-length" && (chunked || framing_ == Framing::kChunked)) continue;
      if (n == "via") {
        via += (via.empty() ? "" : ", ") + v;
        continue;
      }
      h += n;
      h += ": ";
      h += v;
      h += "\r\n";
    }
    h += "Via: " + (via.empty() ? std::string() : via + ", ") + "1.1 preforkd\r\n";
    if (status_ == 101) {
      std::string up = "websocket";
      for (const auto& [n, v] : headers_)
        if (n == "upgrade") up = v;
      h += "Connection: upgrade\r\nUpgrade: " + up + "\r\n";
    } else if (framing_ == Framing::kChunked) {
      h += "Transfer-Encoding: chunked\r\n";
    }
    if (status_ != 101) {
      if (!keep_client_)
        h += "Connection: close\r\n";
      else if (client_minor0_)
        h += "Connection: keep-alive\r\n";
    }
    h += "\r\n";
    if (c_) evbuffer_add(c_->output(), h.data(), h.size());
    head_sent_ = true;
    const uint64_t now_us = MonoNs() / 1000;
    NoteResponse(g_, server_, status_, now_us > attempt_start_us_ ? now_us - attempt_start_us_ : 0);
    // HEAD, 204, 304: a Content-Length describes a body that does not follow
    // (llhttp 8.1 would read one after a 304 that has it).
    return no_body && status_ != 101 ? 1 : 0;
  }

  void Body(const char* at, size_t n) {
    if (!c_ || n == 0) return;
    evbuffer* out = c_->output();
    body_sent_ += n;
    if (framing_ == Framing::kChunked) {
      char size[24];
      const int len = snprintf(size, sizeof size, "%zx\r\n", n);
      evbuffer_add(out, size, static_cast<size_t>(len));
      evbuffer_add(out, at, n);
      evbuffer_add(out, "\r\n", 2);
    } else {
      evbuffer_add(out, at, n);
    }
  }

  int MessageComplete() {
    if (status_ >= 100 && status_ < 200 && status_ != 101) return 0;  // the next message follows
    message_done_ = true;
    upstream_keep_ = llhttp_should_keep_alive(&parser_) != 0;
    if (status_ == 101) return 0;  // llhttp pauses for the upgrade itself
    return HPE_PAUSED;
  }

  // ---- endings ----

  void Finish() {
    if (framing_ == Framing::kChunked && c_) evbuffer_add(c_->output(), "0\r\n\r\n", 5);
    ReleaseUpstream(upstream_keep_ && !framing_in_close_);
    End(status_, keep_client_);
  }

  // Failed before the client got anything: another server if the request
  // may be sent twice; else an error page. After the head: the client's
  // response is cut (its framing shows it), so the connection closes.
  void AttemptFailed(int status, const char* why) {
    if (finished_) return;
    const UpstreamConf& u = *g_.conf;
    const uint64_t now = MonoMs();
    SPDLOG_DEBUG("upstream {}: {}: {}", u.name, u.servers[server_].address, why);
    NoteFailure(g_, server_, now);
    ReleaseUpstream(false);
    last_fail_status_ = status;
    if (!head_sent_) {
      if (idempotent_ && tries_left_ > 0 && !tunnel_) {
        spdlog::info("upstream {}: {} ({}), trying another server", u.name,
                     u.servers[server_].address, why);
        return Attempt();
      }
      spdlog::warn("upstream {}: {} ({})", u.name, u.servers[server_].address, why);
      return FailNoUpstream(status);
    }
    spdlog::warn("upstream {}: {} ({}) after the response began: the client's is cut", u.name,
                 u.servers[server_].address, why);
    End(status_, false);
  }

  void ProtocolError(const char* why) {
    // An invalid response is the server's fault, not a reason to try another
    // (it might be a request the server handled).
    if (!head_sent_) tries_left_ = 0;
    AttemptFailed(502, why);
  }

  void FailNoUpstream(int status) {
    if (c_) {
      Reply rep;
      ErrorReply(status, &rep);
      std::string h = "HTTP/1.1 " + std::to_string(status) + ' ' + StatusText(status) +
                      "\r\nServer: preforkd\r\nDate: " + std::string(DateNow()) +
                      "\r\nContent-Type: " + std::string(rep.content_type) +
                      "\r\nContent-Length: " + std::to_string(rep.body.size()) + "\r\n" +
                      rep.headers;
      if (!client_keep_)
        h += "Connection: close\r\n";
      else if (client_minor0_)
        h += "Connection: keep-alive\r\n";
      h += "\r\n";
      if (!head_) h += rep.body;
      c_->Write(h);
    }
    status_ = status;
    End(status, client_keep_);
  }

  void EnterTunnel() {
    tunnel_ = true;
    keep_client_ = false;
    const timeval rt = Tv(g_.conf->read_timeout_ms), wt = Tv(g_.conf->send_timeout_ms);
    bufferevent_set_timeouts(bev_, &rt, &wt);
    // Bytes after the 101 belong to the new protocol.
    OnRead();
  }

  void EndTunnel() {
    ReleaseUpstream(false);
    End(101, false);
  }

  void End(int status, bool keep) {
    if (finished_) return;
    finished_ = true;
    ProxyClient* done = done_;
    done_ = nullptr;
    c_ = nullptr;
    ScheduleDelete();
    if (done) done->ProxyDone(status, body_sent_, keep);
  }

  // Back to the pool (a whole response on a connection both sides keep),
  // else closed.
  void ReleaseUpstream(bool reuse) {
    if (have_server_) {
      g_.servers[server_].active--;
      have_server_ = false;
    }
    if (!bev_) return;
    bufferevent* bev = bev_;
    bev_ = nullptr;
    const UpstreamConf& u = *g_.conf;
    const bool whole =
        evbuffer_get_length(rx_) == 0 && evbuffer_get_length(bufferevent_get_input(bev)) == 0;
    evbuffer_drain(rx_, evbuffer_get_length(rx_));
    if (reuse && u.keepalive > 0 && whole) {
      if (g_.idle.size() >= u.keepalive) {
        IdleConn* oldest = g_.idle.front();
        g_.DropIdle(oldest);
      }
      auto* ic = new IdleConn{bev, server_, &g_};
      g_.idle.push_back(ic);
      bufferevent_setcb(bev, IdleReadCb, nullptr, IdleEventCb, ic);
      const timeval idle = Tv(u.keepalive_timeout_ms);
      bufferevent_set_timeouts(bev, &idle, nullptr);
      bufferevent_enable(bev, EV_READ);
      return;
    }
    bufferevent_free(bev);
  }

  void ScheduleDelete() {
    if (delete_scheduled_) return;
    delete_scheduled_ = true;
    const timeval now{0, 0};
    event_base_once(
        w_.base, -1, EV_TIMEOUT,
        [](evutil_socket_t, short, void* p) { delete static_cast<Exchange*>(p); }, this, &now);
  }

  WorkerContext& w_;
  const ListenerConf& l_;
  Group& g_;
  Connection* c_;
  ProxyClient* done_;
  std::string request_;  // the request as sent upstream (kept for a retry)
  std::vector<bool> tried_;
  uint32_t tries_left_ = 1;
  uint64_t hash_ = 0;
  bool head_ = false, upgrade_req_ = false, client_minor0_ = false, client_keep_ = true;
  bool idempotent_ = false;
  // The current attempt.
  bufferevent* bev_ = nullptr;
  evbuffer* rx_ = evbuffer_new();  // read from the upstream, not yet parsed
  size_t server_ = 0;
  bool have_server_ = false;  // counted in the server's `active`
  bool connected_ = false;
  bool reused_ = false;     // this try's connection came from the pool
  bool got_bytes_ = false;  // ... and the server answered something on it
  int last_fail_status_ = 502;
  uint64_t attempt_start_us_ = 0;
  llhttp_t parser_{};
  int status_ = 0;
  std::string reason_, field_, value_;
  std::vector<std::pair<std::string, std::string>> headers_;
  size_t head_bytes_ = 0;
  int error_status_ = 0;
  const char* error_why_ = "";
  // The response to the client.
  bool head_sent_ = false;
  Framing framing_ = Framing::kNone;
  bool framing_in_close_ = false;  // the upstream's body ends with its connection
  bool keep_client_ = true;
  bool upstream_keep_ = false;
  bool message_done_ = false;
  uint64_t body_sent_ = 0;
  bool reading_paused_ = false;
  bool tunnel_ = false;
  bool finished_ = false;
  bool delete_scheduled_ = false;
};

}  // namespace

const RouteConf* MatchRoute(const ListenerConf& l, std::string_view path) {
  for (const RouteConf& r : l.routes) {
    if (r.exact) {
      if (path == r.path) return &r;
      continue;
    }
    if (path.substr(0, r.path.size()) == r.path) return &r;
    // A prefix "/app/" also covers "/app" (nginx answers that with a redirect).
    if (r.path.size() > 1 && r.path.back() == '/' &&
        path == std::string_view(r.path).substr(0, r.path.size() - 1))
      return &r;
  }
  return nullptr;
}

ProxyExchange* StartProxy(WorkerContext& w, const ListenerConf& l, const RouteConf& r,
                          Connection& c, const Request& req, std::string_view path,
                          std::string_view query, const IpAddr& client, bool client_keep,
                          ProxyClient* done) {
  std::vector<Group>& groups = Groups(w);
  auto* e = new Exchange(w, l, groups[r.upstream], c, done);
  e->Begin(req, r, path, query, client, client_keep);
  return e;
}

}  // namespace pf::http
