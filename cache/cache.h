/*
 * cache — GeeCache's store: memcached semantics over segments of pooled
 * memory, a hard memory limit, S3-FIFO eviction, TTL, CAS.
 *
 * Layout (docs/cache.md has the reasons and the measurements). Items are
 * appended to segments: each segment is one bufpool block (1 MiB by
 * default) owned by one shard. An item is a 7-byte header (meta, key
 * length, access time, varint value length), optional flags / expiry /
 * CAS fields, the key and the value. A shard's hash table holds one 8-byte
 * slot per item (tag, frequency, segment id, offset). Metadata that items
 * share (write sequence, expiry bound, queue) lives in the segment header.
 *
 * Rules that hold for every call below:
 *
 *  - Threads. Every call may be made from any thread at any time, except
 *    create/destroy. Each shard has a reader-writer lock: GET and the stats
 *    take it shared (a GET only bumps a frequency counter in the hash slot
 *    and the item's meta state, atomically); every other call takes it
 *    exclusive. A write that must evict does so under its shard's lock
 *    (one segment at a time).
 *  - Values. A successful get fills a struct cache_value whose `data` slice
 *    owns one reference to the segment block that holds the value. The
 *    bytes stay valid and unchanged until the caller releases it
 *    (cache_value_release), even if the item is replaced, deleted, expires,
 *    is flushed or evicted meanwhile: a segment's memory is only reused
 *    once its last reference is dropped. GET copies nothing.
 *  - Writes copy the value exactly once, from the caller's chain range or
 *    iovecs into the segment (bp_chain_copy_out, counted by bufpool as
 *    copied_out_bytes of the chain's pool).
 *  - Memory. All memory the store holds (segments, hash tables, the segment
 *    directory, singleflight records) comes from the store's own bufpool
 *    pool whose limit is opts.limit, so the store never holds more than the
 *    limit. When a write needs memory, the store evicts; when nothing can
 *    be evicted (every segment is referenced by readers, or the limit is
 *    too small) the write fails with -ENOMEM and is counted.
 *  - Time is whole seconds from opts.clock (unix time; default time(2)).
 *    Expiration arguments follow memcached: 0 never expires; 1..30 days
 *    (2592000 s) is relative to now; larger values are absolute unix
 *    times; a negative value or an absolute time in the past means
 *    "already expired" (the write succeeds and the item is gone).
 *  - Errors are negative errno; each call lists what it returns. The
 *    mapping to memcached answers:
 *        0          STORED / DELETED / TOUCHED / value found
 *        -ENOENT    NOT_FOUND (binary KEY_ENOENT); text REPLACE: NOT_STORED
 *        -EEXIST    CAS mismatch: EXISTS (binary KEY_EEXISTS);
 *                   ADD on an existing key: text NOT_STORED, binary
 *                   KEY_EEXISTS
 *        -ENOTSUP   NOT_STORED (APPEND/PREPEND on a missing key)
 *        -EINVAL    bad key (empty or > CACHE_KEY_MAX); INCR/DECR of a
 *                   non-numeric value (binary DELTA_BADVAL, text
 *                   CLIENT_ERROR)
 *        -E2BIG     item larger than max_item (binary E2BIG, text
 *                   SERVER_ERROR object too large for cache)
 *        -ENOMEM    nothing could be evicted (SERVER_ERROR out of memory)
 *    A failed write changes nothing.
 */
#ifndef GEECACHE_CACHE_H
#define GEECACHE_CACHE_H

#include "bufpool/bufpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CACHE_KEY_MAX 250u
/* memcached's boundary between relative and absolute expiration times. */
#define CACHE_REALTIME_MAXDELTA (60 * 60 * 24 * 30)
/* Default segment size: one mapping of exactly 1 MiB. */
#define CACHE_SEG_SIZE_DEFAULT ((size_t)1 << 20)

struct cache; /* opaque */

enum cache_policy {
	CACHE_S3FIFO = 0, /* small + main FIFO of segments, ghost keys (default) */
	CACHE_FIFO,       /* evict the oldest segment whole (for comparison) */
};

struct cache_opts {
	const char *name;   /* pool name for stats; may be NULL */
	size_t limit;       /* bytes; bounds everything the store holds. > 0 */
	size_t seg_size;    /* bytes per segment block (total, header
	                     * included); 0 = CACHE_SEG_SIZE_DEFAULT. Sizes above
	                     * BP_MAX_CLASS_SIZE are mmap'd blocks whose memory
	                     * (and limit charge) returns to the system when
	                     * released, so the hash table can grow into it; see
	                     * docs/cache.md. 16 KiB .. 4 MiB. */
	unsigned nshards;   /* power of two, 1..256; 0 = auto */
	size_t max_item;    /* largest key + value accepted; 0 = what fits one
	                     * segment. Items over a quarter of a segment get a
	                     * block of their own, so this may exceed a segment
	                     * (up to half the limit, and 256 MiB) */
	size_t pinned_max;  /* bytes evicted segments may keep outside the limit
	                     * while replies still reference them; 0 = limit */
	bool no_evict;      /* never evict (memcached -M): a write that finds
	                     * no room fails with -ENOMEM. Segments whose items
	                     * are all expired, flushed, replaced or deleted
	                     * are still reclaimed (at once when a write needs
	                     * room), but not the dead space among live items:
	                     * cleaning may drop items its budget cannot copy */
	size_t hash_slots;  /* initial hash slots in all (grows); 0 = auto */
	enum cache_policy policy;
	/* Clock in unix seconds; NULL = time(2). Called on every operation
	 * from any thread. */
	int64_t (*clock)(void *arg);
	void *clock_arg;
};

/* Creates a store and its pool. Start-up only. NULL with errno (EINVAL for
 * bad options, ENOMEM when the limit cannot even hold the metadata). */
struct cache *cache_create(const struct cache_opts *opts);

/* Frees everything and sets *c to NULL; accepts NULL. Every value handed
 * out must have been released, and no other call may be running. */
void cache_destroy(struct cache **c);

/* The store's pool (for bp_pool_stats: charged_bytes <= limit_bytes). */
struct bp_pool *cache_pool(struct cache *c);

/* Current time of the store's clock (unix seconds). */
int64_t cache_now(struct cache *c);

/* ------------------------------------------------------------------------
 * Reads
 * ---------------------------------------------------------------------- */

struct cache_value {
	struct bp_slice data; /* the value; owns one reference (see above) */
	uint32_t flags;
	uint32_t exptime;     /* absolute unix time, 0 = never */
	uint64_t cas;
};

static inline void cache_value_release(struct cache_value *v)
{
	bp_slice_release(&v->data);
}

/* Finds key; fills *out (the caller releases it). 0 or -ENOENT, -EINVAL. */
int cache_get(struct cache *c, const void *key, size_t klen,
              struct cache_value *out);

/* A key for cache_prefetch. */
struct cache_key {
	const void *key;
	size_t len;
};

#define CACHE_PREFETCH_MAX 32

/* A hint that these keys are about to be looked up (a pipeline of GETs):
 * brings their hash buckets, then the items they point at, toward the CPU
 * cache, so that the lookups that follow do not each wait for memory in
 * turn. Changes nothing; at most CACHE_PREFETCH_MAX keys are used. */
void cache_prefetch(struct cache *c, const struct cache_key *keys, unsigned n);

/* Get-and-touch: like cache_get, and sets the expiration (rules above;
 * an expiration in the past, as in memcached, returns the value and
 * deletes the item). */
int cache_gat(struct cache *c, const void *key, size_t klen, int64_t exptime,
              struct cache_value *out);

/* The expiration of a live item (absolute unix time, 0 never) into
 * *exptime, counting nothing: 0 or -ENOENT, -EINVAL. */
int cache_exptime(struct cache *c, const void *key, size_t klen,
                  uint32_t *exptime);

/* Sets the expiration of key without reading it. 0 or -ENOENT, -EINVAL,
 * -ENOMEM (an item without room for an expiry field is rewritten). The CAS
 * value does not change. An expiration in the past deletes the item and
 * returns 0 (memcached answers TOUCHED). */
int cache_touch(struct cache *c, const void *key, size_t klen,
                int64_t exptime);

/* ------------------------------------------------------------------------
 * Writes
 * ---------------------------------------------------------------------- */

enum cache_mode {
	CACHE_SET,     /* store unconditionally */
	CACHE_ADD,     /* only if absent; -EEXIST otherwise */
	CACHE_REPLACE, /* only if present; -ENOENT otherwise */
	CACHE_APPEND,  /* value += data; keeps flags and expiry; -ENOTSUP if absent */
	CACHE_PREPEND, /* value = data + value; likewise */
	CACHE_CAS,     /* only if present (-ENOENT) with this cas (-EEXIST) */
	CACHE_CAS_STALE, /* as CACHE_CAS, but a cas below the item's (an older
	                  * version) stores the value as stale, keeping the
	                  * item's expiry and a win token handed out
	                  * (memcached's ms I; see "Meta state" below) */
};

/* Stores key with the len bytes at offset off of src (src is not consumed;
 * the bytes are copied once). cas != 0 makes SET/REPLACE/APPEND/PREPEND
 * conditional like CACHE_CAS; CACHE_CAS and CACHE_CAS_STALE require
 * cas != 0 (-EINVAL). A new version of a key always gets a CAS above the
 * old version's.
 * *cas_out (may be NULL) gets the new item's CAS. Returns 0 or -EEXIST,
 * -ENOENT, -ENOTSUP, -EINVAL, -E2BIG, -ENOMEM (see the table above). */
int cache_store(struct cache *c, enum cache_mode mode, const void *key,
                size_t klen, struct bp_chain *src, size_t off, size_t len,
                uint32_t flags, int64_t exptime, uint64_t cas,
                uint64_t *cas_out);

/* Same, with the value gathered from iovecs. */
int cache_storev(struct cache *c, enum cache_mode mode, const void *key,
                 size_t klen, const struct iovec *iov, int iovcnt,
                 uint32_t flags, int64_t exptime, uint64_t cas,
                 uint64_t *cas_out);

/* Convenience: CACHE_SET of one buffer. */
int cache_set(struct cache *c, const void *key, size_t klen, const void *val,
              size_t vlen, uint32_t flags, int64_t exptime);

/* Deletes key; cas != 0 deletes only that version (-EEXIST otherwise).
 * 0 or -ENOENT, -EEXIST, -EINVAL. */
int cache_delete(struct cache *c, const void *key, size_t klen, uint64_t cas);

/* What INCR/DECR do on a miss. */
struct cache_arith_init {
	uint64_t initial;  /* value stored when the key is missing */
	int64_t exptime;   /* its expiration */
	uint32_t flags;
};

/* INCR (decr = false) or DECR by delta, memcached's rules: the value must
 * be a decimal number below 2^64, read as strtoull does (leading
 * whitespace, and anything after a whitespace byte that ends the digits,
 * are ignored; -EINVAL otherwise), INCR wraps at 2^64, DECR stops at 0. A
 * result no longer than the stored value keeps its length, padded with
 * trailing spaces ("10" - 100 = "0 "); a longer one is stored at its own
 * length ("99" + 1 = "100"). The new value is a new item version (new CAS; a
 * reader holding the old value keeps it). On a miss: -ENOENT, or when init
 * is not NULL, init->initial is stored. cas != 0: only that version
 * (-EEXIST). *value and *cas_out (may be NULL) get the result. */
int cache_arith(struct cache *c, const void *key, size_t klen, bool decr,
                uint64_t delta, const struct cache_arith_init *init,
                uint64_t cas, uint64_t *value, uint64_t *cas_out);

/* ------------------------------------------------------------------------
 * Meta state (memcached's meta commands: mg h l, stale-while-revalidate)
 *
 * Every item also carries: whether it was fetched since it was written
 * (mg h), when it was last accessed (mg l), whether it is stale and
 * whether a win token was handed out for it (mg X, Z, W). Reads bump an
 * item, as memcached's segmented LRU does: the first read since it was
 * written (cache_get, cache_gat, cache_touch, cache_mget) marks it
 * fetched, later ones set its access time to now. A new version written
 * by a store starts unfetched, accessed now, neither stale nor with a
 * token (but CACHE_CAS_STALE: stale, its token kept); incr/decr, touch and
 * gat keep the state. Costs: docs/cache.md, "Meta state".
 * ---------------------------------------------------------------------- */

/* What a meta get does besides reading (memcached's mg flags). */
struct cache_mget_opts {
	bool no_bump;          /* u: leave fetched, access time and the
	                        * frequency as they are */
	bool touch;            /* T: set the expiration to exptime first */
	int64_t exptime;
	bool vivify;           /* N: on a miss, store an empty value (flags 0)
	                        * expiring at vivify_exptime; this call wins */
	int64_t vivify_exptime;
	bool recache;          /* R: win when the item expires sooner than
	                        * recache_exptime (relative or absolute) */
	int64_t recache_exptime;
	bool recache_after_touch; /* R compares the expiry T set (T came first
	                           * in the request), else the one before */
	bool peek;             /* report only: change nothing, count nothing
	                        * (T, N, R, u ignored) */
};

/* What a meta get found; every field describes the item as it was before
 * this call, but won and created. */
struct cache_meta {
	uint32_t exp_before;   /* expiration before T (absolute, 0 never;
	                        * 0 for an item this call created) */
	uint32_t idle;         /* seconds since the last access */
	bool fetched;          /* read since it was written */
	bool stale;            /* marked stale (cache_invalidate, CACHE_CAS_STALE) */
	bool token_sent;       /* a win token was already handed out (Z) */
	bool won;              /* this call got the win token (W): it created
	                        * the item, or the item was stale or (R) close
	                        * to expiring and no token was out */
	bool created;          /* this call created the item (vivify) */
};

/* memcached's mg: reads key like cache_get (fills *out, which the caller
 * releases) and fills *m. A win marks the item (at most one caller wins
 * per version; a later version starts without a token, except a
 * CACHE_CAS_STALE one). T and N take the shard's lock exclusive, the
 * rest shared. Returns 0, or -ENOENT (a vivify that finds no memory is a
 * miss too, as in memcached), -EINVAL, -ENOMEM (T could not rewrite the
 * item). Counted as a touch with T, else as a get; a vivify is a hit. */
int cache_mget(struct cache *c, const void *key, size_t klen,
               const struct cache_mget_opts *o, struct cache_value *out,
               struct cache_meta *m);

/* memcached's md … I: instead of deleting key, marks it stale: a new
 * version (new CAS) of the same value and flags, stale, without a win
 * token (the next cache_mget wins), keeping whether it was fetched and
 * when it was accessed; with set_exp, expiring at exptime (rules above).
 * cas != 0: only that version (-EEXIST). 0 or -ENOENT, -EEXIST, -EINVAL,
 * -ENOMEM. */
int cache_invalidate(struct cache *c, const void *key, size_t klen,
                     uint64_t cas, bool set_exp, int64_t exptime);

/* Invalidates every item stored before now + delay seconds (delay <= 0:
 * now), at that moment; a later flush_all replaces a pending one. The
 * memory is reclaimed proactively (cache_expire). Returns 0. */
int cache_flush_all(struct cache *c, int64_t delay);

/* Proactive reclaim: frees segments whose items have all expired or were
 * flushed, visiting segment headers (not the hash table). The store calls
 * it itself whenever a segment fills; a server may also call it from a
 * periodic timer. Returns the number of segments freed. */
int cache_expire(struct cache *c);

/* ------------------------------------------------------------------------
 * Listing (memcached's `stats cachedump`)
 * ---------------------------------------------------------------------- */

/* What cache_dump passes for each item: its key (klen bytes, valid only
 * during the call), flags, value length and expiration (absolute unix
 * time, 0 never). Returns 0 to go on; anything else stops the walk. */
typedef int (*cache_dump_fn)(void *arg, const char *key, size_t klen,
                             uint32_t flags, uint32_t vlen, uint32_t exptime);

/* Calls fn for the live items (not expired, not flushed) of the store, up
 * to limit of them (0: no limit), shard by shard in hash-table order (no
 * order a client may rely on), changing nothing: no item is bumped and
 * nothing is counted. fn runs with the item's shard locked shared, so it
 * must not call into the store, and a shard's writers wait while it is
 * walked: the walk is for debugging, not for a request path. Returns how
 * many items fn was called for, or the first negative value fn returned
 * (a positive one stops the walk, and the item counts). */
int cache_dump(struct cache *c, unsigned limit, cache_dump_fn fn, void *arg);

/* ------------------------------------------------------------------------
 * Embedding ("group"): get-or-load with singleflight
 *
 * On a miss, cache_get_or_load starts the loader through the caller's
 * executor; concurrent misses of the same key join the load in flight
 * instead of starting another. When the loader returns, its value is stored
 * (copied once) and every waiter's `done` runs, on the executor's thread,
 * with its own referenced value (which `done` must release) or an error.
 * ---------------------------------------------------------------------- */

/* Runs fn(arg) some time later, on any thread. Returns 0, or a negative
 * errno when it refuses (then fn never runs). */
struct cache_executor {
	int (*submit)(void *exec_arg, void (*fn)(void *arg), void *arg);
	void *exec_arg;
};

/* Fills the value for key: appends it to `out` (a chain of the store's
 * pool) and sets *flags and *exptime. Returns 0 or a negative errno (then
 * nothing is stored and every waiter gets that error). */
typedef int (*cache_loader_fn)(void *loader_arg, const void *key, size_t klen,
                               struct bp_chain *out, uint32_t *flags,
                               int64_t *exptime);

/* rc is 0 (v valid, owned by the callee) or negative (v NULL). */
typedef void (*cache_done_fn)(void *done_arg, int rc, struct cache_value *v);

struct cache_loader {
	cache_loader_fn load;
	void *load_arg;
	const struct cache_executor *exec;
};

/* Hit: fills *out and returns 0 (done is not called). Miss: returns
 * -EINPROGRESS and done(done_arg, ...) runs exactly once later. Other
 * errors (-EINVAL, -ENOMEM, or the executor's refusal) are returned
 * directly and done never runs. */
int cache_get_or_load(struct cache *c, const void *key, size_t klen,
                      const struct cache_loader *loader, cache_done_fn done,
                      void *done_arg, struct cache_value *out);

/* ------------------------------------------------------------------------
 * Counters (one table: stats and /metrics print it)
 * ---------------------------------------------------------------------- */

#define CACHE_COUNTERS(X)                                                       \
	X(curr_items, GAUGE, "items stored (including expired, not yet reclaimed)") \
	X(bytes_payload, GAUGE, "key + value bytes of stored items")             \
	X(bytes_items, GAUGE, "bytes of stored items incl. their headers")       \
	X(bytes_held, GAUGE, "bytes the store holds: segments, tables, metadata") \
	X(limit_bytes, GAUGE, "memory limit")                                    \
	X(segments, GAUGE, "segments held by the store")                         \
	X(hash_slots, GAUGE, "hash table slots")                                 \
	X(get_hits, COUNTER, "reads that found the key")                         \
	X(get_misses, COUNTER, "reads that did not")                             \
	X(get_expired, COUNTER, "lookups (any command) that found an expired item") \
	X(evictions, COUNTER, "live items evicted for memory")                   \
	X(evicted_unfetched, COUNTER, "live items evicted that were never read") \
	X(expired_reclaimed, COUNTER, "expired or flushed items reclaimed")      \
	X(expired_unfetched, COUNTER, "expired or flushed items reclaimed that were never read") \
	X(segs_expired, COUNTER, "segments reclaimed whole by cache_expire")     \
	X(sweep_checked, COUNTER, "live items of the segments the sweep judged by their headers") \
	X(sweep_reclaimed, COUNTER, "expired or flushed items the sweep reclaimed (also in expired_reclaimed)") \
	X(relocations, COUNTER, "items kept by eviction or cleaning (copied)")   \
	X(segs_cleaned, COUNTER, "segments evicted by the cleaner, every item kept") \
	X(table_evictions, COUNTER, "items evicted because both buckets were full") \
	X(table_grows, COUNTER, "hash table resizes")                            \
	X(cmd_get, COUNTER, "get calls (a gat counts as a touch, as in memcached)") \
	X(cmd_set, COUNTER, "set calls")                                         \
	X(cmd_add, COUNTER, "add calls")                                         \
	X(cmd_replace, COUNTER, "replace calls")                                 \
	X(cmd_append, COUNTER, "append and prepend calls")                       \
	X(cmd_cas, COUNTER, "cas calls")                                         \
	X(cmd_delete, COUNTER, "delete calls")                                   \
	X(cmd_arith, COUNTER, "incr and decr calls")                             \
	X(cmd_touch, COUNTER, "touch and gat calls")                             \
	X(cmd_flush, COUNTER, "flush_all calls")                                 \
	X(cas_mismatch, COUNTER, "writes refused by a CAS mismatch")             \
	X(cas_hits, COUNTER, "writes with a CAS that matched")                   \
	X(cas_misses, COUNTER, "writes with a CAS whose key was missing")        \
	X(total_items, COUNTER, "items written by a store or an incr/decr that made a new item") \
	X(get_flushed, COUNTER, "lookups (any command) that found an item flush_all invalidated") \
	X(delete_hits, COUNTER, "deletes that removed an item")                  \
	X(delete_misses, COUNTER, "deletes of a missing key")                    \
	X(incr_hits, COUNTER, "incr on an existing number")                      \
	X(incr_misses, COUNTER, "incr of a missing key")                         \
	X(decr_hits, COUNTER, "decr on an existing number")                      \
	X(decr_misses, COUNTER, "decr of a missing key")                         \
	X(touch_hits, COUNTER, "touch and gat calls that found the key")         \
	X(touch_misses, COUNTER, "touch and gat calls that did not")             \
	X(enomem, COUNTER, "writes refused: nothing could be evicted")           \
	X(pinned_evictions, COUNTER, "segments evicted while replies still referenced them") \
	X(bytes_pinned_evicted, GAUGE, "bytes of evicted segments replies still reference (outside the limit)") \
	X(bytes_pinned_evicted_peak, GAUGE, "the most bytes_pinned_evicted has been") \
	X(large_items, GAUGE, "items over a quarter of a segment, each in a block of its own") \
	X(loads, COUNTER, "loader runs started by get_or_load")                  \
	X(load_joins, COUNTER, "get_or_load misses that joined a load in flight")


/* ------------------------------------------------------------------------
 * Size classes (reporting only)
 *
 * The store has no slab classes: items of every size share segments. So
 * that tools written for memcached's `stats items` and `stats slabs` read
 * the same grouping, items are also counted by the class memcached 1.6
 * would store them in: chunk sizes from 96 bytes growing by 1.25 (its -n
 * 48 and -f 1.25, rounded up to 8) up to 512 KiB, and an item's size as
 * memcached reckons it (48-byte header, key + 1, value + 2 for its
 * "\r\n", 8 for the CAS, 4 for non-zero flags). Larger items count in
 * the last class. docs/cache.md, "Size classes".
 * ---------------------------------------------------------------------- */

#define CACHE_NCLASSES 64 /* class ids 1..CACHE_NCLASSES-1, as memcached's */

#define CACHE_CLASS_COUNTERS(X)                                                 \
	X(number, GAUGE, "items stored in the class")                            \
	X(mem_requested, GAUGE, "the class's items' sizes as memcached reckons them") \
	X(evicted, COUNTER, "live items evicted for memory")                     \
	X(evicted_unfetched, COUNTER, "live items evicted that were never read") \
	X(outofmemory, COUNTER, "writes of the class's size refused for memory") \
	X(reclaimed, COUNTER, "expired or flushed items reclaimed")              \
	X(expired_unfetched, COUNTER, "expired or flushed items reclaimed that were never read") \
	X(crawler_reclaimed, COUNTER, "of those, the ones the TTL sweep reclaimed")

struct cache_class_stats {
#define CACHE_X_FIELD(name, kind, help) uint64_t name;
	CACHE_CLASS_COUNTERS(CACHE_X_FIELD)
#undef CACHE_X_FIELD
};

/* The highest class id; chunk size of class id (1..cache_class_max()). */
unsigned cache_class_max(void);
size_t cache_class_size(unsigned id);
/* memcached's size of an item, and the class it falls in. */
size_t cache_class_item_size(size_t klen, size_t vlen, uint32_t flags);
unsigned cache_class_of(size_t item_size);

/* Sums the shards' class counters into out[0..CACHE_NCLASSES-1]
 * (out[0] unused). */
void cache_class_stats_get(struct cache *c,
                           struct cache_class_stats out[CACHE_NCLASSES]);

enum cache_counter_kind { CACHE_COUNTER, CACHE_GAUGE };

struct cache_stats {
#define CACHE_X_FIELD(name, kind, help) uint64_t name;
	CACHE_COUNTERS(CACHE_X_FIELD)
#undef CACHE_X_FIELD
};

struct cache_counter_desc {
	const char *name;
	enum cache_counter_kind kind;
	const char *help;
	size_t offset; /* of the uint64_t in struct cache_stats */
};

extern const struct cache_counter_desc cache_counters[];
extern const size_t cache_ncounters;

/* Sums the shards' counters (takes each shard's lock shared in turn). */
void cache_stats_get(struct cache *c, struct cache_stats *out);

static inline uint64_t cache_stats_value(const struct cache_stats *s, size_t i)
{
	return *(const uint64_t *)((const char *)s + cache_counters[i].offset);
}

#ifdef __cplusplus
}
#endif

#endif /* GEECACHE_CACHE_H */
