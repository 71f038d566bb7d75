/*
 * Every memcached operation: store (set/add/replace/append/prepend/cas),
 * get, delete, incr/decr, touch, gat, flush_all, the meta commands' get
 * and invalidate, and the prefetch hint. Each takes its key's shard lock
 * (shared for get, a meta get that neither touches nor vivifies, and
 * prefetch; exclusive otherwise) and writes a new version of an item by
 * appending it to an open segment (put_item). See cache/cache.h for the
 * contract and docs/cache.md for the reasons.
 */
#include "cache/cache_internal.h"
#include "bufpool/decimal.h"

#include <errno.h>
#include <string.h>

/* Converts a memcached expiration to an absolute time: 0 never, else the
 * unix time; *expired when it is already in the past. */
static uint32_t exp_abs(int64_t now, int64_t exptime, bool *expired)
{
	*expired = false;
	if (exptime == 0)
		return 0;
	int64_t t;
	if (exptime < 0) {
		*expired = true;
		return 1;
	}
	t = exptime <= CACHE_REALTIME_MAXDELTA ? now + exptime : exptime;
	if (t <= now) {
		*expired = true;
		return 1;
	}
	if (t >= (int64_t)NEVER)
		t = (int64_t)NEVER - 1;
	return (uint32_t)t;
}

/* ------------------------------------------------------------------------
 * Writing items
 * ---------------------------------------------------------------------- */

/* Where some of a new value's bytes come from: caller memory, a chain
 * range, iovecs, or len copies of the byte fill (nonzero). A value is at
 * most two parts (append, prepend, a padded number). */
struct part {
	char fill;
	const char *mem;
	struct bp_chain *chain;
	const struct iovec *iov;
	int iovcnt;
	size_t off, len;
};

static void part_copy(char *dst, const struct part *pt)
{
	if (pt->fill) {
		memset(dst, pt->fill, pt->len);
	} else if (pt->mem) {
		memcpy(dst, pt->mem, pt->len);
	} else if (pt->chain) {
		if (pt->len)
			(void)bp_chain_copy_out(pt->chain, pt->off, dst, pt->len);
	} else {
		for (int i = 0; i < pt->iovcnt; i++) {
			memcpy(dst, pt->iov[i].iov_base, pt->iov[i].iov_len);
			dst += pt->iov[i].iov_len;
		}
	}
}

struct wreq {
	const void *key;
	uint32_t klen;
	struct part parts[2];
	int nparts;
	uint32_t vlen, flags, exp;
	uint64_t keep_cas; /* nonzero: the new item keeps this CAS */
	int q;
	unsigned freq;
	uint8_t state;     /* F_STATE bits the new item starts with */
	bool has_atime;    /* the new item's access time is atime, not now */
	uint32_t atime;
};

/* A new version of a key gets a CAS above the old version's, as
 * memcached's always do (ms I tells an older CAS from a newer one): the
 * implicit CAS of a later position in the same segment, or of a segment
 * opened later, is higher, but the open segment of another queue or TTL
 * class may be older than the old version's. Then the new version carries
 * an explicit CAS made of a sequence number no segment will have: higher
 * than every CAS so far, and unique. Returns it, or 0 when the implicit
 * CAS will be higher (a segment the item may land in instead of the open
 * one is opened later, so higher too). */
static uint64_t cas_above(struct cache *c, struct shard *sh, int q,
                          unsigned ttlc, uint64_t old_cas)
{
	int32_t id = sh->open[q][ttlc];
	if (id == NIL)
		return 0;
	const struct seg *s = &c->segs[id];
	if (((s->seq << OFF_BITS) | s->used) > old_cas)
		return 0;
	return atomic_fetch_add(&c->seq, 1) << OFF_BITS;
}

/* Writes a new version of the key: allocates (perhaps evicting), copies,
 * then replaces whatever version the table holds. `old` (may be NULL) is
 * the current version, whose bytes the parts may reference: its segment
 * is pinned across the allocation. Returns 0 or -ENOMEM. */
static int put_item(struct cache *c, struct shard *sh, const struct hk *k,
                    const struct wreq *w, const struct loc *old, int64_t now,
                    uint64_t *cas_out)
{
	unsigned ttlc = ttl_class(w->exp, now);
	uint64_t cas = w->keep_cas;
	if (old && !cas)
		cas = cas_above(c, sh, w->q, ttlc, item_cas(old->seg, old->off, &old->it));
	uint8_t meta = (uint8_t)(F_ITEM | (w->flags ? F_FLAGS : 0) |
	                         (w->exp ? F_EXP : 0) | (cas ? F_CAS : 0) |
	                         (w->state & F_STATE));
	uint32_t hs = hdr_size(meta, w->vlen);
	uint32_t size = hs + w->klen + w->vlen;
	struct bp_block *pin = NULL;
	if (old) {
		pin = old->seg->blk;
		bp_block_ref(pin);
	}
	table_maybe_grow(c, sh, now);
	uint32_t off;
	int32_t id = item_alloc(c, sh, w->q, ttlc, size, now, &off);
	if (id == NIL) {
		bp_block_unref(pin);
		ctr_add(sh, CX_enomem, 1);
		cls_add(sh, cache_class_of(cache_class_item_size(w->klen, w->vlen, w->flags)),
		        CC_outofmemory, 1);
		return -ENOMEM;
	}
	struct seg *s = &c->segs[id];
	char *d = s->data + off;
	hdr_write(d, meta, w->klen, w->vlen, w->flags, w->exp, cas,
	          w->has_atime ? w->atime : (uint32_t)now);
	memcpy(d + hs, w->key, w->klen);
	char *v = d + hs + w->klen;
	for (int i = 0; i < w->nparts; i++) {
		part_copy(v, &w->parts[i]);
		v += w->parts[i].len;
	}
	/* From here on nothing of the old version is read: w's key and parts
	 * may point into it (touch rewrites an item from its own bytes), and
	 * once unpinned its segment may already have been evicted. The
	 * lookup takes the key from the new copy. */
	bp_block_unref(pin);
	struct loc cur;
	if (cache__lookup(c, sh, k, d + hs, w->klen, &cur))
		remove_loc(sh, &cur);
	struct itm it;
	itm_parse(d, &it);
	cache__account(sh, s, &it);
	uint64_t slot = slot_make(k->tag, w->freq, (uint32_t)id, off);
	if (!cache__place(sh, k, slot))
		cache__place_hard(c, sh, k, slot);
	if (cas_out)
		*cas_out = item_cas(s, off, &it);
	return 0;
}

/* Queue for a new version: main if the old one was there or the key is a
 * ghost, else small. */
static int queue_for(struct cache *c, struct shard *sh, const struct hk *k,
                     const struct loc *old)
{
	if (c->policy != CACHE_S3FIFO)
		return Q_S;
	if (old)
		return old->seg->q;
	return ghost_take(sh, k) ? Q_M : Q_S;
}

static inline bool key_ok(const void *key, size_t klen)
{
	return key && klen > 0 && klen <= CACHE_KEY_MAX;
}

/* The time, a due flush run, and k's shard locked: exclusive for writers
 * (lock_w), shared for readers (lock_r). */
static struct shard *lock_k(struct cache *c, const struct hk *k, int64_t *now,
                            bool write)
{
	*now = clock_now(c);
	flush_check(c, *now);
	struct shard *sh = shard_of(c, k);
	shard_lock(sh, write);
	return sh;
}

static struct shard *lock_w(struct cache *c, const struct hk *k, int64_t *now)
{
	return lock_k(c, k, now, true);
}

static struct shard *lock_r(struct cache *c, const struct hk *k, int64_t *now)
{
	return lock_k(c, k, now, false);
}

static const int mode_ctr[] = {
	[CACHE_SET] = CX_cmd_set,         [CACHE_ADD] = CX_cmd_add,
	[CACHE_REPLACE] = CX_cmd_replace, [CACHE_APPEND] = CX_cmd_append,
	[CACHE_PREPEND] = CX_cmd_append,  [CACHE_CAS] = CX_cmd_cas,
	[CACHE_CAS_STALE] = CX_cmd_cas,
};

static int store_common(struct cache *c, enum cache_mode mode, const void *key,
                        size_t klen, const struct part *src, uint32_t flags,
                        int64_t exptime, uint64_t cas, uint64_t *cas_out)
{
	if (!key_ok(key, klen) || (unsigned)mode > CACHE_CAS_STALE ||
	    ((mode == CACHE_CAS || mode == CACHE_CAS_STALE) && cas == 0))
		return -EINVAL;
	struct hk k;
	hk_make(&k, key, klen);
	int64_t now;
	struct shard *sh = lock_w(c, &k, &now);
	ctr_add(sh, mode_ctr[mode], 1);
	struct loc old;
	bool found = cache__lookup_live(c, sh, &k, key, klen, now, &old);
	int rc = 0;
	bool stale = false;
	if (mode == CACHE_ADD) {
		if (found) {
			rc = -EEXIST;
			goto out;
		}
	} else if (mode != CACHE_SET || cas) {
		if (!found) {
			if (cas)
				ctr_add(sh, CX_cas_misses, 1);
			rc = (mode == CACHE_APPEND || mode == CACHE_PREPEND) ? -ENOTSUP
			                                                      : -ENOENT;
			goto out;
		}
		uint64_t cur = item_cas(old.seg, old.off, &old.it);
		/* memcached's ms I: a value older than the item's (a lower
		 * CAS) is stored all the same, as stale. */
		stale = mode == CACHE_CAS_STALE && cas < cur;
		if (cas && cur != cas && !stale) {
			ctr_add(sh, CX_cas_mismatch, 1);
			rc = -EEXIST;
			goto out;
		}
		if (cas)
			ctr_add(sh, CX_cas_hits, 1);
	}
	struct wreq w = {.key = key, .klen = (uint32_t)klen, .flags = flags};
	/* An expiry already past is written all the same (exp_abs gives 1,
	 * dead at once), as memcached does: the writer learns the new CAS,
	 * and the old version is gone. */
	bool expired = false;
	if (mode == CACHE_APPEND || mode == CACHE_PREPEND) {
		struct part ov = {.mem = old.p + old.it.hdr + old.it.klen,
		                  .len = old.it.vlen};
		w.parts[0] = mode == CACHE_APPEND ? ov : *src;
		w.parts[1] = mode == CACHE_APPEND ? *src : ov;
		w.nparts = 2;
		w.flags = old.it.flags;
		w.exp = old.it.exp;
	} else {
		w.parts[0] = *src;
		w.nparts = 1;
		w.exp = exp_abs(now, exptime, &expired);
	}
	if (stale) {
		/* As memcached: the expiry and a token handed out stay. */
		w.exp = old.it.exp;
		w.state = (uint8_t)(F_STALE | (old.it.meta & F_TOKEN));
	}
	uint64_t vlen = 0;
	for (int i = 0; i < w.nparts; i++)
		vlen += w.parts[i].len;
	if (klen + vlen > c->max_item) {
		rc = -E2BIG;
		goto out;
	}
	w.vlen = (uint32_t)vlen;
	w.q = queue_for(c, sh, &k, found ? &old : NULL);
	w.freq = 0;
	rc = put_item(c, sh, &k, &w, found ? &old : NULL, now, cas_out);
	if (rc == 0)
		ctr_add(sh, CX_total_items, 1);
out:
	pthread_rwlock_unlock(&sh->lock);
	return rc;
}

int cache_store(struct cache *c, enum cache_mode mode, const void *key,
                size_t klen, struct bp_chain *src, size_t off, size_t len,
                uint32_t flags, int64_t exptime, uint64_t cas,
                uint64_t *cas_out)
{
	if (!src || bp_chain_len(src) < off || bp_chain_len(src) - off < len)
		return -EINVAL;
	struct part p = {.chain = src, .off = off, .len = len};
	return store_common(c, mode, key, klen, &p, flags, exptime, cas, cas_out);
}

int cache_storev(struct cache *c, enum cache_mode mode, const void *key,
                 size_t klen, const struct iovec *iov, int iovcnt,
                 uint32_t flags, int64_t exptime, uint64_t cas,
                 uint64_t *cas_out)
{
	if (iovcnt < 0 || (iovcnt > 0 && !iov))
		return -EINVAL;
	size_t len = 0;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	struct part p = {.iov = iov, .iovcnt = iovcnt, .len = len};
	return store_common(c, mode, key, klen, &p, flags, exptime, cas, cas_out);
}

int cache_set(struct cache *c, const void *key, size_t klen, const void *val,
              size_t vlen, uint32_t flags, int64_t exptime)
{
	struct part p = {.mem = vlen ? val : "", .len = vlen};
	return store_common(c, CACHE_SET, key, klen, &p, flags, exptime, 0, NULL);
}

/* ------------------------------------------------------------------------
 * Delete, incr/decr, touch and gat
 * ---------------------------------------------------------------------- */

int cache_delete(struct cache *c, const void *key, size_t klen, uint64_t cas)
{
	if (!key_ok(key, klen))
		return -EINVAL;
	struct hk k;
	hk_make(&k, key, klen);
	int64_t now;
	struct shard *sh = lock_w(c, &k, &now);
	ctr_add(sh, CX_cmd_delete, 1);
	struct loc l;
	int rc = 0;
	if (!cache__lookup_live(c, sh, &k, key, klen, now, &l)) {
		ctr_add(sh, CX_delete_misses, 1);
		rc = -ENOENT;
	} else if (cas && item_cas(l.seg, l.off, &l.it) != cas) {
		ctr_add(sh, CX_cas_mismatch, 1);
		rc = -EEXIST;
	} else {
		ctr_add(sh, CX_delete_hits, 1);
		remove_loc(sh, &l);
	}
	pthread_rwlock_unlock(&sh->lock);
	return rc;
}

/* Reads a stored number as memcached does (strtoull, then the next byte
 * must be whitespace or the end): leading whitespace skipped, and anything
 * after the digits once a whitespace byte ends them — so a value that an
 * earlier decr padded with spaces ("9  ") reads back as 9. False for no
 * digits, another byte right after them, or a value over 2^64 - 1. */
static bool arith_parse(const char *p, uint32_t n, uint64_t *out)
{
	uint32_t i = 0;
	while (i < n && (p[i] == ' ' || (p[i] >= '\t' && p[i] <= '\r')))
		i++;
	if (i < n && p[i] == '+')
		i++;
	uint32_t start = i;
	uint64_t v = 0;
	for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
		unsigned d = (unsigned)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (i == start)
		return false;
	if (i < n && !(p[i] == ' ' || (p[i] >= '\t' && p[i] <= '\r')))
		return false;
	*out = v;
	return true;
}

int cache_arith(struct cache *c, const void *key, size_t klen, bool decr,
                uint64_t delta, const struct cache_arith_init *init,
                uint64_t cas, uint64_t *value, uint64_t *cas_out)
{
	if (!key_ok(key, klen))
		return -EINVAL;
	struct hk k;
	hk_make(&k, key, klen);
	int64_t now;
	struct shard *sh = lock_w(c, &k, &now);
	ctr_add(sh, CX_cmd_arith, 1);
	struct loc old;
	bool found = cache__lookup_live(c, sh, &k, key, klen, now, &old);
	ctr_add(sh, decr ? (found ? CX_decr_hits : CX_decr_misses)
	                 : (found ? CX_incr_hits : CX_incr_misses), 1);
	char buf[24];
	struct wreq w = {.key = key, .klen = (uint32_t)klen, .nparts = 1};
	uint64_t nv;
	int rc;
	bool expired = false;
	if (!found) {
		if (!init || cas) {
			rc = -ENOENT;
			goto out;
		}
		nv = init->initial;
		w.flags = init->flags;
		w.exp = exp_abs(now, init->exptime, &expired);
		w.q = queue_for(c, sh, &k, NULL);
	} else {
		if (cas && item_cas(old.seg, old.off, &old.it) != cas) {
			ctr_add(sh, CX_cas_mismatch, 1);
			rc = -EEXIST;
			goto out;
		}
		uint64_t cur;
		if (!arith_parse(old.p + old.it.hdr + old.it.klen, old.it.vlen, &cur)) {
			rc = -EINVAL;
			goto out;
		}
		if (decr)
			nv = cur < delta ? 0 : cur - delta;
		else
			nv = cur + delta; /* wraps at 2^64 */
		w.flags = old.it.flags;
		w.exp = old.it.exp;
		w.q = old.seg->q;
		w.freq = slot_freq(old.slot);
	}
	w.vlen = (uint32_t)(bp_dec_put_u64(buf, nv) - buf);
	w.parts[0] = (struct part){.mem = buf, .len = w.vlen};
	/* A number no longer than the stored one keeps the stored length,
	 * padded with trailing spaces, as memcached's in-place update does
	 * ("10" decremented by 100 reads "0 "); a longer one is a new item
	 * of its own length. */
	bool padded = found && w.vlen <= old.it.vlen;
	if (padded && w.vlen < old.it.vlen) {
		w.parts[1] = (struct part){.fill = ' ', .len = old.it.vlen - w.vlen};
		w.nparts = 2;
		w.vlen = old.it.vlen;
	}
	/* memcached updates such a number in place: the item keeps its
	 * state (fetched, stale, token) and is accessed now. */
	if (padded)
		w.state = old.it.meta & F_STATE;
	if (expired) {
		rc = 0;
		if (cas_out)
			*cas_out = 0;
	} else {
		rc = put_item(c, sh, &k, &w, found ? &old : NULL, now, cas_out);
		if (rc == 0 && !padded)
			ctr_add(sh, CX_total_items, 1);
	}
	if (rc == 0 && value)
		*value = nv;
out:
	pthread_rwlock_unlock(&sh->lock);
	return rc;
}

/* Sets the expiry of the live item at l (writer lock held): in place when
 * it has an expiry field, else by rewriting it with its CAS kept. */
static int set_exp(struct cache *c, struct shard *sh, const struct hk *k,
                   struct loc *l, uint32_t exp, int64_t now)
{
	if (l->it.meta & F_EXP) {
		uint32_t at = hdr_exp_at(l->it.meta, l->it.vlen);
		memcpy(l->p + at, &exp, 4);
		l->it.exp = exp;
		if (exp == 0)
			l->seg->max_exp = NEVER;
		else if (l->seg->max_exp != NEVER && exp > l->seg->max_exp)
			l->seg->max_exp = exp;
		return 0;
	}
	if (exp == 0)
		return 0;
	struct wreq w = {
		.key = l->p + l->it.hdr,
		.klen = l->it.klen,
		.nparts = 1,
		.vlen = l->it.vlen,
		.flags = l->it.flags,
		.exp = exp,
		.keep_cas = item_cas(l->seg, l->off, &l->it),
		.q = l->seg->q,
		.freq = slot_freq(l->slot),
		.state = l->it.meta & F_STATE,
		.has_atime = true,
		.atime = l->it.atime,
	};
	w.parts[0] = (struct part){.mem = l->p + l->it.hdr + l->it.klen,
	                           .len = l->it.vlen};
	/* The key bytes live in the old item, which put_item pins. */
	return put_item(c, sh, k, &w, l, now, NULL);
}

static void fill_value(struct cache_value *out, const struct loc *l)
{
	bp_block_ref(l->seg->blk);
	out->data.blk = l->seg->blk;
	out->data.off = l->off + l->it.hdr + l->it.klen;
	out->data.len = l->it.vlen;
	out->flags = l->it.flags;
	out->exptime = l->it.exp;
	out->cas = item_cas(l->seg, l->off, &l->it);
}

static int touch_common(struct cache *c, const void *key, size_t klen,
                        int64_t exptime, struct cache_value *out)
{
	if (!key_ok(key, klen))
		return -EINVAL;
	struct hk k;
	hk_make(&k, key, klen);
	int64_t now;
	struct shard *sh = lock_w(c, &k, &now);
	/* gat counts as a touch only, as in memcached (not cmd_get). */
	ctr_add(sh, CX_cmd_touch, 1);
	struct loc l;
	int rc = 0;
	if (!cache__lookup_live(c, sh, &k, key, klen, now, &l)) {
		ctr_add(sh, CX_touch_misses, 1);
		rc = -ENOENT;
		goto out;
	}
	ctr_add(sh, CX_touch_hits, 1);
	bool expired;
	uint32_t exp = exp_abs(now, exptime, &expired);
	if (expired) {
		/* memcached: the touch succeeds (gat returns the value) and
		 * the item is gone afterwards. */
		if (out)
			fill_value(out, &l);
		remove_loc(sh, &l);
		goto out;
	}
	rc = set_exp(c, sh, &k, &l, exp, now);
	if (rc == 0) {
		/* A touch is a read, as in memcached (the item is bumped). */
		struct loc cur;
		if (cache__lookup(c, sh, &k, key, klen, &cur)) {
			item_bump(cur.p, cur.it.meta, cur.it.atime, now);
			if (out)
				fill_value(out, &cur);
		} else if (out) {
			rc = -ENOENT;
		}
	}
out:
	pthread_rwlock_unlock(&sh->lock);
	return rc;
}

int cache_exptime(struct cache *c, const void *key, size_t klen,
                  uint32_t *exptime)
{
	if (!key_ok(key, klen) || !exptime)
		return -EINVAL;
	struct hk k;
	hk_make(&k, key, klen);
	int64_t now;
	struct shard *sh = lock_r(c, &k, &now);
	struct loc l;
	int rc = -ENOENT;
	if (cache__lookup(c, sh, &k, key, klen, &l) && !item_dead(c, l.seg, &l.it, now)) {
		*exptime = l.it.exp;
		rc = 0;
	}
	pthread_rwlock_unlock(&sh->lock);
	return rc;
}

int cache_touch(struct cache *c, const void *key, size_t klen, int64_t exptime)
{
	return touch_common(c, key, klen, exptime, NULL);
}

int cache_gat(struct cache *c, const void *key, size_t klen, int64_t exptime,
              struct cache_value *out)
{
	if (!out)
		return -EINVAL;
	return touch_common(c, key, klen, exptime, out);
}

/* ------------------------------------------------------------------------
 * Reads
 * ---------------------------------------------------------------------- */

void cache_prefetch(struct cache *c, const struct cache_key *keys, unsigned n)
{
	struct hk hk[CACHE_PREFETCH_MAX];
	if (n > CACHE_PREFETCH_MAX)
		n = CACHE_PREFETCH_MAX;
	/* Stage 1, no lock: a table being replaced at the same time only
	 * makes a prefetch miss (a prefetch never faults). */
	for (unsigned i = 0; i < n; i++) {
		hk_make(&hk[i], keys[i].key, keys[i].len);
		struct shard *sh = shard_of(c, &hk[i]);
		_Atomic uint64_t *slots = __atomic_load_n(&sh->slots, __ATOMIC_RELAXED);
		uint32_t nb = __atomic_load_n(&sh->nb, __ATOMIC_RELAXED);
		__builtin_prefetch(slots + (size_t)range32((uint32_t)hk[i].h, nb) * SLOTS_PER_BUCKET);
		__builtin_prefetch(slots + (size_t)range32((uint32_t)hk[i].h2, nb) * SLOTS_PER_BUCKET);
	}
	/* Stage 2, under the shard's read lock: the items the tags match. */
	for (unsigned i = 0; i < n; i++) {
		struct shard *sh = shard_of(c, &hk[i]);
		shard_rdlock(sh);
		uint32_t bs[2] = {bucket1(sh, &hk[i]), bucket2(sh, &hk[i])};
		for (int j = 0; j < 2; j++) {
			_Atomic uint64_t *b = bucket_at(sh, bs[j]);
			for (unsigned k = 0; k < SLOTS_PER_BUCKET; k++) {
				uint64_t v = atomic_load_explicit(&b[k], memory_order_relaxed);
				if (v != 0 && slot_tag(v) == hk[i].tag)
					__builtin_prefetch(c->segs[slot_seg(v)].data + slot_off(v));
			}
		}
		pthread_rwlock_unlock(&sh->lock);
	}
}

/* CLOCK-style count in the hash slot, saturating: a hot item stops
 * writing. Any lock. */
static inline void slot_hit(const struct loc *l)
{
	uint64_t v = l->slot;
	while (slot_freq(v) < FREQ_MAX &&
	       !atomic_compare_exchange_weak_explicit(
		       l->sp, &v, slot_with_freq(v, slot_freq(v) + 1),
		       memory_order_relaxed, memory_order_relaxed)) {
		if (slot_seg(v) != slot_seg(l->slot) || slot_off(v) != slot_off(l->slot))
			break;
	}
}

int cache_get(struct cache *c, const void *key, size_t klen,
              struct cache_value *out)
{
	if (!key_ok(key, klen) || !out)
		return -EINVAL;
	struct hk k;
	hk_make(&k, key, klen);
	int64_t now;
	struct shard *sh = lock_r(c, &k, &now);
	ctr_add(sh, CX_cmd_get, 1);
	struct loc l;
	int rc = -ENOENT;
	if (cache__lookup(c, sh, &k, key, klen, &l)) {
		if (item_dead(c, l.seg, &l.it, now)) {
			ctr_add(sh, seg_flushed(c, l.seg) ? CX_get_flushed : CX_get_expired, 1);
		} else {
			slot_hit(&l);
			item_bump(l.p, l.it.meta, l.it.atime, now);
			fill_value(out, &l);
			rc = 0;
		}
	}
	ctr_add(sh, rc == 0 ? CX_get_hits : CX_get_misses, 1);
	pthread_rwlock_unlock(&sh->lock);
	return rc;
}

/* ------------------------------------------------------------------------
 * Meta state: mg (report, win tokens, bump) and md I (invalidate)
 * ---------------------------------------------------------------------- */

/* Reports the state of the live item at l into *m, hands out the win
 * token when o's rules give it (exp: the expiry R compares), and bumps
 * the item. Under the shard's lock, shared or exclusive: every change is
 * an atomic byte operation, and of two callers racing for the token the
 * one whose OR finds it unset wins (the other reports Z). */
static void mget_state(const struct loc *l, const struct cache_mget_opts *o,
                       uint32_t exp, int64_t now, struct cache_meta *m)
{
	uint8_t meta = l->it.meta;
	m->fetched = meta & F_FETCHED;
	m->stale = meta & F_STALE;
	m->token_sent = meta & F_TOKEN;
	m->idle = item_idle(l->it.atime, now);
	if (o->peek)
		return;
	bool expired;
	bool win = !m->token_sent &&
	           (m->stale || (o->recache && exp != 0 &&
	                         exp < exp_abs(now, o->recache_exptime, &expired)));
	if (win) {
		if (item_set_state(l->p, F_TOKEN) & F_TOKEN)
			m->token_sent = true;
		else
			m->won = true;
	}
	if (!o->no_bump) {
		slot_hit(l);
		item_bump(l->p, meta, l->it.atime, now);
	}
}

/* mg with T or N: the shard's lock exclusive. */
static int mget_write(struct cache *c, const void *key, size_t klen,
                      const struct cache_mget_opts *o, struct cache_value *out,
                      struct cache_meta *m)
{
	struct hk k;
	hk_make(&k, key, klen);
	int64_t now;
	struct shard *sh = lock_w(c, &k, &now);
	struct loc l;
	int rc = 0;
	bool expired;
	if (cache__lookup_live(c, sh, &k, key, klen, now, &l)) {
		m->exp_before = l.it.exp;
		uint32_t exp = l.it.exp;
		bool gone = false;
		if (o->touch) {
			exp = exp_abs(now, o->exptime, &expired);
			gone = expired;
			if (!gone && (rc = set_exp(c, sh, &k, &l, exp, now)) != 0)
				goto out;
			if (!gone)
				(void)cache__lookup(c, sh, &k, key, klen, &l);
		}
		mget_state(&l, o, o->recache_after_touch ? exp : m->exp_before, now, m);
		fill_value(out, &l);
		/* A T in the past: answered, then gone (as memcached). */
		if (gone)
			remove_loc(sh, &l);
	} else if (o->vivify) {
		/* An empty item whose token this call holds; bumped (fetched)
		 * unless u, as memcached bumps the item it has just linked. */
		struct wreq w = {.key = key, .klen = (uint32_t)klen, .nparts = 1};
		w.parts[0] = (struct part){.mem = "", .len = 0};
		w.exp = exp_abs(now, o->vivify_exptime, &expired);
		w.state = (uint8_t)(F_TOKEN | (o->no_bump ? 0 : F_FETCHED));
		w.q = queue_for(c, sh, &k, NULL);
		if (put_item(c, sh, &k, &w, NULL, now, NULL) == 0 &&
		    cache__lookup(c, sh, &k, key, klen, &l)) {
			ctr_add(sh, CX_total_items, 1);
			m->created = m->won = true;
			fill_value(out, &l);
		} else {
			rc = -ENOENT; /* no memory: a miss, as in memcached */
		}
	} else {
		rc = -ENOENT;
	}
out:
	/* memcached counts an mg with T that finds (or creates) the item as
	 * a touch, any other as a get. */
	if (rc == -ENOENT) {
		ctr_add(sh, CX_cmd_get, 1);
		ctr_add(sh, CX_get_misses, 1);
	} else {
		ctr_add(sh, o->touch ? CX_cmd_touch : CX_cmd_get, 1);
		ctr_add(sh, o->touch ? CX_touch_hits : CX_get_hits, 1);
	}
	pthread_rwlock_unlock(&sh->lock);
	return rc;
}

int cache_mget(struct cache *c, const void *key, size_t klen,
               const struct cache_mget_opts *o, struct cache_value *out,
               struct cache_meta *m)
{
	if (!key_ok(key, klen) || !o || !out || !m)
		return -EINVAL;
	memset(m, 0, sizeof(*m));
	if ((o->touch || o->vivify) && !o->peek)
		return mget_write(c, key, klen, o, out, m);
	struct hk k;
	hk_make(&k, key, klen);
	int64_t now;
	struct shard *sh = lock_r(c, &k, &now);
	struct loc l;
	int rc = -ENOENT;
	if (cache__lookup(c, sh, &k, key, klen, &l)) {
		if (item_dead(c, l.seg, &l.it, now)) {
			if (!o->peek)
				ctr_add(sh, seg_flushed(c, l.seg) ? CX_get_flushed
				                                  : CX_get_expired, 1);
		} else {
			m->exp_before = l.it.exp;
			mget_state(&l, o, l.it.exp, now, m);
			fill_value(out, &l);
			rc = 0;
		}
	}
	if (!o->peek) {
		ctr_add(sh, CX_cmd_get, 1);
		ctr_add(sh, rc == 0 ? CX_get_hits : CX_get_misses, 1);
	}
	pthread_rwlock_unlock(&sh->lock);
	return rc;
}

int cache_invalidate(struct cache *c, const void *key, size_t klen,
                     uint64_t cas, bool set_exp, int64_t exptime)
{
	if (!key_ok(key, klen))
		return -EINVAL;
	struct hk k;
	hk_make(&k, key, klen);
	int64_t now;
	struct shard *sh = lock_w(c, &k, &now);
	struct loc old;
	int rc;
	if (!cache__lookup_live(c, sh, &k, key, klen, now, &old)) {
		ctr_add(sh, CX_delete_misses, 1);
		rc = -ENOENT;
	} else if (cas && item_cas(old.seg, old.off, &old.it) != cas) {
		ctr_add(sh, CX_delete_misses, 1); /* as memcached's md */
		rc = -EEXIST;
	} else {
		/* A new version (memcached bumps the CAS): same value and
		 * flags, stale, no token out, fetched and accessed as before. */
		bool expired;
		struct wreq w = {
			.key = key,
			.klen = (uint32_t)klen,
			.nparts = 1,
			.vlen = old.it.vlen,
			.flags = old.it.flags,
			.exp = set_exp ? exp_abs(now, exptime, &expired) : old.it.exp,
			.q = old.seg->q,
			.freq = slot_freq(old.slot),
			.state = (uint8_t)(F_STALE | (old.it.meta & F_FETCHED)),
			.has_atime = true,
			.atime = old.it.atime,
		};
		w.parts[0] = (struct part){.mem = old.p + old.it.hdr + old.it.klen,
		                           .len = old.it.vlen};
		rc = put_item(c, sh, &k, &w, &old, now, NULL);
	}
	pthread_rwlock_unlock(&sh->lock);
	return rc;
}

/* ------------------------------------------------------------------------
 * Flush
 * ---------------------------------------------------------------------- */

/* Holding every shard's writer lock orders the flush with every write
 * (memcached's order: an item stored before the flush is gone after it, one
 * stored after it stays): no SET is half done, and no eviction is moving
 * live items of a segment that is about to be flushed into one that is not. */
void cache__flush_now(struct cache *c)
{
	for (unsigned i = 0; i < c->nshards; i++)
		shard_wrlock(&c->shards[i]);
	atomic_store(&c->flush_seq, atomic_load(&c->seq) - 1);
	for (unsigned i = c->nshards; i-- > 0;)
		pthread_rwlock_unlock(&c->shards[i].lock);
}

int cache_flush_all(struct cache *c, int64_t delay)
{
	int64_t now = clock_now(c);
	ctr_add(&c->shards[0], CX_cmd_flush, 1);
	if (delay > 0) {
		int64_t at = delay <= CACHE_REALTIME_MAXDELTA ? now + delay : delay;
		atomic_store_explicit(&c->flush_at, at, memory_order_release);
		flush_check(c, now);
		return 0;
	}
	atomic_store(&c->flush_at, 0);
	cache__flush_now(c);
	return 0;
}
