"""twemproxy (nutcracker: ketama, ASCII protocol) in front of two geecached.

Keys set through the proxy read back through it (single and multi-key
gets, which the proxy splits over the servers), and they are spread over
both servers: each server, asked directly, holds some, every key is on
exactly one, and the counts add up.
"""
import os
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcutil as g  # noqa: E402

N = 300

# hash: md5, not fnv1a_64 (docs/server.md's example): twemproxy's fnv1a_64
# keeps only the low 32 bits of the 64-bit FNV-1a hash, which for keys that
# differ in a middle character (twem:0 ... twem:299) vary too little to
# spread them -- only the last character counts, and with some port pairs
# every key lands on one server.

CONFIG = """\
geecache:
  listen: 127.0.0.1:{listen}
  hash: md5
  distribution: ketama
  timeout: {timeout}
  redis: false
  auto_eject_hosts: false
  servers:
    - 127.0.0.1:{a}:1
    - 127.0.0.1:{b}:1
"""


class Twemproxy(g.ServerTest):
    def start_proxy(self, tmp, a, b):
        tool = g.need_tool("nutcracker")
        conf = os.path.join(tmp, "geecache.yml")
        for attempt in range(5):
            port = g.free_port()
            with open(conf, "w") as f:
                f.write(CONFIG.format(listen=port, a=a.port, b=b.port,
                                      timeout=int(2000 * g.SLOW)))
            r = subprocess.run([tool, "-t", "-c", conf], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, "nutcracker -t rejects the config:\n%s%s"
                             % (r.stdout, r.stderr))
            log = os.path.join(tmp, "nutcracker.log")
            p = subprocess.Popen([tool, "-c", conf, "-o", log, "-v", "4",
                                  "-s", str(g.free_port()), "-a", "127.0.0.1",
                                  "-p", os.path.join(tmp, "nutcracker.pid")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            g._procs.append(p)
            try:
                g.wait_port(port, 10, p)
                return p, port, log
            except AssertionError:
                if p.poll() is None:
                    p.kill()
                p.wait()
        raise AssertionError("nutcracker did not start; log:\n%s" % open(log).read())

    def test_ketama_ascii(self):
        a = self.server("-t", "1")
        b = self.server("-t", "1")
        with tempfile.TemporaryDirectory(prefix="gc-twem-") as tmp:
            proxy, port, log = self.start_proxy(tmp, a, b)
            try:
                self.exercise(port, a, b)
            except Exception:
                sys.stderr.write("nutcracker log:\n%s\n" % open(log).read()[-4000:])
                raise
            finally:
                proxy.send_signal(signal.SIGTERM)
                try:
                    proxy.wait(10)
                except subprocess.TimeoutExpired:
                    proxy.kill()
                    proxy.wait()

    def exercise(self, port, a, b):
        keys = ["twem:%d" % i for i in range(N)]
        with g.connect(port) as s:
            # set through the proxy, pipelined in batches
            for i in range(0, N, 50):
                req = b"".join(b"set %s %d 0 %d\r\n%s\r\n" % (k.encode(), j, len(v), v)
                               for j, k in enumerate(keys[i:i + 50], i)
                               for v in [("value-of-" + k).encode()])
                s.sendall(req)
                out = g.recv_until(s, b"STORED\r\n" * 50)
                self.assertEqual(out, b"STORED\r\n" * 50)
            # single gets through the proxy
            for j, k in enumerate(keys[:50]):
                v = ("value-of-" + k).encode()
                self.assertEqual(g.text_cmd(s, b"get %s\r\n" % k.encode(), b"END\r\n"),
                                 b"VALUE %s %d %d\r\n%s\r\nEND\r\n" % (k.encode(), j, len(v), v))
            # a multi-key get that spans both servers
            out = g.text_cmd(s, b"get " + " ".join(keys).encode() + b"\r\n", b"END\r\n")
            for j, k in enumerate(keys):
                v = ("value-of-" + k).encode()
                self.assertIn(b"VALUE %s %d %d\r\n%s\r\n" % (k.encode(), j, len(v), v), out)
            self.assertEqual(out.count(b"VALUE "), N)
            # incr and delete through the proxy
            self.assertEqual(g.text_cmd(s, b"set ctr 0 0 1\r\n5\r\n"), b"STORED\r\n")
            self.assertEqual(g.text_cmd(s, b"incr ctr 10\r\n"), b"15\r\n")
            self.assertEqual(g.text_cmd(s, b"delete ctr\r\n"), b"DELETED\r\n")
            self.assertEqual(g.text_cmd(s, b"get ctr\r\n", b"END\r\n"), b"END\r\n")

        # spread: ask each server directly
        na = int(a.stats()["curr_items"])
        nb = int(b.stats()["curr_items"])
        print("keys on server A: %d, on server B: %d" % (na, nb))
        self.assertGreater(na, 0)
        self.assertGreater(nb, 0)
        self.assertEqual(na + nb, N)
        self.assertGreater(min(na, nb), N * 15 // 100, "ketama with equal weights")
        where = {}
        for srv, name in ((a, "A"), (b, "B")):
            with g.connect(srv.port) as s:
                out = g.text_cmd(s, b"get " + " ".join(keys).encode() + b"\r\n", b"END\r\n")
            for k in keys:
                if b"VALUE %s " % k.encode() in out:
                    self.assertNotIn(k, where, "key on both servers")
                    where[k] = name
        self.assertEqual(len(where), N)


if __name__ == "__main__":
    g.main()
