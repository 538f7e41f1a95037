// worker/http/filecache.h: the static handler's per-worker open-file cache
// (nginx's open_file_cache, with h2o-style in-memory bodies for small files):
// path resolution beneath the docroot, validators and header text computed
// once per file version, re-checked against the file system at most every
// `valid_ms`, bounded in entries and bytes (LRU).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <functional>
#include <list>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>

#include "shared/util/unique_fd.h"

struct evbuffer_file_segment;

namespace pf {
struct ListenerConf;
}

namespace pf::http {

// The cache's bounds; the one place they are decided.
struct FileCacheLimits {
  size_t max_entries = 1000;     // files (each larger one holds an open fd)
  size_t max_bytes = 32u << 20;  // in-memory bodies, summed
  size_t max_inline_bytes =
      64u << 10;             // files up to this are held in memory; larger ones use sendfile
  uint32_t valid_ms = 1000;  // an entry is re-checked (re-opened, fstat) after this
};

// One version of one file, as served. Everything a 200 needs is precomputed.
struct CachedFile {
  dev_t dev = 0;
  ino_t ino = 0;
  uint64_t size = 0;
  timespec mtime{}, ctime{};
  std::string etag;               // "\"<mtime hex>-<size hex>\"" as nginx writes it
  std::string last_modified;      // IMF-fixdate of mtime
  std::string_view content_type;  // from the MIME table (lives for the process)
  // "Last-Modified: ...\r\nETag: ...\r\n" (what a 304 carries), then
  // "Accept-Ranges: bytes\r\n" (validators_len marks the split).
  std::string validators;
  size_t validators_len = 0;
  std::string content_length;  // "Content-Length: <size>\r\n" of the whole file
  bool in_memory = false;
  std::string body;                          // the whole file when in_memory
  evbuffer_file_segment* segment = nullptr;  // otherwise: the open file, refcounted by libevent
  int fd = -1;  // ...whose descriptor (the segment's; for reading it to compress)
  // Changed too recently for its stat to prove the bytes unchanged (as git's
  // "racily clean" index entries): re-read at the next check, not trusted.
  bool racy = false;
  uint64_t checked_ms = 0;  // last check against the file system (monotonic)
  uint64_t root_gen = 0;    // the docroot it was resolved beneath (FileCache::Root)

  CachedFile() = default;
  ~CachedFile();
  CachedFile(const CachedFile&) = delete;
  CachedFile& operator=(const CachedFile&) = delete;
};

// What a path resolves to.
struct Resolved {
  int status = 0;                    // 0: `file` is set; else the error status (403, 404, 414)
  const CachedFile* file = nullptr;  // valid until the next Resolve()
  bool redirect = false;             // a directory asked for without the trailing slash (301)
  UniqueFd dir;                      // a directory without index: list it (autoindex)
};

class FileCache {
 public:
  explicit FileCache(const FileCacheLimits& lim = {}) : lim_(lim) {}
  FileCache(const FileCache&) = delete;
  FileCache& operator=(const FileCache&) = delete;

  // `path` is normalised (NormalizePath): starts with '/', no dot segments.
  // Opens beneath the listener's root with the kernel's RESOLVE_BENEATH rules
  // on every miss and every check; a cached answer is at most valid_ms old.
  // `remember_missing`: a 404 is cached too, for valid_ms (the precompressed
  // variants, file.gz and file.br, are looked up for every request of a
  // file; most do not exist).
  Resolved Resolve(const ListenerConf& l, std::string_view path, uint64_t now_ms,
                   bool remember_missing = false);

  size_t entries() const { return map_.size(); }
  size_t bytes() const { return bytes_; }

  // The worker's cache (one per process: workers are single-threaded).
  static FileCache& Get();

 private:
  struct Key {
    const ListenerConf* listener;
    std::string path;
  };
  struct KeyView {
    const ListenerConf* listener;
    std::string_view path;
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(const KeyView& k) const;
    size_t operator()(const Key& k) const { return (*this)(KeyView{k.listener, k.path}); }
  };
  struct Eq {
    using is_transparent = void;
    static KeyView V(const Key& k) { return {k.listener, k.path}; }
    static KeyView V(const KeyView& k) { return k; }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const {
      return V(a).listener == V(b).listener && V(a).path == V(b).path;
    }
  };
  struct Node {
    Key key;
    CachedFile file;
  };
  using List = std::list<Node>;

  // A docroot as opened: re-checked every valid_ms (RootOf).
  struct Root {
    UniqueFd fd;  // O_PATH; empty when it could not be opened (err)
    dev_t dev = 0;
    ino_t ino = 0;
    int err = 0, logged_err = 0;
    uint64_t checked_ms = 0;
    uint64_t gen = 0;  // changes whenever the path names another directory
  };
  const Root& RootOf(const ListenerConf& l, uint64_t now_ms);
  // Resolves `path` on the file system; for a regular file, fills `*fd` and `*st`.
  Resolved Open(const ListenerConf& l, const Root& root, std::string_view path, UniqueFd* fd,
                struct stat* st, std::string_view* name);
  bool Fill(CachedFile* f, UniqueFd fd, const struct stat& st, std::string_view name,
            uint64_t now_ms);
  void Erase(List::iterator it);
  void Evict();

  FileCacheLimits lim_;
  // Paths found missing (remember_missing): when they were looked at, and
  // beneath which root. Cleared whole when it reaches max_entries.
  struct Missing {
    uint64_t checked_ms = 0;
    uint64_t root_gen = 0;
  };
  std::unordered_map<Key, Missing, Hash, Eq> missing_;
  std::map<std::string, Root, std::less<>> roots_;
  uint64_t root_gen_ = 0;
  List lru_;  // most recently used first
  std::unordered_map<Key, List::iterator, Hash, Eq> map_;
  size_t bytes_ = 0;
};

}  // namespace pf::http
