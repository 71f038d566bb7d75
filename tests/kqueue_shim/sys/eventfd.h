/* Declarations for the FreeBSD compile check of netpoll only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_SYS_EVENTFD_H
#define GEECACHE_SHIM_SYS_EVENTFD_H

/* FreeBSD 13 and later. */
#define EFD_NONBLOCK 0x00000004
#define EFD_CLOEXEC 0x00100000

int eventfd(unsigned int initval, int flags);

#endif
