"""A warm geecached makes no allocator call per request.

bufpool counts every call it makes into the system allocator (malloc for
a thread cache, mmap for a region or a huge block) and geecached reports the
sum as `allocator_calls` in stats. After a warm-up, GETs, small SETs that
overwrite existing keys, and whole new connections must not move it: read
buffers, chain nodes, connection objects and parser state all come back
from the pools. (SETs do take a new 1 MiB store segment each time one fills:
one mmap per MiB written, which the mixed phase bounds rather than forbids.)
"""
import socket
import struct

import gcutil as g

N_KEYS = 200


def bin_get(key, opaque=0):
    return g.bin_req(0x00, key, opaque=opaque)


class WarmAlloc(g.ServerTest):
    def allocs(self, srv):
        return int(srv.stats("geecache")["allocator_calls"])

    def pipeline(self, s, reqs, n_replies):
        s.sendall(b"".join(reqs))
        got = []
        while len(got) < n_replies:
            got.append(g.bin_recv(s))
        return got

    def warm(self, srv, conns):
        keys = [b"warm:%05d" % i for i in range(N_KEYS)]
        for s in conns:
            self.pipeline(s, [g.bin_set(k, b"v" * 32) for k in keys], N_KEYS)
            for _ in range(3):
                self.pipeline(s, [bin_get(k) for k in keys], N_KEYS)
        return keys

    def test_gets_and_reconnects_allocate_nothing(self):
        srv = self.server("-t", "2", "-m", "64")
        conns = [g.connect(srv.port) for _ in range(8)]
        keys = self.warm(srv, conns)
        before = self.allocs(srv)
        requests = 0
        for _ in range(10):
            for s in conns:
                got = self.pipeline(s, [bin_get(k) for k in keys], N_KEYS)
                self.assertTrue(all(r.status == 0 and r.value == b"v" * 32 for r in got))
                requests += N_KEYS
        # Whole new connections, one after another: objects come back from
        # the object pools.
        for _ in range(100):
            s = g.connect(srv.port)
            got = self.pipeline(s, [bin_get(keys[0])], 1)
            self.assertEqual(got[0].status, 0)
            s.close()
            requests += 1
        after = self.allocs(srv)
        print("warm: %d requests, allocator calls %d -> %d" % (requests, before, after))
        self.assertEqual(after, before, "allocator calls on a warm server")
        for s in conns:
            s.close()

    def test_mixed_traffic_allocates_at_most_a_segment_per_mib(self):
        srv = self.server("-t", "2", "-m", "64")
        conns = [g.connect(srv.port) for _ in range(4)]
        keys = self.warm(srv, conns)
        before = self.allocs(srv)
        written = 0
        requests = 0
        for rnd in range(20):
            for s in conns:
                reqs = []
                for i, k in enumerate(keys):
                    if i % 10 == 0:
                        reqs.append(g.bin_set(k, b"%032d" % rnd))
                        written += 64
                    else:
                        reqs.append(bin_get(k))
                self.pipeline(s, reqs, N_KEYS)
                requests += N_KEYS
        after = self.allocs(srv)
        allowed = written // (1 << 20) + 1
        print("mixed: %d requests, %d bytes written, allocator calls +%d (allowed %d)"
              % (requests, written, after - before, allowed))
        self.assertLessEqual(after - before, allowed)
        for s in conns:
            s.close()


if __name__ == "__main__":
    g.main()
