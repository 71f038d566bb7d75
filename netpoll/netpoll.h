/*
 * netpoll — GeeCache's reactor: one event loop per thread, connections that
 * read into bufpool chains and write by gathering them.
 *
 * Objects and ownership:
 *
 *   np_group   N loops (default: one per CPU) and their threads, the
 *              listeners (TCP over IPv4 and IPv6, unix stream sockets;
 *              every loop serves every listener: with SO_REUSEPORT each
 *              loop has its own TCP socket per address and the kernel
 *              spreads connections), the shared limits.
 *   np_loop    one thread's event loop: a backend (epoll; io_uring where
 *              built and allowed; kqueue on FreeBSD/macOS, or on Linux
 *              through libkqueue when asked for), connections, timers,
 *              posts.
 *   np_conn    one connection (TCP, or accepted on a unix socket), owned
 *              by one loop for life. Its input
 *              chain (what the peer sent, not yet consumed) and output
 *              chain (what the handler queued) are bp_chains of the group's
 *              buffer pool.
 *
 * Threads. Every np_conn_*, np_timer_* and the handler callbacks run on the
 * connection's (timer's) loop thread. From other threads only
 * np_loop_post(), np_group_stop() and the np_conn_ref/unref pair are safe.
 *
 * Handler contract:
 *   on_open(c)           a connection is ready (accepted, or connected for
 *                        client connections). Return <0 to refuse (closed,
 *                        on_close is still called).
 *   on_data(c, in)       `in` holds the unconsumed input. Consume what can
 *                        be handled (bp_chain_skip/cut) and append replies
 *                        to np_conn_out(c). Return a negative errno to close
 *                        (after flushing what was queued), or the input
 *                        length at which to be called next (0: whenever
 *                        more arrives) — a handler waiting for a 1 MiB value
 *                        returns the length of the whole request and is not
 *                        called for every piece.
 *   on_close(c, err)     exactly once per connection that had on_open
 *                        called, after which no callback runs for it. err is
 *                        0 for an orderly close, else a negative errno.
 *
 * Writes: append to np_conn_out(c) (by reference or copy). The loop writes
 * each connection with output once per event batch, with one gathered
 * writev/sendmsg; a partial write waits for writability.
 *
 * Backpressure: when a connection's unsent output exceeds out_high, the loop
 * stops reading from it until it drains below out_low. Input is bounded by
 * in_max: a handler that leaves that much unconsumed gets the connection
 * closed with -EMSGSIZE. A handler that produces replies checks
 * np_conn_out_full() as it goes and, when it is full, stops executing the
 * requests it has read and calls np_conn_yield(): the loop reads nothing
 * more from the connection and calls on_data again with the same input
 * once the output has drained (so a client that does not read costs at
 * most out_high plus one reply, whatever it sent).
 *
 * Lifetime: a connection stays allocated while the loop holds it or anyone
 * holds a reference (np_conn_ref); after close, np_conn_* calls on it are
 * no-ops. Errors are negative errno.
 */
#ifndef GEECACHE_NETPOLL_H
#define GEECACHE_NETPOLL_H

#include "bufpool/bufpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct np_group;
struct np_loop;
struct np_conn;
struct np_timer;

enum np_backend {
	NP_BACKEND_AUTO = 0, /* io_uring when built and allowed, else kqueue
	                      * (FreeBSD, macOS), else epoll; never Linux's
	                      * libkqueue emulation */
	NP_BACKEND_EPOLL,
	NP_BACKEND_URING,
	NP_BACKEND_KQUEUE,
};

/* Name of a backend ("epoll", "io_uring", "kqueue", "auto"). */
const char *np_backend_name(enum np_backend b);
/* Parses a name; -EINVAL if unknown. */
int np_backend_parse(const char *name, enum np_backend *out);

/* How connections reach loops. REUSEPORT: every loop listens on its own
 * SO_REUSEPORT socket and the kernel spreads connections by hash.
 * HANDOFF: loop 0 alone accepts and hands each connection to the loop with
 * the fewest connections. docs/netpoll.md has the measurements. */
enum np_accept_mode { NP_ACCEPT_REUSEPORT = 0, NP_ACCEPT_HANDOFF };

/* on_peek: the start of fresh input of several connections, which their
 * on_data calls of the same turn will see — io_uring's received buffers,
 * handed over before any of them is dispatched, so that the handler can
 * start its memory loads for all of them at once (geecached prefetches
 * the keys' hash buckets and items). A hint only: the bytes are valid for
 * the call and must not be kept or changed; a connection with held input
 * (a request in pieces) is left out, so `data` starts a request; on_data
 * still judges every byte. Called with 2 to NP_PEEK_MAX entries, on the
 * loop's thread; not by epoll or kqueue, whose reads happen in dispatch. */
#define NP_PEEK_MAX 32
struct np_peek {
	struct np_conn *c;
	const void *data;
	size_t len;
};

struct np_handler {
	int (*on_open)(struct np_conn *c);
	ssize_t (*on_data)(struct np_conn *c, struct bp_chain *in);
	void (*on_close)(struct np_conn *c, int err);
	/* Optional: a look ahead at a batch's input (see struct np_peek). */
	void (*on_peek)(struct np_loop *l, const struct np_peek *p, unsigned n);
};

struct np_opts {
	int nloops;               /* 0: number of CPUs */
	enum np_backend backend;  /* AUTO; the env GEECACHE_BACKEND overrides */
	struct bp_pool *pool;     /* buffers and objects; NULL: the group's own */
	size_t out_high;          /* 0: 4 MiB */
	size_t out_low;           /* 0: out_high / 4 */
	size_t in_max;            /* 0: 4 MiB */
	uint32_t idle_timeout_ms; /* 0: none */
	uint32_t max_conns;       /* total over all loops; 0: 1024 */
	const char *reject_msg;   /* sent (one non-blocking send, best effort)
	                           * to a connection refused over max_conns
	                           * before it is closed; NULL: none */
	uint32_t max_timers;      /* per loop; 0: 4096 */
	enum np_accept_mode accept_mode; /* REUSEPORT (default) or HANDOFF */
	int listen_backlog;       /* listen()'s backlog per listener; 0: 1024 */
	uint32_t yield_us;        /* sched_yield() after a batch this long; 0: never;
	                           * NP_YIELD_SATURATED: after every batch while
	                           * the loop is saturated; NP_YIELD_ADAPTIVE:
	                           * that, and the group's test below;
	                           * NP_YIELD_BACKEND: the backend's default */
	int32_t idle_trim_ms;     /* quiet time after which a loop gives memory
	                           * back; 0: 2000; < 0: never (see below) */
	void *udata;              /* for the handler: np_group_udata() */
};

/* np_opts.yield_us: after a batch of events (and its flushes) that kept the
 * loop busy for at least yield_us microseconds, the loop calls
 * sched_yield(), so that threads made runnable on its core meanwhile (a
 * co-located client or proxy, the other loops) run now instead of when the
 * scheduler's tick ends the loop's slice (4 ms at HZ=250 on a
 * non-preemptible kernel). Short batches (a lightly loaded loop) never
 * yield: giving up the core there only delays the next wake-up. Counted in
 * `yields` and in `syscalls`.
 *
 * NP_YIELD_SATURATED: yield after every batch, but only while the loop is
 * saturated — in the last period (20 ms or more, ending at a batch) it
 * slept in its wait for less than a tenth of the time, the rest running or
 * queued for a CPU (its thread CPU clock and the run-queue wait in
 * /proc/thread-self/schedstat, read once a period; time inside its own
 * yields left out). A saturated loop gives its core to the client it just
 * answered, which refills it, so its next wait finds a batch instead of
 * sleeping; a loop with time to sleep (a paced load) does not yield,
 * because yielding while another thread is runnable pushes its own next
 * turn back a slice. Where schedstat cannot be read (not Linux, no /proc, a
 * kernel without CONFIG_SCHED_INFO) it never yields. `loops_saturated`
 * counts the loops in that state.
 *
 * NP_YIELD_ADAPTIVE (io_uring's default): NP_YIELD_SATURATED, and since
 * a loop whose client waits on it sleeps as a paced loop does, the group
 * also tests, while no loop is saturated, they sleep 10-60% of the time
 * and their requests come in bursts (1.7 receives per wait or more: one
 * client thread in a closed loop 1.9-2.7, paced loads of 30 000-90 000
 * requests/s 0.8-1.5), whether yielding raises the whole server's rate:
 * loop 0 alternates 25 ms windows without and with every loop yielding,
 * and holds them all yielding while the rate is a seventh higher with it
 * (one client thread: x1.2-1.5; a paced load: x1.00, and the trial stops
 * after one window, backing off from 4 s to 64 s). `yield_trials` counts
 * the tests, `yield_held` is 1 while the group holds. A test costs a
 * paced load that reaches it one window of yielding, which in a 3 s run
 * of 50 000 requests/s raised the p99 to 1.2-2.6 ms: the burst bar keeps
 * paced loads out of it.
 *
 * NP_YIELD_BACKEND (the name is older than the rule) picks
 * NP_YIELD_ADAPTIVE on io_uring and NP_YIELD_SATURATED on the other
 * backends on Linux (on epoll a paced load of 70 000 requests/s comes
 * 2.3 receives per wait, as bursty as one client thread's), and 50 us
 * elsewhere, where schedstat is missing (np_group_yield_us() says which).
 * It was 50 on epoll and kqueue and 0, then NP_YIELD_SATURATED, on
 * io_uring; against 50 on epoll the saturation rule measured p99
 * x0.15-0.35 at a paced load and x0.92 requests/s in a closed loop with
 * one client thread. docs/netpoll.md has the measurements. */
#define NP_YIELD_SATURATED (UINT32_MAX - 1)
#define NP_YIELD_ADAPTIVE (UINT32_MAX - 2)
#define NP_YIELD_BACKEND UINT32_MAX

/* np_opts.idle_trim_ms: a loop that has done no I/O (no read, write,
 * accept or post) for this long gives memory back, on its own thread: it
 * empties its cache of the group's pool (bp_pool_thread_trim), then gives
 * the pool's idle blocks to the system (bp_pool_release_idle). Once per
 * quiet period: not again until the loop has done I/O and gone quiet
 * again. A timer (one of the loop's max_timers) compares the loop's I/O
 * counters every idle_trim_ms / 2, so the trim comes 1 to 1.5 periods
 * after the last I/O, and a busy loop pays nothing per request. Counted in
 * the pool's trims and release_calls. docs/netpoll.md, "Giving memory back
 * when quiet". */

/* Creates the group and its loops (not yet running). Start-up: allocates.
 * NULL with errno on failure (a forced backend that cannot run: ENOSYS). */
struct np_group *np_group_create(const struct np_opts *opts,
                                 const struct np_handler *h);

/* Listens on host:port: host is a numeric IPv4 or IPv6 address (IPv6 with
 * or without brackets, bound IPV6_V6ONLY so that "::" and "0.0.0.0" can
 * both be listened on; NULL or "": 127.0.0.1). REUSEPORT: one socket per
 * loop; HANDOFF: one socket, accepted on by loop 0. port 0 picks a free
 * port (the same for every loop's socket); the port bound is returned
 * (> 0) or a negative errno (-EINVAL: not an address; -ENOSPC: a loop
 * already has NP_MAX_LISTEN (16) listeners). Call once per address, all
 * before np_group_start; to put several addresses on one port, pass the
 * port the first call returned to the others. Sockets of a call that
 * failed midway stay with their loops and are closed with them. */
int np_group_listen(struct np_group *g, const char *host, uint16_t port);

/* Listens on a unix stream socket at `path`, its file given permissions
 * `mode` (e.g. 0700; the file is bound unreachable and then chmod-ed, so
 * it is never more open than asked; the process umask is changed around
 * the bind, so call it at start-up, before other threads create files). A
 * file already at path is replaced only when it is a socket nothing
 * accepts on (a connect is refused): -EADDRINUSE when something does,
 * -EEXIST when it is not a socket. One socket, shared: with REUSEPORT
 * every loop watches it and whichever accepts first takes a connection;
 * with HANDOFF loop 0 accepts. Accepted connections get no TCP options.
 * The group removes the file when it stops (np_group_stop, or destroy),
 * unless it is no longer the file it made. 0 or a negative errno
 * (-ENAMETOOLONG: over sun_path). Before np_group_start. */
int np_group_listen_unix(struct np_group *g, const char *path, unsigned mode);

/* Starts one thread per loop. 0 or negative errno. */
int np_group_start(struct np_group *g);

/* Graceful stop, from any thread: stop accepting, finish what was read,
 * flush every output (waiting at most drain_ms for slow readers), close
 * everything, join the threads. Idempotent. */
void np_group_stop(struct np_group *g, uint32_t drain_ms);

/* Stops (if needed) and frees. Sets *g to NULL; accepts NULL. */
void np_group_destroy(struct np_group **g);

int np_group_nloops(const struct np_group *g);
struct np_loop *np_group_loop(struct np_group *g, int i);
void *np_group_udata(const struct np_group *g);
struct bp_pool *np_group_pool(const struct np_group *g);
enum np_backend np_group_backend(const struct np_group *g);
/* yield_us in effect (NP_YIELD_BACKEND resolved). */
uint32_t np_group_yield_us(const struct np_group *g);

/* Counters, summed over loops on demand. Declared once. */
#define NP_COUNTERS(X)                                                      \
	X(conns_accepted, COUNTER, "connections accepted")                  \
	X(conns_rejected, COUNTER, "connections closed at once: over max_conns") \
	X(conns_current, GAUGE, "connections open now")                     \
	X(accept_backoffs, COUNTER, "accept pauses after EMFILE/ENFILE")    \
	X(idle_closed, COUNTER, "connections closed for idleness")          \
	X(read_calls, COUNTER, "read/readv/recv calls or completions")      \
	X(write_calls, COUNTER, "writev/sendmsg calls or submissions")      \
	X(bytes_read, COUNTER, "bytes received")                            \
	X(bytes_written, COUNTER, "bytes sent")                             \
	X(wait_calls, COUNTER, "epoll_wait/io_uring_enter calls")           \
	X(read_pauses, COUNTER, "reads paused for output backpressure")     \
	X(conn_yields, COUNTER, "on_data calls that stopped with input left (np_conn_yield)") \
	X(recv_nobufs, COUNTER, "io_uring receives ended: buffer ring empty") \
	X(peeked, COUNTER, "io_uring receives shown to on_peek before their dispatch") \
	X(recv_parked, COUNTER, "io_uring receives left for the ring's refill: memory short") \
	X(ring_empty_slots, GAUGE, "io_uring buffer-ring slots the pool could not refill") \
	X(ring_retries, COUNTER, "io_uring refills of empty ring slots tried (backed off)") \
	X(in_overflows, COUNTER, "connections closed: input over in_max")   \
	X(posts, COUNTER, "cross-thread posts run")                          \
	X(syscalls, COUNTER, "system calls made by the loops' data path")    \
	X(handoffs, COUNTER, "connections handed from the acceptor to a loop") \
	X(yields, COUNTER, "sched_yield calls after long event batches (yield_us)") \
	X(loops_saturated, GAUGE, "loops yielding after every batch: saturated (NP_YIELD_SATURATED)") \
	X(yield_trials, COUNTER, "group tests of whether yielding raises the rate (NP_YIELD_ADAPTIVE)") \
	X(yield_held, GAUGE, "1 while that test holds every loop yielding (NP_YIELD_ADAPTIVE)")

struct np_stats {
#define NP_X_FIELD(name, kind, help) uint64_t name;
	NP_COUNTERS(NP_X_FIELD)
#undef NP_X_FIELD
};

struct np_counter_desc {
	const char *name;
	int is_gauge;
	const char *help;
	size_t offset;
};
extern const struct np_counter_desc np_counters[];
extern const size_t np_ncounters;

void np_group_stats(struct np_group *g, struct np_stats *out);

/* ---- loops ------------------------------------------------------------ */

/* Runs fn(arg) on the loop's thread (soon, in order of posting). Any
 * thread. 0 or -ENOMEM; -ESHUTDOWN once the loop has stopped. */
int np_loop_post(struct np_loop *l, void (*fn)(void *arg), void *arg);

/* Milliseconds of the loop's clock (monotonic), as of the last wakeup. */
uint64_t np_loop_now(const struct np_loop *l);

enum np_backend np_loop_backend(const struct np_loop *l);

/* How the loop's backend was set up. io_uring: the task-run mode the
 * kernel accepted, tried in this order: "defer_taskrun" (Linux 6.1+),
 * "coop_taskrun" (5.19+), "plain". NULL for the other backends and until
 * the loop's thread has made its ring. The environment variable
 * GEECACHE_URING_SETUP=coop|plain starts the tries further down, so that
 * the fallbacks can be run (and tested) on a kernel that has them all
 * (defer: the default order; anything else is ignored with a warning).
 * kqueue on Linux: "libkqueue" (the emulation), once the loop runs. */
const char *np_loop_backend_mode(const struct np_loop *l);
int np_loop_index(const struct np_loop *l);
struct np_group *np_loop_group(const struct np_loop *l);

/* ---- timers (loop thread) -------------------------------------------- */

/* Calls cb(arg) after delay_ms, then every repeat_ms if non-zero. Timers due
 * at the same time fire in the order they were added. NULL with errno
 * ENOSPC when the loop's timer table is full. */
struct np_timer *np_timer_add(struct np_loop *l, uint64_t delay_ms,
                              uint64_t repeat_ms, void (*cb)(void *arg),
                              void *arg);
/* The same in microseconds, for pacing (an open-loop load generator):
 * the loop sleeps until the first timer is due with microsecond
 * resolution (epoll_pwait2, io_uring and kqueue timeouts), subject to the
 * kernel's timer slack (50 us by default). */
struct np_timer *np_timer_add_us(struct np_loop *l, uint64_t delay_us,
                                 uint64_t repeat_us, void (*cb)(void *arg),
                                 void *arg);
/* Cancels (a timer may cancel itself from its callback) and sets *t NULL. */
void np_timer_cancel(struct np_loop *l, struct np_timer **t);

/* ---- connections (loop thread) --------------------------------------- */

/* Opens a client connection from loop l to host:port (numeric IPv4 or
 * IPv6, as np_group_listen's host). The
 * handler's on_open runs when connected; a failed connect calls on_close
 * with the error (on_open not called). Loop thread only (use np_loop_post
 * from elsewhere). 0 or negative errno. */
int np_connect(struct np_loop *l, const char *host, uint16_t port,
               void *udata);

struct bp_chain *np_conn_out(struct np_conn *c);
struct np_loop *np_conn_loop(const struct np_conn *c);
void *np_conn_udata(const struct np_conn *c);
void np_conn_set_udata(struct np_conn *c, void *udata);
/* A byte of handler state kept in the connection itself (0 at open), for
 * what needs no allocation of its own: geecached keeps a connection's
 * protocol there, and a parser in udata only while the connection is left
 * mid-request, so an idle connection costs netpoll's object alone. */
uint8_t np_conn_tag(const struct np_conn *c);
void np_conn_set_tag(struct np_conn *c, uint8_t tag);
int np_conn_fd(const struct np_conn *c);
bool np_conn_is_closed(const struct np_conn *c);

/* Closes. With flush, queued output is sent first (bounded by the
 * group's drain time) and no more input is read; without, at once. */
void np_conn_close(struct np_conn *c, bool flush);

/* True when c's unsent output exceeds out_high: a handler stops executing
 * requests and yields (see Backpressure above). */
bool np_conn_out_full(const struct np_conn *c);

/* Called from on_data by a handler that stops with requests left in its
 * input (its output is full, or it spent a budget of requests per call):
 * the loop stops reading from c and calls on_data again with the same
 * unconsumed input, without waiting for more bytes: at its next turn, or
 * when the output is full once it has drained to out_low. A close with
 * flush meanwhile (an EOF from the peer, a group stop) reads no more but
 * still runs the requests read: c closes once the handler has stopped
 * yielding and the replies are out (within the drain time). */
void np_conn_yield(struct np_conn *c);

/* Asks the loop to flush c's output now rather than at the end of the
 * batch (it is flushed then anyway). */
void np_conn_flush(struct np_conn *c);

/* Keeps the object (not the connection) alive. Any thread. */
void np_conn_ref(struct np_conn *c);
void np_conn_unref(struct np_conn *c);

/* ---- worker pool ------------------------------------------------------
 *
 * Worker threads and bounded queues, for work that must not run on a loop
 * (a slow loader, a blocking call). A submitted task runs fn(arg) once on a
 * worker, or not at all (refused, expired). Thread-safe: any thread may
 * submit. np_workers_destroy drains: queued tasks run (or expire) before
 * the threads exit. docs/netpoll.md "The worker pool" has the figures.
 *
 * Lanes. Each task is queued in one of NP_LANES lanes, each a FIFO of
 * queue_cap slots (so a flood in one lane never fills another). A worker
 * takes the oldest task of the highest non-empty lane, except that a lower
 * lane that has been passed over lane_share times while non-empty is served
 * next: a task at the head of the low lane waits at most lane_share + 1
 * dequeues, the normal lane's at most lane_share + 2, whatever the flood.
 *
 * Deadlines. A task not started by its deadline (pool clock, see
 * np_workers_now) is not run: it is counted expired and its done gets
 * -ETIMEDOUT. A deadline is checked when a worker takes the task, or when
 * the submitter would run it inline.
 *
 * Queue full. The policy decides: run fn in the caller right now (the
 * seed's non-blocking submit) or refuse with -EAGAIN (nothing runs, no done
 * is called or posted).
 *
 * Threads. nthreads start and stay at least; with max_threads above it
 * the pool grows by one thread when the oldest queued task has waited
 * grow_wait_ns and no worker is idle (checked at each submit and each
 * dequeue, so a pool whose workers are all stuck grows on the next submit),
 * and a worker idle for idle_ns exits while more than nthreads remain.
 *
 * Completions. np_workers_submit posts done(done_arg) to done_loop
 * (np_loop_post), also when fn ran inline, so a loop never sees done
 * re-enter the code that called submit. np_workers_submit_opts instead
 * calls done(done_arg, status) directly on the thread that ends the task:
 * a worker, or the submitter before submit returns when the task ran (or
 * expired) inline; to finish on a loop, done posts there itself. status
 * is 0 after fn ran, -ETIMEDOUT when it expired.
 *
 * Lifetime: a pool whose tasks name a done_loop must be destroyed before
 * that loop's group (stopping the group first is fine: completions posted
 * to a stopped loop are dropped, -ESHUTDOWN inside np_loop_post). */

struct np_workers;

enum np_submit_policy {
	NP_SUBMIT_RUN_INLINE = 0, /* queue full: run in the caller */
	NP_SUBMIT_REFUSE,         /* queue full: -EAGAIN */
};

/* Lanes by name; priority is HIGH > NORMAL > LOW (NORMAL is 0 so that a
 * zeroed np_task_opts means the normal lane). */
enum np_lane {
	NP_LANE_NORMAL = 0,
	NP_LANE_HIGH,
	NP_LANE_LOW,
	NP_LANES
};

struct np_workers_opts {
	int nthreads;           /* threads at start and the floor; 0: CPUs */
	uint32_t queue_cap;     /* slots per lane; 0: 1024 */
	int max_threads;        /* ceiling; 0 or <= nthreads: fixed pool */
	uint32_t lane_share;    /* see Lanes above; 0: 8 */
	uint64_t grow_wait_ns;  /* queue wait that adds a thread; 0: 1 ms */
	uint64_t idle_ns;       /* idle time that retires one; 0: 5 s */
	/* The pool's clock in ns (monotonic, never backwards), for queue
	 * waits, deadlines and the two periods above; NULL: CLOCK_MONOTONIC.
	 * Called with and without the pool's lock held: it must not call
	 * into the pool. Idle workers re-read it at least every
	 * clamp(idle_ns, 1 ms, 1 s) of real time. */
	uint64_t (*clock)(void *clock_arg);
	void *clock_arg;
};

/* NULL with errno on failure (EINVAL for nthreads < 0). Start-up:
 * allocates every slot and the thread table, starts nthreads threads. */
struct np_workers *np_workers_create(const struct np_workers_opts *o);

/* Normal lane, no deadline. 0 when queued or run inline; -EAGAIN
 * (refused: full, REFUSE policy); -ESHUTDOWN once destroy has begun (from
 * a task or another thread while destroy runs; after destroy returns the
 * pool is gone); -EINVAL for a NULL fn, or a done_loop without done (or
 * the reverse). */
int np_workers_submit(struct np_workers *w, void (*fn)(void *arg), void *arg,
                      enum np_submit_policy policy, struct np_loop *done_loop,
                      void (*done)(void *done_arg), void *done_arg);

/* Per-task options; a zeroed struct is the normal lane, run inline when
 * full, no deadline, no done. */
struct np_task_opts {
	enum np_lane lane;
	enum np_submit_policy policy;
	uint64_t deadline_ns; /* absolute, on np_workers_now(); 0: none */
	uint64_t timeout_ns;  /* from submit; 0: none; with both, the earlier */
	void (*done)(void *done_arg, int status); /* NULL: none */
	void *done_arg;
};

/* As np_workers_submit, with o (NULL: zeroed) and done called as above;
 * -EINVAL also for a lane or policy out of range. A call that fails calls
 * no done. */
int np_workers_submit_opts(struct np_workers *w, void (*fn)(void *arg),
                           void *arg, const struct np_task_opts *o);

/* The pool's clock, for absolute deadlines. Any thread. */
uint64_t np_workers_now(const struct np_workers *w);

/* Runs (or expires) every queued task, joins the threads, frees; sets *w
 * to NULL and accepts NULL. Must not be called from a worker. */
void np_workers_destroy(struct np_workers **w);

/* Per-lane counters: name, help. Gauges are "now"; the rest count since
 * create. wait is the queue wait of tasks that started on a worker. */
#define NP_WORKERS_LANE_STATS(X)                                            \
	X(queued, "tasks waiting now (gauge)")                              \
	X(running, "tasks running on workers now (gauge)")                  \
	X(completed, "tasks finished on workers")                           \
	X(expired, "tasks dropped at their deadline (done got -ETIMEDOUT)") \
	X(refused, "-EAGAIN returns (queue full, REFUSE)")                  \
	X(ran_inline, "tasks run in the submitter (queue full, RUN_INLINE)") \
	X(wait_ns_total, "sum of queue waits (ns)")                         \
	X(wait_ns_max, "longest queue wait (ns)")

/* Queue-wait histogram: bucket i (i >= 4) holds waits in
 * [2^(i/4 - 1) * (4 + i%4), ...) ns, 4 buckets per power of two, so a
 * quantile read from it is within 25% above the true value; the last
 * bucket also holds everything longer (from 7 * 2^46 ns, 137 hours). */
#define NP_WORKERS_WAIT_BUCKETS 192

struct np_workers_lane_stats {
#define NP_WORKERS_LANE_FIELD(name, help) uint64_t name;
	NP_WORKERS_LANE_STATS(NP_WORKERS_LANE_FIELD)
#undef NP_WORKERS_LANE_FIELD
	uint64_t wait_hist[NP_WORKERS_WAIT_BUCKETS];
};

struct np_workers_stats {
	/* Sums over the lanes (wait_ns_max: the largest). */
	uint64_t queued, running, completed, expired, refused, ran_inline;
	uint64_t wait_ns_total, wait_ns_max;
	/* Threads. */
	uint64_t threads;       /* now (gauge) */
	uint64_t threads_peak;  /* most at once since create */
	uint64_t grown, shrunk; /* threads added, retired */
	uint64_t grow_failed;   /* pthread_create failures (pool kept its size) */
	struct np_workers_lane_stats lanes[NP_LANES];
};

void np_workers_get_stats(struct np_workers *w, struct np_workers_stats *out);

/* The upper bound of the bucket holding quantile q (0..1) of the waits
 * counted in ls->wait_hist; 0 when it is empty. */
uint64_t np_workers_wait_quantile(const struct np_workers_lane_stats *ls,
                                  double q);

#ifdef __cplusplus
}
#endif

#endif
