"""memcached's flags that change what the server does (issue #17), each as
memcached 1.6.18 has it: golden replies, and where a reply can be compared
the same requests to a memcached started with the same flag.

- -R N (reqs_per_event): a connection runs at most N requests, then yields
  (conn_yields) and runs the rest at its loop's next turn; the default 20
  yields exactly where memcached does; replies stay in order across yields.
- -B ascii|binary|auto: the protocol of every connection.
- -M: a full store refuses writes (SERVER_ERROR out of memory storing
  object) and keeps every item; without it the same writes evict.
- -C: no CAS (cas 0 shown, compares answered as memcached -C answers).
- -F: flush_all refused (CLIENT_ERROR flush_all not allowed).
- -I: up to 256m (half of -m at most), bad values in memcached's words.
- -t: auto (one loop per CPU) is the default; 0 is refused, as memcached.
- -d, -P: the command returns once the server listens; the pid file holds
  the server's pid and a clean stop removes it.
- -A: the text command `shutdown [graceful]` stops the server (exit 0);
  without -A it is refused in memcached's words, as is a bad mode.
- -b: the listen backlog, shown as tcp_backlog.
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcutil as g  # noqa: E402
from test_differential import run_script  # noqa: E402

B = g.bin_req
HIT = b"VALUE k 0 1\r\nv\r\nEND\r\n"


class WithMemcached(g.ServerTest):
    """ServerTest that can also start memcached 1.6.18 with flags."""

    def setUp(self):
        super().setUp()
        self._mc = []

    def tearDown(self):
        for p in self._mc:
            p.terminate()
            p.wait(10)
        super().tearDown()

    def memcached(self, *flags):
        """A memcached with these flags on a free loopback port: its port."""
        exe = g.need_tool("memcached")
        out = subprocess.run([exe, "-V"], capture_output=True, text=True).stdout
        if not out.startswith("memcached 1.6.18"):
            raise AssertionError("written against memcached 1.6.18, found %r" % out)
        for attempt in range(5):
            port = g.free_port()
            argv = [exe, "-p", str(port), "-l", "127.0.0.1", "-U", "0"] + list(flags)
            if os.geteuid() == 0:
                argv += ["-u", "nobody"]
            p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            g._procs.append(p)
            try:
                g.wait_port(port, 10, p)
            except AssertionError:
                p.kill()
                p.wait()
                continue
            self._mc.append(p)
            return port
        raise AssertionError("memcached %s did not start" % " ".join(flags))

    def same(self, flags, proto, steps):
        """The steps' answers from geecached and from memcached, both
        started with flags, are equal (test_differential's run_script)."""
        gc = self.server(*flags)
        mc = self.memcached(*flags)
        a = run_script(mc, proto, steps)
        b = run_script(gc.port, proto, steps)
        self.assertEqual(a.out, b.out, "memcached (first) vs geecached, flags %s" % (flags,))
        return b


def recv_all(s, timeout=5.0):
    """Everything until EOF, or until nothing comes for timeout; (bytes,
    closed)."""
    s.settimeout(timeout * g.SLOW)
    got = b""
    try:
        while True:
            b = s.recv(1 << 16)
            if not b:
                return got, True
            got += b
    except socket.timeout:
        return got, False
    except ConnectionResetError:
        return got, True


def bin_stats(port, group):
    with g.connect(port) as s:
        s.sendall(B(0x10, group))
        st = {}
        while True:
            r = g.bin_recv(s)
            if not r.key:
                return st
            st[r.key.decode()] = r.value.decode()


class ReqsPerEvent(WithMemcached):
    def yields_by_pipeline(self, port, stats):
        """conn_yields added by pipelines of n GETs sent in one write."""
        out = []
        with g.connect(port) as s:
            self.assertEqual(g.text_cmd(s, b"set k 0 0 1\r\nv\r\n"), b"STORED\r\n")
            for n in (1, 16, 19, 20, 21, 40, 100):
                y0 = int(stats()["conn_yields"])
                s.sendall(b"get k\r\n" * n)
                self.assertEqual(g.recv_exact(s, len(HIT) * n), HIT * n)
                out.append((n, int(stats()["conn_yields"]) - y0))
        return out

    def test_default_yields_where_memcached_does(self):
        srv = self.server("-t", "1")
        self.assertEqual(srv.stats("settings")["reqs_per_event"], "20")
        got = self.yields_by_pipeline(srv.port, srv.stats)
        self.assertEqual(got, [(1, 0), (16, 0), (19, 0), (20, 0), (21, 1), (40, 1),
                               (100, 4)])
        mc = self.memcached("-t", "1")
        self.assertEqual(self.yields_by_pipeline(mc, lambda: g.text_stats(mc)), got)

    def test_r1_runs_one_request_per_turn(self):
        # memcached's t/issue_61.t: six SETs in one write, one per turn
        srv = self.server("-R", "1", "-t", "1")
        y0 = int(srv.stats()["conn_yields"])
        with g.connect(srv.port) as s:
            s.sendall(b"set foobar 0 0 5\r\nBubba\r\n" * 6)
            self.assertEqual(g.recv_exact(s, 8 * 6), b"STORED\r\n" * 6)
        self.assertEqual(int(srv.stats()["conn_yields"]) - y0, 5)
        self.assertEqual(srv.stats("settings")["reqs_per_event"], "1")

    def test_replies_stay_in_order_across_yields(self):
        # -R 2: a pipeline of every kind of request (errors too, a
        # partial request at the end of the write, completed later), and
        # another connection served meanwhile
        srv = self.server("-R", "2", "-t", "1")
        reqs, want = [], []
        for i in range(40):
            reqs.append(b"set k%d 0 0 %d\r\n%s\r\n" % (i, len(str(i)), str(i).encode()))
            want.append(b"STORED\r\n")
            reqs.append(b"get k%d nokey\r\n" % i)
            want.append(b"VALUE k%d 0 %d\r\n%s\r\nEND\r\n" % (i, len(str(i)), str(i).encode()))
            reqs.append(b"bogus\r\n")
            want.append(b"ERROR\r\n")
            reqs.append(b"incr k%d 1\r\n" % i)
            want.append(b"%d\r\n" % (i + 1))
            reqs.append(b"mg k%d v\r\n" % i)
            v = str(i + 1).encode()
            want.append(b"VA %d\r\n%s\r\n" % (len(v), v))
        with g.connect(srv.port) as s, g.connect(srv.port) as other:
            data = b"".join(reqs) + b"set tail 0 0 4\r\nta"
            s.sendall(data)
            self.assertEqual(g.text_cmd(other, b"mn\r\n"), b"MN\r\n")
            got = g.recv_exact(s, len(b"".join(want)))
            self.assertEqual(got, b"".join(want))
            s.sendall(b"il\r\nget tail\r\nget k1\r\nquit\r\nget k2\r\n")
            got, closed = recv_all(s)
            self.assertEqual(got, b"STORED\r\nVALUE tail 0 4\r\ntail\r\nEND\r\n"
                             b"VALUE k1 0 1\r\n2\r\nEND\r\n")
            self.assertTrue(closed, "quit did not close")
        self.assertGreaterEqual(int(srv.stats()["conn_yields"]), 90)

    def test_a_long_pipeline_is_not_closed(self):
        # a budget yield with much input left, on io_uring, piled up what
        # its receive had in flight until the input bound (-I 1k + 64 KiB)
        # closed the connection: 3 in 12 runs of this, before
        # SRV_YIELD_IN_MAX
        for backend in ("epoll", "io_uring"):
            for rnd in range(3):
                with self.subTest(backend=backend, round=rnd):
                    srv = self.server("-t", "2", "-I", "1k", "--backend", backend)
                    with g.connect(srv.port) as s:
                        for i in range(3000):
                            s.sendall(b"set s%d 0 0 100 noreply\r\n%s\r\n" % (i, b"s" * 100))
                        self.assertEqual(g.text_cmd(s, b"mn\r\n"), b"MN\r\n")
                    self.assertEqual(srv.stats()["curr_items"], "3000")
                    srv.stop()

    def test_binary_pipeline_with_budget(self):
        # quiet GETs and a NOOP, 60 requests with -R 7: every hit, in order
        srv = self.server("-R", "7", "-t", "1")
        with g.connect(srv.port) as s:
            s.sendall(b"".join(g.bin_set(b"b%d" % i, b"v%d" % i, opaque=i) for i in range(30)))
            self.assertEqual([g.bin_recv(s).opaque for _ in range(30)], list(range(30)))
            y0 = int(srv.stats()["conn_yields"])
            s.sendall(b"".join(B(0x09, b"b%d" % i, opaque=100 + i) for i in range(59)) +
                      B(0x0A, opaque=999))
            got = [g.bin_recv(s) for _ in range(31)]
            self.assertEqual([(r.opaque, r.value) for r in got[:30]],
                             [(100 + i, b"v%d" % i) for i in range(30)])
            self.assertEqual((got[30].opcode, got[30].opaque), (0x0A, 999))
        self.assertGreaterEqual(int(srv.stats()["conn_yields"]) - y0, 7)  # 60 by 7


class Protocol(WithMemcached):
    GARBAGE = b"Here's a bunch of garbage that doesn't look like the bin prot."

    def test_binary_only(self):
        # memcached's t/issue_50.t: text on a binary-only port closes
        # unanswered; binary works
        srv = self.server("-B", "binary")
        mc = self.memcached("-B", "binary")
        for port in (mc, srv.port):
            with g.connect(port) as s:
                s.sendall(B(0x0A, opaque=7))
                r = g.bin_recv(s)
                self.assertEqual((r.magic, r.opcode, r.status, r.opaque), (0x81, 0x0A, 0, 7))
            with g.connect(port) as s:
                s.sendall(self.GARBAGE)
                self.assertEqual(recv_all(s), (b"", True))
        self.assertEqual(bin_stats(srv.port, b"settings")["binding_protocol"], "binary")

    def test_ascii_only(self):
        # a binary header is read as text: 0x0a (NOOP's opcode) ends a line
        srv = self.server("-B", "ascii")
        mc = self.memcached("-B", "ascii")
        for port in (mc, srv.port):
            with g.connect(port) as s:
                s.sendall(B(0x0A) + b"\r\n")
                self.assertEqual(g.recv_exact(s, 14), b"ERROR\r\nERROR\r\n")
                self.assertEqual(g.text_cmd(s, b"set k 0 0 1\r\nv\r\nget k\r\n", b"END\r\n"),
                                 b"STORED\r\n" + HIT)
        self.assertEqual(srv.stats("settings")["binding_protocol"], "ascii")

    def test_auto_is_the_default(self):
        srv = self.server()
        self.assertEqual(srv.stats("settings")["binding_protocol"], "auto")
        with g.connect(srv.port) as t, g.connect(srv.port) as b:
            self.assertEqual(g.text_cmd(t, b"mn\r\n"), b"MN\r\n")
            b.sendall(B(0x0A))
            self.assertEqual(g.bin_recv(b).status, 0)


class NoEvictions(g.ServerTest):
    VALUE = b"B" * 8192
    FULL = b"SERVER_ERROR out of memory storing object\r\n"

    def fill(self, s, prefix, value, limit):
        """Sets prefix0, prefix1, ... until one is refused: the stored
        keys, and the refusal."""
        for i in range(limit):
            r = g.text_cmd(s, b"set %s%d 0 0 %d\r\n%s\r\n" % (prefix, i, len(value), value))
            if r != b"STORED\r\n":
                return i, r
        self.fail("%d sets of %d bytes, none refused" % (limit, len(value)))

    def assert_all_there(self, s, prefix, n, value):
        for i in range(n):
            self.assertEqual(g.text_cmd(s, b"get %s%d\r\n" % (prefix, i), b"END\r\n"),
                             b"VALUE %s%d 0 %d\r\n%s\r\nEND\r\n" % (prefix, i, len(value), value))

    def test_full_store_refuses_and_keeps_every_item(self):
        # memcached's t/dash-M.t, and the binary answer
        srv = self.server("-M", "-m", "2", "-t", "2")
        with g.connect(srv.port) as s:
            n, r = self.fill(s, b"dash", self.VALUE, 1000)
            self.assertEqual(r, self.FULL)
            self.assertGreater(n, 150)  # about 1.7 of the 2 MiB are items
            for i in range(n + 1, n + 6):  # full is full, whatever the key
                self.assertEqual(g.text_cmd(s, b"set dash%d 0 0 8192\r\n%s\r\n"
                                            % (i, self.VALUE)), self.FULL)
            with g.connect(srv.port) as b:
                b.sendall(g.bin_set(b"bin", self.VALUE, opaque=5))
                r = g.bin_recv(b)
                self.assertEqual((r.status, r.opaque, r.value), (0x82, 5, b"Out of memory"))
            self.assert_all_there(s, b"dash", n, self.VALUE)
            st = srv.stats()
            self.assertEqual((st["evictions"], st["store_no_memory"]), ("0", "7"))
            self.assertEqual(int(st["curr_items"]), n)
            # what is wholly dead goes at once: flushed items
            self.assertEqual(g.text_cmd(s, b"flush_all\r\n"), b"OK\r\n")
            self.assertEqual(g.text_cmd(s, b"set after 0 0 8192\r\n%s\r\n" % self.VALUE),
                             b"STORED\r\n")
            n2, r = self.fill(s, b"again", self.VALUE, 1000)
            self.assertEqual((r, n2 >= n - 8), (self.FULL, True))

    def test_deleted_items_give_their_room_back(self):
        srv = self.server("-M", "-m", "2", "-t", "1")
        with g.connect(srv.port) as s:
            n, r = self.fill(s, b"d", self.VALUE, 1000)
            self.assertEqual(r, self.FULL)
            for i in range(n):
                self.assertEqual(g.text_cmd(s, b"delete d%d\r\n" % i), b"DELETED\r\n")
            n2, r = self.fill(s, b"e", self.VALUE, 1000)
            self.assertEqual(r, self.FULL)
            self.assertGreaterEqual(n2, n - 8)
            self.assert_all_there(s, b"e", n2, self.VALUE)

    def test_large_items(self):
        # items over a quarter of a segment have blocks of their own
        srv = self.server("-M", "-m", "8", "-I", "1m", "-t", "2")
        big = b"L" * (600 * 1024)
        with g.connect(srv.port) as s:
            n, r = self.fill(s, b"big", big, 100)
            self.assertEqual(r, self.FULL)
            self.assertGreaterEqual(n, 8)
            self.assert_all_there(s, b"big", n, big)
        self.assertEqual(srv.stats()["evictions"], "0")

    def test_without_M_the_same_writes_evict(self):
        srv = self.server("-m", "2", "-t", "2")
        with g.connect(srv.port) as s:
            for i in range(600):
                self.assertEqual(g.text_cmd(s, b"set dash%d 0 0 8192\r\n%s\r\n"
                                            % (i, self.VALUE)), b"STORED\r\n")
        self.assertGreater(int(srv.stats()["evictions"]), 300)


class NoCas(WithMemcached):
    def test_text_and_meta(self):
        # memcached -C: every item shows cas 0; cas compares with 0
        steps = [
            b"set k 0 0 1\r\nv\r\ngets k\r\ncas k 0 0 1 0\r\nw\r\ncas k 0 0 1 1\r\nw\r\n"
            b"cas nokey 0 0 1 1\r\nw\r\ncas nokey 0 0 1 0\r\nw\r\ngets k\r\ngats 0 k\r\n",
            b"mg k c v\r\nms k 1 c\r\nz\r\nms k 1 C0\r\nq\r\nms k 1 C5\r\nq\r\n"
            b"ms nok 1 C0\r\nq\r\nms k 1 MA C5\r\nq\r\nms k 1 ME C5\r\nq\r\n"
            b"ms nok2 1 ME C5\r\nq\r\nmg k c v\r\nmg nok2 c v\r\n",
            b"md k C7\r\nmd k C0 q\r\nmd k C7\r\nmg k v\r\nset n 0 0 1\r\n5\r\n"
            b"ma n c\r\nma n C0 v\r\nma n C3\r\nma nokey C3\r\nmg n v c\r\n",
        ]
        run = self.same(("-C",), "text", steps)
        # golden, for a reader: what memcached -C answered above
        self.assertEqual(run.out[0], [
            "STORED", "VALUE k 0 1 0 | b'v\\r\\n'", "END", "EXISTS", "EXISTS", "NOT_FOUND",
            "NOT_FOUND", "VALUE k 0 1 0 | b'v\\r\\n'", "END", "VALUE k 0 1 0 | b'v\\r\\n'",
            "END", "MN"])
        self.assertEqual(run.out[1][:5], ["VA 1 c0 | b'v\\r\\n'", "HD c0", "EX", "EX", "NF"])
        self.assertEqual(run.out[2], ["EX", "NF", "EN", "STORED", "HD c0", "VA 1 | b'7\\r\\n'",
                                      "EX", "NF", "VA 1 c0 | b'7\\r\\n'", "MN"])
        # me (memcached's item header differs: not compared) shows cas 0
        srv = self._servers[0]
        with g.connect(srv.port) as s:
            self.assertRegex(g.text_cmd(s, b"me n\r\n"), rb"^ME n exp=-1 la=\d+ cas=0 ")

    def test_binary(self):
        # a store's cas is ignored; delete and incr with one are EEXISTS
        incr = struct.pack(">QQI", 1, 0, 0)
        steps = [
            g.bin_set(b"k", b"v", opaque=1) + B(0x00, b"k", opaque=2) +
            g.bin_set(b"k", b"v2", cas=12345, opaque=3) + B(0x00, b"k", opaque=4) +
            B(0x04, b"k", cas=7, opaque=5) + g.bin_set(b"n", b"5", opaque=6) +
            B(0x05, b"n", incr, cas=7, opaque=7) + B(0x05, b"n", incr, opaque=8) +
            B(0x04, b"k", opaque=9) + B(0x04, b"k", opaque=10),
        ]
        run = self.same(("-C",), "bin", steps)
        got = run.raw[0]
        self.assertEqual([p.cas for p in got], [0] * 10)
        self.assertEqual([(p.opaque, p.status) for p in got],
                         [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0x02), (6, 0), (7, 0x02),
                          (8, 0), (9, 0), (10, 0x01)])
        self.assertEqual((got[3].value, got[7].value), (b"v2", struct.pack(">Q", 6)))


class NoFlushAll(WithMemcached):
    def test_refused_as_memcached(self):
        steps = [
            b"set foo 0 0 7\r\nfooval2\r\nflush_all\r\nflush_all 0\r\nflush_all noreply\r\n"
            b"flush_all invalid\r\nflush_all 10 noreply\r\nget foo\r\n",
        ]
        run = self.same(("-F",), "text", steps)
        refused = "CLIENT_ERROR flush_all not allowed"
        self.assertEqual(run.out[0], ["STORED", refused, refused, refused,
                                      "VALUE foo 0 7 | b'fooval2\\r\\n'", "END", "MN"])
        run = self.same(("-F",), "bin", [
            g.bin_set(b"k", b"v", opaque=1) + B(0x08, opaque=2) + B(0x18, opaque=3) +
            B(0x00, b"k", opaque=4)])
        self.assertEqual([(p.opaque, p.status, p.value) for p in run.raw[0]],
                         [(1, 0, b""), (2, 0x20, b"Auth failure."),
                          (3, 0x20, b"Auth failure."), (4, 0, b"v")])


class Flags(g.ServerTest):
    def bad(self, args, err):
        p = subprocess.run([g.GEECACHED, "-p", "0"] + args, capture_output=True,
                           timeout=20 * g.SLOW, stdin=subprocess.DEVNULL)
        self.assertEqual((p.returncode, p.stdout, p.stderr.decode()), (2, b"", err), args)

    def test_bad_values(self):
        see = " (see geecached --help)\n"
        self.bad(["-I", "1000"], "geecached: Item max size cannot be less than 1024 "
                 "bytes: -I '1000'" + see)
        self.bad(["-I", "300m"], "geecached: Cannot set item size limit higher than "
                 "256 megabytes: -I '300m'" + see)
        self.bad(["-I", "256m"], "geecached: Cannot set item size limit higher than 1/2 "
                 "of memory max: -I 268435456 with -m 64 (MiB)\n")
        self.bad(["-t", "0"], "geecached: value out of range [1, 256] for --threads: '0'"
                 + see)
        self.bad(["-R", "0"], "geecached: value out of range [1, 2147483647] for "
                 "--max-reqs-per-event: '0'" + see)
        self.bad(["-B", "http"], "geecached: bad value for --protocol: 'http'" + see)
        self.bad(["-C", "1"], "geecached: unexpected argument '1'" + see)

    def test_item_size_max(self):
        # memcached's t/item_size_max.t, and an item of 24 MiB stored and read
        for args, want in ((("-I", "1024"), 1024), (("-I", "2097152"), 2097152),
                           (("-I", "512k"), 524288), (("-m", "256", "-I", "32m"), 33554432)):
            with self.subTest(args=args):
                srv = self.server(*args)
                self.assertEqual(srv.stats("settings")["item_size_max"], str(want))
                if want == 33554432:
                    v = os.urandom(24 << 20)
                    with g.connect(srv.port, timeout=60) as s:
                        s.sendall(b"set big 0 0 %d\r\n%s\r\n" % (len(v), v))
                        self.assertEqual(g.recv_until(s, b"\r\n"), b"STORED\r\n")
                        s.sendall(b"get big\r\n")
                        want_reply = b"VALUE big 0 %d\r\n%s\r\nEND\r\n" % (len(v), v)
                        self.assertTrue(g.recv_exact(s, len(want_reply)) == want_reply)
                        n = (32 << 20) + 1
                        s.sendall(b"set huge 0 0 %d\r\n" % n + b"x" * n + b"\r\n")
                        self.assertEqual(g.recv_until(s, b"\r\n"),
                                         b"SERVER_ERROR object too large for cache\r\n")
                srv.stop()

    def test_threads_auto(self):
        srv = self.server()
        self.assertGreaterEqual(int(srv.stats("settings")["num_threads"]), 1)
        p = subprocess.run([g.GEECACHED, "--help-markdown"], capture_output=True, text=True)
        self.assertIn("| `-t`, `--threads` | auto | 1..256 |", p.stdout)


class Shutdown(WithMemcached):
    def test_refused_as_memcached(self):
        # without -A, and with a mode that is not one (memcached's answers)
        self.same((), "text", [b"shutdown\r\nshutdown graceful\r\n"])
        run = self.same(("-A",), "text", [b"shutdown foo\r\nshutdown a b\r\n"])
        self.assertEqual(run.out[0], ["CLIENT_ERROR invalid shutdown mode"] * 2 + ["MN"])
        srv = self._servers[0]
        with g.connect(srv.port) as s:
            self.assertEqual(g.text_cmd(s, b"shutdown\r\n"),
                             b"ERROR: shutdown not enabled\r\n")
        self.assertEqual(srv.stats("settings")["shutdown_command"], "no")

    def test_stops_the_server(self):
        for mode in (b"", b" graceful"):
            with self.subTest(mode=mode):
                srv = self.server("-A")
                self.assertEqual(srv.stats("settings")["shutdown_command"], "yes")
                with g.connect(srv.port) as s:
                    s.sendall(b"set k 0 0 1\r\nv\r\nshutdown%s\r\n" % mode)
                    got, closed = recv_all(s)
                    self.assertEqual((got, closed), (b"STORED\r\n", True))
                # exits by itself, with status 0 and a clean stderr
                rc = srv.proc.wait(20 * g.SLOW)
                self.assertEqual(rc, 0, srv.stderr())
                srv.signalled = True
                srv.stop()


class Backlog(g.ServerTest):
    def test_tcp_backlog(self):
        self.assertEqual(self.server().stats("settings")["tcp_backlog"], "1024")
        self.assertEqual(self.server("-b", "8675").stats("settings")["tcp_backlog"], "8675")
        # the listeners' backlog is what -b asked (ss: the Send-Q of a
        # LISTEN socket is its backlog; the kernel caps it at somaxconn)
        srv = self.server("-b", "77")
        ss = subprocess.run(["ss", "-ltnH", "sport = :%d" % srv.port],
                            capture_output=True, text=True)
        if ss.returncode != 0:
            self.skipTest("ss: %s" % ss.stderr.strip())
        rows = ss.stdout.strip().splitlines()
        self.assertTrue(rows and all(r.split()[2] == "77" for r in rows), ss.stdout)


def pid_alive(pid):
    """True while pid runs (a zombie nobody reaps has stopped)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Daemon(unittest.TestCase):
    def test_daemon_and_pidfile(self):
        # memcached's t/daemonize.t
        d = tempfile.mkdtemp(prefix="gc-daemon-")
        pidfile = os.path.join(d, "pid")
        t0 = time.monotonic()
        p = subprocess.run([g.GEECACHED, "-d", "-P", pidfile, "-p", "0", "-l", "127.0.0.1",
                            "-t", "1"], capture_output=True, timeout=30 * g.SLOW,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertLess(time.monotonic() - t0, 20 * g.SLOW)
        m = g.START_RE.match(p.stdout.decode())
        self.assertTrue(m, p.stdout)
        port = int(m.group(3))
        with open(pidfile) as f:
            text = f.read()
        self.assertRegex(text, r"^\d+\n$")
        pid = int(text)
        try:
            self.assertTrue(pid_alive(pid))
            self.assertEqual(g.text_stats(port)["pid"], str(pid))
            self.assertEqual(os.getsid(pid), pid)  # a session of its own
        finally:
            os.kill(pid, signal.SIGTERM)
        g.wait_for(lambda: not pid_alive(pid), "the daemon to stop")
        self.assertFalse(os.path.exists(pidfile), "the pid file was left behind")
        os.rmdir(d)

    def test_start_up_error_reaches_the_caller(self):
        p = subprocess.run([g.GEECACHED, "-d", "-P", "/nonexistent-gc/pid", "-p", "0",
                            "-t", "1"], capture_output=True, timeout=30 * g.SLOW,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"geecached: cannot write the pid file /nonexistent-gc/pid", p.stderr)

    def test_pidfile_without_daemon(self):
        d = tempfile.mkdtemp(prefix="gc-pid-")
        pidfile = os.path.join(d, "pid")
        srv = g.Server("-P", pidfile)
        try:
            with open(pidfile) as f:
                self.assertEqual(f.read(), "%d\n" % srv.pid)
        finally:
            srv.stop()
        self.assertFalse(os.path.exists(pidfile))
        os.rmdir(d)


if __name__ == "__main__":
    g.main()
