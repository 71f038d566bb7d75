# bench/lib.sh — helpers the bench scripts share; sourced, not run.

# A loopback TCP port the kernel reports free now.
free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# utime + stime of PID in clock ticks (fields 14 and 15 of /proc/PID/stat;
# the command name in field 2 may hold spaces, so count after its ')').
cpu_ticks() {
	local s
	s=$(<"/proc/$1/stat")
	s=${s##*) }
	local -a f
	read -r -a f <<<"$s"
	echo $((f[11] + f[12]))
}

# Minor page faults of PID, all its threads (field 10 of /proc/PID/stat):
# first touches of fresh memory, among them a store growing into new pages.
min_faults() {
	local s
	s=$(<"/proc/$1/stat")
	s=${s##*) }
	local -a f
	read -r -a f <<<"$s"
	echo "${f[7]}"
}

# Resident set size of PID in KiB.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# server_stats PORT [GROUP]: a memcached-protocol server's `stats` (either
# server), or `stats GROUP`, as "name value" lines. A server without that
# group (it answers ERROR: a geecached from before `stats geecache`) is
# asked for plain `stats`, where such a build kept its own counters.
server_stats() {
	local line
	exec 4<>"/dev/tcp/127.0.0.1/$1"
	printf 'stats%s\r\n' "${2:+ $2}" >&4
	while IFS= read -r -t 5 line <&4; do
		line=${line%$'\r'}
		[[ $line == END ]] && break
		if [[ $line == ERROR && -n ${2:-} ]]; then
			exec 4>&-
			server_stats "$1"
			return
		fi
		[[ $line == STAT\ * ]] && echo "${line#STAT }"
	done
	exec 4>&-
}

# Voluntary and involuntary context switches of PID, summed over its
# threads, as "voluntary involuntary". A voluntary switch is a sleep (a
# wait in epoll_wait, io_uring_enter or a futex); sched_yield and
# preemption count as involuntary.
ctx_switches() {
	cat /proc/"$1"/task/*/status 2>/dev/null |
		awk '/^voluntary_ctxt_switches:/ {v += $2} /^nonvoluntary_ctxt_switches:/ {n += $2}
		     END {print v + 0, n + 0}'
}

# memaslap's binary: Debian's libmemcached-tools names it memcaslap.
memaslap_bin() { command -v memaslap || command -v memcaslap || true; }

# memaslap_cfg FILE VALUE_BYTES GET_SHARE: memaslap's -F file for 16-byte
# keys (its minimum), fixed-size values and GET_SHARE (0..1) GETs, the
# rest SETs.
memaslap_cfg() {
	awk -v v="$2" -v g="$3" 'BEGIN {
		printf "key\n16 16 1\nvalue\n%d %d 1\ncmd\n0 %.4f\n1 %.4f\n", v, v, 1 - g, g }' >"$1"
}

# memaslap_json OUTPUT_FILE: memaslap's report as geecache-bench's --json
# fields (rps, requests, p50_us, p99_us, avg_us), from its last
# "Run time:" line and, with -S, its "Total Statistics" log2 histogram
# (bucket E holds latencies in (2^(E-1), 2^E] us, ms_stats.c's
# ms_local_log2; a percentile is its bucket's upper edge, so only a factor
# of two resolves). "{}" when there is no report. memaslap
# verifies nothing here: errors are left to the caller's checks.
memaslap_json() {
	/usr/bin/python3 - "$1" <<'PY'
import json, re, sys
t = open(sys.argv[1], errors="replace").read()
m = re.findall(r"Run time: ([\d.]+)s Ops: (\d+) TPS: (\d+)", t)
if not m:
    print("{}")
    sys.exit(0)
secs, ops, tps = m[-1]
r = {"client": "memaslap", "rps": float(tps), "requests": int(ops), "seconds": float(secs)}
tot = t.rfind("Total Statistics (")
if tot >= 0:
    part = t[tot:]
    avg = re.search(r"Avg:\s+(\d+)", part)
    if avg:
        r["avg_us"] = float(avg.group(1))
    # "Log2 Dist:" rows "  E: n0 n1 n2 n3": the counts of buckets E..E+3
    buckets = {}
    for row in re.finditer(r"^\s+(\d+):((?:\s+\d+)+)\s*$", part, re.M):
        for i, n in enumerate(row.group(2).split()):
            buckets[int(row.group(1)) + i] = int(n)
    total = sum(buckets.values())
    for q, k in ((0.5, "p50_us"), (0.99, "p99_us")):
        acc = 0
        for e in sorted(buckets):
            acc += buckets[e]
            if total and acc >= q * total:
                r[k] = float(2 ** e)
                break
print(json.dumps(r))
PY
}
