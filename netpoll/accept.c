/*
 * Accepting: the listeners (TCP over IPv4 and IPv6, unix stream sockets),
 * the accept loop, the back-off when descriptors
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
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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

/* Makes fd (counted in l->nconns_pub by the caller) a connection of l.
 * tcp: it came from a TCP listener (not a unix one), so TCP's options
 * apply. */
static void conn_adopt(struct np_loop *l, int fd, bool tcp)
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
	if (tcp) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
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
	bool tcp;
};

static void handoff_run(void *arg)
{
	struct handoff *h = arg;
	struct np_loop *l = h->to;
	int fd = h->fd;
	bool tcp = h->tcp;
	bp_objpool_put(l->g->post_pool, &h);
	np__ctr(&l->st.handoffs, 1);
	conn_adopt(l, fd, tcp);
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

void np__conn_accepted(struct np_loop *l, int fd, bool tcp)
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
				h->tcp = tcp;
				atomic_fetch_add_explicit(&to->nconns_pub, 1, memory_order_relaxed);
				if (np_loop_post(to, handoff_run, h) == 0)
					return;
				atomic_fetch_sub_explicit(&to->nconns_pub, 1, memory_order_relaxed);
				bp_objpool_put(g->post_pool, &h);
			}
		}
	}
	atomic_fetch_add_explicit(&l->nconns_pub, 1, memory_order_relaxed);
	conn_adopt(l, fd, tcp);
}

/* ---- sockets and addresses -------------------------------------------- */

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

int np__stream_socket(int family)
{
#ifdef NP_HAVE_SOCK_FLAGS
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	return fd < 0 ? -errno : fd;
#else
	int fd = socket(family, SOCK_STREAM, 0);
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

int np__sockaddr(const char *host, uint16_t port, struct sockaddr_storage *ss,
                 socklen_t *len)
{
	char buf[INET6_ADDRSTRLEN + 2];
	if (!host || !*host)
		host = "127.0.0.1";
	size_t n = strlen(host);
	if (host[0] == '[' && n > 2 && host[n - 1] == ']' && n - 2 < sizeof(buf)) {
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = '\0';
		host = buf;
	}
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		*len = sizeof(*a4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		*len = sizeof(*a6);
		return 0;
	}
	return -EINVAL;
}

/* ---- accepting -------------------------------------------------------- */

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

bool np__listener_tcp(const struct np_loop *l, int lfd)
{
	for (int i = 0; i < l->nlisten; i++)
		if (l->listen_fd[i] == lfd)
			return l->listen_tcp[i];
	return true;
}

void np__listener_ready(struct np_loop *l, int lfd)
{
	bool tcp = np__listener_tcp(l, lfd);
	for (int n = 0; n < ACCEPT_BATCH && !l->accept_paused && !l->stopping; n++) {
		int fd = accept_nb(l, lfd);
		if (fd >= 0) {
			np__conn_accepted(l, fd, tcp);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		/* EAGAIN: drained (or, on a unix socket shared by the loops,
		 * another loop took it) */
		np__accept_error(l, errno);
		return;
	}
}

/* ---- listeners -------------------------------------------------------- */

/* How many loops get a socket (or a descriptor) of each listener: all with
 * REUSEPORT, loop 0 alone with HANDOFF. -ENOSPC when one of them has no
 * room for another listener (checked before anything is bound). */
static int listener_loops(struct np_group *g)
{
	int n = g->o.accept_mode == NP_ACCEPT_HANDOFF ? 1 : g->nloops;
	for (int i = 0; i < n; i++)
		if (g->loops[i].nlisten == NP_MAX_LISTEN)
			return -ENOSPC;
	return n;
}

static void loop_listener_add(struct np_loop *l, int fd, bool tcp)
{
	l->listen_tcp[l->nlisten] = tcp;
	l->listen_fd[l->nlisten++] = fd; /* armed when the loop starts */
}

/* np_opts.listen_backlog */
static int backlog(const struct np_group *g)
{
	return g->o.listen_backlog > 0 ? g->o.listen_backlog : 1024;
}

static int make_listener(const struct sockaddr_storage *ss, socklen_t len,
                         int backlog, int *out_fd)
{
	int fd = np__stream_socket(ss->ss_family);
	if (fd < 0)
		return fd;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	/* "::" is IPv6 only, so that 0.0.0.0 can be listened on beside it. */
	if (ss->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, backlog) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	struct sockaddr_storage got;
	socklen_t glen = sizeof(got);
	getsockname(fd, (struct sockaddr *)&got, &glen);
	*out_fd = fd;
	return ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
	                                       : ((struct sockaddr_in *)&got)->sin_port);
}

int np_group_listen(struct np_group *g, const char *host, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (np__sockaddr(host, port, &ss, &len) < 0)
		return -EINVAL;
	int n = listener_loops(g);
	if (n < 0)
		return n;
	int bound = port;
	for (int i = 0; i < n; i++) {
		int fd = -1;
		int r = make_listener(&ss, len, backlog(g), &fd);
		if (r < 0)
			return r;
		bound = r;
		/* the loops after the first bind the port the first got */
		if (ss.ss_family == AF_INET6)
			((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)r);
		else
			((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)r);
		loop_listener_add(&g->loops[i], fd, true);
	}
	return bound;
}

/* A file at a->sun_path: none (0), a socket nothing accepts on (removed,
 * 0), a live one (-EADDRINUSE), something else (-EEXIST), or the negative
 * errno that kept us from telling. */
static int unix_stale_remove(const struct sockaddr_un *a)
{
	struct stat st;
	if (lstat(a->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	int fd = np__stream_socket(AF_UNIX);
	if (fd < 0)
		return fd;
	/* Non-blocking: a live listener with a full backlog says EAGAIN. */
	int r = connect(fd, (const struct sockaddr *)a, sizeof(*a));
	int e = r == 0 ? 0 : errno;
	close(fd);
	if (r == 0 || e == EAGAIN || e == EINPROGRESS)
		return -EADDRINUSE;
	if (e != ECONNREFUSED)
		return -e;
	return unlink(a->sun_path) < 0 && errno != ENOENT ? -errno : 0;
}

int np_group_listen_unix(struct np_group *g, const char *path, unsigned mode)
{
	struct sockaddr_un a;
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	if (!path || !*path)
		return -EINVAL;
	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	if (g->nunix == NP_MAX_LISTEN)
		return -ENOSPC;
	int n = listener_loops(g);
	if (n < 0)
		return n;
	int r = unix_stale_remove(&a);
	if (r < 0)
		return r;
	int fd = np__stream_socket(AF_UNIX);
	if (fd < 0)
		return fd;
	/* Made unreachable (umask 0777), then opened to `mode`: never more
	 * open than asked, even for a moment. */
	mode_t old = umask(0777);
	r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	umask(old);
	if (r < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	struct stat st;
	struct np_unix_path *u = &g->unix_paths[g->nunix];
	if (chmod(path, (mode_t)(mode & 07777)) < 0 || listen(fd, backlog(g)) < 0 ||
	    lstat(path, &st) < 0 || !(u->path = strdup(path))) {
		r = -errno;
		unlink(path);
		close(fd);
		return r;
	}
	u->dev = st.st_dev;
	u->ino = st.st_ino;
	g->nunix++; /* from here on np__unix_paths_remove removes it */
	/* One socket: every loop watches its own descriptor of it (a unix
	 * socket has no SO_REUSEPORT spreading); whichever loop accepts
	 * first takes the connection, the others find nothing (EAGAIN). */
	for (int i = 0; i < n; i++) {
		int d = i == 0 ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (d < 0)
			return -errno; /* the loops close what they got */
		loop_listener_add(&g->loops[i], d, false);
	}
	return 0;
}

void np__unix_paths_remove(struct np_group *g)
{
	for (int i = 0; i < g->nunix; i++) {
		struct np_unix_path *u = &g->unix_paths[i];
		struct stat st;
		/* only the file we made: not one put there since */
		if (lstat(u->path, &st) == 0 && st.st_dev == u->dev && st.st_ino == u->ino)
			unlink(u->path);
		free(u->path);
		u->path = NULL;
	}
	g->nunix = 0;
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
