"""memccapable (libmemcached-tools) against geecached: every test of the
binary (-b) and the ASCII (-a) suites passes."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcutil as g  # noqa: E402


class Memccapable(g.ServerTest):
    def run_suite(self, flag):
        tool = g.need_tool("memccapable")
        srv = self.server()
        r = subprocess.run([tool, "-h", "127.0.0.1", "-p", str(srv.port), flag,
                            "-t", str(int(10 * g.SLOW))],
                           capture_output=True, text=True, timeout=120 * g.SLOW)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, "memccapable %s failed:\n%s" % (flag, out))
        self.assertIn("All tests passed", out, out)
        self.assertNotIn("[FAIL]", out, out)
        # Sanity: it really ran tests against this server.
        passed = out.count("[pass]")
        self.assertGreater(passed, 10, out)
        self.assertGreater(int(srv.stats()["total_connections"]), 1)
        print("memccapable %s: %d tests passed" % (flag, passed))

    def test_binary(self):
        self.run_suite("-b")

    def test_ascii(self):
        self.run_suite("-a")


if __name__ == "__main__":
    g.main()
