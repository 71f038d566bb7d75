#!/usr/bin/env bash
# bench/why_clients.sh end to end, briefly (--smoke: 1 round of 1 s
# windows, 1000 keys, no perf record), one geecache-bench shape and, when
# memaslap is installed, one memaslap shape, against geecached (auto and
# epoll) and memcached: every run is served, and the summary has one row
# per shape and server whose request rate, requests per sleep and CPU per
# request parse as positive numbers, and syscalls per request too when a
# counter (perf or strace) ran. No figure is asserted. Exit 77 (skip) when
# memcached is not installed.
#   tests/bench/why_clients_smoke.sh GEECACHED BENCH OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../../bench/lib.sh"
gc=$1 bench=$2 out=$3
rm -rf "$out"
shapes=gb/t1/c4/bin/32
[[ -n $(memaslap_bin) ]] && shapes+=,ms/t1/c4/text/32
rc=0
bash "$here/../../bench/why_clients.sh" --smoke --geecached "$gc" --bench "$bench" --shapes "$shapes" \
	--out-dir "$out" >"$out.log" 2>&1 || rc=$?
cat "$out.log"
((rc == 77)) && exit 77
((rc == 0)) || { echo "why_clients.sh failed ($rc)"; exit 1; }
/usr/bin/python3 - "$out" "$shapes" <<'PY'
import json, os, sys
d, shapes = sys.argv[1], sys.argv[2].split(",")
lines = [l for l in open(os.path.join(d, "summary.md")) if l.startswith("| ")]
head = [c.strip() for c in lines[0].split("|")[1:-1]]
rows = {}
for l in lines[1:]:  # (the |---| row does not start with "| ")
    cells = [c.strip() for c in l.split("|")[1:-1]]
    rows[(cells[0], cells[1])] = dict(zip(head, cells))
counter = json.load(open(os.path.join(d, "meta.json")))["counter"]
for shape in shapes:
    for sv in ("geecached auto", "geecached epoll", "memcached"):
        r = rows.get((shape, sv))
        assert r, "no row for %s %s" % (shape, sv)
        for col in ("req/s", "req per sleep", "CPU µs") + (("syscalls",) if counter != "none" else ()):
            assert float(r[col]) > 0, "%s %s: %s = %r" % (shape, sv, col, r[col])
print("why_clients smoke: ok (%d rows, counter %s)" % (len(rows), counter))
PY
