// worker/http/proxy.h: the reverse proxy (docs/http.md, "Reverse proxy").
// A route of an http listener sends its requests to an upstream group; each
// worker keeps its own pool of keep-alive connections to the group's
// servers, balances over them and marks failing ones down for a while
// (passive health). The response streams back to the client as it arrives:
// the upstream is not read while the client's output is above
// limits.output_high_water, so a slow client holds at most that much.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "shared/util/cidr.h"

struct evbuffer;

namespace pf {
class Connection;
struct WorkerContext;
struct ListenerConf;
struct RouteConf;
}  // namespace pf

namespace pf::http {

struct Request;

// The route whose path covers `path` (a normalised path: percent-decoded,
// dot segments resolved), first match in the listener's order; or nullptr.
const RouteConf* MatchRoute(const ListenerConf& l, std::string_view path);

// The session's side of an exchange.
class ProxyClient {
 public:
  virtual ~ProxyClient() = default;
  // The exchange is over and has queued everything it will on the
  // connection: the response, or an error page (502, 504). `keep`: the
  // connection can take the next request. Called at most once; the
  // exchange touches neither the connection nor the client after it.
  virtual void ProxyDone(int status, uint64_t body_bytes, bool keep) = 0;
};

class ProxyExchange {
 public:
  virtual ~ProxyExchange() = default;
  // The connection's output drained: read the upstream again.
  virtual void ClientDrained() = 0;
  // After a 101 (WebSocket and other upgrades) the exchange is a tunnel:
  // bytes from the client go to the upstream as they are.
  virtual bool tunnel() const = 0;
  virtual void ClientData(evbuffer* in) = 0;
  // The client went away (or the session ends): stop, close the upstream
  // connection unless it is idle and whole. No ProxyDone after this.
  virtual void Abort() = 0;
};

// Starts an exchange for `req` (which may be reused once this returns: what
// the exchange needs is copied). `path` is the normalised path the route
// matched; `client` the client's address (trusted_proxies applied). The
// exchange frees itself after ProxyDone or Abort (on the next loop turn), so
// the pointer is valid until one of them.
ProxyExchange* StartProxy(WorkerContext& w, const ListenerConf& l, const RouteConf& r,
                          Connection& c, const Request& req, std::string_view path,
                          std::string_view query, const IpAddr& client, bool client_keep,
                          ProxyClient* done);

}  // namespace pf::http
