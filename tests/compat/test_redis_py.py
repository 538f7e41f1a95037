#!/usr/bin/python3
# tests/compat/test_redis_py.py: redis-py (Debian's python3-redis) driven over
# its normal API against preforkd's RESP port; run by run.py, prints TAP.
# Commands preforkd does not have yet are in test_redis_py_new.py.
import os
import sys
import time
import unittest

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pytap  # noqa: E402

HOST = os.environ.get("COMPAT_HOST", "127.0.0.1")
PORT = int(os.environ.get("COMPAT_PORT", "6380"))
AUTH_PORT = int(os.environ.get("COMPAT_AUTH_PORT", "0"))
PASSWORD = os.environ.get("COMPAT_PASSWORD", "")


def client(**kw):
    kw.setdefault("decode_responses", True)
    return redis.Redis(host=HOST, port=kw.pop("port", PORT), socket_timeout=10,
                       socket_connect_timeout=5, **kw)


def wait_for(cond, timeout_s=5.0, poll_s=0.01):
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() >= deadline:
            return cond()
        time.sleep(poll_s)
    return True


class Base(unittest.TestCase):
    def setUp(self):
        self.r = client()
        self.r.flushdb()

    def tearDown(self):
        self.r.close()


class Strings(Base):
    def test_set_get(self):
        self.assertTrue(self.r.set("s:a", "hello"))
        self.assertEqual(self.r.get("s:a"), "hello")
        self.assertIsNone(self.r.get("s:missing"))

    def test_binary_values(self):
        b = client(decode_responses=False)
        blob = bytes(range(256)) + b"\r\n\x00end"
        self.assertTrue(b.set(b"s:\x00bin\xff", blob))
        self.assertEqual(b.get(b"s:\x00bin\xff"), blob)
        b.close()

    def test_multi_megabyte_values(self):
        # Redis takes values up to 512 MB; preforkd's default limit is 16m.
        b = client(decode_responses=False)
        big = os.urandom(8 << 20)
        self.assertTrue(b.set("s:big", big))
        self.assertEqual(b.strlen("s:big"), len(big))
        self.assertEqual(b.get("s:big"), big)
        self.assertEqual(b.append("s:big", b"!"), len(big) + 1)
        self.assertEqual(b.getrange("s:big", -2, -1), big[-1:] + b"!")
        p = b.pipeline(transaction=True)
        p.set("s:big2", big).get("s:big2")
        self.assertEqual(p.execute(), [True, big])
        b.close()

    def test_set_ex_px(self):
        self.assertTrue(self.r.set("s:ex", "v", ex=100))
        self.assertTrue(95 <= self.r.ttl("s:ex") <= 100)
        self.assertTrue(self.r.set("s:px", "v", px=50000))
        self.assertTrue(45000 <= self.r.pttl("s:px") <= 50000)
        # A short PX really expires.
        self.r.set("s:short", "v", px=30)
        self.assertTrue(wait_for(lambda: self.r.get("s:short") is None, 3.0))

    def test_set_nx_xx(self):
        self.assertTrue(self.r.set("s:nx", "1", nx=True))
        self.assertIsNone(self.r.set("s:nx", "2", nx=True))
        self.assertEqual(self.r.get("s:nx"), "1")
        self.assertIsNone(self.r.set("s:xx", "1", xx=True))
        self.assertEqual(self.r.exists("s:xx"), 0)
        self.assertTrue(self.r.set("s:nx", "3", xx=True))
        self.assertEqual(self.r.get("s:nx"), "3")

    def test_set_get_option(self):
        self.assertIsNone(self.r.set("s:g", "old", get=True))
        self.assertEqual(self.r.set("s:g", "new", get=True), "old")
        self.assertEqual(self.r.get("s:g"), "new")

    def test_set_keepttl(self):
        self.r.set("s:k", "v1", ex=100)
        self.assertTrue(self.r.set("s:k", "v2", keepttl=True))
        self.assertEqual(self.r.get("s:k"), "v2")
        self.assertTrue(90 <= self.r.ttl("s:k") <= 100)
        self.r.set("s:k", "v3")  # without KEEPTTL the TTL goes
        self.assertEqual(self.r.ttl("s:k"), -1)

    def test_set_with_bad_option_is_an_error(self):
        with self.assertRaises(redis.ResponseError):
            self.r.execute_command("SET", "s:a", "v", "EX", "notanumber")
        with self.assertRaises(redis.ResponseError):
            self.r.set("s:a", "v", nx=True, xx=True)

    def test_mset_mget(self):
        self.assertTrue(self.r.mset({"m:1": "a", "m:2": "b", "m:3": "c"}))
        self.assertEqual(self.r.mget(["m:1", "m:2", "m:nope", "m:3"]), ["a", "b", None, "c"])
        self.assertEqual(self.r.mget("m:3", "m:1"), ["c", "a"])

    def test_incr_decr(self):
        self.assertEqual(self.r.incr("c:n"), 1)
        self.assertEqual(self.r.incr("c:n", 10), 11)
        self.assertEqual(self.r.incrby("c:n", 5), 16)
        self.assertEqual(self.r.decr("c:n"), 15)
        self.assertEqual(self.r.decr("c:n", 20), -5)
        self.assertEqual(self.r.get("c:n"), "-5")
        self.r.set("c:s", "abc")
        with self.assertRaises(redis.ResponseError) as e:
            self.r.incr("c:s")
        self.assertIn("not an integer", str(e.exception))
        self.r.set("c:max", str(2**63 - 1))
        with self.assertRaises(redis.ResponseError) as e:
            self.r.incr("c:max")
        self.assertIn("overflow", str(e.exception))

    def test_strlen(self):
        # APPEND is not there yet: test_redis_py_new.py has it.
        self.r.set("a:x", "Hello World")
        self.assertEqual(self.r.strlen("a:x"), 11)
        self.assertEqual(self.r.strlen("a:none"), 0)

    def test_setnx_setex(self):
        self.assertTrue(self.r.setnx("n:1", "a"))
        self.assertFalse(self.r.setnx("n:1", "b"))
        self.assertEqual(self.r.get("n:1"), "a")
        self.assertTrue(self.r.setex("n:2", 60, "v"))
        self.assertTrue(55 <= self.r.ttl("n:2") <= 60)
        self.assertEqual(self.r.get("n:2"), "v")
        with self.assertRaises(redis.ResponseError):
            self.r.setex("n:3", 0, "v")  # Redis: invalid expire time


class Keyspace(Base):
    def test_del_exists(self):
        self.r.mset({"k:1": "1", "k:2": "2", "k:3": "3"})
        self.assertEqual(self.r.exists("k:1", "k:2", "k:nope"), 2)
        self.assertEqual(self.r.exists("k:1", "k:1"), 2)  # counted per argument, as Redis
        self.assertEqual(self.r.delete("k:1", "k:2", "k:nope"), 2)
        self.assertEqual(self.r.exists("k:1"), 0)
        self.assertEqual(self.r.delete("k:1"), 0)

    def test_type(self):
        self.r.set("t:s", "x")
        self.assertEqual(self.r.type("t:s"), "string")
        self.assertEqual(self.r.type("t:none"), "none")

    def test_expire_ttl_persist(self):
        self.r.set("e:1", "v")
        self.assertEqual(self.r.ttl("e:1"), -1)
        self.assertEqual(self.r.ttl("e:none"), -2)
        self.assertEqual(self.r.pttl("e:none"), -2)
        self.assertTrue(self.r.expire("e:1", 100))
        self.assertTrue(95 <= self.r.ttl("e:1") <= 100)
        self.assertTrue(95000 <= self.r.pttl("e:1") <= 100000)
        self.assertTrue(self.r.persist("e:1"))
        self.assertFalse(self.r.persist("e:1"))
        self.assertEqual(self.r.ttl("e:1"), -1)
        self.assertFalse(self.r.expire("e:none", 10))
        self.assertTrue(self.r.pexpire("e:1", 40))
        self.assertTrue(wait_for(lambda: self.r.exists("e:1") == 0, 3.0))

    def test_dbsize_flushdb(self):
        self.assertEqual(self.r.dbsize(), 0)
        self.r.mset({f"d:{i}": i for i in range(10)})
        self.assertEqual(self.r.dbsize(), 10)
        self.assertTrue(self.r.flushdb())
        self.assertEqual(self.r.dbsize(), 0)
        self.assertEqual(self.r.keys("*"), [])
        self.r.set("d:a", 1)
        self.r.set("d:b", 2)
        self.assertEqual(self.r.dbsize(), 2)
        self.assertTrue(self.r.flushdb(asynchronous=True))
        self.assertEqual(self.r.dbsize(), 0)


class ScanIter(Base):
    def collect(self, **kw):
        keys = list(self.r.scan_iter(**kw))
        return keys

    def test_empty_store(self):
        self.assertEqual(self.collect(), [])
        self.assertEqual(self.collect(match="*", count=10), [])

    def test_three_keys(self):
        self.r.mset({"sc:1": "a", "sc:2": "b", "sc:3": "c"})
        keys = self.collect()
        self.assertEqual(sorted(keys), ["sc:1", "sc:2", "sc:3"])
        self.assertEqual(len(keys), len(set(keys)))
        self.assertEqual(sorted(self.collect(match="sc:[12]", count=1)), ["sc:1", "sc:2"])
        self.assertEqual(self.collect(match="nomatch*", count=2), [])

    def test_five_thousand_keys(self):
        want = {f"big:{i:05d}" for i in range(5000)}
        pipe = self.r.pipeline(transaction=False)
        for k in sorted(want):
            pipe.set(k, "v")
        self.assertTrue(all(pipe.execute()))
        self.r.mset({f"other:{i}": "x" for i in range(100)})
        got = self.collect(match="big:*", count=100)
        self.assertEqual(len(got), len(set(got)), "SCAN returned a key twice")
        self.assertEqual(set(got), want)
        everything = self.collect(count=1000)
        self.assertEqual(len(everything), 5100)
        self.assertEqual(self.r.dbsize(), 5100)


class Pipelines(Base):
    def test_non_transactional_pipeline(self):
        pipe = self.r.pipeline(transaction=False)
        pipe.set("p:a", "1").incr("p:a").get("p:a").mget("p:a", "p:b").delete("p:a").exists("p:a")
        self.assertEqual(pipe.execute(), [True, 2, "2", ["2", None], 1, 0])

    def test_pipeline_errors_are_per_command(self):
        self.r.set("p:s", "text")
        pipe = self.r.pipeline(transaction=False)
        pipe.incr("p:s").set("p:after", "ok").get("p:after")
        res = pipe.execute(raise_on_error=False)
        self.assertIsInstance(res[0], redis.ResponseError)
        self.assertEqual(res[1:], [True, "ok"])

    def test_long_pipeline(self):
        pipe = self.r.pipeline(transaction=False)
        for i in range(2000):
            pipe.incr("p:counter")
        res = pipe.execute()
        self.assertEqual(res, list(range(1, 2001)))


class PubSub(Base):
    def next_message(self, p, timeout_s=5.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = p.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if m is not None:
                return m
        return None

    def test_subscribe_publish(self):
        sub = client()
        p = sub.pubsub()
        p.subscribe("news")
        m = p.get_message(timeout=5)
        self.assertEqual(m["type"], "subscribe")
        self.assertEqual(m["channel"], "news")
        # Receivers counted over both workers once the subscription is in the table.
        self.assertTrue(wait_for(lambda: self.r.pubsub_numsub("news") == [("news", 1)]))
        self.assertEqual(self.r.publish("news", "hello"), 1)
        m = self.next_message(p)
        self.assertIsNotNone(m, "no message within 5 s")
        self.assertEqual((m["type"], m["channel"], m["data"]), ("message", "news", "hello"))
        self.assertEqual(self.r.publish("other", "x"), 0)
        p.unsubscribe("news")
        p.close()
        sub.close()

    def test_many_subscribers_on_both_workers(self):
        subs = [client().pubsub() for _ in range(6)]
        for p in subs:
            p.subscribe("fan")
            self.assertEqual(p.get_message(timeout=5)["type"], "subscribe")
        self.assertTrue(wait_for(lambda: self.r.pubsub_numsub("fan") == [("fan", 6)]))
        self.assertEqual(self.r.publish("fan", "all"), 6)
        for p in subs:
            m = self.next_message(p)
            self.assertIsNotNone(m)
            self.assertEqual(m["data"], "all")
            p.close()

    def test_psubscribe(self):
        p = client().pubsub()
        p.psubscribe("ev.*")
        m = p.get_message(timeout=5)
        self.assertEqual((m["type"], m["channel"]), ("psubscribe", "ev.*"))
        self.assertTrue(wait_for(lambda: self.r.pubsub_numpat() == 1))
        self.assertEqual(self.r.publish("ev.login", "u1"), 1)
        self.assertEqual(self.r.publish("nope.login", "u1"), 0)
        m = self.next_message(p)
        self.assertIsNotNone(m)
        self.assertEqual((m["type"], m["pattern"], m["channel"], m["data"]),
                         ("pmessage", "ev.*", "ev.login", "u1"))
        p.close()

    def test_run_in_thread_handler(self):
        got = []
        p = client().pubsub()
        p.subscribe(**{"cb": lambda m: got.append(m["data"])})
        t = p.run_in_thread(sleep_time=0.05, daemon=True)
        try:
            self.assertTrue(wait_for(lambda: self.r.pubsub_numsub("cb") == [("cb", 1)]))
            for i in range(3):
                self.r.publish("cb", f"m{i}")
            self.assertTrue(wait_for(lambda: len(got) >= 3))
            self.assertEqual(got, ["m0", "m1", "m2"])
        finally:
            t.stop()
            t.join(5)
            p.close()


class Clients(Base):
    def test_setname_getname_id(self):
        self.assertIsNone(self.r.client_getname())
        self.assertTrue(self.r.client_setname("compat-py"))
        self.assertEqual(self.r.client_getname(), "compat-py")
        other = client()
        a, b = self.r.client_id(), other.client_id()
        self.assertIsInstance(a, int)
        self.assertNotEqual(a, b)
        self.assertEqual(self.r.client_id(), a)  # stable on one connection
        with self.assertRaises(redis.ResponseError):
            self.r.client_setname("has space")
        other.close()

    def test_client_name_argument(self):
        named = client(client_name="born-named")
        self.assertEqual(named.client_getname(), "born-named")
        named.close()

    def test_ping_echo(self):
        self.assertTrue(self.r.ping())
        self.assertEqual(self.r.echo("hi there"), "hi there")


class Info(Base):
    def test_info_parses(self):
        self.r.set("i:1", "x")
        info = self.r.info()
        self.assertIsInstance(info, dict)
        self.assertIn("redis_version", info)
        self.assertIsInstance(info["connected_clients"], int)
        self.assertGreaterEqual(info["connected_clients"], 1)
        self.assertEqual(info["db0"]["keys"], 1)

    def test_info_section(self):
        info = self.r.info("server")
        self.assertIn("redis_version", info)
        self.assertNotIn("connected_clients", info)


@unittest.skipUnless(AUTH_PORT, "no password-protected server (COMPAT_AUTH_PORT)")
class Auth(unittest.TestCase):
    def test_password_works(self):
        r = client(port=AUTH_PORT, password=PASSWORD)
        self.assertTrue(r.set("auth:k", "v"))
        self.assertEqual(r.get("auth:k"), "v")
        r.close()

    def test_no_password_is_refused(self):
        r = client(port=AUTH_PORT)
        # redis-py maps "-NOAUTH Authentication required." to AuthenticationError.
        with self.assertRaises(redis.AuthenticationError) as e:
            r.get("auth:k")
        self.assertEqual(str(e.exception), "Authentication required.")
        r.close()

    def test_wrong_password_is_refused(self):
        # Redis 7's reply, which redis-py 4.3 raises as a plain ResponseError.
        r = client(port=AUTH_PORT, password="wrong-password")
        with self.assertRaises(redis.ResponseError) as e:
            r.ping()
        self.assertTrue(str(e.exception).startswith("WRONGPASS"), str(e.exception))
        r.close()

    def test_auth_command_later(self):
        r = client(port=AUTH_PORT, single_connection_client=True)
        with self.assertRaises(redis.AuthenticationError):
            r.get("auth:k")
        self.assertTrue(r.execute_command("AUTH", PASSWORD))
        self.assertTrue(r.ping())
        r.close()


if __name__ == "__main__":
    sys.exit(pytap.main())
