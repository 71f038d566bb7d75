/*
 * The kqueue backend: the kernel's on FreeBSD and macOS, libkqueue's
 * emulation on Linux (GEECACHE_LIBKQUEUE builds; docs/netpoll.md,
 * "Running on Linux: libkqueue", lists where the emulation differs and
 * what this file does about it). The netpoll suite runs over it on Linux
 * like over epoll and io_uring; on FreeBSD it is compile-checked
 * (tests/kqueue_shim/check.sh). backend.c's table has its row under
 * NP_HAVE_KQUEUE, the macro this file compiles under.
 *
 * It mirrors epoll.c: level-triggered (no EV_CLEAR on sockets), a bounded
 * read per connection per wakeup (NP_READ_BUDGET: the read and write paths
 * are readiness.c's np__read_ready/np__write_ready), interest changed only
 * on the same transitions (write interest while output waits, read
 * interest off under backpressure). kqueue keeps one filter per direction,
 * so where epoll.c changes an event mask this file enables/disables
 * EVFILT_READ and EVFILT_WRITE, both in one kevent() call; a connection
 * that is readable and writable arrives as two events, each dispatched on
 * its own.
 *
 * Nothing here needs Linux: the loop's wake-up is EVFILT_USER on the
 * kqueue itself (no eventfd), made at create time (wake_open) so that a
 * post or a stop may come before the loop's thread runs; accept.c falls
 * back to accept + fcntl where accept4 is missing (macOS). Every knote is
 * deleted before its descriptor is closed: the kernel would drop it at
 * close, libkqueue does not.
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
	int kqfd; /* l->wake_fd: made by kq_wake_open, closed by post.c */
	struct kevent ev[MAX_EVENTS];
	struct iovec iov[NP_IOV_MAX];
};

/* The ident of the loop's EVFILT_USER wake-up event. */
#define KQ_WAKE_IDENT 0

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
 * With create, the knotes are made first (EV_ADD, enabled), and those that
 * must be off are disabled by a further change in the same call: a knote
 * created disabled (EV_ADD | EV_DISABLE) is armed anyway by libkqueue, and
 * breaks the adding of the descriptor's other filter (EEXIST). Afterwards
 * EV_ENABLE / EV_DISABLE alone: a change has the kernel re-evaluate the
 * filter, so a re-enabled filter whose level is already up fires at the
 * next kevent(). Every change carries the tag (it replaces udata). */
static int conn_apply(struct np_loop *l, struct np_conn *c, bool create)
{
	bool rd = !(c->flags & (NP_C_CONNECTING | NP_C_READ_OFF));
	bool wr = c->flags & (NP_C_CONNECTING | NP_C_WANT_WRITE);
	void *ud = tag_udata(np__tag(NP_TAG_CONN, c->slot, c->gen));
	struct kevent ch[4];
	int n = 0;
	if (create) {
		EV_SET(&ch[n++], (uintptr_t)c->fd, EVFILT_READ, EV_ADD, 0, 0, ud);
		EV_SET(&ch[n++], (uintptr_t)c->fd, EVFILT_WRITE, EV_ADD, 0, 0, ud);
		if (!rd)
			EV_SET(&ch[n++], (uintptr_t)c->fd, EVFILT_READ, EV_DISABLE, 0, 0, ud);
		if (!wr)
			EV_SET(&ch[n++], (uintptr_t)c->fd, EVFILT_WRITE, EV_DISABLE, 0, 0, ud);
	} else {
		EV_SET(&ch[n++], (uintptr_t)c->fd, EVFILT_READ, rd ? EV_ENABLE : EV_DISABLE,
		       0, 0, ud);
		EV_SET(&ch[n++], (uintptr_t)c->fd, EVFILT_WRITE, wr ? EV_ENABLE : EV_DISABLE,
		       0, 0, ud);
	}
	return kq_apply(l, ch, n);
}

/* Create time, creating thread: the kqueue, with the wake-up event in it
 * (EV_CLEAR: retrieving it resets it, so it needs no read). It is the
 * loop's wake_fd: it must outlive every np__wake (until destroy), which
 * the loop's thread and its backend state do not. */
static int kq_wake_open(struct np_loop *l)
{
	int kqfd = kqueue();
	if (kqfd < 0)
		return -errno;
	struct kevent ch;
	EV_SET(&ch, KQ_WAKE_IDENT, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0,
	       tag_udata(np__tag(NP_TAG_WAKE, 0, 0)));
	if (kevent(kqfd, &ch, 1, NULL, 0, NULL) < 0) {
		int err = -errno;
		close(kqfd);
		return err;
	}
	l->wake_fd = kqfd;
	return 0;
}

/* Any thread, between create and destroy (np__wake, once per
 * wake_pending 0 -> 1). A failure can only be a kqueue already gone.
 * The tag goes again: every change to a knote replaces its udata
 * (FreeBSD's kqueue_register, and libkqueue alike). */
static void kq_wake(struct np_loop *l)
{
	struct kevent ch;
	EV_SET(&ch, KQ_WAKE_IDENT, EVFILT_USER, 0, NOTE_TRIGGER, 0,
	       tag_udata(np__tag(NP_TAG_WAKE, 0, 0)));
	(void)kevent(l->wake_fd, &ch, 1, NULL, 0, NULL);
}

static int kq_init(struct np_loop *l)
{
	struct kq *k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->kqfd = l->wake_fd;
	l->be = k;
#ifdef GEECACHE_HAVE_LIBKQUEUE
	atomic_store(&l->be_mode, "libkqueue");
#endif
	return 0;
}

static void kq_deinit(struct np_loop *l)
{
	/* The kqueue stays (post.c closes it at destroy); the loop's
	 * listeners and connections deleted their knotes when they closed. */
	free(l->be);
	l->be = NULL;
}

static int kq_add_listener(struct np_loop *l, int fd)
{
	struct kevent ch;
	EV_SET(&ch, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0,
	       tag_udata(np__tag(NP_TAG_LISTEN, (uint32_t)fd, 0)));
	return kq_apply(l, &ch, 1);
}

/* Paused is deleted, not disabled: accept.c closes a listener right
 * after pausing it (np__listeners_stop), and a knote must not outlive its
 * descriptor (libkqueue). Resuming adds it again. Deleting one already
 * deleted (stopping while backed off) fails with ENOENT, harmlessly. */
static void kq_pause_listener(struct np_loop *l, int fd, bool paused)
{
	struct kevent ch;
	EV_SET(&ch, (uintptr_t)fd, EVFILT_READ, paused ? EV_DELETE : EV_ADD, 0, 0,
	       tag_udata(np__tag(NP_TAG_LISTEN, (uint32_t)fd, 0)));
	kq_apply(l, &ch, 1);
}

static int kq_conn_add(struct np_loop *l, struct np_conn *c)
{
#ifdef SO_NOSIGPIPE
	/* The shared write path sends with MSG_NOSIGNAL; macOS documents only
	 * SO_NOSIGPIPE, so set that too: a write to a peer that has gone must
	 * not raise SIGPIPE in the embedding program. (Linux has no
	 * SO_NOSIGPIPE; MSG_NOSIGNAL is enough there.) */
	int one = 1;
	np__ctr(&l->st.syscalls, 1);
	if (setsockopt(c->fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one)) < 0)
		return -errno;
#endif
	return conn_apply(l, c, true);
}

static void kq_conn_set_read(struct np_loop *l, struct np_conn *c, bool on)
{
	(void)on; /* c->flags already says */
	conn_apply(l, c, false);
}

static void kq_conn_del(struct np_loop *l, struct np_conn *c)
{
	/* A kernel's close() would drop the knotes too; libkqueue's does not
	 * (they would linger, and meet the descriptor number's next user).
	 * Deleting them here also keeps the contract of conn_del (no more
	 * events) whoever closes the fd. */
	struct kevent ch[2];
	EV_SET(&ch[0], (uintptr_t)c->fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
	EV_SET(&ch[1], (uintptr_t)c->fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
	kq_apply(l, ch, 2);
}

static void kq_conn_update(struct np_loop *l, struct np_conn *c)
{
	(void)conn_apply(l, c, false); /* a failed change shows as a later error */
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
			np__wake_done(l); /* EV_CLEAR reset it: nothing to read */
			continue;
		case NP_TAG_LISTEN:
			np__listener_ready(l, (int)((tag >> 2) & 0x3fffffff));
			continue;
		case NP_TAG_CONN:
			break;
		}
		/* Only EVFILT_WRITE is enabled while connecting (but see
		 * docs/netpoll.md: libkqueue reports errors on disabled
		 * filters too, which np__conn_event tolerates). */
		unsigned nev = ((ev & KQ_IN) ? NP_EV_IN : 0) |
		               ((ev & (KQ_HUP | KQ_ERR)) ? NP_EV_HUP : 0) |
		               ((ev & KQ_OUT) ? NP_EV_OUT : 0);
		if (ev & KQ_ERR && k->ev[i].fflags && !(k->ev[i].flags & EV_ERROR))
			np__conn_event_err(l, tag, nev, (int)k->ev[i].fflags);
		else
			np__conn_event(l, tag, nev);
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
	.wake_open = kq_wake_open,
	.wake = kq_wake,
};

#endif /* NP_HAVE_KQUEUE */
