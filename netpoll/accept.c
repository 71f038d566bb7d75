/*
 * Accepting: the listeners, the accept loop, the back-off when descriptors
 * run out, and (NP_ACCEPT_HANDOFF) the hand-off of accepted connections to
 * the least-loaded loop. Loop thread only, but for np_group_listen (before
 * np_group_start). docs/netpoll.md, "Accepting: SO_REUSEPORT or hand-off".
 */
#define _GNU_SOURCE
#include "netpoll/np_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* SOCK_NONBLOCK and SOCK_CLOEXEC come with accept4 (Linux, FreeBSD 10+);
 * where they are missing (macOS) the flags are set with fcntl. */
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
#define NP_HAVE_SOCK_FLAGS 1
#endif

#define ACCEPT_BATCH 64
#define ACCEPT_BACKOFF_MS 100

/* ---- back-off --------------------------------------------------------- */

static void accept_resume(void *arg)
{
	struct np_loop *l = arg;
	l->accept_timer = NULL;
	l->accept_paused = false;
	for (int i = 0; i < l->nlisten; i++)
		l->ops->pause_listener(l, l->listen_fd[i], false);
}

static void accept_backoff(struct np_loop *l)
{
	/* Out of descriptors: stop accepting for a while rather than spin on
	 * an event that stays ready, and say nothing per failure. */
	if (l->accept_paused)
		return;
	/* The timer first: paused without one, the listeners would never
	 * resume (no memory for it: keep accepting, and try again at the
	 * next failure). */
	l->accept_timer = np_timer_add(l, ACCEPT_BACKOFF_MS, 0, accept_resume, l);
	if (!l->accept_timer)
		return;
	l->accept_paused = true;
	np__ctr(&l->st.accept_backoffs, 1);
	for (int i = 0; i < l->nlisten; i++)
		l->ops->pause_listener(l, l->listen_fd[i], true);
}

bool np__accept_error(struct np_loop *l, int err)
{
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		accept_backoff(l);
		return true;
	}
	return false; /* transient (ECONNABORTED, EINTR, ...): go on */
}

/* ---- adoption and hand-off -------------------------------------------- */

/* Makes fd (counted in l->nconns_pub by the caller) a connection of l. */
static void conn_adopt(struct np_loop *l, int fd)
{
	struct np_group *g = l->g;
	atomic_fetch_sub_explicit(&l->nconns_pub, 1, memory_order_relaxed);
	if (l->stopping || atomic_load(&g->nconns) >= g->o.max_conns) {
		if (!l->stopping && g->o.reject_msg)
			(void)!send(fd, g->o.reject_msg, strlen(g->o.reject_msg),
			            MSG_DONTWAIT | MSG_NOSIGNAL);
		close(fd);
		np__ctr(&l->st.conns_rejected, 1);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct np_conn *c = np__conn_new(l, fd, NP_C_OPEN);
	if (!c) {
		close(fd);
		np__ctr(&l->st.conns_rejected, 1);
		return;
	}
	np__ctr(&l->st.conns_accepted, 1);
	if (l->ops->conn_add(l, c) < 0) {
		c->flags &= ~NP_C_OPEN;
		np__conn_close_now(c, -EIO);
		return;
	}
	if (g->h.on_open && g->h.on_open(c) < 0)
		np__conn_close_now(c, -ECONNREFUSED);
	else if (bp_chain_len(&c->out))
		np__flush_schedule(l, c);
}

struct handoff {
	struct np_loop *to;
	int fd;
};

static void handoff_run(void *arg)
{
	struct handoff *h = arg;
	struct np_loop *l = h->to;
	int fd = h->fd;
	bp_objpool_put(l->g->post_pool, &h);
	np__ctr(&l->st.handoffs, 1);
	conn_adopt(l, fd);
}

/* HANDOFF mode: the least-loaded loop (by open connections). */
static struct np_loop *pick_loop(struct np_group *g)
{
	struct np_loop *best = &g->loops[0];
	uint32_t min = UINT32_MAX;
	for (int i = 0; i < g->nloops; i++) {
		uint32_t n = atomic_load_explicit(&g->loops[i].nconns_pub, memory_order_relaxed);
		if (n < min) {
			min = n;
			best = &g->loops[i];
		}
	}
	return best;
}

void np__conn_accepted(struct np_loop *l, int fd)
{
	struct np_group *g = l->g;
	if (g->o.accept_mode == NP_ACCEPT_HANDOFF && g->nloops > 1) {
		struct np_loop *to = pick_loop(g);
		if (to != l) {
			/* The post node doubles as the hand-off record. */
			_Static_assert(sizeof(struct handoff) <= sizeof(struct np_post), "fits");
			struct handoff *h = bp_objpool_get(g->post_pool);
			if (h) {
				h->to = to;
				h->fd = fd;
				atomic_fetch_add_explicit(&to->nconns_pub, 1, memory_order_relaxed);
				if (np_loop_post(to, handoff_run, h) == 0)
					return;
				atomic_fetch_sub_explicit(&to->nconns_pub, 1, memory_order_relaxed);
				bp_objpool_put(g->post_pool, &h);
			}
		}
	}
	atomic_fetch_add_explicit(&l->nconns_pub, 1, memory_order_relaxed);
	conn_adopt(l, fd);
}

/* ---- listeners -------------------------------------------------------- */

#ifndef NP_HAVE_SOCK_FLAGS
/* O_NONBLOCK and FD_CLOEXEC on fd: 0 or a negative errno. Not atomic with
 * the descriptor's creation: a fork+exec on another thread in between can
 * inherit it (what SOCK_CLOEXEC exists to prevent). */
static int fd_nonblock_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	return 0;
}
#endif

int np__tcp_socket(void)
{
#ifdef NP_HAVE_SOCK_FLAGS
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	return fd < 0 ? -errno : fd;
#else
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -errno;
	int r = fd_nonblock_cloexec(fd);
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
#endif
}

/* One accepted connection, non-blocking and close-on-exec; -1 with errno
 * as accept's. Counts its system calls. */
static int accept_nb(struct np_loop *l, int lfd)
{
#ifdef NP_HAVE_SOCK_FLAGS
	np__ctr(&l->st.syscalls, 1);
	return accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
	np__ctr(&l->st.syscalls, 1);
	int fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		return -1;
	np__ctr(&l->st.syscalls, 3);
	if (fd_nonblock_cloexec(fd) < 0) {
		/* Not this connection's fault, nor the listener's: drop it and
		 * go on, as for a connection aborted before accept. */
		close(fd);
		errno = ECONNABORTED;
		return -1;
	}
	return fd;
#endif
}

void np__listener_ready(struct np_loop *l, int lfd)
{
	for (int n = 0; n < ACCEPT_BATCH && !l->accept_paused && !l->stopping; n++) {
		int fd = accept_nb(l, lfd);
		if (fd >= 0) {
			np__conn_accepted(l, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		np__accept_error(l, errno);
		return;
	}
}

static int make_listener(const char *host, uint16_t port, int *out_fd)
{
	struct sockaddr_in a;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	if (inet_pton(AF_INET, host && *host ? host : "127.0.0.1", &a.sin_addr) != 1)
		return -EINVAL;
	int fd = np__tcp_socket();
	if (fd < 0)
		return fd;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 1024) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	socklen_t len = sizeof(a);
	getsockname(fd, (struct sockaddr *)&a, &len);
	*out_fd = fd;
	return ntohs(a.sin_port);
}

int np_group_listen(struct np_group *g, const char *host, uint16_t port)
{
	int bound = port;
	int n = g->o.accept_mode == NP_ACCEPT_HANDOFF ? 1 : g->nloops;
	for (int i = 0; i < n; i++) {
		struct np_loop *l = &g->loops[i];
		if (l->nlisten == NP_MAX_LISTEN)
			return -ENOSPC;
		int fd = -1;
		int r = make_listener(host, (uint16_t)bound, &fd);
		if (r < 0)
			return r;
		bound = r;
		l->listen_fd[l->nlisten++] = fd; /* armed when the loop starts */
	}
	return bound;
}

int np__listeners_start(struct np_loop *l)
{
	for (int i = 0; i < l->nlisten; i++) {
		int r = l->ops->add_listener(l, l->listen_fd[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

void np__listeners_stop(struct np_loop *l)
{
	for (int i = 0; i < l->nlisten; i++) {
		l->ops->pause_listener(l, l->listen_fd[i], true);
		close(l->listen_fd[i]);
	}
	l->nlisten = 0;
}
