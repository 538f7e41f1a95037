// tools/load/fanout_wire.h: what pf-load's fan-out modes (pubsub, chat) put on the wire and how
// they judge what comes back: the timestamped payload, a RESP reply parser, chat line
// classification, and the per-publisher order checks. No sockets here, so it is unit-tested.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace pf::load {

// ---- payload: "<publisher>:<seq>:<send monotonic ns>:" + 'x' padding up to the wanted size --

struct Payload {
  uint32_t publisher = 0;
  uint64_t seq = 0;
  uint64_t sent_ns = 0;
};

// Appends one payload of `size` bytes (longer when the header alone is longer).
void AppendPayload(std::string& out, const Payload& p, size_t size);
// False when `data` is not a payload (a probe, or garbage).
bool ParsePayload(std::string_view data, Payload* out);

// Probes ("probe:<publisher>:<n>") go out before the measured stream until every subscriber
// has seen one: proof that each subscriber's server worker delivers to it.
void AppendProbe(std::string& out, uint32_t publisher, uint64_t n);
// True for a probe; *publisher is set.
bool ParseProbe(std::string_view data, uint32_t* publisher);

// ---- RESP2 replies, as far as pub/sub needs them ------------------------------------------

struct RespValue {
  char type = 0;         // '+', '-', ':', '$' (bulk; null bulk has is_null), '*'
  std::string_view str;  // simple string, error, bulk (views into the parsed buffer)
  int64_t num = 0;       // integer
  bool is_null = false;
};

struct RespReply {
  RespValue top;  // for '*', top.num is the element count
  static constexpr size_t kMaxItems = 4;
  RespValue items[kMaxItems];  // the elements of a flat array (no nesting)
};

// Parses one reply at the start of buf. Returns the bytes it spans, 0 when buf holds only a
// prefix of one, -1 when it is not RESP this client can judge (nested or long arrays included).
ptrdiff_t ParseRespReply(std::string_view buf, RespReply* out);

// Appends a RESP multibulk command.
void AppendRespCommand(std::string& out, std::initializer_list<std::string_view> argv);

// ---- chat lines --------------------------------------------------------------------------

enum class ChatLine {
  kMessage,  // "[room] nick: text" for our room; *text is set
  kInfo,     // "* ..." (welcome, joined, notices)
  kError,    // "! ..."
  kOther,    // anything else (another room, private messages, broadcasts)
};
// `room_prefix` is "[room] ". The line comes without its '\n' (and '\r').
ChatLine ClassifyChatLine(std::string_view line, std::string_view room_prefix,
                          std::string_view* text);

// ---- order checks ------------------------------------------------------------------------

// One subscriber's view of each publisher's sequence: every publisher sends 0, 1, 2, ... on one
// connection, and the server must deliver them to each subscriber in that order, none missing.
class OrderTracker {
 public:
  enum class Result {
    kInOrder,    // the next expected message
    kGap,        // later than expected: the messages in between are lost (counted in lost)
    kDuplicate,  // earlier than expected: a duplicate or a reordering
  };
  explicit OrderTracker(size_t publishers = 1) : next_(publishers, 0) {}
  // lost: set to the messages skipped on kGap, else 0.
  Result Observe(uint32_t publisher, uint64_t seq, uint64_t* lost);
  // Every message of `publisher` below this was received or skipped.
  uint64_t Next(uint32_t publisher) const { return next_[publisher]; }

 private:
  std::vector<uint64_t> next_;
};

// For one publisher and one group of subscribers (a load thread's): the floor below which every
// live member has passed every sequence number. The publisher stays within a window of the
// lowest floor, so no queue grows without bound. Members move forward by Advance() as their
// OrderTracker does; a member that goes away leaves by Remove().
class PassFloor {
 public:
  // `span`: the furthest a member can be ahead of the floor (the publisher's window) or more.
  PassFloor(unsigned members, uint64_t span);
  // A member that had passed [0, from) has now passed [0, to). False (and nothing counted) when
  // `to` is further than the span ahead of the floor: a sequence number never published.
  bool Advance(uint64_t from, uint64_t to);
  // A member that had passed [0, passed) leaves the group.
  void Remove(uint64_t passed);
  // All live members have passed [0, Floor()); UINT64_MAX when no member is left.
  uint64_t Floor() const;
  unsigned members() const { return members_; }

 private:
  void Settle();
  std::vector<uint32_t> count_;  // ring: members that passed sequence s, for s >= floor_
  uint64_t mask_;
  uint64_t floor_ = 0;
  uint64_t top_ = 0;  // the furthest `to` any member reached
  unsigned members_;
};

}  // namespace pf::load
