// tools/load/pf_load.cc: pf-load, the load generator for preforkd's line protocols.
// One libevent loop per thread, connections spread over them, closed-loop requests (optionally
// pipelined), every response validated by a mode (modes.h), latency merged across threads.
// The fan-out modes (pubsub, chat) share the options and run their own driver (fanout.h).
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common.h"
#include "fanout.h"
#include "histogram.h"
#include "modes.h"

namespace pf::load {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitErrors = 1;
constexpr int kExitUsage = 2;

constexpr uint64_t kBackoffMinNs = 10 * kMsNs;    // first retry after a failed connect
constexpr uint64_t kBackoffMaxNs = 1000 * kMsNs;  // doubling up to this
constexpr uint64_t kTickMaxNs = 100 * kMsNs;      // timeout checks run at least this often

enum ErrorKind { kConnect, kRead, kTimeout, kMismatch, kClosed, kErrorKinds };
constexpr std::array<const char*, kErrorKinds> kErrorNames = {"connect", "read", "timeout",
                                                              "mismatch", "closed"};

constexpr const char kUsage[] =
    "Usage: pf-load [OPTIONS]\n"
    "Load generator for preforkd's line protocols. Targets must be loopback addresses.\n"
    "\n"
    "Target:\n"
    "      --host ADDR          127.0.0.0/8, ::1 or localhost (default 127.0.0.1)\n"
    "  -p, --port PORT          default by mode: echo 7007, kv-json 7380, resp-* 6380,\n"
    "                           pubsub 6380, chat 7000\n"
    "  -m, --mode MODE          echo | kv-json | resp-ping | resp-multi | pubsub | chat\n"
    "                           (default echo)\n"
    "\n"
    "Load:\n"
    "  -c, --conns N            connections in total, spread over the threads (default 50);\n"
    "                           pubsub/chat: the subscribers (also --subscribers N)\n"
    "  -t, --threads N          event-loop threads (default 1; at most one per connection)\n"
    "  -d, --duration SECONDS   measured run time; the run always stops by itself (default 10)\n"
    "      --warmup SECONDS     run this long first and discard its results (default 0)\n"
    "      --pipeline N         requests in flight per connection (default 1; pubsub/chat:\n"
    "                           PUBLISH replies or own chat lines outstanding, default --window)\n"
    "      --connect-per-request\n"
    "                           connect, send one request, read its response, close\n"
    "      --size BYTES         payload: echo line length / kv-json and resp-multi SET value\n"
    "                           (default 64)\n"
    "      --get-ratio R        kv-json: share of GET requests, 0..1 (default 0.9)\n"
    "      --keys N             kv-json, resp-multi: keys are k0 .. k(N-1) (default 10000)\n"
    "      --timeout SECONDS    a request (or connect) unanswered this long is an error\n"
    "                           (default 5)\n"
    "\n"
    "Fan-out (pubsub: RESP SUBSCRIBE/PUBLISH, preforkd or redis-server; chat: preforkd chat):\n"
    "      --subscribers N      same as -c\n"
    "      --publishers N       publisher connections (default 1), on one extra thread\n"
    "      --window N           a publisher stays at most N messages ahead of its slowest\n"
    "                           subscriber (default 64)\n"
    "      --rate R             messages/s over all publishers (default: as fast as the window\n"
    "                           and the pipeline allow)\n"
    "      --channel NAME       channel (pubsub) or room (chat); default a fresh name per run\n"
    "      --size BYTES         message payload, at least its pub:seq:ns: header (default 64)\n"
    "\n"
    "Output:\n"
    "      --json               print one JSON object line instead of the text report\n"
    "  -h, --help               print this help\n"
    "\n"
    "Exit status: 0 the run completed without errors; 1 there were errors (or the run was\n"
    "interrupted); 2 usage error.\n";

struct Options {
  std::string host = "127.0.0.1";
  unsigned port = 0;  // 0: the mode's default
  std::string mode = "echo";
  unsigned conns = 50;
  unsigned threads = 1;
  unsigned publishers = 1;
  unsigned window = 64;
  double rate = 0;
  std::string channel;
  bool pipeline_set = false;
  double duration = 10;
  double warmup = 0;
  double timeout = 5;
  bool connect_per_request = false;
  bool json = false;
  ModeParams params;
};

struct Target {
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string text;  // "127.0.0.1:7007", "[::1]:7007"
};

std::atomic<bool> g_interrupted{false};

[[noreturn]] void UsageError(const std::string& msg) {
  std::fprintf(stderr, "pf-load: %s\nTry 'pf-load --help'.\n", msg.c_str());
  std::exit(kExitUsage);
}

unsigned long long ParseUint(const char* arg, const char* name, unsigned long long lo,
                             unsigned long long hi) {
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(arg, &end, 10);
  if (errno != 0 || end == arg || *end != '\0' || arg[0] == '-' || v < lo || v > hi) {
    UsageError(std::string(name) + ": '" + arg + "' is not an integer in " + std::to_string(lo) +
               ".." + std::to_string(hi));
  }
  return v;
}

double ParseDouble(const char* arg, const char* name, double lo, double hi, bool lo_open) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(arg, &end);
  const bool low_ok = lo_open ? v > lo : v >= lo;
  if (errno != 0 || end == arg || *end != '\0' || !std::isfinite(v) || !low_ok || v > hi) {
    char range[96];
    std::snprintf(range, sizeof range, "%s%g..%g", lo_open ? "more than " : "", lo, hi);
    UsageError(std::string(name) + ": '" + arg + "' is not a number in " + range);
  }
  return v;
}

// Only loopback targets: this tool must never be pointed at someone else's machine.
Target ResolveLoopback(const std::string& host_arg, unsigned port) {
  std::string host = host_arg;
  if (host == "localhost") host = "127.0.0.1";
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  Target t;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&t.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&t.addr);
  bool loopback = false;
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    t.len = sizeof(sockaddr_in);
    loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    t.text = host + ":" + std::to_string(port);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    t.len = sizeof(sockaddr_in6);
    const auto& a = v6->sin6_addr;
    loopback = IN6_IS_ADDR_LOOPBACK(&a) || (IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127);
    t.text = "[" + host + "]:" + std::to_string(port);
  } else {
    UsageError("--host '" + host_arg +
               "': not a numeric address; use 127.0.0.0/8, ::1 or localhost");
  }
  if (!loopback) {
    UsageError("--host '" + host_arg +
               "': refusing a non-loopback target (only 127.0.0.0/8 and ::1 are allowed)");
  }
  return t;
}

Options ParseOptions(int argc, char** argv) {
  enum LongOnly {
    kHost = 1000,
    kWarmup,
    kPipeline,
    kCpr,
    kSize,
    kGetRatio,
    kKeys,
    kTimeoutOpt,
    kJson,
    kPublishers,
    kWindow,
    kRate,
    kChannel
  };
  static const option kLong[] = {
      {"host", required_argument, nullptr, kHost},
      {"port", required_argument, nullptr, 'p'},
      {"mode", required_argument, nullptr, 'm'},
      {"conns", required_argument, nullptr, 'c'},
      {"subscribers", required_argument, nullptr, 'c'},
      {"publishers", required_argument, nullptr, kPublishers},
      {"window", required_argument, nullptr, kWindow},
      {"rate", required_argument, nullptr, kRate},
      {"channel", required_argument, nullptr, kChannel},
      {"threads", required_argument, nullptr, 't'},
      {"duration", required_argument, nullptr, 'd'},
      {"warmup", required_argument, nullptr, kWarmup},
      {"pipeline", required_argument, nullptr, kPipeline},
      {"connect-per-request", no_argument, nullptr, kCpr},
      {"size", required_argument, nullptr, kSize},
      {"get-ratio", required_argument, nullptr, kGetRatio},
      {"keys", required_argument, nullptr, kKeys},
      {"timeout", required_argument, nullptr, kTimeoutOpt},
      {"json", no_argument, nullptr, kJson},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  Options o;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":p:m:c:t:d:h", kLong, nullptr)) != -1) {
    switch (c) {
      case kHost:
        o.host = optarg;
        break;
      case 'p':
        o.port = static_cast<unsigned>(ParseUint(optarg, "--port", 1, 65535));
        break;
      case 'm':
        o.mode = optarg;
        break;
      case 'c':
        o.conns = static_cast<unsigned>(ParseUint(optarg, "-c", 1, 100000));
        break;
      case 't':
        o.threads = static_cast<unsigned>(ParseUint(optarg, "-t", 1, 256));
        break;
      case 'd':
        o.duration = ParseDouble(optarg, "-d", 0, 86400, true);
        break;
      case kWarmup:
        o.warmup = ParseDouble(optarg, "--warmup", 0, 86400, false);
        break;
      case kPipeline:
        o.params.pipeline = static_cast<unsigned>(ParseUint(optarg, "--pipeline", 1, 4096));
        o.pipeline_set = true;
        break;
      case kPublishers:
        o.publishers = static_cast<unsigned>(ParseUint(optarg, "--publishers", 1, 1000));
        break;
      case kWindow:
        o.window = static_cast<unsigned>(ParseUint(optarg, "--window", 1, 1 << 20));
        break;
      case kRate:
        o.rate = ParseDouble(optarg, "--rate", 0, 1e9, true);
        break;
      case kChannel:
        o.channel = optarg;
        if (o.channel.empty() || o.channel.size() > 200) UsageError("--channel: 1..200 bytes");
        break;
      case kCpr:
        o.connect_per_request = true;
        break;
      case kSize:
        o.params.size = ParseUint(optarg, "--size", 0, 16 << 20);
        break;
      case kGetRatio:
        o.params.get_ratio = ParseDouble(optarg, "--get-ratio", 0, 1, false);
        break;
      case kKeys:
        o.params.keys = ParseUint(optarg, "--keys", 1, 1'000'000'000'000ULL);
        break;
      case kTimeoutOpt:
        o.timeout = ParseDouble(optarg, "--timeout", 0, 3600, true);
        break;
      case kJson:
        o.json = true;
        break;
      case 'h':
        std::fputs(kUsage, stdout);
        std::exit(kExitOk);
      case ':':
        UsageError(std::string("option '") + argv[optind - 1] + "' needs a value");
      default:
        UsageError(std::string("unknown option '") + argv[optind - 1] + "'");
    }
  }
  if (optind < argc) UsageError(std::string("unexpected argument '") + argv[optind] + "'");
  if (o.connect_per_request && o.params.pipeline > 1) {
    UsageError("--pipeline > 1 cannot be combined with --connect-per-request");
  }
  o.threads = std::min(o.threads, o.conns);
  return o;
}

// ---- per-thread statistics -----------------------------------------------------------------

struct Stats {
  uint64_t requests = 0;  // responses judged correct
  uint64_t opened = 0;    // connections established
  std::array<uint64_t, kErrorKinds> errors{};
  std::array<std::string, kErrorKinds> first_error;  // one example per kind, for stderr
  LatencyHistogram latency;

  void Clear() {
    requests = opened = 0;
    errors.fill(0);
    for (auto& s : first_error) s.clear();
    latency.Clear();
  }
  void Merge(const Stats& o) {
    requests += o.requests;
    opened += o.opened;
    for (int k = 0; k < kErrorKinds; ++k) {
      errors[k] += o.errors[k];
      if (first_error[k].empty()) first_error[k] = o.first_error[k];
    }
    latency.Merge(o.latency);
  }
  uint64_t TotalErrors() const {
    uint64_t n = 0;
    for (uint64_t e : errors) n += e;
    return n;
  }
};

// ---- one thread: an event loop and its connections -----------------------------------------

class Worker;

// One client connection: connect, keep the pipeline full, judge responses, recover from errors.
class Conn {
 public:
  Conn(Worker& w, std::unique_ptr<Session> session);
  ~Conn() { Drop(); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  void Start();
  void CheckTimeout(uint64_t now);

 private:
  enum class State { kIdle, kConnecting, kConnected };

  static void OnConnect(evutil_socket_t fd, short what, void* arg);
  static void OnRead(bufferevent* bev, void* arg);
  static void OnEvent(bufferevent* bev, short what, void* arg);
  static void OnRetry(evutil_socket_t fd, short what, void* arg);

  void Established(UniqueFd fd);
  void Fill(uint64_t now);
  void HandleInput();
  void Fail(ErrorKind kind, const std::string& detail);
  void Drop();

  Worker& w_;
  std::unique_ptr<Session> session_;
  State state_ = State::kIdle;
  UniqueFd connecting_fd_;  // owned here until connected, then by bev_
  EventPtr connect_ev_;
  EventPtr retry_ev_;
  BufferEventPtr bev_;
  std::vector<uint64_t> sent_ns_;  // ring: send time of each request in flight, oldest at head_
  size_t head_ = 0;
  size_t inflight_ = 0;
  uint64_t connect_start_ns_ = 0;
  uint64_t backoff_ns_ = 0;
};

class Worker {
 public:
  Worker(const Options& opt, const Mode& mode, const Target& target, unsigned nconns, uint64_t seed)
      : opt_(opt), mode_(mode), target_(target), nconns_(nconns), rng_(seed) {}

  // Runs the whole timeline (warmup, measurement, stop) on the calling thread.
  void Run();

  const Stats& stats() const { return stats_; }
  double measured_seconds() const { return measured_s_; }

  // For Conn.
  event_base* base() const { return base_.get(); }
  const Options& opt() const { return opt_; }
  const Target& target() const { return target_; }
  Rng& rng() { return rng_; }
  uint64_t timeout_ns() const { return timeout_ns_; }
  void RecordOk(uint64_t latency_ns) {
    ++stats_.requests;
    stats_.latency.Record(latency_ns / 1000);
  }
  void CountOpened() { ++stats_.opened; }
  void CountError(ErrorKind kind, const std::string& detail) {
    if (stats_.errors[kind]++ == 0) stats_.first_error[kind] = detail;
  }

 private:
  static void OnTick(evutil_socket_t, short, void* arg);
  static void OnWarmupDone(evutil_socket_t, short, void* arg);
  static void OnEnd(evutil_socket_t, short, void* arg);
  void Stop(uint64_t now);

  const Options& opt_;
  const Mode& mode_;
  const Target& target_;
  unsigned nconns_;
  Rng rng_;
  uint64_t timeout_ns_ = 0;
  Stats stats_;
  uint64_t measure_start_ns_ = 0;
  double measured_s_ = 0;
  bool stopped_ = false;
  // Destroyed in reverse order: connections and events before their base.
  EventBasePtr base_;
  EventPtr tick_ev_, warmup_ev_, end_ev_;
  std::vector<std::unique_ptr<Conn>> conns_;
};

Conn::Conn(Worker& w, std::unique_ptr<Session> session)
    : w_(w),
      session_(std::move(session)),
      connect_ev_(event_new(w.base(), -1, 0, OnConnect, this)),
      retry_ev_(evtimer_new(w.base(), OnRetry, this)),
      sent_ns_(w.opt().params.pipeline) {}

void Conn::Start() {
  connect_start_ns_ = NowNs();
  const Target& t = w_.target();
  UniqueFd fd(::socket(t.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.Get() < 0) {  // EMFILE/ENFILE: counted and retried after a backoff, never spun on
    Fail(kConnect, std::string("socket: ") + std::strerror(errno));
    return;
  }
  const int one = 1;
  setsockopt(fd.Get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd.Get(), reinterpret_cast<const sockaddr*>(&t.addr), t.len) == 0) {
    Established(std::move(fd));
    return;
  }
  if (errno != EINPROGRESS) {  // ECONNREFUSED on loopback, EADDRNOTAVAIL when out of ports
    Fail(kConnect, std::string("connect ") + t.text + ": " + std::strerror(errno));
    return;
  }
  event_assign(connect_ev_.get(), w_.base(), fd.Get(), EV_WRITE, OnConnect, this);
  event_add(connect_ev_.get(), nullptr);
  connecting_fd_ = std::move(fd);
  state_ = State::kConnecting;
}

void Conn::OnConnect(evutil_socket_t fd, short, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) {
    c->Fail(kConnect, std::string("connect ") + c->w_.target().text + ": " + std::strerror(err));
    return;
  }
  c->state_ = State::kIdle;
  c->Established(std::move(c->connecting_fd_));
}

void Conn::Established(UniqueFd fd) {
  bev_.reset(bufferevent_socket_new(w_.base(), fd.Get(), BEV_OPT_CLOSE_ON_FREE));
  if (!bev_) {
    Fail(kConnect, "bufferevent_socket_new failed");
    return;
  }
  fd.Release();  // bev_ closes it now
  bufferevent_setcb(bev_.get(), OnRead, nullptr, OnEvent, this);
  bufferevent_enable(bev_.get(), EV_READ);
  state_ = State::kConnected;
  backoff_ns_ = 0;
  w_.CountOpened();
  Fill(NowNs());
}

void Conn::Fill(uint64_t now) {
  // Connect-per-request measures from the connect: that is what its client waits for.
  const size_t depth = w_.opt().params.pipeline;
  const uint64_t sent = w_.opt().connect_per_request ? connect_start_ns_ : now;
  evbuffer* out = bufferevent_get_output(bev_.get());
  while (inflight_ < depth) {
    session_->WriteRequest(out, w_.rng());
    sent_ns_[(head_ + inflight_) % depth] = sent;
    ++inflight_;
  }
}

void Conn::OnRead(bufferevent*, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  try {
    c->HandleInput();
  } catch (const std::exception& e) {  // never across libevent: count, drop, carry on
    c->Fail(kMismatch, std::string("exception while reading: ") + e.what());
  }
}

void Conn::HandleInput() {
  evbuffer* in = bufferevent_get_input(bev_.get());
  const uint64_t now = NowNs();  // one clock read per batch: these responses arrived together
  const size_t depth = sent_ns_.size();
  while (inflight_ > 0) {
    const Verdict v = session_->ReadResponse(in);
    if (v == Verdict::kNeedMore) break;
    if (v == Verdict::kBroken) {
      Fail(kMismatch, session_->Problem());
      return;
    }
    const uint64_t sent = sent_ns_[head_];
    head_ = (head_ + 1) % depth;
    --inflight_;
    if (v == Verdict::kOk) {
      w_.RecordOk(now - sent);
    } else {
      w_.CountError(kMismatch, session_->Problem());
    }
    if (w_.opt().connect_per_request) {
      Drop();
      Start();
      return;
    }
  }
  Fill(now);
}

void Conn::OnEvent(bufferevent*, short what, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  if (what & BEV_EVENT_EOF) {
    c->Fail(kClosed, c->inflight_ ? "server closed the connection with " +
                                        std::to_string(c->inflight_) + " request(s) in flight"
                                  : std::string("server closed an idle connection"));
  } else if (what & BEV_EVENT_ERROR) {
    const int err = EVUTIL_SOCKET_ERROR();
    c->Fail(kRead,
            std::string(what & BEV_EVENT_WRITING ? "write: " : "read: ") + std::strerror(err));
  }
}

void Conn::OnRetry(evutil_socket_t, short, void* arg) { static_cast<Conn*>(arg)->Start(); }

void Conn::CheckTimeout(uint64_t now) {
  const uint64_t limit = w_.timeout_ns();
  if (state_ == State::kConnecting && now - connect_start_ns_ > limit) {
    Fail(kConnect, "connect " + w_.target().text + ": no answer within --timeout");
  } else if (state_ == State::kConnected && inflight_ > 0 && now - sent_ns_[head_] > limit) {
    Fail(kTimeout,
         "no response within --timeout (" + std::to_string(inflight_) + " request(s) in flight)");
  }
}

// Counts the error, drops the connection and opens a new one: at once after a protocol error,
// after a doubling backoff when connecting itself failed (server down, out of ports or fds).
void Conn::Fail(ErrorKind kind, const std::string& detail) {
  w_.CountError(kind, detail);
  Drop();
  if (kind != kConnect) {
    backoff_ns_ = 0;
    Start();
    return;
  }
  backoff_ns_ = backoff_ns_ ? std::min(backoff_ns_ * 2, kBackoffMaxNs) : kBackoffMinNs;
  const timeval tv = ToTimeval(backoff_ns_);
  evtimer_add(retry_ev_.get(), &tv);
}

void Conn::Drop() {
  if (connect_ev_) event_del(connect_ev_.get());
  if (retry_ev_) event_del(retry_ev_.get());
  connecting_fd_.Reset();
  bev_.reset();  // safe inside this bufferevent's own callback: libevent defers the free
  session_->Reset();
  head_ = inflight_ = 0;
  state_ = State::kIdle;
}

void Worker::Run() {
  base_.reset(event_base_new());
  if (!base_) {
    std::fprintf(stderr, "pf-load: event_base_new failed\n");
    std::exit(kExitErrors);
  }
  timeout_ns_ = SecondsToNs(opt_.timeout);
  const uint64_t start = NowNs();
  measure_start_ns_ = start;

  tick_ev_.reset(event_new(base_.get(), -1, EV_PERSIST, OnTick, this));
  const timeval tick = ToTimeval(std::clamp<uint64_t>(timeout_ns_ / 4, kMsNs, kTickMaxNs));
  event_add(tick_ev_.get(), &tick);
  if (opt_.warmup > 0) {
    warmup_ev_.reset(evtimer_new(base_.get(), OnWarmupDone, this));
    const timeval tv = ToTimeval(SecondsToNs(opt_.warmup));
    evtimer_add(warmup_ev_.get(), &tv);
  }
  end_ev_.reset(evtimer_new(base_.get(), OnEnd, this));
  const timeval end = ToTimeval(SecondsToNs(opt_.warmup + opt_.duration));
  evtimer_add(end_ev_.get(), &end);

  conns_.reserve(nconns_);
  for (unsigned i = 0; i < nconns_; ++i) {
    conns_.push_back(std::make_unique<Conn>(*this, mode_.NewSession()));
  }
  for (auto& c : conns_) c->Start();

  event_base_dispatch(base_.get());
  if (!stopped_) Stop(NowNs());
  conns_.clear();  // closes every socket; requests still in flight are not counted
}

void Worker::OnTick(evutil_socket_t, short, void* arg) {
  auto* w = static_cast<Worker*>(arg);
  const uint64_t now = NowNs();
  if (g_interrupted.load(std::memory_order_relaxed)) {
    w->Stop(now);
    return;
  }
  for (auto& c : w->conns_) c->CheckTimeout(now);
}

void Worker::OnWarmupDone(evutil_socket_t, short, void* arg) {
  auto* w = static_cast<Worker*>(arg);
  w->stats_.Clear();
  w->measure_start_ns_ = NowNs();
}

void Worker::OnEnd(evutil_socket_t, short, void* arg) { static_cast<Worker*>(arg)->Stop(NowNs()); }

void Worker::Stop(uint64_t now) {
  if (stopped_) return;
  stopped_ = true;
  measured_s_ = static_cast<double>(now - measure_start_ns_) / 1e9;
  if (warmup_ev_ && evtimer_pending(warmup_ev_.get(), nullptr)) {  // interrupted in warmup
    stats_.Clear();
    measured_s_ = 0;
  }
  event_base_loopbreak(base_.get());
}

// ---- report --------------------------------------------------------------------------------

struct Report {
  uint64_t requests = 0;
  double duration_s = 0;
  double rps = 0;
  uint64_t p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;
  double mean = 0;
  uint64_t opened = 0;
  std::array<uint64_t, kErrorKinds> errors{};
  uint64_t total_errors = 0;
};

Report Summarize(const Stats& s, double duration_s) {
  Report r;
  r.requests = s.requests;
  r.duration_s = duration_s;
  r.rps = duration_s > 0 ? static_cast<double>(s.requests) / duration_s : 0;
  r.p50 = s.latency.Percentile(0.50);
  r.p90 = s.latency.Percentile(0.90);
  r.p99 = s.latency.Percentile(0.99);
  r.p999 = s.latency.Percentile(0.999);
  r.max = s.latency.Max();
  r.mean = s.latency.Mean();
  r.opened = s.opened;
  r.errors = s.errors;
  r.total_errors = s.TotalErrors();
  return r;
}

void PrintText(const Options& o, const Target& t, const Mode& mode, const Report& r) {
  std::printf(
      "target: %s  mode: %.*s  threads: %u  conns: %u  pipeline: %u  size: %zu"
      "  connect-per-request: %s\n",
      t.text.c_str(), static_cast<int>(mode.Name().size()), mode.Name().data(), o.threads, o.conns,
      o.params.pipeline, o.params.size, o.connect_per_request ? "yes" : "no");
  std::printf("requests: %llu  duration: %.2fs  rps: %.1f\n",
              static_cast<unsigned long long>(r.requests), r.duration_s, r.rps);
  std::printf("latency_us: p50=%llu p90=%llu p99=%llu p999=%llu max=%llu mean=%.1f\n",
              static_cast<unsigned long long>(r.p50), static_cast<unsigned long long>(r.p90),
              static_cast<unsigned long long>(r.p99), static_cast<unsigned long long>(r.p999),
              static_cast<unsigned long long>(r.max), r.mean);
  std::printf("connections: opened=%llu\n", static_cast<unsigned long long>(r.opened));
  std::printf("errors:");
  for (int k = 0; k < kErrorKinds; ++k) {
    std::printf(" %s=%llu", kErrorNames[k], static_cast<unsigned long long>(r.errors[k]));
  }
  std::printf(" total=%llu\n", static_cast<unsigned long long>(r.total_errors));
}

void PrintJson(const Options& o, const Target& t, const Mode& mode, const Report& r,
               bool interrupted) {
  std::string j = "{";
  auto num = [&j](const char* key, unsigned long long v) {
    j += JsonQuote(key) + ":" + std::to_string(v) + ",";
  };
  auto real = [&j](const char* key, double v, int digits) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    j += JsonQuote(key) + ":" + buf + ",";
  };
  j += "\"target\":" + JsonQuote(t.text) + ",\"mode\":" + JsonQuote(mode.Name()) + ",";
  num("threads", o.threads);
  num("conns", o.conns);
  num("pipeline", o.params.pipeline);
  num("size", o.params.size);
  j += std::string("\"connect_per_request\":") + (o.connect_per_request ? "true" : "false") + ",";
  num("requests", r.requests);
  real("duration_s", r.duration_s, 2);
  real("rps", r.rps, 1);
  j += "\"latency_us\":{";
  num("p50", r.p50);
  num("p90", r.p90);
  num("p99", r.p99);
  num("p999", r.p999);
  num("max", r.max);
  real("mean", r.mean, 1);
  j.back() = '}';
  j += ",";
  num("connections_opened", r.opened);
  j += "\"errors\":{";
  for (int k = 0; k < kErrorKinds; ++k) num(kErrorNames[k], r.errors[k]);
  num("total", r.total_errors);
  j.back() = '}';
  j += std::string(",\"interrupted\":") + (interrupted ? "true" : "false") + "}";
  std::puts(j.c_str());
}

// Enough descriptors for every connection, plus slack for stdio and the event loops.
void RaiseFdLimit(unsigned conns) {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  const rlim_t want = static_cast<rlim_t>(conns) + 64;
  if (rl.rlim_cur >= want) return;
  rl.rlim_cur = std::min(want, rl.rlim_max);
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < want) {
    std::fprintf(stderr,
                 "pf-load: warning: open-file limit %llu is below %u connections; expect "
                 "connect errors\n",
                 static_cast<unsigned long long>(rl.rlim_cur), conns);
  }
}

// pubsub and chat: N subscribers, K publishers, deliveries counted (fanout.h).
int FanoutMain(const Options& opt, const sigset_t& stop_signals) {
  if (opt.connect_per_request) UsageError("--connect-per-request does not apply to -m " + opt.mode);
  FanoutOptions f;
  f.protocol = opt.mode == "chat" ? FanoutProtocol::kChat : FanoutProtocol::kResp;
  const Target t =
      ResolveLoopback(opt.host, opt.port ? opt.port : (opt.mode == "chat" ? 7000 : 6380));
  f.addr = t.addr;
  f.addr_len = t.len;
  f.target = t.text;
  f.subscribers = opt.conns;
  f.publishers = opt.publishers;
  f.threads = opt.threads;
  f.duration = opt.duration;
  f.warmup = opt.warmup;
  f.timeout = opt.timeout;
  f.rate = opt.rate;
  f.window = opt.window;
  f.pipeline = opt.pipeline_set ? opt.params.pipeline : opt.window;
  f.size = opt.params.size;
  f.channel = opt.channel;
  f.json = opt.json;
  if (f.size > 60000) UsageError("--size: at most 60000 bytes in -m " + opt.mode);
  if (f.protocol == FanoutProtocol::kChat && !f.channel.empty()) {
    const bool ok =
        f.channel.size() <= 32 && std::all_of(f.channel.begin(), f.channel.end(), [](char ch) {
          return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-';
        });
    if (!ok) UsageError("--channel '" + f.channel + "': a chat room is 1-32 of A-Z a-z 0-9 _ -");
  }
  return RunFanout(f, stop_signals);
}

int Main(int argc, char** argv) {
  const Options opt = ParseOptions(argc, argv);
  const bool fanout = opt.mode == "pubsub" || opt.mode == "chat";

  signal(SIGPIPE, SIG_IGN);
  RaiseFdLimit(opt.conns + (fanout ? opt.publishers : 0));

  // Only this thread takes SIGINT/SIGTERM; workers inherit the blocked mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  if (fanout) return FanoutMain(opt, stop_signals);

  const std::unique_ptr<Mode> mode = MakeMode(opt.mode, opt.params);
  if (!mode) {
    UsageError("--mode '" + opt.mode + "': expected " + std::string(ModeNames()) + "|pubsub|chat");
  }
  const Target target = ResolveLoopback(opt.host, opt.port ? opt.port : mode->DefaultPort());

  std::random_device rd;
  const uint64_t seed = (uint64_t{rd()} << 32) ^ rd() ^ NowNs();
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned i = 0; i < opt.threads; ++i) {
    const unsigned n = opt.conns / opt.threads + (i < opt.conns % opt.threads ? 1 : 0);
    workers.push_back(
        std::make_unique<Worker>(opt, *mode, target, n, seed + 0x9e3779b97f4a7c15ULL * (i + 1)));
  }
  std::atomic<unsigned> finished{0};
  std::vector<std::thread> threads;
  for (auto& w : workers) {
    threads.emplace_back([&w, &finished] {
      w->Run();
      finished.fetch_add(1);
    });
  }
  while (finished.load() < workers.size()) {
    const timespec poll{0, 50'000'000};
    const int sig = sigtimedwait(&stop_signals, nullptr, &poll);
    if (sig == SIGINT || sig == SIGTERM) g_interrupted.store(true);
  }
  for (auto& t : threads) t.join();

  Stats total;
  double measured = 0;
  for (auto& w : workers) {
    total.Merge(w->stats());
    measured += w->measured_seconds();
  }
  const Report r = Summarize(total, measured / static_cast<double>(workers.size()));
  const bool interrupted = g_interrupted.load();
  if (opt.json) {
    PrintJson(opt, target, *mode, r, interrupted);
  } else {
    PrintText(opt, target, *mode, r);
  }
  std::fflush(stdout);
  for (int k = 0; k < kErrorKinds; ++k) {
    if (!total.first_error[k].empty()) {
      std::fprintf(stderr, "pf-load: first %s error: %s\n", kErrorNames[k],
                   total.first_error[k].c_str());
    }
  }
  if (interrupted) std::fprintf(stderr, "pf-load: interrupted before the end of the run\n");
  return r.total_errors == 0 && !interrupted ? kExitOk : kExitErrors;
}

}  // namespace
}  // namespace pf::load

int main(int argc, char** argv) { return pf::load::Main(argc, argv); }
