/*
 * The io_uring backend (Linux, liburing).
 *
 * - The ring is made on the loop's thread with SINGLE_ISSUER|DEFER_TASKRUN
 *   (falling back to COOP_TASKRUN, then to none), and submissions are
 *   batched: SQEs queue up during a loop iteration and go to the kernel in
 *   the one io_uring_enter that also waits for completions.
 * - Reads: one multishot recv per connection, selecting buffers from a
 *   provided-buffer ring whose buffers are bufpool blocks. The block the
 *   kernel filled is adopted into the connection's input chain as it is
 *   (no copy), and a fresh block takes its place in the ring. An idle
 *   connection therefore pins no buffer. -ENOBUFS (ring empty) re-arms.
 *   Small pieces, and pieces that would leave a block of waiting input
 *   mostly empty, are copied instead (recv_keep), so that input is held
 *   in blocks about as full as epoll's.
 * - Out of memory: a ring slot the pool cannot refill stays empty and is
 *   retried with a back-off (1 ms doubling to 64 ms, back to 1 ms after a
 *   refill), the wait sleeping no longer than the next retry. A receive
 *   that ends with -ENOBUFS while no slot holds a buffer is parked, not
 *   re-armed (it would end again at once and spin the loop): it is
 *   re-armed by the wait that finds a buffer back in the ring.
 * - Writes: one send in flight per connection: IORING_OP_SEND when the
 *   output is one buffer, else a sendmsg gathering the output chain, its
 *   msghdr and iovecs in a small bufpool block until the completion. The
 *   output chain is consumed only on completion, so the
 *   bytes stay referenced while the kernel reads them.
 * - Accept: multishot. Connect: a non-blocking connect() and a POLLOUT
 *   poll for its completion.
 * - Lifetime: every operation in flight that names a connection holds a
 *   reference to it (np_conn_ref), dropped by its final completion; close
 *   cancels the recv. deinit waits for every operation to finish, so that
 *   no buffer is released while the kernel may still write into it.
 *
 * Debian's liburing is 2.3: io_uring_setup_buf_ring() (2.4) is replaced by
 * a few lines of mmap + io_uring_register_buf_ring below.
 */
#define _GNU_SOURCE
#include "netpoll/np_internal.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#define SQ_ENTRIES 1024
#define CQ_ENTRIES 8192
#define NBUFS 1024                   /* provided buffers per loop (2^n) */
#define BUF_CAP (4096u - BP_BLOCK_HDR) /* one 4 KiB block each */
#define BGID 7
#define SEND_IOV 256                 /* iovecs per sendmsg */
#define RECV_COPY_BELOW (BUF_CAP / 2) /* recv_keep: smaller pieces are copied */
#define RECV_ROOM_MAX (BUF_CAP / 4)   /* ... and no more tail room is left behind */
#define RETRY_MIN_US 1000u           /* refill back-off (bufs_retry) */
#define RETRY_MAX_US 64000u
#define SEND_WAIT_MAX_US 10000u      /* send_wait: the longest wait past sends */
#define QUICK_MISSES 4u              /* quick returns in vain before waiting past */
#define QUICK_EVERY 8u               /* then one wait in so many returns quickly */

enum op { OP_RECV = 1, OP_SEND, OP_SENDMSG, OP_ACCEPT, OP_WAKE, OP_POLL, OP_IGNORE };

/* A gathered send's block: its msghdr and iovecs stay put until the
 * completion, whose user_data points here (the connection object has no
 * room for the block; see struct np_conn). */
struct send_msg {
	struct np_conn *c;
	struct msghdr msg;
	struct iovec iov[SEND_IOV];
};

struct ur {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	size_t br_size;
	struct bp_block *bufs[NBUFS];
	uint32_t nempty;              /* ring slots without a block (ENOMEM) */
	uint32_t retry_us;            /* bufs_retry's back-off ... */
	uint64_t retry_at;            /* ... and its next try (loop us clock) */
	uint32_t nparked;             /* connections with NP_C_RECV_PARKED */
	uint64_t wake_buf;
	bool wake_armed;
	bool accept_armed[NP_MAX_LISTEN];
	uint32_t inflight;            /* operations whose completion we await */
	uint32_t sends_due;           /* sends queued since the last wait whose
	                               * completions the kernel posts as it
	                               * takes them (send_wait) */
	uint32_t quick_due;           /* send_wait: this wait returns on those */
	uint32_t quick_misses;        /* ... and found nothing past them, so many
	                               * times in a row */
	uint32_t past_waits;          /* waits past the sends since a quick one */
	bool defer;                   /* IORING_SETUP_DEFER_TASKRUN */
	bool closing;                 /* deinit: re-arm nothing */
};

static inline uint64_t ud(void *p, enum op op)
{
	return (uint64_t)(uintptr_t)p | (uint64_t)op;
}

/* Hands the queued SQEs to the kernel now rather than at the next wait. */
static void submit_now(struct np_loop *l)
{
	struct ur *u = l->be;
	u->sends_due = 0; /* their completions may be reaped before the wait */
	io_uring_submit(&u->ring);
	np__ctr(&l->st.wait_calls, 1);
	np__ctr(&l->st.syscalls, 1);
}

/* An SQE, submitting queued ones first when the ring is full. */
static struct io_uring_sqe *sqe_get(struct np_loop *l)
{
	struct ur *u = l->be;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	if (!sqe) {
		submit_now(l);
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe; /* NULL only if the kernel took nothing: treated as ENOMEM */
}

static void cancel(struct np_loop *l, uint64_t target)
{
	struct io_uring_sqe *sqe = sqe_get(l);
	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, target, 0);
	io_uring_sqe_set_data64(sqe, ud(NULL, OP_IGNORE));
}

/* ---- probe ------------------------------------------------------------ */

static bool g_usable;
static pthread_once_t g_probe_once = PTHREAD_ONCE_INIT;

static void probe(void)
{
	struct utsname un;
	int major = 0, minor = 0;
	if (uname(&un) == 0)
		sscanf(un.release, "%d.%d", &major, &minor);
	if (major < 6) /* multishot recv and provided-buffer rings: 6.0 */
		return;
	struct io_uring ring;
	if (io_uring_queue_init(8, &ring, 0) < 0)
		return; /* ENOSYS, EPERM (io_uring_disabled, seccomp), ... */
	struct io_uring_probe *p = io_uring_get_probe_ring(&ring);
	bool ok = p != NULL;
	static const int ops[] = {IORING_OP_RECV, IORING_OP_SENDMSG, IORING_OP_ACCEPT,
	                          IORING_OP_ASYNC_CANCEL, IORING_OP_READ,
	                          IORING_OP_POLL_ADD};
	for (size_t i = 0; ok && i < sizeof(ops) / sizeof(ops[0]); i++)
		ok = io_uring_opcode_supported(p, ops[i]);
	if (p)
		io_uring_free_probe(p);
	if (ok) {
		size_t sz = 4096;
		void *m = mmap(NULL, sz, PROT_READ | PROT_WRITE,
		               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct io_uring_buf_reg reg = {.ring_addr = (uintptr_t)m,
		                               .ring_entries = 8, .bgid = 0};
		ok = m != MAP_FAILED && io_uring_register_buf_ring(&ring, &reg, 0) == 0;
		if (ok)
			io_uring_unregister_buf_ring(&ring, 0);
		if (m != MAP_FAILED)
			munmap(m, sz);
	}
	io_uring_queue_exit(&ring);
	g_usable = ok;
}

static void *probe_thread(void *arg)
{
	(void)arg;
	probe();
	return NULL;
}

/* The probe runs on a thread of its own: tearing a ring down queues task
 * work for the thread that owned it, which interrupts that thread's next
 * blocking call (EINTR on a socket with a timeout) — not something to do
 * to whoever called np_group_create. */
static void probe_once(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, probe_thread, NULL) == 0)
		pthread_join(t, NULL);
}

bool np__uring_usable(void)
{
	pthread_once(&g_probe_once, probe_once);
	return g_usable;
}

/* ---- buffers ---------------------------------------------------------- */

static void buf_put(struct ur *u, uint16_t bid, struct bp_block *b)
{
	u->bufs[bid] = b;
	io_uring_buf_ring_add(u->br, bp_block_data(b), BUF_CAP, bid,
	                      io_uring_buf_ring_mask(NBUFS), 0);
	io_uring_buf_ring_advance(u->br, 1);
}

/* Gives slot bid, which is not counted empty (its block was just taken,
 * or it never had one), a fresh block; when the pool refuses, leaves it
 * empty and counted for bufs_retry. */
static void buf_refill(struct np_loop *l, uint16_t bid)
{
	struct ur *u = l->be;
	struct bp_block *b = bp_block_get(l->g->pool, BUF_CAP);
	if (b) {
		buf_put(u, bid, b);
		return;
	}
	u->bufs[bid] = NULL;
	if (u->nempty++ == 0) {
		u->retry_us = RETRY_MIN_US;
		u->retry_at = l->now_us + RETRY_MIN_US;
	}
}

/* Refills empty slots when the back-off has passed (it stops at the first
 * refusal: the pool is short). Any refill resets the back-off; none
 * doubles it, up to RETRY_MAX_US. Returns the wait's timeout cut to the
 * next retry while slots stay empty. */
static int64_t bufs_retry(struct np_loop *l, int64_t timeout_us)
{
	struct ur *u = l->be;
	uint64_t now = l->now_us;
	if (now >= u->retry_at) {
		np__ctr(&l->st.ring_retries, 1);
		bool refilled = false;
		for (uint16_t i = 0; u->nempty && i < NBUFS; i++) {
			if (u->bufs[i])
				continue;
			struct bp_block *b = bp_block_get(l->g->pool, BUF_CAP);
			if (!b)
				break;
			buf_put(u, i, b);
			u->nempty--;
			refilled = true;
		}
		if (refilled)
			u->retry_us = RETRY_MIN_US;
		else if (u->retry_us < RETRY_MAX_US)
			u->retry_us *= 2;
		u->retry_at = now + u->retry_us;
	}
	if (!u->nempty)
		return timeout_us;
	int64_t left = (int64_t)(u->retry_at - now);
	return timeout_us < 0 || timeout_us > left ? left : timeout_us;
}

/* ---- arming ----------------------------------------------------------- */

static void arm_wake(struct np_loop *l)
{
	struct ur *u = l->be;
	struct io_uring_sqe *sqe = sqe_get(l);
	if (!sqe)
		return;
	io_uring_prep_read(sqe, l->wake_fd, &u->wake_buf, sizeof(u->wake_buf), 0);
	io_uring_sqe_set_data64(sqe, ud(NULL, OP_WAKE));
	u->wake_armed = true;
	u->inflight++;
}

static int listener_index(struct np_loop *l, int fd)
{
	for (int i = 0; i < l->nlisten; i++)
		if (l->listen_fd[i] == fd)
			return i;
	return -1;
}

static void arm_accept(struct np_loop *l, int idx)
{
	struct ur *u = l->be;
	struct io_uring_sqe *sqe = sqe_get(l);
	if (!sqe)
		return;
	io_uring_prep_multishot_accept(sqe, l->listen_fd[idx], NULL, NULL,
	                               SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ((uint64_t)idx << 3) | OP_ACCEPT);
	u->accept_armed[idx] = true;
	u->inflight++;
}

static void arm_recv(struct np_loop *l, struct np_conn *c)
{
	struct ur *u = l->be;
	struct io_uring_sqe *sqe = sqe_get(l);
	if (!sqe)
		return;
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, ud(c, OP_RECV));
	c->flags |= NP_C_RECV_ARMED;
	np_conn_ref(c);
	u->inflight++;
}

/* Takes c off the parked receives (a parked one holds no reference). */
static void recv_unpark(struct ur *u, struct np_conn *c)
{
	c->flags &= ~NP_C_RECV_PARKED;
	u->nparked--;
}

/* Re-arms the parked receives, once the ring holds a buffer again. They
 * are found through the loop's slots: parking needs the pool to have
 * refused memory, and this runs once per recovery, not per wait. */
static void recv_unpark_all(struct np_loop *l)
{
	struct ur *u = l->be;
	for (uint32_t s = 0; u->nparked && s < l->nslots; s++) {
		struct np_conn *c = l->slots[s];
		if (!c || !(c->flags & NP_C_RECV_PARKED))
			continue;
		recv_unpark(u, c);
		if (!(c->flags & (NP_C_READ_OFF | NP_C_CLOSED | NP_C_PEER_EOF)))
			arm_recv(l, c);
	}
}

/* ---- interface -------------------------------------------------------- */

static int ur_init(struct np_loop *l)
{
	struct ur *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	struct io_uring_params p;
	static const unsigned tries[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN, 0};
	static const char *const modes[] = {"defer_taskrun", "coop_taskrun", "plain"};
	size_t i = 0;
	const char *env = getenv("GEECACHE_URING_SETUP");
	if (env && strcmp(env, "coop") == 0)
		i = 1;
	else if (env && strcmp(env, "plain") == 0)
		i = 2;
	else if (env && *env && strcmp(env, "defer") != 0 && l->index == 0)
		fprintf(stderr, "netpoll: GEECACHE_URING_SETUP=%s is not defer, coop "
		                "or plain: ignored\n", env);
	int r = -EINVAL;
	for (; i < 3; i++) {
		memset(&p, 0, sizeof(p));
		p.flags = tries[i] | IORING_SETUP_CQSIZE;
		p.cq_entries = CQ_ENTRIES;
		r = io_uring_queue_init_params(SQ_ENTRIES, &u->ring, &p);
		if (r == 0)
			break;
	}
	if (r < 0) {
		free(u);
		return r;
	}
	/* The provided-buffer ring (liburing 2.4's io_uring_setup_buf_ring). */
	u->br_size = NBUFS * sizeof(struct io_uring_buf);
	u->br = mmap(NULL, u->br_size, PROT_READ | PROT_WRITE,
	             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (u->br == MAP_FAILED) {
		io_uring_queue_exit(&u->ring);
		free(u);
		return -ENOMEM;
	}
	io_uring_buf_ring_init(u->br);
	struct io_uring_buf_reg reg = {.ring_addr = (uintptr_t)u->br,
	                               .ring_entries = NBUFS, .bgid = BGID};
	r = io_uring_register_buf_ring(&u->ring, &reg, 0);
	if (r < 0) {
		munmap(u->br, u->br_size);
		io_uring_queue_exit(&u->ring);
		free(u);
		return r;
	}
	l->be = u;
	for (uint16_t b = 0; b < NBUFS; b++)
		buf_refill(l, b);
	np__gauge(&l->st.ring_empty_slots, u->nempty);
	arm_wake(l);
	u->defer = i == 0;
	atomic_store(&l->be_mode, modes[i]);
	return 0;
}

static void on_cqe(struct np_loop *l, struct io_uring_cqe *cqe);

/* on_peek: the batch's receives that start a request (nothing held). */
static void peek(struct np_loop *l)
{
	struct ur *u = l->be;
	struct np_peek pk[NP_PEEK_MAX];
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	io_uring_for_each_cqe(&u->ring, head, cqe) {
		uint64_t d = io_uring_cqe_get_data64(cqe);
		if ((enum op)(d & 7) != OP_RECV || cqe->res <= 0 ||
		    !(cqe->flags & IORING_CQE_F_BUFFER))
			continue;
		struct np_conn *c = (void *)(uintptr_t)(d & ~(uint64_t)7);
		if ((c->flags & (NP_C_CLOSED | NP_C_DRAINING)) || bp_chain_len(&c->in))
			continue;
		uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		pk[n++] = (struct np_peek){c, bp_block_data(u->bufs[bid]), (size_t)cqe->res};
		if (n == NP_PEEK_MAX)
			break;
	}
	if (n >= 2) {
		np__ctr(&l->st.peeked, n);
		l->g->h.on_peek(l, pk, n);
	}
}

static unsigned reap(struct np_loop *l)
{
	struct ur *u = l->be;
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	if (l->g->h.on_peek && io_uring_cq_ready(&u->ring) >= 2)
		peek(l);
	io_uring_for_each_cqe(&u->ring, head, cqe) {
		on_cqe(l, cqe);
		n++;
	}
	io_uring_cq_advance(&u->ring, n);
	return n;
}

static void ur_deinit(struct np_loop *l)
{
	struct ur *u = l->be;
	u->closing = true;
	/* Complete the wake read the simple way (a cancel can miss a read that
	 * is being re-armed), then cancel everything else in flight, again on
	 * every round, until the kernel has finished with all of it (bounded). */
	uint64_t one = 1;
	if (write(l->wake_fd, &one, sizeof(one)) < 0) {
		/* eventfd full: the read completes anyway */
	}
	for (int i = 0; u->inflight && i < 200; i++) {
		struct io_uring_sqe *sqe = sqe_get(l);
		if (sqe) {
			io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
			io_uring_sqe_set_data64(sqe, ud(NULL, OP_IGNORE));
		}
		struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
		struct io_uring_cqe *cqe;
		io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
		reap(l);
	}
	io_uring_unregister_buf_ring(&u->ring, BGID);
	io_uring_queue_exit(&u->ring); /* the kernel lets go of everything */
	for (int i = 0; i < NBUFS; i++)
		bp_block_unref(u->bufs[i]);
	np__gauge(&l->st.ring_empty_slots, 0);
	munmap(u->br, u->br_size);
	free(u);
	l->be = NULL;
}

static int ur_add_listener(struct np_loop *l, int fd)
{
	int idx = listener_index(l, fd);
	if (idx < 0)
		return -EINVAL;
	arm_accept(l, idx);
	return 0;
}

static void ur_pause_listener(struct np_loop *l, int fd, bool paused)
{
	struct ur *u = l->be;
	int idx = listener_index(l, fd);
	if (idx < 0 || !u)
		return;
	if (paused && u->accept_armed[idx])
		cancel(l, ((uint64_t)idx << 3) | OP_ACCEPT);
	else if (!paused && !u->accept_armed[idx])
		arm_accept(l, idx);
}

static int ur_conn_add(struct np_loop *l, struct np_conn *c)
{
	struct ur *u = l->be;
	if (c->flags & NP_C_CONNECTING) {
		struct io_uring_sqe *sqe = sqe_get(l);
		if (!sqe)
			return -ENOMEM;
		io_uring_prep_poll_add(sqe, c->fd, POLLOUT);
		io_uring_sqe_set_data64(sqe, ud(c, OP_POLL));
		c->flags |= NP_C_POLL_ARMED;
		np_conn_ref(c);
		u->inflight++;
		return 0;
	}
	arm_recv(l, c);
	return (c->flags & NP_C_RECV_ARMED) ? 0 : -ENOMEM;
}

static void ur_conn_set_read(struct np_loop *l, struct np_conn *c, bool on)
{
	struct ur *u = l->be;
	if (on && !(c->flags & (NP_C_RECV_ARMED | NP_C_RECV_PARKED | NP_C_CLOSED |
	                        NP_C_PEER_EOF)))
		arm_recv(l, c);
	else if (!on && (c->flags & NP_C_RECV_PARKED))
		recv_unpark(u, c); /* nothing in flight to cancel */
	else if (!on && (c->flags & NP_C_RECV_ARMED)) {
		/* Without DEFER_TASKRUN the kernel posts receives whenever this
		 * thread enters it (any syscall, a timer tick), and refilled ring
		 * slots let a paused connection's multishot receive keep filling
		 * them until the cancel is in: there the cancel goes at once, one
		 * syscall per pause. With DEFER_TASKRUN nothing is received before
		 * the next wait, whose enter submits the cancel first. Why and
		 * what it bounds: docs/netpoll.md, "io_uring" (Pausing). */
		cancel(l, ud(c, OP_RECV));
		if (!u->defer)
			submit_now(l);
	}
}

/* Queues the connection's output as one send. fresh: not issued from a
 * send's completion (what follows a short send meets a full socket and
 * waits for room), so the kernel most likely completes it as it takes
 * it: counted in sends_due. */
static int send_arm(struct np_loop *l, struct np_conn *c, bool fresh)
{
	struct ur *u = l->be;
	if ((c->flags & NP_C_SEND_ARMED) || !bp_chain_len(&c->out))
		return 0;
	/* The output in one buffer (a small reply, or replies copied
	 * together) goes by IORING_OP_SEND: no msghdr block, and the kernel
	 * imports no iovec. Anything else gathers by sendmsg. */
	struct iovec one[2];
	bool single = bp_chain_write_iov(&c->out, one, 2, NULL) == 1;
	struct bp_block *b = NULL;
	struct send_msg *sm = NULL;
	if (!single) {
		/* Short of memory for the msghdr: the first piece goes alone
		 * (a partial send, which the socket may make anyway), and its
		 * completion sends the rest. */
		b = bp_block_get(l->g->pool, sizeof(*sm));
		single = b == NULL;
	}
	if (!single) {
		sm = (struct send_msg *)bp_block_data(b);
		memset(&sm->msg, 0, sizeof(sm->msg));
		sm->c = c;
		sm->msg.msg_iov = sm->iov;
		sm->msg.msg_iovlen = (size_t)bp_chain_write_iov(&c->out, sm->iov, SEND_IOV, NULL);
	}
	struct io_uring_sqe *sqe = sqe_get(l);
	if (!sqe) {
		bp_block_unref(b);
		return -ENOMEM;
	}
	if (single) {
		io_uring_prep_send(sqe, c->fd, one[0].iov_base, one[0].iov_len, MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, ud(c, OP_SEND));
	} else {
		io_uring_prep_sendmsg(sqe, c->fd, &sm->msg, MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, ud(sm, OP_SENDMSG));
	}
	c->flags |= NP_C_SEND_ARMED;
	np_conn_ref(c);
	u->inflight++;
	u->sends_due += fresh;
	np__ctr(&l->st.write_calls, 1);
	return 0;
}

static int ur_conn_flush(struct np_loop *l, struct np_conn *c)
{
	return send_arm(l, c, true);
}

static void ur_conn_del(struct np_loop *l, struct np_conn *c)
{
	if (c->flags & NP_C_RECV_PARKED)
		recv_unpark(l->be, c);
	if (c->flags & NP_C_RECV_ARMED)
		cancel(l, ud(c, OP_RECV));
	if (c->flags & NP_C_POLL_ARMED)
		cancel(l, ud(c, OP_POLL));
}

/* A multishot receive that ended without an error goes on: re-armed at
 * once, unless it ran out of buffers while no slot holds one (none is on
 * its way back: the pool refused the refills). Re-armed then, it would end
 * again at once, every loop turn; it is parked until ur_wait finds a
 * buffer back in the ring. */
static void recv_rearm(struct np_loop *l, struct np_conn *c, int res)
{
	struct ur *u = l->be;
	if (res == -ENOBUFS && u->nempty == NBUFS) {
		c->flags |= NP_C_RECV_PARKED;
		u->nparked++;
		np__ctr(&l->st.recv_parked, 1);
		return;
	}
	arm_recv(l, c);
}

/* Puts the n bytes the kernel received into ring buffer b on the input
 * chain: by copy (0; b stays the ring's), or by adopting b (1; the
 * chain took the ring's reference), or not at all (-ENOMEM). Adopted, b
 * becomes the chain's writable tail, so later pieces are copied into the
 * room after its bytes. What is copied, so that input waiting to be
 * parsed (bounded by in_max in bytes) is held in blocks at least 3/4
 * full, as epoll's read blocks are:
 *  - a piece that fits in the tail's room (no block is taken);
 *  - a piece under half a buffer that continues waiting input, or comes
 *    to a handler that forwards its input by reference (it has cut from
 *    the chain before): the tail is filled, the rest starts a write block;
 *  - a larger piece that continues waiting input when the tail has a
 *    quarter of a buffer or more of room: the tail is filled and the rest
 *    goes into a block its own size, which the next full buffer, adopted,
 *    follows with little room lost.
 * Anything else is adopted: a piece that starts on an empty chain (a whole
 * request, the usual case: on_data consumes it and b goes straight back to
 * the ring) and full-sized pieces of a large value. A copy short of memory
 * falls back to adopting (a node is all it takes). Why and what was
 * measured: docs/netpoll.md, "How io_uring holds input". */
static int recv_keep(struct bp_chain *in, struct bp_block *b, uint32_t n)
{
	const char *p = bp_block_data(b);
	size_t room = bp_chain_tail_room(in), held = bp_chain_len(in);
	int r = -ENOMEM;
	if (n <= room || (n < RECV_COPY_BELOW && (held || bp_chain_was_cut(in))))
		r = bp_chain_append(in, p, n);
	else if (held && room >= RECV_ROOM_MAX)
		r = bp_chain_append_fit(in, p, n);
	if (r == 0)
		return 0;
	return bp_chain_adopt_writable(in, b, 0, n) == 0 ? 1 : -ENOMEM;
}

static void on_recv(struct np_loop *l, struct np_conn *c, int res, unsigned flags)
{
	struct ur *u = l->be;
	if (flags & IORING_CQE_F_BUFFER) {
		uint16_t bid = (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT);
		struct bp_block *b = u->bufs[bid];
		if (res > 0 && !(c->flags & (NP_C_CLOSED | NP_C_DRAINING))) {
			np__ctr(&l->st.read_calls, 1);
			np__ctr(&l->st.bytes_read, (uint64_t)res);
			int r = recv_keep(&c->in, b, (uint32_t)res);
			/* Adopted, the buffer is the chain's. A reference of
			 * ours says afterwards whether on_data let go of it
			 * (the usual case: requests parsed whole), and then
			 * the block goes straight back to the ring instead of
			 * a fresh one taking its slot. */
			if (r == 1)
				bp_block_ref(b);
			else
				buf_put(u, bid, b);
			if (r < 0)
				np__conn_error(c, -ENOMEM); /* the bytes cannot be kept */
			else
				np__conn_input(c);
			if (r == 1) {
				if (bp_block_refs(b) == 1) {
					buf_put(u, bid, b);
				} else {
					buf_refill(l, bid);
					bp_block_unref(b);
				}
			}
		} else {
			buf_put(u, bid, b); /* unused: back to the ring */
		}
	}
	if (flags & IORING_CQE_F_MORE)
		return;
	/* The multishot recv ended. */
	c->flags &= ~NP_C_RECV_ARMED;
	u->inflight--;
	if (res == -ENOBUFS)
		np__ctr(&l->st.recv_nobufs, 1);
	if (!(c->flags & NP_C_CLOSED)) {
		if (res == 0)
			np__conn_eof(c);
		else if (res < 0 && res != -ENOBUFS && res != -ECANCELED)
			np__conn_error(c, res);
		else if (!(c->flags & (NP_C_READ_OFF | NP_C_CLOSED | NP_C_PEER_EOF)) &&
		         !u->closing)
			recv_rearm(l, c, res); /* out of buffers, or ended early */
	}
	np_conn_unref(c);
}

/* b: a gathered send's block (struct send_msg), or NULL. */
static void on_send(struct np_loop *l, struct np_conn *c, struct bp_block *b, int res)
{
	struct ur *u = l->be;
	c->flags &= ~NP_C_SEND_ARMED;
	u->inflight--;
	if (c->flags & NP_C_CLOSED) {
		bp_chain_deinit(&c->out); /* deferred by the close */
	} else if (res < 0) {
		np__conn_error(c, res);
	} else {
		np__conn_sent(c, (size_t)res);
		if (!(c->flags & NP_C_CLOSED) && bp_chain_len(&c->out)) {
			int r = send_arm(l, c, false);
			if (r < 0)
				np__conn_error(c, r);
		}
	}
	bp_block_unref(b);
	np_conn_unref(c);
}

static void on_cqe(struct np_loop *l, struct io_uring_cqe *cqe)
{
	struct ur *u = l->be;
	uint64_t d = io_uring_cqe_get_data64(cqe);
	enum op op = (enum op)(d & 7);
	void *p = (void *)(uintptr_t)(d & ~(uint64_t)7);
	switch (op) {
	case OP_RECV:
		on_recv(l, p, cqe->res, cqe->flags);
		break;
	case OP_SEND:
	case OP_SENDMSG: { /* one call: on_send stays inlined */
		struct np_conn *c = p;
		struct bp_block *b = NULL;
		if (op == OP_SENDMSG) {
			struct send_msg *sm = p;
			c = sm->c;
			b = bp_block_of(sm);
		}
		on_send(l, c, b, cqe->res);
		break;
	}
	case OP_ACCEPT: {
		int idx = (int)(d >> 3);
		if (cqe->res >= 0)
			np__conn_accepted(l, cqe->res, l->listen_tcp[idx]);
		else if (np__accept_error(l, -cqe->res) && u->accept_armed[idx])
			cancel(l, d); /* paused; the timer re-arms */
		if (!(cqe->flags & IORING_CQE_F_MORE)) {
			u->accept_armed[idx] = false;
			u->inflight--;
			if (!l->accept_paused && !l->stopping && !u->closing && idx < l->nlisten)
				arm_accept(l, idx);
		}
		break;
	}
	case OP_WAKE:
		u->wake_armed = false;
		u->inflight--;
		np__wake_done(l);
		if (cqe->res != -ECANCELED && !u->closing)
			arm_wake(l);
		break;
	case OP_POLL: {
		struct np_conn *c = p;
		c->flags &= ~NP_C_POLL_ARMED;
		u->inflight--;
		if (!(c->flags & NP_C_CLOSED)) {
			int err = cqe->res < 0 ? -cqe->res : np__sock_error(c->fd);
			np__conn_connected(c, -err);
			if (!(c->flags & (NP_C_CLOSED | NP_C_RECV_ARMED)))
				arm_recv(l, c);
		}
		np_conn_unref(c);
		break;
	}
	case OP_IGNORE:
	default:
		break;
	}
}

/* How many completions the wait asks for. The sends it submits complete
 * as the kernel takes them (a socket with room), so a wait for one
 * completion returns at once with only theirs (a quick return), and the
 * loop enters again to sleep: two enters per request at a paced load. A
 * wait past them asks for one completion more, and sleeps in the enter
 * that sent. Which one pays depends on the load:
 * - A closed loop's next request has often come by then: the quick
 *   return finds it without sleeping (and a saturated loop keeps
 *   returning and yielding: slept through, it fell back to waking per
 *   batch with one client thread, throughput x0.79). Waiting past the
 *   sends cost 4 KiB pipelines 2-5%.
 * - A paced load's has not: the second enter is a syscall in vain.
 * So the wait returns quickly while quick returns find work (a saturated
 * loop always does), and waits past the sends after QUICK_MISSES in a
 * row that found none, returning quickly once in QUICK_EVERY to see
 * whether that still holds. A fresh send can meet a full socket (a
 * reader that stopped), and its completion then counts towards the one
 * past them: a wait past the sends is kept under SEND_WAIT_MAX_US, so
 * such a completion is reaped at most that late (docs/netpoll.md,
 * "io_uring"). */
static unsigned send_wait(struct ur *u, bool saturated, int64_t *timeout_us)
{
	uint32_t due = u->sends_due;
	u->sends_due = 0;
	u->quick_due = 0;
	if (!due || *timeout_us == 0 || due >= CQ_ENTRIES / 2)
		return 1;
	if (saturated || u->quick_misses < QUICK_MISSES || ++u->past_waits >= QUICK_EVERY) {
		u->past_waits = 0;
		u->quick_due = due;
		return 1;
	}
	if (*timeout_us < 0 || *timeout_us > SEND_WAIT_MAX_US)
		*timeout_us = SEND_WAIT_MAX_US;
	return due + 1;
}

static int ur_wait(struct np_loop *l, int64_t timeout_us)
{
	struct ur *u = l->be;
	if (u->nempty) {
		timeout_us = bufs_retry(l, timeout_us);
		np__gauge(&l->st.ring_empty_slots, u->nempty); /* the wait may be long */
	}
	if (u->nparked && u->nempty < NBUFS)
		recv_unpark_all(l);
	struct io_uring_cqe *cqe;
	int r;
	unsigned want = send_wait(u, l->saturated, &timeout_us);
	if (timeout_us == 0) {
		r = io_uring_submit_and_get_events(&u->ring);
	} else {
		struct __kernel_timespec ts = {
			.tv_sec = timeout_us / 1000000,
			.tv_nsec = (long long)(timeout_us % 1000000) * 1000};
		r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, want,
		                                     timeout_us < 0 ? NULL : &ts, NULL);
	}
	np__woke(l, -1); /* completions are not a readiness batch */
	np__ctr(&l->st.wait_calls, 1);
	np__ctr(&l->st.syscalls, 1);
	if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY)
		return r;
	unsigned n = reap(l);
	if (u->quick_due) /* did returning quickly find work past the sends? */
		u->quick_misses = n > u->quick_due ? 0 : u->quick_misses + (u->quick_misses < QUICK_MISSES);
	np__gauge(&l->st.ring_empty_slots, u->nempty);
	return 0;
}

/* Before a yield. Unlike submit_now, sends_due stays: nothing reaps
 * between this and the wait that follows, so the sends' completions are
 * still in the ring (or the deferred task work) when the wait counts what
 * it wants, and waiting past them is still one completion past them. */
static void ur_submit(struct np_loop *l)
{
	struct ur *u = l->be;
	if (!io_uring_sq_ready(&u->ring))
		return;
	io_uring_submit(&u->ring);
	np__ctr(&l->st.syscalls, 1);
}

const struct np_backend_ops np__uring_ops = {
	.init = ur_init,
	.deinit = ur_deinit,
	.add_listener = ur_add_listener,
	.pause_listener = ur_pause_listener,
	.conn_add = ur_conn_add,
	.conn_set_read = ur_conn_set_read,
	.conn_flush = ur_conn_flush,
	.conn_del = ur_conn_del,
	.wait = ur_wait,
	.submit = ur_submit,
};
