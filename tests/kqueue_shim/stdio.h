/* Declarations for the FreeBSD compile check of netpoll only; not a libc.
 * Values and types are those of FreeBSD 14 on amd64. See check.sh. */
#ifndef GEECACHE_SHIM_STDIO_H
#define GEECACHE_SHIM_STDIO_H

typedef struct __sFILE FILE;

extern FILE *__stderrp;
#define stderr __stderrp

int fprintf(FILE *restrict stream, const char *restrict format, ...);

#endif
