"""memcached 1.6.18's own test suite (t/*.t, Perl) against geecached.

memcached's tests can talk to a running server instead of starting their
own: with T_MEMD_USE_DAEMON=host:port, t/lib/MemcachedTest.pm's
new_memcached() connects there and ignores the arguments the test asked
for. This script

  1. fetches the suite once, from Debian's source package of memcached
     1.6.18, with a private apt state (a sources.list holding the deb-src
     twin of the machine's bookworm entry; the system's apt configuration
     is not touched), and caches it outside the build tree in
     ${XDG_CACHE_HOME:-~/.cache}/geecache/memcached-t;
  2. for each test file, starts a fresh geecached (the suite's files
     assume an empty server with zeroed counters) and runs
     `prove -v t/<file>.t` against it;
  3. exits 0 when every file run passed, 1 otherwise, and 77 (ctest's
     SKIP_RETURN_CODE) with the reason printed when the suite, apt-get,
     dpkg-source or prove cannot be had.

Usage:
  memcached_suite.py <geecached> [--all | file.t ...]

Without files it runs PASS, the files docs/protocol.md lists as passing
(the ctest entry keeps them passing); --all runs every file that can work
against a daemon and prints a table of the results, for updating the list.
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcutil as g  # noqa: E402

SKIP = 77
VERSION = "1.6.18"
# Seconds a file may take (times gcutil.SLOW): a file that waits for a
# feature geecached lacks (debugtime, lru_crawler) hangs rather than fails.
FILE_TIMEOUT = int(os.environ.get("GC_SUITE_TIMEOUT", "60"))

# Files that pass against geecached (docs/protocol.md, "memcached's test
# suite", says why each other one does not).
PASS = [
    "binary-get.t", "binary.t", "bogus-commands.t", "cas.t", "chunked-items.t",
    "evictions.t", "flags.t", "getandtouch.t", "getset.t", "incrdecr.t",
    "issue_104.t", "issue_108.t", "issue_14.t", "issue_140.t", "issue_152.t",
    "issue_183.t", "issue_192.t", "issue_260.t", "issue_29.t", "issue_3.t",
    "issue_41.t", "issue_68.t", "issue_70.t", "line-lengths.t",
    "malicious-commands.t", "misbehave.t", "multiversioning.t", "noreply.t",
    "quit.t", "refhang.t", "slabhang.t", "stats-detail.t", "strtol-testing.t",
    "touch.t",
]

# Files that cannot run against a daemon at all: they start servers with
# their own options, signal or restart them, or need features geecached
# does not build (TLS, SASL, extstore, proxy, UDP, unix sockets).
NEVER = {
    "00-startup.t", "daemonize.t", "dash-M.t", "restart.t", "shutdown.t",
    "unixsocket.t", "udp.t", "proxy.t", "binary-sasl.t", "ascii-auth.t",
    "64bit.t", "idle-timeout.t", "conn-limits.t", "maxconns.t",
    "binary-extstore.t", "chunked-extstore.t", "error-extstore.t",
    "extstore-buckets.t", "extstore-jbod.t", "extstore.t",
    "ssl_cert_refresh.t", "ssl_ports.t", "ssl_proto_version.t",
    "ssl_session_resumption.t", "ssl_settings.t", "ssl_verify_modes.t",
    "watcher.t", "watcher_connid.t", "whitespace.t",
}

# What MemcachedTest.pm's supports_*() read: `memcached-debug -h` in the
# suite's directory. The stub claims none of the optional features.
STUB = """#!/bin/sh
# Stand-in for memcached-debug: geecached's suite runner (memcached_suite.py).
echo "memcached %s (geecached under test)"
echo "-p, --port=<num>          TCP port to listen on"
exit 0
""" % VERSION


def skip(why):
    print("SKIP: memcached's test suite: %s" % why)
    sys.exit(SKIP)


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return os.path.join(base, "geecache", "memcached-t")


def deb_src_lines():
    """deb-src twins of the machine's Debian deb entries (one-line and
    deb822 formats), or []."""
    out = []
    files = ["/etc/apt/sources.list"]
    d = "/etc/apt/sources.list.d"
    if os.path.isdir(d):
        files += [os.path.join(d, f) for f in sorted(os.listdir(d))
                  if f.endswith((".list", ".sources"))]
    for f in files:
        try:
            text = open(f).read()
        except OSError:
            continue
        if f.endswith(".list"):
            for line in text.splitlines():
                t = line.split("#", 1)[0].split()
                if t and t[0] == "deb" and "debian" in line:
                    out.append("deb-src " + " ".join(t[1:]))
            continue
        for stanza in text.split("\n\n"):
            kv = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                k, v = line.split(":", 1)
                kv[k.strip().lower()] = v.strip()
            if "deb" not in kv.get("types", "").split() or "debian" not in kv.get("uris", ""):
                continue
            opt = " [signed-by=%s]" % kv["signed-by"] if "signed-by" in kv else ""
            for uri in kv["uris"].split():
                for suite in kv.get("suites", "").split():
                    out.append("deb-src%s %s %s %s" % (opt, uri, suite,
                                                       kv.get("components", "main")))
    return out


def fetch(dest):
    """Downloads and unpacks the suite into dest/src; returns why not, or
    None."""
    for tool in ("apt-get", "dpkg-source"):
        if not shutil.which(tool):
            return "%s not found" % tool
    lines = deb_src_lines()
    if not lines:
        return "no Debian apt source on this machine"
    tmp = tempfile.mkdtemp(prefix="gc-mct-")
    try:
        os.makedirs(os.path.join(tmp, "parts"))
        os.makedirs(os.path.join(tmp, "lists", "partial"))
        os.makedirs(os.path.join(tmp, "dl"))
        sl = os.path.join(tmp, "sources.list")
        with open(sl, "w") as f:
            f.write("\n".join(lines) + "\n")
        opts = ["-o", "Dir::Etc::SourceList=" + sl,
                "-o", "Dir::Etc::SourceParts=" + os.path.join(tmp, "parts"),
                "-o", "Dir::State::Lists=" + os.path.join(tmp, "lists"),
                "-o", "Debug::NoLocking=1"]
        r = subprocess.run(["apt-get"] + opts + ["update"], capture_output=True,
                           text=True, timeout=600)
        if r.returncode != 0:
            return "apt-get update failed: %s" % r.stderr.strip()[-300:]
        r = subprocess.run(["apt-get"] + opts + ["source", "--download-only",
                                                 "memcached=" + VERSION + "*"],
                           cwd=os.path.join(tmp, "dl"), capture_output=True,
                           text=True, timeout=600)
        if r.returncode != 0:
            r = subprocess.run(["apt-get"] + opts + ["source", "--download-only",
                                                     "memcached"],
                               cwd=os.path.join(tmp, "dl"), capture_output=True,
                               text=True, timeout=600)
        dscs = [f for f in os.listdir(os.path.join(tmp, "dl")) if f.endswith(".dsc")]
        if r.returncode != 0 or not dscs:
            return "apt-get source memcached failed: %s" % r.stderr.strip()[-300:]
        if not dscs[0].startswith("memcached_" + VERSION):
            return "the archive has %s, not memcached %s" % (dscs[0], VERSION)
        os.makedirs(dest, exist_ok=True)
        src = os.path.join(dest, "src")
        shutil.rmtree(src, ignore_errors=True)
        r = subprocess.run(["dpkg-source", "--skip-debianization", "-x", dscs[0], src],
                           cwd=os.path.join(tmp, "dl"), capture_output=True, text=True)
        if r.returncode != 0 or not os.path.isdir(os.path.join(src, "t")):
            return "dpkg-source -x failed: %s" % r.stderr.strip()[-300:]
        return None
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def suite():
    """The unpacked source tree holding t/, fetched if needed."""
    src = os.path.join(cache_dir(), "src")
    if not os.path.isfile(os.path.join(src, "t", "lib", "MemcachedTest.pm")):
        why = fetch(cache_dir())
        if why:
            skip(why)
    stub = os.path.join(src, "memcached-debug")
    with open(stub, "w") as f:
        f.write(STUB)
    os.chmod(stub, 0o755)
    return src


def run_file(src, name):
    """Runs one file against a fresh geecached; (passed, output)."""
    srv = g.Server("-t", "2", "-m", "64", "-I", "1m")
    try:
        env = dict(os.environ, T_MEMD_USE_DAEMON="127.0.0.1:%d" % srv.port)
        try:
            r = subprocess.run(["prove", "-v", os.path.join("t", name)], cwd=src, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=FILE_TIMEOUT * g.SLOW)
            out, ok = r.stdout, r.returncode == 0
        except subprocess.TimeoutExpired as e:
            out, ok = (e.stdout or b"").decode(errors="replace") + "\n<timeout>", False
        if not srv.alive():
            ok = False
            out += "\n<geecached died>\n" + srv.stderr()
    finally:
        try:
            srv.stop()
        except AssertionError as e:  # exit status or sanitizer report
            ok = False
            out += "\n<geecached stop: %s>" % e
    return ok, out


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    g.GEECACHED = os.path.abspath(sys.argv[1])
    if not shutil.which("prove"):
        skip("prove (Debian package perl) not found")
    src = suite()
    args = sys.argv[2:]
    if args == ["--all"]:
        files = sorted(f for f in os.listdir(os.path.join(src, "t"))
                       if f.endswith(".t") and f not in NEVER)
    else:
        files = args or PASS
    failed = []
    for name in files:
        ok, out = run_file(src, name)
        if not ok:
            failed.append(name)
        if not ok or os.environ.get("VERBOSE"):
            print(out)
        print("%-28s %s" % (name, "ok" if ok else "FAIL"), flush=True)
    print("%d of %d files passed" % (len(files) - len(failed), len(files)))
    if failed:
        print("failed: " + " ".join(failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
