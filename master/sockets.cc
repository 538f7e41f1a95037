// master/sockets.cc: binding the per-slot SO_REUSEPORT listen sockets.
#include "master/sockets.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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
int Bind(const ListenerConf& l, bool reuseport, std::string* err) {
  sockaddr_storage ss;
  socklen_t len;
  if (!MakeAddr(l, &ss, &len)) {
    *err = "listener " + l.name + ": bad address " + l.address;
    return -1;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = "listener " + l.name + ": socket: " + std::strerror(errno);
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    const int e = errno;
    *err = "listener " + l.name + ": cannot bind " + l.SocketKey() + ": " + std::strerror(e) +
           (e == EADDRINUSE ? " (the port is taken by another process)" : "");
    close(fd);
    return -1;
  }
  if (reuseport && listen(fd, l.backlog) != 0) {
    *err = "listener " + l.name + ": listen on " + l.SocketKey() + ": " + std::strerror(errno);
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

SocketTable::~SocketTable() { CloseAll(); }

bool SocketTable::Apply(const Config& cfg, std::string* err) {
  std::map<Key, int> next;
  std::vector<int> opened;
  auto fail = [&]() {
    for (int fd : opened) close(fd);
    return false;
  };
  for (const auto& l : cfg.listeners) {
    const std::string addr = l.SocketKey();
    int have = 0;
    for (const auto& [key, fd] : fds_) {
      if (key.first != addr) continue;
      next[key] = fd;
      if (l.backlog) listen(fd, l.backlog);  // a changed backlog applies in place
      have++;
    }
    if (have == 0) {
      // A new address: make sure nobody else holds it before joining a group.
      int probe = Bind(l, false, err);
      if (probe < 0) return fail();
      close(probe);
    }
    for (int i = have; i < static_cast<int>(cfg.workers); i++) {
      int fd = Bind(l, true, err);
      if (fd < 0) return fail();
      opened.push_back(fd);
      next[{addr, i}] = fd;
    }
  }
  for (const auto& [k, fd] : fds_)
    if (!next.count(k)) close(fd);  // removed listener: workers that still serve it hold their own copy
  fds_ = std::move(next);
  return true;
}

std::vector<int> SocketTable::Fds(const ListenerConf& l, int slot, int workers) const {
  std::vector<int> v;
  const std::string addr = l.SocketKey();
  for (const auto& [k, fd] : fds_)
    if (k.first == addr && k.second % workers == slot) v.push_back(fd);
  return v;
}

std::vector<int> SocketTable::AllFds() const {
  std::vector<int> v;
  for (const auto& [k, fd] : fds_) v.push_back(fd);
  return v;
}

void SocketTable::CloseAll() {
  for (const auto& [k, fd] : fds_) close(fd);
  fds_.clear();
}

}  // namespace pf
