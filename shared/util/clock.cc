// shared/util/clock.cc: the tick rate of Ticks() (clock.h).
#include "shared/util/clock.h"

namespace pf {

double TicksPerNs() {
#if defined(__x86_64__)
  static const uint64_t t0 = Ticks(), n0 = MonoNs();
  uint64_t t = Ticks(), n = MonoNs();
  while (n - n0 < 2'000'000) {  // the first call: a short base
    t = Ticks();
    n = MonoNs();
  }
  return static_cast<double>(t - t0) / static_cast<double>(n - n0);
#else
  return 1.0;
#endif
}

}  // namespace pf
