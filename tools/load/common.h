// tools/load/common.h: what every pf-load driver shares: the monotonic clock, RAII for fds and
// libevent objects, JSON string quoting for the reports.
#pragma once

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace pf::load {

constexpr uint64_t kMsNs = 1'000'000;

inline uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
}

inline timeval ToTimeval(uint64_t ns) {
  return timeval{static_cast<time_t>(ns / 1'000'000'000),
                 static_cast<suseconds_t>((ns % 1'000'000'000) / 1000)};
}

inline uint64_t SecondsToNs(double s) { return static_cast<uint64_t>(std::llround(s * 1e9)); }

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.Release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    Reset(o.Release());
    return *this;
  }
  ~UniqueFd() { Reset(); }
  int Get() const { return fd_; }
  int Release() { return std::exchange(fd_, -1); }
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct EventFree {
  void operator()(event* e) const { event_free(e); }
};
struct BufferEventFree {
  void operator()(bufferevent* b) const { bufferevent_free(b); }
};
struct EventBaseFree {
  void operator()(event_base* b) const { event_base_free(b); }
};
using EventPtr = std::unique_ptr<event, EventFree>;
using BufferEventPtr = std::unique_ptr<bufferevent, BufferEventFree>;
using EventBasePtr = std::unique_ptr<event_base, EventBaseFree>;

// A JSON string literal for s; the reports only quote addresses, names and mode words.
inline std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}

}  // namespace pf::load
