/*
 * The readiness backends' read and write paths (epoll.c, kqueue.c): a
 * ready socket is read into the input chain and the output chain written
 * out by plain syscalls here, so that those backends differ only in how
 * they watch descriptors. np_internal.h states the contracts; io_uring
 * reads and writes by its own completions and uses none of this but
 * np__sock_error.
 */
#define _GNU_SOURCE
#include "netpoll/np_internal.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

void np__read_ready(struct np_loop *l, struct np_conn *c)
{
	size_t total = 0;
	int err = 0;
	bool eof = false;
	while (total < NP_READ_BUDGET) {
		struct iovec iov[2];
		int k = bp_chain_read_iov(&c->in, iov, 2);
		if (k < 0) {
			err = k;
			break;
		}
		size_t offered = 0;
		for (int i = 0; i < k; i++)
			offered += iov[i].iov_len;
		/* read(2) when one buffer will do: readv's iovec import is
		 * measurable on a pipeline-1 load (a syscall per request). */
		ssize_t r = k == 1 ? read(c->fd, iov[0].iov_base, iov[0].iov_len)
		                   : readv(c->fd, iov, k);
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
		/* A small batch sends now (NP_SEND_NOW_MAX); np__flush_all finds
		 * the chain empty later. */
		if (l->send_now && !(c->flags & (NP_C_CLOSED | NP_C_WANT_WRITE)) && bp_chain_len(&c->out))
			np__conn_writable(c);
	}
	if (c->flags & NP_C_CLOSED)
		return;
	if (err == -ENOMEM) {
		/* No buffer for the next read: the handler has had every byte
		 * read so far, and the replies it queued still go out before
		 * the close (reads stop, so level triggering does not spin). */
		np__conn_set_err(c, err);
		np_conn_close(c, true);
	} else if (err) {
		np__conn_error(c, err);
	} else if (eof) {
		np__conn_eof(c);
	}
}

/* Sets whether c waits for writability; tells the backend on a change. */
static void want_write(struct np_loop *l, struct np_conn *c, bool on,
                       void (*update)(struct np_loop *l, struct np_conn *c))
{
	if (on == !!(c->flags & NP_C_WANT_WRITE))
		return;
	if (on)
		c->flags |= NP_C_WANT_WRITE;
	else
		c->flags &= ~NP_C_WANT_WRITE;
	update(l, c);
}

int np__write_ready(struct np_loop *l, struct np_conn *c, struct iovec *iov,
                    void (*update)(struct np_loop *l, struct np_conn *c))
{
	while (bp_chain_len(&c->out)) {
		size_t bytes;
		int n = bp_chain_write_iov(&c->out, iov, NP_IOV_MAX, &bytes);
		/* send/sendmsg rather than write/writev: MSG_NOSIGNAL spares the
		 * embedding program a SIGPIPE when the peer has gone. One buffer
		 * (a small reply, or replies copied together) goes by send(2),
		 * which imports no msghdr or iovec. */
		ssize_t w;
		if (n == 1) {
			w = send(c->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
		} else {
			struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
			w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		}
		np__ctr(&l->st.write_calls, 1);
		np__ctr(&l->st.syscalls, 1);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				want_write(l, c, true, update);
				return 0;
			}
			return -errno;
		}
		np__conn_sent(c, (size_t)w);
		if (c->flags & NP_C_CLOSED)
			return 0;
		if ((size_t)w < bytes) { /* the socket buffer is full */
			want_write(l, c, true, update);
			return 0;
		}
	}
	want_write(l, c, false, update);
	return 0;
}

/* np__conn_event's body; sock_err > 0 is the socket error the event
 * carried, 0 has a connect's outcome read from the socket (SO_ERROR).
 * Inlined into both callers: epoll's copy is the code it always had. */
static inline void conn_event(struct np_loop *l, uint64_t tag, unsigned ev, int sock_err)
{
	struct np_conn *c = np__conn_lookup(l, tag);
	if (!c)
		return; /* stale: the slot was closed or reused */
	np__conn_ref(c);
	if (c->flags & NP_C_CONNECTING) {
		int err = sock_err ? sock_err : np__sock_error(c->fd);
		np__conn_connected(c, -err);
	} else {
		if ((ev & (NP_EV_IN | NP_EV_HUP)) && !(c->flags & NP_C_READ_OFF)) {
			np__read_ready(l, c);
		} else if ((ev & NP_EV_HUP) && !(c->flags & NP_C_CLOSED)) {
			int err = np__sock_error(c->fd);
			np__conn_error(c, err ? -err : -ECONNRESET);
		}
		if ((ev & NP_EV_OUT) && !(c->flags & NP_C_CLOSED))
			np__conn_writable(c);
	}
	np__conn_unref(c);
}

void np__conn_event(struct np_loop *l, uint64_t tag, unsigned ev)
{
	conn_event(l, tag, ev, 0);
}

void np__conn_event_err(struct np_loop *l, uint64_t tag, unsigned ev, int sock_err)
{
	conn_event(l, tag, ev, sock_err);
}

int np__sock_error(int fd)
{
	int e = 0;
	socklen_t len = sizeof(e);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		e = errno;
	return e;
}
