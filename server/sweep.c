/*
 * The store's periodic sweep, off the event loops.
 *
 * cache_expire walks every shard's segment headers and frees the segments
 * whose items have all expired or been flushed; with a large store that is
 * milliseconds during which a loop would answer no one. So loop 0's timer
 * only hands it to geecached's worker pool (np_workers): low lane, at most
 * one sweep queued or running (a tick that finds one still pending does
 * nothing), refused rather than run inline on the loop when the pool is
 * full, and dropped at its deadline (the next tick) if no worker started
 * it by then. The pool keeps one thread and grows to two when a sweep
 * waits (docs/server.md, "The sweep").
 */
#include "server/srv.h"

#include <stdio.h>

#define SWEEP_EVERY_MS 1000

static void sweep_run(void *arg)
{
	struct srv *s = arg;
	cache_expire(s->cache);
}

static void sweep_done(void *arg, int status)
{
	struct srv *s = arg;
	(void)status; /* 0, or -ETIMEDOUT: counted by the pool */
	atomic_store_explicit(&s->sweep_pending, 0, memory_order_release);
}

static void sweep_tick(void *arg)
{
	struct srv *s = arg;
	if (atomic_exchange_explicit(&s->sweep_pending, 1, memory_order_acq_rel))
		return;
	struct np_task_opts to = {
		.lane = NP_LANE_LOW,
		.policy = NP_SUBMIT_REFUSE,
		.timeout_ns = (uint64_t)SWEEP_EVERY_MS * 1000000u,
		.done = sweep_done,
		.done_arg = s,
	};
	if (np_workers_submit_opts(s->workers, sweep_run, s, &to) < 0)
		atomic_store_explicit(&s->sweep_pending, 0, memory_order_release);
}

int srv_sweep_start(struct srv *s)
{
	struct np_workers_opts wo = {
		.nthreads = 1,
		.max_threads = 2,
		.queue_cap = 16,
		.idle_ns = 30ull * 1000000000u,
	};
	s->workers = np_workers_create(&wo);
	if (!s->workers) {
		fprintf(stderr, "geecached: cannot start the worker pool\n");
		return 1;
	}
	return 0;
}

/* On loop 0, once it runs (np_loop_post from main). */
void srv_sweep_timer(void *arg)
{
	struct srv *s = arg;
	np_timer_add(np_group_loop(s->group, 0), SWEEP_EVERY_MS, SWEEP_EVERY_MS,
	             sweep_tick, s);
}
