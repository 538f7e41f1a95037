// shared/persist/files.cc: file helpers of the persistence code (files.h),
// the shared error text and the file names (persist.h).
#include "shared/persist/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <utility>

#include "shared/persist/persist.h"
#include "shared/util/clock.h"
#include "shared/util/unique_fd.h"

namespace pf::persist {

std::string Errno(int e) { return std::strerror(e); }

bool WriteAll(int fd, const char* p, size_t n, int* err) {
  while (n) {
    const ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

int CreateFresh(const std::string& path) {
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return -1;
  return open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
}

bool FsyncDir(const std::string& dir, int* err) {
  const UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    *err = errno;
    return false;
  }
  const bool ok = fsync(fd.get()) == 0;
  if (!ok) *err = errno;
  return ok;
}

Mapped::~Mapped() {
  if (p_) munmap(p_, n_);
}

Mapped& Mapped::operator=(Mapped&& o) noexcept {
  std::swap(p_, o.p_);
  std::swap(n_, o.n_);
  return *this;
}

bool Mapped::Open(const std::string& path, std::string* why) {
  const UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    *why = "cannot open " + path + ": " + Errno(errno);
    return false;
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) {
    *why = "cannot stat " + path + ": " + Errno(errno);
    return false;
  }
  n_ = static_cast<size_t>(st.st_size);
  if (n_ > 0) {
    p_ = mmap(nullptr, n_, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd.get(), 0);
    if (p_ == MAP_FAILED) {
      *why = "cannot map " + path + ": " + Errno(errno);
      p_ = nullptr;
      return false;
    }
  }
  return true;
}

bool ParseLogName(const std::string& n, LogName* out) {
  unsigned long long e, g, i;
  int used = 0;
  if (sscanf(n.c_str(), "log-%llu-%llu-%llu.aof%n", &e, &g, &i, &used) != 3 ||
      static_cast<size_t>(used) != n.size())
    return false;
  *out = {e, g, i, n};
  return true;
}
bool ParseSnapName(const std::string& n, SnapName* out) {
  unsigned long long e, g;
  int used = 0;
  if (sscanf(n.c_str(), "snapshot-%llu-%llu.pfs%n", &e, &g, &used) != 2 ||
      static_cast<size_t>(used) != n.size())
    return false;
  *out = {e, g, n};
  return true;
}

bool ListDir(const std::string& dir, std::vector<std::string>* names, std::string* why) {
  const std::unique_ptr<DIR, int (*)(DIR*)> d(opendir(dir.c_str()), closedir);
  if (!d) {
    *why = "cannot read " + dir + ": " + Errno(errno);
    return false;
  }
  while (dirent* e = readdir(d.get())) {
    if (e->d_name[0] == '.') continue;
    names->emplace_back(e->d_name);
  }
  return true;
}

void SetLastError(PersistShared* ps, const std::string& msg) {
  ps->error_seq.fetch_add(1, std::memory_order_acq_rel);  // odd: writing
  const size_t n = std::min(msg.size(), sizeof(ps->last_error) - 1);
  for (size_t i = 0; i < n; ++i) __atomic_store_n(&ps->last_error[i], msg[i], __ATOMIC_RELAXED);
  __atomic_store_n(&ps->last_error[n], '\0', __ATOMIC_RELAXED);
  ps->last_error_ms.store(WallMs(), std::memory_order_relaxed);
  ps->error_seq.fetch_add(1, std::memory_order_acq_rel);
}

std::string LastError(const PersistShared* ps, uint64_t* at_ms) {
  for (int tries = 0; tries < 100; ++tries) {
    const uint64_t s0 = ps->error_seq.load(std::memory_order_acquire);
    if (s0 & 1) continue;
    std::string out;
    for (size_t i = 0; i < sizeof(ps->last_error); ++i) {
      const char c = __atomic_load_n(&ps->last_error[i], __ATOMIC_RELAXED);
      if (!c) break;
      out.push_back(c);
    }
    if (at_ms) *at_ms = ps->last_error_ms.load(std::memory_order_relaxed);
    if (ps->error_seq.load(std::memory_order_acquire) == s0) return out;
  }
  return "(being updated)";
}

std::string LogFileName(uint64_t epoch, uint64_t gen, uint64_t file_id) {
  char b[96];
  snprintf(b, sizeof b, "log-%06" PRIu64 "-%06" PRIu64 "-%06" PRIu64 ".aof", epoch, gen, file_id);
  return b;
}

std::string SnapshotFileName(uint64_t epoch, uint64_t gen) {
  char b[96];
  snprintf(b, sizeof b, "snapshot-%06" PRIu64 "-%06" PRIu64 ".pfs", epoch, gen);
  return b;
}

}  // namespace pf::persist
