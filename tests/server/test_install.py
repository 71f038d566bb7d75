"""Install: `cmake --install` of the server component puts geecached, its
man page and the systemd unit with its /etc/default file under a prefix;
the man page lists every option of --help and renders (groff, man -l);
systemd-analyze verifies the unit; cpack makes a .deb that dpkg-deb reads.
Each tool that is missing skips its part. Works on the build tree the
binary sits in (CMAKE_BINARY_DIR), with no second build.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcutil as g  # noqa: E402


def run(*argv, **kw):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120, **kw)


class Install(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.build = os.path.dirname(g.GEECACHED)
        if not os.path.exists(os.path.join(cls.build, "cmake_install.cmake")):
            raise unittest.SkipTest("the binary is not in a CMake build tree")
        cls.tmp = tempfile.mkdtemp()
        cls.prefix = os.path.join(cls.tmp, "prefix")
        p = run("cmake", "--install", cls.build, "--prefix", cls.prefix,
                "--component", "server")
        if p.returncode:
            raise AssertionError("cmake --install failed:\n%s%s" % (p.stdout, p.stderr))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def path(self, rel):
        p = os.path.join(self.prefix, rel)
        self.assertTrue(os.path.exists(p), "not installed: %s" % rel)
        return p

    def test_files(self):
        self.assertTrue(os.access(self.path("bin/geecached"), os.X_OK))
        self.path("share/man/man1/geecached.1")
        self.path("lib/systemd/system/geecached.service")
        with open(self.path("etc/default/geecached")) as f:
            self.assertIn("GEECACHED_OPTS=", f.read())

    def test_man_page_lists_every_option(self):
        with open(self.path("share/man/man1/geecached.1")) as f:
            man = f.read()
        self.assertEqual(man, run(g.GEECACHED, "--help-man").stdout)
        helptext = run(g.GEECACHED, "--help").stdout
        longs = re.findall(r"--([a-z][a-z-]+)", helptext)
        self.assertGreater(len(longs), 10)
        for name in longs:
            self.assertIn("\\fB\\-\\-%s\\fR" % name.replace("-", "\\-"), man, name)
        for short in re.findall(r"^\s+-([A-Za-z]),", helptext, re.M):
            self.assertIn("\\fB\\-%s\\fR" % short, man, short)
        for word in ("SIGHUP", "SIGUSR1", "TLS"):
            self.assertIn(word, man)

    def test_man_page_renders(self):
        page = self.path("share/man/man1/geecached.1")
        if shutil.which("groff"):
            p = run("groff", "-man", "-Tutf8", "-ww", "-z", page)
            self.assertEqual((p.returncode, p.stderr), (0, ""))
        if shutil.which("man"):
            p = run("man", "-l", page, env=dict(os.environ, MANPAGER="cat", PAGER="cat",
                                                 MANWIDTH="80"))
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("--auth-file", p.stdout.replace("\u2010", "-"))
        if not shutil.which("groff") and not shutil.which("man"):
            self.skipTest("neither groff nor man installed")

    def test_systemd_unit(self):
        with open(self.path("lib/systemd/system/geecached.service")) as f:
            unit = f.read()
        for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                     "ProtectHome=yes", "PrivateDevices=yes", "DynamicUser=yes",
                     "ExecReload=/bin/kill -HUP $MAINPID"):
            self.assertIn(line + "\n", unit)
        self.assertRegex(unit, r"EnvironmentFile=-/\S+/default/geecached\n")
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze not installed")
        # Verified with ExecStart pointing at this build's binary (the unit
        # names the install prefix's).
        d = os.path.join(self.tmp, "unit")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "geecached.service"), "w") as f:
            f.write(re.sub(r"(?m)^ExecStart=\S+", "ExecStart=" + g.GEECACHED, unit))
        p = run("systemd-analyze", "verify", "--man=no", os.path.join(d, "geecached.service"))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_deb(self):
        if not shutil.which("cpack") or not shutil.which("dpkg-deb"):
            self.skipTest("cpack or dpkg-deb not installed")
        out = os.path.join(self.tmp, "deb")
        p = run("cpack", "-G", "DEB", "-B", out, cwd=self.build)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        debs = [f for f in os.listdir(out) if f.endswith(".deb")]
        self.assertEqual(len(debs), 1, debs)
        deb = os.path.join(out, debs[0])
        files = run("dpkg-deb", "-c", deb).stdout
        for rel in ("bin/geecached", "share/man/man1/geecached.1",
                    "lib/systemd/system/geecached.service", "default/geecached"):
            self.assertIn(rel, files)
        self.assertNotIn("include/", files)  # the library's component stays out
        info = run("dpkg-deb", "-I", deb).stdout
        self.assertIn("Package: geecached", info)
        self.assertIn("conffiles", info)


if __name__ == "__main__":
    g.main()
