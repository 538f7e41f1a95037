// shared/kv/shard_lock.h: the one lock guard of a shard. Lock order (the
// one rule, enforced by its callers in store.cc): an operation holds one
// shard lock; an operation that needs several (MSET, MGET, FLUSHALL, WithKeys,
// Exclusive) takes them all in ascending shard index. The
// large-object area's lock (large.cc) comes after any shard lock, is held
// only inside one allocation, free or check, and never while taking a
// shard lock.
#pragma once

#include <errno.h>
#include <pthread.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "shared/kv/check.h"
#include "shared/kv/kv.h"
#include "shared/kv/layout.h"
#include "shared/util/assert.h"

namespace pf::kv::internal {

// Inside Store::Exclusive (EXEC): which shards this process already holds,
// one byte a shard; null outside. A ShardLock of a held shard is a no-op;
// one of a shard not held would break the lock order (a command whose table
// row names the wrong key positions): it throws instead of risking a
// deadlock, and the command answers an internal error.
extern const uint8_t* g_held;

class ShardLock {
 public:
  ShardLock(const StoreHeader* h, ShardHeader* s) : s_(s) {
    PF_ASSERT_MSG(s->index < h->shard_count, "a shard header outside the store");
    if (__builtin_expect(g_held != nullptr, 0)) {
      s_ = nullptr;
      if (!g_held[s->index])
        throw std::logic_error("kv: shard " + std::to_string(s->index) +
                               " is outside the Exclusive section's lock set");
      return;
    }
    // Critical sections are a few hundred nanoseconds: spin briefly before
    // sleeping in the kernel (a futex wait + wake costs more than the wait).
    // trylock reports EOWNERDEAD like lock does, so recovery stays in one place.
    int r = pthread_mutex_trylock(&s->mu);
    for (int i = 0; r == EBUSY && i < 100; ++i) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      r = pthread_mutex_trylock(&s->mu);
    }
    if (r == EBUSY) r = pthread_mutex_lock(&s->mu);
    if (__builtin_expect(r == 0, 1)) return;
    if (r == EOWNERDEAD) {
      MutexFailed(h, s);  // throws (not holding the lock) if it cannot repair
      return;
    }
    s_ = nullptr;
    if (r == ENOTRECOVERABLE)
      throw ShardUnrecoverable("kv shard " + std::to_string(s->index) + " is unrecoverable");
    throw std::runtime_error("kv: pthread_mutex_lock failed: " + std::string(std::strerror(r)));
  }
  ShardLock(ShardLock&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  ShardLock(const ShardLock&) = delete;
  ShardLock& operator=(const ShardLock&) = delete;
  ShardLock& operator=(ShardLock&&) = delete;
  ~ShardLock() {
    if (s_) pthread_mutex_unlock(&s_->mu);
  }

 private:
  ShardHeader* s_;
};

}  // namespace pf::kv::internal
