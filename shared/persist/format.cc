// shared/persist/format.cc: see format.h.
#include "shared/persist/format.h"

#include <cstring>

#include "shared/persist/crc32c.h"

namespace pf::persist {
namespace {

constexpr char kLogMagic[8] = {'P', 'F', 'K', 'V', 'L', 'O', 'G', '\n'};
constexpr char kSnapMagic[8] = {'P', 'F', 'K', 'V', 'S', 'N', 'P', '\n'};
constexpr size_t kSnapFixedBytes = 64;

template <typename T>
void Put(std::string* out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out->append(b, sizeof(T));
}
template <typename T>
void PutAt(std::string* out, size_t at, T v) {
  std::memcpy(out->data() + at, &v, sizeof(T));
}
template <typename T>
T Get(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Bounds-checked reader over a body.
struct Reader {
  std::string_view d;
  size_t p = 0;
  bool ok = true;
  template <typename T>
  T Take() {
    if (d.size() - p < sizeof(T)) {
      ok = false;
      return T{};
    }
    T v = Get<T>(d.data() + p);
    p += sizeof(T);
    return v;
  }
  std::string_view Bytes(uint64_t n) {
    if (d.size() - p < n) {
      ok = false;
      return {};
    }
    std::string_view s = d.substr(p, n);
    p += n;
    return s;
  }
  bool done() const { return p == d.size(); }
};

}  // namespace

std::string EncodeLogHeader(const LogHeader& h) {
  std::string o(kLogMagic, 8);
  Put<uint32_t>(&o, kFormatVersion);
  Put<uint32_t>(&o, h.shard_count);
  Put<uint64_t>(&o, h.epoch);
  Put<uint64_t>(&o, h.gen);
  Put<uint64_t>(&o, h.file_id);
  Put<uint64_t>(&o, h.k0);
  Put<uint64_t>(&o, h.k1);
  o.resize(kLogHeaderBytes - 4, '\0');
  Put<uint32_t>(&o, Crc32c(0, o.data(), o.size()));
  return o;
}

bool DecodeLogHeader(std::string_view d, LogHeader* h, std::string* why) {
  if (d.size() < kLogHeaderBytes) {
    *why = "file shorter than its header (" + std::to_string(d.size()) + " bytes)";
    return false;
  }
  if (std::memcmp(d.data(), kLogMagic, 8) != 0) {
    *why = "not a preforkd log (bad magic)";
    return false;
  }
  if (Get<uint32_t>(d.data() + kLogHeaderBytes - 4) != Crc32c(0, d.data(), kLogHeaderBytes - 4)) {
    *why = "header checksum mismatch";
    return false;
  }
  const uint32_t version = Get<uint32_t>(d.data() + 8);
  if (version != kFormatVersion) {
    *why = "format version " + std::to_string(version) + " (this build reads " +
           std::to_string(kFormatVersion) + ")";
    return false;
  }
  h->shard_count = Get<uint32_t>(d.data() + 12);
  h->epoch = Get<uint64_t>(d.data() + 16);
  h->gen = Get<uint64_t>(d.data() + 24);
  h->file_id = Get<uint64_t>(d.data() + 32);
  h->k0 = Get<uint64_t>(d.data() + 40);
  h->k1 = Get<uint64_t>(d.data() + 48);
  if (h->shard_count == 0 || h->shard_count > (1u << 20)) {
    *why = "header says " + std::to_string(h->shard_count) + " shards";
    return false;
  }
  return true;
}

void RecordBuilder::Begin() {
  start_ = out_->size();
  out_->append(kRecordHeaderBytes, '\0');
  open_ = true;
}

void RecordBuilder::Put(uint32_t shard, uint64_t seq, std::string_view key, std::string_view value,
                        int64_t expire_at) {
  persist::Put<uint8_t>(out_, static_cast<uint8_t>(Op::kPut));
  persist::Put<uint32_t>(out_, shard);
  persist::Put<uint64_t>(out_, seq);
  persist::Put<uint32_t>(out_, static_cast<uint32_t>(key.size()));
  persist::Put<uint32_t>(out_, static_cast<uint32_t>(value.size()));
  persist::Put<int64_t>(out_, expire_at);
  out_->append(key);
  out_->append(value);
}

void RecordBuilder::Del(uint32_t shard, uint64_t seq, std::string_view key) {
  persist::Put<uint8_t>(out_, static_cast<uint8_t>(Op::kDel));
  persist::Put<uint32_t>(out_, shard);
  persist::Put<uint64_t>(out_, seq);
  persist::Put<uint32_t>(out_, static_cast<uint32_t>(key.size()));
  out_->append(key);
}

void RecordBuilder::Clear(uint32_t shard, uint64_t seq) {
  persist::Put<uint8_t>(out_, static_cast<uint8_t>(Op::kClear));
  persist::Put<uint32_t>(out_, shard);
  persist::Put<uint64_t>(out_, seq);
}

void RecordBuilder::End() {
  EndBlock(out_, start_);  // log records and snapshot blocks share the framing
  open_ = false;
}

void RecordBuilder::Abort() {
  out_->resize(start_);
  open_ = false;
}

Next NextRecord(std::string_view d, size_t* pos, std::string_view* body, std::string* why) {
  if (*pos >= d.size()) return Next::kEnd;
  const size_t left = d.size() - *pos;
  if (left < kRecordHeaderBytes) {
    *why = "record header cut short (" + std::to_string(left) + " bytes)";
    return Next::kTorn;
  }
  const uint32_t len = Get<uint32_t>(d.data() + *pos);
  const uint32_t crc = Get<uint32_t>(d.data() + *pos + 4);
  if (len == 0 || len > kMaxRecordBytes) {
    *why = "record length " + std::to_string(len) + " out of range";
    return Next::kCorrupt;
  }
  if (left - kRecordHeaderBytes < len) {
    *why = "record of " + std::to_string(len) + " bytes cut short at " +
           std::to_string(left - kRecordHeaderBytes);
    return Next::kTorn;
  }
  const std::string_view b = d.substr(*pos + kRecordHeaderBytes, len);
  if (Crc32c(b) != crc) {
    *why = "record checksum mismatch";
    return Next::kCorrupt;
  }
  *body = b;
  *pos += kRecordHeaderBytes + len;
  return Next::kRecord;
}

bool DecodeEntry(std::string_view body, size_t* pos, Entry* out, std::string* why) {
  Reader r{body, *pos};
  Entry e;
  const uint8_t op = r.Take<uint8_t>();
  e.shard = r.Take<uint32_t>();
  e.seq = r.Take<uint64_t>();
  if (r.ok) {
    switch (static_cast<Op>(op)) {
      case Op::kPut: {
        e.op = Op::kPut;
        const uint32_t kl = r.Take<uint32_t>(), vl = r.Take<uint32_t>();
        e.expire_at = r.Take<int64_t>();
        e.key = r.Bytes(kl);
        e.value = r.Bytes(vl);
        break;
      }
      case Op::kDel:
        e.op = Op::kDel;
        e.key = r.Bytes(r.Take<uint32_t>());
        break;
      case Op::kClear:
        e.op = Op::kClear;
        break;
      default:
        *why = "unknown entry type " + std::to_string(op);
        return false;
    }
  }
  if (!r.ok) {
    *why = "entry runs past the end of its record";
    return false;
  }
  *out = e;
  *pos = r.p;
  return true;
}

bool DecodeEntries(std::string_view body, std::vector<Entry>* out, std::string* why) {
  out->clear();
  size_t pos = 0;
  while (pos < body.size()) {
    Entry e;
    if (!DecodeEntry(body, &pos, &e, why)) return false;
    out->push_back(e);
  }
  if (out->empty()) {
    *why = "empty record";
    return false;
  }
  return true;
}

size_t SnapHeaderBytes(uint32_t shard_count) { return kSnapFixedBytes + 8ull * shard_count + 4; }

std::string EncodeSnapHeader(const SnapHeader& h) {
  std::string o(kSnapMagic, 8);
  Put<uint32_t>(&o, kFormatVersion);
  Put<uint32_t>(&o, h.shard_count);
  Put<uint64_t>(&o, h.epoch);
  Put<uint64_t>(&o, h.gen);
  Put<uint64_t>(&o, h.created_ms);
  Put<uint64_t>(&o, h.k0);
  Put<uint64_t>(&o, h.k1);
  o.resize(kSnapFixedBytes, '\0');
  for (uint32_t i = 0; i < h.shard_count; ++i)
    Put<uint64_t>(&o, i < h.watermarks.size() ? h.watermarks[i] : 0);
  Put<uint32_t>(&o, Crc32c(0, o.data(), o.size()));
  return o;
}

bool DecodeSnapHeader(std::string_view d, SnapHeader* h, size_t* size, std::string* why) {
  if (d.size() < kSnapFixedBytes + 4) {
    *why = "file shorter than a snapshot header";
    return false;
  }
  if (std::memcmp(d.data(), kSnapMagic, 8) != 0) {
    *why = "not a preforkd snapshot (bad magic)";
    return false;
  }
  const uint32_t version = Get<uint32_t>(d.data() + 8);
  if (version != kFormatVersion) {
    *why = "format version " + std::to_string(version) + " (this build reads " +
           std::to_string(kFormatVersion) + ")";
    return false;
  }
  const uint32_t n = Get<uint32_t>(d.data() + 12);
  if (n == 0 || n > (1u << 20)) {
    *why = "header says " + std::to_string(n) + " shards";
    return false;
  }
  const size_t total = SnapHeaderBytes(n);
  if (d.size() < total) {
    *why = "file shorter than its header";
    return false;
  }
  if (Get<uint32_t>(d.data() + total - 4) != Crc32c(0, d.data(), total - 4)) {
    *why = "header checksum mismatch";
    return false;
  }
  h->shard_count = n;
  h->epoch = Get<uint64_t>(d.data() + 16);
  h->gen = Get<uint64_t>(d.data() + 24);
  h->created_ms = Get<uint64_t>(d.data() + 32);
  h->k0 = Get<uint64_t>(d.data() + 40);
  h->k1 = Get<uint64_t>(d.data() + 48);
  h->watermarks.resize(n);
  for (uint32_t i = 0; i < n; ++i)
    h->watermarks[i] = Get<uint64_t>(d.data() + kSnapFixedBytes + 8ull * i);
  *size = total;
  return true;
}

void BeginItemsBlock(std::string* out) {
  out->append(kRecordHeaderBytes, '\0');
  out->push_back('I');
}

void AppendItem(std::string* out, std::string_view key, std::string_view value, int64_t expire_at) {
  Put<uint32_t>(out, static_cast<uint32_t>(key.size()));
  Put<uint32_t>(out, static_cast<uint32_t>(value.size()));
  Put<int64_t>(out, expire_at);
  out->append(key);
  out->append(value);
}

void EndBlock(std::string* out, size_t start) {
  const size_t body = out->size() - start - kRecordHeaderBytes;
  PutAt<uint32_t>(out, start, static_cast<uint32_t>(body));
  PutAt<uint32_t>(out, start + 4, Crc32c(0, out->data() + start + kRecordHeaderBytes, body));
}

std::string EndMarkerBlock(uint64_t items) {
  std::string o(kRecordHeaderBytes, '\0');
  o.push_back('E');
  Put<uint64_t>(&o, items);
  EndBlock(&o, 0);
  return o;
}

bool DecodeBlock(std::string_view body, std::vector<Item>* items, bool* end, uint64_t* count,
                 std::string* why) {
  items->clear();
  *end = false;
  if (body.empty()) {
    *why = "empty block";
    return false;
  }
  Reader r{body.substr(1)};
  if (body[0] == 'E') {
    *count = r.Take<uint64_t>();
    if (!r.ok || !r.done()) {
      *why = "bad end block";
      return false;
    }
    *end = true;
    return true;
  }
  if (body[0] != 'I') {
    *why = "unknown block type";
    return false;
  }
  while (!r.done()) {
    Item it;
    const uint32_t kl = r.Take<uint32_t>(), vl = r.Take<uint32_t>();
    it.expire_at = r.Take<int64_t>();
    it.key = r.Bytes(kl);
    it.value = r.Bytes(vl);
    if (!r.ok) {
      *why = "item runs past the end of its block";
      return false;
    }
    items->push_back(it);
  }
  return true;
}

}  // namespace pf::persist
