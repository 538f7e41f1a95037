#!/usr/bin/python3
"""tests/cluster/test_cluster.py: `tools/preforkctl cluster` end to end (TAP).

Three real preforkd nodes (fsync always) behind Debian's nutcracker and
haproxy, all on loopback, through the real command. The cases run in source
order and build on each other: keys written through nutcracker, read through
both proxies, a node killed with -9 and brought back on its data, a node
restarted under wrk, a fourth node added. Suite 'cluster' (tests/meson.build).
"""

import atexit
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("PREFORKD_SOURCE_ROOT", os.path.dirname(os.path.dirname(HERE)))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(ROOT, "tests", "compat"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import pytap  # noqa: E402

import redis  # noqa: E402

import cluster as model  # noqa: E402  (tools/cluster.py: the ring, as nutcracker builds it)

KEYS = 10_000
PREFORKCTL = os.path.join(ROOT, "tools", "preforkctl")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_port(nodes):
    """A port P with P and P+1 free on every node address (and the one
    `cluster add` will use)."""
    for _ in range(200):
        p = random.randrange(20000, 30000)
        ok = True
        for i in range(1, nodes + 2):
            for port in (p, p + 1):
                with socket.socket() as s:
                    try:
                        s.bind((f"127.0.0.{10 + i}", port))
                    except OSError:
                        ok = False
        if ok:
            return p
    raise RuntimeError("no free base port")


def wait_for(what, predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)


def http(url, method="GET", body=None, timeout=5):
    req = urllib.request.Request(url, method=method, data=body)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Cluster(unittest.TestCase):
    """One 3-node cluster for the whole file (set up once: the cases are steps)."""

    @classmethod
    def ctl(cls, *args, check=True, timeout=120):
        r = subprocess.run([PREFORKCTL, "cluster", *args, "--dir", cls.dir], capture_output=True, text=True,
                           env=cls.env, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"cluster {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    started = False

    def setUp(self):
        # tests/compat/pytap.py runs case by case (no setUpClass): the
        # cluster starts with the first case and stops at exit.
        if not Cluster.started:
            Cluster.started = True
            Cluster.start()

    @classmethod
    def start(cls):
        atexit.register(cls.stop)
        cls.tmp = tempfile.mkdtemp(prefix="pf-cluster-")
        cls.dir = os.path.join(cls.tmp, "cluster")
        cls.env = dict(os.environ, PREFORKD_BIN=os.environ.get("PREFORKD_BIN",
                                                               os.path.join(ROOT, "build", "preforkd")))
        cls.base = base_port(3)
        cls.resp_port, cls.http_port = free_port(), free_port()
        cls.ports = ["--base-port", str(cls.base), "--resp-port", str(cls.resp_port),
                     "--http-port", str(cls.http_port), "--stats-port", str(free_port()),
                     "--haproxy-stats-port", str(free_port())]
        cls.up = cls.ctl("up", "3", "--fsync", "always", *cls.ports)
        cls.state = json.load(open(os.path.join(cls.dir, "cluster.json")))
        cls.proxy = redis.Redis(port=cls.resp_port, socket_timeout=5)
        cls.web = f"http://127.0.0.1:{cls.http_port}"

    @classmethod
    def stop(cls):
        cls.ctl("down", "--fast", check=False)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def node(self, name):
        n = next(n for n in self.state["nodes"] if n["name"] == name)
        return redis.Redis(host=n["address"], port=self.state["resp_port"], socket_timeout=5)

    def ring(self):
        return model.ketama_ring([n["name"] for n in self.state["nodes"]])

    # -- the steps --

    def test_01_up_refuses_a_second_start_and_a_bad_config(self):
        r = self.ctl("up", "3", *self.ports, check=False)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("already running", r.stderr)
        # A template value every node's `preforkd -t` refuses: nothing starts.
        other = os.path.join(self.tmp, "bad")
        r = subprocess.run([PREFORKCTL, "cluster", "up", "2", "--dir", other, "--shared-memory", "1k",
                            "--base-port", str(base_port(2)), "--resp-port", str(free_port()),
                            "--http-port", str(free_port()), "--stats-port", str(free_port()),
                            "--haproxy-stats-port", str(free_port())],
                           capture_output=True, text=True, env=self.env, timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("configuration refused, nothing started", r.stderr)
        self.assertIn("node1: ", r.stderr)
        self.assertIn("shared_memory", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(other, "node1", "preforkd.pid")))

    def test_02_keys_spread_over_all_nodes_as_nutcracker_places_them(self):
        p = self.proxy.pipeline(transaction=False)
        for i in range(KEYS):
            p.set(f"key:{i}", f"value-{i}")
            if i % 500 == 499:
                self.assertTrue(all(p.execute()))
        shares = {n["name"]: self.node(n["name"]).dbsize() for n in self.state["nodes"]}
        self.assertEqual(sum(shares.values()), KEYS, shares)
        for name, count in shares.items():
            self.assertGreaterEqual(count, 0.25 * KEYS, shares)
            self.assertLessEqual(count, 0.42 * KEYS, shares)
        # tools/cluster.py's ring is nutcracker's: every key is where it says.
        ring = self.ring()
        expect = {}
        for i in range(KEYS):
            expect[model.locate(ring, f"key:{i}".encode())] = expect.get(model.locate(ring, f"key:{i}".encode()),
                                                                          0) + 1
        self.assertEqual(expect, shares)
        name = model.locate(ring, b"key:42")
        self.assertEqual(self.node(name).get("key:42"), b"value-42")

    def test_03_every_key_reads_back_through_nutcracker(self):
        for start in range(0, KEYS, 1000):
            keys = [f"key:{i}" for i in range(start, start + 1000)]
            self.assertEqual(self.proxy.mget(keys), [f"value-{i}".encode() for i in range(start, start + 1000)])

    def test_04_http_kv_through_haproxy_reaches_the_keys_node(self):
        for i in range(0, KEYS, 97):
            self.assertEqual(http(f"{self.web}/kv/key:{i}"), (200, f"value-{i}".encode()))
        # Written over HTTP, found by RESP (the same ring), on the same node
        # every time.
        ring = self.ring()
        for k in ("web:a", "web:b", "web:{user7}:cart", "ns/x"):
            code, _ = http(f"{self.web}/kv/{k}", "PUT", k.encode())
            self.assertIn(code, (200, 201, 204), k)
            stored = k.replace("/", "^")
            self.assertEqual(self.proxy.get(stored), k.encode())
            self.assertEqual(self.node(model.locate(ring, stored.encode())).get(stored), k.encode())
        for _ in range(5):
            self.assertEqual(http(f"{self.web}/kv/web:a"), (200, b"web:a"))
        # A listing would be one node's view: refused with a reason.
        code, body = http(f"{self.web}/kv/")
        self.assertEqual(code, 400)
        self.assertIn(b"spans nodes", body)
        self.assertEqual(http(f"{self.web}/kv")[0], 400)

    def test_05_a_nodes_refusal_reaches_the_client_without_a_hang(self):
        t0 = time.monotonic()
        with self.assertRaises(redis.ResponseError) as e:
            self.proxy.set("big", b"x" * (2 << 20))  # kv.max_value_bytes is 1m in the template
        self.assertLess(time.monotonic() - t0, 3)
        self.assertRegex(str(e.exception), r"(?i)too large|max|limit")
        with self.assertRaises(redis.ResponseError) as e:
            self.proxy.incr("key:1")  # "value-1" is not an integer: the node's own error
        self.assertIn("not an integer", str(e.exception))

    def test_06_a_killed_node_loses_only_its_keys_and_comes_back_with_them(self):
        ring = self.ring()
        victim = "node2"
        mine = [i for i in range(KEYS) if model.locate(ring, f"key:{i}".encode()) == victim]
        others = [i for i in range(KEYS) if model.locate(ring, f"key:{i}".encode()) != victim]
        self.ctl("node", victim, "kill")
        t0 = time.monotonic()

        def others_readable():
            try:
                return all(self.proxy.get(f"key:{i}") == f"value-{i}".encode() for i in others[:200])
            except redis.RedisError:
                return False

        wait_for("the other nodes' keys", others_readable, 5)
        self.assertLess(time.monotonic() - t0, 5)
        # Writes to the other nodes' keys keep working.
        self.assertTrue(self.proxy.set(f"key:{others[0]}", f"value-{others[0]}"))
        # The dead node's keys fail fast (an error, not a timeout).
        for i in mine[:20]:
            t = time.monotonic()
            with self.assertRaises(redis.RedisError):
                self.proxy.get(f"key:{i}")
            self.assertLess(time.monotonic() - t, 1.0)
        status = json.loads(self.ctl("status", "--json").stdout)
        self.assertEqual({n["name"]: n["health"] for n in status["nodes"]}[victim], "down")
        self.ctl("node", victim, "start")

        def all_back():
            try:
                for start in range(0, KEYS, 1000):
                    want = [f"value-{i}".encode() for i in range(start, start + 1000)]
                    if self.proxy.mget([f"key:{i}" for i in range(start, start + 1000)]) != want:
                        return False
                return True
            except redis.RedisError:
                return False

        wait_for("all 10000 keys after the restart", all_back, 10)

    def test_07_static_files_through_haproxy_while_a_node_restarts(self):
        wrk = shutil.which("wrk")
        self.assertIsNotNone(wrk, "wrk is a test dependency (Debian's wrk)")
        proc = subprocess.Popen([wrk, "-t1", "-c8", "-d4s", f"{self.web}/index.html"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        c = model.Cluster(self.dir, None)
        c.load()

        def served():
            st = model.haproxy_stats(c) or {}
            return int(st.get(("http", "FRONTEND"), {}).get("req_tot") or 0)

        first = served()
        wait_for("wrk's first requests", lambda: served() > first + 100)
        self.ctl("node", "node3", "stop")
        self.ctl("node", "node3", "start")
        out, _ = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 0, out)
        self.assertNotIn("Non-2xx", out, out)
        self.assertNotIn("Socket errors", out, out)
        self.assertRegex(out, r"\d+ requests in", out)

    def test_08_status_lists_nodes_and_both_proxies(self):
        wait_for("haproxy to see node3 up again",
                 lambda: all("DOWN" not in "/".join((n.get("haproxy") or {}).values())
                             for n in json.loads(self.ctl("status", "--json").stdout)["nodes"]), 10)
        status = json.loads(self.ctl("status", "--json").stdout)
        self.assertEqual([n["health"] for n in status["nodes"]], ["ok"] * 3)
        self.assertEqual(sum(n["keys"] for n in status["nodes"]), KEYS + 4)
        self.assertIsNotNone(status["nutcracker"])
        self.assertIsNotNone(status["haproxy"])
        text = self.ctl("status").stdout
        for word in ("node1", "node2", "node3", "nutcracker:", "haproxy:", "/_metrics"):
            self.assertIn(word, text)

    def test_09_add_moves_about_a_quarter_of_the_keys(self):
        before = {n["name"]: self.node(n["name"]).dbsize() for n in self.state["nodes"]}
        out = self.ctl("add").stdout
        print("\n".join("# " + line for line in out.strip().splitlines()), flush=True)  # the figures, in the log
        result = json.loads(out.strip().splitlines()[-1])
        self.state = Cluster.state = json.load(open(os.path.join(self.dir, "cluster.json")))
        self.assertEqual(result["nodes"], 4)
        self.assertEqual(result["total"], sum(before.values()))
        fraction = result["moved"] / result["total"]
        self.assertGreater(fraction, 0.15, out)
        self.assertLess(fraction, 0.35, out)
        self.assertEqual(self.node("node4").dbsize(), result["moved"])
        # Nothing is lost or left twice, and the proxies use the new ring.
        self.assertEqual(sum(self.node(n["name"]).dbsize() for n in self.state["nodes"]), result["total"])
        proxy = redis.Redis(port=self.resp_port, socket_timeout=5)
        for start in range(0, KEYS, 1000):
            self.assertEqual(proxy.mget([f"key:{i}" for i in range(start, start + 1000)]),
                             [f"value-{i}".encode() for i in range(start, start + 1000)])
        ring = self.ring()
        moved_key = next(f"key:{i}" for i in range(KEYS) if model.locate(ring, f"key:{i}".encode()) == "node4")
        self.assertEqual(http(f"{self.web}/kv/{moved_key}"), (200, f"value-{moved_key[4:]}".encode()))

    def test_10_down_stops_every_process_it_started(self):
        pids = [int(open(os.path.join(self.dir, n["name"], "preforkd.pid")).read().split()[0])
                for n in self.state["nodes"]]
        pids += [int(open(os.path.join(self.dir, f)).read().split()[0]) for f in ("nutcracker.pid", "haproxy.pid")]
        self.ctl("down")
        for pid in pids:
            wait_for(f"pid {pid} to exit", lambda: not os.path.exists(f"/proc/{pid}") or
                     open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z", 10)
        r = self.ctl("status", "--json")
        self.assertTrue(all(n["pid"] is None for n in json.loads(r.stdout)["nodes"]))


    def test_11_a_password_reaches_the_nodes_through_both_proxies(self):
        d = os.path.join(self.tmp, "auth")
        resp, web = free_port(), free_port()
        args = ["--dir", d, "--base-port", str(base_port(1)), "--resp-port", str(resp), "--http-port", str(web),
                "--stats-port", str(free_port()), "--haproxy-stats-port", str(free_port())]
        run = lambda *a: subprocess.run([PREFORKCTL, "cluster", *a], capture_output=True, text=True, env=self.env,
                                        timeout=60)
        r = run("up", "1", "--password", "s3cret pass", *args)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        try:
            with self.assertRaises(redis.AuthenticationError):
                redis.Redis(port=resp, socket_timeout=5).set("a", "1")
            t0 = time.monotonic()
            with self.assertRaises(redis.RedisError):
                redis.Redis(port=resp, socket_timeout=5, password="wrong").set("a", "1")
            self.assertLess(time.monotonic() - t0, 3)
            self.assertTrue(redis.Redis(port=resp, socket_timeout=5, password="s3cret pass").set("a", "1"))
            self.assertEqual(http(f"http://127.0.0.1:{web}/kv/a")[0], 401)
            req = urllib.request.Request(f"http://127.0.0.1:{web}/kv/a",
                                         headers={"Authorization": "Bearer s3cret pass"})
            with urllib.request.urlopen(req, timeout=5) as reply:
                self.assertEqual(reply.read(), b"1")
            self.assertEqual(os.stat(os.path.join(d, "cluster.json")).st_mode & 0o077, 0)
        finally:
            run("down", "--fast", "--dir", d)


    def test_12_auto_eject_moves_a_dead_nodes_keys_to_the_others(self):
        d = os.path.join(self.tmp, "cache")
        resp = free_port()
        args = ["--dir", d, "--base-port", str(base_port(2)), "--resp-port", str(resp), "--http-port",
                str(free_port()), "--stats-port", str(free_port()), "--haproxy-stats-port", str(free_port())]
        run = lambda *a: subprocess.run([PREFORKCTL, "cluster", *a], capture_output=True, text=True, env=self.env,
                                        timeout=60)
        r = run("up", "2", "--auto-eject", *args)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        try:
            ring = model.ketama_ring(["node1", "node2"])
            key = next(f"c:{i}" for i in range(1000) if model.locate(ring, f"c:{i}".encode()) == "node2")
            proxy = redis.Redis(port=resp, socket_timeout=5)
            self.assertTrue(proxy.set(key, "before"))
            self.assertEqual(run("node", "node2", "kill", "--dir", d).returncode, 0)

            def on_node1():
                try:
                    return proxy.set(key, "after")
                except redis.RedisError:
                    return False

            # server_failure_limit (2) failures, then the ring without node2.
            wait_for("the key to land on node1", on_node1, 10)
            node1 = redis.Redis(host="127.0.0.11", port=json.load(open(os.path.join(d, "cluster.json")))["resp_port"],
                                socket_timeout=5)
            self.assertEqual(node1.get(key), b"after")
        finally:
            run("down", "--fast", "--dir", d)


if __name__ == "__main__":
    sys.exit(pytap.main())
