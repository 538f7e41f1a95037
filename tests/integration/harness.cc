// tests/integration/harness.cc: see harness.h.
#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

extern char** environ;

namespace pf::test {
namespace {

using Clock = std::chrono::steady_clock;

// A client writing to a closed socket must get EPIPE, not die.
const bool kIgnoreSigpipe = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();

int Remaining(Clock::time_point deadline) {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms < 0 ? 0 : static_cast<int>(ms);
}

// /proc/<pid>/stat: comm, ppid, starttime. False if the process is gone.
struct ProcStat {
  std::string comm;
  char state = '?';
  pid_t ppid = 0;
  unsigned long long starttime = 0;
};
bool ReadStat(pid_t pid, ProcStat* st) {
  const std::string s = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  const size_t open = s.find('('), close = s.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return false;
  st->comm = s.substr(open + 1, close - open - 1);
  std::istringstream rest(s.substr(close + 1));
  std::string field;
  std::vector<std::string> f;
  while (rest >> field) f.push_back(field);
  // f[0] = state (field 3), f[1] = ppid (4), f[19] = starttime (22)
  if (f.size() < 20) return false;
  st->state = f[0][0];
  st->ppid = static_cast<pid_t>(std::stol(f[1]));
  st->starttime = std::stoull(f[19]);
  return true;
}

std::vector<pid_t> AllPids() {
  std::vector<pid_t> v;
  DIR* d = opendir("/proc");
  if (!d) return v;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    const long p = std::strtol(e->d_name, &end, 10);
    if (end && *end == '\0' && p > 0) v.push_back(static_cast<pid_t>(p));
  }
  closedir(d);
  std::sort(v.begin(), v.end());
  return v;
}

// Start's readiness probe. It connects from an address no test uses, so
// that, until the worker has seen it close, it does not count against the
// tests' own client address (limit_conn, per-address subscription caps).
bool CanConnect(uint16_t port, int timeout_ms) {
  Client c;
  return c.Connect(port, timeout_ms, "127.0.0.254");
}

int LocalPortLow() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int lo = 32768, hi = 60999;
  in >> lo >> hi;
  return lo;
}

}  // namespace

uint16_t FreePort() {
  static std::mutex mu;
  static std::set<uint16_t> given;
  static std::mt19937 rng(static_cast<uint32_t>(getpid()) * 2654435761u ^
                          static_cast<uint32_t>(Clock::now().time_since_epoch().count()));
  std::lock_guard<std::mutex> lock(mu);
  // Below the kernel's ephemeral range, so no client socket of this test run
  // can be holding the port when the server binds it.
  const int hi = std::min(LocalPortLow() - 1, 32767);
  const int lo = 15000;
  for (int attempt = 0; attempt < 2000; attempt++) {
    uint16_t port = 0;
    if (hi > lo && attempt < 1000) {
      port = static_cast<uint16_t>(lo + static_cast<int>(rng() % static_cast<uint32_t>(hi - lo)));
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    socklen_t len = sizeof a;
    const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
    close(fd);
    if (!ok) continue;
    port = ntohs(a.sin_port);
    if (port && given.insert(port).second) return port;
  }
  ADD_FAILURE() << "FreePort: no free port found";
  return 0;
}

bool WaitFor(std::function<bool()> cond, int timeout_ms, int poll_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (cond()) return true;
    if (Clock::now() >= deadline) return cond();
    std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
  }
}

std::string BinaryPath() {
  const char* p = std::getenv("PREFORKD_BIN");
  return p ? p : "preforkd";
}

std::string SourceRoot() {
  const char* p = std::getenv("PREFORKD_SOURCE_ROOT");
  return p ? p : ".";
}

std::string ListenerYaml(const std::string& name, const std::string& protocol, uint16_t port,
                         const std::string& extra) {
  std::string s = "- name: " + name +
                  "\n  address: 127.0.0.1\n  port: " + std::to_string(port ? port : FreePort()) +
                  "\n  protocol: " + protocol + "\n";
  std::istringstream lines(extra);
  std::string line;
  while (std::getline(lines, line))
    if (!line.empty()) s += "  " + line + "\n";
  return s;
}

bool ProcessAlive(pid_t pid) {
  ProcStat st;
  return ReadStat(pid, &st) && st.state != 'Z';
}

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  for (; i < n; i++) s[i] = static_cast<char>(rng());
  return s;
}

namespace {

// posix_spawn with default signal dispositions, an empty mask, stdin from
// /dev/null and stdout+stderr appended to `out_path`.
pid_t Spawn(const std::vector<std::string>& args, const std::string& out_path, bool new_group) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (new_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&at, 0);
  }
  posix_spawnattr_setflags(&at, flags);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, &at, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  if (rc != 0) {
    ADD_FAILURE() << "posix_spawn " << args[0] << ": " << std::strerror(rc);
    return -1;
  }
  return pid;
}

}  // namespace

RunResult RunBinary(const std::vector<std::string>& args, int timeout_ms) {
  RunResult r;
  char tmpl[] = "/tmp/preforkd-run-XXXXXX";
  int fd = mkstemp(tmpl);
  if (fd < 0) {
    ADD_FAILURE() << "mkstemp: " << std::strerror(errno);
    return r;
  }
  close(fd);
  std::vector<std::string> full{BinaryPath()};
  full.insert(full.end(), args.begin(), args.end());
  const pid_t pid = Spawn(full, tmpl, true);
  if (pid > 0) {
    int status = 0;
    bool done = WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, timeout_ms);
    if (!done) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "preforkd did not exit within " << timeout_ms << " ms";
    } else if (WIFEXITED(status)) {
      r.exit_code = WEXITSTATUS(status);
    }
  }
  r.output = ReadFile(tmpl);
  unlink(tmpl);
  return r;
}

// ---------------------------------------------------------------- Server

Server::Server(const std::string& listeners_yaml, const std::string& extra_yaml, int workers)
    : default_workers_(workers) {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/preforkd-it-XXXXXX";
  if (!mkdtemp(tmpl.data())) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
  }
  dir_ = tmpl;
  WriteFile(config_path(), Compose(listeners_yaml, extra_yaml));
}

std::string Server::Compose(const std::string& listeners_yaml, const std::string& extra_yaml) {
  YAML::Node listeners, extra;
  try {
    listeners = YAML::Load(listeners_yaml);
    extra = extra_yaml.empty() ? YAML::Node(YAML::NodeType::Map) : YAML::Load(extra_yaml);
  } catch (const YAML::Exception& e) {
    ADD_FAILURE() << "harness: invalid YAML given to Server: " << e.what()
                  << " (use WriteRawConfig for deliberately invalid configs)";
    return "";
  }
  if (extra.IsNull()) extra = YAML::Node(YAML::NodeType::Map);
  if (listeners.IsSequence()) {
    for (size_t i = 0; i < listeners.size(); i++) {
      YAML::Node l = listeners[i];
      const YAML::Node& cl = l;
      if (!cl.IsMap() || !cl["name"]) continue;
      const std::string name = cl["name"].as<std::string>();
      if (!cl["port"]) {
        auto it = ports_.find(name);
        l["port"] = it != ports_.end() ? it->second : FreePort();
      }
      try {
        ports_[name] = cl["port"].as<uint16_t>();
      } catch (const YAML::Exception&) {
      }
    }
  }
  const YAML::Node& ce = extra;
  if (!ce["workers"]) extra["workers"] = default_workers_;
  try {
    const std::string w = ce["workers"].as<std::string>();
    workers_ = w == "auto" ? static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)) : std::stoi(w);
  } catch (...) {
    workers_ = default_workers_;
  }
  if (!ce["pidfile"]) extra["pidfile"] = pidfile_path();
  // Small but valid: the large-object area must hold two of the largest
  // values (kv.max_value_bytes, 16m by default), and the pub/sub bus takes a
  // few MB of the segment too, so 96m gets a 40m area and 8 shards (~6 MB
  // each). Untouched pages of the segment cost no memory. A test that sets
  // shared_memory itself also picks its kv.shards and kv.large_memory.
  if (!ce["shared_memory"]) {
    extra["shared_memory"] = "96m";
    if (!ce["kv"]) extra["kv"] = YAML::Node(YAML::NodeType::Map);
    YAML::Node kv = extra["kv"];
    if (kv.IsMap() && !static_cast<const YAML::Node&>(kv)["shards"]) kv["shards"] = 8;
    if (kv.IsMap() && !static_cast<const YAML::Node&>(kv)["large_memory"])
      kv["large_memory"] = "40m";
  }
  if (!ce["logging"]) extra["logging"] = YAML::Node(YAML::NodeType::Map);
  YAML::Node logging = extra["logging"];
  if (!static_cast<const YAML::Node&>(logging)["error_log"]) logging["error_log"] = log_path();
  if (!ce["timeouts"]) extra["timeouts"] = YAML::Node(YAML::NodeType::Map);
  YAML::Node timeouts = extra["timeouts"];
  if (!static_cast<const YAML::Node&>(timeouts)["drain"]) timeouts["drain"] = "2s";

  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "listeners" << YAML::Value << listeners;
  for (auto it = ce.begin(); it != ce.end(); ++it)
    out << YAML::Key << it->first << YAML::Value << it->second;
  out << YAML::EndMap;
  config_text_ = std::string(out.c_str()) + "\n";
  return config_text_;
}

void Server::RewriteConfig(const std::string& listeners_yaml, const std::string& extra_yaml) {
  WriteFile(config_path(), Compose(listeners_yaml, extra_yaml));
}

void Server::WriteRawConfig(const std::string& text) { WriteFile(config_path(), text); }

std::string Server::ConfigText() const { return config_text_; }

bool Server::Start(int timeout_ms) {
  if (pid_ > 0) {
    ADD_FAILURE() << "Server::Start called twice";
    return false;
  }
  pid_ = Spawn({BinaryPath(), "-g", "-c", config_path()}, dir_ + "/output.log", true);
  if (pid_ <= 0) return false;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped_ = true;
      status_ = status;
      ADD_FAILURE() << "preforkd exited during start-up (status " << status << ")\n--- output:\n"
                    << Output() << "--- error log:\n"
                    << Log();
      return false;
    }
    bool ready = static_cast<int>(ActiveWorkers().size()) >= workers_;
    for (const auto& [name, port] : ports_) {
      if (!ready) break;
      ready = CanConnect(port, 200);
    }
    if (ready) return true;
    if (Clock::now() >= deadline) {
      ADD_FAILURE() << "preforkd did not become ready within " << timeout_ms << " ms\n--- output:\n"
                    << Output() << "--- error log:\n"
                    << Log();
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

uint16_t Server::Port(const std::string& listener_name) const {
  auto it = ports_.find(listener_name);
  return it == ports_.end() ? 0 : it->second;
}

void Server::Remember(pid_t p) const {
  ProcStat st;
  if (ReadStat(p, &st)) seen_.emplace(p, st.starttime);
}

std::vector<WorkerInfo> Server::Workers() const {
  std::vector<WorkerInfo> v;
  if (pid_ <= 0 || reaped_) return v;
  for (pid_t p : AllPids()) {
    ProcStat st;
    if (!ReadStat(p, &st) || st.ppid != pid_ || st.state == 'Z') continue;
    seen_.emplace(p, st.starttime);
    WorkerInfo w;
    w.pid = p;
    w.comm = st.comm;
    const std::string prefix = "preforkd-w";
    if (st.comm.rfind(prefix, 0) == 0) {
      std::string rest = st.comm.substr(prefix.size());
      if (rest.size() > 2 && rest.compare(rest.size() - 2, 2, "-q") == 0) {
        w.retiring = true;
        rest.resize(rest.size() - 2);
      }
      char* end = nullptr;
      const long slot = std::strtol(rest.c_str(), &end, 10);
      if (!rest.empty() && end && *end == '\0') w.slot = static_cast<int>(slot);
    }
    v.push_back(w);
  }
  return v;
}

std::vector<pid_t> Server::WorkerPids() const {
  std::vector<pid_t> v;
  for (const auto& w : Workers()) v.push_back(w.pid);
  return v;
}

std::vector<WorkerInfo> Server::ActiveWorkers() const {
  std::vector<WorkerInfo> v;
  for (const auto& w : Workers())
    if (w.slot >= 0 && !w.retiring) v.push_back(w);
  std::sort(v.begin(), v.end(), [](const WorkerInfo& a, const WorkerInfo& b) {
    return a.slot != b.slot ? a.slot < b.slot : a.pid < b.pid;
  });
  return v;
}

bool Server::GenerationUp(int n, const std::vector<pid_t>& not_these) const {
  const auto active = ActiveWorkers();
  if (static_cast<int>(active.size()) != n) return false;
  for (int i = 0; i < n; i++) {
    if (active[i].slot != i) return false;
    if (std::find(not_these.begin(), not_these.end(), active[i].pid) != not_these.end())
      return false;
  }
  return true;
}

void Server::Signal(int sig) {
  if (pid_ > 0 && !reaped_) kill(pid_, sig);
}

bool Server::WaitExit(int timeout_ms, int* status) {
  if (pid_ <= 0) return false;
  if (!reaped_) {
    // Learn the workers first, so teardown can kill any that outlive the master.
    for (pid_t p : WorkerPids()) Remember(p);
    int st = 0;
    if (!WaitFor([&] { return waitpid(pid_, &st, WNOHANG) == pid_; }, timeout_ms)) return false;
    reaped_ = true;
    status_ = st;
  }
  if (status) *status = status_;
  return true;
}

std::string Server::Log() const { return ReadFile(log_path()); }
std::string Server::Output() const { return ReadFile(dir_ + "/output.log"); }

bool Server::WaitLog(const std::string& needle, int timeout_ms) const {
  return WaitFor([&] { return Log().find(needle) != std::string::npos; }, timeout_ms, 10);
}

void Server::KillAll() {
  if (pid_ > 0 && !reaped_) {
    for (pid_t p : WorkerPids()) Remember(p);
    // The unreaped master keeps its process group alive, so this reaches
    // exactly the processes this Server started.
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
    reaped_ = true;
  }
  // Workers that outlived the master (reparented): by pid, if still the same process.
  std::vector<pid_t> alive;
  for (const auto& [p, start] : seen_) {
    ProcStat st;
    if (ReadStat(p, &st) && st.starttime == start && st.state != 'Z') {
      kill(p, SIGKILL);
      alive.push_back(p);
    }
  }
  WaitFor(
      [&] {
        for (pid_t p : alive) {
          ProcStat st;
          if (ReadStat(p, &st) && st.starttime == seen_[p] && st.state != 'Z') return false;
        }
        return true;
      },
      2000);
}

Server::~Server() {
  KillAll();
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const bool failed = info && info->result()->Failed();
  if (failed) {
    std::fprintf(stderr, "---- preforkd error log (%s) ----\n%s---- preforkd output ----\n%s----\n",
                 log_path().c_str(), Log().c_str(), Output().c_str());
  }
  if (!dir_.empty() && !std::getenv("PREFORKD_KEEP_TMP")) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

// ---------------------------------------------------------------- Client

Client::~Client() { Close(); }

Client::Client(Client&& o) noexcept
    : fd_(o.fd_), err_(o.err_.load()), eof_(o.eof_), buf_(std::move(o.buf_)) {
  o.fd_ = -1;
}

Client& Client::operator=(Client&& o) noexcept {
  if (this != &o) {
    Close();
    fd_ = o.fd_;
    err_ = o.err_.load();
    eof_ = o.eof_;
    buf_ = std::move(o.buf_);
    o.fd_ = -1;
  }
  return *this;
}

void Client::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  eof_ = false;
  buf_.clear();
}

bool Client::Connect(uint16_t port, int timeout_ms, const char* from) {
  Close();
  err_ = 0;
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    err_ = errno;
    return false;
  }
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (from) {
    sockaddr_in local{};
    local.sin_family = AF_INET;
    if (inet_pton(AF_INET, from, &local.sin_addr) != 1 ||
        bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
      err_ = errno;
      Close();
      return false;
    }
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (errno != EINPROGRESS) {
      err_ = errno;
      Close();
      return false;
    }
    pollfd p{fd_, POLLOUT, 0};
    int rc;
    while ((rc = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (rc <= 0 || getsockopt(fd_, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
      err_ = rc == 0 ? ETIMEDOUT : soerr ? soerr : errno;
      Close();
      return false;
    }
  }
  return true;
}

bool Client::SendAll(std::string_view data, int timeout_ms) {
  if (fd_ < 0) return false;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!data.empty()) {
    const ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};
      const int left = Remaining(deadline);
      if (left == 0 || poll(&p, 1, left) == 0) {
        err_ = ETIMEDOUT;
        return false;
      }
      continue;
    }
    err_ = errno;
    return false;
  }
  return true;
}

int Client::Fill(int timeout_ms) {
  if (fd_ < 0) return -1;
  if (eof_) return 0;
  pollfd p{fd_, POLLIN, 0};
  int rc;
  while ((rc = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
  }
  if (rc == 0) {
    err_ = ETIMEDOUT;
    return -1;
  }
  bool got = false;
  char chunk[65536];
  for (;;) {
    const ssize_t n = read(fd_, chunk, sizeof chunk);
    if (n > 0) {
      buf_.append(chunk, static_cast<size_t>(n));
      got = true;
      continue;
    }
    if (n == 0) {
      eof_ = true;
      return got ? 1 : 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (got) return 1;
      err_ = EAGAIN;
      return -1;
    }
    err_ = errno;
    return got ? 1 : -1;
  }
}

bool Client::RecvExact(size_t n, std::string* out, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (buf_.size() < n) {
    const int r = Fill(Remaining(deadline));
    if (r == 0) return false;
    if (r < 0 && (err_ != EAGAIN || Remaining(deadline) == 0)) return false;
  }
  out->assign(buf_, 0, n);
  buf_.erase(0, n);
  return true;
}

bool Client::RecvUntil(std::string_view delim, std::string* out, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  size_t from = 0;
  for (;;) {
    const size_t at = buf_.find(delim, from);
    if (at != std::string::npos) {
      out->assign(buf_, 0, at + delim.size());
      buf_.erase(0, at + delim.size());
      return true;
    }
    from = buf_.size() >= delim.size() ? buf_.size() - delim.size() + 1 : 0;
    const int r = Fill(Remaining(deadline));
    if (r == 0) return false;
    if (r < 0 && (err_ != EAGAIN || Remaining(deadline) == 0)) return false;
  }
}

bool Client::RecvLine(std::string* line, int timeout_ms) {
  if (!RecvUntil("\n", line, timeout_ms)) return false;
  line->pop_back();
  if (!line->empty() && line->back() == '\r') line->pop_back();
  return true;
}

bool Client::RecvSome(std::string* out, int timeout_ms) {
  if (buf_.empty() && Fill(timeout_ms) <= 0) return false;
  out->swap(buf_);
  buf_.clear();
  return true;
}

bool Client::WaitClosed(int timeout_ms) {
  if (fd_ < 0) return false;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const int r = Fill(Remaining(deadline));
    if (r == 0) return true;
    if (r < 0) {
      if (err_ == ECONNRESET || err_ == EPIPE) return true;
      if (err_ != EAGAIN || Remaining(deadline) == 0) return false;
    }
  }
}

bool Client::Echo(std::string_view msg, int timeout_ms) {
  std::string got;
  return SendAll(msg, timeout_ms) && RecvExact(msg.size(), &got, timeout_ms) && got == msg;
}

void Client::ResetClose() {
  if (fd_ < 0) return;
  linger l{1, 0};
  setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  Close();
}

int Sh(const std::string& cmd, std::string* out) {
  out->clear();
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out->append(buf, n);
  const int st = pclose(f);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::string Resp(const std::vector<std::string>& argv) {
  std::string s = "*" + std::to_string(argv.size()) + "\r\n";
  for (const auto& a : argv) s += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return s;
}

bool ReadReply(Client& c, std::string* out, int timeout_ms) {
  std::string line;
  if (!c.RecvLine(&line, timeout_ms) || line.empty()) return false;
  const char t = line[0];
  if (t == '+' || t == '-' || t == ':') {
    *out = line;
    return true;
  }
  const long long n = std::stoll(line.substr(1));
  if (t == '$') {
    if (n < 0) {
      *out = "(nil)";
      return true;
    }
    std::string d;
    if (!c.RecvExact(static_cast<size_t>(n) + 2, &d, timeout_ms)) return false;
    *out = "$" + d.substr(0, static_cast<size_t>(n));
    return true;
  }
  if (t == '*') {
    if (n < 0) {
      *out = "(nil)";
      return true;
    }
    std::string s = "[";
    for (long long i = 0; i < n; i++) {
      std::string e;
      if (!ReadReply(c, &e, timeout_ms)) return false;
      s += (i ? "," : "") + e;
    }
    *out = s + "]";
    return true;
  }
  return false;
}

std::string RespCall(Client& c, const std::vector<std::string>& argv) {
  if (!c.SendAll(Resp(argv))) return "<send failed>";
  std::string r;
  return ReadReply(c, &r) ? r : "<no reply>";
}

std::string JsonCall(Client& c, const std::string& line) {
  if (!c.SendAll(line + "\n")) return "<send failed>";
  std::string r;
  return c.RecvLine(&r) ? r : "<no reply>";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream o(tmp, std::ios::binary | std::ios::trunc);
    o << text;
  }
  std::rename(tmp.c_str(), path.c_str());
}

}  // namespace pf::test
