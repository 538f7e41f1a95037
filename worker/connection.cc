// worker/connection.cc: socket I/O for one connection: read into the input
// evbuffer, let the session consume it, write the output straight away
// (Redis-style: a write event is armed only when the socket is full), count
// bytes, apply backpressure and the closing rules.
#include "worker/connection.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "shared/config.h"
#include "shared/tls/context.h"
#include "shared/util/clock.h"
#include "shared/util/net.h"
#include "worker/clients.h"
#include "worker/durable.h"
#include "worker/pubsub.h"
#include "worker/security.h"
#include "worker/worker.h"

namespace pf {

uint32_t Session::TimeoutMs(const WorkerContext& w) const { return w.config->timeouts.idle_ms; }
void Session::OnTimeout(Connection& c) { c.Close("idle timeout"); }

namespace {

constexpr ev_ssize_t kReadChunk = 16 * 1024;

}  // namespace

Connection::Connection(WorkerContext& w, const ListenerConf& l, int fd, const sockaddr* sa,
                       uint64_t id)
    : w_(w), listener_(l), fd_(fd), id_(id), peer_(FormatAddr(sa)), addr_(IpAddr::From(sa)) {
  connected_ms_ = WallMs();
  last_activity_ms_ = MonoMs();
}

Connection::~Connection() {
  ReleaseConnection(w_, conn_key_);
  if (w_.clients) w_.clients->Remove(*this);
  if (write_queued_) w_.pending_writes[queued_at_] = nullptr;
  w_.client_bytes -= accounted_;
  // As before a reply (Flush): the close is seen only after the wake-ups
  // for what this turn published (a chat client's "left" notice).
  if (w_.pubsub) w_.pubsub->WakeOwed();
  // The event and buffers go before the socket, all before the session.
  if (ev_flags_) event_del(&ev_);
  in_.reset();
  out_.reset();
  if (ssl_) SSL_free(ssl_);
  fd_.Reset();
}

bool Connection::Start(std::unique_ptr<Session> s) {
  session_ = std::move(s);
  if (!session_) return false;
  SetReading(true);
  if (ev_flags_ == 0) return false;
  if (listener_.tls.ctx) {
    // The session starts once the handshake is done (Handshake).
    tls_ = Tls::kSniff;
    linger_until_ms_ = MonoMs() + listener_.tls.ctx->handshake_timeout_ms();
    return true;
  }
  in_callback_ = true;
  session_->OnConnect(*this);
  in_callback_ = false;
  Flush();
  return true;
}

void Connection::LogSessionError(const std::exception& e) const {
  spdlog::error("conn {} {}: {}: closing", id_, peer_, e.what());
}

std::string Connection::Admit() { return AdmitConnection(w_, listener_, addr_, &conn_key_); }

void Connection::RefuseWith(std::string_view line) {
  Write(line);
  CloseAfterWrite();
}

int Connection::fd() const { return fd_.get(); }

evbuffer* Connection::in() {
  if (!in_) in_.reset(evbuffer_new());
  if (!in_) throw std::bad_alloc();
  trimmed_ = false;
  return in_.get();
}

evbuffer* Connection::out() {
  if (!out_) {
    EvbufferPtr b(evbuffer_new());
    if (!b || !evbuffer_add_cb(b.get(), OutputCb, this)) throw std::bad_alloc();
    // Large static files go out with sendfile (libevent maps them into
    // memory otherwise): the output is only ever written to the socket.
    // TLS encrypts in user space, so there the file is mapped.
    if (!listener_.tls.ctx) evbuffer_set_flags(b.get(), EVBUFFER_FLAG_DRAINS_TO_FD);
    out_ = std::move(b);
  }
  trimmed_ = false;
  return out_.get();
}

bool Connection::Trim() {
  if (trimmed_ || closing_ != Closing::kNo) return false;
  trimmed_ = true;  // until the connection is used again (in(), out())
  // A buffer that still holds bytes (a partial request, output the peer
  // does not read) stays.
  if (in_ && evbuffer_get_length(in_.get()) == 0) in_.reset();
  if (out_ && evbuffer_get_length(out_.get()) == 0) out_.reset();
  if (file_spans_.empty()) std::vector<std::pair<uint64_t, uint64_t>>().swap(file_spans_);
  if (session_ && !session_ended_) session_->Trim();
  return true;
}

bool Connection::Contiguous(evbuffer* in, size_t need, const char** data, size_t* len) {
  evbuffer_iovec v;
  if (evbuffer_peek(in, -1, nullptr, &v, 1) < 1) return false;
  *data = static_cast<const char*>(v.iov_base);
  *len = v.iov_len;
  if (*len >= need && *len > 0) return true;
  *len = evbuffer_get_length(in);
  *data = reinterpret_cast<const char*>(evbuffer_pullup(in, -1));
  return *data != nullptr;
}
size_t Connection::output_pending() const { return out_ ? evbuffer_get_length(out_.get()) : 0; }

void Connection::Write(std::string_view data) {
  if (closing_ == Closing::kNow) return;
  evbuffer_add(out(), data.data(), data.size());
}

void SharedBytes::Unref(SharedBytes* s) {
  if (--s->refs == 0) std::unique_ptr<SharedBytes> last(s);
}

namespace {
void UnrefShared(const void*, size_t, void* arg) {
  SharedBytes::Unref(static_cast<SharedBytes*>(arg));
}
}  // namespace

void Connection::WriteShared(std::string_view data, SharedBytes* shared) {
  if (closing_ == Closing::kNow || data.empty()) return;
  shared->refs++;
  if (evbuffer_add_reference(out(), data.data(), data.size(), UnrefShared, shared) != 0) {
    shared->refs--;
    evbuffer_add(out_.get(), data.data(), data.size());
  }
}

void Connection::CloseAfterWrite(bool peer_done) {
  if (closing_ != Closing::kNo) return;
  closing_ = Closing::kAfterWrite;
  peer_done_ = peer_done;
  if (!peer_done) {
    SetReading(false);
    // Hold the last partial segment until close(2) so the FIN rides on it:
    // the reply is then one packet, not data + a lone FIN.
    int one = 1;
    setsockopt(fd_.get(), IPPROTO_TCP, TCP_CORK, &one, sizeof one);
  }
  // peer_done: reading stays registered (no epoll_ctl now) unless the
  // output has to wait for the socket (FlushNow); the close takes it away.
  if (!in_callback_) Flush();  // inside a callback, Process() flushes after it
}

void Connection::Close(const char* reason) {
  if (closing_ == Closing::kNow) return;
  closing_ = Closing::kNow;
  if (reason) SPDLOG_DEBUG("conn {} {}: closed: {}", id_, peer_, reason);
  // A TLS connection that ends cleanly says so (close_notify), as nginx
  // does; best effort, never waited for. Not after a fatal TLS error.
  if (tls_ == Tls::kOpen) {
    (void)SSL_shutdown(ssl_);
    ERR_clear_error();
  }
  reading_ = write_armed_ = false;
  UpdateEvents();
  w_.Retire(this);
}

void Connection::PauseRead(bool pause) {
  if (pause == read_paused_) return;
  read_paused_ = pause;
  if (pause)
    SetReading(false);
  else if (!eof_ && closing_ == Closing::kNo)
    SetReading(true);
}

void Connection::SetReading(bool on) {
  reading_ = on;
  UpdateEvents();
}

void Connection::ArmWrite() {
  if (write_armed_ || closing_ == Closing::kNow) return;
  write_armed_ = true;
  UpdateEvents();
}

void Connection::DisarmWrite() {
  if (!write_armed_) return;
  write_armed_ = false;
  UpdateEvents();
}

void Connection::UpdateEvents() {
  const short want = static_cast<short>((reading_ ? EV_READ : 0) | (write_armed_ ? EV_WRITE : 0));
  if (want == ev_flags_) return;
  // Deleting and assigning again is allowed inside ev_'s own callback:
  // libevent does not touch an event after its callback returns.
  if (ev_flags_) event_del(&ev_);
  ev_flags_ = 0;
  if (!want) return;
  if (event_assign(&ev_, w_.base, fd_.get(), static_cast<short>(want | EV_PERSIST), EventCb,
                   this) != 0 ||
      event_add(&ev_, nullptr) != 0) {
    spdlog::error("conn {} {}: cannot register its event", id_, peer_);
    return;
  }
  ev_flags_ = want;
}

void Connection::EventCb(int, short what, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  try {
    if (c->tls_pending()) {
      c->Handshake();
      return;
    }
    if (what & EV_WRITE) WriteCb(c);
    if ((what & EV_READ) && c->closing_ != Closing::kNow && c->reading_) ReadCb(c);
  } catch (const std::exception& e) {  // no buffer could be made (bad_alloc)
    spdlog::error("conn {} {}: {}: closing", c->id_, c->peer_, e.what());
    c->Close(nullptr);
  }
}

void Connection::ReadCb(Connection* c) {
  if (c->closing_ == Closing::kLingering) {
    // Read and drop what the peer still sends, until it is done.
    const ssize_t n = c->ReadSome();
    const int err = errno;  // before the drain, which may free memory
    if (c->in_) evbuffer_drain(c->in_.get(), evbuffer_get_length(c->in_.get()));
    if (n > 0) {
      c->last_activity_ms_ = MonoMs();
      return;
    }
    if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)) return;
    c->Close(nullptr);
    return;
  }
  if (c->closing_ != Closing::kNo) return;
  const ssize_t n = c->ReadSome();
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    c->Close("socket error");
    return;
  }
  if (n == 0) {
    // The peer finished sending: answer what it asked, then close.
    c->eof_ = true;
    c->SetReading(false);
  } else {
    c->bytes_in_ += static_cast<uint64_t>(n);
    c->w_.counters->bytes_in.Add(static_cast<uint64_t>(n));
    c->last_activity_ms_ = MonoMs();
  }
  c->Process();
}

// As evbuffer_read(), without its FIONREAD ioctl per call (up to
// kReadChunk; a full chunk means more may wait, and the level-triggered read
// event brings us back). With nothing buffered (the start of a request, the
// usual case) the bytes go to a buffer the worker's connections share and
// then into a chain of their own size: a small request costs a small
// allocation (from malloc's per-thread cache), not a 16 KiB chain made and
// freed per request (heaptrack: one of the two allocations per request).
// With a partial request buffered, read straight into reserved space.
ssize_t Connection::ReadSome() {
  if (tls_ == Tls::kOpen) return TlsRead();
  if (!in_ || evbuffer_get_length(in_.get()) == 0) {
    static char scratch[kReadChunk];  // one loop thread per worker process
    ssize_t n;
    do {
      n = read(fd_.get(), scratch, sizeof scratch);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return n;
    if (evbuffer_add(in(), scratch, static_cast<size_t>(n)) != 0) {
      errno = ENOMEM;
      return -1;
    }
    return n;
  }
  evbuffer_iovec v[2];
  const int nv = evbuffer_reserve_space(in(), kReadChunk, v, 2);
  if (nv <= 0) {
    errno = ENOMEM;
    return -1;
  }
  ssize_t n;
  do {
    n = readv(fd_.get(), reinterpret_cast<iovec*>(v), nv);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return n;
  size_t left = static_cast<size_t>(n);
  int used = 0;
  for (; used < nv && left > 0; used++) {
    if (v[used].iov_len > left) v[used].iov_len = left;
    left -= v[used].iov_len;
  }
  evbuffer_commit_space(in_.get(), v, used);
  return n;
}

void Connection::Process() {
  const LimitsConf& lim = w_.config->limits;
  for (;;) {
    // A session may stop early (its output passed the high-water mark); once
    // the socket took that output, let it continue with what is buffered.
    bool stopped_for_output = false;
    for (;;) {
      if (closing_ != Closing::kNo || read_paused_ || !in_) break;
      const size_t before = evbuffer_get_length(in_.get());
      if (before == 0) break;
      const uint64_t logged = w_.durable ? w_.durable->appended() : 0;
      w_.batch_start_ns = MonoNs();
      if (!InSession([&] { session_->OnRead(*this, in_.get()); })) return;
      // Requests that wrote: their replies wait until the log holds the writes.
      if (w_.durable) w_.durable->HoldFor(*this, logged);
      if (closing_ == Closing::kNow) return;
      const size_t after = evbuffer_get_length(in_.get());
      // A handler keeps at most one partial request; anything bigger is a bug or abuse.
      const size_t cap = std::max<size_t>(lim.max_request_bytes, lim.max_line_bytes) + 65536;
      if (after > cap) {
        spdlog::warn("conn {} {}: {} unconsumed input bytes over the limit, closing", id_, peer_,
                     after);
        Close(nullptr);
        return;
      }
      if (after == 0) break;  // all handled
      if (after == before) {  // nothing ran: more input is needed, or the output is full
        stopped_for_output = output_pending() > lim.output_high_water;
        break;
      }
      Flush();
      if (closing_ == Closing::kNow) return;
      if (output_pending() > lim.output_high_water) {
        stopped_for_output = true;
        break;
      }
    }
    // What CLIENT LIST shows, once per batch of input (not per command or
    // byte), before the replies go: a client that reads its reply and asks
    // another worker sees what its commands changed.
    if (client_slot_ >= 0 && w_.clients) w_.clients->Publish(*this);
    Flush();
    if (closing_ == Closing::kNow) return;
    if (closing_ == Closing::kNo && output_pending() > lim.output_high_water) {
      PauseRead(true);
      return;
    }
    // The session stopped at the high-water mark, but this flush took the
    // output under it (the client read in between): go on with the
    // commands still buffered now. Waiting would stall: the client sends
    // nothing more until it has their replies, and no write event is armed
    // when the output is empty.
    if (stopped_for_output && closing_ == Closing::kNo && !read_paused_ && in_ &&
        evbuffer_get_length(in_.get()) > 0)
      continue;
    break;
  }
  if (eof_ && closing_ == Closing::kNo && !read_paused_) {
    closing_ = Closing::kAfterWrite;
    Flush();  // closes now if nothing is left to write
  }
}

void Connection::Resume() {
  if (closing_ != Closing::kNo) return;
  Process();
}

void Connection::Flush() {
  FlushNow();
  if (closing_ != Closing::kNow) Account();
}

void Connection::NoteFileBytes(uint64_t len) {
  if (len) file_spans_.emplace_back(out_added_ - len, out_added_);
}

uint64_t Connection::FileBytesPending() {
  size_t done = 0;  // spans written out (in order, so a prefix)
  while (done < file_spans_.size() && file_spans_[done].second <= bytes_out_) done++;
  file_spans_.erase(file_spans_.begin(), file_spans_.begin() + static_cast<ptrdiff_t>(done));
  uint64_t n = 0;
  for (const auto& [start, end] : file_spans_) n += end - std::max(start, bytes_out_);
  return n;
}

void Connection::Account() {
  const Session::Buffers kind =
      session_ && !session_ended_ ? session_->buffers() : Session::Buffers::kNormal;
  const size_t out = output_pending();
  const uint64_t now_bytes = (in_ ? evbuffer_get_length(in_.get()) : 0) + out - FileBytesPending();
  w_.client_bytes += now_bytes;
  w_.client_bytes -= accounted_;
  accounted_ = now_bytes;
  const LimitsConf& lim = w_.config->limits;
  if (kind == Session::Buffers::kNormal && closing_ == Closing::kNo) {
    const char* why = nullptr;
    if (lim.client_output_hard && out > lim.client_output_hard) {
      why = "limits.client_output_hard";
    } else if (lim.client_output_soft && out > lim.client_output_soft) {
      const uint64_t now = MonoMs();
      if (!soft_since_ms_)
        soft_since_ms_ = now;
      else if (now - soft_since_ms_ >= uint64_t{lim.client_output_soft_seconds} * 1000)
        why = "limits.client_output_soft";
    } else {
      soft_since_ms_ = 0;
    }
    if (why) {
      w_.counters->closed_output_limit.Add(1);
      w_.LogLimited("conn {} {}: {} bytes of unsent output are over {}: disconnecting the client",
                    id_, peer_, out, why);
      Close(why);
      return;
    }
  }
  if (lim.clients_memory && w_.client_bytes > lim.clients_memory) w_.OverClientsMemory();
}

void Connection::FlushNow() {
  if (closing_ == Closing::kNow) return;
  if (tls_pending()) return;  // the output waits for the handshake
  if (tls_ == Tls::kDead) {
    // A fatal TLS error: nothing more can be sent (and never in plain text).
    Close(nullptr);
    return;
  }
  if (w_.pubsub) w_.pubsub->WakeOwed();
  if (w_.durable && !w_.durable->MayWrite(*this)) {
    DisarmWrite();  // no busy write events while the reply may not go
    return;
  }
  if (!nodelay_ && output_pending() > 0 && !(peer_done_ && closing_ == Closing::kAfterWrite)) {
    // Before the first write: replies go out at once, not when the previous
    // segment is acknowledged. A connection that closes right after its one
    // reply skips it (close(2) sends what Nagle would hold).
    nodelay_ = true;
    int one = 1;
    setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  while (tls_ == Tls::kOpen && out_ && evbuffer_get_length(out_.get()) > 0) {
    const int r = TlsWrite();
    if (r < 0) return;  // closed
    if (r == 0) break;  // the socket is full
  }
  while (tls_ != Tls::kOpen && out_ && evbuffer_get_length(out_.get()) > 0) {
    errno = 0;
    const int n = evbuffer_write(out_.get(), fd_.get());
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      Close("socket error");
      return;
    }
    if (n == 0) {
      // libevent's sendfile path answers 0 for EAGAIN/EINTR too, so errno
      // tells them apart: 0 with no error is sendfile at the end of the
      // file before its Content-Length (the file shrank). Padding it or
      // sending other bytes under the old validators would be wrong; the
      // client sees the short body and the close.
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      spdlog::warn("conn {} {}: a file being sent shrank; closing", id_, peer_);
      Close("file shrank during the transfer");
      return;
    }
    last_activity_ms_ = MonoMs();  // a slow reader that keeps taking bytes is not idle
  }
  if (output_pending() > 0) {
    if (closing_ == Closing::kAfterWrite) reading_ = false;  // input is not wanted now
    ArmWrite();
    UpdateEvents();
    return;
  }
  DisarmWrite();
  if (closing_ == Closing::kAfterWrite) {
    if (!eof_ && !peer_done_ && w_.config->timeouts.lingering_ms > 0)
      StartLinger();
    else
      Close(nullptr);
    return;
  }
}

void Connection::StartLinger() {
  const TimeoutsConf& t = w_.config->timeouts;
  closing_ = Closing::kLingering;
  if (tls_ == Tls::kOpen) {
    (void)SSL_shutdown(ssl_);  // close_notify before the FIN
    ERR_clear_error();
    // Nothing more is sent; what the peer still sends is read and dropped
    // as it is, without decrypting it.
    tls_ = Tls::kDead;
  }
  // The FIN goes after the reply (TCP_CORK is set: they leave together).
  if (shutdown(fd_.get(), SHUT_WR) != 0) {
    Close(nullptr);
    return;
  }
  const uint64_t now = MonoMs();
  last_activity_ms_ = now;
  linger_until_ms_ = now + t.lingering_ms;
  if (in_) evbuffer_drain(in_.get(), evbuffer_get_length(in_.get()));
  SetReading(true);
  EndSession();  // the connection is over for the protocol; only the socket stays
}

void Connection::EndSession() {
  if (session_ended_ || !session_) return;
  session_ended_ = true;
  NoThrow("a connection's close", [this] { session_->OnClose(*this); });
}

bool Connection::LingerExpired(uint64_t now_ms) {
  const TimeoutsConf& t = w_.config->timeouts;
  if (now_ms < linger_until_ms_ && now_ms < last_activity_ms_ + t.lingering_timeout_ms)
    return false;
  Close("lingering close over");
  return true;
}

void Connection::OnDurable() { WriteCb(this); }

void Connection::WriteCb(Connection* c) {
  c->Flush();
  if (c->closing_ != Closing::kNo || c->output_pending() > 0) return;
  // Drained: resume reading, let the session queue more (e.g. the next file
  // chunk), and handle input that waited while reading was paused.
  const bool was_paused = c->read_paused_;
  c->PauseRead(false);
  if (!c->InSession([c] { c->session_->OnWriteDrained(*c); })) return;
  // Input left over also when reading was not paused: Process stops at the
  // output high-water mark, and its last flush may bring the output under
  // it again, so the pause is never taken; the commands still buffered
  // would then wait for input the client will not send (it waits for their
  // replies).
  const bool input_left = c->in_ && evbuffer_get_length(c->in_.get()) > 0;
  if (was_paused || input_left || c->eof_ || c->output_pending() > 0) c->Process();
}

void Connection::OutputCb(evbuffer*, const evbuffer_cb_info* info, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  c->out_added_ += info->n_added;
  if (info->n_deleted > 0) {
    c->bytes_out_ += info->n_deleted;
    c->w_.counters->bytes_out.Add(info->n_deleted);
  }
  // Output queued outside the read path (a pub/sub delivery, a timer,
  // another connection's event) is written at the end of this loop turn,
  // once however many pushes came, as Redis' beforeSleep() does; the write
  // event is armed only if the socket is full then. (Arming it here cost an
  // epoll_ctl pair per subscriber per delivery batch.)
  if (info->n_added == 0 || c->in_callback_ || c->write_armed_ || c->write_queued_ ||
      c->closing_ == Closing::kNow)
    return;
  const ptrdiff_t at = c->w_.QueueWrite(c);
  if (at < 0) {
    c->ArmWrite();
    return;
  }
  c->write_queued_ = true;
  c->queued_at_ = static_cast<size_t>(at);
}

void Connection::OnQueuedWrite() {
  write_queued_ = false;
  if (write_armed_) return;  // the socket filled meanwhile: the write event comes
  WriteCb(this);
}

}  // namespace pf
