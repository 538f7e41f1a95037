#!/usr/bin/python3
"""tools/cluster.py: `tools/preforkctl cluster` (docs/scale-out.md).

N preforkd nodes on this machine, node i on its own loopback address
127.0.0.(10+i), behind Debian's nutcracker (twemproxy: RESP, ketama over the
node names) and haproxy (HTTP: round robin for static files, the same ketama
ring for /kv/KEY through conf/cluster/ketama.lua). Everything lives in one
state directory: the generated configs, each node's data and logs, the
pidfiles. Processes are only ever stopped by the pids this tool recorded, after
checking that each pid still runs the program it started.

Run it through `tools/preforkctl cluster`, which installs nutcracker, haproxy
and python3-redis first; it needs Debian's /usr/bin/python3 (redis-py).
"""

import argparse
import csv
import fcntl
import hashlib
import io
import json
import math
import os
import signal
import socket
import string
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

try:
    import redis
except ImportError:  # pragma: no cover - preforkctl installs it
    sys.exit("cluster: needs redis-py (apt-get install python3-redis) and Debian's /usr/bin/python3")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(ROOT, "conf", "cluster")
MAX_NODES = 200  # 127.0.0.11 .. 127.0.0.210

# Ketama as nutcracker builds it (src/hashkit/nc_ketama.c): 160 points per
# node of equal weight, 4 per MD5 of "NAME-i".
KETAMA_POINTS = 160


class ClusterError(Exception):
    pass


def say(msg):
    print(f"cluster: {msg}", flush=True)


# ---------------------------------------------------------------------------
# The ring


def _f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def ketama_ring(names):
    """Sorted [(point, name)] for nodes of weight 1, as nutcracker computes it
    (its float arithmetic included, so the point count matches for any N)."""
    n = len(names)
    pct = _f32(1.0 / n)
    per_server = int(math.floor(_f32(_f32(_f32(pct * KETAMA_POINTS) / 4) * n) + 0.0000000001)) * 4
    ring = []
    for name in names:
        for i in range(per_server // 4):
            digest = hashlib.md5(f"{name}-{i}".encode()).digest()
            for x in range(4):
                ring.append((int.from_bytes(digest[4 * x:4 * x + 4], "little"), name))
    ring.sort(key=lambda p: p[0])
    return ring


def fnv1a_32(key: bytes) -> int:
    """nutcracker's hash_fnv1a_32 (`hash: fnv1a_32`): FNV-1a, each byte
    sign-extended (its key is a char *). Its fnv1a_64 keeps only 32 bits of a
    64-bit state and spreads sequential keys worse (38% on one of 3 nodes)."""
    h = 0x811C9DC5
    for b in key:
        if b >= 0x80:
            b |= 0xFFFFFF00
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def hash_tag(key: bytes) -> bytes:
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end >= 0 and end - start > 1:
            return key[start + 1:end]
    return key


def locate(ring, key: bytes) -> str:
    h = fnv1a_32(hash_tag(key))
    lo, hi = 0, len(ring)
    while lo < hi:
        mid = (lo + hi) // 2
        if ring[mid][0] < h:
            lo = mid + 1
        else:
            hi = mid
    return ring[lo if lo < len(ring) else 0][1]


# ---------------------------------------------------------------------------
# State


class Cluster:
    def __init__(self, directory, binary):
        self.dir = os.path.abspath(directory)
        self.bin = binary
        self.state_path = os.path.join(self.dir, "cluster.json")
        self.state = None

    # -- state file --
    def load(self):
        try:
            with open(self.state_path) as f:
                self.state = json.load(f)
        except FileNotFoundError:
            raise ClusterError(f"no cluster in {self.dir} (start one with `cluster up N`)")
        return self.state

    def save(self):
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f, indent=2)
            f.write("\n")
        os.replace(tmp, self.state_path)

    @property
    def nodes(self):
        return self.state["nodes"]

    def node(self, ref):
        for n in self.nodes:
            if ref in (n["name"], str(n["index"]), n["address"]):
                return n
        raise ClusterError(f"no node {ref!r} (nodes: {', '.join(n['name'] for n in self.nodes)})")

    def node_dir(self, n):
        return os.path.join(self.dir, n["name"])

    def path(self, name):
        return os.path.join(self.dir, name)

    # -- config generation --
    def render(self, template, out, **fields):
        with open(os.path.join(TEMPLATES, template)) as f:
            text = string.Template(f.read()).substitute(fields)
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, out)

    def write_node_config(self, n):
        d = self.node_dir(n)
        for sub in ("", "data", "log", "www"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        index = os.path.join(d, "www", "index.html")
        if not os.path.exists(index):
            with open(index, "w") as f:
                f.write(f"<!doctype html><title>{n['name']}</title><p>preforkd cluster {n['name']}\n")
        s = self.state
        self.render("node.yaml", os.path.join(d, "preforkd.yaml"), dir=d, www=os.path.join(d, "www"),
                    address=n["address"], resp_port=s["resp_port"], http_port=s["http_port"],
                    workers=s["workers"], fsync=s["fsync"], shared_memory=s["shared_memory"])

    def write_proxy_configs(self, suffix=""):
        """nutcracker.yml, haproxy.cfg, ketama.lua and ring.lua for the nodes
        in the state (suffix: write beside the live files, for -t/-c)."""
        s = self.state
        names = [n["name"] for n in self.nodes]
        servers = "\n".join(f"   - {n['address']}:{s['resp_port']}:1 {n['name']}" for n in self.nodes)
        self.render("nutcracker.yml", self.path("nutcracker.yml" + suffix), listen=s["resp_listen"],
                    servers=servers)
        ring_path = self.path("ring.lua" + suffix)
        with open(ring_path, "w") as f:
            f.write("-- generated by tools/cluster.py: the ketama ring of " + ", ".join(names) + "\nreturn {\n")
            for point, name in ketama_ring(names):
                f.write(f'{{{point},"{name}"}},\n')
            f.write("}\n")
        lua_path = self.path("ketama.lua" + suffix)
        with open(os.path.join(TEMPLATES, "ketama.lua")) as f:
            lua = f.read().replace("@RING@", ring_path)
        with open(lua_path, "w") as f:
            f.write(lua)
        static = "\n".join(f"  server {n['name']} {n['address']}:{s['http_port']}" for n in self.nodes)
        kv = "\n".join(
            f"backend kv_{n['name']}\n  option httpchk\n"
            f"  http-check send meth GET uri /_health ver HTTP/1.1 hdr Host localhost\n"
            f"  http-check expect status 200\n  server {n['name']} {n['address']}:{s['http_port']}\n"
            for n in self.nodes)
        self.render("haproxy.cfg", self.path("haproxy.cfg" + suffix), listen=s["http_listen"],
                    stats_listen=s["haproxy_stats"], lua=lua_path, dir=self.dir, static_servers=static,
                    kv_backends=kv)

    def check_configs(self, nodes, suffix=""):
        """Every node's `preforkd -t`, `nutcracker -t`, `haproxy -c`: all
        problems listed, nothing started if any."""
        problems = []
        for n in nodes:
            cfg = os.path.join(self.node_dir(n), "preforkd.yaml")
            r = subprocess.run([self.bin, "-t", "-c", cfg], capture_output=True, text=True)
            if r.returncode != 0:
                problems.append(f"{n['name']}: {(r.stdout + r.stderr).strip()}")
        r = subprocess.run(["nutcracker", "-t", "-c", self.path("nutcracker.yml" + suffix)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"nutcracker: {(r.stdout + r.stderr).strip()}")
        r = subprocess.run(["haproxy", "-c", "-q", "-f", self.path("haproxy.cfg" + suffix)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"haproxy: {(r.stdout + r.stderr).strip()}")
        if problems:
            raise ClusterError("configuration refused, nothing started:\n  " + "\n  ".join(problems))

    # -- processes --
    def node_pid(self, n):
        """The node's master pid, or None. The pidfile is flock'ed for the
        master's life (as tools/preforkctl checks)."""
        pf = os.path.join(self.node_dir(n), "preforkd.pid")
        try:
            fd = os.open(pf, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return None  # nobody holds it
            except BlockingIOError:
                pass
            pid = int(os.read(fd, 64).split()[0])
        except (ValueError, IndexError):
            return None
        finally:
            os.close(fd)
        return pid if _alive(pid, "preforkd") else None

    def proxy_pid(self, which):
        try:
            with open(self.path(f"{which}.pid")) as f:
                pid = int(f.read().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        cfg = self.path("nutcracker.yml" if which == "nutcracker" else "haproxy.cfg")
        return pid if _alive(pid, which, cfg) else None

    def running(self):
        """(what, pid) of every process of this cluster still alive."""
        out = [(n["name"], p) for n in self.nodes if (p := self.node_pid(n))]
        out += [(w, p) for w in ("nutcracker", "haproxy") if (p := self.proxy_pid(w))]
        return out

    def start_node(self, n):
        cfg = os.path.join(self.node_dir(n), "preforkd.yaml")
        # The master goes to the background once every listener accepts.
        r = subprocess.run([self.bin, "-c", cfg], capture_output=True, text=True)
        if r.returncode != 0:
            raise ClusterError(f"{n['name']} did not start: {(r.stdout + r.stderr).strip()}")
        _wait_port(n["address"], self.state["resp_port"], f"{n['name']} resp")

    def start_nutcracker(self):
        host, port = self.state["nutcracker_stats"].rsplit(":", 1)
        subprocess.run(["nutcracker", "-d", "-c", self.path("nutcracker.yml"), "-p", self.path("nutcracker.pid"),
                        "-o", self.path("nutcracker.log"), "-a", host, "-s", port, "-i", "1000"], check=True)
        lh, lp = self.state["resp_listen"].rsplit(":", 1)
        _wait_port(lh, int(lp), "nutcracker")

    def start_haproxy(self, replace=None):
        cmd = ["haproxy", "-D", "-p", self.path("haproxy.pid"), "-f", self.path("haproxy.cfg")]
        if replace:
            cmd += ["-sf", str(replace)]  # the old process finishes its connections, then exits
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise ClusterError(f"haproxy did not start: {(r.stdout + r.stderr).strip()}")
        lh, lp = self.state["http_listen"].rsplit(":", 1)
        _wait_port(lh, int(lp), "haproxy")

    def stop_pid(self, what, pid, sig, wait_s):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if not _wait_gone(pid, wait_s):
            say(f"{what} (pid {pid}) still running after {wait_s} s: SIGKILL")
            _kill_tree(pid)
            _wait_gone(pid, 5)

    def node_client(self, n, **kw):
        return redis.Redis(host=n["address"], port=self.state["resp_port"], socket_timeout=5, **kw)

    def ring(self, names=None):
        return ketama_ring(names or [n["name"] for n in self.nodes])


def _proc_comm(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        state = stat[stat.rindex(")") + 2]
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip(), state
    except (OSError, ValueError):
        return None, None


def _alive(pid, program, config=None):
    comm, state = _proc_comm(pid)
    if comm is None or state == "Z" or not comm.startswith(program):
        return False
    if config:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if config.encode() not in f.read():
                    return False
        except OSError:
            return False
    return True


def _children(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                kids.append(int(entry))
        except (OSError, ValueError):
            continue
    return kids


def _kill_tree(pid):
    """SIGKILL a master and its workers (a machine lost at once)."""
    for p in [pid] + _children(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_gone(pid, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        comm, state = _proc_comm(pid)
        if comm is None or state == "Z":
            return True
        time.sleep(0.05)
    return False


def _wait_port(host, port, what, seconds=15):
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError as e:
            if time.monotonic() > deadline:
                raise ClusterError(f"{what} does not accept on {host}:{port}: {e}")
            time.sleep(0.05)


def _port_free(host, port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _http_get(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError):
        return None, b""


# ---------------------------------------------------------------------------
# Commands


def cmd_up(c, args):
    if os.path.exists(c.state_path):
        c.load()
        alive = c.running()
        if alive:
            raise ClusterError("already running in " + c.dir + ": " + ", ".join(f"{w} (pid {p})" for w, p in alive)
                               + " (`cluster down` first)")
        if len(c.nodes) != args.nodes:
            raise ClusterError(f"{c.dir} holds a {len(c.nodes)}-node cluster: `cluster up {len(c.nodes)}` starts it "
                               f"again on its data, `cluster add` grows it, or remove the directory")
        say(f"starting the {len(c.nodes)}-node cluster in {c.dir} again on its data")
    else:
        if not 1 <= args.nodes <= MAX_NODES:
            raise ClusterError(f"N must be 1..{MAX_NODES}")
        c.state = {
            "nodes": [{"index": i, "name": f"node{i}", "address": f"127.0.0.{10 + i}"}
                      for i in range(1, args.nodes + 1)],
            "http_port": args.base_port, "resp_port": args.base_port + 1,
            "resp_listen": f"127.0.0.1:{args.resp_port}", "http_listen": f"127.0.0.1:{args.http_port}",
            "nutcracker_stats": f"127.0.0.1:{args.stats_port}",
            "haproxy_stats": f"127.0.0.1:{args.haproxy_stats_port}",
            "fsync": args.fsync, "workers": args.workers, "shared_memory": args.shared_memory,
        }
        os.makedirs(c.dir, exist_ok=True)
        c.save()
    s = c.state
    busy = [f"{n['address']}:{p}" for n in c.nodes for p in (s["http_port"], s["resp_port"])
            if not _port_free(n["address"], p)]
    busy += [a for a in (s["resp_listen"], s["http_listen"], s["nutcracker_stats"], s["haproxy_stats"])
             if not _port_free(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1]))]
    if busy:
        raise ClusterError("addresses in use, nothing started: " + ", ".join(busy))
    for n in c.nodes:
        c.write_node_config(n)
    c.write_proxy_configs()
    c.check_configs(c.nodes)
    started = []
    try:
        for n in c.nodes:
            c.start_node(n)
            started.append(n["name"])
        c.start_nutcracker()
        c.start_haproxy()
    except (ClusterError, subprocess.CalledProcessError) as e:
        say(f"start failed ({e}); stopping what was started")
        cmd_down(c, argparse.Namespace(fast=True))
        raise
    print_endpoints(c)


def print_endpoints(c):
    s = c.state
    say(f"{len(c.nodes)} nodes: " + ", ".join(f"{n['name']} {n['address']}" for n in c.nodes)
        + f" (http :{s['http_port']}, resp :{s['resp_port']})")
    say(f"RESP through nutcracker: redis-cli -h {s['resp_listen'].replace(':', ' -p ')}")
    say(f"HTTP through haproxy:    http://{s['http_listen']}/  (/kv/KEY on the key's node)")
    say(f"stats: nutcracker {s['nutcracker_stats']} (JSON), haproxy http://{s['haproxy_stats']}/ and /metrics")


def cmd_down(c, args):
    if c.state is None:
        c.load()
    sig = signal.SIGTERM if getattr(args, "fast", False) else signal.SIGQUIT
    for which in ("haproxy", "nutcracker"):
        pid = c.proxy_pid(which)
        if pid:
            c.stop_pid(which, pid, signal.SIGTERM, 10)
    for n in c.nodes:
        pid = c.node_pid(n)
        if pid:
            c.stop_pid(n["name"], pid, sig, 30)
    say(f"stopped ({c.dir} keeps the configs, data and logs)")


def cmd_node(c, args):
    c.load()
    n = c.node(args.node)
    pid = c.node_pid(n)
    if args.action == "start":
        if pid:
            raise ClusterError(f"{n['name']} is running (pid {pid})")
        c.write_node_config(n)
        c.check_configs([n])
        c.start_node(n)
        say(f"{n['name']} started (pid {c.node_pid(n)})")
    elif not pid:
        raise ClusterError(f"{n['name']} is not running")
    elif args.action == "stop":
        c.stop_pid(n["name"], pid, signal.SIGQUIT, 30)
        say(f"{n['name']} stopped")
    elif args.action == "kill":
        _kill_tree(pid)
        _wait_gone(pid, 5)
        say(f"{n['name']} killed (SIGKILL to pid {pid} and its workers)")


def nutcracker_stats(c):
    host, port = c.state["nutcracker_stats"].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2) as s:
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return json.loads(data)
    except (OSError, ValueError):
        return None


def haproxy_stats(c):
    """{(proxy, server): row} from the stats socket's `show stat`."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(c.path("haproxy.sock"))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return None
    text = data.decode(errors="replace").lstrip("# ")
    return {(r["pxname"], r["svname"]): r for r in csv.DictReader(io.StringIO(text))}


def cmd_status(c, args):
    c.load()
    s = c.state
    report = {"dir": c.dir, "nodes": [], "nutcracker": None, "haproxy": None}
    nut = nutcracker_stats(c)
    hap = haproxy_stats(c)
    for n in c.nodes:
        pid = c.node_pid(n)
        row = {"name": n["name"], "address": n["address"], "pid": pid, "health": "down", "keys": None,
               "used_memory": None, "metrics": f"http://{n['address']}:{s['http_port']}/_metrics"}
        if pid:
            code, _ = _http_get(f"http://{n['address']}:{s['http_port']}/_health")
            row["health"] = "ok" if code == 200 else f"http {code}"
            try:
                r = c.node_client(n)
                row["keys"] = r.dbsize()
                row["used_memory"] = r.info("memory").get("used_memory")
            except redis.RedisError as e:
                row["health"] += f", resp: {e}"
        if nut and "preforkd" in nut and n["name"] in nut["preforkd"]:
            sv = nut["preforkd"][n["name"]]
            row["nutcracker"] = {k: sv.get(k) for k in ("requests", "responses", "server_err", "server_timedout",
                                                          "server_eof", "server_connections", "server_ejected_at")}
        if hap:
            row["haproxy"] = {px: hap[(px, n["name"])]["status"]
                              for px in ("static", f"kv_{n['name']}") if (px, n["name"]) in hap}
        report["nodes"].append(row)
    if nut:
        pool = nut.get("preforkd", {})
        report["nutcracker"] = {"pid": c.proxy_pid("nutcracker"), "listen": s["resp_listen"],
                                "stats": s["nutcracker_stats"], "client_connections": pool.get("client_connections"),
                                "client_err": pool.get("client_err"), "forward_error": pool.get("forward_error")}
    if hap is not None:
        fe = hap.get(("http", "FRONTEND"), {})
        report["haproxy"] = {"pid": c.proxy_pid("haproxy"), "listen": s["http_listen"],
                             "stats": f"http://{s['haproxy_stats']}/", "metrics": f"http://{s['haproxy_stats']}/metrics",
                             "requests": fe.get("req_tot"), "http_5xx": fe.get("hrsp_5xx")}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"cluster in {c.dir}: {len(c.nodes)} nodes, fsync {s['fsync']}")
    print(f"{'node':8} {'address':12} {'pid':>7} {'health':8} {'keys':>8} {'memory':>10} "
          f"{'nutcracker req/err':>19} {'haproxy static/kv':>18}")
    for r in report["nodes"]:
        nc = r.get("nutcracker") or {}
        hp = r.get("haproxy") or {}
        print(f"{r['name']:8} {r['address']:12} {r['pid'] or '-':>7} {r['health'][:8]:8} "
              f"{'-' if r['keys'] is None else r['keys']:>8} {'-' if r['used_memory'] is None else r['used_memory']:>10} "
              f"{str(nc.get('requests', '-')) + '/' + str(nc.get('server_err', '-')):>19} "
              f"{'/'.join(hp.values()) or '-':>18}")
    for which in ("nutcracker", "haproxy"):
        p = report[which]
        if p:
            extra = ", ".join(f"{k} {v}" for k, v in p.items() if k not in ("pid", "listen") and v is not None)
            print(f"{which}: pid {p['pid']}, {p['listen']}; {extra}")
        else:
            print(f"{which}: not reachable")
    print("metrics: " + " ".join(r["metrics"] for r in report["nodes"]))


def scan_keys(r):
    cursor = 0
    while True:
        cursor, keys = r.scan(cursor=cursor, count=1000)
        yield from keys
        if cursor == 0:
            return


def copy_keys(src, dst, keys):
    """DUMP + PTTL on src, RESTORE ... REPLACE on dst, in pipelined batches;
    a key gone in between is skipped. Returns the number copied."""
    copied = 0
    for i in range(0, len(keys), 500):
        batch = keys[i:i + 500]
        p = src.pipeline(transaction=False)
        for k in batch:
            p.dump(k)
            p.pttl(k)
        got = p.execute()
        w = dst.pipeline(transaction=False)
        for j, k in enumerate(batch):
            payload, ttl = got[2 * j], got[2 * j + 1]
            if payload is None or ttl == -2:
                continue
            w.restore(k, max(ttl, 0), payload, replace=True)
            copied += 1
        w.execute()
    return copied


def cmd_add(c, args):
    c.load()
    down = [n["name"] for n in c.nodes if not c.node_pid(n)]
    if down or not c.proxy_pid("nutcracker") or not c.proxy_pid("haproxy"):
        raise ClusterError("every node and both proxies must run to add a node"
                           + (f" (down: {', '.join(down)})" if down else ""))
    if len(c.nodes) >= MAX_NODES:
        raise ClusterError(f"at most {MAX_NODES} nodes")
    i = max(n["index"] for n in c.nodes) + 1
    new = {"index": i, "name": f"node{i}", "address": f"127.0.0.{10 + i}"}
    if any(not _port_free(new["address"], p) for p in (c.state["http_port"], c.state["resp_port"])):
        raise ClusterError(f"{new['address']} ports are in use")
    old_names = [n["name"] for n in c.nodes]
    new_ring = c.ring(old_names + [new["name"]])
    # Check every config before anything changes.
    c.state["nodes"].append(new)
    c.write_node_config(new)
    c.write_proxy_configs(suffix=".new")
    c.check_configs([new], suffix=".new")
    c.start_node(new)
    c.save()
    say(f"{new['name']} started on {new['address']}; copying the keys that move to it")
    t0 = time.monotonic()
    dst = c.node_client(new)
    total = moved = 0
    moving = {}
    for n in c.nodes[:-1]:
        src = c.node_client(n)
        keys = [k for k in scan_keys(src)]
        total += len(keys)
        mine = [k for k in keys if locate(new_ring, k) == new["name"]]
        moved += copy_keys(src, dst, mine)
        moving[n["name"]] = mine
    # Switch the proxies to the new ring: nutcracker has no reload, so it
    # restarts (its clients reconnect); haproxy reloads without dropping a
    # connection (-sf).
    c.write_proxy_configs()
    for f in ("nutcracker.yml", "ring.lua", "ketama.lua", "haproxy.cfg"):
        os.unlink(c.path(f + ".new"))
    old = c.proxy_pid("nutcracker")
    c.stop_pid("nutcracker", old, signal.SIGTERM, 10)
    c.start_nutcracker()
    c.start_haproxy(replace=c.proxy_pid("haproxy"))
    # The moved keys leave their old nodes only now, so every read found them
    # somewhere during the switch.
    for n in c.nodes[:-1]:
        keys = moving[n["name"]]
        r = c.node_client(n)
        for j in range(0, len(keys), 500):
            r.delete(*keys[j:j + 500])
    pct = 100.0 * moved / total if total else 0.0
    say(f"moved {moved} of {total} keys ({pct:.1f}%; ketama's expectation for {len(c.nodes)} nodes: "
        f"{100.0 / len(c.nodes):.1f}%) in {time.monotonic() - t0:.1f} s")
    print(json.dumps({"moved": moved, "total": total, "nodes": len(c.nodes)}))


def cmd_locate(c, args):
    c.load()
    ring = c.ring()
    for key in args.keys:
        print(f"{key} {locate(ring, os.fsencode(key))}")


def main(argv):
    p = argparse.ArgumentParser(prog="preforkctl cluster", description=__doc__.split("\n\n")[1])
    p.add_argument("--bin", default=os.environ.get("PREFORKD_BIN", os.path.join(ROOT, "build", "preforkd")),
                   help="the preforkd binary (default: build/preforkd)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=os.environ.get("PREFORKD_CLUSTER_DIR", os.path.join(ROOT, "var", "cluster")),
                        help="state directory: configs, data, logs, pidfiles (default: var/cluster, "
                             "or $PREFORKD_CLUSTER_DIR)")
    sub = p.add_subparsers(dest="cmd", required=True)
    _add = sub.add_parser

    def add_parser(name, **kw):
        return _add(name, parents=[common], **kw)
    sub.add_parser = add_parser
    up = sub.add_parser("up", help="start N nodes and both proxies")
    up.add_argument("nodes", type=int)
    up.add_argument("--base-port", type=int, default=7100, help="node http port (resp: +1), default 7100")
    up.add_argument("--resp-port", type=int, default=22121, help="nutcracker on 127.0.0.1 (22121)")
    up.add_argument("--http-port", type=int, default=8088, help="haproxy on 127.0.0.1 (8088)")
    up.add_argument("--stats-port", type=int, default=22222, help="nutcracker's stats (22222)")
    up.add_argument("--haproxy-stats-port", type=int, default=8089, help="haproxy's stats page (8089)")
    up.add_argument("--fsync", choices=("always", "everysec", "no"), default="everysec")
    up.add_argument("--workers", default="1", help="workers per node (default 1; auto = one per core)")
    up.add_argument("--shared-memory", default="64m", help="each node's shared segment (64m)")
    down = sub.add_parser("down", help="stop the proxies, then the nodes (graceful)")
    down.add_argument("--fast", action="store_true", help="SIGTERM the nodes instead of SIGQUIT")
    st = sub.add_parser("status", help="each node, its health and keys, and the proxies' view")
    st.add_argument("--json", action="store_true")
    nd = sub.add_parser("node", help="start, stop (graceful) or kill (-9, with its workers) one node")
    nd.add_argument("node", help="name (node2), index (2) or address")
    nd.add_argument("action", choices=("start", "stop", "kill"))
    sub.add_parser("add", help="grow to N+1 nodes: start one, copy the keys that move, switch the proxies")
    lo = sub.add_parser("locate", help="the node of each KEY (nutcracker's and haproxy's choice)")
    lo.add_argument("keys", nargs="+")
    args = p.parse_args(argv)
    c = Cluster(args.dir, args.bin)
    try:
        {"up": cmd_up, "down": cmd_down, "status": cmd_status, "node": cmd_node, "add": cmd_add,
         "locate": cmd_locate}[args.cmd](c, args)
    except ClusterError as e:
        print(f"cluster: {e}", file=sys.stderr)
        return 1
    except redis.RedisError as e:
        print(f"cluster: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
