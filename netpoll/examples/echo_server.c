/*
 * echo_server — the smallest netpoll service: every byte read is sent
 * back. The input is moved to the output chain by reference
 * (bp_chain_cut), so the bytes the kernel wrote are the bytes it sends.
 *
 *   echo_server [-p port] [-t loops] [-b epoll|io_uring|kqueue]
 *
 * Prints "listening on 127.0.0.1:PORT (BACKEND)" and serves until SIGINT
 * or SIGTERM, then stops gracefully.
 */
#include "netpoll/netpoll.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ssize_t on_data(struct np_conn *c, struct bp_chain *in)
{
	return bp_chain_cut(in, bp_chain_len(in), np_conn_out(c)) < 0 ? -ENOMEM : 0;
}

int main(int argc, char **argv)
{
	struct np_opts o = {0};
	int port = 0, opt;
	while ((opt = getopt(argc, argv, "p:t:b:")) != -1) {
		switch (opt) {
		case 'p': port = atoi(optarg); break;
		case 't': o.nloops = atoi(optarg); break;
		case 'b':
			if (np_backend_parse(optarg, &o.backend) < 0) {
				fprintf(stderr, "echo_server: unknown backend '%s'\n", optarg);
				return 2;
			}
			break;
		default:
			fprintf(stderr, "usage: echo_server [-p port] [-t loops] [-b backend]\n");
			return 2;
		}
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* loops inherit the mask */
	signal(SIGPIPE, SIG_IGN);
	struct np_handler h = {.on_data = on_data};
	struct np_group *g = np_group_create(&o, &h);
	if (!g) {
		fprintf(stderr, "echo_server: %s\n", strerror(errno));
		return 1;
	}
	int bound = np_group_listen(g, "127.0.0.1", (uint16_t)port);
	if (bound < 0 || np_group_start(g) < 0) {
		fprintf(stderr, "echo_server: listen: %s\n", strerror(bound < 0 ? -bound : EIO));
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
