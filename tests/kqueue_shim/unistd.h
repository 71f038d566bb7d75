/* Declarations for a compile check of netpoll/kqueue.c only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_UNISTD_H
#define GEECACHE_SHIM_UNISTD_H

#include <sys/types.h>

int close(int fd);

#endif
