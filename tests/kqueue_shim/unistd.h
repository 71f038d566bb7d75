/* Declarations for the FreeBSD compile check of netpoll only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_UNISTD_H
#define GEECACHE_SHIM_UNISTD_H

#include <sys/types.h>

#define _SC_NPROCESSORS_ONLN 58

int close(int fd);
int unlink(const char *path);
ssize_t read(int fd, void *buf, size_t nbytes);
ssize_t write(int fd, const void *buf, size_t nbytes);
long sysconf(int name);

#endif
