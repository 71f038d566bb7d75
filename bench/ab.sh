#!/usr/bin/env bash
# bench/ab.sh — two builds (or two flag sets) of a server, side by side.
#
# Starts server A and server B on free loopback ports, prefills both, then
# runs the same geecache-bench workload against each ALTERNATELY for N
# rounds (which goes first swaps every round), and prints per round the
# requests, errors, server CPU ticks and p99 and p50 of each, then the medians of
# the per-round ratios B/A: throughput, requests per server CPU-second, p99, p50.
# This is how a change is measured on a noisy machine: only ratios within a
# round are compared. Exit status 1 when any reply was an error or wrong.
#
#   bench/ab.sh A_BIN B_BIN ROUNDS SECONDS [geecache-bench workload args]
#
# Environment: SRVARGS (flags for both servers; default "--backend io_uring
# -m 64"), AARGS / BARGS (extra flags for A / B only), BENCH (the load
# generator; default build/geecache-bench). The workload defaults to
# compare.sh's preset b (-c 50 -d 16 -g 0.9 -v 32 -k 100000).
# CLIENT=memaslap drives both with libmemcached's memaslap instead (the
# args are memaslap's, default -T 1 -c 50 -B; 16-byte keys, VALUE bytes
# (default 32), 90 % GETs; no prefill: memaslap GETs what it SET; requests
# are its ops, p99/p50 its log2 buckets). FRESH=1 starts new servers for
# every round (a store that fills and grows its tables in each).
#   AARGS="--copy-below 0" bench/ab.sh build/geecached build/geecached 6 3
#   CLIENT=memaslap FRESH=1 bench/ab.sh A B 6 5 -T 2 -c 50 -B -d 16
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
(($# >= 4)) || { sed -n '2,24p' "$0" >&2; exit 2; }
A=$1 B=$2 R=$3 S=$4
shift 4
W=("$@")
CLIENT=${CLIENT:-geecache-bench}
BENCH=${BENCH:-$here/../build/geecache-bench}
read -r -a common <<<"${SRVARGS:---backend io_uring -m 64}"
read -r -a aargs <<<"${AARGS:-}"
read -r -a bargs <<<"${BARGS:-}"
. "$here/lib.sh"
if [[ $CLIENT == memaslap ]]; then
	((${#W[@]})) || W=(-T 1 -c 50 -B)
	[[ $S =~ ^[1-9][0-9]*$ ]] || { echo "ab.sh: memaslap takes whole seconds" >&2; exit 2; }
	MS=$(memaslap_bin)
	[[ -n $MS ]] || { echo "ab.sh: SKIP: memaslap not found (Debian: libmemcached-tools)" >&2; exit 77; }
	cfg=$(mktemp)
	memaslap_cfg "$cfg" "${VALUE:-32}" 0.9
else
	((${#W[@]})) || W=(-c 50 -d 16 -g 0.9 -v 32 -k 100000)
	cfg=''
fi
ia='' ib=''
# The EXIT trap runs this again after the rounds' subshell stopped them:
# kill then finds them gone (or not yet reaped), which set -e must not
# turn into a failed run (ab_smoke failed 4 runs of 12 so).
stop_servers() {
	[[ -z $ia ]] || kill "$ia" "$ib" 2>/dev/null || true
	wait 2>/dev/null || true
	ia='' ib=''
}
start_servers() {
	pa=$(free_port) pb=$(free_port)
	"$A" "${common[@]}" "${aargs[@]}" -p "$pa" -l 127.0.0.1 >/dev/null 2>&1 & ia=$!
	"$B" "${common[@]}" "${bargs[@]}" -p "$pb" -l 127.0.0.1 >/dev/null 2>&1 & ib=$!
	sleep 0.5
	[[ $CLIENT == memaslap ]] && return
	"$BENCH" -H 127.0.0.1 -p "$pa" "${W[@]}" -T 0.2 --prefill >/dev/null
	"$BENCH" -H 127.0.0.1 -p "$pb" "${W[@]}" -T 0.2 --prefill >/dev/null
}
trap 'stop_servers; [[ -z $cfg ]] || rm -f "$cfg"' EXIT
run() { # PORT PID -> "requests errors cpu_ticks p99_us p50_us"
	local c0 c1 out f
	c0=$(cpu_ticks "$2")
	if [[ $CLIENT == memaslap ]]; then
		f=$(mktemp)
		timeout $((S + 60)) "$MS" -s "127.0.0.1:$1" -w 1k -F "$cfg" -t "${S}s" -S "${S}s" "${W[@]}" >"$f" 2>&1 || true
		out=$(memaslap_json "$f" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["requests"], 0, d["p99_us"], d["p50_us"])')
		rm -f "$f"
	else
		out=$("$BENCH" -H 127.0.0.1 -p "$1" "${W[@]}" -T "$S" --json |
			/usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["requests"], d["errors"] + d["wrong"], d["p99_us"], d["p50_us"])')
	fi
	c1=$(cpu_ticks "$2")
	set -- $out
	echo "$1 $2 $((c1 - c0)) $3 $4"
}
[[ ${FRESH:-0} == 1 ]] || start_servers
# The rounds run in a subshell (the pipe): the servers it starts are
# stopped in it.
for r in $(seq "$R"); do
	[[ ${FRESH:-0} != 1 ]] || { stop_servers; start_servers; }
	if ((r % 2)); then ra=$(run "$pa" "$ia"); rb=$(run "$pb" "$ib")
	else rb=$(run "$pb" "$ib"); ra=$(run "$pa" "$ia"); fi
	echo "$r A $ra B $rb"
	((r < R)) || stop_servers
done | /usr/bin/python3 -c '
import statistics, sys
t, c, p, m, errors = [], [], [], [], 0
print("round  A: requests errors cpu_ticks p99_us p50_us  B: requests errors cpu_ticks p99_us p50_us")
for line in sys.stdin:
    f = line.split()
    print(line.rstrip())
    ra, ca, pa, ma = int(f[2]), int(f[4]), float(f[5]), float(f[6])
    rb, cb, pb, mb = int(f[8]), int(f[10]), float(f[11]), float(f[12])
    errors += int(f[3]) + int(f[9])
    t.append(rb / ra); c.append((rb / max(cb, 1)) / (ra / max(ca, 1)))
    p.append(pb / pa); m.append(mb / ma)
print("B/A medians: throughput %.3f  requests per CPU-s %.3f  p99 %.3f  p50 %.3f" %
      (statistics.median(t), statistics.median(c), statistics.median(p), statistics.median(m)))
print("  throughput per round", " ".join("%.2f" % x for x in t))
print("  per CPU-s per round ", " ".join("%.2f" % x for x in c))
print("  p99 per round       ", " ".join("%.2f" % x for x in p))
if errors:
    sys.exit("ab.sh: %d errors or wrong replies" % errors)'
