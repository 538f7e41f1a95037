// worker/chat.cc: the chat protocol (line-based, telnet/nc usable) on
// the pub/sub bus. Everything shared lives in the bus (docs/protocol-chat.md):
//   $sys.chat.nick.NICK         the nick's owner subscribes: ownership + private messages
//   $sys.chat.room.ROOM         room traffic ("M" messages, "N" notices)
//   $sys.chat.member.ROOM.NICK  presence only: PUBSUB-style listing gives /who
//   $sys.chat.ctl               admin control (kick, broadcast)
// Subscriptions are counted per process in the bus' table and dropped when the
// client goes (ReleaseAll) or its worker dies (the master's ReleaseOwner), so
// nicks never dangle. History on /join is read back from the ring itself.
#include <event2/buffer.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shared/config.h"
#include "shared/shm.h"
#include "shared/util/line_framer.h"
#include "shared/util/strings.h"
#include "worker/connection.h"
#include "worker/protocol.h"
#include "worker/pubsub.h"
#include "worker/security.h"
#include "worker/worker.h"

namespace pf {
namespace {

constexpr std::string_view kNickCh = "$sys.chat.nick.";
constexpr std::string_view kRoomCh = "$sys.chat.room.";
constexpr std::string_view kMemberCh = "$sys.chat.member.";
constexpr std::string_view kCtlCh = "$sys.chat.ctl";
constexpr size_t kMaxName = 32;

bool ValidName(std::string_view s) {
  if (s.empty() || s.size() > kMaxName) return false;
  for (char ch : s)
    if (!isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '-') return false;
  return true;
}

std::string S(std::string_view a, std::string_view b) { return std::string(a) + std::string(b); }

class ChatSession final : public SubscriberSession {
 public:
  ChatSession(const ListenerConf&, WorkerContext& w)
      : SubscriberSession(w), framer_(w.config->limits.max_line_bytes) {}
  void OnConnect(Connection& c) override {
    conn_ = &c;
    PubSubHub* hub = w_.pubsub;
    if (!hub) {
      Line("! chat is not available (no pub/sub bus)");
      c.CloseAfterWrite();
      return;
    }
    if (const SubStatus st = hub->Subscribe(*this, kCtlCh, false); st != SubStatus::kOk) {
      std::string e = hub->Error(st);
      if (e.starts_with("ERR ")) e.erase(0, 4);
      Line("! " + e);
      c.CloseAfterWrite();
      return;
    }
    hub->AddBroadcastTarget(*this);
    std::string guest = "guest" + std::to_string(c.id());
    for (int i = 0; i < 5 && !Claim(guest); i++)
      guest = "guest" + std::to_string(c.id()) + "-" + std::to_string(rand() % 100000);
    if (nick_.empty()) {
      Line("! could not assign a nick");
      c.CloseAfterWrite();
      return;
    }
    Line("* welcome to preforkd chat, worker=" + std::to_string(w_.slot) + "; you are " + nick_ +
         "; /help for commands");
    Join("lobby");
  }

  void OnClose(Connection&) override {
    if (!w_.pubsub) return;
    if (!room_.empty() && !nick_.empty()) Notice(room_, "* " + nick_ + " left [" + room_ + "]");
    ReleaseSubscriptions();
  }

  // Chat clients sit quietly in rooms, so their idle timeout is their own
  // and long (timeouts.chat_idle): no traffic either way for that long.
  uint32_t TimeoutMs(const WorkerContext& w) const override {
    return w.config->timeouts.chat_idle_ms;
  }
  void OnTimeout(Connection& c) override {
    if (timed_out_) return;  // the goodbye is queued; the close follows its write
    timed_out_ = true;
    Line("! closing: idle for " + std::to_string(w_.config->timeouts.chat_idle_ms / 1000) +
         " s (timeouts.chat_idle)");
    c.CloseAfterWrite();
  }

  void Push(std::string_view, std::string_view channel, std::string_view data) override {
    if (channel == kCtlCh) {
      if (data.starts_with("K ")) {
        const std::string_view rest = data.substr(2);
        const size_t sp = rest.find(' ');
        const std::string_view who = rest.substr(0, sp);
        const std::string_view by = sp == std::string_view::npos ? "admin" : rest.substr(sp + 1);
        if (who == nick_) {
          Line(S("! you were kicked by ", by));
          conn_->CloseAfterWrite();
        }
      } else if (data.starts_with("B ")) {
        Line(S("[broadcast] ", data.substr(2)));
      }
      return;
    }
    std::string frame;
    Render({}, channel, data, &frame);
    PushFrame(frame, nullptr);
  }
  Renderer renderer() const override { return Render; }

  // Room traffic and private messages are the same line for every member;
  // control messages are not (a kick closes only its target).
  static bool Render(std::string_view, std::string_view channel, std::string_view data,
                     std::string* line) {
    if (channel == kCtlCh) return false;
    if (channel.starts_with(kRoomCh)) {
      if (data.empty()) return true;  // nothing to show
      data.remove_prefix(1);          // the kind: M message, N notice
    }
    // Otherwise the nick channel: private messages.
    line->append(data);
    line->push_back('\n');
    return true;
  }

  // The operator's POST /_admin/broadcast, in the format of /broadcast.
  void PushBroadcast(std::string_view text) override { Line(S("[broadcast] ", text)); }
  std::string_view client_name() const override { return nick_; }

  void OnRead(Connection& c, evbuffer* in) override {
    const size_t high_water = w_.config->limits.output_high_water;
    for (;;) {
      if (c.closing()) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
      }
      if (c.output_pending() > high_water) return;
      const size_t len = evbuffer_get_length(in);
      if (len == 0 || len < need_) return;
      const char* data;
      size_t avail;
      if (!Connection::Contiguous(in, need_, &data, &avail)) return;
      const LineFramer::Result r = framer_.Next(data, avail);
      if (r.kind == LineFramer::Result::kNeedMore) {
        // The partial line plus one byte; `in` may already hold them beyond
        // the chunk the framer saw, so look again.
        evbuffer_drain(in, r.consumed);
        need_ = avail - r.consumed + 1;
        continue;
      }
      need_ = 0;
      if (r.kind == LineFramer::Result::kTooLong) {
        TooLong(c, in);
        return;
      }
      const std::string line(r.line);  // Handle may run the loop's deliveries
      evbuffer_drain(in, r.consumed);
      if (first_line_ && LooksLikeHttpRequestLine(line)) {
        // A web page's POST: its body lines would be said in the victim's name.
        NoteRefusal(w_, kRefusedCrossProtocol, c.addr(),
                    "an HTTP request on chat listener " + c.listener().name + ": closed");
        evbuffer_drain(in, evbuffer_get_length(in));
        Line("! HTTP request on the chat port (cross-protocol attack?): closing");
        c.CloseAfterWrite();
        return;
      }
      first_line_ = false;
      c.worker().counters->requests[kProtoChat].Add(1);
      Handle(line);
      c.worker().NoteLatency(kProtoChat);
    }
  }

 private:
  void Line(std::string_view s) {
    std::string l(s);
    l.push_back('\n');
    conn_->Write(l);
  }

  void TooLong(Connection& c, evbuffer* in) {
    evbuffer_drain(in, evbuffer_get_length(in));
    Line("! line too long: at most " + std::to_string(w_.config->limits.max_line_bytes) +
         " bytes (limits.max_line_bytes)");
    c.CloseAfterWrite();
  }

  // The chat channels are under the reserved prefix, so plain pub/sub
  // clients cannot forge them; chat sessions publish there with the admin
  // right for the one call (the hub still applies this client's rate limit).
  bool Post(std::string_view channel, std::string_view data) {
    int64_t receivers = 0;
    const PubStatus st =
        w_.pubsub->Publish(this, conn_->id(), channel, data, /*admin=*/true, &receivers);
    if (st != PubStatus::kOk) {
      std::string e = w_.pubsub->Error(st, channel);
      if (e.starts_with("ERR ")) e.erase(0, 4);
      Line("! " + e);
      return false;
    }
    return true;
  }

  void Notice(const std::string& room, const std::string& text) {
    Post(S(kRoomCh, room), "N" + text);
  }

  // Takes `nick` over all workers: subscribe to its channel, then check this
  // is the only subscription (two claims racing on two workers both back off).
  bool Claim(const std::string& nick) {
    bus::Bus& bus = w_.pubsub->bus();
    const std::string ch = S(kNickCh, nick);
    if (bus.NumSub(ch) > 0) return false;
    if (w_.pubsub->Subscribe(*this, ch, false) != SubStatus::kOk) return false;
    if (bus.NumSub(ch) != 1) {
      w_.pubsub->Unsubscribe(*this, ch, false);
      return false;
    }
    nick_ = nick;
    return true;
  }

  void Leave() {
    if (room_.empty()) return;
    const std::string room = room_;
    w_.pubsub->Unsubscribe(*this, S(kMemberCh, room + "." + nick_), false);
    w_.pubsub->Unsubscribe(*this, S(kRoomCh, room), false);
    room_.clear();
    Notice(room, "* " + nick_ + " left [" + room + "]");
  }

  void Join(const std::string& room) {
    PubSubHub* hub = w_.pubsub;
    if (room == room_) {
      Line("* already in [" + room + "]");
      return;
    }
    Leave();
    // Deliver what is pending first, so history and live delivery meet at Head().
    hub->Pump();
    const std::string room_ch = S(kRoomCh, room);
    SubStatus st = hub->Subscribe(*this, room_ch, false);
    if (st == SubStatus::kOk) st = hub->Subscribe(*this, S(kMemberCh, room + "." + nick_), false);
    if (st != SubStatus::kOk) {
      hub->Unsubscribe(*this, room_ch, false);
      std::string e = hub->Error(st);
      if (e.starts_with("ERR ")) e.erase(0, 4);
      Line("! " + e);
      return;
    }
    room_ = room;
    bus::Bus& bus = hub->bus();
    const uint64_t head = bus.Head();
    Line("* joined [" + room + "] (" + std::to_string(bus.NumSub(room_ch)) + " members)");
    // History: the room's last N messages still in the ring, before `head`.
    const uint32_t want = w_.config->pubsub.chat_history;
    if (want > 0) {
      std::vector<std::string> hist;
      std::string buf;
      bus::Message m;
      const uint64_t lo = head > bus.ring_slots() ? head - bus.ring_slots() : 0;
      for (uint64_t s = head; s > lo && hist.size() < want; s--) {
        if (bus.Read(s - 1, &buf, &m) != bus::ReadStatus::kOk) break;
        if (m.channel == room_ch && m.data.starts_with("M")) hist.emplace_back(m.data.substr(1));
      }
      for (auto it = hist.rbegin(); it != hist.rend(); ++it) Line(*it);
    }
    Notice(room, "* " + nick_ + " joined [" + room + "]");
  }

  static std::pair<std::string_view, std::string_view> Split(std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    const size_t sp = s.find(' ');
    if (sp == std::string_view::npos) return {s, {}};
    std::string_view rest = s.substr(sp + 1);
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    return {s.substr(0, sp), rest};
  }

  // One row a command: what /help shows, whether it needs /auth, and the
  // method that runs it with the rest of the line.
  struct Command {
    std::string_view name;
    std::string_view syntax;  // "/nick NAME"
    std::string_view what;    // the help text
    bool admin;
    void (ChatSession::*run)(std::string_view arg);
  };
  static const Command kCommands[];
  static std::span<const Command> Commands();

  void Handle(std::string_view line) {
    if (line.empty()) return;
    if (line.front() != '/' || line.starts_with("//")) {
      if (line.starts_with("//")) line.remove_prefix(1);  // "//text" sends "/text"
      if (room_.empty()) {
        Line("! not in a room: /join ROOM first");
        return;
      }
      Post(S(kRoomCh, room_), "M[" + room_ + "] " + nick_ + ": " + std::string(line));
      return;
    }
    auto [cmd, arg] = Split(line.substr(1));
    for (const Command& k : Commands()) {
      if (k.name != cmd) continue;
      if (k.admin && !admin_) {
        Line(S(S("! permission denied: /", cmd), " needs /auth TOKEN first"));
        return;
      }
      (this->*k.run)(arg);
      return;
    }
    Line(S(S("! unknown command: /", cmd.substr(0, 64)), " (/help lists them)"));
  }

  void CmdHelp(std::string_view) {
    Line("* commands:");
    for (const Command& k : Commands()) {
      if (k.syntax.empty()) continue;
      std::string l = "*   " + std::string(k.syntax);
      l.resize(std::max<size_t>(l.size() + 1, 4 + 18), ' ');
      l += k.what;
      Line(l);
    }
    Line("* other lines go to the current room (start with // to send a leading /)");
  }

  void CmdNick(std::string_view arg) {
    if (!ValidName(arg)) {
      Line("! invalid nick: 1-32 letters, digits, '_' or '-'");
      return;
    }
    if (arg == nick_) {
      Line("* you are already " + nick_);
      return;
    }
    const std::string old = nick_;
    if (!Claim(std::string(arg))) {
      Line(S("! nick taken: ", arg));
      return;
    }
    w_.pubsub->Unsubscribe(*this, S(kNickCh, old), false);
    if (!room_.empty()) {
      w_.pubsub->Unsubscribe(*this, S(kMemberCh, room_ + "." + old), false);
      w_.pubsub->Subscribe(*this, S(kMemberCh, room_ + "." + nick_), false);
      Notice(room_, "* " + old + " is now known as " + nick_);
    }
    Line("* you are now " + nick_);
  }

  void CmdJoin(std::string_view arg) {
    if (!ValidName(arg)) {
      Line("! invalid room: 1-32 letters, digits, '_' or '-'");
      return;
    }
    Join(std::string(arg));
  }

  void CmdPart(std::string_view) {
    if (room_.empty()) {
      Line("! not in a room");
      return;
    }
    const std::string room = room_;
    Leave();
    Line("* left [" + room + "]");
  }

  void CmdMsg(std::string_view arg) {
    auto [to, text] = Split(arg);
    if (to.empty() || text.empty()) {
      Line("! usage: /msg NICK TEXT");
      return;
    }
    if (!ValidName(to) || w_.pubsub->bus().NumSub(S(kNickCh, to)) == 0) {
      Line(S("! no such nick: ", to));
      return;
    }
    if (Post(S(kNickCh, to), "[pm] " + nick_ + ": " + std::string(text)))
      Line(S("* to ", to) + ": " + std::string(text));
  }

  void CmdWho(std::string_view) {
    if (room_.empty()) {
      Line("! not in a room");
      return;
    }
    const std::string prefix = S(kMemberCh, room_ + ".");
    std::vector<std::string> names = w_.pubsub->bus().Channels(prefix + "*");
    for (auto& n : names) n.erase(0, prefix.size());
    std::sort(names.begin(), names.end());
    std::string out = "* members of [" + room_ + "] (" + std::to_string(names.size()) + "):";
    for (const auto& n : names) out += " " + n;
    Line(out);
  }

  void CmdRooms(std::string_view) {
    bus::Bus& bus = w_.pubsub->bus();
    std::vector<std::string> rooms = bus.Channels(S(kRoomCh, "*"));
    std::sort(rooms.begin(), rooms.end());
    std::string out = "* rooms (" + std::to_string(rooms.size()) + "):";
    for (const auto& r : rooms)
      out += " " + r.substr(kRoomCh.size()) + "(" + std::to_string(bus.NumSub(r)) + ")";
    Line(out);
  }

  void CmdWhoami(std::string_view) {
    Line("* you are " + nick_ + " in " +
         (room_.empty() ? std::string("no room") : "[" + room_ + "]") +
         ", worker=" + std::to_string(w_.slot) + ", id=" + std::to_string(conn_->id()) +
         (admin_ ? ", admin" : ""));
  }

  void CmdAuth(std::string_view arg) {
    const std::string& token = w_.config->pubsub.admin_token;
    if (token.empty()) {
      Line("! admin commands are disabled (no pubsub.admin_token)");
    } else if (AuthThrottled(w_, conn_->addr())) {
      Line("! too many failed authentication attempts from your address: try again in a minute");
    } else if (!SecretEquals(arg, token)) {
      NoteAuthResult(w_, conn_->addr(), false, "chat /auth");
      Line("! wrong token");
    } else {
      NoteAuthResult(w_, conn_->addr(), true, "chat /auth");
      admin_ = true;
      Line("* authenticated as admin");
    }
  }

  void CmdKick(std::string_view arg) {
    if (!ValidName(arg) || w_.pubsub->bus().NumSub(S(kNickCh, arg)) == 0) {
      Line(S("! no such nick: ", arg));
      return;
    }
    if (Post(kCtlCh, S("K ", arg) + " " + nick_)) Line(S("* kicked ", arg));
  }

  void CmdBroadcast(std::string_view arg) {
    if (arg.empty()) {
      Line("! usage: /broadcast TEXT");
      return;
    }
    Post(kCtlCh, S("B ", nick_) + ": " + std::string(arg));
  }

  void CmdQuit(std::string_view) {
    Line("* bye");
    conn_->CloseAfterWrite();
  }

  LineFramer framer_;
  size_t need_ = 0;  // buffered bytes needed before the framer can progress
  std::string nick_, room_;
  bool timed_out_ = false;  // OnTimeout said goodbye
  bool admin_ = false;      // /auth TOKEN: may /kick and /broadcast
  bool first_line_ = true;  // no line handled yet (the cross-protocol check)
};

const ChatSession::Command ChatSession::kCommands[] = {
    {"nick", "/nick NAME", "take a nick (unique over the server; letters, digits, _ -; <= 32)",
     false, &ChatSession::CmdNick},
    {"join", "/join ROOM", "enter ROOM (leaving the current one); replays its last messages", false,
     &ChatSession::CmdJoin},
    {"part", "/part", "leave the current room", false, &ChatSession::CmdPart},
    {"msg", "/msg NICK TEXT", "private message", false, &ChatSession::CmdMsg},
    {"who", "/who", "members of the current room", false, &ChatSession::CmdWho},
    {"rooms", "/rooms", "rooms with members", false, &ChatSession::CmdRooms},
    {"whoami", "/whoami", "your nick, room, worker and connection id", false,
     &ChatSession::CmdWhoami},
    {"auth", "/auth TOKEN", "become admin (pubsub.admin_token)", false, &ChatSession::CmdAuth},
    {"kick", "/kick NICK", "(admin) disconnect NICK", true, &ChatSession::CmdKick},
    {"broadcast", "/broadcast TEXT", "(admin) message every chat client", true,
     &ChatSession::CmdBroadcast},
    {"quit", "/quit", "disconnect", false, &ChatSession::CmdQuit},
    {"help", "", "", false, &ChatSession::CmdHelp},  // not listed in its own output
};

std::span<const ChatSession::Command> ChatSession::Commands() { return kCommands; }

}  // namespace

std::unique_ptr<Session> MakeChatSession(const ListenerConf& l, WorkerContext& w) {
  return std::make_unique<ChatSession>(l, w);
}

}  // namespace pf
