/*
 * workers_bench — the worker pool's lanes, deadlines and adaptive thread
 * count under load (netpoll/workers.c; figures in docs/netpoll.md, "The
 * worker pool"). A plain program: each scenario reports the pool's own
 * counters (expired, ran inline, threads grown and retired) next to the
 * queue waits it measures per task.
 *
 *   workers_bench -m lanes|onelane   [-T s] [-R runs]
 *       2 workers; a flood keeps 64 low tasks (50 us of CPU each) queued;
 *       a probe task every 1 ms, in the high lane (lanes) or, like the
 *       flood, in the normal lane (onelane). Reports the probes' queue wait.
 *   workers_bench -m step|stepfixed  [-R runs]
 *       1..8 threads (grow_wait 1 ms, idle 100 ms), or 1 (stepfixed);
 *       tasks block 2 ms; 100/s for 0.5 s, 2000/s for 1 s, then none for
 *       1 s. Prints the thread count every 100 ms and the p99 wait per
 *       phase.
 *   workers_bench -m deadline|nodeadline [-T s] [-R runs]
 *       1 worker; tasks block 1 ms, submitted at 1500/s (RUN_INLINE,
 *       queue 256): with a 5 ms timeout (deadline) or none.
 *
 * With -R, each run prints its line and the last line gives the medians.
 */
#define _GNU_SOURCE
#include "netpoll/netpoll.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000u),
	                      (long)(ns % 1000000000u)};
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void sleep_until(uint64_t t)
{
	uint64_t n = now_ns();
	if (t > n)
		sleep_ns(t - n);
}

static void spin_ns(uint64_t ns)
{
	uint64_t end = now_ns() + ns;
	while (now_ns() < end)
		;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Quantile q of v[0..n) (sorts v). */
static uint64_t quant(uint64_t *v, size_t n, double q)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	size_t i = (size_t)(q * (double)(n - 1) + 0.5);
	return v[i];
}

static double median(double *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A task that records its own queue wait into waits[idx]. */
struct timed {
	uint64_t submit_ns;
	uint64_t *slot;  /* where the wait goes */
	uint64_t work_ns;
	int blocking;    /* sleep rather than spin */
	atomic_int *outstanding;
};

static void timed_fn(void *a)
{
	struct timed *t = a;
	*t->slot = now_ns() - t->submit_ns;
	if (t->blocking)
		sleep_ns(t->work_ns);
	else
		spin_ns(t->work_ns);
	if (t->outstanding)
		atomic_fetch_sub(t->outstanding, 1);
}

/* ---- lanes / onelane -------------------------------------------------- */

#define FLOOD_BACKLOG 64
#define FLOOD_SLOTS 4096 /* ring of flood task records (>> backlog) */

struct flood {
	struct np_workers *w;
	enum np_lane lane;
	atomic_int outstanding;
	atomic_int stop;
	struct timed rec[FLOOD_SLOTS];
	uint64_t sink[FLOOD_SLOTS];
	uint64_t submitted;
};

static void *flood_main(void *a)
{
	struct flood *f = a;
	struct np_task_opts o = {.lane = f->lane, .policy = NP_SUBMIT_REFUSE};
	while (!atomic_load(&f->stop)) {
		while (atomic_load(&f->outstanding) < FLOOD_BACKLOG) {
			size_t i = f->submitted++ % FLOOD_SLOTS;
			f->rec[i] = (struct timed){
				.submit_ns = now_ns(), .slot = &f->sink[i],
				.work_ns = 50000, .outstanding = &f->outstanding,
			};
			atomic_fetch_add(&f->outstanding, 1);
			if (np_workers_submit_opts(f->w, timed_fn, &f->rec[i], &o)) {
				atomic_fetch_sub(&f->outstanding, 1);
				break;
			}
		}
		sleep_ns(100000);
	}
	return NULL;
}

static void run_lanes(int one_lane, double secs, double *p50, double *p99,
                      double *pmax)
{
	struct np_workers_opts wo = {.nthreads = 2};
	struct np_workers *w = np_workers_create(&wo);
	if (!w) {
		perror("np_workers_create");
		exit(1);
	}
	struct flood *f = calloc(1, sizeof(*f));
	f->w = w;
	f->lane = one_lane ? NP_LANE_NORMAL : NP_LANE_LOW;
	pthread_t ft;
	pthread_create(&ft, NULL, flood_main, f);
	sleep_ns(100000000); /* the backlog builds */

	size_t nprobe = (size_t)(secs * 1000);
	struct timed *pr = calloc(nprobe, sizeof(*pr));
	uint64_t *waits = calloc(nprobe, sizeof(*waits));
	struct np_task_opts o = {.lane = one_lane ? NP_LANE_NORMAL : NP_LANE_HIGH,
	                  .policy = NP_SUBMIT_REFUSE};
	uint64_t t0 = now_ns();
	size_t sent = 0, refused = 0;
	for (size_t i = 0; i < nprobe; i++) {
		sleep_until(t0 + i * 1000000u);
		pr[sent] = (struct timed){.submit_ns = now_ns(),
		                          .slot = &waits[sent], .work_ns = 50000};
		if (np_workers_submit_opts(w, timed_fn, &pr[sent], &o))
			refused++;
		else
			sent++;
	}
	atomic_store(&f->stop, 1);
	pthread_join(ft, NULL);
	struct np_workers_stats st;
	np_workers_get_stats(w, &st);
	np_workers_destroy(&w);

	uint64_t mx = 0;
	for (size_t i = 0; i < sent; i++)
		mx = waits[i] > mx ? waits[i] : mx;
	*p50 = (double)quant(waits, sent, 0.50) / 1000;
	*p99 = (double)quant(waits, sent, 0.99) / 1000;
	*pmax = (double)mx / 1000;
	const struct np_workers_lane_stats *pl =
		&st.lanes[one_lane ? NP_LANE_NORMAL : NP_LANE_HIGH];
	printf("%s: probes %zu (refused %zu)  wait us p50 %.1f p99 %.1f max "
	       "%.1f | pool: probe-lane p99 %.1f us, flood completed %" PRIu64
	       "\n",
	       one_lane ? "onelane" : "lanes", sent, refused, *p50, *p99,
	       *pmax, (double)np_workers_wait_quantile(pl, 0.99) / 1000,
	       one_lane ? st.lanes[NP_LANE_NORMAL].completed - sent
	                : st.lanes[NP_LANE_LOW].completed);
	free(pr);
	free(waits);
	free(f);
}

/* ---- step -------------------------------------------------------------- */

struct phase {
	double secs, rate;
};

static void run_step(int fixed, double *peak, double *p99_busy,
                     double *back_ms)
{
	static const struct phase ph[] = {{0.5, 100}, {1.0, 2000}, {1.0, 0}};
	enum { NPH = sizeof(ph) / sizeof(ph[0]) };
	struct np_workers_opts wo = {
		.nthreads = 1, .max_threads = fixed ? 1 : 8, .queue_cap = 4096,
		.grow_wait_ns = 1000000, .idle_ns = 100000000,
	};
	struct np_workers *w = np_workers_create(&wo);
	if (!w) {
		perror("np_workers_create");
		exit(1);
	}
	size_t total = 0;
	for (int p = 0; p < NPH; p++)
		total += (size_t)(ph[p].secs * ph[p].rate);
	struct timed *rec = calloc(total, sizeof(*rec));
	uint64_t *waits = calloc(total, sizeof(*waits));
	size_t first[NPH + 1];
	struct np_task_opts o = {.policy = NP_SUBMIT_RUN_INLINE};

	uint64_t t0 = now_ns(), next_sample = t0, back_at = 0;
	uint64_t busy_end = 0;
	size_t k = 0;
	int maxthr = 0;
	printf("step: t_ms:threads");
	for (int p = 0; p < NPH; p++) {
		first[p] = k;
		uint64_t ps = now_ns();
		uint64_t pe = ps + (uint64_t)(ph[p].secs * 1e9);
		uint64_t gap = ph[p].rate ? (uint64_t)(1e9 / ph[p].rate) : 0;
		for (size_t i = 0;; i++) {
			uint64_t due = gap ? ps + i * gap : pe;
			if (due >= pe)
				due = pe;
			while (next_sample <= due) {
				sleep_until(next_sample);
				struct np_workers_stats st;
				np_workers_get_stats(w, &st);
				if ((int)st.threads > maxthr)
					maxthr = (int)st.threads;
				if (!back_at && busy_end && st.threads == 1)
					back_at = now_ns();
				printf(" %" PRIu64 ":%" PRIu64,
				       (next_sample - t0) / 1000000, st.threads);
				next_sample += 100000000;
			}
			if (due >= pe)
				break;
			sleep_until(due);
			rec[k] = (struct timed){.submit_ns = now_ns(),
			                        .slot = &waits[k], .work_ns = 2000000,
			                        .blocking = 1};
			np_workers_submit_opts(w, timed_fn, &rec[k], &o);
			k++;
		}
		if (ph[p].rate >= 1000)
			busy_end = now_ns();
	}
	first[NPH] = k;
	struct np_workers_stats st;
	np_workers_get_stats(w, &st);
	np_workers_destroy(&w);
	printf("\n");
	double p99s[NPH];
	for (int p = 0; p < NPH; p++)
		p99s[p] = (double)quant(waits + first[p], first[p + 1] - first[p],
		                        0.99) / 1000;
	*peak = maxthr;
	*p99_busy = p99s[1];
	*back_ms = back_at ? (double)(back_at - busy_end) / 1e6 : -1;
	printf("step: p99 wait us by phase %.0f / %.0f / -; peak threads %d, "
	       "back to 1 thread %.0f ms after the load stopped; grown %" PRIu64
	       " shrunk %" PRIu64 " ran_inline %" PRIu64 "\n",
	       p99s[0], p99s[1], maxthr, *back_ms, st.grown, st.shrunk,
	       st.ran_inline);
	free(rec);
	free(waits);
}

/* ---- deadline / nodeadline --------------------------------------------- */

struct dl_ctx {
	atomic_uint_fast64_t expired_seen;
};

static void dl_done(void *a, int status)
{
	struct dl_ctx *c = a;
	if (status == -ETIMEDOUT)
		atomic_fetch_add(&c->expired_seen, 1);
}

static void run_deadline(int with, double secs, double *p99, double *exp_pct)
{
	struct np_workers_opts wo = {.nthreads = 1, .queue_cap = 256};
	struct np_workers *w = np_workers_create(&wo);
	if (!w) {
		perror("np_workers_create");
		exit(1);
	}
	size_t n = (size_t)(secs * 1500);
	struct timed *rec = calloc(n, sizeof(*rec));
	uint64_t *waits = calloc(n, sizeof(*waits));
	for (size_t i = 0; i < n; i++)
		waits[i] = UINT64_MAX; /* never started */
	struct dl_ctx c = {0};
	struct np_task_opts o = {.policy = NP_SUBMIT_RUN_INLINE,
	                  .timeout_ns = with ? 5000000 : 0,
	                  .done = dl_done, .done_arg = &c};
	uint64_t t0 = now_ns(), gap = 1000000000u / 1500;
	for (size_t i = 0; i < n; i++) {
		sleep_until(t0 + i * gap);
		rec[i] = (struct timed){.submit_ns = now_ns(), .slot = &waits[i],
		                        .work_ns = 1000000, .blocking = 1};
		np_workers_submit_opts(w, timed_fn, &rec[i], &o);
	}
	struct np_workers_stats st;
	np_workers_get_stats(w, &st); /* ran_inline is final: submits ended */
	np_workers_destroy(&w);       /* drains: every task ends */
	/* The started ones' waits, in place (inline runs wait 0). */
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (waits[i] != UINT64_MAX)
			waits[m++] = waits[i];
	uint64_t e = atomic_load(&c.expired_seen);
	*p99 = (double)quant(waits, m, 0.99) / 1000;
	*exp_pct = 100.0 * (double)e / (double)n;
	printf("%s: tasks %zu started %zu (inline %" PRIu64 ") expired %" PRIu64
	       " (%.1f%%)  started tasks' wait us p50 %.0f p99 %.0f\n",
	       with ? "deadline 5ms" : "no deadline", n, m, st.ran_inline, e,
	       *exp_pct,
	       (double)quant(waits, m, 0.5) / 1000, *p99);
	free(rec);
	free(waits);
}

int main(int argc, char **argv)
{
	const char *mode = "lanes";
	double secs = 2;
	int runs = 1;
	int opt;
	while ((opt = getopt(argc, argv, "m:T:R:")) != -1) {
		switch (opt) {
		case 'm': mode = optarg; break;
		case 'T': secs = atof(optarg); break;
		case 'R': runs = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: %s -m lanes|onelane|step|stepfixed|deadline|"
			                "nodeadline [-T s] [-R runs]\n", argv[0]);
			return 2;
		}
	}
	if (runs < 1 || runs > 32)
		runs = 1;
	double a[32], b[32], c[32];
	for (int r = 0; r < runs; r++) {
		if (!strcmp(mode, "lanes") || !strcmp(mode, "onelane"))
			run_lanes(!strcmp(mode, "onelane"), secs, &a[r], &b[r], &c[r]);
		else if (!strcmp(mode, "step") || !strcmp(mode, "stepfixed"))
			run_step(!strcmp(mode, "stepfixed"), &a[r], &b[r], &c[r]);
		else if (!strcmp(mode, "deadline") || !strcmp(mode, "nodeadline"))
			run_deadline(!strcmp(mode, "deadline"), secs, &a[r], &b[r]);
		else {
			fprintf(stderr, "unknown mode %s\n", mode);
			return 2;
		}
		fflush(stdout);
	}
	if (!strcmp(mode, "step") || !strcmp(mode, "stepfixed"))
		printf("median of %d: peak threads %.0f, p99 wait in the step %.0f "
		       "us, back to 1 thread after %.0f ms\n",
		       runs, median(a, runs), median(b, runs), median(c, runs));
	else if (!strcmp(mode, "deadline") || !strcmp(mode, "nodeadline"))
		printf("median of %d: started tasks' p99 wait %.0f us, expired "
		       "%.1f%%\n", runs, median(a, runs), median(b, runs));
	else
		printf("median of %d: probe wait p50 %.1f us, p99 %.1f us, max "
		       "%.1f us\n", runs, median(a, runs), median(b, runs),
		       median(c, runs));
	return 0;
}
