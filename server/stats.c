/*
 * Statistics: memcached's keys in `stats` and its other groups, GeeCache's
 * own in `stats geecache`; the same numbers as Prometheus text on
 * /metrics, which prints every X-macro counter table of the modules
 * (bufpool, netpoll, cache, server), so a counter added there shows up.
 */
#include "server/srv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static const struct {
	const char *name;
	int is_gauge;
	const char *help;
	size_t off;
} srv_counter_desc[] = {
#define SRV_X_DESC(n, kind, help) {#n, sizeof(#kind) == sizeof("GAUGE"), help, offsetof(struct srv_counters, n)},
	SRV_COUNTERS(SRV_X_DESC)
#undef SRV_X_DESC
};
#define SRV_NCOUNTERS (sizeof(srv_counter_desc) / sizeof(srv_counter_desc[0]))

void srv_counters_sum(struct srv *s, struct srv_counters *out)
{
	memset(out, 0, sizeof(*out));
	int n = np_group_nloops(s->group);
	for (int i = 0; i < n; i++) {
		const uint64_t *src = (const uint64_t *)&s->ctr[i];
		uint64_t *dst = (uint64_t *)out;
		for (size_t k = 0; k < sizeof(*out) / sizeof(uint64_t); k++)
			dst[k] += __atomic_load_n(&src[k], __ATOMIC_RELAXED);
	}
}

struct snap {
	struct cache_stats c;
	struct bp_stats bp_net, bp_store;
	struct np_stats np;
	struct srv_counters sv;
};

static void snapshot(struct srv *s, struct snap *t)
{
	cache_stats_get(s->cache, &t->c);
	bp_pool_stats(s->pool, &t->bp_net);
	bp_pool_stats(cache_pool(s->cache), &t->bp_store);
	np_group_stats(s->group, &t->np);
	srv_counters_sum(s, &t->sv);
}

static void detail_clear(struct srv *s);

/* `stats reset`: remember the counters (gauges are not reset). */
void srv_stats_reset(struct srv *s)
{
	struct snap t;
	snapshot(s, &t);
	pthread_mutex_lock(&s->base.mu);
	s->base.c = t.c;
	s->base.np = t.np;
	s->base.sv = t.sv;
	s->base.net_enomem = t.bp_net.enomem;
	cache_class_stats_get(s->cache, s->base.cls);
	pthread_mutex_unlock(&s->base.mu);
	detail_clear(s);
}

/* The counters since the last `stats reset` (what `stats` shows). */
static void snapshot_since_reset(struct srv *s, struct snap *t)
{
	snapshot(s, t);
	pthread_mutex_lock(&s->base.mu);
	for (size_t i = 0; i < cache_ncounters; i++)
		if (cache_counters[i].kind != CACHE_GAUGE)
			*(uint64_t *)((char *)&t->c + cache_counters[i].offset) -=
				cache_stats_value(&s->base.c, i);
	for (size_t i = 0; i < np_ncounters; i++)
		if (!np_counters[i].is_gauge)
			*(uint64_t *)((char *)&t->np + np_counters[i].offset) -=
				*(const uint64_t *)((const char *)&s->base.np + np_counters[i].offset);
	for (size_t i = 0; i < SRV_NCOUNTERS; i++)
		if (!srv_counter_desc[i].is_gauge)
			*(uint64_t *)((char *)&t->sv + srv_counter_desc[i].off) -=
				*(const uint64_t *)((const char *)&s->base.sv + srv_counter_desc[i].off);
	t->bp_net.enomem -= s->base.net_enomem;
	pthread_mutex_unlock(&s->base.mu);
}

/* ---- stats detail ----------------------------------------------------- */

void srv_detail_enable(struct srv *s, bool on)
{
	atomic_store_explicit(&s->detail.on, on, memory_order_relaxed);
}

void srv_detail_note(struct srv *s, const char *key, size_t klen,
                     enum srv_detail_op op)
{
	struct srv_detail *d = &s->detail;
	if (!atomic_load_explicit(&d->on, memory_order_relaxed))
		return;
	const char *colon = memchr(key, ':', klen);
	if (!colon || (size_t)(colon - key) > SRV_DETAIL_PREFIX_MAX)
		return;
	size_t plen = (size_t)(colon - key);
	pthread_mutex_lock(&d->mu);
	unsigned i;
	for (i = 0; i < d->n; i++)
		if (d->row[i].len == plen && memcmp(d->row[i].prefix, key, plen) == 0)
			break;
	if (i == d->n && d->n < SRV_DETAIL_ROWS) {
		d->row[i].len = (uint8_t)plen;
		memcpy(d->row[i].prefix, key, plen);
		memset(d->row[i].ops, 0, sizeof(d->row[i].ops));
		d->n++;
	}
	if (i < d->n)
		d->row[i].ops[op]++;
	pthread_mutex_unlock(&d->mu);
}

static void detail_clear(struct srv *s)
{
	pthread_mutex_lock(&s->detail.mu);
	s->detail.n = 0;
	pthread_mutex_unlock(&s->detail.mu);
}

size_t srv_detail_dump(struct srv *s, char *buf, size_t cap)
{
	struct srv_detail *d = &s->detail;
	size_t n = 0;
	pthread_mutex_lock(&d->mu);
	for (unsigned i = 0; i < d->n; i++) {
		char line[SRV_DETAIL_PREFIX_MAX + 128];
		int k = snprintf(line, sizeof(line),
		                 "PREFIX %.*s get %" PRIu64 " hit %" PRIu64 " set %" PRIu64
		                 " del %" PRIu64 "\r\n", (int)d->row[i].len, d->row[i].prefix,
		                 d->row[i].ops[SRV_DETAIL_GET], d->row[i].ops[SRV_DETAIL_HIT],
		                 d->row[i].ops[SRV_DETAIL_SET], d->row[i].ops[SRV_DETAIL_DEL]);
		if (k < 0 || n + (size_t)k + 5 > cap)
			break;
		memcpy(buf + n, line, (size_t)k);
		n += (size_t)k;
	}
	pthread_mutex_unlock(&d->mu);
	memcpy(buf + n, "END\r\n", 5);
	return n + 5;
}

/* ---- stats groups ----------------------------------------------------- */

static int num(srv_stat_fn emit, void *arg, const char *name, uint64_t v)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	return emit(arg, name, buf);
}

#define EMIT(name, v)                                                         \
	do {                                                                  \
		int r_ = num(emit, arg, (name), (v));                         \
		if (r_)                                                       \
			return r_;                                            \
	} while (0)

#define EMIT_STR(name, v)                                                     \
	do {                                                                  \
		int r_ = emit(arg, (name), (v));                              \
		if (r_)                                                       \
			return r_;                                            \
	} while (0)

/* Keys memcached prints for machinery geecached does not have, as 0: what
 * memcached shows when that machinery holds nothing (docs/server.md,
 * "stats", says why each is the truth here). */
static int zeros(srv_stat_fn emit, void *arg, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int r = emit(arg, names[i], "0");
		if (r)
			return r;
	}
	return 0;
}

#define EMIT_ZEROS(names)                                                     \
	do {                                                                  \
		int r_ = zeros(emit, arg, (names), sizeof(names) / sizeof((names)[0])); \
		if (r_)                                                       \
			return r_;                                            \
	} while (0)

/* No response objects (replies are appended to the connection's output
 * chain) and no read buffer objects (input is read into the network
 * pool's blocks, held only while a request is incomplete). */
static const char *const no_conn_bufs[] = {
	"response_obj_oom", "response_obj_count", "response_obj_bytes",
	"read_buf_count", "read_buf_bytes", "read_buf_bytes_free", "read_buf_oom",
};
/* No slab classes, so no page ever moves between them. */
static const char *const no_slab_moves[] = {
	"slab_reassign_rescues", "slab_reassign_chunk_rescues",
	"slab_reassign_evictions_nomem", "slab_reassign_inline_reclaim",
	"slab_reassign_busy_items", "slab_reassign_busy_deletes",
	"slab_reassign_running", "slabs_moved",
};
/* No `watch` logger, no NAPI thread selection (-N). */
static const char *const no_logger_napi[] = {
	"log_worker_dropped", "log_worker_written", "log_watcher_skipped",
	"log_watcher_sent", "log_watchers", "unexpected_napi_ids",
	"round_robin_fallback",
};

/* memcached 1.6.18's general statistics: exactly its keys, in its order,
 * as it prints them with its LRU crawler and LRU maintainer off (geecached
 * has neither: the store's sweep is reported as the crawler's counters,
 * crawler_*), and idle_kicks only with --idle-timeout, as memcached does.
 * GeeCache's own counters are in `stats geecache`. */
static int general(struct srv *s, srv_stat_fn emit, void *arg)
{
	struct snap t;
	snapshot_since_reset(s, &t);
	time_t now = time(NULL);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	char buf[64];
	EMIT("pid", (uint64_t)getpid());
	EMIT("uptime", (uint64_t)(now - s->started));
	EMIT("time", (uint64_t)now);
	EMIT_STR("version", SRV_PROTO_VERSION);
	EMIT_STR("libevent", "netpoll-" GEECACHE_VERSION); /* the event library */
	EMIT("pointer_size", 8 * sizeof(void *));
	snprintf(buf, sizeof(buf), "%ld.%06ld", (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec);
	EMIT_STR("rusage_user", buf);
	snprintf(buf, sizeof(buf), "%ld.%06ld", (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec);
	EMIT_STR("rusage_system", buf);
	EMIT("max_connections", (uint64_t)s->o.conn_limit);
	EMIT("curr_connections", t.np.conns_current);
	EMIT("total_connections", t.np.conns_accepted);
	EMIT("rejected_connections", t.np.conns_rejected);
	EMIT("connection_structures", t.np.conns_current);
	EMIT_ZEROS(no_conn_bufs);
	EMIT("reserved_fds", SRV_RESERVED_FDS);
	EMIT("cmd_get", t.c.cmd_get);
	EMIT("cmd_set", t.c.cmd_set + t.c.cmd_add + t.c.cmd_replace + t.c.cmd_append + t.c.cmd_cas);
	EMIT("cmd_flush", t.c.cmd_flush);
	EMIT("cmd_touch", t.c.cmd_touch);
	EMIT("cmd_meta", t.sv.meta_cmds);
	EMIT("get_hits", t.c.get_hits);
	EMIT("get_misses", t.c.get_misses);
	EMIT("get_expired", t.c.get_expired);
	EMIT("get_flushed", t.c.get_flushed);
	EMIT("delete_misses", t.c.delete_misses);
	EMIT("delete_hits", t.c.delete_hits);
	EMIT("incr_misses", t.c.incr_misses);
	EMIT("incr_hits", t.c.incr_hits);
	EMIT("decr_misses", t.c.decr_misses);
	EMIT("decr_hits", t.c.decr_hits);
	EMIT("cas_misses", t.c.cas_misses);
	EMIT("cas_hits", t.c.cas_hits);
	EMIT("cas_badval", t.c.cas_mismatch);
	EMIT("touch_hits", t.c.touch_hits);
	EMIT("touch_misses", t.c.touch_misses);
	EMIT("store_too_large", t.sv.oversized);
	EMIT("store_no_memory", t.sv.out_of_memory);
	EMIT("auth_cmds", t.sv.auth_cmds);
	EMIT("auth_errors", t.sv.auth_errors);
	if (s->o.idle_timeout)
		EMIT("idle_kicks", t.np.idle_closed);
	EMIT("bytes_read", t.np.bytes_read);
	EMIT("bytes_written", t.np.bytes_written);
	EMIT("limit_maxbytes", t.c.limit_bytes);
	/* geecached never stops listening: over -c it refuses connections
	 * one by one */
	EMIT("accepting_conns", 1);
	EMIT("listen_disabled_num", 0);
	EMIT("time_in_listen_disabled_us", 0);
	EMIT("threads", (uint64_t)np_group_nloops(s->group));
	EMIT("conn_yields", t.np.conn_yields);
	unsigned hp = 0;
	while (hp < 63 && ((uint64_t)1 << (hp + 1)) <= t.c.hash_slots)
		hp++;
	EMIT("hash_power_level", hp);
	EMIT("hash_bytes", t.c.hash_slots * 8);
	EMIT("hash_is_expanding", 0); /* tables grow under their shard's lock */
	EMIT_ZEROS(no_slab_moves);
	/* the network pool's allocations the system refused (the store's
	 * refusals are its limit: store_no_memory) */
	EMIT("malloc_fails", t.bp_net.enomem);
	EMIT_ZEROS(no_logger_napi);
	EMIT("bytes", t.c.bytes_items);
	EMIT("curr_items", t.c.curr_items);
	EMIT("total_items", t.c.total_items);
	/* segments are not pages moved between classes: none is held for that */
	EMIT("slab_global_page_pool", 0);
	EMIT("expired_unfetched", t.c.expired_unfetched);
	EMIT("evicted_unfetched", t.c.evicted_unfetched);
	EMIT("evictions", t.c.evictions);
	EMIT("reclaimed", t.c.expired_reclaimed);
	EMIT("crawler_reclaimed", t.c.sweep_reclaimed);
	EMIT("crawler_items_checked", t.c.sweep_checked);
	/* memcached's items skipped at an LRU tail because a request held
	 * them: eviction here never skips an item a reply references (the
	 * segment goes, its block lives on until the reply is sent). */
	EMIT("lrutail_reflocked", 0);
	return 0;
}

/* `stats geecache`: GeeCache's own counters (docs/server.md, "stats"),
 * with idle_kicks and conn_yields, memcached's names that `stats` also
 * shows, so that the group is complete on its own. */
static int own(struct srv *s, srv_stat_fn emit, void *arg)
{
	struct snap t;
	snapshot_since_reset(s, &t);
	char buf[64];
	EMIT("idle_kicks", t.np.idle_closed);
	EMIT_STR("backend", np_backend_name(np_group_backend(s->group)));
	/* io_uring's ring set-up (defer_taskrun on Linux 6.1+, else a fallback);
	 * each loop makes its own ring, so "mixed" if they came out different. */
	const char *mode = np_loop_backend_mode(np_group_loop(s->group, 0));
	for (int i = 1; mode && i < np_group_nloops(s->group); i++) {
		const char *m = np_loop_backend_mode(np_group_loop(s->group, i));
		if (m && strcmp(m, mode) != 0)
			mode = "mixed";
	}
	if (mode)
		EMIT_STR("backend_mode", mode);
	EMIT("allocator_calls", t.bp_net.sys_alloc_calls + t.bp_store.sys_alloc_calls);
	EMIT("bytes_copied", t.bp_net.copied_view_bytes + t.bp_net.copied_append_bytes +
	                     t.bp_net.copied_out_bytes + t.bp_store.copied_view_bytes +
	                     t.bp_store.copied_append_bytes + t.bp_store.copied_out_bytes);
	uint64_t gets = t.bp_net.block_gets + t.bp_store.block_gets;
	uint64_t hits = t.bp_net.pool_hits + t.bp_store.pool_hits;
	snprintf(buf, sizeof(buf), "%.4f", gets ? (double)hits / (double)gets : 1.0);
	EMIT_STR("pool_hit_ratio", buf);
	EMIT("syscalls", t.np.syscalls);
	EMIT("conns_handed_off", t.np.handoffs);
	EMIT("yields", t.np.yields);
	EMIT("loops_saturated", t.np.loops_saturated);
	EMIT("yield_trials", t.np.yield_trials);
	EMIT("yield_held", t.np.yield_held);
	EMIT("requests", t.sv.requests);
	EMIT("values_sent_by_ref", t.sv.get_refs);
	EMIT("values_copied_small", t.sv.get_small);
	EMIT("store_bytes_total", t.c.bytes_held);
	/* evicted segments replies still reference (outside -m; docs/server.md,
	 * "Memory") */
	EMIT("store_pinned_evicted_bytes", t.c.bytes_pinned_evicted);
	EMIT("store_pinned_evicted_peak", t.c.bytes_pinned_evicted_peak);
	EMIT("store_pinned_evictions", t.c.pinned_evictions);
	EMIT("store_large_items", t.c.large_items);
	EMIT("conn_yields", t.np.conn_yields);
	/* the worker pool (the store's sweep: sweep.c) */
	struct np_workers_stats ws;
	np_workers_get_stats(s->workers, &ws);
	EMIT("workers_threads", ws.threads);
	EMIT("workers_completed", ws.completed);
	EMIT("workers_expired", ws.expired);
	EMIT("workers_refused", ws.refused);
	EMIT("workers_wait_max_us", ws.wait_ns_max / 1000);
	return 0;
}

uint64_t srv_memory_bound(const struct srv *s)
{
	const uint64_t MiB = 1u << 20;
	uint64_t m = (uint64_t)s->o.memory_limit * MiB;
	uint64_t c = (uint64_t)s->o.conn_limit;
	uint64_t per_conn = (uint64_t)s->o.max_item_size + SRV_IN_ROOM + SRV_OUT_HIGH;
	int loops = np_group_nloops(s->group);
	uint64_t rings = np_group_backend(s->group) == NP_BACKEND_URING ? 4 * MiB * (uint64_t)loops : 0;
	uint64_t caches = (uint64_t)(loops + 1) * (13 * MiB / 2);
	uint64_t http = s->metrics ? SRV_HTTP_MAX_CONNS * (64 * 1024 + SRV_HTTP_OUT_HIGH) : 0;
	return m + s->pinned_max + c * per_conn + rings + caches + http;
}

static int settings(struct srv *s, srv_stat_fn emit, void *arg)
{
	char buf[1024]; /* -l's whole list, -s's path */
	for (size_t i = 0; i < srv_nopts; i++) {
		if (!srv_opts[i].stat)
			continue;
		/* What is in effect, where it differs from what was asked. */
		const char *f = srv_opts[i].field;
		if (strcmp(f, "port") == 0)
			snprintf(buf, sizeof(buf), "%d", s->port);
		else if (strcmp(f, "threads") == 0)
			snprintf(buf, sizeof(buf), "%d", np_group_nloops(s->group));
		else if (strcmp(f, "backend") == 0)
			snprintf(buf, sizeof(buf), "%s", np_backend_name(np_group_backend(s->group)));
		else if (strcmp(f, "listen") == 0 && *s->o.unix_socket_str)
			snprintf(buf, sizeof(buf), "NULL"); /* no TCP with -s */
		else if (strcmp(f, "unix_socket") == 0)
			snprintf(buf, sizeof(buf), "%s",
			         *s->o.unix_socket_str ? s->o.unix_socket_str : "NULL");
		else if (strcmp(f, "metrics_port") == 0)
			snprintf(buf, sizeof(buf), "%d", s->metrics ? s->metrics_port : 0);
		else if (strcmp(f, "yield_us") == 0 && np_group_yield_us(s->group) == NP_YIELD_SATURATED)
			snprintf(buf, sizeof(buf), "saturated");
		else if (strcmp(f, "yield_us") == 0 && np_group_yield_us(s->group) == NP_YIELD_ADAPTIVE)
			snprintf(buf, sizeof(buf), "adaptive");
		else if (strcmp(f, "yield_us") == 0)
			snprintf(buf, sizeof(buf), "%u", np_group_yield_us(s->group));
		else if (strcmp(f, "verbose") == 0)
			snprintf(buf, sizeof(buf), "%d", atomic_load(&s->verbosity));
		else
			srv_options_value(&s->o, i, buf, sizeof(buf));
		int r = emit(arg, srv_opts[i].stat, buf);
		if (r)
			return r;
	}
	/* memcached's name for the unit it allocates items from. */
	snprintf(buf, sizeof(buf), "%zu", s->seg_size);
	EMIT_STR("slab_page_size", buf);
	/* memcached's names for -M, -C, -F and -A; authentication with -Y
	 * (both protocols). */
	EMIT_STR("evictions", s->o.disable_evictions ? "off" : "on");
	EMIT_STR("cas_enabled", s->o.disable_cas ? "no" : "yes");
	EMIT_STR("flush_enabled", s->o.disable_flush_all ? "no" : "yes");
	EMIT_STR("auth_enabled_sasl", s->auth ? "yes" : "no");
	EMIT_STR("auth_enabled_ascii", s->auth ? s->o.auth_file_str : "no");
	EMIT_STR("shutdown_command", s->o.enable_shutdown ? "yes" : "no");
	EMIT_STR("detail_enabled", atomic_load(&s->detail.on) ? "yes" : "no");
	/* -m auto: where maxbytes came from, and the limit it was taken from */
	EMIT_STR("maxbytes_source", s->mem.source ? s->mem.source : "-m");
	snprintf(buf, sizeof(buf), "%" PRId64, s->mem.limit_bytes);
	EMIT_STR("memory_limit_found", buf);
	/* docs/server.md, "Memory": the bounds and their sum */
	EMIT("pinned_max", s->pinned_max);
	EMIT("output_buffer_max", SRV_OUT_HIGH);
	EMIT("input_buffer_max", (uint64_t)s->o.max_item_size + SRV_IN_ROOM);
	EMIT("memory_bound", srv_memory_bound(s));
	return 0;
}

/* The size classes' counters since the last `stats reset` (gauges are
 * not reset). */
static const bool cls_gauge[] = {
#define CLS_X_GAUGE(name, kind, help) CACHE_##kind == CACHE_GAUGE,
	CACHE_CLASS_COUNTERS(CLS_X_GAUGE)
#undef CLS_X_GAUGE
};
#define CLS_N (sizeof(cls_gauge) / sizeof(cls_gauge[0]))

static void classes_since_reset(struct srv *s, struct cache_class_stats *t)
{
	cache_class_stats_get(s->cache, t);
	pthread_mutex_lock(&s->base.mu);
	for (unsigned k = 1; k < CACHE_NCLASSES; k++)
		for (size_t j = 0; j < CLS_N; j++)
			if (!cls_gauge[j])
				((uint64_t *)&t[k])[j] -= ((const uint64_t *)&s->base.cls[k])[j];
	pthread_mutex_unlock(&s->base.mu);
}

#define EMIT_CLS(fmt, k, v)                                 \
	do {                                                \
		char name_[48];                             \
		snprintf(name_, sizeof(name_), fmt, k);     \
		EMIT(name_, v);                             \
	} while (0)

/* memcached's per-slab-class rows. The store has no slab classes; items
 * are counted by the class memcached would give them (cache.h, "Size
 * classes"), and a class is listed, as memcached lists it, only when it
 * holds items. docs/server.md says which memcached rows are left out. */
static int items(struct srv *s, srv_stat_fn emit, void *arg)
{
	struct cache_class_stats t[CACHE_NCLASSES];
	classes_since_reset(s, t);
	for (unsigned k = 1; k < CACHE_NCLASSES; k++) {
		if (t[k].number == 0)
			continue;
		EMIT_CLS("items:%u:number", k, t[k].number);
		EMIT_CLS("items:%u:mem_requested", k, t[k].mem_requested);
		EMIT_CLS("items:%u:evicted", k, t[k].evicted);
		EMIT_CLS("items:%u:outofmemory", k, t[k].outofmemory);
		EMIT_CLS("items:%u:reclaimed", k, t[k].reclaimed);
		EMIT_CLS("items:%u:expired_unfetched", k, t[k].expired_unfetched);
		EMIT_CLS("items:%u:evicted_unfetched", k, t[k].evicted_unfetched);
		EMIT_CLS("items:%u:crawler_reclaimed", k, t[k].crawler_reclaimed);
	}
	return 0;
}

static int slabs(struct srv *s, srv_stat_fn emit, void *arg)
{
	struct snap t;
	snapshot_since_reset(s, &t);
	struct cache_class_stats k[CACHE_NCLASSES];
	cache_class_stats_get(s->cache, k);
	unsigned active = 0;
	for (unsigned i = 1; i < CACHE_NCLASSES; i++) {
		if (k[i].number == 0)
			continue;
		active++;
		size_t chunk = cache_class_size(i);
		EMIT_CLS("%u:chunk_size", i, chunk);
		EMIT_CLS("%u:chunks_per_page", i, (1u << 20) / chunk);
		EMIT_CLS("%u:used_chunks", i, k[i].number);
	}
	EMIT("active_slabs", active);
	EMIT("total_malloced", t.c.bytes_held);
	return 0;
}

/* `stats sizes`: memcached's item-size histogram is off unless started
 * with -o track_sizes; GeeCache has none, and answers as memcached does
 * when it is off. */
static int sizes(struct srv *s, srv_stat_fn emit, void *arg)
{
	(void)s;
	EMIT_STR("sizes_status", "disabled");
	return 0;
}

static int conns(struct srv *s, srv_stat_fn emit, void *arg)
{
	struct np_stats st;
	np_group_stats(s->group, &st);
	EMIT("curr_connections", st.conns_current);
	EMIT("total_connections", st.conns_accepted);
	EMIT("rejected_connections", st.conns_rejected);
	EMIT("idle_closed", st.idle_closed);
	return 0;
}

int srv_stats(struct srv *s, const char *group, size_t glen, srv_stat_fn emit,
              void *arg)
{
	static const struct {
		const char *name;
		int (*fn)(struct srv *, srv_stat_fn, void *);
	} groups[] = {
		{"", general}, {"geecache", own}, {"settings", settings},
		{"items", items}, {"slabs", slabs}, {"conns", conns},
		{"sizes", sizes},
	};
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
		if (strlen(groups[i].name) == glen && memcmp(groups[i].name, group, glen) == 0)
			return groups[i].fn(s, emit, arg);
	return -ENOENT;
}

/* ---- Prometheus ------------------------------------------------------- */

static int put(struct bp_chain *out, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int put(struct bp_chain *out, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	return bp_chain_append(out, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static int metric(struct bp_chain *out, const char *prefix, const char *name,
                  int is_gauge, const char *help, const char *labels, uint64_t v)
{
	const char *suffix = is_gauge ? "" : "_total";
	int r = put(out, "# HELP geecache_%s%s%s %s\n# TYPE geecache_%s%s%s %s\n",
	            prefix, name, suffix, help, prefix, name, suffix,
	            is_gauge ? "gauge" : "counter");
	if (r)
		return r;
	return put(out, "geecache_%s%s%s%s %" PRIu64 "\n", prefix, name, suffix,
	           labels, v);
}

/* bufpool's counters, one family per counter, a sample per pool. */
static int pool_metrics(struct bp_chain *out, const struct bp_stats *net,
                        const struct bp_stats *store)
{
	for (size_t i = 0; i < bp_ncounters; i++) {
		const char *suffix = bp_counters[i].kind == BP_GAUGE ? "" : "_total";
		const char *type = bp_counters[i].kind == BP_GAUGE ? "gauge" : "counter";
		const char *n = bp_counters[i].name;
		int r = put(out, "# HELP geecache_bufpool_%s%s %s\n# TYPE geecache_bufpool_%s%s %s\n"
		            "geecache_bufpool_%s%s{pool=\"net\"} %" PRIu64 "\n"
		            "geecache_bufpool_%s%s{pool=\"store\"} %" PRIu64 "\n",
		            n, suffix, bp_counters[i].help, n, suffix, type,
		            n, suffix, bp_stats_value(net, i), n, suffix, bp_stats_value(store, i));
		if (r)
			return r;
	}
	return 0;
}

/* The worker pool: threads, and per lane what np_workers counts. */
static int workers_metrics(struct srv *s, struct bp_chain *out)
{
	static const char *const lane[NP_LANES] = {
		[NP_LANE_HIGH] = "high", [NP_LANE_NORMAL] = "normal", [NP_LANE_LOW] = "low",
	};
	static const struct {
		const char *name, *help;
		size_t off;
	} fam[] = {
#define W_FAM(n, h) {#n, h, offsetof(struct np_workers_lane_stats, n)},
		NP_WORKERS_LANE_STATS(W_FAM)
#undef W_FAM
	};
	struct np_workers_stats ws;
	np_workers_get_stats(s->workers, &ws);
	int r = metric(out, "workers_", "threads", 1, "worker threads now", "", ws.threads);
	for (size_t i = 0; !r && i < sizeof(fam) / sizeof(fam[0]); i++) {
		/* queued and running are gauges; waits go out in seconds, the
		 * base unit (promtool), the longest as a gauge */
		const char *name = fam[i].name, *help = fam[i].help;
		bool ns = strncmp(name, "wait_ns_", 8) == 0;
		bool gauge = strcmp(name, "queued") == 0 || strcmp(name, "running") == 0 ||
		             strcmp(name, "wait_ns_max") == 0;
		if (ns) {
			name = gauge ? "wait_max_seconds" : "wait_seconds";
			help = gauge ? "longest queue wait" : "sum of queue waits";
		}
		const char *suffix = gauge ? "" : "_total";
		r = put(out, "# HELP geecache_workers_%s%s %s\n# TYPE geecache_workers_%s%s %s\n",
		        name, suffix, help, name, suffix, gauge ? "gauge" : "counter");
		for (int l = 0; !r && l < NP_LANES; l++) {
			uint64_t v = *(const uint64_t *)((const char *)&ws.lanes[l] + fam[i].off);
			r = ns ? put(out, "geecache_workers_%s%s{lane=\"%s\"} %.9f\n", name,
			             suffix, lane[l], (double)v / 1e9)
			       : put(out, "geecache_workers_%s%s{lane=\"%s\"} %" PRIu64 "\n",
			             name, suffix, lane[l], v);
		}
	}
	return r;
}

int srv_metrics(struct srv *s, struct bp_chain *out)
{
	struct snap t;
	snapshot(s, &t);
	int r;
	for (size_t i = 0; i < cache_ncounters; i++)
		if ((r = metric(out, "cache_", cache_counters[i].name,
		                cache_counters[i].kind == CACHE_GAUGE,
		                cache_counters[i].help, "", cache_stats_value(&t.c, i))))
			return r;
	for (size_t i = 0; i < np_ncounters; i++) {
		uint64_t v = *(const uint64_t *)((const char *)&t.np + np_counters[i].offset);
		if ((r = metric(out, "netpoll_", np_counters[i].name, np_counters[i].is_gauge,
		                np_counters[i].help, "", v)))
			return r;
	}
	for (size_t i = 0; i < SRV_NCOUNTERS; i++) {
		uint64_t v = *(const uint64_t *)((const char *)&t.sv + srv_counter_desc[i].off);
		if ((r = metric(out, "server_", srv_counter_desc[i].name,
		                srv_counter_desc[i].is_gauge, srv_counter_desc[i].help, "", v)))
			return r;
	}
	if ((r = pool_metrics(out, &t.bp_net, &t.bp_store)))
		return r;
	if ((r = workers_metrics(s, out)))
		return r;
	return metric(out, "", "uptime_seconds", 1, "seconds since start", "",
	              (uint64_t)(time(NULL) - s->started));
}
