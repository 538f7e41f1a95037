// worker/http/events.cc: /_events streams (events.h).
#include "worker/http/events.h"

#include <event2/event.h>

#include <algorithm>
#include <string>

#include "worker/connection.h"
#include "worker/http/ops.h"
#include "worker/worker.h"

namespace pf::http {

namespace {
// The event a snapshot becomes: JSON has no raw newlines, so one data line.
std::string Event(const WorkerContext& w) {
  std::string json = StatsJson(w);
  while (!json.empty() && json.back() == '\n') json.pop_back();
  return "data: " + json + "\n\n";
}
}  // namespace

EventStreams& EventStreams::Of(WorkerContext& w) {
  static EventStreams* streams = new EventStreams(w);  // lives as long as the worker
  return *streams;
}

void EventStreams::Add(Connection* c) {
  conns_.push_back(c);
  SendTo(c, Event(w_));
  if (!timer_) {
    timer_.reset(event_new(w_.base, -1, EV_PERSIST, TickCb, this));
    const timeval second{1, 0};
    if (timer_) evtimer_add(timer_.get(), &second);
  }
}

void EventStreams::Remove(Connection* c) {
  conns_.erase(std::remove(conns_.begin(), conns_.end(), c), conns_.end());
  if (conns_.empty()) timer_.reset();  // no ticks while nobody watches
}

void EventStreams::TickCb(int, short, void* arg) {
  NoThrow("/_events", [arg] { static_cast<EventStreams*>(arg)->Tick(); });
}

void EventStreams::Tick() {
  const std::string event = Event(w_);
  // SendTo may close a stream, and the close removes it from conns_ later
  // (OnClose runs when the connection is freed): iterate over a copy.
  const std::vector<Connection*> now = conns_;
  for (Connection* c : now) SendTo(c, event);
}

void EventStreams::SendTo(Connection* c, const std::string& event) {
  if (c->closing()) return;
  if (c->output_pending() > kMaxPending) {
    w_.LogLimited("conn {} {}: /_events: the page is not reading ({} bytes wait): closing", c->id(),
                  c->peer(), c->output_pending());
    c->Close("event stream not read");
    return;
  }
  c->Write(event);
}

}  // namespace pf::http
