// worker/connection.h: one client connection: a bufferevent, its identity and
// counters (the connection registry entry), flow control and closing rules.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "worker/protocol.h"

struct bufferevent;
struct evbuffer;
struct evbuffer_cb_info;

namespace pf {

struct ListenerConf;
struct WorkerContext;

class Connection {
 public:
  Connection(WorkerContext& w, const ListenerConf& l, int fd, const sockaddr* sa, uint64_t id);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool Start(std::unique_ptr<Session> s);   // false: the connection was closed

  uint64_t id() const { return id_; }
  const std::string& peer() const { return peer_; }
  const ListenerConf& listener() const { return listener_; }
  WorkerContext& worker() const { return w_; }
  uint64_t connected_ms() const { return connected_ms_; }
  uint64_t last_activity_ms() const { return last_activity_ms_; }
  uint64_t bytes_in() const { return bytes_in_; }
  uint64_t bytes_out() const { return bytes_out_; }
  Session* session() const { return session_.get(); }
  int fd() const;                          // the socket (CLIENT INFO fd=, laddr=)

  evbuffer* output() const;
  size_t output_pending() const;
  void Write(std::string_view data);
  // Flush what is queued, then close. Further input is discarded.
  void CloseAfterWrite();
  // Close now (the registry frees this object from the event loop).
  void Close(const char* reason);
  bool closing() const { return closing_ != Closing::kNo; }
  void Touch(uint64_t now_ms) { last_activity_ms_ = now_ms; }

 private:
  static void ReadCb(bufferevent*, void* arg);
  static void WriteCb(bufferevent*, void* arg);
  static void EventCb(bufferevent*, short what, void* arg);
  static void OutputCb(evbuffer*, const evbuffer_cb_info* info, void* arg);
  void AfterInput();

  enum class Closing { kNo, kAfterWrite, kNow };

  WorkerContext& w_;
  const ListenerConf& listener_;
  bufferevent* bev_ = nullptr;
  std::unique_ptr<Session> session_;
  uint64_t id_;
  std::string peer_;
  uint64_t connected_ms_, last_activity_ms_;
  uint64_t bytes_in_ = 0, bytes_out_ = 0;
  size_t input_seen_ = 0;
  bool read_paused_ = false;
  Closing closing_ = Closing::kNo;
};

}  // namespace pf
