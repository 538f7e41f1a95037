// shared/cmd/pubsub.cc: the pub/sub commands (pubsub.c): SUBSCRIBE,
// UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBLISH and PUBSUB. The connection's
// PubSubPort (the worker's bus end) does the work; replies are Redis' (the
// (un)subscribe confirmations are push frames in RESP3, arrays in RESP2).
#include "shared/cmd/internal.h"

namespace pf {
namespace {

// The connection's port, or nullptr after answering that it has none.
PubSubPort* Port(CommandCtx& c) {
  if (!c.session.pubsub) c.out.Error(ErrCode::kErr, errtext::kPubSubUnavailable);
  return c.session.pubsub;
}

void SubscribeGeneric(CommandCtx& c, bool pattern) {
  PubSubPort* p = Port(c);
  if (!p) return;
  const std::string_view kind = pattern ? "psubscribe" : "subscribe";
  std::string& err = ErrBuf();
  for (size_t i = 1; i < c.argc(); i++) {
    err.clear();
    if (!p->Subscribe(c.arg(i), pattern, &err)) {
      c.out.Error(ErrCode::kErr, err);
      continue;
    }
    c.out.PushBegin(3);
    c.out.Bulk(kind);
    c.out.Bulk(c.arg(i));
    c.out.Integer(static_cast<int64_t>(p->subscription_count()));
  }
}

void UnsubscribeGeneric(CommandCtx& c, bool pattern) {
  PubSubPort* p = Port(c);
  if (!p) return;
  const std::string_view kind = pattern ? "punsubscribe" : "unsubscribe";
  auto reply = [&](std::string_view name) {
    c.out.PushBegin(3);
    c.out.Bulk(kind);
    c.out.Bulk(name);
    c.out.Integer(static_cast<int64_t>(p->subscription_count()));
  };
  if (c.argc() > 1) {
    for (size_t i = 1; i < c.argc(); i++) {
      p->Unsubscribe(c.arg(i), pattern);
      reply(c.arg(i));
    }
    return;
  }
  const std::vector<std::string> names = p->Subscribed(pattern);
  if (names.empty()) {
    c.out.PushBegin(3);
    c.out.Bulk(kind);
    c.out.Nil();
    c.out.Integer(static_cast<int64_t>(p->subscription_count()));
    return;
  }
  for (const std::string& n : names) {
    p->Unsubscribe(n, pattern);
    reply(n);
  }
}

}  // namespace

void CmdSubscribe(CommandCtx& c) { SubscribeGeneric(c, false); }
void CmdPsubscribe(CommandCtx& c) { SubscribeGeneric(c, true); }
void CmdUnsubscribe(CommandCtx& c) { UnsubscribeGeneric(c, false); }
void CmdPunsubscribe(CommandCtx& c) { UnsubscribeGeneric(c, true); }

void CmdPublish(CommandCtx& c) {
  PubSubPort* p = Port(c);
  if (!p) return;
  int64_t receivers = 0;
  std::string& err = ErrBuf();
  if (p->Publish(c.arg(1), c.arg(2), c.session.admin, &receivers, &err))
    c.out.Integer(receivers);
  else
    c.out.Error(ErrCode::kErr, err);
}

void CmdPubsubChannels(CommandCtx& c) {
  if (c.argc() > 3) return ReplyArity(c);
  PubSubPort* p = Port(c);
  if (!p) return;
  const std::vector<std::string> chans = p->Channels(c.argc() == 3 ? c.arg(2) : std::string_view());
  c.out.ArrayBegin(chans.size());
  for (const std::string& ch : chans) c.out.Bulk(ch);
}

void CmdPubsubNumsub(CommandCtx& c) {
  PubSubPort* p = Port(c);
  if (!p) return;
  c.out.ArrayBegin((c.argc() - 2) * 2);
  for (size_t i = 2; i < c.argc(); i++) {
    c.out.Bulk(c.arg(i));
    c.out.Integer(p->NumSub(c.arg(i)));
  }
}

void CmdPubsubNumpat(CommandCtx& c) {
  PubSubPort* p = Port(c);
  if (!p) return;
  c.out.Integer(p->NumPat());
}

void CmdPubsubHelp(CommandCtx& c) {
  ReplyHelp(c, "PUBSUB",
            {"CHANNELS [<pattern>]",
             "    Return the currently active channels matching a <pattern> (default: '*').",
             "NUMPAT", "    Return number of subscriptions to patterns.", "NUMSUB [<channel> ...]",
             "    Return the number of subscribers for the specified channels, excluding",
             "    pattern subscriptions(default: no channels)."});
}

}  // namespace pf
