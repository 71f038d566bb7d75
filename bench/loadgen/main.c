/*
 * geecache-bench — a memcached load generator on netpoll's client side.
 *
 * Closed loop (default): every connection keeps --pipeline requests in
 * flight. Open loop (--rate R): requests are issued on a fixed schedule of
 * R per second in all, whatever the server does, and latency is measured
 * from when each request was *due*, not when it went out — a closed loop
 * alone hides a stalled server's tail (coordinated omission).
 *
 * Every reply is verified (lg.h): a wrong value, or a reply that does not
 * match its request, is an error, counted and shown.
 */
#define _GNU_SOURCE
#include "bench/loadgen/hist.h"
#include "bench/loadgen/lg.h"
#include "netpoll/netpoll.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define RING 4096 /* requests in flight per connection, at most */

enum phase { PH_CONNECT, PH_PREFILL, PH_RUN, PH_STOP };

struct cfg {
	const char *host;
	uint16_t port;
	enum lg_proto proto;
	int conns, pipeline, loops;
	double duration, rate, get_ratio, alpha;
	uint64_t requests, keys;
	uint32_t vmin, vmax;
	bool prefill, json, progress;
	enum np_backend backend;
};

struct req {
	uint64_t k;
	uint64_t due_ns;
	uint32_t opaque;
	uint8_t op;
};

struct lloop;

struct lconn {
	struct lloop *ll;
	struct np_conn *c;
	struct req ring[RING];
	uint32_t head, tail; /* tail - head requests in flight */
	uint32_t opaque;
	uint64_t pf_next, pf_end; /* prefill range */
	bool pf_done;
};

struct lloop {
	struct np_loop *l;
	int index;
	uint64_t rng;
	struct lg_hist h;
	struct lconn **conns;
	int nconns, rr;
	struct np_timer *tick;
	uint64_t open_sent; /* open loop: requests issued */
	/* counters read by the main thread (relaxed) */
	uint64_t done, hits, misses, stored, wrong, srv_err, overflow, sent;
} __attribute__((aligned(64)));

static struct {
	struct cfg cfg;
	struct lg_values values;
	struct lg_zipf zipf;
	struct lloop *loops;
	struct lconn *conns;
	_Atomic int phase;
	_Atomic int opened, failed, closed_early, prefilled;
	uint64_t start_ns;
	struct np_group *g;
} G;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void ctr(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static uint64_t rd(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

static double rnd(struct lloop *ll)
{
	uint64_t x = ll->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	ll->rng = x;
	return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

/* Queues one request on cc. false when its ring is full. */
static bool issue(struct lconn *cc, enum lg_op op, uint64_t k, uint64_t due)
{
	if (cc->tail - cc->head == RING)
		return false;
	struct req *r = &cc->ring[cc->tail % RING];
	r->k = k;
	r->op = (uint8_t)op;
	r->due_ns = due;
	r->opaque = cc->opaque++;
	if (lg_encode(np_conn_out(cc->c), G.cfg.proto, op, k, &G.values, r->opaque) < 0)
		return false;
	cc->tail++;
	/* -n counts the measured phase only (not the prefill's SETs). */
	if (atomic_load_explicit(&G.phase, memory_order_relaxed) == PH_RUN)
		ctr(&cc->ll->sent, 1);
	return true;
}

static void issue_random(struct lconn *cc, uint64_t due)
{
	struct lloop *ll = cc->ll;
	enum lg_op op = rnd(ll) < G.cfg.get_ratio ? LG_GET : LG_SET;
	uint64_t k = lg_zipf_sample(&G.zipf, rnd(ll));
	if (!issue(cc, op, k, due))
		ctr(&ll->overflow, 1);
}

/* Keeps a closed-loop connection's pipeline full. */
static void refill(struct lconn *cc)
{
	int ph = atomic_load_explicit(&G.phase, memory_order_relaxed);
	if ((int)(cc->tail - cc->head) >= G.cfg.pipeline)
		return;
	/* One clock read for the batch: it leaves in one flush. */
	uint64_t t = now_ns();
	while ((int)(cc->tail - cc->head) < G.cfg.pipeline) {
		if (ph == PH_PREFILL) {
			if (cc->pf_next >= cc->pf_end)
				break;
			issue(cc, LG_SET, cc->pf_next++, t);
		} else if (ph == PH_RUN && G.cfg.rate <= 0) {
			if (G.cfg.requests &&
			    rd(&cc->ll->sent) >= G.cfg.requests / (uint64_t)G.cfg.loops)
				break;
			issue_random(cc, t);
		} else {
			break;
		}
	}
}

static int on_open(struct np_conn *c)
{
	struct lconn *cc = np_conn_udata(c);
	cc->c = c;
	atomic_fetch_add(&G.opened, 1);
	return 0;
}

static ssize_t on_data(struct np_conn *c, struct bp_chain *in)
{
	struct lconn *cc = np_conn_udata(c);
	struct lloop *ll = cc->ll;
	uint64_t t = now_ns();
	bool measuring = atomic_load_explicit(&G.phase, memory_order_relaxed) == PH_RUN;
	while (cc->head != cc->tail) {
		struct req *r = &cc->ring[cc->head % RING];
		enum lg_result res;
		ssize_t n = lg_parse_reply(in, G.cfg.proto, (enum lg_op)r->op, r->k,
		                           &G.values, r->opaque, &res);
		if (n == -EAGAIN)
			break;
		if (n < 0) {
			ctr(&ll->wrong, 1);
			return -EBADMSG; /* the stream is lost */
		}
		bp_chain_skip(in, (size_t)n);
		cc->head++;
		switch (res) {
		case LG_HIT: if (measuring) ctr(&ll->hits, 1); break;
		case LG_MISS: if (measuring) ctr(&ll->misses, 1); break;
		case LG_STORED: if (measuring) ctr(&ll->stored, 1); break;
		case LG_WRONG: ctr(&ll->wrong, 1); break;
		case LG_SRV_ERR: ctr(&ll->srv_err, 1); break;
		}
		if (measuring) {
			lg_hist_add(&ll->h, t > r->due_ns ? t - r->due_ns : 0);
			ctr(&ll->done, 1);
		}
	}
	if (atomic_load_explicit(&G.phase, memory_order_relaxed) == PH_PREFILL &&
	    !cc->pf_done && cc->pf_next >= cc->pf_end && cc->head == cc->tail) {
		cc->pf_done = true;
		atomic_fetch_add(&G.prefilled, 1);
	}
	refill(cc);
	return 0;
}

static void on_close(struct np_conn *c, int err)
{
	struct lconn *cc = np_conn_udata(c);
	if (atomic_load(&G.phase) != PH_STOP) {
		if (cc->c)
			atomic_fetch_add(&G.closed_early, 1);
		else
			atomic_fetch_add(&G.failed, 1);
		if (err && !G.cfg.json)
			fprintf(stderr, "geecache-bench: connection closed: %s\n", strerror(-err));
	}
	cc->c = NULL;
}

/* Open loop: issue what the schedule says is due, then sleep until the
 * next request is due (a one-shot microsecond timer; the loop wakes for
 * replies in between). Latency counts from each request's due time, so a
 * late wake-up shows in the percentiles rather than being hidden. */
static void open_tick(void *arg)
{
	struct lloop *ll = arg;
	ll->tick = NULL; /* this one-shot timer is spent */
	if (atomic_load_explicit(&G.phase, memory_order_relaxed) != PH_RUN || !ll->nconns)
		return;
	double per_loop = G.cfg.rate / G.cfg.loops;
	uint64_t limit = G.cfg.requests ? G.cfg.requests / (uint64_t)G.cfg.loops : UINT64_MAX;
	uint64_t t = now_ns();
	uint64_t due = (uint64_t)((double)(t - G.start_ns) / 1e9 * per_loop) + 1;
	if (due > limit)
		due = limit;
	while (ll->open_sent < due) {
		uint64_t when = G.start_ns + (uint64_t)((double)ll->open_sent / per_loop * 1e9);
		struct lconn *cc = ll->conns[ll->rr++ % ll->nconns];
		ll->open_sent++;
		if (cc->c) {
			issue_random(cc, when);
			np_conn_flush(cc->c);
		}
	}
	if (ll->open_sent >= limit)
		return;
	uint64_t next = G.start_ns + (uint64_t)((double)ll->open_sent / per_loop * 1e9);
	t = now_ns();
	ll->tick = np_timer_add_us(ll->l, next > t ? (next - t) / 1000 : 0, 0, open_tick, ll);
}

static void start_phase(void *arg)
{
	struct lloop *ll = arg;
	for (int i = 0; i < ll->nconns; i++) {
		if (ll->conns[i]->c) {
			refill(ll->conns[i]);
			np_conn_flush(ll->conns[i]->c); /* not inside a callback */
		}
	}
	if (G.cfg.rate > 0 && atomic_load(&G.phase) == PH_RUN && !ll->tick)
		ll->tick = np_timer_add_us(ll->l, 0, 0, open_tick, ll);
}

static void connect_one(void *arg)
{
	struct lconn *cc = arg;
	int r = np_connect(cc->ll->l, G.cfg.host, G.cfg.port, cc);
	if (r < 0) {
		fprintf(stderr, "geecache-bench: connect: %s\n", strerror(-r));
		atomic_fetch_add(&G.failed, 1);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
	"usage: geecache-bench [options]\n"
	"  -H, --host ADDR        server address (127.0.0.1)\n"
	"  -p, --port N           server port (11211)\n"
	"  -P, --proto P          binary | text (binary)\n"
	"  -c, --conns N          connections (50)\n"
	"  -d, --pipeline N       requests in flight per connection, closed loop (1)\n"
	"  -t, --loops N          client event loops (1)\n"
	"  -T, --duration S       seconds to measure (5)\n"
	"  -n, --requests N       stop after N requests instead\n"
	"  -r, --rate R           open loop: R requests/s in all (0: closed loop)\n"
	"  -k, --keys N           key space (100000)\n"
	"  -z, --zipf A           Zipf exponent (0: uniform)\n"
	"  -v, --value N[-M]      value size, fixed or a range (32)\n"
	"  -g, --get-ratio F      share of GETs, 0..1 (0.9)\n"
	"      --prefill          SET every key once before measuring\n"
	"      --backend B        client backend: epoll | io_uring (epoll)\n"
	"      --json             print the result as JSON\n"
	"      --progress         a progress line every second (stderr)\n");
}

static int parse(int argc, char **argv, struct cfg *c)
{
	*c = (struct cfg){.host = "127.0.0.1", .port = 11211, .proto = LG_BINARY,
	                  .conns = 50, .pipeline = 1, .loops = 1, .duration = 5,
	                  .get_ratio = 0.9, .keys = 100000, .vmin = 32, .vmax = 32,
	                  .backend = NP_BACKEND_EPOLL};
	static const struct option lo[] = {
		{"host", 1, 0, 'H'}, {"port", 1, 0, 'p'}, {"proto", 1, 0, 'P'},
		{"conns", 1, 0, 'c'}, {"pipeline", 1, 0, 'd'}, {"loops", 1, 0, 't'},
		{"duration", 1, 0, 'T'}, {"requests", 1, 0, 'n'}, {"rate", 1, 0, 'r'},
		{"keys", 1, 0, 'k'}, {"zipf", 1, 0, 'z'}, {"value", 1, 0, 'v'},
		{"get-ratio", 1, 0, 'g'}, {"prefill", 0, 0, 1}, {"json", 0, 0, 2},
		{"progress", 0, 0, 3}, {"backend", 1, 0, 4}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "H:p:P:c:d:t:T:n:r:k:z:v:g:h", lo, NULL)) != -1) {
		switch (o) {
		case 'H': c->host = optarg; break;
		case 'p': c->port = (uint16_t)atoi(optarg); break;
		case 'P':
			if (strcmp(optarg, "binary") == 0)
				c->proto = LG_BINARY;
			else if (strcmp(optarg, "text") == 0)
				c->proto = LG_TEXT;
			else
				return -1;
			break;
		case 'c': c->conns = atoi(optarg); break;
		case 'd': c->pipeline = atoi(optarg); break;
		case 't': c->loops = atoi(optarg); break;
		case 'T': c->duration = atof(optarg); break;
		case 'n': c->requests = strtoull(optarg, NULL, 10); break;
		case 'r': c->rate = atof(optarg); break;
		case 'k': c->keys = strtoull(optarg, NULL, 10); break;
		case 'z': c->alpha = atof(optarg); break;
		case 'v': {
			char *dash;
			c->vmin = (uint32_t)strtoul(optarg, &dash, 10);
			c->vmax = *dash == '-' ? (uint32_t)strtoul(dash + 1, NULL, 10) : c->vmin;
			break;
		}
		case 'g': c->get_ratio = atof(optarg); break;
		case 1: c->prefill = true; break;
		case 2: c->json = true; break;
		case 3: c->progress = true; break;
		case 4:
			if (np_backend_parse(optarg, &c->backend) < 0)
				return -1;
			break;
		case 'h': usage(stdout); exit(0);
		default: return -1;
		}
	}
	if (c->conns < 1 || c->pipeline < 1 || c->pipeline > RING || c->loops < 1 ||
	    c->loops > 64 || c->keys < 1 || c->vmax < c->vmin || c->vmax > (64u << 20) ||
	    c->get_ratio < 0 || c->get_ratio > 1 || c->alpha < 0 ||
	    (c->duration <= 0 && !c->requests))
		return -1;
	return 0;
}

struct totals {
	uint64_t done, hits, misses, stored, wrong, srv_err, overflow;
};

static void sum(struct totals *t)
{
	memset(t, 0, sizeof(*t));
	for (int i = 0; i < G.cfg.loops; i++) {
		struct lloop *ll = &G.loops[i];
		t->done += rd(&ll->done);
		t->hits += rd(&ll->hits);
		t->misses += rd(&ll->misses);
		t->stored += rd(&ll->stored);
		t->wrong += rd(&ll->wrong);
		t->srv_err += rd(&ll->srv_err);
		t->overflow += rd(&ll->overflow);
	}
}

int main(int argc, char **argv)
{
	if (parse(argc, argv, &G.cfg) < 0) {
		fprintf(stderr, "geecache-bench: bad arguments\n");
		usage(stderr);
		return 2;
	}
	struct cfg *cf = &G.cfg;
	struct np_handler h = {.on_open = on_open, .on_data = on_data, .on_close = on_close};
	struct np_opts no = {.nloops = cf->loops, .backend = cf->backend,
	                     .max_conns = (uint32_t)cf->conns + 8,
	                     .in_max = (size_t)cf->vmax * 2 + (1u << 20),
	                     .out_high = 64u << 20};
	/* Open loop: requests are due to the microsecond, and the default
	 * 50 us timer slack (which the loop threads inherit from here) lets
	 * the issuing timer fire up to that late, in bunches. */
	if (cf->rate > 0)
		prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
	G.g = np_group_create(&no, &h);
	if (!G.g) {
		fprintf(stderr, "geecache-bench: %s\n", strerror(errno));
		return 1;
	}
	if (lg_values_init(&G.values, np_group_pool(G.g), cf->vmin, cf->vmax) < 0 ||
	    lg_zipf_init(&G.zipf, cf->keys, cf->alpha) < 0) {
		fprintf(stderr, "geecache-bench: out of memory\n");
		return 1;
	}
	G.loops = calloc((size_t)cf->loops, sizeof(*G.loops));
	G.conns = calloc((size_t)cf->conns, sizeof(*G.conns));
	for (int i = 0; i < cf->loops; i++) {
		G.loops[i].l = np_group_loop(G.g, i);
		G.loops[i].index = i;
		G.loops[i].rng = 0x853c49e6748fea9bull ^ ((uint64_t)i * 0x9e3779b97f4a7c15ull);
		G.loops[i].conns = calloc((size_t)cf->conns, sizeof(struct lconn *));
		lg_hist_init(&G.loops[i].h);
	}
	for (int i = 0; i < cf->conns; i++) {
		struct lconn *cc = &G.conns[i];
		cc->ll = &G.loops[i % cf->loops];
		cc->ll->conns[cc->ll->nconns++] = cc;
		cc->pf_next = cf->keys * (uint64_t)i / (uint64_t)cf->conns;
		cc->pf_end = cf->keys * (uint64_t)(i + 1) / (uint64_t)cf->conns;
	}
	np_group_start(G.g);
	for (int i = 0; i < cf->conns; i++)
		np_loop_post(G.conns[i].ll->l, connect_one, &G.conns[i]);
	for (int i = 0; i < 10000 && atomic_load(&G.opened) + atomic_load(&G.failed) < cf->conns; i++)
		usleep(1000);
	if (atomic_load(&G.opened) < cf->conns) {
		fprintf(stderr, "geecache-bench: %d of %d connections failed\n",
		        cf->conns - atomic_load(&G.opened), cf->conns);
		return 1;
	}
	if (cf->prefill) {
		atomic_store(&G.phase, PH_PREFILL);
		for (int i = 0; i < cf->loops; i++)
			np_loop_post(G.loops[i].l, start_phase, &G.loops[i]);
		while (atomic_load(&G.prefilled) < cf->conns && !atomic_load(&G.closed_early))
			usleep(1000);
	}
	G.start_ns = now_ns();
	atomic_store(&G.phase, PH_RUN);
	for (int i = 0; i < cf->loops; i++)
		np_loop_post(G.loops[i].l, start_phase, &G.loops[i]);
	uint64_t last = G.start_ns, last_done = 0;
	for (;;) {
		usleep(10000);
		uint64_t t = now_ns();
		struct totals s;
		sum(&s);
		if (cf->progress && t - last >= 1000000000u) {
			fprintf(stderr, "  %5.1fs  %10.0f req/s  hit %5.1f%%  errors %" PRIu64 "\n",
			        (double)(t - G.start_ns) / 1e9,
			        (double)(s.done - last_done) / ((double)(t - last) / 1e9),
			        s.hits + s.misses ? 100.0 * (double)s.hits / (double)(s.hits + s.misses) : 0,
			        s.wrong + s.srv_err);
			last = t;
			last_done = s.done;
		}
		if (cf->requests ? s.done >= cf->requests
		                 : (double)(t - G.start_ns) / 1e9 >= cf->duration)
			break;
		if (atomic_load(&G.closed_early) == cf->conns)
			break;
	}
	uint64_t end = now_ns();
	atomic_store(&G.phase, PH_STOP);
	struct totals s;
	sum(&s);
	usleep(20000);
	np_group_stop(G.g, 500);
	struct lg_hist all;
	lg_hist_init(&all);
	for (int i = 0; i < cf->loops; i++)
		lg_hist_merge(&all, &G.loops[i].h);
	double el = (double)(end - G.start_ns) / 1e9;
	double hit = s.hits + s.misses ? (double)s.hits / (double)(s.hits + s.misses) : 0;
	uint64_t errors = s.wrong + s.srv_err;
	if (cf->json) {
		printf("{\"proto\":\"%s\",\"mode\":\"%s\",\"rate\":%.0f,\"conns\":%d,\"pipeline\":%d,"
		       "\"keys\":%" PRIu64 ",\"zipf\":%.2f,\"value_min\":%u,\"value_max\":%u,"
		       "\"get_ratio\":%.2f,\"seconds\":%.3f,\"requests\":%" PRIu64 ","
		       "\"rps\":%.0f,\"hit_ratio\":%.4f,\"errors\":%" PRIu64 ",\"wrong\":%" PRIu64 ","
		       "\"server_errors\":%" PRIu64 ",\"overflow\":%" PRIu64 ",\"closed_early\":%d,"
		       "\"p50_us\":%.1f,\"p95_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f}\n",
		       cf->proto == LG_BINARY ? "binary" : "text", cf->rate > 0 ? "open" : "closed",
		       cf->rate, cf->conns, cf->pipeline, cf->keys, cf->alpha, cf->vmin, cf->vmax,
		       cf->get_ratio, el, s.done, (double)s.done / el, hit, errors, s.wrong,
		       s.srv_err, s.overflow, atomic_load(&G.closed_early),
		       lg_hist_pct(&all, 50) / 1e3, lg_hist_pct(&all, 95) / 1e3,
		       lg_hist_pct(&all, 99) / 1e3, lg_hist_pct(&all, 99.9) / 1e3, all.max / 1e3);
	} else {
		printf("%s %s loop, %d conns x %d, %" PRIu64 " keys%s, values %u-%u B, %.0f%% GET\n",
		       cf->proto == LG_BINARY ? "binary" : "text", cf->rate > 0 ? "open" : "closed",
		       cf->conns, cf->pipeline, cf->keys, cf->alpha > 0 ? " (zipf)" : "",
		       cf->vmin, cf->vmax, cf->get_ratio * 100);
		printf("  requests %" PRIu64 " in %.2f s: %.0f req/s\n", s.done, el,
		       (double)s.done / el);
		printf("  hit ratio %.2f%%   errors %" PRIu64 " (wrong %" PRIu64 ", server %" PRIu64
		       ")   overflow %" PRIu64 "\n", hit * 100, errors, s.wrong, s.srv_err, s.overflow);
		printf("  latency us: p50 %.1f  p95 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
		       lg_hist_pct(&all, 50) / 1e3, lg_hist_pct(&all, 95) / 1e3,
		       lg_hist_pct(&all, 99) / 1e3, lg_hist_pct(&all, 99.9) / 1e3, all.max / 1e3);
	}
	lg_values_deinit(&G.values);
	np_group_destroy(&G.g);
	lg_zipf_deinit(&G.zipf);
	for (int i = 0; i < cf->loops; i++)
		free(G.loops[i].conns);
	free(G.loops);
	free(G.conns);
	return errors || atomic_load(&G.closed_early) ? 1 : 0;
}
