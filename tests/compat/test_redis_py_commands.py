#!/usr/bin/python3
# tests/compat/test_redis_py_commands.py: redis-py over the string, keyspace
# and bit commands, DUMP/RESTORE, transactions (MULTI/EXEC, WATCH, the
# transaction helper), INFO as redis-py parses it, and DBSIZE not counting an
# expired key.
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


class DumpRestore(Base):
    # From redis-server 7.0.15: `SET short hello`, then `redis-cli --no-raw
    # DUMP short` printed "\x00\x05hello\n\x00cr\xdfve4 \n"; `HSET h f v`,
    # then DUMP h (a listpack hash, RDB type 16).
    HELLO = bytes.fromhex("000568656c6c6f0a006372df766534200a")
    HASH = bytes.fromhex("100d0d0000000200816602817602ff0a0020f13d442354089d")

    def setUp(self):
        super().setUp()
        self.b = client(decode_responses=False)

    def tearDown(self):
        self.b.close()
        super().tearDown()

    def test_dump_missing_is_none(self):
        self.assertIsNone(self.b.dump("d:none"))

    def test_round_trip_with_ttl(self):
        blob = bytes(range(256)) * 40  # compressible: LZF in the payload
        self.b.set("d:src", blob, px=600000)
        payload = self.b.dump("d:src")
        self.assertEqual(payload[:2], b"\x00\xc3")
        self.assertTrue(self.b.restore("d:dst", self.b.pttl("d:src"), payload))
        self.assertEqual(self.b.get("d:dst"), blob)
        self.assertTrue(590000 <= self.b.pttl("d:dst") <= 600000)
        self.assertEqual(self.b.dump("d:dst"), payload)

    def test_redis_payload_restores_and_dumps_back(self):
        self.assertTrue(self.b.restore("d:h", 0, self.HELLO))
        self.assertEqual(self.b.get("d:h"), b"hello")
        self.assertEqual(self.b.ttl("d:h"), -1)
        self.assertEqual(self.b.dump("d:h"), self.HELLO)

    def test_busykey_replace_absttl_idletime_frequency(self):
        self.b.set("d:k", "old")
        with self.assertRaisesRegex(redis.ResponseError, "^BUSYKEY Target key name already exists"):
            self.b.restore("d:k", 0, self.HELLO)
        self.assertTrue(self.b.restore("d:k", 0, self.HELLO, replace=True, idletime=10))
        self.assertEqual(self.b.get("d:k"), b"hello")
        at = int(time.time() * 1000) + 100000
        self.assertTrue(self.b.restore("d:a", at, self.HELLO, absttl=True, frequency=5))
        self.assertEqual(self.b.pexpiretime("d:a"), at)
        # An absolute deadline already past: OK, and no key.
        self.assertTrue(self.b.restore("d:p", 1, self.HELLO, absttl=True))
        self.assertEqual(self.b.exists("d:p"), 0)

    def test_errors(self):
        with self.assertRaisesRegex(redis.ResponseError, "DUMP payload version or checksum are wrong"):
            self.b.restore("d:e", 0, self.HELLO[:-1] + b"\x00")
        with self.assertRaisesRegex(redis.ResponseError, "Invalid TTL value, must be >= 0"):
            self.b.restore("d:e", -1, self.HELLO)
        with self.assertRaisesRegex(redis.ResponseError, "holds a hash .*strings only"):
            self.b.restore("d:e", 0, self.HASH)
        self.assertEqual(self.b.exists("d:e"), 0)


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
