// worker/cmd_env.h: what the protocols that run the command table share
// (resp, kv-json, http /kv): the CommandEnv of a listener's connections
// (store, config, INFO numbers from the shared counters, the statistics
// rows) and the identity fields of a connection's ClientSession.
#pragma once

#include "shared/cmd/commands.h"
#include "shared/shm.h"

namespace pf {

class Connection;
struct ListenerConf;
struct WorkerContext;

// `proto` names the protocol whose request counter each executed command
// adds to; kProtoHttp counts requests in the HTTP handler, not here.
CommandEnv MakeCommandEnv(WorkerContext& w, const ListenerConf& l, ProtoIndex proto);
// The same, made once per listener and protocol and kept in the worker
// (WorkerContext::command_envs) for the worker's life: a connection holds a
// reference, not a copy of its std::functions.
const CommandEnv& ListenerCommandEnv(WorkerContext& w, const ListenerConf& l, ProtoIndex proto);
void FillClientSession(const Connection& c, ClientSession* s);

}  // namespace pf
