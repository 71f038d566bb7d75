"""pylibmc (libmemcached) against geecached, binary and ASCII protocols.

One server: set/get/get_multi of 500 keys, add/replace, append/prepend,
incr/decr (floor at 0), gets/cas, touch, delete_multi, large values (512 KiB,
just under -I, over -I refused without losing the connection), get_stats.
Two servers with ketama hashing: the keys spread over both, each server's own
curr_items is > 0 and they sum to the number of keys.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcutil as g  # noqa: E402

N = 500
ITEM_MAX = 1 << 20  # the server's default -I


def client(servers, binary, **behaviors):
    pylibmc = g.need_pylibmc()
    b = {"cas": True, "tcp_nodelay": True}
    b.update(behaviors)
    return pylibmc.Client([s.addr for s in servers], binary=binary, behaviors=b)


def fails(fn, *args):
    """A write that the server refused: pylibmc returns False, or raises
    NotFound / NotStored depending on protocol and command."""
    pylibmc = g.need_pylibmc()
    try:
        return fn(*args) is False
    except (pylibmc.NotFound, pylibmc.DataExists):
        return True


class PylibmcOne(g.ServerTest):
    def run_mode(self, binary):
        pylibmc = g.need_pylibmc()
        srv = self.server("-t", "2")
        mc = client([srv], binary)
        mode = "binary" if binary else "ascii"

        # set / get / get_multi of 500 keys
        data = {"key:%s:%d" % (mode, i): ("value-%d-" % i) * (1 + i % 7) for i in range(N)}
        for k, v in data.items():
            self.assertTrue(mc.set(k, v))
        self.assertEqual(mc.get("key:%s:7" % mode), data["key:%s:7" % mode])
        self.assertIsNone(mc.get("nokey"))
        got = mc.get_multi(list(data) + ["nokey1", "nokey2"])
        self.assertEqual(got, data)
        self.assertEqual(mc.set_multi({"m1": "a", "m2": b"\x00\xffbin"}), [])
        self.assertEqual(mc.get_multi(["m1", "m2"]), {"m1": "a", "m2": b"\x00\xffbin"})

        # add fails on an existing key, replace on a missing one
        self.assertTrue(fails(mc.add, "m1", "other"))
        self.assertEqual(mc.get("m1"), "a")
        self.assertTrue(mc.add("added", "x"))
        self.assertEqual(mc.get("added"), "x")
        self.assertTrue(fails(mc.replace, "missing", "y"))
        self.assertIsNone(mc.get("missing"))
        self.assertTrue(mc.replace("added", "y"))
        self.assertEqual(mc.get("added"), "y")

        # append / prepend (and on a missing key: refused, nothing created)
        self.assertTrue(mc.append("added", "->"))
        self.assertTrue(mc.prepend("added", "<-"))
        self.assertEqual(mc.get("added"), "<-y->")
        self.assertTrue(fails(mc.append, "missing", "z"))
        self.assertIsNone(mc.get("missing"))

        # incr / decr, decr floors at 0, missing key raises
        mc.set("n", "10")
        self.assertEqual(mc.incr("n", 5), 15)
        self.assertEqual(mc.decr("n", 3), 12)
        self.assertEqual(mc.decr("n", 100), 0)
        self.assertEqual(mc.incr("n"), 1)
        self.assertEqual(int(mc.get("n")), 1)
        with self.assertRaises(pylibmc.NotFound):
            mc.incr("missing", 1)
        mc.set("nan", "abc")
        with self.assertRaises(pylibmc.Error):
            mc.incr("nan", 1)

        # gets + cas: success, then a mismatch with the old cas
        mc.set("c", "one")
        v, cas = mc.gets("c")
        self.assertEqual(v, "one")
        self.assertTrue(cas)
        self.assertTrue(mc.cas("c", "two", cas))
        self.assertEqual(mc.get("c"), "two")
        self.assertFalse(mc.cas("c", "three", cas))
        self.assertEqual(mc.get("c"), "two")
        v2, cas2 = mc.gets("c")
        self.assertNotEqual(cas2, cas)

        # touch: hit and miss; the new TTL is checked at the end (one wait)
        mc.set("t_long", "x", time=1)
        mc.set("t_short", "x")
        self.assertTrue(mc.touch("t_long", 100))
        self.assertTrue(mc.touch("t_short", 1))
        self.assertFalse(mc.touch("missing", 10))
        touched_at = time.monotonic()

        # delete_multi
        keys = list(data)[:100]
        self.assertTrue(mc.delete_multi(keys))
        self.assertEqual(mc.get_multi(keys), {})
        self.assertEqual(len(mc.get_multi(list(data))), N - 100)
        self.assertFalse(mc.delete("missing"))

        # large values: 512 KiB, just under -I, over -I refused with the
        # connection kept (the server's connection count does not move)
        for size in (512 * 1024, ITEM_MAX - 512):
            blob = os.urandom(size)
            self.assertTrue(mc.set("big%d" % size, blob))
            self.assertEqual(mc.get("big%d" % size), blob)
        conns = int(srv.stats()["total_connections"])
        with self.assertRaises(pylibmc.Error):
            mc.set("big_over", os.urandom(ITEM_MAX + 1024))
        self.assertIsNone(mc.get("big_over"))
        self.assertEqual(mc.get("c"), "two")
        st = srv.stats()
        self.assertEqual(int(st["total_connections"]), conns + 1,  # +1: the stats one
                         "the client had to reconnect after the refused value")

        # get_stats: sane numbers
        (name, stats), = mc.get_stats()
        self.assertIn(srv.addr, name.decode() if isinstance(name, bytes) else name)
        stats = {(k.decode() if isinstance(k, bytes) else k):
                 (v.decode() if isinstance(v, bytes) else v) for k, v in stats.items()}
        items = N - 100 + 2 + 1 + 1 + 1 + 1 + 2 + 2   # data, m1 m2, added, n, nan, c,
        #                                                 t_*, big*
        self.assertEqual(int(stats["curr_items"]), items)
        self.assertGreater(int(stats["cmd_get"]), 2 * N)
        self.assertGreater(int(stats["get_hits"]), N)
        self.assertGreater(int(stats["get_misses"]), 0)
        self.assertGreaterEqual(int(stats["cmd_set"]), N + 10)
        self.assertEqual(int(stats["pid"]), srv.pid)
        self.assertGreater(int(stats["curr_connections"]), 0)

        # the touched TTLs took effect
        time.sleep(max(0, 2.2 - (time.monotonic() - touched_at)))
        self.assertIsNone(mc.get("t_short"))
        self.assertEqual(mc.get("t_long"), "x")
        mc.disconnect_all()

    def test_binary(self):
        self.run_mode(True)

    def test_ascii(self):
        self.run_mode(False)


class PylibmcKetama(g.ServerTest):
    def run_mode(self, binary):
        a = self.server("-t", "1")
        b = self.server("-t", "1")
        mc = client([a, b], binary, ketama=True)
        data = {"spread:%d" % i: "v%d" % i for i in range(N)}
        for k, v in data.items():
            self.assertTrue(mc.set(k, v))
        self.assertEqual(mc.get_multi(list(data)), data)
        na = int(a.stats()["curr_items"])
        nb = int(b.stats()["curr_items"])
        self.assertGreater(na, 0)
        self.assertGreater(nb, 0)
        self.assertEqual(na + nb, N)
        # ketama with equal weights: neither gets almost everything
        self.assertGreater(min(na, nb), N // 10, (na, nb))
        # each key is on exactly one server, the one the client picked
        on_a = set(k for k in data if a_has(a, k))
        self.assertEqual(len(on_a), na)
        self.assertTrue(mc.delete_multi(list(data)))
        self.assertEqual(int(a.stats()["curr_items"]) + int(b.stats()["curr_items"]), 0)
        mc.disconnect_all()

    def test_binary(self):
        self.run_mode(True)

    def test_ascii(self):
        self.run_mode(False)


def a_has(srv, key):
    with g.connect(srv.port) as s:
        return g.text_cmd(s, b"get " + key.encode() + b"\r\n", b"END\r\n") != b"END\r\n"


if __name__ == "__main__":
    g.main()
