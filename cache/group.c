/*
 * get-or-load with singleflight (GeeCache's "group").
 *
 * Loads in flight are kept in a small hash of `flight` records under one
 * mutex (loads are rare next to gets, and the mutex is never held while a
 * loader, an executor or a done callback runs). A miss either joins the
 * flight for its key (adds a waiter) or starts one and hands it to the
 * caller's executor. The task runs the loader, stores its value (one
 * copy, from the loader's chain), then detaches the flight and calls every
 * waiter with its own reference to the stored value. Records come from
 * object pools of the store's pool, so they count against the limit.
 */
#include "cache/cache_internal.h"

#include <errno.h>
#include <string.h>

#define GROUP_BUCKETS 64

struct waiter {
	struct waiter *next;
	cache_done_fn done;
	void *arg;
};

struct flight {
	struct flight *next;
	struct cache *c;
	cache_loader_fn load;
	void *load_arg;
	struct waiter *waiters;
	uint32_t h, klen;
	char key[CACHE_KEY_MAX];
};

struct group {
	pthread_mutex_t lock;
	struct bp_objpool *flights, *waiters;
	struct flight *buckets[GROUP_BUCKETS];
};

static uint32_t fnv1a(const void *p, size_t n)
{
	const unsigned char *u = p;
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ u[i]) * 16777619u;
	return h;
}

int cache__group_init(struct cache *c)
{
	struct bp_block *b = bp_block_get(c->pool, sizeof(struct group));
	if (!b)
		return -ENOMEM;
	struct group *g = (struct group *)bp_block_data(b);
	memset(g, 0, sizeof(*g));
	pthread_mutex_init(&g->lock, NULL);
	g->flights = bp_objpool_create(c->pool, "cache.flight", sizeof(struct flight));
	g->waiters = bp_objpool_create(c->pool, "cache.waiter", sizeof(struct waiter));
	c->group = g;
	if (!g->flights || !g->waiters) {
		cache__group_deinit(c);
		return -ENOMEM;
	}
	return 0;
}

void cache__group_deinit(struct cache *c)
{
	struct group *g = c->group;
	if (!g)
		return;
	bp_objpool_destroy(&g->flights);
	bp_objpool_destroy(&g->waiters);
	pthread_mutex_destroy(&g->lock);
	bp_block_unref(bp_block_of(g));
	c->group = NULL;
}

/* Finds the flight for key (group lock held). */
static struct flight **flight_find(struct group *g, uint32_t h, const void *key,
                                   size_t klen)
{
	struct flight **pp = &g->buckets[h % GROUP_BUCKETS];
	for (; *pp; pp = &(*pp)->next) {
		struct flight *f = *pp;
		if (f->h == h && f->klen == klen && memcmp(f->key, key, klen) == 0)
			return pp;
	}
	return pp;
}

/* Unlinks f and returns its waiters (takes the group lock). */
static struct waiter *flight_detach(struct group *g, struct flight *f)
{
	pthread_mutex_lock(&g->lock);
	struct flight **pp = flight_find(g, f->h, f->key, f->klen);
	if (*pp == f)
		*pp = f->next;
	struct waiter *w = f->waiters;
	f->waiters = NULL;
	pthread_mutex_unlock(&g->lock);
	return w;
}

/* The executor task: load, store, wake every waiter. */
static void flight_run(void *arg)
{
	struct flight *f = arg;
	struct cache *c = f->c;
	struct group *g = c->group;
	struct bp_chain ch;
	bp_chain_init(&ch, c->pool);
	uint32_t flags = 0;
	int64_t exptime = 0;
	struct cache_value v = {{NULL, 0, 0}, 0, 0, 0};
	int rc = f->load(f->load_arg, f->key, f->klen, &ch, &flags, &exptime);
	if (rc == 0)
		rc = cache_store(c, CACHE_SET, f->key, f->klen, &ch, 0,
		                 bp_chain_len(&ch), flags, exptime, 0, NULL);
	bp_chain_deinit(&ch);
	if (rc == 0)
		rc = cache_get(c, f->key, f->klen, &v);
	struct waiter *w = flight_detach(g, f);
	while (w) {
		struct waiter *next = w->next;
		if (rc == 0) {
			struct cache_value mine = v;
			bp_slice_dup(&mine.data, &v.data);
			w->done(w->arg, 0, &mine);
		} else {
			w->done(w->arg, rc, NULL);
		}
		bp_objpool_put(g->waiters, &w);
		w = next;
	}
	cache_value_release(&v);
	bp_objpool_put(g->flights, &f);
}

int cache_get_or_load(struct cache *c, const void *key, size_t klen,
                      const struct cache_loader *loader, cache_done_fn done,
                      void *done_arg, struct cache_value *out)
{
	if (!loader || !loader->load || !loader->exec || !loader->exec->submit ||
	    !done || !out || klen == 0 || klen > CACHE_KEY_MAX)
		return -EINVAL;
	int rc = cache_get(c, key, klen, out);
	if (rc != -ENOENT)
		return rc;
	struct group *g = c->group;
	uint32_t h = fnv1a(key, klen);
	pthread_mutex_lock(&g->lock);
	struct flight **pp = flight_find(g, h, key, klen);
	struct flight *f = *pp;
	if (!f && cache_get(c, key, klen, out) == 0) {
		/* A load finished between our miss and the lock. */
		pthread_mutex_unlock(&g->lock);
		return 0;
	}
	struct waiter *w = bp_objpool_get(g->waiters);
	if (!w) {
		pthread_mutex_unlock(&g->lock);
		return -ENOMEM;
	}
	w->done = done;
	w->arg = done_arg;
	if (f) {
		w->next = f->waiters;
		f->waiters = w;
		pthread_mutex_unlock(&g->lock);
		atomic_fetch_add(&c->gctr_joins, 1);
		return -EINPROGRESS;
	}
	f = bp_objpool_get(g->flights);
	if (!f) {
		pthread_mutex_unlock(&g->lock);
		bp_objpool_put(g->waiters, &w);
		return -ENOMEM;
	}
	f->c = c;
	f->load = loader->load;
	f->load_arg = loader->load_arg;
	f->h = h;
	f->klen = (uint32_t)klen;
	memcpy(f->key, key, klen);
	w->next = NULL;
	f->waiters = w;
	f->next = NULL;
	*pp = f;
	pthread_mutex_unlock(&g->lock);
	atomic_fetch_add(&c->gctr_loads, 1);
	rc = loader->exec->submit(loader->exec->exec_arg, flight_run, f);
	if (rc == 0)
		return -EINPROGRESS;
	/* Refused: our own waiter gets the error as a return value, the ones
	 * that joined meanwhile through their callbacks. */
	struct waiter *list = flight_detach(g, f);
	while (list) {
		struct waiter *next = list->next;
		if (list != w)
			list->done(list->arg, rc, NULL);
		bp_objpool_put(g->waiters, &list);
		list = next;
	}
	bp_objpool_put(g->flights, &f);
	return rc < 0 ? rc : -EAGAIN;
}
