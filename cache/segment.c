/*
 * Segments: the store's directory of segment entries, the free list (entries
 * with a block, ready to reuse) and the empty list (entries without one),
 * each shard's FIFO queues of sealed segments, and appending to a shard's
 * open segments. Nothing here evicts (evict.c does). The free and empty
 * lists are under free_lock, taken here; everything else is under the
 * owning shard's lock, held by the caller. See docs/cache.md, "Layout".
 */
#include "cache/cache_internal.h"

/* ------------------------------------------------------------------------
 * Queues of sealed segments
 * ---------------------------------------------------------------------- */

static void fifo_push(struct cache *c, struct fifo *f, int32_t id)
{
	struct seg *s = &c->segs[id];
	s->prev = NIL;
	s->next = f->head;
	if (f->head != NIL)
		c->segs[f->head].prev = id;
	else
		f->tail = id;
	f->head = id;
	f->n++;
}

void cache__fifo_unlink(struct cache *c, struct fifo *f, int32_t id)
{
	struct seg *s = &c->segs[id];
	if (s->prev != NIL)
		c->segs[s->prev].next = s->next;
	else
		f->head = s->next;
	if (s->next != NIL)
		c->segs[s->next].prev = s->prev;
	else
		f->tail = s->prev;
	s->next = s->prev = NIL;
	f->n--;
}

/* ------------------------------------------------------------------------
 * The free list
 * ---------------------------------------------------------------------- */

/* The segment is kept (with its block) on the free list when only the
 * store references it and `keep` (never a large item's block: its size is
 * its item's), else its block is released. Replies may still reference
 * it (a pinned segment): its charge then moves out of the limit to the
 * pool's detached budget (bp_block_detach), so that the store can take a
 * new segment at once, and the memory goes back to the system when the
 * last reply is sent. With the budget spent it stays charged until then. */
void cache__seg_release(struct cache *c, struct shard *sh, int32_t id,
                        bool keep)
{
	struct seg *s = &c->segs[id];
	sh->qsegs[s->q]--;
	sh->held -= s->cap;
	ctr_sub(sh, CX_segments, 1);
	if (s->large)
		ctr_sub(sh, CX_large_items, 1);
	s->open = 0;
	bool pinned = bp_block_refs(s->blk) > 1;
	if (pinned && bp_block_detach(s->blk) == 0)
		ctr_add(sh, CX_pinned_evictions, 1);
	pthread_mutex_lock(&c->free_lock);
	if (keep && !pinned && !s->large) {
		s->next = c->free_head;
		c->free_head = id;
		c->nfree++;
	} else {
		bp_block_unref(s->blk);
		s->blk = NULL;
		s->data = NULL;
		s->next = c->empty_head;
		c->empty_head = id;
	}
	pthread_mutex_unlock(&c->free_lock);
}

/* New items (reloc false) may not take the last RESERVE free segments:
 * those are for the items an eviction keeps (relocations), which would
 * otherwise find no room exactly when memory is full. One for a one-shard
 * store, three with more shards, whatever their number (why these counts:
 * docs/cache.md, "The relocation reserve"). The first pool block obtained
 * while the reserve is short refills it. */
#define RESERVE(c) ((c)->nshards > 1 ? 3u : 1u)

int32_t cache__seg_take(struct cache *c, bool reloc)
{
	int32_t id = NIL;
	pthread_mutex_lock(&c->free_lock);
	if (c->free_head != NIL && (reloc || c->nfree > RESERVE(c))) {
		id = c->free_head;
		c->free_head = c->segs[id].next;
		c->nfree--;
		goto out;
	}
	while (c->empty_head != NIL) {
		struct bp_block *blk = bp_block_get(c->pool, c->seg_cap);
		if (!blk)
			break;
		id = c->empty_head;
		struct seg *s = &c->segs[id];
		c->empty_head = s->next;
		s->blk = blk;
		s->data = bp_block_data(blk);
		s->cap = c->seg_cap;
		s->large = 0;
		if (reloc || c->nfree >= RESERVE(c))
			goto out;
		/* The first block after the reserve ran out refills it. */
		s->next = c->free_head;
		c->free_head = id;
		c->nfree++;
		id = NIL;
	}
out:
	pthread_mutex_unlock(&c->free_lock);
	return id;
}

int32_t cache__large_take(struct cache *c, uint32_t size)
{
	int32_t id = NIL;
	pthread_mutex_lock(&c->free_lock);
	while (c->empty_head != NIL) {
		struct bp_block *blk = bp_block_get(c->pool, size);
		if (blk) {
			id = c->empty_head;
			struct seg *s = &c->segs[id];
			c->empty_head = s->next;
			s->blk = blk;
			s->data = bp_block_data(blk);
			s->cap = size;
			s->large = 1;
			break;
		}
		/* Free segments hold charge the limit needs back. */
		if (c->free_head == NIL || c->nfree <= RESERVE(c))
			break;
		int32_t f = c->free_head;
		struct seg *fs = &c->segs[f];
		c->free_head = fs->next;
		c->nfree--;
		bp_block_unref(fs->blk);
		fs->blk = NULL;
		fs->data = NULL;
		fs->next = c->empty_head;
		c->empty_head = f;
	}
	pthread_mutex_unlock(&c->free_lock);
	return id;
}

void cache__free_push(struct cache *c, int32_t id)
{
	pthread_mutex_lock(&c->free_lock);
	c->segs[id].next = c->free_head;
	c->free_head = id;
	c->nfree++;
	pthread_mutex_unlock(&c->free_lock);
}

unsigned cache__free_list_drain(struct cache *c)
{
	unsigned n = 0;
	pthread_mutex_lock(&c->free_lock);
	while (c->free_head != NIL) {
		int32_t id = c->free_head;
		struct seg *s = &c->segs[id];
		c->free_head = s->next;
		c->nfree--;
		bp_block_unref(s->blk);
		s->blk = NULL;
		s->data = NULL;
		s->next = c->empty_head;
		c->empty_head = id;
		n++;
	}
	pthread_mutex_unlock(&c->free_lock);
	return n;
}

/* ------------------------------------------------------------------------
 * Open segments and appending
 * ---------------------------------------------------------------------- */

void cache__seg_open(struct cache *c, struct shard *sh, int32_t id, int q,
                     unsigned ttlc)
{
	struct seg *s = &c->segs[id];
	s->seq = atomic_fetch_add(&c->seq, 1);
	s->used = 0;
	s->max_exp = 0;
	s->live = 0;
	s->live_bytes = 0;
	s->next = s->prev = NIL;
	s->shard = (uint16_t)(sh - c->shards);
	s->q = (uint8_t)q;
	s->ttlc = (uint8_t)ttlc;
	s->open = 1;
	sh->qsegs[q]++;
	sh->held += s->cap;
	ctr_add(sh, CX_segments, 1);
}

void cache__seg_queue_large(struct cache *c, struct shard *sh, int32_t id,
                            int q, unsigned ttlc, uint32_t size)
{
	cache__seg_open(c, sh, id, q, ttlc);
	struct seg *s = &c->segs[id];
	s->open = 0;
	s->used = size;
	fifo_push(c, &sh->q[q], id);
	ctr_add(sh, CX_large_items, 1);
}

void cache__seg_requeue(struct cache *c, struct shard *sh, int32_t id)
{
	fifo_push(c, &sh->q[c->segs[id].q], id);
}

void cache__seg_seal(struct cache *c, struct shard *sh, int32_t id)
{
	struct seg *s = &c->segs[id];
	sh->open[s->q][s->ttlc] = NIL;
	s->open = 0;
	fifo_push(c, &sh->q[s->q], id);
}

int32_t cache__open_fit(struct cache *c, struct shard *sh, int q,
                        unsigned ttlc, uint32_t size, uint32_t *off,
                        bool *sealed)
{
	int32_t id = sh->open[q][ttlc];
	*sealed = false;
	if (id == NIL)
		return NIL;
	struct seg *s = &c->segs[id];
	if (!seg_flushed(c, s) && s->cap - s->used >= size) {
		*off = s->used;
		s->used += size;
		return id;
	}
	cache__seg_seal(c, sh, id);
	*sealed = true;
	return NIL;
}

int32_t cache__bump_alloc(struct cache *c, struct shard *sh, int q,
                          unsigned ttlc, uint32_t size, uint32_t *off)
{
	bool sealed;
	int32_t id = cache__open_fit(c, sh, q, ttlc, size, off, &sealed);
	if (id != NIL)
		return id;
	id = cache__seg_take(c, true);
	if (id == NIL)
		return NIL;
	cache__seg_open(c, sh, id, q, ttlc);
	sh->open[q][ttlc] = id;
	struct seg *s = &c->segs[id];
	*off = 0;
	s->used = size;
	return id;
}
