/*
 * The store's lifecycle: create (sizing segments, shards and tables inside
 * the memory limit), destroy, the clock, and the counters' table and sums.
 * See cache/cache.h for the contract and docs/cache.md for the sizes.
 */
#include "cache/cache_internal.h"

#include <errno.h>
#include <string.h>
#include <time.h>

const struct cache_counter_desc cache_counters[] = {
#define CACHE_X_DESC(n, kind, help) {#n, CACHE_##kind, help, offsetof(struct cache_stats, n)},
	CACHE_COUNTERS(CACHE_X_DESC)
#undef CACHE_X_DESC
};
const size_t cache_ncounters = sizeof(cache_counters) / sizeof(cache_counters[0]);

static int64_t default_clock(void *arg)
{
	(void)arg;
	return (int64_t)time(NULL);
}

int64_t cache_now(struct cache *c)
{
	return clock_now(c);
}

struct bp_pool *cache_pool(struct cache *c)
{
	return c->pool;
}

/* Puts every directory entry on the empty list (no block yet). */
static void dir_init(struct cache *c)
{
	pthread_mutex_init(&c->free_lock, NULL);
	c->free_head = NIL;
	c->empty_head = NIL;
	for (uint32_t i = c->nsegs; i >= 1; i--) {
		c->segs[i].next = c->empty_head;
		c->empty_head = (int32_t)i;
		c->segs[i].cap = c->seg_cap;
	}
}

/* Initial tables: room for items averaging 1 KiB (mmap'd segments, the
 * table can grow into released memory) or 64 bytes (pooled segments,
 * which never give their charge back). -ENOMEM when the pool refuses one;
 * the caller frees the tables already made. */
static int shards_init(struct cache *c, const struct cache_opts *o)
{
	size_t slots = o->hash_slots ? o->hash_slots : o->limit / 1024;
	size_t nb = slots / SLOTS_PER_BUCKET / c->nshards;
	if (nb < 8)
		nb = 8;
	if (nb > UINT32_MAX / 4)
		nb = UINT32_MAX / 4;
	for (unsigned i = 0; i < c->nshards; i++) {
		struct shard *sh = &c->shards[i];
		pthread_rwlock_init(&sh->lock, NULL);
		sh->nb = (uint32_t)nb;
		sh->nghost = (uint32_t)nb * 2;
		for (int q = 0; q < NQ; q++) {
			sh->q[q].head = sh->q[q].tail = NIL;
			for (int t = 0; t < NTTL; t++)
				sh->open[q][t] = NIL;
		}
		sh->tblk = cache__table_alloc(c, sh->nb, &sh->slots, &sh->ghost);
		if (!sh->tblk)
			return -ENOMEM;
		ctr_add(sh, CX_hash_slots, nb * SLOTS_PER_BUCKET);
	}
	return 0;
}

struct cache *cache_create(const struct cache_opts *o)
{
	if (!o || o->limit == 0 || (o->nshards & (o->nshards - 1)) ||
	    o->nshards > 256 || (o->seg_size && (o->seg_size < 16384 ||
	                                         o->seg_size > ((size_t)4 << 20)))) {
		errno = EINVAL;
		return NULL;
	}
	size_t seg_size = o->seg_size ? o->seg_size : CACHE_SEG_SIZE_DEFAULT;
	/* Every block of the store is a mapping of its own (a direct pool):
	 * the capacity that makes it exactly seg_size bytes leaves room for
	 * the mapping's size and the block header (16 bytes in front of its
	 * data; bufpool's pool.c, huge_get). */
	size_t seg_cap = seg_size - BP_DIRECT_HDR;
	if (seg_cap > MAX_SEG_CAP)
		seg_cap = MAX_SEG_CAP;
	size_t seg_block = cache__block_charge(seg_cap);
	unsigned nshards = o->nshards;
	if (!nshards) {
		size_t want = o->limit / (16 * seg_block);
		nshards = 1;
		while (nshards < 16 && nshards * 2 <= want)
			nshards *= 2;
	}
	/* Directory entries: every segment the limit can hold, or as many
	 * large items (over a quarter of a segment each, in blocks of their
	 * own), whichever is more. An evicted segment gives its entry back
	 * at once, even while replies still hold its block. */
	uint64_t nsegs = o->limit / seg_block + 1;
	nsegs += o->limit / (seg_cap / LARGE_DIV);
	if (nsegs > MAX_SEGS)
		nsegs = MAX_SEGS;

	/* Evicted segments that replies still reference are detached from
	 * the limit (bp_block_detach) up to pinned_max more bytes: slow
	 * readers then cannot make writes fail (docs/cache.md, "Pinned
	 * segments"). */
	struct bp_pool_opts po = {.name = o->name ? o->name : "cache",
	                          .limit = o->limit, .direct = true,
	                          .detach_limit = o->pinned_max ? o->pinned_max : o->limit};
	struct bp_pool *pool = bp_pool_create(&po);
	if (!pool)
		return NULL;
	struct cache *c = NULL;
	size_t meta_bytes = 64 + sizeof(struct cache) + 64 +
	                    nshards * sizeof(struct shard) +
	                    (nsegs + 1) * sizeof(struct seg);
	struct bp_block *meta = bp_block_get(pool, meta_bytes);
	if (!meta)
		goto nomem;
	memset(bp_block_data(meta), 0, meta_bytes);
	uintptr_t a = ((uintptr_t)bp_block_data(meta) + 63) & ~(uintptr_t)63;
	c = (struct cache *)a;
	a += (sizeof(struct cache) + 63) & ~(size_t)63;
	c->pool = pool;
	c->meta = meta;
	c->shards = (struct shard *)a;
	c->segs = (struct seg *)(a + nshards * sizeof(struct shard));
	c->nshards = nshards;
	c->shard_shift = 32u - (unsigned)__builtin_ctz(nshards);
	c->nsegs = (uint32_t)nsegs;
	c->seg_cap = (uint32_t)seg_cap;
	c->seg_block = seg_block;
	c->large_min = (uint32_t)(seg_cap / LARGE_DIV);
	/* Items larger than a segment have blocks of their own; a length
	 * takes at most a 4-byte varint (28 bits), and a store keeps at
	 * least two of its largest items. */
	size_t item_max = ((size_t)1 << 28) - 1;
	if (item_max > o->limit / 2)
		item_max = o->limit / 2;
	c->max_item = o->max_item ? (o->max_item < item_max ? o->max_item : item_max)
	                          : seg_cap - ITEM_HDR_MAX;
	c->policy = o->policy;
	c->no_evict = o->no_evict;
	c->clock = o->clock ? o->clock : default_clock;
	c->clock_arg = o->clock_arg;
	dir_init(c);
	atomic_init(&c->seq, 1);
	atomic_init(&c->flush_seq, 0);
	atomic_init(&c->flush_at, 0);
	if (shards_init(c, o) != 0 || cache__group_init(c) != 0)
		goto nomem;
	return c;
nomem:
	if (c) {
		for (unsigned i = 0; i < nshards; i++) {
			bp_block_unref(c->shards[i].tblk);
			pthread_rwlock_destroy(&c->shards[i].lock);
		}
		pthread_mutex_destroy(&c->free_lock);
	}
	bp_block_unref(meta);
	bp_pool_destroy(&pool);
	errno = ENOMEM;
	return NULL;
}

void cache_destroy(struct cache **cp)
{
	struct cache *c = cp ? *cp : NULL;
	if (!c)
		return;
	cache__group_deinit(c);
	for (uint32_t i = 1; i <= c->nsegs; i++)
		bp_block_unref(c->segs[i].blk);
	for (unsigned i = 0; i < c->nshards; i++) {
		bp_block_unref(c->shards[i].tblk);
		pthread_rwlock_destroy(&c->shards[i].lock);
	}
	pthread_mutex_destroy(&c->free_lock);
	struct bp_pool *pool = c->pool;
	bp_block_unref(c->meta);
	bp_pool_destroy(&pool);
	*cp = NULL;
}

void cache_stats_get(struct cache *c, struct cache_stats *out)
{
	memset(out, 0, sizeof(*out));
	uint64_t *f = (uint64_t *)out;
	for (unsigned i = 0; i < c->nshards; i++) {
		struct shard *sh = &c->shards[i];
		shard_rdlock(sh);
		for (size_t j = 0; j < cache_ncounters; j++)
			f[j] += atomic_load_explicit(&sh->ctr[j], memory_order_relaxed);
		pthread_rwlock_unlock(&sh->lock);
	}
	struct bp_stats ps;
	bp_pool_stats(c->pool, &ps);
	out->bytes_held = ps.charged_bytes;
	out->limit_bytes = ps.limit_bytes;
	out->bytes_pinned_evicted = ps.detached_bytes;
	out->bytes_pinned_evicted_peak = ps.detached_peak_bytes;
	out->loads = atomic_load(&c->gctr_loads);
	out->load_joins = atomic_load(&c->gctr_joins);
}
