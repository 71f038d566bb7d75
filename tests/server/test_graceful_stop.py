"""Graceful stop: a client pipelines many GETs of large values and reads
slowly; SIGTERM arrives meanwhile. The client still receives every response
complete, then EOF; new connections are no longer served; the server exits
with status 0.

The server drains for at most 5 s (DRAIN_MS in server/main.c), so the slow
reader is paced to finish well within that.
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcutil as g  # noqa: E402

COUNT = 200
SIZE = 256 * 1024
NKEYS = 20          # distinct values (the store holds 20 x 256 KiB)


def value(i):
    return (b"%08d" % i) * (SIZE // 8)


class GracefulStop(g.ServerTest):
    def load(self, srv):
        with g.connect(srv.port) as s:
            for i in range(NKEYS):
                self.assertEqual(g.text_cmd(s, b"set big%d 0 0 %d\r\n" % (i, SIZE)
                                            + value(i) + b"\r\n"), b"STORED\r\n")

    def slow_read_all(self, s, srv, expect, sigterm_after):
        """Reads `expect` bytes in 64 KiB pieces with pauses; sends SIGTERM
        after `sigterm_after` bytes. Returns (bytes, got EOF, seconds after
        the signal)."""
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.settimeout(10 * g.SLOW)
        buf = bytearray()
        signalled = None
        while True:
            try:
                b = s.recv(64 * 1024)
            except ConnectionResetError:
                self.fail("connection reset after %d of %d bytes" % (len(buf), expect))
            if not b:
                return bytes(buf), True, time.monotonic() - signalled
            buf += b
            if signalled is None and len(buf) >= sigterm_after:
                srv.terminate()
                signalled = time.monotonic()
                # the listener goes away; a new client gets no service
                time.sleep(0.05)
                self.assertTrue(new_conn_refused(srv.port))
            time.sleep(0.002)      # slow reader: ~64 KiB per 2 ms at most
            if len(buf) > expect + 1024:
                self.fail("more bytes than expected")

    def test_text_slow_reader(self):
        srv = self.server("-t", "2")
        self.load(srv)
        s = g.connect(srv.port)
        s.sendall(b"".join(b"get big%d\r\n" % (i % NKEYS) for i in range(COUNT)))
        one = len(b"VALUE big0 0 %d\r\n" % SIZE) + SIZE + 2 + 5
        expect = sum(one + (1 if i % NKEYS >= 10 else 0) for i in range(COUNT))
        time.sleep(0.2 * g.SLOW)   # let the server read the whole pipeline
        data, eof, secs = self.slow_read_all(s, srv, expect, expect // 10)
        s.close()
        self.assertTrue(eof)
        self.assertEqual(len(data), expect, "bytes received before EOF")
        pos = 0
        for i in range(COUNT):
            k = i % NKEYS
            hdr = b"VALUE big%d 0 %d\r\n" % (k, SIZE)
            self.assertEqual(data[pos:pos + len(hdr)], hdr, "response %d" % i)
            pos += len(hdr)
            self.assertTrue(data[pos:pos + SIZE] == value(k), "value %d corrupted" % i)
            pos += SIZE
            self.assertEqual(data[pos:pos + 7], b"\r\nEND\r\n")
            pos += 7
        print("all %d responses (%d MiB) received, EOF %.2f s after SIGTERM"
              % (COUNT, len(data) >> 20, secs))
        srv.stop()   # waits for the exit: status 0, clean stderr

    def test_binary_slow_reader(self):
        srv = self.server("-t", "2")
        self.load(srv)
        s = g.connect(srv.port)
        s.sendall(b"".join(g.bin_req(0x00, b"big%d" % (i % NKEYS), opaque=i)
                           for i in range(COUNT)) + g.bin_req(0x0A, opaque=COUNT))
        expect = COUNT * (24 + 4 + SIZE) + 24
        time.sleep(0.2 * g.SLOW)
        data, eof, secs = self.slow_read_all(s, srv, expect, expect // 10)
        s.close()
        self.assertTrue(eof)
        self.assertEqual(len(data), expect, "bytes received before EOF")
        pk, rest = g.parse_bin(data)
        self.assertEqual(rest, b"")
        self.assertEqual([p.opaque for p in pk], list(range(COUNT + 1)))
        for i, p in enumerate(pk[:COUNT]):
            self.assertEqual(p.status, 0)
            self.assertTrue(p.value == value(i % NKEYS), "value %d corrupted" % i)
        print("all %d responses received, EOF %.2f s after SIGTERM" % (COUNT, secs))
        srv.stop()   # waits for the exit: status 0, clean stderr


def new_conn_refused(port):
    """True when a new connection is refused, or accepted and closed without
    service (a 'version' request gets no answer)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), 2)
    except ConnectionRefusedError:
        return True
    try:
        s.sendall(b"version\r\n")
        return g.is_closed(s, 2)
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        s.close()


if __name__ == "__main__":
    g.main()
