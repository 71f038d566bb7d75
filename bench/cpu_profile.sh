#!/usr/bin/env bash
# bench/cpu_profile.sh — where a server's CPU goes, per request.
#
# Starts one server (geecached or memcached) on a free loopback port,
# prefills it, runs a compare.sh preset against it with geecache-bench and,
# in the middle of the run, samples every CPU with perf (software clock
# event: this VM has no hardware counters). Then prints, for the server's
# process only:
#   - requests/s and server CPU per request (utime + stime of /proc/PID/stat
#     over the sampled seconds, divided by the run's average rate times
#     those seconds);
#   - its samples split into kernel and user space;
#   - the inclusive share of the kernel paths a request goes through (the
#     reply's send, and within it the loopback receive that the sender's
#     softirq runs for the peer; the request's receive; sleeping and
#     waking) and the top user-space symbols.
# That is how docs/performance.md attributes the server CPU that bounds
# requests per CPU-second on the pipeline-1 workloads.
#
#   bench/cpu_profile.sh --server geecached --geecached build/geecached \
#       --backend io_uring --preset a [--threads 2] [--seconds 4]
#   bench/cpu_profile.sh --server memcached --geecached build/geecached --preset a
#   bench/cpu_profile.sh --attach PID --seconds 3 [--out-dir DIR]
#
# (--geecached is needed in the first two: geecache-bench is found next to
# it.) --attach samples a server that is already running under a load
# someone else drives (bench/why_clients.sh: memaslap and other clients):
# no server is started, nothing is prefilled, and the first line gives the
# server's CPU seconds over the sampled seconds instead of a per-request
# figure (the caller knows how many requests that was); the table is the
# same. Needs perf (Debian: linux-perf) and permission to sample all CPUs
# (root, or kernel.perf_event_paranoid <= -1). Exit 77 when perf cannot run.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

py=/usr/bin/python3
server=geecached geecached='' backend=epoll preset=a threads=$(nproc) seconds=4 out=''
attach=''
while (($#)); do
	case $1 in
	--server) server=$2; shift 2 ;;
	--geecached) geecached=$2; shift 2 ;;
	--backend) backend=$2; shift 2 ;;
	--preset) preset=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--seconds) seconds=$2; shift 2 ;;
	--out-dir) out=$2; shift 2 ;;
	--attach) attach=$2; shift 2 ;;
	-h | --help) sed -n '2,33p' "$0"; exit 0 ;;
	*) echo "cpu_profile.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
if [[ -n $attach ]]; then
	[[ $attach =~ ^[1-9][0-9]*$ && -d /proc/$attach ]] ||
		{ echo "cpu_profile.sh: --attach: no process $attach" >&2; exit 2; }
	preset=attached
else
	[[ -n $geecached && -x $geecached ]] || { echo "cpu_profile.sh: --geecached PATH is required" >&2; exit 2; }
	bench=$(dirname "$geecached")/geecache-bench
fi
case $preset in
a) wl=(-c 50 -d 1 -g 0.9 -v 32 -k 100000); mem=64 ;;
b) wl=(-c 50 -d 16 -g 0.9 -v 32 -k 100000); mem=64 ;;
c) wl=(-c 50 -d 1 -g 0.9 -v 4096 -k 100000); mem=1024 ;;
smoke) wl=(-c 4 -d 1 -g 0.9 -v 32 -k 1000); mem=16 ;;
attached) ;;
*) echo "cpu_profile.sh: preset a, b, c or smoke" >&2; exit 2 ;;
esac
command -v perf >/dev/null || { echo "cpu_profile.sh: perf not installed (linux-perf)" >&2; exit 77; }
[[ -n $out ]] || out=$(mktemp -d /tmp/cpu_profile.XXXXXX)
mkdir -p "$out"

# Starts the server, prefills it and starts the measured load in the
# background (bpid); sets pid.
start_and_load() {
	port=$(free_port)
	case $server in
	geecached)
		"$geecached" -p "$port" -l 127.0.0.1 -t "$threads" -m "$mem" --backend "$backend" \
			>"$out/server.log" 2>&1 &
		;;
	memcached)
		user=(); [[ $(id -u) == 0 ]] && user=(-u root)
		memcached "${user[@]}" -p "$port" -l 127.0.0.1 -U 0 -t "$threads" -m "$mem" -c 1024 \
			>"$out/server.log" 2>&1 &
		;;
	*) echo "cpu_profile.sh: --server geecached|memcached" >&2; exit 2 ;;
	esac
	pid=$!
	trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
		sleep 0.05
	done
	"$bench" -p "$port" "${wl[@]}" -T 0.2 --prefill >/dev/null
	total=$(awk -v s="$seconds" 'BEGIN { print s + 3 }')
	"$bench" -p "$port" "${wl[@]}" -T "$total" --json >"$out/bench.json" &
	bpid=$!
	sleep 1.5
}

if [[ -n $attach ]]; then
	pid=$attach bpid=''
	server=$(<"/proc/$pid/comm")
else
	start_and_load
fi
c0=$(cpu_ticks "$pid")
if ! perf record -a -g -e cpu-clock -F 2000 -o "$out/perf.data" -- sleep "$seconds" \
	>"$out/perf-record.log" 2>&1; then
	echo "cpu_profile.sh: perf record failed (permissions?):" >&2
	tail -3 "$out/perf-record.log" >&2
	[[ -z $bpid ]] || wait $bpid || true
	exit 77
fi
c1=$(cpu_ticks "$pid")
[[ -z $bpid ]] || wait $bpid
hz=$(getconf CLK_TCK)
# perf report's --pid/--comm filters drop the kernel's rows here (perf 6.x
# on this VM); the unfiltered reports sorted by thread ("pid" sorts by
# thread id: "TID:comm") are read instead, keeping the server's threads.
# Not by comm: on a shared machine other geecached or memcached processes
# (someone's tests) run under the same names, and their samples would be
# counted as the server's.
tids=$(ls /proc/"$pid"/task 2>/dev/null | paste -sd, -)
comms=$(cat /proc/"$pid"/task/*/comm 2>/dev/null | sort -u | paste -sd, -)
perf report -i "$out/perf.data" --no-children --sort pid,dso -g none \
	--stdio 2>/dev/null >"$out/dso.txt" || true
perf report -i "$out/perf.data" --children --sort pid,sym -g none \
	--stdio 2>/dev/null >"$out/children.txt" || true
perf report -i "$out/perf.data" --no-children --sort pid,sym -g none \
	--stdio 2>/dev/null >"$out/self.txt" || true

SERVER=$server BACKEND=$backend PRESET=$preset SECONDS_=$seconds TICKS=$((c1 - c0)) HZ=$hz \
COMMS=$comms TIDS=$tids OUT=$out ATTACH=$attach $py - <<'EOF'
import json, os, re
out = os.environ["OUT"]
comms = set(os.environ["COMMS"].split(","))
tids = set(os.environ["TIDS"].split(","))
attach = os.environ["ATTACH"]
# the run's average; samples cover its middle
rps = None if attach else json.load(open(out + "/bench.json"))["rps"]
cpu_s = int(os.environ["TICKS"]) / int(os.environ["HZ"])
secs = float(os.environ["SECONDS_"])
def rows(name, children):
    """(percent, TID:comm, [k]/[.] or dso, symbol) of the server's threads."""
    pat = (r"\s*([\d.]+)%\s+[\d.]+%\s+(\S+)\s+(\S+)\s*(.*)$" if children
           else r"\s*([\d.]+)%\s+(\S+)\s+(\S+)\s*(.*)$")
    r = []
    for line in open(out + "/" + name):
        m = re.match(pat, line)
        if m and not line.startswith("#") and m.group(2).split(":", 1)[0] in tids:
            r.append((float(m.group(1)), m.group(2), m.group(3), m.group(4).strip()))
    return r
dso = rows("dso.txt", False)
total = sum(p for p, c, d, _ in dso) or 1.0
kern = sum(p for p, c, d, _ in dso if d == "[kernel.kallsyms]")
incl = {}
for p, c, k, sym in rows("children.txt", True):
    incl[sym] = incl.get(sym, 0.0) + p
own = {}
for p, c, k, sym in rows("self.txt", False):
    if k == "[.]":
        own[sym] = own.get(sym, 0.0) + p
paths = [
    ("reply send (tcp_sendmsg)", "tcp_sendmsg"),
    ("  of which the peer's loopback receive (net_rx_action)", "net_rx_action"),
    ("request receive (tcp_recvmsg)", "tcp_recvmsg"),
    ("  io_uring's receive (io_recv)", "io_recv"),
    ("waiting: epoll_wait (do_epoll_wait)", "do_epoll_wait"),
    ("waiting: io_uring_enter's wait (io_cqring_wait)", "io_cqring_wait"),
    ("sleep and wake-up (__schedule)", "__schedule"),
]
srv = os.environ["SERVER"]
if attach:
    print("pid %s (%s), attached: server CPU %.2f s over %.0f s" % (attach, srv, cpu_s, secs))
else:
    print("%s (%s), preset %s: %.0f req/s, server CPU %.2f s over %.0f s: %.2f us per request"
          % (srv, os.environ["BACKEND"] if srv == "geecached" else "libevent",
             os.environ["PRESET"], rps, cpu_s, secs, 1e6 * cpu_s / (rps * secs) if rps else 0))
print("| share of the server's samples (threads: %s) | %% |" % ", ".join(sorted(comms)))
print("|---|---:|")
print("| kernel | %.1f |" % (100 * kern / total))
print("| user space | %.1f |" % (100 * (total - kern) / total))
for label, sym in paths:
    if sym in incl:
        print("| %s | %.1f |" % (label, 100 * incl[sym] / total))
for sym, p in sorted(own.items(), key=lambda x: -x[1])[:5]:
    print("| user: %s | %.1f |" % (sym, 100 * p / total))
print("(perf data and reports: %s)" % out)
EOF
