/* A program outside the tree, built against an installed GeeCache: an echo
 * server on the runtime, checked by a plain client socket. */
#include <bufpool/bufpool.h>
#include <netpoll/netpoll.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static ssize_t on_data(struct np_conn *c, struct bp_chain *in)
{
	return bp_chain_cut(in, bp_chain_len(in), np_conn_out(c)) < 0 ? -ENOMEM : 0;
}

int main(void)
{
	struct np_handler h = {.on_data = on_data};
	struct np_opts o = {.nloops = 1};
	struct np_group *g = np_group_create(&o, &h);
	if (!g)
		return 1;
	int port = np_group_listen(g, "127.0.0.1", 0);
	if (port <= 0 || np_group_start(g) < 0)
		return 2;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return 3;
	const char msg[] = "hello, installed geecache";
	if (write(fd, msg, sizeof(msg)) != (ssize_t)sizeof(msg))
		return 4;
	char buf[64];
	size_t got = 0;
	while (got < sizeof(msg)) {
		ssize_t r = read(fd, buf + got, sizeof(buf) - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 5;
		got += (size_t)r;
	}
	close(fd);
	np_group_destroy(&g);
	if (memcmp(buf, msg, sizeof(msg)) != 0)
		return 6;
	printf("ok: %s (%s)\n", buf, np_backend_name(o.backend));
	return 0;
}
