// worker/proto_resp.cc: the Redis protocol (RESP2) over the shared store:
// resumable parsing straight from the input evbuffer, pipelined commands run
// in order with replies written into the output evbuffer, Redis' close rules.
#include <event2/buffer.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "shared/commands.h"
#include "shared/config.h"
#include "worker/connection.h"
#include "worker/kv_env.h"
#include "worker/protocol.h"
#include "worker/pubsub.h"
#include "worker/resp_parser.h"
#include "worker/resp_writer.h"
#include "worker/worker.h"

namespace pf {
namespace {

std::string Lower(std::string_view s) {
  std::string r(s);
  for (char& ch : r) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
  return r;
}

class RespSession final : public SubscriberSession {
 public:
  RespSession(const ListenerConf& l, WorkerContext& w)
      : SubscriberSession(w), parser_(w.config->limits), env_(MakeCommandEnv(w, l, kProtoResp)) {}

  void OnConnect(Connection& c) override {
    conn_ = &c;
    FillClientSession(c, &session_);
  }

  void Push(std::string_view pattern, std::string_view channel, std::string_view data) override {
    std::string frame;
    Render(pattern, channel, data, &frame);
    PushFrame(frame, nullptr);
  }
  Renderer renderer() const override { return Render; }

  // ["message", channel, data] or ["pmessage", pattern, channel, data].
  static bool Render(std::string_view pattern, std::string_view channel, std::string_view data,
                     std::string* frame) {
    RespStringWriter out(StringSink{frame});
    if (pattern.empty()) {
      out.ArrayBegin(3);
      out.Bulk("message");
    } else {
      out.ArrayBegin(4);
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

 private:
  // Runs every complete command buffered in `in`, in order. Stops early while
  // the output is over limits.output_high_water (the Connection then pauses
  // reading), on a protocol error, or after QUIT.
  void Process(Connection& c, evbuffer* in) {
    const size_t high_water = w_.config->limits.output_high_water;
    const bool password = !w_.config->kv.password.empty();
    RespEvbufferWriter out(EvbufferSink{c.output()});
    const uint64_t now = WorkerContext::NowMs();
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
        // The argv views point into `data`: run the command, then drop its bytes.
        if (!PubSubCommand(r.argv, out, now)) Dispatch(env_, session_, r.argv, out, now);
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

  void Arity(ReplyWriter& out, std::string_view name) {
    out.Error(ErrCode::kWrongArity, "ERR wrong number of arguments for '" + std::string(name) + "' command");
  }

  void Count(std::string_view name, uint64_t now) {
    session_.commands++;
    session_.last_command = name;
    session_.last_command_ms = now;
    if (env_.commands_processed) env_.commands_processed->Add(1);
  }

  // The pub/sub commands and Redis' rules for a subscribed RESP2 connection.
  // True when the command was handled here; false: run it through Dispatch.
  bool PubSubCommand(std::span<const std::string_view> argv, ReplyWriter& out, uint64_t now) {
    if (argv.empty()) return false;
    const std::string name = Lower(argv[0]);
    const bool pubsub_cmd = name == "subscribe" || name == "unsubscribe" || name == "psubscribe" ||
                            name == "punsubscribe" || name == "publish" || name == "pubsub" ||
                            name == "reset";
    if (name == "auth" && argv.size() == 3 && Lower(argv[1]) == "admin" &&
        !w_.config->pubsub.admin_token.empty()) {
      // The pub/sub admin (ACL-style user "admin"): may publish under the reserved prefix.
      Count("auth", now);
      if (argv[2] != w_.config->pubsub.admin_token) {
        out.Error(ErrCode::kWrongPass, errtext::kWrongPass);
        return true;
      }
      admin = true;
      session_.authenticated = true;
      out.Status("OK");
      return true;
    }
    const bool allowed_subscribed = name == "subscribe" || name == "unsubscribe" ||
                                    name == "psubscribe" || name == "punsubscribe" ||
                                    name == "reset" || name == "quit";
    if (!pubsub_cmd || (subscriptions() && !allowed_subscribed)) {
      if (!subscriptions() || name == "quit") return false;
      if (name == "ping") {
        if (argv.size() > 2) return false;  // arity error from the table
        Count("ping", now);
        out.ArrayBegin(2);
        out.Bulk("pong");
        out.Bulk(argv.size() == 2 ? argv[1] : std::string_view());
        return true;
      }
      const CommandSpec* spec = LookupCommand(argv[0]);
      if (!spec && !pubsub_cmd) return false;  // unknown command: the table's error
      std::string full = name;
      if (argv.size() >= 2 && (name == "pubsub" || (spec && !spec->subcommands.empty())))
        full += "|" + Lower(argv[1]);
      out.Error(ErrCode::kErr, "ERR Can't execute '" + full +
                                   "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
                                   "RESET are allowed in this context");
      return true;
    }
    PubSubHub* hub = PubSubGate(session_.authenticated, out);
    if (!hub) return true;
    if (name == "reset") {
      if (argv.size() != 1) {
        Arity(out, name);
        return true;
      }
      Count("reset", now);
      hub->DeliverOwn();
      hub->ReleaseAll(*this);
      admin = false;
      session_.name.clear();
      if (!w_.config->kv.password.empty()) session_.authenticated = false;
      out.Status("RESET");
      return true;
    }
    if (name == "subscribe" || name == "psubscribe") {
      if (argv.size() < 2) {
        Arity(out, name);
        return true;
      }
      Count(name == "subscribe" ? "subscribe" : "psubscribe", now);
      const bool pattern = name == "psubscribe";
      for (size_t i = 1; i < argv.size(); i++) {
        const SubStatus st = hub->Subscribe(*this, argv[i], pattern);
        if (st != SubStatus::kOk) {
          out.Error(ErrCode::kErr, hub->Error(st));
          continue;
        }
        out.ArrayBegin(3);
        out.Bulk(name);
        out.Bulk(argv[i]);
        out.Integer(static_cast<int64_t>(subscriptions()));
      }
      return true;
    }
    if (name == "unsubscribe" || name == "punsubscribe") {
      Count(name == "unsubscribe" ? "unsubscribe" : "punsubscribe", now);
      const bool pattern = name == "punsubscribe";
      std::vector<std::string> names;
      if (argv.size() == 1) {
        const auto& mine = pattern ? patterns : channels;
        names.assign(mine.begin(), mine.end());
        if (names.empty()) {
          out.ArrayBegin(3);
          out.Bulk(name);
          out.Nil();
          out.Integer(static_cast<int64_t>(subscriptions()));
          return true;
        }
      } else {
        for (size_t i = 1; i < argv.size(); i++) names.emplace_back(argv[i]);
      }
      for (const std::string& n : names) {
        hub->Unsubscribe(*this, n, pattern);
        out.ArrayBegin(3);
        out.Bulk(name);
        out.Bulk(n);
        out.Integer(static_cast<int64_t>(subscriptions()));
      }
      return true;
    }
    if (name == "publish") {
      if (argv.size() != 3) {
        Arity(out, name);
        return true;
      }
      Count("publish", now);
      int64_t receivers = 0;
      const PubStatus st = hub->Publish(this, session_.id, argv[1], argv[2], &receivers);
      if (st == PubStatus::kOk) out.Integer(receivers);
      else out.Error(ErrCode::kErr, hub->Error(st, argv[1]));
      return true;
    }
    // PUBSUB <subcommand>
    if (argv.size() < 2) {
      Arity(out, "pubsub");
      return true;
    }
    const std::string sub = Lower(argv[1]);
    if (sub == "channels") {
      if (argv.size() > 3) {
        Arity(out, "pubsub|channels");
        return true;
      }
      Count("pubsub|channels", now);
      const std::vector<std::string> chans = hub->bus().Channels(argv.size() == 3 ? argv[2] : "");
      out.ArrayBegin(chans.size());
      for (const auto& ch : chans) out.Bulk(ch);
      return true;
    }
    if (sub == "numsub") {
      Count("pubsub|numsub", now);
      out.ArrayBegin((argv.size() - 2) * 2);
      for (size_t i = 2; i < argv.size(); i++) {
        out.Bulk(argv[i]);
        out.Integer(hub->bus().NumSub(argv[i]));
      }
      return true;
    }
    if (sub == "numpat") {
      if (argv.size() != 2) {
        Arity(out, "pubsub|numpat");
        return true;
      }
      Count("pubsub|numpat", now);
      out.Integer(hub->bus().NumPat());
      return true;
    }
    if (sub == "help") {
      static constexpr std::string_view kHelp[] = {
          "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
          "CHANNELS [<pattern>]",
          "    Return the currently active channels matching a <pattern> (default: '*').",
          "NUMPAT",
          "    Return number of subscriptions to patterns.",
          "NUMSUB [<channel> ...]",
          "    Return the number of subscribers for the specified channels, excluding",
          "    pattern subscriptions(default: no channels).",
          "HELP",
          "    Print this help.",
      };
      out.ArrayBegin(std::size(kHelp));
      for (auto line : kHelp) out.Status(line);
      return true;
    }
    std::string shown(argv[1].substr(0, 128));
    for (char& ch : shown)
      if (ch == '\r' || ch == '\n') ch = ' ';
    out.Error(ErrCode::kErr, "ERR unknown subcommand '" + shown + "'. Try PUBSUB HELP.");
    return true;
  }

  RespParser parser_;
  ClientSession session_;
  CommandEnv env_;
  size_t need_ = 0;  // bytes the command in progress needs buffered before parsing again
};

}  // namespace

std::unique_ptr<Session> MakeRespSession(const ListenerConf& l, WorkerContext& w) {
  return std::make_unique<RespSession>(l, w);
}

}  // namespace pf
