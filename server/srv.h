/*
 * geecached's internals: the server object and what its parts share.
 *
 * One srv per process. The memcached listener runs on an np_group of
 * `threads` loops; /metrics runs on a second, one-loop group. Connection
 * state (the parser) lives in a per-connection object from an object pool.
 * The store (cache) is thread-safe; everything else a handler touches is its
 * loop's own, except the counters below, which are per loop and written with
 * relaxed atomic stores so that stats can sum them from any thread.
 */
#ifndef GEECACHE_SRV_H
#define GEECACHE_SRV_H

#include "bufpool/bufpool.h"
#include "cache/cache.h"
#include "netpoll/netpoll.h"
#include "proto/proto.h"
#include "server/auth.h"
#include "server/options.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#ifndef GEECACHE_VERSION
#define GEECACHE_VERSION "0.0.0"
#endif

/* What VERSION answers: the memcached release whose protocol behaviour we
 * follow, then ours. Clients read the leading numbers to pick features
 * (libmemcached's memcapable expects 1.6 behaviour from 1.6 and later). */
#define SRV_PROTO_VERSION "1.6.18-geecache-" GEECACHE_VERSION

/* Server counters, per loop. Declared once: stats, /metrics. */
#define SRV_COUNTERS(X)                                                       \
	X(requests, COUNTER, "requests handled")                              \
	X(proto_errors, COUNTER, "malformed or refused requests")             \
	X(binary_conns, COUNTER, "connections that chose the binary protocol") \
	X(text_conns, COUNTER, "connections that chose the text protocol")    \
	X(get_refs, COUNTER, "values sent by reference from the store")       \
	X(get_small, COUNTER, "values copied as shorter than --copy-below")   \
	X(oversized, COUNTER, "values refused as over the item size limit")   \
	X(out_of_memory, COUNTER, "writes refused: the store could not make room") \
	X(meta_cmds, COUNTER, "meta commands (mg ms md ma mn me)")            \
	X(auth_cmds, COUNTER, "authentication attempts (SASL AUTH/STEP, text)") \
	X(auth_errors, COUNTER, "authentication attempts refused")          \
	X(auth_refused, COUNTER, "commands refused before authentication")

struct srv_counters {
#define SRV_X_FIELD(n, kind, help) uint64_t n;
	SRV_COUNTERS(SRV_X_FIELD)
#undef SRV_X_FIELD
};

static inline void srv_ctr(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

/* `stats detail`: per key prefix (the key up to its first ':') counts of
 * gets, hits, sets and deletes, memcached's "prefix stats", kept while
 * `stats detail on`. A fixed table: prefixes longer than
 * SRV_DETAIL_PREFIX_MAX or past SRV_DETAIL_ROWS distinct ones are not
 * counted (docs/server.md). */
#define SRV_DETAIL_ROWS 128
#define SRV_DETAIL_PREFIX_MAX 48

enum srv_detail_op { SRV_DETAIL_GET, SRV_DETAIL_HIT, SRV_DETAIL_SET, SRV_DETAIL_DEL };

struct srv_detail {
	pthread_mutex_t mu;
	_Atomic int on;
	unsigned n;
	struct {
		uint8_t len;
		char prefix[SRV_DETAIL_PREFIX_MAX];
		uint64_t ops[4]; /* by enum srv_detail_op */
	} row[SRV_DETAIL_ROWS];
};

/* What `stats reset` zeroes: the counters as they were then, subtracted
 * from what `stats` shows (/metrics keeps counting from start). */
struct srv_stats_base {
	pthread_mutex_t mu;
	struct cache_stats c;
	struct np_stats np;
	struct srv_counters sv;
	uint64_t net_enomem; /* the network pool's (malloc_fails) */
	struct cache_class_stats cls[CACHE_NCLASSES];
};

/* -m auto's choice (memauto.c). */
struct srv_memauto {
	int64_t limit_bytes; /* 0: none found */
	int64_t store_mib;
	const char *source;
};

/* The /metrics listener's connections (http.c), touched by its one loop
 * only: each with the time its current request head began (open, or the
 * last answer). A head not complete within SRV_HTTP_HEAD_MS closes the
 * connection, and when SRV_HTTP_MAX_CONNS - 1 are open a new one closes
 * the oldest, so that idle or half-open connections cannot keep a scrape
 * out (docs/server.md, "/metrics"). */
#define SRV_HTTP_MAX_CONNS 256 /* the group's max_conns */
#define SRV_HTTP_HEAD_MS 5000

struct srv_http_conns {
	uint32_t n;
	struct {
		struct np_conn *c; /* NULL: free */
		uint64_t since;    /* ms, np_loop_now */
	} e[SRV_HTTP_MAX_CONNS];
	uint64_t evicted, timed_out;
};

/* Output bounds (netpoll's out_high / out_low). A connection whose unsent
 * replies pass SRV_OUT_HIGH bytes is read no more and runs none of the
 * requests it has read until they drain to SRV_OUT_LOW (mc.c, mc_data), so
 * a client that does not read costs at most this plus one reply. Values
 * are referenced, not copied, so these bytes are mostly the store's: the
 * copies are headers and values under --copy-below (docs/server.md,
 * "Memory"). A /metrics answer is ~30 KiB, copied. */
#define SRV_OUT_HIGH (1u << 20)
#define SRV_IN_ROOM (64u << 10) /* input bound: -I plus this (a header, a
                                 * line of keys) */
#define SRV_OUT_LOW (256u << 10)
/* -R's budget yields a connection only while less than this much of its
 * input is left: io_uring's multishot receive goes on delivering what it
 * had in flight after a yield (each completion runs the handler again), so
 * a connection left with more would pile its input up to the bound above,
 * which closes it. Under half of the smallest bound (-I 1024 + IN_ROOM),
 * with room for a receive buffer (4 KiB) on top. */
#define SRV_YIELD_IN_MAX (32u << 10)
#define SRV_HTTP_OUT_HIGH (256u << 10)

/* How many bytes evicted segments that replies still reference may hold
 * outside -m (cache_opts.pinned_max): as much as the store, and at least
 * 64 MiB, so that the replies slow readers wait for (up to SRV_OUT_HIGH
 * each) do not make a small store refuse writes. docs/server.md, "Memory",
 * has the formula this enters. */
#define SRV_PINNED_MIN ((size_t)64 << 20)
static inline size_t srv_pinned_max(size_t limit)
{
	return limit > SRV_PINNED_MIN ? limit : SRV_PINNED_MIN;
}

#define SRV_MAX_ADDRS 16 /* -l addresses (netpoll's listeners per loop) */

/* Descriptors kept beyond -c for the server's own use (listeners, rings,
 * eventfds, timers, /metrics): store_start raises RLIMIT_NOFILE to -c plus
 * this. `stats` shows it as memcached's reserved_fds. */
#define SRV_RESERVED_FDS 64

struct srv {
	struct srv_options o;
	struct cache *cache;
	size_t seg_size;              /* the store's segment size */
	struct bp_pool *pool;         /* buffers and connection objects */
	struct np_group *group;       /* memcached protocol */
	struct np_group *metrics;     /* HTTP /metrics, or NULL */
	struct bp_objpool *parser_pool; /* struct mc_parser, mid-request */
	struct srv_counters *ctr;     /* one per loop */
	struct srv_auth *auth;        /* -Y's users, or NULL: no authentication */
	int port, metrics_port;       /* bound (port 0 with -s) */
	char *addr_buf;               /* -l, split at its commas into addrs */
	const char *addrs[SRV_MAX_ADDRS];
	int naddrs;
	time_t started;
	_Atomic int verbosity;
	struct np_workers *workers;   /* slow paths off the loops (sweep.c) */
	_Atomic int sweep_pending;    /* a sweep queued or running */
	struct srv_memauto mem;       /* -m auto's choice (source NULL: -m N) */
	bool pidfile_made;            /* -P's file written: removed at the end */
	uint8_t proto;                /* -B: every connection's protocol
	                               * (enum mc_proto; MC_PROTO_AUTO: chosen
	                               * by its first byte) */
	size_t pinned_max;            /* the store's cache_opts.pinned_max */
	struct srv_detail detail;
	struct srv_stats_base base;
	struct srv_http_conns http;
};

/* Per-connection state lives in netpoll's connection object: its udata is
 * a parser (520 bytes) from parser_pool only while the connection's input
 * stops mid-request (input that ends between requests is parsed with the
 * loop thread's parser, mc.c), else NULL; its tag byte holds the rest:
 *
 *   bits 0-1  the protocol (enum mc_proto) once chosen (at open with
 *             -B), and counted
 *   bits 2-3  failed authentication attempts (SRV_AUTH_TRIES closes)
 *   bit  4    prefetched: the keys the next call starts with were handed
 *             to cache_prefetch already (at a yield, or by mc_peek)
 *   bit  7    authenticated (set at open when -Y is not given)
 *
 * An idle connection holds netpoll's object alone, authenticated or not:
 * the state is two bits and a count, so it costs no byte of its own. */
#define SRV_TAG_PROTO 0x03u
#define SRV_TAG_FAIL_SHIFT 2
#define SRV_TAG_FAILS 0x0cu
#define SRV_TAG_PREFETCHED 0x10u
#define SRV_TAG_AUTHED 0x80u
#define SRV_AUTH_TRIES 3

/* memauto.c: -m auto. The store's size in MiB from the container's memory
 * limit read through proc_cgroup (/proc/self/cgroup) and cgroup_root
 * (/sys/fs/cgroup): the limit minus a reserve, or 64 MiB when there is no
 * limit. source says where the limit came from. Returns 0. */
int srv_memory_auto(const char *proc_cgroup, const char *cgroup_root,
                    struct srv_memauto *out);

/* sweep.c: the store's sweep on the worker pool. srv_sweep_start makes
 * the pool (0, or main's exit status); srv_sweep_timer, run on loop 0,
 * starts the periodic tick. */
int srv_sweep_start(struct srv *s);
void srv_sweep_timer(void *arg);

/* mc.c: the memcached handler. */
extern const struct np_handler srv_mc_handler;

/* http.c: the /metrics handler, and the timer that closes connections
 * whose request head is late (np_loop_post it to the metrics loop). */
extern const struct np_handler srv_http_handler;
void srv_http_start_timers(void *srv);

/* stats.c: the named statistics of a group ("" general: memcached's keys
 * alone; "geecache": GeeCache's own; "settings", "items", "slabs",
 * "conns", "sizes"), passed one by one to emit. Returns -ENOENT for an
 * unknown group. */
typedef int (*srv_stat_fn)(void *arg, const char *name, const char *value);
int srv_stats(struct srv *s, const char *group, size_t glen, srv_stat_fn emit,
              void *arg);

/* stats.c: the worst case of docs/server.md's "Memory" for s's settings,
 * less the R term (the copies of one reply past the output bound), in
 * bytes. `stats settings` shows it as memory_bound. */
uint64_t srv_memory_bound(const struct srv *s);

/* stats.c: `stats reset` (counters of `stats` start again from 0). */
void srv_stats_reset(struct srv *s);

/* stats.c: `stats detail on|off` and the count of one operation on key
 * (a no-op while off, or for a key without ':'). Any thread. */
void srv_detail_enable(struct srv *s, bool on);
void srv_detail_note(struct srv *s, const char *key, size_t klen,
                     enum srv_detail_op op);

/* stats.c: `stats detail dump` text ("PREFIX p get n hit n set n del n"
 * lines, then "END\r\n") into buf; the length (truncated at whole lines to
 * fit cap, which must hold "END\r\n"). */
size_t srv_detail_dump(struct srv *s, char *buf, size_t cap);

/* stats.c: Prometheus text exposition appended to out. 0 or -ENOMEM. */
int srv_metrics(struct srv *s, struct bp_chain *out);

/* The server's counters summed over loops. */
void srv_counters_sum(struct srv *s, struct srv_counters *out);

#endif
