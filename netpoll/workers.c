/*
 * The worker pool: fixed threads, one bounded ring of task slots, one mutex
 * and one condition variable. Simple and correct over clever: a submit is a
 * lock, a slot copy and a signal; it never allocates (the ring is sized at
 * create).
 *
 * Rules this file keeps, beyond those in netpoll.h:
 *
 *  - No lock is held while fn or done runs, nor while a completion is
 *    posted, so a task may submit again (to this pool or another) and a
 *    done callback on a loop may submit.
 *  - done is always posted, never called directly, even when fn ran inline
 *    on done_loop's own thread: a loop never sees done re-enter the code
 *    that called np_workers_submit.
 *  - A completion that cannot be posted is dropped: np_loop_post returns
 *    -ESHUTDOWN once the loop has stopped (nobody is left to handle it on
 *    that thread) or -ENOMEM. done does not run and done_arg is not touched;
 *    a caller that owns memory through done_arg must keep its own way to
 *    free it when its loops stop before the pool is destroyed.
 *  - np_loop_post touches the group's memory, so a pool whose tasks name a
 *    done_loop must be destroyed before that loop's group is destroyed
 *    (stopping the group first is fine: posts then fail with -ESHUTDOWN).
 *    Worker threads also keep a bufpool thread cache for the post objects;
 *    it is handed back when they exit, in np_workers_destroy.
 *  - Counters are plain fields under the lock. running counts tasks on
 *    workers only; a task run inline is counted in ran_inline, never in
 *    running or completed. A task is counted completed (and leaves running)
 *    before its done is posted, so when done runs the stats already show it.
 */
#define _GNU_SOURCE
#include "netpoll/netpoll.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NP_WORKERS_QUEUE_DEFAULT 1024u

struct np_task {
	void (*fn)(void *arg);
	void *arg;
	struct np_loop *done_loop; /* NULL: no completion */
	void (*done)(void *done_arg);
	void *done_arg;
	uint64_t enq_ns; /* CLOCK_MONOTONIC at enqueue */
};

struct np_workers {
	pthread_mutex_t lock;
	/* Signalled once per enqueue, broadcast at shutdown. Workers wait on
	 * it while the ring is empty and the pool is not shutting down. */
	pthread_cond_t work;

	/* Ring of cap slots; count slots from head on are queued. Under lock. */
	struct np_task *ring;
	uint32_t cap, head, count;
	bool shutting_down; /* set once by destroy; submits then fail */

	/* Counters (see struct np_workers_stats in netpoll.h). Under lock. */
	uint64_t running, completed, refused, ran_inline;
	uint64_t wait_ns_total, wait_ns_max;

	int nthreads;
	pthread_t *threads;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Hands done(done_arg) to its loop; a failure drops it (see the top). */
static void post_done(struct np_loop *l, void (*done)(void *), void *done_arg)
{
	if (!l)
		return;
	int r = np_loop_post(l, done, done_arg);
	(void)r; /* -ESHUTDOWN or -ENOMEM: dropped, by contract */
}

/* Each worker: take the oldest task, run it unlocked, count it, post its
 * completion; leave once shutting down and the ring is empty, so queued work
 * drains before the threads exit. */
static void *worker_main(void *arg)
{
	struct np_workers *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->count && !w->shutting_down)
			pthread_cond_wait(&w->work, &w->lock);
		if (!w->count)
			break; /* shutting down and drained */
		struct np_task t = w->ring[w->head];
		w->head = w->head + 1 == w->cap ? 0 : w->head + 1;
		w->count--;
		w->running++;
		pthread_mutex_unlock(&w->lock);

		uint64_t waited = mono_ns() - t.enq_ns;
		t.fn(t.arg);

		pthread_mutex_lock(&w->lock);
		w->running--;
		w->completed++;
		w->wait_ns_total += waited;
		if (waited > w->wait_ns_max)
			w->wait_ns_max = waited;
		if (t.done_loop) {
			pthread_mutex_unlock(&w->lock);
			post_done(t.done_loop, t.done, t.done_arg);
			pthread_mutex_lock(&w->lock);
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* Marks the pool shutting down, wakes every worker and joins the first n.
 * The workers drain the ring before they exit. */
static void shutdown_join(struct np_workers *w, int n)
{
	pthread_mutex_lock(&w->lock);
	w->shutting_down = true;
	pthread_cond_broadcast(&w->work);
	pthread_mutex_unlock(&w->lock);
	for (int i = 0; i < n; i++)
		pthread_join(w->threads[i], NULL);
}

static void workers_free(struct np_workers *w)
{
	pthread_cond_destroy(&w->work);
	pthread_mutex_destroy(&w->lock);
	free(w->threads);
	free(w->ring);
	free(w);
}

struct np_workers *np_workers_create(const struct np_workers_opts *o)
{
	int nthreads = o ? o->nthreads : 0;
	uint32_t cap = o ? o->queue_cap : 0;
	if (nthreads < 0) {
		errno = EINVAL;
		return NULL;
	}
	if (!nthreads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		nthreads = n > 0 ? (int)n : 1;
	}
	if (!cap)
		cap = NP_WORKERS_QUEUE_DEFAULT;

	struct np_workers *w = calloc(1, sizeof(*w));
	if (!w) {
		errno = ENOMEM;
		return NULL;
	}
	w->ring = calloc(cap, sizeof(*w->ring));
	w->threads = calloc((size_t)nthreads, sizeof(*w->threads));
	if (!w->ring || !w->threads) {
		free(w->ring);
		free(w->threads);
		free(w);
		errno = ENOMEM;
		return NULL;
	}
	w->cap = cap;
	w->nthreads = nthreads;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->work, NULL);

	for (int i = 0; i < nthreads; i++) {
		int r = pthread_create(&w->threads[i], NULL, worker_main, w);
		if (r) {
			shutdown_join(w, i); /* nothing queued yet */
			workers_free(w);
			errno = r;
			return NULL;
		}
	}
	return w;
}

int np_workers_submit(struct np_workers *w, void (*fn)(void *arg), void *arg,
                      enum np_submit_policy policy, struct np_loop *done_loop,
                      void (*done)(void *done_arg), void *done_arg)
{
	/* A completion needs both a loop and a function. */
	if (!fn || !done_loop != !done)
		return -EINVAL;
	if (policy != NP_SUBMIT_RUN_INLINE && policy != NP_SUBMIT_REFUSE)
		return -EINVAL;

	uint64_t now = mono_ns(); /* outside the lock: keep it short */
	pthread_mutex_lock(&w->lock);
	if (w->shutting_down) {
		pthread_mutex_unlock(&w->lock);
		return -ESHUTDOWN;
	}
	if (w->count < w->cap) {
		uint64_t tail = (uint64_t)w->head + w->count; /* < 2 * cap */
		if (tail >= w->cap)
			tail -= w->cap;
		w->ring[tail] = (struct np_task){
			.fn = fn, .arg = arg, .done_loop = done_loop,
			.done = done, .done_arg = done_arg, .enq_ns = now,
		};
		w->count++;
		pthread_cond_signal(&w->work);
		pthread_mutex_unlock(&w->lock);
		return 0;
	}
	if (policy == NP_SUBMIT_REFUSE) {
		w->refused++;
		pthread_mutex_unlock(&w->lock);
		return -EAGAIN;
	}
	/* Full, RUN_INLINE: the submitter pays, which is the backpressure. */
	w->ran_inline++;
	pthread_mutex_unlock(&w->lock);
	fn(arg);
	post_done(done_loop, done, done_arg);
	return 0;
}

void np_workers_destroy(struct np_workers **wp)
{
	struct np_workers *w = wp ? *wp : NULL;
	if (!w)
		return;
#ifndef NDEBUG
	/* A worker joining itself would deadlock (or fail with EDEADLK). */
	for (int i = 0; i < w->nthreads; i++)
		assert(!pthread_equal(w->threads[i], pthread_self()));
#endif
	shutdown_join(w, w->nthreads);
	/* Cleared only now: a draining task may still read *wp to submit (and
	 * get -ESHUTDOWN); the joins order its reads before this store. */
	*wp = NULL;
	workers_free(w);
}

void np_workers_get_stats(struct np_workers *w, struct np_workers_stats *out)
{
	pthread_mutex_lock(&w->lock);
	*out = (struct np_workers_stats){
		.queued = w->count,
		.running = w->running,
		.completed = w->completed,
		.refused = w->refused,
		.ran_inline = w->ran_inline,
		.wait_ns_total = w->wait_ns_total,
		.wait_ns_max = w->wait_ns_max,
	};
	pthread_mutex_unlock(&w->lock);
}
