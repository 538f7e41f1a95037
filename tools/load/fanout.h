// tools/load/fanout.h: pf-load's fan-out modes: N subscribers on one RESP channel (pubsub) or in
// one chat room (chat), K publishers sending timestamped, sequence-numbered messages; reports
// messages published/s and delivered/s, delivery latency, and order errors.
#pragma once

#include <signal.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace pf::load {

enum class FanoutProtocol { kResp, kChat };

struct FanoutOptions {
  FanoutProtocol protocol = FanoutProtocol::kResp;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string target;  // "127.0.0.1:6379", for the report
  unsigned subscribers = 50;
  unsigned publishers = 1;
  unsigned threads = 1;    // subscriber loops; the publishers get one more thread
  double duration = 10;    // measured seconds
  double warmup = 0;       // seconds of publishing before the measured window
  double timeout = 5;      // a stalled subscriber or publisher is an error after this
  double rate = 0;         // messages/s over all publishers; 0 = as fast as the window allows
  unsigned window = 64;    // messages a publisher may be ahead of its slowest subscriber
  unsigned pipeline = 64;  // PUBLISH replies (chat: own echoes) outstanding per publisher
  size_t size = 64;        // payload bytes (at least the header: publisher:seq:ns:)
  std::string channel;     // resp channel / chat room; "" = a fresh name per run
  bool json = false;
};

// Runs one measurement and prints the report; returns the exit status (0 ok, 1 errors or
// interrupted). The caller blocks `stop_signals` in every thread; this waits for them.
int RunFanout(const FanoutOptions& opt, const sigset_t& stop_signals);

}  // namespace pf::load
