#!/usr/bin/env bash
# Fuzz smoke: builds the proto fuzz targets (clang, libFuzzer; ASan+UBSan, and MSan)
# into a temporary directory and runs each for a fixed number of runs from
# the seed corpus in tests/fuzz/corpus/<target>. Exits non-zero on any crash.
#
#   tests/fuzz/smoke.sh              # 20000 runs per target
#   RUNS=200000 tests/fuzz/smoke.sh  # more
#   KEEP=1 tests/fuzz/smoke.sh       # keep the build dir (printed)
# Long campaigns: see docs/protocol.md ("Fuzzing").
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-20000}
CC=${CLANG:-clang}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gc-fuzz.XXXXXX")
cleanup() { if [ -z "${KEEP:-}" ]; then rm -rf "$tmp"; else echo "kept $tmp"; fi; }
trap cleanup EXIT

flags=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I. -Wall -Wextra -Werror)
srcs=(tests/fuzz/fuzz_proto.c proto/proto.c proto/bin.c proto/text.c proto/meta.c
      bufpool/*.c) # every bufpool file: a new one links without an edit here

# Each target twice: ASan+UBSan, and MemorySanitizer (reads of memory
# never written, which ASan does not see: the parser's init leaves its
# pending request and key scratch unwritten on purpose).
msan_flags=(-g -O1 -fsanitize=fuzzer,memory -fsanitize-memory-track-origins -I. -Wall -Wextra
            -Werror)

status=0
for t in bin:1 text:2 meta:3 bin-msan:1 text-msan:2 meta-msan:3; do
	name=${t%%:*}; id=${t##*:}
	if [[ $name == *-msan ]]; then f=("${msan_flags[@]}"); else f=("${flags[@]}"); fi
	"$CC" "${f[@]}" -DFUZZ_PROTO="$id" "${srcs[@]}" -lpthread -o "$tmp/fuzz_$name"
	mkdir -p "$tmp/new_$name"
	echo "== fuzz_$name: $RUNS runs"
	if ! "$tmp/fuzz_$name" -runs="$RUNS" -max_len=8192 -timeout=10 \
		-artifact_prefix="$tmp/crash_$name-" \
		"$tmp/new_$name" "tests/fuzz/corpus/${name%-msan}" >"$tmp/log_$name" 2>&1; then
		echo "fuzz_$name FAILED:"; tail -40 "$tmp/log_$name"
		ls "$tmp"/crash_"$name"-* 2>/dev/null && KEEP=1
		status=1
	else
		grep -E "^Done" "$tmp/log_$name" || tail -2 "$tmp/log_$name"
	fi
done
exit $status
