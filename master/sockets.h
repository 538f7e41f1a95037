// master/sockets.h: listen sockets belong to (listener address, worker slot),
// not to processes: one SO_REUSEPORT socket per pair, bound by the master
// before forking and kept across reloads while the address stays.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "shared/config.h"

namespace pf {

class SocketTable {
 public:
  SocketTable() = default;
  SocketTable(const SocketTable&) = delete;
  SocketTable& operator=(const SocketTable&) = delete;
  ~SocketTable();

  // Makes the table hold exactly the sockets `cfg` needs (every listener x
  // every slot), reusing those whose (address:port, slot) already exists.
  // On failure nothing changes and `err` says why (e.g. port in use).
  bool Apply(const Config& cfg, std::string* err);
  // The fd of (listener, slot); -1 if absent.
  int Fd(const ListenerConf& l, int slot) const;
  // Every fd (children close the ones that are not theirs).
  std::vector<int> AllFds() const;
  void CloseAll();

 private:
  using Key = std::pair<std::string, int>;  // SocketKey(), slot
  std::map<Key, int> fds_;
};

}  // namespace pf
