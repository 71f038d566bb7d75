"""-m auto: the store's size from the container's memory limit.

geecached reads /proc/self/cgroup and /sys/fs/cgroup; the environment
variables GEECACHE_PROC_CGROUP and GEECACHE_CGROUP_ROOT point it at a fake
cgroup tree here. The rule (docs/server.md, "-m auto"): the smallest
memory.max of the cgroup and its ancestors (v2), else the memory cgroup's
memory.limit_in_bytes (v1); the store gets it minus max(32 MiB, a quarter),
or half of it when that leaves under 8 MiB; 64 MiB without a limit.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcutil as g  # noqa: E402

MiB = 1 << 20


class MemAutoTest(g.ServerTest):
    def tree(self, files):
        d = tempfile.mkdtemp(prefix="gc-cgroup-")
        for path, text in files.items():
            p = os.path.join(d, path)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(text)
        return d

    def start(self, files, *args):
        d = self.tree(files)
        env = {"GEECACHE_PROC_CGROUP": os.path.join(d, "proc_cgroup"),
               "GEECACHE_CGROUP_ROOT": os.path.join(d, "root")}
        return self.server("-m", "auto", *args, env=env)

    def check(self, srv, mib, source, limit):
        self.assertIn("%d MiB by -m auto: %s" % (mib, source), srv.banner)
        st = srv.stats("settings")
        self.assertEqual(st["maxbytes"], str(mib * MiB))
        self.assertEqual(st["maxbytes_source"], source)
        self.assertEqual(st["memory_limit_found"], str(limit))
        self.assertEqual(srv.stats()["limit_maxbytes"], str(mib * MiB))

    def test_cgroup2_smallest_ancestor(self):
        srv = self.start({"proc_cgroup": "0::/pod/app\n",
                          "root/pod/memory.max": "%d\n" % (512 * MiB),
                          "root/pod/app/memory.max": "max\n"})
        self.check(srv, 384, "cgroup2 memory.max", 512 * MiB)  # 512 - 128

    def test_cgroup2_own_limit_below_the_parents(self):
        srv = self.start({"proc_cgroup": "0::/pod/app\n",
                          "root/pod/memory.max": "%d\n" % (4096 * MiB),
                          "root/pod/app/memory.max": "%d\n" % (100 * MiB)})
        self.check(srv, 68, "cgroup2 memory.max", 100 * MiB)  # 100 - 32

    def test_cgroup1(self):
        srv = self.start({"proc_cgroup": "5:cpu,cpuacct:/x\n4:memory:/x\n0::/\n",
                          "root/memory/x/memory.limit_in_bytes": "%d\n" % (256 * MiB)})
        self.check(srv, 192, "cgroup1 memory.limit_in_bytes", 256 * MiB)

    def test_cgroup1_unlimited_is_no_limit(self):
        srv = self.start({"proc_cgroup": "4:memory:/x\n",
                          "root/memory/x/memory.limit_in_bytes": "9223372036854771712\n"})
        self.check(srv, 64, "no limit found", 0)

    def test_no_cgroup_at_all(self):
        srv = self.start({"unrelated": ""})
        self.check(srv, 64, "no limit found", 0)

    def test_tiny_container_gets_half(self):
        srv = self.start({"proc_cgroup": "0::/\n", "root/memory.max": "%d\n" % (20 * MiB)},
                         "-I", "1m")
        self.check(srv, 10, "cgroup2 memory.max", 20 * MiB)

    def test_item_size_checked_against_the_choice(self):
        d = self.tree({"proc_cgroup": "0::/\n", "root/memory.max": "%d\n" % (6 * MiB)})
        import subprocess
        p = subprocess.run([g.GEECACHED, "-p", "0", "-m", "auto", "-I", "2m"],
                           env=dict(os.environ, GEECACHE_PROC_CGROUP=d + "/proc_cgroup",
                                    GEECACHE_CGROUP_ROOT=d + "/root"),
                           capture_output=True, timeout=20 * g.SLOW)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"-m auto chose 3 MiB", p.stderr)


if __name__ == "__main__":
    g.main()
