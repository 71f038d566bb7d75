"""Authentication (-Y FILE): binary SASL PLAIN through pylibmc, memcached's
text authentication and the refusals as golden bytes over raw sockets, the
close after SRV_AUTH_TRIES failures, SIGHUP reloads, the file checks at
start, and the text path side by side with memcached 1.6.18 -Y.
"""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcutil as g  # noqa: E402

AUTH_ERR = 0x20


def auth_file(d, text, mode=0o600, owner=None):
    path = os.path.join(d, "users")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, owner, -1)
    return path


def talk(s, data, end=b"\r\n"):
    s.sendall(data)
    return g.recv_until(s, end)


def plain(user, pw, authz=b""):
    return authz + b"\0" + user + b"\0" + pw


class Auth(g.ServerTest):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp()
        os.chmod(self.dir, 0o755)
        self.path = auth_file(self.dir, "user:pass\nops:s3:cret\r\n\n")

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- binary SASL through a real client ---------------------------------

    def test_pylibmc_sasl(self):
        pylibmc = g.need_pylibmc()
        srv = self.server("-Y", self.path)
        self.assertIn("authentication required", srv.banner)
        ok = pylibmc.Client([srv.addr], binary=True, username="user", password="pass")
        ok.set("k", b"v")
        self.assertEqual(ok.get("k"), b"v")
        ok2 = pylibmc.Client([srv.addr], binary=True, username="ops", password="s3:cret")
        self.assertEqual(ok2.get("k"), b"v")
        for kw in ({"username": "user", "password": "wrong"},
                   {"username": "nobody", "password": "pass"}, {}):
            bad = pylibmc.Client([srv.addr], binary=True, **kw)
            with self.assertRaises(pylibmc.Error, msg=repr(kw)):
                bad.set("k", b"stolen")
            try:  # an unauthenticated get is an error or, for some, a miss
                got = bad.get("k")
            except pylibmc.Error:
                got = None
            self.assertIsNone(got, repr(kw))
        self.assertEqual(ok.get("k"), b"v")
        with g.connect(srv.port) as s:
            self.assertEqual(talk(s, b"set a 0 0 9\r\nuser pass\r\n"), b"STORED\r\n")
            out = talk(s, b"stats\r\n", b"END\r\n").decode()
        self.assertRegex(out, r"STAT auth_cmds [1-9]")
        self.assertRegex(out, r"STAT auth_errors [1-9]")

    # -- binary golden bytes -------------------------------------------------

    def test_binary_golden(self):
        srv = self.server("-Y", self.path)
        with g.connect(srv.port) as s:
            s.sendall(g.bin_req(0x00, b"k", opaque=1))
            r = g.bin_recv(s)
            self.assertEqual((r.opcode, r.status, r.opaque, r.value), (0x00, AUTH_ERR, 1, b"Auth failure."))
            s.sendall(g.bin_req(0x0b, opaque=2))  # VERSION is answered
            self.assertEqual(g.bin_recv(s).status, 0)
            s.sendall(g.bin_req(0x20, opaque=3))
            r = g.bin_recv(s)
            self.assertEqual((r.opcode, r.status, r.value), (0x20, 0, b"PLAIN"))
            s.sendall(g.bin_req(0x21, b"PLAIN", value=plain(b"user", b"nope"), opaque=4))
            r = g.bin_recv(s)
            self.assertEqual((r.opcode, r.status, r.opaque, r.value), (0x21, AUTH_ERR, 4, b"Auth failure."))
            s.sendall(g.bin_req(0x21, b"CRAM-MD5", value=b"x", opaque=5))
            self.assertEqual(g.bin_recv(s).status, AUTH_ERR)
            s.sendall(g.bin_req(0x21, b"PLAIN", value=plain(b"user", b"pass"), opaque=6))
            r = g.bin_recv(s)
            self.assertEqual((r.status, r.value), (0, b"Authenticated"))
            s.sendall(g.bin_set(b"k", b"v", opaque=7) + g.bin_req(0x00, b"k", opaque=8))
            self.assertEqual(g.bin_recv(s).status, 0)
            r = g.bin_recv(s)
            self.assertEqual((r.status, r.value), (0, b"v"))
        with g.connect(srv.port) as s:  # an authzid other than the user
            s.sendall(g.bin_req(0x21, b"PLAIN", value=plain(b"user", b"pass", b"ops")))
            self.assertEqual(g.bin_recv(s).status, AUTH_ERR)
            s.sendall(g.bin_req(0x22, b"PLAIN", value=plain(b"ops", b"s3:cret", b"ops")))
            self.assertEqual(g.bin_recv(s).status, 0)

    def test_three_failures_close(self):
        srv = self.server("-Y", self.path)
        with g.connect(srv.port) as s:
            for i in range(3):
                s.sendall(g.bin_req(0x21, b"PLAIN", value=plain(b"user", b"x%d" % i)))
                self.assertEqual(g.bin_recv(s).status, AUTH_ERR)
            self.assertTrue(g.is_closed(s))
        with g.connect(srv.port) as s:
            self.assertEqual(talk(s, b"set k 0 0 6\r\nuser x\r\n"),
                             b"CLIENT_ERROR authentication failure\r\n")
            self.assertEqual(talk(s, b"set k 0 0 4\r\nuser\r\n"),
                             b"CLIENT_ERROR bad authentication token format\r\n")
            self.assertEqual(talk(s, b"set k 0 0 6\r\nuser y\r\n"),
                             b"CLIENT_ERROR authentication failure\r\n")
            self.assertTrue(g.is_closed(s))

    # -- text golden bytes (memcached 1.6.18's answers) ----------------------

    TEXT = [
        (b"get a\r\n", b"CLIENT_ERROR unauthenticated\r\n"),
        (b"version\r\n", b"CLIENT_ERROR unauthenticated\r\n"),
        (b"mn\r\n", b"CLIENT_ERROR unauthenticated\r\n"),
        (b"add k 0 0 9\r\nuser pass\r\n", b"CLIENT_ERROR unauthenticated\r\n"),
        (b"bogus\r\n", b"CLIENT_ERROR unauthenticated\r\n"),
        (b"set k 0 0 9\r\nuser pasx\r\n", b"CLIENT_ERROR authentication failure\r\n"),
        (b"set k 0 0 9\r\nuser:pass\r\n", b"CLIENT_ERROR bad authentication token format\r\n"),
        (b"set k 0 0 16 noreply\r\n  user  pass xyz\r\n", b"STORED\r\n"),
        (b"get k\r\n", b"END\r\n"),  # the authenticating set stored nothing
        (b"set k 0 0 1\r\nv\r\n", b"STORED\r\n"),
        (b"get k\r\n", b"VALUE k 0 1\r\nv\r\nEND\r\n"),
    ]

    def run_text(self, port):
        out = []
        with g.connect(port) as s:
            for req, want in self.TEXT:
                out.append(talk(s, req, b"END\r\n" if req.startswith(b"get") and
                                want.endswith(b"END\r\n") else b"\r\n"))
        return out

    def test_text_golden(self):
        srv = self.server("-Y", self.path)
        self.assertEqual(self.run_text(srv.port), [w for _, w in self.TEXT])
        # An oversized value before authentication touches nothing.
        with g.connect(srv.port) as s:
            big = 2 << 20
            self.assertEqual(talk(s, b"set k 0 0 %d\r\n" % big + b"x" * big + b"\r\n"),
                             b"CLIENT_ERROR unauthenticated\r\n")
            self.assertEqual(talk(s, b"set z 0 0 9\r\nuser pass\r\n"), b"STORED\r\n")
            self.assertEqual(talk(s, b"get k\r\n", b"END\r\n"), b"VALUE k 0 1\r\nv\r\nEND\r\n")

    def test_text_differential(self):
        mcbin = g.need_tool("memcached")
        owner = None
        argv_user = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("nobody").pw_uid
            argv_user = ["-u", "nobody"]
        path = auth_file(self.dir, "user:pass\nops:s3:cret\n", owner=owner)
        for attempt in range(5):
            port = g.free_port()
            mc = subprocess.Popen([mcbin, "-p", str(port), "-l", "127.0.0.1", "-U", "0",
                                   "-Y", path] + argv_user, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            g._procs.append(mc)
            try:
                g.wait_port(port, 10, mc)
                break
            except AssertionError:
                mc.kill()
                mc.wait()
        else:
            raise AssertionError("memcached -Y did not start")
        try:
            want = self.run_text(port)
        finally:
            mc.terminate()
            mc.wait(10)
        srv = self.server("-Y", path, *argv_user)
        self.assertEqual(self.run_text(srv.port), want)

    # -- files and reloads ---------------------------------------------------

    def start_fails(self, *args):
        p = subprocess.run([g.GEECACHED, "-p", "0"] + list(args), capture_output=True,
                           text=True, timeout=30 * g.SLOW)
        self.assertEqual(p.returncode, 2, p.stderr)
        return p.stderr

    def test_file_checks(self):
        self.assertIn("-S (SASL) needs -Y FILE", self.start_fails("-S"))
        os.chmod(self.path, 0o644)
        self.assertIn("readable by others", self.start_fails("-Y", self.path))
        os.chmod(self.path, 0o620)
        self.assertIn("writable by others", self.start_fails("-Y", self.path))
        os.chmod(self.path, 0o600)
        bad = auth_file(self.dir, "user:pass\nnocolon\n")
        self.assertIn("line 2", self.start_fails("-Y", bad))
        self.assertIn("cannot open", self.start_fails("-Y", self.path + ".missing"))
        srv = self.server("-S", "-Y", auth_file(self.dir, "user:pass\n"))
        with g.connect(srv.port) as s:
            self.assertEqual(talk(s, b"set k 0 0 9\r\nuser pass\r\n"), b"STORED\r\n")
            out = talk(s, b"stats settings\r\n", b"END\r\n")
        self.assertIn(b"STAT auth_enabled_sasl yes\r\n", out)

    def test_sighup_reloads(self):
        srv = self.server("-Y", self.path)
        with open(self.path, "w") as f:
            f.write("new:word\n")
        srv.proc.send_signal(signal.SIGHUP)
        g.wait_for(lambda: "reloaded" in srv.stderr(), "the reload's log line")

        def auth(pw_line):
            with g.connect(srv.port) as s:
                return talk(s, b"set k 0 0 %d\r\n%s\r\n" % (len(pw_line), pw_line))
        self.assertEqual(auth(b"new word"), b"STORED\r\n")
        self.assertEqual(auth(b"user pass"), b"CLIENT_ERROR authentication failure\r\n")
        # A bad file keeps the users we have, and says so.
        os.chmod(self.path, 0o644)
        srv.proc.send_signal(signal.SIGHUP)
        g.wait_for(lambda: "keeping the previous users" in srv.stderr(), "the refusal")
        self.assertEqual(auth(b"new word"), b"STORED\r\n")
        self.assertTrue(srv.alive())


if __name__ == "__main__":
    g.main()
