/*
 * The kqueue backend (FreeBSD, macOS).
 *
 * COMPILE-CHECKED ONLY: this file has never run. GeeCache is developed and
 * tested on Linux, where kqueue does not exist, so CI can only compile it
 * for a FreeBSD target against a small header shim
 * (tests/kqueue_shim/check.sh: clang --target=x86_64-unknown-freebsd14.0
 * -fsyntax-only). That catches drift from np_internal.h and plain C
 * mistakes; it proves nothing about behaviour. The shared files it runs
 * with (post.c's eventfd, accept.c's accept4) exist on FreeBSD 13+, not on
 * macOS. backend.c's table has its row under NP_HAVE_KQUEUE, the macro this
 * file compiles under.
 *
 * It mirrors epoll.c: level-triggered (no EV_CLEAR), a bounded read per
 * connection per wakeup (NP_READ_BUDGET: the read and write paths are
 * readiness.c's np__read_ready/np__write_ready), interest changed only on
 * the same transitions (write interest while output waits, read interest
 * off under backpressure). kqueue keeps one filter per direction, so where epoll.c
 * changes an event mask this file enables/disables EVFILT_READ and
 * EVFILT_WRITE, both in one kevent() call; a connection that is readable
 * and writable arrives as two events, each dispatched on its own.
 *
 * udata carries the 64-bit tag of np__tag(), so 64-bit targets only.
 */
#include "netpoll/np_internal.h"

#ifdef NP_HAVE_KQUEUE

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/event.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256

_Static_assert(sizeof(void *) >= sizeof(uint64_t),
               "kevent udata carries the 64-bit event tag");
#ifdef IOV_MAX
_Static_assert(NP_IOV_MAX <= IOV_MAX, "sendmsg takes at most IOV_MAX iovecs");
#endif

struct kq {
	int kqfd;
	struct kevent ev[MAX_EVENTS];
	struct iovec iov[NP_IOV_MAX];
};

/* What an event says, in epoll.c's terms, so that dispatch reads the same. */
enum { KQ_IN = 1u << 0, KQ_OUT = 1u << 1, KQ_HUP = 1u << 2, KQ_ERR = 1u << 3 };

static void *tag_udata(uint64_t tag) { return (void *)(uintptr_t)tag; }
static uint64_t udata_tag(void *udata) { return (uint64_t)(uintptr_t)udata; }

/* Applies n changes at once. 0 or a negative errno (the first change that
 * failed; with no event list the kernel stops there). */
static int kq_apply(struct np_loop *l, const struct kevent *ch, int n)
{
	struct kq *k = l->be;
	np__ctr(&l->st.syscalls, 1);
	return kevent(k->kqfd, ch, n, NULL, 0, NULL) < 0 ? -errno : 0;
}

/* Sets both filters of a connection from its flags (epoll.c's conn_events):
 * connecting: write only; else read unless READ_OFF, write if WANT_WRITE.
 * EV_ADD every time: it creates the knote on the first call, updates it
 * afterwards, and has the filter re-evaluated, so a re-enabled filter whose
 * level is already up fires at the next kevent(). */
static int conn_apply(struct np_loop *l, struct np_conn *c)
{
	bool rd = !(c->flags & (NP_C_CONNECTING | NP_C_READ_OFF));
	bool wr = c->flags & (NP_C_CONNECTING | NP_C_WANT_WRITE);
	void *ud = tag_udata(np__tag(NP_TAG_CONN, c->slot, c->gen));
	struct kevent ch[2];
	EV_SET(&ch[0], (uintptr_t)c->fd, EVFILT_READ,
	       EV_ADD | (rd ? EV_ENABLE : EV_DISABLE), 0, 0, ud);
	EV_SET(&ch[1], (uintptr_t)c->fd, EVFILT_WRITE,
	       EV_ADD | (wr ? EV_ENABLE : EV_DISABLE), 0, 0, ud);
	return kq_apply(l, ch, 2);
}

static int kq_init(struct np_loop *l)
{
	struct kq *k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->kqfd = kqueue();
	if (k->kqfd < 0) {
		int err = -errno;
		free(k);
		return err;
	}
	l->be = k;
	/* post.c owns wake_fd (an eventfd today) and reads it in
	 * np__wake_drain; here it is just a readable descriptor. EVFILT_USER
	 * would need no descriptor, but the post path in post.c writes it. */
	struct kevent ch;
	EV_SET(&ch, (uintptr_t)l->wake_fd, EVFILT_READ, EV_ADD, 0, 0,
	       tag_udata(np__tag(NP_TAG_WAKE, 0, 0)));
	return kq_apply(l, &ch, 1);
}

static void kq_deinit(struct np_loop *l)
{
	struct kq *k = l->be;
	close(k->kqfd); /* drops every knote */
	free(k);
	l->be = NULL;
}

static int kq_add_listener(struct np_loop *l, int fd)
{
	struct kevent ch;
	EV_SET(&ch, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0,
	       tag_udata(np__tag(NP_TAG_LISTEN, (uint32_t)fd, 0)));
	return kq_apply(l, &ch, 1);
}

static void kq_pause_listener(struct np_loop *l, int fd, bool paused)
{
	struct kevent ch;
	EV_SET(&ch, (uintptr_t)fd, EVFILT_READ,
	       EV_ADD | (paused ? EV_DISABLE : EV_ENABLE), 0, 0,
	       tag_udata(np__tag(NP_TAG_LISTEN, (uint32_t)fd, 0)));
	kq_apply(l, &ch, 1);
}

static int kq_conn_add(struct np_loop *l, struct np_conn *c)
{
	/* The shared write path sends with MSG_NOSIGNAL; macOS documents only
	 * SO_NOSIGPIPE, so set that too: a write to a peer that has gone must
	 * not raise SIGPIPE in the embedding program. */
	int one = 1;
	np__ctr(&l->st.syscalls, 1);
	if (setsockopt(c->fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one)) < 0)
		return -errno;
	return conn_apply(l, c);
}

static void kq_conn_set_read(struct np_loop *l, struct np_conn *c, bool on)
{
	(void)on; /* c->flags already says */
	conn_apply(l, c);
}

static void kq_conn_del(struct np_loop *l, struct np_conn *c)
{
	/* close() would drop the knotes too; deleting them here keeps the
	 * contract of conn_del (no more events) whoever closes the fd. */
	struct kevent ch[2];
	EV_SET(&ch[0], (uintptr_t)c->fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
	EV_SET(&ch[1], (uintptr_t)c->fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
	kq_apply(l, ch, 2);
}

static void kq_conn_update(struct np_loop *l, struct np_conn *c)
{
	(void)conn_apply(l, c); /* a failed change shows as a later error */
}

/* The write path is readiness.c's (np__write_ready): sendmsg with MSG_NOSIGNAL
 * (FreeBSD has it; SO_NOSIGPIPE, set in conn_add, covers macOS too). */
static int kq_conn_flush(struct np_loop *l, struct np_conn *c)
{
	struct kq *k = l->be;
	return np__write_ready(l, c, k->iov, kq_conn_update);
}

/* Translates one kevent into epoll.c's terms. EVFILT_READ is "readable"
 * (its EV_EOF, the peer's FIN, is found by the read itself, as epoll.c
 * finds EPOLLRDHUP). EV_EOF on EVFILT_WRITE means we can send no more (RST,
 * or the connection is gone): epoll's EPOLLHUP. A socket error in fflags is
 * EPOLLERR. EV_ERROR cannot come back from a kevent() without changes;
 * treated as an error all the same. */
static unsigned ev_mask(const struct kevent *ev)
{
	if (ev->flags & EV_ERROR)
		return KQ_ERR;
	unsigned m = 0;
	if (ev->filter == EVFILT_READ)
		m |= KQ_IN;
	else if (ev->filter == EVFILT_WRITE)
		m |= KQ_OUT | ((ev->flags & EV_EOF) ? KQ_HUP : 0);
	if ((ev->flags & EV_EOF) && ev->fflags)
		m |= KQ_ERR;
	return m;
}

static int kq_wait(struct np_loop *l, int64_t timeout_us)
{
	struct kq *k = l->be;
	struct timespec ts, *tsp = NULL;
	if (timeout_us >= 0) {
		ts.tv_sec = (time_t)(timeout_us / 1000000);
		ts.tv_nsec = (long)(timeout_us % 1000000) * 1000L;
		tsp = &ts;
	}
	int n = kevent(k->kqfd, NULL, 0, k->ev, MAX_EVENTS, tsp);
	np__woke(l, n);
	np__ctr(&l->st.wait_calls, 1);
	np__ctr(&l->st.syscalls, 1);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		uint64_t tag = udata_tag(k->ev[i].udata);
		unsigned ev = ev_mask(&k->ev[i]);
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
		/* Only EVFILT_WRITE is enabled while connecting. */
		np__conn_event(l, tag, ((ev & KQ_IN) ? NP_EV_IN : 0) |
		                       ((ev & (KQ_HUP | KQ_ERR)) ? NP_EV_HUP : 0) |
		                       ((ev & KQ_OUT) ? NP_EV_OUT : 0));
	}
	return n;
}

const struct np_backend_ops np__kqueue_ops = {
	.init = kq_init,
	.deinit = kq_deinit,
	.add_listener = kq_add_listener,
	.pause_listener = kq_pause_listener,
	.conn_add = kq_conn_add,
	.conn_set_read = kq_conn_set_read,
	.conn_flush = kq_conn_flush,
	.conn_del = kq_conn_del,
	.wait = kq_wait,
};

#endif /* NP_HAVE_KQUEUE */
