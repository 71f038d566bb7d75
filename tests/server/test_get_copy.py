"""How a GET reply carries its value (--copy-below).

A value shorter than --copy-below (default 1024 bytes) is copied into the
reply next to its header: one counted copy of exactly its bytes, and the
replies of a pipeline leave as one contiguous buffer instead of two iovecs
per reply. A longer value is sent from the store's memory by reference,
copying nothing. With --copy-below 0 every value goes by reference. Both
protocols, and the bytes are right either way.
"""
import gcutil as g

SIZES = (1, 32, 1023, 1024, 5000)


def stat_ints(srv, *names):
    st = srv.stats("geecache")
    return [int(st[n]) for n in names]


class GetCopy(g.ServerTest):
    def check(self, below, args):
        srv = self.server(*args)
        s = g.connect(srv.port)   # binary
        t = g.connect(srv.port)   # text (a connection keeps its protocol)
        vals = {b"k%d" % n: bytes(range(256)) * (n // 256) + bytes(n % 256)
                for n in SIZES}
        for k, v in vals.items():
            s.sendall(g.bin_set(k, v))
            self.assertEqual(g.bin_recv(s).status, 0)
        names = ("bytes_copied", "values_copied_small", "values_sent_by_ref")
        for k, v in vals.items():
            with self.subTest(below=below, size=len(v)):
                c0, small0, ref0 = stat_ints(srv, *names)
                s.sendall(g.bin_req(0x00, k))
                r = g.bin_recv(s)
                self.assertEqual((r.status, r.value), (0, v))
                t.sendall(b"get " + k + b"\r\n")
                want = b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (k, len(v), v)
                self.assertEqual(g.recv_exact(t, len(want)), want)
                c1, small1, ref1 = stat_ints(srv, *names)
                copy = len(v) < below
                self.assertEqual(c1 - c0, 2 * len(v) if copy else 0)
                self.assertEqual(small1 - small0, 2 if copy else 0)
                self.assertEqual(ref1 - ref0, 0 if copy else 2)
        self.assertEqual(int(srv.stats("settings")["value_copy_below"]), below)
        s.close()
        t.close()
        srv.stop()

    def test_default_copies_below_1024(self):
        self.check(1024, ())

    def test_copy_below_0_references_every_value(self):
        self.check(0, ("--copy-below", "0"))

    def test_copy_below_64(self):
        self.check(64, ("--copy-below", "64"))


if __name__ == "__main__":
    g.main()
