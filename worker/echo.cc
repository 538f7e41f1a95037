// worker/echo.cc: the echo protocol: every byte back exactly as it came
// (binary-safe, any chunking); a line that is exactly "quit" (LF or CRLF
// terminated) closes the connection after what came before it is echoed.
#include <event2/buffer.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "shared/shm.h"
#include "worker/connection.h"
#include "worker/protocol.h"
#include "worker/worker.h"

namespace pf {
namespace {

class EchoSession final : public Session {
 public:
  void OnRead(Connection& c, evbuffer* in) override {
    c.worker().NoteRequest(kProtoEcho);
    const size_t quit_at = FindQuitLine(in);
    if (quit_at == SIZE_MAX) {
      evbuffer_add_buffer(c.output(), in);  // moves the chunks, no copy
      return;
    }
    evbuffer_remove_buffer(in, c.output(), quit_at);
    evbuffer_drain(in, evbuffer_get_length(in));
    c.CloseAfterWrite();
  }

 private:
  // Offset in `in` where a line that is exactly "quit" starts, or SIZE_MAX.
  // Scans the chunks in place for '\n' and keeps the first bytes of the
  // current line across chunk and read boundaries.
  size_t FindQuitLine(evbuffer* in) {
    const int n = evbuffer_peek(in, -1, nullptr, nullptr, 0);
    if (n <= 0) return SIZE_MAX;
    vecs_.resize(static_cast<size_t>(n));
    evbuffer_peek(in, -1, nullptr, vecs_.data(), n);
    size_t offset = 0;  // bytes of `in` before the current chunk
    for (const auto& v : vecs_) {
      const char* base = static_cast<const char*>(v.iov_base);
      const char* p = base;
      const char* end = base + v.iov_len;
      while (p < end) {
        const char* nl = static_cast<const char*>(memchr(p, '\n', static_cast<size_t>(end - p)));
        const char* stop = nl ? nl : end;
        for (const char* q = p; q < stop && line_len_ < sizeof line_; q++) line_[line_len_++] = *q;
        line_seen_ += static_cast<size_t>(stop - p);
        if (!nl) break;
        if (IsQuit()) {
          const size_t nl_at = offset + static_cast<size_t>(nl - base);
          // A quit line that began in an earlier read was partly echoed already.
          return nl_at >= line_seen_ ? nl_at - line_seen_ : 0;
        }
        line_len_ = 0;
        line_seen_ = 0;
        p = nl + 1;
      }
      offset += v.iov_len;
    }
    return SIZE_MAX;
  }

  bool IsQuit() const {
    if (line_seen_ == 4) return memcmp(line_, "quit", 4) == 0;
    if (line_seen_ == 5) return memcmp(line_, "quit\r", 5) == 0;
    return false;
  }

  std::vector<evbuffer_iovec> vecs_;
  char line_[5];
  size_t line_len_ = 0;   // bytes of the current line kept in line_ (at most 5)
  size_t line_seen_ = 0;  // bytes of the current line seen so far
};

}  // namespace

std::unique_ptr<Session> MakeEchoSession(const ListenerConf&, WorkerContext&) {
  return std::make_unique<EchoSession>();
}

}  // namespace pf
