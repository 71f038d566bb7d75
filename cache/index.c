/*
 * The index: each shard's hash table of 8-byte slots (layout in
 * cache_internal.h), finding a key's item, placing a slot in one of its two
 * buckets, growing the table, and listing the live items (cache_dump, which
 * takes each shard's lock shared itself). Growth rehashes a shard at once,
 * reading each key from its segment. Callers of the rest hold the shard's
 * lock (shared only for cache__lookup). See docs/cache.md, "Layout".
 */
#include "cache/cache_internal.h"

#include <string.h>

/* ------------------------------------------------------------------------
 * Lookup
 * ---------------------------------------------------------------------- */

bool cache__lookup(struct cache *c, struct shard *sh, const struct hk *k,
                   const void *key, size_t klen, struct loc *l)
{
	uint32_t bs[2] = {bucket1(sh, k), bucket2(sh, k)};
	for (int j = 0; j < 2; j++) {
		if (j == 1 && bs[1] == bs[0])
			break;
		_Atomic uint64_t *b = bucket_at(sh, bs[j]);
		for (unsigned i = 0; i < SLOTS_PER_BUCKET; i++) {
			uint64_t v = atomic_load_explicit(&b[i], memory_order_relaxed);
			if (v == 0 || slot_tag(v) != k->tag)
				continue;
			struct seg *s = &c->segs[slot_seg(v)];
			char *p = s->data + slot_off(v);
			if ((uint8_t)p[1] != klen)
				continue;
			struct itm it;
			itm_parse(p, &it);
			if (memcmp(p + it.hdr, key, klen) != 0)
				continue;
			l->sp = &b[i];
			l->slot = v;
			l->seg = s;
			l->off = slot_off(v);
			l->p = p;
			l->it = it;
			return true;
		}
	}
	return false;
}

_Atomic uint64_t *cache__find_slot_of(struct shard *sh, uint32_t id,
                                      uint32_t off, const char *key,
                                      uint32_t klen)
{
	struct hk k;
	hk_make(&k, key, klen);
	uint32_t bs[2] = {bucket1(sh, &k), bucket2(sh, &k)};
	for (int j = 0; j < 2; j++) {
		_Atomic uint64_t *b = bucket_at(sh, bs[j]);
		for (unsigned i = 0; i < SLOTS_PER_BUCKET; i++) {
			uint64_t v = atomic_load_explicit(&b[i], memory_order_relaxed);
			if (v != 0 && slot_seg(v) == id && slot_off(v) == off)
				return &b[i];
		}
	}
	return NULL;
}

void cache__unaccount(struct shard *sh, struct seg *s, const struct itm *it)
{
	s->live--;
	s->live_bytes -= it->size;
	sh->items--;
	ctr_sub(sh, CX_curr_items, 1);
	ctr_sub(sh, CX_bytes_payload, it->klen + it->vlen);
	ctr_sub(sh, CX_bytes_items, it->size);
	size_t ms = cache_class_item_size(it->klen, it->vlen, it->flags);
	unsigned k = cache_class_of(ms);
	atomic_fetch_sub_explicit(&sh->cls[k][CC_number], 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&sh->cls[k][CC_mem_requested], ms, memory_order_relaxed);
}

void cache__account(struct shard *sh, struct seg *s, const struct itm *it)
{
	s->live++;
	s->live_bytes += it->size;
	if (it->exp == 0)
		s->max_exp = NEVER;
	else if (s->max_exp != NEVER && it->exp > s->max_exp)
		s->max_exp = it->exp;
	sh->items++;
	ctr_add(sh, CX_curr_items, 1);
	ctr_add(sh, CX_bytes_payload, it->klen + it->vlen);
	ctr_add(sh, CX_bytes_items, it->size);
	size_t ms = cache_class_item_size(it->klen, it->vlen, it->flags);
	unsigned k = cache_class_of(ms);
	cls_add(sh, k, CC_number, 1);
	cls_add(sh, k, CC_mem_requested, ms);
}

bool cache__lookup_live(struct cache *c, struct shard *sh, const struct hk *k,
                        const void *key, size_t klen, int64_t now,
                        struct loc *l)
{
	if (!cache__lookup(c, sh, k, key, klen, l))
		return false;
	if (item_dead(c, l->seg, &l->it, now)) {
		/* memcached counts these on every lookup, not only reads. */
		ctr_add(sh, seg_flushed(c, l->seg) ? CX_get_flushed : CX_get_expired, 1);
		remove_loc(sh, l);
		ctr_item(sh, &l->it, CX_expired_reclaimed, CC_reclaimed);
		if (!(l->it.meta & F_FETCHED))
			ctr_item(sh, &l->it, CX_expired_unfetched, CC_expired_unfetched);
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------------
 * Listing (cache_dump)
 * ---------------------------------------------------------------------- */

/* Every live item is one slot of its shard's table, so walking the slots
 * visits each item once (dead versions left in segments have none). */
int cache_dump(struct cache *c, unsigned limit, cache_dump_fn fn, void *arg)
{
	int64_t now = clock_now(c);
	flush_check(c, now);
	unsigned n = 0;
	for (unsigned i = 0; i < c->nshards; i++) {
		struct shard *sh = &c->shards[i];
		shard_rdlock(sh);
		size_t nslots = (size_t)sh->nb * SLOTS_PER_BUCKET;
		for (size_t j = 0; j < nslots; j++) {
			uint64_t v = atomic_load_explicit(&sh->slots[j], memory_order_relaxed);
			if (v == 0)
				continue;
			struct seg *s = &c->segs[slot_seg(v)];
			const char *p = s->data + slot_off(v);
			struct itm it;
			itm_parse(p, &it);
			if (item_dead(c, s, &it, now))
				continue;
			int r = fn(arg, p + it.hdr, it.klen, it.flags, it.vlen, it.exp);
			if (r < 0) {
				pthread_rwlock_unlock(&sh->lock);
				return r;
			}
			n++;
			if (r > 0 || n == limit) {
				pthread_rwlock_unlock(&sh->lock);
				return (int)n;
			}
		}
		pthread_rwlock_unlock(&sh->lock);
	}
	return (int)n;
}

/* ------------------------------------------------------------------------
 * Placing slots
 * ---------------------------------------------------------------------- */

bool cache__place(struct shard *sh, const struct hk *k, uint64_t v)
{
	uint32_t bs[2] = {bucket1(sh, k), bucket2(sh, k)};
	_Atomic uint64_t *best = NULL;
	unsigned best_used = SLOTS_PER_BUCKET + 1;
	for (int j = 0; j < 2; j++) {
		_Atomic uint64_t *b = bucket_at(sh, bs[j]);
		_Atomic uint64_t *empty = NULL;
		unsigned used = 0;
		for (unsigned i = 0; i < SLOTS_PER_BUCKET; i++) {
			if (atomic_load_explicit(&b[i], memory_order_relaxed) != 0)
				used++;
			else if (!empty)
				empty = &b[i];
		}
		if (empty && used < best_used) {
			best = empty;
			best_used = used;
		}
	}
	if (!best)
		return false;
	atomic_store_explicit(best, v, memory_order_relaxed);
	return true;
}

void cache__place_hard(struct cache *c, struct shard *sh, const struct hk *k,
                       uint64_t v)
{
	uint32_t bs[2] = {bucket1(sh, k), bucket2(sh, k)};
	_Atomic uint64_t *oldest = NULL;
	uint64_t oldest_seq = UINT64_MAX;
	for (int j = 0; j < 2; j++) {
		_Atomic uint64_t *b = bucket_at(sh, bs[j]);
		for (unsigned i = 0; i < SLOTS_PER_BUCKET; i++) {
			uint64_t r = atomic_load_explicit(&b[i], memory_order_relaxed);
			struct seg *s = &c->segs[slot_seg(r)];
			const char *p = s->data + slot_off(r);
			struct itm it;
			itm_parse(p, &it);
			struct hk rk;
			hk_make(&rk, p + it.hdr, it.klen);
			uint32_t alt = bucket1(sh, &rk) == bs[j] ? bucket2(sh, &rk)
			                                         : bucket1(sh, &rk);
			if (alt != bs[j]) {
				_Atomic uint64_t *ab = bucket_at(sh, alt);
				for (unsigned m = 0; m < SLOTS_PER_BUCKET; m++) {
					if (atomic_load_explicit(&ab[m], memory_order_relaxed) == 0) {
						atomic_store_explicit(&ab[m], r, memory_order_relaxed);
						atomic_store_explicit(&b[i], v, memory_order_relaxed);
						return;
					}
				}
			}
			if (s->seq < oldest_seq) {
				oldest_seq = s->seq;
				oldest = &b[i];
			}
		}
	}
	uint64_t r = atomic_load_explicit(oldest, memory_order_relaxed);
	struct seg *s = &c->segs[slot_seg(r)];
	struct itm it;
	itm_parse(s->data + slot_off(r), &it);
	cache__unaccount(sh, s, &it);
	ctr_add(sh, CX_table_evictions, 1);
	atomic_store_explicit(oldest, v, memory_order_relaxed);
}

/* ------------------------------------------------------------------------
 * Tables and their growth
 * ---------------------------------------------------------------------- */

/* A table block holds nb 64-byte buckets, 64 bytes of alignment slack and
 * two 4-byte ghost entries per bucket. */
static size_t table_bytes(uint32_t nb)
{
	return (size_t)nb * 64 + 64 + (size_t)nb * 2 * sizeof(uint32_t);
}

struct bp_block *cache__table_alloc(struct cache *c, uint32_t nb,
                                    _Atomic uint64_t **slots, uint32_t **ghost)
{
	size_t bytes = table_bytes(nb);
	struct bp_block *b = bp_block_get(c->pool, bytes);
	if (!b)
		return NULL;
	char *d = bp_block_data(b);
	uintptr_t a = ((uintptr_t)d + 63) & ~(uintptr_t)63;
	memset(d, 0, bytes);
	*slots = (_Atomic uint64_t *)a;
	*ghost = (uint32_t *)(a + (size_t)nb * 64);
	return b;
}

/* Moves the old table's slots into sh's new one. Every slot costs two
 * cache misses, its item (for the key, to hash) and its new buckets;
 * taken one slot at a time they are paid one after the other, and they
 * were most of a store's fill time (BM_FillGrowing). So the slots go in
 * batches: the batch's items are prefetched, then hashed while their
 * buckets are prefetched, then placed — the misses of a batch overlap. */
#define REHASH_BATCH 16

static void rehash(struct cache *c, struct shard *sh, _Atomic uint64_t *old,
                   size_t nslots)
{
	uint64_t v[REHASH_BATCH];
	struct hk k[REHASH_BATCH];
	size_t i = 0;
	while (i < nslots) {
		unsigned n = 0;
		for (; i < nslots && n < REHASH_BATCH; i++) {
			uint64_t x = atomic_load_explicit(&old[i], memory_order_relaxed);
			if (!x)
				continue;
			v[n++] = x;
			__builtin_prefetch(c->segs[slot_seg(x)].data + slot_off(x));
		}
		for (unsigned j = 0; j < n; j++) {
			const char *p = c->segs[slot_seg(v[j])].data + slot_off(v[j]);
			struct itm it;
			itm_parse(p, &it);
			hk_make(&k[j], p + it.hdr, it.klen);
			__builtin_prefetch(bucket_at(sh, bucket1(sh, &k[j])));
			__builtin_prefetch(bucket_at(sh, bucket2(sh, &k[j])));
		}
		for (unsigned j = 0; j < n; j++)
			if (!cache__place(sh, &k[j], v[j]))
				cache__place_hard(c, sh, &k[j], v[j]);
	}
}

/* The new table comes from the pool; when the pool is full and segments
 * are huge blocks (whose release returns their charge), free and then
 * evicted segments are released to make room. Failing that the table
 * stays (inserts then evict within buckets) until the shard holds
 * 1/16 of its slots more items (grow_retry). */
void cache__table_grow(struct cache *c, struct shard *sh, int64_t now)
{
	uint64_t slots = (uint64_t)sh->nb * SLOTS_PER_BUCKET;
	uint64_t nb64 = (uint64_t)sh->nb + sh->nb / 2 + 1;
	if (nb64 > UINT32_MAX / 2)
		return;
	uint32_t nb = (uint32_t)nb64;
	_Atomic uint64_t *ns;
	uint32_t *ng;
	struct bp_block *blk = cache__table_alloc(c, nb, &ns, &ng);
	if (!blk) {
		cache__free_list_drain(c);
		blk = cache__table_alloc(c, nb, &ns, &ng);
		uint64_t saved = sh->reloc_budget;
		sh->reloc_budget = 0; /* the point is to free memory */
		while (!blk && cache__evict_one(c, sh, now, 0))
			blk = cache__table_alloc(c, nb, &ns, &ng);
		sh->reloc_budget = saved;
	}
	if (!blk) {
		sh->grow_retry = sh->items + slots / 16;
		return;
	}
	_Atomic uint64_t *old = sh->slots;
	struct bp_block *oblk = sh->tblk;
	uint32_t onb = sh->nb;
	/* Atomic stores: cache_prefetch reads these two without the lock. */
	__atomic_store_n(&sh->slots, ns, __ATOMIC_RELAXED);
	sh->ghost = ng;
	__atomic_store_n(&sh->nb, nb, __ATOMIC_RELAXED);
	sh->nghost = nb * 2;
	sh->tblk = blk;
	rehash(c, sh, old, (size_t)onb * SLOTS_PER_BUCKET);
	bp_block_unref(oblk);
	ctr_add(sh, CX_hash_slots, ((uint64_t)nb - onb) * SLOTS_PER_BUCKET);
	ctr_add(sh, CX_table_grows, 1);
}
