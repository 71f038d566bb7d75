"""Values trickled in pieces are held in blocks about as full as the bytes.

Eight connections each start a SET and send half of its value in pieces
spaced so that each is received on its own; while the values are
incomplete, the net pool's bytes in use (/metrics) may grow by at most 1.5
times the bytes sent. On io_uring every receive lands in a 4 KiB provided
buffer: adopting each piece's buffer held 3.7 times the bytes for 1100-byte
pieces (docs/netpoll.md, "How io_uring holds input"). Both backends; pieces
of 1100 bytes, and of sizes mixed at random (small ones after large ones
and the other way round, which leaves blocks part-empty if nothing is
copied).
"""
import os
import random
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcutil as g  # noqa: E402

CONNS = 8
VALUE = 200000  # each SET's value; half of it is sent before the check
BOUND = 1.5


def net_in_use(port):
    """The net pool's bytes_in_use, from /metrics."""
    with socket.create_connection(("127.0.0.1", port), 10 * g.SLOW) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf = bytearray()
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            buf += b
    m = re.search(rb'^geecache_bufpool_bytes_in_use\{pool="net"\} (\d+)$', bytes(buf), re.M)
    if not m:
        raise AssertionError("no net pool bytes_in_use in /metrics")
    return int(m.group(1))


class Trickle(g.ServerTest):
    def held_ratio(self, backend, sizes):
        """Starts CONNS SETs of VALUE bytes on a server of that backend,
        sends each half its value in pieces of the sizes `sizes` yields,
        and returns (net pool growth / bytes sent, bytes sent); then
        completes and checks the values."""
        srv = self.server("-t", "1", "--backend", backend, metrics=True)
        calls = [0]

        def bytes_read():
            """Bytes the server has read, less those of these calls."""
            calls[0] += 1
            return int(srv.stats()["bytes_read"]) - len(b"stats\r\n") * calls[0]

        conns = [g.connect(srv.port) for _ in range(CONNS)]
        read0 = bytes_read()
        heads = [b"set t%d 0 0 %d\r\n" % (i, VALUE) for i in range(CONNS)]
        for s, head in zip(conns, heads):
            s.sendall(head)
        g.wait_for(lambda: bytes_read() - read0 >= len(b"".join(heads)), "the SETs started")
        base = net_in_use(srv.metrics_port)
        read0 = bytes_read()
        sent = [0] * CONNS
        total = 0
        while min(sent) < VALUE // 2:
            for i, s in enumerate(conns):
                n = min(next(sizes), VALUE // 2 - sent[i])
                if n <= 0:
                    continue
                s.sendall(b"v" * n)
                sent[i] += n
                total += n
            time.sleep(0.001)  # each piece received on its own
        g.wait_for(lambda: bytes_read() - read0 >= total, "every piece read")
        grown = net_in_use(srv.metrics_port) - base
        for i, s in enumerate(conns):
            s.sendall(b"v" * (VALUE - sent[i]) + b"\r\n")
        for i, s in enumerate(conns):
            self.assertEqual(g.recv_until(s, b"\r\n"), b"STORED\r\n")
        s = conns[0]
        s.sendall(b"get t%d\r\n" % (CONNS - 1))
        self.assertEqual(g.recv_until(s, b"END\r\n"),
                         b"VALUE t%d 0 %d\r\n" % (CONNS - 1, VALUE) + b"v" * VALUE + b"\r\nEND\r\n")
        for s in conns:
            s.close()
        return grown / total, total

    def check(self, name, make_sizes):
        for backend in ("epoll", "io_uring"):
            with self.subTest(backend=backend):
                ratio, total = self.held_ratio(backend, make_sizes())
                sys.stderr.write("%s, %s: the net pool grew %.2fx the %d bytes held\n"
                                 % (backend, name, ratio, total))
                self.assertLessEqual(ratio, BOUND, "%s, %s" % (backend, name))

    def test_pieces_of_1100_bytes(self):
        def sizes():
            while True:
                yield 1100
        self.check("1100-byte pieces", sizes)

    def test_pieces_of_mixed_sizes(self):
        def sizes():
            rng = random.Random(16)
            while True:
                yield rng.choice((rng.randint(1, 600), rng.randint(1000, 2200),
                                  rng.randint(2200, 4100)))
        self.check("mixed pieces", sizes)


if __name__ == "__main__":
    g.main()
