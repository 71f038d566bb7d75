/*
 * Private to the cache module: how an item is laid out in a segment, and
 * the inline helpers that encode and parse its header (every GET and SET
 * parses one, so they stay inline). See docs/cache.md, "Layout" and "Meta
 * state".
 *
 * Item layout inside a segment (byte aligned, no padding):
 *
 *   meta   1 byte   F_ITEM | F_FLAGS | F_EXP | F_CAS (fixed when written)
 *                   | F_FETCHED | F_STALE | F_TOKEN (state, set in place)
 *   klen   1 byte
 *   atime  4 bytes  last access, unix seconds mod 2^32, little endian
 *   vlen   varint (LEB128, 1..4 bytes)
 *   flags  4 bytes  if F_FLAGS (flags != 0)
 *   exp    4 bytes  if F_EXP   (absolute unix time, 0 = never)
 *   cas    8 bytes  if F_CAS   (items relocated or rewritten by touch, and
 *                   new versions whose position would not give a CAS
 *                   above the old version's)
 *   key, value
 *
 * An item's CAS is implicit: (segment seq << OFF_BITS) | offset, unique
 * because every write appends at a fresh position and every segment reuse
 * takes a fresh seq. An item moved by eviction or touch keeps its CAS in
 * F_CAS (item_cas in cache_internal.h).
 *
 * State written after the item (the meta command state, memcached's h, l,
 * X, Z, W): readers change it under the shard's *shared* lock, so it is
 * only ever touched with atomic byte operations — the state bits with an
 * atomic OR on the meta byte, the access time byte by byte (items are byte
 * aligned: a 4-byte atomic could straddle a cache line). Every read of the
 * meta byte or of atime (itm_parse) is an atomic load and tolerates bits
 * being set meanwhile; the fixed bits never change after the item is
 * written. A read bumps an item (item_bump): its first read sets
 * F_FETCHED, later reads store the time when it differs — at most one
 * store per read, none once a hot item is fetched and stamped this second.
 *
 * Nothing here checks bounds: the store only parses headers it wrote.
 */
#ifndef GEECACHE_CACHE_ITEM_H
#define GEECACHE_CACHE_ITEM_H

#include <stdint.h>
#include <string.h>
#include <limits.h>

#define F_ITEM 0x80u
#define F_FLAGS 0x01u
#define F_EXP 0x02u
#define F_CAS 0x04u
/* State bits, set in place (atomically) after the item was written. */
#define F_FETCHED 0x08u /* read since written (mg h) */
#define F_STALE 0x10u   /* marked stale: md I, ms I (mg X) */
#define F_TOKEN 0x20u   /* a win token was handed out (mg Z, W) */
#define F_STATE (F_FETCHED | F_STALE | F_TOKEN)

#define ITEM_ATIME_AT 2 /* byte offset of atime */

/* The largest header: meta, klen, atime, a 4-byte varint and every field. */
#define ITEM_HDR_MAX (1 + 1 + 4 + 4 + 4 + 4 + 8)

/* A parsed header. */
struct itm {
	uint8_t meta;
	uint32_t klen, vlen, flags, exp, hdr, size;
	uint32_t atime; /* last access (unix seconds mod 2^32) */
	uint64_t cas;   /* explicit (F_CAS) or 0 */
};

/* The meta byte: fixed bits and state bits (see above). */
static inline uint8_t item_meta(const char *p)
{
	return __atomic_load_n((const uint8_t *)p, __ATOMIC_RELAXED);
}

/* Sets state bits; returns the meta byte as it was before. */
static inline uint8_t item_set_state(char *p, uint8_t bits)
{
	return __atomic_fetch_or((uint8_t *)p, bits, __ATOMIC_RELAXED);
}

static inline uint32_t item_atime(const char *p)
{
	const uint8_t *u = (const uint8_t *)p + ITEM_ATIME_AT;
	return (uint32_t)__atomic_load_n(&u[0], __ATOMIC_RELAXED) |
	       (uint32_t)__atomic_load_n(&u[1], __ATOMIC_RELAXED) << 8 |
	       (uint32_t)__atomic_load_n(&u[2], __ATOMIC_RELAXED) << 16 |
	       (uint32_t)__atomic_load_n(&u[3], __ATOMIC_RELAXED) << 24;
}

/* Stores the access time t over old (the value read before): only the
 * bytes that differ, most significant first, so that a reader racing with
 * the store sees a time at or after old — never an earlier one — and a
 * time that went past now reads as "just accessed" (item_idle). Usually
 * one byte: the low byte, once a second. */
static inline void item_atime_store(char *p, uint32_t old, uint32_t t)
{
	uint8_t *u = (uint8_t *)p + ITEM_ATIME_AT;
	for (int i = 3; i >= 0; i--) {
		uint8_t b = (uint8_t)(t >> (8 * i));
		if (b != (uint8_t)(old >> (8 * i)))
			__atomic_store_n(&u[i], b, __ATOMIC_RELAXED);
	}
}

/* Seconds since the access time atime at now (0 for a time ahead of now:
 * a store being made by a concurrent reader). */
static inline uint32_t item_idle(uint32_t atime, int64_t now)
{
	uint32_t d = (uint32_t)now - atime;
	return d > INT32_MAX ? 0 : d;
}

/* A read of the item at p whose header parsed as meta/atime: the first
 * read since it was written marks it fetched, a later one stamps the
 * access time with now when it differs (memcached's segmented LRU: the
 * first fetch sets FETCHED only). At most one store; none when nothing
 * changes. Any lock. */
static inline void item_bump(char *p, uint8_t meta, uint32_t atime, int64_t now)
{
	if (!(meta & F_FETCHED))
		item_set_state(p, F_FETCHED);
	else if (atime != (uint32_t)now)
		item_atime_store(p, atime, (uint32_t)now);
}

static inline void itm_parse(const char *p, struct itm *it)
{
	const uint8_t *u = (const uint8_t *)p;
	it->meta = item_meta(p);
	it->klen = u[1];
	it->atime = item_atime(p);
	uint32_t v = 0, i = 2 + 4;
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
	return 2 + 4 + varint_len(vlen) + (meta & F_FLAGS ? 4 : 0) +
	       (meta & F_EXP ? 4 : 0) + (meta & F_CAS ? 8 : 0);
}

/* Byte offset of the expiry field of a header that has one (F_EXP). */
static inline uint32_t hdr_exp_at(uint8_t meta, uint32_t vlen)
{
	return 2 + 4 + varint_len(vlen) + (meta & F_FLAGS ? 4 : 0);
}

/* Writes the header (meta: fixed and state bits; atime: the access time);
 * returns its size (hdr_size). The bytes are not yet visible to readers
 * (the writer holds the shard's lock exclusive). */
static inline uint32_t hdr_write(char *p, uint8_t meta, uint32_t klen,
                                 uint32_t vlen, uint32_t flags, uint32_t exp,
                                 uint64_t cas, uint32_t atime)
{
	uint8_t *u = (uint8_t *)p;
	uint32_t i = 2 + 4;
	u[0] = meta;
	u[1] = (uint8_t)klen;
	for (int b = 0; b < 4; b++)
		u[ITEM_ATIME_AT + b] = (uint8_t)(atime >> (8 * b));
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

#endif
