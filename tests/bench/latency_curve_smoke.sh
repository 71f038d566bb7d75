#!/usr/bin/env bash
# bench/latency_curve.sh end to end at two tiny rates (compare.sh --smoke:
# 1 round of 1 s, 1000 keys, 4 connections): both servers answer every
# request without errors at each rate (compare.sh's status), and the table
# has one row per rate, each showing the rate offered and delivered. No
# timing is asserted. Exit 77 (skip) when memcached is not installed.
#   tests/bench/latency_curve_smoke.sh GEECACHED BENCH OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
gc=$1 bench=$2 out=$3
rm -rf "$out"
rc=0
bash "$here/../../bench/latency_curve.sh" --geecached "$gc" --rates 2000,3000 \
	--out-dir "$out" --plot -- --smoke --bench "$bench" --alloccount none || rc=$?
((rc == 0)) || exit "$rc"
for r in 2000 3000; do
	# | offered | geecached delivered | memcached delivered | ...: both within 10%
	row=$(grep -E "^\| $r \|" "$out/curve.md") || { echo "no row for $r req/s" >&2; exit 1; }
	IFS='|' read -r _ off gd md _ <<<"$row"
	for d in $gd $md; do
		if ((d * 10 < off * 9 || d * 10 > off * 11)); then
			echo "rate $r: delivered $d req/s" >&2
			exit 1
		fi
	done
done
if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
	grep -q "<svg" "$out/curve.svg" || { echo "no chart" >&2; exit 1; }
fi
echo "latency_curve smoke: ok"
