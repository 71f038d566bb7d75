/* Declarations for the FreeBSD compile check of netpoll only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
/* Reached through #include_next from clang's own limits.h, which defines
 * the C limits itself; FreeBSD adds IOV_MAX (sys/syslimits.h). */
#ifndef GEECACHE_SHIM_LIMITS_H
#define GEECACHE_SHIM_LIMITS_H

#define IOV_MAX 1024

#endif
