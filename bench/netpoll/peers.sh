#!/usr/bin/env bash
# netpoll against libuv and libevent: np_bench --connect drives four
# rpc-echo servers (netpoll's rpc_echo on epoll and on io_uring, and the
# peers/ servers on libuv and libevent, 1 loop thread each, the client 1
# loop) over conns {1,50,500} x depth {1,16} x size {32,1024,16384},
# rotating which server goes first each round, and prints per-cell medians:
# frames/s, frames per server CPU-second, p99, server syscalls per frame
# (np_bench --server-pid: /proc/PID/stat and a perf syscall counter), and
# the medians of the per-round ratios netpoll/peer.
#   bench/netpoll/peers.sh [BUILD_DIR] [ROUNDS] [SECONDS]
# BUILD_DIR holds netpoll/rpc_echo and bench/netpoll/{np_bench,uv_echo,
# ev_echo}; a missing peer is left out with a note. RAW=FILE keeps the
# per-run JSON lines. Results: docs/netpoll.md, "Against libuv and libevent".
set -euo pipefail
build=${1:-build-bench}
rounds=${2:-3}
secs=${3:-1}
bin=$build/bench/netpoll/np_bench
out=${RAW:-$(mktemp)}
: > "$out"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
  [ -n "${RAW:-}" ] || rm -f "$out"
}
trap cleanup EXIT

names=() ports=() spids=()
# start NAME CMD...: runs a server, waits for "listening on HOST:PORT".
start() {
  local name=$1; shift
  "$@" > "$tmp/$name.out" 2>&1 &
  local pid=$!
  pids+=("$pid")
  local port=""
  for _ in $(seq 1 100); do
    port=$(sed -n 's/^listening on [^:]*:\([0-9]*\).*/\1/p' "$tmp/$name.out")
    [ -n "$port" ] && break
    sleep 0.05
  done
  if [ -z "$port" ]; then
    echo "peers.sh: $name did not start: $(cat "$tmp/$name.out")" >&2
    exit 1
  fi
  names+=("$name") ports+=("$port") spids+=("$pid")
}

start netpoll-epoll "$build/netpoll/rpc_echo" -t 1 -b epoll
start netpoll-io_uring "$build/netpoll/rpc_echo" -t 1 -b io_uring
for peer in uv ev; do
  label=$([ $peer = uv ] && echo libuv || echo libevent)
  if [ -x "$build/bench/netpoll/${peer}_echo" ]; then
    start "$label" "$build/bench/netpoll/${peer}_echo" -m rpc -t 1
  else
    echo "(no $label column: $build/bench/netpoll/${peer}_echo not built)" >&2
  fi
done

n=${#names[@]}
for size in 32 1024 16384; do
  for depth in 1 16; do
    for conns in 1 50 500; do
      for r in $(seq 1 "$rounds"); do
        for ((i = 0; i < n; i++)); do
          k=$(((i + r) % n))
          "$bin" --connect "127.0.0.1:${ports[$k]}" --server-pid "${spids[$k]}" \
            -n "$conns" -d "$depth" -s "$size" -T "$secs" -c 1 -j |
            sed "s/^{/{\"round\":$r,\"server\":\"${names[$k]}\",/" >> "$out"
        done
      done
    done
  done
done

/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
order = ["netpoll-epoll", "netpoll-io_uring", "libuv", "libevent"]
short = {"netpoll-epoll": "epoll", "netpoll-io_uring": "io_uring",
         "libuv": "libuv", "libevent": "libevent"}
srv = [s for s in order if any(r["server"] == s for r in rows)]
nps = [s for s in srv if s.startswith("netpoll")]
peers = [s for s in srv if not s.startswith("netpoll")]
pairs = [(a, b) for a in nps for b in peers]
keys = sorted({(r["size"], r["depth"], r["conns"]) for r in rows})
failed = sum(r["failed"] for r in rows)

def sel(k, s):
    return [r for r in rows if (r["size"], r["depth"], r["conns"]) == k and r["server"] == s]

def med(k, s, f):
    v = [r[f] for r in sel(k, s) if r[f] >= 0]
    return statistics.median(v) if v else float("nan")

def ratio(k, a, b, f):
    ra = {r["round"]: r[f] for r in sel(k, a)}
    rb = {r["round"]: r[f] for r in sel(k, b)}
    v = [ra[x] / rb[x] for x in ra if x in rb and rb[x] > 0 and ra[x] >= 0]
    return "%.2f" % statistics.median(v) if v else "-"

def table(title, cols):
    print("\n" + title + "\n")
    head = ["size B", "depth", "conns"] + [c[0] for c in cols]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---:" for _ in head) + "|")
    for k in keys:
        print("| " + " | ".join([str(k[0]), str(k[1]), str(k[2])] + [c[1](k) for c in cols]) + " |")

rcols = lambda f: [("%s/%s" % (short[a], short[b]), (lambda k, a=a, b=b: ratio(k, a, b, f)))
                   for a, b in pairs]
table("Frames per second (median of rounds), and netpoll/peer (median of per-round ratios)",
      [(short[s], (lambda k, s=s: "%.0f" % med(k, s, "frames_per_s"))) for s in srv]
      + rcols("frames_per_s"))
table("Frames per server CPU-second, and netpoll/peer",
      [(short[s], (lambda k, s=s: "%.0f" % med(k, s, "frames_per_cpu_s"))) for s in srv]
      + rcols("frames_per_cpu_s"))
table("p99 latency (us) and server syscalls per frame (medians)",
      [("p99 " + short[s], (lambda k, s=s: "%.0f" % med(k, s, "p99_us"))) for s in srv]
      + [("sys/frame " + short[s], (lambda k, s=s: "%.3f" % med(k, s, "server_syscalls_per_frame")))
         for s in srv])
if failed:
    print("\n%d connections failed" % failed)
    sys.exit(1)
PY
