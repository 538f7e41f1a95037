// tests/fuzz/fuzz_persist.cc: libFuzzer target for the persistence parsers
// (shared/persist/format.h): log header, records and their entries, snapshot
// header and blocks, on arbitrary bytes. Invariants: no parser reads outside
// its input; a record or block that decodes re-encodes to the same bytes; a
// header that decodes survives encode + decode; any body framed with its
// length and CRC-32C parses back as exactly one record.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "shared/persist/crc32c.h"
#include "shared/persist/format.h"

namespace {

using namespace pf::persist;

void Check(bool ok) {
  if (!ok) abort();
}

bool Inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

// A record body: if it decodes, re-encoding its entries gives it back.
void CheckEntries(std::string_view body) {
  std::vector<Entry> ents;
  std::string why;
  if (!DecodeEntries(body, &ents, &why)) {
    Check(!why.empty());
    return;
  }
  Check(!ents.empty());
  std::string re;
  RecordBuilder b(&re);
  b.Begin();
  for (const Entry& e : ents) {
    Check(Inside(e.key, body) && Inside(e.value, body));
    switch (e.op) {
      case Op::kPut:
        b.Put(e.shard, e.seq, e.key, e.value, e.expire_at);
        break;
      case Op::kDel:
        b.Del(e.shard, e.seq, e.key);
        break;
      case Op::kClear:
        b.Clear(e.shard, e.seq);
        break;
      default:
        Check(false);
    }
  }
  b.End();
  Check(std::string_view(re).substr(kRecordHeaderBytes) == body);
}

// A snapshot block body: if it decodes, re-encoding gives it back.
void CheckBlock(std::string_view body) {
  std::vector<Item> items;
  bool end = false;
  uint64_t count = 0;
  std::string why;
  if (!DecodeBlock(body, &items, &end, &count, &why)) {
    Check(!why.empty());
    return;
  }
  std::string re;
  if (end) {
    Check(items.empty());
    re = EndMarkerBlock(count);
  } else {
    BeginItemsBlock(&re);
    for (const Item& it : items) {
      Check(Inside(it.key, body) && Inside(it.value, body));
      AppendItem(&re, it.key, it.value, it.expire_at);
    }
    EndBlock(&re, 0);
  }
  Check(std::string_view(re).substr(kRecordHeaderBytes) == body);
}

// Walks the records from `pos`: each one lies inside the data, right after
// its header, and moves pos on; a torn or corrupt one leaves pos alone.
template <typename F>
void Walk(std::string_view d, size_t pos, F&& on_body) {
  for (;;) {
    const size_t at = pos;
    std::string_view body;
    std::string why;
    const Next n = NextRecord(d, &pos, &body, &why);
    if (n == Next::kEnd) {
      Check(at >= d.size());
      return;
    }
    if (n != Next::kRecord) {
      Check(pos == at && !why.empty());
      return;
    }
    Check(pos > at && pos <= d.size());
    Check(body.data() == d.data() + at + kRecordHeaderBytes);
    Check(body.size() == pos - at - kRecordHeaderBytes && !body.empty());
    on_body(body);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view d(reinterpret_cast<const char*>(data), size);
  std::string why;

  // As a log file: the header, then the records after it.
  LogHeader lh;
  if (DecodeLogHeader(d, &lh, &why)) {
    Check(lh.shard_count > 0);
    LogHeader again;
    Check(DecodeLogHeader(EncodeLogHeader(lh), &again, &why));
    Check(again.shard_count == lh.shard_count && again.epoch == lh.epoch && again.gen == lh.gen &&
          again.file_id == lh.file_id && again.k0 == lh.k0 && again.k1 == lh.k1);
  }
  Walk(d, std::min(d.size(), kLogHeaderBytes), CheckEntries);

  // As a snapshot: the header, then the blocks after it.
  SnapHeader sh;
  size_t hsize = 0;
  if (DecodeSnapHeader(d, &sh, &hsize, &why)) {
    Check(hsize == SnapHeaderBytes(sh.shard_count) && hsize <= d.size());
    Check(sh.watermarks.size() == sh.shard_count);
    SnapHeader again;
    size_t again_size = 0;
    Check(DecodeSnapHeader(EncodeSnapHeader(sh), &again, &again_size, &why));
    Check(again_size == hsize && again.watermarks == sh.watermarks && again.epoch == sh.epoch &&
          again.gen == sh.gen && again.created_ms == sh.created_ms && again.k0 == sh.k0 &&
          again.k1 == sh.k1);
    Walk(d, hsize, CheckBlock);
  }

  // The checksums keep random bytes away from the body decoders: also give
  // them the input itself, and records framed from offset 0.
  CheckEntries(d);
  CheckBlock(d);
  Walk(d, 0, [](std::string_view body) {
    CheckEntries(body);
    CheckBlock(body);
  });

  // Any body, framed with its length and checksum, is one whole record; every
  // shorter prefix of the frame is torn.
  if (!d.empty() && d.size() <= 4096) {
    std::string frame(kRecordHeaderBytes, '\0');
    const uint32_t len = static_cast<uint32_t>(d.size()), crc = pf::Crc32c(d);
    std::memcpy(frame.data(), &len, 4);
    std::memcpy(frame.data() + 4, &crc, 4);
    frame.append(d);
    size_t pos = 0;
    std::string_view body;
    Check(NextRecord(frame, &pos, &body, &why) == Next::kRecord && body == d &&
          pos == frame.size());
    for (size_t cut = 1; cut < frame.size(); cut += 1 + cut / 8) {
      pos = 0;
      Check(NextRecord(std::string_view(frame).substr(0, cut), &pos, &body, &why) == Next::kTorn &&
            pos == 0);
    }
  }
  return 0;
}
