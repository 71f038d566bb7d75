/*
 * Private to bufpool: the block header, the pool and its per-thread
 * caches, the free-list layout and the inline helpers, and the internal
 * functions bufpool's files share (prefix bp__). Which file holds what:
 *
 *   pool.c     size classes, thread caches, the depot, carving regions,
 *              huge blocks and detaching, block get/put/ref/unref, pool
 *              create/destroy; owns the pool table, the per-thread cache
 *              pointers and the batch table
 *   release.c  giving memory back: bp_pool_thread_trim and
 *              bp_pool_release_idle (marks, region walks, spare regions,
 *              mincore and madvise)
 *   stats.c    the counter table and bp_pool_stats / bp_pool_class_stats
 *   chain.c    chains of slices
 *   objpool.c  object pools over the block pools
 *   fault.c    allocation fault injection
 *
 * Locking: pool->lock protects the depot, carving, the region list, the
 * thread list and the retired counters; every bp__ function below states
 * whether it expects it ("locked"). A thread cache's bins belong to its
 * thread alone.
 *
 * docs/bufpool.md has the reasons and the measurements.
 */
#ifndef GEECACHE_BP_INTERNAL_H
#define GEECACHE_BP_INTERNAL_H

#include "bufpool/bufpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#if defined(__SANITIZE_ADDRESS__)
#define BP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BP_ASAN 1
#endif
#endif

#ifdef BP_ASAN
#include <sanitizer/asan_interface.h>
#define BP_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define BP_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define BP_POISON(p, n) ((void)(p), (void)(n))
#define BP_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define BP_LIKELY(x) __builtin_expect(!!(x), 1)
#define BP_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define BP_NCLASSES 51
#define BP_CLS_HUGE 0xffu

/* Every block starts with this header (BP_BLOCK_HDR bytes). While a block
 * is free its refs is 0 and its first data words link it into a free list
 * (the free-list layout below); cls and pool_id stay valid for its whole life, and the
 * header and those words are never poisoned nor given back to the system
 * while the block is carved (bp_pool_release_idle reads them). */
struct bp_block {
	_Atomic uint32_t refs;
	uint8_t cls;     /* size class, or BP_CLS_HUGE for an mmap'd block */
	uint8_t pool_id; /* index in the pool table */
	uint8_t flags;
	uint8_t mark;    /* bp_pool_release_idle's stamp (release.c), under
	                  * the pool's lock only */
};

_Static_assert(sizeof(struct bp_block) == BP_BLOCK_HDR, "block header size");

/* bp_block flags. */
#define BP_F_DETACHED 0x01u /* huge block charged to the detached budget */
#define BP_F_GONE 0x02u /* bp_pool_release_idle (release.c): uncarved with
                         * its region; the block no longer exists */

/* A per-thread counter: only its thread writes it, any thread may read it.
 * The relaxed load+store pair compiles to a plain add (no lock prefix) and
 * keeps the concurrent reads of bp_pool_stats() free of data races. */
typedef _Atomic uint64_t bp_ctr;

static inline void bp__ctr_add(bp_ctr *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
	                      memory_order_relaxed);
}

static inline uint64_t bp__ctr_get(bp_ctr *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* Chain node: one slice of a chain. Allocated as a block of the smallest
 * class (its data area is exactly the node). */
struct bp_node {
	struct bp_node *next;
	struct bp_block *blk;
	uint32_t off;
	uint32_t len;
};

/*
 * Free-list layout. A free block's data words are:
 *   [0] next block in this list / batch
 *   [1] next batch (only in the first block of a batch in the depot)
 *   [2] number of blocks in the batch (same)
 * The smallest class has exactly 24 bytes of data, so this always fits.
 * Under ASan the rest of a free block is poisoned.
 */
#define FREE_WORDS 3u  /* data words the free lists use */

#define REGION_SIZE (2u * 1024u * 1024u)
#define REGION_HDR 16u /* struct region; keeps blocks 16-aligned */

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
	void *batches;     /* stack of batches (see the free-list layout) */
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

/* A free block's free-list words (the layout above). */
static inline void **bp__words(void *blk)
{
	return (void **)bp_block_data((struct bp_block *)blk);
}

/* Blocks moved per depot exchange, by class, and the system's page size:
 * set by the first bp_pool_create (pool.c), read-only after. */
extern uint32_t bp__batch[BP_NCLASSES];
extern size_t bp__page;

static inline uint32_t bp__batch_of(int cls)
{
	return bp__batch[cls];
}

/* Pushes a list of n blocks (linked through word 0) as one depot batch.
 * Locked. */
static inline void bp__depot_push(struct bp_pool *pool, int cls, void *head,
                                  uint32_t n)
{
	struct depot_class *d = &pool->depot[cls];
	bp__words(head)[1] = d->batches;
	bp__words(head)[2] = (void *)(uintptr_t)n;
	d->batches = head;
	d->nblocks += n;
	pool->depot_gen++;
}

/* This thread's cache of pool, or NULL when it has none (none is made). */
struct bp_tcache *bp__tcache_peek(struct bp_pool *pool);

/* Moves every bin of tc to the depot, one batch each (a bin holds at most
 * two batches' worth); tc and its counters stay. Locked. */
void bp__tcache_drain(struct bp_pool *pool, struct bp_tcache *tc);

/* Block of the given class (no lookup), refcount 1; NULL on ENOMEM. */
struct bp_block *bp__block_get_cls(struct bp_pool *pool, int cls);

/* Fault injection (fault.c). While bp__fault_armed is set, every block
 * get first asks bp__fault_fire(cap), cap being the capacity it would hand
 * out; true: refuse it (NULL, counted as enomem and faults_injected).
 * bp__fault_init reads GEECACHE_FAULT_ALLOC (once per process). */
extern atomic_bool bp__fault_armed;
bool bp__fault_fire(size_t cap, const char *pool_name);
void bp__fault_init(void);

static inline bool bp__fault_check(size_t cap, const char *pool_name)
{
	return BP_UNLIKELY(atomic_load_explicit(&bp__fault_armed, memory_order_relaxed)) &&
	       bp__fault_fire(cap, pool_name);
}

/* Counts n bytes copied by a chain operation of `pool` on this thread. */
void bp__count_copy(struct bp_pool *pool, enum bp_copy_reason why, size_t n);

/* Class size, no range check. */
extern const uint32_t bp__class_size[BP_NCLASSES];

#endif
