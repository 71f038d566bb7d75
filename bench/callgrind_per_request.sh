#!/usr/bin/env bash
# bench/callgrind_per_request.sh — geecached's user-space instructions per
# request, counted (valgrind --tool=callgrind), not timed: the figure that
# does not move with this machine's noise.
#
# Runs geecached -t 1 under callgrind twice, serving N1 and then N2
# requests of the same closed-loop workload (20 connections, pipeline 1,
# 90 % GET over 2000 prefilled keys), and prints
# (instructions of run N2 - instructions of run N1) / (N2 - N1): start-up,
# prefill and shutdown cancel out. Also prints the block pool's frees per
# request (callgrind's call count of block_free, the same difference).
#
#   bench/callgrind_per_request.sh BIN [VALUE_BYTES] [BACKEND] [N1] [N2]
#   bench/callgrind_per_request.sh build/geecached 32 io_uring
#
# Defaults: 32-byte values, io_uring, N1 = 20000, N2 = 60000. A Release
# build with symbols is best (the function names in the .out files).
# The workload's shape can be set with CONNS, PIPELINE, GETS and KEYS
# (defaults 20, 1, 0.9, 2000): issue #16's "batches of 16" is
#   CONNS=1 PIPELINE=16 GETS=1 KEYS=16 bench/callgrind_per_request.sh BIN 262144 epoll
# Output files stay in a temporary directory, named on the last line.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bin=${1:?usage: bench/callgrind_per_request.sh BIN [VALUE] [BACKEND] [N1] [N2]}
value=${2:-32} backend=${3:-io_uring} n1=${4:-20000} n2=${5:-60000}
bench=$(dirname "$bin")/geecache-bench
command -v valgrind >/dev/null || { echo "valgrind not installed" >&2; exit 77; }
dir=$(mktemp -d /tmp/callgrind.XXXXXX)
port=$(free_port)
wl=(-c "${CONNS:-20}" -d "${PIPELINE:-1}" -g "${GETS:-0.9}" -v "$value" -k "${KEYS:-2000}")

run() { # N -> "instructions frees"
	local n=$1 out=$dir/cg.$1
	valgrind --tool=callgrind --callgrind-out-file="$out" \
		"$bin" -t 1 --backend "$backend" -m 256 -p "$port" -l 127.0.0.1 >/dev/null 2>&1 &
	local pid=$!
	for _ in $(seq 100); do
		sleep 0.2
		"$bench" -p "$port" -c 1 -n 1 -k 1 >/dev/null 2>&1 && break
	done
	"$bench" -p "$port" "${wl[@]}" --prefill -n 1 >/dev/null
	"$bench" -p "$port" "${wl[@]}" -n "$n" >/dev/null
	kill -INT "$pid"
	wait "$pid" || true
	local total frees
	total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
	frees=$(callgrind_annotate --tree=caller "$out" 2>/dev/null |
		grep -B3 -E '\*  [^ ]*:block_free \[' | grep -oE '\(([0-9,]+)x\)' | tr -d '(),x' |
		paste -sd+ | bc)
	echo "$total ${frees:-0}"
}
read -r i1 f1 < <(run "$n1")
read -r i2 f2 < <(run "$n2")
awk -v i1="$i1" -v i2="$i2" -v f1="$f1" -v f2="$f2" -v n="$((n2 - n1))" \
	-v b="$bin" -v v="$value" -v be="$backend" 'BEGIN {
	printf "%s, %s B values, %s: %.0f instructions per request, %.1f block frees per request\n",
		b, v, be, (i2 - i1) / n, (f2 - f1) / n }'
echo "(callgrind outputs: $dir)"
