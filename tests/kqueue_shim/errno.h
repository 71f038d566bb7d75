/* Declarations for a compile check of netpoll/kqueue.c only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_ERRNO_H
#define GEECACHE_SHIM_ERRNO_H

int *__error(void);
#define errno (*__error())

#define EINTR 4
#define ENOMEM 12
#define EAGAIN 35
#define ECONNRESET 54

#endif
