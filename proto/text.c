/* proto: memcached's classic text protocol (parsing and answers). */
#include "proto/mc_internal.h"

/* --- line framing ------------------------------------------------------
 *
 * mc__text_parse finds the line, reads the command name and looks it up in
 * MC_TEXT_CMDS; the row's family column names the function below that
 * parses the rest of the line (text_<family>). */

/* A line being parsed: what every family parser gets. */
struct text_line {
	struct mc_parser *p;
	struct bp_chain *in;
	const struct text_cmd *tc;
	struct mc__cur k;     /* at the first argument */
	size_t content_end;   /* chain offset of the "\r\n" (or "\n") */
	size_t total;         /* line bytes, "\n" included */
};

struct text_cmd {
	const char *name;
	uint8_t len;
	enum mc_cmd cmd;
	int8_t min_args, max_args;
	/* The family: parses the arguments into req (cmd, proto and total
	 * are set, the rest zero); returns as mc_parse. */
	int (*parse)(struct text_line *l, struct mc_request *req);
};

#define MC_X_TEXT_DECL(name_, cmd_, mn, mx, fam)                              \
	static int text_##fam(struct text_line *l, struct mc_request *req);
MC_TEXT_CMDS(MC_X_TEXT_DECL)
#undef MC_X_TEXT_DECL

static const struct text_cmd text_cmds[] = {
#define MC_X_TEXT(name_, cmd_, mn, mx, fam)                                   \
	{name_, sizeof(name_) - 1, MC_CMD_##cmd_, mn, mx, text_##fam},
	MC_TEXT_CMDS(MC_X_TEXT)
#undef MC_X_TEXT
};
#define NTEXT_CMDS (sizeof(text_cmds) / sizeof(text_cmds[0]))

static const struct text_cmd *text_lookup(const struct mc__tok *t)
{
	for (size_t i = 0; i < NTEXT_CMDS; i++)
		if (text_cmds[i].len == t->len &&
		    memcmp(text_cmds[i].name, t->buf, t->len) == 0)
			return &text_cmds[i];
	return NULL;
}

/* Whether the line at the head of `in` is a retrieval (get, gets, gat,
 * gats and a space): its key list may be longer than line_max. */
static bool text_is_retrieval(const struct bp_chain *in)
{
	char w[5];
	size_t n = 0;

	while (n < sizeof(w) && n < bp_chain_len(in)) {
		w[n] = (char)bp_chain_byte(in, n);
		n++;
	}
	return (n >= 4 && (memcmp(w, "get ", 4) == 0 || memcmp(w, "gat ", 4) == 0)) ||
	       (n >= 5 && (memcmp(w, "gets ", 5) == 0 || memcmp(w, "gats ", 5) == 0));
}

/* Finds the end of the line at the head of `in`, remembering how far it
 * searched (p->scan). The offset of its '\n'; -EAGAIN (p->need set); or
 * -EMSGSIZE with req filled for a line over line_max — over line_max +
 * item_max for a retrieval line (memcached reads a get's keys without a
 * bound; this one is about the connection's input limit). */
static ssize_t text_frame(struct mc_parser *p, struct bp_chain *in,
                          struct mc_request *req)
{
	size_t len = bp_chain_len(in);
	size_t max = (size_t)p->line_max + 2;
	size_t limit;
	ssize_t nl;

	if (len > max && text_is_retrieval(in))
		max += p->item_max;
	limit = max < len ? max : len;
	nl = p->scan < limit ? bp_chain_find(in, p->scan, limit, '\n')
	                     : -ENOENT;
	if (nl >= 0)
		return nl;
	p->scan = limit;
	if (len >= max) {
		memset(req, 0, sizeof(*req));
		req->proto = MC_PROTO_TEXT;
		return mc__fail(req, MC_ERR_LINE_TOO_LONG, len);
	}
	p->need = len + 1;
	return -EAGAIN;
}

/* Whether the last space-separated word of the line [0, end) starts with
 * "HTTP/": an HTTP request line sent to the memcached port. */
static bool text_is_http(const struct bp_chain *in, size_t end)
{
	static const char h[] = "HTTP/";
	size_t i = end;

	while (i > 0 && bp_chain_byte(in, i - 1) == ' ')
		i--;
	while (i > 0 && bp_chain_byte(in, i - 1) != ' ')
		i--;
	for (size_t k = 0; k < sizeof(h) - 1; k++)
		if (i + k >= end || bp_chain_byte(in, i + k) != (uint8_t)h[k])
			return false;
	return true;
}

int mc__text_parse(struct mc_parser *p, struct bp_chain *in,
                   struct mc_request *req)
{
	struct text_line l; /* not zeroed: the cursor's iovecs are scratch */
	struct mc__tok name;
	ssize_t nl = text_frame(p, in, req);

	if (nl < 0)
		return (int)nl;
	l.p = p;
	l.in = in;
	l.total = (size_t)nl + 1;
	l.content_end = (size_t)nl;
	if (nl > 0 && bp_chain_byte(in, (size_t)nl - 1) == '\r')
		l.content_end--;

	memset(req, 0, sizeof(*req));
	req->proto = MC_PROTO_TEXT;
	req->total = l.total;

	mc__cur_init(&l.k, in, 0, l.content_end);
	if (!mc__cur_token(&l.k, &name) || name.len < 2)
		return mc__fail(req, MC_ERR_UNKNOWN_COMMAND, l.total);
	if ((l.tc = text_lookup(&name)) == NULL)
		return mc__fail(req, text_is_http(in, l.content_end)
		                         ? MC_ERR_HTTP : MC_ERR_UNKNOWN_COMMAND,
		                l.total);
	req->cmd = l.tc->cmd;
	return l.tc->parse(&l, req);
}

/* --- argument helpers -------------------------------------------------- */

#define MAX_ARGS 8 /* tokens kept after the name; more are only counted */

/* Fixed-argument families: reads the arguments into a[MAX_ARGS], checks
 * their count against the table (ERROR when out of range) and notes a
 * trailing "noreply". The count, or -EBADMSG. */
static int text_args(struct text_line *l, struct mc_request *req,
                     struct mc__tok a[MAX_ARGS])
{
	struct mc__tok extra;
	int nargs = 0;

	while (nargs < MAX_ARGS && mc__cur_token(&l->k, &a[nargs]))
		nargs++;
	if (nargs == MAX_ARGS)
		while (mc__cur_token(&l->k, &extra))
			nargs++;
	if (nargs < l->tc->min_args ||
	    (l->tc->max_args >= 0 && nargs > l->tc->max_args))
		return mc__fail(req, MC_ERR_UNKNOWN_COMMAND, l->total);
	if (nargs > 0 && mc__tok_is(&a[nargs - 1], "noreply"))
		req->noreply = 1;
	return nargs;
}

/* The key argument t: longer than MC_KEY_MAX is a bad format. */
static int text_key(struct text_line *l, struct mc_request *req,
                    const struct mc__tok *t)
{
	if (t->len > MC_KEY_MAX)
		return mc__fail(req, MC_ERR_BAD_FORMAT, l->total);
	req->key = mc__tok_ptr(l->in, t, l->p->scratch);
	req->key_len = t->len;
	return 1;
}

/* --- families ---------------------------------------------------------- */

/* get/gets <key>*, gat/gats <exptime> <key>*: validates and counts the
 * keys (mc_req_next_key walks them); the first is req->key. */
static int text_retrieval(struct text_line *l, struct mc_request *req)
{
	struct mc__tok t;
	int32_t exptime;

	req->ret_cas = l->tc->name[l->tc->len - 1] == 's';
	if (req->cmd == MC_CMD_GAT) {
		if (!mc__cur_token(&l->k, &t))
			return mc__fail(req, MC_ERR_UNKNOWN_COMMAND, l->total);
		if (!mc__tok_i32(&t, &exptime))
			return mc__fail(req, MC_ERR_BAD_EXPTIME, l->total);
		req->exptime = exptime;
	}
	req->keys_off = l->k.off;
	req->keys_end = l->k.end;
	while (mc__cur_token(&l->k, &t)) {
		if (t.len > MC_KEY_MAX)
			return mc__fail(req, MC_ERR_BAD_FORMAT, l->total);
		if (req->nkeys++ == 0) {
			req->keys_off = t.off;
			req->key = mc__tok_ptr(l->in, &t, l->p->scratch);
			req->key_len = t.len;
		}
	}
	if (req->nkeys == 0 && req->cmd == MC_CMD_GET)
		return mc__fail(req, MC_ERR_UNKNOWN_COMMAND, l->total);
	return 1;
}

/* set/add/replace/append/prepend <key> <flags> <exptime> <bytes>
 * [noreply], cas <key> <flags> <exptime> <bytes> <cas> [noreply]; the
 * value follows the line. */
static int text_storage(struct text_line *l, struct mc_request *req)
{
	struct mc__tok a[MAX_ARGS];
	int32_t exptime, vlen;
	int rc;

	if ((rc = text_args(l, req, a)) < 0)
		return rc;
	if (a[0].len > MC_KEY_MAX || !mc__tok_u32(&a[1], &req->flags) ||
	    !mc__tok_i32(&a[2], &exptime) || !mc__tok_i32(&a[3], &vlen))
		return mc__fail(req, MC_ERR_BAD_FORMAT, l->total);
	req->exptime = exptime;
	if (req->cmd == MC_CMD_CAS && !mc__tok_u64(&a[4], &req->cas))
		return mc__fail(req, MC_ERR_BAD_FORMAT, l->total);
	if (vlen < 0)
		return mc__fail(req, MC_ERR_BAD_FORMAT, l->total);
	/* memcached's bound (the length and its "\r\n" fit an int): the
	 * same answer, then close, as the value cannot be swallowed. */
	if (vlen > INT32_MAX - 2)
		return mc__fail(req, MC_ERR_EINVAL, l->total);
	text_key(l, req, &a[0]);
	return mc__text_expect_value(l->p, l->in, req, l->total, vlen,
	                             MC_ERR_NONE);
}

/* delete <key> [0] [noreply] */
static int text_delete(struct text_line *l, struct mc_request *req)
{
	struct mc__tok a[MAX_ARGS];
	int nargs = text_args(l, req, a);

	if (nargs < 0)
		return nargs;
	if (nargs > 1) {
		int zero = mc__tok_is(&a[1], "0");
		int valid = (nargs == 2 && (zero || req->noreply)) ||
		            (nargs == 3 && zero && req->noreply);
		if (!valid)
			return mc__fail(req, MC_ERR_DELETE_USAGE, l->total);
	}
	return text_key(l, req, &a[0]);
}

/* incr/decr <key> <delta> [noreply] */
static int text_arith(struct text_line *l, struct mc_request *req)
{
	struct mc__tok a[MAX_ARGS];
	int rc;

	if ((rc = text_args(l, req, a)) < 0)
		return rc;
	if (a[0].len > MC_KEY_MAX)
		return mc__fail(req, MC_ERR_BAD_FORMAT, l->total);
	if (!mc__tok_u64(&a[1], &req->delta))
		return mc__fail(req, MC_ERR_BAD_DELTA, l->total);
	return text_key(l, req, &a[0]);
}

/* touch <key> <exptime> [noreply] */
static int text_touch(struct text_line *l, struct mc_request *req)
{
	struct mc__tok a[MAX_ARGS];
	int32_t exptime;
	int rc;

	if ((rc = text_args(l, req, a)) < 0)
		return rc;
	if (a[0].len > MC_KEY_MAX)
		return mc__fail(req, MC_ERR_BAD_FORMAT, l->total);
	if (!mc__tok_i32(&a[1], &exptime))
		return mc__fail(req, MC_ERR_BAD_EXPTIME, l->total);
	req->exptime = exptime;
	return text_key(l, req, &a[0]);
}

/* flush_all [delay] [noreply] */
static int text_flush(struct text_line *l, struct mc_request *req)
{
	struct mc__tok a[MAX_ARGS];
	int32_t delay;
	int nargs = text_args(l, req, a);

	if (nargs < 0)
		return nargs;
	if (nargs != (req->noreply ? 1 : 0)) {
		if (!mc__tok_i32(&a[0], &delay))
			return mc__fail(req, MC_ERR_BAD_EXPTIME, l->total);
		req->exptime = delay;
		req->has_exptime = 1;
	}
	return 1;
}

/* stats [group], slabs [args], shutdown [mode]: the rest of the line, as typed (trailing
 * spaces dropped), in req->key. */
static int text_stats(struct text_line *l, struct mc_request *req)
{
	struct mc__tok t;
	size_t n;

	if (!mc__cur_token(&l->k, &t))
		return 1;
	n = l->content_end - t.off;
	while (n && bp_chain_byte(l->in, t.off + n - 1) == ' ')
		n--;
	if (n > MC_KEY_MAX)
		return mc__fail(req, MC_ERR_BAD_FORMAT, l->total);
	req->key = (const char *)bp_chain_view(l->in, t.off, n, l->p->scratch);
	req->key_len = (uint32_t)n;
	return 1;
}

/* cache_memlimit <megabytes> [noreply]: a number that is not one is
 * ERROR, as in memcached; the server judges its size. */
static int text_memlimit(struct text_line *l, struct mc_request *req)
{
	struct mc__tok a[MAX_ARGS];
	int rc;

	if ((rc = text_args(l, req, a)) < 0)
		return rc;
	if (!mc__tok_u64(&a[0], &req->delta))
		return mc__fail(req, MC_ERR_UNKNOWN_COMMAND, l->total);
	return 1;
}

/* version: arguments ignored. */
static int text_version(struct text_line *l, struct mc_request *req)
{
	(void)l;
	(void)req;
	return 1;
}

/* quit: arguments ignored; close after answering. */
static int text_quit(struct text_line *l, struct mc_request *req)
{
	(void)l;
	req->close = 1;
	return 1;
}

/* verbosity <level> [noreply] */
static int text_verbosity(struct text_line *l, struct mc_request *req)
{
	struct mc__tok a[MAX_ARGS];
	int rc;

	if ((rc = text_args(l, req, a)) < 0)
		return rc;
	if (!mc__tok_u32(&a[0], &req->level))
		return mc__fail(req, MC_ERR_BAD_FORMAT, l->total);
	return 1;
}

/* mg ms md ma mn me: meta.c. */
static int text_meta(struct text_line *l, struct mc_request *req)
{
	return mc__meta_parse(l->p, l->in, req, &l->k, l->total);
}

/* --- values of storage lines ------------------------------------------- */

int mc__text_complete(struct bp_chain *in, struct mc_request *req)
{
	size_t end = req->value_off + req->value_len;

	if (bp_chain_byte(in, end) != '\r' || bp_chain_byte(in, end + 1) != '\n') {
		if (mc_cmd_is_meta(req->cmd))
			req->noreply = 0; /* meta set always reports it */
		return mc__fail(req, MC_ERR_BAD_CHUNK, req->total);
	}
	return 1;
}

int mc__text_expect_value(struct mc_parser *p, struct bp_chain *in,
                          struct mc_request *req, size_t line_total,
                          int32_t vlen, enum mc_err err)
{
	size_t total = line_total + (size_t)vlen + 2;

	if ((uint32_t)vlen > p->body_max)
		return mc__fail(req, MC_ERR_BODY_TOO_LARGE, total);
	if (err != MC_ERR_NONE) /* a bad line with a length: swallow the value */
		return mc__fail(req, err, total);
	if ((uint32_t)vlen > p->item_max)
		return mc__fail(req, MC_ERR_E2BIG, total);
	req->value_off = line_total;
	req->value_len = (uint32_t)vlen;
	req->total = total;
	if (bp_chain_len(in) < total) {
		/* Keep what was parsed, so the line is not read again. The
		 * parser may be moved (a server keeps it per connection only
		 * while a request is pending): the pending request holds no
		 * pointer, its key lives in the parser's own scratch. */
		if (req->key_len && req->key != p->scratch)
			memcpy(p->scratch, req->key, req->key_len);
		p->pending = *req;
		p->pending.key = NULL;
		p->has_pending = 1;
		p->need = total;
		return -EAGAIN;
	}
	return mc__text_complete(in, req);
}

/* --- answers ----------------------------------------------------------- */

int mc_text_encode_line(struct bp_chain *out, const char *line, size_t len)
{
	char *start = mc__wbegin(out, len + 2), *w;

	if (start == NULL)
		return -ENOMEM;
	w = mc__put(start, line, len);
	w = MC__PUTS(w, "\r\n");
	mc__wend(out, start, w);
	return 0;
}

#define LINE(out, lit) mc_text_encode_line((out), (lit), sizeof(lit) - 1)

int mc__text_encode_status(struct bp_chain *out, const struct mc_request *req,
                           enum mc_status st)
{
	if (req->noreply)
		return 0;
	switch (st) {
	case MC_ST_OK:
		if (mc_cmd_is_store(req->cmd))
			return LINE(out, "STORED");
		switch (req->cmd) {
		case MC_CMD_DELETE:
			return LINE(out, "DELETED");
		case MC_CMD_TOUCH:
			return LINE(out, "TOUCHED");
		case MC_CMD_GET: case MC_CMD_GAT: case MC_CMD_STATS:
			return LINE(out, "END");
		default:
			return LINE(out, "OK");
		}
	case MC_ST_NOT_FOUND:
		if (req->cmd == MC_CMD_GET || req->cmd == MC_CMD_GAT)
			return LINE(out, "END");
		if (req->cmd == MC_CMD_STATS)
			return LINE(out, "ERROR");
		return LINE(out, "NOT_FOUND");
	case MC_ST_EXISTS:
		return LINE(out, "EXISTS");
	case MC_ST_NOT_STORED:
		return LINE(out, "NOT_STORED");
	case MC_ST_E2BIG:
		return LINE(out, "SERVER_ERROR object too large for cache");
	case MC_ST_ENOMEM:
		return LINE(out, "SERVER_ERROR out of memory storing object");
	case MC_ST_DELTA_BADVAL:
		return LINE(out, "CLIENT_ERROR cannot increment or decrement "
		                 "non-numeric value");
	case MC_ST_EINVAL:
		return LINE(out, "CLIENT_ERROR bad command line format");
	case MC_ST_UNKNOWN_COMMAND:
		return LINE(out, "ERROR");
	case MC_ST_AUTH_ERROR:
		return LINE(out, "CLIENT_ERROR unauthenticated");
	default:
		return LINE(out, "SERVER_ERROR unhandled status");
	}
}

int mc_text_encode_value(struct bp_chain *out, const struct mc_request *req,
                         const char *key, size_t key_len, uint32_t flags,
                         uint64_t cas, const struct bp_slice *value)
{
	uint32_t vlen = value != NULL ? value->len : 0;
	char *start, *w;
	int rc;

	if (key_len > MC_KEY_MAX)
		return -EINVAL;
	start = mc__wbegin(out, 6 + key_len + 3 * 21 + 2);
	if (start == NULL)
		return -ENOMEM;
	w = MC__PUTS(start, "VALUE ");
	w = mc__put(w, key, key_len);
	*w++ = ' ';
	w = bp_dec_put_u64(w, flags);
	*w++ = ' ';
	w = bp_dec_put_u64(w, vlen);
	if (req->ret_cas) {
		*w++ = ' ';
		w = bp_dec_put_u64(w, cas);
	}
	w = MC__PUTS(w, "\r\n");
	mc__wend(out, start, w);
	if ((rc = mc__append_value(out, value)) != 0)
		return rc;
	return mc__wsmall(out, "\r\n", 2);
}

int mc_text_encode_end(struct bp_chain *out)
{
	return LINE(out, "END");
}

int mc_text_encode_number(struct bp_chain *out, const struct mc_request *req,
                          uint64_t value)
{
	char buf[24];

	if (req->noreply)
		return 0;
	return mc_text_encode_line(out, buf,
	                           (size_t)(bp_dec_put_u64(buf, value) - buf));
}

int mc_text_encode_version(struct bp_chain *out, const char *version)
{
	size_t n = strlen(version);
	char *start = mc__wbegin(out, 8 + n + 2), *w;

	if (start == NULL)
		return -ENOMEM;
	w = MC__PUTS(start, "VERSION ");
	w = mc__put(w, version, n);
	w = MC__PUTS(w, "\r\n");
	mc__wend(out, start, w);
	return 0;
}

int mc_text_encode_stat(struct bp_chain *out, const char *name, size_t nlen,
                        const char *val, size_t vlen)
{
	char *start = mc__wbegin(out, 5 + nlen + 1 + vlen + 2), *w;

	if (start == NULL)
		return -ENOMEM;
	w = MC__PUTS(start, "STAT ");
	w = mc__put(w, name, nlen);
	*w++ = ' ';
	w = mc__put(w, val, vlen);
	w = MC__PUTS(w, "\r\n");
	mc__wend(out, start, w);
	return 0;
}

/* Keys of one retrieval line, for mc_peek_get_keys: "get"/"gets" take
 * every key, "mg" its first word. Only a line whose end is in view. */
unsigned mc__text_peek(const char *h, const char *end, struct mc_key_view *keys,
                       unsigned max)
{
	const char *eol = memchr(h, '\n', (size_t)(end - h));
	if (eol == NULL || eol - h < 5)
		return 0;
	bool many;
	if (memcmp(h, "get ", 4) == 0)
		h += 4, many = true;
	else if (memcmp(h, "gets ", 5) == 0)
		h += 5, many = true;
	else if (memcmp(h, "mg ", 3) == 0)
		h += 3, many = false;
	else
		return 0;
	unsigned n = 0;
	while (n < max) {
		while (h < eol && *h == ' ')
			h++;
		const char *k = h;
		while (h < eol && *h != ' ' && *h != '\r')
			h++;
		if (h == k)
			break;
		if ((size_t)(h - k) <= MC_KEY_MAX)
			keys[n++] = (struct mc_key_view){k, (size_t)(h - k)};
		if (!many)
			break;
	}
	return n;
}
