/*
 * ev_echo — netpoll's echo_server and rpc_echo on libevent, for comparison
 * (bench/netpoll/peers.sh; docs/netpoll.md, "Against libuv and libevent").
 *
 *   ev_echo [-m echo|rpc] [-p port] [-t threads]
 *
 * -m echo: every byte read is sent back. -m rpc: rpc_echo's wire format —
 * a 4-byte big-endian length, then that many bytes (at most 64 MiB, else
 * the connection closes), each whole frame answered with the same frame.
 * Shape as in netpoll: one event_base per thread, each with its own
 * evconnlistener on the same port (LEV_OPT_REUSEABLE_PORT), nothing shared
 * between bases. Prints "listening on 127.0.0.1:PORT (libevent, MODE)" and
 * serves until SIGINT or SIGTERM.
 *
 * Buffers, the libevent way: a bufferevent per connection; the input
 * evbuffer's chains move to the output with evbuffer_remove_buffer (no
 * copy of the payload), and in rpc mode the read low watermark is set to
 * the bytes the next frame needs, as rpc_echo returns that length to
 * netpoll. Benchmark harness code.
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FRAME (64u << 20)
#define MAX_THREADS 64

enum mode { MODE_ECHO, MODE_RPC };

struct worker;

/* A connection, on its worker's list so that stopping can free it. */
struct conn {
	struct bufferevent *bev;
	struct worker *wk;
	struct conn *prev, *next;
};

struct worker {
	pthread_t tid;
	struct event_base *base;
	struct evconnlistener *listener;
	struct conn head; /* circular list of live connections */
	enum mode mode;
};

static void conn_free(struct conn *c)
{
	c->prev->next = c->next;
	c->next->prev = c->prev;
	bufferevent_free(c->bev);
	free(c);
}

static void on_read_echo(struct bufferevent *bev, void *arg)
{
	(void)arg;
	bufferevent_write_buffer(bev, bufferevent_get_input(bev));
}

static void on_read_rpc(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer *out = bufferevent_get_output(bev);
	size_t need = 4;
	for (;;) {
		size_t have = evbuffer_get_length(in);
		uint32_t n;
		if (have < 4) {
			need = 4;
			break;
		}
		evbuffer_copyout(in, &n, 4);
		n = ntohl(n);
		if (n > MAX_FRAME) {
			conn_free(arg);
			return;
		}
		need = 4 + (size_t)n;
		if (have < need)
			break;
		evbuffer_remove_buffer(in, out, need);
	}
	bufferevent_setwatermark(bev, EV_READ, need, 0);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		conn_free(arg);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	struct worker *wk = arg;
	(void)l, (void)sa, (void)salen;
	struct conn *c = calloc(1, sizeof(*c));
	struct bufferevent *bev = c ? bufferevent_socket_new(wk->base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
	if (!bev) {
		free(c);
		evutil_closesocket(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->bev = bev;
	c->wk = wk;
	c->next = wk->head.next;
	c->prev = &wk->head;
	c->next->prev = c;
	wk->head.next = c;
	bufferevent_setcb(bev, wk->mode == MODE_RPC ? on_read_rpc : on_read_echo, NULL, on_event, c);
	if (wk->mode == MODE_RPC)
		bufferevent_setwatermark(bev, EV_READ, 4, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	event_base_dispatch(wk->base);
	return NULL;
}

int main(int argc, char **argv)
{
	enum mode mode = MODE_ECHO;
	int port = 0, nthreads = 1, opt;
	while ((opt = getopt(argc, argv, "m:p:t:")) != -1) {
		switch (opt) {
		case 'm':
			if (strcmp(optarg, "echo") && strcmp(optarg, "rpc")) {
				fprintf(stderr, "ev_echo: mode is echo or rpc\n");
				return 2;
			}
			mode = strcmp(optarg, "rpc") == 0 ? MODE_RPC : MODE_ECHO;
			break;
		case 'p': port = atoi(optarg); break;
		case 't': nthreads = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: ev_echo [-m echo|rpc] [-p port] [-t threads]\n");
			return 2;
		}
	}
	if (nthreads < 1 || nthreads > MAX_THREADS || port < 0 || port > 65535) {
		fprintf(stderr, "ev_echo: bad arguments\n");
		return 2;
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* threads inherit the mask */
	signal(SIGPIPE, SIG_IGN);
	evthread_use_pthreads(); /* for event_base_loopbreak from main */

	static struct worker wks[MAX_THREADS];
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < nthreads; i++) {
		struct worker *wk = &wks[i];
		wk->mode = mode;
		wk->head.next = wk->head.prev = &wk->head;
		wk->base = event_base_new();
		/* The first binds (port 0: any), the rest join its port. */
		wk->listener = wk->base ? evconnlistener_new_bind(
			wk->base, on_accept, wk,
			LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT, 1024,
			(struct sockaddr *)&a, sizeof(a)) : NULL;
		if (!wk->listener) {
			perror("ev_echo: listen");
			return 1;
		}
		socklen_t al = sizeof(a);
		getsockname(evconnlistener_get_fd(wk->listener), (struct sockaddr *)&a, &al);
	}
	for (int i = 0; i < nthreads; i++)
		pthread_create(&wks[i].tid, NULL, worker_main, &wks[i]);
	printf("listening on 127.0.0.1:%u (libevent, %s)\n", ntohs(a.sin_port),
	       mode == MODE_RPC ? "rpc" : "echo");
	fflush(stdout);
	int sig;
	sigwait(&set, &sig);
	for (int i = 0; i < nthreads; i++)
		event_base_loopbreak(wks[i].base);
	for (int i = 0; i < nthreads; i++) {
		struct worker *wk = &wks[i];
		pthread_join(wk->tid, NULL);
		while (wk->head.next != &wk->head)
			conn_free(wk->head.next);
		evconnlistener_free(wk->listener);
		event_base_free(wk->base);
	}
	libevent_global_shutdown();
	return 0;
}
