// worker/durable.h: replies wait for the log (docs/persistence.md). The reply
// to a request that wrote is held until this worker's log holds the write
// (write(2) for everysec and no, fdatasync for always): the one place that
// decides when a connection's held output may go, and that drives the log
// (written at the end of each loop turn, retried every second, released when
// the fsync thread reports).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "worker/event_util.h"

namespace pf {

class Connection;
struct WorkerContext;
namespace persist {
class LogWriter;
}

class DurableReplies {
 public:
  DurableReplies(WorkerContext& w, persist::LogWriter& log);
  DurableReplies(const DurableReplies&) = delete;
  DurableReplies& operator=(const DurableReplies&) = delete;

  // Connection::Process, around a session's reads: the log position before,
  // then HoldFor() after. Output the reads queued waits for what they appended.
  uint64_t appended() const;
  void HoldFor(Connection& c, uint64_t appended_before);
  // Connection::Flush: false when c's output must wait; c is then written by
  // a later Release (or closed, if the log cannot be written).
  bool MayWrite(Connection& c);
  // Worker exit and the end of a drain: write (and sync, as the policy
  // says) what was logged, then release every waiting reply.
  void Shutdown();

 private:
  static void FlushCb(evutil_socket_t, short, void* arg);
  static void NotifyCb(evutil_socket_t, short, void* arg);
  void Release();

  WorkerContext& w_;
  persist::LogWriter& log_;
  std::vector<uint64_t> waiters_;  // connection ids
  EventPtr flush_;                 // active: write the log at the end of this loop turn
  EventPtr notify_;                // the fsync thread finished a round
  EventPtr retry_;                 // every second: a failed write is retried
  bool flush_armed_ = false;
};

}  // namespace pf
