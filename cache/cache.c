/*
 * The store: shards, their hash tables, segments, S3-FIFO eviction over
 * segments, TTL and flush, and every memcached operation.
 *
 * Item layout inside a segment (byte aligned, no padding):
 *
 *   meta   1 byte   0x80 | F_FLAGS | F_EXP | F_CAS
 *   klen   1 byte
 *   vlen   varint (LEB128, 1..4 bytes)
 *   flags  4 bytes  if F_FLAGS (flags != 0)
 *   exp    4 bytes  if F_EXP   (absolute unix time, 0 = never)
 *   cas    8 bytes  if F_CAS   (only items relocated or rewritten by touch)
 *   key, value
 *
 * An item's CAS is implicit: (segment seq << 22) | offset, unique because
 * every write appends at a fresh position and every segment reuse takes a
 * fresh seq. An item moved by eviction or touch keeps its CAS in F_CAS.
 *
 * Hash slot (64 bits): tag 16 | freq 2 | segment id 24 | offset 22.
 * A bucket is 8 slots (64 bytes); a key may live in either of two buckets
 * (two choices) and goes to the emptier one. 0 is an empty slot (segment
 * ids start at 1).
 *
 * Locking: a shard's rwlock protects its table, its segments and their
 * bytes; readers take it shared and only bump slot frequencies (atomic
 * CAS) and counters (atomic adds). The store's free_lock protects the free
 * and empty segment lists. A shard may try-lock another shard (never
 * blocking while holding its own) to evict from it.
 */
#include "cache/cache_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define F_ITEM 0x80u
#define F_FLAGS 0x01u
#define F_EXP 0x02u
#define F_CAS 0x04u

#define OFF_BITS 22
#define SEG_BITS 24
#define MAX_SEG_CAP ((1u << OFF_BITS) - 1)
#define MAX_SEGS ((1u << SEG_BITS) - 1)
#define ITEM_HDR_MAX (1 + 1 + 4 + 4 + 4 + 8)
#define NEVER UINT32_MAX
#define SLOTS_PER_BUCKET 8u
/* Grow a shard's table above this load (items / slots), by GROW_FACTOR. */
#define GROW_LOAD_NUM 9
#define GROW_LOAD_DEN 10
#define S_SHARE_PCT 10 /* S3-FIFO: the small queue's share of segments */
#define FREQ_MAX 3u
#define RELOC_SEGS 4 /* relocation budget per segment allocation */
#define RELOC_MAX 32 /* ... carried over up to this */

/* ------------------------------------------------------------------------
 * Counters
 * ---------------------------------------------------------------------- */

const struct cache_counter_desc cache_counters[] = {
#define CACHE_X_DESC(n, kind, help) {#n, CACHE_##kind, help, offsetof(struct cache_stats, n)},
	CACHE_COUNTERS(CACHE_X_DESC)
#undef CACHE_X_DESC
};
const size_t cache_ncounters = sizeof(cache_counters) / sizeof(cache_counters[0]);

static inline void ctr_add(struct shard *sh, int i, uint64_t n)
{
	atomic_fetch_add_explicit(&sh->ctr[i], n, memory_order_relaxed);
}

static inline void ctr_sub(struct shard *sh, int i, uint64_t n)
{
	atomic_fetch_sub_explicit(&sh->ctr[i], n, memory_order_relaxed);
}

/* ------------------------------------------------------------------------
 * Shard locks
 *
 * Critical sections are a few hundred nanoseconds, so a blocked thread is
 * better off spinning briefly than sleeping: glibc's rwlock goes straight to
 * a futex wait, and with two loops on two cores that cost one futex wait and
 * one wake per collision (measured with perf's syscalls:sys_enter_futex on
 * workload (b) of docs/performance.md: 0.043 futex calls per request before
 * this). Try for SPIN_TRIES rounds, then block.
 * ---------------------------------------------------------------------- */

#define SPIN_TRIES 64

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static inline void shard_lock(struct shard *sh, bool write)
{
	for (int i = 0; i < SPIN_TRIES; i++) {
		if ((write ? pthread_rwlock_trywrlock : pthread_rwlock_tryrdlock)(&sh->lock) == 0)
			return;
		cpu_relax();
	}
	(write ? pthread_rwlock_wrlock : pthread_rwlock_rdlock)(&sh->lock);
}

static inline void shard_rdlock(struct shard *sh) { shard_lock(sh, false); }
static inline void shard_wrlock(struct shard *sh) { shard_lock(sh, true); }

/* ------------------------------------------------------------------------
 * Hashing
 * ---------------------------------------------------------------------- */

static inline uint64_t mix(uint64_t a, uint64_t b)
{
	__uint128_t r = (__uint128_t)a * b;
	return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline uint64_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

#define K0 0xa0761d6478bd642full
#define K1 0xe7037ed1a0b428dbull
#define K2 0x8ebc6af09c88c6e3ull

/* A wyhash-style 64-bit hash; keys are at most 250 bytes. */
static uint64_t hash_key(const void *key, size_t n)
{
	const uint8_t *p = key;
	uint64_t seed = K0 ^ n;
	while (n > 16) {
		seed = mix(rd64(p) ^ K1, rd64(p + 8) ^ seed);
		p += 16;
		n -= 16;
	}
	uint64_t a = 0, b = 0;
	if (n >= 8) {
		a = rd64(p);
		b = rd64(p + n - 8);
	} else if (n >= 4) {
		a = rd32(p);
		b = rd32(p + n - 4);
	} else if (n > 0) {
		a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
	}
	return mix(K2 ^ seed, mix(a ^ K1, b ^ seed));
}

static inline uint32_t range32(uint32_t x, uint32_t n)
{
	return (uint32_t)(((uint64_t)x * n) >> 32);
}

/* Everything a key's hash decides. */
struct hk {
	uint64_t h, h2;
	uint16_t tag;
};

static inline void hk_make(struct hk *k, const void *key, size_t klen)
{
	k->h = hash_key(key, klen);
	k->h2 = mix(k->h ^ K2, K1);
	k->tag = (uint16_t)(k->h2 >> 48);
}

static inline struct shard *shard_of(struct cache *c, const struct hk *k)
{
	uint32_t hi = (uint32_t)(k->h >> 32);
	return &c->shards[c->nshards > 1 ? hi >> c->shard_shift : 0];
}

static inline uint32_t bucket1(const struct shard *sh, const struct hk *k)
{
	return range32((uint32_t)k->h, sh->nb);
}

static inline uint32_t bucket2(const struct shard *sh, const struct hk *k)
{
	return range32((uint32_t)k->h2, sh->nb);
}

/* ------------------------------------------------------------------------
 * Slots and items
 * ---------------------------------------------------------------------- */

static inline uint64_t slot_make(uint16_t tag, unsigned freq, uint32_t seg,
                                 uint32_t off)
{
	return ((uint64_t)tag << 48) | ((uint64_t)freq << 46) |
	       ((uint64_t)seg << OFF_BITS) | off;
}

static inline uint32_t slot_off(uint64_t v)
{
	return (uint32_t)(v & ((1u << OFF_BITS) - 1));
}

static inline uint32_t slot_seg(uint64_t v)
{
	return (uint32_t)((v >> OFF_BITS) & ((1u << SEG_BITS) - 1));
}

static inline unsigned slot_freq(uint64_t v)
{
	return (unsigned)((v >> 46) & 3u);
}

static inline uint16_t slot_tag(uint64_t v)
{
	return (uint16_t)(v >> 48);
}

static inline uint64_t slot_with_freq(uint64_t v, unsigned f)
{
	return (v & ~((uint64_t)3 << 46)) | ((uint64_t)f << 46);
}

static inline _Atomic uint64_t *bucket_at(struct shard *sh, uint32_t b)
{
	return sh->slots + (size_t)b * SLOTS_PER_BUCKET;
}

struct itm {
	uint8_t meta;
	uint32_t klen, vlen, flags, exp, hdr, size;
	uint64_t cas; /* explicit (F_CAS) or 0 */
};

static inline void itm_parse(const char *p, struct itm *it)
{
	const uint8_t *u = (const uint8_t *)p;
	it->meta = u[0];
	it->klen = u[1];
	uint32_t v = 0, i = 2;
	unsigned s = 0;
	for (;;) {
		uint8_t b = u[i++];
		v |= (uint32_t)(b & 0x7fu) << s;
		if (!(b & 0x80u))
			break;
		s += 7;
	}
	it->vlen = v;
	it->flags = 0;
	it->exp = 0;
	it->cas = 0;
	if (it->meta & F_FLAGS) {
		memcpy(&it->flags, u + i, 4);
		i += 4;
	}
	if (it->meta & F_EXP) {
		memcpy(&it->exp, u + i, 4);
		i += 4;
	}
	if (it->meta & F_CAS) {
		memcpy(&it->cas, u + i, 8);
		i += 8;
	}
	it->hdr = i;
	it->size = i + it->klen + it->vlen;
}

static inline uint32_t varint_len(uint32_t v)
{
	uint32_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static inline uint32_t hdr_size(uint8_t meta, uint32_t vlen)
{
	return 2 + varint_len(vlen) + (meta & F_FLAGS ? 4 : 0) +
	       (meta & F_EXP ? 4 : 0) + (meta & F_CAS ? 8 : 0);
}

/* Writes the header; returns its size. */
static uint32_t hdr_write(char *p, uint8_t meta, uint32_t klen, uint32_t vlen,
                          uint32_t flags, uint32_t exp, uint64_t cas)
{
	uint8_t *u = (uint8_t *)p;
	uint32_t i = 2;
	u[0] = meta;
	u[1] = (uint8_t)klen;
	uint32_t v = vlen;
	while (v >= 0x80) {
		u[i++] = (uint8_t)(v | 0x80u);
		v >>= 7;
	}
	u[i++] = (uint8_t)v;
	if (meta & F_FLAGS) {
		memcpy(u + i, &flags, 4);
		i += 4;
	}
	if (meta & F_EXP) {
		memcpy(u + i, &exp, 4);
		i += 4;
	}
	if (meta & F_CAS) {
		memcpy(u + i, &cas, 8);
		i += 8;
	}
	return i;
}

static inline uint64_t item_cas(const struct seg *s, uint32_t off,
                                const struct itm *it)
{
	return (it->meta & F_CAS) ? it->cas : (s->seq << OFF_BITS) | off;
}

/* ------------------------------------------------------------------------
 * Time and flush
 * ---------------------------------------------------------------------- */

static int64_t default_clock(void *arg)
{
	(void)arg;
	return (int64_t)time(NULL);
}

int64_t cache_now(struct cache *c)
{
	return c->clock(c->clock_arg);
}

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

static unsigned ttl_class(uint32_t exp, int64_t now)
{
	if (exp == 0)
		return 0;
	int64_t rem = (int64_t)exp - now;
	if (rem < 1)
		rem = 1;
	unsigned lg = 63u - (unsigned)__builtin_clzll((unsigned long long)rem);
	unsigned cls = 1 + lg / 3;
	return cls < NTTL ? cls : NTTL - 1;
}

/* Flushes every item stored so far: the segments opened up to now are
 * dead. Holding every shard's writer lock orders the flush with every write
 * (memcached's order: an item stored before the flush is gone after it, one
 * stored after it stays): no SET is half done, and no eviction is moving
 * live items of a segment that is about to be flushed into one that is not.
 * Any thread, holding no shard lock. */
static void flush_now(struct cache *c)
{
	for (unsigned i = 0; i < c->nshards; i++)
		shard_wrlock(&c->shards[i]);
	atomic_store(&c->flush_seq, atomic_load(&c->seq) - 1);
	for (unsigned i = c->nshards; i-- > 0;)
		pthread_rwlock_unlock(&c->shards[i].lock);
}

/* Runs a due delayed flush. Any thread, holding no shard lock. */
static void flush_check(struct cache *c, int64_t now)
{
	int64_t at = atomic_load_explicit(&c->flush_at, memory_order_acquire);
	if (at == 0 || now < at)
		return;
	if (atomic_compare_exchange_strong(&c->flush_at, &at, 0))
		flush_now(c);
}

static inline bool seg_flushed(struct cache *c, const struct seg *s)
{
	return s->seq <= atomic_load_explicit(&c->flush_seq, memory_order_acquire);
}

static inline bool item_dead(struct cache *c, const struct seg *s,
                             const struct itm *it, int64_t now)
{
	return (it->exp != 0 && (int64_t)it->exp <= now) || seg_flushed(c, s);
}

/* ------------------------------------------------------------------------
 * Lookup and slot maintenance (callers hold the shard lock)
 * ---------------------------------------------------------------------- */

struct loc {
	_Atomic uint64_t *sp;
	uint64_t slot;
	struct seg *seg;
	uint32_t off;
	char *p;
	struct itm it;
};

static bool lookup(struct cache *c, struct shard *sh, const struct hk *k,
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

/* Finds the slot that points at (segment id, off) for the item at p. */
static _Atomic uint64_t *find_slot_of(struct shard *sh, uint32_t id,
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

/* Accounting for an item that stops being live. */
static void unaccount(struct shard *sh, struct seg *s, const struct itm *it)
{
	s->live--;
	s->live_bytes -= it->size;
	sh->items--;
	ctr_sub(sh, CX_curr_items, 1);
	ctr_sub(sh, CX_bytes_payload, it->klen + it->vlen);
	ctr_sub(sh, CX_bytes_items, it->size);
}

static void account(struct shard *sh, struct seg *s, const struct itm *it)
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
}

static void remove_loc(struct shard *sh, struct loc *l)
{
	atomic_store_explicit(l->sp, 0, memory_order_relaxed);
	unaccount(sh, l->seg, &l->it);
}

/* Writer lookup: an expired or flushed item is removed and not found. */
static bool lookup_live(struct cache *c, struct shard *sh, const struct hk *k,
                        const void *key, size_t klen, int64_t now,
                        struct loc *l)
{
	if (!lookup(c, sh, k, key, klen, l))
		return false;
	if (item_dead(c, l->seg, &l->it, now)) {
		remove_loc(sh, l);
		ctr_add(sh, CX_expired_reclaimed, 1);
		return false;
	}
	return true;
}

static inline void ghost_put(struct shard *sh, const struct hk *k)
{
	if (sh->nghost)
		sh->ghost[range32((uint32_t)(k->h2 >> 16), sh->nghost)] =
			(uint32_t)k->h | 1u;
}

/* True (and forgets it) when the key was recently evicted from S. */
static inline bool ghost_take(struct shard *sh, const struct hk *k)
{
	if (!sh->nghost)
		return false;
	uint32_t *g = &sh->ghost[range32((uint32_t)(k->h2 >> 16), sh->nghost)];
	if (*g != ((uint32_t)k->h | 1u))
		return false;
	*g = 0;
	return true;
}

/* ------------------------------------------------------------------------
 * Segments
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

static void fifo_unlink(struct cache *c, struct fifo *f, int32_t id)
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

/* Gives a segment that no slot points at back to the store: kept (with
 * its block) on the free list when only the store references it and
 * `keep`, else its block is released (readers may still hold it; the pool
 * gets the memory back at their last unref). */
static void seg_release(struct cache *c, struct shard *sh, int32_t id, bool keep)
{
	struct seg *s = &c->segs[id];
	sh->qsegs[s->q]--;
	ctr_sub(sh, CX_segments, 1);
	s->open = 0;
	pthread_mutex_lock(&c->free_lock);
	if (keep && bp_block_refs(s->blk) == 1) {
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

/* A segment entry with a block, from the free list or the pool; no
 * eviction. NIL when neither has one. New items (reloc false) may not take
 * the last RESERVE free segments: those are for the items an eviction
 * keeps (relocations), which would otherwise find no room exactly when
 * memory is full. One did for one shard; with more, evictions in two
 * shards at once (one per loop thread here) ran it out, so three — not one
 * per shard: geecached runs 16 shards at -m 512, and 31 reserved 2 MiB
 * segments were 62 MiB its items could not use. The first pool block
 * obtained while the reserve is short refills it. */
#define RESERVE(c) ((c)->nshards > 1 ? 3u : 1u)

static int32_t seg_take(struct cache *c, bool reloc)
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

/* Puts an unopened segment with its block back on the free list. */
static void free_push(struct cache *c, int32_t id)
{
	pthread_mutex_lock(&c->free_lock);
	c->segs[id].next = c->free_head;
	c->free_head = id;
	c->nfree++;
	pthread_mutex_unlock(&c->free_lock);
}

/* Drops every segment on the free list back to the pool (so that a huge
 * block's charge returns). Returns how many. */
static unsigned free_list_drain(struct cache *c)
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

static void seg_open(struct cache *c, struct shard *sh, int32_t id, int q,
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
	ctr_add(sh, CX_segments, 1);
}

static void seg_seal(struct cache *c, struct shard *sh, int32_t id)
{
	struct seg *s = &c->segs[id];
	sh->open[s->q][s->ttlc] = NIL;
	s->open = 0;
	fifo_push(c, &sh->q[s->q], id);
}

static int32_t bump_alloc(struct cache *c, struct shard *sh, int q,
                          unsigned ttlc, uint32_t size, uint32_t *off);

/* How an eviction treats a live item. */
enum fate { DROP, KEEP };

/* Removes every live item of segment id (owned by sh and unlinked from its
 * queue), relocating the ones the policy keeps when `retain` — all of them
 * when `clean` (see pick_clean), into the victim's own queue with their
 * counts — and releases the segment. */
static void seg_evict(struct cache *c, struct shard *sh, int32_t id,
                      bool retain, bool clean, int64_t now, bool keep_block)
{
	struct seg *s = &c->segs[id];
	uint32_t off = 0;
	bool flushed = seg_flushed(c, s);
	while (off < s->used && s->live > 0) {
		char *p = s->data + off;
		struct itm it;
		itm_parse(p, &it);
		uint32_t ioff = off;
		off += it.size;
		_Atomic uint64_t *sp = find_slot_of(sh, (uint32_t)id, ioff, p + it.hdr,
		                                    it.klen);
		if (!sp)
			continue; /* dead: replaced or deleted */
		uint64_t v = atomic_load_explicit(sp, memory_order_relaxed);
		if (flushed || (it.exp != 0 && (int64_t)it.exp <= now)) {
			atomic_store_explicit(sp, 0, memory_order_relaxed);
			unaccount(sh, s, &it);
			ctr_add(sh, CX_expired_reclaimed, 1);
			continue;
		}
		unsigned f = slot_freq(v);
		enum fate fate = DROP;
		if (c->policy == CACHE_S3FIFO && (f > 0 || clean))
			fate = KEEP;
		if (fate == KEEP) {
			uint8_t meta = (uint8_t)(it.meta | F_CAS);
			uint32_t hs = hdr_size(meta, it.vlen);
			uint32_t nsize = hs + it.klen + it.vlen;
			uint32_t noff;
			int32_t nid = NIL;
			if (retain && nsize <= sh->reloc_budget)
				nid = bump_alloc(c, sh, clean ? s->q : Q_M,
				                 ttl_class(it.exp, now), nsize, &noff);
			if (nid != NIL) {
				struct seg *ns = &c->segs[nid];
				char *d = ns->data + noff;
				uint64_t cas = item_cas(s, ioff, &it);
				hdr_write(d, meta, it.klen, it.vlen, it.flags, it.exp, cas);
				memcpy(d + hs, p + it.hdr, it.klen + it.vlen);
				sh->reloc_budget -= nsize;
				unaccount(sh, s, &it);
				struct itm nit = it;
				nit.meta = meta;
				nit.hdr = hs;
				nit.size = nsize;
				nit.cas = cas;
				account(sh, ns, &nit);
				/* S -> M resets the count; M -> M spends one; a
				 * cleaned item keeps its queue and count. */
				unsigned nf = clean ? f : s->q == Q_S ? 0 : f - 1;
				atomic_store_explicit(sp,
				                      slot_make(slot_tag(v), nf, (uint32_t)nid, noff),
				                      memory_order_relaxed);
				ctr_add(sh, CX_relocations, 1);
				continue;
			}
		}
		atomic_store_explicit(sp, 0, memory_order_relaxed);
		unaccount(sh, s, &it);
		ctr_add(sh, CX_evictions, 1);
		if (c->policy == CACHE_S3FIFO && s->q == Q_S) {
			struct hk k;
			hk_make(&k, p + it.hdr, it.klen);
			ghost_put(sh, &k);
		}
	}
	seg_release(c, sh, id, keep_block);
}

/* Cleaning. memcached frees an overwritten item's memory at once; a log
 * keeps the old version until its segment goes, so under overwrites a
 * store with room for all of its data fills with garbage, and S3-FIFO,
 * evicting the oldest segment (still mostly live then), dropped live items
 * to make room the data did not need (docs/cache.md, "Cleaning"). So while
 * less than CLEAN_PCT of the bytes of sh's segments are live items, an
 * eviction takes the segment with the fewest live bytes among the
 * CLEAN_SCAN oldest of each queue instead (a greedy cleaner, as in LFS)
 * and keeps every item in it. It must be at most CLEAN_PCT live, so each
 * cleaning frees at least a tenth of a segment. Returns NIL when sh holds
 * too little garbage, or none of its old segments does. */
#define CLEAN_PCT 90
#define CLEAN_SCAN 64
static int32_t pick_clean(struct cache *c, struct shard *sh)
{
	uint64_t live = atomic_load_explicit(&sh->ctr[CX_bytes_items], memory_order_relaxed);
	uint64_t held = (uint64_t)(sh->qsegs[Q_S] + sh->qsegs[Q_M]) * c->seg_cap;
	if (live * 100 >= held * CLEAN_PCT)
		return NIL;
	uint64_t best_live = (uint64_t)c->seg_cap * CLEAN_PCT / 100 + 1;
	int32_t best = NIL;
	for (int q = 0; q < NQ; q++) {
		int32_t id = sh->q[q].tail;
		for (unsigned n = 0; id != NIL && n < CLEAN_SCAN; n++, id = c->segs[id].prev) {
			if (c->segs[id].live_bytes < best_live) {
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
	if (c->policy != CACHE_S3FIFO)
		return false;
	int32_t id = pick_clean(c, sh);
	if (id == NIL)
		return false;
	budget_add(c, sh, lend);
	fifo_unlink(c, &sh->q[c->segs[id].q], id);
	seg_evict(c, sh, id, true, true, now, true);
	ctr_add(sh, CX_segs_cleaned, 1);
	return true;
}

/* Picks and evicts one sealed segment of sh the S3-FIFO (or FIFO) way.
 * Returns false when sh has none. */
static bool evict_one(struct cache *c, struct shard *sh, int64_t now,
                      bool keep_block)
{
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
	fifo_unlink(c, &sh->q[q], id);
	seg_evict(c, sh, id, c->policy == CACHE_S3FIFO, false, now, keep_block);
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
		                  : evict_one(c, o, now, true);
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
		int32_t id = seg_take(c, false);
		if (id != NIL)
			return id;
		/* Garbage before items: a segment any shard can clean comes
		 * before one whose unkept items would be dropped (segments
		 * are one pool for all shards, so the shard that needs one is
		 * not always the one holding the garbage). */
		if (clean_one(c, sh, now, 0) || reclaim_other(c, me, now, true, &lent))
			continue;
		if (evict_one(c, sh, now, true) || reclaim_other(c, me, now, false, &lent))
			continue;
		return seg_take(c, true); /* last resort: the reserve */
	}
}

/* Reserves size bytes in the open segment of (q, ttlc) when they fit
 * (the segment id and *off); otherwise seals that segment (if any) and
 * returns NIL for the caller to open another. */
static int32_t open_fit(struct cache *c, struct shard *sh, int q,
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
	seg_seal(c, sh, id);
	*sealed = true;
	return NIL;
}

/* Reserves size bytes in the open segment of (q, ttlc), sealing it and
 * opening a new one from seg_take when it is full; never evicts. Returns
 * the segment id and *off, or NIL. */
static int32_t bump_alloc(struct cache *c, struct shard *sh, int q,
                          unsigned ttlc, uint32_t size, uint32_t *off)
{
	bool sealed;
	int32_t id = open_fit(c, sh, q, ttlc, size, off, &sealed);
	if (id != NIL)
		return id;
	id = seg_take(c, true);
	if (id == NIL)
		return NIL;
	seg_open(c, sh, id, q, ttlc);
	sh->open[q][ttlc] = id;
	struct seg *s = &c->segs[id];
	*off = 0;
	s->used = size;
	return id;
}

static unsigned shard_sweep(struct cache *c, struct shard *sh, int64_t now);

/* Reserves size bytes for a new item: the open segment, else a new
 * segment (sweeping expired ones, then evicting). NIL = -ENOMEM. */
static int32_t item_alloc(struct cache *c, struct shard *sh, int q,
                          unsigned ttlc, uint32_t size, int64_t now,
                          uint32_t *off)
{
	bool sealed;
	int32_t id = open_fit(c, sh, q, ttlc, size, off, &sealed);
	if (id != NIL)
		return id;
	if (sealed)
		shard_sweep(c, sh, now);
	id = seg_get(c, sh, now);
	if (id == NIL)
		return NIL;
	/* The eviction may have opened a segment of this queue and class for
	 * the items it kept: fill that one first, and give ours back. */
	int32_t cur = sh->open[q][ttlc];
	if (cur != NIL) {
		struct seg *s = &c->segs[cur];
		if (!seg_flushed(c, s) && s->cap - s->used >= size) {
			free_push(c, id);
			*off = s->used;
			s->used += size;
			return cur;
		}
		seg_seal(c, sh, cur);
	}
	seg_open(c, sh, id, q, ttlc);
	sh->open[q][ttlc] = id;
	*off = 0;
	c->segs[id].used = size;
	return id;
}

/* Frees the segments of sh whose items are all expired or flushed: a walk
 * over segment headers, plus one pass over the items of each segment it
 * frees (to clear their slots). Flushed open segments go too. */
static unsigned shard_sweep(struct cache *c, struct shard *sh, int64_t now)
{
	unsigned n = 0;
	for (int q = 0; q < NQ; q++) {
		int32_t id = sh->q[q].tail;
		while (id != NIL) {
			struct seg *s = &c->segs[id];
			int32_t prev = s->prev;
			bool dead = seg_flushed(c, s) || s->live == 0 ||
			            (s->max_exp != NEVER && (int64_t)s->max_exp <= now);
			if (dead) {
				fifo_unlink(c, &sh->q[q], id);
				seg_evict(c, sh, id, false, false, now, true);
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
			if (seg_flushed(c, s) ||
			    (s->max_exp != NEVER && (int64_t)s->max_exp <= now)) {
				sh->open[q][t] = NIL;
				seg_evict(c, sh, id, false, false, now, true);
				n++;
			}
		}
	}
	return n;
}

int cache_expire(struct cache *c)
{
	int64_t now = cache_now(c);
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
 * Hash tables
 * ---------------------------------------------------------------------- */

static size_t table_bytes(uint32_t nb)
{
	return (size_t)nb * 64 + 64 + (size_t)nb * 2 * sizeof(uint32_t);
}

static struct bp_block *table_alloc(struct cache *c, uint32_t nb,
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

/* Puts slot v (for hash k) into an empty place of its buckets; false when
 * both are full. */
static bool place(struct shard *sh, const struct hk *k, uint64_t v)
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

/* Both buckets full: move one resident to its other bucket if that has
 * room (one level of cuckoo), else evict the resident in the oldest
 * segment. Then places v. */
static void place_hard(struct cache *c, struct shard *sh, const struct hk *k,
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
	unaccount(sh, s, &it);
	ctr_add(sh, CX_table_evictions, 1);
	atomic_store_explicit(oldest, v, memory_order_relaxed);
}

/* Grows sh's table by half when its load passes GROW_LOAD. The new table
 * comes from the pool; when the pool is full and segments are huge blocks
 * (whose release returns their charge), free and then evicted segments
 * are released to make room. Failing that the table stays (inserts then
 * evict within buckets). */
static void table_maybe_grow(struct cache *c, struct shard *sh, int64_t now)
{
	uint64_t slots = (uint64_t)sh->nb * SLOTS_PER_BUCKET;
	if ((sh->items + 1) * GROW_LOAD_DEN <= slots * GROW_LOAD_NUM ||
	    sh->items < sh->grow_retry)
		return;
	uint64_t nb64 = (uint64_t)sh->nb + sh->nb / 2 + 1;
	if (nb64 > UINT32_MAX / 2)
		return;
	uint32_t nb = (uint32_t)nb64;
	_Atomic uint64_t *ns;
	uint32_t *ng;
	struct bp_block *blk = table_alloc(c, nb, &ns, &ng);
	if (!blk && c->seg_huge) {
		free_list_drain(c);
		blk = table_alloc(c, nb, &ns, &ng);
		uint64_t saved = sh->reloc_budget;
		sh->reloc_budget = 0; /* the point is to free memory */
		while (!blk && evict_one(c, sh, now, false))
			blk = table_alloc(c, nb, &ns, &ng);
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
	for (size_t i = 0; i < (size_t)onb * SLOTS_PER_BUCKET; i++) {
		uint64_t v = atomic_load_explicit(&old[i], memory_order_relaxed);
		if (!v)
			continue;
		struct seg *s = &c->segs[slot_seg(v)];
		const char *p = s->data + slot_off(v);
		struct itm it;
		itm_parse(p, &it);
		struct hk k;
		hk_make(&k, p + it.hdr, it.klen);
		if (!place(sh, &k, v))
			place_hard(c, sh, &k, v);
	}
	bp_block_unref(oblk);
	ctr_add(sh, CX_hash_slots, ((uint64_t)nb - onb) * SLOTS_PER_BUCKET);
	ctr_add(sh, CX_table_grows, 1);
}

/* ------------------------------------------------------------------------
 * Writing items
 * ---------------------------------------------------------------------- */

/* Where a new value's bytes come from: up to three parts, each caller
 * memory, a chain range or iovecs. */
struct part {
	const char *mem;
	struct bp_chain *chain;
	const struct iovec *iov;
	int iovcnt;
	size_t off, len;
};

static void part_copy(char *dst, const struct part *pt)
{
	if (pt->mem) {
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
};

/* Writes a new version of the key: allocates (perhaps evicting), copies,
 * then replaces whatever version the table holds. `old` (may be NULL) is
 * the current version, whose bytes the parts may reference: its segment
 * is pinned across the allocation. Returns 0 or -ENOMEM. */
static int put_item(struct cache *c, struct shard *sh, const struct hk *k,
                    const struct wreq *w, const struct loc *old, int64_t now,
                    uint64_t *cas_out)
{
	uint8_t meta = (uint8_t)(F_ITEM | (w->flags ? F_FLAGS : 0) |
	                         (w->exp ? F_EXP : 0) | (w->keep_cas ? F_CAS : 0));
	uint32_t hs = hdr_size(meta, w->vlen);
	uint32_t size = hs + w->klen + w->vlen;
	struct bp_block *pin = NULL;
	if (old) {
		pin = old->seg->blk;
		bp_block_ref(pin);
	}
	table_maybe_grow(c, sh, now);
	uint32_t off;
	int32_t id = item_alloc(c, sh, w->q, ttl_class(w->exp, now), size, now, &off);
	if (id == NIL) {
		bp_block_unref(pin);
		ctr_add(sh, CX_enomem, 1);
		return -ENOMEM;
	}
	struct seg *s = &c->segs[id];
	char *d = s->data + off;
	hdr_write(d, meta, w->klen, w->vlen, w->flags, w->exp, w->keep_cas);
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
	if (lookup(c, sh, k, d + hs, w->klen, &cur))
		remove_loc(sh, &cur);
	struct itm it;
	itm_parse(d, &it);
	account(sh, s, &it);
	uint64_t slot = slot_make(k->tag, w->freq, (uint32_t)id, off);
	if (!place(sh, k, slot))
		place_hard(c, sh, k, slot);
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

static struct shard *lock_w(struct cache *c, const struct hk *k, int64_t *now)
{
	*now = cache_now(c);
	flush_check(c, *now);
	struct shard *sh = shard_of(c, k);
	shard_wrlock(sh);
	return sh;
}

static const int mode_ctr[] = {
	[CACHE_SET] = CX_cmd_set,         [CACHE_ADD] = CX_cmd_add,
	[CACHE_REPLACE] = CX_cmd_replace, [CACHE_APPEND] = CX_cmd_append,
	[CACHE_PREPEND] = CX_cmd_append,  [CACHE_CAS] = CX_cmd_cas,
};

static int store_common(struct cache *c, enum cache_mode mode, const void *key,
                        size_t klen, const struct part *src, uint32_t flags,
                        int64_t exptime, uint64_t cas, uint64_t *cas_out)
{
	if (!key_ok(key, klen) || (unsigned)mode > CACHE_CAS ||
	    (mode == CACHE_CAS && cas == 0))
		return -EINVAL;
	struct hk k;
	hk_make(&k, key, klen);
	int64_t now;
	struct shard *sh = lock_w(c, &k, &now);
	ctr_add(sh, mode_ctr[mode], 1);
	struct loc old;
	bool found = lookup_live(c, sh, &k, key, klen, now, &old);
	int rc = 0;
	if (mode == CACHE_ADD) {
		if (found) {
			rc = -EEXIST;
			goto out;
		}
	} else if (mode != CACHE_SET || cas) {
		if (!found) {
			rc = (mode == CACHE_APPEND || mode == CACHE_PREPEND) ? -ENOTSUP
			                                                      : -ENOENT;
			goto out;
		}
		if (cas && item_cas(old.seg, old.off, &old.it) != cas) {
			ctr_add(sh, CX_cas_mismatch, 1);
			rc = -EEXIST;
			goto out;
		}
	}
	struct wreq w = {.key = key, .klen = (uint32_t)klen, .flags = flags};
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
	uint64_t vlen = 0;
	for (int i = 0; i < w.nparts; i++)
		vlen += w.parts[i].len;
	if (klen + vlen > c->max_item) {
		rc = -E2BIG;
		goto out;
	}
	if (expired) { /* stored and gone at once */
		if (found)
			remove_loc(sh, &old);
		if (cas_out)
			*cas_out = 0;
		goto out;
	}
	w.vlen = (uint32_t)vlen;
	w.q = queue_for(c, sh, &k, found ? &old : NULL);
	w.freq = 0;
	rc = put_item(c, sh, &k, &w, found ? &old : NULL, now, cas_out);
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
	if (!lookup_live(c, sh, &k, key, klen, now, &l)) {
		rc = -ENOENT;
	} else if (cas && item_cas(l.seg, l.off, &l.it) != cas) {
		ctr_add(sh, CX_cas_mismatch, 1);
		rc = -EEXIST;
	} else {
		remove_loc(sh, &l);
	}
	pthread_rwlock_unlock(&sh->lock);
	return rc;
}

/* Parses a decimal value of 1..20 digits that fits 64 bits. */
static bool parse_u64(const char *p, uint32_t n, uint64_t *out)
{
	if (n == 0 || n > 20)
		return false;
	uint64_t v = 0;
	for (uint32_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(p[i] - '0');
		if (d > 9)
			return false;
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

static uint32_t fmt_u64(char *buf, uint64_t v)
{
	char t[24];
	uint32_t n = 0;
	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (uint32_t i = 0; i < n; i++)
		buf[i] = t[n - 1 - i];
	return n;
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
	bool found = lookup_live(c, sh, &k, key, klen, now, &old);
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
		if (!parse_u64(old.p + old.it.hdr + old.it.klen, old.it.vlen, &cur)) {
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
	w.vlen = fmt_u64(buf, nv);
	w.parts[0] = (struct part){.mem = buf, .len = w.vlen};
	if (expired) {
		rc = 0;
		if (cas_out)
			*cas_out = 0;
	} else {
		rc = put_item(c, sh, &k, &w, found ? &old : NULL, now, cas_out);
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
		uint32_t at = 2 + varint_len(l->it.vlen) + (l->it.meta & F_FLAGS ? 4 : 0);
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
	ctr_add(sh, CX_cmd_touch, 1);
	if (out)
		ctr_add(sh, CX_cmd_get, 1);
	struct loc l;
	int rc = 0;
	if (!lookup_live(c, sh, &k, key, klen, now, &l)) {
		rc = -ENOENT;
		goto out;
	}
	bool expired;
	uint32_t exp = exp_abs(now, exptime, &expired);
	if (expired) {
		remove_loc(sh, &l);
		rc = -ENOENT;
		goto out;
	}
	rc = set_exp(c, sh, &k, &l, exp, now);
	if (rc == 0 && out) {
		struct loc cur;
		if (lookup(c, sh, &k, key, klen, &cur))
			fill_value(out, &cur);
		else
			rc = -ENOENT;
	}
out:
	if (out)
		ctr_add(sh, rc == 0 ? CX_get_hits : CX_get_misses, 1);
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

int cache_get(struct cache *c, const void *key, size_t klen,
              struct cache_value *out)
{
	if (!key_ok(key, klen) || !out)
		return -EINVAL;
	struct hk k;
	hk_make(&k, key, klen);
	int64_t now = cache_now(c);
	flush_check(c, now);
	struct shard *sh = shard_of(c, &k);
	shard_rdlock(sh);
	ctr_add(sh, CX_cmd_get, 1);
	struct loc l;
	int rc = -ENOENT;
	if (lookup(c, sh, &k, key, klen, &l)) {
		if (item_dead(c, l.seg, &l.it, now)) {
			ctr_add(sh, CX_get_expired, 1);
		} else {
			/* CLOCK-style count, saturating: a hot item stops writing. */
			uint64_t v = l.slot;
			while (slot_freq(v) < FREQ_MAX &&
			       !atomic_compare_exchange_weak_explicit(
				       l.sp, &v, slot_with_freq(v, slot_freq(v) + 1),
				       memory_order_relaxed, memory_order_relaxed)) {
				if (slot_seg(v) != slot_seg(l.slot) ||
				    slot_off(v) != slot_off(l.slot))
					break;
			}
			fill_value(out, &l);
			rc = 0;
		}
	}
	ctr_add(sh, rc == 0 ? CX_get_hits : CX_get_misses, 1);
	pthread_rwlock_unlock(&sh->lock);
	return rc;
}

int cache_flush_all(struct cache *c, int64_t delay)
{
	int64_t now = cache_now(c);
	ctr_add(&c->shards[0], CX_cmd_flush, 1);
	if (delay > 0) {
		int64_t at = delay <= CACHE_REALTIME_MAXDELTA ? now + delay : delay;
		atomic_store_explicit(&c->flush_at, at, memory_order_release);
		flush_check(c, now);
		return 0;
	}
	atomic_store(&c->flush_at, 0);
	flush_now(c);
	return 0;
}

/* ------------------------------------------------------------------------
 * Create, destroy, stats
 * ---------------------------------------------------------------------- */

struct bp_pool *cache_pool(struct cache *c)
{
	return c->pool;
}

/* Bytes a block of capacity cap charges the pool. */
static size_t block_charge(size_t cap)
{
	int cls = bp_class_of(cap);
	if (cls >= 0)
		return bp_class_size(cls);
	size_t page = 4096;
	return (cap + 16 + page - 1) & ~(page - 1);
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
	/* The capacity that makes the block exactly seg_size bytes. */
	size_t seg_cap = seg_size <= BP_MAX_CLASS_SIZE ? seg_size - BP_BLOCK_HDR
	                                               : seg_size - 16;
	if (seg_cap > MAX_SEG_CAP)
		seg_cap = MAX_SEG_CAP;
	size_t seg_block = block_charge(seg_cap);
	unsigned nshards = o->nshards;
	if (!nshards) {
		size_t want = o->limit / (16 * seg_block);
		nshards = 1;
		while (nshards < 16 && nshards * 2 <= want)
			nshards *= 2;
	}
	uint64_t nsegs = o->limit / seg_block + 1;
	if (nsegs > MAX_SEGS)
		nsegs = MAX_SEGS;

	struct bp_pool_opts po = {.name = o->name ? o->name : "cache",
	                          .limit = o->limit};
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
	c->seg_huge = bp_class_of(seg_cap) < 0;
	size_t item_max = seg_cap - ITEM_HDR_MAX;
	c->max_item = o->max_item && o->max_item < item_max ? o->max_item : item_max;
	c->policy = o->policy;
	c->clock = o->clock ? o->clock : default_clock;
	c->clock_arg = o->clock_arg;
	pthread_mutex_init(&c->free_lock, NULL);
	c->free_head = NIL;
	c->empty_head = NIL;
	for (uint32_t i = c->nsegs; i >= 1; i--) {
		c->segs[i].next = c->empty_head;
		c->empty_head = (int32_t)i;
		c->segs[i].cap = c->seg_cap;
	}
	atomic_init(&c->seq, 1);
	atomic_init(&c->flush_seq, 0);
	atomic_init(&c->flush_at, 0);

	/* Initial tables: room for items averaging 1 KiB (mmap'd segments,
	 * the table can grow into released memory) or 64 bytes (pooled
	 * segments, which never give their charge back). */
	size_t slots = o->hash_slots ? o->hash_slots
	                             : o->limit / (c->seg_huge ? 1024 : 64);
	size_t nb = slots / SLOTS_PER_BUCKET / nshards;
	if (nb < 8)
		nb = 8;
	if (nb > UINT32_MAX / 4)
		nb = UINT32_MAX / 4;
	for (unsigned i = 0; i < nshards; i++) {
		struct shard *sh = &c->shards[i];
		pthread_rwlock_init(&sh->lock, NULL);
		sh->nb = (uint32_t)nb;
		sh->nghost = (uint32_t)nb * 2;
		for (int q = 0; q < NQ; q++) {
			sh->q[q].head = sh->q[q].tail = NIL;
			for (int t = 0; t < NTTL; t++)
				sh->open[q][t] = NIL;
		}
		sh->tblk = table_alloc(c, sh->nb, &sh->slots, &sh->ghost);
		if (!sh->tblk)
			goto nomem;
		ctr_add(sh, CX_hash_slots, nb * SLOTS_PER_BUCKET);
	}
	if (cache__group_init(c) != 0)
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
	out->bytes_total = ps.charged_bytes;
	out->limit_bytes = ps.limit_bytes;
	out->loads = atomic_load(&c->gctr_loads);
	out->load_joins = atomic_load(&c->gctr_joins);
}
