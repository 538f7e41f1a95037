// worker/event_util.h: the libevent machinery every part of the worker uses:
// owners for libevent objects, and the guard that keeps exceptions out of
// libevent (a callback that throws would unwind through C code: each one
// catches at its boundary, logs, and lets the worker live on).
#pragma once

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <memory>

namespace pf {

template <auto Fn>
struct EvDeleter {
  template <typename T>
  void operator()(T* p) const {
    Fn(p);
  }
};
using EventPtr = std::unique_ptr<event, EvDeleter<event_free>>;
using EvbufferPtr = std::unique_ptr<evbuffer, EvDeleter<evbuffer_free>>;
using ListenerPtr = std::unique_ptr<evconnlistener, EvDeleter<evconnlistener_free>>;
using EventBasePtr = std::unique_ptr<event_base, EvDeleter<event_base_free>>;

// Runs `fn` inside a libevent callback: what it throws is logged with `what`
// and goes no further.
template <typename Fn>
void NoThrow(const char* what, Fn&& fn) noexcept {
  try {
    fn();
  } catch (const std::exception& e) {
    spdlog::error("{}: {}", what, e.what());
  } catch (...) {
    spdlog::error("{}: unknown exception", what);
  }
}

// Clears a flag however the scope ends (an exception included), so a
// re-entrancy guard cannot stay set for good.
class FlagGuard {
 public:
  explicit FlagGuard(bool& flag) : flag_(flag) { flag_ = true; }
  ~FlagGuard() { flag_ = false; }
  FlagGuard(const FlagGuard&) = delete;
  FlagGuard& operator=(const FlagGuard&) = delete;

 private:
  bool& flag_;
};

}  // namespace pf
