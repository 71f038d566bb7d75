/*
 * Counters: the table every consumer of bufpool's counters walks
 * (bp_counters, from BP_COUNTERS in bufpool.h) and the sums over a pool's
 * live and retired thread caches and its rare-path atomics
 * (bp_pool_stats, bp_pool_class_stats).
 */
#include "bufpool/bp_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>

const struct bp_counter_desc bp_counters[] = {
#define BP_X_DESC(n, kind, help) {#n, BP_##kind, help, offsetof(struct bp_stats, n)},
	BP_COUNTERS(BP_X_DESC)
#undef BP_X_DESC
};
const size_t bp_ncounters = sizeof(bp_counters) / sizeof(bp_counters[0]);

/* Sums one class's counters over live and retired threads. Locked. */
static void class_sum(struct bp_pool *pool, int cls, struct bp_class_stats *o)
{
	o->size = bp__class_size[cls];
	o->gets = pool->retired.gets[cls];
	o->puts = pool->retired.puts[cls];
	o->misses = pool->retired.misses[cls];
	for (struct bp_tcache *tc = pool->threads; tc; tc = tc->next) {
		struct tbin *b = &tc->bins[cls];
		o->gets += bp__ctr_get(&b->gets);
		o->puts += bp__ctr_get(&b->puts);
		o->misses += bp__ctr_get(&b->misses);
	}
	/* gets and puts are read at slightly different moments; never report
	 * a negative population. */
	o->hits = o->gets > o->misses ? o->gets - o->misses : 0;
	o->in_use = o->gets > o->puts ? o->gets - o->puts : 0;
	o->carved = pool->depot[cls].carved;
}

int bp_pool_class_stats(struct bp_pool *pool, int cls,
                        struct bp_class_stats *out)
{
	if (cls < 0 || cls >= BP_NCLASSES)
		return -EINVAL;
	pthread_mutex_lock(&pool->lock);
	class_sum(pool, cls, out);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

void bp_pool_stats(struct bp_pool *pool, struct bp_stats *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_lock(&pool->lock);
	for (int i = 0; i < BP_NCLASSES; i++) {
		struct bp_class_stats c;
		class_sum(pool, i, &c);
		s->block_gets += c.gets;
		s->block_puts += c.puts;
		s->pool_hits += c.hits;
		s->pool_misses += c.misses;
		s->blocks_in_use += c.in_use;
		s->bytes_in_use += c.in_use * c.size;
		if (c.carved > c.in_use)
			s->bytes_cached += (c.carved - c.in_use) * c.size;
	}
	uint64_t copied[BP_COPY__COUNT];
	for (int r = 0; r < BP_COPY__COUNT; r++) {
		copied[r] = pool->retired.copied[r];
		for (struct bp_tcache *tc = pool->threads; tc; tc = tc->next)
			copied[r] += bp__ctr_get(&tc->copied[r]);
	}
	pthread_mutex_unlock(&pool->lock);
	s->copied_view_bytes = copied[BP_COPY_VIEW];
	s->copied_append_bytes = copied[BP_COPY_APPEND];
	s->copied_out_bytes = copied[BP_COPY_OUT];
	uint64_t hg = atomic_load(&pool->huge_gets), hp = atomic_load(&pool->huge_puts);
	s->huge_gets = hg;
	s->block_gets += hg;
	s->block_puts += hp;
	s->blocks_in_use += hg > hp ? hg - hp : 0;
	s->bytes_in_use += atomic_load(&pool->huge_bytes);
	s->sys_alloc_calls = atomic_load(&pool->sys_alloc_calls);
	s->sys_free_calls = atomic_load(&pool->sys_free_calls);
	s->sys_bytes = atomic_load(&pool->sys_bytes);
	s->limit_bytes = pool->limit;
	s->charged_bytes = atomic_load(&pool->charged);
	s->enomem = atomic_load(&pool->enomem);
	s->faults_injected = atomic_load(&pool->faults_injected);
	s->released_bytes = atomic_load(&pool->released_bytes);
	s->release_calls = atomic_load(&pool->release_calls);
	s->trims = atomic_load(&pool->trims);
	s->detached_bytes = atomic_load(&pool->detached);
	s->detached_peak_bytes = atomic_load(&pool->detached_peak);
	s->detaches = atomic_load(&pool->detaches);
}
