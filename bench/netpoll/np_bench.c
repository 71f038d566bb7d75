/*
 * np_bench — echo load on the runtime's own client side.
 *
 * Starts an rpc_echo-style server group in this process (backend -b,
 * loops -t) and a client group (-c loops, always epoll, so only the
 * server's backend changes between runs), opens N connections, keeps D
 * length-prefixed frames of S bytes in flight on each (closed loop), and
 * after a warm-up measures for T seconds: frames per second, latency
 * percentiles from a log-bucketed histogram, and the server's system calls
 * per frame (netpoll's own syscall counter).
 *
 * With --connect HOST:PORT it starts no server and drives one that is
 * already listening there (netpoll's rpc_echo or echo_server, or a peer in
 * bench/netpoll/peers/); a plain echo server returns the same frames. With
 * --server-pid PID it also reports that process's CPU time over the window
 * (frames per server CPU-second) and its system calls per frame, counted
 * by a raw_syscalls:sys_enter perf counter on each of its threads (-1 when
 * perf is not allowed). Without --server-pid an external server's syscalls
 * read as -1.
 *
 *   np_bench [-b epoll|io_uring] [-n conns] [-d depth] [-s bytes]
 *            [-T seconds] [-t server_loops] [-c client_loops]
 *            [-a reuseport|handoff] [-j]
 *            [--connect HOST:PORT] [--server-pid PID]
 */
#include "netpoll/netpoll.h"
#include "pidstat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- histogram: 64 powers of two x 16 linear sub-buckets (ns) --------- */

#define SUB 16
struct hist {
	uint64_t b[64 * SUB];
	uint64_t n, max;
};

static void hist_add(struct hist *h, uint64_t v)
{
	int e = v < SUB ? 0 : 63 - __builtin_clzll(v) - 3;
	uint64_t idx = v < SUB ? v : (uint64_t)(e + 1) * SUB + ((v >> e) & (SUB - 1));
	h->b[idx]++;
	h->n++;
	if (v > h->max)
		h->max = v;
}

static uint64_t bucket_value(uint64_t idx)
{
	if (idx < SUB)
		return idx;
	uint64_t e = idx / SUB - 1;
	return ((uint64_t)SUB + idx % SUB) << e;
}

static uint64_t hist_pct(const struct hist *h, double p)
{
	uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->n), seen = 0;
	for (uint64_t i = 0; i < 64 * SUB; i++) {
		seen += h->b[i];
		if (seen >= want && h->b[i])
			return bucket_value(i);
	}
	return h->max;
}

static void hist_merge(struct hist *a, const struct hist *b)
{
	for (int i = 0; i < 64 * SUB; i++)
		a->b[i] += b->b[i];
	a->n += b->n;
	if (b->max > a->max)
		a->max = b->max;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- server: length-prefixed echo ------------------------------------- */

static ssize_t srv_data(struct np_conn *c, struct bp_chain *in)
{
	for (;;) {
		uint32_t be;
		const void *p = bp_chain_view(in, 0, 4, &be);
		if (!p)
			return 4;
		uint32_t n;
		memcpy(&n, p, 4);
		n = ntohl(n);
		if (bp_chain_len(in) < 4 + (size_t)n)
			return (ssize_t)(4 + (size_t)n);
		if (bp_chain_cut(in, 4 + (size_t)n, np_conn_out(c)) < 0)
			return -ENOMEM;
	}
}

/* ---- client ----------------------------------------------------------- */

struct cli_conn {
	uint64_t sent_at[256]; /* FIFO of send times, depth <= 256 */
	uint32_t head, tail;
	struct hist *h;
};

struct cli_loop {
	struct hist h;
	uint64_t frames;
} __attribute__((aligned(64)));

static struct {
	uint32_t depth, size;
	struct bp_slice frame; /* one pre-built frame, sent by reference */
	_Atomic int measuring, stopping;
	struct cli_loop loops[8];
	struct cli_conn *conns;
	_Atomic int opened, failed;
	char host[256];
	uint16_t port;
} B;

static int send_frame(struct np_conn *c, struct cli_conn *cc)
{
	cc->sent_at[cc->tail++ % 256] = now_ns();
	return bp_chain_append_ref(np_conn_out(c), &B.frame);
}

static int cli_open(struct np_conn *c)
{
	struct cli_conn *cc = np_conn_udata(c);
	atomic_fetch_add(&B.opened, 1);
	for (uint32_t i = 0; i < B.depth; i++)
		if (send_frame(c, cc) < 0)
			return -ENOMEM;
	return 0;
}

static ssize_t cli_data(struct np_conn *c, struct bp_chain *in)
{
	struct cli_conn *cc = np_conn_udata(c);
	struct cli_loop *cl = &B.loops[np_loop_index(np_conn_loop(c))];
	size_t flen = 4 + (size_t)B.size;
	uint64_t t = now_ns();
	int measuring = atomic_load_explicit(&B.measuring, memory_order_relaxed);
	while (bp_chain_len(in) >= flen) {
		bp_chain_skip(in, flen);
		uint64_t t0 = cc->sent_at[cc->head++ % 256];
		if (measuring) {
			hist_add(&cl->h, t - t0);
			cl->frames++;
		}
		if (!atomic_load_explicit(&B.stopping, memory_order_relaxed) &&
		    send_frame(c, cc) < 0)
			return -ENOMEM;
	}
	return (ssize_t)flen;
}

static void cli_close(struct np_conn *c, int err)
{
	(void)c;
	if (err && !atomic_load(&B.stopping))
		atomic_fetch_add(&B.failed, 1);
}

struct conn_req {
	struct np_loop *l;
	struct cli_conn *cc;
};

static void connect_one(void *arg)
{
	struct conn_req *r = arg;
	if (np_connect(r->l, B.host, B.port, r->cc) < 0)
		atomic_fetch_add(&B.failed, 1);
}

/* "HOST:PORT" into B.host and B.port; 0 or -EINVAL. */
static int parse_hostport(const char *arg)
{
	const char *colon = strrchr(arg, ':');
	if (!colon || colon == arg || (size_t)(colon - arg) >= sizeof(B.host))
		return -EINVAL;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535)
		return -EINVAL;
	memcpy(B.host, arg, (size_t)(colon - arg));
	B.host[colon - arg] = '\0';
	B.port = (uint16_t)port;
	return 0;
}

static const struct option long_opts[] = {
	{"connect", required_argument, NULL, 'C'},
	{"server-pid", required_argument, NULL, 'P'},
	{NULL, 0, NULL, 0},
};

int main(int argc, char **argv)
{
	enum np_backend backend = NP_BACKEND_EPOLL;
	int nconns = 1, tloops = 1, cloops = 1, opt;
	double secs = 3;
	bool json = false, external = false;
	pid_t server_pid = 0;
	enum np_accept_mode amode = NP_ACCEPT_REUSEPORT;
	B.depth = 1;
	B.size = 32;
	strcpy(B.host, "127.0.0.1");
	while ((opt = getopt_long(argc, argv, "b:n:d:s:T:t:c:a:jC:P:", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'C':
			if (parse_hostport(optarg) < 0) {
				fprintf(stderr, "np_bench: --connect wants HOST:PORT, not '%s'\n", optarg);
				return 2;
			}
			external = true;
			break;
		case 'P': server_pid = (pid_t)atoi(optarg); break;
		case 'a':
			amode = strcmp(optarg, "handoff") == 0 ? NP_ACCEPT_HANDOFF : NP_ACCEPT_REUSEPORT;
			break;
		case 'b':
			if (np_backend_parse(optarg, &backend) < 0) {
				fprintf(stderr, "np_bench: unknown backend '%s'\n", optarg);
				return 2;
			}
			break;
		case 'n': nconns = atoi(optarg); break;
		case 'd': B.depth = (uint32_t)atoi(optarg); break;
		case 's': B.size = (uint32_t)atoi(optarg); break;
		case 'T': secs = atof(optarg); break;
		case 't': tloops = atoi(optarg); break;
		case 'c': cloops = atoi(optarg); break;
		case 'j': json = true; break;
		default:
			fprintf(stderr, "usage: np_bench [-b backend] [-n conns] [-d depth] "
			        "[-s bytes] [-T secs] [-t server_loops] [-c client_loops] "
			        "[-a reuseport|handoff] [-j] [--connect HOST:PORT] "
			        "[--server-pid PID]\n");
			return 2;
		}
	}
	if (nconns < 1 || B.depth < 1 || B.depth > 256 || cloops < 1 || cloops > 8) {
		fprintf(stderr, "np_bench: bad arguments\n");
		return 2;
	}
	struct np_group *srv = NULL;
	if (!external) {
		struct np_handler sh = {.on_data = srv_data};
		struct np_opts so = {.nloops = tloops, .backend = backend, .accept_mode = amode,
		                     .max_conns = (uint32_t)nconns + 16, .in_max = 64u << 20};
		srv = np_group_create(&so, &sh);
		if (!srv) {
			fprintf(stderr, "np_bench: server: %s\n", strerror(errno));
			return 1;
		}
		int port = np_group_listen(srv, "127.0.0.1", 0);
		if (port < 0 || np_group_start(srv) < 0)
			return 1;
		B.port = (uint16_t)port;
	}
	struct pidstat ps;
	if (server_pid > 0 && ps_open(&ps, server_pid) < 0) {
		fprintf(stderr, "np_bench: --server-pid %d: no such process\n", (int)server_pid);
		return 2;
	}

	struct np_handler ch = {.on_open = cli_open, .on_data = cli_data, .on_close = cli_close};
	struct np_opts co = {.nloops = cloops, .backend = NP_BACKEND_EPOLL,
	                     .max_conns = (uint32_t)nconns + 16, .in_max = 64u << 20};
	struct np_group *cli = np_group_create(&co, &ch);
	if (!cli)
		return 1;
	/* The frame: a 4-byte length and S bytes, in one block, sent by ref. */
	struct bp_block *fb = bp_block_get(np_group_pool(cli), 4 + (size_t)B.size);
	uint32_t nl = htonl(B.size);
	memcpy(bp_block_data(fb), &nl, 4);
	memset(bp_block_data(fb) + 4, 'x', B.size);
	B.frame = (struct bp_slice){fb, 0, 4 + B.size};
	B.conns = calloc((size_t)nconns, sizeof(*B.conns));
	struct conn_req *reqs = calloc((size_t)nconns, sizeof(*reqs));
	np_group_start(cli);
	for (int i = 0; i < nconns; i++) {
		reqs[i].l = np_group_loop(cli, i % cloops);
		reqs[i].cc = &B.conns[i];
		np_loop_post(reqs[i].l, connect_one, &reqs[i]);
	}
	for (int i = 0; i < 5000 && atomic_load(&B.opened) + atomic_load(&B.failed) < nconns; i++)
		usleep(1000);
	usleep(300 * 1000); /* warm-up */
	struct np_stats s0 = {0}, s1 = {0};
	struct ps_sample p0 = {-1, -1}, p1 = {-1, -1};
	if (srv)
		np_group_stats(srv, &s0);
	if (server_pid > 0)
		ps_sample(&ps, &p0);
	uint64_t t0 = now_ns();
	atomic_store(&B.measuring, 1);
	usleep((useconds_t)(secs * 1e6));
	atomic_store(&B.measuring, 0);
	uint64_t t1 = now_ns();
	if (server_pid > 0) {
		ps_sample(&ps, &p1);
		ps_close(&ps);
	}
	if (srv)
		np_group_stats(srv, &s1);
	atomic_store(&B.stopping, 1);
	usleep(50 * 1000);
	np_group_stop(cli, 200);
	struct hist all;
	memset(&all, 0, sizeof(all));
	uint64_t frames = 0;
	for (int i = 0; i < cloops; i++) {
		hist_merge(&all, &B.loops[i].h);
		frames += B.loops[i].frames;
	}
	double el = (double)(t1 - t0) / 1e9;
	double rate = (double)frames / el;
	double sys_per = frames ? (double)(s1.syscalls - s0.syscalls) / (double)frames : 0;
	if (external)
		sys_per = -1;
	if (p0.syscalls >= 0 && p1.syscalls >= 0)
		sys_per = frames ? (double)(p1.syscalls - p0.syscalls) / (double)frames : 0;
	double cpu_s = p0.cpu_s >= 0 && p1.cpu_s >= 0 ? p1.cpu_s - p0.cpu_s : -1;
	double per_cpu = cpu_s > 0 ? (double)frames / cpu_s : -1;
	const char *bn = srv ? np_backend_name(np_group_backend(srv)) : "external";
	const char *an = amode == NP_ACCEPT_HANDOFF ? "handoff" : "reuseport";
	if (json) {
		printf("{\"backend\":\"%s\",\"accept\":\"%s\",\"conns\":%d,\"depth\":%u,\"size\":%u,"
		       "\"frames_per_s\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
		       "\"p999_us\":%.1f,\"max_us\":%.1f,\"server_syscalls_per_frame\":%.4f,"
		       "\"server_cpu_s\":%.3f,\"frames_per_cpu_s\":%.0f,\"failed\":%d}\n",
		       bn, an, nconns, B.depth, B.size, rate, hist_pct(&all, 50) / 1e3,
		       hist_pct(&all, 99) / 1e3, hist_pct(&all, 99.9) / 1e3,
		       (double)all.max / 1e3, sys_per, cpu_s, per_cpu, atomic_load(&B.failed));
	} else {
		printf("%-8s conns=%-3d depth=%-3u size=%-6u %10.0f frames/s  p50 %7.1f us  "
		       "p99 %7.1f us  p99.9 %7.1f us  syscalls/frame %.4f",
		       bn, nconns, B.depth, B.size, rate, hist_pct(&all, 50) / 1e3,
		       hist_pct(&all, 99) / 1e3, hist_pct(&all, 99.9) / 1e3, sys_per);
		if (per_cpu >= 0)
			printf("  frames/server-cpu-s %.0f", per_cpu);
		printf("%s\n", atomic_load(&B.failed) ? "  (connections failed!)" : "");
	}
	bp_slice_release(&B.frame); /* before its pool goes with the group */
	np_group_destroy(&cli);
	if (srv) {
		np_group_stop(srv, 200);
		np_group_destroy(&srv);
	}
	free(B.conns);
	free(reqs);
	return atomic_load(&B.failed) ? 1 : 0;
}
