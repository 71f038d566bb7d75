/* proto: the tables, the parser front door and shared helpers. */
#include "proto/mc_internal.h"

/* --- tables ------------------------------------------------------------ */

static const char *const cmd_names[MC_CMD__COUNT] = {
#define MC_X_NAME(sym, name, cls) [MC_CMD_##sym] = name,
	MC_CMDS(MC_X_NAME)
#undef MC_X_NAME
};

const char *mc_cmd_name(enum mc_cmd cmd)
{
	return (unsigned)cmd < MC_CMD__COUNT ? cmd_names[cmd] : "?";
}

static const struct mc_bin_opdesc opdescs[256] = {
#define MC_X_DESC(sym, op, cmd_, q, partner_, shape_, rk)                    \
	[op] = {.name = #sym, .cmd = MC_CMD_##cmd_, .opcode = op, .quiet = q, \
	        .partner = partner_, .ret_key = rk, .shape = shape_},
	MC_BIN_OPCODES(MC_X_DESC)
#undef MC_X_DESC
};

const struct mc_bin_opdesc *mc_bin_lookup(uint8_t opcode)
{
	const struct mc_bin_opdesc *d = &opdescs[opcode];
	return d->name != NULL ? d : NULL;
}

static const struct {
	const char *name;
	uint16_t bin;
	uint8_t close;
	const char *line;
} errs[MC_ERR__COUNT] = {
#define MC_X_ERRD(sym, st, cl, line_) [MC_ERR_##sym] = {#sym, st, cl, line_},
	MC_ERRORS(MC_X_ERRD)
#undef MC_X_ERRD
};

const char *mc_err_name(enum mc_err err)
{
	return (unsigned)err < MC_ERR__COUNT ? errs[err].name : "?";
}

const char *mc_err_line(enum mc_err err)
{
	return (unsigned)err < MC_ERR__COUNT ? errs[err].line : NULL;
}

uint16_t mc__err_bin_status(enum mc_err err)
{
	return errs[err].bin;
}

int mc__err_closes(enum mc_err err)
{
	return errs[err].close;
}

static const struct {
	uint16_t code;
	const char *msg;
} statuses[MC_ST__COUNT] = {
#define MC_X_STD(sym, code_, msg_) [MC_ST_##sym] = {code_, msg_},
	MC_STATUSES(MC_X_STD)
#undef MC_X_STD
};

uint16_t mc_status_bin_code(enum mc_status st)
{
	return (unsigned)st < MC_ST__COUNT ? statuses[st].code : 0x84;
}

const char *mc__status_msg(enum mc_status st)
{
	return (unsigned)st < MC_ST__COUNT ? statuses[st].msg : "Internal error";
}

int mc__fail(struct mc_request *req, enum mc_err err, size_t total)
{
	req->err = err;
	req->close = (uint8_t)errs[err].close;
	req->total = total;
	return (err == MC_ERR_E2BIG || err == MC_ERR_BODY_TOO_LARGE ||
	        err == MC_ERR_LINE_TOO_LONG)
	               ? -EMSGSIZE
	               : -EBADMSG;
}

/* --- parser ------------------------------------------------------------ */

void mc_parser_init(struct mc_parser *p, const struct mc_parser_opts *opts)
{
	/* The state only: `pending` is read only while has_pending says it
	 * was written, and `scratch` only after a key was copied into it.
	 * geecached inits a parser per burst of input (an idle connection
	 * keeps none), and zeroing the other ~480 bytes cost more than the
	 * rest of the init. */
	memset(p, 0, offsetof(struct mc_parser, pending));
	p->item_max = MC_DEFAULT_ITEM_MAX;
	p->body_max = MC_DEFAULT_BODY_MAX;
	p->line_max = MC_DEFAULT_LINE_MAX;
	if (opts != NULL) {
		p->proto = (uint8_t)opts->proto;
		if (opts->item_max)
			p->item_max = opts->item_max;
		if (opts->body_max)
			p->body_max = opts->body_max;
		if (opts->line_max)
			p->line_max = opts->line_max;
		p->counters = opts->counters;
	}
	if (p->item_max > p->body_max)
		p->item_max = p->body_max;
}

void mc_parser_reset(struct mc_parser *p)
{
	struct mc_parser_opts o = {
		.proto = MC_PROTO_AUTO,
		.item_max = p->item_max,
		.body_max = p->body_max,
		.line_max = p->line_max,
		.counters = p->counters,
	};
	mc_parser_init(p, &o);
}

int mc_parse(struct mc_parser *p, struct bp_chain *in, struct mc_request *req)
{
	size_t len = bp_chain_len(in);
	int rc;

	if (p->swallow) {
		size_t n = p->swallow < len ? (size_t)p->swallow : len;
		if (n)
			(void)bp_chain_skip(in, n);
		p->swallow -= n;
		len -= n;
		if (p->swallow) {
			p->need = 1;
			return -EAGAIN;
		}
	}
	if (len == 0) {
		p->need = 1;
		return -EAGAIN;
	}
	if (p->proto == MC_PROTO_AUTO)
		p->proto = bp_chain_byte(in, 0) == MC_BIN_REQ_MAGIC
		                   ? MC_PROTO_BINARY
		                   : MC_PROTO_TEXT;

	if (p->has_pending) {
		if (len < p->pending.total) {
			p->need = p->pending.total;
			return -EAGAIN;
		}
		*req = p->pending;
		if (req->key_len)
			req->key = p->scratch; /* see mc__text_expect_value */
		p->has_pending = 0;
		rc = mc__text_complete(in, req);
	} else if (p->proto == MC_PROTO_BINARY) {
		rc = mc__bin_parse(p, in, req);
	} else {
		rc = mc__text_parse(p, in, req);
	}
	if (rc == -EAGAIN)
		return rc;
	p->need = 0;
	if (p->counters != NULL) {
		if (rc == 1)
			p->counters->cmds[req->cmd]++;
		else
			p->counters->errors[req->err]++;
		p->counters->bytes += req->total;
	}
	return rc;
}

void mc_parser_consume(struct mc_parser *p, struct bp_chain *in,
                       const struct mc_request *req)
{
	size_t len = bp_chain_len(in);
	size_t n = req->total;

	if (n > len) {
		p->swallow = n - len;
		n = len;
	}
	if (n)
		(void)bp_chain_skip(in, n);
	p->scan = 0;
	p->has_pending = 0;
	p->need = 0;
}

int mc_req_value_iov(const struct mc_request *req, const struct bp_chain *in,
                     struct iovec *iov, int max_iov)
{
	return bp_chain_peek_iov(in, req->value_off, req->value_len, iov,
	                         max_iov);
}

int mc_req_value_slice(const struct mc_request *req, const struct bp_chain *in,
                       struct bp_slice *out)
{
	if (req->value_len == 0) {
		memset(out, 0, sizeof(*out));
		return 0;
	}
	return bp_chain_slice(in, req->value_off, req->value_len, out);
}

int mc_req_next_key(struct mc_parser *p, struct bp_chain *in,
                    const struct mc_request *req, size_t *pos,
                    const char **key, size_t *key_len)
{
	struct mc__cur k;
	struct mc__tok t;
	size_t from = *pos > req->keys_off ? *pos : req->keys_off;

	if (req->nkeys == 0 || from >= req->keys_end)
		return 0;
	mc__cur_init(&k, in, from, req->keys_end);
	if (!mc__cur_token(&k, &t)) {
		*pos = req->keys_end;
		return 0;
	}
	*key = mc__tok_ptr(in, &t, p->scratch);
	*key_len = t.len;
	*pos = t.off + t.len;
	return 1;
}

/* --- answers that depend only on the protocol -------------------------- */

int mc_encode_error(struct bp_chain *out, const struct mc_request *req)
{
	const char *line;

	if (req->err == MC_ERR_NONE)
		return 0;
	if (req->proto == MC_PROTO_BINARY)
		return mc__bin_encode_error(out, req);
	if (req->noreply && !req->close)
		return 0;
	line = mc_err_line(req->err);
	if (line == NULL)
		return 0;
	return mc_text_encode_line(out, line, strlen(line));
}

int mc_encode_status(struct bp_chain *out, const struct mc_request *req,
                     enum mc_status st, uint64_t cas)
{
	if (req->proto == MC_PROTO_BINARY)
		return mc__bin_encode_status(out, req, st, cas);
	if (mc_cmd_is_meta(req->cmd))
		return mc__meta_encode_status(out, req, st, cas);
	return mc__text_encode_status(out, req, st);
}

/* --- numbers ----------------------------------------------------------- */

int mc__parse_i32(const char *s, size_t n, int32_t *out)
{
	uint64_t v;
	int neg = 0;

	if (n && s[0] == '-') {
		neg = 1;
		s++;
		n--;
	}
	if (!bp_dec_parse_u64(s, n, &v))
		return 0;
	if (neg ? v > (uint64_t)INT32_MAX + 1 : v > (uint64_t)INT32_MAX)
		return 0;
	*out = neg ? (int32_t)(0 - (int64_t)v) : (int32_t)v;
	return 1;
}

int mc__tok_u64(const struct mc__tok *t, uint64_t *out)
{
	return t->len <= MC__TOKBUF && bp_dec_parse_u64(t->buf, t->len, out);
}

int mc__tok_u32(const struct mc__tok *t, uint32_t *out)
{
	uint64_t v;

	if (t->len > MC__TOKBUF || !bp_dec_parse_u64(t->buf, t->len, &v) ||
	    v > UINT32_MAX)
		return 0;
	*out = (uint32_t)v;
	return 1;
}

int mc__tok_i32(const struct mc__tok *t, int32_t *out)
{
	return t->len <= MC__TOKBUF && mc__parse_i32(t->buf, t->len, out);
}

/* --- cursor ------------------------------------------------------------ */

void mc__cur_init(struct mc__cur *k, const struct bp_chain *c, size_t off,
                  size_t end)
{
	k->c = c;
	k->off = off;
	k->end = end;
	k->p = k->pe = NULL;
	k->n = k->i = 0;
}

/* Loads the next run at k->off; 0 at the end of the line. */
static int cur_refill(struct mc__cur *k)
{
	size_t n;
	int r;

	if (++k->i < k->n) {
		k->p = (const unsigned char *)k->iov[k->i].iov_base;
		k->pe = k->p + k->iov[k->i].iov_len;
		return 1;
	}
	if (k->off >= k->end)
		return 0;
	n = k->end - k->off;
	/* More runs than iovecs: ask for less (halving), rare. */
	while ((r = bp_chain_peek_iov(k->c, k->off, n, k->iov, MC__CUR_IOV)) ==
	       -EMSGSIZE)
		n = n / 2 ? n / 2 : 1;
	if (r <= 0)
		return 0;
	k->n = r;
	k->i = 0;
	k->p = (const unsigned char *)k->iov[0].iov_base;
	k->pe = k->p + k->iov[0].iov_len;
	return 1;
}

static inline int cur_byte(struct mc__cur *k)
{
	if (k->off >= k->end)
		return -1;
	while (k->p == k->pe)
		if (!cur_refill(k))
			return -1;
	return *k->p;
}

int mc__cur_token(struct mc__cur *k, struct mc__tok *t)
{
	int ch;
	uint32_t len = 0;
	int contig = 1;

	while ((ch = cur_byte(k)) == ' ') {
		k->p++;
		k->off++;
	}
	if (ch < 0)
		return 0;
	t->off = k->off;
	t->ptr = (const char *)k->p;
	{
		/* Fast path: the token ends inside the current run. */
		size_t avail = (size_t)(k->pe - k->p);
		const unsigned char *sp = memchr(k->p, ' ', avail);
		size_t n = sp ? (size_t)(sp - k->p) : avail;
		if (sp != NULL || k->off + avail == k->end) {
			memcpy(t->buf, k->p, n < MC__TOKBUF ? n : MC__TOKBUF);
			t->buf[n < MC__TOKBUF ? n : MC__TOKBUF] = '\0';
			t->len = (uint32_t)n;
			k->p += n;
			k->off += n;
			return 1;
		}
	}
	for (;;) {
		int edge = k->p == k->pe;
		ch = cur_byte(k);
		if (ch < 0 || ch == ' ')
			break;
		if (edge)
			contig = 0;
		if (len < MC__TOKBUF)
			t->buf[len] = (char)ch;
		len++;
		k->p++;
		k->off++;
	}
	t->len = len;
	t->buf[len < MC__TOKBUF ? len : MC__TOKBUF] = '\0';
	if (!contig)
		t->ptr = NULL;
	return 1;
}

const char *mc__tok_ptr(struct bp_chain *in, const struct mc__tok *t,
                        char *scratch)
{
	if (t->ptr != NULL)
		return t->ptr;
	return (const char *)bp_chain_view(in, t->off, t->len, scratch);
}

/* --- base64 ------------------------------------------------------------ */

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long mc__b64_decode(const char *src, size_t n, unsigned char *dst, size_t cap)
{
	size_t o = 0;

	if (n == 0 || n % 4 != 0)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		int pad = 0;
		for (int j = 0; j < 4; j++) {
			unsigned char c = (unsigned char)src[i + j];
			if (c == '=' && i + 4 == n && j >= 2) {
				v[j] = 0;
				pad++;
			} else if (pad || (v[j] = b64val(c)) < 0) {
				return -1;
			}
		}
		uint32_t w = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) |
		             ((uint32_t)v[2] << 6) | (uint32_t)v[3];
		unsigned char b[3] = {(unsigned char)(w >> 16),
		                      (unsigned char)(w >> 8), (unsigned char)w};
		for (int j = 0; j < 3 - pad; j++) {
			if (o >= cap)
				return -1;
			dst[o++] = b[j];
		}
	}
	return (long)o;
}

size_t mc__b64_encode(const unsigned char *src, size_t n, char *dst)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t w = (uint32_t)src[i] << 16;
		size_t rem = n - i;
		if (rem > 1)
			w |= (uint32_t)src[i + 1] << 8;
		if (rem > 2)
			w |= src[i + 2];
		dst[o++] = b64chars[(w >> 18) & 63];
		dst[o++] = b64chars[(w >> 12) & 63];
		dst[o++] = rem > 1 ? b64chars[(w >> 6) & 63] : '=';
		dst[o++] = rem > 2 ? b64chars[w & 63] : '=';
	}
	return o;
}

unsigned mc_peek_get_keys(const void *p, size_t n, struct mc_key_view *keys,
                          unsigned max)
{
	const unsigned char *h = p;
	if (n == 0 || max == 0)
		return 0;
	if (h[0] == MC_BIN_REQ_MAGIC)
		return mc__bin_peek(h, h + n, keys, max);
	return mc__text_peek(p, (const char *)p + n, keys, max);
}
