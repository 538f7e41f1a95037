// worker/http/reply.cc: the error page (reply.h), in nginx's format.
#include "worker/http/reply.h"

#include <fmt/format.h>

#include "worker/http/util.h"

namespace pf::http {

void ErrorReply(int status, Reply* rep) {
  rep->status = status;
  rep->content_type = "text/html";
  rep->body = fmt::format(
      "<html>\r\n<head><title>{0} {1}</title></head>\r\n<body>\r\n<center><h1>{0} "
      "{1}</h1></center>\r\n"
      "<hr><center>preforkd</center>\r\n</body>\r\n</html>\r\n",
      status, StatusText(status));
  if (status == 405) rep->headers += "Allow: GET, HEAD\r\n";
}

}  // namespace pf::http
