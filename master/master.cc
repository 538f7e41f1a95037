// master/master.cc: supervision. Signals stay blocked except inside
// sigsuspend(); their handlers only set flags, and Loop() is the one place
// where the master changes state: reap + respawn, reload, stop, reopen.
#include "master/master.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "master/sockets.h"
#include "shared/bus.h"
#include "shared/clients.h"
#include "shared/kv/kv.h"
#include "shared/limiter.h"
#include "shared/log.h"
#include "shared/persist/log_writer.h"
#include "shared/persist/persist.h"
#include "shared/shm.h"
#include "shared/tls/context.h"
#include "shared/util/clock.h"
#include "shared/util/unique_fd.h"
#include "worker/http/basic_auth.h"
#include "worker/http/util.h"
#include "worker/worker.h"

namespace pf {
namespace {

volatile sig_atomic_t g_reap, g_terminate, g_quit, g_reconfigure, g_reopen, g_alarm, g_snapshot;

void OnSignal(int sig) {
  if (sig == persist::SnapshotSignal()) {
    g_snapshot = 1;
    return;
  }
  switch (sig) {
    case SIGCHLD:
      g_reap = 1;
      break;
    case SIGTERM:
    case SIGINT:
      g_terminate = 1;
      break;
    case SIGQUIT:
      g_quit = 1;
      break;
    case SIGHUP:
      g_reconfigure = 1;
      break;
    case SIGUSR1:
      g_reopen = 1;
      break;
    case SIGALRM:
      g_alarm = 1;
      break;
  }
}

std::vector<int> MasterSignals() {
  return {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGALRM, persist::SnapshotSignal()};
}

// The pid written in `path`, or 0.
pid_t PidfilePid(const std::string& path) {
  std::ifstream in(path);
  long pid = 0;
  if (!(in >> pid) || pid <= 1) return 0;
  return static_cast<pid_t>(pid);
}

// The pidfile is also the lock that says a master of this config runs: it
// is held (flock) for the master's life, so a start cannot pass while
// another runs, two starts cannot both pass, and a dead master (even a
// zombie that nobody reaps, or a pid reused by another program) never
// blocks a start. The pid is written in place, under the lock.
bool LockPidfile(const std::string& path, UniqueFd* out, std::string* err) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  // A master that exits unlinks the file while it still holds the lock; a
  // start that opened the old file then locks an unlinked inode. So the
  // lock counts only if the path still names the locked file.
  for (int attempt = 0; attempt < 8; ++attempt) {
    UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!fd) {
      *err = "cannot open the pidfile " + path + ": " + std::strerror(errno);
      return false;
    }
    // `preforkctl status` takes the lock for an instant to see whether a
    // master holds it: a start that meets that waits a moment.
    int r;
    for (int tries = 0;
         (r = flock(fd.get(), LOCK_EX | LOCK_NB)) != 0 && errno == EWOULDBLOCK && tries < 15;
         tries++)
      usleep(20'000);
    if (r != 0) {
      if (errno != EWOULDBLOCK) {
        *err = "cannot lock the pidfile " + path + ": " + std::strerror(errno);
        return false;
      }
      *err = "preforkd is already running (pid " + std::to_string(PidfilePid(path)) + ", pidfile " +
             path + ")";
      return false;
    }
    struct stat held {
    }, named{};
    if (fstat(fd.get(), &held) == 0 && stat(path.c_str(), &named) == 0 &&
        held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
      *out = std::move(fd);
      return true;
    }
  }
  *err = "cannot lock the pidfile " + path + ": it keeps being replaced";
  return false;
}

bool WritePidfile(int fd, const std::string& path, pid_t pid, std::string* err) {
  const std::string text = std::to_string(pid) + "\n";
  if (ftruncate(fd, 0) != 0 ||
      pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    *err = "cannot write the pidfile " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

struct Child {
  pid_t pid = 0;
  int slot = 0;
  uint32_t generation = 0;
  int counters = -1;
  uint64_t started_ms = 0;
  bool retiring = false;
  uint64_t kill_at_ms = 0;    // retiring: SIGKILL after this
  bool stall_killed = false;  // the watchdog killed it (timeouts.worker_stall)
};

struct SlotState {
  int crashes = 0;             // consecutive quick crashes
  uint64_t respawn_at_ms = 0;  // 0 = nothing pending
};

class Master {
 public:
  Master(Config cfg, MasterOptions opt) : cfg_(std::move(cfg)), opt_(std::move(opt)) {}

  // Steps that can fail with a user-facing reason, in the starting process.
  bool Prepare(std::string* err) {
    if (!LockPidfile(cfg_.pidfile, &pid_lock_, err)) return false;
    data_dir_ = cfg_.Outside(cfg_.persistence.dir);
    if (!cfg_.chroot.empty() && getuid() != 0) {
      *err = "chroot " + cfg_.chroot + " needs the master started as root (it then drops to user " +
             cfg_.user + " in the workers)";
      DropPidfile();
      return false;
    }
    if ((!cfg_.user.empty() && !ResolveUser(err)) || !sockets_.Apply(cfg_, err)) {
      DropPidfile();
      return false;
    }
    return true;
  }

  // A start that failed before it wrote its pid leaves no empty pidfile
  // (it holds the lock, so the file is nobody else's).
  void DropPidfile() {
    if (pid_lock_ && !pid_written_) unlink(cfg_.pidfile.c_str());
    pid_lock_.Reset();
  }

  // `ready_fd`: where a background start reports "ok" or why it failed
  // (the caller waits for it; closed once reported), -1 in the foreground.
  int Run(int ready_fd) {
    const int rc = Serve(ready_fd);
    if (rc != 0) DropPidfile();
    return rc;
  }

  int Serve(int ready_fd) {
    master_pid_ = getpid();
    ready_fd_.Reset(ready_fd);
    std::string err;
    const uint64_t bus_bytes = bus::Bus::RegionBytes(bus::SizesFrom(cfg_.pubsub));
    if (cfg_.shm_size < Segment::KvOffset(bus_bytes) + (1ull << 20)) {
      err = "shared_memory " + std::to_string(cfg_.shm_size) + " cannot hold the pub/sub bus (" +
            std::to_string(bus_bytes) + " bytes for pubsub.ring_slots x max_message_bytes) and " +
            "a store of at least 1m: raise shared_memory or lower the pubsub sizes";
      spdlog::critical("{}", err);
      Report(err);
      return 1;
    }
    // The client registry: an entry per connection up to limits.max_connections
    // (its size at start; a reload cannot grow it), at most clients::kMaxSlots.
    segment_ = Segment::Create(cfg_.shm_size, bus_bytes,
                               std::min(cfg_.limits.max_connections, clients::kMaxSlots));
    segment_.header()->master_pid.store(master_pid_);
    segment_.header()->generation.store(generation_);
    AssignUpstreamSlots();
    // The first session ticket key, so TLS listeners added by a reload find one.
    tls::RotateTicketKeys(&segment_.header()->tls_tickets, MonoMs(), 0);
    if (!bus::Bus::Format(segment_.bus_base(), segment_.bus_size(), bus::SizesFrom(cfg_.pubsub),
                          &err)) {
      spdlog::critical("pub/sub bus: {}", err);
      Report(err);
      return 1;
    }
    bus_ = bus::Bus(segment_.bus_base());
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
      seed = WallMs() ^ static_cast<uint64_t>(master_pid_);
    store_ = kv::Store::Format(segment_.kv_base(), segment_.kv_size(), cfg_.kv.shards,
                               kv::LimitsFrom(cfg_.kv), seed, &err, cfg_.kv.large_memory);
    if (!store_) {
      err = "shared_memory " + std::to_string(cfg_.shm_size) + " cannot hold the store: " + err;
      spdlog::critical("{}", err);
      Report(err);
      return 1;
    }
    if (!LoadPersisted(&err) || (cfg_.persistence.enabled && !MakeSnapshotPipe(&err))) {
      spdlog::critical("{}", err);
      Report(err);
      return 1;
    }
    WarnOpenListeners();
    if (!WritePidfile(pid_lock_.get(), cfg_.pidfile, master_pid_, &err)) {
      Report(err);
      return 1;
    }
    pid_written_ = true;
    spdlog::info("preforkd {} starting: {} workers, config {}", PREFORKD_VERSION, cfg_.workers,
                 cfg_.path);
    for (const auto& l : cfg_.listeners)
      spdlog::info("listening on {} ({}, {})", l.SocketKey(), ProtocolName(l.protocol), l.name);
    if (ready_fd_) {
      // Detach from the caller's terminal or pipe before forking workers, so
      // `out=$(preforkd ...)` returns and stray worker output goes to the log.
      UniqueFd null(open("/dev/null", O_RDWR));
      dup2(null.get(), 0);
      dup2(null.get(), 1);
      if (cfg_.logging.error_log == "stderr")
        dup2(null.get(), 2);
      else
        log::RedirectStderr();
      if (null.get() <= 2) (void)null.Release();  // it is one of 0, 1, 2 now
    }
    PrepareLogFiles();
    if (!MakeWakeFds(&err)) {
      spdlog::critical("{}", err);
      Report(err);
      return 1;
    }
    slots_.assign(cfg_.workers, SlotState{});
    for (int s = 0; s < static_cast<int>(cfg_.workers); s++) Spawn(s);
    Report("");
    return Loop();
  }

 private:
  // Protected mode (Redis'): say at start which data listeners face a
  // network with no password.
  void WarnOpenListeners() {
    if (!cfg_.kv.password.empty()) return;
    for (const auto& l : cfg_.listeners) {
      if (l.protocol != Protocol::kResp && l.protocol != Protocol::kKvJson &&
          l.protocol != Protocol::kHttp)
        continue;
      // Clients can come from beyond local_networks only on an address
      // that is not in them (a wildcard address reaches every interface).
      IpAddr a;
      if (IpAddr::Parse(l.address, &a) && AnyContains(cfg_.local_networks, a)) continue;
      if (l.protocol == Protocol::kHttp)
        spdlog::warn(
            "listener {} ({}) is open beyond local_networks and kv.password is empty: "
            "anyone who reaches it can read and write /kv (set kv.password)",
            l.name, l.SocketKey());
      else if (cfg_.protected_mode)
        spdlog::warn(
            "listener {} ({}) is open beyond local_networks and kv.password is empty: "
            "protected mode refuses clients from outside local_networks (set "
            "kv.password)",
            l.name, l.SocketKey());
      else
        spdlog::warn(
            "listener {} ({}) is open beyond local_networks, kv.password is empty and "
            "protected_mode is off: anyone who reaches it can read and write every key",
            l.name, l.SocketKey());
    }
  }

  // Tells a background start's caller how it went, once.
  void Report(const std::string& msg) {
    if (!ready_fd_) return;
    const std::string s = msg.empty() ? std::string("ok") : msg;
    (void)!write(ready_fd_.get(), s.data(), s.size());
    ready_fd_.Reset();
  }

  // Log folders are created here (a fresh checkout has no var/log). With
  // `user` set, the workers reopen the log files after logrotate as that
  // user: create the files here and hand them over, as nginx does, but
  // only files this call created. A file found in place is never chowned
  // (a link or a hard link planted there would hand over another file: the
  // pattern of nginx CVE-2016-1247); one the user cannot write is reported.
  void PrepareLogFiles() {
    // The master's own error log was (re)opened before this runs.
    if (uid_ != static_cast<uid_t>(-1) && !log::HandCreatedFileTo(uid_, gid_))
      spdlog::warn("cannot hand the error log to user {}: {}", cfg_.user, std::strerror(errno));
    for (const std::string& inner : {cfg_.logging.error_log, cfg_.logging.access_log}) {
      if (inner == "stderr" || inner == "off" || inner.empty()) continue;
      const std::string path = cfg_.Outside(inner);
      // Workers open the access log themselves: make sure its folder exists.
      std::error_code ec;
      std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
      bool created = false;
      const UniqueFd fd(log::OpenLogFile(path, &created));
      if (!fd) {
        spdlog::error("log file {}: {}", path, std::strerror(errno));
        continue;
      }
      if (uid_ == static_cast<uid_t>(-1)) continue;
      struct stat st;
      if (created) {
        if (fchown(fd.get(), uid_, gid_) != 0)
          spdlog::warn("cannot hand {} to user {}: {}", path, cfg_.user, std::strerror(errno));
      } else if (fstat(fd.get(), &st) == 0 && st.st_uid != uid_) {
        spdlog::warn(
            "{} belongs to uid {}, not to user {}: workers cannot reopen it after "
            "logrotate (create it as {}, e.g. logrotate's `create 0640 {} {}`)",
            path, st.st_uid, cfg_.user, cfg_.user, cfg_.user,
            cfg_.group.empty() ? cfg_.user : cfg_.group);
      }
    }
  }

  // One eventfd per worker slot, made before the workers that use them are
  // forked: a publisher writes the eventfd of every slot it must wake. Slots
  // added by a reload get theirs then; earlier workers do not know those and
  // rely on the new workers' own bus poll (worker/pubsub.cc).
  bool MakeWakeFds(std::string* err) {
    while (wake_fds_.size() < cfg_.workers) {
      UniqueFd fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
      if (!fd) {
        *err = std::string("eventfd for the pub/sub bus: ") + std::strerror(errno);
        return false;
      }
      wake_fds_.push_back(std::move(fd));
    }
    return true;
  }

  bool ResolveUser(std::string* err) {
    if (getuid() != 0) return true;  // not root: nothing to drop; said once at start
    passwd* pw = getpwnam(cfg_.user.c_str());
    if (!pw) {
      *err = "user '" + cfg_.user + "' does not exist";
      return false;
    }
    uid_ = pw->pw_uid;
    gid_ = pw->pw_gid;
    if (!cfg_.group.empty()) {
      group* gr = getgrnam(cfg_.group.c_str());
      if (!gr) {
        *err = "group '" + cfg_.group + "' does not exist";
        return false;
      }
      gid_ = gr->gr_gid;
    }
    return true;
  }

  void Spawn(int slot) {
    const int counters = segment_.Claim(slot, generation_);
    if (counters < 0)
      spdlog::warn("slot {}: no free counter entry; its counters are not shared", slot);
    WorkerStart ws;
    ws.config = &cfg_;
    ws.segment = &segment_;
    ws.slot = slot;
    ws.generation = generation_;
    ws.counter_index = counters;
    ws.master_pid = master_pid_;
    ws.snapshot_fd = snap_req_w_.get();
    ws.store = store_;
    ws.bus = bus_;
    for (const UniqueFd& fd : wake_fds_) ws.wake_fds.push_back(fd.get());
    for (const auto& l : cfg_.listeners)
      for (int fd : sockets_.Fds(l, slot, static_cast<int>(cfg_.workers)))
        ws.sockets.push_back({&l, fd});

    const pid_t pid = fork();
    if (pid < 0) {
      spdlog::error("slot {}: fork: {}", slot, std::strerror(errno));
      segment_.Release(counters);
      slots_[slot].respawn_at_ms = MonoMs() + 1000;
      return;
    }
    if (pid == 0) _exit(ChildMain(ws));
    if (counters >= 0) segment_.proc(counters)->pid.store(pid, std::memory_order_release);
    children_.push_back(Child{pid, slot, generation_, counters, MonoMs(), false, 0});
    slots_[slot].respawn_at_ms = 0;
    spdlog::info("slot {}: worker {} started (generation {})", slot, pid, generation_);
  }

  int ChildMain(const WorkerStart& ws) {
    ready_fd_.Reset();  // the starting process waits for EOF on it
    pid_lock_.Reset();  // the lock is the master's alone
    char name[16];
    snprintf(name, sizeof name, "preforkd-w%d", ws.slot);
    prctl(PR_SET_NAME, name);
    // Keep only this slot's sockets.
    std::vector<int> mine;
    for (const auto& s : ws.sockets) mine.push_back(s.fd);
    sockets_.CloseAllBut(mine);
    // Signals meant for the master are ignored; the rest are the worker's.
    // They stay blocked (inherited mask) until the worker has installed its
    // handlers, so a SIGQUIT or SIGUSR1 that arrives during start-up waits
    // instead of killing the worker.
    for (int sig : {SIGHUP, SIGINT, SIGUSR2, SIGPIPE, SIGALRM, persist::SnapshotSignal()})
      signal(sig, SIG_IGN);
    for (int sig : {SIGCHLD, SIGTERM, SIGQUIT, SIGUSR1}) signal(sig, SIG_DFL);
    log::SetRole("worker " + std::to_string(ws.slot));
    snap_req_r_.Reset();
    // Files the worker creates (its logs) are 0600, in the 0700 data folder.
    umask(077);
    // Groups first (initgroups reads /etc/group), then the chroot, then the
    // user: after setuid a worker could not chroot, and before it the
    // worker would not find /etc/group.
    if (uid_ != static_cast<uid_t>(-1) &&
        (setgid(gid_) != 0 || initgroups(cfg_.user.c_str(), gid_) != 0)) {
      spdlog::critical("cannot drop privileges to {}: {}", cfg_.user, std::strerror(errno));
      return 2;
    }
    if (!cfg_.chroot.empty()) {
      // What the worker reads from the host's files, it reads now.
      (void)http::MimeType("index.html");  // /etc/mime.types
      tzset();
      if (chroot(cfg_.chroot.c_str()) != 0 || chdir("/") != 0) {
        spdlog::critical("cannot chroot to {}: {}", cfg_.chroot, std::strerror(errno));
        return 2;
      }
      // Reopens (SIGUSR1) find the log where it is inside the chroot.
      if (cfg_.logging.error_log != "stderr") log::SetPath(cfg_.logging.error_log);
    }
    if (uid_ != static_cast<uid_t>(-1) && setuid(uid_) != 0) {
      spdlog::critical("cannot drop privileges to {}: {}", cfg_.user, std::strerror(errno));
      return 2;
    }
    // After setuid: changing credentials clears the parent-death signal.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != master_pid_) return 0;
    if (ws.counter_index >= 0) segment_.proc(ws.counter_index)->pid.store(getpid());
    try {
      return RunWorker(ws);
    } catch (const std::exception& e) {
      spdlog::critical("worker failed: {}", e.what());
      return 2;
    }
  }

  int Loop() {
    sigset_t empty;
    sigemptyset(&empty);
    for (;;) {
      ArmTimer();
      if (!(g_reap | g_terminate | g_quit | g_reconfigure | g_reopen | g_alarm | g_snapshot))
        sigsuspend(&empty);
      g_alarm = 0;
      if (g_reap) {
        g_reap = 0;
        Reap();
      }
      if (g_terminate) {
        g_terminate = 0;
        BeginStop(/*graceful=*/false);
      }
      if (g_quit) {
        g_quit = 0;
        BeginStop(/*graceful=*/true);
      }
      if (g_reconfigure) {
        g_reconfigure = 0;
        if (stopping_ == Stop::kNo) Reload();
      }
      if (g_reopen) {
        g_reopen = 0;
        if (!log::Reopen()) spdlog::error("cannot reopen the error log: {}", std::strerror(errno));
        PrepareLogFiles();
        spdlog::info("log files reopened");
        for (const auto& c : children_) kill(c.pid, SIGUSR1);
      }
      Timers();
      if (g_snapshot) {
        g_snapshot = 0;
        DrainSnapshotPipe();
        if (cfg_.persistence.enabled)
          persist_->snapshot_requests.fetch_add(1);
        else
          spdlog::warn("snapshot requested, but persistence is off");
      }
      PersistTick();
      if (stopping_ != Stop::kNo && children_.empty() && !snap_pid_) break;
    }
    sockets_.CloseAll();
    if (PidfilePid(cfg_.pidfile) == master_pid_) unlink(cfg_.pidfile.c_str());
    spdlog::info("preforkd stopped");
    return 0;
  }

  void Reap() {
    for (;;) {
      int status = 0;
      const pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      if (pid == snap_pid_) {
        SnapshotDone(status);
        continue;
      }
      auto it = std::find_if(children_.begin(), children_.end(),
                             [pid](const Child& c) { return c.pid == pid; });
      if (it == children_.end()) continue;
      const Child c = *it;
      children_.erase(it);
      // The dead process' subscriptions go with it, whatever it was doing.
      ReleaseProcess(c.counters);
      const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      std::string how = WIFSIGNALED(status)
                            ? std::string("killed by signal ") + strsignal(WTERMSIG(status))
                            : "exited with code " + std::to_string(WEXITSTATUS(status));
      if (c.retiring || stopping_ != Stop::kNo) {
        spdlog::info("slot {}: worker {} (generation {}) {}", c.slot, pid, c.generation, how);
        continue;
      }
      if (clean) how = "exited unexpectedly";
      // A crash in the current generation: respawn the slot, backing off
      // when it keeps crashing right after start.
      if (c.slot >= static_cast<int>(slots_.size())) continue;
      SlotState& s = slots_[c.slot];
      const uint64_t now = MonoMs();
      s.crashes = now - c.started_ms < 5000 ? s.crashes + 1 : 0;
      // The first quick crash is respawned at once; from the second one on
      // the delay doubles from 200 ms up to 30 s.
      const uint64_t delay =
          s.crashes < 2 ? 0 : std::min<uint64_t>(100ull << std::min(s.crashes - 1, 9), 30'000);
      s.respawn_at_ms = now + delay;
      if (delay)
        spdlog::error("slot {}: worker {} {}; {} quick crashes in a row, respawning in {} ms",
                      c.slot, pid, how, s.crashes, delay);
      else
        spdlog::error("slot {}: worker {} {}; respawning", c.slot, pid, how);
    }
  }

  void BeginStop(bool graceful) {
    if (stopping_ == Stop::kFast || (stopping_ == Stop::kGraceful && graceful)) return;
    stopping_ = graceful ? Stop::kGraceful : Stop::kFast;
    segment_.header()->stopping.store(1, std::memory_order_release);
    spdlog::info("{} stop: {} workers", graceful ? "graceful" : "fast", children_.size());
    const uint64_t deadline = MonoMs() + (graceful ? cfg_.timeouts.drain_ms + 2000 : 1000);
    for (auto& c : children_) {
      kill(c.pid, graceful ? SIGQUIT : SIGTERM);
      c.retiring = true;
      c.kill_at_ms = c.kill_at_ms ? std::min(c.kill_at_ms, deadline) : deadline;
    }
    for (auto& s : slots_) s.respawn_at_ms = 0;
    if (snap_pid_ && !graceful)
      kill(snap_pid_, SIGKILL);  // the last good snapshot and the logs stay
    // Stop accepting at once: the kernel refuses new connections instead of
    // queueing them for workers that are leaving. A graceful stop too (as
    // nginx does): each worker takes what is already queued on its own copy
    // of its sockets before closing them, so nothing accepted is lost.
    sockets_.CloseAll();
  }

  void Reload() {
    std::string why;
    const bool ok = ReloadConfig(&why);
    ShmHeader* h = segment_.header();
    h->last_reload_ms.store(WallMs());
    h->last_reload_ok.store(ok ? 1 : 0);
    h->generation.store(generation_);
    // What /_status shows: why the last reload was refused ("" once one works).
    const uint64_t seq = h->config_error_seq.load(std::memory_order_relaxed);
    h->config_error_seq.store(seq + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    std::snprintf(h->last_config_error, sizeof h->last_config_error, "%s", ok ? "" : why.c_str());
    h->config_error_seq.store(seq + 2, std::memory_order_release);
  }

  // False with *why when the new configuration was refused (the old one serves on).
  bool ReloadConfig(std::string* why) {
    spdlog::info("reload: reading {}", cfg_.path);
    ConfigResult r = LoadConfig(cfg_.path);
    CheckAuthBasic(&r);
    tls::CheckTls(&r);
    if (!r.ok()) {
      for (const auto& e : r.errors) spdlog::error("reload: {}", e);
      spdlog::error("reload: the new configuration is invalid; still serving the old one");
      *why = r.errors[0];
      return false;
    }
    Config next = std::move(r.config);
    if (next.shm_size != cfg_.shm_size) {
      spdlog::warn("reload: shared_memory cannot change without a restart; keeping {}",
                   cfg_.shm_size);
      next.shm_size = cfg_.shm_size;
    }
    if (next.kv.shards != cfg_.kv.shards) {
      spdlog::warn("reload: kv.shards cannot change without a restart; keeping {}", cfg_.kv.shards);
      next.kv.shards = cfg_.kv.shards;
    }
    if (next.kv.large_memory != cfg_.kv.large_memory) {
      spdlog::warn("reload: kv.large_memory cannot change without a restart; keeping {}",
                   cfg_.kv.large_memory);
      next.kv.large_memory = cfg_.kv.large_memory;
    }
    // The store keeps its geometry: new limits it cannot hold (two of the
    // largest value in the large-object area, three of the largest item in a
    // shard) would fail writes with OOM, so the old ones stay.
    if (next.kv.max_value_bytes > cfg_.kv.max_value_bytes ||
        next.kv.max_key_bytes > cfg_.kv.max_key_bytes) {
      const KvConf& k = next.kv;
      const bool fits = (k.large_memory == 0 ||
                         k.large_memory >= kv::Store::MinLargeBytesFor(k.max_value_bytes)) &&
                        kv::Store::MinSizeFor(k.shards, k.max_key_bytes, k.max_value_bytes,
                                              k.large_memory) <= segment_.kv_size();
      if (!fits) {
        spdlog::warn(
            "reload: kv.max_value_bytes {} / kv.max_key_bytes {} do not fit the running store "
            "(shared_memory, kv.shards and kv.large_memory need a restart); keeping {} / {}",
            k.max_value_bytes, k.max_key_bytes, cfg_.kv.max_value_bytes, cfg_.kv.max_key_bytes);
        next.kv.max_value_bytes = cfg_.kv.max_value_bytes;
        next.kv.max_key_bytes = cfg_.kv.max_key_bytes;
      }
    }
    {
      const PubSubConf& o = cfg_.pubsub;
      PubSubConf& n = next.pubsub;
      if (n.ring_slots != o.ring_slots || n.max_message_bytes != o.max_message_bytes ||
          n.max_channel_bytes != o.max_channel_bytes ||
          n.channel_table_size != o.channel_table_size) {
        spdlog::warn(
            "reload: pubsub ring_slots, max_message_bytes, max_channel_bytes and "
            "channel_table_size cannot change without a restart; keeping them");
        n.ring_slots = o.ring_slots;
        n.max_message_bytes = o.max_message_bytes;
        n.max_channel_bytes = o.max_channel_bytes;
        n.channel_table_size = o.channel_table_size;
      }
    }
    if (next.user != cfg_.user || next.group != cfg_.group) {
      spdlog::warn("reload: user/group cannot change without a restart; keeping them");
      next.user = cfg_.user;
      next.group = cfg_.group;
    }
    if (next.persistence.enabled != cfg_.persistence.enabled ||
        next.persistence.dir != cfg_.persistence.dir) {
      spdlog::warn(
          "reload: persistence.enabled and persistence.dir cannot change without a restart; "
          "keeping them");
      next.persistence.enabled = cfg_.persistence.enabled;
      next.persistence.dir = cfg_.persistence.dir;
    }
    if (next.pidfile != cfg_.pidfile) {
      spdlog::warn("reload: pidfile cannot change without a restart; keeping {}", cfg_.pidfile);
      next.pidfile = cfg_.pidfile;
    }
    if (next.chroot != cfg_.chroot || next.user != cfg_.user || next.group != cfg_.group) {
      // The new file's paths were checked against its own chroot: neither
      // set of paths can be kept with the other's.
      spdlog::error(
          "reload: chroot, user and group cannot change without a restart; still serving the "
          "old configuration");
      *why = "chroot, user and group cannot change without a restart";
      return false;
    }
    std::string err;
    if (!sockets_.Apply(next, &err)) {
      spdlog::error("reload: {}; still serving the old configuration", err);
      *why = err;
      return false;
    }
    if (next.logging.error_log != cfg_.logging.error_log) {
      if (!log::Init(next.Outside(next.logging.error_log), next.logging.level, "master")) {
        spdlog::error("reload: cannot open {}: {}; keeping the old error log",
                      next.logging.error_log, std::strerror(errno));
        next.logging.error_log = cfg_.logging.error_log;
      } else if (!opt_.foreground) {
        log::RedirectStderr();
      }
    }
    log::SetLevel(next.logging.level);
    store_->SetLimits(kv::LimitsFrom(next.kv));
    persist_->fsync.store(static_cast<uint32_t>(next.persistence.fsync));
    // The old generation keeps pointers into the old config: it lives in the
    // forked copies, so the master can replace its own freely.
    cfg_ = std::move(next);
    PrepareLogFiles();
    generation_++;
    AssignUpstreamSlots();
    segment_.header()->reloads.fetch_add(1, std::memory_order_relaxed);
    const uint64_t old_deadline = MonoMs() + cfg_.timeouts.drain_ms + 2000;
    std::vector<pid_t> old;
    for (auto& c : children_) {
      if (c.retiring) continue;
      c.retiring = true;
      c.kill_at_ms = old_deadline;
      old.push_back(c.pid);
    }
    if (!MakeWakeFds(&err)) spdlog::error("reload: {}; new slots are woken by polling", err);
    slots_.assign(cfg_.workers, SlotState{});
    for (int s = 0; s < static_cast<int>(cfg_.workers); s++) Spawn(s);
    for (pid_t p : old) kill(p, SIGQUIT);
    spdlog::info("reload: generation {} started with {} workers; retiring {} old workers",
                 generation_, cfg_.workers, old.size());
    return true;
  }

  // Names the shared upstream slots (shm.h, UpstreamShared) for cfg_ and
  // generation_, before its workers start: a server the previous config
  // had (same upstream name and address) keeps its health and figures. The
  // generation moves first, so the draining workers stop writing.
  void AssignUpstreamSlots() {
    UpstreamShared& u = segment_.header()->upstreams;
    const uint32_t old_count = std::min(u.count.load(), kMaxUpstreamServers);
    auto old = std::make_unique<UpstreamSlot[]>(old_count);
    for (uint32_t i = 0; i < old_count; i++) CopyUpstreamSlot(u.slots[i], &old[i]);
    u.generation.store(generation_);
    uint32_t n = 0;
    for (const UpstreamConf& up : cfg_.upstreams) {
      for (const UpstreamServerConf& sv : up.servers) {
        if (n == kMaxUpstreamServers) break;  // the config check refuses more
        const std::string key = up.name + "|" + sv.address;
        ResetUpstreamSlot(&u.slots[n], key);
        for (uint32_t j = 0; j < old_count; j++)
          if (std::string_view(old[j].key) == std::string_view(u.slots[n].key)) {
            CopyUpstreamSlot(old[j], &u.slots[n]);
            break;
          }
        n++;
      }
    }
    u.count.store(n);
  }

  // A reaped worker's counter entry goes back to the pool once its bus
  // subscriptions are released. The master never blocks on the bus table
  // lock: another worker may hold it, even be stopped (the watchdog kills
  // that one; its death frees the lock), so a busy lock means "later".
  void ReleaseProcess(int counters) {
    if (counters < 0) return;
    // Its client registry entries go first: lock-free, so never "later",
    // and a CLIENT LIST no longer shows a client that died with it.
    if (const uint32_t n = clients::Table(segment_.clients_base()).ReleaseOwner(counters))
      spdlog::info("client registry: freed {} entries of a reaped worker", n);
    bool released = true;
    try {
      released = bus_.ReleaseOwner(counters, 50);
    } catch (const std::exception& e) {
      // Its entries stay in the table: the counter entry must not go back to
      // the pool (a new worker would inherit them). Retried, logged once.
      released = false;
      if (std::find(pending_release_.begin(), pending_release_.end(), counters) ==
          pending_release_.end())
        spdlog::error("releasing the bus subscriptions of counter entry {}: {}", counters,
                      e.what());
    }
    if (!released) {
      if (std::find(pending_release_.begin(), pending_release_.end(), counters) ==
          pending_release_.end()) {
        spdlog::warn(
            "the bus table lock is busy: the subscriptions of a reaped worker are "
            "released later");
        pending_release_.push_back(counters);
      }
      return;
    }
    // Its limit_conn counts go with it, before the entry can be reused.
    if (!limit::Table(segment_.limiter_base()).ReleaseOwner(counters)) {
      if (std::find(pending_release_.begin(), pending_release_.end(), counters) ==
          pending_release_.end()) {
        spdlog::warn(
            "a limiter table lock is busy: the connection counts of a reaped worker "
            "are released later");
        pending_release_.push_back(counters);
      }
      return;
    }
    segment_.Release(counters);
  }

  void Timers() {
    const uint64_t now = MonoMs();
    // TLS session ticket keys: a new one every ticket_rotate (shared/tls).
    if (const uint64_t rotate = tls::TicketRotateMs(cfg_))
      tls::RotateTicketKeys(&segment_.header()->tls_tickets, now, rotate);
    if (!pending_release_.empty()) {
      std::vector<int> retry;
      retry.swap(pending_release_);
      for (int counters : retry) ReleaseProcess(counters);
    }
    // The watchdog: a serving worker whose loop has not run for
    // timeouts.worker_stall is killed (its slot respawns as after a crash).
    // One at a time, the stalest first, and the next only once that one is
    // reaped: a worker stuck holding a shard or bus lock stalls the workers
    // that wait for the lock too, and its death (EOWNERDEAD) frees them.
    const uint64_t stall = cfg_.timeouts.worker_stall_ms;
    Child* stalest = nullptr;
    uint64_t stalest_age = 0;
    bool killing = false;
    for (auto& c : children_) {
      killing = killing || c.stall_killed;
      if (!stall || c.retiring || c.stall_killed || c.counters < 0) continue;
      const uint64_t beat = segment_.proc(c.counters)->heartbeat_ms.load(std::memory_order_relaxed);
      if (!beat || now <= beat || now - beat <= stall || now - beat <= stalest_age) continue;
      stalest = &c;
      stalest_age = now - beat;
    }
    if (stalest && !killing) {
      spdlog::error(
          "slot {}: worker {} has not run its event loop for {} ms (timeouts.worker_stall "
          "is {} ms): killing it",
          stalest->slot, stalest->pid, stalest_age, stall);
      kill(stalest->pid, SIGKILL);
      stalest->stall_killed = true;
      segment_.header()->workers_stalled.fetch_add(1, std::memory_order_relaxed);
    }
    for (auto& c : children_) {
      if (c.retiring && c.kill_at_ms && now >= c.kill_at_ms) {
        spdlog::warn("slot {}: worker {} did not stop in time; killing it", c.slot, c.pid);
        kill(c.pid, SIGKILL);
        c.kill_at_ms = 0;
      }
    }
    if (stopping_ != Stop::kNo) return;
    for (int s = 0; s < static_cast<int>(slots_.size()); s++) {
      if (slots_[s].respawn_at_ms && now >= slots_[s].respawn_at_ms) Spawn(s);
    }
  }

  void ArmTimer() {
    uint64_t next = UINT64_MAX;
    for (const auto& c : children_)
      if (c.kill_at_ms) next = std::min(next, c.kill_at_ms);
    for (const auto& s : slots_)
      if (s.respawn_at_ms) next = std::min(next, s.respawn_at_ms);
    // The watchdog's look at the heartbeats, and deferred releases.
    if (cfg_.timeouts.worker_stall_ms && !children_.empty())
      next = std::min<uint64_t>(
          next, MonoMs() + std::min<uint64_t>(1000, cfg_.timeouts.worker_stall_ms / 2));
    if (!pending_release_.empty()) next = std::min(next, MonoMs() + 100);
    if (const uint64_t rotate = tls::TicketRotateMs(cfg_))
      next = std::min(next, segment_.header()->tls_tickets.rotated_ms.load() + rotate);
    // Snapshot triggers (log size, time, requests that came without a signal).
    if (cfg_.persistence.enabled && stopping_ == Stop::kNo) next = std::min(next, MonoMs() + 1000);
    itimerval it{};
    if (next != UINT64_MAX) {
      const uint64_t now = MonoMs();
      const uint64_t d = next > now ? next - now : 1;
      it.it_value.tv_sec = static_cast<time_t>(d / 1000);
      it.it_value.tv_usec = static_cast<suseconds_t>((d % 1000) * 1000);
    }
    setitimer(ITIMER_REAL, &it, nullptr);
  }

  // ---- persistence (shared/persist/persist.h) ----

  // The data folder, as the master sees it (inside chroot), made 0700 and
  // handed to `user`: workers create their logs in it after dropping
  // privileges (files 0600: their umask is 077).
  bool PrepareDataDir(std::string* err) {
    std::error_code ec;
    std::filesystem::create_directories(data_dir_, ec);
    // Through one descriptor of the folder itself (never a link to one): no
    // race between looking and changing it.
    const UniqueFd dir(open(data_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st;
    if (!dir || fstat(dir.get(), &st) != 0) {
      *err = "persistence.dir " + data_dir_ + " is not a folder (" +
             (ec ? ec.message() : std::string(std::strerror(errno))) + ")";
      return false;
    }
    if (uid_ != static_cast<uid_t>(-1) && (st.st_uid != uid_ || st.st_gid != gid_) &&
        fchown(dir.get(), uid_, gid_) != 0) {
      *err = "cannot hand persistence.dir " + data_dir_ + " to user " + cfg_.user + ": " +
             std::strerror(errno);
      return false;
    }
    if ((st.st_mode & 07777) != 0700 && fchmod(dir.get(), 0700) != 0) {
      *err = "cannot make persistence.dir " + data_dir_ + " 0700: " + std::strerror(errno);
      return false;
    }
    return true;
  }

  // SAVE / BGSAVE from a worker: a byte on this pipe. The kernel signals
  // the master (F_SETSIG, as the one who called F_SETOWN) whoever wrote it,
  // so it works where kill(2) from a worker that dropped privileges gets
  // EPERM from a master running as root.
  bool MakeSnapshotPipe(std::string* err) {
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
      *err = std::string("snapshot request pipe: ") + std::strerror(errno);
      return false;
    }
    snap_req_r_.Reset(p[0]);
    snap_req_w_.Reset(p[1]);
    if (fcntl(p[0], F_SETOWN, getpid()) != 0 ||
        fcntl(p[0], F_SETSIG, persist::SnapshotSignal()) != 0 ||
        fcntl(p[0], F_SETFL, O_NONBLOCK | O_ASYNC) != 0) {
      *err = std::string("snapshot request pipe: fcntl: ") + std::strerror(errno);
      return false;
    }
    return true;
  }

  void DrainSnapshotPipe() {
    char buf[256];
    while (snap_req_r_ && read(snap_req_r_.get(), buf, sizeof buf) > 0) {
    }
  }
  bool LoadPersisted(std::string* err) {
    persist_ = &segment_.header()->persist;
    const PersistenceConf& pc = cfg_.persistence;
    if (!pc.enabled) {
      spdlog::info(
          "persistence is off: the store lives in memory only and is lost when the server stops");
      return true;
    }
    if (!PrepareDataDir(err)) return false;
    const std::string lock = data_dir_ + "/LOCK";
    lock_fd_.Reset(open(lock.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!lock_fd_ || flock(lock_fd_.get(), LOCK_EX | LOCK_NB) != 0) {
      *err = "persistence.dir " + data_dir_ + " is in use by another preforkd (" + lock + ": " +
             std::strerror(errno) + ")";
      return false;
    }
    persist::LoadStats ls;
    // Load without eviction: a store too small for the data must stop the
    // start, not drop keys (the snapshot after the start would make it final).
    kv::Limits loading = kv::LimitsFrom(cfg_.kv);
    loading.eviction = Eviction::kNoEviction;
    store_->SetLimits(loading);
    const bool loaded = persist::Load(data_dir_, store_, WallMs(), &ls, err);
    store_->SetLimits(kv::LimitsFrom(cfg_.kv));
    if (!loaded) {
      *err = "persistence: cannot load " + data_dir_ + ": " + *err;
      return false;
    }
    persist_->enabled.store(1);
    persist_->fsync.store(static_cast<uint32_t>(pc.fsync));
    persist_->epoch.store(ls.max_epoch + 1);
    persist_->loaded_keys.store(ls.keys);
    persist_->loaded_records.store(ls.records);
    persist_->load_ms.store(ls.ms);
    persist_->dropped_tail_bytes.store(ls.dropped_bytes);
    snapshot_soon_ = ls.log_files > 0;  // fold the replayed logs into a snapshot
    last_snap_ms_ = MonoMs();
    spdlog::info(
        "persistence: loaded {} keys in {} ms from {}: {}, {} log records from {} files, "
        "{} expired entries dropped, {} bytes of torn or corrupt tail cut; fsync {}",
        ls.keys, ls.ms, data_dir_,
        ls.snapshot.empty() ? std::string("no snapshot")
                            : ls.snapshot + " (" + std::to_string(ls.snapshot_items) + " items)",
        ls.records, ls.log_files, ls.expired, ls.dropped_bytes, FsyncPolicyName(pc.fsync));
    return true;
  }

  void PersistTick() {
    if (!cfg_.persistence.enabled || stopping_ != Stop::kNo || snap_pid_) return;
    const PersistenceConf& pc = cfg_.persistence;
    const uint64_t now = MonoMs();
    const uint64_t grown = persist_->log_bytes.load() - persist_->log_bytes_at_snapshot.load();
    const char* why = nullptr;
    if (persist_->snapshot_requests.load() != seen_requests_)
      why = "requested";
    else if (now < snap_retry_ms_)
      return;
    else if (snapshot_soon_)
      why = "logs replayed at start";
    else if (pc.snapshot_log_bytes && grown >= pc.snapshot_log_bytes)
      why = "log size";
    else if (pc.snapshot_every_ms && grown && now - last_snap_ms_ >= pc.snapshot_every_ms)
      why = "time";
    else if (persist_->write_errors.load() != seen_write_errors_)
      why = "a log write failed";
    if (why) StartSnapshot(why);
  }

  void StartSnapshot(const char* why) {
    seen_requests_ = persist_->snapshot_requests.load();
    seen_write_errors_ = persist_->write_errors.load();
    snap_mark_ = persist_->log_bytes.load();
    persist_->snapshot_in_progress.store(1);
    persist_->snapshots_started.fetch_add(1);
    snap_started_ms_ = MonoMs();
    const pid_t pid = fork();
    if (pid < 0) {
      spdlog::error("snapshot: fork: {}", std::strerror(errno));
      persist_->snapshot_in_progress.store(0);
      persist_->snapshots_done.fetch_add(1);
      snap_retry_ms_ = MonoMs() + 5000;
      return;
    }
    if (pid == 0) _exit(SnapshotMain());
    snap_pid_ = pid;
    spdlog::info("snapshot: started (pid {}, {})", pid, why);
  }

  int SnapshotMain() {
    prctl(PR_SET_NAME, "preforkd-snap");
    umask(077);  // the snapshot is the whole store: 0600
    // It writes in a folder the worker user owns: as that user, never as
    // root (a name planted there cannot make root write elsewhere).
    if (uid_ != static_cast<uid_t>(-1) &&
        (setgid(gid_) != 0 || initgroups(cfg_.user.c_str(), gid_) != 0 || setuid(uid_) != 0)) {
      spdlog::critical("snapshot: cannot drop privileges to {}: {}", cfg_.user,
                       std::strerror(errno));
      return 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    ready_fd_.Reset();
    pid_lock_.Reset();
    sockets_.CloseAll();
    log::SetRole("snapshot");
    const uint64_t t0 = MonoMs();
    persist::SnapshotResult r;
    try {
      r = persist::WriteSnapshot(data_dir_, store_, persist_, WallMs());
    } catch (const std::exception& e) {
      r.ok = false;
      r.error = e.what();
    }
    const uint64_t ms = MonoMs() - t0;
    if (!r.ok) {
      persist_->last_snapshot_ok.store(0);
      persist::SetLastError(persist_, "snapshot: " + r.error);
      persist::WriteStatus(data_dir_, "error " + std::to_string(WallMs()) + " " + r.error);
      spdlog::error("snapshot failed: {}", r.error);
      return 1;
    }
    persist_->last_snapshot_ok.store(1);
    persist_->last_snapshot_ms.store(WallMs());
    persist_->last_snapshot_duration_ms.store(ms);
    persist_->last_snapshot_bytes.store(r.bytes);
    persist_->last_snapshot_keys.store(r.keys);
    persist_->last_snapshot_gen.store(r.gen);
    persist::WriteStatus(data_dir_, "ok " + std::to_string(WallMs()) + " " + r.path +
                                        " keys=" + std::to_string(r.keys) + " bytes=" +
                                        std::to_string(r.bytes) + " ms=" + std::to_string(ms));
    spdlog::info("snapshot: {} keys, {} bytes in {} ms: {}", r.keys, r.bytes, ms, r.path);
    return 0;
  }

  void SnapshotDone(int status) {
    snap_pid_ = 0;
    persist_->served_requests.store(seen_requests_);
    persist_->snapshot_in_progress.store(0);
    persist_->snapshots_done.fetch_add(1);
    const uint64_t now = MonoMs();
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      persist_->log_bytes_at_snapshot.store(snap_mark_);
      last_snap_ms_ = now;
      snapshot_soon_ = false;
      snap_failures_ = 0;
      snap_retry_ms_ = 0;
      const int n = persist::RemoveCovered(data_dir_, persist_->epoch.load(),
                                           persist_->last_snapshot_gen.load());
      if (n) spdlog::info("snapshot: removed {} covered log files and snapshots", n);
      return;
    }
    if (WIFSIGNALED(status)) {
      const std::string e =
          std::string("snapshot process killed by signal ") + strsignal(WTERMSIG(status));
      persist_->last_snapshot_ok.store(0);
      persist::SetLastError(persist_, e);
      persist::WriteStatus(data_dir_, "error " + std::to_string(WallMs()) + " " + e);
      spdlog::error("{}", e);
    }
    // A killed child leaves its temporary file (only one snapshot runs at a time).
    persist::RemoveTemporary(data_dir_);
    snap_failures_++;
    snap_retry_ms_ = now + std::min<uint64_t>(5000ull << std::min(snap_failures_ - 1, 4), 60'000);
  }

  enum class Stop { kNo, kGraceful, kFast };

  Config cfg_;
  MasterOptions opt_;
  SocketTable sockets_;
  Segment segment_;
  kv::Store* store_ = nullptr;
  bus::Bus bus_;
  std::vector<UniqueFd> wake_fds_;  // per worker slot, inherited by every worker
  std::vector<Child> children_;
  std::vector<int> pending_release_;  // reaped counter entries whose bus release waits for the lock
  std::vector<SlotState> slots_;
  uint32_t generation_ = 1;
  pid_t master_pid_ = 0;
  UniqueFd ready_fd_;
  UniqueFd pid_lock_;  // the pidfile, locked for the master's life (LockPidfile)
  bool pid_written_ = false;
  uid_t uid_ = static_cast<uid_t>(-1);
  gid_t gid_ = static_cast<gid_t>(-1);
  Stop stopping_ = Stop::kNo;
  PersistShared* persist_ = nullptr;
  UniqueFd lock_fd_;                  // flock on persistence.dir/LOCK for the master's life
  std::string data_dir_;              // persistence.dir as the master sees it (cfg_.Outside)
  UniqueFd snap_req_r_, snap_req_w_;  // MakeSnapshotPipe
  pid_t snap_pid_ = 0;
  bool snapshot_soon_ = false;
  uint64_t seen_requests_ = 0, seen_write_errors_ = 0, snap_mark_ = 0;
  uint64_t last_snap_ms_ = 0, snap_started_ms_ = 0, snap_retry_ms_ = 0;
  int snap_failures_ = 0;
};

void InstallSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : MasterSignals()) sigaddset(&set, sig);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : MasterSignals()) sigaction(sig, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGUSR2, SIG_IGN);
  // The snapshot request pipe signals SIGIO instead of its realtime signal
  // if that queue ever overflows: the once-a-second look covers it.
  signal(SIGIO, SIG_IGN);
}

}  // namespace

int RunMaster(Config cfg, const MasterOptions& opt) {
  if (!log::Init(cfg.Outside(cfg.logging.error_log), cfg.logging.level, "master")) {
    fprintf(stderr, "preforkd: cannot open error log %s: %s\n", cfg.logging.error_log.c_str(),
            std::strerror(errno));
    return 1;
  }
  auto master = std::make_unique<Master>(std::move(cfg), opt);
  std::string err;
  if (!master->Prepare(&err)) {
    fprintf(stderr, "preforkd: %s\n", err.c_str());
    spdlog::error("{}", err);
    return 1;
  }
  InstallSignals();
  if (opt.foreground) return master->Run(-1);

  // Background: the daemon reports "ok" or a reason through a pipe, so the
  // caller's exit code says whether the server is serving.
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    perror("preforkd: pipe");
    master->DropPidfile();
    return 1;
  }
  UniqueFd rd(p[0]), wr(p[1]);
  const pid_t pid = fork();
  if (pid < 0) {
    perror("preforkd: fork");
    master->DropPidfile();
    return 1;
  }
  if (pid > 0) {
    wr.Reset();
    std::string msg;
    char buf[512];
    ssize_t n;
    while ((n = read(rd.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
      if (n > 0) msg.append(buf, static_cast<size_t>(n));
    if (msg == "ok") return 0;
    fprintf(stderr, "preforkd: %s\n",
            msg.empty() ? "the server exited during start-up" : msg.c_str());
    return 1;
  }
  rd.Reset();
  setsid();
  return master->Run(wr.Release());
}

}  // namespace pf
