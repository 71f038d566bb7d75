/* Declarations for the FreeBSD compile check of netpoll only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_STDLIB_H
#define GEECACHE_SHIM_STDLIB_H

#include <stddef.h>

void *malloc(size_t size);
void *calloc(size_t n, size_t size);
void free(void *p);
char *getenv(const char *name);

#endif
