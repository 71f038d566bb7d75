#!/usr/bin/env bash
# Runs np_bench over the issue's matrix, alternating epoll and io_uring
# (and swapping which goes first each round), and prints per-config medians
# and the median of the per-round io_uring/epoll throughput ratios.
#   bench/netpoll/run_matrix.sh [NP_BENCH] [ROUNDS] [SECONDS]
set -euo pipefail
bin=${1:-build-bench/bench/netpoll/np_bench}
rounds=${2:-3}
secs=${3:-2}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for size in 32 1024 16384; do
  for depth in 1 16; do
    for conns in 1 50; do
      for r in $(seq 1 "$rounds"); do
        if (( r % 2 )); then order="epoll io_uring"; else order="io_uring epoll"; fi
        for b in $order; do
          "$bin" -b "$b" -n "$conns" -d "$depth" -s "$size" -T "$secs" -t 1 -c 1 -j |
            sed "s/^{/{\"round\":$r,/" >> "$out"
        done
      done
    done
  done
done
/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = sorted({(r["size"], r["depth"], r["conns"]) for r in rows})
print("| size | depth | conns | epoll frames/s | io_uring frames/s | ratio (median of rounds) | epoll p50/p99 us | io_uring p50/p99 us | syscalls/frame epoll | io_uring |")
print("|---:|---:|---:|---:|---:|---:|---|---|---:|---:|")
for k in keys:
    sel = {b: [r for r in rows if (r["size"], r["depth"], r["conns"]) == k and r["backend"] == b] for b in ("epoll", "io_uring")}
    med = lambda b, f: statistics.median(r[f] for r in sel[b])
    by_round = {}
    for b in sel:
        for r in sel[b]:
            by_round.setdefault(r["round"], {})[b] = r["frames_per_s"]
    ratios = [v["io_uring"] / v["epoll"] for v in by_round.values() if len(v) == 2]
    print(f"| {k[0]} | {k[1]} | {k[2]} | {med('epoll','frames_per_s'):.0f} | {med('io_uring','frames_per_s'):.0f} | "
          f"{statistics.median(ratios):.2f} | {med('epoll','p50_us'):.0f}/{med('epoll','p99_us'):.0f} | "
          f"{med('io_uring','p50_us'):.0f}/{med('io_uring','p99_us'):.0f} | "
          f"{med('epoll','server_syscalls_per_frame'):.3f} | {med('io_uring','server_syscalls_per_frame'):.3f} |")
PY
