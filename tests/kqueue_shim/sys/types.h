/* Declarations for the FreeBSD compile check of netpoll only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_SYS_TYPES_H
#define GEECACHE_SHIM_SYS_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef int64_t ssize_t;
typedef uint64_t dev_t;
typedef uint64_t ino_t;
typedef uint16_t mode_t;

#endif
