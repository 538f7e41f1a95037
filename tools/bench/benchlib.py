"""tools/bench/benchlib.py: shared helpers for the side-by-side benchmarks:
packages, free loopback ports, starting servers we own (by PID), medians."""
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
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


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def ratio(a, b):
    return a / b if b else float("nan")
