#!/usr/bin/env bash
# bench/latency_curve.sh — latency against offered load, geecached beside
# memcached: bench/compare.sh in open loop (geecache-bench --rate) once per
# rate, each rate its own alternating rounds, then bench/plot_curve.py's
# table of medians and ratios per rate (and, with --plot, p50 and p99
# against offered load as curve.svg).
#
# One rate says little about a tail: at a light load both servers' p99 is
# the kernel's and the scheduler's; near one server's capacity its queue
# grows and the other's does not yet. The curve shows where each one bends.
#
#   bench/latency_curve.sh --geecached build/geecached --backend epoll \
#       --rates 25000,50000,100000,150000,200000 --rounds 7 --seconds 3 \
#       --out-dir /tmp/curve-epoll --plot [-- compare.sh options]
#
# Options after -- go to compare.sh (e.g. --threads 2, --preset b). The
# workload is compare.sh's preset (default a) at each rate. Exit status:
# compare.sh's first non-zero status (77 when memcached is missing), else 0.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
py=/usr/bin/python3

usage() { sed -n '2,18p' "$0"; }

geecached='' backend=epoll rates='' rounds=7 seconds=3 outdir='' plot=0
rest=()
while (($#)); do
	case $1 in
	--geecached) geecached=$2; shift 2 ;;
	--backend) backend=$2; shift 2 ;;
	--rates) rates=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--seconds) seconds=$2; shift 2 ;;
	--out-dir) outdir=$2; shift 2 ;;
	--plot) plot=1; shift ;;
	-h | --help) usage; exit 0 ;;
	--) shift; rest=("$@"); break ;;
	*) echo "latency_curve.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done
die() { echo "latency_curve.sh: $*" >&2; exit 2; }
[[ -n $geecached ]] || die "--geecached PATH is required"
[[ $rates =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
	die "--rates: comma-separated positive request rates, e.g. 50000,100000"
outdir=${outdir:-./curve-$backend-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$outdir"

IFS=, read -r -a list <<<"$rates"
for r in "${list[@]}"; do
	echo "== $r req/s offered ==" >&2
	rc=0
	bash "$here/compare.sh" --geecached "$geecached" --backend "$backend" \
		--rounds "$rounds" --seconds "$seconds" --out-dir "$outdir/rate-$r" \
		"${rest[@]}" -- -r "$r" >"$outdir/rate-$r.out" 2>&1 || rc=$?
	if ((rc)); then
		tail -5 "$outdir/rate-$r.out" >&2
		exit "$rc"
	fi
done
args=("$outdir")
if ((plot)); then
	if "$py" -c 'import matplotlib' 2>/dev/null; then
		args+=(--plot)
	else
		echo "latency_curve.sh: no chart: python3-matplotlib is not installed" >&2
	fi
fi
"$py" "$here/plot_curve.py" "${args[@]}" | tee "$outdir/curve.md"
