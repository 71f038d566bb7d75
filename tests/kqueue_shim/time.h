/* Declarations for the FreeBSD compile check of netpoll only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_TIME_H
#define GEECACHE_SHIM_TIME_H

#include <stdint.h>

typedef int64_t time_t;
typedef int32_t clockid_t;

struct timespec {
	time_t tv_sec;
	long tv_nsec;
};

#define CLOCK_MONOTONIC 4

int clock_gettime(clockid_t clock_id, struct timespec *tp);

#endif
