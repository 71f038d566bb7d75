/* Declarations for the FreeBSD compile check of netpoll only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_ARPA_INET_H
#define GEECACHE_SHIM_ARPA_INET_H

#include <netinet/in.h>

int inet_pton(int af, const char *restrict src, void *restrict dst);

#endif
