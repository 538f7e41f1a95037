// shared/persist/format.h: the bytes on disk of the append-only logs and the
// snapshots (docs/persistence.md has the same layout in prose). Pure encode /
// decode: no I/O, so the parsers are unit-tested and fuzzed on their own.
//
// Log file:  header (64 bytes, CRC'd) then records.
// Record:    u32 body_len | u32 crc32c(body) | body
// Body:      one or more entries; a record is applied whole or not at all
//            (MSET and FLUSHALL span shards and are one record).
// Entry:     u8 op | u32 shard | u64 seq | op-specific
//              PUT:   u32 klen | u32 vlen | i64 expire_at (unix ms, -1 none) | key | value
//              DEL:   u32 klen | key
//              CLEAR: (nothing): every key of that shard is gone
// `shard` and `seq` are those of the run (epoch) that wrote the file: seq
// counts the mutations of one shard, stamped under its lock.
//
// Snapshot:  header (fixed part, u64 watermark per shard, u32 crc) then
//            blocks: u32 body_len | u32 crc32c(body) | body, body[0] = 'I'
//            (items: u32 klen | u32 vlen | i64 expire_at | key | value, ...)
//            or 'E' (end: u64 item count). A snapshot without its end block
//            is incomplete. All integers little-endian.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pf::persist {

enum class Op : uint8_t { kPut = 1, kDel = 2, kClear = 3 };

struct Entry {
  Op op = Op::kPut;
  uint32_t shard = 0;
  uint64_t seq = 0;
  std::string_view key, value;
  int64_t expire_at = -1;
};

constexpr uint32_t kFormatVersion = 1;
constexpr size_t kLogHeaderBytes = 64;
constexpr size_t kRecordHeaderBytes = 8;
constexpr uint32_t kMaxRecordBytes = 1u << 30;  // a longer length field is corruption

struct LogHeader {
  uint32_t shard_count = 0;
  uint64_t epoch = 0;       // the server run that wrote it (one per master start)
  uint64_t gen = 0;         // snapshot generation: a snapshot covering gen G covers the file
  uint64_t file_id = 0;     // unique in the run (names the file)
  uint64_t k0 = 0, k1 = 0;  // the run's hash key: which shard a key was in
};
std::string EncodeLogHeader(const LogHeader& h);
bool DecodeLogHeader(std::string_view data, LogHeader* h, std::string* why);

// Appends records to a buffer: Begin(), then entries, then End().
class RecordBuilder {
 public:
  explicit RecordBuilder(std::string* out) : out_(out) {}
  void Begin();
  void Put(uint32_t shard, uint64_t seq, std::string_view key, std::string_view value,
           int64_t expire_at);
  void Del(uint32_t shard, uint64_t seq, std::string_view key);
  void Clear(uint32_t shard, uint64_t seq);
  void End();  // fills in the length and checksum
  bool empty() const { return out_->size() == start_ + kRecordHeaderBytes; }
  void Abort();  // drops the record begun (it has no entries)
  bool open() const { return open_; }

 private:
  std::string* out_;
  size_t start_ = 0;
  bool open_ = false;
};

enum class Next { kRecord, kEnd, kTorn, kCorrupt };
// The record at data[*pos]: kRecord (body set, *pos moved past it), kEnd
// (nothing left), kTorn (the data ends inside a record: a crash mid-write) or
// kCorrupt (bad length or checksum); `why` says which.
Next NextRecord(std::string_view data, size_t* pos, std::string_view* body, std::string* why);
// The entry at body[*pos] (*pos moved past it); false (with why) if it is
// malformed. The views in *e point into `body`.
bool DecodeEntry(std::string_view body, size_t* pos, Entry* e, std::string* why);
// Splits a record body into entries; false (with why) if it is malformed.
bool DecodeEntries(std::string_view body, std::vector<Entry>* out, std::string* why);

// ---- snapshots ----
struct SnapHeader {
  uint32_t shard_count = 0;
  uint64_t epoch = 0;
  uint64_t gen = 0;  // covers every log file of `epoch` with gen <= this, and older epochs
  uint64_t created_ms = 0;
  uint64_t k0 = 0, k1 = 0;
  std::vector<uint64_t> watermarks;  // per shard: the last seq the snapshot holds
};
size_t SnapHeaderBytes(uint32_t shard_count);
std::string EncodeSnapHeader(const SnapHeader& h);
// *size gets the header's length.
bool DecodeSnapHeader(std::string_view data, SnapHeader* h, size_t* size, std::string* why);

void BeginItemsBlock(std::string* out);  // then AppendItem()s, then EndBlock()
void AppendItem(std::string* out, std::string_view key, std::string_view value, int64_t expire_at);
void EndBlock(std::string* out, size_t block_start);
std::string EndMarkerBlock(uint64_t items);

struct Item {
  std::string_view key, value;
  int64_t expire_at = -1;
};
// A snapshot block body: items (*end = false) or the end marker (*end = true,
// *count set). False (with why) if malformed.
bool DecodeBlock(std::string_view body, std::vector<Item>* items, bool* end, uint64_t* count,
                 std::string* why);

}  // namespace pf::persist
