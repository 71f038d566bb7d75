/* Declarations for a compile check of netpoll/kqueue.c only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_PTHREAD_H
#define GEECACHE_SHIM_PTHREAD_H

/* Opaque pointers, as FreeBSD has them; only named by np_internal.h. */
typedef struct pthread *pthread_t;
typedef struct pthread_mutex *pthread_mutex_t;

#endif
