#!/usr/bin/env bash
# geecache-bench's open loop end to end against a geecached it starts:
# with --rate R and -n N it issues exactly N requests on the schedule, every
# one answered and verified, and the run is never shorter than the schedule
# (the last request is due at (N-1)/R s; a pacer that fires early would
# finish sooner). No upper bound on time is asserted: this machine is shared.
#   open_loop.sh GEECACHED GEECACHE-BENCH
set -euo pipefail
gc=$1 bench=$2
log=$(mktemp)
"$gc" -p 0 -t 1 -m 16 >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
	grep -q listening "$log" && break
	sleep 0.05
done
[[ $(grep -m 1 listening "$log") =~ listening\ on\ 127\.0\.0\.1:([0-9]+) ]] || { cat "$log"; exit 1; }
port=${BASH_REMATCH[1]}
fail=0
for be in epoll io_uring; do
	out=$("$bench" -p "$port" -c 4 -k 1000 -r 4000 -n 2000 --backend "$be" --json)
	echo "$be: $out"
	/usr/bin/python3 - "$out" <<'PY' || fail=1
import json, sys
d = json.loads(sys.argv[1])
assert d["mode"] == "open", d
assert d["requests"] == 2000, "requests %d, want 2000" % d["requests"]
assert d["errors"] == 0 and d["wrong"] == 0 and d["closed_early"] == 0, d
assert d["seconds"] >= 1999 / 4000 - 0.002, "finished in %.3f s, before its schedule" % d["seconds"]
PY
done
exit $fail
