/*
 * The memcached handler: parse requests in place from the connection's
 * input chain, call the store, encode the answers into the output chain.
 *
 * Values travel by reference both ways: a SET's value is copied once, from
 * the input chain into the store (cache_store); a GET's value is appended
 * to the output chain as a slice of the store's memory (the encoders take
 * their own reference), never copied. Replies of a pipeline accumulate in
 * the output chain and netpoll writes them once per event batch.
 */
#include "server/srv.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- store result -> protocol status ---------------------------------- */

static bool is_text(const struct mc_request *r)
{
	return r->proto == MC_PROTO_TEXT;
}

static enum mc_status store_status(const struct mc_request *r, int rc)
{
	switch (rc) {
	case 0:
		return MC_ST_OK;
	case -EEXIST:
		/* ADD on an existing key: text NOT_STORED, binary EEXISTS. */
		if ((r->cmd == MC_CMD_ADD || (r->cmd == MC_CMD_MS && r->meta.mode == 'E')) &&
		    (is_text(r)))
			return MC_ST_NOT_STORED;
		return MC_ST_EXISTS;
	case -ENOENT:
		/* REPLACE of a missing key: text NOT_STORED. */
		if (is_text(r) && (r->cmd == MC_CMD_REPLACE ||
		                   (r->cmd == MC_CMD_MS && r->meta.mode == 'R')))
			return MC_ST_NOT_STORED;
		return MC_ST_NOT_FOUND;
	case -ENOTSUP:
		return MC_ST_NOT_STORED;
	case -E2BIG:
		return MC_ST_E2BIG;
	case -ENOMEM:
		return MC_ST_ENOMEM;
	default:
		return MC_ST_EINVAL;
	}
}

static enum cache_mode store_mode(const struct mc_request *r)
{
	switch (r->cmd) {
	case MC_CMD_ADD: return CACHE_ADD;
	case MC_CMD_REPLACE: return CACHE_REPLACE;
	case MC_CMD_APPEND: return CACHE_APPEND;
	case MC_CMD_PREPEND: return CACHE_PREPEND;
	case MC_CMD_CAS: return CACHE_CAS;
	case MC_CMD_MS:
		switch (r->meta.mode) {
		case 'E': case 'e': return CACHE_ADD;
		case 'R': case 'r': return CACHE_REPLACE;
		case 'A': case 'a': return CACHE_APPEND;
		case 'P': case 'p': return CACHE_PREPEND;
		default: return CACHE_SET;
		}
	default:
		return CACHE_SET;
	}
}

/* ---- commands --------------------------------------------------------- */

struct ctx {
	struct srv *s;
	struct mc_parser *p;
	struct np_conn *c;
	struct bp_chain *in, *out;
	struct srv_counters *ctr;
};

/* The cas a client is shown: 0 with -C, as memcached -C's items carry
 * none (the store keeps its own; cas_disabled answers the compares). */
static uint64_t cas_shown(const struct ctx *x, uint64_t cas)
{
	return x->s->o.disable_cas ? 0 : cas;
}

/* memcached drops the item a refused SET would have replaced, so that a
 * client never reads the old value back after a SET it was told failed.
 * Call it when the store refused r (too large, or no memory) or the parser
 * did (r->err MC_ERR_E2BIG: the value was not read). As memcached 1.6.18
 * does: text and binary set, and ms in every mode; add, replace, append,
 * prepend and cas keep the item (docs/protocol.md, "Refused stores"). */
static void drop_refused(struct srv *s, const struct mc_request *r)
{
	if ((r->cmd == MC_CMD_SET || r->cmd == MC_CMD_MS) && r->key_len)
		cache_delete(s->cache, r->key, r->key_len, 0);
}

static int do_store(struct ctx *x, const struct mc_request *r)
{
	uint64_t cas_out = 0;
	enum cache_mode mode = store_mode(r);
	srv_detail_note(x->s, r->key, r->key_len, SRV_DETAIL_SET);
	int rc = cache_store(x->s->cache, mode, r->key, r->key_len, x->in,
	                     r->value_off, r->value_len, r->flags, r->exptime, r->cas,
	                     &cas_out);
	if (rc == -EINVAL && mode == CACHE_CAS)
		rc = -EEXIST; /* text cas 0: never matches (cache: -EINVAL) */
	if (rc == -E2BIG)
		srv_ctr(&x->ctr->oversized, 1);
	if (rc == -ENOMEM)
		srv_ctr(&x->ctr->out_of_memory, 1);
	if (rc == -E2BIG || rc == -ENOMEM)
		drop_refused(x->s, r);
	return mc_encode_status(x->out, r, store_status(r, rc), cas_shown(x, cas_out));
}

/* Every value of --copy-below bytes or more is sent by reference to the
 * store's memory, whatever the pipeline or the connection's backlog: what a
 * reply costs the server is a chain node, and how much a connection may hold
 * is bounded by mc_data (it stops executing requests while its output is
 * full). A reference pins the value's segment; the store may still evict a
 * pinned segment (its memory goes back at the last send: docs/server.md,
 * "Memory"). Shorter values are copied by the encoder: cheaper than one
 * more iovec, and they pin nothing. */
static void reply_value(struct ctx *x, const struct cache_value *v)
{
	if (v->data.len < bp_chain_copy_below(x->out))
		srv_ctr(&x->ctr->get_small, v->data.len != 0);
	else
		srv_ctr(&x->ctr->get_refs, 1);
}

static int do_get_one(struct ctx *x, const struct mc_request *r, const char *key,
                      size_t klen, bool gat)
{
	struct cache_value v;
	int rc = gat ? cache_gat(x->s->cache, key, klen, r->exptime, &v)
	             : cache_get(x->s->cache, key, klen, &v);
	srv_detail_note(x->s, key, klen, SRV_DETAIL_GET);
	if (rc == 0)
		srv_detail_note(x->s, key, klen, SRV_DETAIL_HIT);
	if (rc < 0) {
		if (is_text(r))
			return 0; /* a text miss is the absence of a VALUE line */
		return mc_encode_status(x->out, r, MC_ST_NOT_FOUND, 0);
	}
	reply_value(x, &v);
	uint64_t cas = cas_shown(x, v.cas);
	int w = is_text(r)
		? mc_text_encode_value(x->out, r, key, klen, v.flags, cas,
		                       v.data.len ? &v.data : NULL)
		: mc_bin_encode_get_hit(x->out, r, v.flags, cas,
		                        v.data.len ? &v.data : NULL);
	cache_value_release(&v); /* the output chain holds its own reference */
	return w;
}

static int do_get(struct ctx *x, const struct mc_request *r)
{
	bool gat = r->cmd == MC_CMD_GAT;
	if (!is_text(r))
		return do_get_one(x, r, r->key, r->key_len, gat);
	/* One request with many keys runs whole (connections yield between
	 * requests). Once its replies fill the output, small values go by
	 * reference too, so that a key costs a header and a chain node,
	 * never a copy of its value (docs/server.md, "Memory"). */
	size_t pos = 0, below = bp_chain_copy_below(x->out);
	const char *key;
	size_t klen;
	int w = 0;
	while (w >= 0 && mc_req_next_key(x->p, x->in, r, &pos, &key, &klen) == 1) {
		if (below && np_conn_out_full(x->c))
			bp_chain_set_copy_below(x->out, 0);
		w = do_get_one(x, r, key, klen, gat);
	}
	bp_chain_set_copy_below(x->out, below);
	return w < 0 ? w : mc_text_encode_end(x->out);
}

static int do_touch(struct ctx *x, const struct mc_request *r)
{
	if (!is_text(r)) {
		/* Binary TOUCH answers like a GET without the value: the item
		 * as touched (with an expiry in the past, as it was: it is gone
		 * afterwards). */
		struct cache_value v;
		int rc = cache_gat(x->s->cache, r->key, r->key_len, r->exptime, &v);
		if (rc < 0)
			return mc_encode_status(x->out, r, store_status(r, rc), 0);
		int w = mc_bin_encode_get_hit(x->out, r, v.flags, cas_shown(x, v.cas), NULL);
		cache_value_release(&v);
		return w;
	}
	int rc = cache_touch(x->s->cache, r->key, r->key_len, r->exptime);
	return mc_encode_status(x->out, r, rc == 0 ? MC_ST_OK : store_status(r, rc), 0);
}

static int do_delete(struct ctx *x, const struct mc_request *r)
{
	int rc = cache_delete(x->s->cache, r->key, r->key_len, r->cas);
	srv_detail_note(x->s, r->key, r->key_len, SRV_DETAIL_DEL);
	return mc_encode_status(x->out, r, store_status(r, rc), 0);
}

static int do_arith(struct ctx *x, const struct mc_request *r)
{
	bool decr = r->cmd == MC_CMD_DECR;
	struct cache_arith_init init = {.initial = r->initial, .exptime = r->exptime};
	const struct cache_arith_init *ip = NULL;
	uint64_t cas = 0;
	if (r->cmd == MC_CMD_MA) {
		decr = r->meta.mode == 'D' || r->meta.mode == 'd' || r->meta.mode == '-';
		if (r->meta.flags & MC_MF('N')) {
			init.exptime = r->meta.vivify;
			ip = &init;
		}
		cas = r->cas; /* 0 unless C was given */
	} else if (!is_text(r) && !r->no_create) {
		ip = &init;
	}
	uint64_t value = 0, cas_out = 0;
	int rc = cache_arith(x->s->cache, r->key, r->key_len, decr, r->delta, ip, cas,
	                     &value, &cas_out);
	cas_out = cas_shown(x, cas_out);
	if (rc == 0) {
		if (r->cmd == MC_CMD_MA) {
			/* T sets the item's time to live, t reports it (memcached
			 * does both after the arithmetic). */
			struct mc_item_info info = {.cas = cas_out, .ttl = -1};
			uint32_t exp;
			if (r->meta.flags & MC_MF('T'))
				cache_touch(x->s->cache, r->key, r->key_len, r->exptime);
			if ((r->meta.flags & MC_MF('t')) &&
			    cache_exptime(x->s->cache, r->key, r->key_len, &exp) == 0 && exp) {
				int64_t ttl = (int64_t)exp - cache_now(x->s->cache);
				info.ttl = ttl < -1 ? -1 : ttl;
			}
			return mc_meta_encode_arith(x->out, r, &info, value);
		}
		return is_text(r) ? mc_text_encode_number(x->out, r, value)
		                  : mc_bin_encode_incr(x->out, r, value, cas_out);
	}
	if (rc == -EINVAL)
		return mc_encode_status(x->out, r, MC_ST_DELTA_BADVAL, 0);
	return mc_encode_status(x->out, r, store_status(r, rc), 0);
}

/* ---- meta commands: mg md ms me (docs/protocol.md, "Meta commands") -- */

/* Where letter stands among r's flags (its index in r->meta.order), or
 * -1 when absent. memcached applies some flags in the order given. */
static int meta_pos(const struct mc_request *r, char letter)
{
	for (int i = 0; i < r->meta.norder; i++)
		if (r->meta.order[i] == letter)
			return i;
	return -1;
}

/* The time to live t reports for an absolute expiry (0: never, -1). */
static int64_t meta_ttl(uint32_t exp, int64_t now)
{
	if (exp == 0)
		return -1;
	return (int64_t)exp - now < -1 ? -1 : (int64_t)exp - now;
}

/* The time to live a raw T or N sets, as t reports it. */
static int64_t meta_ttl_raw(int64_t raw, int64_t now)
{
	int64_t abs = mc_exptime_abs(raw, now);
	return abs == 0 ? -1 : (abs - now < -1 ? -1 : abs - now);
}

/* C given as 0 (memcached compares it all the same; no item has cas 0):
 * -EEXIST when key is there, -ENOENT when not. */
static int meta_cas_zero(struct ctx *x, const struct mc_request *r)
{
	uint32_t exp;
	return cache_exptime(x->s->cache, r->key, r->key_len, &exp) == 0 ? -EEXIST
	                                                                  : -ENOENT;
}

/* mg: a get with return flags. T touches and N vivifies a miss where they
 * stand in the request (a t before them reports the time to live before
 * them), R and a stale item hand out the win token (W; Z once out; X
 * stale), u leaves h and l as they are — memcached's rules (cache_mget). */
static int do_mg(struct ctx *x, const struct mc_request *r)
{
	const struct mc_meta *m = &r->meta;
	int pos_t = meta_pos(r, 'T'), pos_n = meta_pos(r, 'N'), pos_r = meta_pos(r, 'R');
	struct cache_mget_opts o = {
		.no_bump = (m->flags & MC_MF('u')) != 0,
		.touch = pos_t >= 0,
		.exptime = r->exptime,
		.vivify = pos_n >= 0,
		/* A vivified item expires as the later of T and N says. */
		.vivify_exptime = pos_t > pos_n ? r->exptime : m->vivify,
		.recache = pos_r >= 0,
		.recache_exptime = m->recache,
		.recache_after_touch = pos_t >= 0 && pos_t < pos_r,
	};
	struct cache_value v;
	struct cache_meta st;
	int rc = cache_mget(x->s->cache, r->key, r->key_len, &o, &v, &st);
	if (rc == -ENOMEM)
		return mc_encode_status(x->out, r, MC_ST_ENOMEM, 0);
	if (rc < 0)
		return mc_encode_status(x->out, r, MC_ST_NOT_FOUND, 0);
	int64_t now = cache_now(x->s->cache);
	struct mc_item_info info = {
		.flags = v.flags,
		.size = v.data.len,
		.cas = cas_shown(x, v.cas),
		.ttl = meta_ttl(st.exp_before, now),
		.ttl_touch = meta_ttl_raw(r->exptime, now),
		.ttl_vivify = meta_ttl_raw(m->vivify, now),
		.last_access = st.idle,
		.fetched = st.fetched,
		.won = st.won,
		.stale = st.stale,
		.token_sent = st.token_sent,
		.vivified = st.created,
	};
	reply_value(x, &v);
	int w = mc_meta_encode_hit(x->out, r, &info, v.data.len ? &v.data : NULL);
	cache_value_release(&v);
	return w;
}

/* md: deletes; with I marks the item stale instead (a new cas; T sets its
 * time to live). C compares the cas, C0 too. */
static int do_md(struct ctx *x, const struct mc_request *r)
{
	const struct mc_meta *m = &r->meta;
	int rc;
	srv_detail_note(x->s, r->key, r->key_len, SRV_DETAIL_DEL);
	if ((m->flags & MC_MF('C')) && r->cas == 0)
		rc = meta_cas_zero(x, r);
	else if (m->flags & MC_MF('I'))
		rc = cache_invalidate(x->s->cache, r->key, r->key_len, r->cas,
		                      (m->flags & MC_MF('T')) != 0, r->exptime);
	else
		rc = cache_delete(x->s->cache, r->key, r->key_len, r->cas);
	return mc_encode_status(x->out, r, store_status(r, rc), 0);
}

/* ms: a store (do_store), except that C, C0 included, turns set and
 * replace into a compare (memcached's cas mode: NF when the key is
 * missing), and I with C stores a value whose cas is older than the
 * item's as stale (CACHE_CAS_STALE). */
static int do_ms(struct ctx *x, const struct mc_request *r)
{
	const struct mc_meta *m = &r->meta;
	enum cache_mode mode = store_mode(r);
	if (!(m->flags & MC_MF('C')) || (mode != CACHE_SET && mode != CACHE_REPLACE))
		return do_store(x, r);
	srv_detail_note(x->s, r->key, r->key_len, SRV_DETAIL_SET);
	uint64_t cas_out = 0;
	int rc;
	if (r->cas == 0) {
		rc = meta_cas_zero(x, r);
	} else {
		rc = cache_store(x->s->cache,
		                 (m->flags & MC_MF('I')) ? CACHE_CAS_STALE : CACHE_CAS,
		                 r->key, r->key_len, x->in, r->value_off, r->value_len,
		                 r->flags, r->exptime, r->cas, &cas_out);
		if (rc == -E2BIG)
			srv_ctr(&x->ctr->oversized, 1);
		if (rc == -ENOMEM)
			srv_ctr(&x->ctr->out_of_memory, 1);
		if (rc == -E2BIG || rc == -ENOMEM)
			drop_refused(x->s, r);
	}
	return mc_encode_status(x->out, r,
	                        rc == -ENOENT ? MC_ST_NOT_FOUND : store_status(r, rc),
	                        cas_shown(x, cas_out));
}

/* me: memcached's debug line for one item (changes and counts nothing). */
static int do_me(struct ctx *x, const struct mc_request *r)
{
	struct cache_value v;
	struct cache_meta st;
	const struct cache_mget_opts peek = {.peek = true};
	if (cache_mget(x->s->cache, r->key, r->key_len, &peek, &v, &st) < 0)
		return mc_encode_status(x->out, r, MC_ST_NOT_FOUND, 0);
	char line[512];
	int64_t now = cache_now(x->s->cache);
	int n = snprintf(line, sizeof(line), "ME %.*s exp=%" PRId64 " la=%" PRIu32
	                 " cas=%" PRIu64 " fetch=%s cls=1 size=%u", (int)r->key_len,
	                 r->key, v.exptime ? (int64_t)v.exptime - now : (int64_t)-1,
	                 st.idle, cas_shown(x, v.cas), st.fetched ? "yes" : "no",
	                 v.data.len + (unsigned)r->key_len);
	cache_value_release(&v);
	return mc_text_encode_line(x->out, line, (size_t)n);
}

struct stat_out {
	struct ctx *x;
	const struct mc_request *r;
	int err;
};

static int emit_stat(void *arg, const char *name, const char *value)
{
	struct stat_out *so = arg;
	if (so->err)
		return so->err;
	size_t nl = strlen(name), vl = strlen(value);
	so->err = is_text(so->r)
		? mc_text_encode_stat(so->x->out, name, nl, value, vl)
		: mc_bin_encode_stat(so->x->out, so->r, name, nl, value, vl);
	return so->err;
}

/* The space-separated words of a stats request's group (the rest of the
 * line): up to max of them into w/wl; the count (more are counted). */
static int stats_words(const struct mc_request *r, const char **w, size_t *wl, int max)
{
	int n = 0;
	size_t i = 0;
	while (i < r->key_len) {
		while (i < r->key_len && r->key[i] == ' ')
			i++;
		if (i == r->key_len)
			break;
		size_t j = i;
		while (j < r->key_len && r->key[j] != ' ')
			j++;
		if (n < max) {
			w[n] = r->key + i;
			wl[n] = j - i;
		}
		n++;
		i = j;
	}
	return n;
}

static bool word_is(const char *w, size_t wl, const char *lit)
{
	return wl == strlen(lit) && memcmp(w, lit, wl) == 0;
}

static bool word_u32(const char *w, size_t wl, uint32_t *out)
{
	uint64_t v = 0;
	if (wl == 0 || wl > 10)
		return false;
	for (size_t i = 0; i < wl; i++) {
		if (w[i] < '0' || w[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(w[i] - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

static int text_line(struct ctx *x, const char *lit)
{
	return mc_text_encode_line(x->out, lit, strlen(lit));
}

/* memcached's cap on a cachedump answer. */
#define CACHEDUMP_MAX (2u << 20)

struct dump_out {
	struct ctx *x;
	size_t bytes;
	uint32_t cls;          /* the size class listed */
	uint32_t shown, limit; /* limit 0: none */
};

/* One "ITEM <key> [<bytes> b; <exptime> s]" line; stops the walk at the
 * limit, or when the answer reaches CACHEDUMP_MAX or the connection's
 * output bound (the listing is one reply, so it passes the bound by one
 * line at most). A key left out does not count, as in memcached. */
static int dump_item(void *arg, const char *key, size_t klen, uint32_t flags,
                     uint32_t vlen, uint32_t exptime)
{
	struct dump_out *d = arg;
	if (cache_class_of(cache_class_item_size(klen, vlen, flags)) != d->cls)
		return 0;
	for (size_t i = 0; i < klen; i++)
		if ((unsigned char)key[i] <= ' ' || key[i] == 0x7f)
			return 0; /* not a text-line key (binary protocol) */
	char line[CACHE_KEY_MAX + 64];
	int n = snprintf(line, sizeof(line), "ITEM %.*s [%" PRIu32 " b; %" PRIu32 " s]",
	                 (int)klen, key, vlen, exptime);
	if (d->bytes + (size_t)n + 2 + 5 > CACHEDUMP_MAX)
		return 1;
	int r = mc_text_encode_line(d->x->out, line, (size_t)n);
	if (r < 0)
		return r;
	d->bytes += (size_t)n + 2;
	d->shown++;
	return d->shown == d->limit || np_conn_out_full(d->x->c) ? 1 : 0;
}

/* stats cachedump <class> <limit>: memcached's argument errors, then the
 * live items of that size class (cache.h, "Size classes"; limit 0: all,
 * up to CACHEDUMP_MAX bytes), END. Text only, as in memcached. The walk
 * goes over the whole store whatever the class. */
static int do_cachedump(struct ctx *x, const struct mc_request *r,
                        const char *const *w, const size_t *wl, int n)
{
	uint32_t cls, limit;
	if (!is_text(r))
		return mc_encode_status(x->out, r, MC_ST_NOT_FOUND, 0);
	if (n < 3)
		return text_line(x, "CLIENT_ERROR bad command line");
	if (!word_u32(w[1], wl[1], &cls) || !word_u32(w[2], wl[2], &limit))
		return text_line(x, "CLIENT_ERROR bad command line format");
	if (cls >= 64)
		return text_line(x, "CLIENT_ERROR Illegal slab id");
	struct dump_out d = {x, 0, cls, 0, limit};
	int rc = cache_dump(x->s->cache, 0, dump_item, &d);
	if (rc < 0)
		return rc;
	return mc_text_encode_end(x->out);
}

/* The stats requests that act rather than list (memcached's answers):
 * reset, detail on|off|dump, cachedump. 1 when r was one of them (its
 * answer written, or a negative errno), 0 when it is a listing. */
static int stats_action(struct ctx *x, const struct mc_request *r, int *out)
{
	const char *w[4];
	size_t wl[4];
	int n = stats_words(r, w, wl, 4);
	bool text = is_text(r);
	struct srv *s = x->s;
	if (n >= 1 && word_is(w[0], wl[0], "reset")) {
		srv_stats_reset(s);
		*out = text ? text_line(x, "RESET") : mc_bin_encode_stat_end(x->out, r);
		return 1;
	}
	if (n >= 1 && word_is(w[0], wl[0], "detail")) {
		bool on = n >= 2 && word_is(w[1], wl[1], "on");
		bool off = n >= 2 && word_is(w[1], wl[1], "off");
		if (on || off) {
			srv_detail_enable(s, on);
			*out = text ? text_line(x, "OK") : mc_bin_encode_stat_end(x->out, r);
		} else if (n >= 2 && word_is(w[1], wl[1], "dump")) {
			char buf[SRV_DETAIL_ROWS * (SRV_DETAIL_PREFIX_MAX + 64) + 8];
			size_t len = srv_detail_dump(s, buf, sizeof(buf));
			if (text) {
				*out = mc_text_encode_line(x->out, buf, len - 2);
			} else {
				*out = mc_bin_encode_stat(x->out, r, "detailed", 8, buf, len);
				if (*out == 0)
					*out = mc_bin_encode_stat_end(x->out, r);
			}
		} else {
			*out = text ? text_line(x, "CLIENT_ERROR usage: stats detail on|off|dump")
			            : mc_encode_status(x->out, r, MC_ST_NOT_FOUND, 0);
		}
		return 1;
	}
	if (n >= 1 && word_is(w[0], wl[0], "cachedump")) {
		*out = do_cachedump(x, r, w, wl, n);
		return 1;
	}
	return 0;
}

static int do_stats(struct ctx *x, const struct mc_request *r)
{
	struct stat_out so = {x, r, 0};
	int act;
	if (stats_action(x, r, &act))
		return act;
	int rc = srv_stats(x->s, r->key ? r->key : "", r->key_len, emit_stat, &so);
	if (rc == -ENOENT) {
		if (is_text(r)) {
			static const char e[] = "ERROR";
			return mc_text_encode_line(x->out, e, sizeof(e) - 1);
		}
		return mc_encode_status(x->out, r, MC_ST_NOT_FOUND, 0);
	}
	if (so.err)
		return so.err;
	return is_text(r) ? mc_text_encode_end(x->out) : mc_bin_encode_stat_end(x->out, r);
}

/* cache_memlimit <MB>: memcached's answers, judged as it does (the value
 * read as a 32-bit number). The store's limit is fixed at start, so the
 * command is accepted and changes nothing (docs/server.md). */
static int do_memlimit(struct ctx *x, const struct mc_request *r)
{
	uint32_t mb = (uint32_t)r->delta;
	if (r->noreply)
		return 0;
	if (mb < 8)
		return text_line(x, "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m");
	if (mb > 1000000000u)
		return text_line(x, "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes");
	return mc_encode_status(x->out, r, MC_ST_OK, 0);
}

/* shutdown [graceful], with -A: memcached's answers; the connection
 * closes without one and the main thread stops the server, as on SIGINT
 * (or SIGUSR1, which is also a graceful stop here). kill, not raise: every
 * thread blocks the signals and only the main thread's sigwait takes a
 * signal sent to the process. */
static int do_shutdown(struct ctx *x, const struct mc_request *r)
{
	const char *w[2];
	size_t wl[2];
	int n = stats_words(r, w, wl, 2);
	if (!x->s->o.enable_shutdown)
		return text_line(x, "ERROR: shutdown not enabled");
	if (n == 0 || (n == 1 && word_is(w[0], wl[0], "graceful"))) {
		kill(getpid(), n == 0 ? SIGINT : SIGUSR1);
		return 1; /* close */
	}
	return text_line(x, "CLIENT_ERROR invalid shutdown mode");
}

/* slabs automove <0|1|2>, slabs reassign <src> <dst>: memcached's answers
 * for a store of one class (class 1) that never moves memory between
 * classes: automove is accepted and changes nothing, a reassign has
 * nothing to move (docs/server.md). */
static int do_slabs(struct ctx *x, const struct mc_request *r)
{
	const char *w[4];
	size_t wl[4];
	int n = stats_words(r, w, wl, 4);
	if (n >= 2 && word_is(w[0], wl[0], "automove")) {
		uint32_t v;
		bool quiet = n >= 3 && n <= 4 && word_is(w[n - 1], wl[n - 1], "noreply");
		if (!word_u32(w[1], wl[1], &v))
			return text_line(x, "CLIENT_ERROR bad command line format");
		return quiet ? 0 : text_line(x, v <= 2 ? "OK" : "ERROR");
	}
	if (n == 3 && word_is(w[0], wl[0], "reassign")) {
		long v[2];
		for (int i = 0; i < 2; i++) {
			const char *p = w[1 + i];
			size_t len = wl[1 + i];
			bool neg = len > 1 && p[0] == '-';
			uint32_t u;
			if (!word_u32(p + neg, len - neg, &u))
				return text_line(x, "CLIENT_ERROR bad command line format");
			v[i] = neg ? -(long)u : (long)u;
		}
		if (v[0] == v[1])
			return text_line(x, "SAME src and dst class are identical");
		if (v[0] < 0 || v[0] > 63 || v[1] < 0 || v[1] > 63)
			return text_line(x, "BADCLASS invalid src or dst class id");
		return text_line(x, "NOSPARE source class has no spare pages");
	}
	return text_line(x, "ERROR");
}

/* ---- memcached's switches: -C, -F ----------------------------------- */

/* -C: memcached -C's items carry no cas, so clients are shown 0
 * (cas_shown) and a compare is made against 0. As memcached 1.6.18 -C
 * answers: text cas is EXISTS when the key is there and NOT_FOUND when
 * not, whatever the number (cas 0 too); binary DELETE with a cas, binary
 * INCR/DECR with one and ma C<n> are EXISTS (meta EX) when the key is
 * there, and run as without -C when it is not; md C0 deletes (0 matches)
 * and md C<n> is EX or NF; ms C in set and replace modes is EX or NF
 * (do_ms compares C0 so); binary stores and the other ms modes ignore the
 * cas. Returns 1 with *w the answer (or a negative errno) when r was
 * answered here, else 0 with *q the request to run instead. */
static int cas_disabled(struct ctx *x, const struct mc_request *r,
                        struct mc_request *q, int *w)
{
	*q = *r;
	q->cas = 0;
	switch (r->cmd) {
	case MC_CMD_CAS:
	case MC_CMD_DELETE:
		*w = mc_encode_status(x->out, r, store_status(r, meta_cas_zero(x, r)), 0);
		return 1;
	case MC_CMD_MD:
		if (r->cas == 0)
			q->meta.flags &= ~MC_MF('C');
		return 0;
	case MC_CMD_INCR:
	case MC_CMD_DECR:
	case MC_CMD_MA:
		if (meta_cas_zero(x, r) == -EEXIST) {
			*w = mc_encode_status(x->out, r, MC_ST_EXISTS, 0);
			return 1;
		}
		q->cas = r->cas;
		return 0;
	default:
		return 0;
	}
}

/* -F: flush_all refused, as memcached -F refuses it: text CLIENT_ERROR
 * (noreply honoured), binary status 0x20 "Auth failure.". */
static int flush_refused(struct ctx *x, const struct mc_request *r)
{
	if (!is_text(r))
		return mc_encode_status(x->out, r, MC_ST_AUTH_ERROR, 0);
	return r->noreply ? 0 : text_line(x, "CLIENT_ERROR flush_all not allowed");
}

static int do_sasl(struct ctx *x, const struct mc_request *r);

/* Handles one parsed request. Returns 0, 1 to close after what is queued
 * (quit), or a negative errno (the output could not be written: close). */
static int dispatch(struct ctx *x, const struct mc_request *r)
{
	srv_ctr(&x->ctr->requests, 1);
	if (mc_cmd_is_meta(r->cmd))
		srv_ctr(&x->ctr->meta_cmds, 1);
	struct mc_request q;
	if (x->s->o.disable_cas &&
	    (r->cas || r->cmd == MC_CMD_CAS ||
	     (r->cmd == MC_CMD_MD && (r->meta.flags & MC_MF('C'))))) {
		int w;
		if (cas_disabled(x, r, &q, &w))
			return w;
		r = &q;
	}
	switch (r->cmd) {
	case MC_CMD_GET:
	case MC_CMD_GAT:
		return do_get(x, r);
	case MC_CMD_TOUCH:
		return do_touch(x, r);
	case MC_CMD_SET:
	case MC_CMD_ADD:
	case MC_CMD_REPLACE:
	case MC_CMD_APPEND:
	case MC_CMD_PREPEND:
	case MC_CMD_CAS:
		return do_store(x, r);
	case MC_CMD_MS:
		return do_ms(x, r);
	case MC_CMD_DELETE:
		return do_delete(x, r);
	case MC_CMD_MD:
		return do_md(x, r);
	case MC_CMD_INCR:
	case MC_CMD_DECR:
	case MC_CMD_MA:
		return do_arith(x, r);
	case MC_CMD_MG:
		return do_mg(x, r);
	case MC_CMD_ME:
		return do_me(x, r);
	case MC_CMD_FLUSH:
		if (x->s->o.disable_flush_all)
			return flush_refused(x, r);
		cache_flush_all(x->s->cache, r->has_exptime ? r->exptime : 0);
		return mc_encode_status(x->out, r, MC_ST_OK, 0);
	case MC_CMD_NOOP:
	case MC_CMD_MN:
		return mc_encode_status(x->out, r, MC_ST_OK, 0);
	case MC_CMD_VERSION:
		return is_text(r) ? mc_text_encode_version(x->out, SRV_PROTO_VERSION)
		                  : mc_bin_encode_version(x->out, r, SRV_PROTO_VERSION);
	case MC_CMD_VERBOSITY:
		atomic_store(&x->s->verbosity, (int)r->level);
		return mc_encode_status(x->out, r, MC_ST_OK, 0);
	case MC_CMD_STATS:
		return do_stats(x, r);
	case MC_CMD_MEMLIMIT:
		return do_memlimit(x, r);
	case MC_CMD_SLABS:
		return do_slabs(x, r);
	case MC_CMD_SHUTDOWN:
		return do_shutdown(x, r);
	case MC_CMD_SASL_LIST:
	case MC_CMD_SASL_AUTH:
	case MC_CMD_SASL_STEP:
		/* Without -Y: unknown, as memcached without SASL answers. */
		if (!x->s->auth || is_text(r))
			return mc_encode_status(x->out, r, MC_ST_UNKNOWN_COMMAND, 0);
		return do_sasl(x, r);
	case MC_CMD_QUIT: {
		int w = is_text(r) ? 0 : mc_encode_status(x->out, r, MC_ST_OK, 0);
		return w < 0 ? w : 1;
	}
	default:
		return mc_encode_status(x->out, r, MC_ST_UNKNOWN_COMMAND, 0);
	}
}

/* ---- authentication (-Y) ---------------------------------------------- */

/* Before a connection has authenticated, memcached 1.6.18 with -Y answers
 * a text `set` (any key) whose value is "user password" and refuses the
 * rest; with SASL, the binary SASL opcodes and VERSION are answered and
 * the rest refused. We do both on every -Y server. A connection closes
 * after SRV_AUTH_TRIES failed attempts (memcached keeps it open). The
 * store is never touched by an unauthenticated request. */

static uint8_t auth_fails(const struct np_conn *c)
{
	return (np_conn_tag(c) & SRV_TAG_FAILS) >> SRV_TAG_FAIL_SHIFT;
}

/* Records the outcome of one attempt. 0, or -EACCES when this failure is
 * the last allowed (close once the answer is out). */
static int auth_result(struct ctx *x, bool ok)
{
	uint8_t tag = np_conn_tag(x->c);
	srv_ctr(&x->ctr->auth_cmds, 1);
	if (ok) {
		np_conn_set_tag(x->c, (uint8_t)((tag & ~SRV_TAG_FAILS) | SRV_TAG_AUTHED));
		return 0;
	}
	srv_ctr(&x->ctr->auth_errors, 1);
	unsigned fails = auth_fails(x->c) + 1u;
	tag &= (uint8_t)~(SRV_TAG_FAILS | SRV_TAG_AUTHED);
	np_conn_set_tag(x->c, (uint8_t)(tag | (fails << SRV_TAG_FAIL_SHIFT)));
	if (atomic_load_explicit(&x->s->verbosity, memory_order_relaxed) >= 1)
		fprintf(stderr, "<%d authentication failed (%u of %d)\n", np_conn_fd(x->c),
		        fails, SRV_AUTH_TRIES);
	return fails >= SRV_AUTH_TRIES ? -EACCES : 0;
}

/* The value of r, contiguous in buf (cap bytes); NULL when longer. */
static const char *auth_value(struct ctx *x, const struct mc_request *r, char *buf,
                              size_t cap)
{
	if (r->value_len > cap)
		return NULL;
	if (r->value_len == 0)
		return "";
	return bp_chain_view(x->in, r->value_off, r->value_len, buf);
}

#define AUTH_VALUE_MAX (2 * (SRV_AUTH_USER_MAX + SRV_AUTH_PASS_MAX) + 16)

/* Binary SASL. LIST_MECHS answers PLAIN; AUTH and STEP take PLAIN's one
 * message, "[authzid]\0user\0password" (an authzid other than the user
 * is refused). A failed attempt also ends an earlier success, as in
 * memcached. */
static int do_sasl(struct ctx *x, const struct mc_request *r)
{
	static const char ok_msg[] = "Authenticated", fail_msg[] = "Auth failure.";
	if (r->cmd == MC_CMD_SASL_LIST)
		return mc_bin_encode_body(x->out, r, MC_ST_OK, "PLAIN", 5);
	char buf[AUTH_VALUE_MAX];
	const char *v = auth_value(x, r, buf, sizeof(buf));
	bool ok = false;
	if (v && r->key_len == 5 && memcmp(r->key, "PLAIN", 5) == 0) {
		const char *end = v + r->value_len;
		const char *z1 = memchr(v, '\0', r->value_len);
		const char *z2 = z1 ? memchr(z1 + 1, '\0', (size_t)(end - z1 - 1)) : NULL;
		if (z2) {
			size_t azlen = (size_t)(z1 - v), ulen = (size_t)(z2 - z1 - 1);
			bool az_ok = azlen == 0 || (azlen == ulen && memcmp(v, z1 + 1, ulen) == 0);
			ok = srv_auth_check(x->s->auth, z1 + 1, ulen, z2 + 1,
			                    (size_t)(end - z2 - 1)) && az_ok;
		}
	}
	int close = auth_result(x, ok);
	int w = ok ? mc_bin_encode_body(x->out, r, MC_ST_OK, ok_msg, sizeof(ok_msg) - 1)
	           : mc_bin_encode_body(x->out, r, MC_ST_AUTH_ERROR, fail_msg,
	                                sizeof(fail_msg) - 1);
	return w < 0 ? w : close;
}

/* memcached's text authentication: the value of a `set` is "user
 * password" (split at runs of spaces; words after the second ignored).
 * Answered STORED (even with noreply, as memcached does), nothing stored. */
static int do_text_auth(struct ctx *x, const struct mc_request *r)
{
	char buf[AUTH_VALUE_MAX];
	const char *v = auth_value(x, r, buf, sizeof(buf));
	const char *w[2] = {NULL, NULL};
	size_t wl[2] = {0, 0};
	int n = 0;
	for (size_t i = 0; v && i < r->value_len && n < 2;) {
		while (i < r->value_len && v[i] == ' ')
			i++;
		size_t j = i;
		while (j < r->value_len && v[j] != ' ')
			j++;
		if (j > i) {
			w[n] = v + i;
			wl[n++] = j - i;
		}
		i = j;
	}
	if (n < 2) {
		int close = auth_result(x, false);
		int wr = text_line(x, "CLIENT_ERROR bad authentication token format");
		return wr < 0 ? wr : close;
	}
	bool ok = srv_auth_check(x->s->auth, w[0], wl[0], w[1], wl[1]);
	int close = auth_result(x, ok);
	int wr = text_line(x, ok ? "STORED" : "CLIENT_ERROR authentication failure");
	return wr < 0 ? wr : close;
}

/* A request refused before authentication (binary: status 0x20 "Auth
 * failure.", text: CLIENT_ERROR unauthenticated). */
static int auth_refuse(struct ctx *x, const struct mc_request *r)
{
	srv_ctr(&x->ctr->auth_refused, 1);
	if (is_text(r))
		return text_line(x, "CLIENT_ERROR unauthenticated");
	static const char msg[] = "Auth failure.";
	return mc_bin_encode_body(x->out, r, MC_ST_AUTH_ERROR, msg, sizeof(msg) - 1);
}

/* A request on a connection not yet authenticated. As dispatch. */
static int auth_gate(struct ctx *x, const struct mc_request *r)
{
	srv_ctr(&x->ctr->requests, 1);
	if (!is_text(r)) {
		if (r->cmd == MC_CMD_SASL_LIST || r->cmd == MC_CMD_SASL_AUTH ||
		    r->cmd == MC_CMD_SASL_STEP)
			return do_sasl(x, r);
		if (r->cmd == MC_CMD_VERSION)
			return mc_bin_encode_version(x->out, r, SRV_PROTO_VERSION);
	} else if (r->cmd == MC_CMD_SET) {
		return do_text_auth(x, r);
	}
	return auth_refuse(x, r);
}

/* ---- the handler ------------------------------------------------------ */

static struct srv *srv_of(const struct np_conn *c)
{
	return np_group_udata(np_loop_group(np_conn_loop(c)));
}

static int mc_open(struct np_conn *c)
{
	struct srv *s = srv_of(c);
	np_conn_set_udata(c, NULL); /* the parser, made when bytes arrive */
	np_conn_set_tag(c, (uint8_t)(s->proto | (s->auth ? 0 : SRV_TAG_AUTHED)));
	if (s->proto != MC_PROTO_AUTO) { /* -B: chosen for it */
		struct srv_counters *ctr = &s->ctr[np_loop_index(np_conn_loop(c))];
		srv_ctr(s->proto == MC_PROTO_BINARY ? &ctr->binary_conns : &ctr->text_conns, 1);
	}
	bp_chain_set_copy_below(np_conn_out(c), (size_t)s->o.copy_below);
	if (atomic_load_explicit(&s->verbosity, memory_order_relaxed) >= 2)
		fprintf(stderr, "<%d new connection\n", np_conn_fd(c));
	return 0;
}

static void parser_put(struct srv *s, struct np_conn *c)
{
	struct mc_parser *p = np_conn_udata(c);
	np_conn_set_udata(c, NULL);
	bp_objpool_put(s->parser_pool, &p);
}

/* The parser of a burst of input. Input that ends on a request boundary
 * (nearly all of it) leaves no parse state behind, so it is parsed with the
 * loop thread's parser; only a connection left mid-request keeps a pooled
 * parser of its own (its udata) until it is between requests again. A
 * pooled parser per burst cost a block get and put, and its zeroing, on
 * every pipeline-1 request. */
static __thread struct mc_parser loop_parser;

static struct mc_parser *parser_of(struct srv *s, struct np_conn *c)
{
	struct mc_parser *p = np_conn_udata(c);
	if (p)
		return p;
	struct mc_parser_opts po = {
		.proto = (enum mc_proto)(np_conn_tag(c) & SRV_TAG_PROTO),
		.item_max = (uint32_t)s->o.max_item_size,
	};
	mc_parser_init(&loop_parser, &po);
	return &loop_parser;
}

/* At the end of a burst: a parser holding state becomes the connection's
 * own; an own parser holding none goes back. 0, or -ENOMEM. */
static int parser_keep(struct srv *s, struct np_conn *c, struct mc_parser *p)
{
	if (p == &loop_parser) {
		if (mc_parser_idle(p))
			return 0;
		struct mc_parser *own = bp_objpool_get(s->parser_pool);
		if (!own)
			return -ENOMEM;
		*own = *p;
		np_conn_set_udata(c, own);
	} else if (mc_parser_idle(p)) {
		parser_put(s, c);
	}
	return 0;
}

/* A pipeline of binary GETs: hand their keys to cache_prefetch before the
 * first is executed, so that the lookups' memory loads overlap instead of
 * each waiting in turn (see docs/performance.md, workload (b)). */
static void prefetch_gets(struct srv *s, const struct bp_chain *in)
{
	/* Two GETs take at least 2 x (header + 1-byte key): shorter input
	 * (a lone request, the pipeline-1 case) is not worth the peek. */
	if (bp_chain_len(in) < 2 * (MC_BIN_HDR_LEN + 1))
		return;
	struct mc_key_view views[CACHE_PREFETCH_MAX];
	unsigned n = mc_bin_peek_get_keys(in, views, CACHE_PREFETCH_MAX);
	if (n < 2)
		return;
	struct cache_key keys[CACHE_PREFETCH_MAX];
	for (unsigned i = 0; i < n; i++)
		keys[i] = (struct cache_key){views[i].key, views[i].len};
	cache_prefetch(s->cache, keys, n);
}

/* netpoll's look ahead at a batch (io_uring): the GETs that start the
 * fresh input of several connections go to one cache_prefetch, so that the
 * misses of their lookups (the hash bucket, then the item: nearly all of
 * a pipeline-1 lookup's cost in a store larger than the CPU's caches)
 * overlap instead of each connection's waiting in turn. A connection whose
 * every key fitted is marked, and mc_data does not prefetch them again. */
static void mc_peek(struct np_loop *l, const struct np_peek *pk, unsigned n)
{
	struct srv *s = np_group_udata(np_loop_group(l));
	struct mc_key_view v[CACHE_PREFETCH_MAX];
	struct cache_key keys[CACHE_PREFETCH_MAX];
	unsigned nk = 0;
	for (unsigned i = 0; i < n && nk < CACHE_PREFETCH_MAX; i++) {
		uint8_t tag = np_conn_tag(pk[i].c);
		if (!(tag & SRV_TAG_AUTHED) || np_conn_udata(pk[i].c))
			continue; /* not yet authenticated, or mid-request */
		unsigned room = CACHE_PREFETCH_MAX - nk;
		unsigned got = mc_peek_get_keys(pk[i].data, pk[i].len, v, room);
		for (unsigned j = 0; j < got; j++)
			keys[nk++] = (struct cache_key){v[j].key, v[j].len};
		if (got && got < room)
			np_conn_set_tag(pk[i].c, (uint8_t)(tag | SRV_TAG_PREFETCHED));
	}
	if (nk >= 2)
		cache_prefetch(s->cache, keys, nk);
}

/* Runs the requests in `in`, in order, until it holds no whole request,
 * the output is full, or -R's budget (memcached's reqs_per_event) is
 * spent: then it yields, and netpoll calls it again (with the budget
 * anew) once the output has drained, or at the loop's next turn, after
 * the other connections' events, so that one client's pipeline does not
 * keep its loop's other clients waiting. The budget counts every request,
 * answered errors too; input that ends with the budget yields nothing
 * (docs/server.md, "-R", compares memcached's count), and so does input
 * of SRV_YIELD_IN_MAX or more (run on until less is left). */
static ssize_t mc_data(struct np_conn *c, struct bp_chain *in)
{
	struct srv *s = srv_of(c);
	struct mc_parser *p = parser_of(s, c);
	struct ctx x = {s, p, c, in, np_conn_out(c),
	                &s->ctr[np_loop_index(np_conn_loop(c))]};
	int64_t budget = s->o.reqs_per_event;
	/* A call after a yield for a full output runs GETs whose keys were
	 * prefetched then; after a spent budget, the next ones (a window of
	 * CACHE_PREFETCH_MAX keys, longer than the default budget) are. */
	uint8_t tag = np_conn_tag(c);
	if (tag & SRV_TAG_PREFETCHED)
		np_conn_set_tag(c, (uint8_t)(tag & ~SRV_TAG_PREFETCHED));
	else if (mc_parser_proto(p) == MC_PROTO_BINARY && mc_parser_idle(p))
		prefetch_gets(s, in);
	for (int64_t n = 1;; n++) {
		struct mc_request req;
		int r = mc_parse(p, in, &req);
		if ((np_conn_tag(c) & SRV_TAG_PROTO) == MC_PROTO_AUTO &&
		    mc_parser_proto(p) != MC_PROTO_AUTO) {
			np_conn_set_tag(c, (uint8_t)(np_conn_tag(c) | mc_parser_proto(p)));
			srv_ctr(mc_parser_proto(p) == MC_PROTO_BINARY
			        ? &x.ctr->binary_conns : &x.ctr->text_conns, 1);
		}
		if (r == -EAGAIN) {
			ssize_t need = (ssize_t)p->need;
			return parser_keep(s, c, p) < 0 ? -ENOMEM : need;
		}
		bool authed = np_conn_tag(c) & SRV_TAG_AUTHED;
		if (r < 0 && !authed && !req.close) {
			/* Refused as any request before authentication (an
			 * oversized SET drops nothing). */
			srv_ctr(&x.ctr->proto_errors, 1);
			if (auth_refuse(&x, &req) < 0)
				return -ENOMEM;
			mc_parser_consume(p, in, &req);
		} else if (r < 0 && req.cmd == MC_CMD_FLUSH && s->o.disable_flush_all &&
		           !req.close) {
			/* -F refuses before reading the delay, as memcached */
			srv_ctr(&x.ctr->proto_errors, 1);
			if (flush_refused(&x, &req) < 0)
				return -ENOMEM;
			mc_parser_consume(p, in, &req);
		} else if (r < 0) {
			srv_ctr(&x.ctr->proto_errors, 1);
			if (req.err == MC_ERR_E2BIG) {
				srv_ctr(&x.ctr->oversized, 1);
				drop_refused(s, &req);
			}
			if (mc_encode_error(x.out, &req) < 0 || req.close)
				return -EBADMSG;
			mc_parser_consume(p, in, &req);
		} else {
			int d = authed ? dispatch(&x, &req) : auth_gate(&x, &req);
			mc_parser_consume(p, in, &req);
			if (d < 0)
				return d;
			if (d == 1)
				return -ECONNRESET; /* quit: close once the replies are out */
		}
		/* Stop, and let netpoll call again with the rest of the input:
		 * when the client is not reading (run nothing more until it
		 * has, so that what it sent costs us at most out_high plus one
		 * reply, not a reply per request), or at -R's budget (the rest
		 * at the loop's next turn). */
		size_t left = n >= budget ? bp_chain_len(in) : 0;
		if (np_conn_out_full(c) || (left && left < SRV_YIELD_IN_MAX)) {
			np_conn_yield(c);
			np_conn_set_tag(c, (uint8_t)(np_conn_tag(c) | SRV_TAG_PREFETCHED));
			return parser_keep(s, c, p) < 0 ? -ENOMEM : 0;
		}
	}
}

static void mc_close(struct np_conn *c, int err)
{
	struct srv *s = srv_of(c);
	if (atomic_load_explicit(&s->verbosity, memory_order_relaxed) >= 2)
		fprintf(stderr, "<%d connection closed (%s)\n", np_conn_fd(c),
		        err ? strerror(-err) : "ok");
	if (np_conn_udata(c))
		parser_put(s, c);
}

const struct np_handler srv_mc_handler = {
	.on_open = mc_open,
	.on_data = mc_data,
	.on_peek = mc_peek,
	.on_close = mc_close,
};
