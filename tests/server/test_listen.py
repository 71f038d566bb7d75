"""Listeners: -l with IPv4 and IPv6 addresses (several, comma-separated, on
one port), every loop serving every address, and -s unix sockets (-a mode,
the file removed at stop, a stale file replaced, a live one refused), with a
raw client and with pylibmc (text and binary).

IPv6 cases are skipped, saying why, where the machine cannot bind ::1.
"""
import os
import socket
import stat
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcutil as g  # noqa: E402


def ipv6_missing():
    """Why IPv6 loopback cannot be used here, or None."""
    if not socket.has_ipv6:
        return "Python has no IPv6 support (socket.has_ipv6 is False)"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError as e:
        return "cannot bind ::1: %s" % e
    return None


def set_get(conn, key, value=b"v"):
    """A text set and get on one connection; returns the get's reply."""
    g.text_cmd(conn, b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
    return g.text_cmd(conn, b"get %s\r\n" % key, b"END\r\n")


def refused(host, port):
    try:
        socket.create_connection((host, port), 2).close()
    except OSError:
        return True
    return False


class Tcp(g.ServerTest):
    def setUp(self):
        super().setUp()
        why = ipv6_missing()
        if why:
            print("skipping IPv6: %s" % why, file=sys.stderr)
            self.skipTest(why)

    def test_ipv6_only(self):
        srv = self.server("-l", "::1")
        self.assertIn("listening on [::1]:%d (" % srv.port, srv.banner)
        self.assertEqual(srv.hosts, ["::1"])
        with g.connect(srv.port, host="::1") as c:
            self.assertEqual(set_get(c, b"k6"), b"VALUE k6 0 1\r\nv\r\nEND\r\n")
        self.assertTrue(refused("127.0.0.1", srv.port))
        st = g.text_stats(srv.port, "settings", host="::1")
        self.assertEqual(st["interface"], "::1")
        self.assertEqual(st["tcpport"], str(srv.port))

    def test_both_on_one_port(self):
        srv = self.server("-l", "127.0.0.1,::1")
        self.assertIn("listening on 127.0.0.1:%d, [::1]:%d (" % (srv.port, srv.port),
                      srv.banner)
        self.assertEqual(srv.hosts, ["127.0.0.1", "::1"])
        with g.connect(srv.port) as c4, g.connect(srv.port, host="::1") as c6:
            g.text_cmd(c4, b"set both 0 0 2\r\nv4\r\n")
            self.assertEqual(g.text_cmd(c6, b"get both\r\n", b"END\r\n"),
                             b"VALUE both 0 2\r\nv4\r\nEND\r\n")
        st = srv.stats("settings")
        self.assertEqual(st["interface"], "127.0.0.1,::1")
        self.assertEqual(st["domain_socket"], "NULL")
        # bracketed IPv6 is memcached's syntax too
        srv2 = self.server("-l", "[::1],127.0.0.1")
        self.assertIn("listening on [::1]:%d, 127.0.0.1:%d (" % (srv2.port, srv2.port),
                      srv2.banner)

    def many(self, *args):
        """-t 2: 60 connections on each address at once, every one served."""
        srv = self.server("-t", "2", "-l", "127.0.0.1,::1", *args)
        conns = [g.connect(srv.port, host=h) for h in ("127.0.0.1", "::1") for _ in range(60)]
        try:
            for i, c in enumerate(conns):
                key = b"m%d" % i
                self.assertEqual(set_get(c, key, b"x%d" % i),
                                 b"VALUE %s 0 %d\r\nx%d\r\nEND\r\n" % (key, len(b"x%d" % i), i))
            # and the stats connection itself
            self.assertEqual(int(srv.stats("conns")["curr_connections"]), 121)
        finally:
            for c in conns:
                c.close()
        return srv

    def test_several_loops_reuseport(self):
        self.many("--accept", "reuseport")

    def test_several_loops_handoff(self):
        srv = self.many("--accept", "handoff")
        self.assertEqual(srv.stats("settings")["accept_mode"], "handoff")

    def test_bad_listen_values(self):
        for bad in ("127.0.0.1,", "localhost", "::1,,127.0.0.1"):
            p = subprocess.run([g.GEECACHED, "-p", "0", "-l", bad], capture_output=True,
                               timeout=30 * g.SLOW, stdin=subprocess.DEVNULL)
            self.assertNotEqual(p.returncode, 0, bad)
            self.assertIn(b"geecached: ", p.stderr)


class Unix(g.ServerTest):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="gc_listen_")
        self.path = os.path.join(self.dir, "gc.sock")

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            if os.path.lexists(self.path):
                os.unlink(self.path)
            os.rmdir(self.dir)

    def test_raw_client_mode_and_removal(self):
        srv = self.server("-t", "2", "-a", "660", unix=self.path)
        self.assertIn("listening on unix:%s (" % self.path, srv.banner)
        self.assertIsNone(srv.port)
        st = os.stat(self.path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        conns = [g.connect(self.path) for _ in range(20)]
        for i, c in enumerate(conns):
            self.assertEqual(set_get(c, b"u%d" % i), b"VALUE u%d 0 1\r\nv\r\nEND\r\n" % i)
        for c in conns:
            c.close()
        s = srv.stats("settings")
        self.assertEqual(s["domain_socket"], self.path)
        self.assertEqual(s["umask"], "660")
        self.assertEqual(s["tcpport"], "0")
        self.assertEqual(s["interface"], "NULL")
        srv.stop()
        self.assertFalse(os.path.lexists(self.path), "socket file left after SIGTERM")

    def test_default_mode_is_0700(self):
        self.server(unix=self.path)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o700)

    def test_no_tcp_with_unix(self):
        srv = self.server("-p", "0", unix=self.path)
        # nothing listens on TCP: stats conns over the socket shows one
        # connection, and the start line names only the socket
        self.assertNotIn("127.0.0.1", srv.banner)
        self.assertEqual(srv.stats("conns")["curr_connections"], "1")

    def test_pylibmc_text_and_binary(self):
        pylibmc = g.need_pylibmc()
        srv = self.server("-t", "2", unix=self.path)
        self.assertEqual(srv.addr, self.path)
        for binary in (False, True):
            mc = pylibmc.Client([srv.addr], binary=binary)
            keys = {"pk%d-%d" % (binary, i): b"val%d" % i for i in range(200)}
            mc.set_multi(keys)
            self.assertEqual(mc.get_multi(list(keys)), keys)
            self.assertTrue(mc.add("added%d" % binary, b"a"))
            self.assertTrue(mc.set("n%d" % binary, "5"))
            self.assertEqual(mc.incr("n%d" % binary, 1), 6)
            self.assertTrue(mc.delete("added%d" % binary))
            self.assertIsNone(mc.get("added%d" % binary))
            mc.disconnect_all()

    def test_stale_file_replaced(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.path)  # left behind: nothing will listen on it
        s.close()
        srv = self.server(unix=self.path)
        with g.connect(self.path) as c:
            self.assertEqual(set_get(c, b"stale"), b"VALUE stale 0 1\r\nv\r\nEND\r\n")
        srv.stop()

    def test_live_socket_refused(self):
        srv = self.server(unix=self.path)
        p = subprocess.run([g.GEECACHED, "-s", self.path], capture_output=True,
                           timeout=30 * g.SLOW, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"cannot listen on unix socket", p.stderr)
        # the running server keeps its socket
        with g.connect(self.path) as c:
            self.assertEqual(set_get(c, b"live"), b"VALUE live 0 1\r\nv\r\nEND\r\n")
        srv.stop()
        self.assertFalse(os.path.lexists(self.path))

    def test_not_a_socket_refused(self):
        with open(self.path, "w") as f:
            f.write("keep me")
        p = subprocess.run([g.GEECACHED, "-s", self.path], capture_output=True,
                           timeout=30 * g.SLOW, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 1)
        with open(self.path) as f:
            self.assertEqual(f.read(), "keep me")


if __name__ == "__main__":
    g.main()
