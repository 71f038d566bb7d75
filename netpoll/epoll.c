/*
 * The epoll backend (Linux).
 *
 * Level-triggered, on purpose: a wakeup reads a bounded amount from each
 * ready connection (READ_BUDGET) so that one busy peer cannot starve the
 * others, and level triggering reports the rest at the next epoll_wait
 * without a ready list of our own. Interest changes (EPOLLOUT while a
 * write is pending, EPOLLIN off under backpressure) cost an epoll_ctl
 * each, and happen only on those transitions.
 */
#define _GNU_SOURCE
#include "netpoll/np_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define READ_BUDGET (256u * 1024u) /* bytes per connection per wakeup */

struct ep {
	int epfd;
	struct epoll_event ev[MAX_EVENTS];
	struct iovec iov[NP_IOV_MAX];
};

static int ep_ctl(struct np_loop *l, int op, int fd, uint32_t events, uint64_t tag)
{
	struct ep *e = l->be;
	struct epoll_event ev = {.events = events, .data.u64 = tag};
	np__ctr(&l->st.syscalls, 1);
	return epoll_ctl(e->epfd, op, fd, &ev) < 0 ? -errno : 0;
}

static uint32_t conn_events(const struct np_conn *c)
{
	if (c->flags & NP_C_CONNECTING)
		return EPOLLOUT;
	uint32_t ev = 0;
	if (!(c->flags & NP_C_READ_OFF))
		ev |= EPOLLIN | EPOLLRDHUP;
	if (c->flags & NP_C_WANT_WRITE)
		ev |= EPOLLOUT;
	return ev;
}

static int ep_init(struct np_loop *l)
{
	struct ep *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (e->epfd < 0) {
		int err = -errno;
		free(e);
		return err;
	}
	l->be = e;
	return ep_ctl(l, EPOLL_CTL_ADD, l->wake_fd, EPOLLIN, np__tag(NP_TAG_WAKE, 0, 0));
}

static void ep_deinit(struct np_loop *l)
{
	struct ep *e = l->be;
	close(e->epfd);
	free(e);
	l->be = NULL;
}

static int ep_add_listener(struct np_loop *l, int fd)
{
	return ep_ctl(l, EPOLL_CTL_ADD, fd, EPOLLIN, np__tag(NP_TAG_LISTEN, (uint32_t)fd, 0));
}

static void ep_pause_listener(struct np_loop *l, int fd, bool paused)
{
	ep_ctl(l, EPOLL_CTL_MOD, fd, paused ? 0 : EPOLLIN,
	       np__tag(NP_TAG_LISTEN, (uint32_t)fd, 0));
}

static int ep_conn_add(struct np_loop *l, struct np_conn *c)
{
	return ep_ctl(l, EPOLL_CTL_ADD, c->fd, conn_events(c),
	              np__tag(NP_TAG_CONN, c->slot, c->gen));
}

static void ep_conn_update(struct np_loop *l, struct np_conn *c)
{
	ep_ctl(l, EPOLL_CTL_MOD, c->fd, conn_events(c), np__tag(NP_TAG_CONN, c->slot, c->gen));
}

static void ep_conn_set_read(struct np_loop *l, struct np_conn *c, bool on)
{
	(void)on; /* c->flags already says */
	ep_conn_update(l, c);
}

static void ep_conn_del(struct np_loop *l, struct np_conn *c)
{
	struct ep *e = l->be;
	np__ctr(&l->st.syscalls, 1);
	epoll_ctl(e->epfd, EPOLL_CTL_DEL, c->fd, NULL);
}

/* Writes as much of the output chain as the socket takes. */
static int ep_conn_flush(struct np_loop *l, struct np_conn *c)
{
	struct ep *e = l->be;
	while (bp_chain_len(&c->out)) {
		size_t bytes;
		int n = bp_chain_write_iov(&c->out, e->iov, NP_IOV_MAX, &bytes);
		/* sendmsg rather than writev: MSG_NOSIGNAL spares the embedding
		 * program a SIGPIPE when the peer has gone. */
		struct msghdr msg = {.msg_iov = e->iov, .msg_iovlen = (size_t)n};
		ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		np__ctr(&l->st.write_calls, 1);
		np__ctr(&l->st.syscalls, 1);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				if (!(c->flags & NP_C_WANT_WRITE)) {
					c->flags |= NP_C_WANT_WRITE;
					ep_conn_update(l, c);
				}
				return 0;
			}
			return -errno;
		}
		np__conn_sent(c, (size_t)w);
		if (c->flags & NP_C_CLOSED)
			return 0;
		if ((size_t)w < bytes) { /* the socket buffer is full */
			if (!(c->flags & NP_C_WANT_WRITE)) {
				c->flags |= NP_C_WANT_WRITE;
				ep_conn_update(l, c);
			}
			return 0;
		}
	}
	if (c->flags & NP_C_WANT_WRITE) {
		c->flags &= ~NP_C_WANT_WRITE;
		ep_conn_update(l, c);
	}
	return 0;
}

/* Reads up to READ_BUDGET into the input chain, then hands it over. */
static void ep_read(struct np_loop *l, struct np_conn *c)
{
	size_t total = 0;
	int err = 0;
	bool eof = false;
	while (total < READ_BUDGET) {
		struct iovec iov[2];
		int k = bp_chain_read_iov(&c->in, iov, 2);
		if (k < 0) {
			err = k;
			break;
		}
		size_t offered = 0;
		for (int i = 0; i < k; i++)
			offered += iov[i].iov_len;
		ssize_t r = readv(c->fd, iov, k);
		np__ctr(&l->st.read_calls, 1);
		np__ctr(&l->st.syscalls, 1);
		if (r > 0) {
			bp_chain_read_commit(&c->in, (size_t)r);
			total += (size_t)r;
			if ((size_t)r < offered)
				break; /* drained for now */
			continue;
		}
		bp_chain_read_commit(&c->in, 0);
		if (r == 0)
			eof = true;
		else if (errno == EINTR)
			continue;
		else if (errno != EAGAIN)
			err = -errno;
		break;
	}
	if (total) {
		np__ctr(&l->st.bytes_read, total);
		np__conn_input(c);
	}
	if (c->flags & NP_C_CLOSED)
		return;
	if (err)
		np__conn_error(c, err);
	else if (eof)
		np__conn_eof(c);
}

static int sock_error(int fd)
{
	int e = 0;
	socklen_t len = sizeof(e);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		e = errno;
	return e;
}

static int ep_wait(struct np_loop *l, int timeout_ms)
{
	struct ep *e = l->be;
	int n = epoll_wait(e->epfd, e->ev, MAX_EVENTS, timeout_ms);
	np__ctr(&l->st.wait_calls, 1);
	np__ctr(&l->st.syscalls, 1);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		uint64_t tag = e->ev[i].data.u64;
		uint32_t ev = e->ev[i].events;
		switch ((enum np_tag)(tag & 3)) {
		case NP_TAG_WAKE:
			np__wake_drain(l);
			continue;
		case NP_TAG_LISTEN:
			np__listener_ready(l, (int)((tag >> 2) & 0x3fffffff));
			continue;
		case NP_TAG_CONN:
			break;
		}
		struct np_conn *c = np__conn_lookup(l, tag);
		if (!c)
			continue; /* stale: the slot was closed or reused */
		np_conn_ref(c);
		if (c->flags & NP_C_CONNECTING) {
			int err = sock_error(c->fd);
			np__conn_connected(c, -err);
		} else {
			if ((ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) &&
			    !(c->flags & NP_C_READ_OFF))
				ep_read(l, c);
			else if ((ev & (EPOLLHUP | EPOLLERR)) && !(c->flags & NP_C_CLOSED)) {
				int err = sock_error(c->fd);
				np__conn_error(c, err ? -err : -ECONNRESET);
			}
			if ((ev & EPOLLOUT) && !(c->flags & NP_C_CLOSED))
				np__conn_writable(c);
		}
		np_conn_unref(c);
	}
	return n;
}

const struct np_backend_ops np__epoll_ops = {
	.name = "epoll",
	.init = ep_init,
	.deinit = ep_deinit,
	.add_listener = ep_add_listener,
	.pause_listener = ep_pause_listener,
	.conn_add = ep_conn_add,
	.conn_set_read = ep_conn_set_read,
	.conn_flush = ep_conn_flush,
	.conn_del = ep_conn_del,
	.wait = ep_wait,
};
