#!/bin/sh
# Compile check of netpoll/kqueue.c for FreeBSD. The kqueue backend cannot
# run on the Linux machines GeeCache is built and tested on, so this only
# proves that it still compiles against np_internal.h and the kqueue API
# (-fsyntax-only: no object, no link, no run). The headers come from clang's
# resource dir (stddef, stdint, stdbool, stdatomic, limits) and from the
# shim beside this script; -nostdinc keeps Linux's /usr/include out.
#
# Exit 0: checked and clean, or skipped (no clang). Non-zero: an error.
set -eu
cd "$(dirname "$0")/../.."

CLANG=${CLANG:-clang}
TARGET=x86_64-unknown-freebsd14.0
SRC=netpoll/kqueue.c

if ! command -v "$CLANG" >/dev/null 2>&1; then
	echo "kqueue check: skipped: clang not installed"
	exit 0
fi

RES=$("$CLANG" -print-resource-dir)/include
set -- --target=$TARGET -std=gnu11 -nostdinc \
	-isystem "$RES" -isystem tests/kqueue_shim -I . \
	-DGEECACHE_KQUEUE_CHECK \
	-Wall -Wextra -Wshadow -Wpointer-arith -Wformat=2 \
	-Wstrict-prototypes -Wmissing-prototypes -Werror

echo "kqueue check: $SRC for $TARGET ($("$CLANG" --version | head -n 1))"
echo "  $CLANG -fsyntax-only $* $SRC"
"$CLANG" -fsyntax-only "$@" "$SRC"

# A guard that compiled to nothing would pass the line above: make sure the
# backend itself was seen.
if ! "$CLANG" -E -P "$@" "$SRC" | grep -q 'np__kqueue_ops'; then
	echo "kqueue check: FAILED: $SRC preprocessed to no np__kqueue_ops" >&2
	exit 1
fi
echo "kqueue check: ok"
