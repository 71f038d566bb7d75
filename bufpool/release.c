/*
 * Giving memory back: bp_pool_thread_trim empties the calling thread's
 * cache into the depot; bp_pool_release_idle gives the pages of the
 * depot's free blocks back to the system (stamping depot blocks with a
 * mark, walking every region block by block, asking mincore what is
 * resident, madvise) and turns regions whose blocks are all free into
 * spare regions, which pool.c's carving takes before it would mmap.
 * bufpool/bufpool.h has the contracts; docs/bufpool.md ("Giving memory
 * back") the costs.
 */
#include "bufpool/bp_internal.h"

#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

/* Bytes at the start of a free block that must survive a release: the
 * header (class, pool) and the free-list words. */
#define FREE_KEEP (BP_BLOCK_HDR + FREE_WORDS * sizeof(void *))

/* Like pool.c's thread-cache release minus the free: the bins go to the
 * depot and the cache with its counters stays, so the next get is a miss
 * but no malloc. */
void bp_pool_thread_trim(struct bp_pool *pool)
{
	atomic_fetch_add_explicit(&pool->trims, 1, memory_order_relaxed);
	struct bp_tcache *tc = bp__tcache_peek(pool);
	if (!tc)
		return;
	pthread_mutex_lock(&pool->lock);
	bp__tcache_drain(pool, tc);
	pthread_mutex_unlock(&pool->lock);
}

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
 *     struct region) and become spare, for pool.c's region_new to carve
 *     again.
 *
 * A call finds nothing new to do when the depot has not changed since the
 * last one that walked (depot_gen): pages of a depot block only come back
 * once it is handed out, and a region only becomes free by puts.
 * Given-back pages keep their ASan poison (a free block's bytes past
 * FREE_KEEP are poisoned already); a spare region is unpoisoned when it is
 * carved again (pool.c's region_reuse). Small blocks (below two pages)
 * only go back with their whole region: every page of theirs holds some
 * block's header. docs/bufpool.md ("Giving memory back") has the costs.
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
	return (a + bp__page - 1) & ~(uintptr_t)(bp__page - 1);
}

static inline uintptr_t page_down(uintptr_t a)
{
	return a & ~(uintptr_t)(bp__page - 1);
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
		if (mincore(p, n * bp__page, (void *)own) != 0)
			memset(own, 1, n);
	}
	size_t resident = 0;
	for (size_t i = 0; i < n; i++)
		resident += vec[i] & 1u;
	if (!resident || madvise(p, n * bp__page, RELEASE_ADVICE) != 0)
		return 0;
	atomic_fetch_add(&pool->sys_free_calls, 1);
	return resident * bp__page;
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
		for (void *h = pool->depot[i].batches; h; h = bp__words(h)[1])
			for (void *b = h; b; b = bp__words(b)[0])
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
		released += pages_release(pool, (char *)lo, (hi - lo) / bp__page,
		                          vec + (lo - (uintptr_t)r) / bp__page);
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
	uint32_t batch = bp__batch_of(cls), n = 0;
	void *list = NULL;
	d->batches = NULL;
	d->nblocks = 0;
	while (h) {
		void *next_batch = bp__words(h)[1];
		for (void *b = h; b;) {
			void *next = bp__words(b)[0];
			if (!(((struct bp_block *)b)->flags & BP_F_GONE)) {
				bp__words(b)[0] = list;
				list = b;
				if (++n == batch) {
					bp__depot_push(pool, cls, list, n);
					list = NULL;
					n = 0;
				}
			}
			b = next;
		}
		h = next_batch;
	}
	if (n)
		bp__depot_push(pool, cls, list, n);
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
		char *lo = (char *)r + bp__page;
		if ((uintptr_t)lo < end)
			released += pages_release(pool, lo, (end - (uintptr_t)lo) / bp__page, NULL);
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
