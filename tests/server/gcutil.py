"""Shared helpers for geecached's integration tests (tests/server/).

Every test starts its own servers on loopback ports the kernel picks, and
stops them with SIGTERM, checking that each exits with status 0 and that its
stderr holds no sanitizer report. Nothing is left running: servers and
helper processes are tracked and killed (by pid) when a test dies early.

Tools that the tests drive (memcached, memccapable, memcslap, nutcracker,
pylibmc) are required: a missing one fails the test with the Debian package
that provides it.

Usage from a test script:  python3 test_x.py <path to geecached> [unittest args]
The environment variable GEECACHE_SANITIZE ('' | address | thread) says how
the server was built, so that tests can size their work.
"""
import atexit
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

SANITIZE = os.environ.get("GEECACHE_SANITIZE", "")
# Sanitizer builds are several times slower: scale waits, not sizes.
SLOW = 4.0 if SANITIZE else 1.0

GEECACHED = None  # set by main()

_procs = []  # every Popen we started, for the atexit safety net


def _reap_all():
    for p in _procs:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(5)
            except Exception:
                pass


atexit.register(_reap_all)


# ---- tools ---------------------------------------------------------------

TOOLS = {
    "memcached": "memcached",
    "memccapable": "libmemcached-tools",
    "memcslap": "libmemcached-tools",
    "nutcracker": "nutcracker",
}


def need_tool(name):
    """Path of a required program; fails the test naming the package."""
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not path:
        raise AssertionError(
            "%s not found: install the Debian package %s (CI installs it)"
            % (name, TOOLS.get(name, name)))
    return path


def need_pylibmc():
    try:
        import pylibmc  # noqa: F401
    except ImportError:
        raise AssertionError(
            "pylibmc not importable by %s: install the Debian package "
            "python3-pylibmc and run the test with /usr/bin/python3" % sys.executable)
    return pylibmc


def free_port():
    """A loopback port free right now (for programs that cannot take 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError("process exited with %s before listening on %d"
                                 % (proc.returncode, port))
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nothing listens on 127.0.0.1:%d after %.0f s" % (port, timeout * SLOW))


# ---- geecached -----------------------------------------------------------

SANITIZER_MARKS = (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer",
                   b"WARNING: ThreadSanitizer", b"runtime error:")


# The start line: "listening on" the -l addresses, each with the port (IPv6
# in brackets; the first is 127.0.0.1 unless the test passed -l), or
# unix:PATH for -s.
START_RE = re.compile(r"geecached \S+ listening on (?:unix:(\S+)|(\S+?):(\d+)((?:, \S+)*)) \(")


class Server:
    """One geecached on 127.0.0.1 and a port it picks (-p 0), unless args
    give other -l addresses; or, with unix=PATH, on that unix socket alone
    (-s PATH; port is None, path is PATH).

    metrics=True also serves /metrics on a free port chosen here (the
    server's --metrics-port 0 means off)."""

    def __init__(self, *args, metrics=False, binary=None, env=None, unix=None):
        self.binary = binary or GEECACHED
        self.args = [str(a) for a in args]
        self.env = dict(os.environ, **env) if env else None
        self.unix = unix
        self.path = None
        self.hosts = []
        self.proc = None
        self.port = None
        self.metrics_port = None
        self.stopped = False
        self.signalled = False
        for attempt in range(5):
            mp = free_port() if metrics else None
            try:
                self._start(mp)
                return
            except _PortTaken:
                continue
        raise AssertionError("could not start geecached on a free metrics port")

    def _start(self, mport):
        argv = [self.binary, "-p", "0", "-l", "127.0.0.1"] + self.args
        if self.unix:
            argv += ["-s", str(self.unix)]
        if mport:
            argv += ["--metrics-port", str(mport)]
        self.errfile = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.errfile,
                                     stdin=subprocess.DEVNULL, env=self.env)
        _procs.append(self.proc)
        line = b""
        deadline = time.monotonic() + 20 * SLOW
        fd = self.proc.stdout.fileno()
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            r, _, _ = select.select([fd], [], [], max(left, 0))
            if not r:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("geecached printed no start line: %s" % self.stderr())
            b = os.read(fd, 4096)
            if not b:
                self.proc.wait()
                err = self.stderr()
                if mport and "metrics" in err:
                    raise _PortTaken()
                raise AssertionError("geecached %s exited with %s: %s"
                                     % (" ".join(argv[1:]), self.proc.returncode, err))
            line += b
        self.banner = line.decode().strip()
        m = START_RE.match(self.banner)
        if not m or bool(m.group(1)) != bool(self.unix):
            raise AssertionError("unexpected start line: %r" % self.banner)
        if m.group(1):
            self.path = m.group(1)
        else:
            self.port = int(m.group(3))
            # every address, brackets off (IPv6)
            self.hosts = [m.group(2).strip("[]")] + [
                a.rsplit(":", 1)[0].strip("[]") for a in m.group(4).split(", ") if a]
        # A run meant for one backend (GEECACHE_BACKEND, which netpoll
        # obeys over --backend) must not pass on another.
        want = (self.env or os.environ).get("GEECACHE_BACKEND")
        if want and not self.banner.split("(", 1)[1].startswith(want + ","):
            raise AssertionError("GEECACHE_BACKEND=%s, but: %r" % (want, self.banner))
        if mport:
            m = re.search(r", metrics on http://127\.0\.0\.1:(\d+)/metrics$", self.banner)
            if not m or int(m.group(1)) != mport:
                raise AssertionError("start line lacks the metrics URL: %r" % self.banner)
            self.metrics_port = mport

    @property
    def pid(self):
        return self.proc.pid

    @property
    def addr(self):
        """What pylibmc and memcached clients take: 127.0.0.1:PORT, or the
        socket's path."""
        return self.path if self.path else "127.0.0.1:%d" % self.port

    def stderr(self):
        self.errfile.seek(0)
        return self.errfile.read().decode(errors="replace")

    def check_stderr(self):
        self.errfile.seek(0)
        err = self.errfile.read()
        for mark in SANITIZER_MARKS:
            if mark in err:
                raise AssertionError("sanitizer report from geecached:\n%s"
                                     % err.decode(errors="replace"))

    def alive(self):
        return self.proc.poll() is None

    def terminate(self):
        """Sends SIGTERM now; stop() then waits and checks the exit."""
        if self.proc.poll() is not None:
            raise AssertionError("geecached died before it was stopped: status %s\n%s"
                                 % (self.proc.returncode, self.stderr()))
        self.proc.send_signal(signal.SIGTERM)
        self.signalled = True

    def stop(self, timeout=30.0):
        """SIGTERM (unless terminate() sent it); asserts exit status 0 and a
        clean stderr."""
        if self.stopped:
            return
        self.stopped = True
        if not self.signalled:
            self.terminate()
        try:
            rc = self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("geecached did not stop within %.0f s of SIGTERM"
                                 % (timeout * SLOW))
        self.proc.stdout.close()
        try:
            if rc != 0:
                raise AssertionError("geecached exited with status %d after SIGTERM:\n%s"
                                     % (rc, self.stderr()))
            self.check_stderr()
        finally:
            self.errfile.close()

    def kill(self):
        """For cleanup after a failure: no checks."""
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.errfile.close()

    def stats(self, group=""):
        return text_stats(self.path or self.port, group)

    def rss(self):
        """Resident set size in bytes (VmRSS of /proc/PID/status)."""
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS for pid %d" % self.pid)


class _PortTaken(Exception):
    pass


class ServerTest(unittest.TestCase):
    """A TestCase whose servers are stopped (and checked) at the end."""

    def setUp(self):
        self._servers = []

    def server(self, *args, **kw):
        s = Server(*args, **kw)
        self._servers.append(s)
        return s

    def tearDown(self):
        # Stop every server (gracefully, checking the exit status) even when
        # the test failed; the first error wins but all are stopped.
        first = None
        for s in self._servers:
            try:
                s.stop()
            except AssertionError as e:
                first = first or e
        if first:
            raise first


def wait_for(fn, what, timeout=10.0):
    """Polls fn() until it returns true (counters that move just after the
    event a client sees, e.g. a close); fails naming `what`."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for: %s" % what)
        time.sleep(0.05)


# ---- sockets -------------------------------------------------------------

def connect(port, timeout=10.0, host="127.0.0.1"):
    """A client socket to host:port, or (port a str) to the unix socket at
    that path."""
    if isinstance(port, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout * SLOW)
        try:
            s.connect(port)
        except OSError:
            s.close()
            raise
        return s
    s = socket.create_connection((host, port), timeout * SLOW)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        b = s.recv(min(n - len(buf), 1 << 20))
        if not b:
            raise EOFError("EOF after %d of %d bytes" % (len(buf), n))
        buf += b
    return bytes(buf)


def recv_until(s, end, limit=1 << 24):
    """Reads until the buffer ends with `end`."""
    buf = bytearray()
    while not buf.endswith(end):
        b = s.recv(65536)
        if not b:
            raise EOFError("EOF before %r; got %r" % (end, bytes(buf[-200:])))
        buf += b
        if len(buf) > limit:
            raise AssertionError("no %r within %d bytes" % (end, limit))
    return bytes(buf)


def is_closed(s, timeout=5.0):
    """True when the peer closes (EOF or reset) within timeout, False if the
    connection stays open. Data that arrives first is read and dropped."""
    s.settimeout(timeout * SLOW)
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return True
    except socket.timeout:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def text_cmd(s, line, end=b"\r\n"):
    s.sendall(line)
    return recv_until(s, end)


def text_stats(port, group="", host="127.0.0.1"):
    """`stats [group]` as a dict; port as connect's (a path: unix)."""
    with connect(port, host=host) as s:
        out = text_cmd(s, ("stats %s\r\n" % group).strip().encode() + b"\r\n"
                       if group else b"stats\r\n", b"END\r\n")
    st = {}
    for line in out.decode().split("\r\n"):
        if line.startswith("STAT "):
            _, k, v = line.split(" ", 2)
            st[k] = v
    return st


# ---- binary protocol -----------------------------------------------------

HDR = struct.Struct(">BBHBBHIIQ")


def bin_req(opcode, key=b"", extras=b"", value=b"", opaque=0, cas=0, vbucket=0,
            datatype=0, bodylen=None, magic=0x80):
    if bodylen is None:
        bodylen = len(extras) + len(key) + len(value)
    return HDR.pack(magic, opcode, len(key), len(extras), datatype, vbucket,
                    bodylen, opaque, cas) + extras + key + value


def bin_set(key, value, flags=0, exp=0, opcode=0x01, opaque=0, cas=0):
    return bin_req(opcode, key, struct.pack(">II", flags, exp), value, opaque, cas)


class BinResp:
    __slots__ = ("magic", "opcode", "keylen", "extlen", "datatype", "status",
                 "bodylen", "opaque", "cas", "extras", "key", "value")

    def tuple(self):
        return tuple(getattr(self, k) for k in self.__slots__)

    def __repr__(self):
        return "BinResp(op=%#x st=%#x opaque=%d cas=%d ext=%r key=%r val=%r)" % (
            self.opcode, self.status, self.opaque, self.cas, self.extras, self.key,
            self.value[:64])


def parse_bin(buf):
    """Splits a byte string into binary responses; returns (list, rest)."""
    out = []
    i = 0
    while len(buf) - i >= 24:
        r = BinResp()
        (r.magic, r.opcode, r.keylen, r.extlen, r.datatype, r.status, r.bodylen,
         r.opaque, r.cas) = HDR.unpack_from(buf, i)
        if len(buf) - i < 24 + r.bodylen:
            break
        body = buf[i + 24:i + 24 + r.bodylen]
        r.extras = body[:r.extlen]
        r.key = body[r.extlen:r.extlen + r.keylen]
        r.value = body[r.extlen + r.keylen:]
        out.append(r)
        i += 24 + r.bodylen
    return out, buf[i:]


def bin_recv(s):
    hdr = recv_exact(s, 24)
    r, _ = parse_bin(hdr + recv_exact(s, HDR.unpack(hdr)[6]))
    return r[0]


# ---- entry point ---------------------------------------------------------

def main():
    global GEECACHED
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        sys.stderr.write("usage: %s <geecached binary> [unittest args]\n" % sys.argv[0])
        sys.exit(2)
    GEECACHED = os.path.abspath(sys.argv[1])
    argv = [sys.argv[0]] + sys.argv[2:]
    unittest.main(argv=argv, verbosity=2)
