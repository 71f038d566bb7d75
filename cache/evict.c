/*
 * Getting a segment when none is free: cleaning (garbage before items),
 * S3-FIFO (or FIFO) eviction over segments with relocation of the items the
 * policy keeps, and TTL sweeps that free segments whose items are all
 * dead. Everything here runs under the shard's writer lock; another shard
 * is only ever try-locked. See docs/cache.md, "Eviction: S3-FIFO over
 * segments" and "TTL and flush".
 */
#include "cache/cache_internal.h"

#include <string.h>

#define S_SHARE_PCT 10 /* S3-FIFO: the small queue's share of segments */
#define RELOC_SEGS 4   /* relocation budget per segment allocation */
#define RELOC_MAX 32   /* ... carried over up to this */

/* ------------------------------------------------------------------------
 * Evicting one segment
 * ---------------------------------------------------------------------- */

/* Copies the live item `it` at p (offset ioff of segment s, slot *sp with
 * value v) into the open segment of queue q, when sh's relocation budget
 * covers it and a segment is at hand (never evicting). The copy keeps the
 * CAS (F_CAS) and gets frequency nf. False when it was not copied. */
static bool relocate(struct cache *c, struct shard *sh, struct seg *s,
                     uint32_t ioff, const char *p, const struct itm *it,
                     _Atomic uint64_t *sp, uint64_t v, int q, unsigned nf,
                     int64_t now)
{
	uint8_t meta = (uint8_t)(it->meta | F_CAS);
	uint32_t hs = hdr_size(meta, it->vlen);
	uint32_t nsize = hs + it->klen + it->vlen;
	uint32_t noff;
	if (nsize > sh->reloc_budget)
		return false;
	int32_t nid = cache__bump_alloc(c, sh, q, ttl_class(it->exp, now), nsize,
	                                &noff);
	if (nid == NIL)
		return false;
	struct seg *ns = &c->segs[nid];
	char *d = ns->data + noff;
	uint64_t cas = item_cas(s, ioff, it);
	hdr_write(d, meta, it->klen, it->vlen, it->flags, it->exp, cas, it->atime);
	memcpy(d + hs, p + it->hdr, it->klen + it->vlen);
	sh->reloc_budget -= nsize;
	cache__unaccount(sh, s, it);
	struct itm nit = *it;
	nit.meta = meta;
	nit.hdr = hs;
	nit.size = nsize;
	nit.cas = cas;
	cache__account(sh, ns, &nit);
	atomic_store_explicit(sp, slot_make(slot_tag(v), nf, (uint32_t)nid, noff),
	                      memory_order_relaxed);
	ctr_add(sh, CX_relocations, 1);
	return true;
}

/* Removes every live item of segment id (owned by sh and unlinked from its
 * queue) and releases the segment. Dead items (expired, flushed) are
 * reclaimed. With EVICT_RETAIN the items the policy keeps are relocated
 * (S3-FIFO: those read since they were written; into M, S -> M resetting
 * the count and M -> M spending one), with EVICT_CLEAN every item is
 * (into the victim's own queue, keeping its count); the rest are evicted,
 * and those evicted from S leave a ghost. EVICT_KEEP_BLOCK: the block
 * goes on the free list if no reader holds it. */
static void seg_evict(struct cache *c, struct shard *sh, int32_t id,
                      int64_t now, unsigned flags)
{
	struct seg *s = &c->segs[id];
	bool clean = flags & EVICT_CLEAN;
	uint32_t off = 0;
	bool flushed = seg_flushed(c, s);
	while (off < s->used && s->live > 0) {
		char *p = s->data + off;
		struct itm it;
		itm_parse(p, &it);
		uint32_t ioff = off;
		off += it.size;
		_Atomic uint64_t *sp = cache__find_slot_of(sh, (uint32_t)id, ioff,
		                                           p + it.hdr, it.klen);
		if (!sp)
			continue; /* dead: replaced or deleted */
		uint64_t v = atomic_load_explicit(sp, memory_order_relaxed);
		if (flushed || (it.exp != 0 && (int64_t)it.exp <= now)) {
			atomic_store_explicit(sp, 0, memory_order_relaxed);
			cache__unaccount(sh, s, &it);
			ctr_item(sh, &it, CX_expired_reclaimed, CC_reclaimed);
			if (!(it.meta & F_FETCHED))
				ctr_item(sh, &it, CX_expired_unfetched, CC_expired_unfetched);
			if (flags & EVICT_SWEEP)
				cls_add(sh, itm_class(&it), CC_crawler_reclaimed, 1);
			continue;
		}
		unsigned f = slot_freq(v);
		bool keep = c->policy == CACHE_S3FIFO && (f > 0 || clean) && !s->large;
		if (keep && (flags & EVICT_RETAIN)) {
			/* S -> M resets the count; M -> M spends one; a
			 * cleaned item keeps its queue and count. */
			unsigned nf = clean ? f : s->q == Q_S ? 0 : f - 1;
			if (relocate(c, sh, s, ioff, p, &it, sp, v,
			             clean ? s->q : Q_M, nf, now))
				continue;
		}
		atomic_store_explicit(sp, 0, memory_order_relaxed);
		cache__unaccount(sh, s, &it);
		ctr_item(sh, &it, CX_evictions, CC_evicted);
		if (!(it.meta & F_FETCHED))
			ctr_item(sh, &it, CX_evicted_unfetched, CC_evicted_unfetched);
		if (c->policy == CACHE_S3FIFO && s->q == Q_S) {
			struct hk k;
			hk_make(&k, p + it.hdr, it.klen);
			ghost_put(sh, &k);
		}
	}
	cache__seg_release(c, sh, id, flags & EVICT_KEEP_BLOCK);
}

/* ------------------------------------------------------------------------
 * Cleaning and eviction
 * ---------------------------------------------------------------------- */

/* Cleaning: while less than CLEAN_PCT of the bytes of sh's segments are
 * live items, an eviction takes the segment with the fewest live bytes
 * among the CLEAN_SCAN oldest of each queue (a greedy cleaner, as in LFS)
 * and keeps every item in it, before any segment whose unkept items would
 * be dropped (why: docs/cache.md, "Cleaning: garbage before items"). It
 * must be at most CLEAN_PCT live, so each cleaning frees at least a tenth
 * of a segment. Returns NIL when sh holds too little garbage, or none of
 * its old segments does. */
#define CLEAN_PCT 90
#define CLEAN_SCAN 64
static int32_t pick_clean(struct cache *c, struct shard *sh)
{
	uint64_t live = atomic_load_explicit(&sh->ctr[CX_bytes_items], memory_order_relaxed);
	if (live * 100 >= sh->held * CLEAN_PCT)
		return NIL;
	uint64_t best_live = (uint64_t)c->seg_cap * CLEAN_PCT / 100 + 1;
	int32_t best = NIL;
	for (int q = 0; q < NQ; q++) {
		int32_t id = sh->q[q].tail;
		for (unsigned n = 0; id != NIL && n < CLEAN_SCAN; n++, id = c->segs[id].prev) {
			/* A large item's block is never cleaned: it is its item
			 * (dead, the sweep frees it). */
			if (!c->segs[id].large && c->segs[id].live_bytes < best_live) {
				best_live = c->segs[id].live_bytes;
				best = id;
			}
		}
	}
	return best;
}

/* Adds bytes to sh's relocation budget, up to RELOC_MAX segments' worth. */
static void budget_add(struct cache *c, struct shard *sh, uint64_t bytes)
{
	sh->reloc_budget += bytes;
	if (sh->reloc_budget > (uint64_t)c->seg_cap * RELOC_MAX)
		sh->reloc_budget = (uint64_t)c->seg_cap * RELOC_MAX;
}

/* Cleans one segment of sh (pick_clean), adding `lend` bytes to sh's
 * relocation budget first (up to its cap): a shard cleaned for another's
 * allocation copies out of that allocation's share. False when sh has
 * nothing to clean. */
static bool clean_one(struct cache *c, struct shard *sh, int64_t now, uint64_t lend)
{
	if (c->policy != CACHE_S3FIFO || c->no_evict) /* -M: it may drop items */
		return false;
	int32_t id = pick_clean(c, sh);
	if (id == NIL)
		return false;
	budget_add(c, sh, lend);
	cache__fifo_unlink(c, &sh->q[c->segs[id].q], id);
	seg_evict(c, sh, id, now, EVICT_RETAIN | EVICT_CLEAN | EVICT_KEEP_BLOCK);
	ctr_add(sh, CX_segs_cleaned, 1);
	return true;
}

/* S3-FIFO keeps a large item the way it keeps any other, but without a
 * copy: its block is queued again as the newest of M (S -> M resetting
 * its count, M -> M spending one). True when it was kept. */
static bool keep_large(struct cache *c, struct shard *sh, int32_t id)
{
	struct seg *s = &c->segs[id];
	if (c->policy != CACHE_S3FIFO || s->live == 0 || seg_flushed(c, s))
		return false;
	struct itm it;
	itm_parse(s->data, &it);
	_Atomic uint64_t *sp = cache__find_slot_of(sh, (uint32_t)id, 0, s->data + it.hdr,
	                                           it.klen);
	uint64_t v = sp ? atomic_load_explicit(sp, memory_order_relaxed) : 0;
	if (!sp || slot_freq(v) == 0)
		return false;
	unsigned nf = s->q == Q_S ? 0 : slot_freq(v) - 1;
	atomic_store_explicit(sp, slot_with_freq(v, nf), memory_order_relaxed);
	sh->qsegs[s->q]--;
	sh->qsegs[Q_M]++;
	s->q = Q_M;
	cache__seg_requeue(c, sh, id);
	return true;
}

static unsigned shard_sweep(struct cache *c, struct shard *sh, int64_t now);

bool cache__evict_one(struct cache *c, struct shard *sh, int64_t now,
                      unsigned flags)
{
	if (c->no_evict) /* -M: only what is wholly dead goes; else -ENOMEM */
		return shard_sweep(c, sh, now) > 0;
	int q;
	if (c->policy == CACHE_FIFO) {
		q = Q_S;
	} else {
		uint32_t total = sh->qsegs[Q_S] + sh->qsegs[Q_M];
		bool s_big = sh->qsegs[Q_S] * 100 > total * S_SHARE_PCT;
		if (sh->q[Q_S].n > 0 && (s_big || sh->q[Q_M].n == 0))
			q = Q_S;
		else if (sh->q[Q_M].n > 0)
			q = Q_M;
		else
			q = Q_S;
	}
	int32_t id = sh->q[q].tail;
	if (id == NIL)
		return false;
	cache__fifo_unlink(c, &sh->q[q], id);
	if (c->segs[id].large && (flags & EVICT_KEEP_LARGE) && keep_large(c, sh, id))
		return true;
	unsigned ef = flags & EVICT_KEEP_BLOCK;
	if (c->policy == CACHE_S3FIFO)
		ef |= EVICT_RETAIN;
	seg_evict(c, sh, id, now, ef);
	return true;
}

/* Cleans (clean) or evicts one segment of a shard other than shards[me],
 * taking each one's lock only if it is free. A cleaning copies out of the
 * allocation's budget, lent to the first shard cleaned (*lent). */
static bool reclaim_other(struct cache *c, unsigned me, int64_t now, bool clean,
                          bool *lent)
{
	for (unsigned i = 1; i < c->nshards; i++) {
		struct shard *o = &c->shards[(me + i) % c->nshards];
		if (pthread_rwlock_trywrlock(&o->lock) != 0)
			continue;
		bool done = clean ? clean_one(c, o, now, *lent ? 0 : (uint64_t)c->seg_cap * RELOC_SEGS)
		                  : cache__evict_one(c, o, now, EVICT_KEEP_BLOCK | EVICT_KEEP_LARGE);
		*lent |= clean && done;
		pthread_rwlock_unlock(&o->lock);
		if (done)
			return true;
	}
	return false;
}

/* A segment for shard sh, evicting when the store has none. Tries the
 * shard's own queues first, then (without blocking) the other shards.
 * NIL when nothing can be evicted. */
static int32_t seg_get(struct cache *c, struct shard *sh, int64_t now)
{
	/* Evictions copy the items the policy keeps out of a token bucket:
	 * RELOC_SEGS segments' worth per allocation, carried over up to
	 * RELOC_MAX. Past it they drop everything, so the loop ends and the
	 * copying per allocation stays bounded on average and at worst. */
	budget_add(c, sh, (uint64_t)c->seg_cap * RELOC_SEGS);
	unsigned me = (unsigned)(sh - c->shards);
	bool lent = false;
	for (;;) {
		int32_t id = cache__seg_take(c, false);
		if (id != NIL)
			return id;
		/* Garbage before items: a segment any shard can clean comes
		 * before one whose unkept items would be dropped (segments
		 * are one pool for all shards, so the shard that needs one is
		 * not always the one holding the garbage). */
		if (clean_one(c, sh, now, 0) || reclaim_other(c, me, now, true, &lent))
			continue;
		if (cache__evict_one(c, sh, now, EVICT_KEEP_BLOCK | EVICT_KEEP_LARGE) ||
		    reclaim_other(c, me, now, false, &lent))
			continue;
		return cache__seg_take(c, true); /* last resort: the reserve */
	}
}

/* ------------------------------------------------------------------------
 * TTL sweeps
 * ---------------------------------------------------------------------- */

/* Frees the segments of sh whose items are all expired or flushed, or that
 * hold no live item: a walk over segment headers, plus one pass over the
 * items of each segment it frees (to clear their slots). Flushed and fully
 * expired open segments go too. Returns how many. */
static unsigned shard_sweep(struct cache *c, struct shard *sh, int64_t now)
{
	unsigned n = 0;
	uint64_t checked = 0, reclaimed = 0;
	for (int q = 0; q < NQ; q++) {
		int32_t id = sh->q[q].tail;
		while (id != NIL) {
			struct seg *s = &c->segs[id];
			int32_t prev = s->prev;
			bool dead = seg_flushed(c, s) || s->live == 0 ||
			            (s->max_exp != NEVER && (int64_t)s->max_exp <= now);
			/* Every live item of a dead segment is expired or
			 * flushed: seg_evict reclaims all s->live of them. */
			checked += s->live;
			if (dead) {
				reclaimed += s->live;
				cache__fifo_unlink(c, &sh->q[q], id);
				seg_evict(c, sh, id, now, EVICT_KEEP_BLOCK | EVICT_SWEEP);
				ctr_add(sh, CX_segs_expired, 1);
				n++;
			}
			id = prev;
		}
		for (unsigned t = 0; t < NTTL; t++) {
			id = sh->open[q][t];
			if (id == NIL)
				continue;
			struct seg *s = &c->segs[id];
			checked += s->live;
			if (seg_flushed(c, s) ||
			    (s->max_exp != NEVER && (int64_t)s->max_exp <= now)) {
				reclaimed += s->live;
				sh->open[q][t] = NIL;
				seg_evict(c, sh, id, now, EVICT_KEEP_BLOCK | EVICT_SWEEP);
				n++;
			}
		}
	}
	ctr_add(sh, CX_sweep_checked, checked);
	ctr_add(sh, CX_sweep_reclaimed, reclaimed);
	return n;
}

int cache_expire(struct cache *c)
{
	int64_t now = clock_now(c);
	flush_check(c, now);
	unsigned n = 0;
	for (unsigned i = 0; i < c->nshards; i++) {
		struct shard *sh = &c->shards[i];
		shard_wrlock(sh);
		n += shard_sweep(c, sh, now);
		pthread_rwlock_unlock(&sh->lock);
	}
	return (int)n;
}

/* ------------------------------------------------------------------------
 * Allocating an item
 * ---------------------------------------------------------------------- */

int32_t cache__item_alloc_large(struct cache *c, struct shard *sh, int q,
                                unsigned ttlc, uint32_t size, int64_t now,
                                uint32_t *off)
{
	unsigned me = (unsigned)(sh - c->shards);
	bool lent = false;
	budget_add(c, sh, (uint64_t)c->seg_cap * RELOC_SEGS);
	for (;;) {
		int32_t id = cache__large_take(c, size);
		if (id != NIL) {
			cache__seg_queue_large(c, sh, id, q, ttlc, size);
			*off = 0;
			return id;
		}
		/* As seg_get, but whatever is evicted gives its block back:
		 * this item needs the room in the limit, not a segment. */
		if (clean_one(c, sh, now, 0) || reclaim_other(c, me, now, true, &lent))
			continue;
		if (cache__evict_one(c, sh, now, EVICT_KEEP_LARGE) ||
		    reclaim_other(c, me, now, false, &lent))
			continue;
		return NIL;
	}
}

int32_t cache__item_alloc_seg(struct cache *c, struct shard *sh, int q,
                              unsigned ttlc, uint32_t size, int64_t now,
                              uint32_t *off, bool sealed)
{
	if (sealed)
		shard_sweep(c, sh, now);
	int32_t id = seg_get(c, sh, now);
	if (id == NIL)
		return NIL;
	/* The eviction may have opened a segment of this queue and class for
	 * the items it kept: fill that one first, and give ours back. */
	int32_t cur = sh->open[q][ttlc];
	if (cur != NIL) {
		struct seg *s = &c->segs[cur];
		if (!seg_flushed(c, s) && s->cap - s->used >= size) {
			cache__free_push(c, id);
			*off = s->used;
			s->used += size;
			return cur;
		}
		cache__seg_seal(c, sh, cur);
	}
	cache__seg_open(c, sh, id, q, ttlc);
	sh->open[q][ttlc] = id;
	*off = 0;
	c->segs[id].used = size;
	return id;
}
