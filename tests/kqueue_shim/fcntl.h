/* Declarations for the FreeBSD compile check of netpoll only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_FCNTL_H
#define GEECACHE_SHIM_FCNTL_H

#define O_NONBLOCK 0x0004
#define F_GETFD 1
#define F_SETFD 2
#define F_GETFL 3
#define F_SETFL 4
#define FD_CLOEXEC 1
#define F_DUPFD_CLOEXEC 17

int fcntl(int fd, int cmd, ...);

#endif
