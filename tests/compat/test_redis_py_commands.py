#!/usr/bin/python3
# tests/compat/test_redis_py_commands.py: redis-py over the string, keyspace
# and bit commands, transactions (MULTI/EXEC, WATCH, the transaction helper),
# INFO as redis-py parses it, and DBSIZE not counting an expired key.
# Run: PREFORKD_BIN=build/preforkd tests/compat/run.py -- /usr/bin/python3 tests/compat/test_redis_py_commands.py
import sys
import time
import unittest

import redis

from test_redis_py import Base, client, wait_for  # noqa: F401
import pytap


class NewStrings(Base):
    def test_append(self):
        self.assertEqual(self.r.append("a:x", "Hello"), 5)
        self.assertEqual(self.r.append("a:x", " World"), 11)
        self.assertEqual(self.r.get("a:x"), "Hello World")

    def test_getdel(self):
        self.r.set("g:1", "v")
        self.assertEqual(self.r.getdel("g:1"), "v")
        self.assertEqual(self.r.exists("g:1"), 0)
        self.assertIsNone(self.r.getdel("g:1"))

    def test_getex(self):
        self.r.set("g:2", "v")
        self.assertEqual(self.r.getex("g:2", ex=100), "v")
        self.assertTrue(95 <= self.r.ttl("g:2") <= 100)
        self.assertEqual(self.r.getex("g:2", persist=True), "v")
        self.assertEqual(self.r.ttl("g:2"), -1)

    def test_getset(self):
        self.assertIsNone(self.r.getset("g:3", "a"))
        self.assertEqual(self.r.getset("g:3", "b"), "a")

    def test_getrange_setrange(self):
        self.r.set("r:1", "Hello World")
        self.assertEqual(self.r.getrange("r:1", 0, 4), "Hello")
        self.assertEqual(self.r.getrange("r:1", -5, -1), "World")
        self.assertEqual(self.r.setrange("r:1", 6, "Redis"), 11)
        self.assertEqual(self.r.get("r:1"), "Hello Redis")
        self.assertEqual(self.r.setrange("r:2", 3, "x"), 4)
        self.assertEqual(self.r.get("r:2"), "\x00\x00\x00x")

    def test_incrbyfloat(self):
        self.r.set("f:1", "10.5")
        self.assertAlmostEqual(self.r.incrbyfloat("f:1", 0.1), 10.6)
        self.assertEqual(self.r.get("f:1"), "10.6")

    def test_msetnx(self):
        self.assertTrue(self.r.msetnx({"x:1": "a", "x:2": "b"}))
        self.assertFalse(self.r.msetnx({"x:2": "c", "x:3": "d"}))
        self.assertEqual(self.r.mget("x:1", "x:2", "x:3"), ["a", "b", None])

    def test_rename_copy(self):
        self.r.set("rn:a", "v", ex=100)
        self.assertTrue(self.r.rename("rn:a", "rn:b"))
        self.assertEqual(self.r.get("rn:b"), "v")
        self.assertTrue(90 <= self.r.ttl("rn:b") <= 100)
        self.assertTrue(self.r.copy("rn:b", "rn:c"))
        self.assertEqual(self.r.get("rn:c"), "v")
        self.assertFalse(self.r.copy("rn:b", "rn:c"))
        with self.assertRaises(redis.ResponseError):
            self.r.rename("rn:none", "rn:x")

    def test_bits(self):
        self.assertEqual(self.r.setbit("b:1", 7, 1), 0)
        self.assertEqual(self.r.getbit("b:1", 7), 1)
        self.assertEqual(self.r.get("b:1"), "\x01")
        self.r.set("b:2", "foobar")
        self.assertEqual(self.r.bitcount("b:2"), 26)
        self.assertEqual(self.r.bitpos("b:1", 1), 7)


class Transactions(Base):
    def test_multi_exec(self):
        pipe = self.r.pipeline(transaction=True)
        pipe.set("t:a", "1").incr("t:a").get("t:a")
        self.assertEqual(pipe.execute(), [True, 2, "2"])

    def test_watch_aborts_on_change(self):
        other = client()
        with self.r.pipeline() as pipe:
            pipe.watch("t:w")
            other.set("t:w", "changed")
            pipe.multi()
            pipe.set("t:w", "mine")
            with self.assertRaises(redis.WatchError):
                pipe.execute()
        self.assertEqual(self.r.get("t:w"), "changed")
        other.close()

    def test_transaction_helper(self):
        self.r.set("t:c", "5")

        def double(pipe):
            v = int(pipe.get("t:c"))
            pipe.multi()
            pipe.set("t:c", v * 2)

        self.r.transaction(double, "t:c")
        self.assertEqual(self.r.get("t:c"), "10")


class NewInfo(Base):
    def test_info_has_cluster_enabled(self):
        info = self.r.info()
        self.assertIn("cluster_enabled", info)
        self.assertEqual(info["cluster_enabled"], 0)

    def test_info_everything(self):
        info = self.r.info("everything")
        for k in ("redis_version", "connected_clients", "used_memory", "keyspace_hits"):
            self.assertIn(k, info)


class DbSize(Base):
    def test_dbsize_does_not_count_expired_keys(self):
        # FLUSHDB, two SETs, and a key whose TTL already ran out: KEYS says 2,
        # DBSIZE must too (Redis' active expiry reclaims within ~100 ms).
        self.r.set("a", "1")
        self.r.set("b", "2")
        self.r.set("t", "v", px=1)
        time.sleep(0.01)
        self.assertEqual(sorted(self.r.keys("*")), ["a", "b"])
        self.assertTrue(wait_for(lambda: self.r.dbsize() == 2, 1.0),
                        f"DBSIZE {self.r.dbsize()} a second after the key expired")


if __name__ == "__main__":
    sys.exit(pytap.main())
