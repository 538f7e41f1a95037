// tests/unit/test_dump.cc: DUMP and RESTORE (shared/cmd/dump.cc) and their
// payload codec (shared/util/dump_payload.h): payloads captured from a real
// Redis 7.0 restore here and this DUMP writes them byte for byte; CRC64;
// every RESTORE reply and error in Redis' order; LZF bombs, truncations and
// flipped bits refused; TTLs, limits, memory, transactions and the
// persistence journal, as SET would see them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <climits>
#include <cstdint>
#include <initializer_list>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "shared/cmd/commands.h"
#include "shared/util/dump_payload.h"

namespace pf {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string FromHex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

// crc64.c's definition, a bit at a time: the reference the table-driven
// dump::Crc64 is checked against (and what the crafted payloads below use).
uint64_t RefCrc64(std::string_view s, uint64_t crc = 0) {
  for (unsigned char ch : s) {
    crc ^= ch;
    for (int k = 0; k < 8; ++k) crc = (crc & 1) ? (crc >> 1) ^ 0x95ac9329ac4bc9b5ull : crc >> 1;
  }
  return crc;
}

// A payload around `body`: RDB version, then the CRC64 of everything before.
std::string Payload(std::string_view body, uint16_t version = 10) {
  std::string p(body);
  p.push_back(static_cast<char>(version & 0xff));
  p.push_back(static_cast<char>(version >> 8));
  const uint64_t crc = RefCrc64(p);
  for (int i = 0; i < 8; ++i) p.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  return p;
}

std::string Resp(std::string_view bulk) {
  return "$" + std::to_string(bulk.size()) + "\r\n" + std::string(bulk) + "\r\n";
}

// Captured from Debian 12's redis-server 7.0.15 (rdbcompression yes, the
// default), started as `redis-server --port 0 --unixsocket /tmp/x.sock`:
// the values were written with the commands shown and read back with
// `redis-cli -s /tmp/x.sock --no-raw DUMP <key>`, whose quoted output was
// turned into hex (the short ones are quoted as redis-cli printed them).
struct StringFixture {
  const char* redis_cli;  // how the value was written
  std::string value;
  std::string hex;  // DUMP's reply
};

std::string Bytes0To99() {
  std::string s;
  for (int i = 0; i < 100; ++i) s.push_back(static_cast<char>(i));
  return s;
}

std::string Repeat(std::string_view s, size_t n) {
  std::string r;
  for (size_t i = 0; i < n; ++i) r += s;
  return r;
}

const std::vector<StringFixture>& StringFixtures() {
  static const std::vector<StringFixture> f = {
      // "\x00\x05hello\n\x00cr\xdfve4 \n"
      {"SET short hello", "hello", "000568656c6c6f0a006372df766534200a"},
      // "\x00\xc190\n\x00\x9d\x94\xea'\x93\xfc\b\xb9": INT16
      {"SET int 12345", "12345", "00c139300a009d94ea2793fc08b9"},
      // "\x00\xc0\xff\n\x00\x0c\x93~$\x85\b\x9d\xc5": INT8
      {"SET neg -1", "-1", "00c0ff0a000c937e2485089dc5"},
      // "\x00\xc2@B\x0f\x00\n\x00O\xf5\xebT\a\b\x8b\x03": INT32
      {"SET mil 1000000", "1000000", "00c240420f000a004ff5eb5407088b03"},
      // "\x00\x00\n\x00]\x9b\\@\x0f\x7f\xa2\xda"
      {"SET empty \"\"", "", "00000a005d9b5c400f7fa2da"},
      // An integer past int32: the digits, raw.
      {"SET i64 12345678901", "12345678901", "000b31323334353637383930310a00304e52d727176510"},
      {"SET imin -2147483648", "-2147483648", "00c2000000800a00c74f873e33558187"},
      // 100 bytes that LZF shrinks (0xC3: compressed 18, original 100).
      {"SET text100 abcdefghij...(10 times)", Repeat("abcdefghij", 10),
       "00c31240640a6162636465666768696a61e04e0901696a0a00d485292a1f2eff66"},
      // 100 bytes LZF cannot shrink: raw, 14-bit length.
      {"python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(100)))' | redis-cli -x SET "
       "raw100",
       Bytes0To99(),
       "004064000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728"
       "292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f5051525354"
       "55565758595a5b5c5d5e5f606162630a007355fcc4ad6466be"},
      // 100 KB of 'a': LZF, 1170 bytes.
      {"python3 -c 'import sys; sys.stdout.write(\"a\"*102400)' | redis-cli -x SET a100k",
       std::string(102400, 'a'),
       "00c344928000019000016161e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff"
       "00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0"
       "ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00"
       "e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff"
       "00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0"
       "ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00"
       "e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff"
       "00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0"
       "ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00"
       "e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff"
       "00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0"
       "ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00"
       "e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff"
       "00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0"
       "ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00"
       "e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff"
       "00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0"
       "ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00"
       "e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff"
       "00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0"
       "ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00"
       "e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff"
       "00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0"
       "ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00"
       "e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff"
       "00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0"
       "ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0ff00e0db000161610a005b4d3fd5f8b03b"
       "cd"},
  };
  return f;
}

// Values of other types, written as shown and DUMPed the same way.
struct OtherFixture {
  const char* redis_cli;
  const char* type;
  int rdb_type;
  std::string hex;
};

const std::vector<OtherFixture>& OtherFixtures() {
  static const std::vector<OtherFixture> f = {
      {"HSET h f v", "hash", 16, "100d0d0000000200816602817602ff0a0020f13d442354089d"},
      {"RPUSH l a b", "list", 18, "1201020d0d0000000200816102816202ff0a0068eb0a891341bbb1"},
      {"SADD s x", "set", 2, "020101780a00ffe880ba760c2f09"},
      {"SADD si 1 2", "set", 11, "0b0c0200000002000000010002000a006f7938b134eb202e"},
      {"ZADD z 1 m", "zset", 17, "110c0c0000000200816d020101ff0a0026e3fd9ddd7d6ecb"},
      {"XADD st 1-1 f v", "stream", 19,
       "130110000000000000000100000000000000011d1d0000000a00010100010101816602000102010001000181"
       "76020401ff0101010101000001000a00ff55ab626ac035db"},
  };
  return f;
}

// ---------------------------------------------------------------------------
// The codec

TEST(DumpCrc64, CheckValueAndEverySplitAgreeWithTheBitwiseDefinition) {
  EXPECT_EQ(dump::Crc64(0, "123456789"), 0xe9c6d914c4b8d9caull);
  EXPECT_EQ(dump::Crc64(0, ""), 0u);
  std::mt19937_64 rng(1);
  std::string data;
  for (int i = 0; i < 300; ++i) data.push_back(static_cast<char>(rng()));
  for (size_t n = 0; n <= data.size(); ++n) {
    const std::string_view s(data.data(), n);
    ASSERT_EQ(dump::Crc64(0, s), RefCrc64(s)) << n;
    // Continuing from a split gives the CRC of the whole (any alignment).
    const size_t cut = n / 3;
    ASSERT_EQ(dump::Crc64(dump::Crc64(0, s.substr(0, cut)), s.substr(cut)), RefCrc64(s)) << n;
  }
}

TEST(DumpPayload, SerializeWritesRedisBytes) {
  for (const StringFixture& f : StringFixtures()) {
    std::string out = "stale";
    dump::Serialize(f.value, &out);
    EXPECT_EQ(out, FromHex(f.hex)) << f.redis_cli;
  }
}

TEST(DumpPayload, ParsesEveryRedisString) {
  for (const StringFixture& f : StringFixtures()) {
    const std::string payload = FromHex(f.hex);
    std::string scratch;
    std::string_view v;
    uint8_t type = 99;
    ASSERT_EQ(dump::Parse(payload, 1 << 20, &scratch, &v, &type), dump::ParseResult::kOk)
        << f.redis_cli;
    EXPECT_EQ(type, 0);
    EXPECT_EQ(v, f.value) << f.redis_cli;
  }
}

TEST(DumpPayload, NamesTheTypeOfOtherValues) {
  for (const OtherFixture& f : OtherFixtures()) {
    std::string scratch;
    std::string_view v;
    uint8_t type = 0;
    EXPECT_EQ(dump::Parse(FromHex(f.hex), 1 << 20, &scratch, &v, &type),
              dump::ParseResult::kNotString)
        << f.redis_cli;
    EXPECT_EQ(type, f.rdb_type) << f.redis_cli;
    ASSERT_NE(dump::TypeName(type), nullptr);
    EXPECT_STREQ(dump::TypeName(type), f.type) << f.redis_cli;
  }
  // Bytes that are no object type of RDB 10 (8 is unused; 20+ came with 7.2).
  for (int t : {8, 20, 21, 255}) EXPECT_EQ(dump::TypeName(static_cast<uint8_t>(t)), nullptr) << t;
}

TEST(DumpPayload, RoundTripsEveryEncoding) {
  std::mt19937_64 rng(2);
  std::vector<std::string> values = {"",
                                     "0",
                                     "-0",
                                     "+1",
                                     "007",
                                     " 1",
                                     "127",
                                     "-128",
                                     "128",
                                     "32767",
                                     "-32768",
                                     "32768",
                                     "2147483647",
                                     "-2147483648",
                                     "2147483648",
                                     "9223372036854775807",
                                     std::string(20, 'x'),
                                     std::string(21, 'x'),
                                     std::string(63, 'y'),
                                     std::string(64, 'y'),
                                     std::string(16383, 'z'),
                                     std::string(16384, 'z'),
                                     std::string("\0\r\n\xff", 4)};
  for (size_t n : {5u, 21u, 100u, 5000u, 70000u}) {
    std::string r;
    for (size_t i = 0; i < n; ++i) r.push_back(static_cast<char>(rng()));
    values.push_back(r);
    std::string t;  // compressible, with binary bytes
    for (size_t i = 0; i < n; ++i) t.push_back(static_cast<char>("ab\0\xff"[rng() % 4]));
    values.push_back(t);
  }
  for (const std::string& value : values) {
    std::string payload, scratch;
    dump::Serialize(value, &payload);
    std::string_view back;
    uint8_t type = 9;
    ASSERT_EQ(dump::Parse(payload, 1 << 20, &scratch, &back, &type), dump::ParseResult::kOk)
        << value.size();
    EXPECT_EQ(back, value);
    EXPECT_EQ(type, 0);
  }
}

TEST(DumpPayload, LzfBombIsRefusedBeforeAllocating) {
  // A valid LZF string of "hello" (clen 6, len 5), then the same bytes
  // claiming ever larger decompressed lengths; the claim is checked first.
  std::string scratch;
  std::string_view v;
  uint8_t type;
  ASSERT_EQ(
      dump::Parse(Payload(std::string("\x00\xc3\x06\x05\x04hello", 10)), 100, &scratch, &v, &type),
      dump::ParseResult::kOk);
  EXPECT_EQ(v, "hello");
  const std::string claims[] = {
      std::string("\x80\x00\x00\x00\x65", 5),                  // 101: one past the limit
      std::string("\x80\xff\xff\xff\xff", 5),                  // 4 GiB - 1
      std::string("\x81\x40\x00\x00\x00\x00\x00\x00\x00", 9),  // 2^62
      std::string("\x81\xff\xff\xff\xff\xff\xff\xff\xff", 9),  // 2^64 - 1
  };
  for (const std::string& claim : claims) {
    std::string fresh;
    const std::string body = std::string("\x00\xc3\x06", 3) + claim + "\x04hello";
    EXPECT_EQ(dump::Parse(Payload(body), 100, &fresh, &v, &type), dump::ParseResult::kTooLarge);
    EXPECT_LE(fresh.capacity(), 64u) << "allocated for a claimed length";
  }
  // A length the data does not decompress to is bad data (shorter or longer).
  EXPECT_EQ(
      dump::Parse(Payload(std::string("\x00\xc3\x06\x06\x04hello", 10)), 100, &scratch, &v, &type),
      dump::ParseResult::kBadFormat);
  EXPECT_EQ(
      dump::Parse(Payload(std::string("\x00\xc3\x06\x04\x04hello", 10)), 100, &scratch, &v, &type),
      dump::ParseResult::kBadFormat);
  // A compressed length past the payload is bad data, whatever it claims.
  EXPECT_EQ(dump::Parse(Payload(std::string("\x00\xc3\x80\xff\xff\xff\xff\x05\x04hello", 14)), 100,
                        &scratch, &v, &type),
            dump::ParseResult::kBadFormat);
  // A raw string over the limit is too large (it costs nothing to see: it is in the payload).
  EXPECT_EQ(dump::Parse(Payload(std::string("\x00\x05hello", 7)), 4, &scratch, &v, &type),
            dump::ParseResult::kTooLarge);
}

TEST(DumpPayload, EveryTruncationIsRefused) {
  for (const StringFixture& f : StringFixtures()) {
    const std::string payload = FromHex(f.hex);
    std::string scratch;
    std::string_view v;
    uint8_t type;
    // Cut anywhere: the footer no longer checks out.
    for (size_t n = 0; n < payload.size(); ++n)
      ASSERT_EQ(dump::Parse(payload.substr(0, n), 1 << 20, &scratch, &v, &type),
                dump::ParseResult::kBadFooter)
          << f.redis_cli << " cut to " << n;
    // A truncated body under a footer that checks out: not a whole string.
    const std::string body = payload.substr(0, payload.size() - dump::kFooterBytes);
    for (size_t n = 0; n < body.size(); ++n)
      ASSERT_EQ(dump::Parse(Payload(body.substr(0, n)), 1 << 20, &scratch, &v, &type),
                dump::ParseResult::kBadFormat)
          << f.redis_cli << " body cut to " << n;
    // Nor are bytes after the string taken.
    EXPECT_EQ(dump::Parse(Payload(body + "x"), 1 << 20, &scratch, &v, &type),
              dump::ParseResult::kBadFormat)
        << f.redis_cli;
  }
}

TEST(DumpPayload, EveryFlippedBitAndNewerVersionIsRefused) {
  for (const char* hex :
       {"000568656c6c6f0a006372df766534200a", "00c240420f000a004ff5eb5407088b03"}) {
    const std::string payload = FromHex(hex);
    std::string scratch;
    std::string_view v;
    uint8_t type;
    for (size_t bit = 0; bit < payload.size() * 8; ++bit) {
      std::string p = payload;
      p[bit / 8] = static_cast<char>(p[bit / 8] ^ (1 << (bit % 8)));
      ASSERT_EQ(dump::Parse(p, 1 << 20, &scratch, &v, &type), dump::ParseResult::kBadFooter)
          << hex << " bit " << bit;
    }
  }
  std::string scratch;
  std::string_view v;
  uint8_t type;
  const std::string body("\x00\x05hello", 7);
  for (uint16_t version : {0, 1, 9, 10})
    EXPECT_EQ(dump::Parse(Payload(body, version), 100, &scratch, &v, &type), dump::ParseResult::kOk)
        << version;
  for (uint16_t version : {11, 12, 256, 0xffff})
    EXPECT_EQ(dump::Parse(Payload(body, version), 100, &scratch, &v, &type),
              dump::ParseResult::kBadFooter)
        << version;
}

// ---------------------------------------------------------------------------
// The commands, against a real kv::Store (as tests/unit/test_commands.cc)

class RespText : public ReplyWriter {
 public:
  void Status(std::string_view s) override { out += "+" + std::string(s) + "\r\n"; }
  void Error(ErrCode code, std::string_view t) override {
    last_code = code;
    out += "-" + std::string(t) + "\r\n";
  }
  void Integer(int64_t v) override { out += ":" + std::to_string(v) + "\r\n"; }
  void Bulk(std::string_view v) override { out += Resp(v); }
  void Nil() override { out += "$-1\r\n"; }
  void NilArray() override { out += "*-1\r\n"; }
  void ArrayBegin(size_t n) override { out += "*" + std::to_string(n) + "\r\n"; }
  std::string out;
  ErrCode last_code = ErrCode::kInternal;
};

// What persistence would be told (kv::Journal), one line a call.
struct RecordingJournal : kv::Journal {
  std::vector<std::string> events;
  void Put(uint32_t, uint64_t, std::string_view key, std::string_view value,
           int64_t expire_at) override {
    events.push_back("put " + std::string(key) + "=" + std::string(value) + " " +
                     std::to_string(expire_at));
  }
  void Del(uint32_t, uint64_t, std::string_view key) override {
    events.push_back("del " + std::string(key));
  }
  void Clear(uint32_t, uint64_t) override { events.push_back("clear"); }
  void BeginGroup() override {}
  void EndGroup() override {}
};

constexpr uint64_t kNow = 1'700'000'000'000;  // a fixed unix ms clock
constexpr uint32_t kMaxValue = 200 * 1024;

class DumpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.kv.shards = 4;
    config_.kv.max_key_bytes = 64;
    config_.kv.max_value_bytes = kMaxValue;
    region_size_ = kv::Store::MinSizeFor(4, 64, kMaxValue) + (4u << 20);
    region_ =
        mmap(nullptr, region_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(region_, MAP_FAILED);
    std::string why;
    store_ = kv::Store::Format(region_, region_size_, 4, kv::LimitsFrom(config_.kv), 7, &why);
    ASSERT_NE(store_, nullptr) << why;
    env_.store = store_;
    env_.config = &config_;
  }
  void TearDown() override {
    kv::SetJournal(nullptr);
    munmap(region_, region_size_);
  }

  std::string Run(std::initializer_list<std::string_view> args, uint64_t now = kNow) {
    return RunOn(session_, args, now);
  }
  std::string RunOn(ClientSession& s, std::initializer_list<std::string_view> args,
                    uint64_t now = kNow) {
    std::vector<std::string_view> argv(args);
    RespText w;
    Dispatch(env_, s, argv, w, now);
    last_code_ = w.last_code;
    return w.out;
  }
  // DUMP's payload of `key` ("" if the reply is not a bulk).
  std::string DumpOf(std::string_view key) {
    const std::string r = Run({"DUMP", key});
    if (r.empty() || r[0] != '$' || r == "$-1\r\n") return "";
    const size_t nl = r.find("\r\n");
    return r.substr(nl + 2, r.size() - nl - 4);
  }

  void* region_ = nullptr;
  size_t region_size_ = 0;
  Config config_;
  kv::Store* store_ = nullptr;
  CommandEnv env_;
  ClientSession session_;
  ErrCode last_code_ = ErrCode::kInternal;
};

const std::string kHello = Payload(std::string("\x00\x05hello", 7));

TEST_F(DumpTest, RestoresWhatRedisDumpedAndDumpsItBackIdentically) {
  int i = 0;
  for (const StringFixture& f : StringFixtures()) {
    const std::string payload = FromHex(f.hex);
    const std::string key = "fx:" + std::to_string(i++);
    ASSERT_EQ(Run({"RESTORE", key, "0", payload}), "+OK\r\n") << f.redis_cli;
    EXPECT_EQ(Run({"GET", key}), Resp(f.value)) << f.redis_cli;
    EXPECT_EQ(Run({"PTTL", key}), ":-1\r\n");
    EXPECT_EQ(DumpOf(key), payload) << f.redis_cli;
  }
}

TEST_F(DumpTest, OtherTypesAreRefusedByName) {
  for (const OtherFixture& f : OtherFixtures()) {
    EXPECT_EQ(Run({"RESTORE", "k", "0", FromHex(f.hex)}),
              std::string("-ERR DUMP payload holds a ") + f.type + " (RDB type " +
                  std::to_string(f.rdb_type) + "); preforkd stores strings only\r\n")
        << f.redis_cli;
  }
  EXPECT_EQ(Run({"EXISTS", "k"}), ":0\r\n");
  // A byte that is no type at all is bad data, as in Redis.
  EXPECT_EQ(Run({"RESTORE", "k", "0", Payload(std::string("\x08\x05hello", 7))}),
            "-ERR Bad data format\r\n");
  EXPECT_EQ(Run({"RESTORE", "k", "0", Payload("")}), "-ERR Bad data format\r\n");
}

TEST_F(DumpTest, DumpOfMissingKeyIsNilAndCountsAsARead) {
  EXPECT_EQ(Run({"DUMP", "nope"}), "$-1\r\n");
  ASSERT_EQ(Run({"SET", "k", "hello"}), "+OK\r\n");
  const kv::Stats before = store_->GetStats();
  EXPECT_EQ(Run({"DUMP", "k"}), Resp(kHello));
  EXPECT_EQ(Run({"DUMP", "nope"}), "$-1\r\n");
  const kv::Stats after = store_->GetStats();
  EXPECT_EQ(after.hits, before.hits + 1);  // as Redis' lookupKeyRead: keyspace_hits/misses
  EXPECT_EQ(after.misses, before.misses + 1);
  // An expired key is missing.
  ASSERT_EQ(Run({"SET", "t", "v", "PX", "10"}), "+OK\r\n");
  EXPECT_EQ(Run({"DUMP", "t"}, kNow + 11), "$-1\r\n");  // past its deadline
}

// The replies and errors of redis-server 7.0.15 for the same commands, in
// its order: options, the key's absence, the TTL, the footer, the body.
TEST_F(DumpTest, RestoreRepliesAndErrorsAsRedis) {
  ASSERT_EQ(Run({"SET", "ex", "v"}), "+OK\r\n");
  const std::string busy = "-BUSYKEY Target key name already exists.\r\n";
  EXPECT_EQ(Run({"RESTORE", "ex", "0", kHello}), busy);
  EXPECT_EQ(Run({"RESTORE", "ex", "-1", kHello}), busy);
  EXPECT_EQ(Run({"RESTORE", "ex", "abc", kHello}), busy);
  EXPECT_EQ(Run({"RESTORE", "ex", "0", "junk"}), busy);
  EXPECT_EQ(Run({"RESTORE", "ex", "0", kHello, "BOGUS"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"GET", "ex"}), "$1\r\nv\r\n");

  EXPECT_EQ(Run({"RESTORE", "n", "-1", kHello}), "-ERR Invalid TTL value, must be >= 0\r\n");
  for (const char* ttl : {"abc", "1.5", " 1", "+1", "99999999999999999999"})
    EXPECT_EQ(Run({"RESTORE", "n", ttl, kHello}),
              "-ERR value is not an integer or out of range\r\n")
        << ttl;
  const std::string wrong = "-ERR DUMP payload version or checksum are wrong\r\n";
  EXPECT_EQ(Run({"RESTORE", "n", "0", ""}), wrong);
  EXPECT_EQ(Run({"RESTORE", "n", "0", kHello.substr(0, kHello.size() - 1)}), wrong);
  EXPECT_EQ(Run({"RESTORE", "n", "0", Payload(std::string("\x00\x05hello", 7), 11)}), wrong);
  std::string flipped = kHello;
  flipped.back() = static_cast<char>(flipped.back() ^ 1);
  EXPECT_EQ(Run({"RESTORE", "n", "0", flipped}), wrong);
  EXPECT_EQ(Run({"RESTORE", "n", "0", Payload(std::string("\x00\xc4\x00", 3))}),
            "-ERR Bad data format\r\n");
  EXPECT_EQ(Run({"RESTORE", "n", "0", Payload(std::string("\x00\x82\x00\x00\x00\x05hello", 11))}),
            "-ERR Bad data format\r\n");

  EXPECT_EQ(Run({"RESTORE", "n", "0", kHello, "IDLETIME", "-1"}),
            "-ERR Invalid IDLETIME value, must be >= 0\r\n");
  EXPECT_EQ(Run({"RESTORE", "n", "0", kHello, "IDLETIME", "x"}),
            "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"RESTORE", "n", "0", kHello, "FREQ", "256"}),
            "-ERR Invalid FREQ value, must be >= 0 and <= 255\r\n");
  EXPECT_EQ(Run({"RESTORE", "n", "0", kHello, "FREQ", "-1"}),
            "-ERR Invalid FREQ value, must be >= 0 and <= 255\r\n");
  EXPECT_EQ(Run({"RESTORE", "n", "0", kHello, "FREQ", "x"}),
            "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(Run({"RESTORE", "n", "0", kHello, "FREQ", "5", "IDLETIME", "5"}),
            "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"RESTORE", "n", "0", kHello, "IDLETIME", "5", "FREQ", "5"}),
            "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"RESTORE", "n", "0", kHello, "IDLETIME"}), "-ERR syntax error\r\n");
  EXPECT_EQ(Run({"RESTORE", "n", "0"}), "-ERR wrong number of arguments for 'restore' command\r\n");
  EXPECT_EQ(Run({"DUMP"}), "-ERR wrong number of arguments for 'dump' command\r\n");
  EXPECT_EQ(Run({"DUMP", "a", "b"}), "-ERR wrong number of arguments for 'dump' command\r\n");
  EXPECT_EQ(Run({"EXISTS", "n"}), ":0\r\n");

  // IDLETIME and FREQ are accepted (and ignored), options in any case and repeated.
  EXPECT_EQ(Run({"RESTORE", "n", "0", kHello, "IdleTime", "5", "idletime", "6"}), "+OK\r\n");
  EXPECT_EQ(Run({"RESTORE", "n", "0", kHello, "replace", "FREQ", "5", "freq", "255"}), "+OK\r\n");
  EXPECT_EQ(Run({"RESTORE", "n", "0", kHello, "REPLACE", "absttl", "Replace"}), "+OK\r\n");
  EXPECT_EQ(Run({"GET", "n"}), "$5\r\nhello\r\n");
  EXPECT_EQ(Run({"RESTORE", "ex", "0", kHello, "REPLACE"}), "+OK\r\n");
  EXPECT_EQ(Run({"GET", "ex"}), "$5\r\nhello\r\n");
  EXPECT_EQ(Run({"TYPE", "ex"}), "+string\r\n");
}

TEST_F(DumpTest, TtlAbsttlAndDeadlinesAlreadyPast) {
  EXPECT_EQ(Run({"RESTORE", "rel", "5000", kHello}), "+OK\r\n");
  EXPECT_EQ(Run({"PTTL", "rel"}), ":5000\r\n");
  EXPECT_EQ(Run({"GET", "rel"}, kNow + 5001), "$-1\r\n");
  const std::string at = std::to_string(kNow + 7000);
  EXPECT_EQ(Run({"RESTORE", "abs", at, kHello, "ABSTTL"}), "+OK\r\n");
  EXPECT_EQ(Run({"PEXPIRETIME", "abs"}), ":" + at + "\r\n");
  EXPECT_EQ(Run({"RESTORE", "max", "9223372036854775807", kHello, "ABSTTL"}), "+OK\r\n");
  EXPECT_EQ(Run({"PEXPIRETIME", "max"}), ":9223372036854775807\r\n");

  // Past deadlines: +OK and no key; with REPLACE the old key goes (Redis 7.0).
  EXPECT_EQ(Run({"RESTORE", "past", "1", kHello, "ABSTTL"}), "+OK\r\n");
  EXPECT_EQ(Run({"RESTORE", "past", std::to_string(kNow), kHello, "ABSTTL"}), "+OK\r\n");
  EXPECT_EQ(Run({"EXISTS", "past"}), ":0\r\n");
  ASSERT_EQ(Run({"SET", "old", "v"}), "+OK\r\n");
  EXPECT_EQ(Run({"RESTORE", "old", "1", kHello, "ABSTTL"}),
            "-BUSYKEY Target key name already exists.\r\n");
  EXPECT_EQ(Run({"RESTORE", "old", "1", kHello, "ABSTTL", "REPLACE"}), "+OK\r\n");
  EXPECT_EQ(Run({"EXISTS", "old"}), ":0\r\n");
  // A relative TTL whose deadline passes INT64_MAX wraps to the past in Redis: the same here.
  ASSERT_EQ(Run({"SET", "old", "v"}), "+OK\r\n");
  EXPECT_EQ(Run({"RESTORE", "old", "9223372036854775807", kHello, "REPLACE"}), "+OK\r\n");
  EXPECT_EQ(Run({"EXISTS", "old"}), ":0\r\n");
  EXPECT_EQ(Run({"RESTORE", "new", "9223372036854775807", kHello}), "+OK\r\n");
  EXPECT_EQ(Run({"EXISTS", "new"}), ":0\r\n");
  // REPLACE drops the old TTL; ttl 0 means none.
  ASSERT_EQ(Run({"SET", "t", "v", "EX", "100"}), "+OK\r\n");
  EXPECT_EQ(Run({"RESTORE", "t", "0", kHello, "REPLACE"}), "+OK\r\n");
  EXPECT_EQ(Run({"PTTL", "t"}), ":-1\r\n");
  // Left: abs and max (with TTLs) and t.
  EXPECT_THAT(Run({"INFO", "keyspace"}), HasSubstr("db0:keys=3,expires=2,"));
}

TEST_F(DumpTest, KeyAndValueLimitsAsSet) {
  const std::string big_key(65, 'k');
  EXPECT_EQ(Run({"RESTORE", big_key, "0", kHello}), "-ERR key is larger than max-key-bytes\r\n");
  EXPECT_EQ(last_code_, ErrCode::kTooLarge);
  std::string payload;
  dump::Serialize(std::string(kMaxValue, 'r'), &payload);  // LZF: 0xC3
  EXPECT_EQ(static_cast<uint8_t>(payload[1]), 0xc3);
  EXPECT_EQ(Run({"RESTORE", "max", "0", payload}), "+OK\r\n");
  EXPECT_EQ(Run({"STRLEN", "max"}), ":" + std::to_string(kMaxValue) + "\r\n");
  const std::string too_large = "-ERR value is larger than max-value-bytes\r\n";
  dump::Serialize(std::string(kMaxValue + 1, 'r'), &payload);
  EXPECT_EQ(Run({"RESTORE", "big", "0", payload}), too_large);
  std::mt19937_64 rng(3);
  std::string raw;
  for (uint32_t i = 0; i <= kMaxValue; ++i) raw.push_back(static_cast<char>(rng()));
  dump::Serialize(raw, &payload);  // incompressible: raw
  EXPECT_EQ(static_cast<uint8_t>(payload[1]), 0x80);
  EXPECT_EQ(Run({"RESTORE", "big", "0", payload}), too_large);
  // The bomb: 6 bytes claiming 2^62 after decompression.
  EXPECT_EQ(
      Run({"RESTORE", "big", "0",
           Payload(std::string("\x00\xc3\x06\x81\x40\x00\x00\x00\x00\x00\x00\x00\x04hello", 18))}),
      too_large);
  EXPECT_EQ(Run({"EXISTS", "big"}), ":0\r\n");
  // The decompression buffer is not kept after the command.
  EXPECT_LT(CommandScratchBytesForTesting(), size_t{1} << 20);
}

TEST_F(DumpTest, FullStoreRefusesWithOomUnlessItEvicts) {
  std::string payload;
  std::mt19937_64 rng(4);
  std::string val;
  for (int i = 0; i < 100'000; ++i) val.push_back(static_cast<char>(rng()));
  dump::Serialize(val, &payload);
  std::string reply;
  int i = 0;
  for (; i < 10'000; ++i) {
    reply = Run({"RESTORE", "fill" + std::to_string(i), "0", payload});
    if (reply != "+OK\r\n") break;
  }
  EXPECT_EQ(reply, "-OOM command not allowed when used memory > 'maxmemory'.\r\n");
  EXPECT_EQ(last_code_, ErrCode::kOom);
  EXPECT_GT(i, 3);
  // allkeys-lru: the same write evicts instead.
  config_.kv.eviction = Eviction::kAllKeysLru;
  store_->SetLimits(kv::LimitsFrom(config_.kv));
  for (int j = 0; j < 10; ++j)
    EXPECT_EQ(Run({"RESTORE", "lru" + std::to_string(j), "0", payload}), "+OK\r\n") << j;
  EXPECT_GT(store_->GetStats().evictions, 0u);
}

TEST_F(DumpTest, TransactionsAndWatch) {
  EXPECT_EQ(Run({"MULTI"}), "+OK\r\n");
  EXPECT_EQ(Run({"RESTORE", "m", "0", kHello}), "+QUEUED\r\n");
  EXPECT_EQ(Run({"DUMP", "m"}), "+QUEUED\r\n");
  EXPECT_EQ(Run({"RESTORE", "m", "0", kHello}), "+QUEUED\r\n");
  EXPECT_EQ(Run({"EXEC"}),
            "*3\r\n+OK\r\n" + Resp(kHello) + "-BUSYKEY Target key name already exists.\r\n");
  // A RESTORE by another client invalidates a WATCH of its key.
  ClientSession other;
  EXPECT_EQ(Run({"WATCH", "m"}), "+OK\r\n");
  EXPECT_EQ(RunOn(other, {"RESTORE", "m", "0", kHello, "REPLACE"}), "+OK\r\n");
  EXPECT_EQ(Run({"MULTI"}), "+OK\r\n");
  EXPECT_EQ(Run({"GET", "m"}), "+QUEUED\r\n");
  EXPECT_EQ(Run({"EXEC"}), "*-1\r\n");
  // ... and of a key it creates.
  EXPECT_EQ(Run({"WATCH", "w"}), "+OK\r\n");
  EXPECT_EQ(RunOn(other, {"RESTORE", "w", "0", kHello}), "+OK\r\n");
  EXPECT_EQ(Run({"MULTI"}), "+OK\r\n");
  EXPECT_EQ(Run({"GET", "w"}), "+QUEUED\r\n");
  EXPECT_EQ(Run({"EXEC"}), "*-1\r\n");
}

// Persistence sees a RESTORE exactly as a SET ... PXAT of the same value.
TEST_F(DumpTest, JournalSeesRestoreAsSet) {
  RecordingJournal j;
  kv::SetJournal(&j);
  const std::string at = std::to_string(kNow + 5000);
  EXPECT_EQ(Run({"SET", "s", "hello", "PX", "5000"}), "+OK\r\n");
  EXPECT_EQ(Run({"RESTORE", "r", "5000", kHello}), "+OK\r\n");
  EXPECT_EQ(Run({"RESTORE", "a", at, kHello, "ABSTTL"}), "+OK\r\n");
  EXPECT_EQ(Run({"RESTORE", "p", "0", FromHex(StringFixtures()[3].hex)}), "+OK\r\n");
  EXPECT_EQ(Run({"RESTORE", "a", "1", kHello, "ABSTTL", "REPLACE"}), "+OK\r\n");
  EXPECT_EQ(Run({"RESTORE", "gone", "1", kHello, "ABSTTL"}), "+OK\r\n");  // nothing to log
  EXPECT_EQ(Run({"RESTORE", "r", "0", kHello}), "-BUSYKEY Target key name already exists.\r\n");
  kv::SetJournal(nullptr);
  EXPECT_EQ(j.events, (std::vector<std::string>{"put s=hello " + at, "put r=hello " + at,
                                                "put a=hello " + at, "put p=1000000 -1", "del a"}));
}

TEST_F(DumpTest, TableRowsAuthAndCommandInfo) {
  const CommandSpec* d = LookupCommand("DUMP");
  const CommandSpec* r = LookupCommand("restore");
  ASSERT_NE(d, nullptr);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(
      Run({"COMMAND", "INFO", "dump", "restore"}),
      "*2\r\n"
      "*10\r\n$4\r\ndump\r\n:2\r\n*1\r\n+readonly\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n*0\r\n*0\r\n"
      "*10\r\n$7\r\nrestore\r\n:-4\r\n*2\r\n+write\r\n+denyoom\r\n:1\r\n:1\r\n:1\r\n*0\r\n"
      "*0\r\n*0\r\n*0\r\n");
  config_.kv.password = "pw";
  EXPECT_EQ(Run({"DUMP", "k"}), "-NOAUTH Authentication required.\r\n");
  EXPECT_EQ(Run({"RESTORE", "k", "0", kHello}), "-NOAUTH Authentication required.\r\n");
  EXPECT_EQ(Run({"AUTH", "pw"}), "+OK\r\n");
  EXPECT_EQ(Run({"RESTORE", "k", "0", kHello}), "+OK\r\n");
  EXPECT_EQ(Run({"DUMP", "k"}), Resp(kHello));
}

}  // namespace
}  // namespace pf
