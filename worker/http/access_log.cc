// worker/http/access_log.cc: see access_log.h. A write(2) of whole lines to an
// O_APPEND regular file is not interleaved with other workers' writes, so
// lines from different workers never mix.
#include "worker/http/access_log.h"

#include <event2/event.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "shared/log.h"
#include "shared/util/unique_fd.h"
#include "worker/http/parse.h"
#include "worker/http/util.h"

namespace pf::accesslog {
namespace {

constexpr size_t kFlushBytes = 64 * 1024;

struct State {
  bool initialized = false;
  std::string path;
  UniqueFd fd;
  std::string buf;
  event* timer =
      nullptr;  // on the worker's base, for the process's life (never freed: the base goes first)
};

State& S() {
  static State s;
  return s;
}

UniqueFd OpenLog(const std::string& path) {
  UniqueFd fd(log::OpenLogFile(path));
  if (!fd) spdlog::error("access log {}: {}", path, std::strerror(errno));
  return fd;
}

void TimerCb(evutil_socket_t, short, void*) { Flush(); }

std::string EscapeLogField(std::string_view s) {
  std::string out;
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f) {
      out += fmt::format("\\x{:02X}", ch);
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out;
}

}  // namespace

void Init(const std::string& path, event_base* base) {
  State& s = S();
  if (s.initialized) return;
  s.initialized = true;
  if (path.empty() || path == "off") return;
  s.path = path;
  s.fd = OpenLog(path);
  s.buf.reserve(kFlushBytes * 2);
  if (base) {
    s.timer = event_new(base, -1, EV_PERSIST, TimerCb, nullptr);
    timeval tv{1, 0};
    evtimer_add(s.timer, &tv);
  }
}

bool Enabled() { return S().fd.valid(); }

void Append(std::string_view line) {
  State& s = S();
  if (!s.fd) return;
  s.buf.append(line);
  if (s.buf.size() >= kFlushBytes) Flush();
}

void Flush() {
  State& s = S();
  if (s.buf.empty()) return;
  if (!s.fd) {
    s.buf.clear();
    return;
  }
  size_t off = 0;
  while (off < s.buf.size()) {
    const ssize_t n = write(s.fd.get(), s.buf.data() + off, s.buf.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("access log {}: write: {}", s.path, std::strerror(errno));
      break;
    }
    off += static_cast<size_t>(n);
  }
  s.buf.clear();
}

bool Reopen() {
  State& s = S();
  if (s.path.empty()) return true;
  Flush();
  UniqueFd fd = OpenLog(s.path);
  if (!fd) return false;
  s.fd = std::move(fd);
  return true;
}

std::string FormatLine(std::string_view addr, const http::Request* req, int status,
                       uint64_t body_bytes, uint64_t took_ms) {
  std::string line_req;
  const std::string* referer = nullptr;
  const std::string* ua = nullptr;
  if (req && !req->method.empty()) {
    line_req = fmt::format("{} {} HTTP/{}.{}", req->method, req->target, req->major, req->minor);
    referer = req->Header("referer");
    ua = req->Header("user-agent");
  }
  return fmt::format("{} - - [{}] \"{}\" {} {} \"{}\" \"{}\" {}.{:03}\n", addr, http::LogTimeNow(),
                     EscapeLogField(line_req), status, body_bytes,
                     referer ? EscapeLogField(*referer) : "-", ua ? EscapeLogField(*ua) : "-",
                     took_ms / 1000, took_ms % 1000);
}

}  // namespace pf::accesslog
