// shared/util/clock.h: the process' clocks. Wall time (CLOCK_REALTIME) for
// key expiry and what people read; monotonic time for timeouts and
// durations, immune to clock steps.
#pragma once

#include <time.h>

#include <cstdint>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace pf {

inline uint64_t WallMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

inline uint64_t MonoMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

inline uint64_t MonoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
}

// A cheap tick for durations of a few hundred nanoseconds (the per-command
// statistics time every command): the TSC on x86-64, about 10 ns a read
// against 25 for clock_gettime; nanoseconds elsewhere. Ticks are comparable
// across processes (the TSC is constant and shared on the machines this runs
// on); TicksPerNs() converts them.
inline uint64_t Ticks() {
#if defined(__x86_64__)
  return __rdtsc();
#else
  return MonoNs();
#endif
}

// Ticks per nanosecond, measured against CLOCK_MONOTONIC over this
// process' life (the first call starts the measurement and spins 2 ms for a
// first estimate; later calls refine it).
double TicksPerNs();

}  // namespace pf
