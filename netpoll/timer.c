/*
 * Timers: a binary min-heap per loop on (due, seq), so that timers due at
 * the same microsecond fire in the order they were added. The heap's array
 * is sized at create (np_opts.max_timers); timer objects come from the
 * group's object pool. Loop thread only.
 */
#define _GNU_SOURCE
#include "netpoll/np_internal.h"

#include <errno.h>
#include <stdlib.h>

static bool timer_before(const struct np_timer *a, const struct np_timer *b)
{
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_set(struct np_loop *l, uint32_t i, struct np_timer *t)
{
	l->heap[i] = t;
	t->heap_idx = i;
}

static void heap_up(struct np_loop *l, uint32_t i)
{
	struct np_timer *t = l->heap[i];
	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (!timer_before(t, l->heap[p]))
			break;
		heap_set(l, i, l->heap[p]);
		i = p;
	}
	heap_set(l, i, t);
}

static void heap_down(struct np_loop *l, uint32_t i)
{
	struct np_timer *t = l->heap[i];
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= l->nheap)
			break;
		if (c + 1 < l->nheap && timer_before(l->heap[c + 1], l->heap[c]))
			c++;
		if (!timer_before(l->heap[c], t))
			break;
		heap_set(l, i, l->heap[c]);
		i = c;
	}
	heap_set(l, i, t);
}

static void heap_remove(struct np_loop *l, struct np_timer *t)
{
	uint32_t i = t->heap_idx;
	struct np_timer *last = l->heap[--l->nheap];
	t->heap_idx = UINT32_MAX;
	if (i == l->nheap)
		return;
	heap_set(l, i, last);
	heap_down(l, i);
	heap_up(l, last->heap_idx);
}

struct np_timer *np_timer_add(struct np_loop *l, uint64_t delay_ms,
                              uint64_t repeat_ms, void (*cb)(void *arg),
                              void *arg)
{
	return np_timer_add_us(l, delay_ms * 1000u, repeat_ms * 1000u, cb, arg);
}

struct np_timer *np_timer_add_us(struct np_loop *l, uint64_t delay_us,
                                 uint64_t repeat_us, void (*cb)(void *arg),
                                 void *arg)
{
	if (l->nheap == l->heap_cap) {
		errno = ENOSPC;
		return NULL;
	}
	struct np_timer *t = bp_objpool_get(l->g->timer_pool);
	if (!t) {
		errno = ENOMEM;
		return NULL;
	}
	/* From the clock now, not the loop turn's reading: a timer added
	 * late in a busy turn must not fire early. */
	t->due = np__mono_us() + delay_us;
	t->seq = l->timer_seq++;
	t->repeat = repeat_us;
	t->cb = cb;
	t->arg = arg;
	l->heap[l->nheap] = t;
	t->heap_idx = l->nheap++;
	heap_up(l, t->heap_idx);
	return t;
}

void np_timer_cancel(struct np_loop *l, struct np_timer **tp)
{
	struct np_timer *t = *tp;
	if (!t)
		return;
	*tp = NULL;
	if (t->heap_idx == UINT32_MAX) { /* firing now: freed after its cb */
		t->repeat = 0;
		t->cb = NULL;
		return;
	}
	heap_remove(l, t);
	bp_objpool_put(l->g->timer_pool, &t);
}

void np__timers_fire(struct np_loop *l)
{
	while (l->nheap && l->heap[0]->due <= l->now_us) {
		struct np_timer *t = l->heap[0];
		heap_remove(l, t);
		if (t->cb)
			t->cb(t->arg);
		if (t->repeat && t->cb) {
			t->due = l->now_us + t->repeat;
			t->seq = l->timer_seq++;
			l->heap[l->nheap] = t;
			t->heap_idx = l->nheap++;
			heap_up(l, t->heap_idx);
		} else {
			bp_objpool_put(l->g->timer_pool, &t);
		}
	}
}

int np__timers_init(struct np_loop *l)
{
	l->heap_cap = l->g->o.max_timers;
	l->heap = calloc(l->heap_cap, sizeof(*l->heap));
	return l->heap ? 0 : -ENOMEM;
}

void np__timers_clear(struct np_loop *l)
{
	while (l->nheap) {
		struct np_timer *t = l->heap[0];
		heap_remove(l, t);
		bp_objpool_put(l->g->timer_pool, &t);
	}
}

void np__timers_deinit(struct np_loop *l)
{
	np__timers_clear(l);
	free(l->heap);
	l->heap = NULL;
}
