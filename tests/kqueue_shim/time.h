/* Declarations for a compile check of netpoll/kqueue.c only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_TIME_H
#define GEECACHE_SHIM_TIME_H

#include <stdint.h>

typedef int64_t time_t;

struct timespec {
	time_t tv_sec;
	long tv_nsec;
};

#endif
