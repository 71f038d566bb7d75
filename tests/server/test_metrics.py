"""/metrics: Prometheus text exposition over HTTP.

Every line is checked against the text format (version 0.0.4): HELP and
TYPE comments, sample lines with a valid metric name, optional labels and a
numeric value; one TYPE (and at most one HELP) per family, before its
samples; a family's samples together; no sample twice. Known metrics move
(cmd_get after gets, items after sets, connections); another path is 404,
another method 405; two requests travel on one kept-alive connection.
"""
import http.client
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcutil as g  # noqa: E402

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"'
SAMPLE = re.compile(r"^(%s)(\{(?:%s(?:,%s)*,?)?\})? (\S+)(?: (-?\d+))?$" % (NAME, LABEL, LABEL))
HELP = re.compile(r"^# HELP (%s) (.*)$" % NAME)
TYPE = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % NAME)
SUFFIXES = ("_bucket", "_sum", "_count")


def parse_exposition(tc, text):
    """Checks text line by line; returns {(name, labels): value} and
    {family: type}."""
    tc.assertTrue(text.endswith("\n"), "the exposition must end with a newline")
    types, helps, samples = {}, {}, {}
    seen_families = []     # in order of first sample
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d: %r" % (n, line)
        tc.assertNotIn("\r", line, where)
        if line.startswith("#"):
            m = HELP.match(line)
            if m:
                tc.assertNotIn(m.group(1), helps, "second HELP, " + where)
                tc.assertNotIn(m.group(1), seen_families, "HELP after samples, " + where)
                tc.assertTrue(m.group(2).strip(), "empty HELP, " + where)
                helps[m.group(1)] = m.group(2)
                continue
            m = TYPE.match(line)
            tc.assertTrue(m, "a comment that is neither HELP nor TYPE, " + where)
            tc.assertNotIn(m.group(1), types, "second TYPE, " + where)
            tc.assertNotIn(m.group(1), seen_families, "TYPE after samples, " + where)
            types[m.group(1)] = m.group(2)
            continue
        tc.assertTrue(line, "empty line inside the exposition, " + where)
        m = SAMPLE.match(line)
        tc.assertTrue(m, "not a sample line, " + where)
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        try:
            v = float(value)
        except ValueError:
            tc.fail("value is not a number, " + where)
        tc.assertTrue(value in ("NaN", "+Inf", "-Inf") or not math.isnan(v), where)
        family = name
        if name not in types:
            for suf in SUFFIXES:
                if name.endswith(suf) and name[:-len(suf)] in types:
                    family = name[:-len(suf)]
        tc.assertIn(family, types, "sample without a TYPE, " + where)
        if seen_families and seen_families[-1] != family:
            tc.assertNotIn(family, seen_families, "family's samples not together, " + where)
        if not seen_families or seen_families[-1] != family:
            seen_families.append(family)
        if types[family] == "counter":
            tc.assertGreaterEqual(v, 0, "negative counter, " + where)
        key = (name, labels)
        tc.assertNotIn(key, samples, "sample twice, " + where)
        samples[key] = v
    for fam in types:
        tc.assertIn(fam, seen_families, "TYPE without samples: %s" % fam)
    for fam in helps:
        tc.assertIn(fam, types, "HELP without TYPE: %s" % fam)
    return samples, types


class Checker(unittest.TestCase):
    """The format checker itself rejects what it must (else the scrape
    tests would prove nothing)."""

    GOOD = ("# HELP a_total a counter\n# TYPE a_total counter\na_total 3\n"
            "# TYPE b gauge\nb{x=\"1\",y=\"a\\\"q\"} -1.5e3\nb{x=\"2\"} NaN\n")
    BAD = [
        "# TYPE a counter\na 1",                                  # no final newline
        "# TYPE a counter\na one\n",                             # not a number
        "# TYPE 1a counter\n1a 1\n",                             # bad name
        "a 1\n",                                                  # no TYPE
        "# TYPE a counter\n# TYPE a counter\na 1\n",              # TYPE twice
        "# TYPE a counter\na 1\n# TYPE a gauge\n",                # TYPE after samples
        "# TYPE a counter\n# TYPE b gauge\na 1\nb 1\na{l=\"x\"} 2\n",  # not together
        "# TYPE a counter\na 1\na 2\n",                         # sample twice
        "# TYPE a counter\na -1\n",                              # negative counter
        "# TYPE a counter\na{l=x} 1\n",                          # unquoted label
        "# TYPE a counter\n\na 1\n",                             # empty line
        "# TYPE a counter\n# a comment\na 1\n",                  # stray comment
        "# TYPE a kounter\na 1\n",                               # bad type
        "# TYPE a counter\na 1\r\n",                             # CR
        "# TYPE a counter\n",                                     # TYPE without samples
    ]

    def test_checker(self):
        parse_exposition(self, self.GOOD)
        for text in self.BAD:
            with self.subTest(text=text):
                with self.assertRaises(self.failureException):
                    parse_exposition(self, text)


class Metrics(g.ServerTest):
    def scrape(self, srv):
        url = "http://127.0.0.1:%d/metrics" % srv.metrics_port
        with urllib.request.urlopen(url, timeout=10 * g.SLOW) as r:
            self.assertEqual(r.status, 200)
            self.assertEqual(r.headers["Content-Type"], "text/plain; version=0.0.4")
            body = r.read()
            self.assertEqual(len(body), int(r.headers["Content-Length"]))
        return parse_exposition(self, body.decode("utf-8"))

    def test_backend_mode_in_stats(self):
        # io_uring says which ring set-up it got; GEECACHE_URING_SETUP
        # moves it to a fallback. epoll has none to report.
        st = self.server("-t", "1", "--backend", "epoll").stats("geecache")
        self.assertEqual(st["backend"], "epoll")
        self.assertNotIn("backend_mode", st)
        try:  # a forced backend that cannot run stops geecached at start
            st = self.server("-t", "1", "--backend", "io_uring").stats("geecache")
        except AssertionError as e:
            self.skipTest("io_uring unavailable here: %s" % e)
        self.assertIn(st["backend_mode"], ("defer_taskrun", "coop_taskrun", "plain"))
        # A value it does not know: said on stderr, and the default order kept.
        srv = self.server("-t", "1", "--backend", "io_uring",
                          env={"GEECACHE_URING_SETUP": "bogus"})
        self.assertEqual(srv.stats("geecache")["backend_mode"], st["backend_mode"])
        self.assertIn("GEECACHE_URING_SETUP=bogus is not defer, coop or plain", srv.stderr())
        for env, mode in (("coop", "coop_taskrun"), ("plain", "plain")):
            srv = self.server("-t", "1", "--backend", "io_uring",
                              env={"GEECACHE_URING_SETUP": env})
            self.assertEqual(srv.stats("geecache")["backend_mode"], mode)
            with g.connect(srv.port) as c:  # and it serves
                self.assertEqual(g.text_cmd(c, b"set k 0 0 2\r\nhi\r\n"), b"STORED\r\n")
                self.assertEqual(g.text_cmd(c, b"get k\r\n", b"END\r\n"),
                                 b"VALUE k 0 2\r\nhi\r\nEND\r\n")

    def test_scrape_parse_and_counters_move(self):
        srv = self.server("-t", "2", metrics=True)
        s0, types = self.scrape(srv)
        print("%d families, %d samples" % (len(types), len(s0)))
        self.assertGreater(len(types), 20)
        for fam, t in types.items():
            self.assertTrue(fam.startswith("geecache_"), fam)
            if t == "counter":
                self.assertTrue(fam.endswith("_total"), "counter %s without _total" % fam)
        for k in ("geecache_cache_cmd_get_total", "geecache_cache_curr_items",
                  "geecache_cache_get_hits_total", "geecache_netpoll_conns_accepted_total",
                  "geecache_uptime_seconds"):
            self.assertIn((k, ""), s0, k)
        self.assertEqual(types["geecache_cache_cmd_get_total"], "counter")
        self.assertEqual(types["geecache_cache_curr_items"], "gauge")
        self.assertTrue(any(n.startswith("geecache_bufpool_") and 'pool="net"' in lab
                            for n, lab in s0), "per-pool bufpool samples")

        with g.connect(srv.port) as c:
            for i in range(10):
                g.text_cmd(c, b"set m%d 0 0 1\r\nx\r\n" % i)
            for i in range(25):
                g.text_cmd(c, b"get m%d\r\n" % (i % 12), b"END\r\n")
            s1, _ = self.scrape(srv)
            self.assertEqual(s1[("geecache_netpoll_conns_current", "")], 1)
        d = lambda k: s1[(k, "")] - s0[(k, "")]
        self.assertEqual(d("geecache_cache_cmd_get_total"), 25)
        self.assertEqual(d("geecache_cache_get_hits_total"), 21)
        self.assertEqual(d("geecache_cache_get_misses_total"), 4)
        self.assertEqual(s1[("geecache_cache_curr_items", "")], 10)
        self.assertEqual(d("geecache_netpoll_conns_accepted_total"), 1)
        self.assertEqual(d("geecache_server_text_conns_total"), 1)
        self.assertGreater(s1[("geecache_cache_bytes_items", "")], 0)

    def test_look_ahead_at_a_batch(self):
        # io_uring shows a wait's fresh requests to the server before it
        # runs them (netpoll's on_peek), and geecached prefetches their
        # keys: bursts of GETs from many connections at once are counted
        # as peeked, and every reply is still the right one (binary GETK,
        # text multi-key get, meta get, each conn its own keys).
        srv = self.server("-t", "1", "--backend", "auto", metrics=True)
        if srv.stats("geecache")["backend"] != "io_uring":
            self.skipTest("the look ahead is io_uring's")
        conns = [g.connect(srv.port) for _ in range(16)]
        try:
            with g.connect(srv.port) as c:
                for i in range(64):
                    g.text_cmd(c, b"set p%d 0 0 %d\r\n%s\r\n" % (i, 3 + i % 5, b"v" * (3 + i % 5)))
            s0, _ = self.scrape(srv)
            for burst in range(30):
                reqs = []
                for j, c in enumerate(conns):
                    k = b"p%d" % ((burst * 16 + j) % 64)
                    k2 = b"p%d" % ((burst * 16 + j + 7) % 64)
                    if j % 3 == 0:
                        req, end = g.bin_req(0x0c, k, opaque=j), None
                    elif j % 3 == 1:
                        req, end = b"get %s nope %s\r\n" % (k, k2), b"END\r\n"
                    else:
                        req, end = b"mg %s v\r\n" % k, b"\r\n"
                    reqs.append((k, k2, req, end))
                for c, (_, _, req, _) in zip(conns, reqs):
                    c.sendall(req)
                for j, (c, (k, k2, _, end)) in enumerate(zip(conns, reqs)):
                    n = 3 + int(k[1:]) % 5
                    if end is None:
                        h = g.recv_exact(c, 24 + len(k) + 4 + n)
                        self.assertEqual(h[24 + 4:], k + b"v" * n)
                    elif j % 3 == 1:
                        n2 = 3 + int(k2[1:]) % 5
                        self.assertEqual(g.recv_until(c, end),
                                         b"VALUE %s 0 %d\r\n%s\r\nVALUE %s 0 %d\r\n%s\r\nEND\r\n"
                                         % (k, n, b"v" * n, k2, n2, b"v" * n2))
                    else:
                        want = b"VA %d\r\n%s\r\n" % (n, b"v" * n)
                        self.assertEqual(g.recv_exact(c, len(want)), want)
            s1, _ = self.scrape(srv)
        finally:
            for c in conns:
                c.close()
        peeked = s1[("geecache_netpoll_peeked_total", "")] - s0[("geecache_netpoll_peeked_total", "")]
        print("peeked %d of %d requests" % (peeked, 30 * 16))
        self.assertGreater(peeked, 0)
        self.assertLessEqual(peeked, 30 * 16)

    def test_sweep_runs_on_the_worker_pool(self):
        # The store's sweep leaves loop 0 for the worker pool (low lane):
        # its runs are counted in stats and on /metrics, and it frees what
        # expired (memcached's crawler counters, as it never read them:
        # expired_unfetched).
        srv = self.server("-t", "1", metrics=True)
        with g.connect(srv.port) as s:
            for i in range(200):
                g.text_cmd(s, b"set e%d 0 1 100\r\n%s\r\n" % (i, b"x" * 100))
        g.wait_for(lambda: int(srv.stats("geecache")["workers_completed"]) >= 3,
                   "three sweeps on the worker pool", 15)
        g.wait_for(lambda: int(srv.stats()["crawler_reclaimed"]) == 200,
                   "the sweep frees the expired items", 15)
        st = srv.stats()
        self.assertGreaterEqual(int(st["crawler_items_checked"]), 200)
        self.assertEqual(int(st["reclaimed"]), 200)
        self.assertEqual(int(st["expired_unfetched"]), 200)
        self.assertEqual(int(st["curr_items"]), 0)
        st = srv.stats("geecache")
        self.assertEqual(st["workers_threads"], "1")
        self.assertEqual(st["workers_refused"], "0")
        samples, types = self.scrape(srv)
        self.assertGreaterEqual(samples[("geecache_workers_completed_total", '{lane="low"}')], 3)
        self.assertEqual(samples[("geecache_workers_completed_total", '{lane="high"}')], 0)
        self.assertEqual(types["geecache_workers_threads"], "gauge")

    def test_paths_methods_keepalive(self):
        srv = self.server(metrics=True)
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen("http://127.0.0.1:%d/other" % srv.metrics_port,
                                   timeout=10 * g.SLOW)
        self.assertEqual(e.exception.code, 404)

        conn = http.client.HTTPConnection("127.0.0.1", srv.metrics_port, timeout=10 * g.SLOW)
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Connection"), "keep-alive")
        parse_exposition(self, r.read().decode())
        sock = conn.sock
        self.assertIsNotNone(sock, "the connection was not kept alive")
        local = sock.getsockname()
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertIs(conn.sock, sock, "a second connection was opened")
        self.assertEqual(conn.sock.getsockname(), local)
        r.read()
        conn.request("GET", "/nope")
        r = conn.getresponse()
        self.assertEqual(r.status, 404)
        r.read()
        conn.request("POST", "/metrics", body=b"x")
        r = conn.getresponse()
        self.assertEqual(r.status, 405)
        r.read()
        conn.request("GET", "/metrics", headers={"Connection": "close"})
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Connection"), "close")
        r.read()
        conn.close()   # (the raw-socket pipeline below checks the close)

        # HTTP/1.0 closes after the answer; a pipeline of two requests is
        # answered in order; an oversized head gets 431 and a close.
        with socket.create_connection(("127.0.0.1", srv.metrics_port), 10) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            data = read_to_eof(s)
            self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:100])
        with socket.create_connection(("127.0.0.1", srv.metrics_port), 10) as s:
            s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n")
            data = read_to_eof(s)
            self.assertEqual(data.count(b"HTTP/1.1 404 Not Found\r\n"), 2, data)
        with socket.create_connection(("127.0.0.1", srv.metrics_port), 10) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"x" * 20000 + b"\r\n\r\n")
            data = read_to_eof(s)
            self.assertTrue(data.startswith(b"HTTP/1.1 431 "), data[:100])


class RealTools(g.ServerTest):
    """Prometheus' own tools, where Debian's prometheus package is
    installed (CI installs it): promtool's linter, and a real Prometheus
    server scraping the endpoint and answering a query for a counter."""

    def need(self, tool):
        path = shutil.which(tool)
        if not path:
            self.skipTest("%s not installed (Debian package prometheus)" % tool)
        return path

    def test_promtool_check_metrics(self):
        promtool = self.need("promtool")
        srv = self.server("-t", "2", metrics=True)
        with g.connect(srv.port) as s:  # some traffic, so counters move
            g.text_cmd(s, b"set k 0 0 1\r\nx\r\nget k\r\n", b"END\r\n")
        url = "http://127.0.0.1:%d/metrics" % srv.metrics_port
        with urllib.request.urlopen(url, timeout=10 * g.SLOW) as r:
            body = r.read()
        p = subprocess.run([promtool, "check", "metrics"], input=body,
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, (p.stdout + p.stderr).decode())
        self.assertEqual((p.stdout + p.stderr).strip(), b"")

    def test_prometheus_scrapes_and_queries(self):
        prom = self.need("prometheus")
        srv = self.server("-t", "1", metrics=True)
        with g.connect(srv.port) as s:
            for i in range(7):
                g.text_cmd(s, b"get nosuch%d\r\n" % i, b"END\r\n")
        d = tempfile.mkdtemp(prefix="gc-prom-")
        with open(os.path.join(d, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\n"
                    "scrape_configs:\n  - job_name: geecached\n"
                    "    static_configs:\n      - targets: ['127.0.0.1:%d']\n"
                    % srv.metrics_port)
        port = g.free_port()
        p = subprocess.Popen([prom, "--config.file", os.path.join(d, "prometheus.yml"),
                              "--storage.tsdb.path", os.path.join(d, "data"),
                              "--web.listen-address", "127.0.0.1:%d" % port],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        g._procs.append(p)
        try:
            g.wait_port(port, 30, proc=p)
            q = urllib.parse.quote("geecache_cache_get_misses_total")
            url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (port, q)

            def value():
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        res = json.loads(r.read())["data"]["result"]
                except (OSError, ValueError, KeyError):
                    return None
                return int(float(res[0]["value"][1])) if res else None

            got = g.wait_for(lambda: value() == 7 and 7, "Prometheus reads get_misses 7", 60)
            self.assertEqual(got, 7)
        finally:
            p.terminate()
            p.wait(30)
            shutil.rmtree(d, ignore_errors=True)


def read_to_eof(s):
    s.settimeout(10 * g.SLOW)
    buf = b""
    while True:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            return buf
        if not b:
            return buf
        buf += b


if __name__ == "__main__":
    g.main()
