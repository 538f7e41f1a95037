// worker/resp/writer.h: a ReplyWriter that encodes RESP2, or RESP3 once the
// connection's HELLO 3 asked for it, into a byte sink.
// The sink is a template parameter (anything with Append(const char*, size_t)),
// so the worker writes straight into an evbuffer and tests into a std::string;
// no allocation per reply (headers are formatted on the stack).
#pragma once

#include <event2/buffer.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "shared/cmd/reply.h"

namespace pf {

// Writes `prefix`, the decimal `v` and CRLF into out (>= 24 bytes); returns the length.
size_t FormatRespHeader(char prefix, int64_t v, char* out);

struct StringSink {
  std::string* out;
  void Append(const char* p, size_t n) { out->append(p, n); }
};

struct EvbufferSink {
  evbuffer* out;
  void Append(const char* p, size_t n) { evbuffer_add(out, p, n); }
};

template <typename Sink>
class RespWriter final : public ReplyWriter {
 public:
  // `resp3` is the connection's protocol flag (ClientSession::resp3), read at
  // every reply: HELLO 3 switches it while a pipeline is being answered, and
  // HELLO's own reply is already RESP3. Null: RESP2 always.
  explicit RespWriter(Sink sink, const bool* resp3 = nullptr) : sink_(sink), resp3_(resp3) {}

  void Status(std::string_view s) override { Line('+', s); }
  void Error(ErrCode, std::string_view text) override { Line('-', text); }
  void Integer(int64_t v) override {
    char buf[32];
    sink_.Append(buf, FormatRespHeader(':', v, buf));
  }
  void Bulk(std::string_view v) override {
    char buf[kSmall + 32];
    size_t h = FormatRespHeader('$', static_cast<int64_t>(v.size()), buf);
    if (v.size() <= kSmall) {  // one Append for the common small value
      if (!v.empty()) std::memcpy(buf + h, v.data(), v.size());  // data() may be null when empty
      std::memcpy(buf + h + v.size(), "\r\n", 2);
      sink_.Append(buf, h + v.size() + 2);
    } else {
      sink_.Append(buf, h);
      sink_.Append(v.data(), v.size());
      sink_.Append("\r\n", 2);
    }
  }
  // RESP3 has one null for both (Redis' addReplyNull / addReplyNullArray).
  void Nil() override {
    if (resp3()) return sink_.Append("_\r\n", 3);
    sink_.Append("$-1\r\n", 5);
  }
  void NilArray() override {
    if (resp3()) return sink_.Append("_\r\n", 3);
    sink_.Append("*-1\r\n", 5);
  }
  void ArrayBegin(size_t n) override { Header('*', n); }
  void MapBegin(size_t n) override { resp3() ? Header('%', n) : Header('*', 2 * n); }
  void SetBegin(size_t n) override { Header(resp3() ? '~' : '*', n); }
  void PushBegin(size_t n) override { Header(resp3() ? '>' : '*', n); }
  void Double(double d) override {
    if (!resp3()) return ReplyWriter::Double(d);  // a bulk string
    char buf[kMaxDoubleChars + 3];
    buf[0] = ',';
    size_t n = 1 + FormatRedisDouble(d, buf + 1);
    buf[n++] = '\r';
    buf[n++] = '\n';
    sink_.Append(buf, n);
  }
  void Bool(bool b) override {
    if (!resp3()) return Integer(b ? 1 : 0);
    sink_.Append(b ? "#t\r\n" : "#f\r\n", 4);
  }

  Sink& sink() { return sink_; }

 private:
  static constexpr size_t kSmall = 224;

  bool resp3() const { return resp3_ && *resp3_; }
  void Header(char prefix, size_t n) {
    char buf[32];
    sink_.Append(buf, FormatRespHeader(prefix, static_cast<int64_t>(n), buf));
  }

  // "+text\r\n" / "-text\r\n". CR and LF inside the text would break framing:
  // they become spaces, as Redis' addReplyErrorFormat does.
  void Line(char prefix, std::string_view s) {
    char buf[kSmall + 32];
    if (s.size() + 3 > sizeof(buf) || s.find_first_of("\r\n") != std::string_view::npos) {
      std::string tmp(1, prefix);
      tmp.append(s);
      for (size_t i = 1; i < tmp.size(); i++)
        if (tmp[i] == '\r' || tmp[i] == '\n') tmp[i] = ' ';
      tmp.append("\r\n");
      sink_.Append(tmp.data(), tmp.size());
      return;
    }
    buf[0] = prefix;
    if (!s.empty()) std::memcpy(buf + 1, s.data(), s.size());
    std::memcpy(buf + 1 + s.size(), "\r\n", 2);
    sink_.Append(buf, s.size() + 3);
  }

  Sink sink_;
  const bool* resp3_;
};

using RespStringWriter = RespWriter<StringSink>;
using RespEvbufferWriter = RespWriter<EvbufferSink>;

}  // namespace pf
