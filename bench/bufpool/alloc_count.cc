#include "alloc_count.h"

#include <cstddef>

static thread_local uint64_t t_malloc_calls;

uint64_t malloc_calls() { return t_malloc_calls; }

extern "C" {
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void __real_free(void *p);

void *__wrap_malloc(size_t n)
{
	t_malloc_calls++;
	return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
	t_malloc_calls++;
	return __real_calloc(n, m);
}

void __wrap_free(void *p) { __real_free(p); }
}
