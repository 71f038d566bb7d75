/* proto: memcached's meta commands (mg ms md ma mn me). */
#include "proto/mc_internal.h"

/* memcached refuses a meta line of more than 19 tokens (name, key, flags). */
#define META_MAX_TOKENS 19

/* --- the flag table (MC_META_FLAGS) ------------------------------------ */

enum meta_arg { MA_NONE = 0, MA_FLAG, MA_BOOL, MA_I32, MA_U32, MA_U64,
                MA_OPAQUE, MA_MODE };
enum meta_ret { MR_NONE = 0, MR_OPAQUE, MR_KEY, MR_CAS, MR_SIZE, MR_TTL,
                MR_FLAGS, MR_LAST_ACCESS, MR_FETCHED };

struct meta_flag {
	uint8_t arg;      /* enum meta_arg; MA_NONE: not a flag */
	uint8_t ret;      /* enum meta_ret */
	uint8_t in;       /* MC_MREP_* */
	uint8_t err;      /* enum mc_err for a bad argument */
	uint16_t off;     /* offsetof(struct mc_request, field) */
};

/* Indexed by the letter. */
static const struct meta_flag meta_flags[128] = {
#define MC_X_MFLAG(l, arg_, field, err_, for_, ret_, in_, help)               \
	[l] = {.arg = MA_##arg_, .ret = MR_##ret_, .in = in_,                  \
	       .err = MC_ERR_##err_,                                          \
	       .off = offsetof(struct mc_request, field)},
	MC_META_FLAGS(MC_X_MFLAG)
#undef MC_X_MFLAG
};

/* Each field is as wide as its argument kind stores. */
#define MA_WIDTH_FLAG sizeof(uint64_t)
#define MA_WIDTH_BOOL sizeof(uint8_t)
#define MA_WIDTH_I32 sizeof(int64_t)
#define MA_WIDTH_U32 sizeof(uint32_t)
#define MA_WIDTH_U64 sizeof(uint64_t)
#define MA_WIDTH_OPAQUE ((size_t)MC_META_OPAQUE_MAX)
#define MA_WIDTH_MODE sizeof(char)
#define MC_X_MCHECK(l, arg_, field, err_, for_, ret_, in_, help)              \
	_Static_assert(sizeof(((struct mc_request *)0)->field) ==              \
	               MA_WIDTH_##arg_, "meta flag " #l ": field width");
MC_META_FLAGS(MC_X_MCHECK)
#undef MC_X_MCHECK

/* Stores flag f's argument (arg: the token without its letter; t: the
 * whole token) into req. MC_ERR_NONE or f's error. */
static enum mc_err meta_arg(struct mc_request *req, const struct meta_flag *f,
                            const struct mc__tok *t, const struct mc__tok *arg)
{
	char *field = (char *)req + f->off;
	int32_t i32;
	uint32_t u32;
	uint64_t u64;
	int64_t i64;

	switch (f->arg) {
	case MA_BOOL:
		*(uint8_t *)field = 1;
		return MC_ERR_NONE;
	case MA_I32:
		if (!mc__tok_i32(arg, &i32))
			return (enum mc_err)f->err;
		i64 = i32;
		memcpy(field, &i64, sizeof(i64));
		return MC_ERR_NONE;
	case MA_U32:
		if (!mc__tok_u32(arg, &u32))
			return (enum mc_err)f->err;
		memcpy(field, &u32, sizeof(u32));
		return MC_ERR_NONE;
	case MA_U64:
		if (!mc__tok_u64(arg, &u64))
			return (enum mc_err)f->err;
		memcpy(field, &u64, sizeof(u64));
		return MC_ERR_NONE;
	case MA_OPAQUE:
		if (t->len > MC_META_OPAQUE_MAX)
			return (enum mc_err)f->err;
		memcpy(field, arg->buf, arg->len);
		req->meta.opaque_len = (uint8_t)arg->len;
		return MC_ERR_NONE;
	case MA_MODE:
		if (t->len != 2)
			return (enum mc_err)f->err;
		*field = t->buf[1];
		return MC_ERR_NONE;
	default: /* MA_FLAG: the bit is all */
		return MC_ERR_NONE;
	}
}

/* Parses one flag token into req; returns MC_ERR_NONE or the error. */
static enum mc_err meta_flag(struct mc_request *req, const struct mc__tok *t,
                             uint64_t *seen)
{
	unsigned char o = (unsigned char)t->buf[0];
	const struct meta_flag *f;
	struct mc__tok arg;
	enum mc_err err;

	if (!((o >= 'a' && o <= 'z') || (o >= 'A' && o <= 'Z')))
		return (o >= 127 || o == '\0') ? MC_ERR_META_DUP_FLAG
		                               : MC_ERR_META_INVALID_FLAG;
	if (*seen & MC_MF(o))
		return MC_ERR_META_DUP_FLAG;
	*seen |= MC_MF(o);
	f = &meta_flags[o];
	if (f->arg == MA_NONE)
		return MC_ERR_META_INVALID_FLAG;

	/* The argument is the token without its letter. */
	arg = *t;
	arg.len = t->len - 1;
	memmove(arg.buf, t->buf + 1, MC__TOKBUF);
	arg.buf[MC__TOKBUF] = '\0';
	if ((err = meta_arg(req, f, t, &arg)) != MC_ERR_NONE)
		return err;
	req->meta.flags |= MC_MF(o);
	req->meta.order[req->meta.norder++] = (char)o;
	return MC_ERR_NONE;
}

/* The M token against the modes of ms and ma (other commands take any). */
static enum mc_err meta_mode(const struct mc_request *req)
{
	if (req->cmd == MC_CMD_MS) {
		switch (req->meta.mode) {
		case 0: case 'E': case 'A': case 'P': case 'R': case 'S':
		case 'e': case 'a': case 'p': case 'r': case 's':
			return MC_ERR_NONE;
		default:
			return MC_ERR_META_MS_MODE;
		}
	}
	if (req->cmd == MC_CMD_MA) {
		switch (req->meta.mode) {
		case 0: case 'I': case 'i': case '+': case 'D': case 'd': case '-':
			return MC_ERR_NONE;
		default:
			return MC_ERR_META_MA_MODE;
		}
	}
	return MC_ERR_NONE;
}

/* Sets req->key from the key token, decoding it into the scratch when b
 * was given. MC_ERR_NONE or MC_ERR_META_BAD_KEY. */
static enum mc_err meta_key(struct mc_parser *p, struct bp_chain *in,
                            struct mc_request *req, const struct mc__tok *key)
{
	const char *kp = mc__tok_ptr(in, key, p->scratch);
	char enc[MC_KEY_MAX];
	long n;

	req->key = kp;
	req->key_len = key->len;
	if (!req->meta.key_b64)
		return MC_ERR_NONE;
	/* The scratch may hold the encoded key: decode from a copy. */
	memcpy(enc, kp, key->len);
	n = mc__b64_decode(enc, key->len, (unsigned char *)p->scratch,
	                   sizeof(p->scratch));
	req->key = p->scratch;
	req->key_len = n > 0 ? (uint32_t)n : 0;
	return n > 0 ? MC_ERR_NONE : MC_ERR_META_BAD_KEY;
}

int mc__meta_parse(struct mc_parser *p, struct bp_chain *in,
                   struct mc_request *req, struct mc__cur *k,
                   size_t line_total)
{
	struct mc__tok key, t;
	int32_t vlen = 0;
	int ntok = 2;
	enum mc_err err = MC_ERR_NONE;
	uint64_t seen = 0;

	if (req->cmd == MC_CMD_MN)
		return 1;
	if (!mc__cur_token(k, &key))
		return mc__fail(req, MC_ERR_UNKNOWN_COMMAND, line_total);
	if (key.len > MC_KEY_MAX)
		return mc__fail(req, MC_ERR_BAD_FORMAT, line_total);
	if (req->cmd == MC_CMD_MA)
		req->delta = 1;

	if (req->cmd == MC_CMD_ME) {
		/* me takes no flags, only a "b" after the key. */
		if (mc__cur_token(k, &t) && mc__tok_is(&t, "b"))
			req->meta.key_b64 = 1;
	} else {
		if (req->cmd == MC_CMD_MS) {
			if (!mc__cur_token(k, &t) || !mc__tok_i32(&t, &vlen) ||
			    vlen < 0)
				return mc__fail(req, MC_ERR_BAD_FORMAT, line_total);
			ntok++;
		}
		/* All tokens are counted (memcached refuses a long line
		 * before it looks at any flag); the first bad flag decides
		 * the error. */
		while (mc__cur_token(k, &t)) {
			if (++ntok <= META_MAX_TOKENS && err == MC_ERR_NONE)
				err = meta_flag(req, &t, &seen);
		}
		if (ntok > META_MAX_TOKENS) /* memcached spells it two ways */
			err = req->cmd == MC_CMD_MG ? MC_ERR_META_TOO_MANY
			                            : MC_ERR_META_TOO_MANY_MS;
		if (err == MC_ERR_NONE)
			err = meta_mode(req);
	}
	if (err == MC_ERR_NONE)
		err = meta_key(p, in, req, &key);
	if (err != MC_ERR_NONE && err != MC_ERR_META_TOO_MANY_MS &&
	    err != MC_ERR_META_MA_MODE &&
	    (req->cmd == MC_CMD_MD || req->cmd == MC_CMD_MA))
		err = MC_ERR_META_INVALID_OR_DUP;

	if (req->cmd == MC_CMD_MS)
		return mc__text_expect_value(p, in, req, line_total, vlen, err);
	if (err != MC_ERR_NONE)
		return mc__fail(req, err, line_total);
	return 1;
}

/* --- answers ----------------------------------------------------------- */

/* Room for a status line: code, numbers, opaque, base64 key. */
#define META_LINE_MAX (64 + 8 * 24 + MC_META_OPAQUE_MAX + 4 * MC_KEY_MAX / 3 + 8)

/* Each number a return flag writes takes at most 24 bytes of it. */
#define MC_X_MNUM(l, arg_, field, err_, for_, ret_, in_, help)                \
	+(MR_##ret_ >= MR_CAS)
_Static_assert(0 MC_META_FLAGS(MC_X_MNUM) <= 8,
               "META_LINE_MAX has room for 8 numeric return flags");
#undef MC_X_MNUM
#define MC_X_MRET(l, arg_, field, err_, for_, ret_, in_, help)                \
	_Static_assert((MR_##ret_ == MR_NONE) == ((in_) == 0),                 \
	               "meta flag " #l ": a return value needs answers");
MC_META_FLAGS(MC_X_MRET)
#undef MC_X_MRET

static char *put_key(char *w, const struct mc_request *req)
{
	if (!req->meta.key_b64)
		return mc__put(w, req->key, req->key_len);
	w += mc__b64_encode((const unsigned char *)req->key, req->key_len, w);
	return MC__PUTS(w, " b");
}

/* Writes " <letter><value>" for each flag of req, in request order, that
 * answers of kind `in` (MC_MREP_*) carry; values from req and info. */
static char *put_ret_flags(char *w, const struct mc_request *req,
                           const struct mc_item_info *info, unsigned in)
{
	int64_t ttl = info->ttl;

	for (int i = 0; i < req->meta.norder; i++) {
		char l = req->meta.order[i];
		const struct meta_flag *f = &meta_flags[(unsigned char)l];

		/* mg: T and a vivifying N set the time to live where they
		 * stand, so a t after them reports the new one (memcached
		 * applies mg's flags in order). */
		if (in == MC_MREP_HIT && l == 'T')
			ttl = info->ttl_touch;
		else if (in == MC_MREP_HIT && l == 'N' && info->vivified)
			ttl = info->ttl_vivify;
		if (!(f->in & in))
			continue;
		*w++ = ' ';
		*w++ = l;
		switch (f->ret) {
		case MR_OPAQUE:
			w = mc__put(w, req->meta.opaque, req->meta.opaque_len);
			break;
		case MR_KEY: w = put_key(w, req); break;
		case MR_CAS: w = bp_dec_put_u64(w, info->cas); break;
		case MR_SIZE: w = bp_dec_put_u64(w, info->size); break;
		case MR_TTL: w = bp_dec_put_i64(w, ttl); break;
		case MR_FLAGS: w = bp_dec_put_u64(w, info->flags); break;
		case MR_LAST_ACCESS:
			w = bp_dec_put_u64(w, info->last_access);
			break;
		case MR_FETCHED: *w++ = info->fetched ? '1' : '0'; break;
		}
	}
	return w;
}

int mc__meta_encode_status(struct bp_chain *out, const struct mc_request *req,
                           enum mc_status st, uint64_t cas)
{
	const char *code;
	char *start, *w;

	if (req->cmd == MC_CMD_MN)
		return mc_text_encode_line(out, "MN", 2);
	switch (st) {
	case MC_ST_OK:
		if (req->quiet)
			return 0;
		code = "HD";
		break;
	case MC_ST_NOT_FOUND:
		if (req->cmd == MC_CMD_MG || req->cmd == MC_CMD_ME) {
			if (req->quiet)
				return 0;
			code = "EN";
		} else {
			code = "NF";
		}
		break;
	case MC_ST_EXISTS:
		code = "EX";
		break;
	case MC_ST_NOT_STORED:
		code = "NS";
		break;
	default: {
		/* Errors are lines of their own, never suppressed. */
		struct mc_request r = *req;
		r.noreply = 0;
		return mc__text_encode_status(out, &r, st);
	}
	}
	start = mc__wbegin(out, META_LINE_MAX);
	if (start == NULL)
		return -ENOMEM;
	w = mc__put(start, code, 2);
	/* A status line describes an item only for ms: the one stored. */
	w = put_ret_flags(w, req, &(struct mc_item_info){.cas = cas},
	                  mc_cmd_is_store(req->cmd) ? MC_MREP_STORE
	                                            : MC_MREP_STATUS);
	w = MC__PUTS(w, "\r\n");
	mc__wend(out, start, w);
	return 0;
}

int mc_meta_encode_hit(struct bp_chain *out, const struct mc_request *req,
                       const struct mc_item_info *info,
                       const struct bp_slice *value)
{
	int with_value = (req->meta.flags & MC_MF('v')) != 0;
	uint32_t vlen = value != NULL ? value->len : 0;
	char *start, *w;
	int rc;

	start = mc__wbegin(out, META_LINE_MAX);
	if (start == NULL)
		return -ENOMEM;
	if (with_value) {
		w = MC__PUTS(start, "VA ");
		w = bp_dec_put_u64(w, vlen);
	} else {
		w = MC__PUTS(start, "HD");
	}
	w = put_ret_flags(w, req, info, MC_MREP_HIT);
	if (info->token_sent)
		w = MC__PUTS(w, " Z");
	if (info->stale)
		w = MC__PUTS(w, " X");
	if (info->won)
		w = MC__PUTS(w, " W");
	w = MC__PUTS(w, "\r\n");
	mc__wend(out, start, w);
	if (!with_value)
		return 0;
	if ((rc = mc__append_value(out, value)) != 0)
		return rc;
	return mc__wsmall(out, "\r\n", 2);
}

int mc_meta_encode_arith(struct bp_chain *out, const struct mc_request *req,
                         const struct mc_item_info *info, uint64_t value)
{
	int with_value = (req->meta.flags & MC_MF('v')) != 0;
	char num[24], *ne = bp_dec_put_u64(num, value);
	char *start, *w;

	if (req->quiet)
		return 0;
	start = mc__wbegin(out, META_LINE_MAX + 24);
	if (start == NULL)
		return -ENOMEM;
	if (with_value) {
		w = MC__PUTS(start, "VA ");
		w = bp_dec_put_u64(w, (uint64_t)(ne - num));
	} else {
		w = MC__PUTS(start, "HD");
	}
	w = put_ret_flags(w, req, info, MC_MREP_ARITH);
	w = MC__PUTS(w, "\r\n");
	if (with_value) {
		w = mc__put(w, num, (size_t)(ne - num));
		w = MC__PUTS(w, "\r\n");
	}
	mc__wend(out, start, w);
	return 0;
}
