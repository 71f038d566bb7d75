/*
 * The epoll backend (Linux).
 *
 * Level-triggered, on purpose: a wakeup reads a bounded amount from each
 * ready connection (NP_READ_BUDGET; np__read_ready in readiness.c) so that
 * one busy peer cannot starve the others, and level triggering reports the rest at the next epoll_wait
 * without a ready list of our own. Interest changes (EPOLLOUT while a
 * write is pending, EPOLLIN off under backpressure) cost an epoll_ctl
 * each, and happen only on those transitions.
 */
#define _GNU_SOURCE
#include "netpoll/np_internal.h"

#ifdef NP_HAVE_EPOLL

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_EVENTS 256

struct ep {
	int epfd;
	bool no_pwait2; /* the kernel has no epoll_pwait2 */
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

static int ep_conn_flush(struct np_loop *l, struct np_conn *c)
{
	struct ep *e = l->be;
	return np__write_ready(l, c, e->iov, ep_conn_update);
}

/* Whole milliseconds (or none) go to epoll_wait; a timeout with
 * microseconds to epoll_pwait2 (Linux 5.11), or rounded up without it. */
static int ep_epoll_wait(struct ep *e, int64_t timeout_us)
{
	if (timeout_us > 0 && timeout_us % 1000 != 0 && !e->no_pwait2) {
		struct timespec ts = {.tv_sec = timeout_us / 1000000,
		                      .tv_nsec = (timeout_us % 1000000) * 1000};
		int n = epoll_pwait2(e->epfd, e->ev, MAX_EVENTS, &ts, NULL);
		if (n >= 0 || errno != ENOSYS)
			return n;
		e->no_pwait2 = true;
	}
	int ms = timeout_us < 0 ? -1 : (int)((timeout_us + 999) / 1000);
	return epoll_wait(e->epfd, e->ev, MAX_EVENTS, ms);
}

static int ep_wait(struct np_loop *l, int64_t timeout_us)
{
	struct ep *e = l->be;
	int n = ep_epoll_wait(e, timeout_us);
	np__woke(l, n);
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
		np__conn_event(l, tag,
		               ((ev & (EPOLLIN | EPOLLRDHUP)) ? NP_EV_IN : 0) |
		               ((ev & (EPOLLHUP | EPOLLERR)) ? NP_EV_HUP : 0) |
		               ((ev & EPOLLOUT) ? NP_EV_OUT : 0));
	}
	return n;
}

const struct np_backend_ops np__epoll_ops = {
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

#endif /* NP_HAVE_EPOLL */
