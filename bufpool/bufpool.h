/*
 * bufpool — all memory on GeeCache's data path.
 *
 * Four things live here, each built on the one before:
 *
 *   pool     a bp_pool hands out refcounted blocks from fine size classes.
 *            Each thread has a private cache per pool; caches trade batches
 *            with the pool's shared depot, so the hot path (get/put of a
 *            block whose class has a cached block) takes no lock and makes
 *            no system call. Blocks above the largest class come straight
 *            from mmap. A pool may have a byte limit: a get that would take
 *            it over the limit fails with NULL / -ENOMEM.
 *   slice    {block, offset, length}, owning one reference to its block.
 *   chain    a queue of slices (Netpoll's LinkBuffer): the reader parses in
 *            place, the writer gathers by reference, and the I/O glue turns
 *            both ends into iovecs for readv/writev.
 *   objpool  typed free lists of fixed-size objects (connections, timers…),
 *            zeroed on get, poisoned on put and checked for double puts in
 *            debug builds.
 *
 * Rules that hold for every call below:
 *
 *  - Errors are negative errno: -ENOMEM (limit reached or the system said
 *    no), -EAGAIN (the chain holds fewer bytes than asked), -EINVAL (a
 *    bad argument), -EXDEV (the bytes asked for span blocks and the call
 *    promised not to copy). 0 or a count is success. A failed call changes
 *    nothing.
 *  - Refcounts. A block returned by bp_block_get() has refcount 1, owned by
 *    the caller. bp_block_ref() adds one, bp_block_unref() drops one; the
 *    last unref returns the block to the cache of the thread that calls it
 *    (any thread may; the block goes back to the pool it came from).
 *    A bp_slice owns exactly one reference. A chain owns one reference per
 *    slice it holds.
 *  - Threads. bp_block_* and bp_objpool_* may be called from any thread at
 *    any time. A chain is not synchronized: one thread uses a chain at a
 *    time (hand it over with the usual happens-before, e.g. a queue).
 *    Blocks a chain references may be shared with other chains and other
 *    threads; the chain never writes into bytes it did not reserve itself.
 *  - Views. A pointer or iovec handed out by a chain reader stays valid
 *    until the next call that consumes from or resets that chain (skip,
 *    cut, reset, deinit). Take a slice (a reference) to keep bytes longer.
 *  - Thread exit. A thread's cache is given back to the pool's depot when
 *    the thread exits (pthread key destructor) or when it calls
 *    bp_pool_thread_flush(). bp_pool_destroy() requires that every other
 *    thread that used the pool has done one of these, and that every block
 *    has been put back. (bp_pool_thread_trim() empties a cache but keeps
 *    it: that is not one of these.)
 *  - The data path never calls malloc/free. The pool calls mmap for its
 *    2 MiB regions and for huge blocks, and malloc once per (thread, pool)
 *    for the thread cache; all of these are counted (sys_alloc_calls).
 */
#ifndef GEECACHE_BUFPOOL_H
#define GEECACHE_BUFPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Pools and blocks
 * ---------------------------------------------------------------------- */

struct bp_pool;  /* opaque */
struct bp_block; /* opaque; its bytes start at bp_block_data() */

/* Bytes of header in front of every block's data. The size classes count
 * them: a block of class size S has S - BP_BLOCK_HDR bytes of capacity. */
#define BP_BLOCK_HDR 8u

/* Bytes in front of the data of a huge block (and of every block of a
 * direct pool): the mapping's size, then the block header. */
#define BP_DIRECT_HDR 16u

/* Blocks whose total size (header + capacity) exceeds this come from mmap. */
#define BP_MAX_CLASS_SIZE (256u * 1024u)

/* At most this many pools exist at once in a process. */
#define BP_MAX_POOLS 16

struct bp_pool_opts {
	const char *name; /* for stats; copied; may be NULL */
	size_t limit;     /* bytes; 0 = no limit. Counts carved blocks (in use
	                   * or cached) plus huge blocks, not the 2 MiB regions
	                   * that are only reserved. */
	bool direct;      /* every block is its own mapping, as huge blocks
	                   * are: its memory and charge return at its last
	                   * unref (a store whose blocks live long) */
	size_t detach_limit; /* bytes bp_block_detach may move out of the
	                   * limit (held by detached blocks at once) */
};

/* Creates a pool. Start-up only (calls malloc and may call mmap). Returns
 * NULL with errno set when BP_MAX_POOLS pools already exist or memory is
 * short. */
struct bp_pool *bp_pool_create(const struct bp_pool_opts *opts);

/* Unmaps everything the pool holds and sets *pool to NULL. See "Thread
 * exit" above; blocks still referenced become dangling (debug builds abort
 * when blocks are still in use). Accepts NULL and a pointer to NULL. */
void bp_pool_destroy(struct bp_pool **pool);

/* Gives the calling thread's cache for this pool back to the depot and
 * forgets it (the next get on this thread makes a new one). */
void bp_pool_thread_flush(struct bp_pool *pool);

/* Giving memory back (docs/bufpool.md, "Giving memory back"). A pool
 * keeps the blocks it carved; these two calls let an idle process shrink:
 *
 * bp_pool_thread_trim gives every block cached by the calling thread's
 * cache of `pool` back to the depot, where bp_pool_release_idle can reach
 * them. It keeps the cache itself and its counters (no system call, no
 * free; the thread's next get of each class refills from the depot). Any
 * thread, for its own cache only; counted in trims.
 *
 * bp_pool_release_idle gives the pages of blocks that are free in the
 * depot back to the system (madvise), and returns how many resident bytes
 * it gave back (also summed in released_bytes). Blocks in use and blocks
 * in thread caches are not touched. Two ways:
 *  - a free block keeps its first 32 bytes (header and free-list words);
 *    the whole pages after them go back (blocks of 8 KiB and more);
 *  - a 2 MiB region whose every block is free in the depot goes back
 *    whole, but for its first page: its blocks leave the depot and are no
 *    longer charged (charged_bytes and bytes_cached drop by their size),
 *    and the region stays mapped (sys_bytes does not drop) for the pool's
 *    next carving, which then needs no mmap.
 * So charged_bytes after a release still counts every block that is
 * carved, free or in use, including free blocks whose pages were given
 * back; bytes of regions given back whole are no longer charged. A block
 * handed out later from given-back pages works as any other (its pages
 * come back zeroed on first touch; a fresh block's contents are never
 * defined). Growing again after a release makes page faults but no
 * allocator call. Takes the pool's lock for a walk over the depot and
 * every carved block's header, and makes one madvise per block or region
 * it releases and a mincore per region: not for the hot path (docs has
 * the cost; a call returns at once when the depot has not changed since
 * the last). Any thread. */
void bp_pool_thread_trim(struct bp_pool *pool);
size_t bp_pool_release_idle(struct bp_pool *pool);

/* Returns a block with at least `cap` bytes of capacity and refcount 1, or
 * NULL when the pool's limit would be exceeded or the system refuses
 * memory (counted as enomem). cap 0 is allowed (smallest class). */
struct bp_block *bp_block_get(struct bp_pool *pool, size_t cap);

/* Adds one reference. The caller must already hold one. */
void bp_block_ref(struct bp_block *blk);

/* Drops one reference; the last returns the block to its pool (through the
 * calling thread's cache). Accepts NULL. */
void bp_block_unref(struct bp_block *blk);

/* Detaches a huge block (every block of a direct pool is one) from its
 * pool's limit: its charge moves to the pool's detached budget, bounded by
 * detach_limit, until its last unref returns the memory. For an owner that
 * gives a block up while others still read it (the store evicting a
 * segment that replies still reference): the owner's limit is free at once
 * for new blocks, and what the readers keep is bounded and counted
 * (detached_bytes). The caller holds a reference. 0 (also when already
 * detached), -ENOSPC when the budget has no room, -EINVAL for a block of a
 * size class. Any thread. */
int bp_block_detach(struct bp_block *blk);

/* Current refcount (racy unless the caller holds the only reference). */
uint32_t bp_block_refs(const struct bp_block *blk);

/* Usable bytes of the block. */
size_t bp_block_cap(const struct bp_block *blk);

static inline char *bp_block_data(struct bp_block *blk)
{
	return (char *)blk + BP_BLOCK_HDR;
}

/* The block whose data starts at `data` (the inverse of bp_block_data). */
static inline struct bp_block *bp_block_of(void *data)
{
	return (struct bp_block *)((char *)data - BP_BLOCK_HDR);
}

/* Fault injection, for tests: makes block gets fail on purpose, exactly as
 * if the pool's limit had been reached (NULL / -ENOMEM, counted in enomem
 * and in faults_injected). Every get can fail: bp_block_get (cached
 * blocks, carved ones and huge ones alike), bp_objpool_get and the chain
 * calls that take a block or a node. The environment variable
 * GEECACHE_FAULT_ALLOC holds a spec, read once by the process's first
 * bp_pool_create (a malformed one is reported on stderr and ignored):
 *
 *   every:N       the Nth counted get fails, and every Nth after it (N >= 1)
 *   prob:P:SEED   each counted get fails with probability P (0 <= P <= 1),
 *                 drawn from a generator seeded with SEED + the thread's
 *                 index (threads in the order they first draw), so that
 *                 one thread's failures repeat from run to run
 *
 * followed by any of
 *
 *   ,after:M      the first M counted gets never fail (a server starts up);
 *                 every:N then fails gets M+N, M+2N, ...
 *   ,min:BYTES    only gets of blocks with at least BYTES of capacity are
 *                 counted and may fail (say, 4000: buffers fail, small
 *                 bookkeeping objects do not)
 *   ,pool:NAME    only gets from the pool of that name (bp_pool_opts.name)
 *                 are counted and may fail (geecached: "net" fails reads,
 *                 replies and rings, never the store's segments)
 *
 * Counts are process-wide (all pools, all threads) and restart whenever a
 * spec is set. Off, a get pays one load of a flag and a branch. */

/* Replaces the spec (the environment's too): NULL or "" turns injection
 * off. Returns 0, or -EINVAL for a malformed spec (nothing changes). Any
 * thread, any time; a get racing with it sees the old spec or the new. */
int bp_fault_set(const char *spec);

/* Size classes: class i holds blocks of bp_class_size(i) bytes in total
 * (header included). bp_class_of(cap) is the smallest class whose capacity
 * is >= cap, or -1 when cap needs a huge (mmap) block. */
int bp_class_count(void);
size_t bp_class_size(int cls);
int bp_class_of(size_t cap);

/* Bytes a block of capacity cap counts against its pool's limit (and in
 * charged_bytes) from bp_block_get to its last unref: its class size, or
 * for a huge block its whole mapping, rounded up to pages. For caps that
 * bp_block_get can grant (below 4 GiB). Any thread. */
size_t bp_block_charge(size_t cap);

/* ------------------------------------------------------------------------
 * Slices
 * ---------------------------------------------------------------------- */

/* A view of len bytes at data+off of blk, owning one reference to blk. A
 * zeroed slice ({NULL, 0, 0}) is empty and owns nothing. */
struct bp_slice {
	struct bp_block *blk;
	uint32_t off;
	uint32_t len;
};

static inline const char *bp_slice_ptr(const struct bp_slice *s)
{
	return bp_block_data(s->blk) + s->off;
}

/* Drops the slice's reference and zeroes it. Accepts an empty slice. */
void bp_slice_release(struct bp_slice *s);

/* Makes *dst a second slice of the same bytes (one more reference). */
void bp_slice_dup(struct bp_slice *dst, const struct bp_slice *src);

/* ------------------------------------------------------------------------
 * Chains (LinkBuffer)
 *
 * The struct is visible so that it can be embedded (in a connection, say);
 * its fields are private to bufpool. A chain allocates its nodes and the
 * blocks it writes into from `pool`; it may reference blocks of any pool.
 * ---------------------------------------------------------------------- */

struct bp_node; /* private */

struct bp_chain {
	struct bp_node *head;
	struct bp_node *tail;
	size_t len;             /* readable bytes */
	struct bp_pool *pool;
	struct bp_block *spare;      /* block prepared for reading, unused */
	struct bp_node *spare_node;  /* node that will link `spare` */
	uint32_t read_hint;          /* adaptive read size (block size) */
	uint32_t rd_offer;           /* bytes offered by the last read_iov */
	uint32_t rd_tail;            /* ... of which in the tail block */
	uint8_t tail_writable;       /* tail's space after its data is ours */
	uint8_t cut_from;            /* bp_chain_cut moved bytes out by reference */
	uint16_t copy_below;         /* append_slice copies shorter slices */
	struct bp_block *wblk;       /* a write block, its space from wend on */
	uint32_t wend;               /* ours (one reference held): replies */
	                             /* resume there after a referenced slice */
};

void bp_chain_init(struct bp_chain *c, struct bp_pool *pool);
/* Releases every reference and any spare block; the chain is then empty
 * and may be used again (deinit is reset). */
void bp_chain_deinit(struct bp_chain *c);
#define bp_chain_reset bp_chain_deinit

static inline size_t bp_chain_len(const struct bp_chain *c)
{
	return c->len;
}

/* Bytes copied by chain operations are counted by reason. */
enum bp_copy_reason {
	BP_COPY_VIEW,   /* contiguous view of bytes that span blocks */
	BP_COPY_APPEND, /* bytes appended by copy (small pieces) */
	BP_COPY_OUT,    /* bytes copied out to caller memory (bp_chain_copy_out) */
	BP_COPY__COUNT
};

/* --- reader side ------------------------------------------------------ */

/* Fills iov[0..] with the n bytes at offset `off` of the readable data,
 * without copying. Returns the number of iovecs used, -EAGAIN when the
 * chain holds fewer than off+n bytes, -EMSGSIZE when more than max_iov
 * would be needed. n == 0 returns 0. */
int bp_chain_peek_iov(const struct bp_chain *c, size_t off, size_t n,
                      struct iovec *iov, int max_iov);

/* Returns a pointer to n contiguous readable bytes at offset `off`: into the
 * chain's memory when they lie in one block, else copied into `scratch`
 * (which must hold n bytes; the copy is counted as BP_COPY_VIEW). Returns
 * NULL when the chain holds fewer than off+n bytes. */
const void *bp_chain_view(struct bp_chain *c, size_t off, size_t n,
                          void *scratch);

/* Copies n bytes at offset `off` into dst (counted as BP_COPY_OUT).
 * Returns 0 or -EAGAIN. */
int bp_chain_copy_out(struct bp_chain *c, size_t off, void *dst, size_t n);

/* Byte at offset off; the caller guarantees off < len. */
unsigned char bp_chain_byte(const struct bp_chain *c, size_t off);

/* Offset (from the read position) of the first `byte` at or after `from`,
 * looking at no more than `limit` bytes from the read position; -ENOENT if
 * absent. */
ssize_t bp_chain_find(const struct bp_chain *c, size_t from, size_t limit,
                      unsigned char byte);

/* Offset of the first occurrence of the 2-byte delimiter d0 d1 (found even
 * when it spans two blocks) at or after `from`, within `limit` bytes;
 * -ENOENT if absent. */
ssize_t bp_chain_find2(const struct bp_chain *c, size_t from, size_t limit,
                       unsigned char d0, unsigned char d1);

/* Drops the first n readable bytes (releasing blocks no longer needed).
 * Returns 0 or -EAGAIN (and drops nothing) when n > len. */
int bp_chain_skip(struct bp_chain *c, size_t n);

/* Moves the first n readable bytes to the end of dst, sharing memory (a
 * block split between the two chains gains a reference). Returns 0,
 * -EAGAIN (n > len) or -ENOMEM. */
int bp_chain_cut(struct bp_chain *src, size_t n, struct bp_chain *dst);

/* Takes a referenced slice of the n bytes at offset `off`, without
 * consuming them. Returns 0, -EAGAIN, or -EXDEV when they span blocks. */
int bp_chain_slice(const struct bp_chain *c, size_t off, size_t n,
                   struct bp_slice *out);

/* --- writer side ------------------------------------------------------ */

/* Returns a pointer to at least n contiguous writable bytes at the end of
 * the chain (in the tail block, or a new block of at least n bytes), or
 * NULL (-ENOMEM). Nothing becomes readable until bp_chain_commit(). Writes
 * past the committed bytes are discarded by any other chain operation. */
void *bp_chain_reserve(struct bp_chain *c, size_t n);

/* Makes n bytes of the last reservation readable (n <= reserved). */
void bp_chain_commit(struct bp_chain *c, size_t n);

/* Appends n bytes by copy (counted as BP_COPY_APPEND). 0 or -ENOMEM. */
int bp_chain_append(struct bp_chain *c, const void *p, size_t n);

/* Appends the slice's bytes by reference: the chain takes its own
 * reference; the caller keeps theirs. 0 or -ENOMEM. */
int bp_chain_append_ref(struct bp_chain *c, const struct bp_slice *s);

/* Appends the bytes of s the cheaper way: by copy when s->len is below the
 * chain's copy threshold, else by reference. The default, BP_COPY_THRESHOLD,
 * is measured (bench BM_RespCopy vs BM_RespRef, docs/bufpool.md): below
 * about 1 KiB one more iovec in writev costs more than copying the bytes
 * (Netpoll's LinkBuffer makes the same trade for small slices). Callers
 * that must never copy use bp_chain_append_ref. */
#define BP_COPY_THRESHOLD 1024u
int bp_chain_append_slice(struct bp_chain *c, const struct bp_slice *s);

/* The chain's copy threshold for bp_chain_append_slice: slices shorter
 * than n bytes are copied (0: every slice by reference). It survives
 * bp_chain_reset. n is capped at 65535. */
void bp_chain_set_copy_below(struct bp_chain *c, size_t n);
static inline size_t bp_chain_copy_below(const struct bp_chain *c)
{
	return c->copy_below;
}

/* Adopts len bytes at data+off of blk, taking over the caller's reference
 * (io_uring's provided buffers arrive this way). On -ENOMEM the caller
 * still owns the reference. */
int bp_chain_adopt(struct bp_chain *c, struct bp_block *blk, uint32_t off,
                   uint32_t len);

/* The same, and the block's bytes after data+off+len become the chain's
 * to write into (its tail's room, for bp_chain_append and the readers of
 * bp_chain_tail_room): for a block handed over whole, into which nothing
 * else writes, such as a provided buffer the kernel has filled and
 * released. Bytes appended later land beside the adopted ones instead of
 * in a block of their own. On -ENOMEM the caller still owns the
 * reference. */
int bp_chain_adopt_writable(struct bp_chain *c, struct bp_block *blk, uint32_t off,
                            uint32_t len);

/* Bytes bp_chain_append can copy into the tail block without taking
 * another: the room after its data when the chain may write there, else
 * 0. */
size_t bp_chain_tail_room(const struct bp_chain *c);

/* Appends n bytes by copy (counted as BP_COPY_APPEND) like
 * bp_chain_append, but the bytes past the tail's room go into a block
 * sized for them alone (the smallest class that holds them) rather than
 * into a 4 KiB write block, so that the new tail is about full: a reader
 * that adopts whole buffers next leaves little room behind. 0 or -ENOMEM
 * (nothing appended). */
int bp_chain_append_fit(struct bp_chain *c, const void *p, size_t n);

/* Moves all of src's bytes to the end of dst (no copy, no refcount change);
 * src is left empty. */
void bp_chain_append_chain(struct bp_chain *dst, struct bp_chain *src);

/* --- I/O glue --------------------------------------------------------- */

/* Prepares free space for readv: the tail block's free space and, when that
 * is less than the adaptive read size, one new block. Fills iov[0..] (at
 * most 2) and returns the count, or -ENOMEM. The read size grows when a
 * read fills everything offered and shrinks when reads use little of it. */
int bp_chain_read_iov(struct bp_chain *c, struct iovec *iov, int max_iov);

/* Makes n bytes read into the space of the last bp_chain_read_iov readable
 * (n <= what was offered). */
void bp_chain_read_commit(struct bp_chain *c, size_t n);

/* Drops any block prepared for reading and not yet used, and the empty
 * tail block, so that an idle chain pins no memory. */
void bp_chain_trim(struct bp_chain *c);

/* True when the chain may still write into its tail block, has room left
 * there, and that block is also referenced from elsewhere: a cut or a
 * slice took the bytes before the room by reference. Keeping such a tail
 * (not trimming it) lets the next small read land next to them instead of
 * in a fresh block. */
bool bp_chain_tail_shared(const struct bp_chain *c);

/* True once bp_chain_cut has moved bytes from this chain to another by
 * reference (since init or reset): its reader forwards what it receives
 * rather than consuming it. netpoll then keeps the input's shared tail
 * for the next read (bp_chain_tail_shared), and its io_uring backend
 * copies the connection's small pieces instead of lending out a 4 KiB
 * buffer each. */
static inline bool bp_chain_was_cut(const struct bp_chain *c)
{
	return c->cut_from;
}

/* Fills iov[0..max_iov) with the readable data from the start, without
 * copying; returns the count (0 when empty). *bytes (if not NULL) gets the
 * total. After writev/sendmsg wrote k bytes, call bp_chain_skip(c, k). */
int bp_chain_write_iov(const struct bp_chain *c, struct iovec *iov,
                       int max_iov, size_t *bytes);

/* Number of slices (iovecs) the readable data occupies. */
size_t bp_chain_nslices(const struct bp_chain *c);

/* ------------------------------------------------------------------------
 * Object pools
 * ---------------------------------------------------------------------- */

struct bp_objpool; /* opaque */

/* A pool of objects of `size` bytes, drawn from `pool`'s blocks. Start-up
 * only. NULL with errno on failure. */
struct bp_objpool *bp_objpool_create(struct bp_pool *pool, const char *name,
                                     size_t size);
/* Every object must have been put back. Sets *op to NULL; accepts NULL. */
void bp_objpool_destroy(struct bp_objpool **op);

/* A zeroed object, or NULL when the pool's memory is exhausted. */
void *bp_objpool_get(struct bp_objpool *op);

/* Returns *objp to the pool and sets *objp to NULL (accepts a NULL *objp).
 * Debug builds fill the object with 0xA5 and abort on a double put. Any
 * thread may put. */
void bp_objpool_put_(struct bp_objpool *op, void **objp);
#define bp_objpool_put(op, pp) bp_objpool_put_((op), (void **)(pp))

/* Objects handed out and not yet put back (exact when quiescent). */
uint64_t bp_objpool_in_use(const struct bp_objpool *op);

/* ------------------------------------------------------------------------
 * Counters
 *
 * Kept per thread with plain (relaxed, lock-free) stores, summed on demand;
 * threads that exited are folded into the pool's totals. Declared once:
 * BP_COUNTERS drives struct bp_stats, the named table bp_counters[] and
 * whatever prints them (stats, /metrics).
 * ---------------------------------------------------------------------- */

#define BP_COUNTERS(X)                                                        \
	X(sys_alloc_calls, COUNTER, "calls into the system allocator (mmap, malloc)") \
	X(sys_free_calls, COUNTER, "calls returning memory to the system (munmap, madvise, free)") \
	X(sys_bytes, GAUGE, "bytes currently mapped or allocated from the system") \
	X(released_bytes, COUNTER, "resident bytes of idle blocks given back to the system (madvise)") \
	X(release_calls, COUNTER, "passes giving idle blocks back (bp_pool_release_idle)") \
	X(trims, COUNTER, "thread caches emptied into the shared depot (bp_pool_thread_trim)") \
	X(limit_bytes, GAUGE, "byte limit of the pool (0 = none)")              \
	X(charged_bytes, GAUGE, "bytes counted against the limit")              \
	X(blocks_in_use, GAUGE, "blocks handed out and not yet returned")       \
	X(bytes_in_use, GAUGE, "bytes (class size) of blocks in use")           \
	X(bytes_cached, GAUGE, "bytes of free blocks held in caches and depot") \
	X(block_gets, COUNTER, "blocks handed out")                             \
	X(block_puts, COUNTER, "blocks returned")                               \
	X(pool_hits, COUNTER, "gets served by the thread cache")                \
	X(pool_misses, COUNTER, "gets that went to the depot or carved memory") \
	X(huge_gets, COUNTER, "blocks above the largest class (mmap)")          \
	X(enomem, COUNTER, "gets refused: limit reached or no memory")          \
	X(faults_injected, COUNTER, "gets refused by fault injection (of enomem)") \
	X(detached_bytes, GAUGE, "bytes of detached blocks still referenced (outside the limit)") \
	X(detached_peak_bytes, GAUGE, "the most detached_bytes has been")      \
	X(detaches, COUNTER, "blocks detached from the limit while referenced") \
	X(copied_view_bytes, COUNTER, "bytes copied for contiguous views across blocks") \
	X(copied_append_bytes, COUNTER, "bytes appended to chains by copy")     \
	X(copied_out_bytes, COUNTER, "bytes copied out of chains to caller memory")

enum bp_counter_kind { BP_COUNTER, BP_GAUGE };

struct bp_stats {
#define BP_X_FIELD(name, kind, help) uint64_t name;
	BP_COUNTERS(BP_X_FIELD)
#undef BP_X_FIELD
};

struct bp_counter_desc {
	const char *name;
	enum bp_counter_kind kind;
	const char *help;
	size_t offset; /* of the uint64_t in struct bp_stats */
};

extern const struct bp_counter_desc bp_counters[];
extern const size_t bp_ncounters;

/* Sums every thread's counters of the pool into *out. Takes the pool's
 * lock (not for the hot path). */
void bp_pool_stats(struct bp_pool *pool, struct bp_stats *out);

static inline uint64_t bp_stats_value(const struct bp_stats *s, size_t i)
{
	return *(const uint64_t *)((const char *)s + bp_counters[i].offset);
}

struct bp_class_stats {
	size_t size;     /* total block size of the class */
	uint64_t gets, puts, hits, misses;
	uint64_t in_use; /* gets - puts */
	uint64_t carved; /* blocks carved for this class, less those whose
	                  * region bp_pool_release_idle gave back whole */
};

/* Per-class counters; -EINVAL for a bad class. */
int bp_pool_class_stats(struct bp_pool *pool, int cls,
                        struct bp_class_stats *out);

/* Name given at create (or "bufpool"). */
const char *bp_pool_name(const struct bp_pool *pool);

#ifdef __cplusplus
}
#endif

#endif /* GEECACHE_BUFPOOL_H */
