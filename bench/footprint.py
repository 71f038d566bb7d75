#!/usr/bin/python3
"""bench/footprint.py — resident bytes per item and per idle connection,
geecached (epoll and io_uring) against memcached, measured the same way.

Per item: a fresh server; RSS after one connection has said "version";
then geecache-bench --prefill stores ITEMS items (12-byte keys, 32-byte
values by default: the issue's 1M x 12 B / 32 B); `stats` must show them
all (curr_items); RSS again. (RSS1 - RSS0) / ITEMS.

Per idle connection: a fresh server holding one 32-byte item; WARM (1000)
connections each GET it and close (pools and per-thread caches reach their
working size); RSS0; CONNS connections open, each GETs the item (a hit, so
the reply path ran) and stays open; `stats` must show them
(curr_connections); RSS1. (RSS1 - RSS0) / CONNS. No item is added in this
phase, so the figure is the connections' own.

Every measurement runs ROUNDS times on fresh servers, the servers taking
turns; the medians are printed as a table (and --json). RSS is VmRSS of
/proc/PID/status. Kernel socket memory is not in RSS for either server.

  bench/footprint.py [--geecached build/geecached] [--memcached memcached]
                     [--rounds 3] [--items 1000000] [--conns 10000]
                     [--value 32] [--warm 1000] [--only KINDS] [--json FILE]
"""
import argparse
import json
import os
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS for pid %d" % pid)


def cmd(sock, line, until):
    sock.sendall(line)
    buf = b""
    while not buf.endswith(until):
        b = sock.recv(65536)
        if not b:
            raise RuntimeError("server closed the connection")
        buf += b
    return buf


def stats(port):
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        out = cmd(s, b"stats\r\n", b"END\r\n")
    return dict(l.split(" ", 2)[1:3] for l in out.decode().splitlines()
                if l.startswith("STAT "))


class Server:
    def __init__(self, kind, args):
        self.kind = kind
        self.port = free_port()
        if kind == "memcached":
            argv = [args.memcached, "-u", "root", "-t", "2", "-m", str(args.memory),
                    "-c", str(args.conns + 1000), "-U", "0",
                    "-l", "127.0.0.1", "-p", str(self.port)]
        else:
            argv = [args.geecached, "--backend", kind.split("-")[1], "-t", "2",
                    "-m", str(args.memory), "-c", str(args.conns + 1000),
                    "-l", "127.0.0.1", "-p", str(self.port)]
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1) as s:
                    cmd(s, b"version\r\n", b"\r\n")
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("%s did not start: %s" % (kind, " ".join(argv)))
                time.sleep(0.05)

    def rss(self):
        time.sleep(0.5)  # let the last replies' buffers go back
        return rss(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def per_item(kind, args):
    srv = Server(kind, args)
    try:
        r0 = srv.rss()
        subprocess.run([args.bench, "-H", "127.0.0.1", "-p", str(srv.port),
                        "-k", str(args.items), "-v", str(args.value), "-n", "1", "-g", "1",
                        "--prefill"], check=True, stdout=subprocess.DEVNULL)
        n = int(stats(srv.port)["curr_items"])
        if n != args.items:
            raise RuntimeError("%s holds %d items of %d (raise --memory)" % (kind, n, args.items))
        return (srv.rss() - r0) / args.items
    finally:
        srv.stop()


def get_all(socks, want):
    """Every socket sends a GET at once; every answer is read and checked."""
    for s in socks:
        s.sendall(b"get fp:item\r\n")
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        bufs[s.fileno()] = bytearray()
    left, deadline = len(socks), time.monotonic() + 120
    while left:
        if time.monotonic() > deadline:
            raise RuntimeError("%d connections unanswered" % left)
        for key, _ in sel.select(1.0):
            b = key.fileobj.recv(4096)
            if not b:
                raise RuntimeError("connection closed by the server")
            buf = bufs[key.fd]
            buf += b
            if len(buf) >= len(want):
                if bytes(buf) != want:
                    raise RuntimeError("wrong reply %r" % bytes(buf[:80]))
                sel.unregister(key.fileobj)
                left -= 1
    sel.close()


def open_conns(port, n):
    return [socket.create_connection(("127.0.0.1", port), 10) for _ in range(n)]


def per_conn(kind, args):
    srv = Server(kind, args)
    try:
        value = b"v" * args.value
        with socket.create_connection(("127.0.0.1", srv.port), 10) as s:
            cmd(s, b"set fp:item 0 0 %d\r\n%s\r\n" % (len(value), value), b"\r\n")
        want = b"VALUE fp:item 0 %d\r\n%s\r\nEND\r\n" % (len(value), value)
        warm = open_conns(srv.port, args.warm)
        get_all(warm, want)
        for s in warm:
            s.close()
        r0 = srv.rss()
        socks = open_conns(srv.port, args.conns)
        get_all(socks, want)
        deadline = time.monotonic() + 30
        while int(stats(srv.port)["curr_connections"]) < args.conns + 1:
            if time.monotonic() > deadline:
                raise RuntimeError("%s: connections not all counted" % kind)
            time.sleep(0.1)
        per = (srv.rss() - r0) / args.conns
        for s in socks:
            s.close()
        return per
    finally:
        srv.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--geecached", default=os.path.join(ROOT, "build", "geecached"))
    ap.add_argument("--memcached", default=shutil.which("memcached") or "")
    ap.add_argument("--bench", default=os.path.join(ROOT, "build", "geecache-bench"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--items", type=int, default=1000000)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--value", type=int, default=32)
    ap.add_argument("--memory", type=int, default=1024, help="-m for every server (MiB)")
    ap.add_argument("--warm", type=int, default=1000,
                    help="connections that GET and close before RSS0 (see the top)")
    ap.add_argument("--only", help="comma-separated subset of: "
                    "geecached-epoll,geecached-io_uring,memcached")
    ap.add_argument("--json", help="write the per-round figures and medians here")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.conns + 1024
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            if os.geteuid() != 0:
                sys.exit("footprint.py: --conns %d needs %d file descriptors; the hard "
                         "limit is %d (ulimit -Hn, or run as root)" % (args.conns, want, hard))
            hard = want
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    known = ["geecached-epoll", "geecached-io_uring", "memcached"]
    kinds = known[:2]
    if args.memcached:
        kinds.append("memcached")
    else:
        print("footprint.py: no memcached; measuring geecached only", file=sys.stderr)
    if args.only:
        only = args.only.split(",")
        bad = [k for k in only if k not in known]
        if bad:
            sys.exit("footprint.py: --only: unknown %s (one of %s)" % (",".join(bad), ",".join(known)))
        kinds = [k for k in kinds if k in only]
    res = {k: {"item": [], "conn": []} for k in kinds}
    for r in range(args.rounds):
        order = kinds if r % 2 == 0 else kinds[::-1]
        for k in order:
            res[k]["item"].append(per_item(k, args))
            res[k]["conn"].append(per_conn(k, args))
            print("round %d  %-19s %7.1f B/item  %6.0f B/idle connection"
                  % (r + 1, k, res[k]["item"][-1], res[k]["conn"][-1]), flush=True)
    print()
    print("| server | resident bytes per item (%d items, 12 B keys, %d B values) "
          "| resident bytes per idle connection (%d connections) |"
          % (args.items, args.value, args.conns))
    print("|---|---:|---:|")
    for k in kinds:
        res[k]["median_item"] = statistics.median(res[k]["item"])
        res[k]["median_conn"] = statistics.median(res[k]["conn"])
        print("| %s | %.1f (%s) | %.0f (%s) |" % (
            k, res[k]["median_item"], " ".join("%.1f" % x for x in res[k]["item"]),
            res[k]["median_conn"], " ".join("%.0f" % x for x in res[k]["conn"])))
    print("\nmedians over %d rounds; each round's figures in brackets" % args.rounds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "args": vars(args), "results": res}, f, indent=1)


if __name__ == "__main__":
    main()
