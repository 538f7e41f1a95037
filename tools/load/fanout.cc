// tools/load/fanout.cc: the fan-out driver behind `pf-load -m pubsub|chat`. Subscriber loops
// (one libevent base per thread) read raw sockets and check every delivery; one more thread
// runs the publishers, which stay within a window of the slowest subscriber (end-to-end flow
// control, so no server queue grows without bound); the calling thread runs the timeline.
#include "fanout.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common.h"
#include "fanout_wire.h"
#include "histogram.h"

namespace pf::load {
namespace {

constexpr uint64_t kSubTickNs = 50 * kMsNs;     // subscriber loops: stop and timeout checks
constexpr uint64_t kPubTickNs = 20 * kMsNs;     // publisher loop without --rate
constexpr uint64_t kRateTickNs = 1 * kMsNs;     // publisher loop with --rate: pacing granularity
constexpr uint64_t kProbeEveryNs = 20 * kMsNs;  // probe period until every subscriber saw one
constexpr size_t kReadChunk = 256 * 1024;       // one read(); also the largest message accepted
constexpr int kReadsPerWakeup = 8;              // then the other connections get a turn

enum Phase : int { kSetup, kProbe, kRun, kStop };

enum FanError { kConnect, kRead, kClosed, kTimeout, kMismatch, kLost, kReorder, kFanErrors };
constexpr std::array<const char*, kFanErrors> kFanErrorNames = {
    "connect", "read", "closed", "timeout", "mismatch", "lost", "reorder"};

struct FanStats {
  uint64_t delivered = 0;  // in-order deliveries to subscribers inside the measured window
  uint64_t published = 0;  // messages sent inside the measured window
  int64_t receivers_min = INT64_MAX, receivers_max = -1;  // PUBLISH replies (resp)
  std::array<uint64_t, kFanErrors> errors{};
  std::array<std::string, kFanErrors> first_error;
  LatencyHistogram latency;

  void Error(FanError kind, uint64_t n, const std::string& detail) {
    if (n == 0) return;
    if (errors[kind] == 0) first_error[kind] = detail;
    errors[kind] += n;
  }
  void Merge(const FanStats& o) {
    delivered += o.delivered;
    published += o.published;
    receivers_min = std::min(receivers_min, o.receivers_min);
    receivers_max = std::max(receivers_max, o.receivers_max);
    for (int k = 0; k < kFanErrors; ++k) {
      if (errors[k] == 0 && o.errors[k] != 0) first_error[k] = o.first_error[k];
      errors[k] += o.errors[k];
    }
    latency.Merge(o.latency);
  }
  uint64_t TotalErrors() const {
    uint64_t n = 0;
    for (uint64_t e : errors) n += e;
    return n;
  }
};

struct alignas(64) PaddedCounter {
  std::atomic<uint64_t> v{0};
};

// What the timeline thread and the loop threads share. Loop threads own their connections;
// they report progress here through atomics, and the timeline only moves `phase` forward.
struct Shared {
  Shared(const FanoutOptions& o, unsigned sub_threads)
      : opt(o),
        threads(sub_threads),
        published(new PaddedCounter[o.publishers]),
        floors(new PaddedCounter[size_t{sub_threads} * o.publishers]) {}

  const FanoutOptions& opt;
  const unsigned threads;
  std::string channel;      // the resp channel, or the chat room
  std::string room_prefix;  // chat: "[room] "
  std::string joined;       // chat: "* joined [room]"
  uint64_t setup_timeout_ns = 0;

  std::atomic<int> phase{kSetup};
  std::atomic<uint64_t> start_ns{UINT64_MAX}, end_ns{UINT64_MAX};
  std::atomic<uint64_t> probe_start_ns{0};
  // Each subscriber counts once in `set_up` (confirmed or dropped) and once in `probed` (saw
  // a probe or dropped); each publisher once in `pubs_set_up`.
  std::atomic<unsigned> set_up{0}, probed{0}, pubs_set_up{0};
  std::atomic<unsigned> subs_ready{0}, subs_dropped{0}, pubs_ready{0}, pubs_dropped{0};
  std::atomic<int> subs_live{0}, pubs_live{0};  // ready and not dropped
  std::unique_ptr<PaddedCounter[]> published;   // per publisher: messages sent (next seq)
  std::unique_ptr<PaddedCounter[]> floors;      // [thread * publishers + p]: PassFloor::Floor()
  std::atomic<bool> pub_waiting{false};         // the publisher thread waits for floors to move
  UniqueFd wake_fd;                             // eventfd of the publisher thread

  bool Measuring(uint64_t now) const {
    return now >= start_ns.load(std::memory_order_relaxed) &&
           now < end_ns.load(std::memory_order_relaxed);
  }
  void WakePublisher() {
    const uint64_t one = 1;
    (void)!::write(wake_fd.Get(), &one, sizeof one);
  }
  uint64_t GlobalFloor(unsigned p) const {
    uint64_t f = UINT64_MAX;
    for (unsigned t = 0; t < threads; ++t) {
      f = std::min(f, floors[size_t{t} * opt.publishers + p].v.load(std::memory_order_seq_cst));
    }
    return f;
  }
};

// A non-blocking connect; -1 with errno set on failure.
int StartConnect(const FanoutOptions& o) {
  const int fd = ::socket(o.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&o.addr), o.addr_len) != 0 &&
      errno != EINPROGRESS) {
    const int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

int SocketError(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  return err;
}

// Writes all of `data` to a fresh socket (a subscribe or join command: far below the socket
// buffer), false when it did not go out whole.
bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Calls fn(line) for each complete '\n' line in buf (without "\r\n"); returns bytes consumed.
// fn returns false to stop early.
template <typename Fn>
size_t ForEachLine(std::string_view buf, Fn&& fn) {
  size_t off = 0;
  while (off < buf.size()) {
    const size_t nl = buf.find('\n', off);
    if (nl == std::string_view::npos) break;
    std::string_view line = buf.substr(off, nl - off);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    off = nl + 1;
    if (!fn(line)) break;
  }
  return off;
}

// ---- subscribers ---------------------------------------------------------------------------

class SubscriberLoop {
 public:
  SubscriberLoop(Shared& sh, unsigned index, unsigned nsubs)
      : sh_(sh), index_(index), nsubs_(nsubs), scratch_(kReadChunk) {
    const uint64_t span = uint64_t{sh.opt.window} + sh.opt.pipeline + 16;
    for (unsigned p = 0; p < sh.opt.publishers; ++p) floors_.emplace_back(nsubs, span);
    stored_floor_.assign(sh.opt.publishers, 0);
  }

  void Run();
  const FanStats& stats() const { return stats_; }

 private:
  enum class State { kConnecting, kSubscribing, kReady, kDropped };
  struct Sub {
    SubscriberLoop* loop = nullptr;
    UniqueFd fd;
    EventPtr ev;
    State state = State::kConnecting;
    bool counted_setup = false, counted_probe = false;
    std::string in;  // an incomplete message carried over to the next read
    OrderTracker order;
    uint64_t start_ns = 0, last_progress_ns = 0, behind_since_ns = 0;
  };

  static void OnConnected(evutil_socket_t, short, void* arg);
  static void OnReadable(evutil_socket_t, short, void* arg);
  static void OnTick(evutil_socket_t, short, void* arg);

  void Start(Sub& s);
  void Read(Sub& s);
  size_t ParseResp(Sub& s, std::string_view buf, uint64_t now);
  size_t ParseChat(Sub& s, std::string_view buf, uint64_t now);
  void Data(Sub& s, std::string_view data, uint64_t now);
  void Ready(Sub& s);
  void Drop(Sub& s, FanError kind, const std::string& detail);
  void SetUp(Sub& s);
  void Probed(Sub& s);
  void PublishFloors();
  void Tick(uint64_t now);

  Shared& sh_;
  unsigned index_;
  unsigned nsubs_;
  FanStats stats_;
  std::vector<PassFloor> floors_;  // per publisher, over this thread's subscribers
  std::vector<uint64_t> stored_floor_;
  std::vector<char> scratch_;
  // Destroyed in reverse order: connections and events before their base.
  EventBasePtr base_;
  EventPtr tick_ev_;
  std::vector<std::unique_ptr<Sub>> subs_;
};

void SubscriberLoop::Run() {
  base_.reset(event_base_new());
  if (!base_) {
    std::fprintf(stderr, "pf-load: event_base_new failed\n");
    std::exit(1);
  }
  tick_ev_.reset(event_new(base_.get(), -1, EV_PERSIST, OnTick, this));
  const timeval tick = ToTimeval(kSubTickNs);
  event_add(tick_ev_.get(), &tick);
  for (unsigned i = 0; i < nsubs_; ++i) {
    auto s = std::make_unique<Sub>();
    s->loop = this;
    s->order = OrderTracker(sh_.opt.publishers);
    subs_.push_back(std::move(s));
  }
  for (auto& s : subs_) Start(*s);
  PublishFloors();
  event_base_dispatch(base_.get());
  subs_.clear();
}

void SubscriberLoop::Start(Sub& s) {
  s.start_ns = NowNs();
  s.fd.Reset(StartConnect(sh_.opt));
  if (s.fd.Get() < 0) {
    Drop(s, kConnect, "connect " + sh_.opt.target + ": " + std::strerror(errno));
    return;
  }
  s.ev.reset(event_new(base_.get(), s.fd.Get(), EV_WRITE, OnConnected, &s));
  event_add(s.ev.get(), nullptr);
}

void SubscriberLoop::OnConnected(evutil_socket_t fd, short, void* arg) {
  auto& s = *static_cast<Sub*>(arg);
  SubscriberLoop& l = *s.loop;
  if (const int err = SocketError(fd)) {
    l.Drop(s, kConnect, "connect " + l.sh_.opt.target + ": " + std::strerror(err));
    return;
  }
  std::string cmd;
  if (l.sh_.opt.protocol == FanoutProtocol::kResp) {
    AppendRespCommand(cmd, {"SUBSCRIBE", l.sh_.channel});
  } else {
    cmd = "/join " + l.sh_.channel + "\n";
  }
  if (!WriteAll(fd, cmd)) {
    l.Drop(s, kRead, std::string("write: ") + std::strerror(errno));
    return;
  }
  s.state = State::kSubscribing;
  event_del(s.ev.get());
  event_assign(s.ev.get(), l.base_.get(), fd, EV_READ | EV_PERSIST, OnReadable, &s);
  event_add(s.ev.get(), nullptr);
}

void SubscriberLoop::OnReadable(evutil_socket_t, short, void* arg) {
  auto& s = *static_cast<Sub*>(arg);
  try {
    s.loop->Read(s);
  } catch (const std::exception& e) {  // never across libevent
    s.loop->Drop(s, kMismatch, std::string("exception while reading: ") + e.what());
  }
  s.loop->PublishFloors();
}

void SubscriberLoop::Read(Sub& s) {
  const uint64_t now = NowNs();  // one clock read per wake-up: these messages arrived together
  for (int round = 0; round < kReadsPerWakeup; ++round) {
    const size_t have = s.in.size();
    std::memcpy(scratch_.data(), s.in.data(), have);
    const ssize_t n = ::read(s.fd.Get(), scratch_.data() + have, scratch_.size() - have);
    if (n == 0) {
      Drop(s, kClosed, "the server closed a subscriber connection");
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        Drop(s, kRead, std::string("read: ") + std::strerror(errno));
      }
      return;
    }
    const std::string_view buf(scratch_.data(), have + static_cast<size_t>(n));
    const size_t used =
        sh_.opt.protocol == FanoutProtocol::kResp ? ParseResp(s, buf, now) : ParseChat(s, buf, now);
    if (s.state == State::kDropped) return;
    s.in.assign(buf.substr(used));
    if (s.in.size() == scratch_.size()) {
      Drop(s, kMismatch, "a message longer than " + std::to_string(kReadChunk) + " bytes");
      return;
    }
    if (static_cast<size_t>(n) < scratch_.size() - have) return;  // the socket is drained
  }
}

size_t SubscriberLoop::ParseResp(Sub& s, std::string_view buf, uint64_t now) {
  size_t off = 0;
  RespReply r;
  while (off < buf.size()) {
    const ptrdiff_t n = ParseRespReply(buf.substr(off), &r);
    if (n == 0) break;
    if (n < 0) {
      Drop(s, kMismatch,
           "not a RESP reply this client expects: \"" + std::string(buf.substr(off, 40)) + "\"");
      return off;
    }
    off += static_cast<size_t>(n);
    if (r.top.type == '*' && r.top.num == 3 && r.items[0].type == '$') {
      const std::string_view kind = r.items[0].str;
      if (kind == "message" && r.items[2].type == '$') {
        Data(s, r.items[2].str, now);
        if (s.state == State::kDropped) return off;
        continue;
      }
      if (kind == "subscribe" && s.state == State::kSubscribing && r.items[1].str == sh_.channel) {
        Ready(s);
        continue;
      }
    }
    stats_.Error(kMismatch, 1,
                 r.top.type == '-' ? "error reply: " + std::string(r.top.str)
                                   : "unexpected reply of type '" + std::string(1, r.top.type) +
                                         "' on a subscriber connection");
  }
  return off;
}

size_t SubscriberLoop::ParseChat(Sub& s, std::string_view buf, uint64_t now) {
  return ForEachLine(buf, [&](std::string_view line) {
    std::string_view text;
    switch (ClassifyChatLine(line, sh_.room_prefix, &text)) {
      case ChatLine::kMessage:
        if (s.state == State::kReady) Data(s, text, now);  // before the join: history
        break;
      case ChatLine::kInfo:
        if (s.state == State::kSubscribing && line.starts_with(sh_.joined)) Ready(s);
        break;
      case ChatLine::kError:
        stats_.Error(kMismatch, 1, "chat error line: " + std::string(line.substr(0, 120)));
        break;
      case ChatLine::kOther:  // e.g. lobby traffic before the /join was served
        break;
    }
    return s.state != State::kDropped;
  });
}

void SubscriberLoop::Data(Sub& s, std::string_view data, uint64_t now) {
  uint32_t probe_from;
  if (ParseProbe(data, &probe_from)) {
    Probed(s);
    return;
  }
  Payload p;
  if (!ParsePayload(data, &p) || p.publisher >= sh_.opt.publishers) {
    stats_.Error(kMismatch, 1,
                 "not a pf-load payload: \"" + std::string(data.substr(0, 60)) + "\"");
    return;
  }
  const uint64_t from = s.order.Next(p.publisher);
  uint64_t lost = 0;
  const OrderTracker::Result r = s.order.Observe(p.publisher, p.seq, &lost);
  if (r == OrderTracker::Result::kDuplicate) {
    stats_.Error(kReorder, 1,
                 "publisher " + std::to_string(p.publisher) + ": message " + std::to_string(p.seq) +
                     " after " + std::to_string(from - 1));
    return;
  }
  if (!floors_[p.publisher].Advance(from, s.order.Next(p.publisher))) {
    stats_.Error(kMismatch, 1,
                 "publisher " + std::to_string(p.publisher) + ": message " + std::to_string(p.seq) +
                     " was never published");
    return;
  }
  s.last_progress_ns = now;
  s.behind_since_ns = 0;
  stats_.Error(kLost, lost,
               "publisher " + std::to_string(p.publisher) + ": " + std::to_string(lost) +
                   " message(s) missing before " + std::to_string(p.seq));
  if (sh_.Measuring(now)) {
    ++stats_.delivered;
    stats_.latency.Record(now > p.sent_ns ? (now - p.sent_ns) / 1000 : 0);
  }
}

void SubscriberLoop::Ready(Sub& s) {
  s.state = State::kReady;
  s.last_progress_ns = NowNs();
  sh_.subs_ready.fetch_add(1);
  sh_.subs_live.fetch_add(1);
  SetUp(s);
}

void SubscriberLoop::SetUp(Sub& s) {
  if (s.counted_setup) return;
  s.counted_setup = true;
  sh_.set_up.fetch_add(1);
}

void SubscriberLoop::Probed(Sub& s) {
  if (s.counted_probe) return;
  s.counted_probe = true;
  sh_.probed.fetch_add(1);
}

// A subscriber that failed is not replaced: a new one would start mid-stream and its order
// check with it. It leaves the floors, so the publishers do not wait for it.
void SubscriberLoop::Drop(Sub& s, FanError kind, const std::string& detail) {
  if (s.state == State::kDropped) return;
  stats_.Error(kind, 1, detail);
  if (s.state == State::kReady) sh_.subs_live.fetch_sub(1);
  if (s.ev) event_del(s.ev.get());  // freed with the Sub: this may be its own callback
  s.fd.Reset();
  s.in.clear();
  s.state = State::kDropped;
  for (unsigned p = 0; p < sh_.opt.publishers; ++p) floors_[p].Remove(s.order.Next(p));
  sh_.subs_dropped.fetch_add(1);
  SetUp(s);
  Probed(s);
}

// Makes this thread's floors visible to the publishers, and wakes them if they wait for it.
void SubscriberLoop::PublishFloors() {
  bool moved = false;
  for (unsigned p = 0; p < sh_.opt.publishers; ++p) {
    const uint64_t f = floors_[p].Floor();
    if (f == stored_floor_[p]) continue;
    stored_floor_[p] = f;
    sh_.floors[size_t{index_} * sh_.opt.publishers + p].v.store(f, std::memory_order_seq_cst);
    moved = true;
  }
  // Dekker with the publisher: it sets pub_waiting, then re-reads the floors.
  if (moved && sh_.pub_waiting.load(std::memory_order_seq_cst) && sh_.pub_waiting.exchange(false)) {
    sh_.WakePublisher();
  }
}

void SubscriberLoop::OnTick(evutil_socket_t, short, void* arg) {
  auto* l = static_cast<SubscriberLoop*>(arg);
  l->Tick(NowNs());
  l->PublishFloors();
}

void SubscriberLoop::Tick(uint64_t now) {
  const int phase = sh_.phase.load();
  if (phase == kStop) {
    event_base_loopbreak(base_.get());
    return;
  }
  const uint64_t timeout = SecondsToNs(sh_.opt.timeout);
  for (auto& sp : subs_) {
    Sub& s = *sp;
    if (s.state == State::kDropped) continue;
    if (s.state != State::kReady) {
      if (now - s.start_ns > sh_.setup_timeout_ns) {
        Drop(s, s.state == State::kConnecting ? kConnect : kTimeout,
             s.state == State::kConnecting ? "connect " + sh_.opt.target + ": no answer"
                                           : "subscription not confirmed in time");
      }
      continue;
    }
    if (phase == kProbe && !s.counted_probe) {
      const uint64_t since = sh_.probe_start_ns.load();
      if (since && now - since > timeout) Drop(s, kTimeout, "no probe message delivered");
      continue;
    }
    if (phase != kRun) continue;
    bool behind = false;
    for (unsigned p = 0; p < sh_.opt.publishers && !behind; ++p) {
      behind = sh_.published[p].v.load(std::memory_order_relaxed) > s.order.Next(p);
    }
    if (!behind) {
      s.behind_since_ns = 0;
      continue;
    }
    if (s.behind_since_ns == 0) s.behind_since_ns = now;
    if (now - std::max(s.behind_since_ns, s.last_progress_ns) > timeout) {
      Drop(s, kTimeout, "a published message was not delivered within --timeout");
    }
  }
}

// ---- publishers ----------------------------------------------------------------------------

class PublisherLoop {
 public:
  explicit PublisherLoop(Shared& sh) : sh_(sh) {}
  void Run();
  const FanStats& stats() const { return stats_; }

 private:
  enum class State { kConnecting, kJoining, kReady, kDropped };
  struct Pub {
    PublisherLoop* loop = nullptr;
    unsigned id = 0;
    UniqueFd fd;
    EventPtr rev, wev;
    State state = State::kConnecting;
    bool counted_setup = false;
    std::string in, out, payload;
    size_t out_off = 0;
    uint64_t next_seq = 0;  // messages sent in the run phase
    uint64_t probes = 0, last_probe_ns = 0;
    unsigned outstanding = 0;     // replies (chat: own echoes) not yet received
    uint64_t reply_clock_ns = 0;  // last reply, or when outstanding went from 0 to 1
    uint64_t start_ns = 0;
  };

  static void OnConnected(evutil_socket_t, short, void* arg);
  static void OnReadable(evutil_socket_t, short, void* arg);
  static void OnWritable(evutil_socket_t, short, void* arg);
  static void OnWake(evutil_socket_t, short, void* arg);
  static void OnTick(evutil_socket_t, short, void* arg);

  void Start(Pub& p);
  void Read(Pub& p);
  void Reply(Pub& p, uint64_t now);
  void Fill(Pub& p, uint64_t now);
  void Flush(Pub& p);
  void Ready(Pub& p);
  void Drop(Pub& p, FanError kind, const std::string& detail);
  void SetUp(Pub& p);
  void AppendMessage(Pub& p, std::string_view data);
  void FillAll();
  void CheckTimeouts(uint64_t now);

  Shared& sh_;
  FanStats stats_;
  uint64_t run_start_ns_ = 0;  // pacing origin for --rate
  EventBasePtr base_;
  EventPtr wake_ev_, tick_ev_;
  std::vector<std::unique_ptr<Pub>> pubs_;
};

void PublisherLoop::Run() {
  base_.reset(event_base_new());
  if (!base_) {
    std::fprintf(stderr, "pf-load: event_base_new failed\n");
    std::exit(1);
  }
  wake_ev_.reset(event_new(base_.get(), sh_.wake_fd.Get(), EV_READ | EV_PERSIST, OnWake, this));
  event_add(wake_ev_.get(), nullptr);
  tick_ev_.reset(event_new(base_.get(), -1, EV_PERSIST, OnTick, this));
  const timeval tick = ToTimeval(sh_.opt.rate > 0 ? kRateTickNs : kPubTickNs);
  event_add(tick_ev_.get(), &tick);
  for (unsigned i = 0; i < sh_.opt.publishers; ++i) {
    auto p = std::make_unique<Pub>();
    p->loop = this;
    p->id = i;
    pubs_.push_back(std::move(p));
  }
  for (auto& p : pubs_) Start(*p);
  event_base_dispatch(base_.get());
  pubs_.clear();
}

void PublisherLoop::Start(Pub& p) {
  p.start_ns = NowNs();
  p.fd.Reset(StartConnect(sh_.opt));
  if (p.fd.Get() < 0) {
    Drop(p, kConnect, "connect " + sh_.opt.target + ": " + std::strerror(errno));
    return;
  }
  p.rev.reset(event_new(base_.get(), p.fd.Get(), EV_WRITE, OnConnected, &p));
  event_add(p.rev.get(), nullptr);
}

void PublisherLoop::OnConnected(evutil_socket_t fd, short, void* arg) {
  auto& p = *static_cast<Pub*>(arg);
  PublisherLoop& l = *p.loop;
  if (const int err = SocketError(fd)) {
    l.Drop(p, kConnect, "connect " + l.sh_.opt.target + ": " + std::strerror(err));
    return;
  }
  event_del(p.rev.get());
  event_assign(p.rev.get(), l.base_.get(), fd, EV_READ | EV_PERSIST, OnReadable, &p);
  event_add(p.rev.get(), nullptr);
  p.wev.reset(event_new(l.base_.get(), fd, EV_WRITE, OnWritable, &p));
  if (l.sh_.opt.protocol == FanoutProtocol::kChat) {
    // The publisher is a room member too: its own lines come back, which serve as its replies.
    p.state = State::kJoining;
    if (!WriteAll(fd, "/join " + l.sh_.channel + "\n")) {
      l.Drop(p, kRead, std::string("write: ") + std::strerror(errno));
    }
    return;
  }
  l.Ready(p);
}

void PublisherLoop::Ready(Pub& p) {
  p.state = State::kReady;
  sh_.pubs_ready.fetch_add(1);
  sh_.pubs_live.fetch_add(1);
  SetUp(p);
  Fill(p, NowNs());
}

void PublisherLoop::SetUp(Pub& p) {
  if (p.counted_setup) return;
  p.counted_setup = true;
  sh_.pubs_set_up.fetch_add(1);
}

void PublisherLoop::Drop(Pub& p, FanError kind, const std::string& detail) {
  if (p.state == State::kDropped) return;
  stats_.Error(kind, 1, detail);
  if (p.state == State::kReady) sh_.pubs_live.fetch_sub(1);
  if (p.rev) event_del(p.rev.get());  // freed with the Pub: this may be its own callback
  if (p.wev) event_del(p.wev.get());
  p.fd.Reset();
  p.state = State::kDropped;
  sh_.pubs_dropped.fetch_add(1);
  SetUp(p);
}

void PublisherLoop::OnReadable(evutil_socket_t, short, void* arg) {
  auto& p = *static_cast<Pub*>(arg);
  try {
    p.loop->Read(p);
  } catch (const std::exception& e) {  // never across libevent
    p.loop->Drop(p, kMismatch, std::string("exception while reading: ") + e.what());
  }
}

void PublisherLoop::Read(Pub& p) {
  char buf[64 * 1024];
  for (int round = 0; round < kReadsPerWakeup; ++round) {
    const ssize_t n = ::read(p.fd.Get(), buf, sizeof buf);
    if (n == 0) {
      Drop(p, kClosed, "the server closed a publisher connection");
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        Drop(p, kRead, std::string("read: ") + std::strerror(errno));
        return;
      }
      break;
    }
    p.in.append(buf, static_cast<size_t>(n));
    if (static_cast<size_t>(n) < sizeof buf) break;
  }
  const uint64_t now = NowNs();
  const std::string_view in(p.in);
  size_t used = 0;
  if (sh_.opt.protocol == FanoutProtocol::kResp) {
    RespReply r;
    while (used < in.size()) {
      const ptrdiff_t n = ParseRespReply(in.substr(used), &r);
      if (n == 0) break;
      if (n < 0) {
        Drop(p, kMismatch, "not a PUBLISH reply: \"" + std::string(in.substr(used, 40)) + "\"");
        return;
      }
      used += static_cast<size_t>(n);
      if (r.top.type == ':') {
        if (sh_.Measuring(now)) {
          stats_.receivers_min = std::min(stats_.receivers_min, r.top.num);
          stats_.receivers_max = std::max(stats_.receivers_max, r.top.num);
        }
      } else {
        stats_.Error(kMismatch, 1,
                     r.top.type == '-' ? "PUBLISH: " + std::string(r.top.str)
                                       : "PUBLISH: a reply that is not an integer");
      }
      Reply(p, now);
    }
  } else {
    used = ForEachLine(in, [&](std::string_view line) {
      std::string_view text;
      Payload pl;
      uint32_t from;
      switch (ClassifyChatLine(line, sh_.room_prefix, &text)) {
        case ChatLine::kMessage:
          if (p.state == State::kReady && ((ParsePayload(text, &pl) && pl.publisher == p.id) ||
                                           (ParseProbe(text, &from) && from == p.id))) {
            Reply(p, now);
          }
          break;
        case ChatLine::kInfo:
          if (p.state == State::kJoining && line.starts_with(sh_.joined)) Ready(p);
          break;
        case ChatLine::kError:  // a line of ours refused (rate limit, size): no echo will come
          stats_.Error(kMismatch, 1, "chat error line: " + std::string(line.substr(0, 120)));
          if (p.state == State::kReady) Reply(p, now);
          break;
        case ChatLine::kOther:
          break;
      }
      return p.state != State::kDropped;
    });
  }
  if (p.state == State::kDropped) return;
  p.in.erase(0, used);
  Fill(p, now);
}

void PublisherLoop::Reply(Pub& p, uint64_t now) {
  if (p.outstanding > 0) --p.outstanding;
  p.reply_clock_ns = now;
}

void PublisherLoop::AppendMessage(Pub& p, std::string_view data) {
  if (sh_.opt.protocol == FanoutProtocol::kResp) {
    AppendRespCommand(p.out, {"PUBLISH", sh_.channel, data});
  } else {
    p.out += data;
    p.out += '\n';
  }
  ++p.outstanding;
}

// Sends what the phase, the pipeline, the window and the rate allow.
void PublisherLoop::Fill(Pub& p, uint64_t now) {
  if (p.state != State::kReady) return;
  const FanoutOptions& o = sh_.opt;
  if (p.outstanding == 0) p.reply_clock_ns = now;
  const int phase = sh_.phase.load();
  if (phase == kProbe) {
    if (p.id == 0 && p.outstanding < o.pipeline && now - p.last_probe_ns >= kProbeEveryNs) {
      p.payload.clear();
      AppendProbe(p.payload, p.id, p.probes++);
      AppendMessage(p, p.payload);
      p.last_probe_ns = now;
    }
  } else if (phase == kRun) {
    if (run_start_ns_ == 0) run_start_ns_ = now;
    for (;;) {
      uint64_t n = o.pipeline - std::min(o.pipeline, p.outstanding);
      if (o.rate > 0) {
        const double per_pub = o.rate / o.publishers;
        const uint64_t due =
            static_cast<uint64_t>(static_cast<double>(now - run_start_ns_) * per_pub / 1e9) + 1;
        n = std::min(n, due > p.next_seq ? due - p.next_seq : 0);
      }
      if (n == 0) break;
      const uint64_t floor = sh_.GlobalFloor(p.id);
      if (floor == UINT64_MAX) break;  // every subscriber is gone: nothing left to measure
      const uint64_t ahead = p.next_seq - std::min(floor, p.next_seq);
      const uint64_t room = o.window > ahead ? o.window - ahead : 0;
      if (room == 0) {
        // The window binds. Announce the wait, then look once more: a subscriber loop that
        // moved its floor before seeing the flag is caught by the second look (see
        // SubscriberLoop::PublishFloors).
        if (!sh_.pub_waiting.load(std::memory_order_seq_cst)) {
          sh_.pub_waiting.store(true, std::memory_order_seq_cst);
          continue;
        }
        break;
      }
      n = std::min(n, room);
      for (uint64_t i = 0; i < n; ++i) {
        p.payload.clear();
        AppendPayload(p.payload, Payload{p.id, p.next_seq, now}, o.size);
        AppendMessage(p, p.payload);
        ++p.next_seq;
      }
      if (sh_.Measuring(now)) stats_.published += n;
      sh_.published[p.id].v.store(p.next_seq, std::memory_order_relaxed);
      break;
    }
  }
  Flush(p);
}

void PublisherLoop::Flush(Pub& p) {
  while (p.out_off < p.out.size()) {
    const ssize_t n = ::write(p.fd.Get(), p.out.data() + p.out_off, p.out.size() - p.out_off);
    if (n > 0) {
      p.out_off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      event_add(p.wev.get(), nullptr);
      return;
    }
    Drop(p, kRead, std::string("write: ") + std::strerror(errno));
    return;
  }
  p.out.clear();
  p.out_off = 0;
}

void PublisherLoop::OnWritable(evutil_socket_t, short, void* arg) {
  auto& p = *static_cast<Pub*>(arg);
  p.loop->Fill(p, NowNs());
}

void PublisherLoop::FillAll() {
  const uint64_t now = NowNs();
  for (auto& p : pubs_) Fill(*p, now);
}

void PublisherLoop::OnWake(evutil_socket_t fd, short, void* arg) {
  auto* l = static_cast<PublisherLoop*>(arg);
  uint64_t v;
  (void)!::read(fd, &v, sizeof v);
  if (l->sh_.phase.load() == kStop) {
    event_base_loopbreak(l->base_.get());
    return;
  }
  l->FillAll();
}

void PublisherLoop::OnTick(evutil_socket_t, short, void* arg) {
  auto* l = static_cast<PublisherLoop*>(arg);
  if (l->sh_.phase.load() == kStop) {
    event_base_loopbreak(l->base_.get());
    return;
  }
  l->CheckTimeouts(NowNs());
  l->FillAll();
}

void PublisherLoop::CheckTimeouts(uint64_t now) {
  const uint64_t timeout = SecondsToNs(sh_.opt.timeout);
  for (auto& pp : pubs_) {
    Pub& p = *pp;
    if (p.state == State::kConnecting || p.state == State::kJoining) {
      if (now - p.start_ns > sh_.setup_timeout_ns) {
        Drop(p, p.state == State::kConnecting ? kConnect : kTimeout,
             p.state == State::kConnecting ? "connect " + sh_.opt.target + ": no answer"
                                           : "publisher: /join not confirmed in time");
      }
    } else if (p.state == State::kReady && p.outstanding > 0 && now - p.reply_clock_ns > timeout) {
      Drop(p, kTimeout,
           sh_.opt.protocol == FanoutProtocol::kResp
               ? "no PUBLISH reply within --timeout"
               : "the publisher's own line did not come back within --timeout");
    }
  }
}

// ---- timeline and report -------------------------------------------------------------------

// Waits until done() or the deadline; false when a stop signal came.
template <typename Done>
bool WaitFor(const sigset_t& stop_signals, uint64_t deadline_ns, Done&& done) {
  while (!done() && NowNs() < deadline_ns) {
    const timespec slice{0, 10'000'000};
    const int sig = sigtimedwait(&stop_signals, nullptr, &slice);
    if (sig == SIGINT || sig == SIGTERM) return false;
  }
  return true;
}

std::string FreshName(FanoutProtocol proto) {
  std::random_device rd;
  char buf[64];
  // Chat room names allow 1-32 of [A-Za-z0-9_-]; a fresh name per run means no history replay.
  std::snprintf(buf, sizeof buf, proto == FanoutProtocol::kChat ? "pfl%dx%08x" : "pf-load.%d.%08x",
                static_cast<int>(getpid()), static_cast<unsigned>(rd()));
  return buf;
}

struct FanReport {
  const FanStats* s;
  double duration_s;
  unsigned subs_ready, subs_dropped, pubs_ready, pubs_dropped;
  bool interrupted;
};

void PrintFanoutText(const FanoutOptions& o, const Shared& sh, const FanReport& r) {
  const FanStats& s = *r.s;
  const LatencyHistogram& h = s.latency;
  const double d = r.duration_s > 0 ? r.duration_s : 1;
  char rate[32];
  if (o.rate > 0) {
    std::snprintf(rate, sizeof rate, "%.0f/s", o.rate);
  } else {
    std::snprintf(rate, sizeof rate, "max");
  }
  std::printf(
      "target: %s  mode: %s  %s: %s  subscribers: %u  publishers: %u  threads: %u  window: %u"
      "  pipeline: %u  rate: %s  size: %zu\n",
      o.target.c_str(), o.protocol == FanoutProtocol::kResp ? "pubsub" : "chat",
      o.protocol == FanoutProtocol::kResp ? "channel" : "room", sh.channel.c_str(), o.subscribers,
      o.publishers, sh.threads, o.window, o.pipeline, rate, o.size);
  std::printf(
      "published: %llu  delivered: %llu  duration: %.2fs  published/s: %.1f"
      "  delivered/s: %.1f\n",
      static_cast<unsigned long long>(s.published), static_cast<unsigned long long>(s.delivered),
      r.duration_s, static_cast<double>(s.published) / d, static_cast<double>(s.delivered) / d);
  std::printf("latency_us: p50=%llu p90=%llu p99=%llu p999=%llu max=%llu mean=%.1f\n",
              static_cast<unsigned long long>(h.Percentile(0.50)),
              static_cast<unsigned long long>(h.Percentile(0.90)),
              static_cast<unsigned long long>(h.Percentile(0.99)),
              static_cast<unsigned long long>(h.Percentile(0.999)),
              static_cast<unsigned long long>(h.Max()), h.Mean());
  std::printf(
      "clients: subscribers_ready=%u subscribers_dropped=%u publishers_ready=%u"
      " publishers_dropped=%u",
      r.subs_ready, r.subs_dropped, r.pubs_ready, r.pubs_dropped);
  if (s.receivers_max >= 0) {
    std::printf("  receivers: min=%lld max=%lld", static_cast<long long>(s.receivers_min),
                static_cast<long long>(s.receivers_max));
  }
  std::printf("\nerrors:");
  for (int k = 0; k < kFanErrors; ++k) {
    std::printf(" %s=%llu", kFanErrorNames[k], static_cast<unsigned long long>(s.errors[k]));
  }
  std::printf(" total=%llu\n", static_cast<unsigned long long>(s.TotalErrors()));
}

void PrintFanoutJson(const FanoutOptions& o, const Shared& sh, const FanReport& r) {
  const FanStats& s = *r.s;
  const LatencyHistogram& h = s.latency;
  const double d = r.duration_s > 0 ? r.duration_s : 1;
  std::string j = "{";
  auto num = [&j](const char* key, long long v) {
    j += JsonQuote(key) + ":" + std::to_string(v) + ",";
  };
  auto real = [&j](const char* key, double v, int digits) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    j += JsonQuote(key) + ":" + buf + ",";
  };
  j += "\"target\":" + JsonQuote(o.target) +
       ",\"mode\":" + JsonQuote(o.protocol == FanoutProtocol::kResp ? "pubsub" : "chat") +
       ",\"channel\":" + JsonQuote(sh.channel) + ",";
  num("subscribers", o.subscribers);
  num("publishers", o.publishers);
  num("threads", sh.threads);
  num("window", o.window);
  num("pipeline", o.pipeline);
  real("rate", o.rate, 1);
  num("size", static_cast<long long>(o.size));
  num("published", static_cast<long long>(s.published));
  num("delivered", static_cast<long long>(s.delivered));
  real("duration_s", r.duration_s, 2);
  real("published_per_s", static_cast<double>(s.published) / d, 1);
  real("delivered_per_s", static_cast<double>(s.delivered) / d, 1);
  j += "\"latency_us\":{";
  num("p50", static_cast<long long>(h.Percentile(0.50)));
  num("p90", static_cast<long long>(h.Percentile(0.90)));
  num("p99", static_cast<long long>(h.Percentile(0.99)));
  num("p999", static_cast<long long>(h.Percentile(0.999)));
  num("max", static_cast<long long>(h.Max()));
  real("mean", h.Mean(), 1);
  j.back() = '}';
  j += ",";
  num("subscribers_ready", r.subs_ready);
  num("subscribers_dropped", r.subs_dropped);
  num("publishers_ready", r.pubs_ready);
  num("publishers_dropped", r.pubs_dropped);
  num("receivers_min", s.receivers_max >= 0 ? s.receivers_min : -1);
  num("receivers_max", s.receivers_max);
  j += "\"errors\":{";
  for (int k = 0; k < kFanErrors; ++k) num(kFanErrorNames[k], static_cast<long long>(s.errors[k]));
  num("total", static_cast<long long>(s.TotalErrors()));
  j.back() = '}';
  j += std::string(",\"interrupted\":") + (r.interrupted ? "true" : "false") + "}";
  std::puts(j.c_str());
}

}  // namespace

int RunFanout(const FanoutOptions& opt, const sigset_t& stop_signals) {
  const unsigned threads = std::max(1u, std::min(opt.threads, opt.subscribers));
  Shared sh(opt, threads);
  sh.channel = opt.channel.empty() ? FreshName(opt.protocol) : opt.channel;
  sh.room_prefix = "[" + sh.channel + "] ";
  sh.joined = "* joined [" + sh.channel + "]";
  // Connecting and subscribing 1,000 clients (chat: each join is announced to the room, so
  // that is quadratic) takes a while on a busy machine; this only bounds a stuck setup.
  sh.setup_timeout_ns =
      SecondsToNs(std::max(2 * opt.timeout, 10.0)) + uint64_t{opt.subscribers} * 20 * kMsNs;
  sh.wake_fd.Reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (sh.wake_fd.Get() < 0) {
    std::fprintf(stderr, "pf-load: eventfd: %s\n", std::strerror(errno));
    return 1;
  }

  std::vector<std::unique_ptr<SubscriberLoop>> subs;
  for (unsigned i = 0; i < threads; ++i) {
    const unsigned n = opt.subscribers / threads + (i < opt.subscribers % threads ? 1 : 0);
    subs.push_back(std::make_unique<SubscriberLoop>(sh, i, n));
  }
  PublisherLoop pub(sh);
  std::vector<std::thread> running;
  for (auto& s : subs) running.emplace_back([&s] { s->Run(); });
  running.emplace_back([&pub] { pub.Run(); });

  bool interrupted = false;
  const uint64_t setup_deadline = NowNs() + sh.setup_timeout_ns + SecondsToNs(2);
  interrupted = !WaitFor(stop_signals, setup_deadline, [&] {
    return sh.set_up.load() == opt.subscribers && sh.pubs_set_up.load() == opt.publishers;
  });
  // Subscribed is not yet delivering everywhere: on a multi-process server each subscriber's
  // worker must see the channel. Probes go out until every subscriber has one.
  const bool can_run = !interrupted && sh.pubs_live.load() > 0 &&
                       sh.set_up.load() == opt.subscribers && sh.subs_live.load() > 0;
  if (can_run) {
    sh.probe_start_ns.store(NowNs());
    sh.phase.store(kProbe);
    sh.WakePublisher();
    interrupted = !WaitFor(stop_signals, NowNs() + SecondsToNs(opt.timeout + 2),
                           [&] { return sh.probed.load() == opt.subscribers; });
  }
  uint64_t start = 0, end = 0;
  if (can_run && !interrupted) {
    start = NowNs() + SecondsToNs(opt.warmup);
    end = start + SecondsToNs(opt.duration);
    sh.start_ns.store(start);
    sh.end_ns.store(end);
    sh.phase.store(kRun);
    sh.WakePublisher();
    interrupted = !WaitFor(stop_signals, end, [] { return false; });
    if (interrupted) {
      end = std::max(start, NowNs());
      sh.end_ns.store(end);
    }
  }
  sh.phase.store(kStop);
  sh.WakePublisher();
  for (auto& t : running) t.join();

  FanStats total;
  for (auto& s : subs) total.Merge(s->stats());
  total.Merge(pub.stats());
  const FanReport r{&total,
                    static_cast<double>(end - start) / 1e9,
                    sh.subs_ready.load(),
                    sh.subs_dropped.load(),
                    sh.pubs_ready.load(),
                    sh.pubs_dropped.load(),
                    interrupted};
  if (opt.json) {
    PrintFanoutJson(opt, sh, r);
  } else {
    PrintFanoutText(opt, sh, r);
  }
  std::fflush(stdout);
  for (int k = 0; k < kFanErrors; ++k) {
    if (!total.first_error[k].empty()) {
      std::fprintf(stderr, "pf-load: first %s error: %s\n", kFanErrorNames[k],
                   total.first_error[k].c_str());
    }
  }
  if (!can_run && !interrupted) {
    std::fprintf(stderr,
                 "pf-load: setup failed: %d of %u subscribers and %d of %u publishers "
                 "ready; nothing was measured\n",
                 sh.subs_live.load(), opt.subscribers, sh.pubs_live.load(), opt.publishers);
  }
  if (interrupted) std::fprintf(stderr, "pf-load: interrupted before the end of the run\n");
  return total.TotalErrors() == 0 && can_run && !interrupted ? 0 : 1;
}

}  // namespace pf::load
