// shared/log.cc: an spdlog sink that writes each formatted line with one
// write(2) to an O_APPEND descriptor (lines from many processes never
// interleave) and can reopen its path in place (dup2 onto the same fd).
#include "shared/log.h"

#include <fcntl.h>
#include <spdlog/sinks/base_sink.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <mutex>
#include <utility>

#include "shared/util/unique_fd.h"

namespace pf::log {
namespace {

class FdSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit FdSink(std::string path) : path_(std::move(path)) {}
  bool Open() {
    if (path_ == "stderr") {
      fd_ = 2;
      return true;
    }
    // A fresh checkout has no var/log yet: create the folder, as for the pidfile.
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
    UniqueFd fd(OpenLogFile(path_, &created_));
    if (!fd) return false;
    if (!file_) {
      file_ = std::move(fd);
      fd_ = file_.get();
    } else {
      ::dup2(fd.get(), file_.get());  // atomically replaces the old file for every writer
    }
    return true;
  }
  int fd() const { return fd_; }
  bool is_file() const { return path_ != "stderr"; }
  void set_path(const std::string& p) {
    if (is_file()) path_ = p;
  }
  // The last open created the file (the master hands such a file over).
  bool TakeCreated() { return std::exchange(created_, false); }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    const char* p = buf.data();
    size_t left = buf.size();
    while (left > 0) {
      ssize_t n = ::write(fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
  void flush_() override {}

 private:
  std::string path_;
  UniqueFd file_;  // the log file (none for stderr)
  int fd_ = -1;    // where lines go: file_ or 2
  bool created_ = false;
};

std::shared_ptr<FdSink> g_sink;
bool g_stderr_redirected = false;

void ApplyPattern(const std::string& role) {
  spdlog::default_logger()->set_pattern("%Y-%m-%d %H:%M:%S.%e [%l] %P " + role + ": %v");
}

}  // namespace

bool Init(const std::string& path, const std::string& level, const std::string& role) {
  auto sink = std::make_shared<FdSink>(path);
  if (!sink->Open()) return false;
  g_sink = sink;
  auto logger = std::make_shared<spdlog::logger>("preforkd", g_sink);
  spdlog::set_default_logger(logger);
  SetLevel(level);
  ApplyPattern(role);
  return true;
}

void SetRole(const std::string& role) { ApplyPattern(role); }

void SetLevel(const std::string& level) {
  spdlog::default_logger()->set_level(spdlog::level::from_str(level));
  spdlog::default_logger()->flush_on(spdlog::level::trace);
}

bool Reopen() {
  if (!g_sink || !g_sink->Open()) return !g_sink;
  if (g_stderr_redirected) ::dup2(g_sink->fd(), 2);
  return true;
}

void SetPath(const std::string& path) {
  if (g_sink) g_sink->set_path(path);
}

bool HandCreatedFileTo(uid_t uid, gid_t gid) {
  if (!g_sink || !g_sink->is_file() || !g_sink->TakeCreated()) return true;
  return fchown(g_sink->fd(), uid, gid) == 0;
}

int OpenLogFile(const std::string& path, bool* created) {
  const int flags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK;
  if (created) *created = false;
  int fd = ::open(path.c_str(), flags | O_CREAT | O_EXCL, 0640);
  if (fd >= 0) {
    if (created) *created = true;
  } else if (errno == EEXIST) {
    fd = ::open(path.c_str(), flags);
  }
  if (fd < 0) return -1;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    errno = EINVAL;
    return -1;
  }
  // O_NONBLOCK only kept a FIFO from blocking the open; a file takes no notice.
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

void RedirectStderr() {
  if (g_sink && g_sink->is_file()) {
    ::dup2(g_sink->fd(), 2);
    g_stderr_redirected = true;
  }
}

}  // namespace pf::log
