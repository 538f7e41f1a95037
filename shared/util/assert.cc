// shared/util/assert.cc: what a failed PF_ASSERT does (assert.h).
#include "shared/util/assert.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>

namespace pf {

void AssertFailed(const char* expr, const char* file, int line, const char* what) {
  spdlog::critical("invariant failed at {}:{}: {}{}{}: aborting this process", file, line, expr,
                   *what ? ": " : "", what);
  spdlog::default_logger()->flush();
  // Also straight to stderr, with nothing that allocates: the state is bad.
  std::fprintf(stderr, "preforkd: invariant failed at %s:%d: %s%s%s\n", file, line, expr,
               *what ? ": " : "", what);
  std::abort();
}

}  // namespace pf
