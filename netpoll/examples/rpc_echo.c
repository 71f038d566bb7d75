/*
 * rpc_echo — Netpoll's benchmark workload: length-prefixed messages (a
 * 4-byte big-endian length, then that many bytes), each answered with the
 * same frame. The handler waits for whole frames (returning the length it
 * needs, so a 1 MiB frame is not re-examined for every piece) and moves
 * each frame to the output by reference.
 *
 *   rpc_echo [-p port] [-t loops] [-b epoll|io_uring|kqueue]
 */
#include "netpoll/netpoll.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_FRAME (64u << 20)

static ssize_t on_data(struct np_conn *c, struct bp_chain *in)
{
	for (;;) {
		uint32_t be;
		const void *p = bp_chain_view(in, 0, 4, &be);
		if (!p)
			return 4; /* call again once the length is here */
		uint32_t n;
		memcpy(&n, p, 4);
		n = ntohl(n);
		if (n > MAX_FRAME)
			return -EMSGSIZE;
		if (bp_chain_len(in) < 4 + (size_t)n)
			return (ssize_t)(4 + (size_t)n);
		if (bp_chain_cut(in, 4 + (size_t)n, np_conn_out(c)) < 0)
			return -ENOMEM;
	}
}

int main(int argc, char **argv)
{
	struct np_opts o = {.in_max = MAX_FRAME + 8};
	int port = 0, opt;
	while ((opt = getopt(argc, argv, "p:t:b:")) != -1) {
		switch (opt) {
		case 'p': port = atoi(optarg); break;
		case 't': o.nloops = atoi(optarg); break;
		case 'b':
			if (np_backend_parse(optarg, &o.backend) < 0) {
				fprintf(stderr, "rpc_echo: unknown backend '%s'\n", optarg);
				return 2;
			}
			break;
		default:
			fprintf(stderr, "usage: rpc_echo [-p port] [-t loops] [-b backend]\n");
			return 2;
		}
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	struct np_handler h = {.on_data = on_data};
	struct np_group *g = np_group_create(&o, &h);
	if (!g) {
		fprintf(stderr, "rpc_echo: %s\n", strerror(errno));
		return 1;
	}
	int bound = np_group_listen(g, "127.0.0.1", (uint16_t)port);
	if (bound < 0 || np_group_start(g) < 0) {
		fprintf(stderr, "rpc_echo: listen: %s\n", strerror(bound < 0 ? -bound : EIO));
		np_group_destroy(&g);
		return 1;
	}
	printf("listening on 127.0.0.1:%d (%s)\n", bound, np_backend_name(np_group_backend(g)));
	fflush(stdout);
	int sig;
	sigwait(&set, &sig);
	np_group_stop(g, 2000);
	np_group_destroy(&g);
	return 0;
}
