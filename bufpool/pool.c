/*
 * Pools of refcounted blocks: size classes, per-thread caches, the shared
 * depot, huge blocks, the limit, and the counters.
 *
 * Memory comes from the system in 2 MiB regions (mmap), carved lazily: a
 * class whose depot is empty carves one batch of blocks off the current
 * region, so resident memory grows only with use and the limit is charged
 * block by block (charged_bytes). Blocks move between thread caches and
 * the depot; only bp_pool_release_idle gives their memory back (see
 * "giving memory back" below):
 *
 *   get:  thread cache bin --(empty)--> depot batch --(none)--> carve
 *   put:  thread cache bin --(over 2 batches)--> one batch to the depot
 *
 * Only the depot and the carving take the pool's mutex, once per batch.
 *
 * Free-list layout. A free block's data words are:
 *   [0] next block in this list / batch
 *   [1] next batch (only in the first block of a batch in the depot)
 *   [2] number of blocks in the batch (same)
 * The smallest class has exactly 24 bytes of data, so this always fits.
 * Under ASan the rest of a free block is poisoned.
 */
#include "bufpool/bp_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define REGION_SIZE (2u * 1024u * 1024u)
#define REGION_HDR 16u /* struct region; keeps blocks 16-aligned */
#define FREE_WORDS 3u  /* data words the free lists use (see above) */
/* Bytes at the start of a free block that must survive a release: the
 * header (class, pool) and the free-list words. */
#define FREE_KEEP (BP_BLOCK_HDR + FREE_WORDS * sizeof(void *))

/* The first REGION_HDR bytes of every region. Regions are listed newest
 * first; the first is the current one (carving goes on in it) unless it
 * is spare. A spare region holds no block: release_idle uncarved it and
 * gave its pages back (all but the first, which holds this header); it
 * stays mapped and the next region_new takes it instead of an mmap. */
struct region {
	struct region *next;
	uint32_t end;   /* bytes carved (header included), once retired */
	uint8_t spare;
	uint8_t drop;   /* release_idle: to become spare (all blocks free) */
	uint8_t _pad[2];
};

_Static_assert(sizeof(struct region) == REGION_HDR, "region header size");


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

struct tbin {
	void *head;       /* free list (owner thread only) */
	uint32_t count;   /* blocks in head (owner thread only) */
	bp_ctr gets, puts, misses; /* hits = gets - misses */
};

/* One thread's cache of one pool. */
struct bp_tcache {
	struct bp_pool *pool;
	struct bp_tcache *prev, *next; /* in pool->threads, under pool->lock */
	bp_ctr copied[BP_COPY__COUNT];
	struct tbin bins[BP_NCLASSES];
};

struct depot_class {
	void *batches;     /* stack of batches (see layout above) */
	uint64_t nblocks;  /* blocks in the depot */
	uint64_t carved;   /* blocks ever carved for this class */
};

struct retired { /* counters of threads that have gone */
	uint64_t gets[BP_NCLASSES], puts[BP_NCLASSES];
	uint64_t misses[BP_NCLASSES];
	uint64_t copied[BP_COPY__COUNT];
};

struct bp_pool {
	char name[32];
	int id;
	size_t limit;
	size_t detach_limit;  /* bytes detached blocks may hold (direct pools) */
	bool direct;          /* every block its own mapping (bp_pool_opts) */
	pthread_mutex_t lock; /* depot, carving, regions, threads, retired */
	struct depot_class depot[BP_NCLASSES];
	char *region_cur;   /* in regions (the head), or NULL */
	size_t region_left;
	struct region *regions; /* every mapped region, newest first */
	/* bp_pool_release_idle: depot changes (pushes, pops) so far and as
	 * of its last walk; its current stamp for depot blocks (1..255) */
	uint64_t depot_gen, released_gen;
	uint8_t mark;
	struct bp_tcache *threads;
	struct retired retired;
	/* Rare-path counters, updated with atomics from any thread. */
	_Atomic uint64_t charged, sys_bytes, sys_alloc_calls, sys_free_calls;
	_Atomic uint64_t huge_gets, huge_puts, huge_bytes, enomem;
	_Atomic uint64_t faults_injected;
	_Atomic uint64_t released_bytes, release_calls, trims; /* release_idle, trim */
	_Atomic uint64_t detached, detached_peak, detaches; /* bp_block_detach */
};

/* The pool table. A slot is written under g_lock at create/destroy; the
 * data path reads it for a block whose pool exists (its creation
 * happened-before the block's), so the read needs no lock. */
static struct bp_pool *g_pools[BP_MAX_POOLS];
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t g_keys[BP_MAX_POOLS];
static pthread_once_t g_keys_once = PTHREAD_ONCE_INIT;
static __thread struct bp_tcache *tls_tc[BP_MAX_POOLS];

static inline void **words(void *blk)
{
	return (void **)bp_block_data((struct bp_block *)blk);
}

/* Blocks moved per depot exchange: about 64 KiB worth, 1..64 blocks. A
 * thread cache holds at most two batches per class. */
#define BATCH(sz) (65536u / (sz) < 1 ? 1u : 65536u / (sz) > 64 ? 64u : 65536u / (sz))
static uint32_t g_batch[BP_NCLASSES];
static pthread_once_t g_batch_once = PTHREAD_ONCE_INIT;
static size_t g_page; /* the system's page size */

static void batch_init(void)
{
	for (int i = 0; i < BP_NCLASSES; i++)
		g_batch[i] = BATCH(bp__class_size[i]);
	g_page = (size_t)sysconf(_SC_PAGESIZE);
}

static inline uint32_t batch_of(int cls)
{
	return g_batch[cls];
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

/* Pushes a list of n blocks (linked through word 0) as one depot batch.
 * Called with pool->lock held. */
static void depot_push(struct bp_pool *pool, int cls, void *head, uint32_t n)
{
	struct depot_class *d = &pool->depot[cls];
	words(head)[1] = d->batches;
	words(head)[2] = (void *)(uintptr_t)n;
	d->batches = head;
	d->nblocks += n;
	pool->depot_gen++;
}

/* Gives every block of the cache back to the depot, folds its counters into
 * the pool's and frees it. */
static void tcache_release(struct bp_tcache *tc)
{
	struct bp_pool *pool = tc->pool;
	pthread_mutex_lock(&pool->lock);
	for (int i = 0; i < BP_NCLASSES; i++) {
		struct tbin *b = &tc->bins[i];
		if (b->head)
			depot_push(pool, i, b->head, b->count);
		b->head = NULL;
		b->count = 0;
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

/* Like tcache_release's first half: the bins go to the depot, one batch
 * each (a bin holds at most two batches' worth), and the cache with its
 * counters stays, so the next get is a miss but no malloc. */
void bp_pool_thread_trim(struct bp_pool *pool)
{
	atomic_fetch_add_explicit(&pool->trims, 1, memory_order_relaxed);
	struct bp_tcache *tc = tls_tc[pool->id];
	if (!tc)
		return;
	pthread_mutex_lock(&pool->lock);
	for (int i = 0; i < BP_NCLASSES; i++) {
		struct tbin *b = &tc->bins[i];
		if (b->head)
			depot_push(pool, i, b->head, b->count);
		b->head = NULL;
		b->count = 0;
	}
	pthread_mutex_unlock(&pool->lock);
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
		words(blk)[0] = NULL;
		depot_push(pool, cls, blk, 1);
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
		words(blk)[0] = list;
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
		d->batches = words(head)[1];
		n = (uint32_t)(uintptr_t)words(head)[2];
		d->nblocks -= n;
		pool->depot_gen++;
	} else {
		n = carve(pool, cls, batch_of(cls), &head);
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
	bin->head = words(b)[0];
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
		words(blk)[0] = NULL;
		pthread_mutex_lock(&pool->lock);
		depot_push(pool, cls, blk, 1);
		pool->retired.puts[cls]++;
		pthread_mutex_unlock(&pool->lock);
		return;
	}
	struct tbin *bin = &tc->bins[cls];
	words(blk)[0] = bin->head;
	bin->head = blk;
	bin->count++;
	bp__ctr_add(&bin->puts, 1);
	uint32_t batch = batch_of(cls);
	if (BP_UNLIKELY(bin->count > 2 * batch)) {
		/* Keep the `batch` most recently freed (cache-warm) blocks; the
		 * older ones go to the depot as one batch. */
		void *keep_last = bin->head;
		for (uint32_t i = 1; i < batch; i++)
			keep_last = words(keep_last)[0];
		void *give = words(keep_last)[0];
		words(keep_last)[0] = NULL;
		uint32_t n = bin->count - batch;
		bin->count = batch;
		pthread_mutex_lock(&pool->lock);
		depot_push(pool, cls, give, n);
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

/* ---- giving memory back ----------------------------------------------- */

/*
 * bp_pool_release_idle works on the blocks the depot holds, under the
 * pool's lock, so that no thread takes or returns any of them meanwhile.
 * Blocks in use and in thread caches keep their pages and bytes; only
 * their headers' class and mark are read, and the mark cleared once per
 * 255 calls (nothing but this code touches the mark, nor writes the class
 * while a block of a region is carved). Steps:
 *
 *  1. every depot block is stamped with a fresh mark (pool->mark): a
 *     block is known to be in the depot when its mark is the current one,
 *     so stamps of earlier calls need no clearing (all are cleared once
 *     per 255 calls, before the stamp would come round again);
 *  2. every region is walked block by block (the headers give the sizes,
 *     up to what was carved): a region whose blocks are all stamped is
 *     to drop, its blocks BP_F_GONE; in the others, each stamped block
 *     gives back the whole pages past its first FREE_KEEP bytes (the
 *     header and free-list words stay, so the free lists and the block's
 *     class survive), those that mincore says are resident;
 *  3. each class that lost blocks has its depot rebuilt without them, and
 *     they are uncarved and uncharged;
 *  4. the dropped regions give back every page but the first (their
 *     struct region) and become spare, for region_new to carve again.
 *
 * A call finds nothing new to do when the depot has not changed since the
 * last one that walked (depot_gen): pages of a depot block only come back
 * once it is handed out, and a region only becomes free by puts.
 * Given-back pages keep their ASan poison (a free block's bytes past
 * FREE_KEEP are poisoned already); a spare region is unpoisoned when it is
 * carved again (region_reuse). Small blocks (below two pages) only go back
 * with their whole region: every page of theirs holds some block's
 * header. docs/bufpool.md ("Giving memory back") has the costs.
 */

/* Linux's MADV_DONTNEED frees at once and refaults zero pages; the BSDs'
 * only hints, where MADV_FREE is what gives pages back. */
#if defined(__linux__) || !defined(MADV_FREE)
#define RELEASE_ADVICE MADV_DONTNEED
#else
#define RELEASE_ADVICE MADV_FREE
#endif

/* Pages per region, at the smallest page size we expect (4 KiB). */
#define REGION_PAGES (REGION_SIZE / 4096u)

static inline uintptr_t page_up(uintptr_t a)
{
	return (a + g_page - 1) & ~(uintptr_t)(g_page - 1);
}

static inline uintptr_t page_down(uintptr_t a)
{
	return a & ~(uintptr_t)(g_page - 1);
}

static inline struct bp_block *next_block(struct bp_block *b)
{
	return (struct bp_block *)((char *)b + bp__class_size[b->cls]);
}

/* Bytes of r that carving has reached. Locked. */
static uint32_t region_end(const struct bp_pool *pool, const struct region *r)
{
	if (r == pool->regions && pool->region_cur)
		return (uint32_t)(pool->region_cur - (const char *)r);
	return r->end;
}

#define REGION_BLOCKS(b, r, end)                                               \
	for (struct bp_block *b = (struct bp_block *)((char *)(r) + REGION_HDR),  \
	                     *b##_end = (struct bp_block *)((char *)(r) + (end)); \
	     b < b##_end; b = next_block(b))

/* Gives back the n pages at p (page-aligned, within one region) when some
 * are resident (vec: their mincore bytes, or NULL to ask). Returns the
 * bytes that were resident (all of them when mincore cannot say). */
static size_t pages_release(struct bp_pool *pool, char *p, size_t n,
                            const unsigned char *vec)
{
	unsigned char own[REGION_PAGES];
	if (!vec) {
		vec = own;
		if (mincore(p, n * g_page, (void *)own) != 0)
			memset(own, 1, n);
	}
	size_t resident = 0;
	for (size_t i = 0; i < n; i++)
		resident += vec[i] & 1u;
	if (!resident || madvise(p, n * g_page, RELEASE_ADVICE) != 0)
		return 0;
	atomic_fetch_add(&pool->sys_free_calls, 1);
	return resident * g_page;
}

/* Step 1: a new stamp, on every depot block. Locked. */
static uint8_t depot_stamp(struct bp_pool *pool)
{
	if (pool->mark == UINT8_MAX) {
		for (struct region *r = pool->regions; r; r = r->next)
			if (!r->spare)
				REGION_BLOCKS(b, r, region_end(pool, r))
					b->mark = 0;
		pool->mark = 0;
	}
	uint8_t m = ++pool->mark;
	for (int i = 0; i < BP_NCLASSES; i++)
		for (void *h = pool->depot[i].batches; h; h = words(h)[1])
			for (void *b = h; b; b = words(b)[0])
				((struct bp_block *)b)->mark = m;
	return m;
}

/* Step 2, first case: whether every block carved in r is stamped m; if so
 * they are marked gone (counted by class in gone[]) and r to drop. */
static bool region_take_whole(struct region *r, uint32_t end, uint8_t m,
                              uint64_t *gone)
{
	REGION_BLOCKS(b, r, end)
		if (b->mark != m)
			return false;
	REGION_BLOCKS(b, r, end) {
		b->flags |= BP_F_GONE;
		gone[b->cls]++;
	}
	r->drop = 1;
	return true;
}

/* Step 2, second case: the pages inside r's free blocks. One mincore for
 * the region, when some block is large enough to have a page to give.
 * Returns the bytes given back. */
static size_t region_release_blocks(struct bp_pool *pool, struct region *r,
                                    uint32_t end, uint8_t m)
{
	unsigned char vec[REGION_PAGES];
	bool have_vec = false;
	size_t released = 0;
	REGION_BLOCKS(b, r, end) {
		uintptr_t lo = page_up((uintptr_t)b + FREE_KEEP);
		uintptr_t hi = page_down((uintptr_t)next_block(b));
		if (b->mark != m || hi <= lo)
			continue;
		if (!have_vec) {
			if (mincore(r, REGION_SIZE, (void *)vec) != 0)
				memset(vec, 1, sizeof(vec));
			have_vec = true;
		}
		released += pages_release(pool, (char *)lo, (hi - lo) / g_page,
		                          vec + (lo - (uintptr_t)r) / g_page);
	}
	return released;
}

/* Step 3 for a class that lost `gone` blocks: its depot without them (in
 * full batches), and their charge returned. */
static void depot_drop_gone(struct bp_pool *pool, int cls, uint64_t gone)
{
	struct depot_class *d = &pool->depot[cls];
	void *h = d->batches;
	d->carved -= gone;
	atomic_fetch_sub(&pool->charged, gone * bp__class_size[cls]);
	d->nblocks -= gone;
	if (!d->nblocks) { /* all of them: nothing to walk */
		d->batches = NULL;
		return;
	}
	uint32_t batch = batch_of(cls), n = 0;
	void *list = NULL;
	d->batches = NULL;
	d->nblocks = 0;
	while (h) {
		void *next_batch = words(h)[1];
		for (void *b = h; b;) {
			void *next = words(b)[0];
			if (!(((struct bp_block *)b)->flags & BP_F_GONE)) {
				words(b)[0] = list;
				list = b;
				if (++n == batch) {
					depot_push(pool, cls, list, n);
					list = NULL;
					n = 0;
				}
			}
			b = next;
		}
		h = next_batch;
	}
	if (n)
		depot_push(pool, cls, list, n);
}

/* Step 4: dropped regions give back all but their first page and become
 * spare; the current one too (carving then goes on in a spare region,
 * perhaps this one). Returns the bytes given back. */
static size_t regions_drop(struct bp_pool *pool)
{
	size_t released = 0;
	for (struct region *r = pool->regions; r; r = r->next) {
		if (!r->drop)
			continue;
		uintptr_t end = page_up((uintptr_t)r + region_end(pool, r));
		if (r == pool->regions && pool->region_cur) {
			pool->region_cur = NULL;
			pool->region_left = 0;
		}
		r->drop = 0;
		r->spare = 1;
		r->end = REGION_HDR;
		char *lo = (char *)r + g_page;
		if ((uintptr_t)lo < end)
			released += pages_release(pool, lo, (end - (uintptr_t)lo) / g_page, NULL);
	}
	return released;
}

size_t bp_pool_release_idle(struct bp_pool *pool)
{
	atomic_fetch_add_explicit(&pool->release_calls, 1, memory_order_relaxed);
	size_t released = 0;
	uint64_t gone[BP_NCLASSES] = {0};
	pthread_mutex_lock(&pool->lock);
	if (pool->depot_gen != pool->released_gen) {
		uint8_t m = depot_stamp(pool);
		for (struct region *r = pool->regions; r; r = r->next) {
			if (r->spare)
				continue;
			uint32_t end = region_end(pool, r);
			if (!region_take_whole(r, end, m, gone))
				released += region_release_blocks(pool, r, end, m);
		}
		for (int i = 0; i < BP_NCLASSES; i++)
			if (gone[i])
				depot_drop_gone(pool, i, gone[i]);
		released += regions_drop(pool);
		pool->released_gen = pool->depot_gen;
	}
	pthread_mutex_unlock(&pool->lock);
	atomic_fetch_add(&pool->released_bytes, released);
	return released;
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

/* ---- counters --------------------------------------------------------- */

const struct bp_counter_desc bp_counters[] = {
#define BP_X_DESC(n, kind, help) {#n, BP_##kind, help, offsetof(struct bp_stats, n)},
	BP_COUNTERS(BP_X_DESC)
#undef BP_X_DESC
};
const size_t bp_ncounters = sizeof(bp_counters) / sizeof(bp_counters[0]);

/* Sums one class's counters over live and retired threads. Locked. */
static void class_sum(struct bp_pool *pool, int cls, struct bp_class_stats *o)
{
	o->size = bp__class_size[cls];
	o->gets = pool->retired.gets[cls];
	o->puts = pool->retired.puts[cls];
	o->misses = pool->retired.misses[cls];
	for (struct bp_tcache *tc = pool->threads; tc; tc = tc->next) {
		struct tbin *b = &tc->bins[cls];
		o->gets += bp__ctr_get(&b->gets);
		o->puts += bp__ctr_get(&b->puts);
		o->misses += bp__ctr_get(&b->misses);
	}
	/* gets and puts are read at slightly different moments; never report
	 * a negative population. */
	o->hits = o->gets > o->misses ? o->gets - o->misses : 0;
	o->in_use = o->gets > o->puts ? o->gets - o->puts : 0;
	o->carved = pool->depot[cls].carved;
}

int bp_pool_class_stats(struct bp_pool *pool, int cls,
                        struct bp_class_stats *out)
{
	if (cls < 0 || cls >= BP_NCLASSES)
		return -EINVAL;
	pthread_mutex_lock(&pool->lock);
	class_sum(pool, cls, out);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

void bp_pool_stats(struct bp_pool *pool, struct bp_stats *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_lock(&pool->lock);
	for (int i = 0; i < BP_NCLASSES; i++) {
		struct bp_class_stats c;
		class_sum(pool, i, &c);
		s->block_gets += c.gets;
		s->block_puts += c.puts;
		s->pool_hits += c.hits;
		s->pool_misses += c.misses;
		s->blocks_in_use += c.in_use;
		s->bytes_in_use += c.in_use * c.size;
		if (c.carved > c.in_use)
			s->bytes_cached += (c.carved - c.in_use) * c.size;
	}
	uint64_t copied[BP_COPY__COUNT];
	for (int r = 0; r < BP_COPY__COUNT; r++) {
		copied[r] = pool->retired.copied[r];
		for (struct bp_tcache *tc = pool->threads; tc; tc = tc->next)
			copied[r] += bp__ctr_get(&tc->copied[r]);
	}
	pthread_mutex_unlock(&pool->lock);
	s->copied_view_bytes = copied[BP_COPY_VIEW];
	s->copied_append_bytes = copied[BP_COPY_APPEND];
	s->copied_out_bytes = copied[BP_COPY_OUT];
	uint64_t hg = atomic_load(&pool->huge_gets), hp = atomic_load(&pool->huge_puts);
	s->huge_gets = hg;
	s->block_gets += hg;
	s->block_puts += hp;
	s->blocks_in_use += hg > hp ? hg - hp : 0;
	s->bytes_in_use += atomic_load(&pool->huge_bytes);
	s->sys_alloc_calls = atomic_load(&pool->sys_alloc_calls);
	s->sys_free_calls = atomic_load(&pool->sys_free_calls);
	s->sys_bytes = atomic_load(&pool->sys_bytes);
	s->limit_bytes = pool->limit;
	s->charged_bytes = atomic_load(&pool->charged);
	s->enomem = atomic_load(&pool->enomem);
	s->faults_injected = atomic_load(&pool->faults_injected);
	s->released_bytes = atomic_load(&pool->released_bytes);
	s->release_calls = atomic_load(&pool->release_calls);
	s->trims = atomic_load(&pool->trims);
	s->detached_bytes = atomic_load(&pool->detached);
	s->detached_peak_bytes = atomic_load(&pool->detached_peak);
	s->detaches = atomic_load(&pool->detaches);
}
