// worker/http/events.h: GET /_events, server-sent events for the status
// page: one /_stats snapshot a second to every open stream of this worker,
// built once per tick. A stream whose page does not read is closed once
// kMaxPending bytes wait (the page's EventSource reconnects), so no client
// grows a worker's memory; a retiring worker closes its streams and the
// pages reconnect to the new generation.
#pragma once

#include <cstddef>
#include <vector>

#include "worker/event_util.h"

namespace pf {
class Connection;
struct WorkerContext;
namespace http {

class EventStreams {
 public:
  static constexpr size_t kMaxPending = 64 * 1024;
  // This worker's streams (one worker per process), made on first use.
  static EventStreams& Of(WorkerContext& w);
  // The response head has been written: sends the first snapshot now.
  void Add(Connection* c);
  void Remove(Connection* c);

 private:
  explicit EventStreams(WorkerContext& w) : w_(w) {}
  static void TickCb(int, short, void* arg);
  void Tick();
  void SendTo(Connection* c, const std::string& event);
  WorkerContext& w_;
  EventPtr timer_;
  std::vector<Connection*> conns_;
};

}  // namespace http
}  // namespace pf
