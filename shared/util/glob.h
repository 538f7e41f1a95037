// shared/util/glob.h: Redis' glob (stringmatchlen: * ? [abc] [^a] [a-z] \x),
// iterative and with bounded work, for KEYS, SCAN MATCH and pub/sub patterns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pf {

// Token steps one match may take before it gives up (and answers "no").
inline constexpr size_t kGlobMaxWork = 1 << 20;

// O(len(pattern) * len(s)) at worst, capped at kGlobMaxWork: a hostile
// pattern cannot burn the worker's CPU. A capped match is "no".
bool GlobMatch(std::string_view pattern, std::string_view s);
// The same, adding the steps it took to *total (+1 per call, so a key costs
// a step even when the match is instant): KEYS and SCAN budget a command.
bool GlobMatchCounted(std::string_view pattern, std::string_view s, uint64_t* total);

}  // namespace pf
