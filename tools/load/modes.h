// tools/load/modes.h: what pf-load sends and what it accepts back, one small class per mode.
// The driver (pf_load.cc) owns sockets, timing and counting; a mode only writes requests
// and judges responses, so a new mode (a SET/GET mix, pub/sub, chat) is one more class here.
#pragma once

#include <event2/buffer.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pf::load {

// splitmix64: fast, good enough for payloads and key choice; one per thread.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t Below(uint64_t n) { return static_cast<uint64_t>((__uint128_t{Next()} * n) >> 64); }
  double Unit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // Fills dst with bytes drawn from alphabet (at most 256 symbols).
  void Fill(char* dst, size_t n, std::string_view alphabet);

 private:
  uint64_t state_;
};

// Finds '\n'-terminated lines in an evbuffer without rescanning bytes already searched,
// so a large line arriving in many reads costs O(size) in total.
class LineReader {
 public:
  // Length of the first line including its '\n', or 0 when no full line is buffered yet.
  size_t NextLine(evbuffer* in);
  void Reset() { scanned_ = 0; }

 private:
  size_t scanned_ = 0;
};

// Parameters every mode may read; filled from the command line.
struct ModeParams {
  size_t size = 64;        // payload bytes (echo line, kv-json value)
  double get_ratio = 0.9;  // kv-json
  uint64_t keys = 10000;   // kv-json
  unsigned pipeline = 1;   // upper bound of requests in flight on one connection
};

enum class Verdict {
  kNeedMore,  // no complete response buffered yet
  kOk,        // one response consumed, and it was right
  kMismatch,  // one response consumed, and it was wrong; the framing is still intact
  kBroken,    // the stream cannot be parsed any further (e.g. line over the limit): reconnect
};

// The protocol state of one connection. Requests are answered in order: the session keeps
// a FIFO of what it expects, as deep as the pipeline.
class Session {
 public:
  virtual ~Session() = default;
  // Appends one request to out.
  virtual void WriteRequest(evbuffer* out, Rng& rng) = 0;
  // Judges the oldest outstanding request's response, consuming it unless kNeedMore.
  virtual Verdict ReadResponse(evbuffer* in) = 0;
  // The connection was dropped: forget everything in flight.
  virtual void Reset() = 0;
  // After kMismatch/kBroken: a short description (expected vs got) for diagnostics.
  const std::string& Problem() const { return problem_; }

 protected:
  void SetProblem(std::string_view what, std::string_view expected, evbuffer* in, size_t len);
  std::string problem_;
};

class Mode {
 public:
  virtual ~Mode() = default;
  virtual std::string_view Name() const = 0;
  virtual uint16_t DefaultPort() const = 0;
  virtual std::unique_ptr<Session> NewSession() const = 0;
};

// nullptr if name is not a known mode.
std::unique_ptr<Mode> MakeMode(std::string_view name, const ModeParams& params);
// "echo|kv-json|resp-ping", for usage text and errors.
std::string_view ModeNames();

}  // namespace pf::load
