"""memcslap (libmemcached-tools) --binary: a set run and a get run complete,
and the server's counters grew by what they did."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcutil as g  # noqa: E402

CONC = 2      # threads
EXEC = 300    # operations per thread (the get run first loads EXEC keys)


def counters(srv):
    st = srv.stats()
    return {k: int(st[k]) for k in ("cmd_set", "cmd_get", "get_hits", "get_misses",
                                    "curr_items")}


class Memcslap(g.ServerTest):
    def slap(self, srv, test):
        tool = g.need_tool("memcslap")
        r = subprocess.run([tool, "--binary", "-s", srv.addr, "-t", test,
                            "--concurrency", str(CONC), "--execute-number", str(EXEC)],
                           capture_output=True, text=True, timeout=120 * g.SLOW)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, "memcslap -t %s failed:\n%s" % (test, out))
        self.assertIn("Time to %s" % test, out, out)
        return out

    def test_binary_set_then_get(self):
        srv = self.server()
        c0 = counters(srv)
        self.slap(srv, "set")
        c1 = counters(srv)
        self.assertEqual(c1["cmd_set"] - c0["cmd_set"], CONC * EXEC)
        self.assertEqual(c1["cmd_get"], c0["cmd_get"])
        self.assertGreater(c1["curr_items"], 0)
        self.slap(srv, "get")
        c2 = counters(srv)
        # the get run loads EXEC keys, then each thread gets EXEC of them
        self.assertEqual(c2["cmd_set"] - c1["cmd_set"], EXEC)
        self.assertEqual(c2["cmd_get"] - c1["cmd_get"], CONC * EXEC)
        self.assertEqual(c2["get_hits"] - c1["get_hits"], CONC * EXEC)
        self.assertEqual(c2["get_misses"], c1["get_misses"])


if __name__ == "__main__":
    g.main()
