/*
 * Private to netpoll: the loop and connection structs, the interface
 * between the shared loop code and the backends (epoll.c, uring.c,
 * kqueue.c, chosen from the table in backend.c), and what the shared
 * files give each other. The shared code is one file per idea:
 *
 *   loop.c       the group and its loops: create, start, stop, the run loop
 *   conn.c       connections: slots, lifetime, close, dispatch, flushing,
 *                backpressure, the idle list, connect
 *   readiness.c  the read and write paths of readiness backends
 *   accept.c     listeners, the accept loop, back-off, hand-off
 *   post.c       cross-thread posts and the wake descriptor
 *   timer.c      the timer heap
 *
 * Everything here is for the loop's thread unless it says otherwise. The
 * static inline helpers are on the per-request path: they stay here so
 * that calling them from another file costs no call.
 */
#ifndef GEECACHE_NP_INTERNAL_H
#define GEECACHE_NP_INTERNAL_H

#include "netpoll/netpoll.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>

#define NP_MAX_LISTEN 16 /* per loop: addresses, TCP and unix */
#define NP_IOV_MAX 1024 /* IOV_MAX on Linux */

enum {
	NP_C_OPEN = 1u << 0,       /* on_open called: on_close is owed */
	NP_C_CLOSED = 1u << 1,     /* closed: no more callbacks */
	NP_C_DRAINING = 1u << 2,   /* close once output is flushed */
	NP_C_READ_OFF = 1u << 3,   /* reads paused (backpressure/draining) */
	NP_C_WANT_WRITE = 1u << 4, /* waiting for writability */
	NP_C_IN_FLUSH = 1u << 5,   /* on the loop's flush list */
	NP_C_CONNECTING = 1u << 6, /* client connect in progress */
	NP_C_PEER_EOF = 1u << 7,   /* peer shut its write side */
	NP_C_CLIENT = 1u << 8,
	NP_C_IN_DISPATCH = 1u << 9, /* inside on_data: defer close/free */
	/* io_uring: an operation of that kind is in flight */
	NP_C_RECV_ARMED = 1u << 10,
	NP_C_SEND_ARMED = 1u << 11,
	NP_C_POLL_ARMED = 1u << 12,
	/* io_uring: the recv ended with the buffer ring empty and memory
	 * short; re-armed once the ring holds a buffer again */
	NP_C_RECV_PARKED = 1u << 13,
	/* the handler yielded with input left (np_conn_yield): on_data runs
	 * again, without new bytes, once the output is not full */
	NP_C_YIELD = 1u << 14,
};

/* Event tags: what an epoll/uring event refers to. Connections carry their
 * slot and generation, so that a stale event for a reused slot is ignored. */
enum np_tag { NP_TAG_CONN = 0, NP_TAG_LISTEN = 1, NP_TAG_WAKE = 2 };

static inline uint64_t np__tag(enum np_tag t, uint32_t slot, uint32_t gen)
{
	return ((uint64_t)gen << 32) | ((uint64_t)slot << 2) | (uint64_t)t;
}

/* 224 bytes, so that with the object pool's 24-byte offset it takes a
 * 256-byte block (a _Static_assert in loop.c says so): an idle
 * connection is this object alone. Hence the narrow fields: times are the
 * low 32 bits of the loop's millisecond clock (compared with wrap-around),
 * the idle list links slots (+1, so that 0 is none), the close error is a
 * positive errno in a byte, and io_uring finds a gathered send's block from
 * its completion (uring.c, struct send_msg). */
struct np_conn {
	struct np_loop *loop;
	void *udata;
	struct np_conn *flush_next;
	struct bp_chain in, out;
	int fd;
	uint32_t slot, gen;
	_Atomic uint32_t refs;
	uint32_t want_len;             /* call on_data when in reaches this */
	uint32_t idle_prev, idle_next; /* slot + 1 of the neighbours, by last
	                                * activity; 0: none */
	uint32_t last_active;          /* ms, low 32 bits */
	uint32_t drain_deadline;       /* ms, low 32 bits, odd; 0: at once */
	uint16_t flags;
	uint8_t close_errno;           /* the first error (positive errno) */
	uint8_t tag;                   /* the handler's (np_conn_tag) */
};

/* Milliseconds as kept in a connection: the low 32 bits, made odd so that
 * a deadline is never 0 (which means "at once"). */
static inline uint32_t np__ms32(uint64_t ms) { return (uint32_t)ms | 1u; }

/* t has come, on the 32-bit wrap-around clock (differences < 24 days). */
static inline int np__ms32_reached(uint64_t now, uint32_t t)
{
	return (int32_t)((uint32_t)now - t) >= 0;
}

struct np_timer {
	uint64_t due, seq, repeat; /* microseconds */
	void (*cb)(void *);
	void *arg;
	uint32_t heap_idx;
};

struct np_post {
	struct np_post *next;
	void (*fn)(void *);
	void *arg;
};

struct np_backend_ops;

struct np_loop {
	struct np_group *g;
	int index;
	enum np_backend backend;
	const struct np_backend_ops *ops;
	void *be;             /* backend state */
	_Atomic(const char *) be_mode; /* np_loop_backend_mode */
	pthread_t thread;
	bool thread_started;
	uint64_t now;     /* ms, CLOCK_MONOTONIC, read once per loop turn */
	uint64_t now_us;  /* the same reading in microseconds (timers) */
	uint64_t woke_us; /* when the backend's wait last returned (np__woke) */
	/* NP_YIELD_SATURATED (loop.c, saturation_check) */
	int sched_fd;          /* /proc/thread-self/schedstat; -1: none */
	uint64_t sat_at_ns;    /* when the period began (np__mono_ns) */
	uint64_t sat_runnable; /* ns runnable (on a CPU or queued) by then */
	uint64_t sat_yield_ns; /* ns inside sched_yield since then */
	bool saturated;        /* the last period: yield after every batch */
	_Atomic uint32_t sat_sleep_pm; /* the last period's sleep, per mille,
	                                * read by loop 0's np_satctl */
	bool send_now;    /* a small readiness batch (NP_SEND_NOW_MAX) */
	/* connections by slot */
	struct np_conn **slots;
	uint32_t nslots, *free_slots, nfree;
	struct np_conn *flush_head;
	struct np_conn *idle_head, *idle_tail;
	uint32_t nconns;
	_Atomic uint32_t nconns_pub; /* nconns + hand-offs on the way, for pick_loop */
	uint32_t gen_seq;
	/* listeners */
	int listen_fd[NP_MAX_LISTEN];
	bool listen_tcp[NP_MAX_LISTEN]; /* false: a unix socket (no TCP options) */
	int nlisten;
	bool accept_paused;
	struct np_timer *accept_timer;
	/* timers: a binary min-heap on (due, seq) */
	struct np_timer **heap;
	uint32_t nheap, heap_cap;
	uint64_t timer_seq;
	struct np_timer *idle_timer;
	/* np_opts.idle_trim_ms (loop.c): the I/O counters' sum at the last
	 * check, when it last changed (ms), whether this quiet period has
	 * trimmed already */
	struct np_timer *trim_timer;
	uint64_t trim_io, trim_quiet_since;
	bool trim_done;
	/* cross-thread posts */
	pthread_mutex_t post_lock;
	struct np_post *post_head, *post_tail;
	bool post_closed;
	int wake_fd; /* post.c's eventfd, or the backend's (wake_open) */
	_Atomic int wake_pending;
	/* stop */
	_Atomic int stop_req;
	bool stopping;
	uint64_t stop_deadline;
	bool done;
	struct np_stats st; /* written by the loop thread only (see stats) */
};

/* NP_YIELD_ADAPTIVE, the group's part (loop.c, np__satctl_window): when
 * no loop is saturated, whether yielding after every batch raises the
 * whole server's rate, tested in windows of alternating modes. Run by
 * loop 0; the other loops read only np_group.sat_force. */
enum np_sat_force { NP_SAT_FREE, NP_SAT_YIELD, NP_SAT_NOYIELD };
struct np_satctl {
	int state;              /* SC_OFF, SC_TRIAL, SC_HOLD (loop.c) */
	int pairs;              /* trial: (no yield, yield) windows done */
	bool on;                /* trial: the window now running yields */
	bool recheck;           /* trial: begun in a hold */
	bool idle;              /* the last window moved almost nothing */
	bool last_ok;           /* the last trial found a gain */
	uint64_t off[3], gain[3]; /* trial: bytes per window */
	uint64_t next_trial;    /* ns: none before this */
	uint64_t backoff_ns;    /* after a trial without a gain */
	uint64_t recheck_at, recheck_ns; /* hold: the next trial */
	uint64_t hold_bytes;    /* hold: bytes per window when it began */
	uint64_t win_end, win_bytes; /* the running window (loop 0) */
	uint64_t win_reads, win_waits; /* its receives and waits so far */
	uint64_t trials;        /* trials begun (np_stats.yield_trials) */
};
enum np_sat_force np__satctl_window(struct np_satctl *s, uint64_t now_ns, uint64_t bytes,
                                    uint32_t sleep_pm, uint32_t burst_pc, int saturated);
size_t np__satctl_size(void);
int np__satctl_test_window(void *s, uint64_t now, uint64_t bytes, uint32_t sleep_pm,
                           uint32_t burst_pc, int saturated);

struct np_group {
	struct np_opts o;
	struct np_handler h;
	struct bp_pool *pool;
	bool own_pool;
	struct bp_objpool *conn_pool, *timer_pool, *post_pool;
	int nloops;
	struct np_loop *loops;
	_Atomic uint32_t nconns;
	_Atomic int stopped;
	_Atomic uint32_t drain_ms; /* set by np_group_stop, read by the loops */
	_Atomic int sat_force;     /* enum np_sat_force, set by loop 0 */
	struct np_satctl satctl;   /* loop 0's only */
	pthread_mutex_t stats_lock;
	/* np_group_listen_unix's socket files, removed when the group stops
	 * (if still the file it made) */
	struct np_unix_path {
		char *path;
		dev_t dev;
		ino_t ino;
	} unix_paths[NP_MAX_LISTEN];
	int nunix;
};

/* Backend interface. The choice is made once per group at create time
 * (np__backend_pick). */
struct np_backend_ops {
	int (*init)(struct np_loop *l);
	void (*deinit)(struct np_loop *l);
	int (*add_listener)(struct np_loop *l, int fd);
	void (*pause_listener)(struct np_loop *l, int fd, bool paused);
	/* Starts watching a new connection (reading, or connect completion). */
	int (*conn_add)(struct np_loop *l, struct np_conn *c);
	/* Reading on/off (backpressure, draining). */
	void (*conn_set_read)(struct np_loop *l, struct np_conn *c, bool on);
	/* Sends what the output chain holds; returns <0 on a fatal error. */
	int (*conn_flush)(struct np_loop *l, struct np_conn *c);
	/* Stops watching before close; returns true if the connection must
	 * stay allocated until in-flight kernel operations finish. */
	void (*conn_del)(struct np_loop *l, struct np_conn *c);
	/* Waits up to timeout_us microseconds (-1: forever) and dispatches
	 * events. */
	int (*wait)(struct np_loop *l, int64_t timeout_us);
	/* Hands the operations queued since the last wait (the sends
	 * conn_flush queued) to the kernel now, before the loop gives up its
	 * core (yield_check); NULL where conn_flush already sent them. */
	void (*submit)(struct np_loop *l);
	/* The wake-up behind np_loop_post and np_group_stop, for a backend
	 * that has its own; NULL for both: the backend watches post.c's
	 * eventfd (Linux). wake_open runs at create time on the creating
	 * thread, before init, and sets l->wake_fd to a descriptor that
	 * post.c closes at destroy; from then until destroy, wake may be
	 * called from any thread (np__wake calls it once per wake_pending
	 * 0 -> 1), and the backend's wait hands the wake-up to np__wake_done. */
	int (*wake_open)(struct np_loop *l);
	void (*wake)(struct np_loop *l);
};

/* Which backends a build has: each file compiles under its macro, and its
 * row in backend.c's table names it under the same one. io_uring's,
 * GEECACHE_HAVE_URING, comes from the build where liburing is found. */
#ifdef __linux__
#define NP_HAVE_EPOLL 1
#endif
/* kqueue: the kernel's on FreeBSD and macOS; on Linux libkqueue's
 * emulation, when the build finds it (GEECACHE_HAVE_LIBKQUEUE); and the
 * FreeBSD compile check (tests/kqueue_shim). */
#if defined(__FreeBSD__) || defined(__APPLE__) || defined(GEECACHE_KQUEUE_CHECK) || \
	defined(GEECACHE_HAVE_LIBKQUEUE)
#define NP_HAVE_KQUEUE 1
#endif
extern const struct np_backend_ops np__epoll_ops;
extern const struct np_backend_ops np__uring_ops;
extern const struct np_backend_ops np__kqueue_ops;
bool np__uring_usable(void); /* probes the kernel once, on a thread of its own */

/* The backend for *b, after the environment's GEECACHE_BACKEND (when it
 * parses) overrides it; NP_BACKEND_AUTO takes the first that can run in
 * the table's order of preference. Sets *b to the backend chosen. NULL
 * when *b names one that this build lacks or that cannot run here. */
const struct np_backend_ops *np__backend_pick(enum np_backend *b);

/* ---- loop.c ---------------------------------------------------------- */

/* Backends: the wait returned and nready readiness events follow (-1 when
 * the backend is not readiness-based). */
void np__woke(struct np_loop *l, int nready);
/* NP_YIELD_SATURATED's rule: a period of wall_ns in which the thread was
 * runnable (running or waiting for a CPU) runnable_ns is saturated when it
 * slept (blocked in its wait) less than a tenth of it. Runnable time over
 * the wall time (clocks read at different instants) counts as no sleep. */
bool np__saturated(uint64_t wall_ns, uint64_t runnable_ns);

static inline uint64_t np__mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t np__mono_us(void)
{
	return np__mono_ns() / 1000u;
}

/* ---- conn.c ----------------------------------------------------------- */

/* Called by backends. */
void np__conn_input(struct np_conn *c);          /* new bytes are in c->in */
void np__conn_eof(struct np_conn *c);            /* peer closed its side */
void np__conn_writable(struct np_conn *c);       /* output may be sent */
void np__conn_connected(struct np_conn *c, int err);
void np__conn_sent(struct np_conn *c, size_t n); /* n bytes left the chain */
void np__conn_release(struct np_conn *c);        /* backend's last ref */

/* The slot table, sized np_opts.max_conns at create. 0 or -ENOMEM. */
int np__slots_init(struct np_loop *l);
void np__slots_deinit(struct np_loop *l);
/* A new connection object for fd, registered in a slot and on the idle
 * list with the loop's reference; NULL when the slots or memory say no
 * (the caller closes fd). */
struct np_conn *np__conn_new(struct np_loop *l, int fd, uint32_t flags);
/* Closes at once: unregisters, closes the fd, calls on_close, drops the
 * loop's reference. Deferred while on_data runs for this connection. err
 * (< 0) is the close error unless one was set before. */
void np__conn_close_now(struct np_conn *c, int err);
void np__conn_free(struct np_conn *c); /* the last reference went */
void np__flush_all(struct np_loop *l); /* sends for the flush list */
void np__idle_sweep(void *loop);       /* the idle timer's callback */

/* A fatal socket error: closes at once with err. */
static inline void np__conn_error(struct np_conn *c, int err)
{
	np__conn_close_now(c, err);
}

/* The connection an event's tag names; NULL when its slot was closed or
 * reused since (a stale event). */
static inline struct np_conn *np__conn_lookup(struct np_loop *l, uint64_t tag)
{
	uint32_t slot = (uint32_t)(tag >> 2) & 0x3fffffffu;
	uint32_t gen = (uint32_t)(tag >> 32);
	if (slot >= l->nslots)
		return NULL;
	struct np_conn *c = l->slots[slot];
	return c && c->gen == gen ? c : NULL;
}

/* What np_conn_ref and np_conn_unref do (any thread): the last reference
 * frees the object. */
static inline void np__conn_ref(struct np_conn *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

static inline void np__conn_unref(struct np_conn *c)
{
	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		np__conn_free(c);
}

/* The first error a connection closes with, as its handler will see it. */
static inline void np__conn_set_err(struct np_conn *c, int err)
{
	if (!c->close_errno && err < 0)
		c->close_errno = (uint8_t)(-err <= 255 ? -err : EIO);
}

static inline int np__conn_err(const struct np_conn *c)
{
	return -(int)c->close_errno;
}

/* Puts c on the loop's flush list (with a reference) unless it is there or
 * closed; np__flush_all sends at the end of the loop turn. */
static inline void np__flush_schedule(struct np_loop *l, struct np_conn *c)
{
	if (c->flags & (NP_C_IN_FLUSH | NP_C_CLOSED))
		return;
	c->flags |= NP_C_IN_FLUSH;
	np__conn_ref(c);
	c->flush_next = l->flush_head;
	l->flush_head = c;
}

/* ---- accept.c --------------------------------------------------------- */

void np__listener_ready(struct np_loop *l, int fd); /* the accept loop */
/* Whether listener lfd of l is TCP (false: a unix socket). */
bool np__listener_tcp(const struct np_loop *l, int lfd);
/* A stream socket of `family` (AF_INET, AF_INET6, AF_UNIX), non-blocking
 * and close-on-exec: socket() with SOCK_NONBLOCK | SOCK_CLOEXEC where the
 * platform has them, else socket() and fcntl(). The descriptor, or a
 * negative errno. */
int np__stream_socket(int family);
/* host (numeric IPv4, or IPv6 with or without brackets; NULL or "":
 * 127.0.0.1) and port as a socket address: 0, or -EINVAL. */
int np__sockaddr(const char *host, uint16_t port, struct sockaddr_storage *ss,
                 socklen_t *len);
/* One accepted fd; tcp: from a TCP listener (TCP_NODELAY applies). */
void np__conn_accepted(struct np_loop *l, int fd, bool tcp);
bool np__accept_error(struct np_loop *l, int err);  /* true: backing off */
/* The loop's listeners: watched by its backend (0 or the backend's
 * negative errno), or unwatched and closed (the loop stops). */
int np__listeners_start(struct np_loop *l);
void np__listeners_stop(struct np_loop *l);
/* Removes the group's unix socket files (after its loops closed them). */
void np__unix_paths_remove(struct np_group *g);

/* ---- post.c ----------------------------------------------------------- */

void np__wake_drain(struct np_loop *l);             /* read eventfd, run posts */
void np__wake_done(struct np_loop *l);              /* wake-up consumed: run posts */
void np__wake(struct np_loop *l);                   /* any thread */
/* The post lock and wake descriptor (the eventfd, or the backend's
 * wake_open): 0 or a negative errno. deinit runs what is still posted,
 * then closes them; close refuses further posts (-ESHUTDOWN) and runs what
 * was posted before (the loop's exit). */
int np__posts_init(struct np_loop *l);
void np__posts_close(struct np_loop *l);
void np__posts_deinit(struct np_loop *l);

/* ---- timer.c ---------------------------------------------------------- */

/* The heap, np_opts.max_timers long: 0 or -ENOMEM. clear drops every timer
 * without calling it; deinit clears and frees the heap. */
int np__timers_init(struct np_loop *l);
void np__timers_clear(struct np_loop *l);
void np__timers_deinit(struct np_loop *l);
void np__timers_fire(struct np_loop *l); /* runs those due by l->now_us */

static inline void np__timers_run(struct np_loop *l)
{
	if (l->nheap && l->heap[0]->due <= l->now_us)
		np__timers_fire(l);
}

/* Microseconds until the first timer is due (at most a minute); -1: none. */
static inline int64_t np__timers_timeout(const struct np_loop *l)
{
	if (!l->nheap)
		return -1;
	uint64_t due = l->heap[0]->due;
	if (due <= l->now_us)
		return 0;
	return due - l->now_us > 60000000u ? 60000000 : (int64_t)(due - l->now_us);
}

/* ---- readiness.c ------------------------------------------------------ */


/* For readiness backends (epoll, kqueue): the shared read and write paths.
 * np__read_ready reads up to NP_READ_BUDGET bytes from a readable socket
 * into the input chain (so that one busy peer cannot starve the loop; level
 * triggering reports the rest at the next wait) and hands them over.
 * np__write_ready gathers the output chain into one sendmsg (MSG_NOSIGNAL)
 * per call until the socket is full, keeps NP_C_WANT_WRITE saying whether
 * it waits for writability, and calls the backend's update(l, c) when that
 * changes (to watch or stop watching for it). It returns 0, or a negative
 * errno for a fatal socket error (the caller closes). Either may close c. */
#define NP_READ_BUDGET (256u * 1024u)
/* In a batch of at most NP_SEND_NOW_MAX ready events, np__read_ready sends
 * a connection's replies as soon as its handler returns, not at the end of
 * the batch: the same one send per connection, and a reply does not wait
 * for the reads and handlers of the connections after it. Larger batches,
 * a saturated loop's, send at the end: sends that leave together wake the
 * client once for many replies. Figures: docs/netpoll.md, "Sending as soon
 * as a handler returns, in small batches". */
#define NP_SEND_NOW_MAX 8
void np__read_ready(struct np_loop *l, struct np_conn *c);
int np__write_ready(struct np_loop *l, struct np_conn *c, struct iovec *iov,
                    void (*update)(struct np_loop *l, struct np_conn *c));
int np__sock_error(int fd); /* pending SO_ERROR, as a positive errno */

/* A readiness backend's event for a connection's tag, in common terms:
 * readable (data, FIN), hangup/error, writable. Looks the tag up (a stale
 * tag is dropped), then connects, reads, reports the error or flushes. */
enum { NP_EV_IN = 1, NP_EV_HUP = 2, NP_EV_OUT = 4 };
void np__conn_event(struct np_loop *l, uint64_t tag, unsigned ev);
/* The same for an event that carries the socket's error (kqueue: EV_EOF
 * with fflags), a positive errno: a connect in progress fails with it. The
 * socket is not asked (SO_ERROR), as libkqueue has already read, and so
 * cleared, the error to fill in fflags. */
void np__conn_event_err(struct np_loop *l, uint64_t tag, unsigned ev, int sock_err);

static inline void np__ctr(uint64_t *c, uint64_t n)
{
	/* Loop-thread-only counters, read by np_group_stats under relaxed
	 * atomics. */
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n,
	                 __ATOMIC_RELAXED);
}

/* The same for a loop's gauge (np_group_stats sums the loops'). */
static inline void np__gauge(uint64_t *g, uint64_t v)
{
	__atomic_store_n(g, v, __ATOMIC_RELAXED);
}

#endif
