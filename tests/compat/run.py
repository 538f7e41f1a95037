#!/usr/bin/python3
# tests/compat/run.py: starts the real preforkd (two of them: one open, one
# with kv.password) on ephemeral loopback ports, runs one client-library test
# program against them, stops the servers by pid and exits with its status.
#
#   run.py [--keep-going] -- PROGRAM ARGS...     (PREFORKD_BIN names the binary)
#
# The program gets COMPAT_HOST, COMPAT_PORT, COMPAT_AUTH_PORT and
# COMPAT_PASSWORD in its environment and prints TAP on stdout, which passes
# through unchanged (meson reads it with protocol: 'tap'). Mirrors
# tests/integration/harness.cc: the same config defaults, the same readiness
# condition (every listener accepts and every worker is up), bounded polls.
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

WORKERS = 2
START_TIMEOUT_S = 10.0
PROGRAM_TIMEOUT_S = 240.0
PASSWORD = "compat-secret-9f2c"


def log(msg):
    print(f"run.py: {msg}", file=sys.stderr, flush=True)


def wait_for(cond, timeout_s, poll_s=0.01):
    """Polls cond() until true or timeout_s passed; returns the last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        if cond():
            return True
        if time.monotonic() >= deadline:
            return cond()
        time.sleep(poll_s)


_given_ports = set()


def free_port():
    """An unused loopback port below the kernel's ephemeral range (as harness.cc)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo_eph = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        lo_eph = 32768
    hi, lo = min(lo_eph - 1, 32767), 15000
    for attempt in range(2000):
        port = random.randrange(lo, hi) if attempt < 1000 and hi > lo else 0
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            port = s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
        if port and port not in _given_ports:
            _given_ports.add(port)
            return port
    raise RuntimeError("no free loopback port")


def proc_stat(pid):
    """(comm, state, ppid, starttime) from /proc/PID/stat, or None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1 : s.rindex(")")]
    rest = s[s.rindex(")") + 2 :].split()
    return comm, rest[0], int(rest[1]), int(rest[19])


def children(ppid):
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st and st[2] == ppid and st[1] != "Z":
                out.append((int(name), st[0], st[3]))
    return out


def can_connect(port, timeout_s=0.2):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s):
            return True
    except OSError:
        return False


class Server:
    def __init__(self, binary, name, password=None):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix=f"preforkd-compat-{name}-")
        self.port = free_port()
        self.proc = None
        self.seen = {}  # worker pid -> starttime, to kill leftovers by pid only
        kv = "kv:\n  shards: 8\n  large_memory: 40m\n"
        if password:
            kv += f"  password: {password}\n"
        config = (
            "listeners:\n"
            f"- name: resp\n  address: 127.0.0.1\n  port: {self.port}\n  protocol: resp\n"
            f"workers: {WORKERS}\n"
            f"pidfile: {self.dir}/preforkd.pid\n"
            "shared_memory: 96m\n"
            f"{kv}"
            f"logging:\n  error_log: {self.dir}/error.log\n"
            "timeouts:\n  drain: 2s\n"
        )
        self.config_path = os.path.join(self.dir, "preforkd.yaml")
        with open(self.config_path, "w") as f:
            f.write(config)

    def read(self, name):
        try:
            with open(os.path.join(self.dir, name), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def workers_up(self):
        n = 0
        for pid, comm, start in children(self.proc.pid):
            self.seen[pid] = start
            rest = comm[len("preforkd-w") :] if comm.startswith("preforkd-w") else ""
            if rest.isdigit():
                n += 1
        return n

    def start(self):
        out = open(os.path.join(self.dir, "output.log"), "ab")
        self.proc = subprocess.Popen(
            [self.binary, "-g", "-c", self.config_path],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
        out.close()

        def ready():
            return (self.proc.poll() is not None
                    or (self.workers_up() >= WORKERS and can_connect(self.port)))

        if not wait_for(ready, START_TIMEOUT_S) or self.proc.poll() is not None:
            log(f"preforkd did not become ready (exit status {self.proc.poll()})")
            self.dump()
            return False
        return True

    def dump(self):
        sys.stderr.write(f"---- preforkd output ({self.dir}) ----\n{self.read('output.log')}"
                         f"---- preforkd error log ----\n{self.read('error.log')}----\n")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.workers_up()  # learn the workers, to check they go too
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"preforkd {self.proc.pid} ignored SIGTERM for 10 s: SIGKILL")
                self.proc.kill()
                self.proc.wait()
        # Workers that outlived the master: by pid, only if still the same process.
        for pid, start in self.seen.items():
            st = proc_stat(pid)
            if st and st[3] == start and st[1] != "Z":
                os.kill(pid, signal.SIGKILL)
        if not os.environ.get("PREFORKD_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)


def main(argv):
    if "--" not in argv:
        log("usage: run.py -- PROGRAM ARGS...")
        return 2
    program = argv[argv.index("--") + 1 :]
    binary = os.environ.get("PREFORKD_BIN", "preforkd")
    servers = [Server(binary, "open"), Server(binary, "auth", PASSWORD)]
    try:
        for s in servers:
            if not s.start():
                print("Bail out! preforkd did not start", flush=True)
                return 1
        env = dict(os.environ, COMPAT_HOST="127.0.0.1", COMPAT_PORT=str(servers[0].port),
                   COMPAT_AUTH_PORT=str(servers[1].port), COMPAT_PASSWORD=PASSWORD)
        try:
            rc = subprocess.run(program, env=env, timeout=PROGRAM_TIMEOUT_S).returncode
        except subprocess.TimeoutExpired:
            print(f"Bail out! {program[-1]} ran longer than {PROGRAM_TIMEOUT_S:.0f} s", flush=True)
            rc = 1
        for s in servers:
            if s.proc.poll() is not None:
                log(f"preforkd {s.proc.pid} exited during the tests (status {s.proc.poll()})")
                rc = rc or 1
        if rc != 0:
            for s in servers:
                s.dump()
        return rc
    finally:
        for s in servers:
            s.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
