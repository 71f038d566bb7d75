/* Declarations for the FreeBSD compile check of netpoll only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_ERRNO_H
#define GEECACHE_SHIM_ERRNO_H

int *__error(void);
#define errno (*__error())

#define EPERM 1
#define ENOENT 2
#define EINTR 4
#define EIO 5
#define EDEADLK 11
#define ENOMEM 12
#define EBUSY 16
#define EEXIST 17
#define EXDEV 18
#define EINVAL 22
#define ENFILE 23
#define EMFILE 24
#define ENOSPC 28
#define EAGAIN 35
#define EINPROGRESS 36
#define EMSGSIZE 40
#define EADDRINUSE 48
#define ECONNABORTED 53
#define ECONNRESET 54
#define ENOBUFS 55
#define ESHUTDOWN 58
#define ETIMEDOUT 60
#define ECONNREFUSED 61
#define ENAMETOOLONG 63
#define ENOSYS 78
#define ECANCELED 85

#endif
