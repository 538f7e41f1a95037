#!/usr/bin/env python3
"""tests/integration/test_top.py: `tools/preforkctl top` in a real terminal (tmux).

Starts `preforkctl top` in a detached tmux session before the server is up
(it must say the server is not reachable and keep retrying), starts
preforkd (2 workers, one http listener on a free loopback port), waits for
frames showing the real worker pids, sends HTTP requests and checks the
totals move, quits with `q` (and a second run with Ctrl-C) and checks the
terminal came back: top exited 0, normal screen, cursor visible, the stty
modes as before; a third run is suspended with Ctrl-Z (terminal back) and
resumed with fg. Then `top --once`: one plain frame, no escape sequences;
and exit code 3 once the server is gone.

Standard library only. Prints TAP; exit 0 on success, 1 on a failure.
Environment: PREFORKD_BIN (default build/preforkd), PREFORKD_SOURCE_ROOT
(default: two folders up from this file); needs tmux (skipped without it).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.environ.get("PREFORKD_SOURCE_ROOT") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("PREFORKD_BIN") or os.path.join(ROOT, "build", "preforkd")
CTL = os.path.join(ROOT, "tools", "preforkctl")

_n = 0
_failed = 0


def tap(ok, what, detail=""):
    global _n, _failed
    _n += 1
    if not ok:
        _failed += 1
    print(f"{'ok' if ok else 'not ok'} {_n} - {what}", flush=True)
    if not ok and detail:
        for line in str(detail).rstrip().splitlines():
            print(f"#   {line}", flush=True)
    return ok


def diag(text):
    for line in str(text).rstrip().splitlines():
        print(f"# {line}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, step=0.2):
    """pred() until it returns something true, at most timeout seconds."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


def human(text):
    """'12' -> 12, '1.23k' -> 1230, '4.5M' -> 4500000."""
    m = re.fullmatch(r"([0-9.]+)([kMGT]?)", text)
    if not m:
        return None
    return float(m.group(1)) * {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[m.group(2)]


class Tmux:
    """A private tmux server (its own socket, no user config)."""

    def __init__(self, tmp):
        self.sock = os.path.join(tmp, "tmux.sock")
        self.base = ["tmux", "-S", self.sock, "-f", "/dev/null"]

    def run(self, *args, check=True):
        r = subprocess.run(self.base + list(args), capture_output=True, text=True, timeout=10)
        if check and r.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def start(self, env):
        # A plain shell: no rc files, a fixed prompt that the test can see.
        self.run("new-session", "-d", "-s", "top", "-x", "160", "-y", "40",
                 "env", *[f"{k}={v}" for k, v in env.items()],
                 "bash", "--norc", "--noprofile", "-i")

    def send(self, *keys):
        self.run("send-keys", "-t", "top", *keys)

    def screen(self):
        return self.run("capture-pane", "-p", "-t", "top", check=False)

    def fmt(self, f):
        return self.run("display-message", "-p", "-t", "top", f, check=False).strip()

    def kill(self):
        subprocess.run(self.base + ["kill-server"], capture_output=True, timeout=10)


def worker_pids(master):
    out = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(master)],
                         capture_output=True, text=True).stdout
    return sorted(int(p) for p, c in (l.split() for l in out.splitlines() if l.strip())
                  if re.fullmatch(r"preforkd-w\d+", c))


WORKER_ROW = re.compile(r"^\s*(?P<slot>\d+)\s+(?P<pid>\d+)\s+(?P<gen>\d+)\s+(?P<state>\S+)\s+"
                        r"(?P<conns>\S+)\s+(?P<req>\S+)\s+(?P<inb>\S+ \S+/s|-)\s+"
                        r"(?P<outb>\S+ \S+/s|-)\s+(?P<p50>\S+)\s+(?P<p99>\S+)\s+"
                        r"(?P<rss>\S+ \S+|-)\s+(?P<beat>\S+)\s*$", re.M)


def worker_rows(screen):
    return [{"pid": int(m["pid"]), "req/s": m["req"], "p50": m["p50"], "p99": m["p99"],
             "rss": m["rss"]} for m in WORKER_ROW.finditer(screen)]


def frame_time(screen):
    m = re.search(r"^preforkd top +\S+ +(\d\d:\d\d:\d\d)", screen, re.M)
    return m.group(1) if m else None


def totals_requests(screen):
    m = re.search(r"\(([0-9.]+[kMGT]?) in all\)", screen)
    return human(m.group(1)) if m else None


def run_top_in_shell(tmux, cfg, tmp, tag):
    """Types `stty -g >before; preforkctl top; echo exit; stty -g >after` into the shell."""
    before, after = os.path.join(tmp, f"stty-{tag}-before"), os.path.join(tmp, f"stty-{tag}-after")
    tmux.send("clear", "Enter")
    tmux.send(f"stty -g >{before}; {CTL} -c {cfg} top; echo TOP-EXIT-{tag}=$?; "
              f"stty -g >{after}", "Enter")
    return before, after


def check_restored(tmux, tag, before, after, how):
    # ^...$: the typed command line has "TOP-EXIT-tag=$?" in it.
    m = wait_for(lambda: re.search(rf"^TOP-EXIT-{tag}=(\d+)$", tmux.screen(), re.M), 10)
    tap(m is not None and m.group(1) == "0", f"top exits 0 on {how}",
        f"pane:\n{tmux.screen()}")
    tap(wait_for(lambda: tmux.fmt("#{pane_current_command}") == "bash", 5),
        f"{how}: the shell is the pane's process again", tmux.fmt("#{pane_current_command}"))
    tap(tmux.fmt("#{alternate_on}") == "0", f"{how}: back on the normal screen",
        f"alternate_on={tmux.fmt('#{alternate_on}')}")
    tap(tmux.fmt("#{cursor_flag}") == "1", f"{how}: the cursor is visible",
        f"cursor_flag={tmux.fmt('#{cursor_flag}')}")
    got = wait_for(lambda: os.path.exists(after) and open(after).read().strip(), 5)
    want = open(before).read().strip() if os.path.exists(before) else None
    tap(bool(got) and got == want, f"{how}: the terminal modes are as before (stty -g)",
        f"before {want}\nafter  {got}")


def main():
    if not shutil.which("tmux"):
        # A failure, not a skip: tools/preforkctl test installs tmux.
        print("Bail out! tmux is not installed (apt-get install tmux)")
        return 1
    if not os.access(BIN, os.X_OK):
        print(f"Bail out! {BIN} is not built")
        return 1
    tmp = tempfile.mkdtemp(prefix="preforkd-top-")
    port = free_port()
    www = os.path.join(tmp, "www")
    os.mkdir(www)
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("<p>top</p>\n")
    cfg = os.path.join(tmp, "preforkd.yaml")
    with open(cfg, "w") as f:
        f.write(f"""workers: 2
pidfile: {tmp}/preforkd.pid
shared_memory: 96m
kv: {{shards: 8, large_memory: 40m}}
logging: {{error_log: {tmp}/error.log, access_log: "off"}}
timeouts: {{drain: 2s}}
listeners:
  - {{name: http, address: 127.0.0.1, port: {port}, protocol: http, root: {www}}}
""")
    tmux = Tmux(tmp)
    server = None
    env = {"PREFORKD_BIN": BIN, "TERM": "xterm-256color", "PS1": "pf-test$ ", "LC_ALL": "C.UTF-8"}
    try:
        tmux.start(env)
        tap(wait_for(lambda: "pf-test$" in tmux.screen(), 10), "tmux shell is up", tmux.screen())

        # 1. top before the server: says so, and keeps retrying.
        b1, a1 = run_top_in_shell(tmux, cfg, tmp, "q")
        s = wait_for(lambda: (lambda s: s if "NOT REACHABLE" in s else None)(tmux.screen()), 10)
        tap(s is not None and "connection refused" in s,
            "top says the server is not reachable", tmux.screen())
        tap(wait_for(lambda: tmux.fmt("#{alternate_on}") == "1", 5),
            "top uses the alternate screen")
        tap(tmux.fmt("#{cursor_flag}") == "0", "top hides the cursor")

        # 2. the server comes up: frames with the real worker pids.
        server = subprocess.Popen([BIN, "-g", "-c", cfg], stdout=subprocess.DEVNULL,
                                  stderr=open(os.path.join(tmp, "stderr.log"), "w"))
        pids = wait_for(lambda: (lambda p: p if len(p) == 2 else None)(worker_pids(server.pid)), 15)
        if not tap(bool(pids), "preforkd started 2 workers",
                   open(os.path.join(tmp, "stderr.log")).read()):
            return 1
        diag(f"master {server.pid}, workers {pids}, port {port}")

        def frame_with_pids(after_time=None):
            s = tmux.screen()
            t = frame_time(s)
            if not t or t == after_time or "NOT REACHABLE" in s:
                return None
            rows = {int(m.group(1)) for m in re.finditer(r"^\s*\d+\s+(\d+)\s+\d+\s", s, re.M)}
            return (t, s) if set(pids) <= rows else None

        f1 = wait_for(frame_with_pids, 15)
        tap(f1 is not None, "a frame lists both worker pids (after retrying)", tmux.screen())
        f2 = wait_for(lambda: frame_with_pids(f1[0] if f1 else None), 5)
        tap(f2 is not None, "a second, later frame lists them too", tmux.screen())
        if f2:
            diag("frame:\n" + f2[1])
            tap(re.search(r"^master +pid", f2[1], re.M) and "SLOT" in f2[1] and
                re.search(r"^store ", f2[1], re.M), "the frame has master, worker and store lines",
                f2[1])

        # 3. traffic: the totals move.
        before = totals_requests(tmux.screen()) or 0
        n = 200
        url = f"http://127.0.0.1:{port}/index.html"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for _ in range(n):
            with opener.open(url, timeout=5) as r:
                r.read()
        later = wait_for(lambda: (lambda v: v if v is not None and v >= before + n else None)(
            totals_requests(tmux.screen())), 5)
        tap(later is not None, f"the request total moves by >= {n} (was {before})", tmux.screen())
        # The next frame covers the burst: a worker shows a rate, p50/p99 (from the
        # latency histogram) and everyone an RSS.
        def burst_rows():
            rows = worker_rows(tmux.screen())
            busy = [r for r in rows if (human(r["req/s"]) or 0) > 0 and r["p50"] != "-"
                    and r["p99"] != "-"]
            return rows if busy and all(r["rss"] != "-" for r in rows) else None

        rows = wait_for(burst_rows, 5)
        tap(rows is not None, "worker lines show req/s, p50/p99 and RSS", tmux.screen())
        diag(f"workers after the burst: {rows}")

        # 4. q quits and restores the terminal.
        tmux.send("q")
        check_restored(tmux, "q", b1, a1, "q")

        # 5. Ctrl-C quits and restores it too.
        b2, a2 = run_top_in_shell(tmux, cfg, tmp, "int")
        tap(wait_for(lambda: frame_with_pids(), 10) is not None, "top runs again", tmux.screen())
        tmux.send("C-c")
        check_restored(tmux, "int", b2, a2, "Ctrl-C")

        # 6. Ctrl-Z gives the terminal back; fg takes it again.
        tmux.send("clear", "Enter")
        tmux.send(f"{CTL} -c {cfg} top", "Enter")
        tap(wait_for(lambda: frame_with_pids(), 10) is not None, "top runs a third time",
            tmux.screen())
        tmux.send("C-z")
        tap(wait_for(lambda: "Stopped" in tmux.screen() and tmux.fmt("#{alternate_on}") == "0"
                     and tmux.fmt("#{cursor_flag}") == "1", 5),
            "Ctrl-Z: top stops, normal screen and cursor are back", tmux.screen())
        tmux.send("fg", "Enter")
        shown = wait_for(lambda: tmux.fmt("#{alternate_on}") == "1" and
                         tmux.fmt("#{cursor_flag}") == "0" and frame_with_pids(), 10)
        tap(bool(shown), "fg: top draws again on the alternate screen", tmux.screen())
        tmux.send("q")
        tmux.send("echo TOP-EXIT-z=$?", "Enter")
        m = wait_for(lambda: re.search(r"^TOP-EXIT-z=(\d+)$", tmux.screen(), re.M), 10)
        tap(m is not None and m.group(1) == "0" and tmux.fmt("#{alternate_on}") == "0",
            "after fg, q quits (exit 0) to the normal screen", tmux.screen())

        # 7. --once: one plain frame.
        r = subprocess.run([CTL, "-c", cfg, "top", "--once", "--interval", "0.5"],
                           capture_output=True, text=True, timeout=20, env={**os.environ, **env})
        tap(r.returncode == 0, "top --once exits 0", r.stderr)
        tap("\x1b" not in r.stdout, "top --once prints no escape sequences", repr(r.stdout[:300]))
        tap(all(re.search(rf"^\s*\d+\s+{p}\s", r.stdout, re.M) for p in pids),
            "top --once lists both workers", r.stdout)
        tap(r.stdout.count("preforkd top ") == 1, "top --once prints one frame", r.stdout)

        # 8. --once without a server: exit 3 and why.
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
        server = None
        r = subprocess.run([CTL, "-c", cfg, "top", "--once"], capture_output=True, text=True,
                           timeout=20, env={**os.environ, **env})
        tap(r.returncode == 3 and "not reachable" in r.stderr,
            "top --once without a server: exit 3, 'not reachable'",
            f"exit {r.returncode}\nstdout {r.stdout}\nstderr {r.stderr}")
    except Exception as e:  # noqa: BLE001 - any surprise is a failure, with the pane
        tap(False, f"unexpected {type(e).__name__}: {e}", tmux.screen())
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        tmux.kill()
        if _failed == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            diag(f"kept {tmp} (config, error.log)")
    print(f"1..{_n}")
    return 1 if _failed else 0


if __name__ == "__main__":
    sys.exit(main())
