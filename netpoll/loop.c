/*
 * The shared loop: groups, connections and their lifetime, dispatch to the
 * handler, flushing, backpressure, timers, posts, accept, connect, stop.
 * Backends (epoll.c, uring.c) call in through the np__ functions.
 */
#define _GNU_SOURCE
#include "netpoll/np_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ACCEPT_BATCH 64
#define ACCEPT_BACKOFF_MS 100

const struct np_counter_desc np_counters[] = {
#define NP_X_DESC(n, kind, help) {#n, sizeof(#kind) == sizeof("GAUGE"), help, offsetof(struct np_stats, n)},
	NP_COUNTERS(NP_X_DESC)
#undef NP_X_DESC
};
const size_t np_ncounters = sizeof(np_counters) / sizeof(np_counters[0]);

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* One clock read sets both: l->now (ms) for deadlines, l->now_us for
 * timers. */
/* np_opts.yield_us: a batch of events that kept the loop busy for at least
 * yield_us microseconds (from the wait's return, stamped by np__woke — the
 * backends run the handlers inside their wait — to the end of its flushes)
 * is followed by one sched_yield(). A lightly loaded loop's batches are
 * short and never yield. */
static void yield_check(struct np_loop *l)
{
	uint32_t after = l->g->o.yield_us;
	if (!after || mono_us() - l->woke_us < after)
		return;
	sched_yield();
	np__ctr(&l->st.yields, 1);
	np__ctr(&l->st.syscalls, 1);
}

void np__woke(struct np_loop *l, int nready)
{
	l->woke_us = mono_us();
	l->send_now = nready >= 0 && nready <= NP_SEND_NOW_MAX;
}

static void clock_update(struct np_loop *l)
{
	l->now_us = mono_us();
	l->now = l->now_us / 1000u;
}

const char *np_backend_name(enum np_backend b)
{
	switch (b) {
	case NP_BACKEND_EPOLL: return "epoll";
	case NP_BACKEND_URING: return "io_uring";
	case NP_BACKEND_KQUEUE: return "kqueue";
	default: return "auto";
	}
}

int np_backend_parse(const char *name, enum np_backend *out)
{
	static const struct { const char *n; enum np_backend b; } map[] = {
		{"auto", NP_BACKEND_AUTO}, {"epoll", NP_BACKEND_EPOLL},
		{"io_uring", NP_BACKEND_URING}, {"uring", NP_BACKEND_URING},
		{"kqueue", NP_BACKEND_KQUEUE},
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (strcmp(name, map[i].n) == 0) {
			*out = map[i].b;
			return 0;
		}
	}
	return -EINVAL;
}

/* ---- timers ----------------------------------------------------------- */

static bool timer_before(const struct np_timer *a, const struct np_timer *b)
{
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_set(struct np_loop *l, uint32_t i, struct np_timer *t)
{
	l->heap[i] = t;
	t->heap_idx = i;
}

static void heap_up(struct np_loop *l, uint32_t i)
{
	struct np_timer *t = l->heap[i];
	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (!timer_before(t, l->heap[p]))
			break;
		heap_set(l, i, l->heap[p]);
		i = p;
	}
	heap_set(l, i, t);
}

static void heap_down(struct np_loop *l, uint32_t i)
{
	struct np_timer *t = l->heap[i];
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= l->nheap)
			break;
		if (c + 1 < l->nheap && timer_before(l->heap[c + 1], l->heap[c]))
			c++;
		if (!timer_before(l->heap[c], t))
			break;
		heap_set(l, i, l->heap[c]);
		i = c;
	}
	heap_set(l, i, t);
}

static void heap_remove(struct np_loop *l, struct np_timer *t)
{
	uint32_t i = t->heap_idx;
	struct np_timer *last = l->heap[--l->nheap];
	t->heap_idx = UINT32_MAX;
	if (i == l->nheap)
		return;
	heap_set(l, i, last);
	heap_down(l, i);
	heap_up(l, last->heap_idx);
}

struct np_timer *np_timer_add(struct np_loop *l, uint64_t delay_ms,
                              uint64_t repeat_ms, void (*cb)(void *arg),
                              void *arg)
{
	return np_timer_add_us(l, delay_ms * 1000u, repeat_ms * 1000u, cb, arg);
}

struct np_timer *np_timer_add_us(struct np_loop *l, uint64_t delay_us,
                                 uint64_t repeat_us, void (*cb)(void *arg),
                                 void *arg)
{
	if (l->nheap == l->heap_cap) {
		errno = ENOSPC;
		return NULL;
	}
	struct np_timer *t = bp_objpool_get(l->g->timer_pool);
	if (!t) {
		errno = ENOMEM;
		return NULL;
	}
	/* From the clock now, not the loop turn's reading: a timer added
	 * late in a busy turn must not fire early. */
	t->due = mono_us() + delay_us;
	t->seq = l->timer_seq++;
	t->repeat = repeat_us;
	t->cb = cb;
	t->arg = arg;
	l->heap[l->nheap] = t;
	t->heap_idx = l->nheap++;
	heap_up(l, t->heap_idx);
	return t;
}

void np_timer_cancel(struct np_loop *l, struct np_timer **tp)
{
	struct np_timer *t = *tp;
	if (!t)
		return;
	*tp = NULL;
	if (t->heap_idx == UINT32_MAX) { /* firing now: freed after its cb */
		t->repeat = 0;
		t->cb = NULL;
		return;
	}
	heap_remove(l, t);
	bp_objpool_put(l->g->timer_pool, &t);
}

static void timers_run(struct np_loop *l)
{
	while (l->nheap && l->heap[0]->due <= l->now_us) {
		struct np_timer *t = l->heap[0];
		heap_remove(l, t);
		if (t->cb)
			t->cb(t->arg);
		if (t->repeat && t->cb) {
			t->due = l->now_us + t->repeat;
			t->seq = l->timer_seq++;
			l->heap[l->nheap] = t;
			t->heap_idx = l->nheap++;
			heap_up(l, t->heap_idx);
		} else {
			bp_objpool_put(l->g->timer_pool, &t);
		}
	}
}

/* Microseconds until the first timer is due (at most a minute); -1: none. */
static int64_t timers_timeout(const struct np_loop *l)
{
	if (!l->nheap)
		return -1;
	uint64_t due = l->heap[0]->due;
	if (due <= l->now_us)
		return 0;
	return due - l->now_us > 60000000u ? 60000000 : (int64_t)(due - l->now_us);
}

/* ---- connections ------------------------------------------------------ */

struct np_conn *np__conn_lookup(struct np_loop *l, uint64_t tag)
{
	uint32_t slot = (uint32_t)(tag >> 2) & 0x3fffffffu;
	uint32_t gen = (uint32_t)(tag >> 32);
	if (slot >= l->nslots)
		return NULL;
	struct np_conn *c = l->slots[slot];
	return c && c->gen == gen ? c : NULL;
}

/* The idle list links slots + 1 (0: none); a listed connection holds its
 * slot until idle_unlink (conn_close_now does both together). */
static inline struct np_conn *idle_at(struct np_loop *l, uint32_t link)
{
	return link ? l->slots[link - 1] : NULL;
}

static void idle_unlink(struct np_loop *l, struct np_conn *c)
{
	struct np_conn *prev = idle_at(l, c->idle_prev), *next = idle_at(l, c->idle_next);
	if (prev)
		prev->idle_next = c->idle_next;
	else if (l->idle_head == c)
		l->idle_head = next;
	if (next)
		next->idle_prev = c->idle_prev;
	else if (l->idle_tail == c)
		l->idle_tail = prev;
	c->idle_prev = c->idle_next = 0;
}

static void idle_touch(struct np_loop *l, struct np_conn *c)
{
	uint32_t now = (uint32_t)l->now;
	/* Touched already this millisecond: where it is keeps the list in
	 * order (everything after it has this millisecond too). */
	if (l->idle_tail == c || (c->last_active == now && (c->idle_prev || l->idle_head == c))) {
		c->last_active = now;
		return;
	}
	c->last_active = now;
	idle_unlink(l, c);
	struct np_conn *tail = l->idle_tail;
	c->idle_prev = tail ? tail->slot + 1 : 0;
	if (tail)
		tail->idle_next = c->slot + 1;
	else
		l->idle_head = c;
	l->idle_tail = c;
}

/* The first error a connection closes with, as its handler will see it. */
static void conn_set_err(struct np_conn *c, int err)
{
	if (!c->close_errno && err < 0)
		c->close_errno = (uint8_t)(-err <= 255 ? -err : EIO);
}

static inline int conn_err(const struct np_conn *c)
{
	return -(int)c->close_errno;
}

/* A new connection object for fd, registered in a slot; NULL when the
 * limits or memory say no (the caller closes fd). */
static struct np_conn *conn_new(struct np_loop *l, int fd, uint32_t flags)
{
	struct np_group *g = l->g;
	if (!l->nfree)
		return NULL;
	struct np_conn *c = bp_objpool_get(g->conn_pool);
	if (!c)
		return NULL;
	c->loop = l;
	c->fd = fd;
	c->flags = flags;
	atomic_init(&c->refs, 1); /* the loop's */
	bp_chain_init(&c->in, g->pool);
	bp_chain_init(&c->out, g->pool);
	c->slot = l->free_slots[--l->nfree];
	c->gen = ++l->gen_seq;
	l->slots[c->slot] = c;
	l->nconns++;
	atomic_fetch_add_explicit(&l->nconns_pub, 1, memory_order_relaxed);
	atomic_fetch_add(&g->nconns, 1);
	idle_touch(l, c);
	return c;
}

static void conn_free(struct np_conn *c)
{
	struct np_group *g = c->loop->g;
	bp_chain_deinit(&c->in);
	bp_chain_deinit(&c->out);
	bp_objpool_put(g->conn_pool, &c);
}

void np_conn_ref(struct np_conn *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void np_conn_unref(struct np_conn *c)
{
	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		conn_free(c);
}

void np__conn_release(struct np_conn *c)
{
	np_conn_unref(c);
}

static void flush_schedule(struct np_loop *l, struct np_conn *c)
{
	if (c->flags & (NP_C_IN_FLUSH | NP_C_CLOSED))
		return;
	c->flags |= NP_C_IN_FLUSH;
	np_conn_ref(c);
	c->flush_next = l->flush_head;
	l->flush_head = c;
}

static void set_read(struct np_loop *l, struct np_conn *c, bool on)
{
	bool is_on = !(c->flags & NP_C_READ_OFF);
	if (on == is_on)
		return;
	if (on)
		c->flags &= ~NP_C_READ_OFF;
	else
		c->flags |= NP_C_READ_OFF;
	l->ops->conn_set_read(l, c, on);
}

/* Closes at once: unregisters, closes the fd, calls on_close, drops the
 * loop's reference. Deferred while on_data runs for this connection. */
static void conn_close_now(struct np_conn *c, int err)
{
	if (c->flags & NP_C_CLOSED)
		return;
	conn_set_err(c, err);
	if (c->flags & NP_C_IN_DISPATCH) {
		c->flags |= NP_C_DRAINING;
		c->drain_deadline = 0; /* close as soon as on_data returns */
		return;
	}
	struct np_loop *l = c->loop;
	c->flags |= NP_C_CLOSED;
	l->ops->conn_del(l, c);
	close(c->fd);
	c->fd = -1;
	l->slots[c->slot] = NULL;
	l->free_slots[l->nfree++] = c->slot;
	l->nconns--;
	atomic_fetch_sub_explicit(&l->nconns_pub, 1, memory_order_relaxed);
	atomic_fetch_sub(&l->g->nconns, 1);
	idle_unlink(l, c);
	if ((c->flags & NP_C_OPEN) && l->g->h.on_close)
		l->g->h.on_close(c, conn_err(c));
	/* Memory goes back now; the object may live on for other holders.
	 * Output the kernel may still be sending from (io_uring) stays until
	 * the last reference goes. */
	bp_chain_deinit(&c->in);
	if (!(c->flags & NP_C_SEND_ARMED))
		bp_chain_deinit(&c->out);
	np_conn_unref(c);
}

void np_conn_close(struct np_conn *c, bool flush)
{
	if (c->flags & NP_C_CLOSED)
		return;
	struct np_loop *l = c->loop;
	if (!flush || !bp_chain_len(&c->out) || (c->flags & NP_C_CONNECTING)) {
		conn_close_now(c, 0);
		return;
	}
	if (!(c->flags & NP_C_DRAINING)) {
		c->flags |= NP_C_DRAINING;
		uint32_t d = atomic_load_explicit(&l->g->drain_ms, memory_order_relaxed);
		c->drain_deadline = np__ms32(l->now + (d ? d : 5000));
	}
	if (!(c->flags & NP_C_IN_DISPATCH))
		set_read(l, c, false);
	flush_schedule(l, c);
}

static void backpressure_check(struct np_loop *l, struct np_conn *c)
{
	struct np_opts *o = &l->g->o;
	size_t out = bp_chain_len(&c->out);
	if (!(c->flags & NP_C_READ_OFF) && out > o->out_high) {
		set_read(l, c, false);
		np__ctr(&l->st.read_pauses, 1);
	} else if ((c->flags & NP_C_READ_OFF) && out <= o->out_low &&
	           !(c->flags & (NP_C_DRAINING | NP_C_PEER_EOF))) {
		set_read(l, c, true);
	}
}

void np__conn_input(struct np_conn *c)
{
	struct np_loop *l = c->loop;
	struct np_group *g = l->g;
	if (c->flags & (NP_C_CLOSED | NP_C_DRAINING))
		return;
	idle_touch(l, c);
	if (bp_chain_len(&c->in) < c->want_len)
		goto check_bound;
	c->flags |= NP_C_IN_DISPATCH;
	ssize_t r = g->h.on_data(c, &c->in);
	c->flags &= ~NP_C_IN_DISPATCH;
	if (r < 0) {
		np_conn_close(c, true);
		conn_set_err(c, r < INT_MIN ? -EIO : (int)r);
	} else {
		c->want_len = r > UINT32_MAX ? UINT32_MAX : (uint32_t)r;
	}
	if ((c->flags & NP_C_DRAINING) && !(c->flags & NP_C_CLOSED)) {
		/* closed from inside on_data */
		if (c->drain_deadline == 0 || !bp_chain_len(&c->out)) {
			conn_close_now(c, conn_err(c));
			return;
		}
		set_read(l, c, false);
	}
check_bound:
	if (c->flags & NP_C_CLOSED)
		return;
	if (bp_chain_len(&c->in) >= g->o.in_max) {
		np__ctr(&l->st.in_overflows, 1);
		conn_set_err(c, -EMSGSIZE); /* before the close reports it */
		np_conn_close(c, true);
		set_read(l, c, false);
		return;
	}
	/* An idle connection pins no buffer. One exception: a tail block the
	 * handler forwarded bytes from into its own output (an echo's
	 * bp_chain_cut) is kept while that output waits, so that the next
	 * small read lands next to them rather than in a block of its own and
	 * a slow peer's backlog costs about what it holds; np__conn_sent trims
	 * it once the output has drained. (Forwarded to another connection,
	 * nothing here would release it: trimmed at once.) */
	if (!bp_chain_len(&c->in) && !(bp_chain_was_cut(&c->in) && bp_chain_len(&c->out) &&
	                               bp_chain_tail_shared(&c->in)))
		bp_chain_trim(&c->in);
	if (bp_chain_len(&c->out)) {
		flush_schedule(l, c);
		backpressure_check(l, c);
	}
}

void np__conn_eof(struct np_conn *c)
{
	if (c->flags & NP_C_CLOSED)
		return;
	c->flags |= NP_C_PEER_EOF;
	np_conn_close(c, true);
}

void np__conn_error(struct np_conn *c, int err)
{
	conn_close_now(c, err);
}

void np__conn_sent(struct np_conn *c, size_t n)
{
	struct np_loop *l = c->loop;
	bp_chain_skip(&c->out, n);
	np__ctr(&l->st.bytes_written, n);
	if (!bp_chain_len(&c->out)) {
		bp_chain_trim(&c->out);
		if (c->in.head && !bp_chain_len(&c->in) && !(c->flags & NP_C_IN_DISPATCH))
			bp_chain_trim(&c->in); /* a tail kept by np__conn_input */
		if (c->flags & NP_C_DRAINING) {
			conn_close_now(c, conn_err(c));
			return;
		}
	}
	if (c->flags & NP_C_READ_OFF)
		backpressure_check(l, c);
}

void np__conn_writable(struct np_conn *c)
{
	if (c->flags & NP_C_CLOSED)
		return;
	np_conn_ref(c); /* the flush may close it */
	int r = c->loop->ops->conn_flush(c->loop, c);
	if (r < 0)
		conn_close_now(c, r);
	np_conn_unref(c);
}

void np_conn_flush(struct np_conn *c)
{
	if (!(c->flags & NP_C_CLOSED) && bp_chain_len(&c->out))
		flush_schedule(c->loop, c);
}

static void flush_all(struct np_loop *l)
{
	while (l->flush_head) {
		struct np_conn *c = l->flush_head;
		l->flush_head = c->flush_next;
		c->flush_next = NULL;
		c->flags &= ~NP_C_IN_FLUSH;
		if (!(c->flags & NP_C_CLOSED) && bp_chain_len(&c->out))
			np__conn_writable(c);
		np_conn_unref(c);
	}
}

void np__conn_connected(struct np_conn *c, int err)
{
	struct np_loop *l = c->loop;
	c->flags &= ~NP_C_CONNECTING;
	if (err) {
		conn_close_now(c, err);
		return;
	}
	l->ops->conn_set_read(l, c, true);
	if (l->g->h.on_open && l->g->h.on_open(c) < 0) {
		conn_close_now(c, -ECONNREFUSED);
		return;
	}
	if (!(c->flags & NP_C_CLOSED) && bp_chain_len(&c->out))
		flush_schedule(l, c);
}

struct bp_chain *np_conn_out(struct np_conn *c) { return &c->out; }
struct np_loop *np_conn_loop(const struct np_conn *c) { return c->loop; }
void *np_conn_udata(const struct np_conn *c) { return c->udata; }
void np_conn_set_udata(struct np_conn *c, void *u) { c->udata = u; }
uint8_t np_conn_tag(const struct np_conn *c) { return c->tag; }
void np_conn_set_tag(struct np_conn *c, uint8_t tag) { c->tag = tag; }
int np_conn_fd(const struct np_conn *c) { return c->fd; }
bool np_conn_is_closed(const struct np_conn *c) { return c->flags & NP_C_CLOSED; }

/* ---- readiness backends' read and write paths ------------------------- */

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
		/* A small batch sends now (NP_SEND_NOW_MAX); flush_all finds
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
		conn_set_err(c, err);
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

void np__conn_event(struct np_loop *l, uint64_t tag, unsigned ev)
{
	struct np_conn *c = np__conn_lookup(l, tag);
	if (!c)
		return; /* stale: the slot was closed or reused */
	np_conn_ref(c);
	if (c->flags & NP_C_CONNECTING) {
		int err = np__sock_error(c->fd);
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
	np_conn_unref(c);
}

int np__sock_error(int fd)
{
	int e = 0;
	socklen_t len = sizeof(e);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		e = errno;
	return e;
}

/* ---- accept ----------------------------------------------------------- */

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

static void conn_adopt(struct np_loop *l, int fd);

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

/* Makes fd (counted in l->nconns_pub by the caller) a connection of l. */
static void conn_adopt(struct np_loop *l, int fd)
{
	struct np_group *g = l->g;
	atomic_fetch_sub_explicit(&l->nconns_pub, 1, memory_order_relaxed);
	if (l->stopping || atomic_load(&g->nconns) >= g->o.max_conns) {
		close(fd);
		np__ctr(&l->st.conns_rejected, 1);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct np_conn *c = conn_new(l, fd, NP_C_OPEN);
	if (!c) {
		close(fd);
		np__ctr(&l->st.conns_rejected, 1);
		return;
	}
	np__ctr(&l->st.conns_accepted, 1);
	if (l->ops->conn_add(l, c) < 0) {
		c->flags &= ~NP_C_OPEN;
		conn_close_now(c, -EIO);
		return;
	}
	if (g->h.on_open && g->h.on_open(c) < 0)
		conn_close_now(c, -ECONNREFUSED);
	else if (bp_chain_len(&c->out))
		flush_schedule(l, c);
}

bool np__accept_error(struct np_loop *l, int err)
{
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		accept_backoff(l);
		return true;
	}
	return false; /* transient (ECONNABORTED, EINTR, ...): go on */
}

void np__listener_ready(struct np_loop *l, int lfd)
{
	for (int n = 0; n < ACCEPT_BATCH && !l->accept_paused && !l->stopping; n++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		np__ctr(&l->st.syscalls, 1);
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
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
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

/* ---- connect ---------------------------------------------------------- */

int np_connect(struct np_loop *l, const char *host, uint16_t port, void *udata)
{
	struct sockaddr_in a;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
		return -EINVAL;
	if (atomic_load(&l->g->nconns) >= l->g->o.max_conns)
		return -EMFILE;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
		int e = -errno;
		close(fd);
		return e;
	}
	struct np_conn *c = conn_new(l, fd, NP_C_OPEN | NP_C_CLIENT | NP_C_CONNECTING);
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->udata = udata;
	if (l->ops->conn_add(l, c) < 0) {
		c->flags &= ~NP_C_OPEN;
		conn_close_now(c, -EIO);
		return -EIO;
	}
	return 0;
}

/* ---- posts ------------------------------------------------------------ */

static void wake(struct np_loop *l)
{
	if (atomic_exchange(&l->wake_pending, 1))
		return;
	uint64_t one = 1;
	ssize_t r = write(l->wake_fd, &one, sizeof(one));
	(void)r; /* the counter can only overflow after 2^64 wakes */
}

int np_loop_post(struct np_loop *l, void (*fn)(void *), void *arg)
{
	struct np_post *p = bp_objpool_get(l->g->post_pool);
	if (!p)
		return -ENOMEM;
	p->fn = fn;
	p->arg = arg;
	pthread_mutex_lock(&l->post_lock);
	if (l->post_closed) {
		pthread_mutex_unlock(&l->post_lock);
		bp_objpool_put(l->g->post_pool, &p);
		return -ESHUTDOWN;
	}
	if (l->post_tail)
		l->post_tail->next = p;
	else
		l->post_head = p;
	l->post_tail = p;
	pthread_mutex_unlock(&l->post_lock);
	wake(l);
	return 0;
}

static void posts_run(struct np_loop *l)
{
	pthread_mutex_lock(&l->post_lock);
	struct np_post *p = l->post_head;
	l->post_head = l->post_tail = NULL;
	pthread_mutex_unlock(&l->post_lock);
	while (p) {
		struct np_post *next = p->next;
		p->fn(p->arg);
		np__ctr(&l->st.posts, 1);
		bp_objpool_put(l->g->post_pool, &p);
		p = next;
	}
}

void np__wake_done(struct np_loop *l)
{
	/* Reset before taking the list: a post racing with us either sees 0
	 * and wakes us again, or appended before we take the list. */
	atomic_store(&l->wake_pending, 0);
	posts_run(l);
}

void np__wake_drain(struct np_loop *l)
{
	uint64_t v;
	ssize_t r = read(l->wake_fd, &v, sizeof(v));
	(void)r;
	np__wake_done(l);
}

/* ---- idle ------------------------------------------------------------- */

static void idle_sweep(void *arg)
{
	struct np_loop *l = arg;
	uint64_t limit = l->g->o.idle_timeout_ms;
	while (l->idle_head && (uint32_t)l->now - l->idle_head->last_active >= limit) {
		struct np_conn *c = l->idle_head;
		np__ctr(&l->st.idle_closed, 1);
		idle_unlink(l, c); /* in case the close is deferred */
		conn_close_now(c, -ETIMEDOUT);
	}
}

/* ---- the loop --------------------------------------------------------- */

static void stop_begin(struct np_loop *l)
{
	l->stopping = true;
	l->stop_deadline = l->now + atomic_load_explicit(&l->g->drain_ms, memory_order_relaxed);
	for (int i = 0; i < l->nlisten; i++) {
		l->ops->pause_listener(l, l->listen_fd[i], true);
		close(l->listen_fd[i]);
	}
	l->nlisten = 0;
	for (uint32_t s = 0; s < l->nslots; s++) {
		struct np_conn *c = l->slots[s];
		if (c) {
			c->drain_deadline = np__ms32(l->stop_deadline);
			np_conn_close(c, true);
		}
	}
}

static void drain_deadlines(struct np_loop *l)
{
	for (uint32_t s = 0; s < l->nslots; s++) {
		struct np_conn *c = l->slots[s];
		if (c && (c->flags & NP_C_DRAINING) && np__ms32_reached(l->now, c->drain_deadline))
			conn_close_now(c, -ETIMEDOUT);
	}
}

/* The backend lives on the loop's thread (io_uring's SINGLE_ISSUER needs its
 * ring made and used by one thread). */
static int loop_backend_start(struct np_loop *l)
{
	int r = l->ops->init(l);
	if (r < 0)
		return r;
	for (int i = 0; i < l->nlisten; i++) {
		r = l->ops->add_listener(l, l->listen_fd[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

static void *loop_main(void *arg)
{
	struct np_loop *l = arg;
	uint64_t last_drain_check = 0;
	clock_update(l);
	int err = loop_backend_start(l);
	if (err < 0) {
		fprintf(stderr, "netpoll: loop %d: %s backend failed: %s\n", l->index,
		        l->ops->name, strerror(-err));
		l->done = true;
	}
	while (!l->done) {
		int64_t timeout = l->flush_head ? 0 : timers_timeout(l);
		if (l->stopping && (timeout < 0 || timeout > 50000))
			timeout = 50000;
		l->ops->wait(l, timeout);
		clock_update(l);
		timers_run(l);
		flush_all(l);
		yield_check(l);
		if (atomic_load(&l->stop_req) && !l->stopping)
			stop_begin(l);
		if (l->now - last_drain_check >= 50) {
			last_drain_check = l->now;
			drain_deadlines(l);
		}
		if (l->stopping) {
			if (l->now >= l->stop_deadline)
				for (uint32_t s = 0; s < l->nslots; s++)
					if (l->slots[s])
						conn_close_now(l->slots[s], -ETIMEDOUT);
			if (!l->nconns)
				l->done = true;
		}
	}
	/* Refuse further posts, then run what was posted before. */
	pthread_mutex_lock(&l->post_lock);
	l->post_closed = true;
	pthread_mutex_unlock(&l->post_lock);
	posts_run(l);
	for (uint32_t s = 0; s < l->nslots; s++)
		if (l->slots[s])
			conn_close_now(l->slots[s], -ESHUTDOWN);
	flush_all(l);
	if (l->be)
		l->ops->deinit(l); /* waits for the kernel to let go of buffers */
	while (l->nheap) {
		struct np_timer *t = l->heap[0];
		heap_remove(l, t);
		bp_objpool_put(l->g->timer_pool, &t);
	}
	bp_pool_thread_flush(l->g->pool);
	return NULL;
}

static int loop_init(struct np_group *g, struct np_loop *l, int index,
                     const struct np_backend_ops *ops, enum np_backend b)
{
	l->g = g;
	l->index = index;
	l->ops = ops;
	l->backend = b;
	clock_update(l);
	l->nslots = g->o.max_conns;
	l->slots = calloc(l->nslots, sizeof(*l->slots));
	l->free_slots = malloc(l->nslots * sizeof(*l->free_slots));
	l->heap_cap = g->o.max_timers;
	l->heap = calloc(l->heap_cap, sizeof(*l->heap));
	if (!l->slots || !l->free_slots || !l->heap)
		return -ENOMEM;
	for (uint32_t i = 0; i < l->nslots; i++)
		l->free_slots[i] = l->nslots - 1 - i;
	l->nfree = l->nslots;
	pthread_mutex_init(&l->post_lock, NULL);
	l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->wake_fd < 0)
		return -errno;
	if (g->o.idle_timeout_ms) {
		uint64_t every = g->o.idle_timeout_ms / 4 ? g->o.idle_timeout_ms / 4 : 1;
		l->idle_timer = np_timer_add(l, every, every, idle_sweep, l);
		if (!l->idle_timer)
			return -ENOMEM;
	}
	return 0;
}

static void loop_deinit(struct np_loop *l)
{
	if (!l->g)
		return;
	while (l->nheap) {
		struct np_timer *t = l->heap[0];
		heap_remove(l, t);
		bp_objpool_put(l->g->timer_pool, &t);
	}
	for (int i = 0; i < l->nlisten; i++)
		close(l->listen_fd[i]);
	posts_run(l);
	if (l->wake_fd > 0)
		close(l->wake_fd);
	pthread_mutex_destroy(&l->post_lock);
	free(l->slots);
	free(l->free_slots);
	free(l->heap);
}

static const struct np_backend_ops *pick_backend(enum np_backend *b)
{
	const char *env = getenv("GEECACHE_BACKEND");
	if (env && *env) {
		enum np_backend e;
		if (np_backend_parse(env, &e) == 0)
			*b = e;
	}
	switch (*b) {
	case NP_BACKEND_AUTO:
#ifdef GEECACHE_HAVE_URING
		if (np__uring_usable()) {
			*b = NP_BACKEND_URING;
			return &np__uring_ops;
		}
#endif
		*b = NP_BACKEND_EPOLL;
		return &np__epoll_ops;
	case NP_BACKEND_EPOLL:
		return &np__epoll_ops;
	case NP_BACKEND_URING:
#ifdef GEECACHE_HAVE_URING
		if (np__uring_usable())
			return &np__uring_ops;
#endif
		return NULL;
	default:
		return NULL;
	}
}

struct np_group *np_group_create(const struct np_opts *opts,
                                 const struct np_handler *h)
{
	struct np_group *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	if (opts)
		g->o = *opts;
	g->h = *h;
	if (!g->o.nloops) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		g->o.nloops = n > 0 ? (int)n : 1;
	}
	if (!g->o.out_high)
		g->o.out_high = 4u << 20;
	if (!g->o.out_low)
		g->o.out_low = g->o.out_high / 4;
	if (!g->o.in_max)
		g->o.in_max = 4u << 20;
	if (!g->o.max_conns)
		g->o.max_conns = 1024;
	if (!g->o.max_timers)
		g->o.max_timers = 4096;
	atomic_init(&g->drain_ms, 5000);
	enum np_backend b = g->o.backend;
	const struct np_backend_ops *ops = pick_backend(&b);
	int err = ENOSYS;
	if (!ops)
		goto fail;
	g->o.backend = b;
	err = ENOMEM;
	g->pool = g->o.pool;
	if (!g->pool) {
		struct bp_pool_opts po = {.name = "netpoll", .limit = 0};
		g->pool = bp_pool_create(&po);
		g->own_pool = true;
		if (!g->pool)
			goto fail;
	}
	/* 224 + the object pool's 24-byte offset = a 256-byte block's 248
	 * bytes of capacity, plus 8 of header (np_internal.h). */
	_Static_assert(sizeof(struct np_conn) <= 224,
	               "struct np_conn outgrew the 256-byte pool class");
	g->conn_pool = bp_objpool_create(g->pool, "np_conn", sizeof(struct np_conn));
	g->timer_pool = bp_objpool_create(g->pool, "np_timer", sizeof(struct np_timer));
	g->post_pool = bp_objpool_create(g->pool, "np_post", sizeof(struct np_post));
	if (!g->conn_pool || !g->timer_pool || !g->post_pool)
		goto fail;
	g->nloops = g->o.nloops;
	g->loops = calloc((size_t)g->nloops, sizeof(*g->loops));
	if (!g->loops)
		goto fail;
	for (int i = 0; i < g->nloops; i++) {
		int r = loop_init(g, &g->loops[i], i, ops, b);
		if (r < 0) {
			err = -r;
			goto fail;
		}
	}
	return g;
fail:
	np_group_destroy(&g);
	errno = err;
	return NULL;
}

int np_group_start(struct np_group *g)
{
	for (int i = 0; i < g->nloops; i++) {
		struct np_loop *l = &g->loops[i];
		int r = pthread_create(&l->thread, NULL, loop_main, l);
		if (r)
			return -r;
		l->thread_started = true;
	}
	return 0;
}

void np_group_stop(struct np_group *g, uint32_t drain_ms)
{
	if (atomic_exchange(&g->stopped, 1))
		return;
	atomic_store_explicit(&g->drain_ms, drain_ms, memory_order_relaxed);
	for (int i = 0; i < g->nloops; i++) {
		atomic_store(&g->loops[i].stop_req, 1);
		wake(&g->loops[i]);
	}
	for (int i = 0; i < g->nloops; i++) {
		if (g->loops[i].thread_started) {
			pthread_join(g->loops[i].thread, NULL);
			g->loops[i].thread_started = false;
		}
	}
}

void np_group_destroy(struct np_group **gp)
{
	struct np_group *g = gp ? *gp : NULL;
	if (!g)
		return;
	if (g->loops) {
		np_group_stop(g, 0);
		for (int i = 0; i < g->nloops; i++)
			loop_deinit(&g->loops[i]);
		free(g->loops);
	}
	bp_objpool_destroy(&g->conn_pool);
	bp_objpool_destroy(&g->timer_pool);
	bp_objpool_destroy(&g->post_pool);
	if (g->own_pool)
		bp_pool_destroy(&g->pool);
	free(g);
	*gp = NULL;
}

int np_group_nloops(const struct np_group *g) { return g->nloops; }
struct np_loop *np_group_loop(struct np_group *g, int i) { return &g->loops[i]; }
void *np_group_udata(const struct np_group *g) { return g->o.udata; }
struct bp_pool *np_group_pool(const struct np_group *g) { return g->pool; }
enum np_backend np_group_backend(const struct np_group *g) { return g->o.backend; }
uint64_t np_loop_now(const struct np_loop *l) { return l->now; }
enum np_backend np_loop_backend(const struct np_loop *l) { return l->backend; }
const char *np_loop_backend_mode(const struct np_loop *l) { return atomic_load(&l->be_mode); }
int np_loop_index(const struct np_loop *l) { return l->index; }
struct np_group *np_loop_group(const struct np_loop *l) { return l->g; }

void np_group_stats(struct np_group *g, struct np_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < g->nloops; i++) {
		uint64_t *src = (uint64_t *)&g->loops[i].st;
		uint64_t *dst = (uint64_t *)out;
		for (size_t k = 0; k < sizeof(*out) / sizeof(uint64_t); k++)
			dst[k] += __atomic_load_n(&src[k], __ATOMIC_RELAXED);
	}
	out->conns_current = atomic_load(&g->nconns);
}
