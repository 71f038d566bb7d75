#!/usr/bin/env bash
# Runs np_bench over the issue's matrix, alternating the backends (and
# rotating which goes first each round), and prints per-config medians and
# the median of the per-round throughput ratios against epoll.
#   bench/netpoll/run_matrix.sh [NP_BENCH] [ROUNDS] [SECONDS]
# Backends: epoll and io_uring, and kqueue when the binary has it (a build
# with -DGEECACHE_LIBKQUEUE=ON). On Linux that kqueue is libkqueue's
# emulation over epoll, and its column says so: it measures the emulation,
# not a kernel's kqueue (docs/netpoll.md, "Running on Linux: libkqueue").
set -euo pipefail
bin=${1:-build-bench/bench/netpoll/np_bench}
rounds=${2:-3}
secs=${3:-2}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

backends=(epoll io_uring)
kq_label=kqueue
if "$bin" -b kqueue -n 1 -d 1 -s 32 -T 0.1 -t 1 -c 1 -j >/dev/null 2>&1; then
  backends+=(kqueue)
  [ "$(uname -s)" = Linux ] && kq_label="kqueue (libkqueue emulation)"
else
  echo "(no kqueue column: $bin cannot run -b kqueue; build with -DGEECACHE_LIBKQUEUE=ON)" >&2
fi

for size in 32 1024 16384; do
  for depth in 1 16; do
    for conns in 1 50; do
      for r in $(seq 1 "$rounds"); do
        # Rotate the order: each backend goes first in turn.
        n=${#backends[@]}
        for ((i = 0; i < n; i++)); do
          b=${backends[$(((i + r) % n))]}
          "$bin" -b "$b" -n "$conns" -d "$depth" -s "$size" -T "$secs" -t 1 -c 1 -j |
            sed "s/^{/{\"round\":$r,/" >> "$out"
        done
      done
    done
  done
done
/usr/bin/python3 - "$out" "$kq_label" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
label = {"epoll": "epoll", "io_uring": "io_uring", "kqueue": sys.argv[2]}
bes = [b for b in ("epoll", "io_uring", "kqueue") if any(r["backend"] == b for r in rows)]
others = [b for b in bes if b != "epoll"]
keys = sorted({(r["size"], r["depth"], r["conns"]) for r in rows})
head = ["size", "depth", "conns"]
head += ["%s frames/s" % label[b] for b in bes]
head += ["%s/epoll (median of rounds)" % label[b] for b in others]
head += ["%s p50/p99 us" % label[b] for b in bes]
head += ["syscalls/frame %s" % label[b] for b in bes]
print("| " + " | ".join(head) + " |")
print("|" + "|".join("---:" if not h.endswith("us") else "---" for h in head) + "|")
for k in keys:
    sel = {b: [r for r in rows if (r["size"], r["depth"], r["conns"]) == k and r["backend"] == b]
           for b in bes}
    med = lambda b, f: statistics.median(r[f] for r in sel[b])
    by_round = {}
    for b in bes:
        for r in sel[b]:
            by_round.setdefault(r["round"], {})[b] = r["frames_per_s"]
    def ratio(b):
        rs = [v[b] / v["epoll"] for v in by_round.values() if b in v and "epoll" in v]
        return "%.2f" % statistics.median(rs) if rs else "-"
    cells = [str(k[0]), str(k[1]), str(k[2])]
    cells += ["%.0f" % med(b, "frames_per_s") for b in bes]
    cells += [ratio(b) for b in others]
    cells += ["%.0f/%.0f" % (med(b, "p50_us"), med(b, "p99_us")) for b in bes]
    cells += ["%.3f" % med(b, "server_syscalls_per_frame") for b in bes]
    print("| " + " | ".join(cells) + " |")
PY
