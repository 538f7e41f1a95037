// shared/cmd/server.cc: the server's introspection commands: COMMAND (from
// the table), CONFIG GET (the values clients and benchmarks read; SET is
// refused: the config file is the one source), TIME.
#include "shared/cmd/internal.h"

namespace pf {
namespace {

struct ConfigParam {
  std::string_view name;
  void (*value)(const CommandCtx&, std::string*);
};

void ListenerPort(const CommandCtx& c, std::string* v) {
  if (!c.env.config) return AppendU64(v, 0);
  for (const ListenerConf& l : c.env.config->listeners)
    if (l.protocol == Protocol::kResp) return AppendU64(v, l.port);
  AppendU64(v, 0);
}

const ConfigParam kConfigParams[] = {
    {"appendonly", [](const CommandCtx&, std::string* v) { *v += "no"; }},
    {"databases", [](const CommandCtx&, std::string* v) { *v += "1"; }},
    {"maxclients",
     [](const CommandCtx& c, std::string* v) {
       AppendU64(v, c.env.config ? c.env.config->limits.max_connections : 0);
     }},
    {"maxmemory", [](const CommandCtx& c,
                     std::string* v) { AppendU64(v, c.env.store->GetStats().capacity_bytes); }},
    {"maxmemory-policy",
     [](const CommandCtx& c, std::string* v) {
       bool lru = c.env.config && c.env.config->kv.eviction == Eviction::kAllKeysLru;
       *v += lru ? "allkeys-lru" : "noeviction";
     }},
    {"port", ListenerPort},
    {"proto-max-bulk-len",
     [](const CommandCtx& c, std::string* v) {
       AppendU64(v, c.env.config ? c.env.config->limits.max_bulk_bytes : 0);
     }},
    {"save", [](const CommandCtx&, std::string*) {}},
    {"timeout",
     [](const CommandCtx& c, std::string* v) {
       AppendU64(v, c.env.config ? c.env.config->timeouts.idle_ms / 1000 : 0);
     }},
};

}  // namespace

void CmdConfigGet(CommandCtx& c) {
  // config.c configGetCommand: each parameter once, matched case-insensitively.
  bool hit[std::size(kConfigParams)] = {};
  size_t n = 0;
  std::string& lower = Tls().lower;
  for (size_t j = 2; j < c.argc(); ++j) {
    lower.clear();
    for (char ch : c.arg(j)) lower += AsciiLower(ch);
    for (size_t i = 0; i < std::size(kConfigParams); ++i)
      if (!hit[i] && GlobMatch(lower, kConfigParams[i].name)) {
        hit[i] = true;
        n++;
      }
  }
  c.out.MapBegin(n);
  std::string& v = ErrBuf();
  for (size_t i = 0; i < std::size(kConfigParams); ++i) {
    if (!hit[i]) continue;
    c.out.Bulk(kConfigParams[i].name);
    v.clear();
    kConfigParams[i].value(c, &v);
    c.out.Bulk(v);
  }
}

void CmdConfigSet(CommandCtx& c) { c.out.Error(ErrCode::kErr, errtext::kConfigSet); }

void CmdConfigHelp(CommandCtx& c) {
  ReplyHelp(
      c, "CONFIG",
      {"GET <pattern>", "    Return parameters matching the glob-like <pattern> and their values.",
       "RESETSTAT", "    Reset statistics reported by the INFO command.", "SET <directive> <value>",
       "    Not supported: edit the config file and reload."});
}

void CmdTime(CommandCtx& c) {
  std::string& b = ErrBuf();
  c.out.ArrayBegin(2);
  AppendU64(&b, c.now_ms / 1000);
  c.out.Bulk(b);
  b.clear();
  AppendU64(&b, (c.now_ms % 1000) * 1000);
  c.out.Bulk(b);
}

namespace {

void ReplyCommandInfo(CommandCtx& c, const CommandSpec& s) {
  // Redis' names and order; kCmdSubscribed and kCmdMayBlock are ours and not shown.
  static constexpr std::pair<uint32_t, std::string_view> kFlagNames[] = {
      {kCmdPubSub, "pubsub"},   {kCmdWrite, "write"}, {kCmdReadonly, "readonly"},
      {kCmdDenyOom, "denyoom"}, {kCmdAdmin, "admin"}, {kCmdNoScript, "noscript"},
      {kCmdLoading, "loading"}, {kCmdStale, "stale"}, {kCmdFast, "fast"},
      {kCmdNoAuth, "no_auth"},
  };
  c.out.ArrayBegin(10);
  c.out.Bulk(s.name);
  c.out.Integer(s.arity);
  size_t nflags = 0;
  for (auto& [bit, name] : kFlagNames) nflags += (s.flags & bit) ? 1 : 0;
  c.out.SetBegin(nflags);  // sets in RESP3, as Redis' addReplyCommandFlags
  for (auto& [bit, name] : kFlagNames)
    if (s.flags & bit) c.out.Status(name);
  c.out.Integer(s.first_key);
  c.out.Integer(s.last_key);
  c.out.Integer(s.key_step);
  c.out.SetBegin(0);    // ACL categories
  c.out.SetBegin(0);    // tips
  c.out.ArrayBegin(0);  // key specs
  c.out.ArrayBegin(s.subcommands.size());
  for (const CommandSpec& sub : s.subcommands) ReplyCommandInfo(c, sub);
}

}  // namespace

void CmdCommandAll(CommandCtx& c) {
  auto t = CommandTable();
  c.out.ArrayBegin(t.size());
  for (const CommandSpec& s : t) ReplyCommandInfo(c, s);
}

void CmdCommandCount(CommandCtx& c) { c.out.Integer(static_cast<int64_t>(CommandTable().size())); }

void CmdCommandDocs(CommandCtx& c) { c.out.MapBegin(0); }  // docs are not served

void CmdCommandInfo(CommandCtx& c) {
  if (c.argc() == 2) return CmdCommandAll(c);
  c.out.ArrayBegin(c.argc() - 2);
  for (size_t j = 2; j < c.argc(); ++j) {
    const CommandSpec* s = LookupCommand(c.arg(j));
    if (s)
      ReplyCommandInfo(c, *s);
    else
      c.out.Nil();
  }
}

void CmdCommandList(CommandCtx& c) {
  if (c.argc() > 2) return ReplySyntax(c);  // FILTERBY: not supported
  auto t = CommandTable();
  c.out.ArrayBegin(t.size());
  for (const CommandSpec& s : t) c.out.Bulk(s.name);
}

void CmdCommandHelp(CommandCtx& c) {
  ReplyHelp(c, "COMMAND",
            {"(no subcommand)", "    Return details about all commands.", "COUNT",
             "    Return the total number of commands.", "DOCS [<command-name> ...]",
             "    Return documentation (empty here).", "INFO [<command-name> ...]",
             "    Return details about the given commands, or all of them.", "LIST",
             "    Return the names of all commands."});
}

}  // namespace pf
