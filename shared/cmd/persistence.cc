// shared/cmd/persistence.cc: SAVE, BGSAVE and LASTSAVE. The master takes
// snapshots (master/master.cc); a worker asks for one with a signal.
#include <signal.h>
#include <time.h>

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
  if (c.env.master_pid > 0) kill(c.env.master_pid, persist::SnapshotSignal());
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
    if (i % 100 == 0 && c.env.master_pid > 0 && kill(c.env.master_pid, 0) != 0)
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
