// tools/load/modes.cc: pf-load's modes (echo, kv-json, resp-ping, resp-multi): request builders and
// response checkers. Buffers are sized once per connection; the request path never allocates.
#include "modes.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <optional>

namespace pf::load {
namespace {

// Printable ASCII without space, so a line never trims to something else on the server.
constexpr std::string_view kPrintable =
    "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`"
    "abcdefghijklmnopqrstuvwxyz{|}~";
// Safe inside a JSON string without escaping.
constexpr std::string_view kAlnum =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

// Compares the first want.size() bytes of in with want, without copying or draining.
bool BufferStartsWith(evbuffer* in, std::string_view want) {
  if (evbuffer_get_length(in) < want.size()) return false;
  evbuffer_ptr pos;
  evbuffer_ptr_set(in, &pos, 0, EVBUFFER_PTR_SET);
  size_t off = 0;
  while (off < want.size()) {
    evbuffer_iovec v;
    if (evbuffer_peek(in, static_cast<ev_ssize_t>(want.size() - off), &pos, &v, 1) < 1) {
      return false;
    }
    const size_t n = std::min(v.iov_len, want.size() - off);
    if (n == 0 || std::memcmp(v.iov_base, want.data() + off, n) != 0) return false;
    off += n;
    evbuffer_ptr_set(in, &pos, n, EVBUFFER_PTR_ADD);
  }
  return true;
}

// Value after `"name"` + optional spaces + ':' + optional spaces, in a flat JSON line.
std::optional<std::string_view> JsonFieldValue(std::string_view line, std::string_view quoted) {
  size_t at = line.find(quoted);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = line.substr(at + quoted.size());
  auto skip_ws = [&rest] {
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
  };
  skip_ws();
  if (rest.empty() || rest.front() != ':') return std::nullopt;
  rest.remove_prefix(1);
  skip_ws();
  return rest;
}

void AppendUint(std::string& s, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  s.append(buf, end);
}

// ---- echo: a random printable line of --size bytes, expected back byte for byte ----------

class EchoSession final : public Session {
 public:
  explicit EchoSession(const ModeParams& p) : size_(p.size), slots_(p.pipeline) {
    for (auto& s : slots_) s.assign(size_ + 1, '\n');
  }

  void WriteRequest(evbuffer* out, Rng& rng) override {
    std::string& line = slots_[(head_ + count_) % slots_.size()];
    do {
      rng.Fill(line.data(), size_, kPrintable);
    } while (IsQuit(line));  // the echo protocol closes on "quit"
    evbuffer_add(out, line.data(), line.size());
    ++count_;
  }

  Verdict ReadResponse(evbuffer* in) override {
    if (count_ == 0) return Verdict::kNeedMore;
    const std::string& want = slots_[head_];
    const size_t len = reader_.NextLine(in);
    if (len == 0) {
      if (evbuffer_get_length(in) <= want.size()) return Verdict::kNeedMore;
      SetProblem("line longer than sent", want, in, evbuffer_get_length(in));
      return Verdict::kBroken;
    }
    Verdict v = Verdict::kOk;
    if (len != want.size() || !BufferStartsWith(in, want)) {
      SetProblem("echo differs", want, in, len);
      v = Verdict::kMismatch;
    }
    evbuffer_drain(in, len);
    head_ = (head_ + 1) % slots_.size();
    --count_;
    return v;
  }

  void Reset() override {
    head_ = count_ = 0;
    reader_.Reset();
  }

 private:
  bool IsQuit(const std::string& line) const {
    if (size_ != 4) return false;
    std::string_view w(line.data(), 4);
    return (w[0] | 0x20) == 'q' && (w[1] | 0x20) == 'u' && (w[2] | 0x20) == 'i' &&
           (w[3] | 0x20) == 't';
  }

  size_t size_;
  std::vector<std::string> slots_;  // what was sent, per request in flight
  size_t head_ = 0;
  size_t count_ = 0;
  LineReader reader_;
};

class EchoMode final : public Mode {
 public:
  explicit EchoMode(const ModeParams& p) : params_(p) {}
  std::string_view Name() const override { return "echo"; }
  uint16_t DefaultPort() const override { return 7007; }
  std::unique_ptr<Session> NewSession() const override {
    return std::make_unique<EchoSession>(params_);
  }

 private:
  ModeParams params_;
};

// ---- kv-json: SET/GET mix over keys k0..k(N-1), one JSON object a line -------------------

class KvJsonSession final : public Session {
 public:
  explicit KvJsonSession(const ModeParams& p) : params_(p), slots_(p.pipeline) {
    req_.reserve(p.size + 96);
    line_.reserve(std::min<size_t>(MaxLine(), 64 * 1024));
  }

  void WriteRequest(evbuffer* out, Rng& rng) override {
    Pending& slot = slots_[(head_ + count_) % slots_.size()];
    slot.id = next_id_++;
    slot.is_get = rng.Unit() < params_.get_ratio;
    req_.clear();
    req_ += "{\"id\":";
    AppendUint(req_, slot.id);
    req_ += slot.is_get ? ",\"action\":\"GET\",\"key\":\"k" : ",\"action\":\"SET\",\"key\":\"k";
    AppendUint(req_, rng.Below(params_.keys));
    if (slot.is_get) {
      req_ += "\"}\n";
    } else {
      req_ += "\",\"value\":\"";
      const size_t at = req_.size();
      req_.resize(at + params_.size);
      rng.Fill(req_.data() + at, params_.size, kAlnum);
      req_ += "\"}\n";
    }
    evbuffer_add(out, req_.data(), req_.size());
    ++count_;
  }

  Verdict ReadResponse(evbuffer* in) override {
    if (count_ == 0) return Verdict::kNeedMore;
    const size_t len = reader_.NextLine(in);
    if (len == 0) {
      if (evbuffer_get_length(in) <= MaxLine()) return Verdict::kNeedMore;
      SetProblem("response line over limit", "", in, evbuffer_get_length(in));
      return Verdict::kBroken;
    }
    const Pending want = slots_[head_];
    head_ = (head_ + 1) % slots_.size();
    --count_;
    if (len > MaxLine()) {
      SetProblem("response line over limit", "", in, len);
      evbuffer_drain(in, len);
      return Verdict::kMismatch;
    }
    line_.resize(len);
    evbuffer_remove(in, line_.data(), len);
    std::string_view line(line_.data(), len - 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    bool ok = false;
    if (auto v = JsonFieldValue(line, "\"ok\"")) {
      if (v->starts_with("true")) {
        ok = true;
      } else if (v->starts_with("false")) {
        ok = want.is_get && line.find("NOT_FOUND") != std::string_view::npos;
      }
    }
    if (ok) {
      if (auto v = JsonFieldValue(line, "\"id\"")) {  // id is optional; when present it must match
        uint64_t id = 0;
        auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), id);
        ok = ec == std::errc{} && id == want.id;
      }
    }
    if (!ok) {
      problem_.assign(want.is_get ? "GET id " : "SET id ");
      AppendUint(problem_, want.id);
      problem_ += ": got ";
      problem_.append(line.substr(0, 120));
      return Verdict::kMismatch;
    }
    return Verdict::kOk;
  }

  void Reset() override {
    head_ = count_ = 0;
    reader_.Reset();
  }

 private:
  struct Pending {
    uint64_t id = 0;
    bool is_get = false;
  };
  // A GET answer carries the value, which the server may escape (up to 6 bytes per byte).
  size_t MaxLine() const { return 4096 + 6 * params_.size; }

  ModeParams params_;
  std::vector<Pending> slots_;
  size_t head_ = 0;
  size_t count_ = 0;
  uint64_t next_id_ = 1;
  std::string req_;
  std::string line_;
  LineReader reader_;
};

class KvJsonMode final : public Mode {
 public:
  explicit KvJsonMode(const ModeParams& p) : params_(p) {}
  std::string_view Name() const override { return "kv-json"; }
  uint16_t DefaultPort() const override { return 7380; }
  std::unique_ptr<Session> NewSession() const override {
    return std::make_unique<KvJsonSession>(params_);
  }

 private:
  ModeParams params_;
};

// ---- resp-ping: inline PING, expecting +PONG ---------------------------------------------

class RespPingSession final : public Session {
 public:
  void WriteRequest(evbuffer* out, Rng&) override {
    evbuffer_add(out, kPing.data(), kPing.size());
    ++count_;
  }

  Verdict ReadResponse(evbuffer* in) override {
    if (count_ == 0) return Verdict::kNeedMore;
    const size_t len = reader_.NextLine(in);
    if (len == 0) {
      if (evbuffer_get_length(in) <= kMaxLine) return Verdict::kNeedMore;
      SetProblem("response line over limit", kPong, in, evbuffer_get_length(in));
      return Verdict::kBroken;
    }
    --count_;
    Verdict v = Verdict::kOk;
    if (len != kPong.size() || !BufferStartsWith(in, kPong)) {
      SetProblem("not +PONG", kPong, in, len);
      v = Verdict::kMismatch;
    }
    evbuffer_drain(in, len);
    return v;
  }

  void Reset() override {
    count_ = 0;
    reader_.Reset();
  }

 private:
  static constexpr std::string_view kPing = "PING\r\n";
  static constexpr std::string_view kPong = "+PONG\r\n";
  static constexpr size_t kMaxLine = 4096;
  size_t count_ = 0;
  LineReader reader_;
};

class RespPingMode final : public Mode {
 public:
  std::string_view Name() const override { return "resp-ping"; }
  uint16_t DefaultPort() const override { return 6380; }
  std::unique_ptr<Session> NewSession() const override {
    return std::make_unique<RespPingSession>();
  }
};

// ---- resp-multi: a MULTI/EXEC transaction of a SET and an INCR --------------------------
// MULTI, SET k<r> <payload>, INCR c<r>, EXEC, pipelined as one request (RESP
// multibulk); the response is its six replies: +OK +QUEUED +QUEUED *2 +OK :N.

class RespMultiSession final : public Session {
 public:
  explicit RespMultiSession(const ModeParams& p) : params_(p), value_(p.size, 'x') {}

  void WriteRequest(evbuffer* out, Rng& rng) override {
    const uint64_t k = rng.Below(params_.keys);
    rng.Fill(value_.data(), value_.size(), kAlnum);
    req_.assign("*1\r\n$5\r\nMULTI\r\n");
    const std::string key = "k" + std::to_string(k), ctr = "c" + std::to_string(k);
    req_ += "*3\r\n$3\r\nSET\r\n$" + std::to_string(key.size()) + "\r\n" + key + "\r\n$" +
            std::to_string(value_.size()) + "\r\n";
    req_ += value_;
    req_ += "\r\n*2\r\n$4\r\nINCR\r\n$" + std::to_string(ctr.size()) + "\r\n" + ctr + "\r\n";
    req_ += "*1\r\n$4\r\nEXEC\r\n";
    evbuffer_add(out, req_.data(), req_.size());
    ++count_;
  }

  Verdict ReadResponse(evbuffer* in) override {
    if (count_ == 0) return Verdict::kNeedMore;
    // The six lines, found without draining until all have arrived.
    const size_t len = evbuffer_get_length(in);
    evbuffer_ptr pos;
    evbuffer_ptr_set(in, &pos, 0, EVBUFFER_PTR_SET);
    size_t end = 0;
    for (int line = 0; line < 6; ++line) {
      const evbuffer_ptr f = evbuffer_search(in, "\n", 1, &pos);
      if (f.pos < 0) {
        if (len <= kMaxReply) return Verdict::kNeedMore;
        SetProblem("transaction reply over limit", kHead, in, len);
        return Verdict::kBroken;
      }
      end = static_cast<size_t>(f.pos) + 1;
      evbuffer_ptr_set(in, &pos, end, EVBUFFER_PTR_SET);
    }
    --count_;
    Verdict v = Verdict::kOk;
    char tail = 0;  // the first byte after the fixed part: INCR's ':'
    if (end > kHead.size() && BufferStartsWith(in, kHead)) {
      evbuffer_ptr at;
      evbuffer_ptr_set(in, &at, kHead.size(), EVBUFFER_PTR_SET);
      evbuffer_copyout_from(in, &at, &tail, 1);
    }
    if (tail != ':') v = Verdict::kMismatch;
    if (v != Verdict::kOk) SetProblem("not a committed transaction", kHead, in, end);
    evbuffer_drain(in, end);
    return v;
  }

  void Reset() override { count_ = 0; }

 private:
  static constexpr std::string_view kHead = "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n";
  static constexpr size_t kMaxReply = 4096;
  ModeParams params_;
  std::string value_, req_;
  size_t count_ = 0;
};

class RespMultiMode final : public Mode {
 public:
  explicit RespMultiMode(const ModeParams& p) : params_(p) {}
  std::string_view Name() const override { return "resp-multi"; }
  uint16_t DefaultPort() const override { return 6380; }
  std::unique_ptr<Session> NewSession() const override {
    return std::make_unique<RespMultiSession>(params_);
  }

 private:
  ModeParams params_;
};

// Shows at most max bytes, escaping anything unprintable.
void AppendEscaped(std::string& out, std::string_view s, size_t max) {
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c >= 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > max) out += "...";
}

}  // namespace

void Rng::Fill(char* dst, size_t n, std::string_view alphabet) {
  const uint64_t k = alphabet.size();
  size_t i = 0;
  while (i < n) {
    uint64_t r = Next();
    for (int b = 0; b < 8 && i < n; ++b, r >>= 8) dst[i++] = alphabet[((r & 0xff) * k) >> 8];
  }
}

size_t LineReader::NextLine(evbuffer* in) {
  const size_t len = evbuffer_get_length(in);
  if (len <= scanned_) return 0;
  evbuffer_ptr start;
  if (evbuffer_ptr_set(in, &start, scanned_, EVBUFFER_PTR_SET) != 0) return 0;
  const evbuffer_ptr found = evbuffer_search(in, "\n", 1, &start);
  if (found.pos < 0) {
    scanned_ = len;
    return 0;
  }
  scanned_ = 0;
  return static_cast<size_t>(found.pos) + 1;
}

void Session::SetProblem(std::string_view what, std::string_view expected, evbuffer* in,
                         size_t len) {
  constexpr size_t kShow = 60;
  char got[kShow + 1];
  const ev_ssize_t n = evbuffer_copyout(in, got, std::min(len, kShow + 1));
  problem_.assign(what);
  if (!expected.empty()) {
    problem_ += ": expected \"";
    AppendEscaped(problem_, expected, kShow);
    problem_ += "\"";
  }
  problem_ += (expected.empty() ? ": got \"" : " got \"");
  AppendEscaped(problem_, std::string_view(got, n > 0 ? static_cast<size_t>(n) : 0), kShow);
  problem_ += "\"";
  if (len > kShow) {
    problem_ += " (";
    AppendUint(problem_, len);
    problem_ += " bytes)";
  }
}

std::unique_ptr<Mode> MakeMode(std::string_view name, const ModeParams& params) {
  if (name == "echo") return std::make_unique<EchoMode>(params);
  if (name == "kv-json") return std::make_unique<KvJsonMode>(params);
  if (name == "resp-ping") return std::make_unique<RespPingMode>();
  if (name == "resp-multi") return std::make_unique<RespMultiMode>(params);
  return nullptr;
}

std::string_view ModeNames() { return "echo|kv-json|resp-ping|resp-multi"; }

}  // namespace pf::load
