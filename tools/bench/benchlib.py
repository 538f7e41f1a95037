"""tools/bench/benchlib.py: shared helpers for the side-by-side benchmarks:
packages, free loopback ports, starting servers we own (by PID), a server's
processes and its connections per process, medians."""
import math
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# PREFORKD_BENCH_BIN: measure this binary instead of building build/preforkd
# (e.g. one built from a clean checkout of a commit).
BIN = os.environ.get("PREFORKD_BENCH_BIN") or os.path.join(ROOT, "build", "preforkd")


def ensure_packages(pkgs):
    """Install the Debian packages that dpkg reports missing (root only)."""
    missing = []
    for p in pkgs:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            missing.append(p)
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing packages: {' '.join(missing)} (run as root)")
    print(f"installing: {' '.join(missing)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def ensure_built():
    if os.environ.get("PREFORKD_BENCH_BIN"):
        return
    subprocess.run([os.path.join(ROOT, "tools", "preforkctl"), "build"], check=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class Proc:
    """A server process we started, stopped by its PID only."""

    def __init__(self, name, argv, ports, cwd=None, stop_signal=signal.SIGTERM):
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
        self.p = subprocess.Popen(argv, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        self.stop_signal = stop_signal
        for port in ports:
            if not wait_port(port):
                self.stop()
                sys.exit(f"{name} did not start listening on {port}; log: {self.log.name}")

    @property
    def pid(self):
        return self.p.pid

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(self.stop_signal)
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def preforkd_config(dirpath, listeners_yaml, workers="auto", extra="", logging_extra=""):
    """Write DIR/preforkd.yaml. `extra` is appended as top-level YAML (it must
    not repeat `logging`: duplicate keys are errors); `logging_extra` is added
    inside the logging map, e.g. 'access_log: "off"'."""
    path = os.path.join(dirpath, "preforkd.yaml")
    log = "error_log: error.log, level: warn" + (f", {logging_extra}" if logging_extra else "")
    with open(path, "w") as f:
        f.write(f"workers: {workers}\npidfile: preforkd.pid\nshared_memory: 256m\n"
                f"listeners:\n{listeners_yaml}\n"
                f"logging: {{{log}}}\n{extra}")
    return path


def family(pid):
    """pid and its descendants."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _ss_pids(argv):
    """[[pid, ...] per socket] from `ss -p` (users:(("nginx",pid=12,fd=3),...)), or None."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return [list(map(int, re.findall(r"pid=(\d+)", line))) for line in out.stdout.splitlines()]


def conns_per_process(pid_root, port):
    """The established TCP connections on local port `port`, counted per
    worker of the server started as pid_root, largest first, e.g. [52, 48];
    None if ss fails. A worker is a process of the server (pid_root and its
    descendants) that holds the listening socket or a connection; a master
    that holds no connection is left out (nginx, preforkd), helpers that hold
    neither (h2o's backtrace annotator) too, but a worker that got no
    connection shows as 0."""
    conns = _ss_pids(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"])
    listeners = _ss_pids(["ss", "-tlnpH", f"( sport = :{port} )"])
    if conns is None or listeners is None:
        return None
    procs = set(family(pid_root))
    counts = {p: 0 for pids in listeners for p in pids if p in procs}
    for pids in conns:
        owner = next((p for p in pids if p in procs), None)  # a socket two processes hold counts once
        if owner is not None:
            counts[owner] = counts.get(owner, 0) + 1
    if len(counts) > 1 and counts.get(pid_root) == 0:
        del counts[pid_root]
    return sorted(counts.values(), reverse=True)


class ConnSampler(threading.Thread):
    """Samples conns_per_process(pid_root, port) once, `at` (40 %) into a load
    run of `duration` seconds; start it just before the load starts:

        with B.ConnSampler(proc.pid, port, duration=10) as cs:
            run_wrk(...)
        cs.counts  # e.g. [52, 48], or None if the run ended before the sample

    Without a duration (redis-benchmark -n runs as long as it takes), it
    samples until the run ends, at 0.05 s and then 1.5 times later each time
    (at most `interval` apart, so runs of a tenth of a second get a sample and
    long ones few), and keeps the sample nearest `at` of the run's length
    among those that found connections (the first may come before the load
    generator connected)."""

    def __init__(self, pid_root, port, duration=None, at=0.4, interval=0.5):
        super().__init__(daemon=True)
        self.pid_root, self.port, self.duration, self.at, self.interval = pid_root, port, duration, at, interval
        self._done = threading.Event()
        self._samples = []  # (seconds since start, counts)
        self._t0 = None
        self._elapsed = None
        self.counts = None

    def run(self):
        if self.duration is not None:
            if not self._done.wait(self.duration * self.at):
                self._sample()
            return
        t = 0.05
        while not self._done.wait(max(0.0, t - (time.monotonic() - self._t0))):
            self._sample()
            t = min(t * 1.5, t + self.interval)

    def _sample(self):
        t = time.monotonic() - self._t0
        c = conns_per_process(self.pid_root, self.port)
        if c is not None:
            self._samples.append((t, c))

    def start(self):
        self._t0 = time.monotonic()
        super().start()

    def stop(self):
        """Ends sampling (the run is over); returns the counts."""
        self._elapsed = time.monotonic() - self._t0
        self._done.set()
        self.join()
        samples = self._samples if self.duration is not None else [s for s in self._samples if sum(s[1])]
        if samples:
            target = self._elapsed * self.at
            self.counts = min(samples, key=lambda s: abs(s[0] - target))[1]
        return self.counts

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def conns_text(counts):
    """[52, 48] -> "52/48"; None -> "-"."""
    return "/".join(map(str, counts)) if counts else "-"


def median_index(xs):
    """Index of the median of xs (the lower middle for an even count), so
    other figures of that same run can go with the median; None if empty."""
    if not xs:
        return None
    order = sorted(range(len(xs)), key=lambda i: (math.isnan(xs[i]), xs[i]))
    return order[(len(xs) - 1) // 2]


def json_num(v):
    """A float for JSON: None for NaN (json.dump would write NaN, which is not JSON)."""
    return None if v is None or v != v else v


def command_line():
    """How this script was run, for result files and plots."""
    rel = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    prog = sys.argv[0] if rel.startswith("..") else rel
    return shlex.join([prog] + sys.argv[1:])


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def ratio(a, b):
    return a / b if b else float("nan")
