#!/usr/bin/env bash
# bench/netpoll/peers/ servers (uv_echo, ev_echo), each in both modes on
# two loop threads: one plain-echo round trip, rpc-echo round trips (two
# frames in one write, one frame split across writes, an empty frame; the
# replies byte for byte), a short np_bench --connect run with no failed
# connection, and a clean exit on SIGTERM. A server that was not built
# (its library absent) is skipped; exit 77 when neither was.
#   peers_smoke.sh UV_ECHO EV_ECHO NP_BENCH
set -euo pipefail
uv=$1 ev=$2 npb=$3
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
ran=0

check() { # check BIN MODE
  local bin=$1 mode=$2 port=""
  "$bin" -m "$mode" -t 2 > "$tmp/out" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    port=$(sed -n 's/^listening on [^:]*:\([0-9]*\).*/\1/p' "$tmp/out")
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "FAIL: $bin -m $mode did not start: $(cat "$tmp/out")"; exit 1; }
  /usr/bin/python3 - "$port" "$mode" <<'PY'
import socket, struct, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=5)
def recv_exact(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit("FAIL: %s: connection closed after %d of %d bytes" % (mode, len(b), n))
        b += c
    return b
if mode == "echo":
    s.sendall(b"hello, peer")
    got = recv_exact(11)
    assert got == b"hello, peer", got
else:
    f = lambda p: struct.pack(">I", len(p)) + p
    a, b, big, empty = f(b"one"), f(b"two!"), f(bytes(range(256)) * 80), f(b"")
    s.sendall(a + b)                      # two frames in one write
    assert recv_exact(len(a + b)) == a + b
    s.sendall(big[:3]); time.sleep(0.05)  # split inside the length
    s.sendall(big[3:9000]); time.sleep(0.05)
    s.sendall(big[9000:] + empty)
    assert recv_exact(len(big + empty)) == big + empty
s.close()
PY
  if [ "$mode" = rpc ]; then
    "$npb" --connect "127.0.0.1:$port" --server-pid "$pid" -n 4 -d 4 -s 100 -T 0.2 -j > "$tmp/np.json"
    grep -q '"failed":0' "$tmp/np.json" || { echo "FAIL: np_bench: $(cat "$tmp/np.json")"; exit 1; }
  fi
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  pid=""
  [ "$rc" = 0 ] || { echo "FAIL: $bin -m $mode exited $rc on SIGTERM: $(cat "$tmp/out")"; exit 1; }
  echo "ok: $(basename "$bin") -m $mode"
}

for bin in "$uv" "$ev"; do
  if [ ! -x "$bin" ]; then
    echo "skip: $bin not built (library absent, or bench programs off)"
    continue
  fi
  check "$bin" echo
  check "$bin" rpc
  ran=$((ran + 1))
done
[ "$ran" -gt 0 ] || exit 77
