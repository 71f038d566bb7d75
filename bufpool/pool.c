/*
 * Pools of refcounted blocks: size classes, per-thread caches, the shared
 * depot, carving, huge blocks, the limit and detaching. Giving memory back
 * is release.c's; the counters' table and sums are stats.c's.
 *
 * Memory comes from the system in 2 MiB regions (mmap), carved lazily: a
 * class whose depot is empty carves one batch of blocks off the current
 * region, so resident memory grows only with use and the limit is charged
 * block by block (charged_bytes). Blocks move between thread caches and
 * the depot; only bp_pool_release_idle (release.c) gives their memory
 * back:
 *
 *   get:  thread cache bin --(empty)--> depot batch --(none)--> carve
 *   put:  thread cache bin --(over 2 batches)--> one batch to the depot
 *
 * Only the depot and the carving take the pool's mutex, once per batch.
 * Free blocks are linked as bp_internal.h's free-list layout says.
 */
#include "bufpool/bp_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

const uint32_t bp__class_size[BP_NCLASSES] = {
	32, 48, 64, 80, 96, 112, 128,                   /* 16-byte steps */
	160, 192, 224, 256, 320, 384, 448, 512,         /* then 4 per doubling */
	640, 768, 896, 1024, 1280, 1536, 1792, 2048,
	2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192,
	10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768,
	40960, 49152, 57344, 65536, 81920, 98304, 114688, 131072,
	163840, 196608, 229376, 262144,
};

_Static_assert(BP_MAX_CLASS_SIZE == 262144u, "largest class");

/* The pool table. A slot is written under g_lock at create/destroy; the
 * data path reads it for a block whose pool exists (its creation
 * happened-before the block's), so the read needs no lock. */
static struct bp_pool *g_pools[BP_MAX_POOLS];
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t g_keys[BP_MAX_POOLS];
static pthread_once_t g_keys_once = PTHREAD_ONCE_INIT;
static __thread struct bp_tcache *tls_tc[BP_MAX_POOLS];

/* Blocks moved per depot exchange: about 64 KiB worth, 1..64 blocks. A
 * thread cache holds at most two batches per class. */
#define BATCH(sz) (65536u / (sz) < 1 ? 1u : 65536u / (sz) > 64 ? 64u : 65536u / (sz))
uint32_t bp__batch[BP_NCLASSES];
size_t bp__page;
static pthread_once_t g_batch_once = PTHREAD_ONCE_INIT;

static void batch_init(void)
{
	for (int i = 0; i < BP_NCLASSES; i++)
		bp__batch[i] = BATCH(bp__class_size[i]);
	bp__page = (size_t)sysconf(_SC_PAGESIZE);
}

/* ---- size classes ----------------------------------------------------- */

int bp_class_count(void)
{
	return BP_NCLASSES;
}

size_t bp_class_size(int cls)
{
	return cls >= 0 && cls < BP_NCLASSES ? bp__class_size[cls] : 0;
}

int bp_class_of(size_t cap)
{
	if (cap > BP_MAX_CLASS_SIZE - BP_BLOCK_HDR)
		return -1;
	size_t t = cap + BP_BLOCK_HDR;
	if (t <= 32)
		return 0;
	if (t <= 128)
		return (int)((t + 15) / 16) - 2;
	/* 2^k < t <= 2^(k+1), four classes spaced 2^(k-2) apart. */
	int k = 63 - __builtin_clzll((unsigned long long)(t - 1));
	size_t sp = (size_t)1 << (k - 2);
	int step = (int)((t - ((size_t)1 << k) + sp - 1) / sp);
	return 7 + (k - 7) * 4 + step - 1;
}

/* What bp_block_get(pool, cap) charges: the class size, or a huge block's
 * whole mapping as huge_get makes it ([u64 size][header][data], rounded up
 * to pages). Keep the two in step (pool_test.cc, BlockCharge). */
size_t bp_block_charge(size_t cap)
{
	int cls = bp_class_of(cap);
	if (cls >= 0)
		return bp__class_size[cls];
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	return (cap + sizeof(uint64_t) + BP_BLOCK_HDR + page - 1) & ~(page - 1);
}

/* ---- thread caches ---------------------------------------------------- */

static void tcache_release(struct bp_tcache *tc);

static void key_destructor(void *p)
{
	tcache_release(p);
}

static void keys_init(void)
{
	for (int i = 0; i < BP_MAX_POOLS; i++)
		if (pthread_key_create(&g_keys[i], key_destructor) != 0)
			abort(); /* start-up: nothing sensible to do without keys */
}

static struct bp_tcache *tcache_create(struct bp_pool *pool)
{
	struct bp_tcache *tc = calloc(1, sizeof(*tc));
	atomic_fetch_add(&pool->sys_alloc_calls, 1);
	if (!tc)
		return NULL;
	tc->pool = pool;
	pthread_mutex_lock(&pool->lock);
	tc->next = pool->threads;
	if (tc->next)
		tc->next->prev = tc;
	pool->threads = tc;
	pthread_mutex_unlock(&pool->lock);
	tls_tc[pool->id] = tc;
	pthread_setspecific(g_keys[pool->id], tc);
	return tc;
}

static inline struct bp_tcache *tcache(struct bp_pool *pool)
{
	struct bp_tcache *tc = tls_tc[pool->id];
	if (BP_LIKELY(tc != NULL))
		return tc;
	return tcache_create(pool);
}

/* Gives every block of the cache back to the depot, folds its counters into
 * the pool's and frees it. */
static void tcache_release(struct bp_tcache *tc)
{
	struct bp_pool *pool = tc->pool;
	pthread_mutex_lock(&pool->lock);
	bp__tcache_drain(pool, tc);
	for (int i = 0; i < BP_NCLASSES; i++) {
		struct tbin *b = &tc->bins[i];
		pool->retired.gets[i] += bp__ctr_get(&b->gets);
		pool->retired.puts[i] += bp__ctr_get(&b->puts);
		pool->retired.misses[i] += bp__ctr_get(&b->misses);
	}
	for (int r = 0; r < BP_COPY__COUNT; r++)
		pool->retired.copied[r] += bp__ctr_get(&tc->copied[r]);
	if (tc->prev)
		tc->prev->next = tc->next;
	else
		pool->threads = tc->next;
	if (tc->next)
		tc->next->prev = tc->prev;
	pthread_mutex_unlock(&pool->lock);
	if (tls_tc[pool->id] == tc)
		tls_tc[pool->id] = NULL;
	free(tc);
	atomic_fetch_add(&pool->sys_free_calls, 1);
}

void bp_pool_thread_flush(struct bp_pool *pool)
{
	struct bp_tcache *tc = tls_tc[pool->id];
	if (!tc)
		return;
	pthread_setspecific(g_keys[pool->id], NULL);
	tcache_release(tc);
}

struct bp_tcache *bp__tcache_peek(struct bp_pool *pool)
{
	return tls_tc[pool->id];
}

void bp__tcache_drain(struct bp_pool *pool, struct bp_tcache *tc)
{
	for (int i = 0; i < BP_NCLASSES; i++) {
		struct tbin *b = &tc->bins[i];
		if (b->head)
			bp__depot_push(pool, i, b->head, b->count);
		b->head = NULL;
		b->count = 0;
	}
}

/* ---- carving ---------------------------------------------------------- */

static bool charge(struct bp_pool *pool, size_t n)
{
	uint64_t cur = atomic_load_explicit(&pool->charged, memory_order_relaxed);
	do {
		if (pool->limit && cur + n > pool->limit)
			return false;
	} while (!atomic_compare_exchange_weak(&pool->charged, &cur, cur + n));
	return true;
}

static void init_free(struct bp_pool *pool, void *p, int cls)
{
	struct bp_block *b = p;
	atomic_init(&b->refs, 0);
	b->cls = (uint8_t)cls;
	b->pool_id = (uint8_t)pool->id;
	b->flags = 0;
	b->mark = 0;
}

/* Carves what is left of the current region into the largest classes that
 * fit, so that no tail is wasted, as single-block depot batches. Locked. */
static void region_scrap(struct bp_pool *pool)
{
	while (pool->region_left >= bp__class_size[0]) {
		int cls = BP_NCLASSES - 1;
		while (bp__class_size[cls] > pool->region_left)
			cls--;
		size_t sz = bp__class_size[cls];
		if (!charge(pool, sz))
			break;
		void *blk = pool->region_cur;
		pool->region_cur += sz;
		pool->region_left -= sz;
		init_free(pool, blk, cls);
		bp__words(blk)[0] = NULL;
		bp__depot_push(pool, cls, blk, 1);
		pool->depot[cls].carved++;
	}
	pool->region_left = 0;
	if (pool->region_cur) /* retired: release_idle walks it to here */
		pool->regions->end = (uint32_t)(pool->region_cur - (char *)pool->regions);
}

/* A spare region, moved to the head of the list, or NULL. Its memory is
 * unpoisoned only now that it is carved again, so that until then a stray
 * access through a stale pointer still trips ASan. Locked. */
static struct region *region_reuse(struct bp_pool *pool)
{
	for (struct region **pp = &pool->regions; *pp; pp = &(*pp)->next) {
		struct region *r = *pp;
		if (!r->spare)
			continue;
		*pp = r->next;
		r->next = pool->regions;
		pool->regions = r;
		BP_UNPOISON(r, REGION_SIZE);
		return r;
	}
	return NULL;
}

static bool region_new(struct bp_pool *pool)
{
	struct region *r = region_reuse(pool);
	if (!r) {
		atomic_fetch_add(&pool->sys_alloc_calls, 1);
		void *m = mmap(NULL, REGION_SIZE, PROT_READ | PROT_WRITE,
		               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			return false;
		atomic_fetch_add(&pool->sys_bytes, REGION_SIZE);
		r = m;
		r->next = pool->regions;
		pool->regions = r;
	}
	r->end = REGION_HDR;
	r->spare = 0;
	r->drop = 0;
	pool->region_cur = (char *)r + REGION_HDR;
	pool->region_left = REGION_SIZE - REGION_HDR;
	return true;
}

/* Carves up to n blocks of class cls into a list; returns how many (0 when
 * the limit or the system says no). Locked. */
static uint32_t carve(struct bp_pool *pool, int cls, uint32_t n, void **head)
{
	size_t sz = bp__class_size[cls];
	uint32_t got = 0;
	void *list = NULL;
	while (got < n) {
		if (pool->region_left < sz) {
			if (pool->limit && atomic_load(&pool->charged) + sz > pool->limit)
				break;
			region_scrap(pool);
			if (!region_new(pool))
				break;
		}
		if (!charge(pool, sz))
			break;
		void *blk = pool->region_cur;
		pool->region_cur += sz;
		pool->region_left -= sz;
		init_free(pool, blk, cls);
		bp__words(blk)[0] = list;
		list = blk;
		got++;
	}
	pool->depot[cls].carved += got;
	*head = list;
	return got;
}

/* Refills an empty bin from the depot or by carving; returns false when
 * neither can. */
static bool refill(struct bp_pool *pool, struct tbin *bin, int cls)
{
	pthread_mutex_lock(&pool->lock);
	struct depot_class *d = &pool->depot[cls];
	void *head = d->batches;
	uint32_t n;
	if (head) {
		d->batches = bp__words(head)[1];
		n = (uint32_t)(uintptr_t)bp__words(head)[2];
		d->nblocks -= n;
		pool->depot_gen++;
	} else {
		n = carve(pool, cls, bp__batch_of(cls), &head);
	}
	pthread_mutex_unlock(&pool->lock);
	bin->head = head;
	bin->count = n;
	return n > 0;
}

/* A get refused by fault injection: to the caller it is the limit. */
static struct bp_block *fault_refuse(struct bp_pool *pool)
{
	atomic_fetch_add(&pool->faults_injected, 1);
	atomic_fetch_add(&pool->enomem, 1);
	return NULL;
}

/* ---- huge blocks ------------------------------------------------------ */

/* A huge block is a private mapping: [u64 mapping size][header][data]. */
static struct bp_block *huge_get(struct bp_pool *pool, size_t cap)
{
	if (bp__fault_check(cap, pool->name))
		return fault_refuse(pool);
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	if (cap > ((size_t)1 << 32) - 2 * page)
		goto fail; /* slices address blocks with 32-bit offsets */
	size_t total = (cap + 16 + page - 1) & ~(page - 1);
	if (!charge(pool, total))
		goto fail;
	atomic_fetch_add(&pool->sys_alloc_calls, 1);
	void *m = mmap(NULL, total, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		atomic_fetch_sub(&pool->charged, total);
		goto fail;
	}
	*(uint64_t *)m = total;
	struct bp_block *b = (struct bp_block *)((char *)m + 8);
	atomic_init(&b->refs, 1);
	b->cls = BP_CLS_HUGE;
	b->pool_id = (uint8_t)pool->id;
	b->flags = 0;
	atomic_fetch_add(&pool->sys_bytes, total);
	atomic_fetch_add(&pool->huge_gets, 1);
	atomic_fetch_add(&pool->huge_bytes, total);
	return b;
fail:
	atomic_fetch_add(&pool->enomem, 1);
	return NULL;
}

static void huge_put(struct bp_pool *pool, struct bp_block *b)
{
	void *m = (char *)b - 8;
	uint64_t total = *(uint64_t *)m;
	bool detached = b->flags & BP_F_DETACHED;
	munmap(m, total);
	atomic_fetch_add(&pool->sys_free_calls, 1);
	atomic_fetch_sub(&pool->sys_bytes, total);
	atomic_fetch_sub(detached ? &pool->detached : &pool->charged, total);
	atomic_fetch_sub(&pool->huge_bytes, total);
	atomic_fetch_add(&pool->huge_puts, 1);
}

/* ---- blocks ----------------------------------------------------------- */

#ifdef BP_NAIVE_ALLOC
/* The "naive" build (-DGEECACHE_NAIVE_ALLOC=ON), for the seed's comparison
 * table only: every block is its own malloc and every last unref its free,
 * as a data path without pools would do. Counters and the limit still work
 * (each call is counted in sys_alloc_calls / sys_free_calls). */
static struct bp_block *naive_get(struct bp_pool *pool, struct bp_tcache *tc, int cls)
{
	size_t sz = bp__class_size[cls];
	if (!charge(pool, sz)) {
		atomic_fetch_add(&pool->enomem, 1);
		return NULL;
	}
	atomic_fetch_add(&pool->sys_alloc_calls, 1);
	struct bp_block *blk = malloc(sz);
	if (!blk) {
		atomic_fetch_sub(&pool->charged, sz);
		atomic_fetch_add(&pool->enomem, 1);
		return NULL;
	}
	init_free(pool, blk, cls);
	atomic_store_explicit(&blk->refs, 1, memory_order_relaxed);
	struct tbin *bin = &tc->bins[cls];
	bp__ctr_add(&bin->gets, 1);
	bp__ctr_add(&bin->misses, 1);
	pthread_mutex_lock(&pool->lock);
	pool->depot[cls].carved++;
	pthread_mutex_unlock(&pool->lock);
	return blk;
}

static void naive_put(struct bp_pool *pool, struct bp_tcache *tc, struct bp_block *blk)
{
	int cls = blk->cls;
	if (tc)
		bp__ctr_add(&tc->bins[cls].puts, 1);
	pthread_mutex_lock(&pool->lock);
	if (!tc)
		pool->retired.puts[cls]++;
	pool->depot[cls].carved--;
	pthread_mutex_unlock(&pool->lock);
	atomic_fetch_sub(&pool->charged, bp__class_size[cls]);
	atomic_fetch_add(&pool->sys_free_calls, 1);
	free(blk);
}
#endif

struct bp_block *bp__block_get_cls(struct bp_pool *pool, int cls)
{
	/* Before the cache: with injection on, a cached block can be refused
	 * too, so that every get may fail (bp_fault_set). */
	if (bp__fault_check(bp__class_size[cls] - BP_BLOCK_HDR, pool->name))
		return fault_refuse(pool);
	struct bp_tcache *tc = tcache(pool);
	if (BP_UNLIKELY(!tc)) {
		atomic_fetch_add(&pool->enomem, 1);
		return NULL;
	}
#ifdef BP_NAIVE_ALLOC
	return naive_get(pool, tc, cls);
#endif
	struct tbin *bin = &tc->bins[cls];
	void *b = bin->head;
	if (BP_UNLIKELY(b == NULL)) {
		if (!refill(pool, bin, cls)) {
			atomic_fetch_add(&pool->enomem, 1);
			return NULL;
		}
		b = bin->head;
		bp__ctr_add(&bin->misses, 1);
	}
	bin->head = bp__words(b)[0];
	bin->count--;
	bp__ctr_add(&bin->gets, 1);
	struct bp_block *blk = b;
	BP_UNPOISON(bp_block_data(blk), bp__class_size[cls] - BP_BLOCK_HDR);
	atomic_store_explicit(&blk->refs, 1, memory_order_relaxed);
	return blk;
}

struct bp_block *bp_block_get(struct bp_pool *pool, size_t cap)
{
	int cls = bp_class_of(cap);
	if (BP_UNLIKELY(cls < 0 || pool->direct))
		return huge_get(pool, cap);
	return bp__block_get_cls(pool, cls);
}

/* Detaching moves a mapping's charge from the limit to the detached
 * budget; huge_put then returns it there. The caller holds a reference, so
 * the block cannot be freed meanwhile; the flag is written before the
 * caller drops that reference (whose release orders it before the last
 * unref's acquire). */
int bp_block_detach(struct bp_block *blk)
{
	if (blk->cls != BP_CLS_HUGE)
		return -EINVAL;
	struct bp_pool *pool = g_pools[blk->pool_id];
	if (blk->flags & BP_F_DETACHED)
		return 0;
	uint64_t total = *(const uint64_t *)((const char *)blk - 8);
	uint64_t cur = atomic_load_explicit(&pool->detached, memory_order_relaxed);
	do {
		if (cur + total > pool->detach_limit)
			return -ENOSPC;
	} while (!atomic_compare_exchange_weak(&pool->detached, &cur, cur + total));
	blk->flags |= BP_F_DETACHED;
	atomic_fetch_sub(&pool->charged, total);
	atomic_fetch_add(&pool->detaches, 1);
	uint64_t peak = atomic_load_explicit(&pool->detached_peak, memory_order_relaxed);
	while (cur + total > peak &&
	       !atomic_compare_exchange_weak(&pool->detached_peak, &peak, cur + total))
		;
	return 0;
}

/* Returns a block whose last reference is gone to this thread's cache. */
static void block_free(struct bp_block *blk)
{
	struct bp_pool *pool = g_pools[blk->pool_id];
	if (BP_UNLIKELY(blk->cls == BP_CLS_HUGE)) {
		huge_put(pool, blk);
		return;
	}
#ifdef BP_NAIVE_ALLOC
	naive_put(pool, tls_tc[pool->id], blk);
	return;
#endif
	int cls = blk->cls;
	size_t cap = bp__class_size[cls] - BP_BLOCK_HDR;
	BP_POISON(bp_block_data(blk) + FREE_WORDS * sizeof(void *),
	          cap - FREE_WORDS * sizeof(void *));
	struct bp_tcache *tc = tcache(pool);
	if (BP_UNLIKELY(!tc)) { /* no cache for this thread: straight to depot */
		bp__words(blk)[0] = NULL;
		pthread_mutex_lock(&pool->lock);
		bp__depot_push(pool, cls, blk, 1);
		pool->retired.puts[cls]++;
		pthread_mutex_unlock(&pool->lock);
		return;
	}
	struct tbin *bin = &tc->bins[cls];
	bp__words(blk)[0] = bin->head;
	bin->head = blk;
	bin->count++;
	bp__ctr_add(&bin->puts, 1);
	uint32_t batch = bp__batch_of(cls);
	if (BP_UNLIKELY(bin->count > 2 * batch)) {
		/* Keep the `batch` most recently freed (cache-warm) blocks; the
		 * older ones go to the depot as one batch. */
		void *keep_last = bin->head;
		for (uint32_t i = 1; i < batch; i++)
			keep_last = bp__words(keep_last)[0];
		void *give = bp__words(keep_last)[0];
		bp__words(keep_last)[0] = NULL;
		uint32_t n = bin->count - batch;
		bin->count = batch;
		pthread_mutex_lock(&pool->lock);
		bp__depot_push(pool, cls, give, n);
		pthread_mutex_unlock(&pool->lock);
	}
}

void bp_block_ref(struct bp_block *blk)
{
	atomic_fetch_add_explicit(&blk->refs, 1, memory_order_relaxed);
}

void bp_block_unref(struct bp_block *blk)
{
	if (!blk)
		return;
	/* Sole owner: nobody else can take a reference, so no RMW is needed.
	 * The acquire pairs with the release of other owners' decrements. */
	uint32_t r = atomic_load_explicit(&blk->refs, memory_order_acquire);
	if (BP_LIKELY(r == 1)) {
		atomic_store_explicit(&blk->refs, 0, memory_order_relaxed);
		block_free(blk);
		return;
	}
	if (BP_UNLIKELY(r == 0)) {
		fprintf(stderr, "bufpool: unref of a free block %p\n", (void *)blk);
		abort();
	}
	if (atomic_fetch_sub_explicit(&blk->refs, 1, memory_order_acq_rel) == 1)
		block_free(blk);
}

uint32_t bp_block_refs(const struct bp_block *blk)
{
	return atomic_load_explicit(&((struct bp_block *)blk)->refs,
	                            memory_order_acquire);
}

size_t bp_block_cap(const struct bp_block *blk)
{
	if (blk->cls == BP_CLS_HUGE)
		return *(const uint64_t *)((const char *)blk - 8) - 16;
	return bp__class_size[blk->cls] - BP_BLOCK_HDR;
}

void bp_slice_release(struct bp_slice *s)
{
	bp_block_unref(s->blk);
	s->blk = NULL;
	s->off = s->len = 0;
}

void bp_slice_dup(struct bp_slice *dst, const struct bp_slice *src)
{
	if (src->blk)
		bp_block_ref(src->blk);
	*dst = *src;
}

void bp__count_copy(struct bp_pool *pool, enum bp_copy_reason why, size_t n)
{
	struct bp_tcache *tc = tcache(pool);
	if (tc)
		bp__ctr_add(&tc->copied[why], n);
}

/* ---- pools ------------------------------------------------------------ */

struct bp_pool *bp_pool_create(const struct bp_pool_opts *opts)
{
	pthread_once(&g_keys_once, keys_init);
	pthread_once(&g_batch_once, batch_init);
	bp__fault_init();
	struct bp_pool *pool = calloc(1, sizeof(*pool));
	if (!pool)
		return NULL;
	snprintf(pool->name, sizeof(pool->name), "%s",
	         opts && opts->name ? opts->name : "bufpool");
	pool->limit = opts ? opts->limit : 0;
	pool->direct = opts && opts->direct;
	pool->detach_limit = opts ? opts->detach_limit : 0;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_mutex_lock(&g_lock);
	pool->id = -1;
	for (int i = 0; i < BP_MAX_POOLS; i++) {
		if (!g_pools[i]) {
			pool->id = i;
			g_pools[i] = pool;
			break;
		}
	}
	pthread_mutex_unlock(&g_lock);
	if (pool->id < 0) {
		pthread_mutex_destroy(&pool->lock);
		free(pool);
		errno = EMFILE;
		return NULL;
	}
	return pool;
}

void bp_pool_destroy(struct bp_pool **pp)
{
	struct bp_pool *pool = pp ? *pp : NULL;
	if (!pool)
		return;
	bp_pool_thread_flush(pool);
#ifndef NDEBUG
	struct bp_stats st;
	bp_pool_stats(pool, &st);
	if (pool->threads || st.blocks_in_use) {
		fprintf(stderr, "bufpool: destroying pool '%s' with %llu blocks in "
		        "use and %s thread caches\n", pool->name,
		        (unsigned long long)st.blocks_in_use,
		        pool->threads ? "live" : "no");
		abort();
	}
#endif
	struct region *r = pool->regions;
	while (r) {
		struct region *next = r->next;
		/* ASan's shadow outlives the mapping: clear it, or the next
		 * mapping at this address inherits our poison. */
		BP_UNPOISON(r, REGION_SIZE);
		munmap(r, REGION_SIZE);
		r = next;
	}
	pthread_mutex_lock(&g_lock);
	g_pools[pool->id] = NULL;
	pthread_mutex_unlock(&g_lock);
	pthread_mutex_destroy(&pool->lock);
	free(pool);
	*pp = NULL;
}

const char *bp_pool_name(const struct bp_pool *pool)
{
	return pool->name;
}
