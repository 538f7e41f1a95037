// shared/cmd/table.cc: the command table. One row a command (name, arity,
// flags, key positions, handler), sorted by name; subcommands live in one
// array, grouped by container, so every command and subcommand has a stable
// index (its statistics row). Add a command: write its handler in the file of
// its family, declare it in internal.h, add its row here.
#include <algorithm>

#include "shared/cmd/internal.h"

namespace pf {
namespace {

constexpr uint32_t W = kCmdWrite, R = kCmdReadonly, M = kCmdDenyOom, A = kCmdAdmin,
                   NS = kCmdNoScript, L = kCmdLoading, ST = kCmdStale, F = kCmdFast,
                   NA = kCmdNoAuth, PS = kCmdPubSub, SUB = kCmdSubscribed, B = kCmdMayBlock,
                   RIM = kCmdRunsInMulti, NM = kCmdNoMulti;

// Every subcommand, grouped by container, each group sorted by name.
constexpr CommandSpec kSubcommands[] = {
    {"client|getname", 2, NS | L | ST, 0, 0, 0, CmdClientGetname, {}},
    {"client|help", 2, L | ST, 0, 0, 0, CmdClientHelp, {}},
    {"client|id", 2, NS | L | ST, 0, 0, 0, CmdClientId, {}},
    {"client|info", 2, NS | L | ST, 0, 0, 0, CmdClientInfo, {}},
    {"client|kill", -3, A | NS | L | ST, 0, 0, 0, CmdClientKill, {}},
    {"client|list", -2, A | NS | L | ST, 0, 0, 0, CmdClientList, {}},
    {"client|no-evict", 3, A | NS | L | ST, 0, 0, 0, CmdClientNoEvict, {}},
    {"client|pause", -3, A | NS | L | ST, 0, 0, 0, CmdClientPause, {}},
    {"client|reply", 3, NS | L | ST, 0, 0, 0, CmdClientReply, {}},
    {"client|setinfo", 4, NS | L | ST, 0, 0, 0, CmdClientSetinfo, {}},
    {"client|setname", 3, NS | L | ST, 0, 0, 0, CmdClientSetname, {}},
    {"client|unpause", 2, A | NS | L | ST, 0, 0, 0, CmdClientUnpause, {}},

    {"command|count", 2, L | ST, 0, 0, 0, CmdCommandCount, {}},
    {"command|docs", -2, L | ST, 0, 0, 0, CmdCommandDocs, {}},
    {"command|help", 2, L | ST, 0, 0, 0, CmdCommandHelp, {}},
    {"command|info", -2, L | ST, 0, 0, 0, CmdCommandInfo, {}},
    {"command|list", -2, L | ST, 0, 0, 0, CmdCommandList, {}},

    {"config|get", -3, A | NS | L | ST, 0, 0, 0, CmdConfigGet, {}},
    {"config|help", 2, L | ST, 0, 0, 0, CmdConfigHelp, {}},
    {"config|resetstat", 2, A | NS | L | ST, 0, 0, 0, CmdConfigResetstat, {}},
    {"config|set", -4, A | NS | L | ST, 0, 0, 0, CmdConfigSet, {}},

    {"object|encoding", 3, R, 2, 2, 1, CmdObjectEncoding, {}},
    {"object|freq", 3, R, 2, 2, 1, CmdObjectFreq, {}},
    {"object|help", 2, L | ST, 0, 0, 0, CmdObjectHelp, {}},
    {"object|idletime", 3, R, 2, 2, 1, CmdObjectIdletime, {}},
    {"object|refcount", 3, R, 2, 2, 1, CmdObjectRefcount, {}},

    {"pubsub|channels", -2, PS | L | ST, 0, 0, 0, CmdPubsubChannels, {}},
    {"pubsub|help", 2, L | ST, 0, 0, 0, CmdPubsubHelp, {}},
    {"pubsub|numpat", 2, PS | L | ST, 0, 0, 0, CmdPubsubNumpat, {}},
    {"pubsub|numsub", -2, PS | L | ST, 0, 0, 0, CmdPubsubNumsub, {}},
};

// The rows of kSubcommands that belong to `container` (a contiguous run).
constexpr std::span<const CommandSpec> Group(std::string_view container) {
  size_t first = std::size(kSubcommands), n = 0;
  for (size_t i = 0; i < std::size(kSubcommands); ++i) {
    const std::string_view name = kSubcommands[i].name;
    if (name.size() > container.size() && name.substr(0, container.size()) == container &&
        name[container.size()] == '|') {
      if (n == 0) first = i;
      ++n;
    }
  }
  return std::span<const CommandSpec>(kSubcommands + first, n);
}

constexpr CommandSpec kTable[] = {
    {"append", 3, W | M | F, 1, 1, 1, CmdAppend, {}},
    {"auth", -2, NS | L | ST | F | NA, 0, 0, 0, CmdAuth, {}},
    {"bgsave", -1, A | NS, 0, 0, 0, CmdBgsave, {}},
    {"bitcount", -2, R, 1, 1, 1, CmdBitcount, {}},
    {"bitfield", -2, W | M, 1, 1, 1, CmdBitfield, {}},
    {"bitfield_ro", -2, R | F, 1, 1, 1, CmdBitfieldRo, {}},
    {"bitop", -4, W | M, 2, -1, 1, CmdBitop, {}},
    {"bitpos", -3, R, 1, 1, 1, CmdBitpos, {}},
    {"client", -2, 0, 0, 0, 0, nullptr, Group("client")},
    {"command", -1, L | ST, 0, 0, 0, CmdCommandAll, Group("command")},
    {"config", -2, 0, 0, 0, 0, nullptr, Group("config")},
    {"copy", -3, W | M, 1, 2, 1, CmdCopy, {}},
    {"dbsize", 1, R | F, 0, 0, 0, CmdDbsize, {}},
    {"decr", 2, W | M | F, 1, 1, 1, CmdDecr, {}},
    {"decrby", 3, W | M | F, 1, 1, 1, CmdDecrby, {}},
    {"del", -2, W, 1, -1, 1, CmdDel, {}},
    {"discard", 1, NS | L | ST | F | RIM, 0, 0, 0, CmdDiscard, {}},
    {"dump", 2, R, 1, 1, 1, CmdDump, {}},
    {"echo", 2, F, 0, 0, 0, CmdEcho, {}},
    {"exec", 1, NS | L | ST | RIM, 0, 0, 0, CmdExec, {}},
    {"exists", -2, R | F, 1, -1, 1, CmdExists, {}},
    {"expire", -3, W | F, 1, 1, 1, CmdExpire, {}},
    {"expireat", -3, W | F, 1, 1, 1, CmdExpireat, {}},
    {"expiretime", 2, R | F, 1, 1, 1, CmdExpiretime, {}},
    {"flushall", -1, W, 0, 0, 0, CmdFlushall, {}},
    {"flushdb", -1, W, 0, 0, 0, CmdFlushdb, {}},
    {"flushns", 2, W, 0, 0, 0, CmdFlushns, {}},
    {"get", 2, R | F, 1, 1, 1, CmdGet, {}},
    {"getbit", 3, R | F, 1, 1, 1, CmdGetbit, {}},
    {"getdel", 2, W | F, 1, 1, 1, CmdGetdel, {}},
    {"getex", -2, W | F, 1, 1, 1, CmdGetex, {}},
    {"getrange", 4, R, 1, 1, 1, CmdGetrange, {}},
    {"getset", 3, W | M | F, 1, 1, 1, CmdGetset, {}},
    {"hello", -1, NS | L | ST | F | NA, 0, 0, 0, CmdHello, {}},
    {"incr", 2, W | M | F, 1, 1, 1, CmdIncr, {}},
    {"incrby", 3, W | M | F, 1, 1, 1, CmdIncrby, {}},
    {"incrbyfloat", 3, W | M | F, 1, 1, 1, CmdIncrbyfloat, {}},
    {"info", -1, L | ST, 0, 0, 0, CmdInfo, {}},
    {"keys", 2, R, 0, 0, 0, CmdKeys, {}},
    {"lastsave", 1, L | ST | F, 0, 0, 0, CmdLastsave, {}},
    {"lcs", -3, R, 1, 2, 1, CmdLcs, {}},
    {"mget", -2, R | F, 1, -1, 1, CmdMget, {}},
    {"move", 3, W | F, 1, 1, 1, CmdMove, {}},
    {"mset", -3, W | M, 1, -1, 2, CmdMset, {}},
    {"msetnx", -3, W | M, 1, -1, 2, CmdMsetnx, {}},
    {"multi", 1, NS | L | ST | F | RIM, 0, 0, 0, CmdMulti, {}},
    {"object", -2, 0, 0, 0, 0, nullptr, Group("object")},
    {"persist", 2, W | F, 1, 1, 1, CmdPersist, {}},
    {"pexpire", -3, W | F, 1, 1, 1, CmdPexpire, {}},
    {"pexpireat", -3, W | F, 1, 1, 1, CmdPexpireat, {}},
    {"pexpiretime", 2, R | F, 1, 1, 1, CmdPexpiretime, {}},
    {"ping", -1, F | SUB, 0, 0, 0, CmdPing, {}},
    {"psetex", 4, W | M, 1, 1, 1, CmdPsetex, {}},
    {"psubscribe", -2, PS | NS | L | ST | SUB | NM, 0, 0, 0, CmdPsubscribe, {}},
    {"pttl", 2, R | F, 1, 1, 1, CmdPttl, {}},
    {"publish", 3, PS | L | ST | F, 0, 0, 0, CmdPublish, {}},
    {"pubsub", -2, 0, 0, 0, 0, nullptr, Group("pubsub")},
    {"punsubscribe", -1, PS | NS | L | ST | SUB | NM, 0, 0, 0, CmdPunsubscribe, {}},
    {"quit", -1, NS | L | ST | F | NA | SUB | RIM, 0, 0, 0, CmdQuit, {}},
    {"randomkey", 1, R, 0, 0, 0, CmdRandomkey, {}},
    {"rename", 3, W, 1, 2, 1, CmdRename, {}},
    {"renamenx", 3, W | F, 1, 2, 1, CmdRenamenx, {}},
    {"reset", 1, NS | L | ST | F | NA | SUB | RIM, 0, 0, 0, CmdReset, {}},
    {"restore", -4, W | M, 1, 1, 1, CmdRestore, {}},
    {"save", 1, A | NS | B | NM, 0, 0, 0, CmdSave, {}},
    {"scan", -2, R, 0, 0, 0, CmdScan, {}},
    {"select", 2, L | ST | F, 0, 0, 0, CmdSelect, {}},
    {"set", -3, W | M, 1, 1, 1, CmdSet, {}},
    {"setbit", 4, W | M, 1, 1, 1, CmdSetbit, {}},
    {"setex", 4, W | M, 1, 1, 1, CmdSetex, {}},
    {"setnx", 3, W | M | F, 1, 1, 1, CmdSetnx, {}},
    {"setrange", 4, W | M, 1, 1, 1, CmdSetrange, {}},
    {"strlen", 2, R | F, 1, 1, 1, CmdStrlen, {}},
    {"subscribe", -2, PS | NS | L | ST | SUB | NM, 0, 0, 0, CmdSubscribe, {}},
    {"swapdb", 3, W | F, 0, 0, 0, CmdSwapdb, {}},
    {"time", 1, L | ST | F, 0, 0, 0, CmdTime, {}},
    {"touch", -2, R | F, 1, -1, 1, CmdTouch, {}},
    {"ttl", 2, R | F, 1, 1, 1, CmdTtl, {}},
    {"type", 2, R | F, 1, 1, 1, CmdType, {}},
    {"unlink", -2, W | F, 1, -1, 1, CmdDel, {}},
    {"unsubscribe", -1, PS | NS | L | ST | SUB | NM, 0, 0, 0, CmdUnsubscribe, {}},
    {"unwatch", 1, NS | L | ST | F, 0, 0, 0, CmdUnwatch, {}},
    {"watch", -2, NS | L | ST | F | RIM, 1, -1, 1, CmdWatch, {}},
};

template <size_t N>
constexpr bool SortedByName(const CommandSpec (&t)[N]) {
  for (size_t i = 1; i < N; ++i)
    if (!(t[i - 1].name < t[i].name)) return false;
  return true;
}
static_assert(SortedByName(kTable), "kTable must be sorted by name (COMMAND lists it in order)");
static_assert(SortedByName(kSubcommands), "kSubcommands must be grouped and sorted by name");

// Every subcommand belongs to a container row, which names exactly its group.
constexpr bool GroupsComplete() {
  size_t grouped = 0;
  for (const CommandSpec& s : kTable) {
    for (const CommandSpec& sub : s.subcommands) {
      if (sub.name.substr(0, s.name.size()) != s.name || sub.name[s.name.size()] != '|')
        return false;
    }
    grouped += s.subcommands.size();
  }
  return grouped == std::size(kSubcommands);
}
static_assert(GroupsComplete(), "every subcommand row needs its container in kTable");
static_assert(std::size(kTable) + std::size(kSubcommands) <= kMaxCommandStats,
              "raise kMaxCommandStats (shared/shm.h) for more commands");

// The lookup index: kTable's rows bucketed by (first letter, length), built
// at compile time. A binary search over ~100 names sharing prefixes (get,
// getbit, getdel, getex ...) cost GET 150 instructions of name compares.
constexpr size_t kNameLens = 24, kNameBuckets = 27 * kNameLens;
constexpr size_t NameBucket(std::string_view n) {
  const char c = n[0];
  const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
  const size_t letter = (lower >= 'a' && lower <= 'z') ? static_cast<size_t>(lower - 'a') : 26;
  return letter * kNameLens + std::min<size_t>(n.size(), kNameLens - 1);
}
struct NameIndex {
  uint16_t start[kNameBuckets + 1];  // bucket b: rows[start[b] .. start[b + 1])
  uint16_t rows[std::size(kTable)];
};
constexpr NameIndex BuildNameIndex() {
  NameIndex x{};
  for (const CommandSpec& s : kTable) x.start[NameBucket(s.name) + 1]++;
  for (size_t b = 0; b < kNameBuckets; ++b) x.start[b + 1] += x.start[b];
  uint16_t filled[kNameBuckets] = {};
  for (size_t i = 0; i < std::size(kTable); ++i) {
    const size_t b = NameBucket(kTable[i].name);
    x.rows[x.start[b] + filled[b]++] = static_cast<uint16_t>(i);
  }
  return x;
}
constexpr NameIndex kNameIndex = BuildNameIndex();

}  // namespace

std::span<const CommandSpec> CommandTable() { return kTable; }

const CommandSpec* LookupCommand(std::string_view name) {
  if (name.empty()) return nullptr;
  // One name compared for nearly every command (GET's bucket holds only GET).
  const size_t b = NameBucket(name);
  for (uint16_t i = kNameIndex.start[b]; i < kNameIndex.start[b + 1]; ++i) {
    const CommandSpec& s = kTable[kNameIndex.rows[i]];
    if (s.name.size() == name.size() && EqualsNoCase(name, s.name)) return &s;
  }
  return nullptr;
}

const CommandSpec* LookupSubcommand(const CommandSpec& container, std::string_view sub) {
  for (const CommandSpec& s : container.subcommands) {
    const std::string_view short_name = s.name.substr(container.name.size() + 1);
    if (EqualsNoCase(sub, short_name)) return &s;
  }
  return nullptr;
}

uint32_t CommandIndex(const CommandSpec& spec) {
  if (&spec >= kTable && &spec < kTable + std::size(kTable))
    return static_cast<uint32_t>(&spec - kTable);
  return static_cast<uint32_t>(std::size(kTable) + (&spec - kSubcommands));
}

const CommandSpec* CommandAt(uint32_t index) {
  if (index < std::size(kTable)) return &kTable[index];
  index -= static_cast<uint32_t>(std::size(kTable));
  return index < std::size(kSubcommands) ? &kSubcommands[index] : nullptr;
}

uint32_t CommandCount() {
  return static_cast<uint32_t>(std::size(kTable) + std::size(kSubcommands));
}

}  // namespace pf
