#!/usr/bin/env bash
# bench/why_clients.sh — what a server does per request, by client shape:
# the counts behind "Why the lead depends on the client" in
# docs/performance.md.
#
# Starts geecached (--backend auto and --backend epoll, one instance each)
# and memcached, all with the same -t and -m, and drives each in turn with
# each client shape (geecache-bench or memaslap; which server goes first
# rotates). Each measured run is a warm-up then three windows of --seconds,
# each window with its own server-side request count:
#   1. nothing attached: server CPU (utime + stime, /proc/PID/stat), its
#      threads' sleeps (voluntary context switches, /proc/PID/task/*/status)
#      and geecached's own netpoll counters (read_calls, write_calls,
#      wait_calls, syscalls, yields: /metrics);
#   2. perf stat on syscall tracepoints of the server's threads: every
#      system call, the waits (epoll_wait/epoll_pwait/io_uring_enter), the
#      reads and writes, futex and sched_yield (strace -c -f when perf
#      cannot; strace slows the server and is marked so);
#   3. bench/cpu_profile.sh --attach: the server's CPU samples split into
#      the kernel's send, receive and wait paths and user space (skipped
#      with --no-profile or without perf).
# Requests are the server's own count (geecached `requests`, memcached
# cmd_get + cmd_set), so the figures do not depend on a client's report.
#
# A shape is CLIENT/tTHREADS/cCONNS/PROTO/VALUE_BYTES[/kKEYS]: CLIENT gb
# (geecache-bench: -t loops, -c, -d 1, KEYS prefilled uniform keys, 100k
# unless said) or ms (memaslap: -T threads, -c concurrency, -w 1k, 16-byte
# keys; no kKEYS); PROTO bin or text; 90 % GET always.
#
#   bench/why_clients.sh --geecached build/geecached --rounds 2 --seconds 3 \
#       --out-dir /tmp/why [--shapes gb/t2/c50/bin/32,ms/t1/c50/text/32]
#
# -h lists the options. Exit status: 0 when every run was served; 1 when a
# server died or a client failed; 2 on bad arguments; 77 when memcached or
# (for ms shapes) memaslap is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"
py=/usr/bin/python3

default_shapes=gb/t1/c50/bin/32,gb/t2/c50/bin/32,ms/t1/c50/bin/32,ms/t1/c50/text/32,ms/t2/c200/bin/32,ms/t1/c50/bin/4096,ms/t1/c8/bin/32

usage() {
	cat <<EOF
usage: bench/why_clients.sh --geecached PATH [options]

  --geecached PATH   the server to measure (required)
  --bench PATH       geecache-bench (default: next to geecached)
  --memcached PATH   memcached (default: memcached on PATH)
  --memaslap PATH    memaslap (default: memaslap or memcaslap on PATH)
  --servers LIST     of gc-BACKEND (auto, epoll, io_uring) and mc (default
                     gc-auto,gc-epoll,mc); gc-BACKEND+OPT=V... adds --OPT V
                     to that geecached (gc-epoll+yield-us=0: an A/B of a flag)
  --shapes LIST      client shapes, comma-separated (default:
                     $default_shapes)
  --threads N        -t for every server (default: nproc = $(nproc))
  --memory MIB       -m for every server (default 1024: 4 KiB values fit)
  --rounds N         rounds over every shape and server (default 4)
  --seconds S        seconds per window, an integer (default 3)
  --warm S           seconds of load before the first window (default 1)
  --no-profile       skip window 3 (perf record)
  --counter C        window 2's counter: perf | strace | none (default:
                     perf if it can count syscall tracepoints, else strace)
  --out-dir DIR      runs.jsonl, summary.md, logs (default ./why-<time>)
  --smoke            1 round, 1 s windows, 1000 keys, no profile: for tests
  --report DIR       only print the summary of an earlier run's DIR
  -h, --help         this help
EOF
}

geecached='' bench='' memcached='' memaslap='' servers=gc-auto,gc-epoll,mc
shapes=$default_shapes threads=$(nproc) mem=1024 rounds=4 seconds=3 warm=1
profile=1 counter=auto outdir='' smoke=0 keys=100000 report=
while (($#)); do
	case $1 in
	--geecached) geecached=$2; shift 2 ;;
	--bench) bench=$2; shift 2 ;;
	--memcached) memcached=$2; shift 2 ;;
	--memaslap) memaslap=$2; shift 2 ;;
	--servers) servers=$2; shift 2 ;;
	--shapes) shapes=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--memory) mem=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--seconds) seconds=$2; shift 2 ;;
	--warm) warm=$2; shift 2 ;;
	--no-profile) profile=0; shift ;;
	--counter) counter=$2; shift 2 ;;
	--out-dir) outdir=$2; shift 2 ;;
	--smoke) smoke=1; shift ;;
	--report) report=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "why_clients.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done
die() { echo "why_clients.sh: $*" >&2; exit 2; }
skip() { echo "why_clients.sh: SKIP: $*" >&2; exit 77; }

# ---- summary (summarize: prints and writes DIR/summary.md) ---------------------------------------------------------------

summarize() {
	"$py" - "$outdir" <<'PY'
# Medians over rounds per (shape, server) of the per-request counts, and
# per shape the median of per-round ratios of requests per server
# CPU-second against memcached. Exit 1 when a run had no requests or its
# client failed.
import json, os, statistics, sys
outdir = sys.argv[1]
secs = float(json.load(open(os.path.join(outdir, "meta.json")))["seconds"])
runs = [json.loads(l) for l in open(os.path.join(outdir, "runs.jsonl"))]

def per_req(r):
    p, c, hz = r["plain"], r["counted"], r["hz"]
    n, nc = p["requests"], c["requests"]
    s = r["syscalls"]
    d = {"rps": n / secs}
    if n:
        cpu_us = 1e6 * p["cpu_ticks"] / hz / n
        d["cpu_us"] = cpu_us
        d["req_per_sleep"] = n / p["sleeps"] if p["sleeps"] else None
        d["preempt_per_kreq"] = 1000.0 * p["preemptions"] / n
        d["faults_per_kreq"] = 1000.0 * p.get("faults", 0) / n
        if r["server"] != "mc":
            d["reads"] = p["read_calls"] / n
            d["writes"] = p["write_calls"] / n
            d["req_per_wait_own"] = n / p["wait_calls"] if p["wait_calls"] else None
        prof = r.get("profile") or {}
        if "kernel" in prof:
            for k, label in (("kernel_us", "kernel"), ("user_us", "user space"),
                             ("send_us", "reply send (tcp_sendmsg)"),
                             ("recv_us", "request receive (tcp_recvmsg)")):
                d[k] = cpu_us * prof.get(label, 0.0) / 100
            w = prof.get("waiting: epoll_wait (do_epoll_wait)", 0.0) + \
                prof.get("waiting: io_uring_enter's wait (io_cqring_wait)", 0.0)
            d["wait_us"] = cpu_us * w / 100
    if nc and s:
        waits = sum(s.get(k, 0) for k in ("epoll_wait", "epoll_pwait", "epoll_pwait2", "io_uring_enter"))
        d["syscalls"] = s.get("sys_enter", 0) / nc
        d["req_per_wait"] = nc / waits if waits else None
        d["futex"] = s.get("futex", 0) / nc
        d["sched_yield"] = s.get("sched_yield", 0) / nc
        if r["server"] == "mc":
            d["reads"] = sum(s.get(k, 0) for k in ("read", "readv", "recvfrom", "recvmsg")) / nc
            d["writes"] = sum(s.get(k, 0) for k in ("write", "writev", "sendto", "sendmsg")) / nc
    return d

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

shapes = list(dict.fromkeys(r["shape"] for r in runs))
servers = list(dict.fromkeys(r["server"] for r in runs))
by = {}
for r in runs:
    r["per_req"] = per_req(r)
    by.setdefault((r["shape"], r["server"]), []).append(r)

KEYS = ("rps", "req_per_sleep", "req_per_wait", "req_per_wait_own", "syscalls", "reads",
        "writes", "futex", "sched_yield", "preempt_per_kreq", "faults_per_kreq", "cpu_us", "kernel_us", "user_us",
        "send_us", "recv_us", "wait_us")
summary = {}
for (shape, sv), rs in by.items():
    d = {k: med(r["per_req"].get(k) for r in rs) for k in KEYS}
    if sv != "mc" and ("mc" in servers):
        # medians of per-round ratios, as compare.sh's
        for k, num in (("req_per_cpu_s_vs_mc", lambda g, m: m["cpu_us"] / g["cpu_us"]),
                       ("rps_vs_mc", lambda g, m: g["rps"] / m["rps"])):
            ratios = []
            for r in rs:
                m = [x for x in by.get((shape, "mc"), []) if x["round"] == r["round"]]
                if m and r["per_req"].get("cpu_us") and m[0]["per_req"].get("cpu_us"):
                    ratios.append(num(r["per_req"], m[0]["per_req"]))
            d[k] = med(ratios)
    summary["%s %s" % (shape, sv)] = d
json.dump({"meta": json.load(open(os.path.join(outdir, "meta.json"))), "runs": runs,
           "summary": summary}, open(os.path.join(outdir, "results.json"), "w"), indent=1)

def f(x, spec):
    return "-" if x is None else format(x, spec)

def name(sv):
    if sv == "mc":
        return "memcached"
    be, _, opts = sv[3:].partition("+")
    return "geecached " + be + "".join(" --" + o.replace("=", " ") for o in opts.split("+") if o)
# Per request unless said; medians over rounds. "sleeps": voluntary
# context switches; "wait calls": epoll_wait/epoll_pwait*/io_uring_enter.
COLS = (("req/s", "rps", ".0f"), ("req per wait call", "req_per_wait", ".1f"),
        ("req per sleep", "req_per_sleep", ".1f"), ("syscalls", "syscalls", ".2f"),
        ("sched_yield /1k req", None, None), ("preempted /1k req", "preempt_per_kreq", ".1f"),
        ("page faults /1k req", "faults_per_kreq", ".1f"),
        ("CPU µs", "cpu_us", ".2f"), ("kernel µs", "kernel_us", ".2f"),
        ("user µs", "user_us", ".2f"), ("send µs", "send_us", ".2f"),
        ("recv µs", "recv_us", ".2f"), ("wait µs", "wait_us", ".2f"),
        ("req/s vs memcached", "rps_vs_mc", ".2f"),
        ("req/CPU-s vs memcached", "req_per_cpu_s_vs_mc", ".2f"))
out = ["| client shape | server | " + " | ".join(c[0] for c in COLS) + " |",
       "|---|---|" + "---:|" * len(COLS)]
for shape in shapes:
    for sv in servers:
        d = summary.get("%s %s" % (shape, sv))
        if not d:
            continue
        cells = []
        for _, k, spec in COLS:
            if k is None:
                y = d.get("sched_yield")
                cells.append(f(None if y is None else 1000 * y, ".1f"))
            else:
                cells.append(f(d.get(k), spec))
        out.append("| %s | %s | %s |" % (shape, name(sv), " | ".join(cells)))
text = "\n".join(out)
open(os.path.join(outdir, "summary.md"), "w").write(text + "\n")
print()
print(text)
print()
print("results: %s/results.json (runs: runs.jsonl)" % outdir)
bad = ["round %d %s %s: %s" % (r["round"], r["shape"], r["server"], why)
       for r in runs for why in
       (["client exited %d" % r["client_rc"]] if r["client_rc"] else []) +
       (["no requests"] if not r["plain"]["requests"] else [])]
for b in bad:
    print("why_clients.sh: FAIL: " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

if [[ -n $report ]]; then
	[[ -f $report/runs.jsonl && -f $report/meta.json ]] || die "--report: no runs.jsonl and meta.json in $report"
	outdir=$report
	summarize
	exit
fi

if ((smoke)); then
	rounds=1 seconds=1 warm=0.5 profile=0 keys=1000 mem=64
fi
[[ -n $geecached && -x $geecached ]] || die "--geecached PATH (an executable) is required"
geecached=$(cd "$(dirname "$geecached")" && pwd)/$(basename "$geecached")
[[ -n $bench ]] || bench=$(dirname "$geecached")/geecache-bench
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds: a positive integer"
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "--seconds: a positive integer (memaslap's -t)"
[[ $warm =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--warm: a number"
[[ $threads =~ ^[1-9][0-9]*$ ]] || die "--threads: a positive integer"
[[ $mem =~ ^[1-9][0-9]*$ ]] || die "--memory: a positive integer"
[[ $counter =~ ^(auto|perf|strace|none)$ ]] || die "--counter: perf, strace or none"
[[ -n $memcached ]] || memcached=$(command -v memcached || true)
[[ -n $memcached && -x $memcached ]] || skip "memcached not found (Debian: memcached)"

# ---- shapes ----------------------------------------------------------------

IFS=, read -r -a shape_list <<<"$shapes"
need_gb=0 need_ms=0 gb_values=()
for s in "${shape_list[@]}"; do
	[[ $s =~ ^(gb|ms)/t([1-9][0-9]*)/c([1-9][0-9]*)/(bin|text)/([1-9][0-9]*)(/k[1-9][0-9]*)?$ ]] ||
		die "shape '$s': CLIENT/tTHREADS/cCONNS/PROTO/VALUE[/kKEYS], e.g. ms/t1/c50/text/32"
	if [[ ${BASH_REMATCH[1]} == gb ]]; then
		need_gb=1
		k=${BASH_REMATCH[6]#/k}
		gb_values+=("${BASH_REMATCH[5]}/${k:-$keys}")
	else
		[[ -z ${BASH_REMATCH[6]} ]] || die "shape '$s': memaslap has no key count (kKEYS)"
		need_ms=1
	fi
done
if ((need_gb)); then
	[[ -x $bench ]] || die "$bench: not an executable (--bench PATH)"
fi
if ((need_ms)); then
	[[ -n $memaslap ]] || memaslap=$(memaslap_bin)
	[[ -n $memaslap && -x $memaslap ]] || skip "memaslap not found (Debian: libmemcached-tools)"
fi

# client_cmd SHAPE PORT SECONDS: sets cmd=(...) for one run of SHAPE.
client_cmd() {
	local shape=$1 port=$2 secs=$3 who t c proto v k
	IFS=/ read -r who t c proto v k <<<"$shape"
	t=${t#t} c=${c#c} k=${k#k}
	if [[ $who == gb ]]; then
		cmd=("$bench" -p "$port" -t "$t" -c "$c" -d 1 -g 0.9 -v "$v" -k "${k:-$keys}"
			-P "$([[ $proto == bin ]] && echo binary || echo text)" -T "$secs" --json)
	else
		local cfg=$outdir/memaslap-$v.cfg
		[[ -f $cfg ]] || memaslap_cfg "$cfg" "$v" 0.9
		cmd=("$memaslap" -s "127.0.0.1:$port" -T "$t" -c "$c" -w 1k -F "$cfg"
			-t "$(awk -v s="$secs" 'BEGIN { printf "%ds", s == int(s) ? s : int(s) + 1 }')")
		if [[ $proto == bin ]]; then cmd+=(-B); fi
	fi
}

# ---- servers ---------------------------------------------------------------

stamp=$(date -u +%Y%m%dT%H%M%SZ)
[[ -n $outdir ]] || outdir=./why-$stamp
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
rm -f "$outdir"/runs.jsonl "$outdir"/summary.md
unset GEECACHE_BACKEND # it would override --backend

IFS=, read -r -a server_list <<<"$servers"
declare -A spid sport smport
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	local p
	for p in "${spid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${spid[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 1' INT TERM

wait_port() { # PORT PID
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

start_server() { # NAME
	local name=$1 port mport user=()
	port=$(free_port)
	case $name in
	gc-*)
		local spec=${name#gc-} be opts=() o x
		be=${spec%%+*}
		[[ $be =~ ^(auto|epoll|io_uring)$ ]] || die "--servers: gc-auto, gc-epoll or gc-io_uring, not $name"
		if [[ $spec == *+* ]]; then
			IFS=+ read -r -a o <<<"${spec#*+}"
			for x in "${o[@]}"; do
				[[ $x =~ ^([a-z-]+)=(.*)$ ]] || die "--servers: $name: +OPTION=VALUE"
				opts+=("--${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}")
			done
		fi
		mport=$(free_port)
		"$geecached" -p "$port" -l 127.0.0.1 -t "$threads" -m "$mem" --backend "$be" "${opts[@]}" \
			--metrics-port "$mport" >"$outdir/$name.log" 2>&1 &
		smport[$name]=$mport
		;;
	mc)
		[[ $(id -u) == 0 ]] && user=(-u root)
		"$memcached" "${user[@]}" -p "$port" -l 127.0.0.1 -U 0 -t "$threads" -m "$mem" -c 1024 \
			>"$outdir/$name.log" 2>&1 &
		;;
	*) die "--servers: gc-BACKEND[+OPT=V...] or mc, not $name" ;;
	esac
	spid[$name]=$! sport[$name]=$port
	wait_port "$port" "${spid[$name]}" ||
		{ echo "why_clients.sh: $name did not start:" >&2; cat "$outdir/$name.log" >&2; exit 1; }
}

# snap NAME: one line of the server's counters now: "requests cpu_ticks
# sleeps preemptions read_calls write_calls wait_calls syscalls yields
# minor_faults" (read_calls..yields 0 for memcached).
snap() {
	local name=$1 pid=${spid[$1]} st req rest='0 0 0 0 0'
	if [[ $name == mc ]]; then
		st=$(server_stats "${sport[$name]}")
		req=$(awk '$1 == "cmd_get" || $1 == "cmd_set" {n += $2} END {print n + 0}' <<<"$st")
	else
		st=$(server_stats "${sport[$name]}" geecache)
		req=$(awk '$1 == "requests" {print $2}' <<<"$st")
		rest=$(curl -s "http://127.0.0.1:${smport[$name]}/metrics" | awk '
			/^geecache_netpoll_(read_calls|write_calls|wait_calls|syscalls|yields)_total / {
				sub(/^geecache_netpoll_/, "", $1); sub(/_total$/, "", $1); v[$1] = $2 }
			END { print v["read_calls"] + 0, v["write_calls"] + 0, v["wait_calls"] + 0,
			      v["syscalls"] + 0, v["yields"] + 0 }')
	fi
	echo "$req $(cpu_ticks "$pid") $(ctx_switches "$pid") $rest $(min_faults "$pid")"
}

# ---- window 2's counter ----------------------------------------------------

# The syscall tracepoints perf counts (those this kernel lacks are left out).
tp_wanted=(raw_syscalls:sys_enter
	syscalls:sys_enter_epoll_wait syscalls:sys_enter_epoll_pwait syscalls:sys_enter_epoll_pwait2
	syscalls:sys_enter_io_uring_enter
	syscalls:sys_enter_read syscalls:sys_enter_readv syscalls:sys_enter_recvfrom
	syscalls:sys_enter_recvmsg
	syscalls:sys_enter_write syscalls:sys_enter_writev syscalls:sys_enter_sendto
	syscalls:sys_enter_sendmsg
	syscalls:sys_enter_futex syscalls:sys_enter_sched_yield)
tps=()
if [[ $counter == auto || $counter == perf ]]; then
	if command -v perf >/dev/null &&
		perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
		avail=$(perf list tracepoint 2>/dev/null)
		for e in "${tp_wanted[@]}"; do
			[[ $avail == *"$e "* ]] && tps+=(-e "$e")
		done
		counter=perf
	elif [[ $counter == perf ]]; then
		die "--counter perf: perf cannot count syscall tracepoints here"
	else
		counter=strace
	fi
fi
if [[ $counter == strace ]] && ! command -v strace >/dev/null; then
	echo "why_clients.sh: no perf and no strace: window 2 skipped" >&2
	counter=none
fi
if ((profile)) && ! command -v perf >/dev/null; then
	echo "why_clients.sh: no perf: window 3 (CPU split) skipped" >&2
	profile=0
fi

# count_syscalls NAME SECONDS FILE: window 2. Prints the server's counters
# (snap) at the start and at the end of the counting; FILE gets "name
# count" lines. perf counts exactly between the two snapshots (started
# disabled, switched on and off through its control FIFO: its own start-up
# on every thread would otherwise fall outside the window); strace's
# attach and detach are not so bracketed.
count_syscalls() {
	local name=$1 secs=$2 file=$3 pid=${spid[$1]}
	case $counter in
	perf)
		local ctl=$file.ctl ack=$file.ack ppid
		rm -f "$ctl" "$ack"
		mkfifo "$ctl" "$ack"
		perf stat -x, -o "$file.raw" -D -1 --control "fifo:$ctl,$ack" "${tps[@]}" -p "$pid" \
			>/dev/null 2>&1 &
		ppid=$!
		exec 7>"$ctl" 8<"$ack"
		sleep 0.2 # attached to every thread (the ack only answers commands)
		snap "$name"
		echo enable >&7
		read -r -t 10 _ <&8 || true
		sleep "$secs"
		echo disable >&7
		read -r -t 10 _ <&8 || true
		snap "$name"
		exec 7>&- 8<&-
		kill -INT "$ppid" 2>/dev/null || true
		wait "$ppid" 2>/dev/null || true
		rm -f "$ctl" "$ack"
		awk -F, '$3 ~ /:/ && $1 ~ /^[0-9]+$/ {
			n = $3; sub(/^.*:(sys_enter_)?/, "", n); print n, $1 }' "$file.raw" >"$file"
		;;
	strace)
		snap "$name"
		timeout -s INT "$secs" strace -c -f -p "$pid" -o "$file.raw" >/dev/null 2>&1 || true
		snap "$name"
		# "% time, seconds, usecs/call, calls, [errors,] syscall" rows and "total"
		awk '$1 ~ /^[0-9.]+$/ && NF >= 5 { print ($NF == "total" ? "sys_enter" : $NF), $4 }' \
			"$file.raw" >"$file"
		;;
	*)
		snap "$name"
		: >"$file"
		sleep "$secs"
		snap "$name"
		;;
	esac
}

# ---- runs ------------------------------------------------------------------

# measure ROUND SHAPE NAME: one run; appends a JSON line to runs.jsonl.
measure() {
	local round=$1 shape=$2 name=$3 pid=${spid[$3]} port=${sport[$3]}
	local tag=$round-${shape//\//_}-$name
	kill -0 "$pid" 2>/dev/null || { echo "why_clients.sh: $name has died" >&2; exit 1; }
	local total
	total=$(awk -v w="$warm" -v s="$seconds" -v p="$profile" 'BEGIN { print w + s * (2 + p) + 2 }')
	client_cmd "$shape" "$port" "$total"
	"${cmd[@]}" >"$outdir/client-$tag.out" 2>"$outdir/client-$tag.err" &
	local cpid=$! a b c rc=0
	sleep "$warm"
	a=$(snap "$name")
	sleep "$seconds"
	b=$(snap "$name")
	local bc
	bc=$(count_syscalls "$name" "$seconds" "$outdir/sys-$tag.txt")
	if ((profile)); then
		bash "$here/cpu_profile.sh" --attach "$pid" --seconds "$seconds" \
			--out-dir "$outdir/prof-$tag" >"$outdir/prof-$tag.txt" 2>&1 || true
	fi
	c=$(snap "$name")
	wait "$cpid" || rc=$?
	kill -0 "$pid" 2>/dev/null || { echo "why_clients.sh: $name died in $shape" >&2; exit 1; }
	local client
	if [[ $shape == gb/* ]]; then
		client=$(tail -n 1 "$outdir/client-$tag.out")
		[[ $client == \{* ]] || client='{}'
	else
		client=$(memaslap_json "$outdir/client-$tag.out")
	fi
	ROUND=$round SHAPE=$shape NAME=$name RC=$rc A=$a B=$b BC=$bc C=$c CLIENT=$client \
		SYS=$outdir/sys-$tag.txt PROF=$outdir/prof-$tag.txt COUNTER=$counter \
		HZ=$(getconf CLK_TCK) "$py" - >>"$outdir/runs.jsonl" <<'PY'
import json, os, re
e = os.environ
F = ("requests", "cpu_ticks", "sleeps", "preemptions", "read_calls", "write_calls",
     "wait_calls", "syscalls", "yields", "faults")
def snap(text):
    return dict(zip(F, map(int, text.split())))
bc = e["BC"].splitlines()
a, b, c0, c1, c = snap(e["A"]), snap(e["B"]), snap(bc[0]), snap(bc[1]), snap(e["C"])
def delta(x, y):
    return {k: y[k] - x[k] for k in F}
sys_counts = {}
for line in open(e["SYS"]):
    n, v = line.split()
    sys_counts[n] = sys_counts.get(n, 0) + int(v)
prof = {}
if os.path.exists(e["PROF"]):
    for line in open(e["PROF"]):
        m = re.match(r"\| (.+?) \| ([\d.]+) \|$", line.strip())
        if m:
            prof[m.group(1).strip()] = float(m.group(2))
        m = re.search(r"server CPU ([\d.]+) s over", line)
        if m:
            prof["_cpu_s"] = float(m.group(1))
print(json.dumps({"round": int(e["ROUND"]), "shape": e["SHAPE"], "server": e["NAME"],
                  "client_rc": int(e["RC"]), "hz": int(e["HZ"]), "counter": e["COUNTER"],
                  "plain": delta(a, b), "counted": delta(c0, c1), "syscalls": sys_counts,
                  "profiled": delta(c1, c), "profile": prof,
                  "client": json.loads(e["CLIENT"] or "{}")}))
PY
	tail -n 1 "$outdir/runs.jsonl" | "$py" -c '
import json, sys
r = json.loads(sys.stdin.read()); p = r["plain"]
n = p["requests"]
print("  round %d  %-18s %-9s %9.0f req/s (server)  %6.2f CPU-us/req  %6.1f req/sleep" % (
    r["round"], r["shape"], r["server"], n / float(sys.argv[1]),
    1e6 * p["cpu_ticks"] / r["hz"] / n if n else 0, n / p["sleeps"] if p["sleeps"] else 0))
' "$seconds"
	if ((rc != 0)); then
		echo "why_clients.sh: the client exited $rc against $name ($shape):" >&2
		tail -5 "$outdir/client-$tag.err" >&2
	fi
}

echo "why_clients.sh: ${#shape_list[@]} shapes x ${#server_list[@]} servers x $rounds rounds," \
	"windows of $seconds s (counter: $counter, profile: $( ((profile)) && echo perf || echo off))," \
	"-t $threads -m $mem"
echo "  out: $outdir"
for name in "${server_list[@]}"; do start_server "$name"; done
for name in "${server_list[@]}"; do
	echo "  $name: pid ${spid[$name]} port ${sport[$name]}$(
		[[ $name == gc-* ]] && sed -n 's/.*listening on [^ ]* (\([a-z_]*\),.*/ (\1)/p' "$outdir/$name.log")"
done
if ((need_gb)); then
	for vk in $(printf '%s\n' "${gb_values[@]}" | sort -u); do
		v=${vk%/*} k=${vk#*/}
		for name in "${server_list[@]}"; do
			"$bench" -p "${sport[$name]}" -c 50 -d 32 -g 0.9 -v "$v" -k "$k" -n 0 -T 0.2 \
				--prefill >/dev/null 2>"$outdir/prefill-$name-$v-$k.err" ||
				{ echo "why_clients.sh: prefill of $name failed:" >&2; cat "$outdir/prefill-$name-$v-$k.err" >&2; exit 1; }
		done
	done
fi
{
	printf '{"date":"%s","rounds":%d,"seconds":%d,"threads":%d,"memory_mib":%d,"counter":"%s",' \
		"$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$rounds" "$seconds" "$threads" "$mem" "$counter"
	printf '"nproc":%d,"kernel":"%s","memcached":"%s","geecached":"%s","memaslap":"%s"}\n' \
		"$(nproc)" "$(uname -r)" "$("$memcached" -V 2>&1 | head -n 1)" \
		"$("$geecached" -V 2>&1 | head -n 1)" "${memaslap:+$("$memaslap" -V 2>&1 | head -n 1)}"
} >"$outdir/meta.json"

n=${#server_list[@]}
for r in $(seq 1 "$rounds"); do
	i=0
	for shape in "${shape_list[@]}"; do
		for j in $(seq 0 $((n - 1))); do
			measure "$r" "$shape" "${server_list[$(((j + r + i) % n))]}"
		done
		i=$((i + 1))
	done
done

summarize
