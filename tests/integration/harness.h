// tests/integration/harness.h: the one fixture every integration test uses.
// It runs the real preforkd binary (env PREFORKD_BIN) in the foreground with a
// temporary directory holding its config, pidfile and error log, on ephemeral
// loopback ports, and reaps every process it started at teardown. When the
// current test failed, the teardown prints the server's error log.
//
//   pf::test::Server s(pf::test::ListenerYaml("echo"));   // port picked for you
//   ASSERT_TRUE(s.Start());
//   pf::test::Client c;
//   ASSERT_TRUE(c.Connect(s.Port("echo")));
//   EXPECT_TRUE(c.Echo("hello\n"));
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace pf::test {

// An unused loopback TCP port (a test bind on 127.0.0.1, then closed), picked
// below the kernel's ephemeral range so no client socket can hold it. Never
// the same port twice in one process.
uint16_t FreePort();

// Polls `cond` every `poll_ms` until it is true (returns true) or `timeout_ms`
// passed (returns the last result). The one way tests wait.
bool WaitFor(std::function<bool()> cond, int timeout_ms, int poll_ms = 5);

// $PREFORKD_BIN and $PREFORKD_SOURCE_ROOT (set by meson test).
std::string BinaryPath();
std::string SourceRoot();

// One YAML list item for `listeners:`. port 0 = a FreePort(). `extra` is more
// "key: value" lines of the item (e.g. "root: /abs/docroot"), one per line.
std::string ListenerYaml(const std::string& name, const std::string& protocol = "echo",
                         uint16_t port = 0, const std::string& extra = "");

// True while `pid` exists and is not a zombie.
bool ProcessAlive(pid_t pid);

// Random bytes (binary, any value), reproducible for a given seed.
std::string RandomBytes(size_t n, uint64_t seed);

// A whole file ("" if unreadable); a file written whole (through a
// temporary and a rename, so a reader never sees half of it).
std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& text);

// Result of running the preforkd binary to completion (RunBinary).
struct RunResult {
  int exit_code = -1;  // -1: killed by a signal or timed out
  std::string output;  // stdout and stderr together
};
// Runs `preforkd args...` (no -g unless given), bounded by timeout_ms (then SIGKILL).
RunResult RunBinary(const std::vector<std::string>& args, int timeout_ms = 10000);

struct WorkerInfo {
  pid_t pid = 0;
  std::string comm;  // "preforkd-w0", "preforkd-w0-q" (draining), or "preforkd" right after fork
  int slot = -1;     // parsed from comm; -1 if not (yet) named
  bool retiring = false;  // comm ends in "-q"
};

class Server {
 public:
  // `listeners_yaml`: the body of `listeners:` (a YAML list, e.g. from
  // ListenerYaml()); a listener without `port` gets a FreePort().
  // `extra_yaml`: more top-level YAML (a mapping). The harness adds, unless
  // set in extra_yaml: workers (`workers`), pidfile and logging.error_log in
  // dir(), timeouts.drain 2s, shared_memory 96m (kv: 8 shards, large_memory 40m).
  explicit Server(const std::string& listeners_yaml, const std::string& extra_yaml = "",
                  int workers = 2);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Spawns `preforkd -g -c CONFIG` in its own process group and waits (bounded
  // by timeout_ms) until every listener accepts a TCP connection and the
  // configured number of workers is up. False (and the log printed) if the
  // process exits or the wait times out.
  bool Start(int timeout_ms = 10000);

  uint16_t Port(const std::string& listener_name) const;  // 0 if unknown
  pid_t pid() const { return pid_; }
  int workers() const { return workers_; }  // as written to the current config

  // Children of the master (from /proc/*/stat ppid), in pid order.
  std::vector<pid_t> WorkerPids() const;
  std::vector<WorkerInfo> Workers() const;
  // Workers named "preforkd-w<slot>" (not draining), in slot order.
  std::vector<WorkerInfo> ActiveWorkers() const;
  // True when exactly `n` active workers, one per slot 0..n-1, none of them in
  // `not_these` (e.g. the previous generation's pids).
  bool GenerationUp(int n, const std::vector<pid_t>& not_these = {}) const;

  void Signal(int sig);
  // Reaps the master; true if it exited within timeout_ms (*status = waitpid status).
  bool WaitExit(int timeout_ms, int* status = nullptr);
  bool Exited() const { return reaped_; }

  // Writes a new config (same rules as the constructor). Ports already
  // assigned to a listener name are kept when the new YAML has no port.
  void RewriteConfig(const std::string& listeners_yaml, const std::string& extra_yaml = "");
  // Writes `text` as the config file verbatim (invalid configs, line numbers).
  void WriteRawConfig(const std::string& text);
  // The generated config text (for building variants with WriteRawConfig).
  std::string ConfigText() const;

  std::string Log() const;     // the error log file
  std::string Output() const;  // the process' stdout + stderr
  // Polls the error log until it contains `needle`.
  bool WaitLog(const std::string& needle, int timeout_ms = 5000) const;

  std::string dir() const { return dir_; }
  std::string config_path() const { return dir_ + "/preforkd.yaml"; }
  std::string pidfile_path() const { return dir_ + "/preforkd.pid"; }
  std::string log_path() const { return dir_ + "/error.log"; }

 private:
  std::string Compose(const std::string& listeners_yaml, const std::string& extra_yaml);
  void Remember(pid_t p) const;
  void KillAll();

  std::string dir_;
  std::string config_text_;
  std::map<std::string, uint16_t> ports_;
  int default_workers_ = 2;
  int workers_ = 2;
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  mutable std::map<pid_t, unsigned long long> seen_;  // worker pid -> /proc starttime
};

// A blocking-style TCP client on 127.0.0.1 with timeouts on every call.
// Received bytes are buffered, so RecvLine/RecvUntil/RecvExact can be mixed.
class Client {
 public:
  Client() = default;
  ~Client();
  Client(Client&& o) noexcept;
  Client& operator=(Client&& o) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // `from`: the local address to connect from (another loopback address,
  // such as "127.0.0.2", looks like another host to the server).
  bool Connect(uint16_t port, int timeout_ms = 5000, const char* from = nullptr);
  bool SendAll(std::string_view data, int timeout_ms = 10000);
  bool RecvExact(size_t n, std::string* out, int timeout_ms = 5000);
  // Up to and including "\n"; *line has the "\n" (and any "\r") stripped.
  bool RecvLine(std::string* line, int timeout_ms = 5000);
  // Up to and including `delim`; *out includes `delim`.
  bool RecvUntil(std::string_view delim, std::string* out, int timeout_ms = 5000);
  // Whatever arrives within timeout_ms (at least one byte, or false).
  bool RecvSome(std::string* out, int timeout_ms = 5000);
  // True when the peer closed (read returns 0, or ECONNRESET/EPIPE) within
  // timeout_ms; data received before that is kept (see buffered()).
  bool WaitClosed(int timeout_ms = 5000);
  // SendAll(msg) and RecvExact(msg.size()) == msg.
  bool Echo(std::string_view msg, int timeout_ms = 5000);
  // SO_LINGER 0, then close: the peer gets a RST.
  void ResetClose();
  void Close();
  int fd() const { return fd_; }
  const std::string& buffered() const { return buf_; }
  int last_errno() const { return err_.load(); }

 private:
  // Reads what is available (waiting up to timeout_ms for the first byte).
  // 1 = got data, 0 = peer closed, -1 = error/timeout.
  int Fill(int timeout_ms);

  int fd_ = -1;
  std::atomic<int> err_{0};  // atomic: one thread may send while another receives
  bool eof_ = false;
  std::string buf_;
};

// Runs a shell command (bound it with `timeout`); returns its exit code and
// its output (stdout and stderr).
int Sh(const std::string& cmd, std::string* out);

// RESP helpers for tests that speak the Redis protocol.
// Encodes argv as one multibulk command.
std::string Resp(const std::vector<std::string>& argv);
// Reads one RESP reply and renders it compactly: +OK, -ERR .., :5, $value,
// (nil), [a,b] (elements rendered the same way).
bool ReadReply(Client& c, std::string* out, int timeout_ms = 5000);
// Sends one RESP command and returns its reply as ReadReply renders it
// ("<send failed>" / "<no reply>" when there is none).
std::string RespCall(Client& c, const std::vector<std::string>& argv);
// Sends one kv-json line and returns the reply line ("<no reply>" when none).
std::string JsonCall(Client& c, const std::string& line);

}  // namespace pf::test
