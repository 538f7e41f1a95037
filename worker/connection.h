// worker/connection.h: one client connection: its socket, input/output
// evbuffers, identity and counters (the connection registry entry), flow
// control and closing rules. Replies are written straight after the input
// that caused them is handled (no extra loop turn, no EPOLLOUT round trip);
// a write event is armed only while the socket is full.
//
// Memory: an idle connection holds its object, one event (read and write
// share it, embedded here), the session and no buffers: the sweep frees the
// input and output evbuffers and the session's caches once the connection
// has been quiet for a second (Trim), and the next byte either way makes
// them again. docs/BENCHMARKS.md (idle memory) has the figures.
#pragma once

#include <event2/event_struct.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/types.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shared/util/cidr.h"
#include "shared/util/unique_fd.h"
#include "worker/event_util.h"
#include "worker/protocol.h"

namespace pf {

struct ListenerConf;
struct WorkerContext;

// Bytes that many connections' outputs share instead of copying them each
// (pub/sub fan-out: evbuffer_add_reference). Every output holding them
// counts a reference, dropped once they are written or the output is freed.
struct SharedBytes {
  std::string bytes;
  uint32_t refs = 1;  // the creator's
  static void Unref(SharedBytes* s);
};

// "timeout", "alpn", ...: the label of a TlsFailure in /_stats and /_metrics.
const char* TlsFailureName(uint32_t r);

class Connection {
 public:
  Connection(WorkerContext& w, const ListenerConf& l, int fd, const sockaddr* sa, uint64_t id);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool Start(std::unique_ptr<Session> s);  // false: the connection was closed

  uint64_t id() const { return id_; }
  const std::string& peer() const { return peer_; }
  // The peer's IP address (no port), for protected mode and the limits.
  const IpAddr& addr() const { return addr_; }
  // The accept-time doors (worker/security.h): "" = admitted, else the line
  // that refuses the client. Admission under limit_conn is released when
  // this object goes.
  std::string Admit();
  // Writes the refusal, then closes as CloseAfterWrite does (the client's
  // input is read and dropped, so the line reaches it).
  void RefuseWith(std::string_view line);
  const ListenerConf& listener() const { return listener_; }
  WorkerContext& worker() const { return w_; }
  uint64_t connected_ms() const { return connected_ms_; }          // wall clock
  uint64_t last_activity_ms() const { return last_activity_ms_; }  // monotonic (MonoMs)
  uint64_t bytes_in() const { return bytes_in_; }
  uint64_t bytes_out() const { return bytes_out_; }
  Session* session() const { return session_.get(); }
  int fd() const;  // the socket (CLIENT INFO fd=, laddr=)
  // The client registry entry (worker/clients.h); -1: not listed.
  int32_t client_slot() const { return client_slot_; }
  void set_client_slot(int32_t s) { client_slot_ = s; }
  // Runs the session on input it left unread (a command held by CLIENT
  // PAUSE), as if it had just arrived.
  void Resume();

  evbuffer* output() { return out(); }  // made if needed
  // A contiguous view of `in` holding at least `need` bytes: its first chunk
  // when that is enough, else the whole buffer linearized (a parser that
  // knows how many bytes its request needs copies once, not once per read).
  // False if `in` is empty or cannot be linearized.
  static bool Contiguous(evbuffer* in, size_t need, const char** data, size_t* len);
  size_t output_pending() const;
  void Write(std::string_view data);
  // `data` lies in `shared`: the output references it instead of a copy.
  void WriteShared(std::string_view data, SharedBytes* shared);
  // Flush what is queued, then close. Further input is discarded. When the
  // peer may still be sending (no EOF yet), the close lingers as nginx's
  // lingering_close does: after the output is written, shut down the write
  // side (the peer reads everything, then EOF) and read and discard input
  // until EOF, timeouts.lingering_timeout without data, or
  // timeouts.lingering_time in all. Closing with unread input would send a
  // reset, which throws away the reply (an error reply above all) before the
  // peer reads it. `peer_done`: the protocol knows the peer has sent all it
  // will (a whole HTTP request with `Connection: close` and nothing after
  // it): no lingering, and the socket closes as soon as the output is
  // written (a connection per request costs four system calls fewer).
  void CloseAfterWrite(bool peer_done = false);
  // Close now (the registry frees this object from the event loop).
  void Close(const char* reason);
  bool closing() const { return closing_ != Closing::kNo; }
  bool lingering() const { return closing_ == Closing::kLingering; }
  // The session's OnClose, once: when a lingering close starts (the session's
  // resources, such as a chat nick, go then) or when the connection is freed.
  void EndSession();
  // The sweep's check of a lingering close: true once it ended (closed).
  bool LingerExpired(uint64_t now_ms);
  // Persistence (worker/durable.h): the log reached what this connection's
  // output waited for: write it.
  void OnDurable();
  // End of the loop turn: write the output queued outside this connection's
  // callbacks (WorkerContext::QueueWrite).
  void OnQueuedWrite();
  void Touch(uint64_t now_ms) { last_activity_ms_ = now_ms; }
  // Bytes of client buffers this connection holds, as last counted.
  uint64_t buffered_bytes() const { return accounted_; }
  // Counts the memory this connection's buffers hold into the worker's sum
  // and applies the normal-client output limits (limits.client_output_*):
  // after every flush, and from the sweep for a client that does not read.
  void Account();
  // A file segment of `len` bytes was just added to the output: it holds an
  // open file, not memory, so Account leaves it out of limits.clients_memory.
  void NoteFileBytes(uint64_t len);
  // Gives back what an idle connection does not need: empty buffers and the
  // session's caches (Session::Trim). The sweep calls it once the
  // connection has been quiet for kTrimAfterMs.
  static constexpr uint64_t kTrimAfterMs = 1000;
  bool Trim();  // true: something was freed
  // TLS listeners (docs/tls.md): true until the handshake finished; the
  // sweep closes such a connection at its handshake deadline.
  bool tls_pending() const { return tls_ == Tls::kSniff || tls_ == Tls::kHandshake; }
  bool TlsDeadlinePassed(uint64_t now_ms);  // true: closed (counted as a timeout)
  bool tls() const { return tls_ != Tls::kOff; }
  // The handshake verified a client certificate whose subject CN is one
  // the listener's tls.auth_by_certificate lists (docs/tls.md).
  bool tls_cert_authenticated() const { return tls_cert_auth_; }

 private:
  static void EventCb(int fd, short what, void* arg);
  static void ReadCb(Connection* c);
  static void WriteCb(Connection* c);
  static void OutputCb(evbuffer*, const evbuffer_cb_info* info, void* arg);
  ssize_t ReadSome();  // one read(2) into the input buffer: bytes, 0 at EOF, -1 with errno
  void Process();      // run the session on buffered input, then flush
  void Flush();        // write what the socket takes; arm the write event for the rest
  void ArmWrite();
  void DisarmWrite();
  void PauseRead(bool pause);
  void SetReading(bool on);
  // Registers the one event for what reading_ and write_armed_ ask for.
  void UpdateEvents();
  // The buffers, made on first use (and again after Trim).
  evbuffer* in();
  evbuffer* out();

  // Runs a session callback. No exception crosses a libevent callback: the
  // connection goes, the worker stays. While the session runs, its output
  // is flushed by the caller after it (in_callback_), not by OutputCb.
  // False: the connection was closed.
  template <typename Fn>
  bool InSession(Fn&& fn) {
    in_callback_ = true;
    try {
      fn();
    } catch (const std::exception& e) {
      LogSessionError(e);
      in_callback_ = false;
      Close(nullptr);
      return false;
    }
    in_callback_ = false;
    return true;
  }
  void LogSessionError(const std::exception& e) const;
  void StartLinger();
  void FlushNow();
  // TLS: the first bytes decide (a handshake record, or a plain HTTP
  // request answered in plain text), then SSL_do_handshake until done;
  // then the session starts (OnConnect) as a plain connection's does.
  void Handshake();
  void TlsFailed(uint32_t reason, const std::string& why);
  ssize_t TlsRead();  // ReadSome for an open TLS connection
  bool CertificateAuthenticates() const;
  int TlsWrite();  // one record of the output: 1 written, 0 the socket is full, -1 closed
  // kOff: a plain listener (or the plain 400 after a plain request);
  // kSniff: nothing read yet; kHandshake: SSL_do_handshake until done;
  // kOpen: records both ways; kDead: a fatal error or close_notify sent,
  // nothing more is written.
  enum class Tls : uint8_t { kOff, kSniff, kHandshake, kOpen, kDead };
  enum class Closing { kNo, kAfterWrite, kLingering, kNow };

  WorkerContext& w_;
  const ListenerConf& listener_;
  UniqueFd fd_;
  event ev_;              // read and write readiness (event_assign'ed by UpdateEvents)
  short ev_flags_ = 0;    // what ev_ is registered for now (0: not added)
  EvbufferPtr in_, out_;  // null until used, and again after Trim
  bool trimmed_ = true;   // not used since the last Trim (or ever): nothing to give back
  std::unique_ptr<Session> session_;
  uint64_t id_;
  std::string peer_;
  IpAddr addr_;
  uint64_t conn_key_ = 0;  // limit_conn: held in the limiter table until this goes
  int32_t client_slot_ = -1;
  uint64_t connected_ms_, last_activity_ms_;
  uint64_t bytes_in_ = 0, bytes_out_ = 0;
  uint64_t out_added_ = 0;  // bytes ever added to the output (bytes_out_: ever drained)
  // File segments in the output, as [start, end) offsets in that stream
  // (HTTP only; a vector: no allocation until a file is sent).
  std::vector<std::pair<uint64_t, uint64_t>> file_spans_;
  uint64_t FileBytesPending();
  bool read_paused_ = false;   // output above the high-water mark
  bool reading_ = false;       // read readiness wanted
  bool write_armed_ = false;   // write readiness wanted (the socket was full)
  bool write_queued_ = false;  // in WorkerContext::pending_writes, at queued_at_
  size_t queued_at_ = 0;
  bool in_callback_ = false;  // inside a session callback: Process() flushes after it
  bool eof_ = false;          // the peer finished sending
  bool peer_done_ = false;    // CloseAfterWrite(peer_done): close without lingering
  bool nodelay_ = false;      // TCP_NODELAY is set (FlushNow, before the first write)
  // Lingering: the end of timeouts.lingering_time; TLS before that: the
  // handshake deadline (monotonic).
  uint64_t linger_until_ms_ = 0;
  bool session_ended_ = false;  // EndSession ran
  uint64_t accounted_ = 0;      // bytes counted in WorkerContext::client_bytes
  uint64_t soft_since_ms_ = 0;  // output above limits.client_output_soft since (0 = not)
  Closing closing_ = Closing::kNo;
  Tls tls_ = Tls::kOff;
  bool tls_cert_auth_ = false;
  SSL* ssl_ = nullptr;  // owned (SSL_free in the destructor)
  // Owned by DurableReplies: the log position this connection's output
  // waits for (0 = none), and whether it is in the waiting list.
  friend class DurableReplies;
  uint64_t durable_gate_ = 0;
  bool durable_waiting_ = false;
};

}  // namespace pf
