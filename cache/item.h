/*
 * Private to the cache module: how an item is laid out in a segment, and
 * the inline helpers that encode and parse its header (every GET and SET
 * parses one, so they stay inline). See docs/cache.md, "Layout".
 *
 * Item layout inside a segment (byte aligned, no padding):
 *
 *   meta   1 byte   F_ITEM | F_FLAGS | F_EXP | F_CAS
 *   klen   1 byte
 *   vlen   varint (LEB128, 1..4 bytes)
 *   flags  4 bytes  if F_FLAGS (flags != 0)
 *   exp    4 bytes  if F_EXP   (absolute unix time, 0 = never)
 *   cas    8 bytes  if F_CAS   (only items relocated or rewritten by touch)
 *   key, value
 *
 * An item's CAS is implicit: (segment seq << OFF_BITS) | offset, unique
 * because every write appends at a fresh position and every segment reuse
 * takes a fresh seq. An item moved by eviction or touch keeps its CAS in
 * F_CAS (item_cas in cache_internal.h).
 *
 * Nothing here checks bounds: the store only parses headers it wrote.
 */
#ifndef GEECACHE_CACHE_ITEM_H
#define GEECACHE_CACHE_ITEM_H

#include <stdint.h>
#include <string.h>

#define F_ITEM 0x80u
#define F_FLAGS 0x01u
#define F_EXP 0x02u
#define F_CAS 0x04u

/* The largest header: meta, klen, a 4-byte varint and every field. */
#define ITEM_HDR_MAX (1 + 1 + 4 + 4 + 4 + 8)

/* A parsed header. */
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

/* Byte offset of the expiry field of a header that has one (F_EXP). */
static inline uint32_t hdr_exp_at(uint8_t meta, uint32_t vlen)
{
	return 2 + varint_len(vlen) + (meta & F_FLAGS ? 4 : 0);
}

/* Writes the header; returns its size (hdr_size). */
static inline uint32_t hdr_write(char *p, uint8_t meta, uint32_t klen,
                                 uint32_t vlen, uint32_t flags, uint32_t exp,
                                 uint64_t cas)
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

#endif
