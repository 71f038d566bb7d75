#!/bin/sh
# Compile check of netpoll for FreeBSD: kqueue.c and every other netpoll
# file a FreeBSD build uses (all of netpoll/*.c but the Linux-only
# backends, epoll.c and uring.c), so that a new file is checked without
# being listed here. On Linux the kqueue backend runs (and is tested)
# through libkqueue, but the native build for FreeBSD cannot run here, so
# this proves that its files still compile against np_internal.h and
# FreeBSD's API (-fsyntax-only: no object, no link, no run). The headers come from clang's resource dir
# (stddef, stdint, stdbool, stdatomic, limits) and from the shim beside this
# script; -nostdinc keeps Linux's /usr/include out.
#
# Exit 0: checked and clean, or skipped (no clang). Non-zero: an error.
set -eu
cd "$(dirname "$0")/../.."

CLANG=${CLANG:-clang}
TARGET=x86_64-unknown-freebsd14.0

SRCS=
for f in netpoll/*.c; do
	case $f in
	netpoll/epoll.c | netpoll/uring.c) ;;
	*) SRCS="$SRCS $f" ;;
	esac
done

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

echo "kqueue check: netpoll for $TARGET ($("$CLANG" --version | head -n 1))"
echo "  flags: $*"
for src in $SRCS; do
	echo "  $CLANG -fsyntax-only ... $src"
	"$CLANG" -fsyntax-only "$@" "$src"
done

# A guard that compiled to nothing would pass the lines above: make sure
# the backend itself and its row in the table were seen.
if ! "$CLANG" -E -P "$@" netpoll/kqueue.c | grep -q 'np__kqueue_ops = {'; then
	echo "kqueue check: FAILED: netpoll/kqueue.c preprocessed to no np__kqueue_ops" >&2
	exit 1
fi
if ! "$CLANG" -E -P "$@" netpoll/backend.c | grep -q '&np__kqueue_ops'; then
	echo "kqueue check: FAILED: netpoll/backend.c has no row for np__kqueue_ops" >&2
	exit 1
fi
echo "kqueue check: ok"
