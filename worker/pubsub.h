// worker/pubsub.h: a worker's end of the pub/sub bus: its local subscribers
// (resp, kv-json, chat connections), publishing with the per-client limits,
// and delivery of the ring's messages in sequence order, woken by this
// slot's eventfd. Output limits of slow subscribers are enforced here, and
// operator broadcasts (POST /_admin/broadcast) reach every connection of a
// listener on every worker the same way.
#pragma once

#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "shared/bus.h"
#include "shared/cmd/commands.h"
#include "worker/event_util.h"
#include "worker/protocol.h"

namespace pf {

class Connection;
struct SharedBytes;
struct WorkerContext;

// A connection that can subscribe. The protocol renders pushes.
class PubSubClient {
 public:
  virtual ~PubSubClient() = default;
  virtual Connection& conn() = 0;
  // One message; `pattern` is empty for a channel subscription.
  virtual void Push(std::string_view pattern, std::string_view channel, std::string_view data) = 0;

  // Fan-out renders a message once per protocol, not once per subscriber:
  // clients whose pushes are the same bytes for every client of their kind
  // name one renderer, the hub calls it once per message (and pattern) and
  // hands each such client the frame with PushFrame; consecutive messages
  // on one channel come as one frame, their pushes back to back. A renderer
  // returns false for a message whose push depends on the client (a chat
  // kick names its target); that client then gets Push. A renderer appends
  // to `out`; an empty frame writes nothing. `shared`, when not null, holds
  // `frame` for outputs to reference instead of copying (the default
  // PushFrame does for large frames).
  using Renderer = bool (*)(std::string_view pattern, std::string_view channel,
                            std::string_view data, std::string* out);
  virtual Renderer renderer() const { return nullptr; }
  virtual void PushFrame(std::string_view frame, SharedBytes* shared);
  // An operator broadcast to this connection's listener (only for clients
  // that PubSubHub::AddBroadcastTarget registered).
  virtual void PushBroadcast(std::string_view) {}

  // The client's IP address, which pubsub.max_channels_per_address caps
  // ("" = none: not counted).
  virtual std::string_view address() const { return {}; }

  size_t subscriptions() const { return channels.size() + patterns.size(); }
  bool broadcast_target = false;  // registered with AddBroadcastTarget (owned by PubSubHub)
  std::set<std::string> channels, patterns;  // owned by PubSubHub
  uint64_t rate_window_ms = 0;               // publish rate: start of the current second
  uint32_t rate_count = 0;
  uint64_t soft_since_ms = 0;  // output above the soft limit since (0 = not)
};

// A protocol session that can subscribe (resp, kv-json, chat): its
// subscriptions (and its broadcast registration) go however the connection
// ends (OnClose, or the worker's exit), and a subscriber is not closed as
// idle (as in Redis). It is the PubSubPort the command table's pub/sub
// commands use (shared/cmd/pubsub.cc).
class PubSubHub;

class SubscriberSession : public Session, public PubSubClient, public PubSubPort {
 public:
  explicit SubscriberSession(WorkerContext& w) : w_(w) {}
  ~SubscriberSession() override { ReleaseSubscriptions(); }
  void OnClose(Connection&) override { ReleaseSubscriptions(); }
  uint32_t TimeoutMs(const WorkerContext& w) const override {
    return subscriptions() ? 0 : Session::TimeoutMs(w);
  }
  Buffers buffers() const override {
    return subscriptions() ? Buffers::kSubscriber : Buffers::kNormal;
  }
  Connection& conn() override { return *conn_; }
  std::string_view address() const override;

  // PubSubPort
  size_t subscription_count() const override { return subscriptions(); }
  bool Subscribe(std::string_view name, bool pattern, std::string* err) override;
  void Unsubscribe(std::string_view name, bool pattern) override;
  std::vector<std::string> Subscribed(bool pattern) const override;
  bool Publish(std::string_view channel, std::string_view data, bool admin, int64_t* receivers,
               std::string* err) override;
  std::vector<std::string> Channels(std::string_view pattern) override;
  int64_t NumSub(std::string_view channel) override;
  int64_t NumPat() override;
  void UnsubscribeAll() override;

 protected:
  void ReleaseSubscriptions();
  WorkerContext& w_;
  Connection* conn_ = nullptr;

 private:
  mutable std::string address_;  // address(), once known
};

// "1.2.3.4:port" or "[v6]:port" -> the key a client's subscriptions count
// under for pubsub.max_channels_per_address: the IPv4 address (v4-mapped
// ones too) or the IPv6 /64.
std::string AddressKeyOf(std::string_view peer);

enum class PubStatus { kOk, kTooLarge, kChannelTooLong, kRateLimited, kReserved, kInternal };
enum class SubStatus {
  kOk,
  kTooMany,          // pubsub.max_channels_per_client
  kTooManyPatterns,  // pubsub.max_patterns_per_client
  kTooLong,          // pubsub.max_channel_bytes
  kPatternTooLong,   // pubsub.max_pattern_bytes
  kAddressFull,      // pubsub.max_channels_per_address
  kTableFull,        // pubsub.channel_table_size
};

// An operator broadcast as it travels on the bus: one message of kind
// bus::kBroadcast on channel kBroadcastChannel, data
// "LISTENER\nID,ID,...\nTEXT" (the listener name, the excluded connection
// ids in decimal, then the text, which may hold any byte).
inline constexpr std::string_view kBroadcastChannel = "$sys.broadcast";
struct BroadcastMsg {
  std::string_view listener;
  std::vector<uint64_t> exclude;
  std::string_view text;
};
std::string EncodeBroadcast(std::string_view listener, std::span<const uint64_t> exclude,
                            std::string_view text);
// False when `data` is not in that format.
bool DecodeBroadcast(std::string_view data, BroadcastMsg* out);

class PubSubHub {
 public:
  PubSubHub(WorkerContext& w, bus::Bus bus, std::vector<int> wake_fds);
  ~PubSubHub();  // frees what no output references any more
  PubSubHub(const PubSubHub&) = delete;
  PubSubHub& operator=(const PubSubHub&) = delete;

  bus::Bus& bus() { return bus_; }

  // Idempotent: subscribing twice to one name is kOk and counts once.
  SubStatus Subscribe(PubSubClient& c, std::string_view name, bool pattern);
  // False when `c` was not subscribed to `name`.
  bool Unsubscribe(PubSubClient& c, std::string_view name, bool pattern);
  // Every subscription of `c`, at once (the connection is going; RESET
  // calls DeliverOwn first).
  void ReleaseAll(PubSubClient& c);
  // Before a subscription of this worker changes: this worker's publishes
  // so far reach the subscriptions as they were (they are otherwise
  // delivered at the end of the loop turn), as when every publish was
  // delivered at once: a new subscriber never gets a message published here
  // before it subscribed, one that leaves gets those published before.
  void DeliverOwn();

  // `from` is the publishing client (its rate limit; nullptr = the server
  // itself); `admin`: it may publish under pubsub.reserved_prefix.
  // *receivers: clients over all workers that get it.
  PubStatus Publish(PubSubClient* from, uint64_t origin, std::string_view channel,
                    std::string_view data, bool admin, int64_t* receivers);
  // The error text (RESP form, "ERR ..."/"NOPERM ...") for a status.
  std::string Error(PubStatus s, std::string_view channel) const;
  std::string Error(SubStatus s) const;
  // The largest payload a publish or a broadcast may carry.
  size_t max_message_bytes() const;

  // Operator broadcasts: `c` gets those sent to its connection's listener
  // (PushBroadcast) until it is removed; this worker then follows the ring
  // even without subscribers.
  void AddBroadcastTarget(PubSubClient& c);
  void RemoveBroadcastTarget(PubSubClient& c);
  // Queues an encoded broadcast (EncodeBroadcast) for every worker: kOk, or
  // kTooLarge over max_message_bytes(). Delivery is asynchronous and, as
  // for PUBLISH, at most once.
  PubStatus Broadcast(std::string_view encoded);

  // Delivers what the ring holds past this worker's cursor (up to, not
  // including, sequence number `until`).
  void Pump(uint64_t until = UINT64_MAX);

  // Wakes the other workers for this turn's publishes now, if that is still
  // owed: Connection::Flush and ~Connection call it, so a reply or a close
  // never leaves the worker before the wake-ups for what was published.
  void WakeOwed() {
    if (wake_owed_) WakeAll();
  }
  // Wakes worker slot `slot` (-1: every slot) for something other than a
  // message: a CLIENT KILL for one of its clients, the end of a pause.
  void WakeSlot(int slot);

 private:
  static void WakeCb(int fd, short what, void* arg);
  static void PollCb(int fd, short what, void* arg);
  static void PublishedCb(int fd, short what, void* arg);
  void AfterPublish(const PubSubClient* from);
  bool Drop(PubSubClient& c, std::string_view name, bool pattern);
  void WakeAll();
  void Deliver(std::span<const bus::Message> batch);
  void DeliverRun(std::span<const bus::Message> run, uint64_t now_ms);
  void DeliverBroadcast(const bus::Message& m, uint64_t now_ms);
  void DeliverTo(const std::unordered_set<PubSubClient*>& set, std::string_view pattern,
                 std::span<const bus::Message> run, uint64_t now_ms);
  void CheckOutput(PubSubClient& c, uint64_t now_ms);
  void DropBehind(uint64_t head);
  // This worker reads the ring while it has subscribers or broadcast targets.
  bool Following() const { return local_subs_ > 0 || broadcast_targets_ > 0; }

  WorkerContext& w_;
  bus::Bus bus_;
  bus::PatternCache pattern_cache_;  // PUBLISH's receiver count
  std::vector<int> wake_fds_;
  EventPtr wake_ev_;
  EventPtr poll_ev_;
  EventPtr published_ev_;  // active: this turn published (PublishedCb)
  bool published_armed_ = false;
  bool wake_owed_ = false;  // published since the last WakeAll
  uint64_t own_until_ = 0;  // the ring's head after this worker's last publish
  uint64_t cursor_ = 0;     // the next sequence number this worker delivers
  size_t local_subs_ = 0;   // subscriptions of this worker's clients
  size_t broadcast_targets_ = 0;
  // Names to clients, looked up with the string_view of a message's
  // channel (no std::string per lookup).
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  using ClientIndex =
      std::unordered_map<std::string, std::unordered_set<PubSubClient*>, NameHash, std::equal_to<>>;
  ClientIndex channels_, patterns_;
  // Broadcast targets by listener name.
  ClientIndex broadcast_;
  // Pump reads the ring a batch at a time, so a run of messages on one
  // channel reaches each subscriber as one frame (and one output append).
  std::vector<bus::Message> batch_;
  std::vector<std::string> batch_bufs_;
  // The frames of the run being delivered, one per renderer (a handful of
  // protocols), reused from run to run: `ends` is where each message's
  // pushes end in `bytes`.
  struct Frame {
    PubSubClient::Renderer renderer = nullptr;
    bool shared = false;
    SharedBytes* bytes = nullptr;  // one reference ours; replaced when outputs hold it
    std::vector<size_t> ends;
  };
  std::vector<Frame> frames_;
  bool pumping_ = false;
};

}  // namespace pf
