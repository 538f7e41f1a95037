// master/master.h: the master process: one loop over signal flags and one
// table of worker processes (slots x generations).
#pragma once

#include <string>

#include "shared/config.h"

namespace pf {

struct MasterOptions {
  std::string config_path;
  bool foreground = false;  // -g: stay attached, log to stderr too when the log is a file
};

// Runs a server on `cfg` until it is stopped. Returns the exit code.
// In background mode, the calling process returns 0 once the daemon is
// serving (or 1 with the reason printed if it could not start).
int RunMaster(Config cfg, const MasterOptions& opt);

}  // namespace pf
