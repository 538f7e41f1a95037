// master/sockets.h: listen sockets belong to (listener address, socket index),
// not to processes: one SO_REUSEPORT socket per worker slot, bound by the
// master before forking and kept across reloads while the address stays.
// When the worker count shrinks, no socket of the group is closed (that would
// reset the connections the kernel queued on it): socket j is served by the
// worker of slot j % workers, so a worker may serve several.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "shared/config.h"
#include "shared/util/unique_fd.h"

namespace pf {

class SocketTable {
 public:
  SocketTable() = default;
  SocketTable(const SocketTable&) = delete;
  SocketTable& operator=(const SocketTable&) = delete;
  ~SocketTable();

  // Makes the table hold the sockets `cfg` needs: for every listener at least
  // one per slot, reusing those whose (address:port, index) already exist
  // and keeping extra ones of a listener that is still configured. Sockets
  // of removed listeners are closed. On failure nothing changes and `err`
  // says why (e.g. port in use).
  bool Apply(const Config& cfg, std::string* err);
  // The sockets the worker of `slot` serves for listener `l`.
  std::vector<int> Fds(const ListenerConf& l, int slot, int workers) const;
  // A child keeps only the sockets it serves (a worker) or none (the
  // snapshot process).
  void CloseAllBut(const std::vector<int>& keep);
  void CloseAll();

 private:
  using Key = std::pair<std::string, int>;  // SocketKey(), socket index
  std::map<Key, UniqueFd> fds_;
};

}  // namespace pf
