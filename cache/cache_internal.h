/*
 * Private to the cache module: the store's structures, the inline helpers
 * every GET and SET runs (hashing, slots, counters, shard locks, flush
 * checks), and the internal functions the store's files share (prefix
 * cache__). Which file holds what:
 *
 *   item.h     an item's layout in a segment; header encode and parse
 *   index.c    a shard's hash table: lookup, placing slots, growth
 *   segment.c  segments: the free list, take/release, open/seal, bump
 *              allocation within the open segment
 *   evict.c    getting a segment when none is free: cleaning, S3-FIFO
 *              eviction, TTL sweeps
 *   ops.c      every memcached operation
 *   cache.c    create, destroy, stats
 *   group.c    get-or-load with singleflight
 *   classes.c  memcached's size classes, for per-class counters
 *
 * Locking: a shard's rwlock protects its table, its segments and their
 * bytes; readers take it shared and only bump slot frequencies (atomic
 * CAS) and counters (atomic adds). The store's free_lock protects the free
 * and empty segment lists. A shard may try-lock another shard (never
 * blocking while holding its own) to evict from it. Every cache__ function
 * below states the lock it expects; "sh locked" means sh's lock is held
 * exclusive.
 *
 * docs/cache.md has the reasons and the measurements.
 */
#ifndef GEECACHE_CACHE_INTERNAL_H
#define GEECACHE_CACHE_INTERNAL_H

#include "cache/cache.h"
#include "cache/item.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

/* Counter indexes, one per CACHE_COUNTERS entry. */
enum {
#define CACHE_X_ENUM(name, kind, help) CX_##name,
	CACHE_COUNTERS(CACHE_X_ENUM)
#undef CACHE_X_ENUM
	CX__COUNT
};

/* Size-class counter indexes, one per CACHE_CLASS_COUNTERS entry. */
enum {
#define CACHE_X_ENUM(name, kind, help) CC_##name,
	CACHE_CLASS_COUNTERS(CACHE_X_ENUM)
#undef CACHE_X_ENUM
	CC__COUNT
};

#define NQ 2        /* queues: small (S) and main (M) */
#define Q_S 0
#define Q_M 1
#define NTTL 8      /* TTL classes of open segments */
#define NIL (-1)

/* Items larger than seg_cap / LARGE_DIV get a block of their own: a
 * segment holding that one item, sized to it (docs/cache.md, "Large
 * items"). */
#define LARGE_DIV 4

/* What a block of capacity cap charges the store's (direct) pool: its
 * whole mapping, rounded up to pages (bufpool's huge_get). */
static inline size_t cache__block_charge(size_t cap)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	return (cap + BP_DIRECT_HDR + page - 1) & ~(page - 1);
}

/* An item's address: segment id (1..MAX_SEGS) and offset in it. */
#define OFF_BITS 22
#define SEG_BITS 24
#define MAX_SEG_CAP ((1u << OFF_BITS) - 1)
#define MAX_SEGS ((1u << SEG_BITS) - 1)
#define NEVER UINT32_MAX /* a segment's max_exp: some item never expires */

/* A segment: one pool block that items are appended to. Entries live in
 * the store's directory (index = segment id, 0 unused). Every field is
 * owned by the shard that owns the segment (its lock), except while the
 * entry is on the store's free or empty list (free_lock). */
struct seg {
	struct bp_block *blk; /* NULL: no block (entry on the empty list) */
	char *data;
	uint64_t seq;         /* unique per (re)open: the CAS base */
	uint32_t cap, used;
	uint32_t max_exp;     /* latest expiry of its items; NEVER = never */
	uint32_t live;        /* live items */
	uint64_t live_bytes;
	int32_t next, prev;   /* queue (sealed FIFO) or free/empty list */
	uint16_t shard;
	uint8_t q;            /* Q_S / Q_M */
	uint8_t ttlc;
	uint8_t open;
	uint8_t large;        /* one large item in a block of its own size */
	uint8_t _pad[2];
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
	uint64_t held;              /* bytes of those segments' item areas */
	int32_t open[NQ][NTTL];
	_Atomic uint64_t ctr[CX__COUNT];
	_Atomic uint64_t cls[CACHE_NCLASSES][CC__COUNT]; /* by size class */
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
	uint32_t large_min;         /* items above this get a block of their own */
	enum cache_policy policy;
	bool no_evict;              /* opts.no_evict */
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

/* ------------------------------------------------------------------------
 * Counters (per shard, relaxed atomics, summed by cache_stats_get)
 * ---------------------------------------------------------------------- */

static inline void ctr_add(struct shard *sh, int i, uint64_t n)
{
	atomic_fetch_add_explicit(&sh->ctr[i], n, memory_order_relaxed);
}

static inline void ctr_sub(struct shard *sh, int i, uint64_t n)
{
	atomic_fetch_sub_explicit(&sh->ctr[i], n, memory_order_relaxed);
}

/* The size class of an item (cache.h, "Size classes"). */
static inline unsigned itm_class(const struct itm *it)
{
	return cache_class_of(cache_class_item_size(it->klen, it->vlen, it->flags));
}

static inline void cls_add(struct shard *sh, unsigned cls, int i, uint64_t n)
{
	atomic_fetch_add_explicit(&sh->cls[cls][i], n, memory_order_relaxed);
}

/* Counts an item that left the store in both tables: the whole-store
 * counter cx and its size class's cc. */
static inline void ctr_item(struct shard *sh, const struct itm *it, int cx, int cc)
{
	ctr_add(sh, cx, 1);
	cls_add(sh, itm_class(it), cc, 1);
}

/* ------------------------------------------------------------------------
 * Shard locks
 *
 * Critical sections are a few hundred nanoseconds, so a blocked thread
 * spins: SPIN_TRIES rounds of try-lock with a pause, then blocks (why:
 * docs/cache.md, "Shard locks: spin, then block").
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
 * Hashing: one 64-bit hash per key decides its shard, its two buckets,
 * its 16-bit tag and its ghost fingerprint.
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
static inline uint64_t hash_key(const void *key, size_t n)
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

/* ------------------------------------------------------------------------
 * Hash slots and buckets
 *
 * Hash slot (64 bits): tag 16 | freq 2 | segment id 24 | offset 22.
 * A bucket is 8 slots (64 bytes); a key may live in either of two buckets
 * (two choices) and goes to the emptier one. 0 is an empty slot (segment
 * ids start at 1).
 * ---------------------------------------------------------------------- */

#define SLOTS_PER_BUCKET 8u
#define FREQ_MAX 3u

static inline uint32_t bucket1(const struct shard *sh, const struct hk *k)
{
	return range32((uint32_t)k->h, sh->nb);
}

static inline uint32_t bucket2(const struct shard *sh, const struct hk *k)
{
	return range32((uint32_t)k->h2, sh->nb);
}

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

/* The ghost set (S3-FIFO): fingerprints of keys recently evicted from S,
 * direct-mapped, 2 entries per bucket. sh locked. */
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
 * Items in segments, time and flush
 * ---------------------------------------------------------------------- */

/* The store's clock (cache_now); inline, since every operation reads it. */
static inline int64_t clock_now(struct cache *c)
{
	return c->clock(c->clock_arg);
}

static inline uint64_t item_cas(const struct seg *s, uint32_t off,
                                const struct itm *it)
{
	return (it->meta & F_CAS) ? it->cas : (s->seq << OFF_BITS) | off;
}

/* The TTL class of an item's open segment: 0 = no expiry, else 1 + log8
 * of the remaining TTL, at most NTTL - 1. */
static inline unsigned ttl_class(uint32_t exp, int64_t now)
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

/* Flushes every item stored so far (ops.c): the segments opened up to now
 * are dead. Takes every shard's writer lock, so that it is ordered with
 * every write. Any thread, holding no shard lock. */
void cache__flush_now(struct cache *c);

/* Runs a due delayed flush. Any thread, holding no shard lock. */
static inline void flush_check(struct cache *c, int64_t now)
{
	int64_t at = atomic_load_explicit(&c->flush_at, memory_order_acquire);
	if (at == 0 || now < at)
		return;
	if (atomic_compare_exchange_strong(&c->flush_at, &at, 0))
		cache__flush_now(c);
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
 * The index (index.c). sh's lock is held: shared for cache__lookup,
 * exclusive for everything else.
 * ---------------------------------------------------------------------- */

/* A found item: its slot, the slot's value, and the item. */
struct loc {
	_Atomic uint64_t *sp;
	uint64_t slot;
	struct seg *seg;
	uint32_t off;
	char *p;
	struct itm it;
};

/* Finds key in sh's table (expired and flushed items too); fills *l. */
bool cache__lookup(struct cache *c, struct shard *sh, const struct hk *k,
                   const void *key, size_t klen, struct loc *l);

/* Writer lookup: an expired or flushed item is removed and not found. */
bool cache__lookup_live(struct cache *c, struct shard *sh, const struct hk *k,
                        const void *key, size_t klen, int64_t now,
                        struct loc *l);

/* The slot that points at (segment id, off), the item with this key; NULL
 * when none does (the item is dead: replaced or deleted). */
_Atomic uint64_t *cache__find_slot_of(struct shard *sh, uint32_t id,
                                      uint32_t off, const char *key,
                                      uint32_t klen);

/* Accounting for an item of s that becomes live / stops being live. */
void cache__account(struct shard *sh, struct seg *s, const struct itm *it);
void cache__unaccount(struct shard *sh, struct seg *s, const struct itm *it);

static inline void remove_loc(struct shard *sh, struct loc *l)
{
	atomic_store_explicit(l->sp, 0, memory_order_relaxed);
	cache__unaccount(sh, l->seg, &l->it);
}

/* Puts slot v (for hash k) into an empty place of its buckets; false when
 * both are full. */
bool cache__place(struct shard *sh, const struct hk *k, uint64_t v);

/* Both buckets full: moves one resident to its other bucket if that has
 * room (one level of cuckoo), else evicts the resident in the oldest
 * segment (table_evictions). Then places v. */
void cache__place_hard(struct cache *c, struct shard *sh, const struct hk *k,
                       uint64_t v);

/* A zeroed table of nb buckets and its ghost, from the pool; NULL when the
 * pool refuses. No lock needed. */
struct bp_block *cache__table_alloc(struct cache *c, uint32_t nb,
                                    _Atomic uint64_t **slots, uint32_t **ghost);

/* Grows sh's table by half (see table_maybe_grow). */
void cache__table_grow(struct cache *c, struct shard *sh, int64_t now);

/* Grow a shard's table above this load (items / slots). */
#define GROW_LOAD_NUM 9
#define GROW_LOAD_DEN 10

/* Grows sh's table when one more item would pass GROW_LOAD (and a failed
 * growth is not being waited out). The check is inline: every SET makes
 * it. */
static inline void table_maybe_grow(struct cache *c, struct shard *sh,
                                    int64_t now)
{
	uint64_t slots = (uint64_t)sh->nb * SLOTS_PER_BUCKET;
	if ((sh->items + 1) * GROW_LOAD_DEN <= slots * GROW_LOAD_NUM ||
	    sh->items < sh->grow_retry)
		return;
	cache__table_grow(c, sh, now);
}

/* ------------------------------------------------------------------------
 * Segments (segment.c). sh locked where a shard is passed; the free list
 * functions take free_lock themselves.
 * ---------------------------------------------------------------------- */

void cache__fifo_unlink(struct cache *c, struct fifo *f, int32_t id);

/* A segment entry with a block, from the free list or the pool; no
 * eviction. NIL when neither has one. Only relocations (reloc) may take
 * the last RESERVE free segments. */
int32_t cache__seg_take(struct cache *c, bool reloc);

/* Gives a segment that no slot points at back to the store (see
 * segment.c for when its block is kept). */
void cache__seg_release(struct cache *c, struct shard *sh, int32_t id,
                        bool keep);

/* An entry for a large item: a block of exactly size bytes (releasing
 * free segments' blocks to make room in the limit; never evicting). NIL
 * when there is no room or no entry. */
int32_t cache__large_take(struct cache *c, uint32_t size);

/* Queues large entry id, its whole capacity (size) taken by one item
 * about to be written, as a sealed segment of sh's queue q. */
void cache__seg_queue_large(struct cache *c, struct shard *sh, int32_t id,
                            int q, unsigned ttlc, uint32_t size);

/* Puts an unopened segment with its block back on the free list. */
void cache__free_push(struct cache *c, int32_t id);

/* Drops every segment on the free list back to the pool (so that a huge
 * block's charge returns). Returns how many. */
unsigned cache__free_list_drain(struct cache *c);

/* Makes id the open segment of sh's queue q and TTL class ttlc. */
void cache__seg_open(struct cache *c, struct shard *sh, int32_t id, int q,
                     unsigned ttlc);

/* Queues a sealed segment unlinked from its queue again, as the newest of
 * its queue (s->q). */
void cache__seg_requeue(struct cache *c, struct shard *sh, int32_t id);

/* Closes an open segment to appends and queues it (newest sealed). */
void cache__seg_seal(struct cache *c, struct shard *sh, int32_t id);

/* Reserves size bytes in the open segment of (q, ttlc) when they fit
 * (returns the segment id and *off); otherwise seals that segment (if
 * any, *sealed) and returns NIL for the caller to open another. */
int32_t cache__open_fit(struct cache *c, struct shard *sh, int q,
                        unsigned ttlc, uint32_t size, uint32_t *off,
                        bool *sealed);

/* Like cache__open_fit, and when the segment is full opens a new one from
 * cache__seg_take(c, true); never evicts. The segment id and *off, or NIL. */
int32_t cache__bump_alloc(struct cache *c, struct shard *sh, int q,
                          unsigned ttlc, uint32_t size, uint32_t *off);

/* ------------------------------------------------------------------------
 * Eviction (evict.c). sh locked.
 * ---------------------------------------------------------------------- */

/* How an eviction treats the live items of its segment. */
enum evict_flags {
	EVICT_RETAIN = 1u << 0,     /* relocate the items the policy keeps
	                             * (else every live item is dropped) */
	EVICT_CLEAN = 1u << 1,      /* keep every item, in the segment's own
	                             * queue with its count (cleaning) */
	EVICT_KEEP_BLOCK = 1u << 2, /* an unreferenced block goes on the free
	                             * list (else back to the pool) */
	EVICT_KEEP_LARGE = 1u << 3, /* cache__evict_one: a large item the
	                             * policy keeps is queued again (no copy)
	                             * instead of evicted */
	EVICT_SWEEP = 1u << 4,      /* a TTL sweep: counts crawler_reclaimed */
};

/* Picks and evicts one sealed segment of sh the S3-FIFO (or FIFO) way;
 * flags: EVICT_KEEP_BLOCK, EVICT_KEEP_LARGE or 0. False when sh has none. */
bool cache__evict_one(struct cache *c, struct shard *sh, int64_t now,
                      unsigned flags);

/* The open segment of (q, ttlc) had no room (cache__open_fit; sealed when
 * it sealed one): sweeps if so, then takes a segment, evicting when the
 * store has none free, and reserves size bytes in it. NIL = -ENOMEM. */
int32_t cache__item_alloc_seg(struct cache *c, struct shard *sh, int q,
                              unsigned ttlc, uint32_t size, int64_t now,
                              uint32_t *off, bool sealed);

/* A block of its own for a large item (over large_min bytes), evicting
 * until the limit has room for it. The segment id (*off 0), or NIL. */
int32_t cache__item_alloc_large(struct cache *c, struct shard *sh, int q,
                                unsigned ttlc, uint32_t size, int64_t now,
                                uint32_t *off);

/* Reserves size bytes for a new item: the open segment of (q, ttlc), else
 * a new segment (sweeping expired ones, then evicting); a large item gets
 * a block of its own. Returns the segment id and *off, or NIL = -ENOMEM.
 * Inline: the open segment's fast path is on every SET. */
static inline int32_t item_alloc(struct cache *c, struct shard *sh, int q,
                                 unsigned ttlc, uint32_t size, int64_t now,
                                 uint32_t *off)
{
	if (__builtin_expect(size > c->large_min, 0))
		return cache__item_alloc_large(c, sh, q, ttlc, size, now, off);
	bool sealed;
	int32_t id = cache__open_fit(c, sh, q, ttlc, size, off, &sealed);
	if (id != NIL)
		return id;
	return cache__item_alloc_seg(c, sh, q, ttlc, size, now, off, sealed);
}

/* ------------------------------------------------------------------------
 * get-or-load (group.c). Start-up and teardown only.
 * ---------------------------------------------------------------------- */

int cache__group_init(struct cache *c);
void cache__group_deinit(struct cache *c);

#endif
