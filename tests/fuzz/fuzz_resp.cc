// tests/fuzz/fuzz_resp.cc: libFuzzer target for the RESP2 request parser.
// Invariants: parsing the input at once and in random chunks gives the same
// commands and the same error; `need` always exceeds what is buffered; every
// command re-encoded as multibulk parses back to the same argv.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "worker/resp/parser.h"
#include "worker/resp/writer.h"

namespace {

using Argv = std::vector<std::string>;

struct Outcome {
  std::vector<Argv> commands;
  std::string error;
  bool operator==(const Outcome&) const = default;
};

void Check(bool ok) {
  if (!ok) abort();
}

// Feeds `in` in pieces of the sizes drawn from `rng` (0 = all at once).
Outcome Run(std::string_view in, const pf::RespLimits& limits, uint32_t rng) {
  pf::RespParser p(limits);
  std::string buf;
  Outcome out;
  size_t need = 1;
  size_t i = 0;
  while (i < in.size() && out.error.empty()) {
    size_t step = in.size() - i;
    if (rng != 0) {
      rng = rng * 1103515245u + 12345u;
      step = std::min<size_t>(step, 1 + (rng >> 16) % 17);
    }
    buf.append(in.substr(i, step));
    i += step;
    if (buf.size() < need) continue;  // the caller's side of the `need` contract
    for (;;) {
      pf::RespParseResult r = p.Parse(buf);
      if (r.kind == pf::RespParseResult::kError) {
        out.error = std::string(r.error);
        Check(!out.error.empty());
        break;
      }
      Check(r.consumed <= buf.size());
      if (r.kind == pf::RespParseResult::kCommand) {
        Check(!r.argv.empty());
        Argv a;
        for (auto v : r.argv) a.emplace_back(v);
        out.commands.push_back(std::move(a));
        buf.erase(0, r.consumed);
        need = 1;
        continue;
      }
      buf.erase(0, r.consumed);
      Check(r.need > buf.size());
      need = r.need;
      break;
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  pf::RespLimits limits;
  if (data[0] & 1) {  // small limits, so the fuzzer reaches them
    limits.max_line_bytes = 32;
    limits.max_bulk_bytes = 64;
    limits.max_multibulk_len = 8;
    limits.max_request_bytes = 100;
  }
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  Outcome whole = Run(in, limits, 0);
  Check(Run(in, limits, 1u + data[0]) == whole);
  Check(Run(in, limits, 7919u * (1u + data[0])) == whole);

  // Re-encode every command as multibulk: it must parse back unchanged.
  std::string enc;
  pf::RespStringWriter w(pf::StringSink{&enc});
  for (const Argv& a : whole.commands) {
    w.ArrayBegin(a.size());
    for (const std::string& s : a) w.Bulk(s);
  }
  Outcome again = Run(enc, pf::RespLimits{}, 0);
  Check(again.error.empty() && again.commands == whole.commands);
  return 0;
}
