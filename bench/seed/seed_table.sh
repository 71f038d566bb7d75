#!/usr/bin/env bash
# The seed's comparison table, measured: geecached with bufpool (pooled),
# geecached built with GEECACHE_NAIVE_ALLOC=ON (a malloc/free per buffer,
# node and object: the naive row), and memcached 1.6.18, under the same
# geecache-bench workload, alternating for several rounds.
#
#   bench/seed/seed_table.sh POOLED_GEECACHED NAIVE_GEECACHED GEECACHE_BENCH \
#                            [ROUNDS] [SECONDS] [ALLOCCOUNT_SO]
#
# Per server and round: requests/s, p95 and p99 (from the load generator),
# allocator calls per 1000 requests (geecached: its allocator_calls stat;
# with ALLOCCOUNT_SO, counted from outside for every server via LD_PRELOAD),
# minor page faults per 1000 requests and RSS (from /proc). C has no GC:
# page faults and RSS stand in for the seed's "GC count" and "allocated KB".
set -euo pipefail
pooled=$1 naive=$2 bench=$3 rounds=${4:-3} secs=${5:-5} acso=${6:-}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh" # free_port, rss_kb
stat_field() { awk -v f="$2" '{print $f}' "/proc/$1/stat"; } # 10 minflt
mc_stat() { # port name
  /usr/bin/python3 - "$1" "$2" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"stats\r\n"); buf = b""
while not buf.endswith(b"END\r\n"): buf += s.recv(65536)
for l in buf.decode().split("\r\n"):
    p = l.split(" ")
    if len(p) == 3 and p[1] == sys.argv[2]: print(p[2]); break
else: print(0)
PY
}
ncpu=$(nproc)
declare -A PID PORT
start() { # name: starts it, sets PID[name] and PORT[name]
  local name=$1 port; port=$(free_port)
  local pre=()
  [ -n "$acso" ] && pre=(env LD_PRELOAD="$acso" ALLOCCOUNT_OUT="$work/$name.ac")
  case $name in
    pooled) "${pre[@]}" "$pooled" -p "$port" -t "$ncpu" -m 1024 >/dev/null 2>&1 & ;;
    naive)  "${pre[@]}" "$naive"  -p "$port" -t "$ncpu" -m 1024 >/dev/null 2>&1 & ;;
    memcached) "${pre[@]}" /usr/bin/memcached -p "$port" -l 127.0.0.1 -U 0 -t "$ncpu" -m 1024 $([ "$(id -u)" = 0 ] && echo -u root) >/dev/null 2>&1 & ;;
  esac
  local pid=$!; pids+=("$pid")
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
  PID[$name]=$pid PORT[$name]=$port
}
ac_calls() { # file -> total allocator calls recorded so far (last line)
  [ -f "$1" ] && tail -1 "$1" | awk '{for(i=1;i<=NF;i++) if($i ~ /^calls=/){split($i,a,"=");print a[2]}}' || echo 0
}
out=$work/rows.jsonl
for s in pooled naive memcached; do start "$s"; done
# Warm every server with the keys once.
for s in pooled naive memcached; do "$bench" -p "${PORT[$s]}" -c 8 -d 16 -k 100000 -T 1 --prefill --json >/dev/null; done
for r in $(seq 1 "$rounds"); do
  order="pooled naive memcached"; (( r % 2 )) || order="memcached naive pooled"
  for s in $order; do
    pid=${PID[$s]} port=${PORT[$s]}
    f0=$(stat_field "$pid" 10); a0=0; [ "$s" != memcached ] && a0=$(mc_stat "$port" allocator_calls)
    [ -n "$acso" ] && { kill -USR2 "$pid"; sleep 0.1; }
    x0=$(ac_calls "$work/$s.ac")
    j=$("$bench" -p "$port" -c 50 -d 1 -k 100000 -v 32 -g 0.9 -T "$secs" --json)
    f1=$(stat_field "$pid" 10); a1=0; [ "$s" != memcached ] && a1=$(mc_stat "$port" allocator_calls)
    [ -n "$acso" ] && { kill -USR2 "$pid"; sleep 0.1; }
    x1=$(ac_calls "$work/$s.ac")
    echo "$j" | /usr/bin/python3 -c "
import json,sys; d=json.load(sys.stdin); n=max(d['requests'],1)
print(json.dumps({'round':$r,'server':'$s','rps':d['rps'],'p95':d['p95_us'],'p99':d['p99_us'],
  'errors':d['errors'],'self_allocs_per_1k':1000*($a1-$a0)/n,'ext_allocs_per_1k':1000*($x1-$x0)/n,
  'minflt_per_1k':1000*($f1-$f0)/n,'rss_kb':$(rss_kb "$pid")}))" >> "$out"
  done
done
/usr/bin/python3 - "$out" "$acso" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ext = bool(sys.argv[2])
med = lambda s, f: statistics.median(r[f] for r in rows if r["server"] == s)
print("| row | requests/s | p95 us | p99 us | allocator calls / 1000 req%s | minor faults / 1000 req | RSS MiB | errors |" % (" (from outside)" if ext else " (own counter)"))
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for s, label in (("naive", "naive: malloc/free per buffer (GEECACHE_NAIVE_ALLOC)"), ("pooled", "pooled: bufpool (default)"), ("memcached", "memcached 1.6.18")):
    a = med(s, "ext_allocs_per_1k") if ext else (med(s, "self_allocs_per_1k") if s != "memcached" else float("nan"))
    print(f"| {label} | {med(s,'rps'):.0f} | {med(s,'p95'):.0f} | {med(s,'p99'):.0f} | {a:.2f} | {med(s,'minflt_per_1k'):.3f} | {med(s,'rss_kb')/1024:.1f} | {sum(r['errors'] for r in rows if r['server']==s)} |")
rr = {}
for r in rows: rr.setdefault(r["round"], {})[r["server"]] = r
for a, b in (("pooled", "naive"), ("pooled", "memcached")):
    q = [v[a]["rps"] / v[b]["rps"] for v in rr.values() if a in v and b in v]
    p = [v[a]["p99"] / v[b]["p99"] for v in rr.values() if a in v and b in v]
    print(f"\n{a}/{b}: throughput x{statistics.median(q):.2f}, p99 x{statistics.median(p):.2f} (medians of {len(q)} per-round ratios)")
PY
