/*
 * Connections: their slots, lifetime and close, dispatch to the handler,
 * flushing and backpressure, the idle list, and outgoing connects. Loop
 * thread only, but for np_conn_ref/np_conn_unref. Backends report what
 * happened to a connection through the np__conn_ functions here.
 */
#define _GNU_SOURCE
#include "netpoll/np_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- slots ------------------------------------------------------------ */

int np__slots_init(struct np_loop *l)
{
	l->nslots = l->g->o.max_conns;
	l->slots = calloc(l->nslots, sizeof(*l->slots));
	l->free_slots = malloc(l->nslots * sizeof(*l->free_slots));
	if (!l->slots || !l->free_slots)
		return -ENOMEM;
	for (uint32_t i = 0; i < l->nslots; i++)
		l->free_slots[i] = l->nslots - 1 - i;
	l->nfree = l->nslots;
	return 0;
}

void np__slots_deinit(struct np_loop *l)
{
	free(l->slots);
	free(l->free_slots);
	l->slots = NULL;
	l->free_slots = NULL;
}

/* ---- the idle list ---------------------------------------------------- */

/* The idle list links slots + 1 (0: none); a listed connection holds its
 * slot until idle_unlink (np__conn_close_now does both together). */
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

void np__idle_sweep(void *arg)
{
	struct np_loop *l = arg;
	uint64_t limit = l->g->o.idle_timeout_ms;
	while (l->idle_head && (uint32_t)l->now - l->idle_head->last_active >= limit) {
		struct np_conn *c = l->idle_head;
		np__ctr(&l->st.idle_closed, 1);
		idle_unlink(l, c); /* in case the close is deferred */
		np__conn_close_now(c, -ETIMEDOUT);
	}
}

/* ---- lifetime --------------------------------------------------------- */

struct np_conn *np__conn_new(struct np_loop *l, int fd, uint32_t flags)
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

void np__conn_free(struct np_conn *c)
{
	struct np_group *g = c->loop->g;
	bp_chain_deinit(&c->in);
	bp_chain_deinit(&c->out);
	bp_objpool_put(g->conn_pool, &c);
}

void np_conn_ref(struct np_conn *c) { np__conn_ref(c); }
void np_conn_unref(struct np_conn *c) { np__conn_unref(c); }
void np__conn_release(struct np_conn *c) { np__conn_unref(c); }

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

void np__conn_close_now(struct np_conn *c, int err)
{
	if (c->flags & NP_C_CLOSED)
		return;
	np__conn_set_err(c, err);
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
		l->g->h.on_close(c, np__conn_err(c));
	/* Memory goes back now; the object may live on for other holders.
	 * Output the kernel may still be sending from (io_uring) stays until
	 * the last reference goes. */
	bp_chain_deinit(&c->in);
	if (!(c->flags & NP_C_SEND_ARMED))
		bp_chain_deinit(&c->out);
	np__conn_unref(c);
}

void np_conn_close(struct np_conn *c, bool flush)
{
	if (c->flags & NP_C_CLOSED)
		return;
	struct np_loop *l = c->loop;
	if (!flush || (!bp_chain_len(&c->out) && !(c->flags & NP_C_YIELD)) ||
	    (c->flags & NP_C_CONNECTING)) {
		np__conn_close_now(c, 0);
		return;
	}
	if (!(c->flags & NP_C_DRAINING)) {
		c->flags |= NP_C_DRAINING;
		uint32_t d = atomic_load_explicit(&l->g->drain_ms, memory_order_relaxed);
		c->drain_deadline = np__ms32(l->now + (d ? d : 5000));
	}
	if (!(c->flags & NP_C_IN_DISPATCH))
		set_read(l, c, false);
	np__flush_schedule(l, c);
}

/* ---- input, output, backpressure -------------------------------------- */

/* Reads pause while the output is over out_high, or while the handler has
 * yielded with requests left (it wants no more input until it has run
 * them); they resume below out_low. A yielded connection is put on the
 * flush list, where np__flush_all runs it again once its output is not
 * full. */
static void backpressure_check(struct np_loop *l, struct np_conn *c)
{
	struct np_opts *o = &l->g->o;
	size_t out = bp_chain_len(&c->out);
	bool yielded = c->flags & NP_C_YIELD;
	if (!(c->flags & NP_C_READ_OFF) && (out > o->out_high || yielded)) {
		set_read(l, c, false);
		np__ctr(&l->st.read_pauses, out > o->out_high);
	} else if ((c->flags & NP_C_READ_OFF) && out <= o->out_low && !yielded &&
	           !(c->flags & (NP_C_DRAINING | NP_C_PEER_EOF))) {
		set_read(l, c, true);
	}
	if (yielded && out <= o->out_low)
		np__flush_schedule(l, c);
}

bool np_conn_out_full(const struct np_conn *c)
{
	return bp_chain_len(&c->out) > c->loop->g->o.out_high;
}

void np_conn_yield(struct np_conn *c)
{
	if (!(c->flags & NP_C_YIELD))
		np__ctr(&c->loop->st.conn_yields, 1);
	c->flags |= NP_C_YIELD;
}

void np__conn_input(struct np_conn *c)
{
	struct np_loop *l = c->loop;
	struct np_group *g = l->g;
	/* A draining connection reads nothing more, but the requests it had
	 * read when its handler yielded are still run. */
	if ((c->flags & NP_C_CLOSED) ||
	    (c->flags & (NP_C_DRAINING | NP_C_YIELD)) == NP_C_DRAINING)
		return;
	idle_touch(l, c);
	if (bp_chain_len(&c->in) < c->want_len)
		goto check_bound;
	c->flags |= NP_C_IN_DISPATCH;
	c->flags &= ~NP_C_YIELD;
	ssize_t r = g->h.on_data(c, &c->in);
	c->flags &= ~NP_C_IN_DISPATCH;
	if (r < 0) {
		c->flags &= ~NP_C_YIELD;
		np_conn_close(c, true);
		np__conn_set_err(c, r < INT_MIN ? -EIO : (int)r);
	} else if (c->flags & NP_C_YIELD) {
		c->want_len = 0; /* called again, with what it holds */
	} else {
		c->want_len = r > UINT32_MAX ? UINT32_MAX : (uint32_t)r;
	}
	if ((c->flags & NP_C_DRAINING) && !(c->flags & NP_C_CLOSED)) {
		/* closed from inside on_data, or draining */
		if (c->drain_deadline == 0 ||
		    (!bp_chain_len(&c->out) && !(c->flags & NP_C_YIELD))) {
			np__conn_close_now(c, np__conn_err(c));
			return;
		}
		set_read(l, c, false);
	}
check_bound:
	if (c->flags & NP_C_CLOSED)
		return;
	if (bp_chain_len(&c->in) >= g->o.in_max) {
		np__ctr(&l->st.in_overflows, 1);
		np__conn_set_err(c, -EMSGSIZE); /* before the close reports it */
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
	if (bp_chain_len(&c->out))
		np__flush_schedule(l, c);
	if (bp_chain_len(&c->out) || (c->flags & (NP_C_YIELD | NP_C_READ_OFF)))
		backpressure_check(l, c);
}

void np__conn_eof(struct np_conn *c)
{
	if (c->flags & NP_C_CLOSED)
		return;
	c->flags |= NP_C_PEER_EOF;
	np_conn_close(c, true);
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
		if ((c->flags & (NP_C_DRAINING | NP_C_YIELD)) == NP_C_DRAINING) {
			np__conn_close_now(c, np__conn_err(c));
			return;
		}
	}
	if (c->flags & (NP_C_READ_OFF | NP_C_YIELD))
		backpressure_check(l, c);
}

void np__conn_writable(struct np_conn *c)
{
	if (c->flags & NP_C_CLOSED)
		return;
	np__conn_ref(c); /* the flush may close it */
	int r = c->loop->ops->conn_flush(c->loop, c);
	if (r < 0)
		np__conn_close_now(c, r);
	np__conn_unref(c);
}

void np_conn_flush(struct np_conn *c)
{
	if (!(c->flags & NP_C_CLOSED) && bp_chain_len(&c->out))
		np__flush_schedule(c->loop, c);
}

/* Writes every connection on the flush list, and runs again the handler of
 * each that yielded and whose output is no longer full (its replies may
 * put it back on the list: for the next turn, so that one connection's
 * backlog of requests does not keep the loop from its other events). */
void np__flush_all(struct np_loop *l)
{
	struct np_conn *list = l->flush_head;
	l->flush_head = NULL;
	while (list) {
		struct np_conn *c = list;
		list = c->flush_next;
		c->flush_next = NULL;
		c->flags &= ~NP_C_IN_FLUSH;
		if (!(c->flags & NP_C_CLOSED) && bp_chain_len(&c->out))
			np__conn_writable(c);
		if ((c->flags & (NP_C_YIELD | NP_C_CLOSED)) == NP_C_YIELD &&
		    !np_conn_out_full(c))
			np__conn_input(c);
		np__conn_unref(c);
	}
}

struct bp_chain *np_conn_out(struct np_conn *c) { return &c->out; }
struct np_loop *np_conn_loop(const struct np_conn *c) { return c->loop; }
void *np_conn_udata(const struct np_conn *c) { return c->udata; }
void np_conn_set_udata(struct np_conn *c, void *u) { c->udata = u; }
uint8_t np_conn_tag(const struct np_conn *c) { return c->tag; }
void np_conn_set_tag(struct np_conn *c, uint8_t tag) { c->tag = tag; }
int np_conn_fd(const struct np_conn *c) { return c->fd; }
bool np_conn_is_closed(const struct np_conn *c) { return c->flags & NP_C_CLOSED; }

/* ---- connect ---------------------------------------------------------- */

void np__conn_connected(struct np_conn *c, int err)
{
	struct np_loop *l = c->loop;
	c->flags &= ~NP_C_CONNECTING;
	if (err) {
		np__conn_close_now(c, err);
		return;
	}
	l->ops->conn_set_read(l, c, true);
	if (l->g->h.on_open && l->g->h.on_open(c) < 0) {
		np__conn_close_now(c, -ECONNREFUSED);
		return;
	}
	if (!(c->flags & NP_C_CLOSED) && bp_chain_len(&c->out))
		np__flush_schedule(l, c);
}

int np_connect(struct np_loop *l, const char *host, uint16_t port, void *udata)
{
	struct sockaddr_storage a;
	socklen_t alen;
	if (!host || np__sockaddr(host, port, &a, &alen) < 0)
		return -EINVAL;
	if (atomic_load(&l->g->nconns) >= l->g->o.max_conns)
		return -EMFILE;
	int fd = np__stream_socket(a.ss_family);
	if (fd < 0)
		return fd;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&a, alen) < 0 && errno != EINPROGRESS) {
		int e = -errno;
		close(fd);
		return e;
	}
	struct np_conn *c = np__conn_new(l, fd, NP_C_OPEN | NP_C_CLIENT | NP_C_CONNECTING);
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->udata = udata;
	if (l->ops->conn_add(l, c) < 0) {
		c->flags &= ~NP_C_OPEN;
		np__conn_close_now(c, -EIO);
		return -EIO;
	}
	return 0;
}
