/*
 * alloccount — an LD_PRELOAD library that counts a process's calls into the
 * system allocator, so that "N allocator calls per 1000 requests" can be
 * measured from outside the server instead of taken from its own counters.
 *
 *   LD_PRELOAD=/path/alloccount.so ALLOCCOUNT_OUT=/tmp/x.log memcached ...
 *   kill -USR2 <pid>      # appends one report line to ALLOCCOUNT_OUT
 *
 * What is counted: every call that reaches this library's malloc, calloc,
 * realloc, reallocarray, free, posix_memalign, aligned_alloc, memalign,
 * valloc, pvalloc, mmap, mmap64 and munmap, with the bytes asked for (for
 * free: the block's malloc_usable_size; free(NULL) is not counted, as it
 * does nothing). Calls go through the dynamic linker, so this sees what the
 * program and its libraries ask for (glibc's own string functions, stdio
 * buffers, ...), but not glibc's internal mmaps behind malloc, nor raw
 * syscalls (liburing maps its rings with syscall(2)): the figure is "calls
 * into the allocator's API", the one a pooled server should keep at zero.
 *
 * Everything is forwarded to the next definition (glibc's), so memory from
 * here can be freed anywhere else and vice versa. The only exception is the
 * bootstrap: dlsym() itself may calloc before the real calloc is known;
 * those few requests come from a static arena and are never handed to
 * glibc's free.
 *
 * Counters are relaxed atomics (any thread may allocate). A report is one
 * line, "alloccount pid=P seq=N why=signal|exit alloc_calls=.. free_calls=..
 * alloc_bytes=.. malloc=.. malloc_bytes=.. ...", written:
 *   - on a signal, from the handler, with write(2) only (async-signal-safe):
 *     the number in ALLOCCOUNT_SIGNAL, else SIGUSR2;
 *   - at exit (a destructor; not after _exit or a fatal signal).
 * to the file named by ALLOCCOUNT_OUT (opened O_APPEND per report, so the
 * reader can poll for a new line) or to stderr when it is unset. The program
 * must not take that signal for itself; if it blocks it or installs its own
 * handler, reports on demand stop. geecached takes SIGUSR2 (it sigwaits it,
 * as memcached ignores it), so bench/compare.sh picks a real-time signal
 * that neither server touches.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define AC_EXPORT __attribute__((visibility("default")))

/* name, counts as an allocation (1) or a release (0) */
#define AC_FUNCS(X)                 \
	X(malloc, 1)                \
	X(calloc, 1)                \
	X(realloc, 1)               \
	X(reallocarray, 1)          \
	X(posix_memalign, 1)        \
	X(aligned_alloc, 1)         \
	X(memalign, 1)              \
	X(valloc, 1)                \
	X(pvalloc, 1)               \
	X(mmap, 1)                  \
	X(free, 0)                  \
	X(munmap, 0)

enum ac_func {
#define X(name, is_alloc) AC_##name,
	AC_FUNCS(X)
#undef X
	AC_NFUNCS
};

static const char *const ac_names[AC_NFUNCS] = {
#define X(name, is_alloc) #name,
	AC_FUNCS(X)
#undef X
};

static const bool ac_is_alloc[AC_NFUNCS] = {
#define X(name, is_alloc) is_alloc,
	AC_FUNCS(X)
#undef X
};

/* One cache line per function: the hot ones (malloc, free) do not share a
 * line with each other. */
struct ac_counter {
	_Atomic uint64_t calls;
	_Atomic uint64_t bytes;
} __attribute__((aligned(64)));

static struct ac_counter ac_ctr[AC_NFUNCS];
static _Atomic uint32_t ac_seq;

static inline void ac_count(enum ac_func f, uint64_t bytes)
{
	atomic_fetch_add_explicit(&ac_ctr[f].calls, 1, memory_order_relaxed);
	if (bytes)
		atomic_fetch_add_explicit(&ac_ctr[f].bytes, bytes, memory_order_relaxed);
}

/* ---- the next definitions ---------------------------------------------- */

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void *(*real_reallocarray)(void *, size_t, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void *(*real_valloc)(size_t);
static void *(*real_pvalloc)(size_t);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static void *(*real_mmap64)(void *, size_t, int, int, int, off64_t);
static int (*real_munmap)(void *, size_t);

/* 0: not started, 1: resolving (dlsym may call calloc/malloc/free), 2: done */
static _Atomic int ac_state;

/* The bootstrap arena: requests made while dlsym runs. Bump allocation,
 * 16-byte aligned, a size header before each block; never freed. */
static unsigned char ac_arena[16384] __attribute__((aligned(16)));
static _Atomic size_t ac_arena_used;

static bool ac_in_arena(const void *p)
{
	return (const unsigned char *)p >= ac_arena &&
	       (const unsigned char *)p < ac_arena + sizeof(ac_arena);
}

static void *ac_arena_alloc(size_t n)
{
	size_t need = 16 + ((n + 15) & ~(size_t)15);
	size_t off = atomic_fetch_add(&ac_arena_used, need);
	if (n > sizeof(ac_arena) || off + need > sizeof(ac_arena))
		return NULL;
	memcpy(ac_arena + off, &n, sizeof(n));
	return ac_arena + off + 16;
}

static size_t ac_arena_size(const void *p)
{
	size_t n;
	memcpy(&n, (const unsigned char *)p - 16, sizeof(n));
	return n;
}

#define AC_RESOLVE(name) *(void **)&real_##name = dlsym(RTLD_NEXT, #name)

/* Resolves the next definitions once. Safe to re-enter from dlsym's own
 * allocations (they see state 1 and use the arena); threads racing here
 * resolve the same values. */
static void ac_init(void)
{
	int expected = 0;
	if (!atomic_compare_exchange_strong(&ac_state, &expected, 1)) {
		return;
	}
	AC_RESOLVE(calloc);
	AC_RESOLVE(malloc);
	AC_RESOLVE(realloc);
	AC_RESOLVE(reallocarray);
	AC_RESOLVE(free);
	AC_RESOLVE(posix_memalign);
	AC_RESOLVE(aligned_alloc);
	AC_RESOLVE(memalign);
	AC_RESOLVE(valloc);
	AC_RESOLVE(pvalloc);
	AC_RESOLVE(mmap);
	AC_RESOLVE(mmap64);
	AC_RESOLVE(munmap);
	atomic_store(&ac_state, 2);
}

/* True when the real functions are usable; false while dlsym runs. */
static inline bool ac_ready(void)
{
	int s = atomic_load_explicit(&ac_state, memory_order_acquire);
	if (s == 2)
		return true;
	if (s == 0)
		ac_init();
	return atomic_load_explicit(&ac_state, memory_order_acquire) == 2;
}

/* ---- reports ----------------------------------------------------------- */

static char ac_out_path[4096]; /* from ALLOCCOUNT_OUT at load; "" = stderr */

struct ac_line {
	char buf[2048];
	size_t len;
};

static void ac_puts(struct ac_line *l, const char *s)
{
	while (*s && l->len < sizeof(l->buf) - 1)
		l->buf[l->len++] = *s++;
}

static void ac_putu(struct ac_line *l, uint64_t v)
{
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n && l->len < sizeof(l->buf) - 1)
		l->buf[l->len++] = tmp[--n];
}

static void ac_kv(struct ac_line *l, const char *k, const char *suffix, uint64_t v)
{
	ac_puts(l, " ");
	ac_puts(l, k);
	ac_puts(l, suffix);
	ac_puts(l, "=");
	ac_putu(l, v);
}

/* Formats and writes one report. Async-signal-safe: no allocation, no
 * stdio, no locks; errno is preserved. */
static void ac_report(const char *why)
{
	int saved = errno;
	struct ac_line l = {.len = 0};
	uint64_t calls[AC_NFUNCS], bytes[AC_NFUNCS];
	uint64_t alloc_calls = 0, free_calls = 0, alloc_bytes = 0;
	for (int i = 0; i < AC_NFUNCS; i++) {
		calls[i] = atomic_load_explicit(&ac_ctr[i].calls, memory_order_relaxed);
		bytes[i] = atomic_load_explicit(&ac_ctr[i].bytes, memory_order_relaxed);
		if (ac_is_alloc[i]) {
			alloc_calls += calls[i];
			alloc_bytes += bytes[i];
		} else {
			free_calls += calls[i];
		}
	}
	ac_puts(&l, "alloccount");
	ac_kv(&l, "pid", "", (uint64_t)getpid());
	ac_kv(&l, "seq", "", atomic_fetch_add(&ac_seq, 1) + 1u);
	ac_puts(&l, " why=");
	ac_puts(&l, why);
	ac_kv(&l, "alloc_calls", "", alloc_calls);
	ac_kv(&l, "free_calls", "", free_calls);
	ac_kv(&l, "alloc_bytes", "", alloc_bytes);
	for (int i = 0; i < AC_NFUNCS; i++) {
		ac_kv(&l, ac_names[i], "", calls[i]);
		ac_kv(&l, ac_names[i], "_bytes", bytes[i]);
	}
	ac_puts(&l, "\n");
	int fd = 2;
	if (ac_out_path[0]) {
		fd = open(ac_out_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0)
			fd = 2;
	}
	/* O_APPEND and one write: a line is never interleaved with another. */
	ssize_t w = write(fd, l.buf, l.len);
	(void)w;
	if (fd != 2)
		close(fd);
	errno = saved;
}

static void ac_on_signal(int sig)
{
	(void)sig;
	ac_report("signal");
}

__attribute__((constructor)) static void ac_load(void)
{
	ac_ready();
	const char *p = getenv("ALLOCCOUNT_OUT");
	if (p && strlen(p) < sizeof(ac_out_path))
		memcpy(ac_out_path, p, strlen(p) + 1);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = ac_on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	const char *s = getenv("ALLOCCOUNT_SIGNAL");
	int sig = s && *s ? atoi(s) : SIGUSR2;
	sigaction(sig > 0 && sig < NSIG ? sig : SIGUSR2, &sa, NULL);
}

__attribute__((destructor)) static void ac_unload(void)
{
	ac_report("exit");
}

/* ---- the interposed functions ------------------------------------------ */

AC_EXPORT void *malloc(size_t n)
{
	if (!ac_ready())
		return ac_arena_alloc(n);
	ac_count(AC_malloc, n);
	return real_malloc(n);
}

AC_EXPORT void *calloc(size_t nmemb, size_t size)
{
	if (!ac_ready()) {
		if (size && nmemb > SIZE_MAX / size)
			return NULL;
		return ac_arena_alloc(nmemb * size); /* static: already zero */
	}
	ac_count(AC_calloc, (uint64_t)nmemb * size);
	return real_calloc(nmemb, size);
}

AC_EXPORT void *realloc(void *p, size_t n)
{
	if (!ac_ready() || ac_in_arena(p)) {
		void *q = ac_ready() ? real_malloc(n) : ac_arena_alloc(n);
		if (q && p) {
			size_t old = ac_arena_size(p);
			memcpy(q, p, old < n ? old : n);
		}
		return q;
	}
	ac_count(AC_realloc, n);
	return real_realloc(p, n);
}

AC_EXPORT void *reallocarray(void *p, size_t nmemb, size_t size)
{
	if (!ac_ready() || ac_in_arena(p)) {
		if (size && nmemb > SIZE_MAX / size) {
			errno = ENOMEM;
			return NULL;
		}
		return realloc(p, nmemb * size);
	}
	ac_count(AC_reallocarray, (uint64_t)nmemb * size);
	return real_reallocarray(p, nmemb, size);
}

AC_EXPORT void free(void *p)
{
	if (!p || ac_in_arena(p))
		return;
	if (!ac_ready())
		return; /* cannot happen: p came from glibc, so init is done */
	ac_count(AC_free, malloc_usable_size(p));
	real_free(p);
}

AC_EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
	if (!ac_ready())
		return ENOMEM;
	ac_count(AC_posix_memalign, n);
	return real_posix_memalign(out, align, n);
}

AC_EXPORT void *aligned_alloc(size_t align, size_t n)
{
	if (!ac_ready())
		return NULL;
	ac_count(AC_aligned_alloc, n);
	return real_aligned_alloc(align, n);
}

AC_EXPORT void *memalign(size_t align, size_t n)
{
	if (!ac_ready())
		return NULL;
	ac_count(AC_memalign, n);
	return real_memalign(align, n);
}

AC_EXPORT void *valloc(size_t n)
{
	if (!ac_ready())
		return NULL;
	ac_count(AC_valloc, n);
	return real_valloc(n);
}

AC_EXPORT void *pvalloc(size_t n)
{
	if (!ac_ready())
		return NULL;
	ac_count(AC_pvalloc, n);
	return real_pvalloc(n);
}

/* While dlsym runs, mmap goes straight to the system call (syscall(2)
 * returns -1 and sets errno on failure, which is mmap's MAP_FAILED). */
static void *ac_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	long r = syscall(SYS_mmap, addr, len, prot, flags, fd, off);
	return r == -1 ? MAP_FAILED : (void *)r;
}

/* mmap and mmap64 share a counter (one ABI on 64-bit). */
AC_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (!ac_ready() || !real_mmap)
		return ac_sys_mmap(addr, len, prot, flags, fd, off);
	ac_count(AC_mmap, len);
	return real_mmap(addr, len, prot, flags, fd, off);
}

AC_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	if (!ac_ready() || !real_mmap64)
		return mmap(addr, len, prot, flags, fd, (off_t)off);
	ac_count(AC_mmap, len);
	return real_mmap64(addr, len, prot, flags, fd, off);
}

AC_EXPORT int munmap(void *addr, size_t len)
{
	if (!ac_ready() || !real_munmap)
		return (int)syscall(SYS_munmap, addr, len);
	ac_count(AC_munmap, len);
	return real_munmap(addr, len);
}
