/*
 * Allocation fault injection: block gets that fail on purpose, so that
 * every path handling -ENOMEM can be run (unit tests through
 * bp_fault_set, a whole server through GEECACHE_FAULT_ALLOC).
 *
 * pool.c tests bp__fault_armed at the top of every block get and calls
 * bp__fault_fire only when it is set: with injection off a get pays one
 * load of a flag that never changes and a branch always predicted.
 *
 * The spec is kept under a sequence lock (gen odd while it is being
 * written), so that a get racing with bp_fault_set sees either the old
 * spec or the new one, never half of each. The call count (every:N,
 * after:M) is shared by all threads and pools; the random stream of
 * prob:P:SEED is per thread, seeded with SEED + the thread's index (the
 * order in which threads first drew under this spec), so a single thread's
 * sequence of failures is the same on every run.
 */
#include "bufpool/bp_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum fault_mode { FAULT_OFF = 0, FAULT_EVERY, FAULT_PROB };

struct fault_spec {
	enum fault_mode mode;
	uint64_t every;   /* every:N */
	uint64_t p_below; /* prob: fail when a 53-bit draw is below this */
	uint64_t seed;
	uint64_t after;   /* the first `after` counted gets never fail */
	uint64_t min_cap; /* gets of less capacity are not counted */
	uint64_t pool;    /* name_hash of the only pool counted; 0: all */
};

/* Written under g_set_lock; read lock-free (see spec_read). */
static struct {
	_Atomic uint64_t gen; /* odd: being written */
	_Atomic int mode;
	_Atomic uint64_t every, p_below, seed, after, min_cap, pool;
} g_spec;

static _Atomic uint64_t g_calls;   /* counted gets under the current spec */
static _Atomic uint64_t g_threads; /* thread indexes handed out (prob) */
static pthread_mutex_t g_set_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_env_once = PTHREAD_ONCE_INIT;

_Alignas(64) atomic_bool bp__fault_armed;

static __thread struct {
	uint64_t gen;   /* spec the state was seeded under; 0: none */
	uint64_t state; /* splitmix64 */
} tls_rng;

/* ---- the spec --------------------------------------------------------- */

static void spec_write(const struct fault_spec *s)
{
	pthread_mutex_lock(&g_set_lock);
	atomic_store_explicit(&bp__fault_armed, false, memory_order_relaxed);
	uint64_t gen = atomic_load_explicit(&g_spec.gen, memory_order_relaxed);
	atomic_store_explicit(&g_spec.gen, gen + 1, memory_order_relaxed);
	/* Pairs with the acquire fence in spec_read: a reader that sees any
	 * field below also sees gen odd (or changed). */
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&g_spec.mode, (int)s->mode, memory_order_relaxed);
	atomic_store_explicit(&g_spec.every, s->every, memory_order_relaxed);
	atomic_store_explicit(&g_spec.p_below, s->p_below, memory_order_relaxed);
	atomic_store_explicit(&g_spec.seed, s->seed, memory_order_relaxed);
	atomic_store_explicit(&g_spec.after, s->after, memory_order_relaxed);
	atomic_store_explicit(&g_spec.min_cap, s->min_cap, memory_order_relaxed);
	atomic_store_explicit(&g_spec.pool, s->pool, memory_order_relaxed);
	atomic_store_explicit(&g_calls, 0, memory_order_relaxed);
	atomic_store_explicit(&g_threads, 0, memory_order_relaxed);
	/* Pairs with the acquire load of gen in spec_read. */
	atomic_store_explicit(&g_spec.gen, gen + 2, memory_order_release);
	atomic_store_explicit(&bp__fault_armed, s->mode != FAULT_OFF,
	                      memory_order_relaxed);
	pthread_mutex_unlock(&g_set_lock);
}

/* A consistent copy of the spec; returns its generation (even, > 0 once
 * any spec was written). */
static uint64_t spec_read(struct fault_spec *s)
{
	for (;;) {
		uint64_t g1 = atomic_load_explicit(&g_spec.gen, memory_order_acquire);
		if (g1 & 1)
			continue; /* a writer is in the middle: it is short */
		s->mode = (enum fault_mode)atomic_load_explicit(&g_spec.mode, memory_order_relaxed);
		s->every = atomic_load_explicit(&g_spec.every, memory_order_relaxed);
		s->p_below = atomic_load_explicit(&g_spec.p_below, memory_order_relaxed);
		s->seed = atomic_load_explicit(&g_spec.seed, memory_order_relaxed);
		s->after = atomic_load_explicit(&g_spec.after, memory_order_relaxed);
		s->min_cap = atomic_load_explicit(&g_spec.min_cap, memory_order_relaxed);
		s->pool = atomic_load_explicit(&g_spec.pool, memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&g_spec.gen, memory_order_relaxed) == g1)
			return g1;
	}
}

/* ---- parsing ---------------------------------------------------------- */

/* FNV-1a of a pool name up to its end or a ','; never 0. */
static uint64_t name_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s && *s != ','; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h ? h : 1;
}

/* A decimal number at *p that runs to a ',', a ':' or the end of the
 * string; advances *p past it. */
static bool parse_u64(const char **p, uint64_t *out)
{
	const char *s = *p;
	if (*s < '0' || *s > '9')
		return false;
	char *e;
	errno = 0;
	unsigned long long v = strtoull(s, &e, 10);
	if (errno || (*e && *e != ',' && *e != ':'))
		return false;
	*out = v;
	*p = e;
	return true;
}

static bool parse_prob(const char **p, uint64_t *p_below)
{
	const char *s = *p;
	if ((*s < '0' || *s > '9') && *s != '.')
		return false;
	char *e;
	errno = 0;
	double v = strtod(s, &e);
	if (errno || e == s || *e != ':' || !(v >= 0.0 && v <= 1.0))
		return false;
	*p_below = (uint64_t)(v * 9007199254740992.0); /* 2^53 */
	*p = e;
	return true;
}

/* The options that may follow a mode, each as ",name:value". */
static const struct {
	const char *name;
	size_t offset; /* of the uint64_t in struct fault_spec */
} fault_opts[] = {
	{"after:", offsetof(struct fault_spec, after)},
	{"min:", offsetof(struct fault_spec, min_cap)},
};

/* Parses a spec (format in bufpool.h); false if malformed. NULL and ""
 * parse as off. */
static bool spec_parse(const char *str, struct fault_spec *s)
{
	memset(s, 0, sizeof(*s));
	if (!str || !*str)
		return true;
	const char *p = str;
	if (strncmp(p, "every:", 6) == 0) {
		p += 6;
		if (!parse_u64(&p, &s->every) || s->every == 0)
			return false;
		s->mode = FAULT_EVERY;
	} else if (strncmp(p, "prob:", 5) == 0) {
		p += 5;
		if (!parse_prob(&p, &s->p_below))
			return false;
		p++; /* ':' */
		if (!parse_u64(&p, &s->seed))
			return false;
		s->mode = FAULT_PROB;
	} else {
		return false;
	}
	while (*p) {
		if (*p++ != ',')
			return false;
		size_t i = 0, n = sizeof(fault_opts) / sizeof(fault_opts[0]);
		while (i < n && strncmp(p, fault_opts[i].name, strlen(fault_opts[i].name)) != 0)
			i++;
		if (i == n && strncmp(p, "pool:", 5) == 0) {
			p += 5;
			if (!*p || *p == ',')
				return false;
			s->pool = name_hash(p);
			p += strcspn(p, ",");
			continue;
		}
		if (i == n)
			return false;
		p += strlen(fault_opts[i].name);
		if (!parse_u64(&p, (uint64_t *)((char *)s + fault_opts[i].offset)) || *p == ':')
			return false;
	}
	return true;
}

/* ---- interface -------------------------------------------------------- */

static void env_init(void)
{
	const char *env = getenv("GEECACHE_FAULT_ALLOC");
	if (!env || !*env)
		return;
	struct fault_spec s;
	if (!spec_parse(env, &s)) {
		fprintf(stderr, "bufpool: GEECACHE_FAULT_ALLOC=%s is not every:N or "
		        "prob:P:SEED (then ,after:M ,min:BYTES ,pool:NAME): ignored\n", env);
		return;
	}
	spec_write(&s);
}

void bp__fault_init(void)
{
	pthread_once(&g_env_once, env_init);
}

int bp_fault_set(const char *spec)
{
	bp__fault_init(); /* the environment never overrides a later set */
	struct fault_spec s;
	if (!spec_parse(spec, &s))
		return -EINVAL;
	spec_write(&s);
	return 0;
}

/* splitmix64: any seed, consecutive ones included, gives a good stream. */
static uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

bool bp__fault_fire(size_t cap, const char *pool)
{
	struct fault_spec s;
	uint64_t gen = spec_read(&s);
	if (s.mode == FAULT_OFF || cap < s.min_cap ||
	    (s.pool && name_hash(pool) != s.pool))
		return false;
	uint64_t k = atomic_fetch_add_explicit(&g_calls, 1, memory_order_relaxed) + 1;
	if (k <= s.after)
		return false;
	if (s.mode == FAULT_EVERY)
		return (k - s.after) % s.every == 0;
	if (tls_rng.gen != gen) {
		tls_rng.gen = gen;
		tls_rng.state = s.seed +
			atomic_fetch_add_explicit(&g_threads, 1, memory_order_relaxed);
	}
	return (rng_next(&tls_rng.state) >> 11) < s.p_below;
}
