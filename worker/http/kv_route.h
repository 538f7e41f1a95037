// worker/http/kv_route.h: the store as REST (/kv/..., docs/http.md). Each
// request becomes calls of the command table (GET, SET ... GET, DEL, SCAN)
// through the one dispatcher, with a reply writer that turns the command's
// reply into the HTTP status and body; AUTH, MISCONF and the statistics are
// the table's, as for every protocol. With kv.password set, the request
// carries it: `Authorization: Basic` (any user name) or `Bearer`.
#pragma once

#include <string_view>

#include "shared/cmd/commands.h"
#include "shared/util/cidr.h"
#include "worker/http/parse.h"
#include "worker/http/reply.h"

namespace pf {

class Connection;
struct ListenerConf;
struct WorkerContext;

namespace http {

class KvRoute {
 public:
  KvRoute(const ListenerConf& l, WorkerContext& w);
  // `rest` is the path after "/kv", as sent. `client` is the request's
  // client address (failed credentials count against it); `basic_user`: the
  // request passed the listener's auth_basic, which makes it authenticated.
  void Serve(const Connection& c, const Request& req, std::string_view rest, std::string_view query,
             const IpAddr& client, bool basic_user, Reply* rep);

 private:
  // Runs the command; false (and `rep` set to 503 with Retry-After) while a
  // CLIENT PAUSE holds it: HTTP has no way to hold a request the way RESP
  // holds a command, so the client is told when to come back.
  bool Call(std::span<const std::string_view> argv, ReplyWriter& out, Reply* rep);
  void List(const Request& req, std::string_view ns_prefix, std::string_view query, Reply* rep);
  bool Authorized(const Request& req) const;
  // False (with the reply set) when the request may not go on.
  bool Authenticate(const Request& req, const IpAddr& client, bool basic_user, Reply* rep);

  const ListenerConf& l_;
  WorkerContext& w_;
  ClientSession session_;
  const CommandEnv* env_ = nullptr;  // the listener's (ListenerCommandEnv), on first use
  bool started_ = false;             // session_ filled (on the first /kv request of the connection)
};

}  // namespace http
}  // namespace pf
