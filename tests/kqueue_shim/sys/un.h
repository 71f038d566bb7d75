/* Declarations for the FreeBSD compile check of netpoll only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_SYS_UN_H
#define GEECACHE_SHIM_SYS_UN_H

#include <sys/socket.h>

struct sockaddr_un {
	uint8_t sun_len;
	sa_family_t sun_family;
	char sun_path[104];
};

#endif
