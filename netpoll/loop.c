/*
 * The group and its loops: create, start, stop and destroy, each loop's
 * run loop (wait, timers, flushes, stop), the loop clock, and the stats.
 * Connections, accepting, posts and timers have files of their own
 * (np_internal.h lists them); backends come from backend.c's table.
 */
#define _GNU_SOURCE
#include "netpoll/np_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const struct np_counter_desc np_counters[] = {
#define NP_X_DESC(n, kind, help) {#n, sizeof(#kind) == sizeof("GAUGE"), help, offsetof(struct np_stats, n)},
	NP_COUNTERS(NP_X_DESC)
#undef NP_X_DESC
};
const size_t np_ncounters = sizeof(np_counters) / sizeof(np_counters[0]);

/* NP_YIELD_SATURATED: the loop's time over a period is sleep (blocked in
 * its wait) + runnable (on a CPU, or queued for one). The thread CPU clock
 * gives the first part of runnable exactly (schedstat's own figure lags by
 * up to a tick for a running thread), schedstat's second field the queued
 * part; the wall clock is read with them. A period ends at the first batch
 * at least SAT_PERIOD_NS after it began (longer after a quiet spell), and
 * the state it decides holds until the next one ends. Measured figures
 * (docs/netpoll.md): a closed loop saturating the cores sleeps 2-6% of the
 * time, a paced one 10-70%. */
#define SAT_PERIOD_NS 20000000u

/* NP_YIELD_BACKEND (netpoll.h): where schedstat says how long a thread
 * slept, the group's test on io_uring and the saturation rule on the
 * others; elsewhere 50 us batches. */
static uint32_t yield_default(enum np_backend b)
{
#ifdef __linux__
	return b == NP_BACKEND_URING ? NP_YIELD_ADAPTIVE : NP_YIELD_SATURATED;
#else
	(void)b;
	return 50u;
#endif
}

bool np__saturated(uint64_t wall_ns, uint64_t runnable_ns)
{
	return wall_ns && (runnable_ns >= wall_ns || wall_ns - runnable_ns < wall_ns / 10);
}

#ifdef __linux__
/* Reads now (wall, ns) and the thread's runnable ns so far. */
static bool runnable_ns(struct np_loop *l, uint64_t *now, uint64_t *out)
{
	char buf[96];
	ssize_t n = pread(l->sched_fd, buf, sizeof(buf) - 1, 0);
	struct timespec cpu;
	if (n <= 0 || clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu) != 0)
		return false;
	buf[n] = '\0';
	char *end;
	strtoull(buf, &end, 10); /* schedstat: run ns, queued ns, slices */
	uint64_t queued = strtoull(end, NULL, 10);
	*out = (uint64_t)cpu.tv_sec * 1000000000u + (uint64_t)cpu.tv_nsec + queued;
	*now = np__mono_ns();
	np__ctr(&l->st.syscalls, 2);
	return true;
}

static int sched_open(void)
{
	return open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
}
#else
/* schedstat is Linux's: elsewhere NP_YIELD_SATURATED never yields. */
static bool runnable_ns(struct np_loop *l, uint64_t *now, uint64_t *out)
{
	(void)l, (void)now, (void)out;
	return false;
}

static int sched_open(void) { return -1; }
#endif

static void saturation_set(struct np_loop *l, bool sat)
{
	if (sat != l->saturated) {
		l->saturated = sat;
		np__gauge(&l->st.loops_saturated, sat);
	}
}

static void saturation_close(struct np_loop *l)
{
	if (l->sched_fd >= 0)
		close(l->sched_fd);
	l->sched_fd = -1;
	saturation_set(l, false);
}

static void saturation_open(struct np_loop *l)
{
	l->sched_fd = -1;
	if (l->g->o.yield_us != NP_YIELD_SATURATED && l->g->o.yield_us != NP_YIELD_ADAPTIVE)
		return;
	l->sched_fd = sched_open();
	if (l->sched_fd >= 0 && !runnable_ns(l, &l->sat_at_ns, &l->sat_runnable))
		saturation_close(l);
}

static void saturation_check(struct np_loop *l)
{
	uint64_t now, r;
	if (l->sched_fd < 0 || l->now_us * 1000u < l->sat_at_ns + SAT_PERIOD_NS)
		return;
	if (!runnable_ns(l, &now, &r)) {
		saturation_close(l); /* never yields from here on */
		return;
	}
	/* Time inside sched_yield is runnable time the rule itself made: it
	 * is left out, so that yielding does not keep the loop saturated. */
	uint64_t wall = now - l->sat_at_ns, yielded = l->sat_yield_ns;
	uint64_t run = r - l->sat_runnable;
	saturation_set(l, yielded < wall && yielded < run &&
	                          np__saturated(wall - yielded, run - yielded));
	if (yielded < wall && yielded <= run) { /* for loop 0's np_satctl */
		uint64_t span = wall - yielded, busy = run - yielded;
		uint64_t pm = busy >= span ? 0 : (span - busy) * 1000 / span;
		atomic_store_explicit(&l->sat_sleep_pm, (uint32_t)pm, memory_order_relaxed);
	}
	l->sat_at_ns = now;
	l->sat_runnable = r;
	l->sat_yield_ns = 0;
}

/* NP_YIELD_ADAPTIVE (io_uring's default): the group's test (np_satctl).
 * A loop that sleeps while its client waits on it is as unsaturated as a
 * loop under a paced load, and which of the two it is decides whether
 * yielding pays: with one client thread yielding raised the rate by
 * ×1.2-1.5 (geecache-bench -t 1, memaslap -T 1, 20-100 ms windows of each
 * mode alternating), under a paced load by ×1.00, where it only adds to
 * the latency. Loop 0 measures it: once no loop is saturated while they
 * sleep between a tenth and 60% of the time and a window's requests came
 * in bursts (SC_BURST_MIN_PC receives per wait: a paced load's come one
 * per wait, and a window of yielding costs it milliseconds of p99), a
 * trial alternates SC_WIN_NS windows without and with yielding on every
 * loop, up to three pairs. A first pair under SC_FIRST stops it (a paced
 * load that reached it loses one window); a median over the three of
 * SC_GAIN or more holds every loop yielding, re-tried after
 * SC_RECHECK_MIN_NS doubling to SC_RECHECK_MAX_NS, and at once when the
 * rate moves by half or double (a new load). A trial without a gain backs
 * the next off from SC_BACKOFF_MIN_NS doubling to SC_BACKOFF_MAX_NS, and a
 * hold ends when the server goes idle; the next load after an idle spell
 * is tried at once if the last trial found a gain (and its requests come
 * in bursts). Measured: docs/netpoll.md, "The group's test". */
#define SC_WIN_NS 25000000u
#define SC_FIRST 110u /* per cent */
#define SC_GAIN 115u
#define SC_SLEEP_MIN_PM 100u
#define SC_SLEEP_MAX_PM 600u
#define SC_BURST_MIN_PC 170u /* receives per wait, per cent */
#define SC_IDLE_BYTES 4096u /* per window */
#define SC_BACKOFF_MIN_NS 4000000000ull
#define SC_BACKOFF_MAX_NS 64000000000ull
#define SC_RECHECK_MIN_NS 1000000000ull
#define SC_RECHECK_MAX_NS 8000000000ull
enum { SC_OFF, SC_TRIAL, SC_HOLD };

static uint64_t median3(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t lo = a < b ? a : b, hi = a < b ? b : a;
	return c < lo ? lo : c > hi ? hi : c;
}

static enum np_sat_force sc_trial_end(struct np_satctl *s, uint64_t now, bool gain)
{
	s->state = gain ? SC_HOLD : SC_OFF;
	s->last_ok = gain;
	if (gain) {
		s->recheck_ns = !s->recheck ? SC_RECHECK_MIN_NS
		                : s->recheck_ns * 2 > SC_RECHECK_MAX_NS ? SC_RECHECK_MAX_NS
		                                                        : s->recheck_ns * 2;
		s->recheck_at = now + s->recheck_ns;
		s->hold_bytes = median3(s->gain[0], s->gain[1], s->gain[2]);
		s->backoff_ns = SC_BACKOFF_MIN_NS;
		return NP_SAT_YIELD;
	}
	s->backoff_ns = s->recheck || !s->backoff_ns ? SC_BACKOFF_MIN_NS
	                : s->backoff_ns * 2 > SC_BACKOFF_MAX_NS ? SC_BACKOFF_MAX_NS
	                                                         : s->backoff_ns * 2;
	s->next_trial = now + s->backoff_ns;
	return NP_SAT_FREE;
}

/* One window has ended, having moved bytes (the group's bytes_read);
 * returns the mode of the next. sleep_pm: the loops' mean sleep over their
 * last periods; burst_pc: the group's receives per wait in the window, per
 * cent; saturated: how many loops yield by their own rule, 0, some (1)
 * or all (2). */
enum np_sat_force np__satctl_window(struct np_satctl *s, uint64_t now, uint64_t bytes,
                                    uint32_t sleep_pm, uint32_t burst_pc, int saturated)
{
	bool was_idle = s->idle;
	s->idle = bytes < SC_IDLE_BYTES;
	switch (s->state) {
	case SC_HOLD:
		if (s->idle) {
			s->state = SC_OFF;
			return NP_SAT_FREE;
		}
		if (now < s->recheck_at && bytes < 2 * s->hold_bytes && 2 * bytes > s->hold_bytes)
			return NP_SAT_YIELD;
		/* A re-check is due. Not for a load whose requests come spread (a
		 * new load, not a bursty one), nor while every loop is saturated:
		 * they yield by their own rule, and a re-check's windows without
		 * yielding would cost them (geecache-bench -t 2 -d 16: x0.70-0.79
		 * in the rounds after a held prefill). With only some saturated
		 * the hold stays: let go, the others would stop yielding. */
		if (saturated == 2 || burst_pc < SC_BURST_MIN_PC) {
			s->state = SC_OFF;
			return NP_SAT_FREE;
		}
		s->trials++;
		s->state = SC_TRIAL; /* a re-check: a window without yielding first */
		s->recheck = true;
		s->pairs = 0;
		s->on = false;
		return NP_SAT_NOYIELD;
	case SC_TRIAL:
		if (!s->on) {
			s->off[s->pairs] = bytes;
			s->on = true;
			return NP_SAT_YIELD;
		}
		s->gain[s->pairs] = bytes;
		s->on = false;
		if (s->pairs == 0 && !s->recheck && bytes * 100 < s->off[0] * SC_FIRST)
			return sc_trial_end(s, now, false);
		if (++s->pairs < 3)
			return NP_SAT_NOYIELD;
		uint64_t r[3];
		for (int i = 0; i < 3; i++)
			r[i] = s->off[i] ? s->gain[i] * 100 / s->off[i] : (s->gain[i] ? UINT32_MAX : 0);
		return sc_trial_end(s, now, median3(r[0], r[1], r[2]) >= SC_GAIN);
	default:
		if (was_idle && !s->idle && s->last_ok)
			s->next_trial = now; /* a new load after an idle spell */
		if (s->idle || saturated || now < s->next_trial ||
		    sleep_pm < SC_SLEEP_MIN_PM || sleep_pm > SC_SLEEP_MAX_PM ||
		    burst_pc < SC_BURST_MIN_PC)
			return NP_SAT_FREE;
		s->trials++;
		s->state = SC_TRIAL; /* the window that ended is the first without */
		s->recheck = false;
		s->pairs = 0;
		s->off[0] = bytes;
		s->on = true;
		return NP_SAT_YIELD;
	}
}

/* For the tests (tests/netpoll/loop_test.cc): the state is opaque there. */
size_t np__satctl_size(void) { return sizeof(struct np_satctl); }
int np__satctl_test_window(void *s, uint64_t now, uint64_t bytes, uint32_t sleep_pm,
                           uint32_t burst_pc, int saturated)
{
	return (int)np__satctl_window(s, now, bytes, sleep_pm, burst_pc, saturated);
}

/* Loop 0, after every batch: ends the group's window when it is due. */
static void satctl_tick(struct np_loop *l)
{
	struct np_group *g = l->g;
	struct np_satctl *s = &g->satctl;
	uint64_t now = np__mono_ns();
	if (now < s->win_end)
		return;
	uint64_t bytes = 0, sleep = 0, reads = 0, waits = 0;
	int sat = 0;
	for (int i = 0; i < g->nloops; i++) {
		struct np_loop *o = &g->loops[i];
		bytes += __atomic_load_n(&o->st.bytes_read, __ATOMIC_RELAXED);
		reads += __atomic_load_n(&o->st.read_calls, __ATOMIC_RELAXED);
		waits += __atomic_load_n(&o->st.wait_calls, __ATOMIC_RELAXED);
		sleep += atomic_load_explicit(&o->sat_sleep_pm, memory_order_relaxed);
		sat += __atomic_load_n(&o->st.loops_saturated, __ATOMIC_RELAXED) != 0;
	}
	enum np_sat_force f = NP_SAT_FREE;
	if (s->win_end) { /* the first call only starts a window */
		/* a window ends at a batch: bytes per SC_WIN_NS of it */
		uint64_t span = now - (s->win_end - SC_WIN_NS);
		uint64_t moved = (uint64_t)((double)(bytes - s->win_bytes) * SC_WIN_NS / (double)span);
		uint64_t w = waits - s->win_waits, burst = w ? (reads - s->win_reads) * 100 / w : 0;
		f = np__satctl_window(s, now, moved, (uint32_t)(sleep / (uint64_t)g->nloops),
		                      burst > UINT32_MAX ? UINT32_MAX : (uint32_t)burst,
		                      sat == 0 ? 0 : sat < g->nloops ? 1 : 2);
	}
	s->win_end = now + SC_WIN_NS;
	s->win_bytes = bytes;
	s->win_reads = reads;
	s->win_waits = waits;
	atomic_store_explicit(&g->sat_force, (int)f, memory_order_relaxed);
	np__ctr(&l->st.yield_trials, s->trials - l->st.yield_trials);
	np__gauge(&l->st.yield_held, s->state == SC_HOLD);
}

/* np_opts.yield_us: a batch of events that kept the loop busy for at least
 * yield_us microseconds (from the wait's return, stamped by np__woke — the
 * backends run the handlers inside their wait — to the end of its flushes),
 * or any batch of a saturated loop (NP_YIELD_SATURATED), is followed by one
 * sched_yield(), after the batch's queued sends are submitted (io_uring). A
 * lightly loaded loop's batches are short and never yield. Under
 * NP_YIELD_ADAPTIVE the group's test may make every loop yield, or none,
 * whatever its own rule says (np__satctl_window). */
static void yield_check(struct np_loop *l)
{
	uint32_t after = l->g->o.yield_us;
	bool timed = false;
	if (after == NP_YIELD_SATURATED || after == NP_YIELD_ADAPTIVE) {
		saturation_check(l);
		if (l->sched_fd < 0)
			return;
		int f = NP_SAT_FREE;
		if (after == NP_YIELD_ADAPTIVE) {
			if (l->index == 0)
				satctl_tick(l);
			f = atomic_load_explicit(&l->g->sat_force, memory_order_relaxed);
		}
		if (f == NP_SAT_NOYIELD || (f == NP_SAT_FREE && !l->saturated))
			return;
		timed = true;
	} else if (!after || np__mono_us() - l->woke_us < after) {
		return;
	}
	/* The batch's replies go out before the core is given away: on
	 * io_uring they are still queued and would wait out the yield. */
	if (l->ops->submit)
		l->ops->submit(l);
	uint64_t t0 = timed ? np__mono_ns() : 0;
	sched_yield();
	if (timed)
		l->sat_yield_ns += np__mono_ns() - t0;
	np__ctr(&l->st.yields, 1);
	np__ctr(&l->st.syscalls, 1);
}

/* np_opts.idle_trim_ms. The check runs every half period and reads
 * counters the data path keeps anyway, so the busy path pays nothing; a
 * loop quiet since the check before last (a whole period) trims, once. */
#define IDLE_TRIM_DEFAULT_MS 2000u

static uint64_t idle_trim_period(const struct np_group *g)
{
	return g->o.idle_trim_ms ? (uint64_t)g->o.idle_trim_ms : IDLE_TRIM_DEFAULT_MS;
}

static void idle_trim_check(void *arg)
{
	struct np_loop *l = arg;
	uint64_t io = l->st.read_calls + l->st.write_calls + l->st.conns_accepted +
	              l->st.posts;
	if (io != l->trim_io) {
		l->trim_io = io;
		l->trim_quiet_since = l->now;
		l->trim_done = false;
		return;
	}
	if (l->trim_done || l->now - l->trim_quiet_since < idle_trim_period(l->g))
		return;
	l->trim_done = true;
	bp_pool_thread_trim(l->g->pool);
	bp_pool_release_idle(l->g->pool);
}

void np__woke(struct np_loop *l, int nready)
{
	l->woke_us = np__mono_us();
	l->send_now = nready >= 0 && nready <= NP_SEND_NOW_MAX;
}

/* One clock read sets both: l->now (ms) for deadlines, l->now_us for
 * timers. */
static void clock_update(struct np_loop *l)
{
	l->now_us = np__mono_us();
	l->now = l->now_us / 1000u;
}

/* ---- the loop --------------------------------------------------------- */

static void stop_begin(struct np_loop *l)
{
	l->stopping = true;
	l->stop_deadline = l->now + atomic_load_explicit(&l->g->drain_ms, memory_order_relaxed);
	np__listeners_stop(l);
	for (uint32_t s = 0; s < l->nslots; s++) {
		struct np_conn *c = l->slots[s];
		if (c) {
			c->drain_deadline = np__ms32(l->stop_deadline);
			np_conn_close(c, true);
		}
	}
}

static void drain_deadlines(struct np_loop *l)
{
	for (uint32_t s = 0; s < l->nslots; s++) {
		struct np_conn *c = l->slots[s];
		if (c && (c->flags & NP_C_DRAINING) && np__ms32_reached(l->now, c->drain_deadline))
			np__conn_close_now(c, -ETIMEDOUT);
	}
}

static void close_all(struct np_loop *l, int err)
{
	for (uint32_t s = 0; s < l->nslots; s++)
		if (l->slots[s])
			np__conn_close_now(l->slots[s], err);
}

/* The backend lives on the loop's thread (io_uring's SINGLE_ISSUER needs its
 * ring made and used by one thread). */
static int loop_backend_start(struct np_loop *l)
{
	int r = l->ops->init(l);
	return r < 0 ? r : np__listeners_start(l);
}

static void *loop_main(void *arg)
{
	struct np_loop *l = arg;
	uint64_t last_drain_check = 0;
	clock_update(l);
	int err = loop_backend_start(l);
	if (err < 0) {
		fprintf(stderr, "netpoll: loop %d: %s backend failed: %s\n", l->index,
		        np_backend_name(l->backend), strerror(-err));
		l->done = true;
	}
	saturation_open(l);
	while (!l->done) {
		int64_t timeout = l->flush_head ? 0 : np__timers_timeout(l);
		if (l->stopping && (timeout < 0 || timeout > 50000))
			timeout = 50000;
		l->ops->wait(l, timeout);
		clock_update(l);
		np__timers_run(l);
		np__flush_all(l);
		yield_check(l);
		if (atomic_load(&l->stop_req) && !l->stopping)
			stop_begin(l);
		if (l->now - last_drain_check >= 50) {
			last_drain_check = l->now;
			drain_deadlines(l);
		}
		if (l->stopping) {
			if (l->now >= l->stop_deadline)
				close_all(l, -ETIMEDOUT);
			if (!l->nconns)
				l->done = true;
		}
	}
	np__posts_close(l);
	close_all(l, -ESHUTDOWN);
	np__flush_all(l);
	if (l->be)
		l->ops->deinit(l); /* waits for the kernel to let go of buffers */
	np__timers_clear(l);
	bp_pool_thread_flush(l->g->pool);
	saturation_close(l);
	return NULL;
}

static int loop_init(struct np_group *g, struct np_loop *l, int index,
                     const struct np_backend_ops *ops, enum np_backend b)
{
	l->g = g;
	l->index = index;
	l->ops = ops;
	l->backend = b;
	l->wake_fd = -1;
	clock_update(l);
	int r = np__slots_init(l);
	if (r == 0)
		r = np__timers_init(l);
	if (r == 0)
		r = np__posts_init(l);
	if (r < 0)
		return r;
	if (g->o.idle_timeout_ms) {
		uint64_t every = g->o.idle_timeout_ms / 4 ? g->o.idle_timeout_ms / 4 : 1;
		l->idle_timer = np_timer_add(l, every, every, np__idle_sweep, l);
		if (!l->idle_timer)
			return -ENOMEM;
	}
	if (g->o.idle_trim_ms >= 0) {
		uint64_t every = idle_trim_period(g) / 2 ? idle_trim_period(g) / 2 : 1;
		l->trim_quiet_since = l->now;
		l->trim_timer = np_timer_add(l, every, every, idle_trim_check, l);
		if (!l->trim_timer)
			return -ENOMEM;
	}
	return 0;
}

static void loop_deinit(struct np_loop *l)
{
	if (!l->g)
		return;
	np__timers_clear(l);
	for (int i = 0; i < l->nlisten; i++)
		close(l->listen_fd[i]);
	np__posts_deinit(l);
	np__slots_deinit(l);
	np__timers_deinit(l);
}

struct np_group *np_group_create(const struct np_opts *opts,
                                 const struct np_handler *h)
{
	struct np_group *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	if (opts)
		g->o = *opts;
	g->h = *h;
	if (!g->o.nloops) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		g->o.nloops = n > 0 ? (int)n : 1;
	}
	if (!g->o.out_high)
		g->o.out_high = 4u << 20;
	if (!g->o.out_low)
		g->o.out_low = g->o.out_high / 4;
	if (!g->o.in_max)
		g->o.in_max = 4u << 20;
	if (!g->o.max_conns)
		g->o.max_conns = 1024;
	if (!g->o.max_timers)
		g->o.max_timers = 4096;
	atomic_init(&g->drain_ms, 5000);
	enum np_backend b = g->o.backend;
	const struct np_backend_ops *ops = np__backend_pick(&b);
	int err = ENOSYS;
	if (!ops)
		goto fail;
	g->o.backend = b;
	if (g->o.yield_us == NP_YIELD_BACKEND)
		g->o.yield_us = yield_default(b);
	err = ENOMEM;
	g->pool = g->o.pool;
	if (!g->pool) {
		struct bp_pool_opts po = {.name = "netpoll", .limit = 0};
		g->pool = bp_pool_create(&po);
		g->own_pool = true;
		if (!g->pool)
			goto fail;
	}
	/* 224 + the object pool's 24-byte offset = a 256-byte block's 248
	 * bytes of capacity, plus 8 of header (np_internal.h). */
	_Static_assert(sizeof(struct np_conn) <= 224,
	               "struct np_conn outgrew the 256-byte pool class");
	g->conn_pool = bp_objpool_create(g->pool, "np_conn", sizeof(struct np_conn));
	g->timer_pool = bp_objpool_create(g->pool, "np_timer", sizeof(struct np_timer));
	g->post_pool = bp_objpool_create(g->pool, "np_post", sizeof(struct np_post));
	if (!g->conn_pool || !g->timer_pool || !g->post_pool)
		goto fail;
	g->nloops = g->o.nloops;
	g->loops = calloc((size_t)g->nloops, sizeof(*g->loops));
	if (!g->loops)
		goto fail;
	for (int i = 0; i < g->nloops; i++) {
		int r = loop_init(g, &g->loops[i], i, ops, b);
		if (r < 0) {
			err = -r;
			goto fail;
		}
	}
	return g;
fail:
	np_group_destroy(&g);
	errno = err;
	return NULL;
}

int np_group_start(struct np_group *g)
{
	for (int i = 0; i < g->nloops; i++) {
		struct np_loop *l = &g->loops[i];
		int r = pthread_create(&l->thread, NULL, loop_main, l);
		if (r)
			return -r;
		l->thread_started = true;
	}
	return 0;
}

void np_group_stop(struct np_group *g, uint32_t drain_ms)
{
	if (atomic_exchange(&g->stopped, 1))
		return;
	atomic_store_explicit(&g->drain_ms, drain_ms, memory_order_relaxed);
	for (int i = 0; i < g->nloops; i++) {
		atomic_store(&g->loops[i].stop_req, 1);
		if (g->loops[i].ops) /* a create that failed leaves some bare */
			np__wake(&g->loops[i]);
	}
	for (int i = 0; i < g->nloops; i++) {
		if (g->loops[i].thread_started) {
			pthread_join(g->loops[i].thread, NULL);
			g->loops[i].thread_started = false;
		}
	}
	np__unix_paths_remove(g);
}

void np_group_destroy(struct np_group **gp)
{
	struct np_group *g = gp ? *gp : NULL;
	if (!g)
		return;
	if (g->loops) {
		np_group_stop(g, 0);
		for (int i = 0; i < g->nloops; i++)
			loop_deinit(&g->loops[i]);
		free(g->loops);
	}
	bp_objpool_destroy(&g->conn_pool);
	bp_objpool_destroy(&g->timer_pool);
	bp_objpool_destroy(&g->post_pool);
	if (g->own_pool)
		bp_pool_destroy(&g->pool);
	free(g);
	*gp = NULL;
}

int np_group_nloops(const struct np_group *g) { return g->nloops; }
struct np_loop *np_group_loop(struct np_group *g, int i) { return &g->loops[i]; }
void *np_group_udata(const struct np_group *g) { return g->o.udata; }
struct bp_pool *np_group_pool(const struct np_group *g) { return g->pool; }
enum np_backend np_group_backend(const struct np_group *g) { return g->o.backend; }

uint32_t np_group_yield_us(const struct np_group *g) { return g->o.yield_us; }
uint64_t np_loop_now(const struct np_loop *l) { return l->now; }
enum np_backend np_loop_backend(const struct np_loop *l) { return l->backend; }
const char *np_loop_backend_mode(const struct np_loop *l) { return atomic_load(&l->be_mode); }
int np_loop_index(const struct np_loop *l) { return l->index; }
struct np_group *np_loop_group(const struct np_loop *l) { return l->g; }

void np_group_stats(struct np_group *g, struct np_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < g->nloops; i++) {
		uint64_t *src = (uint64_t *)&g->loops[i].st;
		uint64_t *dst = (uint64_t *)out;
		for (size_t k = 0; k < sizeof(*out) / sizeof(uint64_t); k++)
			dst[k] += __atomic_load_n(&src[k], __ATOMIC_RELAXED);
	}
	out->conns_current = atomic_load(&g->nconns);
}
