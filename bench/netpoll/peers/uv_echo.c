/*
 * uv_echo — netpoll's echo_server and rpc_echo on libuv, for comparison
 * (bench/netpoll/peers.sh; docs/netpoll.md, "Against libuv and libevent").
 *
 *   uv_echo [-m echo|rpc] [-p port] [-t threads]
 *
 * -m echo: every byte read is sent back. -m rpc: rpc_echo's wire format —
 * a 4-byte big-endian length, then that many bytes (at most 64 MiB, else
 * the connection closes), each whole frame answered with the same frame.
 * Shape as in netpoll: one uv_loop per thread, each with its own listening
 * socket on the same port (SO_REUSEPORT, so the kernel spreads
 * connections), nothing shared between loops. Prints "listening on
 * 127.0.0.1:PORT (libuv, MODE)" and serves until SIGINT or SIGTERM.
 *
 * Buffers, the libuv way: alloc_cb hands out the free tail of the
 * connection's input buffer; after a read the prefix holding whole frames
 * is given to a uv_write request, which owns (and frees) that buffer, and
 * the partial frame left over moves to a fresh buffer. So a read that
 * completes frames costs one malloc/free and the copy of the remainder,
 * never a copy of the frames echoed. Benchmark harness code.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define MAX_FRAME (64u << 20)
#define READ_CHUNK (64u << 10) /* libuv's own suggested_size */
#define MAX_THREADS 64

enum mode { MODE_ECHO, MODE_RPC };

struct conn {
	uv_tcp_t tcp;  /* first: handle -> conn */
	char *buf;     /* input; owned here until handed to a write */
	size_t cap, len;
	size_t need;   /* bytes to have before a frame can be echoed */
	enum mode mode;
};

struct wreq {
	uv_write_t req;
	char *buf; /* freed when the write completes */
};

struct worker {
	pthread_t tid;
	uv_loop_t loop;
	uv_tcp_t listener;
	uv_async_t stop;
	int fd;
	enum mode mode;
};

static void on_closed(uv_handle_t *h)
{
	struct conn *c = (struct conn *)h;
	free(c->buf);
	free(c);
}

static void conn_close(struct conn *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
	struct conn *c = (struct conn *)h;
	size_t want = c->need > c->len ? c->need - c->len : 0;
	if (want < suggested)
		want = suggested;
	if (!c->buf || c->cap - c->len < want) {
		size_t cap = c->len + want;
		char *nb = realloc(c->buf, cap);
		if (!nb) {
			*out = uv_buf_init(NULL, 0); /* read_cb sees UV_ENOBUFS */
			return;
		}
		c->buf = nb;
		c->cap = cap;
	}
	*out = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void on_written(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;
	if (status < 0)
		conn_close((struct conn *)req->handle);
	free(w->buf);
	free(w);
}

/* The length of the prefix of c->buf made of whole frames; sets c->need.
 * -EMSGSIZE for a frame over MAX_FRAME. */
static long whole_frames(struct conn *c)
{
	if (c->mode == MODE_ECHO)
		return (long)c->len;
	size_t off = 0;
	for (;;) {
		if (c->len - off < 4) {
			c->need = 4;
			return (long)off;
		}
		uint32_t n;
		memcpy(&n, c->buf + off, 4);
		n = ntohl(n);
		if (n > MAX_FRAME)
			return -EMSGSIZE;
		if (c->len - off < 4 + (size_t)n) {
			c->need = 4 + (size_t)n;
			return (long)off;
		}
		off += 4 + (size_t)n;
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct conn *c = (struct conn *)s;
	(void)b;
	if (nread < 0) { /* UV_EOF, a reset, or UV_ENOBUFS */
		conn_close(c);
		return;
	}
	c->len += (size_t)nread;
	long w = whole_frames(c);
	if (w < 0) {
		conn_close(c);
		return;
	}
	if (w == 0)
		return;
	/* Hand the buffer to the write; keep only the partial frame. */
	size_t rest = c->len - (size_t)w;
	char *nb = NULL;
	if (rest) {
		nb = malloc(rest > READ_CHUNK ? rest : READ_CHUNK);
		if (!nb) {
			conn_close(c);
			return;
		}
		memcpy(nb, c->buf + w, rest);
	}
	struct wreq *wr = malloc(sizeof(*wr));
	if (!wr) {
		free(nb);
		conn_close(c);
		return;
	}
	wr->buf = c->buf;
	uv_buf_t out = uv_buf_init(c->buf, (unsigned)w);
	c->buf = nb;
	c->cap = nb ? (rest > READ_CHUNK ? rest : READ_CHUNK) : 0;
	c->len = rest;
	if (uv_write(&wr->req, s, &out, 1, on_written) < 0) {
		free(wr->buf);
		free(wr);
		conn_close(c);
	}
}

static void on_connection(uv_stream_t *l, int status)
{
	struct worker *wk = l->data;
	if (status < 0)
		return;
	struct conn *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->mode = wk->mode;
	c->need = wk->mode == MODE_RPC ? 4 : 1;
	uv_tcp_init(&wk->loop, &c->tcp);
	if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0) {
		uv_close((uv_handle_t *)&c->tcp, on_closed);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void close_any(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (uv_is_closing(h))
		return;
	if (h->type == UV_TCP && h->data == NULL) /* a connection */
		uv_close(h, on_closed);
	else
		uv_close(h, NULL);
}

static void on_stop(uv_async_t *a)
{
	uv_walk(a->loop, close_any, NULL);
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	uv_run(&wk->loop, UV_RUN_DEFAULT);
	return NULL;
}

/* A listening socket on 127.0.0.1:port with SO_REUSEPORT (libuv 1.44 has
 * no flag for it); the bound port in *bound. -errno on failure. */
static int listen_fd(uint16_t port, uint16_t *bound)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t al = sizeof(a);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &al) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	*bound = ntohs(a.sin_port);
	return fd;
}

int main(int argc, char **argv)
{
	enum mode mode = MODE_ECHO;
	int port = 0, nthreads = 1, opt;
	while ((opt = getopt(argc, argv, "m:p:t:")) != -1) {
		switch (opt) {
		case 'm':
			if (strcmp(optarg, "echo") && strcmp(optarg, "rpc")) {
				fprintf(stderr, "uv_echo: mode is echo or rpc\n");
				return 2;
			}
			mode = strcmp(optarg, "rpc") == 0 ? MODE_RPC : MODE_ECHO;
			break;
		case 'p': port = atoi(optarg); break;
		case 't': nthreads = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: uv_echo [-m echo|rpc] [-p port] [-t threads]\n");
			return 2;
		}
	}
	if (nthreads < 1 || nthreads > MAX_THREADS || port < 0 || port > 65535) {
		fprintf(stderr, "uv_echo: bad arguments\n");
		return 2;
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* threads inherit the mask */
	signal(SIGPIPE, SIG_IGN);

	static struct worker wks[MAX_THREADS];
	uint16_t bound = (uint16_t)port;
	for (int i = 0; i < nthreads; i++) {
		struct worker *wk = &wks[i];
		wk->mode = mode;
		wk->fd = listen_fd(bound, &bound); /* the first binds, the rest join */
		if (wk->fd < 0) {
			fprintf(stderr, "uv_echo: listen: %s\n", strerror(-wk->fd));
			return 1;
		}
		uv_loop_init(&wk->loop);
		uv_tcp_init(&wk->loop, &wk->listener);
		wk->listener.data = wk;
		uv_async_init(&wk->loop, &wk->stop, on_stop);
		wk->stop.data = wk;
		int r = uv_tcp_open(&wk->listener, wk->fd);
		if (r == 0)
			r = uv_listen((uv_stream_t *)&wk->listener, 1024, on_connection);
		if (r < 0) {
			fprintf(stderr, "uv_echo: listen: %s\n", uv_strerror(r));
			return 1;
		}
	}
	for (int i = 0; i < nthreads; i++)
		pthread_create(&wks[i].tid, NULL, worker_main, &wks[i]);
	printf("listening on 127.0.0.1:%u (libuv, %s)\n", bound, mode == MODE_RPC ? "rpc" : "echo");
	fflush(stdout);
	int sig;
	sigwait(&set, &sig);
	for (int i = 0; i < nthreads; i++)
		uv_async_send(&wks[i].stop);
	for (int i = 0; i < nthreads; i++) {
		pthread_join(wks[i].tid, NULL);
		uv_loop_close(&wks[i].loop);
	}
	return 0;
}
