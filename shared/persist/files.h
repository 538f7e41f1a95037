// shared/persist/files.h: what the loader, the snapshot writer and the log
// writer share: file names in the data folder, whole writes, a folder's
// fsync, read-only mappings of whole files. Internal to shared/persist/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pf::persist {

std::string Errno(int e);
// write(2) until all `n` bytes are written; false with *err = errno.
bool WriteAll(int fd, const char* p, size_t n, int* err);
// fsync of the folder itself (its entries become durable).
bool FsyncDir(const std::string& dir, int* err);
// A new file at `path`, 0600, for writing: whatever was there (a file, or a
// link someone with write access to the folder planted) is unlinked first,
// and the create is O_EXCL | O_NOFOLLOW, so a process running as root never
// writes through a name another user prepared. -1 with errno set.
int CreateFresh(const std::string& path);
// The names in `dir`, without dot files.
bool ListDir(const std::string& dir, std::vector<std::string>* names, std::string* why);

// A read-only view of a whole file.
class Mapped {
 public:
  Mapped() = default;
  ~Mapped();
  Mapped(Mapped&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; }
  Mapped& operator=(Mapped&& o) noexcept;
  Mapped(const Mapped&) = delete;
  Mapped& operator=(const Mapped&) = delete;
  bool Open(const std::string& path, std::string* why);
  std::string_view view() const { return {static_cast<const char*>(p_), p_ ? n_ : 0}; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// log-E-G-ID.aof and snapshot-E-G.pfs (persist.h makes them).
struct LogName {
  uint64_t epoch, gen, id;
  std::string name;
};
struct SnapName {
  uint64_t epoch, gen;
  std::string name;
};
bool ParseLogName(const std::string& n, LogName* out);
bool ParseSnapName(const std::string& n, SnapName* out);

}  // namespace pf::persist
