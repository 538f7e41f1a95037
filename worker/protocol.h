// worker/protocol.h: the one interface every protocol handler implements.
// A Session is the per-connection state of one protocol; the worker calls
// OnConnect / OnRead / OnClose (and OnDrain when it is retiring) with the
// connection object, which owns the socket, the buffers and the counters.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

struct evbuffer;

namespace pf {

class Connection;
struct WorkerContext;
struct ListenerConf;
struct ClientSession;

class Session {
 public:
  virtual ~Session() = default;
  virtual void OnConnect(Connection&) {}
  // New bytes are in `in`; consume what can be handled, leave partial input.
  virtual void OnRead(Connection& c, evbuffer* in) = 0;
  // Output has drained completely (flow control resumes, queued work continues).
  virtual void OnWriteDrained(Connection&) {}
  // The worker is retiring (reload or graceful stop): finish in-flight work;
  // close the connection when the protocol has a clean point to do so.
  virtual void OnDrain(Connection&) {}
  virtual void OnClose(Connection&) {}
  // The connection has been idle for a while (Connection::Trim): free what
  // is kept only to be reused by the next request (parser scratch space,
  // reply buffers). The client may be in the middle of a request (half of
  // it sent, then silence): what that request needs must stay.
  virtual void Trim() {}
  // Which client class the connection is in now, for the memory limits
  // (limits.client_output_*, limits.clients_memory): a normal client, a
  // subscriber (the pubsub.output_* limits apply instead), or HTTP, which
  // stops reading at limits.output_high_water (so its output is bounded by
  // that and one reply) and is not cut by client_output_*. All of them count
  // toward clients_memory, except file segments in HTTP output (an open
  // file, not memory).
  enum class Buffers { kNormal, kSubscriber, kHttp };
  virtual Buffers buffers() const { return Buffers::kNormal; }
  // The inactivity limit that applies right now (0 = none), and what to do when it passes.
  virtual uint32_t TimeoutMs(const WorkerContext& w) const;
  virtual void OnTimeout(Connection& c);
  // The command table's state of this connection (CLIENT LIST's name, cmd,
  // flags); nullptr for a protocol without one.
  virtual const ClientSession* client_session() const { return nullptr; }
  // CLIENT LIST's name= for a protocol without a ClientSession (chat: the nick).
  virtual std::string_view client_name() const { return {}; }
};

using SessionFactory = std::function<std::unique_ptr<Session>(const ListenerConf&, WorkerContext&)>;

// Defined by each proto_*.cc.
std::unique_ptr<Session> MakeEchoSession(const ListenerConf&, WorkerContext&);
std::unique_ptr<Session> MakeRespSession(const ListenerConf&, WorkerContext&);
std::unique_ptr<Session> MakeKvJsonSession(const ListenerConf&, WorkerContext&);
std::unique_ptr<Session> MakeHttpSession(const ListenerConf&, WorkerContext&);
std::unique_ptr<Session> MakeChatSession(const ListenerConf&, WorkerContext&);
// A client refused at accept: its input is dropped while the refusal drains.
std::unique_ptr<Session> MakeRefusedSession();

}  // namespace pf
