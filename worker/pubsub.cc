// worker/pubsub.cc: delivery from the shared ring to this worker's
// subscribers, in sequence order, and the limits on publishers and on slow
// subscribers (Redis' client-output-buffer-limit pubsub).
#include "worker/pubsub.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>

#include "shared/cmd/commands.h"
#include "shared/util/clock.h"
#include "worker/clients.h"
#include "worker/connection.h"
#include "worker/event_util.h"
#include "worker/worker.h"

namespace pf {

namespace {
// Messages delivered per loop turn before the other connections get a turn.
constexpr int kPumpBudget = 4096;
// Messages (and bytes) read from the ring before they are delivered.
constexpr size_t kBatch = 256;
constexpr size_t kBatchBytes = 1 << 20;
// A message buffer that grew past this (a large message) is given back.
constexpr size_t kKeepBuffer = 64 * 1024;
// Frames at least this long are referenced by subscribers' outputs, not
// copied into each (below it, a copy into the output's last chunk is cheaper
// than a chunk of its own).
constexpr size_t kShareAtLeast = 512;
// Fallback poll while this worker has subscribers: a wake-up can be consumed
// by the other process of the same slot during a reload.
constexpr timeval kPollPeriod{0, 100'000};
}  // namespace

PubSubHub::PubSubHub(WorkerContext& w, bus::Bus bus, std::vector<int> wake_fds)
    : w_(w), bus_(bus), wake_fds_(std::move(wake_fds)) {
  const int own =
      w.slot >= 0 && w.slot < static_cast<int>(wake_fds_.size()) ? wake_fds_[w.slot] : -1;
  wake_ev_.reset(event_new(w.base, own, own >= 0 ? EV_READ | EV_PERSIST : 0, WakeCb, this));
  if (own >= 0) event_add(wake_ev_.get(), nullptr);
  poll_ev_.reset(event_new(w.base, -1, EV_PERSIST, PollCb, this));
  evtimer_add(poll_ev_.get(), &kPollPeriod);
  published_ev_.reset(event_new(w.base, -1, 0, PublishedCb, this));
  cursor_ = bus_.Head();
}

PubSubHub::~PubSubHub() {
  if (w_.pubsub == this) w_.pubsub = nullptr;  // connections freed later must not call in
  for (Frame& f : frames_)
    if (f.bytes) SharedBytes::Unref(f.bytes);
}

SubStatus PubSubHub::Subscribe(PubSubClient& c, std::string_view name, bool pattern) {
  const PubSubConf& pc = w_.config->pubsub;
  if (name.size() > bus_.max_channel_bytes()) return SubStatus::kTooLong;
  if (pattern && name.size() > pc.max_pattern_bytes) return SubStatus::kPatternTooLong;
  auto& mine = pattern ? c.patterns : c.channels;
  if (mine.count(std::string(name))) return SubStatus::kOk;
  if (c.subscriptions() >= pc.max_channels_per_client) return SubStatus::kTooMany;
  if (pattern && c.patterns.size() >= pc.max_patterns_per_client)
    return SubStatus::kTooManyPatterns;
  // A worker without subscribers does not follow the ring: start from now.
  if (!Following()) cursor_ = bus_.Head();
  DeliverOwn();
  if (w_.owner >= 0) {
    switch (bus_.AddSub(w_.owner, name, pattern, c.address(), pc.max_channels_per_address)) {
      case bus::AddStatus::kOk:
        break;
      case bus::AddStatus::kAddressFull:
        w_.LogLimited("pubsub: {} holds pubsub.max_channels_per_address ({}) subscriptions",
                      c.address(), pc.max_channels_per_address);
        return SubStatus::kAddressFull;
      case bus::AddStatus::kTableFull:
        w_.LogLimited("pubsub: the subscription table is full (pubsub.channel_table_size {})",
                      pc.channel_table_size);
        return SubStatus::kTableFull;
    }
  }
  if (c.subscriptions() == 0 && w_.counters) w_.counters->subscribers.Add(1);
  mine.emplace(name);
  (pattern ? patterns_ : channels_)[std::string(name)].insert(&c);
  local_subs_++;
  return SubStatus::kOk;
}

bool PubSubHub::Unsubscribe(PubSubClient& c, std::string_view name, bool pattern) {
  if (!(pattern ? c.patterns : c.channels).count(std::string(name))) return false;
  DeliverOwn();
  return Drop(c, name, pattern);
}

bool PubSubHub::Drop(PubSubClient& c, std::string_view name, bool pattern) {
  auto& mine = pattern ? c.patterns : c.channels;
  auto it = mine.find(std::string(name));
  if (it == mine.end()) return false;
  mine.erase(it);
  if (c.subscriptions() == 0 && w_.counters) w_.counters->subscribers.Sub(1);
  auto& index = pattern ? patterns_ : channels_;
  auto ix = index.find(name);
  if (ix != index.end()) {
    ix->second.erase(&c);
    if (ix->second.empty()) index.erase(ix);
  }
  local_subs_--;
  if (w_.owner >= 0) bus_.RemoveSub(w_.owner, name, pattern, c.address());
  return true;
}

// No delivery here: the connection may be inside its destructor.
void PubSubHub::ReleaseAll(PubSubClient& c) {
  while (!c.channels.empty()) {
    const std::string n = *c.channels.begin();
    Drop(c, n, false);
  }
  while (!c.patterns.empty()) {
    const std::string n = *c.patterns.begin();
    Drop(c, n, true);
  }
}

PubStatus PubSubHub::Publish(PubSubClient* from, uint64_t origin, std::string_view channel,
                             std::string_view data, bool admin, int64_t* receivers) {
  const PubSubConf& pc = w_.config->pubsub;
  if (data.size() > std::min(pc.max_message_bytes, bus_.max_message_bytes()))
    return PubStatus::kTooLarge;
  if (channel.size() > bus_.max_channel_bytes()) return PubStatus::kChannelTooLong;
  if (!pc.reserved_prefix.empty() && channel.starts_with(pc.reserved_prefix) && !admin)
    return PubStatus::kReserved;
  if (from) {
    const uint64_t now = MonoMs();
    if (now - from->rate_window_ms >= 1000) {
      from->rate_window_ms = now;
      from->rate_count = 0;
    }
    if (from->rate_count >= pc.publish_rate_per_client) return PubStatus::kRateLimited;
    from->rate_count++;
  }
  if (!bus_.Publish(bus::kPubSub, origin, channel, data)) return PubStatus::kInternal;
  *receivers = bus_.Receivers(channel, &pattern_cache_);
  AfterPublish(from);
  return PubStatus::kOk;
}

// Other workers are woken once per batch of input, before its replies are
// written (WakeOwed), not once per PUBLISH, and this worker's subscribers
// get the turn's messages as one batch at the end of the turn (PublishedCb).
// Two cases deliver at once, as every publish did before: a publisher that
// is itself subscribed here keeps its pushes interleaved with its replies
// (kv-json: each reply, then its push), and a batch that has run half the
// ring ahead of this worker is delivered before it could be overwritten.
void PubSubHub::AfterPublish(const PubSubClient* from) {
  wake_owed_ = true;
  own_until_ = bus_.Head();
  if (!published_armed_) {
    published_armed_ = true;
    event_active(published_ev_.get(), EV_TIMEOUT, 0);  // after the other callbacks of this turn
  }
  if (!Following()) return;
  const uint64_t ahead = std::min<uint64_t>(kPumpBudget, bus_.ring_slots() / 2);
  if ((from && from->subscriptions() > 0) || bus_.Head() - cursor_ >= ahead) Pump();
}

void PubSubHub::DeliverOwn() {
  if (Following() && cursor_ < own_until_) Pump(own_until_);
}

void PubSubHub::PublishedCb(int, short, void* arg) {
  auto* h = static_cast<PubSubHub*>(arg);
  h->published_armed_ = false;
  NoThrow("pub/sub delivery", [h] {
    h->WakeOwed();
    h->Pump();
  });
}

size_t PubSubHub::max_message_bytes() const {
  return std::min<size_t>(w_.config->pubsub.max_message_bytes, bus_.max_message_bytes());
}

void PubSubHub::AddBroadcastTarget(PubSubClient& c) {
  if (c.broadcast_target) return;
  if (!Following()) cursor_ = bus_.Head();
  DeliverOwn();
  broadcast_[c.conn().listener().name].insert(&c);
  c.broadcast_target = true;
  broadcast_targets_++;
}

void PubSubHub::RemoveBroadcastTarget(PubSubClient& c) {
  if (!c.broadcast_target) return;
  auto it = broadcast_.find(c.conn().listener().name);
  if (it != broadcast_.end()) {
    it->second.erase(&c);
    if (it->second.empty()) broadcast_.erase(it);
  }
  c.broadcast_target = false;
  broadcast_targets_--;
}

PubStatus PubSubHub::Broadcast(std::string_view encoded) {
  if (encoded.size() > max_message_bytes()) return PubStatus::kTooLarge;
  if (!bus_.Publish(bus::kBroadcast, 0, kBroadcastChannel, encoded)) return PubStatus::kInternal;
  AfterPublish(nullptr);
  return PubStatus::kOk;
}

std::string EncodeBroadcast(std::string_view listener, std::span<const uint64_t> exclude,
                            std::string_view text) {
  std::string s(listener);
  s += '\n';
  for (size_t i = 0; i < exclude.size(); i++) {
    if (i) s += ',';
    s += std::to_string(exclude[i]);
  }
  s += '\n';
  s += text;
  return s;
}

bool DecodeBroadcast(std::string_view data, BroadcastMsg* out) {
  const size_t a = data.find('\n');
  if (a == std::string_view::npos) return false;
  const size_t b = data.find('\n', a + 1);
  if (b == std::string_view::npos) return false;
  out->listener = data.substr(0, a);
  out->text = data.substr(b + 1);
  out->exclude.clear();
  std::string_view ids = data.substr(a + 1, b - a - 1);
  while (!ids.empty()) {
    const size_t comma = ids.find(',');
    const std::string_view id = ids.substr(0, comma);
    uint64_t v = 0;
    const auto r = std::from_chars(id.data(), id.data() + id.size(), v);
    if (id.empty() || r.ec != std::errc() || r.ptr != id.data() + id.size()) return false;
    out->exclude.push_back(v);
    if (comma == std::string_view::npos) break;
    ids.remove_prefix(comma + 1);
    if (ids.empty()) return false;  // a trailing comma
  }
  return true;
}

std::string PubSubHub::Error(PubStatus s, std::string_view channel) const {
  const PubSubConf& pc = w_.config->pubsub;
  switch (s) {
    case PubStatus::kTooLarge:
      return "ERR message is larger than pubsub.max_message_bytes (" +
             std::to_string(std::min(pc.max_message_bytes, bus_.max_message_bytes())) + " bytes)";
    case PubStatus::kChannelTooLong:
      return "ERR channel name is longer than pubsub.max_channel_bytes (" +
             std::to_string(bus_.max_channel_bytes()) + " bytes)";
    case PubStatus::kRateLimited:
      return "ERR publish rate limit: at most " + std::to_string(pc.publish_rate_per_client) +
             " messages per second per client (pubsub.publish_rate_per_client)";
    case PubStatus::kReserved: {
      std::string ch(channel.substr(0, 128));
      for (char& ch_ : ch)
        if (ch_ == '\r' || ch_ == '\n') ch_ = ' ';
      return "NOPERM channel '" + ch +
             "' is reserved: only authenticated admins may publish under '" + pc.reserved_prefix +
             "'";
    }
    case PubStatus::kInternal:
      return std::string(errtext::kInternal);
    case PubStatus::kOk:
      break;
  }
  return "";
}

std::string PubSubHub::Error(SubStatus s) const {
  switch (s) {
    case SubStatus::kTooMany:
      return "ERR too many subscriptions: at most " +
             std::to_string(w_.config->pubsub.max_channels_per_client) +
             " channels and patterns per client (pubsub.max_channels_per_client)";
    case SubStatus::kTooManyPatterns:
      return "ERR too many patterns: at most " +
             std::to_string(w_.config->pubsub.max_patterns_per_client) +
             " per client (pubsub.max_patterns_per_client)";
    case SubStatus::kTooLong:
      return "ERR channel name is longer than pubsub.max_channel_bytes (" +
             std::to_string(bus_.max_channel_bytes()) + " bytes)";
    case SubStatus::kPatternTooLong:
      return "ERR pattern is longer than pubsub.max_pattern_bytes (" +
             std::to_string(w_.config->pubsub.max_pattern_bytes) + " bytes)";
    case SubStatus::kAddressFull:
      return "ERR too many subscriptions from your address: at most " +
             std::to_string(w_.config->pubsub.max_channels_per_address) +
             " (pubsub.max_channels_per_address)";
    case SubStatus::kTableFull:
      return "ERR the server's subscription table is full (pubsub.channel_table_size)";
    case SubStatus::kOk:
      break;
  }
  return "";
}

void PubSubHub::WakeAll() {
  wake_owed_ = false;
  for (size_t s = 0; s < wake_fds_.size(); s++) {
    if (!bus_.MarkPending(static_cast<uint32_t>(s))) continue;  // already woken, not yet run
    if (static_cast<int>(s) == w_.slot) {
      event_active(wake_ev_.get(), EV_READ, 0);
      continue;
    }
    const uint64_t one = 1;
    (void)!write(wake_fds_[s], &one, sizeof one);
  }
}

void PubSubHub::WakeSlot(int slot) {
  for (size_t s = 0; s < wake_fds_.size(); s++) {
    if (slot >= 0 && static_cast<int>(s) != slot) continue;
    if (!bus_.MarkPending(static_cast<uint32_t>(s))) continue;  // already woken, not yet run
    if (static_cast<int>(s) == w_.slot) {
      event_active(wake_ev_.get(), EV_READ, 0);
      continue;
    }
    const uint64_t one = 1;
    (void)!write(wake_fds_[s], &one, sizeof one);
  }
}

void PubSubHub::WakeCb(int fd, short, void* arg) {
  auto* h = static_cast<PubSubHub*>(arg);
  // Drain the eventfd, then clear the flag, then read the ring: a publish
  // after the clear sets the flag and writes the eventfd again. (Clearing
  // first lost wake-ups: a publish between the clear and the read left the
  // flag set with its eventfd count consumed, so later publishes skipped the
  // wake-up and delivery waited for the 100 ms poll.)
  uint64_t v;
  if (fd >= 0) (void)!read(fd, &v, sizeof v);
  h->bus_.ClearPending(static_cast<uint32_t>(h->w_.slot));
  NoThrow("pub/sub delivery", [h] { h->Pump(); });
  if (h->w_.clients) NoThrow("client registry", [h] { h->w_.clients->OnWake(); });
}

// Also the fallback for kill requests and unpauses whose wake-up the other
// process of this slot took during a reload.
void PubSubHub::PollCb(int, short, void* arg) {
  auto* h = static_cast<PubSubHub*>(arg);
  NoThrow("pub/sub delivery", [h] { h->Pump(); });
  if (h->w_.clients) NoThrow("client registry", [h] { h->w_.clients->OnWake(); });
}

void PubSubHub::Pump(uint64_t until) {
  if (pumping_) return;  // a delivery that publishes (chat) is picked up by the outer loop
  if (!Following()) {
    cursor_ = bus_.Head();
    return;
  }
  // Cleared however Pump ends: a subscriber that throws must not leave this
  // worker unable to deliver again.
  const FlagGuard pumping(pumping_);
  if (batch_.size() < kBatch) {
    batch_.resize(kBatch);
    batch_bufs_.resize(kBatch);
  }
  int n = 0;
  for (;;) {
    size_t got = 0, bytes = 0;
    bus::ReadStatus r = bus::ReadStatus::kOk;
    while (got < kBatch && bytes < kBatchBytes && n < kPumpBudget && cursor_ < until) {
      r = bus_.Read(cursor_, &batch_bufs_[got], &batch_[got]);
      if (r != bus::ReadStatus::kOk) break;
      bytes += batch_bufs_[got].size();
      cursor_++;
      got++;
      n++;
    }
    // What was read is delivered even when the next message was overwritten.
    Deliver(std::span<const bus::Message>(batch_.data(), got));
    for (size_t i = 0; i < got; i++)
      if (batch_bufs_[i].capacity() > kKeepBuffer) std::string().swap(batch_bufs_[i]);
    if (r == bus::ReadStatus::kGap) {
      DropBehind(bus_.Head());
      break;
    }
    if (r == bus::ReadStatus::kEmpty || n == kPumpBudget || cursor_ >= until) break;
  }
  if (n == kPumpBudget) event_active(wake_ev_.get(), EV_READ, 0);  // more next turn
}

void PubSubHub::DropBehind(uint64_t head) {
  std::unordered_set<PubSubClient*> victims;
  for (const auto& [name, set] : channels_) victims.insert(set.begin(), set.end());
  for (const auto& [name, set] : patterns_) victims.insert(set.begin(), set.end());
  spdlog::warn(
      "pub/sub: this worker fell {} messages behind a ring of {} (message {} was "
      "overwritten before it was read): disconnecting {} subscribers that missed messages",
      head - cursor_, bus_.ring_slots(), cursor_, victims.size());
  for (PubSubClient* c : victims)
    if (!c->conn().closing()) c->conn().Close("pub/sub: missed messages (ring overrun)");
  cursor_ = head;
}

void PubSubClient::PushFrame(std::string_view frame, SharedBytes* shared) {
  if (frame.empty()) return;
  if (shared && frame.size() >= kShareAtLeast)
    conn().WriteShared(frame, shared);
  else
    conn().Write(frame);
}

void PubSubHub::Deliver(std::span<const bus::Message> batch) {
  const uint64_t now = MonoMs();
  for (size_t i = 0; i < batch.size();) {
    const bus::Message& m = batch[i];
    if (m.kind != bus::kPubSub) {
      if (m.kind == bus::kBroadcast) DeliverBroadcast(m, now);
      i++;
      continue;
    }
    size_t j = i + 1;
    while (j < batch.size() && batch[j].kind == bus::kPubSub && batch[j].channel == m.channel) j++;
    DeliverRun(batch.subspan(i, j - i), now);
    i = j;
  }
}

// Consecutive messages on one channel. A client may hold both the channel
// and patterns that match it, and must get its pushes message by message in
// Redis' order (the channel's, then each pattern's): with a matching
// pattern the run goes message by message.
void PubSubHub::DeliverRun(std::span<const bus::Message> run, uint64_t now_ms) {
  const std::string_view channel = run.front().channel;
  auto it = channels_.find(channel);
  bool patterned = false;
  for (const auto& [pattern, set] : patterns_) {
    if (GlobMatch(pattern, channel)) {
      patterned = true;
      break;
    }
  }
  if (!patterned) {
    if (it != channels_.end()) DeliverTo(it->second, {}, run, now_ms);
    return;
  }
  for (size_t k = 0; k < run.size(); k++) {
    if (it != channels_.end()) DeliverTo(it->second, {}, run.subspan(k, 1), now_ms);
    for (const auto& [pattern, set] : patterns_)
      if (GlobMatch(pattern, channel)) DeliverTo(set, pattern, run.subspan(k, 1), now_ms);
  }
}

void PubSubHub::DeliverTo(const std::unordered_set<PubSubClient*>& set, std::string_view pattern,
                          std::span<const bus::Message> run, uint64_t now_ms) {
  const PubSubConf& pc = w_.config->pubsub;
  // Output that stays at or below this after the whole run passed every
  // per-message check (CheckOutput) on the way: the run is queued at once.
  const uint64_t at_once = std::min(pc.output_soft_limit, pc.output_hard_limit);
  size_t rendered = 0;  // frames_[0, rendered) hold this run (their buffers keep their capacity)
  for (PubSubClient* c : set) {
    Connection& conn = c->conn();
    if (conn.closing()) continue;
    const Frame* f = nullptr;
    if (const PubSubClient::Renderer r = c->renderer()) {
      for (size_t i = 0; i < rendered && !f; i++)
        if (frames_[i].renderer == r) f = &frames_[i];
      if (!f) {
        if (rendered == frames_.size()) frames_.emplace_back();
        Frame& n = frames_[rendered++];
        n.renderer = r;
        if (n.bytes && n.bytes->refs > 1) {  // outputs still hold the last run's frame
          SharedBytes::Unref(n.bytes);
          n.bytes = nullptr;
        }
        if (!n.bytes) n.bytes = std::make_unique<SharedBytes>().release();
        std::string& bytes = n.bytes->bytes;
        bytes.clear();
        n.ends.clear();
        n.shared = true;
        for (const bus::Message& m : run) {
          if (!r(pattern, m.channel, m.data, &bytes)) {
            n.shared = false;
            break;
          }
          n.ends.push_back(bytes.size());
        }
        f = &n;
      }
    }
    const std::string_view frame = f ? std::string_view(f->bytes->bytes) : std::string_view();
    if (f && f->shared && conn.output_pending() + frame.size() <= at_once) {
      c->PushFrame(frame, f->bytes);
      c->soft_since_ms = 0;
      continue;
    }
    // Close to the output limits (or no shared frame): message by message,
    // each checked as it is queued.
    size_t from = 0;
    for (size_t k = 0; k < run.size() && !conn.closing(); k++) {
      if (f && f->shared) {
        c->PushFrame(frame.substr(from, f->ends[k] - from), f->bytes);
        from = f->ends[k];
      } else {
        c->Push(pattern, run[k].channel, run[k].data);
      }
      CheckOutput(*c, now_ms);
    }
  }
  for (size_t i = 0; i < rendered; i++) {
    Frame& f = frames_[i];
    if (f.bytes->refs == 1 && f.bytes->bytes.capacity() > kBatchBytes)
      std::string().swap(f.bytes->bytes);
  }
}

void PubSubHub::DeliverBroadcast(const bus::Message& m, uint64_t now_ms) {
  BroadcastMsg b;
  if (!DecodeBroadcast(m.data, &b)) {
    spdlog::error("pub/sub: broadcast message {} is malformed: dropped", m.seq);
    return;
  }
  auto it = broadcast_.find(b.listener);
  if (it == broadcast_.end()) return;
  for (PubSubClient* c : it->second) {
    Connection& conn = c->conn();
    if (conn.closing()) continue;
    if (std::find(b.exclude.begin(), b.exclude.end(), conn.id()) != b.exclude.end()) continue;
    c->PushBroadcast(b.text);
    CheckOutput(*c, now_ms);
  }
}

void PubSubHub::CheckOutput(PubSubClient& c, uint64_t now_ms) {
  const PubSubConf& pc = w_.config->pubsub;
  Connection& conn = c.conn();
  const size_t pending = conn.output_pending();
  if (pending > pc.output_hard_limit) {
    spdlog::warn(
        "conn {} {}: subscriber output of {} bytes is over pubsub.output_hard_limit ({}): "
        "disconnecting the slow subscriber",
        conn.id(), conn.peer(), pending, pc.output_hard_limit);
    if (w_.counters) w_.counters->slow_subscribers_closed.Add(1);
    conn.Close("pub/sub output hard limit");
    return;
  }
  if (pending <= pc.output_soft_limit) {
    c.soft_since_ms = 0;
    return;
  }
  if (c.soft_since_ms == 0) {
    c.soft_since_ms = now_ms;
  } else if (now_ms - c.soft_since_ms >= uint64_t{pc.output_soft_seconds} * 1000) {
    spdlog::warn(
        "conn {} {}: subscriber output has been over pubsub.output_soft_limit ({}) for "
        "{} s ({} bytes now): disconnecting the slow subscriber",
        conn.id(), conn.peer(), pc.output_soft_limit, pc.output_soft_seconds, pending);
    if (w_.counters) w_.counters->slow_subscribers_closed.Add(1);
    conn.Close("pub/sub output soft limit");
  }
}

bool SubscriberSession::Subscribe(std::string_view name, bool pattern, std::string* err) {
  if (!w_.pubsub) {
    err->assign(errtext::kPubSubUnavailable);
    return false;
  }
  const SubStatus st = w_.pubsub->Subscribe(*this, name, pattern);
  if (st == SubStatus::kOk) return true;
  *err = w_.pubsub->Error(st);
  return false;
}

void SubscriberSession::Unsubscribe(std::string_view name, bool pattern) {
  if (w_.pubsub) w_.pubsub->Unsubscribe(*this, name, pattern);
}

std::vector<std::string> SubscriberSession::Subscribed(bool pattern) const {
  const auto& mine = pattern ? patterns : channels;
  return {mine.begin(), mine.end()};
}

bool SubscriberSession::Publish(std::string_view channel, std::string_view data, bool admin,
                                int64_t* receivers, std::string* err) {
  if (!w_.pubsub) {
    err->assign(errtext::kPubSubUnavailable);
    return false;
  }
  const PubStatus st = w_.pubsub->Publish(this, conn_->id(), channel, data, admin, receivers);
  if (st == PubStatus::kOk) return true;
  *err = w_.pubsub->Error(st, channel);
  return false;
}

std::vector<std::string> SubscriberSession::Channels(std::string_view pattern) {
  return w_.pubsub ? w_.pubsub->bus().Channels(pattern) : std::vector<std::string>{};
}

int64_t SubscriberSession::NumSub(std::string_view channel) {
  return w_.pubsub ? w_.pubsub->bus().NumSub(channel) : 0;
}

// The key pubsub.max_channels_per_address counts under: an IPv4 address
// (also when it comes v4-mapped), or an IPv6 address' /64, which one host
// is usually given whole.
std::string AddressKeyOf(std::string_view peer) {
  const size_t colon = peer.rfind(':');
  std::string host(colon == std::string_view::npos ? peer : peer.substr(0, colon));
  if (host.size() < 2 || host.front() != '[') return host;
  host = host.substr(1, host.size() - 2);
  in6_addr a{};
  if (inet_pton(AF_INET6, host.c_str(), &a) != 1) return host;
  if (IN6_IS_ADDR_V4MAPPED(&a)) {
    char v4[INET_ADDRSTRLEN];
    if (inet_ntop(AF_INET, &a.s6_addr[12], v4, sizeof v4)) return v4;
  }
  std::memset(&a.s6_addr[8], 0, 8);
  char v6[INET6_ADDRSTRLEN];
  if (!inet_ntop(AF_INET6, &a, v6, sizeof v6)) return host;
  return std::string(v6) + "/64";
}

// Kept from the first call (a subscribe, while the connection is there): the
// release in the destructor must name the same key, after the connection's
// own strings may be gone.
std::string_view SubscriberSession::address() const {
  if (address_.empty() && conn_) address_ = AddressKeyOf(conn_->peer());
  return address_;
}

int64_t SubscriberSession::NumPat() { return w_.pubsub ? w_.pubsub->bus().NumPat() : 0; }

// RESET: this worker's publishes so far reach the subscriptions as they were.
void SubscriberSession::UnsubscribeAll() {
  if (!w_.pubsub) return;
  w_.pubsub->DeliverOwn();
  w_.pubsub->ReleaseAll(*this);
}

void SubscriberSession::ReleaseSubscriptions() {
  if (!w_.pubsub) return;
  if (subscriptions()) w_.pubsub->ReleaseAll(*this);
  w_.pubsub->RemoveBroadcastTarget(*this);
}

}  // namespace pf
