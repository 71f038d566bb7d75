/*
 * Private to the cache module: the store's structures, shared by cache.c
 * (the store) and group.c (get-or-load). See docs/cache.md for the layout.
 */
#ifndef GEECACHE_CACHE_INT_H
#define GEECACHE_CACHE_INT_H

#include "cache/cache.h"

#include <pthread.h>
#include <stdatomic.h>

/* Counter indexes, one per CACHE_COUNTERS entry. */
enum {
#define CACHE_X_ENUM(name, kind, help) CX_##name,
	CACHE_COUNTERS(CACHE_X_ENUM)
#undef CACHE_X_ENUM
	CX__COUNT
};

#define NQ 2        /* queues: small (S) and main (M) */
#define Q_S 0
#define Q_M 1
#define NTTL 8      /* TTL classes of open segments */
#define NIL (-1)

/* A segment: one pool block that items are appended to. Entries live in
 * the store's directory (index = segment id, 0 unused). Every field is
 * owned by the shard that owns the segment (its lock), except while the
 * entry is on the store's free or empty list (free_lock). */
struct seg {
	struct bp_block *blk; /* NULL: no block (entry on the empty list) */
	char *data;
	uint64_t seq;         /* unique per (re)open: the CAS base */
	uint32_t cap, used;
	uint32_t max_exp;     /* latest expiry of its items; UINT32_MAX = never */
	uint32_t live;        /* live items */
	uint64_t live_bytes;
	int32_t next, prev;   /* queue (sealed FIFO) or free/empty list */
	uint16_t shard;
	uint8_t q;            /* Q_S / Q_M */
	uint8_t ttlc;
	uint8_t open;
	uint8_t _pad[3];
};

struct fifo {
	int32_t head, tail; /* head = newest sealed, tail = oldest */
	uint32_t n;
};

struct shard {
	pthread_rwlock_t lock;
	struct bp_block *tblk;      /* table block: buckets then ghost */
	_Atomic uint64_t *slots;    /* nb buckets of 8 slots */
	uint32_t *ghost;            /* direct-mapped ghost fingerprints */
	uint32_t nb, nghost;
	uint64_t items;             /* live slots */
	uint64_t grow_retry;        /* don't retry a failed grow below this */
	uint64_t reloc_budget;      /* bytes evictions may still relocate */
	struct fifo q[NQ];
	uint32_t qsegs[NQ];         /* segments per queue, open ones included */
	int32_t open[NQ][NTTL];
	_Atomic uint64_t ctr[CX__COUNT];
	char _pad[64];
};

struct group; /* group.c */

struct cache {
	struct bp_pool *pool;
	struct bp_block *meta;      /* shards and the segment directory */
	struct shard *shards;
	unsigned nshards, shard_shift;
	struct seg *segs;
	uint32_t nsegs;             /* directory entries, ids 1..nsegs */
	uint32_t seg_cap;           /* bytes an item area may use */
	size_t seg_block;           /* bytes a segment charges the pool */
	size_t max_item;
	bool seg_huge;              /* mmap'd segments: releasing returns charge */
	enum cache_policy policy;
	int64_t (*clock)(void *);
	void *clock_arg;
	pthread_mutex_t free_lock;
	int32_t free_head;          /* entries with a block, ready to reuse */
	uint32_t nfree;             /* entries on the free list */
	int32_t empty_head;         /* entries without a block */
	_Atomic uint64_t seq;       /* next segment sequence */
	_Atomic uint64_t flush_seq; /* segments with seq <= this are flushed */
	_Atomic int64_t flush_at;   /* pending delayed flush (0 = none) */
	_Atomic uint64_t gctr_loads, gctr_joins;
	struct group *group;
};

int cache__group_init(struct cache *c);
void cache__group_deinit(struct cache *c);

#endif
