#!/usr/bin/env bash
# bench/compare.sh — geecached against memcached on the same machine, the
# same geecache-bench workload run against each ALTERNATELY for several
# rounds (which server goes first swaps every round), because this kind of
# VM swings 25-50% from one run to the next: only ratios taken within a
# round, and their median over rounds, are worth quoting.
#
# Per round and server: throughput (req/s), latency percentiles, and
# requests per server CPU-second (utime+stime of the server's PID from
# /proc/PID/stat around the measured run: the steadier figure when client
# and servers share the cores). With bench/alloccount preloaded into both
# servers: allocator calls per 1000 requests counted from outside (a
# report signal before and after the measured run), next to geecached's
# own allocator_calls, syscalls and bytes_copied stats.
#
# Both servers are started here on free loopback ports and stopped on exit.
# No CPU pinning (pinning client and server apart makes the ping-pong
# collapse on a 2-core VM).
#
# The client is geecache-bench unless --client memaslap: libmemcached's
# generator (libevent, one request in flight per connection, 16-byte keys,
# GETs only of keys it has SET, nothing verified), shaped by --ms-threads,
# --ms-conns, --ms-proto and the preset's value size (presets a and c).
# Same rounds, same server CPU accounting; its latency percentiles come
# from its log2 histogram (bench/lib.sh memaslap_json: factors of two).
# Each run also counts the requests each server saw (its `stats`).
#
#   bench/compare.sh --geecached build/geecached --bench build/geecache-bench \
#       --preset b --backend io_uring --rounds 5 --seconds 5 [-- BENCH ARGS]
#   bench/compare.sh --geecached build/geecached --client memaslap \
#       --ms-threads 2 --ms-conns 200 --ms-proto text --preset a
#
# Run with -h for every option. Exit status: 0 when every run answered with
# no errors; 1 on errors or a dead server; 2 on bad arguments; 77 (ctest's
# skip) when memcached is missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"
py=/usr/bin/python3

usage() {
	cat <<EOF
usage: bench/compare.sh [options] [-- geecache-bench options]

  --geecached PATH    the server to measure (required)
  --bench PATH        geecache-bench (default: next to geecached)
  --memcached PATH    memcached (default: memcached on PATH)
  --alloccount PATH   the LD_PRELOAD counter, or 'none' (default: alloccount.so
                      next to geecached, when present)
  --preset NAME       workload: a b c d (default a; --list-presets)
  --backend B         geecached's event backend: epoll | io_uring | auto (default epoll)
  --client C          the load generator: geecache-bench | memaslap (default
                      geecache-bench)
  --memaslap PATH     memaslap (default: memaslap or memcaslap on PATH)
  --ms-threads N      memaslap -T (default 1)
  --ms-conns N        memaslap -c, connections (default: the preset's, 50)
  --ms-proto P        binary (memaslap -B) | text (default binary)
  --rounds N          rounds; each runs both servers once (default 5)
  --seconds S         measured seconds per run (default 5)
  --threads N         -t for both servers (default: nproc = $(nproc))
  --gc-threads N      -t for geecached only (default: --threads)
  --mc-threads N      -t for memcached only (default: --threads)
  --memory MIB        -m for both servers (default: the preset's)
  --out-dir DIR       where results.json, results.csv and logs go
                      (default: ./compare-<preset>-<backend>-<time>)
  --plot              draw results.svg with bench/plot_compare.py
  --smoke             1 round of 1 s over 1000 keys and 4 connections, for
                      tests: proves the pipeline, measures nothing
  --list-presets      print the presets and exit
  -h, --help          this help

Options after -- go to geecache-bench after the preset's, so they override
it (e.g. -- -r 50000 for an open loop at 50k req/s, -- -P text, -- -t 2);
with --client memaslap, to memaslap (e.g. -- -w 2k). memaslap takes
presets a and c (its value size from the preset; it has no pipelining nor
Zipf keys) and whole --seconds.
EOF
}

list_presets() {
	cat <<'EOF'
a  50 conns, pipeline 1, 90% GET, 32 B values, 100k keys (uniform)     -m 64
b  as a with pipeline 16 (the server-bound case)                       -m 64
c  as a with 4 KiB values                                              -m 1024
d  as a over 1M keys, Zipf 1.0, the cache at 10% of the data:
   -m = ceil(0.1 x 1M x (12 B key + 32 B value) / 1 MiB) = 5, and -I 32k
   for geecached (it keeps an item in one segment, so its segments are at
   least -I + 4 KiB: with the default -I 1m a 5 MiB store would have two;
   with -I 32k, 80 of 64 KiB). memcached keeps its default -I: it refuses
   -I 32k unless slab_chunk_max is lowered too, and -I only caps the item
   size, which does not matter for 44-byte items.
EOF
}

geecached='' bench='' memcached='' alloccount=auto
preset=a backend=epoll rounds=5 seconds=5 threads=$(nproc) memory='' outdir=''
gc_threads='' mc_threads=''
client=geecache-bench memaslap='' ms_threads=1 ms_conns='' ms_proto=binary
smoke=0 plot=0
extra=()
while (($#)); do
	case $1 in
	--geecached) geecached=$2; shift 2 ;;
	--bench) bench=$2; shift 2 ;;
	--memcached) memcached=$2; shift 2 ;;
	--alloccount) alloccount=$2; shift 2 ;;
	--preset) preset=$2; shift 2 ;;
	--backend) backend=$2; shift 2 ;;
	--client) client=$2; shift 2 ;;
	--memaslap) memaslap=$2; shift 2 ;;
	--ms-threads) ms_threads=$2; shift 2 ;;
	--ms-conns) ms_conns=$2; shift 2 ;;
	--ms-proto) ms_proto=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--seconds) seconds=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--gc-threads) gc_threads=$2; shift 2 ;;
	--mc-threads) mc_threads=$2; shift 2 ;;
	--memory) memory=$2; shift 2 ;;
	--out-dir) outdir=$2; shift 2 ;;
	--plot) plot=1; shift ;;
	--smoke) smoke=1; shift ;;
	--list-presets) list_presets; exit 0 ;;
	-h | --help) usage; exit 0 ;;
	--) shift; extra=("$@"); break ;;
	*) echo "compare.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done

die() { echo "compare.sh: $*" >&2; exit 2; }

[[ -n $geecached ]] || die "--geecached PATH is required"
[[ -x $geecached ]] || die "$geecached: not an executable"
geecached=$(cd "$(dirname "$geecached")" && pwd)/$(basename "$geecached")
[[ -n $bench ]] || bench=$(dirname "$geecached")/geecache-bench
[[ $client == geecache-bench || $client == memaslap ]] || die "--client: geecache-bench or memaslap"
[[ $client == memaslap || -x $bench ]] || die "$bench: not an executable (--bench PATH)"
[[ $backend =~ ^(epoll|io_uring|auto)$ ]] || die "--backend: epoll, io_uring or auto"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds: a positive integer"
[[ $seconds =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--seconds: a number"
[[ $threads =~ ^[1-9][0-9]*$ ]] || die "--threads: a positive integer"
gc_threads=${gc_threads:-$threads} mc_threads=${mc_threads:-$threads}
[[ $gc_threads =~ ^[1-9][0-9]*$ ]] || die "--gc-threads: a positive integer"
[[ $mc_threads =~ ^[1-9][0-9]*$ ]] || die "--mc-threads: a positive integer"
[[ -x $py ]] || die "$py is needed for the summary (Debian: python3)"

if [[ -z $memcached ]]; then
	memcached=$(command -v memcached || true)
fi
if [[ -z $memcached || ! -x $memcached ]]; then
	echo "compare.sh: SKIP: memcached not found (Debian: apt-get install memcached)" >&2
	exit 77
fi
if [[ $client == memaslap ]]; then
	[[ -n $memaslap ]] || memaslap=$(memaslap_bin)
	if [[ -z $memaslap || ! -x $memaslap ]]; then
		echo "compare.sh: SKIP: memaslap not found (Debian: apt-get install libmemcached-tools)" >&2
		exit 77
	fi
	[[ $ms_threads =~ ^[1-9][0-9]*$ ]] || die "--ms-threads: a positive integer"
	[[ -z $ms_conns || $ms_conns =~ ^[1-9][0-9]*$ ]] || die "--ms-conns: a positive integer"
	[[ $ms_proto == binary || $ms_proto == text ]] || die "--ms-proto: binary or text"
	[[ $preset == a || $preset == c ]] || die "--client memaslap: presets a and c only (no pipelining, no Zipf)"
	[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "--client memaslap: --seconds in whole seconds"
fi

# The workload: geecache-bench arguments, the -m both servers get, and any
# other argument geecached gets (srv).
srv=()
case $preset in
a) wl=(-c 50 -d 1 -g 0.9 -v 32 -k 100000); mem=64 ;;
b) wl=(-c 50 -d 16 -g 0.9 -v 32 -k 100000); mem=64 ;;
c) wl=(-c 50 -d 1 -g 0.9 -v 4096 -k 100000); mem=1024 ;;
d) wl=(-c 50 -d 1 -g 0.9 -v 32 -k 1000000 -z 1.0)
   mem=$(((1000000 * (12 + 32) / 10 + 1048575) / 1048576)); srv=(-I 32k) ;;
*) die "--preset: one of a b c d (--list-presets)" ;;
esac
if ((smoke)); then
	rounds=1 seconds=1 mem=16
	wl=(-c 4 -d 2 -g 0.9 -v 32 -k 1000)
	ms_conns=${ms_conns:-4}
fi
[[ -n $memory ]] && mem=$memory

if [[ $alloccount == auto ]]; then
	alloccount=$(dirname "$geecached")/alloccount.so
	[[ -f $alloccount ]] || alloccount=none
fi
if [[ $alloccount != none ]]; then
	[[ -f $alloccount ]] || die "$alloccount: no such file (--alloccount PATH|none)"
	alloccount=$(cd "$(dirname "$alloccount")" && pwd)/$(basename "$alloccount")
fi
# A sanitized geecached has the sanitizer's own malloc, which must come
# first: it is not preloaded (memcached still is).
# (ldd's output is taken whole first: piped into grep -q under pipefail,
# ldd could die of SIGPIPE once grep had its match, failing the test and
# preloading into ASan — compare_smoke failed so, 1 run in 3 under load.)
gc_preload=$alloccount
gc_libs=$(ldd "$geecached" 2>/dev/null || true)
if [[ $alloccount != none && $gc_libs =~ lib(a|t|ub)san ]]; then
	gc_preload=none
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
[[ -n $outdir ]] || outdir=./compare-$preset-$backend-$stamp
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
rm -f "$outdir"/runs.jsonl "$outdir"/*.alloc "$outdir"/results.json "$outdir"/results.csv

# wl_arg FLAG: the value of FLAG in the preset's geecache-bench arguments.
wl_arg() {
	local i
	for ((i = 0; i + 1 < ${#wl[@]}; i++)); do
		[[ ${wl[i]} == "$1" ]] && { echo "${wl[i + 1]}"; return 0; }
	done
	return 1
}
# The client's command without its server address (run_one adds it), and
# how the tables name it.
if [[ $client == memaslap ]]; then
	ms_conns=${ms_conns:-$(wl_arg -c)}
	ms_value=$(wl_arg -v)
	memaslap_cfg "$outdir/memaslap.cfg" "$ms_value" "$(wl_arg -g)"
	# -w 1k: each connection's window of keys; -S: the latency histogram
	client_cmd=("$memaslap" -T "$ms_threads" -c "$ms_conns" -w 1k -F "$outdir/memaslap.cfg"
		-t "${seconds}s" -S "${seconds}s")
	if [[ $ms_proto == binary ]]; then client_cmd+=(-B); fi
	client_cmd+=("${extra[@]}")
	client_name="memaslap -T $ms_threads -c $ms_conns $ms_proto ${ms_value} B"
else
	client_cmd=("$bench" "${wl[@]}" -T "$seconds" "${extra[@]}" --json)
	client_name="geecache-bench${extra[*]:+ ${extra[*]}}"
fi
clk_tck=$(getconf CLK_TCK)
unset GEECACHE_BACKEND # it would override --backend

# ---- servers ---------------------------------------------------------------

gc_pid='' mc_pid='' gc_port='' mc_port=''
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	local p
	for p in $gc_pid $mc_pid; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in $gc_pid $mc_pid; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 1' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ac_signal=RTMIN+2

# with_preload LIB CMD...: runs CMD with LIB preloaded (unless 'none'),
# counting into LIB's report file $ac_out.
with_preload() {
	local lib=$1
	shift
	if [[ $lib == none ]]; then
		exec "$@"
	else
		LD_PRELOAD=$lib${LD_PRELOAD:+:$LD_PRELOAD} ALLOCCOUNT_OUT=$ac_out \
			ALLOCCOUNT_SIGNAL=$(kill -l "$ac_signal") exec "$@"
	fi
}

start_geecached() {
	ac_out=$outdir/geecached.alloc
	gc_cmd=("$geecached" -p 0 -t "$gc_threads" -m "$mem" "${srv[@]}" --backend "$backend")
	(with_preload "$gc_preload" "${gc_cmd[@]}") >"$outdir/geecached.log" 2>&1 &
	gc_pid=$!
	local line=
	for _ in $(seq 100); do
		line=$(grep -m 1 listening "$outdir/geecached.log" 2>/dev/null || true)
		[[ $line == *listening* ]] && break
		kill -0 "$gc_pid" 2>/dev/null || break
		sleep 0.05
	done
	[[ $line =~ listening\ on\ 127\.0\.0\.1:([0-9]+)\ \(([a-z_]+), ]] ||
		{ echo "compare.sh: geecached did not start:" >&2; cat "$outdir/geecached.log" >&2; exit 1; }
	gc_port=${BASH_REMATCH[1]} gc_backend=${BASH_REMATCH[2]}
	[[ $backend == auto || ${BASH_REMATCH[2]} == "$backend" ]] ||
		{ echo "compare.sh: geecached runs ${BASH_REMATCH[2]}, not $backend" >&2; exit 1; }
}

start_memcached() {
	ac_out=$outdir/memcached.alloc
	local user=()
	[[ $(id -u) == 0 ]] && user=(-u root)
	for _ in $(seq 20); do
		local p=$((20000 + RANDOM % 40000))
		port_open "$p" && continue
		mc_cmd=("$memcached" "${user[@]}" -t "$mc_threads" -m "$mem" -U 0 -l 127.0.0.1 -p "$p" -c 1024)
		(with_preload "$alloccount" "${mc_cmd[@]}") >"$outdir/memcached.log" 2>&1 &
		mc_pid=$!
		for _ in $(seq 100); do
			port_open "$p" && { mc_port=$p; return 0; }
			kill -0 "$mc_pid" 2>/dev/null || break
			sleep 0.05
		done
		kill "$mc_pid" 2>/dev/null || true
		wait "$mc_pid" 2>/dev/null || true
		mc_pid=
	done
	echo "compare.sh: memcached did not start:" >&2
	cat "$outdir/memcached.log" >&2
	exit 1
}

# ---- probes ----------------------------------------------------------------

# cpu_ticks, rss_kb: bench/lib.sh

# alloc_snapshot PID FILE: asks PID's alloccount for a report (signal
# $ac_signal: a real-time one, since geecached takes SIGUSR2, alloccount's
# default, for itself) and prints it once it has landed in FILE; fails
# after 2 s without one.
alloc_snapshot() {
	local pid=$1 file=$2 n0 n
	lines() { if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi; }
	n0=$(lines "$file")
	kill -s "$ac_signal" "$pid"
	for _ in $(seq 200); do
		n=$(lines "$file")
		if ((n > n0)); then
			tail -n 1 "$file"
			return 0
		fi
		sleep 0.01
	done
	echo "compare.sh: no alloccount report from $pid in 2 s" >&2
	return 1
}

# One field (name=value) of an alloccount line.
acf() { [[ $1 =~ (^| )$2=([0-9]+) ]] && echo "${BASH_REMATCH[2]}" || echo 0; }

# server_stats PORT [GROUP]: bench/lib.sh (geecached's own counters are in
# `stats geecache`). stat_of STATS NAME: one of its values.
stat_of() { awk -v k="$2" '$1 == k {print $2}' <<<"$1"; }
# served NAME STATS: the requests a server has counted (memcached: cmd_get
# + cmd_set, all that either client sends).
served() {
	if [[ $1 == geecached ]]; then
		stat_of "$2" requests
	else
		echo $(($(stat_of "$2" cmd_get) + $(stat_of "$2" cmd_set)))
	fi
}

# ---- runs ------------------------------------------------------------------

# prefill PORT NAME: SETs every key once (pipeline 32), not measured. A
# server error (a SET refused: out of memory) is reported and the rounds go
# on, so that the tables show it; anything else (a wrong reply, a closed
# connection, no result) stops here.
prefill() {
	local port=$1 name=$2 rc=0 out=$outdir/prefill-$2.json
	# -n 0 -T 0.2 after the extras: a short run behind the prefill, never a
	# request count (with --prefill it would count the prefill's SETs).
	timeout 600 "$bench" "${wl[@]}" "${extra[@]}" -d 32 -n 0 -T 0.2 --prefill --json \
		-p "$port" >"$out" 2>"$outdir/prefill-$name.err" || rc=$?
	local res
	res=$(tail -n 1 "$out")
	if [[ $res =~ \"wrong\":0,\"server_errors\":([0-9]+),.*\"closed_early\":0, ]]; then
		if ((BASH_REMATCH[1] > 0)); then
			echo "compare.sh: WARNING: $name refused ${BASH_REMATCH[1]} requests during the prefill (server errors)" >&2
		fi
		return 0
	fi
	echo "compare.sh: prefill of $name failed (exit $rc):" >&2
	cat "$out" "$outdir/prefill-$name.err" >&2
	exit 1
}

# run_one ROUND ORDER NAME: one measured run; appends a JSON line.
run_one() {
	local round=$1 order=$2 name=$3 pid port acfile preload grp=
	if [[ $name == geecached ]]; then
		pid=$gc_pid port=$gc_port acfile=$outdir/geecached.alloc preload=$gc_preload grp=geecache
	else
		pid=$mc_pid port=$mc_port acfile=$outdir/memcached.alloc preload=$alloccount
	fi
	kill -0 "$pid" 2>/dev/null || { echo "compare.sh: $name (pid $pid) has died" >&2; exit 1; }
	local st0='' st1='' ac0='' ac1='' c0 c1 rc=0
	st0=$(server_stats "$port" "$grp")
	c0=$(cpu_ticks "$pid")
	[[ $preload != none ]] && ac0=$(alloc_snapshot "$pid" "$acfile")
	local out=$outdir/run-$round-$name.json res
	if [[ $client == memaslap ]]; then
		out=$outdir/run-$round-$name.txt
		timeout $((seconds + 120)) "${client_cmd[@]}" -s "127.0.0.1:$port" >"$out" \
			2>"$outdir/run-$round-$name.err" || rc=$?
	else
		timeout $((${seconds%.*} + 120)) "${client_cmd[@]}" -p "$port" >"$out" \
			2>"$outdir/run-$round-$name.err" || rc=$?
	fi
	[[ $preload != none ]] && ac1=$(alloc_snapshot "$pid" "$acfile")
	c1=$(cpu_ticks "$pid")
	st1=$(server_stats "$port" "$grp")
	kill -0 "$pid" 2>/dev/null || { echo "compare.sh: $name (pid $pid) died during round $round" >&2; exit 1; }
	if [[ $client == memaslap ]]; then
		res=$(memaslap_json "$out")
	else
		res=$(tail -n 1 "$out")
	fi
	[[ $res == \{* ]] || res='{}'
	local sreq
	sreq=$(($(served "$name" "$st1") - $(served "$name" "$st0")))
	local gc='null'
	if [[ $name == geecached && -n $st0 && -n $st1 ]]; then
		local k j=
		for k in allocator_calls syscalls bytes_copied requests; do
			j+="\"$k\":$(($(stat_of "$st1" "$k") - $(stat_of "$st0" "$k"))),"
		done
		gc="{${j%,}}"
	fi
	local ac='null'
	if [[ -n $ac0 && -n $ac1 ]]; then
		local k j=
		for k in alloc_calls free_calls alloc_bytes malloc calloc realloc free posix_memalign aligned_alloc mmap munmap; do
			j+="\"$k\":$(($(acf "$ac1" "$k") - $(acf "$ac0" "$k"))),"
		done
		ac="{${j%,}}"
	fi
	printf '{"round":%d,"order":%d,"server":"%s","bench_rc":%d,"cpu_ticks":%d,"clk_tck":%d,"rss_kb":%d,"server_requests":%d,"alloccount":%s,"self":%s,"bench":%s}\n' \
		"$round" "$order" "$name" "$rc" $((c1 - c0)) "$clk_tck" "$(rss_kb "$pid")" "$sreq" "$ac" "$gc" "$res" \
		>>"$outdir/runs.jsonl"
	printf '  round %d  %-9s  ' "$round" "$name"
	"$py" -c 'import json,sys; r=json.loads(sys.argv[1]); print("%9.0f req/s  p99 %8.1f us  errors %s" % (r.get("rps",0), r.get("p99_us",0), r.get("errors","?")))' "$res" || true
	if ((rc != 0)); then
		echo "compare.sh: $client exited $rc against $name:" >&2
		cat "$outdir/run-$round-$name.err" >&2
	fi
}

echo "compare.sh: preset $preset$( ((smoke)) && echo ' (smoke)'), $rounds rounds of $seconds s, -t $gc_threads (geecached) / $mc_threads (memcached) -m $mem, geecached on $backend, client $client_name"
echo "  alloccount: geecached ${gc_preload}, memcached ${alloccount}"
echo "  out: $outdir"
start_memcached
start_geecached
echo "  memcached pid $mc_pid port $mc_port; geecached pid $gc_pid port $gc_port ($gc_backend)"
# memaslap GETs only keys it has SET: a prefill of geecache-bench's keys
# would only fill memory.
if [[ $client == geecache-bench ]]; then
	prefill "$mc_port" memcached
	prefill "$gc_port" geecached
fi

for r in $(seq 1 "$rounds"); do
	if ((r % 2)); then order=(geecached memcached); else order=(memcached geecached); fi
	run_one "$r" 1 "${order[0]}"
	run_one "$r" 2 "${order[1]}"
done

# ---- summary ---------------------------------------------------------------

{
	printf '{"date":"%s","preset":"%s","smoke":%s,"backend":"%s","backend_run":"%s","rounds":%d,"seconds":%s,' \
		"$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$preset" "$( ((smoke)) && echo true || echo false)" \
		"$backend" "$gc_backend" "$rounds" "$seconds"
	printf '"client":"%s","client_name":"%s",' "$client" "$client_name"
	printf '"threads":%d,"gc_threads":%d,"mc_threads":%d,"memory_mib":%d,"nproc":%d,"cpu_model":"%s","kernel":"%s",' \
		"$threads" "$gc_threads" "$mc_threads" "$mem" "$(nproc)" \
		"$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo | sed 's/"/\\"/g')" "$(uname -r)"
	printf '"memcached_version":"%s","geecached_version":"%s",' \
		"$("$memcached" -V 2>&1 | head -n 1)" "$("$geecached" -V 2>&1 | head -n 1)"
	printf '"alloccount_geecached":"%s","alloccount_memcached":"%s"}\n' "$gc_preload" "$alloccount"
} >"$outdir/meta.json"
if [[ $client == memaslap ]]; then
	printf '%s\n' "${mc_cmd[*]}" "${gc_cmd[*]}" "${client_cmd[*]} -s 127.0.0.1:PORT" >"$outdir/commands.txt"
else
	printf '%s\n' "${mc_cmd[*]}" "${gc_cmd[*]}" "${client_cmd[*]} -p PORT" >"$outdir/commands.txt"
fi

status=0
"$py" - "$outdir" "$smoke" <<'PY' || status=$?
# Merges meta.json and runs.jsonl into results.json and results.csv, prints
# the per-round table and the medians of per-round ratios (also kept in
# summary.md). Exit 1 when a run failed, had errors, or got no answers.
import csv, json, os, statistics, sys

outdir, smoke = sys.argv[1], sys.argv[2] == "1"
meta = json.load(open(os.path.join(outdir, "meta.json")))
meta["commands"] = open(os.path.join(outdir, "commands.txt")).read().splitlines()
runs = [json.loads(l) for l in open(os.path.join(outdir, "runs.jsonl"))]
SERVERS = ("geecached", "memcached")

def req(r):
    return r["bench"].get("requests", 0)

for r in runs:
    b = r["bench"]
    cpu_s = r["cpu_ticks"] / r["clk_tck"]
    r["cpu_s"] = cpu_s
    r["req_per_cpu_s"] = req(r) / cpu_s if cpu_s > 0 else None
    n = req(r)
    ac = r.get("alloccount")
    if ac and n:
        r["alloc_calls_per_1k"] = 1000.0 * ac["alloc_calls"] / n
        r["free_calls_per_1k"] = 1000.0 * ac["free_calls"] / n
        r["alloc_bytes_per_req"] = ac["alloc_bytes"] / n
    s = r.get("self")
    if s and n:
        r["self_allocator_calls_per_1k"] = 1000.0 * s["allocator_calls"] / n
        r["self_syscalls_per_req"] = s["syscalls"] / n
        r["self_bytes_copied_per_req"] = s["bytes_copied"] / n

rounds = sorted({r["round"] for r in runs})
by = {(r["round"], r["server"]): r for r in runs}

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None

FIG = {"rps": lambda r: r["bench"].get("rps"),
       "p99_us": lambda r: r["bench"].get("p99_us"),
       "req_per_cpu_s": lambda r: r["req_per_cpu_s"]}
per_round = []
for n in rounds:
    g, m = by.get((n, "geecached")), by.get((n, "memcached"))
    if not g or not m:
        continue
    row = {"round": n, "first": "geecached" if g["order"] == 1 else "memcached"}
    for k, f in FIG.items():
        row[k + "_ratio"] = ratio(f(g), f(m))
    per_round.append(row)

summary = {"median_ratio": {k: med(row[k + "_ratio"] for row in per_round) for k in FIG},
           "median": {}}
PCT = ("rps", "p50_us", "p95_us", "p99_us", "p999_us", "max_us", "hit_ratio")
for sv in SERVERS:
    rs = [r for r in runs if r["server"] == sv]
    d = {k: med(r["bench"].get(k) for r in rs) for k in PCT}
    for k in ("req_per_cpu_s", "cpu_s", "rss_kb", "alloc_calls_per_1k", "free_calls_per_1k",
              "alloc_bytes_per_req", "self_allocator_calls_per_1k", "self_syscalls_per_req",
              "self_bytes_copied_per_req"):
        d[k] = med(r.get(k) for r in rs)
    d["errors"] = sum(r["bench"].get("errors", 0) for r in rs)
    d["requests"] = sum(req(r) for r in rs)
    summary["median"][sv] = d
summary["per_round"] = per_round

json.dump({"meta": meta, "runs": runs, "summary": summary},
          open(os.path.join(outdir, "results.json"), "w"), indent=1)
cols = ["round", "order", "server", "bench_rc", "rps", "requests", "errors", "hit_ratio",
        "p50_us", "p95_us", "p99_us", "p999_us", "max_us", "cpu_s", "req_per_cpu_s", "rss_kb",
        "alloc_calls_per_1k", "free_calls_per_1k", "self_allocator_calls_per_1k",
        "self_syscalls_per_req", "self_bytes_copied_per_req"]
with open(os.path.join(outdir, "results.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(cols)
    for r in runs:
        w.writerow([r["bench"].get(c, r.get(c, "")) if c in r["bench"] else
                    ("" if r.get(c) is None else r.get(c)) for c in cols])

def fmt(x, spec):
    return "-" if x is None else format(x, spec)

# Which client drove the runs: the first column of both tables.
client = meta.get("client_name", "geecache-bench")
out = []
out.append("| client | round | first | geecached req/s | memcached req/s | ratio | geecached p99 us | "
           "memcached p99 us | ratio | geecached req/CPU-s | memcached req/CPU-s | ratio |")
out.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for row in per_round:
    g, m = by[(row["round"], "geecached")], by[(row["round"], "memcached")]
    out.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        client, row["round"], row["first"][:2],
        fmt(g["bench"].get("rps"), ".0f"), fmt(m["bench"].get("rps"), ".0f"),
        fmt(row["rps_ratio"], ".2f"),
        fmt(g["bench"].get("p99_us"), ".0f"), fmt(m["bench"].get("p99_us"), ".0f"),
        fmt(row["p99_us_ratio"], ".2f"),
        fmt(g["req_per_cpu_s"], ".0f"), fmt(m["req_per_cpu_s"], ".0f"),
        fmt(row["req_per_cpu_s_ratio"], ".2f")))
mr = summary["median_ratio"]
out.append("| %s | **median of ratios** | | | | **%s** | | | **%s** | | | **%s** |" % (
    client, fmt(mr["rps"], ".2f"), fmt(mr["p99_us"], ".2f"), fmt(mr["req_per_cpu_s"], ".2f")))
out.append("")
out.append("| client | medians over rounds | req/s | p50 us | p95 us | p99 us | p99.9 us | hit ratio | "
           "req/CPU-s | alloc calls /1k req (alloccount) | frees /1k | own allocator_calls /1k | "
           "own syscalls /req | own bytes_copied /req | RSS MiB |")
out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for sv in SERVERS:
    d = summary["median"][sv]
    out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        client, sv, fmt(d["rps"], ".0f"), fmt(d["p50_us"], ".0f"), fmt(d["p95_us"], ".0f"),
        fmt(d["p99_us"], ".0f"), fmt(d["p999_us"], ".0f"), fmt(d["hit_ratio"], ".3f"),
        fmt(d["req_per_cpu_s"], ".0f"), fmt(d["alloc_calls_per_1k"], ".3f"),
        fmt(d["free_calls_per_1k"], ".3f"), fmt(d["self_allocator_calls_per_1k"], ".3f"),
        fmt(d["self_syscalls_per_req"], ".3f"), fmt(d["self_bytes_copied_per_req"], ".1f"),
        fmt(d["rss_kb"] / 1024 if d["rss_kb"] else None, ".1f")))
text = "\n".join(out)
open(os.path.join(outdir, "summary.md"), "w").write(text + "\n")
print()
print(text)
print()
print("results: %s/results.json (and results.csv)" % outdir)

bad = []
memaslap = meta.get("client") == "memaslap"
for r in runs:
    b = r["bench"]
    what = "round %d %s" % (r["round"], r["server"])
    if r["bench_rc"] != 0:
        bad.append(what + ": %s exited %d" % (meta.get("client"), r["bench_rc"]))
    if not b:
        bad.append(what + ": no result")
        continue
    if memaslap:
        # memaslap verifies nothing and counts no errors: what it
        # completed must be what the server counted, give or take the
        # requests in flight when it stopped (one per connection)
        n, sn = b.get("requests", 0), r.get("server_requests", 0)
        if not n or abs(sn - n) > 0.01 * n + 1000:
            bad.append(what + ": memaslap completed %d requests, the server counted %d" % (n, sn))
        continue
    if b.get("errors", 1) or b.get("wrong", 1) or b.get("server_errors", 1):
        bad.append(what + ": %s errors (wrong %s, server %s)" % (
            b.get("errors"), b.get("wrong"), b.get("server_errors")))
    if b.get("closed_early", 1):
        bad.append(what + ": %s connections closed early" % b.get("closed_early"))
    if not b.get("requests"):
        bad.append(what + ": no answers")
for sv in SERVERS:
    if not any(r["server"] == sv and req(r) > 0 for r in runs):
        bad.append(sv + " never answered")
if smoke:
    for sv in SERVERS:
        if sv == "memcached" or meta["alloccount_geecached"] != "none":
            if meta["alloccount_" + sv] != "none" and not all(
                    r.get("alloccount") for r in runs if r["server"] == sv):
                bad.append(sv + ": no alloccount snapshots")
    if not all(r.get("self") for r in runs if r["server"] == "geecached"):
        bad.append("geecached: no stats")
for b in bad:
    print("compare.sh: FAIL: " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY

if [[ ! -s $outdir/results.json ]]; then
	echo "compare.sh: FAIL: no $outdir/results.json" >&2
	status=1
fi
if ((plot)); then
	if ! "$py" -c 'import matplotlib' 2>/dev/null; then
		echo "compare.sh: no chart: python3-matplotlib is not installed" >&2
	elif "$py" "$here/plot_compare.py" "$outdir/results.json" -o "$outdir/results.svg"; then
		echo "  chart: $outdir/results.svg"
	else
		echo "compare.sh: FAIL: the chart could not be drawn" >&2
		status=1
	fi
fi
exit $status
