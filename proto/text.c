/* proto: memcached's classic text protocol (parsing and answers). */
#include "proto/internal.h"

struct text_cmd {
	const char *name;
	uint8_t len;
	enum mc_cmd cmd;
	int8_t min_args, max_args;
};

static const struct text_cmd text_cmds[] = {
#define MC_X_TEXT(name_, cmd_, mn, mx)                                        \
	{name_, sizeof(name_) - 1, MC_CMD_##cmd_, mn, mx},
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

#define MAX_ARGS 8 /* tokens kept after the name; more are only counted */

/* Retrieval commands: validates and counts the keys from the cursor on. */
static int parse_keys(struct mc_parser *p, struct bp_chain *in,
                      struct mc_request *req, struct mc__cur *k,
                      size_t line_total)
{
	struct mc__tok t;
	size_t keys_end = k->end;

	req->keys_off = k->off;
	req->keys_end = keys_end;
	while (mc__cur_token(k, &t)) {
		if (t.len > MC_KEY_MAX)
			return mc__fail(req, MC_ERR_BAD_FORMAT, line_total);
		if (req->nkeys++ == 0) {
			req->keys_off = t.off;
			req->key = mc__tok_ptr(in, &t, p->scratch);
			req->key_len = t.len;
		}
	}
	req->total = line_total;
	return 1;
}

int mc__text_complete(struct bp_chain *in, struct mc_request *req)
{
	size_t end = req->value_off + req->value_len;

	if (bp_chain_byte(in, end) != '\r' || bp_chain_byte(in, end + 1) != '\n') {
		if (mc__is_meta(req->cmd))
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

int mc__text_parse(struct mc_parser *p, struct bp_chain *in,
                   struct mc_request *req)
{
	size_t len = bp_chain_len(in);
	size_t limit = (size_t)p->line_max + 2;
	size_t content_end, line_total;
	ssize_t nl;
	struct mc__cur k;
	struct mc__tok name, a[MAX_ARGS];
	const struct text_cmd *tc;
	int nargs = 0;

	if (limit > len)
		limit = len;
	nl = p->scan < limit ? bp_chain_find(in, p->scan, limit, '\n')
	                     : -ENOENT;
	if (nl < 0) {
		p->scan = limit;
		if (len >= (size_t)p->line_max + 2) {
			memset(req, 0, sizeof(*req));
			req->proto = MC_PROTO_TEXT;
			return mc__fail(req, MC_ERR_LINE_TOO_LONG, len);
		}
		p->need = len + 1;
		return -EAGAIN;
	}
	line_total = (size_t)nl + 1;
	content_end = (size_t)nl;
	if (nl > 0 && bp_chain_byte(in, (size_t)nl - 1) == '\r')
		content_end--;

	memset(req, 0, sizeof(*req));
	req->proto = MC_PROTO_TEXT;
	req->total = line_total;

	mc__cur_init(&k, in, 0, content_end);
	if (!mc__cur_token(&k, &name) || name.len < 2 ||
	    (tc = text_lookup(&name)) == NULL)
		return mc__fail(req, MC_ERR_UNKNOWN_COMMAND, line_total);
	req->cmd = tc->cmd;

	if (mc__is_meta(tc->cmd))
		return mc__meta_parse(p, in, req, &k, line_total);

	if (tc->cmd == MC_CMD_GET || tc->cmd == MC_CMD_GAT) {
		struct mc__tok t;
		int32_t exptime;
		req->ret_cas = name.buf[name.len - 1] == 's';
		if (tc->cmd == MC_CMD_GAT) {
			if (!mc__cur_token(&k, &t))
				return mc__fail(req, MC_ERR_UNKNOWN_COMMAND,
				                line_total);
			if (!mc__tok_i32(&t, &exptime))
				return mc__fail(req, MC_ERR_BAD_EXPTIME,
				                line_total);
			req->exptime = exptime;
		}
		parse_keys(p, in, req, &k, line_total);
		if (req->err != MC_ERR_NONE)
			return -EBADMSG;
		if (req->nkeys == 0 && tc->cmd == MC_CMD_GET)
			return mc__fail(req, MC_ERR_UNKNOWN_COMMAND, line_total);
		return 1;
	}

	if (tc->cmd == MC_CMD_STATS) {
		/* The group is the rest of the line, as typed. */
		struct mc__tok t;
		if (mc__cur_token(&k, &t)) {
			size_t n = content_end - t.off;
			while (n && bp_chain_byte(in, t.off + n - 1) == ' ')
				n--;
			if (n > MC_KEY_MAX)
				return mc__fail(req, MC_ERR_BAD_FORMAT,
				                line_total);
			req->key = (const char *)bp_chain_view(in, t.off, n,
			                                       p->scratch);
			req->key_len = (uint32_t)n;
		}
		return 1;
	}
	if (tc->cmd == MC_CMD_VERSION)
		return 1;
	if (tc->cmd == MC_CMD_QUIT) {
		req->close = 1;
		return 1;
	}

	{
		struct mc__tok extra;
		while (nargs < MAX_ARGS && mc__cur_token(&k, &a[nargs]))
			nargs++;
		if (nargs == MAX_ARGS)
			while (mc__cur_token(&k, &extra))
				nargs++;
	}
	if (nargs < tc->min_args || (tc->max_args >= 0 && nargs > tc->max_args))
		return mc__fail(req, MC_ERR_UNKNOWN_COMMAND, line_total);
	if (nargs > 0 && mc__tok_is(&a[nargs - 1], "noreply"))
		req->noreply = 1;

	switch (tc->cmd) {
	case MC_CMD_SET:
	case MC_CMD_ADD:
	case MC_CMD_REPLACE:
	case MC_CMD_APPEND:
	case MC_CMD_PREPEND:
	case MC_CMD_CAS: {
		int32_t exptime, vlen;
		if (a[0].len > MC_KEY_MAX)
			return mc__fail(req, MC_ERR_BAD_FORMAT, line_total);
		if (!mc__tok_u32(&a[1], &req->flags) ||
		    !mc__tok_i32(&a[2], &exptime) || !mc__tok_i32(&a[3], &vlen))
			return mc__fail(req, MC_ERR_BAD_FORMAT, line_total);
		req->exptime = exptime;
		if (tc->cmd == MC_CMD_CAS && !mc__tok_u64(&a[4], &req->cas))
			return mc__fail(req, MC_ERR_BAD_FORMAT, line_total);
		if (vlen < 0)
			return mc__fail(req, MC_ERR_BAD_FORMAT, line_total);
		req->key = mc__tok_ptr(in, &a[0], p->scratch);
		req->key_len = a[0].len;
		return mc__text_expect_value(p, in, req, line_total, vlen, MC_ERR_NONE);
	}
	case MC_CMD_DELETE:
		if (nargs > 1) {
			int zero = mc__tok_is(&a[1], "0");
			int valid = (nargs == 2 && (zero || req->noreply)) ||
			            (nargs == 3 && zero && req->noreply);
			if (!valid)
				return mc__fail(req, MC_ERR_DELETE_USAGE,
				                line_total);
		}
		break;
	case MC_CMD_INCR:
	case MC_CMD_DECR:
		if (a[0].len > MC_KEY_MAX)
			return mc__fail(req, MC_ERR_BAD_FORMAT, line_total);
		if (!mc__tok_u64(&a[1], &req->delta))
			return mc__fail(req, MC_ERR_BAD_DELTA, line_total);
		break;
	case MC_CMD_TOUCH: {
		int32_t exptime;
		if (a[0].len > MC_KEY_MAX)
			return mc__fail(req, MC_ERR_BAD_FORMAT, line_total);
		if (!mc__tok_i32(&a[1], &exptime))
			return mc__fail(req, MC_ERR_BAD_EXPTIME, line_total);
		req->exptime = exptime;
		break;
	}
	case MC_CMD_FLUSH:
		if (nargs != (req->noreply ? 1 : 0)) {
			int32_t delay;
			if (!mc__tok_i32(&a[0], &delay))
				return mc__fail(req, MC_ERR_BAD_EXPTIME,
				                line_total);
			req->exptime = delay;
			req->has_exptime = 1;
		}
		return 1;
	case MC_CMD_VERBOSITY:
		if (!mc__tok_u32(&a[0], &req->level))
			return mc__fail(req, MC_ERR_BAD_FORMAT, line_total);
		return 1;
	default:
		return 1;
	}
	/* delete, incr, decr, touch: the key */
	if (a[0].len > MC_KEY_MAX)
		return mc__fail(req, MC_ERR_BAD_FORMAT, line_total);
	req->key = mc__tok_ptr(in, &a[0], p->scratch);
	req->key_len = a[0].len;
	return 1;
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
		switch (req->cmd) {
		case MC_CMD_SET: case MC_CMD_ADD: case MC_CMD_REPLACE:
		case MC_CMD_APPEND: case MC_CMD_PREPEND: case MC_CMD_CAS:
			return LINE(out, "STORED");
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
	w = mc__put_u64(w, flags);
	*w++ = ' ';
	w = mc__put_u64(w, vlen);
	if (req->ret_cas) {
		*w++ = ' ';
		w = mc__put_u64(w, cas);
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
	                           (size_t)(mc__put_u64(buf, value) - buf));
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
