// shared/util/assert.h: run-time invariant checks that stay on in release
// builds, where a broken invariant would corrupt shared state (the shard
// locks, the arenas, the bus). A failed check logs what failed and where,
// then aborts the process: a worker is respawned by the master, and a shard
// lock it held is repaired by the next locker (EOWNERDEAD). As Redis'
// serverAssert and LMDB's mdb_cassert.
#pragma once

namespace pf {

[[noreturn]] void AssertFailed(const char* expr, const char* file, int line, const char* what);

}  // namespace pf

#define PF_ASSERT(expr)                                                                  \
  do {                                                                                   \
    if (__builtin_expect(!(expr), 0)) ::pf::AssertFailed(#expr, __FILE__, __LINE__, ""); \
  } while (0)

// With a message that says what the invariant protects.
#define PF_ASSERT_MSG(expr, what)                                                          \
  do {                                                                                     \
    if (__builtin_expect(!(expr), 0)) ::pf::AssertFailed(#expr, __FILE__, __LINE__, what); \
  } while (0)
