/*
 * Size classes, for reporting only (cache.h, "Size classes"): memcached
 * 1.6's slab class table, so that `stats items` and `stats slabs` group
 * items as memcached would. The store itself never allocates by class.
 */
#include "cache/cache_internal.h"

#include <pthread.h>

/* memcached's defaults: -n 48 on a 48-byte item header, -f 1.25, chunks
 * aligned to 8, the last class half a 1 MiB slab page. */
#define CLS_FIRST (48 + 48)
#define CLS_FACTOR 1.25
#define CLS_ALIGN 8
#define CLS_LAST (512 * 1024)

static uint32_t cls_size[CACHE_NCLASSES];
static unsigned cls_max;
static pthread_once_t cls_once = PTHREAD_ONCE_INIT;

/* memcached's slabs_init: the size grows by the factor in an unsigned
 * int (truncating), and stops once the next would pass the last class. */
static void cls_init(void)
{
	unsigned size = CLS_FIRST, i = 0;
	while (++i < CACHE_NCLASSES - 1) {
		if (size >= CLS_LAST / CLS_FACTOR)
			break;
		if (size % CLS_ALIGN)
			size += CLS_ALIGN - size % CLS_ALIGN;
		cls_size[i] = size;
		size = (unsigned)(size * CLS_FACTOR);
	}
	cls_size[i] = CLS_LAST;
	cls_max = i;
}

unsigned cache_class_max(void)
{
	pthread_once(&cls_once, cls_init);
	return cls_max;
}

size_t cache_class_size(unsigned id)
{
	pthread_once(&cls_once, cls_init);
	return id >= 1 && id <= cls_max ? cls_size[id] : 0;
}

size_t cache_class_item_size(size_t klen, size_t vlen, uint32_t flags)
{
	/* memcached's item_make_header and do_item_alloc: the header, the
	 * key and its NUL, the flags when not zero, the value and its
	 * "\r\n", and the CAS. */
	return 48 + klen + 1 + (flags ? 4 : 0) + vlen + 2 + 8;
}

unsigned cache_class_of(size_t item_size)
{
	pthread_once(&cls_once, cls_init);
	unsigned lo = 1, hi = cls_max;
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		if (cls_size[mid] >= item_size)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo; /* larger than every class: the last one */
}

void cache_class_stats_get(struct cache *c,
                           struct cache_class_stats out[CACHE_NCLASSES])
{
	memset(out, 0, CACHE_NCLASSES * sizeof(*out));
	for (unsigned i = 0; i < c->nshards; i++) {
		struct shard *sh = &c->shards[i];
		for (unsigned k = 1; k < CACHE_NCLASSES; k++) {
			uint64_t *f = (uint64_t *)&out[k];
			for (int j = 0; j < CC__COUNT; j++)
				f[j] += atomic_load_explicit(&sh->cls[k][j],
				                             memory_order_relaxed);
		}
	}
}
