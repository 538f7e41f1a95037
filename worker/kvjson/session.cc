// worker/kvjson/session.cc: the kv-json line protocol (docs/protocol-kv-json.md)
// over the shared store: one JSON request a line, one reply line per request,
// in order; a bad line gets an error reply and the connection stays open.
#include <event2/buffer.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "shared/cmd/commands.h"
#include "shared/config.h"
#include "shared/util/clock.h"
#include "shared/util/line_framer.h"
#include "worker/clients.h"
#include "worker/cmd_env.h"
#include "worker/connection.h"
#include "worker/json.h"
#include "worker/kvjson/request.h"
#include "worker/kvjson/writer.h"
#include "worker/protocol.h"
#include "worker/pubsub.h"
#include "worker/security.h"
#include "worker/worker.h"

namespace pf {
namespace {

class KvJsonSession final : public SubscriberSession {
 public:
  KvJsonSession(const ListenerConf& l, WorkerContext& w)
      : SubscriberSession(w),
        framer_(w.config->limits.max_line_bytes),
        parser_(w.config->limits),
        env_(ListenerCommandEnv(w, l, kProtoKvJson)) {}

  void Trim() override {
    if (in_request_) return;
    parser_.Trim();
    if (out_.empty()) std::string().swap(out_);
    if (deferred_.empty()) std::string().swap(deferred_);
  }

  void OnConnect(Connection& c) override {
    conn_ = &c;
    FillClientSession(c, &session_);
    if (w_.pubsub) {
      session_.pubsub = this;
      w_.pubsub->AddBroadcastTarget(*this);
    }
  }

  // {"type":"message","channel":"...","data":"..."}; bytes that are not
  // UTF-8 travel in base64 with "encoding":"base64".
  void Push(std::string_view pattern, std::string_view channel, std::string_view data) override {
    std::string line;
    Render(pattern, channel, data, &line);
    EmitPush(line);
  }
  Renderer renderer() const override { return Render; }
  // Copied: a push may wait in deferred_ while a reply is built.
  void PushFrame(std::string_view line, SharedBytes*) override { EmitPush(line); }

  static bool Render(std::string_view, std::string_view channel, std::string_view data,
                     std::string* line) {
    *line += "{\"type\":\"message\",\"channel\":";
    const bool raw = json::IsUtf8(channel) && json::IsUtf8(data);
    if (raw) {
      json::AppendJsonString(line, channel);
      *line += ",\"data\":";
      json::AppendJsonString(line, data);
    } else {
      *line += '"';
      json::AppendBase64(line, channel);
      *line += "\",\"data\":\"";
      json::AppendBase64(line, data);
      *line += "\",\"encoding\":\"base64\"";
    }
    *line += "}\n";
    return true;
  }

  // {"type":"broadcast","data":"..."}: an operator broadcast to this
  // listener (POST /_admin/broadcast).
  void PushBroadcast(std::string_view text) override {
    std::string line = "{\"type\":\"broadcast\",\"data\":";
    if (json::IsUtf8(text)) {
      json::AppendJsonString(&line, text);
    } else {
      line += '"';
      json::AppendBase64(&line, text);
      line += "\",\"encoding\":\"base64\"";
    }
    line += "}\n";
    EmitPush(line);
  }

  void OnRead(Connection& c, evbuffer* in) override {
    Process(c, in);
    Flush(c);
  }

  // Reading paused on the output high-water mark resumes through OnRead (the
  // Connection calls it with the buffered input once the output drained).
  void OnWriteDrained(Connection&) override {}

  // A retiring worker keeps answering lines; the drain timeout closes a
  // connection that stays open (ARCHITECTURE.md, "Draining").
  void OnDrain(Connection&) override {}

  const ClientSession* client_session() const override { return &session_; }

 private:
  // Replies computed before a push are written first, so lines keep their
  // order. A push that comes while a reply is half built (a subscribed
  // client's own PUBLISH is delivered to it at once) follows that reply.
  void EmitPush(std::string_view line) {
    if (in_request_) {
      deferred_ += line;
      return;
    }
    Flush(*conn_);
    conn_->Write(line);
  }

  void Flush(Connection& c) {
    if (out_.empty()) return;
    c.Write(out_);
    out_.clear();
    if (out_.capacity() > kKeepCapacity) out_.shrink_to_fit();
  }

  void Process(Connection& c, evbuffer* in) {
    const size_t high_water = w_.config->limits.output_high_water;
    const uint64_t now = WallMs();
    for (;;) {
      if (c.closing()) return;
      const size_t len = evbuffer_get_length(in);
      if (len == 0 || len < need_) return;
      if (c.output_pending() + out_.size() > high_water) return;
      // When the pending line continues past the first chunk, this
      // linearizes; the framer never keeps more than max_line_bytes of a
      // line, so the copy is bounded.
      const char* data;
      size_t avail;
      if (!Connection::Contiguous(in, need_, &data, &avail)) return;
      size_t off = 0;
      for (;;) {
        const LineFramer::Result r = framer_.Next(data + off, avail - off);
        if (r.kind == LineFramer::Result::kNeedMore) {
          off += r.consumed;
          need_ = avail - off + 1;  // the partial line (if any) plus one byte
          break;
        }
        bool quit = false;
        if (r.kind == LineFramer::Result::kTooLong) {
          kvjson::WriteJsonError(&out_, "", ErrCode::kLineTooLong,
                                 "line is longer than " +
                                     std::to_string(w_.config->limits.max_line_bytes) +
                                     " bytes (limits.max_line_bytes)");
          // It may be a JSON object (only its length is known): a bad line,
          // and the next line is still held to the first line's rule.
          quit = BadLine(c, /*not_json=*/false);
        } else {
          quit = HandleLine(c, r.line, now);
          if (hold_until_) {
            // CLIENT PAUSE: the line stays unread until the pause ends.
            const uint64_t until = hold_until_;
            hold_until_ = 0;
            evbuffer_drain(in, off);
            need_ = 0;
            Flush(c);
            w_.clients->Hold(c, until);
            return;
          }
        }
        off += r.consumed;  // after the line's views were used
        need_ = 0;
        if (quit || session_.close_after_reply) {  // lines after QUIT are not read
          evbuffer_drain(in, len);
          Flush(c);
          c.CloseAfterWrite();
          return;
        }
        if (c.output_pending() + out_.size() > high_water) break;
      }
      evbuffer_drain(in, off);
    }
  }

  // A line that is not a request. The first line must be a JSON object: a
  // browser's POST to this port starts with an HTTP request line, and its
  // body (a JSON request a web page chose) must never run. Later, after
  // limits.max_bad_lines bad lines, the client is not speaking kv-json
  // either. Returns true: close after the error line.
  bool BadLine(Connection& c, bool not_json) {
    const bool first = !seen_request_;
    if (first && not_json) {
      NoteRefusal(w_, kRefusedCrossProtocol, c.addr(),
                  "the first line on kv-json listener " + c.listener().name +
                      " is not a JSON object (an HTTP request from a web page?): closed");
      kvjson::WriteJsonError(
          &out_, "", ErrCode::kBadJson,
          "the first line must be a JSON request object: closing the connection");
      return true;
    }
    if (++bad_lines_ < w_.config->limits.max_bad_lines) return false;
    NoteRefusal(w_, kRefusedBadLines, c.addr(),
                std::to_string(bad_lines_) + " bad lines on kv-json listener " + c.listener().name +
                    ": closed");
    kvjson::WriteJsonError(
        &out_, "", ErrCode::kErr,
        std::to_string(bad_lines_) + " bad lines (limits.max_bad_lines): closing the connection");
    return true;
  }

  // Returns true when the connection must close after this reply.
  bool HandleLine(Connection& c, std::string_view line, uint64_t now) {
    const kvjson::ParsedLine p = parser_.Parse(line);
    switch (p.kind) {
      case kvjson::ParsedLine::kBlank:
        return false;
      case kvjson::ParsedLine::kError: {
        size_t i = 0;
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) i++;
        const bool object = i < line.size() && line[i] == '{' && p.error_code != ErrCode::kBadJson;
        // Not an object first: BadLine's one error line says why it closes.
        if (object || seen_request_)
          kvjson::WriteJsonError(&out_, p.id, p.error_code, p.error_message);
        const bool quit = BadLine(c, !object);
        if (object) seen_request_ = true;
        return quit;
      }
      case kvjson::ParsedLine::kRequest: {
        if (uint64_t until; CommandPaused(env_, session_, p.argv, &until)) {
          hold_until_ = until;
          return false;
        }
        seen_request_ = true;
        kvjson::JsonReplyWriter w(&out_);
        w.Begin(p.id, p.shape);
        const ListenerConf& l = c.listener();
        if (l.limit_req.enabled()) {
          if (const uint64_t wait = RequestRefusedFor(w_, l, c.addr())) {
            w.Error(ErrCode::kRateLimited, "rate limited: retry in " + std::to_string(wait) +
                                               " ms (limit_req of listener " + l.name + ")");
            w.End();
            return false;
          }
        }
        in_request_ = true;
        Dispatch(env_, session_, p.argv, w, now);
        w.End();
        in_request_ = false;
        out_ += deferred_;
        deferred_.clear();
        return p.quit;
      }
    }
    return false;
  }

  static constexpr size_t kKeepCapacity = 256 * 1024;

  LineFramer framer_;
  kvjson::RequestParser parser_;
  ClientSession session_;
  const CommandEnv& env_;  // the listener's (ListenerCommandEnv)
  std::string out_;        // replies of this read, written to the output in one go
  std::string deferred_;   // pushes that came while a reply was being built
  bool in_request_ = false;
  bool seen_request_ = false;  // a line that was a JSON object came (bad or not)
  uint32_t bad_lines_ = 0;     // lines that were not requests
  size_t need_ = 0;
  uint64_t hold_until_ = 0;  // HandleLine: the request waits for CLIENT PAUSE until then //
                             // buffered bytes needed before the framer can progress
};

}  // namespace

std::unique_ptr<Session> MakeKvJsonSession(const ListenerConf& l, WorkerContext& w) {
  return std::make_unique<KvJsonSession>(l, w);
}

}  // namespace pf
