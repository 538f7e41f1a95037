// worker/clients.h: this worker's side of the client registry
// (shared/clients.h): an entry per data connection (resp, kv-json, chat),
// published once per loop turn that did work for it, closing the
// connections another process asked to kill, and holding commands while a
// CLIENT PAUSE lasts.
#pragma once

#include <cstdint>
#include <unordered_set>

#include "shared/clients.h"
#include "shared/shm.h"
#include "worker/event_util.h"

namespace pf {

class Connection;
struct WorkerContext;

class ClientRegistry {
 public:
  ClientRegistry(WorkerContext& w, clients::Table t);
  ~ClientRegistry();  // connections freed later leave their entries to the master
  clients::Table* table() { return &t_; }

  // A data connection starts: claim its entry (none past the table's size:
  // the connection is served, only not listed).
  void Add(Connection& c, ProtoIndex proto);
  // Writes c's counters and session fields into its entry.
  void Publish(Connection& c);
  // The sweep: the output c has not written yet (omem=), which Publish,
  // running just before the replies are written, cannot know.
  void PublishOutput(Connection& c);
  void Remove(Connection& c);
  // The bus eventfd or the hub's poll woke this worker: close connections
  // whose kill was asked, run commands held by a pause that is over.
  void OnWake();
  // c's next command waits for the pause (until `until_mono_ms` at most,
  // or CLIENT UNPAUSE, which wakes every worker).
  void Hold(Connection& c, uint64_t until_mono_ms);
  // A held connection is waiting for the server, not idle (the sweep's
  // idle timeout leaves it alone, as Redis does a paused client).
  bool Held(uint64_t id) const { return held_.count(id) > 0; }
  // Wakes worker slot `slot` (-1: every slot) through the bus.
  void Wake(int slot);

 private:
  static void TimerCb(int, short, void* arg);
  void ResumeHeld();

  WorkerContext& w_;
  clients::Table t_;
  uint32_t kills_seen_ = 0;
  std::unordered_set<uint64_t> held_;  // connection ids
  EventPtr timer_;
  uint64_t timer_at_ = 0;  // when the armed timer fires (monotonic ms; 0 = not armed)
};

}  // namespace pf
