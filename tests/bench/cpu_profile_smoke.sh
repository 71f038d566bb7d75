#!/usr/bin/env bash
# bench/cpu_profile.sh end to end, briefly (preset smoke, 1 s sampled):
# it reports a CPU time per request, the server's kernel/user split summing
# to about 100 %, and the reply-send path among the kernel's. Skipped (77)
# where perf is missing or may not sample every CPU. No figure asserted.
set -euo pipefail
geecached=$1 out=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
rc=0
res=$(bash "$here/../../bench/cpu_profile.sh" --server geecached --geecached "$geecached" \
	--preset smoke --threads 1 --seconds 1 --out-dir "$out") || rc=$?
((rc == 77)) && exit 77
((rc == 0)) || { echo "cpu_profile.sh failed ($rc)"; exit 1; }
echo "$res"
/usr/bin/python3 - "$res" <<'PY'
import re, sys
t = sys.argv[1]
m = re.search(r"([\d.]+) us per request", t)
assert m and float(m.group(1)) > 0, "no CPU time per request"
k = float(re.search(r"\| kernel \| ([\d.]+) \|", t).group(1))
u = float(re.search(r"\| user space \| ([\d.]+) \|", t).group(1))
assert 90 <= k + u <= 100.5, "kernel + user = %.1f %%" % (k + u)
assert "reply send (tcp_sendmsg)" in t, "the reply's send path is missing"
print("cpu_profile smoke: ok")
PY
