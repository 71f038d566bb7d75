/*
 * Object pools: fixed-size objects carved from a pool's blocks of the
 * class that fits. The block allocator already gives per-thread caches,
 * cross-thread puts and counters; this layer adds the object contract:
 * zeroed on get, poisoned and checked on put in debug builds.
 *
 * An object starts OBJ_OFF bytes into its block's data, past the words the
 * free lists use while the block is free: so a put object keeps all of its
 * 0xA5 poison (and ASan's), and objects are 16-byte aligned.
 */
#include "bufpool/bp_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OBJ_OFF 24 /* = FREE_WORDS free-list words (bp_internal.h) */

struct bp_objpool {
	struct bp_pool *pool;
	size_t size;
	int cls;
	_Atomic uint64_t in_use;
	char name[32];
};

struct bp_objpool *bp_objpool_create(struct bp_pool *pool, const char *name,
                                     size_t size)
{
	int cls = bp_class_of(size + OBJ_OFF);
	if (cls < 0 || size == 0) {
		errno = EINVAL;
		return NULL;
	}
	struct bp_objpool *op = calloc(1, sizeof(*op));
	if (!op)
		return NULL;
	op->pool = pool;
	op->size = size;
	op->cls = cls;
	snprintf(op->name, sizeof(op->name), "%s", name ? name : "objpool");
	return op;
}

void bp_objpool_destroy(struct bp_objpool **pop)
{
	struct bp_objpool *op = pop ? *pop : NULL;
	if (!op)
		return;
#ifndef NDEBUG
	uint64_t live = atomic_load(&op->in_use);
	if (live) {
		fprintf(stderr, "bufpool: objpool '%s' destroyed with %llu objects out\n",
		        op->name, (unsigned long long)live);
		abort();
	}
#endif
	free(op);
	*pop = NULL;
}

void *bp_objpool_get(struct bp_objpool *op)
{
	struct bp_block *b = bp__block_get_cls(op->pool, op->cls);
	if (!b)
		return NULL;
	atomic_fetch_add_explicit(&op->in_use, 1, memory_order_relaxed);
	void *obj = bp_block_data(b) + OBJ_OFF;
	memset(obj, 0, op->size);
	return obj;
}

void bp_objpool_put_(struct bp_objpool *op, void **objp)
{
	void *obj = *objp;
	if (!obj)
		return;
	struct bp_block *b = bp_block_of((char *)obj - OBJ_OFF);
#ifndef NDEBUG
	if (bp_block_refs(b) != 1 || b->cls != op->cls) {
		fprintf(stderr, "bufpool: objpool '%s': %s of %p\n", op->name,
		        bp_block_refs(b) == 0 ? "double put" : "put of a foreign object",
		        obj);
		abort();
	}
	memset(obj, 0xA5, op->size);
#endif
	/* (pool.c poisons the object's bytes for ASan when the block is freed) */
	atomic_fetch_sub_explicit(&op->in_use, 1, memory_order_relaxed);
	bp_block_unref(b);
	*objp = NULL;
}

uint64_t bp_objpool_in_use(const struct bp_objpool *op)
{
	return atomic_load_explicit(&((struct bp_objpool *)op)->in_use,
	                            memory_order_relaxed);
}
