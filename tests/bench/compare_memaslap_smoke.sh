#!/usr/bin/env bash
# bench/compare.sh --client memaslap end to end, briefly (--smoke: 1 round
# of 1 s, 4 connections), once on the binary protocol with one memaslap
# thread and once on text with two: both servers answer, each counts the
# requests memaslap completed (compare.sh's own check), and the summary
# has the per-round table with memaslap in its client column and three
# ratios that parse as positive numbers. No figure is asserted. Exit 77
# (skip) when memcached or memaslap is not installed.
#   tests/bench/compare_memaslap_smoke.sh GEECACHED OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
gc=$1 out=$2
rm -rf "$out"
for shape in "binary 1" "text 2"; do
	read -r proto threads <<<"$shape"
	dir=$out/$proto
	rc=0
	bash "$here/../../bench/compare.sh" --smoke --client memaslap --geecached "$gc" \
		--alloccount none --ms-proto "$proto" --ms-threads "$threads" \
		--out-dir "$dir" >"$out.$proto.log" 2>&1 || rc=$?
	((rc == 77)) && { cat "$out.$proto.log"; exit 77; }
	cat "$out.$proto.log"
	((rc == 0)) || { echo "compare.sh --client memaslap ($proto) failed ($rc)"; exit 1; }
	/usr/bin/python3 - "$dir" "$proto" "$threads" <<'PY'
import json, os, sys
d, proto, threads = sys.argv[1:]
rows = [l for l in open(os.path.join(d, "summary.md")) if l.startswith("| memaslap")]
per_round = [l for l in rows if l.split("|")[2].strip().isdigit()]
medians = [l for l in rows if "median of ratios" in l]
assert per_round and medians, "no per-round or median row for memaslap:\n" + "".join(rows)
want = "memaslap -T %s -c 4 %s 32 B" % (threads, proto)
assert all(l.split("|")[1].strip() == want for l in rows), "client column is not '%s'" % want
cells = [c.strip().strip("*") for c in medians[0].split("|")[1:-1]]
ratios = [float(c) for c in cells[2:] if c]
assert len(ratios) == 3 and all(r > 0 for r in ratios), "ratios: %r" % cells
res = json.load(open(os.path.join(d, "results.json")))
assert res["meta"]["client"] == "memaslap"
for r in res["runs"]:
    assert r["bench"]["requests"] > 0 and r["server_requests"] > 0, r
print("compare memaslap smoke (%s, -T %s): ok, ratios %s" % (proto, threads, ratios))
PY
done
