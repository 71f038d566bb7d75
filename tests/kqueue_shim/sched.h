/* Declarations for the FreeBSD compile check of netpoll only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_SCHED_H
#define GEECACHE_SHIM_SCHED_H

int sched_yield(void);

#endif
