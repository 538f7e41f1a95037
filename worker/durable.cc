// worker/durable.cc: held replies and the log's event-loop side (durable.h).
#include "worker/durable.h"

#include "shared/persist/log_writer.h"
#include "worker/connection.h"
#include "worker/worker.h"

namespace pf {

DurableReplies::DurableReplies(WorkerContext& w, persist::LogWriter& log) : w_(w), log_(log) {
  flush_.reset(event_new(w.base, -1, 0, FlushCb, this));
  notify_.reset(event_new(w.base, log.notify_fd(), EV_READ | EV_PERSIST, NotifyCb, this));
  event_add(notify_.get(), nullptr);
  retry_.reset(event_new(w.base, -1, EV_PERSIST, FlushCb, this));
  timeval every{1, 0};
  evtimer_add(retry_.get(), &every);
}

uint64_t DurableReplies::appended() const { return log_.appended(); }

void DurableReplies::HoldFor(Connection& c, uint64_t appended_before) {
  if (log_.appended() != appended_before) c.durable_gate_ = log_.appended();
}

bool DurableReplies::MayWrite(Connection& c) {
  if (!c.durable_gate_) return true;
  if (c.durable_gate_ <= log_.durable()) {
    c.durable_gate_ = 0;
    return true;
  }
  if (!c.durable_waiting_) {
    c.durable_waiting_ = true;
    waiters_.push_back(c.id());
    if (!flush_armed_) {
      flush_armed_ = true;
      event_active(flush_.get(), EV_TIMEOUT, 0);  // after the other callbacks of this turn
    }
  }
  return false;
}

void DurableReplies::Release() {
  if (waiters_.empty()) return;
  const uint64_t d = log_.durable();
  std::vector<uint64_t> list;
  list.swap(waiters_);
  for (uint64_t id : list) {
    auto it = w_.conns.find(id);
    if (it == w_.conns.end()) continue;
    Connection* c = it->second.get();
    if (c->durable_gate_ <= d) {
      c->durable_waiting_ = false;
      c->OnDurable();
    } else if (log_.failing()) {
      // The acknowledgement would be a lie: the client sees the connection
      // close instead (and new writes get MISCONF, see shared/cmd/dispatch.cc).
      c->durable_waiting_ = false;
      c->Close("reply withheld: the write could not be logged");
    } else {
      waiters_.push_back(id);
    }
  }
}

void DurableReplies::Shutdown() {
  log_.Shutdown();
  Release();
}

void DurableReplies::FlushCb(evutil_socket_t, short, void* arg) {
  auto* d = static_cast<DurableReplies*>(arg);
  d->flush_armed_ = false;
  NoThrow("persistence", [d] {
    d->log_.Flush();
    d->Release();
  });
}

void DurableReplies::NotifyCb(evutil_socket_t, short, void* arg) {
  auto* d = static_cast<DurableReplies*>(arg);
  NoThrow("persistence", [d] {
    d->log_.DrainNotify();
    d->Release();
  });
}

}  // namespace pf
