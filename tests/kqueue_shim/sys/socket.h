/* Declarations for a compile check of netpoll/kqueue.c only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_SYS_SOCKET_H
#define GEECACHE_SHIM_SYS_SOCKET_H

#include <sys/types.h>

typedef uint32_t socklen_t;

#define SOL_SOCKET 0xffff
#define SO_NOSIGPIPE 0x0800
#define SO_ERROR 0x1007

int getsockopt(int s, int level, int optname, void *optval, socklen_t *optlen);
int setsockopt(int s, int level, int optname, const void *optval, socklen_t optlen);

#endif
