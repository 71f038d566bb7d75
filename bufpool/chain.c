/*
 * Chains: a singly linked queue of nodes, each a slice holding one
 * reference to its block.
 *
 * Invariants:
 *  - c->len is the sum of the nodes' len. Nodes of length 0 may sit
 *    anywhere (a reservation never committed, a reused tail); every reader
 *    steps over them.
 *  - Only the tail can be written, and only when tail_writable says the
 *    block's bytes after tail->off + tail->len were reserved by this chain
 *    (a block it took for writing, not one it references).
 *  - wblk/wend: when a referenced slice ends a writable tail, the chain
 *    keeps a reference to the tail's block and the end of its bytes; the
 *    next write continues in that block, in a new node, instead of taking a
 *    fresh block. A pipeline's replies (header, value by reference, header,
 *    ...) then share one write block instead of one per reply.
 *  - spare/spare_node: a block (and the node to link it) prepared by
 *    read_iov for bytes the kernel may write past the tail; linked by
 *    read_commit when the read reached it, kept for the next read if not.
 */
#include "bufpool/bp_internal.h"

#include <errno.h>
#include <string.h>

#define WRITE_BLOCK 4096u        /* block size for reserve/append ... */
#define WRITE_FIRST 1024u        /* ... but an empty chain's first is
                                  * smaller: see new_write_tail */
#define READ_MIN 2048u           /* adaptive read size bounds (block size) */
#define READ_MAX 65536u
#define READ_START 16384u
#define NODE_CLS 0               /* a node is a block of the smallest class */

_Static_assert(sizeof(struct bp_node) <= 32 - BP_BLOCK_HDR, "node fits class 0");

/* ---- nodes ------------------------------------------------------------ */

static struct bp_node *node_get(struct bp_pool *pool)
{
	struct bp_block *b = bp__block_get_cls(pool, NODE_CLS);
	return b ? (struct bp_node *)bp_block_data(b) : NULL;
}

static void node_put(struct bp_node *n)
{
	bp_block_unref(bp_block_of(n));
}

/* Releases the node and the reference it holds. */
static void node_free(struct bp_node *n)
{
	bp_block_unref(n->blk);
	node_put(n);
}

static void link_tail(struct bp_chain *c, struct bp_node *n)
{
	n->next = NULL;
	if (c->tail)
		c->tail->next = n;
	else
		c->head = n;
	c->tail = n;
	c->len += n->len;
}

static inline size_t tail_space(const struct bp_chain *c)
{
	if (!c->tail_writable)
		return 0;
	const struct bp_node *t = c->tail;
	return bp_block_cap(t->blk) - t->off - t->len;
}

/* First node with readable bytes at offset *off (updated to the offset
 * inside it). The caller ensures off < len. */
static struct bp_node *locate(const struct bp_chain *c, size_t *off)
{
	struct bp_node *n = c->head;
	size_t o = *off;
	while (o >= n->len) {
		o -= n->len;
		n = n->next;
	}
	*off = o;
	return n;
}

/* ---- life ------------------------------------------------------------- */

void bp_chain_init(struct bp_chain *c, struct bp_pool *pool)
{
	memset(c, 0, sizeof(*c));
	c->pool = pool;
	c->read_hint = READ_START;
	c->copy_below = BP_COPY_THRESHOLD;
}

void bp_chain_set_copy_below(struct bp_chain *c, size_t n)
{
	c->copy_below = n > UINT16_MAX ? UINT16_MAX : (uint16_t)n;
}

void bp_chain_deinit(struct bp_chain *c)
{
	struct bp_node *n = c->head;
	while (n) {
		struct bp_node *next = n->next;
		node_free(n);
		n = next;
	}
	bp_block_unref(c->spare);
	if (c->spare_node)
		node_put(c->spare_node);
	bp_block_unref(c->wblk);
	uint16_t copy_below = c->copy_below;
	bp_chain_init(c, c->pool);
	c->copy_below = copy_below;
}

/* ---- reader ----------------------------------------------------------- */

int bp_chain_peek_iov(const struct bp_chain *c, size_t off, size_t n,
                      struct iovec *iov, int max_iov)
{
	if (off + n > c->len || off + n < off)
		return -EAGAIN;
	if (n == 0)
		return 0;
	struct bp_node *nd = locate(c, &off);
	int k = 0;
	while (n) {
		if (nd->len > off) {
			if (k == max_iov)
				return -EMSGSIZE;
			size_t take = nd->len - off < n ? nd->len - off : n;
			iov[k].iov_base = bp_block_data(nd->blk) + nd->off + off;
			iov[k].iov_len = take;
			k++;
			n -= take;
		}
		off = 0;
		nd = nd->next;
	}
	return k;
}

/* Copies n bytes from offset off (which the caller checked) into dst. */
static void gather(const struct bp_chain *c, size_t off, char *dst, size_t n)
{
	struct bp_node *nd = locate(c, &off);
	while (n) {
		size_t take = nd->len - off < n ? nd->len - off : n;
		memcpy(dst, bp_block_data(nd->blk) + nd->off + off, take);
		dst += take;
		n -= take;
		off = 0;
		nd = nd->next;
	}
}

const void *bp_chain_view(struct bp_chain *c, size_t off, size_t n,
                          void *scratch)
{
	if (off + n > c->len || off + n < off)
		return NULL;
	if (n == 0)
		return scratch;
	size_t o = off;
	struct bp_node *nd = locate(c, &o);
	if (nd->len - o >= n)
		return bp_block_data(nd->blk) + nd->off + o;
	gather(c, off, scratch, n);
	bp__count_copy(c->pool, BP_COPY_VIEW, n);
	return scratch;
}

int bp_chain_copy_out(struct bp_chain *c, size_t off, void *dst, size_t n)
{
	if (off + n > c->len || off + n < off)
		return -EAGAIN;
	if (n == 0)
		return 0;
	gather(c, off, dst, n);
	bp__count_copy(c->pool, BP_COPY_OUT, n);
	return 0;
}

unsigned char bp_chain_byte(const struct bp_chain *c, size_t off)
{
	struct bp_node *nd = locate(c, &off);
	return (unsigned char)bp_block_data(nd->blk)[nd->off + off];
}

ssize_t bp_chain_find(const struct bp_chain *c, size_t from, size_t limit,
                      unsigned char byte)
{
	if (limit > c->len)
		limit = c->len;
	if (from >= limit)
		return -ENOENT;
	size_t o = from;
	struct bp_node *nd = locate(c, &o);
	size_t base = from - o; /* chain offset of nd's first byte */
	while (nd && base < limit) {
		size_t end = nd->len < limit - base ? nd->len : limit - base;
		if (end > o) {
			const char *p = bp_block_data(nd->blk) + nd->off;
			const char *hit = memchr(p + o, byte, end - o);
			if (hit)
				return (ssize_t)(base + (size_t)(hit - p));
		}
		base += nd->len;
		o = 0;
		nd = nd->next;
	}
	return -ENOENT;
}

/* First readable byte after node nd (skipping empty nodes), or -1. */
static int next_first_byte(const struct bp_node *nd)
{
	for (nd = nd->next; nd; nd = nd->next)
		if (nd->len)
			return (unsigned char)bp_block_data(nd->blk)[nd->off];
	return -1;
}

ssize_t bp_chain_find2(const struct bp_chain *c, size_t from, size_t limit,
                       unsigned char d0, unsigned char d1)
{
	if (limit > c->len)
		limit = c->len;
	if (limit < 2 || from >= limit - 1)
		return -ENOENT;
	size_t o = from;
	struct bp_node *nd = locate(c, &o);
	size_t base = from - o;
	/* d0 may sit at any offset < limit - 1. */
	while (nd && base < limit - 1) {
		size_t end = nd->len < limit - 1 - base ? nd->len : limit - 1 - base;
		const char *p = bp_block_data(nd->blk) + nd->off;
		while (o < end) {
			const char *hit = memchr(p + o, d0, end - o);
			if (!hit)
				break;
			size_t i = (size_t)(hit - p);
			int nb = i + 1 < nd->len ? (unsigned char)p[i + 1]
			                         : next_first_byte(nd);
			if (nb == d1)
				return (ssize_t)(base + i);
			o = i + 1;
		}
		base += nd->len;
		o = 0;
		nd = nd->next;
	}
	return -ENOENT;
}

int bp_chain_skip(struct bp_chain *c, size_t n)
{
	if (n > c->len)
		return -EAGAIN;
	c->len -= n;
	while (c->head) {
		struct bp_node *nd = c->head;
		if (nd->len > n) {
			nd->off += (uint32_t)n;
			nd->len -= (uint32_t)n;
			return 0;
		}
		n -= nd->len;
		if (nd == c->tail) {
			/* Fully read tail: when the block is ours alone, write
			 * from its start again instead of taking a new one. */
			if (c->tail_writable && bp_block_refs(nd->blk) == 1) {
				nd->off = 0;
				nd->len = 0;
				return 0;
			}
			c->head = c->tail = NULL;
			c->tail_writable = 0;
			node_free(nd);
			return 0;
		}
		c->head = nd->next;
		node_free(nd);
		if (n == 0 && c->head && c->head->len)
			return 0;
	}
	return 0;
}

int bp_chain_cut(struct bp_chain *src, size_t n, struct bp_chain *dst)
{
	if (n > src->len)
		return -EAGAIN;
	if (n == 0)
		return 0;
	/* Does the cut end inside a node? Then one node must be made, first,
	 * so that a failure changes nothing. */
	size_t o = n - 1;
	struct bp_node *last = locate(src, &o);
	struct bp_node *split = NULL;
	if (o + 1 < last->len || (last == src->tail && src->tail_writable)) {
		split = node_get(dst->pool);
		if (!split)
			return -ENOMEM;
	}
	/* Move whole nodes up to (not including) `last`, then `last` whole or
	 * split. */
	struct bp_node *nd = src->head;
	size_t moved = 0;
	while (nd != last) {
		struct bp_node *next = nd->next;
		moved += nd->len;
		link_tail(dst, nd);
		nd = next;
	}
	src->head = last;
	size_t rest = n - moved;
	if (split) {
		/* The writable tail stays with src even when wholly cut, so
		 * that src keeps writing into its own block. */
		bp_block_ref(last->blk);
		split->blk = last->blk;
		split->off = last->off;
		split->len = (uint32_t)rest;
		last->off += (uint32_t)rest;
		last->len -= (uint32_t)rest;
		link_tail(dst, split);
	} else {
		src->head = last->next;
		if (src->tail == last)
			src->tail = NULL;
		link_tail(dst, last);
	}
	dst->tail_writable = 0;
	src->len -= n;
	src->cut_from = 1;
	return 0;
}

int bp_chain_slice(const struct bp_chain *c, size_t off, size_t n,
                   struct bp_slice *out)
{
	if (off + n > c->len || off + n < off)
		return -EAGAIN;
	if (n == 0) {
		out->blk = NULL;
		out->off = out->len = 0;
		return 0;
	}
	struct bp_node *nd = locate(c, &off);
	if (nd->len - off < n)
		return -EXDEV;
	bp_block_ref(nd->blk);
	out->blk = nd->blk;
	out->off = nd->off + (uint32_t)off;
	out->len = (uint32_t)n;
	return 0;
}

size_t bp_chain_nslices(const struct bp_chain *c)
{
	size_t k = 0;
	for (struct bp_node *nd = c->head; nd; nd = nd->next)
		k += nd->len != 0;
	return k;
}

/* ---- writer ----------------------------------------------------------- */

/* Links a fresh writable block of at least `need` bytes as the tail. An
 * empty chain starts with a block of 1 KiB, or copy_below + 512 bytes when
 * that is more (up to 4 KiB), so that a reply and a value copied beside
 * its header still go out as one piece: most output chains carry one
 * batch's small replies (a pipeline of 16 binary GET replies of 32-byte
 * values fits) and are sent and emptied at the batch's end, when a loop
 * may hold one such block for each of 256 connections at once, and what a
 * burst leaves in the pool's caches grows with the first block's size
 * (docs/bufpool.md, "Size classes, and why"). Later blocks of a chain are
 * 4 KiB. */
static void *new_write_tail(struct bp_chain *c, size_t need)
{
	size_t unit = WRITE_BLOCK;
	if (!c->head) {
		size_t first = (size_t)c->copy_below + 512u;
		unit = first < WRITE_FIRST ? WRITE_FIRST : first < WRITE_BLOCK ? first : WRITE_BLOCK;
	}
	unit -= BP_BLOCK_HDR;
	size_t cap = need > unit ? need : unit;
	if (cap > UINT32_MAX)
		return NULL;
	struct bp_node *nd = node_get(c->pool);
	if (!nd)
		return NULL;
	if (c->wblk && bp_block_cap(c->wblk) - c->wend >= need) {
		/* Continue the write block after a referenced slice; the
		 * chain's reference passes to the node. */
		nd->blk = c->wblk;
		nd->off = c->wend;
		nd->len = 0;
		c->wblk = NULL;
		link_tail(c, nd);
		c->tail_writable = 1;
		return bp_block_data(nd->blk) + nd->off;
	}
	bp_block_unref(c->wblk);
	c->wblk = NULL;
	struct bp_block *b = bp_block_get(c->pool, cap);
	if (!b) {
		node_put(nd);
		return NULL;
	}
	nd->blk = b;
	nd->off = 0;
	nd->len = 0;
	link_tail(c, nd);
	c->tail_writable = 1;
	return bp_block_data(b);
}

void *bp_chain_reserve(struct bp_chain *c, size_t n)
{
	if (tail_space(c) >= n && c->tail)
		return bp_block_data(c->tail->blk) + c->tail->off + c->tail->len;
	return new_write_tail(c, n);
}

void bp_chain_commit(struct bp_chain *c, size_t n)
{
	c->tail->len += (uint32_t)n;
	c->len += n;
}

int bp_chain_append(struct bp_chain *c, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	size_t space = c->tail ? tail_space(c) : 0;
	const char *src = p;
	if (space >= n) {
		struct bp_node *t = c->tail;
		memcpy(bp_block_data(t->blk) + t->off + t->len, src, n);
		bp_chain_commit(c, n);
	} else {
		/* Fill the old tail only once the new block is secured. */
		struct bp_node *old = c->tail;
		char *dst = new_write_tail(c, n - space);
		if (!dst)
			return -ENOMEM;
		if (space) {
			memcpy(bp_block_data(old->blk) + old->off + old->len, src, space);
			old->len += (uint32_t)space;
			c->len += space;
		}
		memcpy(dst, src + space, n - space);
		bp_chain_commit(c, n - space);
	}
	bp__count_copy(c->pool, BP_COPY_APPEND, n);
	return 0;
}

int bp_chain_append_ref(struct bp_chain *c, const struct bp_slice *s)
{
	if (s->len == 0)
		return 0;
	struct bp_node *t = c->tail;
	/* Bytes that continue the tail's slice of the same block extend it:
	 * the node's one reference covers both. */
	if (t && !c->tail_writable && t->blk == s->blk && t->off + t->len == s->off) {
		t->len += s->len;
		c->len += s->len;
		return 0;
	}
	struct bp_node *nd = node_get(c->pool);
	if (!nd)
		return -ENOMEM;
	if (c->tail_writable) {
		bp_block_unref(c->wblk);
		bp_block_ref(t->blk);
		c->wblk = t->blk;
		c->wend = t->off + t->len;
	}
	bp_block_ref(s->blk);
	nd->blk = s->blk;
	nd->off = s->off;
	nd->len = s->len;
	link_tail(c, nd);
	c->tail_writable = 0;
	return 0;
}

int bp_chain_append_slice(struct bp_chain *c, const struct bp_slice *s)
{
	if (s->len < c->copy_below)
		return bp_chain_append(c, bp_slice_ptr(s), s->len);
	return bp_chain_append_ref(c, s);
}

int bp_chain_adopt(struct bp_chain *c, struct bp_block *blk, uint32_t off,
                   uint32_t len)
{
	if (len == 0) {
		bp_block_unref(blk);
		return 0;
	}
	struct bp_node *nd = node_get(c->pool);
	if (!nd)
		return -ENOMEM;
	nd->blk = blk;
	nd->off = off;
	nd->len = len;
	link_tail(c, nd);
	c->tail_writable = 0;
	return 0;
}

int bp_chain_adopt_writable(struct bp_chain *c, struct bp_block *blk, uint32_t off,
                            uint32_t len)
{
	struct bp_node *nd = node_get(c->pool);
	if (!nd)
		return -ENOMEM;
	nd->blk = blk;
	nd->off = off;
	nd->len = len;
	link_tail(c, nd);
	c->tail_writable = 1;
	return 0;
}

size_t bp_chain_tail_room(const struct bp_chain *c)
{
	return c->tail ? tail_space(c) : 0;
}

int bp_chain_append_fit(struct bp_chain *c, const void *p, size_t n)
{
	size_t space = c->tail ? tail_space(c) : 0;
	if (space >= n)
		return bp_chain_append(c, p, n);
	/* The block and its node first, so that a failure changes nothing. */
	size_t rest = n - space;
	if (rest > UINT32_MAX)
		return -ENOMEM;
	struct bp_node *nd = node_get(c->pool);
	if (!nd)
		return -ENOMEM;
	struct bp_block *b = bp_block_get(c->pool, rest);
	if (!b) {
		node_put(nd);
		return -ENOMEM;
	}
	const char *src = p;
	if (space) {
		struct bp_node *t = c->tail;
		memcpy(bp_block_data(t->blk) + t->off + t->len, src, space);
		t->len += (uint32_t)space;
		c->len += space;
	}
	memcpy(bp_block_data(b), src + space, rest);
	bp_block_unref(c->wblk); /* a write block left behind is not resumed */
	c->wblk = NULL;
	nd->blk = b;
	nd->off = 0;
	nd->len = (uint32_t)rest;
	link_tail(c, nd);
	c->tail_writable = 1;
	bp__count_copy(c->pool, BP_COPY_APPEND, n);
	return 0;
}

void bp_chain_append_chain(struct bp_chain *dst, struct bp_chain *src)
{
	if (!src->head)
		return;
	if (dst->tail)
		dst->tail->next = src->head;
	else
		dst->head = src->head;
	dst->tail = src->tail;
	dst->len += src->len;
	dst->tail_writable = src->tail_writable;
	src->head = src->tail = NULL;
	src->len = 0;
	src->tail_writable = 0;
}

/* ---- I/O glue --------------------------------------------------------- */

int bp_chain_read_iov(struct bp_chain *c, struct iovec *iov, int max_iov)
{
	if (max_iov < 1)
		return -EINVAL;
	size_t space = c->tail ? tail_space(c) : 0;
	int k = 0;
	c->rd_offer = c->rd_tail = 0;
	if (space) {
		struct bp_node *t = c->tail;
		iov[k].iov_base = bp_block_data(t->blk) + t->off + t->len;
		iov[k].iov_len = space;
		k++;
		c->rd_tail = c->rd_offer = (uint32_t)space;
	}
	if (space >= c->read_hint - BP_BLOCK_HDR || k == max_iov)
		return k;
	if (!c->spare_node && !(c->spare_node = node_get(c->pool)))
		return k ? k : -ENOMEM;
	if (!c->spare && !(c->spare = bp_block_get(c->pool, c->read_hint - BP_BLOCK_HDR)))
		return k ? k : -ENOMEM;
	size_t cap = bp_block_cap(c->spare);
	iov[k].iov_base = bp_block_data(c->spare);
	iov[k].iov_len = cap;
	c->rd_offer += (uint32_t)cap;
	return k + 1;
}

void bp_chain_read_commit(struct bp_chain *c, size_t n)
{
	size_t a = n < c->rd_tail ? n : c->rd_tail;
	if (a) {
		c->tail->len += (uint32_t)a;
		c->len += a;
	}
	if (n > a) {
		struct bp_node *nd = c->spare_node;
		nd->blk = c->spare;
		nd->off = 0;
		nd->len = (uint32_t)(n - a);
		link_tail(c, nd);
		c->tail_writable = 1;
		c->spare = NULL;
		c->spare_node = NULL;
	}
	/* Adapt: grow when the read took all we offered, shrink when reads
	 * use under a quarter of the read size. */
	if (n >= c->rd_offer && c->read_hint < READ_MAX)
		c->read_hint *= 2;
	else if (n < c->read_hint / 4 && c->read_hint > READ_MIN)
		c->read_hint /= 2;
	if (c->spare && bp_block_cap(c->spare) + BP_BLOCK_HDR < c->read_hint) {
		bp_block_unref(c->spare); /* too small now; the next read takes one */
		c->spare = NULL;
	}
	c->rd_offer = c->rd_tail = 0;
}

void bp_chain_trim(struct bp_chain *c)
{
	bp_block_unref(c->spare);
	c->spare = NULL;
	bp_block_unref(c->wblk);
	c->wblk = NULL;
	if (c->spare_node)
		node_put(c->spare_node);
	c->spare_node = NULL;
	if (c->tail && c->tail->len == 0) {
		struct bp_node *t = c->tail, *prev = NULL;
		for (struct bp_node *nd = c->head; nd != t; nd = nd->next)
			prev = nd;
		if (prev)
			prev->next = NULL;
		else
			c->head = NULL;
		c->tail = prev;
		c->tail_writable = 0;
		node_free(t);
	}
}

bool bp_chain_tail_shared(const struct bp_chain *c)
{
	return c->tail && tail_space(c) && bp_block_refs(c->tail->blk) > 1;
}

int bp_chain_write_iov(const struct bp_chain *c, struct iovec *iov,
                       int max_iov, size_t *bytes)
{
	int k = 0;
	size_t total = 0;
	for (struct bp_node *nd = c->head; nd && k < max_iov; nd = nd->next) {
		if (!nd->len)
			continue;
		iov[k].iov_base = bp_block_data(nd->blk) + nd->off;
		iov[k].iov_len = nd->len;
		total += nd->len;
		k++;
	}
	if (bytes)
		*bytes = total;
	return k;
}
