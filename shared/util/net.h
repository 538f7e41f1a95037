// shared/util/net.h: socket addresses as people read them: "127.0.0.1:6380",
// "[::1]:6380".
#pragma once

#include <sys/socket.h>

#include <string>

namespace pf {

// "ip:port" for AF_INET, "[ip]:port" for AF_INET6, "?" for anything else.
std::string FormatAddr(const sockaddr* sa);
// The local address of a socket (getsockname), "" if it has none.
std::string LocalAddr(int fd);

}  // namespace pf
