/* Declarations for the FreeBSD compile check of netpoll only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_SYS_STAT_H
#define GEECACHE_SHIM_SYS_STAT_H

#include <sys/types.h>

/* only the fields netpoll reads; FreeBSD's struct has more */
struct stat {
	dev_t st_dev;
	ino_t st_ino;
	uint64_t st_nlink;
	mode_t st_mode;
};

#define S_IFMT 0170000
#define S_IFSOCK 0140000
#define S_ISSOCK(m) (((m) & S_IFMT) == S_IFSOCK)

int lstat(const char *path, struct stat *sb);
int chmod(const char *path, mode_t mode);
mode_t umask(mode_t numask);

#endif
