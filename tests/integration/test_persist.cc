// tests/integration/test_persist.cc: persistence (the `persistence:` section)
// with the real binary: restarts keep the exact contents under every fsync
// policy; acknowledged writes survive kill -9 of every process, of one worker,
// of the master, of the snapshot child, and a reload; snapshots (SAVE, BGSAVE,
// the signal, log size, time) and the logs they cover; layout changes across
// restarts; expiry; torn log tails; a full disk; starts that must be refused
// (damaged snapshot, data too big, folder in use); persistence off.
//
// The kill -9 trials run PF_PERSIST_KILL_TRIALS times per policy (default 4;
// the 'soak' suite sets 100). PF_PERSIST_SEED makes a run repeatable.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace pf::test {
namespace {

namespace fs = std::filesystem;

uint64_t WallMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

uint64_t Seed() {
  static const uint64_t seed = [] {
    const char* e = std::getenv("PF_PERSIST_SEED");
    const uint64_t s = e && *e ? std::strtoull(e, nullptr, 10) : std::random_device{}();
    std::fprintf(stderr, "test_persist: PF_PERSIST_SEED=%llu\n",
                 static_cast<unsigned long long>(s));
    return s;
  }();
  return seed;
}

int KillTrials() {
  const char* e = std::getenv("PF_PERSIST_KILL_TRIALS");
  const int n = e && *e ? std::atoi(e) : 4;
  return n > 0 ? n : 4;
}

std::string Cmd(Client& c, const std::vector<std::string>& argv, int timeout_ms = 15000) {
  if (!c.SendAll(Resp(argv), timeout_ms)) return "<send failed>";
  std::string r;
  return ReadReply(c, &r, timeout_ms) ? r : "<no reply>";
}

// MGET with binary-safe values (ReadReply's rendering joins them with commas).
bool MGet(Client& c, const std::vector<std::string>& keys,
          std::vector<std::optional<std::string>>* out) {
  std::vector<std::string> argv{"MGET"};
  argv.insert(argv.end(), keys.begin(), keys.end());
  out->clear();
  std::string line;
  if (!c.SendAll(Resp(argv)) || !c.RecvLine(&line, 15000) ||
      line != "*" + std::to_string(keys.size()))
    return false;
  for (size_t i = 0; i < keys.size(); i++) {
    if (!c.RecvLine(&line, 15000) || line.empty() || line[0] != '$') return false;
    const long long n = std::stoll(line.substr(1));
    if (n < 0) {
      out->emplace_back();
      continue;
    }
    std::string d;
    if (!c.RecvExact(static_cast<size_t>(n) + 2, &d, 15000)) return false;
    out->emplace_back(d.substr(0, static_cast<size_t>(n)));
  }
  return true;
}

// The value of `field` in INFO text ("" when absent).
std::string Field(const std::string& info, const std::string& field) {
  const std::string needle = field + ":";
  size_t at = 0;
  for (;;) {
    at = info.find(needle, at);
    if (at == std::string::npos) return "";
    if (at == 0 || info[at - 1] == '\n' || (at == 1 && info[0] == '$')) break;
    at++;
  }
  const size_t from = at + needle.size();
  const size_t end = info.find_first_of("\r\n", from);
  return info.substr(from, end == std::string::npos ? std::string::npos : end - from);
}

std::string InfoPersist(Client& c) { return Cmd(c, {"INFO", "persistence"}); }

uint64_t InfoU(Client& c, const std::string& field) {
  const std::string v = Field(InfoPersist(c), field);
  return v.empty() ? UINT64_MAX : std::strtoull(v.c_str(), nullptr, 10);
}

int WorkerOf(Client& c) {
  const std::string info = Cmd(c, {"CLIENT", "INFO"});
  const size_t at = info.find("worker=");
  return at == std::string::npos ? -1 : std::atoi(info.c_str() + at + 7);
}

// Connects until the connection lands on worker `w` (SO_REUSEPORT spreads them).
bool ConnectToWorker(Client* c, uint16_t port, int w) {
  for (int i = 0; i < 200; i++) {
    Client n;
    if (n.Connect(port) && WorkerOf(n) == w) {
      *c = std::move(n);
      return true;
    }
  }
  return false;
}

// `n` connections spread evenly over `workers` workers (worker of each in *on).
bool ConnectSpread(uint16_t port, size_t n, int workers, std::vector<Client>* out,
                   std::vector<int>* on) {
  out->clear();
  on->clear();
  const size_t quota = (n + static_cast<size_t>(workers) - 1) / static_cast<size_t>(workers);
  std::map<int, size_t> per;
  for (int attempt = 0; attempt < 400 && out->size() < n; attempt++) {
    Client c;
    if (!c.Connect(port)) continue;
    const int w = WorkerOf(c);
    if (w < 0 || per[w] >= quota) continue;
    per[w]++;
    out->push_back(std::move(c));
    on->push_back(w);
  }
  return out->size() == n;
}

void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream o(path, std::ios::binary | std::ios::trunc);
  o << data;
}

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> v;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

bool IsLog(const std::string& n) {
  return n.rfind("log-", 0) == 0 && n.size() > 4 && n.ends_with(".aof");
}
bool IsSnapshot(const std::string& n) {
  return n.rfind("snapshot-", 0) == 0 && n.ends_with(".pfs");
}

std::vector<std::string> Matching(const std::string& dir, bool (*pred)(const std::string&)) {
  std::vector<std::string> v;
  for (const auto& n : Names(dir))
    if (pred(n)) v.push_back(n);
  return v;
}

std::string Listing(const std::string& dir) {
  std::string s;
  for (const auto& n : Names(dir)) {
    std::error_code ec;
    const auto size = fs::file_size(dir + "/" + n, ec);
    s += "  " + n + (ec ? std::string() : " (" + std::to_string(size) + ")") + "\n";
  }
  return s;
}

// HTTP status of one request on a fresh connection (0 on failure).
int HttpStatus(uint16_t port, const std::string& request) {
  Client c;
  if (!c.Connect(port) || !c.SendAll(request)) return 0;
  std::string line;
  if (!c.RecvLine(&line, 10000) || line.size() < 12) return 0;
  return std::atoi(line.c_str() + 9);
}

// ---------------------------------------------------------------------------
// A model of the store for single-client op sequences: exact contents.

struct Model {
  struct V {
    std::string value;
    bool ttl = false;  // an expiry ~1000 s out
  };
  std::map<std::string, V> kv;
};

std::string ModelKey(int i) {
  // Some keys are binary (NUL, CR LF): the log must keep keys as bytes.
  return i % 10 == 0 ? std::string("k\0\r\n:", 5) + std::to_string(i) : "k:" + std::to_string(i);
}

// Runs `n` random commands (the next from `rng`), alternating over `conns`,
// checking each reply against the model. force_flush_at: op index of a
// FLUSHALL (-1: only random ones).
void RunModelOps(std::vector<Client>& conns, Model& m, std::mt19937_64& rng, int n,
                 int force_flush_at = -1) {
  const int nkeys = 60;
  auto key = [&] { return ModelKey(static_cast<int>(rng() % nkeys)); };
  auto value = [&] {
    const size_t len = rng() % 50 == 0 ? 100'000 + rng() % 1000 : rng() % 300;
    return "v" + RandomBytes(len, rng());  // never an integer
  };
  for (int i = 0; i < n; i++) {
    Client& c = conns[static_cast<size_t>(i) % conns.size()];
    const unsigned op = i == force_flush_at ? 99 : static_cast<unsigned>(rng() % 100);
    std::vector<std::string> argv;
    std::string want;
    if (op < 30) {
      const std::string k = key(), v = value();
      argv = {"SET", k, v};
      m.kv[k] = {v, false};
      want = "+OK";
    } else if (op < 40) {
      const std::string k = key(), v = value();
      argv = {"SET", k, v, "EX", "1000"};
      m.kv[k] = {v, true};
      want = "+OK";
    } else if (op < 60) {
      const std::string k = rng() % 2 ? key() : "ctr:" + std::to_string(rng() % 3);
      argv = {"INCR", k};
      auto it = m.kv.find(k);
      if (it == m.kv.end()) {
        m.kv[k] = {"1", false};
        want = ":1";
      } else if (!it->second.value.empty() && it->second.value[0] == 'v') {
        want = "-ERR value is not an integer or out of range";
      } else {
        it->second.value = std::to_string(std::stoll(it->second.value) + 1);  // INCR keeps the TTL
        want = ":" + it->second.value;
      }
    } else if (op < 72) {
      argv = {"MSET"};
      std::set<std::string> used;
      for (int j = 0; j < 3; j++) {
        std::string k = key();
        if (!used.insert(k).second) continue;
        const std::string v = value();
        argv.push_back(k);
        argv.push_back(v);
        m.kv[k] = {v, false};
      }
      want = "+OK";
    } else if (op < 82) {
      const std::string k = key();
      argv = {"EXPIRE", k, "1000"};
      auto it = m.kv.find(k);
      want = it == m.kv.end() ? ":0" : ":1";
      if (it != m.kv.end()) it->second.ttl = true;
    } else if (op < 86) {
      const std::string k = key();
      argv = {"PERSIST", k};
      auto it = m.kv.find(k);
      want = it != m.kv.end() && it->second.ttl ? ":1" : ":0";
      if (it != m.kv.end()) it->second.ttl = false;
    } else if (op < 98) {
      std::string a = key(), b = key();
      argv = {"DEL", a};
      if (b != a) argv.push_back(b);
      int gone = 0;
      for (size_t j = 1; j < argv.size(); j++) gone += static_cast<int>(m.kv.erase(argv[j]));
      want = ":" + std::to_string(gone);
    } else {
      argv = {"FLUSHALL"};
      m.kv.clear();
      want = "+OK";
    }
    const std::string got = Cmd(c, argv);
    ASSERT_EQ(got, want) << "op " << i << ": " << argv[0] << " "
                         << (argv.size() > 1 ? argv[1] : "");
  }
}

void ExpectModel(Client& c, const Model& m) {
  EXPECT_EQ(Cmd(c, {"DBSIZE"}), ":" + std::to_string(m.kv.size()));
  for (const auto& [k, v] : m.kv) {
    EXPECT_EQ(Cmd(c, {"GET", k}), "$" + v.value) << "key " << k;
    const std::string pttl = Cmd(c, {"PTTL", k});
    if (v.ttl) {
      ASSERT_EQ(pttl[0], ':') << k;
      const long long ms = std::stoll(pttl.substr(1));
      EXPECT_TRUE(ms > 900'000 && ms <= 1'000'000) << "key " << k << " PTTL " << pttl;
    } else {
      EXPECT_EQ(pttl, ":-1") << "key " << k;
    }
  }
}

// ---------------------------------------------------------------------------
// A concurrent workload that knows which of its writes were acknowledged.
//
// Lanes (connections, one thread each; odd ones pipeline) write their own
// keys (SET L<i>:k<j>), a pair set together (MSET L<i>:ma L<i>:mb), and
// shared counters (INCR ctr:<j>). A value is "<seq>|<padding from seq>", seq
// rising per lane, so a value read back names the write it came from. After
// a crash, Verify checks the store against the acknowledgements and adopts
// what it found as the baseline of the next round.

class Workload {
 public:
  static constexpr int kKeys = 48;
  static constexpr int kCounters = 4;

  // `prefix` keeps the keys of workloads that share a store apart.
  Workload(size_t lanes, uint64_t seed, std::string prefix = "")
      : prefix_(std::move(prefix)), lanes_(lanes), base_(kCounters, 0), max_reply_(kCounters, 0) {
    for (size_t i = 0; i < lanes; i++) {
      Lane& l = lanes_[i];
      l.id = static_cast<int>(i);
      l.key_seq.assign(kKeys, 0);
      l.rng.seed(seed * 7919 + i);
    }
  }
  ~Workload() { Join(); }

  static std::string Value(uint64_t seq) {
    return std::to_string(seq) + "|" +
           std::string(seq * 7 % 301, static_cast<char>('a' + seq % 26));
  }

  // Lanes spread evenly over the server's workers.
  bool Connect(uint16_t port, int workers) {
    std::vector<Client> cs;
    std::vector<int> on;
    if (!ConnectSpread(port, lanes_.size(), workers, &cs, &on)) return false;
    for (size_t i = 0; i < lanes_.size(); i++) {
      lanes_[i].c = std::move(cs[i]);
      lanes_[i].worker = on[i];
    }
    return true;
  }

  void Start() {
    stop_ = false;
    killing_ = false;
    for (Lane& l : lanes_) {
      l.incr_acked.assign(kCounters, 0);
      l.error.clear();
      threads_.emplace_back([this, &l] { Run(l); });
    }
  }
  // The server is about to die: failures from now on are expected.
  void Killing() { killing_ = true; }
  void Stop() { stop_ = true; }
  void Join() {
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  uint64_t acked() const { return acked_.load(); }
  // Acknowledged writes per worker slot, over the whole test.
  std::map<int, uint64_t> per_worker() const { return per_worker_; }

  std::vector<std::string> Errors() const {
    std::vector<std::string> v;
    for (const Lane& l : lanes_)
      if (!l.error.empty()) v.push_back("lane " + std::to_string(l.id) + ": " + l.error);
    return v;
  }

  // Every acknowledged write is in the store (or one still in flight), the
  // MSET pair is whole, counters are within [acked, acked + in flight].
  // Returns how many of the workload's keys exist (for a DBSIZE check).
  uint64_t Verify(Client& c) {
    std::vector<std::string> keys;
    for (const Lane& l : lanes_) {
      for (int k = 0; k < kKeys; k++) keys.push_back(Key(l, k));
      keys.push_back(Key(l, -1));
      keys.push_back(Key(l, -2));
    }
    for (int j = 0; j < kCounters; j++) keys.push_back(Counter(j));
    std::vector<std::optional<std::string>> got;
    if (!MGet(c, keys, &got)) {
      ADD_FAILURE() << "MGET of the workload's keys failed";
      return 0;
    }
    uint64_t present = 0;
    auto seq_of = [&](const std::optional<std::string>& v, const std::string& key) -> uint64_t {
      if (!v) return 0;
      present++;
      const uint64_t s = std::strtoull(v->c_str(), nullptr, 10);
      EXPECT_EQ(*v, Value(s)) << key << ": damaged value";
      return s;
    };
    // Counters (at the end of `keys`) first: they need every lane's in-flight ops.
    size_t at = keys.size() - kCounters;
    for (int j = 0; j < kCounters; j++, at++) {
      uint64_t acked = 0, flying = 0;
      for (const Lane& l : lanes_) {
        acked += l.incr_acked[j];
        for (const InFlight& f : l.inflight) flying += f.kind == InFlight::kIncr && f.key == j;
      }
      const uint64_t v = got[at] ? std::strtoull(got[at]->c_str(), nullptr, 10) : 0;
      if (got[at]) present++;
      EXPECT_GE(v, base_[j] + acked) << keys[at] << " lost acknowledged INCRs";
      EXPECT_LE(v, base_[j] + acked + flying) << keys[at] << " has more INCRs than were sent";
      EXPECT_GE(v, max_reply_[j]) << keys[at] << " is below a value INCR replied";
      base_[j] = v;
    }
    at = 0;
    for (Lane& l : lanes_) {
      auto in_flight = [&](InFlight::Kind kind, int key, uint64_t seq) {
        for (const InFlight& f : l.inflight)
          if (f.kind == kind && f.key == key && f.seq == seq) return true;
        return false;
      };
      for (int k = 0; k < kKeys; k++, at++) {
        const uint64_t s = seq_of(got[at], keys[at]);
        EXPECT_TRUE(s == l.key_seq[k] || in_flight(InFlight::kSet, k, s))
            << keys[at] << ": found seq " << s << ", last acknowledged " << l.key_seq[k] << ", "
            << l.inflight.size() << " commands of the lane in flight";
        l.key_seq[k] = s;
      }
      const uint64_t a = seq_of(got[at], keys[at]), b = seq_of(got[at + 1], keys[at + 1]);
      at += 2;
      EXPECT_EQ(a, b) << "lane " << l.id << ": the two keys of one MSET differ";
      EXPECT_TRUE(a == l.mset_seq || in_flight(InFlight::kMset, -1, a))
          << "lane " << l.id << " MSET pair: found seq " << a << ", last acknowledged "
          << l.mset_seq;
      l.mset_seq = a;
      l.inflight.clear();
    }
    return present;
  }

 private:
  struct InFlight {
    enum Kind { kNone, kSet, kIncr, kMset } kind = kNone;
    int key = -1;
    uint64_t seq = 0;
  };
  struct Lane {
    int id = 0;
    Client c;
    int worker = -1;
    std::vector<uint64_t> key_seq;  // last acknowledged seq per key (0: absent)
    uint64_t mset_seq = 0;
    std::vector<uint64_t> incr_acked;  // this round
    std::deque<InFlight> inflight;     // sent, no reply (yet), oldest first
    uint64_t next_seq = 1;
    std::mt19937_64 rng;
    std::string error;
  };

  std::string Key(const Lane& l, int k) const {
    const std::string p = prefix_ + "L" + std::to_string(l.id) + ":";
    return k >= 0 ? p + "k" + std::to_string(k) : p + (k == -1 ? "ma" : "mb");
  }
  std::string Counter(int j) const { return prefix_ + "ctr:" + std::to_string(j); }

  // Even lanes send one command at a time; odd lanes pipeline 16.
  void Run(Lane& l) {
    const int depth = l.id % 2 ? 16 : 1;
    while (!stop_) {
      std::string cmds;
      for (int d = 0; d < depth; d++) {
        const unsigned op = static_cast<unsigned>(l.rng() % 10);
        InFlight f;
        if (op < 5) {
          f = {InFlight::kSet, static_cast<int>(l.rng() % kKeys), l.next_seq++};
          cmds += Resp({"SET", Key(l, f.key), Value(f.seq)});
        } else if (op < 8) {
          f = {InFlight::kIncr, static_cast<int>(l.rng() % kCounters), 0};
          cmds += Resp({"INCR", Counter(f.key)});
        } else {
          f = {InFlight::kMset, -1, l.next_seq++};
          cmds += Resp({"MSET", Key(l, -1), Value(f.seq), Key(l, -2), Value(f.seq)});
        }
        l.inflight.push_back(f);
      }
      if (!l.c.SendAll(cmds, 15000)) {
        if (!killing_)
          l.error = "send failed while the server was up (errno " +
                    std::to_string(l.c.last_errno()) + ")";
        return;
      }
      while (!l.inflight.empty()) {
        const InFlight f = l.inflight.front();
        std::string r;
        if (!ReadReply(l.c, &r, 15000)) {
          if (!killing_)
            l.error =
                "no reply while the server was up (errno " + std::to_string(l.c.last_errno()) + ")";
          return;
        }
        if (f.kind == InFlight::kIncr ? r.empty() || r[0] != ':' : r != "+OK") {
          l.error = "unexpected reply " + r;
          return;
        }
        switch (f.kind) {
          case InFlight::kSet:
            l.key_seq[f.key] = f.seq;
            break;
          case InFlight::kMset:
            l.mset_seq = f.seq;
            break;
          case InFlight::kIncr: {
            l.incr_acked[f.key]++;
            const uint64_t v = std::strtoull(r.c_str() + 1, nullptr, 10);
            std::lock_guard lk(mu_);
            max_reply_[f.key] = std::max(max_reply_[f.key], v);
            break;
          }
          case InFlight::kNone:
            break;
        }
        l.inflight.pop_front();
        acked_++;
        std::lock_guard lk(mu_);
        per_worker_[l.worker]++;
      }
    }
  }

  const std::string prefix_;
  std::vector<Lane> lanes_;
  std::vector<std::thread> threads_;
  std::vector<uint64_t> base_;  // counter values found by the last Verify
  std::mutex mu_;
  std::vector<uint64_t> max_reply_;
  std::map<int, uint64_t> per_worker_;
  std::atomic<bool> stop_{false}, killing_{false};
  std::atomic<uint64_t> acked_{0};
};

// ---------------------------------------------------------------------------

struct Opts {
  std::string fsync = "everysec";
  int workers = 2;
  std::string dir;           // persistence.dir ("" = the fixture's data dir)
  std::string kv;            // lines under kv: (e.g. "shards: 4"), indented by the caller
  std::string persist_more;  // more lines under persistence:
  std::string top;           // more top-level YAML (e.g. "shared_memory: 24m\n")
  bool http = false;
  bool persistence = true;
};

class PersistTest : public ::testing::Test {
 protected:
  void SetUp() override { data_ = NewDir("data"); }

  void TearDown() override {
    servers_.clear();  // kills what still runs (and prints its logs on failure)
    for (const auto& m : mounts_)
      if (umount2(m.c_str(), MNT_DETACH) != 0)
        ADD_FAILURE() << "umount " << m << ": " << std::strerror(errno);
    if (HasFailure()) {
      for (const auto& d : dirs_)
        std::fprintf(stderr, "---- %s ----\n%s", d.c_str(), Listing(d).c_str());
    }
    if (!std::getenv("PREFORKD_KEEP_TMP")) {
      std::error_code ec;
      for (const auto& d : dirs_) fs::remove_all(d, ec);
    }
  }

  std::string NewDir(const std::string& what) {
    const char* tmp = std::getenv("TMPDIR");
    std::string t =
        std::string(tmp && *tmp ? tmp : "/tmp") + "/preforkd-persist-" + what + "-XXXXXX";
    if (!mkdtemp(t.data())) ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    dirs_.push_back(t);
    return t;
  }

  std::string Yaml(const Opts& o) {
    std::string y;
    if (o.persistence) {
      y += "persistence:\n  dir: " + (o.dir.empty() ? data_ : o.dir) + "\n  fsync: \"" + o.fsync +
           "\"\n";
      y += o.persist_more;
    }
    if (!o.kv.empty()) y += "kv:\n" + o.kv;
    return y + o.top;
  }

  std::string Listeners(const Opts& o) {
    std::string l = ListenerYaml("resp", "resp");
    if (o.http) {
      if (www_.empty()) www_ = NewDir("www");
      l += ListenerYaml("http", "http", 0, "root: " + www_);
    }
    return l;
  }

  // A new server (same data dir unless o.dir says otherwise). nullptr if it did not start.
  Server* Start(const Opts& o = {}) {
    servers_.push_back(std::make_unique<Server>(Listeners(o), Yaml(o), o.workers));
    // Logs of the last few servers are enough when a long soak fails.
    if (servers_.size() > 4) servers_.erase(servers_.begin());
    Server* s = servers_.back().get();
    return s->Start(20000) ? s : nullptr;
  }

  // SIGKILL to the master, its workers and its snapshot child at once: the
  // harness starts the server in its own process group.
  void Kill9(Server* s) {
    const pid_t m = s->pid();
    ASSERT_EQ(getpgid(m), m) << "the server is expected to lead its own process group";
    std::vector<pid_t> all = s->WorkerPids();
    all.push_back(m);
    ASSERT_EQ(kill(-m, SIGKILL), 0) << std::strerror(errno);
    int st = 0;
    ASSERT_TRUE(s->WaitExit(10000, &st));
    EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "status " << st;
    ASSERT_TRUE(WaitFor(
        [&] {
          for (pid_t p : all)
            if (ProcessAlive(p)) return false;
          return true;
        },
        10000))
        << "a process of the killed server is still alive";
  }

  // Graceful (SIGQUIT) or fast (SIGTERM) stop; the master exits 0.
  void Stop(Server* s, int sig) {
    s->Signal(sig);
    int st = 0;
    ASSERT_TRUE(s->WaitExit(20000, &st)) << "no exit after signal " << sig;
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st;
  }

  Client Connect(Server* s) {
    Client c;
    EXPECT_TRUE(c.Connect(s->Port("resp")));
    return c;
  }

  // n connections over every worker (plain ones if that fails, after a failure).
  std::vector<Client> Spread(Server* s, size_t n = 2) {
    std::vector<Client> cs;
    std::vector<int> on;
    EXPECT_TRUE(ConnectSpread(s->Port("resp"), n, s->workers(), &cs, &on))
        << "could not get connections on every worker";
    while (cs.size() < n) cs.push_back(Connect(s));
    return cs;
  }

  // Runs preforkd in the foreground with the config `o` describes, expecting
  // it to refuse to start; *said gets its output and error log.
  void ExpectStartFails(const Opts& o, std::string* said) {
    Server cfg(Listeners(o), Yaml(o), o.workers);
    const RunResult r = RunBinary({"-g", "-c", cfg.config_path()}, 20000);
    *said = r.output + cfg.Log();
    EXPECT_NE(r.exit_code, 0) << *said;
  }

  // Waits until the snapshot count reaches `n` and none runs.
  bool WaitSaves(Client& c, uint64_t n, int timeout_ms = 15000) {
    return WaitFor(
        [&] {
          const std::string i = InfoPersist(c);
          const std::string saves = Field(i, "rdb_saves");
          return !saves.empty() && std::stoull(saves) >= n &&
                 Field(i, "rdb_bgsave_in_progress") == "0";
        },
        timeout_ms, 20);
  }

  std::string data_, www_;
  std::vector<std::string> dirs_, mounts_;
  std::vector<std::unique_ptr<Server>> servers_;
};

class PersistPolicyTest : public PersistTest, public ::testing::WithParamInterface<std::string> {};

// ---------------------------------------------------------------------------
// 1. Restarts keep exactly what was there.

TEST_P(PersistPolicyTest, RestartKeepsExactContents) {
  Opts o;
  o.fsync = GetParam();
  std::mt19937_64 rng(Seed());
  Model m;
  Server* s = Start(o);
  ASSERT_NE(s, nullptr);
  {
    auto cs = Spread(s);
    RunModelOps(cs, m, rng, 250, /*force_flush_at=*/100);
    ASSERT_FALSE(HasFatalFailure());
    for (auto& c : cs) {  // one connection per worker: each worker's log
      const std::string info = InfoPersist(c);
      EXPECT_EQ(Field(info, "aof_fsync"), o.fsync);
      EXPECT_EQ(Field(info, "aof_pending_bytes"), "0") << "acknowledged, so written";
      EXPECT_EQ(Field(info, "aof_last_write_status"), "ok");
      EXPECT_NE(Field(info, "aof_current_size"), "0");
      if (o.fsync == "always") {
        EXPECT_EQ(Field(info, "aof_pending_fsync_bytes"), "0") << "acknowledged, so synced";
      } else if (o.fsync == "everysec") {
        EXPECT_TRUE(
            WaitFor([&] { return Field(InfoPersist(c), "aof_pending_fsync_bytes") == "0"; }, 5000))
            << "everysec: still not synced after seconds";
      }
    }
  }
  Stop(s, SIGQUIT);

  s = Start(o);
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->WaitLog("persistence: loaded " + std::to_string(m.kv.size()) + " keys in "))
      << s->Log();
  {
    auto cs = Spread(s);
    EXPECT_EQ(InfoU(cs[0], "loaded_keys"), m.kv.size());
    EXPECT_GT(InfoU(cs[0], "loaded_log_records"), 0u);
    ExpectModel(cs[0], m);
    RunModelOps(cs, m, rng, 250, /*force_flush_at=*/-1);
    ASSERT_FALSE(HasFatalFailure());
  }
  Stop(s, SIGTERM);

  s = Start(o);
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  EXPECT_EQ(InfoU(c, "loaded_keys"), m.kv.size());
  ExpectModel(c, m);
}

// ---------------------------------------------------------------------------
// 2. kill -9 of every process at a random moment, then restart.

TEST_P(PersistPolicyTest, AckedWritesSurviveKill9OfEveryProcess) {
  Opts o;
  o.fsync = GetParam();
  const int trials = KillTrials();
  std::mt19937_64 rng(Seed() ^ std::hash<std::string>{}(o.fsync));
  Workload w(4, rng());
  // Odd trials: a snapshot every 32 KB of log, so crashes also land while
  // snapshots are written and covered logs removed.
  auto opts = [&](int t) {
    Opts x = o;
    if (t % 2) x.persist_more = "  snapshot_log_size: 32k\n";
    return x;
  };
  Server* s = Start(opts(0));
  ASSERT_NE(s, nullptr);
  uint64_t total = 0;
  for (int t = 0; t < trials; t++) {
    SCOPED_TRACE("trial " + std::to_string(t));
    ASSERT_TRUE(w.Connect(s->Port("resp"), s->workers())) << "lanes on both workers";
    const uint64_t before = w.acked();
    // The moment of the kill: after a random number of acknowledgements
    // (often early), or at a random time up to 1.5 s in (past the start-up
    // snapshot, which comes within a second).
    const bool by_count = rng() % 2;
    const uint64_t target = before + rng() % 400;
    const auto when = std::chrono::steady_clock::now() + std::chrono::milliseconds(rng() % 1500);
    w.Start();
    const bool reached = WaitFor(
        [&] {
          return (by_count ? w.acked() >= target : std::chrono::steady_clock::now() >= when) ||
                 !w.Errors().empty();
        },
        30000, 1);
    w.Killing();
    Kill9(s);
    w.Join();
    ASSERT_TRUE(reached) << "the workload stalled at " << w.acked() << " acknowledgements";
    for (const auto& e : w.Errors()) ADD_FAILURE() << e;
    ASSERT_TRUE(w.Errors().empty());
    total += w.acked() - before;

    s = Start(opts(t + 1));
    ASSERT_NE(s, nullptr);
    Client c = Connect(s);
    const std::string dbsize = Cmd(c, {"DBSIZE"});
    EXPECT_EQ(":" + std::to_string(InfoU(c, "loaded_keys")), dbsize);
    EXPECT_EQ(dbsize, ":" + std::to_string(w.Verify(c))) << "keys nobody wrote";
    ASSERT_FALSE(HasFailure()) << "data dir:\n" << Listing(data_);
  }
  EXPECT_GT(total, 0u);
  const auto per = w.per_worker();
  EXPECT_EQ(per.size(), 2u) << "both workers must have taken writes";
  std::fprintf(stderr, "fsync %s: %d kill -9 trials, %llu acknowledged writes\n", o.fsync.c_str(),
               trials, static_cast<unsigned long long>(total));
}

INSTANTIATE_TEST_SUITE_P(Fsync, PersistPolicyTest, ::testing::Values("always", "everysec", "no"),
                         [](const auto& i) { return i.param; });

// ---------------------------------------------------------------------------
// 3. Snapshots.

TEST_F(PersistTest, SaveWritesSnapshotThatRestartLoadsAndRemovesCoveredLogs) {
  Server* s = Start();
  ASSERT_NE(s, nullptr);
  const int n = 200;
  {
    auto cs = Spread(s);
    for (int i = 0; i < n; i += 4) {
      std::vector<std::string> argv{"MSET"};
      for (int j = i; j < i + 4; j++) {
        argv.push_back("snap:" + std::to_string(j));
        argv.push_back("value-" + std::to_string(j));
      }
      ASSERT_EQ(Cmd(cs[static_cast<size_t>(i / 4) % 2], argv), "+OK");
    }
    ASSERT_FALSE(Matching(data_, IsLog).empty()) << Listing(data_);
    EXPECT_EQ(Cmd(cs[0], {"SAVE"}), "+OK");
    const std::string status = ReadFile(data_ + "/snapshot.status");
    EXPECT_EQ(status.rfind("ok ", 0), 0u) << status;
    EXPECT_NE(status.find(" keys=" + std::to_string(n) + " "), std::string::npos) << status;
    const auto snaps = Matching(data_, IsSnapshot);
    ASSERT_EQ(snaps.size(), 1u) << Listing(data_);
    EXPECT_NE(status.find(data_ + "/" + snaps[0]), std::string::npos) << status;
    // Nothing was written after the snapshot began: every log is covered and goes.
    EXPECT_TRUE(WaitFor([&] { return Matching(data_, IsLog).empty(); }, 5000)) << Listing(data_);
    const std::string info = InfoPersist(cs[1]);
    EXPECT_EQ(Field(info, "rdb_last_bgsave_status"), "ok");
    EXPECT_EQ(Field(info, "snapshot_last_keys"), std::to_string(n));
    EXPECT_EQ(Field(info, "aof_current_size"), "0");
    EXPECT_EQ(Field(info, "rdb_saves"), "1");
  }
  Stop(s, SIGQUIT);

  s = Start();
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->WaitLog("persistence: loaded " + std::to_string(n) + " keys in "));
  EXPECT_NE(s->Log().find(Matching(data_, IsSnapshot).at(0)), std::string::npos) << s->Log();
  {
    Client c = Connect(s);
    EXPECT_EQ(InfoU(c, "loaded_keys"), static_cast<uint64_t>(n));
    EXPECT_EQ(InfoU(c, "loaded_log_records"), 0u);
    for (int j = 0; j < n; j++)
      EXPECT_EQ(Cmd(c, {"GET", "snap:" + std::to_string(j)}), "$value-" + std::to_string(j));
    // The snapshot plus a log tail.
    for (int j = 0; j < 10; j++)
      ASSERT_EQ(Cmd(c, {"SET", "tail:" + std::to_string(j), "t"}), "+OK");
    EXPECT_EQ(Cmd(c, {"DEL", "snap:0"}), ":1");
  }
  Kill9(s);
  s = Start();
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  EXPECT_EQ(InfoU(c, "loaded_keys"), static_cast<uint64_t>(n + 10 - 1));
  EXPECT_EQ(InfoU(c, "loaded_log_records"), 11u);
  EXPECT_EQ(Cmd(c, {"GET", "snap:0"}), "(nil)");
  EXPECT_EQ(Cmd(c, {"GET", "tail:9"}), "$t");
  EXPECT_EQ(Cmd(c, {"GET", "snap:199"}), "$value-199");
}

// Values in the large-object area go through the log, a snapshot and a
// restart like any other: byte for byte.
TEST_F(PersistTest, LargeValuesSurviveSnapshotLogAndKill9) {
  Server* s = Start();
  ASSERT_NE(s, nullptr);
  const std::string a = RandomBytes(6 << 20, 61), b = RandomBytes(300000, 62);
  {
    Client c = Connect(s);
    ASSERT_EQ(Cmd(c, {"SET", "large:a", a}), "+OK");
    EXPECT_EQ(Cmd(c, {"SAVE"}), "+OK");               // a: in the snapshot
    ASSERT_EQ(Cmd(c, {"SET", "large:b", b}), "+OK");  // b: in the log
    ASSERT_EQ(Cmd(c, {"APPEND", "large:b", "!"}), ":300001");
  }
  Kill9(s);
  s = Start();
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  EXPECT_EQ(Cmd(c, {"STRLEN", "large:a"}), ":" + std::to_string(a.size()));
  EXPECT_TRUE(Cmd(c, {"GET", "large:a"}) == "$" + a) << "large:a differs after the restart";
  EXPECT_TRUE(Cmd(c, {"GET", "large:b"}) == "$" + b + "!") << "large:b differs after the restart";
}

TEST_F(PersistTest, BgsaveSignalAndLastsaveReportEachSnapshot) {
  Server* s = Start();
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  EXPECT_EQ(Cmd(c, {"LASTSAVE"}), ":0");
  EXPECT_EQ(InfoU(c, "rdb_saves"), 0u);
  EXPECT_FALSE(fs::exists(data_ + "/snapshot.status"));
  const std::string fresh = InfoPersist(c);
  for (const char* f :
       {"persistence_enabled", "aof_fsync", "rdb_bgsave_in_progress", "rdb_saves",
        "rdb_last_bgsave_status", "rdb_last_save_time", "snapshot_last_keys", "aof_current_size",
        "aof_pending_bytes", "aof_pending_fsync_bytes", "aof_last_write_status", "aof_write_errors",
        "persistence_last_error", "loaded_keys", "loaded_log_records", "loading_time_ms",
        "loading_dropped_tail_bytes"})
    EXPECT_NE(fresh.find(std::string("\r\n") + f + ":"), std::string::npos)
        << "INFO persistence lacks " << f;
  EXPECT_EQ(Field(fresh, "persistence_enabled"), "1");
  EXPECT_EQ(Field(fresh, "aof_fsync"), "everysec") << "the default policy";
  EXPECT_EQ(Field(fresh, "aof_last_write_status"), "ok");
  EXPECT_EQ(Field(fresh, "aof_write_errors"), "0");
  EXPECT_EQ(Field(fresh, "persistence_last_error"), "");
  EXPECT_EQ(Cmd(c, {"MSET", "a", "1", "b", "2", "c", "3"}), "+OK");

  const uint64_t t0 = WallMs();
  EXPECT_EQ(Cmd(c, {"BGSAVE"}), "+Background saving started");
  ASSERT_TRUE(WaitSaves(c, 1));
  const std::string last = Cmd(c, {"LASTSAVE"});
  ASSERT_EQ(last[0], ':') << last;
  const uint64_t at = std::stoull(last.substr(1));
  EXPECT_GE(at + 1, t0 / 1000);
  EXPECT_LE(at, WallMs() / 1000 + 1);
  EXPECT_EQ(std::to_string(InfoU(c, "rdb_last_save_time")), std::to_string(at));
  std::string status = ReadFile(data_ + "/snapshot.status");
  ASSERT_EQ(status.rfind("ok ", 0), 0u) << status;
  const uint64_t ms1 = std::stoull(status.substr(3));
  EXPECT_EQ(ms1 / 1000, at) << status;
  EXPECT_NE(status.find(" keys=3 "), std::string::npos) << status;
  EXPECT_NE(status.find(" bytes="), std::string::npos) << status;
  EXPECT_NE(status.find(" ms="), std::string::npos) << status;

  // The snapshot signal (what preforkctl sends), with new data.
  EXPECT_EQ(Cmd(c, {"SET", "d", "4"}), "+OK");
  std::string out;
  ASSERT_EQ(Sh("kill -s RTMIN+1 " + std::to_string(s->pid()), &out), 0) << out;
  ASSERT_TRUE(WaitSaves(c, 2));
  status = ReadFile(data_ + "/snapshot.status");
  EXPECT_NE(status.find(" keys=4 "), std::string::npos) << status;
  EXPECT_GT(std::stoull(status.substr(3)), ms1) << status;
  EXPECT_GE(std::stoull(Cmd(c, {"LASTSAVE"}).substr(1)), at);

  EXPECT_EQ(Cmd(c, {"BGSAVE", "SCHEDULE"}), "+Background saving scheduled");
  ASSERT_TRUE(WaitSaves(c, 3));
  EXPECT_EQ(Cmd(c, {"BGSAVE", "NOW"}).rfind("-ERR", 0), 0u);
  EXPECT_EQ(Field(InfoPersist(c), "rdb_last_bgsave_status"), "ok");
  // Only the newest snapshot is kept.
  EXPECT_TRUE(WaitFor([&] { return Matching(data_, IsSnapshot).size() == 1; }, 5000))
      << Listing(data_);
}

TEST_F(PersistTest, SnapshotsDuringHeavyWritesLoseNoAckedWrite) {
  Opts o;
  Server* s = Start(o);
  ASSERT_NE(s, nullptr);
  // Enough data that a snapshot walk takes a while.
  const int pre = 20000;
  {
    Client c = Connect(s);
    for (int i = 0; i < pre;) {  // batches of 1000, pipelined
      std::string batch;
      const int end = std::min(pre, i + 1000);
      for (int j = i; j < end; j++)
        batch += Resp(
            {"SET", "pre:" + std::to_string(j), std::string(150, static_cast<char>('a' + j % 26))});
      ASSERT_TRUE(c.SendAll(batch));
      for (; i < end; i++) {
        std::string r;
        ASSERT_TRUE(ReadReply(c, &r)) << i;
        ASSERT_EQ(r, "+OK");
      }
    }
  }
  std::mt19937_64 rng(Seed() + 3);
  Workload w(4, rng());
  ASSERT_TRUE(w.Connect(s->Port("resp"), s->workers()));
  Client admin = Connect(s);
  w.Start();
  uint64_t saves = 0;
  for (int i = 0; i < 4; i++) {
    const uint64_t before = w.acked();
    const std::string r = Cmd(admin, {"BGSAVE"});
    EXPECT_TRUE(r == "+Background saving started" ||
                r == "-ERR Background save already in progress")
        << r;
    ASSERT_TRUE(WaitSaves(admin, ++saves, 30000)) << "snapshot " << i;
    saves = InfoU(admin, "rdb_saves");
    // The writers kept going while it ran.
    EXPECT_TRUE(WaitFor([&] { return w.acked() > before + 20 || !w.Errors().empty(); }, 10000));
  }
  EXPECT_EQ(Cmd(admin, {"SAVE"}), "+OK");
  EXPECT_EQ(Field(InfoPersist(admin), "rdb_last_bgsave_status"), "ok");
  // One more, and the crash comes while it runs (or just after). The master
  // may already be running one of its own (log size trigger): either is fine.
  {
    const std::string r = Cmd(admin, {"BGSAVE"});
    EXPECT_TRUE(r == "+Background saving started" ||
                r == "-ERR Background save already in progress")
        << r;
  }
  const uint64_t at = w.acked();
  WaitFor([&] { return w.acked() >= at + rng() % 200 || !w.Errors().empty(); }, 10000, 1);
  w.Killing();
  Kill9(s);
  w.Join();
  for (const auto& e : w.Errors()) ADD_FAILURE() << e;

  s = Start(o);
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  EXPECT_EQ(Cmd(c, {"DBSIZE"}), ":" + std::to_string(w.Verify(c) + pre));
  std::vector<std::string> keys;
  for (int i = 0; i < pre; i++) keys.push_back("pre:" + std::to_string(i));
  std::vector<std::optional<std::string>> got;
  ASSERT_TRUE(MGet(c, keys, &got));
  for (int i = 0; i < pre; i++)
    ASSERT_EQ(got[static_cast<size_t>(i)], std::string(150, static_cast<char>('a' + i % 26)))
        << keys[static_cast<size_t>(i)];
  EXPECT_GT(InfoU(c, "loaded_log_records"), 0u);
  for (const auto& n : Names(data_))
    EXPECT_FALSE(n.ends_with(".tmp")) << "unfinished snapshot left: " << n;
}

TEST_F(PersistTest, LogSizeAndTimeTriggerSnapshots) {
  Opts o;
  o.persist_more = "  snapshot_log_size: 32k\n";
  Server* s = Start(o);
  ASSERT_NE(s, nullptr);
  const int n = 300;
  {
    Client c = Connect(s);
    for (int i = 0; i < n; i++)
      ASSERT_EQ(Cmd(c, {"SET", "big:" + std::to_string(i), std::string(1000, 'b')}), "+OK");
    // ~300 KB of log: snapshots follow until less than 32 KB is outside one.
    EXPECT_TRUE(WaitFor(
        [&] {
          const std::string i = InfoPersist(c);
          return Field(i, "rdb_saves") != "0" && Field(i, "rdb_bgsave_in_progress") == "0" &&
                 std::stoull(Field(i, "aof_current_size")) < 32 * 1024;
        },
        10000))
        << InfoPersist(c);
    EXPECT_TRUE(WaitFor(
        [&] {
          uint64_t bytes = 0;
          for (const auto& l : Matching(data_, IsLog)) {
            std::error_code ec;  // a snapshot may remove it meanwhile
            const auto n = fs::file_size(data_ + "/" + l, ec);
            bytes += ec ? 0 : n;
          }
          return bytes < 64 * 1024;
        },
        5000))
        << "covered logs stay:\n"
        << Listing(data_);
  }
  Kill9(s);
  o.persist_more = "  snapshot_log_size: 0\n  snapshot_every: 1s\n";
  s = Start(o);
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  EXPECT_EQ(InfoU(c, "loaded_keys"), static_cast<uint64_t>(n));
  EXPECT_LT(InfoU(c, "loaded_log_records"), static_cast<uint64_t>(n))
      << "the snapshots held most of it";
  // The start-up snapshot (if logs were replayed) first; then only time can trigger one.
  if (InfoU(c, "loaded_log_records") > 0) {
    ASSERT_TRUE(WaitSaves(c, 1));
  }
  EXPECT_EQ(Cmd(c, {"SET", "timed", "t"}), "+OK");
  EXPECT_TRUE(
      WaitFor([&] { return InfoU(c, "snapshot_last_keys") == static_cast<uint64_t>(n + 1); }, 5000))
      << "no snapshot within seconds of a write, with snapshot_every: 1s";
}

// A reload (SIGHUP) changes the fsync policy for the new workers (but not
// persistence.dir: that needs a restart); the old ones drain. Writes
// acknowledged by either generation survive kill -9.
TEST_F(PersistTest, ReloadChangesFsyncAndBothGenerationsKeepAckedWrites) {
  Opts o;
  o.fsync = "no";
  const std::string drain =
      "timeouts:\n  drain: 30s\n";  // the old generation keeps its connections
  servers_.push_back(std::make_unique<Server>(Listeners(o), Yaml(o) + drain, 2));
  Server* s = servers_.back().get();
  ASSERT_TRUE(s->Start(20000));
  std::mt19937_64 rng(Seed() + 5);
  Workload old_gen(4, rng(), "old:");
  ASSERT_TRUE(old_gen.Connect(s->Port("resp"), 2));
  old_gen.Start();
  ASSERT_TRUE(WaitFor([&] { return old_gen.acked() >= 300 || !old_gen.Errors().empty(); }, 20000));

  const std::vector<pid_t> before = s->WorkerPids();
  Opts next = o;
  next.fsync = "always";
  next.dir = NewDir("ignored");
  s->RewriteConfig(ListenerYaml("resp", "resp", s->Port("resp")), Yaml(next) + drain);
  s->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return s->GenerationUp(2, before); }, 10000));
  EXPECT_TRUE(s->WaitLog("cannot change without a restart")) << s->Log();
  Workload new_gen(4, rng(), "new:");
  ASSERT_TRUE(new_gen.Connect(s->Port("resp"), 2));
  {
    Client c;
    ASSERT_TRUE(ConnectToWorker(&c, s->Port("resp"), 0));
    EXPECT_EQ(Field(InfoPersist(c), "aof_fsync"), "always");
  }
  new_gen.Start();
  const uint64_t at = old_gen.acked();
  ASSERT_TRUE(WaitFor(
      [&] {
        return (new_gen.acked() >= 300 && old_gen.acked() >= at + 100) ||
               !new_gen.Errors().empty() || !old_gen.Errors().empty();
      },
      20000))
      << "old generation " << old_gen.acked() - at << ", new " << new_gen.acked();
  old_gen.Killing();
  new_gen.Killing();
  Kill9(s);
  old_gen.Join();
  new_gen.Join();
  for (const auto& e : old_gen.Errors()) ADD_FAILURE() << "old generation " << e;
  for (const auto& e : new_gen.Errors()) ADD_FAILURE() << "new generation " << e;

  EXPECT_TRUE(Names(next.dir).empty()) << "the reload moved the logs:\n" << Listing(next.dir);

  s = Start(o);
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  const uint64_t present = old_gen.Verify(c) + new_gen.Verify(c);
  EXPECT_EQ(Cmd(c, {"DBSIZE"}), ":" + std::to_string(present));
}

// One worker killed mid-write (the master respawns it), then the master
// alone (its workers follow it out): no acknowledged write is lost either time.
TEST_F(PersistTest, WorkerOrMasterKill9KeepsAckedWrites) {
  Opts o;
  Server* s = Start(o);
  ASSERT_NE(s, nullptr);
  std::mt19937_64 rng(Seed() + 6);
  Workload w(4, rng());
  ASSERT_TRUE(w.Connect(s->Port("resp"), 2));
  w.Start();
  ASSERT_TRUE(WaitFor([&] { return w.acked() >= 500 || !w.Errors().empty(); }, 20000));
  w.Killing();  // the lanes on the killed worker lose their connections
  const auto before = s->ActiveWorkers();
  ASSERT_EQ(before.size(), 2u);
  ASSERT_EQ(kill(before[0].pid, SIGKILL), 0);
  ASSERT_TRUE(WaitFor([&] { return s->GenerationUp(2, {before[0].pid}); }, 10000));
  const uint64_t at = w.acked();
  // The lanes on the other worker keep going.
  ASSERT_TRUE(WaitFor([&] { return w.acked() >= at + 300; }, 20000));
  {
    Client c = Connect(s);  // and the new worker takes writes
    EXPECT_EQ(Cmd(c, {"SET", "after-worker-kill", "1"}), "+OK");
  }
  // Now the master alone: the workers get SIGTERM from the kernel and leave.
  const std::vector<pid_t> workers = s->WorkerPids();
  ASSERT_EQ(kill(s->pid(), SIGKILL), 0);
  ASSERT_TRUE(s->WaitExit(10000));
  ASSERT_TRUE(WaitFor(
      [&] {
        for (pid_t p : workers)
          if (ProcessAlive(p)) return false;
        return true;
      },
      15000))
      << "workers outlived their master";
  w.Join();
  for (const auto& e : w.Errors()) ADD_FAILURE() << e;

  s = Start(o);
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  EXPECT_EQ(Cmd(c, {"GET", "after-worker-kill"}), "$1");
  EXPECT_EQ(Cmd(c, {"DBSIZE"}), ":" + std::to_string(w.Verify(c) + 1));
}

// Writes over resp, kv-json and HTTP all wait for the log.
TEST_F(PersistTest, EveryProtocolsWritesSurviveKill9) {
  Opts o;
  o.fsync = "always";
  o.http = true;
  servers_.push_back(
      std::make_unique<Server>(Listeners(o) + ListenerYaml("json", "kv-json"), Yaml(o), 2));
  Server* s = servers_.back().get();
  ASSERT_TRUE(s->Start(20000));
  {
    Client r = Connect(s);
    EXPECT_EQ(Cmd(r, {"SET", "via-resp", "r"}), "+OK");
    Client j;
    ASSERT_TRUE(j.Connect(s->Port("json")));
    std::string line;
    ASSERT_TRUE(j.SendAll(R"({"id":1,"action":"SET","key":"via-json","value":"j"})"
                          "\n"));
    ASSERT_TRUE(j.RecvLine(&line));
    EXPECT_EQ(line, R"({"id":1,"ok":true})");
    EXPECT_EQ(
        HttpStatus(s->Port("http"),
                   "PUT /kv/via-http HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nh"),
        201);
    EXPECT_EQ(
        HttpStatus(s->Port("http"), "DELETE /kv/via-resp HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        204);
  }
  Kill9(s);
  s = Start(o);
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  EXPECT_EQ(Cmd(c, {"GET", "via-json"}), "$j");
  EXPECT_EQ(Cmd(c, {"GET", "via-http"}), "$h");
  EXPECT_EQ(Cmd(c, {"GET", "via-resp"}), "(nil)");
  EXPECT_EQ(Cmd(c, {"DBSIZE"}), ":2");
}

// Every write command of the table, each option that changes what is
// stored, through kill -9 (logs only) and then a snapshot.
TEST_F(PersistTest, EveryWriteCommandSurvivesRestart) {
  Server* s = Start();
  ASSERT_NE(s, nullptr);
  const uint64_t now = WallMs();
  const std::string in1000s = std::to_string(now / 1000 + 1000),
                    in900s = std::to_string(now + 900'000);
  struct Step {
    std::vector<std::string> argv;
    std::string want;
  };
  const std::vector<Step> steps = {
      {{"MSET", "gone1", "x", "ns1^a", "1"}, "+OK"},
      {{"FLUSHDB"}, "+OK"},
      {{"SET", "a", "1"}, "+OK"},
      {{"SET", "a", "2", "XX", "GET"}, "$1"},
      {{"SET", "b", "1", "NX"}, "+OK"},
      {{"SET", "b", "2", "NX"}, "(nil)"},
      {{"SET", "c", "v", "EX", "1000"}, "+OK"},
      {{"SET", "c", "w", "KEEPTTL"}, "+OK"},
      {{"SET", "d", "v", "PX", "1000000"}, "+OK"},
      {{"SET", "e", "v", "EXAT", in1000s}, "+OK"},
      {{"SET", "f", "v", "PXAT", in900s}, "+OK"},
      {{"SETEX", "g", "1000", "v"}, "+OK"},
      {{"PSETEX", "h", "1000000", "v"}, "+OK"},
      {{"SETNX", "i", "v"}, ":1"},
      {{"INCR", "n"}, ":1"},
      {{"INCRBY", "n", "10"}, ":11"},
      {{"DECR", "n"}, ":10"},
      {{"DECRBY", "n", "3"}, ":7"},
      {{"SET", "del", "x"}, "+OK"},
      {{"DEL", "del"}, ":1"},
      {{"SET", "unl", "x"}, "+OK"},
      {{"UNLINK", "unl"}, ":1"},
      {{"SET", "ex", "x"}, "+OK"},
      {{"EXPIRE", "ex", "1000", "NX"}, ":1"},
      {{"EXPIRE", "ex", "2000", "XX"}, ":1"},
      {{"EXPIRE", "ex", "100", "GT"}, ":0"},
      {{"EXPIRE", "ex", "500", "LT"}, ":1"},
      {{"SET", "pe", "x"}, "+OK"},
      {{"PEXPIRE", "pe", "700000"}, ":1"},
      {{"SET", "ea", "x"}, "+OK"},
      {{"EXPIREAT", "ea", in1000s}, ":1"},
      {{"SET", "pea", "x"}, "+OK"},
      {{"PEXPIREAT", "pea", in900s}, ":1"},
      {{"SET", "past", "x"}, "+OK"},
      {{"EXPIREAT", "past", "1"}, ":1"},  // a deadline in the past deletes
      {{"SET", "past2", "x"}, "+OK"},
      {{"PEXPIRE", "past2", "-5"}, ":1"},
      {{"SET", "p", "x", "EX", "100"}, "+OK"},
      {{"PERSIST", "p"}, ":1"},
      {{"MSET", "ns3^a", "1", "ns3^b", "2", "ns4^a", "3"}, "+OK"},
      {{"FLUSHNS", "ns3"}, ":2"},
      {{"MSET", "m1", "a", "m2", "b", "m1", "c"}, "+OK"},
  };
  // key -> value, expected PTTL in ms (-1: none).
  const std::map<std::string, std::pair<std::string, long long>> want = {
      {"a", {"2", -1}},         {"b", {"1", -1}},        {"c", {"w", 1'000'000}},
      {"d", {"v", 1'000'000}},  {"e", {"v", 1'000'000}}, {"f", {"v", 900'000}},
      {"g", {"v", 1'000'000}},  {"h", {"v", 1'000'000}}, {"i", {"v", -1}},
      {"n", {"7", -1}},         {"ex", {"x", 500'000}},  {"pe", {"x", 700'000}},
      {"ea", {"x", 1'000'000}}, {"pea", {"x", 900'000}}, {"p", {"x", -1}},
      {"ns4^a", {"3", -1}},     {"m1", {"c", -1}},       {"m2", {"b", -1}},
  };
  auto check = [&](Client& c) {
    EXPECT_EQ(Cmd(c, {"DBSIZE"}), ":" + std::to_string(want.size()));
    for (const auto& [k, v] : want) {
      EXPECT_EQ(Cmd(c, {"GET", k}), "$" + v.first) << k;
      const std::string p = Cmd(c, {"PTTL", k});
      if (v.second < 0) {
        EXPECT_EQ(p, ":-1") << k;
      } else {
        const long long ms = p.size() > 1 ? std::stoll(p.substr(1)) : -100;
        EXPECT_TRUE(ms > v.second - 60'000 && ms <= v.second)
            << k << " PTTL " << p << ", set to " << v.second;
      }
    }
  };
  {
    Client c = Connect(s);
    for (const auto& st : steps)
      EXPECT_EQ(Cmd(c, st.argv), st.want)
          << st.argv[0] << " " << (st.argv.size() > 1 ? st.argv[1] : "");
    check(c);
  }
  Kill9(s);
  s = Start();
  ASSERT_NE(s, nullptr);
  {
    Client c = Connect(s);
    check(c);
    ASSERT_TRUE(WaitSaves(c, 1));  // logs were replayed: a snapshot follows
  }
  Stop(s, SIGQUIT);
  s = Start();
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  EXPECT_EQ(InfoU(c, "loaded_log_records"), 0u);
  check(c);
}

// A snapshot child killed mid-walk (it may hold a shard lock: the robust
// mutex is repaired by the next user) fails that snapshot only.
TEST_F(PersistTest, KilledSnapshotChildFailsOnlyThatSnapshot) {
  Server* s = Start();
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  const int pre = 50000;
  for (int i = 0; i < pre;) {
    std::string batch;
    const int end = std::min(pre, i + 1000);
    for (int j = i; j < end; j++)
      batch += Resp({"SET", "pre:" + std::to_string(j), std::string(100, 'p')});
    ASSERT_TRUE(c.SendAll(batch));
    for (; i < end; i++) {
      std::string r;
      ASSERT_TRUE(ReadReply(c, &r));
      ASSERT_EQ(r, "+OK");
    }
  }
  // Catch the snapshot child ("preforkd-snap") and kill it.
  pid_t snap = 0;
  for (int attempt = 0; attempt < 20 && !snap; attempt++) {
    const uint64_t saves = InfoU(c, "rdb_saves");
    ASSERT_EQ(Cmd(c, {"BGSAVE"}), "+Background saving started");
    WaitFor(
        [&] {
          for (const auto& w : s->Workers())
            if (w.comm == "preforkd-snap") snap = w.pid;
          return snap != 0 || InfoU(c, "rdb_saves") > saves;
        },
        10000, 1);
    if (snap) {
      ASSERT_EQ(kill(snap, SIGKILL), 0);
    }
    ASSERT_TRUE(WaitFor([&] { return InfoU(c, "rdb_saves") > saves; }, 10000));
  }
  ASSERT_NE(snap, 0) << "never saw the snapshot process";
  std::string info = InfoPersist(c);
  EXPECT_EQ(Field(info, "rdb_last_bgsave_status"), "err") << info;
  EXPECT_NE(Field(info, "persistence_last_error").find("signal"), std::string::npos) << info;
  EXPECT_EQ(ReadFile(data_ + "/snapshot.status").rfind("error ", 0), 0u);
  // Every shard still works (a lock the child held is repaired).
  std::vector<Client> cs = Spread(s);
  for (int i = 0; i < 200; i++)
    ASSERT_EQ(Cmd(cs[static_cast<size_t>(i) % 2], {"SET", "after:" + std::to_string(i), "a"}),
              "+OK");
  EXPECT_EQ(Cmd(c, {"SAVE"}), "+OK");
  info = InfoPersist(c);
  EXPECT_EQ(Field(info, "rdb_last_bgsave_status"), "ok");
  EXPECT_EQ(Field(info, "snapshot_last_keys"), std::to_string(pre + 200));
  Kill9(s);
  s = Start();
  ASSERT_NE(s, nullptr);
  // The killed child's temp file is gone by now. (It stays until this
  // restart: the master does not remove it when the child dies; reported.)
  for (const auto& n : Names(data_)) EXPECT_FALSE(n.ends_with(".tmp")) << n;
  Client d = Connect(s);
  EXPECT_EQ(InfoU(d, "loaded_keys"), static_cast<uint64_t>(pre + 200));
  EXPECT_EQ(Cmd(d, {"GET", "after:199"}), "$a");
}

// Logs a snapshot covered are deleted, and closed: a worker keeps at most
// its current file open (deleted if the last snapshot covered it, until its
// next write), never a growing list of deleted files whose space stays used.
TEST_P(PersistPolicyTest, CoveredLogsAreClosedNotJustDeleted) {
  Opts o;
  o.fsync = GetParam();
  Server* s = Start(o);
  ASSERT_NE(s, nullptr);
  auto cs = Spread(s);
  for (int round = 0; round < 15; round++) {
    for (int i = 0; i < 20; i++)
      ASSERT_EQ(Cmd(cs[static_cast<size_t>(i) % 2],
                    {"SET", "r" + std::to_string(i), std::to_string(round)}),
                "+OK");
    ASSERT_EQ(Cmd(cs[0], {"SAVE"}), "+OK");
  }
  // The most log files any one process (master, worker) has open.
  auto open_logs = [&](std::string* which) {
    int most = 0;
    which->clear();
    std::vector<pid_t> pids = s->WorkerPids();
    pids.push_back(s->pid());
    for (pid_t p : pids) {
      std::error_code ec;
      int n = 0;
      for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(p) + "/fd", ec)) {
        const std::string target = fs::read_symlink(e.path(), ec).string();
        if (target.find("/log-") != std::string::npos && target.find(".aof") != std::string::npos) {
          n++;
          *which += std::to_string(p) + ": " + target + "\n";
        }
      }
      most = std::max(most, n);
    }
    return most;
  };
  std::string which;
  EXPECT_TRUE(WaitFor([&] { return open_logs(&which) <= 1; }, 5000)) << which;
}

// ---------------------------------------------------------------------------
// 4. The data does not depend on the layout of the run that wrote it.

TEST_F(PersistTest, ShardAndWorkerCountChangesLoadSameData) {
  std::mt19937_64 rng(Seed() + 4);
  Model m;
  auto opts = [](int shards, int workers) {
    Opts o;
    o.kv = "  shards: " + std::to_string(shards) + "\n  max_value_bytes: 256k\n";
    o.workers = workers;
    return o;
  };
  Server* s = Start(opts(8, 2));
  ASSERT_NE(s, nullptr);
  {
    auto cs = Spread(s);
    RunModelOps(cs, m, rng, 200);
    ASSERT_FALSE(HasFatalFailure());
    EXPECT_EQ(Cmd(cs[0], {"SAVE"}), "+OK");
    RunModelOps(cs, m, rng, 100);  // and a log after the snapshot
    ASSERT_FALSE(HasFatalFailure());
  }
  Kill9(s);

  s = Start(opts(2, 3));
  ASSERT_NE(s, nullptr);
  {
    auto cs = Spread(s, 3);
    EXPECT_EQ(InfoU(cs[0], "loaded_keys"), m.kv.size());
    ExpectModel(cs[0], m);
    RunModelOps(cs, m, rng, 150, /*force_flush_at=*/30);
    ASSERT_FALSE(HasFatalFailure());
  }
  Kill9(s);

  s = Start(opts(16, 1));
  ASSERT_NE(s, nullptr);
  {
    Client c = Connect(s);
    EXPECT_EQ(InfoU(c, "loaded_keys"), m.kv.size());
    ExpectModel(c, m);
    std::vector<Client> one;
    one.push_back(std::move(c));
    RunModelOps(one, m, rng, 100);
    ASSERT_FALSE(HasFatalFailure());
  }
  Stop(s, SIGQUIT);

  s = Start(opts(4, 2));
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  ExpectModel(c, m);
}

// ---------------------------------------------------------------------------
// 5. Expiry.

TEST_F(PersistTest, ExpiredKeysStayGoneAndTtlsSurviveRestart) {
  Opts o;
  o.kv = "  sweep_interval: 60s\n";  // no active expiry: the logs hold only the original writes
  Server* s = Start(o);
  ASSERT_NE(s, nullptr);
  uint64_t deadline = 0;
  {
    Client c = Connect(s);
    // In the snapshot.
    EXPECT_EQ(Cmd(c, {"SET", "snap:short", "x", "PX", "2500"}), "+OK");
    deadline = WallMs() + 2500;
    EXPECT_EQ(Cmd(c, {"SET", "snap:long", "y", "EX", "1000"}), "+OK");
    EXPECT_EQ(Cmd(c, {"SAVE"}), "+OK");
    EXPECT_EQ(InfoU(c, "snapshot_last_keys"), 2u)
        << "snap:short expired before the snapshot: too slow";
    // Only in the logs.
    EXPECT_EQ(Cmd(c, {"SET", "log:short", "x", "PX", "300"}), "+OK");
    EXPECT_EQ(Cmd(c, {"SET", "log:pexpired", "x"}), "+OK");
    EXPECT_EQ(Cmd(c, {"PEXPIRE", "log:pexpired", "300"}), ":1");
    EXPECT_EQ(Cmd(c, {"SET", "log:long", "z", "EX", "1000"}), "+OK");
    EXPECT_EQ(Cmd(c, {"SET", "log:persisted", "p", "EX", "1000"}), "+OK");
    EXPECT_EQ(Cmd(c, {"PERSIST", "log:persisted"}), ":1");
    EXPECT_EQ(Cmd(c, {"SET", "log:changed", "c", "EX", "1000"}), "+OK");
    EXPECT_EQ(Cmd(c, {"PEXPIRE", "log:changed", "500000"}), ":1");
  }
  Kill9(s);
  // The expiries pass while the server is down (nothing reads the keys).
  ASSERT_TRUE(WaitFor([&] { return WallMs() > deadline + 20; }, 5000));

  s = Start(o);
  ASSERT_NE(s, nullptr);
  auto check = [&](Client& c) {
    for (const char* k : {"snap:short", "log:short", "log:pexpired"}) {
      EXPECT_EQ(Cmd(c, {"GET", k}), "(nil)") << k;
      EXPECT_EQ(Cmd(c, {"PTTL", k}), ":-2") << k;
    }
    EXPECT_EQ(Cmd(c, {"DBSIZE"}), ":4");
    for (const char* k : {"snap:long", "log:long"}) {
      const std::string p = Cmd(c, {"PTTL", k});
      ASSERT_EQ(p[0], ':') << k;
      const long long ms = std::stoll(p.substr(1));
      EXPECT_TRUE(ms > 980'000 && ms <= 1'000'000) << k << " PTTL " << p;
    }
    const std::string p = Cmd(c, {"PTTL", "log:changed"});
    EXPECT_TRUE(p.size() > 1 && std::stoll(p.substr(1)) > 480'000 &&
                std::stoll(p.substr(1)) <= 500'000)
        << p;
    EXPECT_EQ(Cmd(c, {"PTTL", "log:persisted"}), ":-1");
    EXPECT_EQ(Cmd(c, {"GET", "log:persisted"}), "$p");
  };
  {
    Client c = Connect(s);
    EXPECT_EQ(InfoU(c, "loaded_keys"), 4u) << "expired keys were loaded";
    check(c);
    // The start-up snapshot (logs were replayed) carries the TTLs on.
    ASSERT_TRUE(WaitSaves(c, 1));
  }
  Stop(s, SIGQUIT);
  s = Start(o);
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  EXPECT_EQ(InfoU(c, "loaded_log_records"), 0u);
  check(c);
}

// ---------------------------------------------------------------------------
// 6. Torn or garbage log tails: cut, saved aside, the rest loads.

class PersistTailTest : public PersistTest {
 protected:
  static constexpr int kKeys = 10;
  static std::string Val(int i) { return std::string(200, static_cast<char>('A' + i)); }

  // Writes the keys through one connection (one worker, one log file) and
  // kills the server; returns that log file's path.
  std::string WriteAndKill() {
    Opts o;
    o.fsync = "no";
    Server* s = Start(o);
    if (!s) return "";
    {
      Client c = Connect(s);
      for (int i = 0; i < kKeys; i++)
        EXPECT_EQ(Cmd(c, {"SET", "torn:" + std::to_string(i), Val(i)}), "+OK");
    }
    Kill9(s);
    std::vector<std::string> with_records;
    for (const auto& n : Matching(data_, IsLog))
      if (fs::file_size(data_ + "/" + n) > 64) with_records.push_back(n);
    EXPECT_EQ(with_records.size(), 1u) << Listing(data_);
    return with_records.empty() ? "" : data_ + "/" + with_records[0];
  }

  // The ".tail-" files beside `log`.
  std::vector<std::string> Tails(const std::string& log) {
    std::vector<std::string> v;
    const std::string base = fs::path(log).filename().string() + ".tail-";
    for (const auto& n : Names(data_))
      if (n.rfind(base, 0) == 0) v.push_back(data_ + "/" + n);
    return v;
  }

  // After a load that cut `cut`: a snapshot folds the logs in, and the next
  // start loads the same keys with nothing more to cut.
  void ExpectStableAfterRestart(Server* s, int keys) {
    {
      Client c = Connect(s);
      ASSERT_TRUE(WaitSaves(c, 1));
    }
    Stop(s, SIGQUIT);
    s = Start();
    ASSERT_NE(s, nullptr);
    Client c = Connect(s);
    EXPECT_EQ(InfoU(c, "loading_dropped_tail_bytes"), 0u);
    EXPECT_EQ(InfoU(c, "loaded_keys"), static_cast<uint64_t>(keys));
    for (int i = 0; i < keys; i++)
      EXPECT_EQ(Cmd(c, {"GET", "torn:" + std::to_string(i)}), "$" + Val(i));
  }
};

TEST_F(PersistTailTest, TornLastRecordIsCutAndSavedAside) {
  const std::string log = WriteAndKill();
  ASSERT_FALSE(log.empty());
  const std::string whole = ReadFile(log);
  const std::string cut = whole.substr(0, whole.size() - 50);  // ends inside the last record
  ASSERT_EQ(truncate(log.c_str(), static_cast<off_t>(cut.size())), 0);

  Server* s = Start();
  ASSERT_NE(s, nullptr);
  {
    Client c = Connect(s);
    const uint64_t dropped = InfoU(c, "loading_dropped_tail_bytes");
    EXPECT_GT(dropped, 0u);
    EXPECT_LT(dropped, 260u) << "more than the torn record was dropped";
    EXPECT_EQ(InfoU(c, "loaded_keys"), static_cast<uint64_t>(kKeys - 1));
    for (int i = 0; i < kKeys - 1; i++)
      EXPECT_EQ(Cmd(c, {"GET", "torn:" + std::to_string(i)}), "$" + Val(i));
    EXPECT_EQ(Cmd(c, {"GET", "torn:" + std::to_string(kKeys - 1)}), "(nil)");
    const auto tails = Tails(log);
    ASSERT_EQ(tails.size(), 1u) << Listing(data_);
    EXPECT_EQ(ReadFile(tails[0]), cut.substr(cut.size() - std::min<size_t>(dropped, cut.size())));
    EXPECT_NE(s->Log().find("dropped the last " + std::to_string(dropped) + " bytes"),
              std::string::npos)
        << s->Log();
  }
  ExpectStableAfterRestart(s, kKeys - 1);
}

TEST_F(PersistTailTest, GarbageAfterLastRecordIsCutAndSavedAside) {
  const std::string log = WriteAndKill();
  ASSERT_FALSE(log.empty());
  const std::string garbage = RandomBytes(100, Seed());
  {
    std::ofstream o(log, std::ios::binary | std::ios::app);
    o << garbage;
  }
  Server* s = Start();
  ASSERT_NE(s, nullptr);
  {
    Client c = Connect(s);
    EXPECT_EQ(InfoU(c, "loading_dropped_tail_bytes"), garbage.size());
    EXPECT_EQ(InfoU(c, "loaded_keys"), static_cast<uint64_t>(kKeys));
    for (int i = 0; i < kKeys; i++)
      EXPECT_EQ(Cmd(c, {"GET", "torn:" + std::to_string(i)}), "$" + Val(i));
    const auto tails = Tails(log);
    ASSERT_EQ(tails.size(), 1u) << Listing(data_);
    EXPECT_EQ(ReadFile(tails[0]), garbage);
  }
  ExpectStableAfterRestart(s, kKeys);
}

// ---------------------------------------------------------------------------
// 7. A full disk: refused writes, withheld replies, nothing acknowledged lost.

class PersistDiskFullTest : public PersistTest,
                            public ::testing::WithParamInterface<std::string> {};

TEST_P(PersistDiskFullTest, FullDiskRefusesWritesAndKeepsEveryAckedOne) {
  if (geteuid() != 0) GTEST_SKIP() << "mounting a small tmpfs needs root";
  const std::string dir = NewDir("full");
  if (mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=256k,mode=0755") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs on " << dir << ": " << std::strerror(errno);
  mounts_.push_back(dir);
  Opts o;
  o.fsync = GetParam();
  o.dir = dir;
  o.http = true;
  Server* s = Start(o);
  ASSERT_NE(s, nullptr);
  const uint16_t port = s->Port("resp");

  std::vector<Client> lanes;
  std::vector<int> on;
  ASSERT_TRUE(ConnectSpread(port, 2, 2, &lanes, &on));
  std::map<std::string, std::string> acked;
  std::set<int> refusing;  // workers that answered MISCONF
  uint64_t closed = 0, n = 0;
  // One write on lane l; false if the reply was neither +OK nor MISCONF nor a close.
  auto write = [&](size_t l, std::string* reply) {
    const std::string k = "full:" + std::to_string(n),
                      v = std::string(1000, static_cast<char>('a' + n % 26));
    n++;
    std::string r;
    if (!lanes[l].SendAll(Resp({"SET", k, v})) || !ReadReply(lanes[l], &r, 15000)) {
      // Withheld and closed: never acknowledged.
      EXPECT_TRUE(lanes[l].WaitClosed(5000)) << "no reply, but the connection stayed open";
      closed++;
      EXPECT_TRUE(ConnectToWorker(&lanes[l], port, on[l]));
      *reply = "<closed>";
      return true;
    }
    *reply = r;
    if (r == "+OK") {
      acked[k] = v;
      return true;
    }
    if (r.rfind("-MISCONF Errors writing to the append-only log: ", 0) == 0) {
      refusing.insert(on[l]);
      return true;
    }
    ADD_FAILURE() << "unexpected reply to SET " << k << ": " << r;
    return false;
  };
  std::string r;
  for (int i = 0; i < 3000 && refusing.size() < 2; i++)
    ASSERT_TRUE(write(static_cast<size_t>(i % 2), &r));
  ASSERT_EQ(refusing.size(), 2u) << "both workers should refuse writes on a full disk; "
                                 << acked.size() << " acknowledged, " << closed << " closed\n"
                                 << Listing(dir);
  EXPECT_GT(acked.size(), 50u);
  EXPECT_GE(closed, 1u)
      << "the write whose log write failed first was waiting for it: its connection closes";
  for (size_t l = 0; l < 2; l++) {
    const std::string info = InfoPersist(lanes[l]);
    EXPECT_EQ(Field(info, "aof_last_write_status"), "err") << info;
    EXPECT_NE(Field(info, "persistence_last_error").find("No space left on device"),
              std::string::npos)
        << info;
    EXPECT_NE(Field(info, "aof_write_errors"), "0") << info;
    // Reads still work.
    EXPECT_EQ(Cmd(lanes[l], {"GET", acked.begin()->first}), "$" + acked.begin()->second);
  }
  const std::string save = Cmd(lanes[0], {"SAVE"});
  EXPECT_EQ(save.rfind("-ERR snapshot failed: ", 0), 0u) << save;
  EXPECT_NE(save.find("No space left on device"), std::string::npos) << save;
  EXPECT_EQ(Field(InfoPersist(lanes[1]), "rdb_last_bgsave_status"), "err");
  const uint16_t http = s->Port("http");
  EXPECT_EQ(
      HttpStatus(http,
                 "PUT /kv/http-full HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nx"),
      503);
  EXPECT_EQ(HttpStatus(http, "DELETE /kv/" + acked.begin()->first +
                                 " HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            503);

  // Room again: each worker writes what it kept and takes writes again.
  ASSERT_EQ(mount("tmpfs", dir.c_str(), "tmpfs", MS_REMOUNT, "size=16m,mode=0755"), 0)
      << std::strerror(errno);
  for (size_t l = 0; l < 2; l++) {
    EXPECT_TRUE(WaitFor([&] { return write(l, &r) && r == "+OK"; }, 10000, 50))
        << "lane " << l << ": " << r;
    EXPECT_EQ(Field(InfoPersist(lanes[l]), "aof_last_write_status"), "ok");
    for (int i = 0; i < 10; i++) {
      ASSERT_TRUE(write(l, &r));
      EXPECT_EQ(r, "+OK");
    }
  }
  EXPECT_EQ(Cmd(lanes[1], {"SAVE"}), "+OK");
  EXPECT_EQ(Field(InfoPersist(lanes[0]), "rdb_last_bgsave_status"), "ok");
  EXPECT_EQ(ReadFile(dir + "/snapshot.status").rfind("ok ", 0), 0u);
  for (size_t l = 0; l < 2; l++) {
    ASSERT_TRUE(write(l, &r));
    EXPECT_EQ(r, "+OK");
  }
  lanes.clear();
  Kill9(s);

  // The files, on a disk with room: every acknowledged write is there.
  const std::string copy = NewDir("copy");
  std::string out;
  ASSERT_EQ(Sh("cp -a " + dir + "/. " + copy + "/", &out), 0) << out;
  o.dir = copy;
  o.http = false;
  s = Start(o);
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  std::vector<std::string> keys;
  for (const auto& [k, v] : acked) keys.push_back(k);
  std::vector<std::optional<std::string>> got;
  ASSERT_TRUE(MGet(c, keys, &got));
  size_t missing = 0;
  for (size_t i = 0; i < keys.size(); i++) {
    if (got[i] == acked[keys[i]]) continue;
    if (++missing <= 5)
      ADD_FAILURE() << "acknowledged " << keys[i] << " is " << (got[i] ? "wrong" : "missing");
  }
  EXPECT_EQ(missing, 0u) << "of " << keys.size() << " acknowledged writes";
  std::fprintf(stderr, "fsync %s: %zu acknowledged, %llu connections closed unacknowledged\n",
               GetParam().c_str(), acked.size(), static_cast<unsigned long long>(closed));
}

INSTANTIATE_TEST_SUITE_P(Fsync, PersistDiskFullTest, ::testing::Values("always", "everysec"),
                         [](const auto& i) { return i.param; });

// ---------------------------------------------------------------------------
// 8. A damaged snapshot stops the start.

TEST_F(PersistTest, DamagedSnapshotStopsStartNamingTheFile) {
  Server* s = Start();
  ASSERT_NE(s, nullptr);
  {
    Client c = Connect(s);
    for (int i = 0; i < 50; i++)
      ASSERT_EQ(Cmd(c, {"SET", "d:" + std::to_string(i), std::string(100, 'd')}), "+OK");
    ASSERT_EQ(Cmd(c, {"SAVE"}), "+OK");
    ASSERT_TRUE(WaitFor([&] { return Matching(data_, IsLog).empty(); }, 5000)) << Listing(data_);
  }
  Stop(s, SIGQUIT);
  const auto snaps = Matching(data_, IsSnapshot);
  ASSERT_EQ(snaps.size(), 1u);
  const std::string path = data_ + "/" + snaps[0];
  const std::string good = ReadFile(path);
  ASSERT_GT(good.size(), 1000u);

  struct Damage {
    const char* what;
    std::string bytes;
  };
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x40;
  const std::vector<Damage> damages = {
      {"a flipped byte", flipped},
      {"cut short", good.substr(0, good.size() - 30)},
      {"cut inside the header", good.substr(0, 20)},
  };
  for (const auto& d : damages) {
    SCOPED_TRACE(d.what);
    WriteAll(path, d.bytes);
    std::string said;
    ExpectStartFails(Opts{}, &said);
    EXPECT_NE(said.find(path), std::string::npos) << said;
    EXPECT_NE(said.find("damaged"), std::string::npos) << said;
    EXPECT_EQ(ReadFile(path), d.bytes) << "the damaged snapshot must be left as it is";
  }
  // As the message says: moved out of the folder, the server starts (without its data).
  ASSERT_EQ(std::rename(path.c_str(), (NewDir("aside") + "/" + snaps[0]).c_str()), 0);
  s = Start();
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  EXPECT_EQ(Cmd(c, {"DBSIZE"}), ":0");
}

// Data the configured store cannot hold stops the start (rather than load
// part of it), and the files stay as they were.
TEST_F(PersistTest, DataTheStoreCannotHoldStopsTheStart) {
  Server* s = Start();
  ASSERT_NE(s, nullptr);
  const int n = 240;
  const std::string v(100 * 1024, 'v');
  {
    Client c = Connect(s);
    for (int i = 0; i < n; i++) {
      ASSERT_EQ(Cmd(c, {"SET", "big:" + std::to_string(i), v}), "+OK");
      if (i == n / 2) {
        ASSERT_EQ(Cmd(c, {"SAVE"}), "+OK");  // half in the snapshot, half in the log
      }
    }
  }
  Stop(s, SIGQUIT);
  const std::string before = Listing(data_);

  std::string said;
  Opts small;
  small.top = "shared_memory: 24m\n";
  small.kv = "  shards: 2\n  max_value_bytes: 256k\n  large_memory: 1m\n";
  ExpectStartFails(small, &said);
  EXPECT_NE(said.find("raise shared_memory"), std::string::npos) << said;
  EXPECT_NE(said.find(data_), std::string::npos) << said;

  Opts narrow;
  narrow.kv = "  max_value_bytes: 64k\n";
  ExpectStartFails(narrow, &said);
  EXPECT_NE(said.find("max_value_bytes"), std::string::npos) << said;
  EXPECT_EQ(Listing(data_), before) << "a refused start changed the data folder";

  s = Start();
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  EXPECT_EQ(InfoU(c, "loaded_keys"), static_cast<uint64_t>(n));
  EXPECT_EQ(Cmd(c, {"GET", "big:0"}), "$" + v);
  EXPECT_EQ(Cmd(c, {"GET", "big:" + std::to_string(n - 1)}), "$" + v);
}

// ---------------------------------------------------------------------------
// 9. Persistence off, and one server per folder.

TEST_F(PersistTest, WithoutTheSectionPersistenceIsOff) {
  Opts o;
  o.persistence = false;
  Server* s = Start(o);
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  EXPECT_EQ(Cmd(c, {"SET", "a", "1"}), "+OK");
  const std::string info = InfoPersist(c);
  EXPECT_EQ(Field(info, "persistence_enabled"), "0") << info;
  EXPECT_EQ(Cmd(c, {"BGSAVE"}).rfind("-ERR", 0), 0u);
  EXPECT_EQ(Cmd(c, {"SAVE"}).rfind("-ERR", 0), 0u);
  EXPECT_EQ(Cmd(c, {"LASTSAVE"}), ":0");
  EXPECT_TRUE(s->WaitLog("persistence is off"));

  // `enabled: false` in the section: off too, and the folder is not touched.
  Opts off;
  off.persist_more = "  enabled: false\n";
  s = Start(off);
  ASSERT_NE(s, nullptr);
  Client d = Connect(s);
  EXPECT_EQ(Field(InfoPersist(d), "persistence_enabled"), "0");
  EXPECT_EQ(Cmd(d, {"SET", "a", "1"}), "+OK");
  EXPECT_TRUE(Names(data_).empty()) << Listing(data_);
}

TEST_F(PersistTest, SecondServerOnTheSameFolderIsRefused) {
  Server* s = Start();
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  EXPECT_EQ(Field(InfoPersist(c), "persistence_enabled"), "1");
  EXPECT_TRUE(fs::exists(data_ + "/LOCK"));
  std::string said;
  ExpectStartFails(Opts{}, &said);
  EXPECT_NE(said.find("in use by another preforkd"), std::string::npos) << said;
  EXPECT_EQ(Cmd(c, {"PING"}), "+PONG");
}

}  // namespace
// The read-modify-write commands (each one locked section, logged as one
// record) replay to the state they acknowledged, after a kill -9.
TEST_F(PersistTest, ReadModifyWriteCommandsReplayAfterKill9) {
  Opts o;
  o.fsync = "always";
  Server* s = Start(o);
  ASSERT_NE(s, nullptr);
  {
    Client c = Connect(s);
    ASSERT_EQ(Cmd(c, {"SET", "a", "hello"}), "+OK");
    EXPECT_EQ(Cmd(c, {"APPEND", "a", " world"}), ":11");
    EXPECT_EQ(Cmd(c, {"SETRANGE", "a", "0", "H"}), ":11");
    EXPECT_EQ(Cmd(c, {"RENAME", "a", "b"}), "+OK");
    EXPECT_EQ(Cmd(c, {"COPY", "b", "c"}), ":1");
    EXPECT_EQ(Cmd(c, {"GETDEL", "c"}), "$Hello world");
    EXPECT_EQ(Cmd(c, {"SETBIT", "bits", "3", "1"}), ":0");
    EXPECT_EQ(Cmd(c, {"BITOP", "NOT", "nbits", "bits"}), ":1");
    EXPECT_EQ(Cmd(c, {"BITFIELD", "bf", "SET", "u8", "8", "65"}), "[:0]");
    EXPECT_EQ(Cmd(c, {"INCRBYFLOAT", "f", "1.5"}), "$1.5");
    EXPECT_EQ(Cmd(c, {"MSETNX", "m1", "x", "m2", "y"}), ":1");
    ASSERT_EQ(Cmd(c, {"SET", "t", "v"}), "+OK");
    EXPECT_EQ(Cmd(c, {"EXPIRE", "t", "100000", "NX"}), ":1");
    ASSERT_EQ(Cmd(c, {"SET", "p", "v", "EX", "100000"}), "+OK");
    EXPECT_EQ(Cmd(c, {"GETEX", "p", "PERSIST"}), "$v");
  }
  Kill9(s);
  s = Start(o);
  ASSERT_NE(s, nullptr);
  Client c = Connect(s);
  EXPECT_EQ(Cmd(c, {"GET", "b"}), "$Hello world");
  EXPECT_EQ(Cmd(c, {"EXISTS", "a", "c"}), ":0");
  EXPECT_EQ(Cmd(c, {"GETBIT", "bits", "3"}), ":1");
  EXPECT_EQ(Cmd(c, {"GETBIT", "nbits", "3"}), ":0");
  EXPECT_EQ(Cmd(c, {"GETBIT", "nbits", "0"}), ":1");
  EXPECT_EQ(Cmd(c, {"GETRANGE", "bf", "1", "1"}), "$A");
  EXPECT_EQ(Cmd(c, {"GET", "f"}), "$1.5");
  EXPECT_EQ(Cmd(c, {"GET", "m2"}), "$y");
  EXPECT_NE(Cmd(c, {"EXPIRETIME", "t"}), ":-1");
  EXPECT_EQ(Cmd(c, {"TTL", "p"}), ":-1");
}

}  // namespace pf::test
