// master/sockets.cc: binding the per-slot SO_REUSEPORT listen sockets.
#include "master/sockets.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace pf {
namespace {

bool MakeAddr(const ListenerConf& l, sockaddr_storage* ss, socklen_t* len) {
  std::memset(ss, 0, sizeof *ss);
  auto* in4 = reinterpret_cast<sockaddr_in*>(ss);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET, l.address.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(l.port);
    *len = sizeof *in4;
    return true;
  }
  if (inet_pton(AF_INET6, l.address.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(l.port);
    *len = sizeof *in6;
    return true;
  }
  return false;
}

// reuseport: join the listener's group; otherwise a probe that fails if
// anyone (even another SO_REUSEPORT group of the same user) holds the port.
UniqueFd Bind(const ListenerConf& l, bool reuseport, std::string* err) {
  sockaddr_storage ss;
  socklen_t len;
  if (!MakeAddr(l, &ss, &len)) {
    *err = "listener " + l.name + ": bad address " + l.address;
    return UniqueFd();
  }
  UniqueFd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    *err = "listener " + l.name + ": socket: " + std::strerror(errno);
    return fd;
  }
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport) setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (ss.ss_family == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    const int e = errno;
    *err = "listener " + l.name + ": cannot bind " + l.SocketKey() + ": " + std::strerror(e) +
           (e == EADDRINUSE ? " (the port is taken by another process)" : "");
    return UniqueFd();
  }
  if (reuseport && listen(fd.get(), l.backlog) != 0) {
    *err = "listener " + l.name + ": listen on " + l.SocketKey() + ": " + std::strerror(errno);
    return UniqueFd();
  }
  return fd;
}

// The form /proc/net/tcp{,6} gives a local address: the address' 32-bit
// words as the kernel holds them, in %08X, then ":%04X" of the port.
std::string ProcNetAddr(const sockaddr_storage& ss) {
  char buf[64];
  if (ss.ss_family == AF_INET) {
    const auto* in4 = reinterpret_cast<const sockaddr_in*>(&ss);
    snprintf(buf, sizeof buf, "%08X:%04X", in4->sin_addr.s_addr, ntohs(in4->sin_port));
  } else {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    uint32_t w[4];
    std::memcpy(w, &in6->sin6_addr, sizeof w);
    snprintf(buf, sizeof buf, "%08X%08X%08X%08X:%04X", w[0], w[1], w[2], w[3],
             ntohs(in6->sin6_port));
  }
  return buf;
}

// Two starts racing on one port can both pass the probe in Bind and then
// join one SO_REUSEPORT group. After binding a new address, every socket
// listening on it must be one of ours (the kernel lists them with their
// inodes); otherwise another process joined, and this start gives up.
bool OnlyOurs(const ListenerConf& l, const std::vector<int>& ours, std::string* err) {
  sockaddr_storage ss;
  socklen_t len;
  if (!MakeAddr(l, &ss, &len)) return true;
  std::set<unsigned long> inodes;
  for (int fd : ours) {
    struct stat st;
    if (fstat(fd, &st) == 0) inodes.insert(st.st_ino);
  }
  const std::string want = ProcNetAddr(ss);
  std::ifstream in(ss.ss_family == AF_INET ? "/proc/net/tcp" : "/proc/net/tcp6");
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string sl, local, remote, state, queues, timer, retr, uid, timeout;
    unsigned long inode = 0;
    if (!(f >> sl >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >>
          inode))
      continue;
    if (state != "0A" || local != want || inodes.count(inode)) continue;
    *err = "listener " + l.name + ": " + l.SocketKey() +
           " is also being listened on by another process (another server started at the "
           "same time?)";
    return false;
  }
  return true;
}

}  // namespace

SocketTable::~SocketTable() = default;

bool SocketTable::Apply(const Config& cfg, std::string* err) {
  // First every socket the config needs that does not exist yet; the table
  // changes only once they all are bound (a failure closes just these).
  std::map<Key, UniqueFd> opened;
  std::vector<Key> kept;
  for (const auto& l : cfg.listeners) {
    const std::string addr = l.SocketKey();
    int have = 0;
    for (const auto& [key, fd] : fds_) {
      if (key.first != addr) continue;
      kept.push_back(key);
      have++;
    }
    if (have == 0) {
      // A new address: make sure nobody else holds it before joining a group.
      if (!Bind(l, false, err)) return false;
    }
    std::vector<int> fresh;
    for (int i = have; i < static_cast<int>(cfg.workers); i++) {
      UniqueFd fd = Bind(l, true, err);
      if (!fd) return false;
      fresh.push_back(fd.get());
      opened.emplace(Key{addr, i}, std::move(fd));
    }
    if (have == 0 && !OnlyOurs(l, fresh, err)) return false;
  }
  for (const auto& l : cfg.listeners)
    for (auto& [key, fd] : fds_)
      if (key.first == l.SocketKey() && l.backlog)
        listen(fd.get(), l.backlog);  // a changed backlog applies in place
  // Sockets of removed listeners close here: workers that still serve them hold their own copy.
  std::erase_if(fds_, [&](const auto& e) {
    return std::find(kept.begin(), kept.end(), e.first) == kept.end();
  });
  for (auto& [key, fd] : opened) fds_.emplace(key, std::move(fd));
  return true;
}

std::vector<int> SocketTable::Fds(const ListenerConf& l, int slot, int workers) const {
  std::vector<int> v;
  const std::string addr = l.SocketKey();
  for (const auto& [k, fd] : fds_)
    if (k.first == addr && k.second % workers == slot) v.push_back(fd.get());
  return v;
}

void SocketTable::CloseAllBut(const std::vector<int>& keep) {
  for (auto& [k, fd] : fds_)
    if (std::find(keep.begin(), keep.end(), fd.get()) == keep.end()) fd.Reset();
}

void SocketTable::CloseAll() { fds_.clear(); }

}  // namespace pf
