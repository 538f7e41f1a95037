// shared/cmd/persistence.cc: SAVE, BGSAVE and LASTSAVE. The master takes
// snapshots (master/master.cc); a worker asks for one through a pipe.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "shared/cmd/internal.h"
#include "shared/persist/persist.h"
#include "shared/util/clock.h"

namespace pf {

namespace {

bool RequestSnapshot(CommandCtx& c, uint64_t* ticket) {
  PersistShared* ps = c.env.persist;
  if (!ps) {
    c.out.Error(ErrCode::kErr, "ERR persistence is off (no persistence section in the config)");
    return false;
  }
  *ticket = ps->snapshot_requests.fetch_add(1) + 1;
  // A byte on the master's pipe: the kernel signals the master for it
  // (a worker that dropped privileges may not signal a root master itself).
  // A full pipe already holds a wake-up; the master also looks every second.
  if (c.env.snapshot_fd >= 0) (void)!write(c.env.snapshot_fd, "s", 1);
  return true;
}

}  // namespace

void CmdBgsave(CommandCtx& c) {
  if (c.argc() > 1 && !EqualsNoCase(c.arg(1), "schedule"))
    return c.out.Error(ErrCode::kSyntax, errtext::kSyntax);
  if (c.env.persist && c.env.persist->snapshot_in_progress.load() && c.argc() == 1)
    return c.out.Error(ErrCode::kErr, "ERR Background save already in progress");
  uint64_t ticket;
  if (!RequestSnapshot(c, &ticket)) return;
  c.out.Status(c.argc() > 1 ? "Background saving scheduled" : "Background saving started");
}

// Blocks this worker (as Redis' SAVE blocks the server) until a snapshot
// that started after the call is finished.
void CmdSave(CommandCtx& c) {
  uint64_t ticket;
  if (!RequestSnapshot(c, &ticket)) return;
  PersistShared* ps = c.env.persist;
  for (int i = 0; i < 60'000 && ps->served_requests.load() < ticket; ++i) {
    // The master is the worker's parent; once it is gone the worker is
    // reparented (kill(2) would also say EPERM for a live root master).
    if (i % 100 == 0 && c.env.master_pid > 0 && getppid() != c.env.master_pid)
      break;  // master gone
    if (i % 100 == 0 && c.env.heartbeat_ms) c.env.heartbeat_ms->store(MonoMs());
    timespec ts{0, 1'000'000};
    nanosleep(&ts, nullptr);
  }
  if (ps->served_requests.load() < ticket)
    return c.out.Error(ErrCode::kErr,
                       "ERR timed out waiting for the snapshot; it goes on (see INFO persistence)");
  if (!ps->last_snapshot_ok.load())
    return c.out.Error(ErrCode::kErr, "ERR snapshot failed: " + persist::LastError(ps));
  c.out.Status("OK");
}

void CmdLastsave(CommandCtx& c) {
  c.out.Integer(c.env.persist ? static_cast<int64_t>(c.env.persist->last_snapshot_ms.load() / 1000)
                              : 0);
}

}  // namespace pf
