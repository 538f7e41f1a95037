// master/main.cc: the preforkd command line (nginx-like flags).
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "master/master.h"
#include "shared/config.h"
#include "shared/tls/context.h"
#include "worker/http/basic_auth.h"

namespace {

constexpr const char* kUsage =
    "Usage: preforkd [-c FILE] [-t] [-g] [-v] [--show "
    "pidfile|workers|listeners|admin_token|persistence]\n"
    "\n"
    "A pre-forking server: a master process binds the listeners, forks one\n"
    "worker per core and supervises them; workers serve echo, resp, kv-json,\n"
    "http and chat from one shared-memory store.\n"
    "\n"
    "  -c FILE          configuration file (default: conf/preforkd.yaml)\n"
    "  -t               test the configuration: print every problem as\n"
    "                   file:line:col: key: what is wrong, and exit 0 or 1\n"
    "  -g               stay in the foreground (systemd, tests); default is to\n"
    "                   start in the background and exit once serving\n"
    "  -v               print the version and exit\n"
    "  --show pidfile   print the resolved pidfile path and exit (also when the\n"
    "                   file has errors elsewhere, so a running server stays manageable)\n"
    "  --show workers   print the resolved worker count and exit\n"
    "  --show listeners print one line per listener: name protocol address:port\n"
    "  --show admin_token\n"
    "                   print pubsub.admin_token (an empty line when unset) and\n"
    "                   exit (tools/preforkctl broadcast reads it)\n"
    "  --show persistence  print 'on DIR FSYNC' or 'off' (DIR as seen from\n"
    "                   outside the chroot, when one is set)\n"
    "  -h, --help       this text\n"
    "\n"
    "Signals to the master: HUP reload, QUIT graceful stop, TERM/INT fast stop,\n"
    "USR1 reopen log files, RTMIN+1 take a snapshot (persistence).\n"
    "Exit codes: 0 ok, 1 configuration or start-up error, 2 usage error.\n";

}  // namespace

int main(int argc, char** argv) {
  std::string conf = "conf/preforkd.yaml";
  bool test = false, foreground = false;
  std::string show;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "-c" && i + 1 < argc)
      conf = argv[++i];
    else if (a == "-t")
      test = true;
    else if (a == "-g")
      foreground = true;
    else if (a == "-v" || a == "--version") {
      std::printf("preforkd %s\n", PREFORKD_VERSION);
      return 0;
    } else if (a == "--show" && i + 1 < argc)
      show = argv[++i];
    else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "preforkd: unknown or incomplete option '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }

  pf::ConfigResult r = pf::LoadConfig(conf);
  pf::CheckAuthBasic(&r);
  pf::tls::CheckTls(&r);
  // Managing a running server must work even after its file was broken.
  if (show == "pidfile" && !r.config.pidfile.empty()) {
    std::printf("%s\n", r.config.pidfile.c_str());
    return 0;
  }
  if (!r.ok()) {
    for (const auto& e : r.errors) std::fprintf(stderr, "%s\n", e.c_str());
    std::fprintf(stderr, "preforkd: configuration file %s test failed (%zu problem%s)\n",
                 conf.c_str(), r.errors.size(), r.errors.size() == 1 ? "" : "s");
    return 1;
  }
  if (test) {
    std::printf("preforkd: configuration file %s test is successful\n", conf.c_str());
    return 0;
  }
  if (show == "workers") {
    std::printf("%u\n", r.config.workers);
    return 0;
  }
  if (show == "listeners") {
    for (const auto& l : r.config.listeners)
      std::printf("%s %s %s\n", l.name.c_str(), pf::ProtocolName(l.protocol),
                  l.SocketKey().c_str());
    return 0;
  }
  if (show == "admin_token") {
    std::printf("%s\n", r.config.pubsub.admin_token.c_str());
    return 0;
  }
  if (show == "persistence") {
    const auto& p = r.config.persistence;
    if (p.enabled)
      std::printf("on %s %s\n", r.config.Outside(p.dir).c_str(), pf::FsyncPolicyName(p.fsync));
    else
      std::printf("off\n");
    return 0;
  }
  if (!show.empty()) {
    std::fprintf(
        stderr, "preforkd: --show takes pidfile, workers, listeners, admin_token or persistence\n");
    return 2;
  }
  pf::MasterOptions opt;
  opt.config_path = conf;
  opt.foreground = foreground;
  return pf::RunMaster(std::move(r.config), opt);
}
