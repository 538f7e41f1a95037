// worker/resp/session.cc: the Redis protocol (RESP2, RESP3 after HELLO 3) over the shared store:
// resumable parsing straight from the input evbuffer, pipelined commands run
// in order with replies written into the output evbuffer, Redis' close rules.
#include <event2/buffer.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "shared/cmd/commands.h"
#include "shared/config.h"
#include "shared/shm.h"
#include "shared/util/clock.h"
#include "shared/util/strings.h"
#include "worker/clients.h"
#include "worker/cmd_env.h"
#include "worker/connection.h"
#include "worker/protocol.h"
#include "worker/pubsub.h"
#include "worker/resp/parser.h"
#include "worker/resp/writer.h"
#include "worker/security.h"
#include "worker/worker.h"

namespace pf {
namespace {

class RespSession final : public SubscriberSession {
 public:
  RespSession(const ListenerConf& l, WorkerContext& w)
      : SubscriberSession(w),
        parser_(w.config->limits),
        env_(ListenerCommandEnv(w, l, kProtoResp)) {}

  void Trim() override {
    if (need_ == 0) parser_.Trim();
  }

  void OnConnect(Connection& c) override {
    conn_ = &c;
    FillClientSession(c, &session_);
    session_.resp2 = true;
    if (w_.pubsub) session_.pubsub = this;
  }

  void Push(std::string_view pattern, std::string_view channel, std::string_view data) override {
    std::string frame;
    renderer()(pattern, channel, data, &frame);
    PushFrame(frame, nullptr);
  }
  Renderer renderer() const override { return session_.resp3 ? &Render<true> : &Render<false>; }

  // ["message", channel, data] or ["pmessage", pattern, channel, data]: an
  // array in RESP2, a push frame (">") in RESP3.
  template <bool kResp3>
  static bool Render(std::string_view pattern, std::string_view channel, std::string_view data,
                     std::string* frame) {
    const bool resp3 = kResp3;
    RespStringWriter out(StringSink{frame}, &resp3);
    if (pattern.empty()) {
      out.PushBegin(3);
      out.Bulk("message");
    } else {
      out.PushBegin(4);
      out.Bulk("pmessage");
      out.Bulk(pattern);
    }
    out.Bulk(channel);
    out.Bulk(data);
    return true;
  }

  void OnRead(Connection& c, evbuffer* in) override { Process(c, in); }

  // Nothing to do here: when reading was paused on the output high-water
  // mark, the Connection calls OnRead again with the buffered input once the
  // output has drained, and Process() picks up where it stopped.
  void OnWriteDrained(Connection&) override {}

  // A retiring worker keeps serving: commands already buffered (or arriving)
  // still run and their replies flush. The connection is not closed here even
  // when idle, since the client may be sending its next command right now;
  // the drain timeout ends it (see ARCHITECTURE.md, "Draining").
  void OnDrain(Connection&) override {}

  const ClientSession* client_session() const override { return &session_; }

 private:
  // Runs every complete command buffered in `in`, in order. Stops early while
  // the output is over limits.output_high_water (the Connection then pauses
  // reading), on a protocol error, or after QUIT.
  void Process(Connection& c, evbuffer* in) {
    const size_t high_water = w_.config->limits.output_high_water;
    const bool password = !w_.config->kv.password.empty();
    RespEvbufferWriter out(EvbufferSink{c.output()}, &session_.resp3);
    const uint64_t now = WallMs();
    for (;;) {
      if (c.closing()) return;
      const size_t len = evbuffer_get_length(in);
      if (len == 0 || len < need_) return;
      if (c.output_pending() > high_water) return;
      // Parse from the first contiguous chunk; linearize only when the
      // command in progress needs bytes beyond it (need_ is exact for bulk
      // payloads, so a large value is copied once, not once per read).
      const char* data;
      size_t avail;
      if (!Connection::Contiguous(in, need_, &data, &avail)) return;
      size_t off = 0;
      for (;;) {
        parser_.set_auth_required(password && !session_.authenticated);
        const RespParseResult r = parser_.Parse(data + off, avail - off);
        if (r.kind == RespParseResult::kError) {
          // As Redis' setProtocolError: reply, then close once it is written.
          evbuffer_drain(in, len);
          out.Error(ErrCode::kProtocol, r.error);
          c.CloseAfterWrite();
          return;
        }
        if (r.kind == RespParseResult::kNeedMore) {
          off += r.consumed;
          need_ = r.need;
          break;
        }
        if (CrossProtocol(r)) {
          evbuffer_drain(in, len);
          NoteRefusal(w_, kRefusedCrossProtocol, c.addr(),
                      "Possible SECURITY ATTACK detected: an HTTP request on the resp listener " +
                          c.listener().name +
                          " (a web page using cross-protocol scripting?); closed, nothing run");
          out.Error(
              ErrCode::kErr,
              "ERR HTTP request on the Redis protocol port (cross-protocol attack?): closing");
          c.CloseAfterWrite();
          return;
        }
        // CLIENT PAUSE: the command stays unread (the parser starts again
        // at its first byte) until the pause ends.
        if (uint64_t until; CommandPaused(env_, session_, r.argv, &until)) {
          evbuffer_drain(in, off);
          need_ = 0;
          w_.clients->Hold(c, until);
          return;
        }
        first_ = false;
        // The argv views point into `data`: run the command, then drop its bytes.
        if (!RateLimited(c, out)) Dispatch(env_, session_, r.argv, out, now);
        off += r.consumed;
        need_ = 0;
        if (session_.close_after_reply) {  // QUIT: commands pipelined after it never run
          evbuffer_drain(in, len);
          c.CloseAfterWrite();
          return;
        }
        if (c.output_pending() > high_water) break;
      }
      evbuffer_drain(in, off);
    }
  }

  // Redis' securityWarningCommand: a browser can make any page POST to a
  // loopback port, and the inline parser would run each line of the body.
  // POST and Host: are never Redis commands; an HTTP request line (METHOD
  // target HTTP/x) as the first inline command is one too.
  bool CrossProtocol(const RespParseResult& r) const {
    const std::string_view name = r.argv[0];
    // The lengths first: most commands are decided by one comparison.
    if ((name.size() == 4 && EqualsNoCase(name, "post")) ||
        (name.size() == 5 && EqualsNoCase(name, "host:")))
      return true;
    if (!first_ || !r.is_inline || r.argv.size() != 3) return false;
    return r.argv[2].substr(0, 5) == "HTTP/";
  }

  // limit_req of the listener: the command is answered with an error and
  // not run; the connection stays.
  bool RateLimited(Connection& c, RespEvbufferWriter& out) {
    const ListenerConf& l = c.listener();
    if (!l.limit_req.enabled()) return false;
    const uint64_t wait = RequestRefusedFor(w_, l, c.addr());
    if (wait == 0) return false;
    out.Error(ErrCode::kRateLimited, "ERR rate limited: retry in " + std::to_string(wait) +
                                         " ms (limit_req of listener " + l.name + ")");
    return true;
  }

  RespParser parser_;
  ClientSession session_;
  bool first_ = true;      // no command has run yet
  const CommandEnv& env_;  // the listener's (ListenerCommandEnv)
  size_t need_ = 0;        // bytes the command in progress needs buffered before parsing again
};

}  // namespace

std::unique_ptr<Session> MakeRespSession(const ListenerConf& l, WorkerContext& w) {
  return std::make_unique<RespSession>(l, w);
}

}  // namespace pf
