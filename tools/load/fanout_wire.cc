// tools/load/fanout_wire.cc: payloads, RESP replies, chat lines and order checks for pf-load's
// fan-out modes. Parsing works on views of the caller's buffer and never allocates.
#include "fanout_wire.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>

namespace pf::load {
namespace {

void AppendUint(std::string& s, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  s.append(buf, end);
}

// Parses the decimal at the start of s up to `stop`; advances s past the stop character.
template <typename T>
bool TakeUint(std::string_view& s, char stop, T* out) {
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, *out);
  if (ec != std::errc{} || p == s.data() || p == end || *p != stop) return false;
  s.remove_prefix(static_cast<size_t>(p - s.data()) + 1);
  return true;
}

constexpr std::string_view kProbe = "probe:";

// One CRLF-terminated header line at buf[at..]: its content, and the offset past the CRLF.
bool HeaderLine(std::string_view buf, size_t at, std::string_view* line, size_t* next) {
  const size_t cr = buf.find("\r\n", at);
  if (cr == std::string_view::npos) return false;
  *line = buf.substr(at, cr - at);
  *next = cr + 2;
  return true;
}

bool ParseInt(std::string_view s, int64_t* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc{} && p == s.data() + s.size();
}

// One non-array value at buf[at..]: 1 parsed (*next set), 0 incomplete, -1 malformed.
int ParseScalar(std::string_view buf, size_t at, RespValue* v, size_t* next) {
  if (at >= buf.size()) return 0;
  std::string_view line;
  size_t after;
  if (!HeaderLine(buf, at + 1, &line, &after)) {
    // A header longer than this without its CRLF is not one we would send or expect.
    return buf.size() - at > 64 && buf[at] != '+' && buf[at] != '-' ? -1 : 0;
  }
  v->type = buf[at];
  v->is_null = false;
  switch (v->type) {
    case '+':
    case '-':
      v->str = line;
      *next = after;
      return 1;
    case ':':
      if (!ParseInt(line, &v->num)) return -1;
      *next = after;
      return 1;
    case '$': {
      int64_t len;
      if (!ParseInt(line, &len) || len < -1) return -1;
      if (len == -1) {
        v->is_null = true;
        v->str = {};
        *next = after;
        return 1;
      }
      const size_t n = static_cast<size_t>(len);
      if (buf.size() - after < n + 2) return 0;
      if (buf.compare(after + n, 2, "\r\n") != 0) return -1;
      v->str = buf.substr(after, n);
      *next = after + n + 2;
      return 1;
    }
    default:
      return -1;
  }
}

}  // namespace

void AppendPayload(std::string& out, const Payload& p, size_t size) {
  const size_t start = out.size();
  AppendUint(out, p.publisher);
  out += ':';
  AppendUint(out, p.seq);
  out += ':';
  AppendUint(out, p.sent_ns);
  out += ':';
  const size_t used = out.size() - start;
  if (used < size) out.append(size - used, 'x');
}

bool ParsePayload(std::string_view data, Payload* out) {
  return TakeUint(data, ':', &out->publisher) && TakeUint(data, ':', &out->seq) &&
         TakeUint(data, ':', &out->sent_ns);
}

void AppendProbe(std::string& out, uint32_t publisher, uint64_t n) {
  out += kProbe;
  AppendUint(out, publisher);
  out += ':';
  AppendUint(out, n);
}

bool ParseProbe(std::string_view data, uint32_t* publisher) {
  if (!data.starts_with(kProbe)) return false;
  data.remove_prefix(kProbe.size());
  return TakeUint(data, ':', publisher);
}

ptrdiff_t ParseRespReply(std::string_view buf, RespReply* out) {
  if (buf.empty()) return 0;
  if (buf[0] != '*') {
    size_t next = 0;
    const int r = ParseScalar(buf, 0, &out->top, &next);
    return r > 0 ? static_cast<ptrdiff_t>(next) : r;
  }
  std::string_view line;
  size_t at;
  if (!HeaderLine(buf, 1, &line, &at)) return buf.size() > 32 ? -1 : 0;
  int64_t n;
  if (!ParseInt(line, &n) || n < -1 || n > static_cast<int64_t>(RespReply::kMaxItems)) return -1;
  out->top.type = '*';
  out->top.num = n;
  out->top.is_null = n == -1;
  for (int64_t i = 0; i < n; ++i) {
    if (at < buf.size() && buf[at] == '*') return -1;
    const int r = ParseScalar(buf, at, &out->items[i], &at);
    if (r <= 0) return r;
  }
  return static_cast<ptrdiff_t>(at);
}

void AppendRespCommand(std::string& out, std::initializer_list<std::string_view> argv) {
  out += '*';
  AppendUint(out, argv.size());
  out += "\r\n";
  for (std::string_view a : argv) {
    out += '$';
    AppendUint(out, a.size());
    out += "\r\n";
    out += a;
    out += "\r\n";
  }
}

ChatLine ClassifyChatLine(std::string_view line, std::string_view room_prefix,
                          std::string_view* text) {
  if (line.starts_with(room_prefix)) {
    const size_t colon = line.find(": ", room_prefix.size());
    if (colon == std::string_view::npos) return ChatLine::kOther;
    *text = line.substr(colon + 2);
    return ChatLine::kMessage;
  }
  if (line.starts_with("* ")) return ChatLine::kInfo;
  if (line.starts_with("! ")) return ChatLine::kError;
  return ChatLine::kOther;
}

OrderTracker::Result OrderTracker::Observe(uint32_t publisher, uint64_t seq, uint64_t* lost) {
  uint64_t& next = next_[publisher];
  *lost = 0;
  if (seq < next) return Result::kDuplicate;
  if (seq == next) {
    next = seq + 1;
    return Result::kInOrder;
  }
  *lost = seq - next;
  next = seq + 1;
  return Result::kGap;
}

PassFloor::PassFloor(unsigned members, uint64_t span)
    : count_(std::bit_ceil(std::max<uint64_t>(span, 2) + 1), 0),
      mask_(count_.size() - 1),
      members_(members) {}

bool PassFloor::Advance(uint64_t from, uint64_t to) {
  if (to <= from) return true;
  if (to - floor_ > count_.size()) return false;
  top_ = std::max(top_, to);
  for (uint64_t s = std::max(from, floor_); s < to; ++s) ++count_[s & mask_];
  Settle();
  return true;
}

void PassFloor::Remove(uint64_t passed) {
  if (members_ == 0) return;
  --members_;
  for (uint64_t s = floor_; s < passed; ++s) --count_[s & mask_];
  Settle();
}

void PassFloor::Settle() {
  if (members_ == 0) return;
  while (floor_ < top_ && count_[floor_ & mask_] >= members_) {
    count_[floor_ & mask_] = 0;
    ++floor_;
  }
}

uint64_t PassFloor::Floor() const { return members_ == 0 ? UINT64_MAX : floor_; }

}  // namespace pf::load
