/* Declarations for the FreeBSD compile check of netpoll only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_STRING_H
#define GEECACHE_SHIM_STRING_H

#include <stddef.h>

void *memcpy(void *restrict dst, const void *restrict src, size_t len);
char *strcpy(char *restrict dst, const char *restrict src);
char *strdup(const char *str);
void *memset(void *b, int c, size_t len);
int strcmp(const char *s1, const char *s2);
size_t strlen(const char *s);
char *strerror(int errnum);

#endif
