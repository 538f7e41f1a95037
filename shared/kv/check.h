// shared/kv/check.h: the shard checker (every invariant of index, arena,
// LRU and counters) and crash repair: rebuild the derived structures from
// the arena when a lock holder died (EOWNERDEAD).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "shared/kv/layout.h"

namespace pf::kv::internal {

bool Fail(std::string* why, const std::string& msg);
bool VerifyLocked(const StoreHeader* h, ShardHeader* s, std::string* why);
// Every EOWNERDEAD of a shard mutex comes here: repair, check, and only then
// pthread_mutex_consistent(); throws ShardUnrecoverable if it cannot repair.
void MutexFailed(const StoreHeader* h, ShardHeader* s);
// Shard repairs done by this process.
extern std::atomic<uint64_t> g_recoveries;

}  // namespace pf::kv::internal
