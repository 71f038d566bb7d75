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
#include "server/options.h"

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
	X(get_copies, COUNTER, "values copied for a backed-up connection")    \
	X(oversized, COUNTER, "values refused as over the item size limit")   \
	X(out_of_memory, COUNTER, "writes refused: the store could not make room")

struct srv_counters {
#define SRV_X_FIELD(n, kind, help) uint64_t n;
	SRV_COUNTERS(SRV_X_FIELD)
#undef SRV_X_FIELD
};

static inline void srv_ctr(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

struct srv {
	struct srv_options o;
	struct cache *cache;
	size_t seg_size;              /* the store's segment size */
	struct bp_pool *pool;         /* buffers and connection objects */
	struct np_group *group;       /* memcached protocol */
	struct np_group *metrics;     /* HTTP /metrics, or NULL */
	struct bp_objpool *parser_pool; /* struct mc_parser, mid-request */
	struct srv_counters *ctr;     /* one per loop */
	int port, metrics_port;       /* bound */
	time_t started;
	_Atomic int verbosity;
};

/* Per-connection state lives in netpoll's connection object: its udata is
 * a parser (520 bytes) from parser_pool only while the connection's input
 * stops mid-request (input that ends between requests is parsed with the
 * loop thread's parser, mc.c), else NULL; its tag is the protocol (enum
 * mc_proto) once chosen, and counted in the counters. An idle connection
 * holds netpoll's object alone. */

/* mc.c: the memcached handler. */
extern const struct np_handler srv_mc_handler;

/* http.c: the /metrics handler. */
extern const struct np_handler srv_http_handler;

/* stats.c: the named statistics of a group ("" general, "settings",
 * "items", "slabs", "conns"), passed one by one to emit. Returns -ENOENT
 * for an unknown group. */
typedef int (*srv_stat_fn)(void *arg, const char *name, const char *value);
int srv_stats(struct srv *s, const char *group, size_t glen, srv_stat_fn emit,
              void *arg);

/* stats.c: Prometheus text exposition appended to out. 0 or -ENOMEM. */
int srv_metrics(struct srv *s, struct bp_chain *out);

/* The server's counters summed over loops. */
void srv_counters_sum(struct srv *s, struct srv_counters *out);

#endif
