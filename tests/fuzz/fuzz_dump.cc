// tests/fuzz/fuzz_dump.cc: libFuzzer target for RESTORE's payload decoder
// (shared/util/dump_payload.h) on arbitrary bytes, taken both as a whole
// payload and as a body under a footer that checks out (random bytes almost
// never pass the CRC64). Invariants: no read outside the input; nothing
// allocated past the value limit; a string that decodes is within the
// limit, and serializing it decodes back to it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "shared/util/dump_payload.h"

namespace {

using pf::dump::ParseResult;

// Small, so stated lengths past it (LZF bombs) are common in the corpus.
constexpr size_t kFuzzMaxValue = 1 << 16;

void Check(bool ok) {
  if (!ok) abort();
}

void ParseAndCheck(std::string_view payload) {
  std::string scratch;
  std::string_view value;
  uint8_t type = 0;
  const ParseResult r = pf::dump::Parse(payload, kFuzzMaxValue, &scratch, &value, &type);
  // The decompression buffer never grows past the limit (plus std::string's slack).
  Check(scratch.capacity() <= 2 * kFuzzMaxValue + 64);
  if (r == ParseResult::kNotString) Check(type != 0 && pf::dump::TypeName(type) != nullptr);
  if (r != ParseResult::kOk) return;
  Check(type == 0 && value.size() <= kFuzzMaxValue);
  std::string again, scratch2;
  pf::dump::Serialize(value, &again);
  std::string_view back;
  Check(pf::dump::Parse(again, kFuzzMaxValue, &scratch2, &back, &type) == ParseResult::kOk);
  Check(back == value);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  ParseAndCheck(in);
  // The same bytes as a body, with RDB version 10 (or the input's first
  // byte as the version, to reach the version check) and a CRC64 that matches.
  std::string p(in);
  const uint16_t version = size > 0 && (data[0] & 0x80) ? data[0] & 0x0f : 10;
  p.push_back(static_cast<char>(version & 0xff));
  p.push_back(static_cast<char>(version >> 8));
  const uint64_t crc = pf::dump::Crc64(0, p);
  for (int i = 0; i < 8; ++i) p.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  ParseAndCheck(p);
  return 0;
}
