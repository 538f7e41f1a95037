// worker/connection.cc: bufferevent plumbing for one connection: counters,
// backpressure (stop reading while output is above the high-water mark),
// orderly close after the output drains.
#include "worker/connection.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <spdlog/spdlog.h>

#include "shared/config.h"
#include "worker/worker.h"

namespace pf {

uint32_t Session::TimeoutMs(const WorkerContext& w) const { return w.config->timeouts.idle_ms; }
void Session::OnTimeout(Connection& c) { c.Close("idle timeout"); }

namespace {

std::string PeerText(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "?";
}

}  // namespace

Connection::Connection(WorkerContext& w, const ListenerConf& l, int fd, const sockaddr* sa,
                       uint64_t id)
    : w_(w), listener_(l), id_(id), peer_(PeerText(sa)) {
  connected_ms_ = last_activity_ms_ = WorkerContext::NowMs();
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  bev_ = bufferevent_socket_new(w.base, fd, BEV_OPT_CLOSE_ON_FREE);
}

Connection::~Connection() {
  if (bev_) bufferevent_free(bev_);
}

bool Connection::Start(std::unique_ptr<Session> s) {
  session_ = std::move(s);
  if (!bev_) return false;
  // Read and write up to 256 KiB per syscall (libevent's default is 4 KiB).
  bufferevent_set_max_single_read(bev_, 256 * 1024);
  bufferevent_set_max_single_write(bev_, 256 * 1024);
  bufferevent_setcb(bev_, ReadCb, WriteCb, EventCb, this);
  evbuffer_add_cb(bufferevent_get_output(bev_), OutputCb, this);
  bufferevent_enable(bev_, EV_READ | EV_WRITE);
  session_->OnConnect(*this);
  return true;
}

int Connection::fd() const { return bev_ ? bufferevent_getfd(bev_) : -1; }
evbuffer* Connection::output() const { return bufferevent_get_output(bev_); }
size_t Connection::output_pending() const { return evbuffer_get_length(output()); }

void Connection::Write(std::string_view data) {
  if (closing_ == Closing::kNow) return;
  evbuffer_add(output(), data.data(), data.size());
}

void Connection::CloseAfterWrite() {
  if (closing_ != Closing::kNo) return;
  closing_ = Closing::kAfterWrite;
  bufferevent_disable(bev_, EV_READ);
  if (output_pending() == 0) Close(nullptr);
}

void Connection::Close(const char* reason) {
  if (closing_ == Closing::kNow) return;
  closing_ = Closing::kNow;
  if (reason) SPDLOG_DEBUG("conn {} {}: closed: {}", id_, peer_, reason);
  bufferevent_disable(bev_, EV_READ | EV_WRITE);
  w_.Retire(this);
}

void Connection::ReadCb(bufferevent* bev, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  evbuffer* in = bufferevent_get_input(bev);
  if (c->closing_ != Closing::kNo) {
    evbuffer_drain(in, evbuffer_get_length(in));
    return;
  }
  size_t len = evbuffer_get_length(in);
  if (len > c->input_seen_) {
    const uint64_t n = len - c->input_seen_;
    c->bytes_in_ += n;
    c->w_.counters->bytes_in.Add(n);
  }
  c->last_activity_ms_ = WorkerContext::NowMs();
  try {
    c->session_->OnRead(*c, in);
  } catch (const std::exception& e) {
    // No exception crosses a libevent callback: this connection goes, the worker stays.
    spdlog::error("conn {} {}: {}: closing", c->id_, c->peer_, e.what());
    c->Close(nullptr);
    return;
  }
  c->AfterInput();
}

void Connection::AfterInput() {
  if (closing_ == Closing::kNow) return;
  evbuffer* in = bufferevent_get_input(bev_);
  input_seen_ = evbuffer_get_length(in);
  const LimitsConf& lim = w_.config->limits;
  // A handler keeps at most one partial request; anything bigger is a bug or abuse.
  const size_t cap = std::max<size_t>(lim.max_request_bytes, lim.max_line_bytes) + 65536;
  if (input_seen_ > cap) {
    spdlog::warn("conn {} {}: {} unconsumed input bytes over the limit, closing", id_, peer_,
                 input_seen_);
    Close(nullptr);
    return;
  }
  if (closing_ == Closing::kNo && !read_paused_ && output_pending() > lim.output_high_water) {
    read_paused_ = true;
    bufferevent_disable(bev_, EV_READ);
  }
}

void Connection::WriteCb(bufferevent*, void* arg) {
  // libevent calls this when the output buffer has drained (low watermark 0).
  auto* c = static_cast<Connection*>(arg);
  if (c->closing_ == Closing::kAfterWrite) {
    c->Close(nullptr);
    return;
  }
  if (c->closing_ != Closing::kNo) return;
  c->last_activity_ms_ = WorkerContext::NowMs();
  if (c->read_paused_) {
    c->read_paused_ = false;
    bufferevent_enable(c->bev_, EV_READ);
  }
  try {
    c->session_->OnWriteDrained(*c);
  } catch (const std::exception& e) {
    spdlog::error("conn {} {}: {}: closing", c->id_, c->peer_, e.what());
    c->Close(nullptr);
    return;
  }
  // Input that arrived while reading was paused is still waiting.
  if (!c->closing() && evbuffer_get_length(bufferevent_get_input(c->bev_)) > 0)
    ReadCb(c->bev_, c);
}

void Connection::EventCb(bufferevent*, short what, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  if (what & BEV_EVENT_EOF) c->Close("peer closed");
  else if (what & BEV_EVENT_ERROR) c->Close("socket error");
}

void Connection::OutputCb(evbuffer*, const evbuffer_cb_info* info, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  if (info->n_deleted > 0) {
    c->bytes_out_ += info->n_deleted;
    c->w_.counters->bytes_out.Add(info->n_deleted);
  }
}

}  // namespace pf
