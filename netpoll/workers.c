/*
 * The worker pool: one mutex, one condition variable, a bounded ring of
 * task slots per lane and a table of up to max_threads threads, all sized
 * at create. A submit is a lock, a slot copy and a signal; it never
 * allocates. The lane rule, the deadline rule and the thread-count rule are
 * stated in netpoll.h; docs/netpoll.md "The worker pool" has their figures.
 *
 * Rules this file keeps, beyond those in netpoll.h:
 *
 *  - No lock is held while fn or done runs, nor while a completion is
 *    posted, so a task may submit again (to this pool or another) and a
 *    done callback may submit.
 *  - np_workers_submit's done is always posted, never called directly, even
 *    when fn ran inline on done_loop's own thread. np_workers_submit_opts's
 *    done is always called directly (it has a status, and a post carries
 *    one pointer): re-entry from an inline run is the caller's to expect.
 *  - A completion that cannot be posted is dropped: np_loop_post returns
 *    -ESHUTDOWN once the loop has stopped (nobody is left to handle it on
 *    that thread) or -ENOMEM. done does not run and done_arg is not touched;
 *    a caller that owns memory through done_arg must keep its own way to
 *    free it when its loops stop before the pool is destroyed.
 *  - np_loop_post touches the group's memory, so a pool whose tasks name a
 *    done_loop must be destroyed before that loop's group is destroyed
 *    (stopping the group first is fine: posts then fail with -ESHUTDOWN).
 *    Worker threads also keep a bufpool thread cache for the post objects;
 *    it is handed back when they exit (retired, or in np_workers_destroy).
 *  - Counters are plain fields under the lock. running counts tasks on
 *    workers only; a task run inline is counted in ran_inline, never in
 *    running or completed. A task is counted completed (and leaves running),
 *    or expired, before its done is called or posted, so done sees it.
 *  - Threads are created (and retired ones joined) under the lock, by
 *    whoever finds the grow rule true: rare, and it keeps the thread table
 *    simple. A retiring worker marks its slot EXITED under the lock and
 *    returns without touching the pool again, so joining it under the lock
 *    cannot wait on the lock.
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

#define QUEUE_DEFAULT 1024u
#define SHARE_DEFAULT 8u
#define GROW_WAIT_DEFAULT 1000000ull    /* 1 ms */
#define IDLE_DEFAULT 5000000000ull      /* 5 s */
#define IDLE_POLL_MIN 1000000ull        /* 1 ms of real time */
#define IDLE_POLL_MAX 1000000000ull     /* 1 s */

/* Service order: lanes from the highest priority to the lowest. */
static const enum np_lane lane_order[NP_LANES] = {
	NP_LANE_HIGH, NP_LANE_NORMAL, NP_LANE_LOW,
};

struct np_task {
	void (*fn)(void *arg);
	void *arg;
	/* np_workers_submit: done_post(done_arg) posted to done_loop. */
	struct np_loop *done_loop;
	void (*done_post)(void *done_arg);
	/* np_workers_submit_opts: done_st(done_arg, status) called. */
	void (*done_st)(void *done_arg, int status);
	void *done_arg;
	uint64_t enq_ns;      /* pool clock at enqueue */
	uint64_t deadline_ns; /* pool clock; 0: none */
};

struct lane {
	struct np_task *ring; /* cap slots; count from head on are queued */
	uint32_t head, count;
	uint32_t passed;      /* dequeues that skipped it while non-empty */
	struct np_workers_lane_stats st; /* queued is read from count */
};

enum slot_state { SLOT_FREE, SLOT_LIVE, SLOT_EXITED };

struct slot {
	struct np_workers *w;
	pthread_t tid;
	enum slot_state state; /* under lock */
	uint64_t idle_since;   /* pool clock; under lock */
};

struct np_workers {
	pthread_mutex_t lock;
	/* Signalled once per enqueue, broadcast at shutdown; on
	 * CLOCK_MONOTONIC for the idle workers' timed waits. */
	pthread_cond_t work;

	struct lane lanes[NP_LANES]; /* by enum np_lane */
	uint32_t cap, share;
	uint32_t queued;             /* sum of the lanes' counts */
	bool shutting_down;          /* set once by destroy; submits then fail */

	/* Threads. nthreads counts LIVE slots; idle counts those waiting for
	 * work (a thread just created counts idle until it takes a task). */
	struct slot *slots; /* max_threads */
	int min_threads, max_threads, nthreads, idle, peak;
	uint64_t grow_wait_ns, idle_ns, idle_poll_ns;
	uint64_t grown, shrunk, grow_failed;

	uint64_t (*clock)(void *clock_arg);
	void *clock_arg;
};

static uint64_t mono_ns(void *unused)
{
	(void)unused;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_of(const struct np_workers *w)
{
	return w->clock(w->clock_arg);
}

/* ---- queue-wait histogram ------------------------------------------- */

static unsigned wait_bucket(uint64_t v)
{
	if (v < 4)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 2 */
	unsigned i = (e - 1) * 4 + (unsigned)((v >> (e - 2)) & 3);
	return i < NP_WORKERS_WAIT_BUCKETS ? i : NP_WORKERS_WAIT_BUCKETS - 1;
}

static uint64_t bucket_low(unsigned i)
{
	if (i < 4)
		return i;
	return (1ull << (i / 4 - 1)) * (4 + i % 4);
}

uint64_t np_workers_wait_quantile(const struct np_workers_lane_stats *ls,
                                  double q)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < NP_WORKERS_WAIT_BUCKETS; i++)
		n += ls->wait_hist[i];
	if (!n)
		return 0;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	uint64_t rank = (uint64_t)(q * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	unsigned i = 0;
	for (; i < NP_WORKERS_WAIT_BUCKETS - 1; i++) {
		seen += ls->wait_hist[i];
		if (seen >= rank)
			break;
	}
	uint64_t hi = i + 1 < NP_WORKERS_WAIT_BUCKETS ? bucket_low(i + 1) - 1
	                                                : ls->wait_ns_max;
	return hi < ls->wait_ns_max ? hi : ls->wait_ns_max;
}

/* ---- lanes ----------------------------------------------------------- */

static void lane_push(struct lane *ln, uint32_t cap, const struct np_task *t)
{
	uint64_t tail = (uint64_t)ln->head + ln->count; /* < 2 * cap */
	if (tail >= cap)
		tail -= cap;
	ln->ring[tail] = *t;
	ln->count++;
}

static struct np_task lane_pop(struct lane *ln, uint32_t cap)
{
	struct np_task t = ln->ring[ln->head];
	ln->head = ln->head + 1 == cap ? 0 : ln->head + 1;
	ln->count--;
	return t;
}

/* The lane to serve next (netpoll.h, "Lanes"): the lowest-priority lane
 * passed over share times while non-empty, else the highest non-empty one.
 * Counts the pass-overs. Lock held, w->queued > 0. */
static struct lane *pick_lane(struct np_workers *w)
{
	int pick = -1;
	for (int i = NP_LANES - 1; i > 0 && pick < 0; i--) {
		struct lane *ln = &w->lanes[lane_order[i]];
		if (ln->count && ln->passed >= w->share)
			pick = i;
	}
	if (pick < 0)
		for (pick = 0; !w->lanes[lane_order[pick]].count; pick++)
			;
	for (int i = pick + 1; i < NP_LANES; i++)
		if (w->lanes[lane_order[i]].count)
			w->lanes[lane_order[i]].passed++;
	w->lanes[lane_order[pick]].passed = 0;
	return &w->lanes[lane_order[pick]];
}

/* Pool clock at enqueue of the oldest queued task. Lock held, queued > 0. */
static uint64_t oldest_enq(const struct np_workers *w)
{
	uint64_t o = UINT64_MAX;
	for (int i = 0; i < NP_LANES; i++) {
		const struct lane *ln = &w->lanes[i];
		if (ln->count && ln->ring[ln->head].enq_ns < o)
			o = ln->ring[ln->head].enq_ns;
	}
	return o;
}

/* ---- completions ----------------------------------------------------- */

/* Hands done(done_arg) to its loop; a failure drops it (see the top). */
static void post_done(struct np_loop *l, void (*done)(void *), void *done_arg)
{
	if (!l)
		return;
	int r = np_loop_post(l, done, done_arg);
	(void)r; /* -ESHUTDOWN or -ENOMEM: dropped, by contract */
}

/* Ends a task that ran (status 0) or expired (-ETIMEDOUT). Unlocked. */
static void task_end(const struct np_task *t, int status)
{
	if (t->done_st)
		t->done_st(t->done_arg, status);
	else
		post_done(t->done_loop, t->done_post, t->done_arg);
}

/* ---- threads --------------------------------------------------------- */

static void *worker_main(void *arg);

/* Starts one worker in a free (or retired, then joined) slot; it counts
 * idle. 0 or a positive pthread error. Lock held, nthreads < max. */
static int spawn(struct np_workers *w, uint64_t now)
{
	struct slot *s = NULL;
	for (int i = 0; i < w->max_threads && !s; i++)
		if (w->slots[i].state != SLOT_LIVE)
			s = &w->slots[i];
	assert(s);
	if (s->state == SLOT_EXITED) {
		pthread_join(s->tid, NULL); /* it holds nothing: see the top */
		s->state = SLOT_FREE;
	}
	s->idle_since = now;
	int r = pthread_create(&s->tid, NULL, worker_main, s);
	if (r)
		return r;
	s->state = SLOT_LIVE;
	w->nthreads++;
	w->idle++;
	if (w->nthreads > w->peak)
		w->peak = w->nthreads;
	return 0;
}

/* The grow rule (netpoll.h, "Threads"). Lock held. */
static void maybe_grow(struct np_workers *w, uint64_t now)
{
	if (w->nthreads >= w->max_threads || w->idle || !w->queued ||
	    w->shutting_down)
		return;
	uint64_t o = oldest_enq(w);
	if (now < o || now - o < w->grow_wait_ns)
		return;
	if (spawn(w, now))
		w->grow_failed++;
	else
		w->grown++;
}

/* Waits for work while idle; false when this worker should retire (the
 * shrink rule) rather than take work. Lock held; returns with it held. */
static bool wait_for_work(struct np_workers *w, struct slot *self)
{
	while (!w->queued && !w->shutting_down) {
		if (w->max_threads <= w->min_threads) {
			pthread_cond_wait(&w->work, &w->lock);
			continue;
		}
		if (w->nthreads > w->min_threads &&
		    now_of(w) - self->idle_since >= w->idle_ns)
			return false;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + w->idle_poll_ns;
		ts.tv_sec += (time_t)(ns / 1000000000u);
		ts.tv_nsec = (long)(ns % 1000000000u);
		pthread_cond_timedwait(&w->work, &w->lock, &ts);
	}
	return true;
}

/* Each worker: take a task by the lane rule, expire it or run it unlocked,
 * count it, end it; retire when idle too long above the floor; leave once
 * shutting down and drained, so queued work runs before the threads exit. */
static void *worker_main(void *arg)
{
	struct slot *self = arg;
	struct np_workers *w = self->w;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		if (!wait_for_work(w, self)) {
			w->shrunk++;
			break;
		}
		if (!w->queued)
			break; /* shutting down and drained */
		w->idle--;
		uint64_t now = now_of(w);
		struct lane *ln = pick_lane(w);
		struct np_task t = lane_pop(ln, w->cap);
		w->queued--;
		bool expired = t.deadline_ns && now > t.deadline_ns;
		if (expired) {
			ln->st.expired++;
		} else {
			uint64_t waited = now > t.enq_ns ? now - t.enq_ns : 0;
			ln->st.running++;
			ln->st.wait_ns_total += waited;
			if (waited > ln->st.wait_ns_max)
				ln->st.wait_ns_max = waited;
			ln->st.wait_hist[wait_bucket(waited)]++;
		}
		maybe_grow(w, now);
		pthread_mutex_unlock(&w->lock);

		if (expired) {
			task_end(&t, -ETIMEDOUT);
		} else {
			t.fn(t.arg);
			pthread_mutex_lock(&w->lock);
			ln->st.running--;
			ln->st.completed++;
			pthread_mutex_unlock(&w->lock);
			task_end(&t, 0);
		}

		pthread_mutex_lock(&w->lock);
		w->idle++;
		self->idle_since = now_of(w);
	}
	w->idle--;
	w->nthreads--;
	self->state = SLOT_EXITED;
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* Marks the pool shutting down, wakes every worker and joins every thread
 * ever started and not yet joined. Workers drain the lanes before they
 * exit; no thread starts once shutting_down is set. */
static void shutdown_join(struct np_workers *w)
{
	pthread_mutex_lock(&w->lock);
	w->shutting_down = true;
	pthread_cond_broadcast(&w->work);
	pthread_mutex_unlock(&w->lock);
	for (int i = 0; i < w->max_threads; i++) {
		pthread_mutex_lock(&w->lock);
		enum slot_state st = w->slots[i].state;
		pthread_mutex_unlock(&w->lock);
		if (st != SLOT_FREE)
			pthread_join(w->slots[i].tid, NULL);
	}
}

static void workers_free(struct np_workers *w)
{
	pthread_cond_destroy(&w->work);
	pthread_mutex_destroy(&w->lock);
	for (int i = 0; i < NP_LANES; i++)
		free(w->lanes[i].ring);
	free(w->slots);
	free(w);
}

/* ---- API ------------------------------------------------------------- */

struct np_workers *np_workers_create(const struct np_workers_opts *o)
{
	static const struct np_workers_opts zero;
	if (!o)
		o = &zero;
	int nthreads = o->nthreads;
	if (nthreads < 0) {
		errno = EINVAL;
		return NULL;
	}
	if (!nthreads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		nthreads = n > 0 ? (int)n : 1;
	}

	struct np_workers *w = calloc(1, sizeof(*w));
	if (!w) {
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->work, &ca);
	pthread_condattr_destroy(&ca);
	w->cap = o->queue_cap ? o->queue_cap : QUEUE_DEFAULT;
	w->share = o->lane_share ? o->lane_share : SHARE_DEFAULT;
	w->min_threads = nthreads;
	w->max_threads = o->max_threads > nthreads ? o->max_threads : nthreads;
	w->grow_wait_ns = o->grow_wait_ns ? o->grow_wait_ns : GROW_WAIT_DEFAULT;
	w->idle_ns = o->idle_ns ? o->idle_ns : IDLE_DEFAULT;
	w->idle_poll_ns = w->idle_ns < IDLE_POLL_MIN   ? IDLE_POLL_MIN
	                  : w->idle_ns > IDLE_POLL_MAX ? IDLE_POLL_MAX
	                                               : w->idle_ns;
	w->clock = o->clock ? o->clock : mono_ns;
	w->clock_arg = o->clock_arg;

	bool ok = true;
	for (int i = 0; i < NP_LANES; i++) {
		w->lanes[i].ring = calloc(w->cap, sizeof(*w->lanes[i].ring));
		ok = ok && w->lanes[i].ring;
	}
	w->slots = calloc((size_t)w->max_threads, sizeof(*w->slots));
	if (!ok || !w->slots) {
		workers_free(w);
		errno = ENOMEM;
		return NULL;
	}
	for (int i = 0; i < w->max_threads; i++)
		w->slots[i].w = w;

	pthread_mutex_lock(&w->lock);
	uint64_t now = now_of(w);
	int r = 0;
	for (int i = 0; i < nthreads && !r; i++)
		r = spawn(w, now);
	pthread_mutex_unlock(&w->lock);
	if (r) {
		shutdown_join(w); /* nothing queued yet */
		workers_free(w);
		errno = r;
		return NULL;
	}
	return w;
}

/* Queues t (enq_ns and deadline set here) or applies the policy. */
static int submit(struct np_workers *w, struct np_task *t, enum np_lane lane,
                  enum np_submit_policy policy, uint64_t timeout_ns)
{
	uint64_t now = now_of(w); /* outside the lock: keep it short */
	t->enq_ns = now;
	if (timeout_ns) {
		uint64_t d = now + timeout_ns < now ? UINT64_MAX : now + timeout_ns;
		if (!t->deadline_ns || d < t->deadline_ns)
			t->deadline_ns = d;
	}

	pthread_mutex_lock(&w->lock);
	if (w->shutting_down) {
		pthread_mutex_unlock(&w->lock);
		return -ESHUTDOWN;
	}
	struct lane *ln = &w->lanes[lane];
	if (ln->count < w->cap) {
		lane_push(ln, w->cap, t);
		w->queued++;
		pthread_cond_signal(&w->work);
		maybe_grow(w, now);
		pthread_mutex_unlock(&w->lock);
		return 0;
	}
	if (policy == NP_SUBMIT_REFUSE) {
		ln->st.refused++;
		pthread_mutex_unlock(&w->lock);
		return -EAGAIN;
	}
	/* Full, RUN_INLINE: the submitter pays, which is the backpressure;
	 * a task already past its deadline expires here instead. */
	bool expired = t->deadline_ns && now > t->deadline_ns;
	if (expired)
		ln->st.expired++;
	else
		ln->st.ran_inline++;
	pthread_mutex_unlock(&w->lock);
	if (!expired)
		t->fn(t->arg);
	task_end(t, expired ? -ETIMEDOUT : 0);
	return 0;
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
	struct np_task t = {
		.fn = fn, .arg = arg, .done_loop = done_loop,
		.done_post = done, .done_arg = done_arg,
	};
	return submit(w, &t, NP_LANE_NORMAL, policy, 0);
}

int np_workers_submit_opts(struct np_workers *w, void (*fn)(void *arg),
                           void *arg, const struct np_task_opts *o)
{
	static const struct np_task_opts zero;
	if (!o)
		o = &zero;
	if (!fn || (unsigned)o->lane >= NP_LANES)
		return -EINVAL;
	if (o->policy != NP_SUBMIT_RUN_INLINE && o->policy != NP_SUBMIT_REFUSE)
		return -EINVAL;
	struct np_task t = {
		.fn = fn, .arg = arg, .done_st = o->done,
		.done_arg = o->done_arg, .deadline_ns = o->deadline_ns,
	};
	return submit(w, &t, o->lane, o->policy, o->timeout_ns);
}

uint64_t np_workers_now(const struct np_workers *w)
{
	return now_of(w);
}

void np_workers_destroy(struct np_workers **wp)
{
	struct np_workers *w = wp ? *wp : NULL;
	if (!w)
		return;
#ifndef NDEBUG
	/* A worker joining itself would deadlock (or fail with EDEADLK). */
	pthread_mutex_lock(&w->lock);
	for (int i = 0; i < w->max_threads; i++)
		assert(w->slots[i].state != SLOT_LIVE ||
		       !pthread_equal(w->slots[i].tid, pthread_self()));
	pthread_mutex_unlock(&w->lock);
#endif
	shutdown_join(w);
	/* Cleared only now: a draining task may still read *wp to submit (and
	 * get -ESHUTDOWN); the joins order its reads before this store. */
	*wp = NULL;
	workers_free(w);
}

void np_workers_get_stats(struct np_workers *w, struct np_workers_stats *out)
{
	pthread_mutex_lock(&w->lock);
	*out = (struct np_workers_stats){
		.threads = (uint64_t)w->nthreads,
		.threads_peak = (uint64_t)w->peak,
		.grown = w->grown,
		.shrunk = w->shrunk,
		.grow_failed = w->grow_failed,
	};
	for (int i = 0; i < NP_LANES; i++) {
		struct np_workers_lane_stats *ls = &out->lanes[i];
		*ls = w->lanes[i].st;
		ls->queued = w->lanes[i].count;
		out->queued += ls->queued;
		out->running += ls->running;
		out->completed += ls->completed;
		out->expired += ls->expired;
		out->refused += ls->refused;
		out->ran_inline += ls->ran_inline;
		out->wait_ns_total += ls->wait_ns_total;
		if (ls->wait_ns_max > out->wait_ns_max)
			out->wait_ns_max = ls->wait_ns_max;
	}
	pthread_mutex_unlock(&w->lock);
}
