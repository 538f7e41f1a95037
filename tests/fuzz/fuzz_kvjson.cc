// tests/fuzz/fuzz_kvjson.cc: libFuzzer target for kv-json framing, request
// parsing and reply rendering. Invariants: framing the input at once and in
// random chunks gives the same lines; a too-long line is never buffered; every
// reply line (error or rendered from the parsed argv) is valid JSON.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "shared/util/line_framer.h"
#include "worker/kvjson/request.h"
#include "worker/kvjson/writer.h"

namespace {

constexpr size_t kMaxLine = 256;

void Check(bool ok) {
  if (!ok) abort();
}

std::vector<std::string> Frame(std::string_view in, uint32_t rng) {
  pf::LineFramer f(kMaxLine);
  std::string buf;
  std::vector<std::string> lines;
  size_t i = 0;
  while (i < in.size()) {
    size_t step = in.size() - i;
    if (rng != 0) {
      rng = rng * 1103515245u + 12345u;
      step = std::min<size_t>(step, 1 + (rng >> 16) % 23);
    }
    buf.append(in.substr(i, step));
    i += step;
    for (;;) {
      auto r = f.Next(buf);
      Check(r.consumed <= buf.size());
      if (r.kind == pf::LineFramer::Result::kLine) {
        Check(r.line.size() <= kMaxLine);
        lines.emplace_back(r.line);
      } else if (r.kind == pf::LineFramer::Result::kTooLong) {
        lines.emplace_back("\x01TOO_LONG");
      }
      buf.erase(0, r.consumed);
      if (r.kind == pf::LineFramer::Result::kNeedMore) break;
    }
    Check(buf.size() <= kMaxLine + 1);
  }
  return lines;
}

void CheckJson(simdjson::dom::parser& p, const std::string& line) {
  Check(!line.empty() && line.back() == '\n');
  simdjson::dom::element e;
  Check(p.parse(line.data(), line.size() - 1).get(e) == simdjson::SUCCESS);
  Check(e.is_object());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> lines = Frame(in, 0);
  Check(Frame(in, 1u + static_cast<uint32_t>(size)) == lines);
  Check(Frame(in, 104729u) == lines);

  static pf::kvjson::RequestParser parser;
  static simdjson::dom::parser check;
  std::string out;
  for (const std::string& line : lines) {
    out.clear();
    if (line == "\x01TOO_LONG") {
      pf::kvjson::WriteJsonError(&out, "", pf::ErrCode::kLineTooLong, "line too long");
      CheckJson(check, out);
      continue;
    }
    pf::kvjson::ParsedLine r = parser.Parse(line);
    if (r.kind == pf::kvjson::ParsedLine::kBlank) continue;
    if (r.kind == pf::kvjson::ParsedLine::kError) {
      pf::kvjson::WriteJsonError(&out, r.id, r.error_code, r.error_message);
      CheckJson(check, out);
      continue;
    }
    Check(!r.argv.empty());
    // Render the argv back as a reply (arbitrary bytes, nested arrays, nils).
    pf::kvjson::JsonReplyWriter w(&out);
    w.Begin(r.id, r.shape);
    w.ArrayBegin(r.argv.size() + 1);
    for (size_t i = 0; i < r.argv.size(); i++) {
      if (i % 3 == 2) {
        w.ArrayBegin(2);
        w.Nil();
      }
      w.Bulk(r.argv[i]);
    }
    w.Integer(static_cast<int64_t>(r.argv.size()));
    w.End();
    CheckJson(check, out);
    out.clear();
    pf::kvjson::JsonReplyWriter w2(&out);
    w2.Begin(r.id, r.shape);
    w2.Bulk(r.argv.back());
    w2.End();
    CheckJson(check, out);
  }
  return 0;
}
