"""Operations: -u drops privileges after binding, signals (SIGHUP reloads
and keeps serving, SIGUSR2 is ignored, SIGUSR1 stops gracefully), and the
/metrics listener cannot be locked out by idle or half-open connections
(--metrics-listen binds it apart from -l).
"""
import os
import pwd
import resource
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcutil as g  # noqa: E402

HEAD_S = 5  # SRV_HTTP_HEAD_MS


def status_ids(pid):
    ids = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                ids[k] = v.split()
    return ids


def scrape(port, host="127.0.0.1", timeout=10.0):
    with socket.create_connection((host, port), timeout * g.SLOW) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf = bytearray()
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            buf += b
    return bytes(buf)


class Privileges(g.ServerTest):
    @unittest.skipUnless(os.geteuid() == 0, "needs root")
    def test_user_drops_to_nobody(self):
        nobody = pwd.getpwnam("nobody")
        srv = self.server("-u", "nobody")
        ids = status_ids(srv.pid)
        self.assertEqual(ids["Uid"], [str(nobody.pw_uid)] * 4)
        self.assertEqual(ids["Gid"], [str(nobody.pw_gid)] * 4)
        self.assertNotIn("0", ids["Groups"])
        self.assertNotIn("running as root", srv.stderr())
        with g.connect(srv.port) as s:  # bound before the drop, and serving
            self.assertEqual(g.text_cmd(s, b"set k 0 0 1\r\nv\r\n"), b"STORED\r\n")

    @unittest.skipUnless(os.geteuid() == 0, "needs root")
    def test_root_without_user_warns(self):
        srv = self.server()
        self.assertIn("running as root without -u", srv.stderr())
        self.assertEqual(status_ids(srv.pid)["Uid"][0], "0")

    def test_unknown_user_refused(self):
        if os.geteuid() != 0:
            self.skipTest("-u is ignored when not root")
        import subprocess
        p = subprocess.run([g.GEECACHED, "-p", "0", "-u", "no-such-user-gc"],
                           capture_output=True, text=True, timeout=30 * g.SLOW)
        self.assertEqual(p.returncode, 2)
        self.assertIn("no such user", p.stderr)


class Signals(g.ServerTest):
    def test_hup_usr2_keep_serving_usr1_stops(self):
        srv = self.server("-v")
        with g.connect(srv.port) as s:
            self.assertEqual(g.text_cmd(s, b"set k 0 0 1\r\nv\r\n"), b"STORED\r\n")
            for sig in (signal.SIGHUP, signal.SIGUSR2, signal.SIGHUP):
                srv.proc.send_signal(sig)
                time.sleep(0.2)
                self.assertTrue(srv.alive(), "died of %s" % sig)
                self.assertEqual(g.text_cmd(s, b"get k\r\n", b"END\r\n"),
                                 b"VALUE k 0 1\r\nv\r\nEND\r\n")
        self.assertIn("SIGHUP", srv.stderr())
        self.assertIn("SIGUSR2 ignored", srv.stderr())
        srv.proc.send_signal(signal.SIGUSR1)  # memcached's graceful stop
        srv.signalled = True
        srv.stop()  # asserts exit status 0


class Metrics(g.ServerTest):
    def test_idle_connections_cannot_lock_out_a_scrape(self):
        want = 1200
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(want, soft), hard), hard))
        srv = self.server(metrics=True)
        conns = []
        try:
            for i in range(1000):
                s = socket.create_connection(("127.0.0.1", srv.metrics_port), 10 * g.SLOW)
                if i % 2:
                    s.sendall(b"GET /metr")  # half a request, never finished
                conns.append(s)
            t0 = time.monotonic()
            body = scrape(srv.metrics_port)
            self.assertTrue(body.startswith(b"HTTP/1.1 200 OK"), body[:80])
            self.assertIn(b"geecache_uptime_seconds", body)
            self.assertLess(time.monotonic() - t0, 3 * g.SLOW)
            # The ones left open are closed for a late head.
            time.sleep(HEAD_S + 2)
            self.assertTrue(g.is_closed(conns[-1], 5 * g.SLOW))
            self.assertTrue(g.is_closed(conns[-2], 5 * g.SLOW))
        finally:
            for s in conns:
                s.close()

    def test_keepalive_scrapes_are_not_cut(self):
        srv = self.server(metrics=True)
        with socket.create_connection(("127.0.0.1", srv.metrics_port)) as s:
            for _ in range(3):
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                buf = b""
                while b"\r\n\r\n" not in buf:
                    buf += s.recv(1 << 16)
                head, _, body = buf.partition(b"\r\n\r\n")
                self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
                n = int([ln for ln in head.split(b"\r\n")
                         if ln.lower().startswith(b"content-length:")][0].split(b":")[1])
                if len(body) < n:
                    body += g.recv_exact(s, n - len(body))
                self.assertEqual(len(body), n)
                time.sleep(1)

    def test_metrics_listen_binds_apart(self):
        port = g.free_port()
        srv = self.server("--metrics-port", port, "--metrics-listen", "127.0.0.2")
        self.assertIn("metrics on http://127.0.0.2:%d/metrics" % port, srv.banner)
        self.assertTrue(scrape(port, "127.0.0.2").startswith(b"HTTP/1.1 200 OK"))
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), 2).close()


if __name__ == "__main__":
    g.main()
