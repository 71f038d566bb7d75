"""`stats items` and `stats slabs` by size class (issue #17; memcached's
t/issue_163.t, issue_42.t and issue_22.t read these rows).

geecached has no slab classes; it counts items by the class memcached 1.6
would store them in (cache.h, "Size classes"). Checked here:

- the same items, stored in memcached 1.6.18 and in geecached, give the
  same `items:N:number` and `items:N:mem_requested` rows, and the same
  `N:chunk_size` and `N:used_chunks` for the classes that hold items —
  at the class boundaries (an item of exactly 96 bytes and one of 97),
  with and without flags, after deletes, replaces and appends;
- per-class evictions add up to `evictions`, and `stats reset` zeroes them
  while the gauges stay;
- an expired item replaced by a SET counts as reclaimed in its class;
- under -M, a refused SET counts in its class's outofmemory.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcutil as g  # noqa: E402
from test_memcached_flags import WithMemcached  # noqa: E402


def class_rows(port):
    """(items rows: number and mem_requested; slabs rows: chunk_size and
    used_chunks of the classes that hold items)."""
    items = {k: v for k, v in g.text_stats(port, "items").items()
             if k.split(":")[2] in ("number", "mem_requested")}
    held = {k.split(":")[1] for k in items}
    slabs = {k: v for k, v in g.text_stats(port, "slabs").items()
             if ":" in k and k.split(":")[0] in held and
             k.split(":")[1] in ("chunk_size", "used_chunks")}
    return items, slabs


def store(s, line, value):
    s.sendall(line + b"\r\n" + value + b"\r\n")
    return g.recv_until(s, b"\r\n")


class SameAsMemcached(WithMemcached):
    # memcached's item size: 48 + key + 1 + value + 2 + 8 (+ 4 with flags);
    # key "kN" is 2 bytes, so a 35-byte value is exactly 96 (class 1) and
    # 36 is 97 (class 2). The largest stays under 512 KiB (memcached
    # chunks larger items; geecached counts them in the last class).
    ITEMS = [(0, 35), (0, 36), (1, 31), (1, 32), (0, 1000), (5, 66560),
             (0, 400000), (0, 20000), (7, 4000), (0, 0)]

    def test_rows_match(self):
        gc = self.server()
        mc = self.memcached()
        got = []
        for port in (mc, gc.port):
            rows = []
            with g.connect(port) as s:
                for i, (fl, vl) in enumerate(self.ITEMS):
                    self.assertEqual(store(s, b"set k%d %d 0 %d" % (i, fl, vl), b"x" * vl),
                                     b"STORED\r\n")
                rows.append(class_rows(port))
                self.assertEqual(g.text_cmd(s, b"delete k7\r\n"), b"DELETED\r\n")
                self.assertEqual(store(s, b"set k0 0 0 36", b"y" * 36), b"STORED\r\n")
                self.assertEqual(store(s, b"append k4 0 0 300", b"z" * 300), b"STORED\r\n")
                self.assertEqual(store(s, b"replace k8 0 0 10", b"w" * 10), b"STORED\r\n")
                rows.append(class_rows(port))
            got.append(rows)
        self.assertEqual(got[0], got[1], "memcached (first) vs geecached")
        # what memcached answered, for a reader: k0 and k2 of 96 bytes and
        # the empty k9 (61) in class 1
        self.assertEqual(got[1][0][0]["items:1:number"], "3")
        self.assertEqual(got[1][0][0]["items:1:mem_requested"], "253")
        self.assertEqual(got[1][0][1]["31:chunk_size"], "82792")


class Counters(g.ServerTest):
    def test_evictions_by_class_and_reset(self):
        srv = self.server("-m", "4")
        v = b"B" * 66560
        with g.connect(srv.port) as s:
            for i in range(120):
                self.assertEqual(store(s, b"set key%d 0 0 %d" % (i, len(v)), v), b"STORED\r\n")
            st = srv.stats()
            items = srv.stats("items")
            self.assertGreater(int(st["evictions"]), 0)
            # every item of 66,623 bytes is in class 31
            self.assertEqual(items["items:31:evicted"], st["evictions"])
            self.assertEqual(items["items:31:number"], st["curr_items"])
            self.assertEqual(items["items:31:evicted_unfetched"], st["evictions"])
            self.assertEqual(g.text_cmd(s, b"stats reset\r\n"), b"RESET\r\n")
            after = srv.stats("items")
            self.assertEqual(after["items:31:evicted"], "0")
            self.assertEqual(after["items:31:number"], items["items:31:number"])
            # 10 more writes in steady state: each evicts what it replaces
            for i in range(120, 130):
                self.assertEqual(store(s, b"set key%d 0 0 %d" % (i, len(v)), v), b"STORED\r\n")
            self.assertEqual(int(srv.stats("items")["items:31:evicted"]),
                             int(srv.stats()["evictions"]))
            self.assertGreaterEqual(int(srv.stats()["evictions"]), 9)

    def test_reclaimed(self):
        # t/issue_163.t: an expired item's class counts the reclaim
        srv = self.server()
        with g.connect(srv.port) as s:
            self.assertEqual(store(s, b"set key 0 1 66560", b"A" * 66560), b"STORED\r\n")
            req = srv.stats("items")["items:31:mem_requested"]
            time.sleep(2.2)
            self.assertEqual(store(s, b"set key 0 0 66570", b"B" * 66570), b"STORED\r\n")
            items = srv.stats("items")
            self.assertEqual((items["items:31:reclaimed"], items["items:31:expired_unfetched"],
                              items["items:31:number"]), ("1", "1", "1"))
            self.assertEqual(g.text_cmd(s, b"delete key\r\n"), b"DELETED\r\n")
            self.assertNotIn("items:31:number", srv.stats("items"))  # empty: not listed
            self.assertEqual(store(s, b"set key 0 0 66560", b"A" * 66560), b"STORED\r\n")
            self.assertEqual(srv.stats("items")["items:31:mem_requested"], req)

    def test_outofmemory(self):
        srv = self.server("-m", "2", "-M")
        v = b"C" * 3000  # 3,063 bytes: class 17
        with g.connect(srv.port) as s:
            refused = 0
            for i in range(2000):
                r = store(s, b"set k%d 0 0 %d" % (i, len(v)), v)
                if r != b"STORED\r\n":
                    self.assertEqual(r, b"SERVER_ERROR out of memory storing object\r\n")
                    refused += 1
            self.assertGreater(refused, 0)
            items = srv.stats("items")
            self.assertEqual(items["items:17:outofmemory"], str(refused))
            self.assertEqual(items["items:17:evicted"], "0")
            self.assertEqual(items["items:17:number"], srv.stats()["curr_items"])


if __name__ == "__main__":
    g.main()
