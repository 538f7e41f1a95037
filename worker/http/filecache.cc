// worker/http/filecache.cc: see filecache.h. Path safety lives in
// OpenBeneath(): every miss and every re-check opens through it, so a cached
// answer never outlives a file's move out of reach by more than valid_ms.
#include "worker/http/filecache.h"

#include <event2/buffer.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/openat2.h>
#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <functional>
#include <iterator>

#include "shared/config.h"
#include "worker/http/util.h"

namespace pf::http {

CachedFile::~CachedFile() {
  // Responses still queued keep their own reference; the fd closes after the last.
  if (segment) evbuffer_file_segment_free(segment);
}

namespace {

// Opens `rel` (relative, no leading '/') beneath the root: the kernel refuses
// any resolution that leaves it (.., absolute or escaping symlinks, magic
// links). Without openat2 (ENOSYS, kernels < 5.6) the fallback resolves the
// path with realpath and checks the prefix. -1 with errno on failure.
int OpenBeneath(int rootfd, const std::string& root, const std::string& rel) {
  static bool have_openat2 = true;
  const int flags =
      O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;  // O_NONBLOCK: a FIFO must not block
  if (have_openat2) {
    open_how how{};
    how.flags = flags;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    const long fd = syscall(SYS_openat2, rootfd, rel.c_str(), &how, sizeof how);
    if (fd >= 0 || errno != ENOSYS) return static_cast<int>(fd);
    have_openat2 = false;
  }
  char resolved[PATH_MAX], real_root_buf[PATH_MAX];
  if (!realpath(root.c_str(), real_root_buf)) return -1;
  const std::string full = root + "/" + rel;
  if (!realpath(full.c_str(), resolved)) return -1;
  const std::string_view r(resolved), rr(real_root_buf);
  if (r != rr && !(r.size() > rr.size() && r.substr(0, rr.size()) == rr &&
                   (rr == "/" || r[rr.size()] == '/'))) {
    errno = EXDEV;
    return -1;
  }
  return open(resolved, flags);
}

int OpenErrorStatus(int err) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return 404;
    case ENAMETOOLONG:
      return 414;
    default:
      return 403;  // EXDEV (escapes the root), ELOOP, EACCES, EPERM, ...
  }
}

bool SameTime(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

}  // namespace

size_t FileCache::Hash::operator()(const KeyView& k) const {
  return std::hash<std::string_view>()(k.path) ^
         (std::hash<const void*>()(k.listener) * 0x9e3779b97f4a7c15ull);
}

FileCache& FileCache::Get() {
  static FileCache cache;
  return cache;
}

// A deploy may swap the docroot (a rename, or a symlink flipped to a new
// release): the path is looked at again every valid_ms, and when it names
// another directory (or none) the root is reopened and its generation
// changes, so every cached file is re-resolved beneath the new one at once.
// A root that cannot be opened is retried at the next check.
const FileCache::Root& FileCache::RootOf(const ListenerConf& l, uint64_t now_ms) {
  auto it = roots_.find(l.root);
  if (it == roots_.end()) it = roots_.try_emplace(l.root).first;
  Root& r = it->second;
  if (r.checked_ms != 0 && now_ms - r.checked_ms < lim_.valid_ms) return r;
  r.checked_ms = now_ms;
  struct stat st;
  if (r.fd && stat(l.root.c_str(), &st) == 0 && st.st_dev == r.dev && st.st_ino == r.ino) return r;
  const bool had = static_cast<bool>(r.fd);
  r.fd = UniqueFd(open(l.root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  r.gen = ++root_gen_;
  if (!r.fd) {
    r.err = errno;
    if (had || r.logged_err != r.err)
      spdlog::error("http {}: root {}: {}", l.name, l.root, std::strerror(r.err));
    r.logged_err = r.err;
    return r;
  }
  r.logged_err = 0;
  if (fstat(r.fd.get(), &st) == 0) {
    r.dev = st.st_dev;
    r.ino = st.st_ino;
  }
  if (had) spdlog::info("http {}: root {} now names another directory; serving it", l.name, l.root);
  return r;
}

Resolved FileCache::Open(const ListenerConf& l, const Root& root, std::string_view path,
                         UniqueFd* fd, struct stat* st, std::string_view* name) {
  Resolved r;
  const int rootfd = root.fd.get();
  if (rootfd < 0) {
    r.status = OpenErrorStatus(root.err);
    return r;
  }
  const std::string rel = path.size() > 1 ? std::string(path.substr(1)) : ".";
  *fd = UniqueFd(OpenBeneath(rootfd, l.root, rel));
  if (fd->get() < 0) {
    r.status = OpenErrorStatus(errno);
    return r;
  }
  if (fstat(fd->get(), st) != 0) {
    r.status = 403;
    return r;
  }
  *name = path;
  if (S_ISDIR(st->st_mode)) {
    if (path.back() != '/') {
      r.redirect = true;
      return r;
    }
    const std::string index_rel = (rel == "." ? std::string() : rel) + l.index;
    UniqueFd ifd(OpenBeneath(rootfd, l.root, index_rel));
    struct stat ist;
    if (ifd.get() >= 0 && fstat(ifd.get(), &ist) == 0 && S_ISREG(ist.st_mode)) {
      *fd = std::move(ifd);
      *st = ist;
      *name = l.index;
    } else if (l.autoindex && (ifd.get() < 0 && (errno == ENOENT || errno == ENOTDIR))) {
      r.dir = std::move(*fd);
      return r;
    } else if (l.autoindex && ifd.get() < 0) {
      r.status = OpenErrorStatus(errno);
      return r;
    } else {
      r.status = 403;
      return r;
    }
  }
  if (!S_ISREG(st->st_mode)) r.status = 403;
  return r;
}

bool FileCache::Fill(CachedFile* f, UniqueFd fd, const struct stat& st, std::string_view name,
                     uint64_t now_ms) {
  f->dev = st.st_dev;
  f->ino = st.st_ino;
  f->size = static_cast<uint64_t>(st.st_size);
  f->mtime = st.st_mtim;
  f->ctime = st.st_ctim;
  f->content_type = MimeType(name);
  f->checked_ms = now_ms;
  // A change in the same clock tick as the last one leaves stat unchanged:
  // bytes read within a second or so of a change are re-read at the next check.
  const time_t changed = std::max(st.st_mtim.tv_sec, st.st_ctim.tv_sec);
  f->racy = changed + 2 > time(nullptr);
  if (f->size <= lim_.max_inline_bytes) {
    f->body.resize(f->size);
    size_t got = 0;
    while (got < f->size) {
      const ssize_t n =
          pread(fd.get(), f->body.data() + got, f->size - got, static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return false;
      if (n == 0) break;  // truncated under us: serve what is there, re-read at the next check
      got += static_cast<size_t>(n);
    }
    if (got != f->size) {
      f->body.resize(got);
      f->size = got;
      f->racy = true;
    }
    f->in_memory = true;
  } else {
    f->segment = evbuffer_file_segment_new(fd.get(), 0, static_cast<ev_off_t>(f->size),
                                           EVBUF_FS_CLOSE_ON_FREE | EVBUF_FS_DISABLE_LOCKING);
    if (!f->segment) return false;
    f->fd = fd.Release();  // the segment owns it now
  }
  f->etag = fmt::format("\"{:x}-{:x}\"", static_cast<uint64_t>(f->mtime.tv_sec), f->size);
  f->last_modified = HttpDate(f->mtime.tv_sec);
  f->validators = "Last-Modified: " + f->last_modified + "\r\nETag: " + f->etag + "\r\n";
  f->validators_len = f->validators.size();
  f->validators += "Accept-Ranges: bytes\r\n";
  f->content_length = fmt::format("Content-Length: {}\r\n", f->size);
  return true;
}

Resolved FileCache::Resolve(const ListenerConf& l, std::string_view path, uint64_t now_ms,
                            bool remember_missing) {
  const Root& root = RootOf(l, now_ms);
  if (remember_missing) {
    if (auto m = missing_.find(KeyView{&l, path}); m != missing_.end()) {
      if (now_ms - m->second.checked_ms < lim_.valid_ms && m->second.root_gen == root.gen) {
        Resolved r;
        r.status = 404;
        return r;
      }
      missing_.erase(m);
    }
  }
  auto it = map_.find(KeyView{&l, path});
  if (it != map_.end()) {
    const List::iterator node = it->second;
    if (now_ms - node->file.checked_ms < lim_.valid_ms && node->file.root_gen == root.gen) {
      if (node != lru_.begin()) lru_.splice(lru_.begin(), lru_, node);
      Resolved r;
      r.file = &node->file;
      return r;
    }
  }
  UniqueFd fd;
  struct stat st;
  std::string_view name;
  Resolved r = Open(l, root, path, &fd, &st, &name);
  if (r.status != 0 || r.redirect || r.dir.get() >= 0) {
    if (it != map_.end()) Erase(it->second);
    if (remember_missing && r.status == 404) {
      if (missing_.size() >= lim_.max_entries) missing_.clear();
      missing_[Key{&l, std::string(path)}] = Missing{now_ms, root.gen};
    }
    return r;
  }
  if (it != map_.end()) {
    const List::iterator node = it->second;
    CachedFile& f = node->file;
    if (!f.racy && f.dev == st.st_dev && f.ino == st.st_ino &&
        f.size == static_cast<uint64_t>(st.st_size) && SameTime(f.mtime, st.st_mtim) &&
        SameTime(f.ctime, st.st_ctim)) {
      f.checked_ms = now_ms;
      f.root_gen = root.gen;
      if (node != lru_.begin()) lru_.splice(lru_.begin(), lru_, node);
      r.file = &f;
      return r;
    }
    Erase(node);
  }
  lru_.emplace_front();
  Node& n = lru_.front();
  n.key = Key{&l, std::string(path)};
  if (!Fill(&n.file, std::move(fd), st, name, now_ms)) {
    lru_.pop_front();
    r.status = 500;
    return r;
  }
  n.file.root_gen = root.gen;
  map_.emplace(n.key, lru_.begin());
  bytes_ += n.file.body.size();
  Evict();
  r.file = &n.file;
  return r;
}

void FileCache::Erase(List::iterator it) {
  bytes_ -= it->file.body.size();
  map_.erase(map_.find(KeyView{it->key.listener, it->key.path}));
  lru_.erase(it);
}

void FileCache::Evict() {
  // The front is the entry being served: never evicted here.
  while ((map_.size() > lim_.max_entries || bytes_ > lim_.max_bytes) && lru_.size() > 1)
    Erase(std::prev(lru_.end()));
}

}  // namespace pf::http
