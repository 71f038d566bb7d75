/*
 * Private to bufpool: the block header, the per-thread cache and the
 * counters, shared by pool.c, chain.c and objpool.c.
 */
#ifndef GEECACHE_BP_INTERNAL_H
#define GEECACHE_BP_INTERNAL_H

#include "bufpool/bufpool.h"

#include <stdatomic.h>
#include <stdbool.h>

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
 * (see pool.c); cls and pool_id stay valid for its whole life, and the
 * header and those words are never poisoned nor given back to the system
 * while the block is carved (bp_pool_release_idle reads them). */
struct bp_block {
	_Atomic uint32_t refs;
	uint8_t cls;     /* size class, or BP_CLS_HUGE for an mmap'd block */
	uint8_t pool_id; /* index in the pool table */
	uint8_t flags;
	uint8_t mark;    /* bp_pool_release_idle's stamp (pool.c), under the
	                  * pool's lock only */
};

_Static_assert(sizeof(struct bp_block) == BP_BLOCK_HDR, "block header size");

/* bp_block flags. */
#define BP_F_DETACHED 0x01u /* huge block charged to the detached budget */
#define BP_F_GONE 0x02u /* bp_pool_release_idle (pool.c): uncarved with its
                         * region; the block no longer exists */

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
