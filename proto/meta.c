/* proto: memcached's meta commands (mg ms md ma mn me). */
#include "proto/internal.h"

/* memcached refuses a meta line of more than 19 tokens (name, key, flags). */
#define META_MAX_TOKENS 19

/* Parses one flag token into req; returns MC_ERR_NONE or the error. */
static enum mc_err meta_flag(struct mc_request *req, const struct mc__tok *t,
                             uint64_t *seen)
{
	unsigned char o = (unsigned char)t->buf[0];
	struct mc__tok arg;
	int32_t i32;

	if (!((o >= 'a' && o <= 'z') || (o >= 'A' && o <= 'Z')))
		return (o >= 127 || o == '\0') ? MC_ERR_META_DUP_FLAG
		                               : MC_ERR_META_INVALID_FLAG;
	if (*seen & MC_MF(o))
		return MC_ERR_META_DUP_FLAG;
	*seen |= MC_MF(o);

	/* The argument is the token without its letter. */
	arg = *t;
	arg.len = t->len - 1;
	memmove(arg.buf, t->buf + 1, MC__TOKBUF);
	arg.buf[MC__TOKBUF] = '\0';

	switch (o) {
	case 'b': req->meta.key_b64 = 1; break;
	case 'N':
		if (!mc__tok_i32(&arg, &i32))
			return MC_ERR_META_BAD_TOKEN;
		req->meta.vivify = i32;
		break;
	case 'T':
		if (!mc__tok_i32(&arg, &i32))
			return MC_ERR_META_BAD_TOKEN;
		req->exptime = i32;
		break;
	case 'R':
		if (!mc__tok_i32(&arg, &i32))
			return MC_ERR_META_BAD_TOKEN;
		req->meta.recache = i32;
		break;
	case 'O':
		if (t->len > MC_META_OPAQUE_MAX)
			return MC_ERR_META_OPAQUE;
		memcpy(req->meta.opaque, arg.buf, arg.len);
		req->meta.opaque_len = (uint8_t)arg.len;
		break;
	case 'q': req->quiet = 1; break;
	case 'F':
		if (!mc__tok_u32(&arg, &req->flags))
			return MC_ERR_BAD_FORMAT;
		break;
	case 'C':
		if (!mc__tok_u64(&arg, &req->cas))
			return MC_ERR_META_BAD_TOKEN;
		break;
	case 'M':
		if (t->len != 2)
			return MC_ERR_META_M_LENGTH;
		req->meta.mode = t->buf[1];
		break;
	case 'J':
		if (!mc__tok_u64(&arg, &req->initial))
			return MC_ERR_META_BAD_INITIAL;
		break;
	case 'D':
		if (!mc__tok_u64(&arg, &req->delta))
			return MC_ERR_META_BAD_DELTA;
		break;
	case 'l': case 'P': case 'L': case 'k': case 's': case 't': case 'c':
	case 'f': case 'v': case 'h': case 'u': case 'I':
		break;
	default:
		return MC_ERR_META_INVALID_FLAG;
	}
	req->meta.flags |= MC_MF(o);
	req->meta.order[req->meta.norder++] = (char)o;
	return MC_ERR_NONE;
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
		if (mc__cur_token(k, &t) && mc__tok_is(&t, "b"))
			req->meta.key_b64 = 1;
		goto key;
	}
	if (req->cmd == MC_CMD_MS) {
		if (!mc__cur_token(k, &t) || !mc__tok_i32(&t, &vlen) ||
		    vlen < 0)
			return mc__fail(req, MC_ERR_BAD_FORMAT, line_total);
		ntok++;
	}
	/* All tokens are counted (memcached refuses a long line before it
	 * looks at any flag); the first bad flag decides the error. */
	while (mc__cur_token(k, &t)) {
		if (++ntok <= META_MAX_TOKENS && err == MC_ERR_NONE)
			err = meta_flag(req, &t, &seen);
	}
	if (ntok > META_MAX_TOKENS)
		err = MC_ERR_META_TOO_MANY;
	if (err == MC_ERR_NONE && req->cmd == MC_CMD_MS) {
		switch (req->meta.mode) {
		case 0: case 'E': case 'A': case 'P': case 'R': case 'S':
		case 'e': case 'a': case 'p': case 'r': case 's':
			break;
		default:
			err = MC_ERR_META_MS_MODE;
		}
	}
	if (err == MC_ERR_NONE && req->cmd == MC_CMD_MA) {
		switch (req->meta.mode) {
		case 0: case 'I': case 'i': case '+': case 'D': case 'd': case '-':
			break;
		default:
			err = MC_ERR_META_MA_MODE;
		}
	}
key:
	if (err == MC_ERR_NONE) {
		const char *kp = mc__tok_ptr(in, &key, p->scratch);
		req->key = kp;
		req->key_len = key.len;
		if (req->meta.key_b64) {
			char enc[MC_KEY_MAX];
			long n;
			/* The scratch may hold the encoded key: decode from
			 * a copy. */
			memcpy(enc, kp, key.len);
			n = mc__b64_decode(enc, key.len,
			                   (unsigned char *)p->scratch,
			                   sizeof(p->scratch));
			if (n <= 0)
				err = MC_ERR_META_BAD_KEY;
			req->key = p->scratch;
			req->key_len = n > 0 ? (uint32_t)n : 0;
		}
	}
	if (err != MC_ERR_NONE && err != MC_ERR_META_TOO_MANY &&
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

static char *put_opaque(char *w, const struct mc_request *req)
{
	*w++ = ' ';
	*w++ = 'O';
	return mc__put(w, req->meta.opaque, req->meta.opaque_len);
}

static char *put_key(char *w, const struct mc_request *req)
{
	*w++ = ' ';
	*w++ = 'k';
	if (!req->meta.key_b64)
		return mc__put(w, req->key, req->key_len);
	w += mc__b64_encode((const unsigned char *)req->key, req->key_len, w);
	return MC__PUTS(w, " b");
}

static char *put_flag_u64(char *w, char f, uint64_t v)
{
	*w++ = ' ';
	*w++ = f;
	return mc__put_u64(w, v);
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
	for (int i = 0; i < req->meta.norder; i++) {
		switch (req->meta.order[i]) {
		case 'O':
			w = put_opaque(w, req);
			break;
		case 'k':
			w = put_key(w, req);
			break;
		case 'c':
			if (req->cmd == MC_CMD_MS)
				w = put_flag_u64(w, 'c', cas);
			break;
		}
	}
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
		w = mc__put_u64(w, vlen);
	} else {
		w = MC__PUTS(start, "HD");
	}
	for (int i = 0; i < req->meta.norder; i++) {
		switch (req->meta.order[i]) {
		case 's': w = put_flag_u64(w, 's', info->size); break;
		case 't':
			*w++ = ' ';
			*w++ = 't';
			w = mc__put_i64(w, info->ttl);
			break;
		case 'c': w = put_flag_u64(w, 'c', info->cas); break;
		case 'f': w = put_flag_u64(w, 'f', info->flags); break;
		case 'l': w = put_flag_u64(w, 'l', info->last_access); break;
		case 'h': w = put_flag_u64(w, 'h', info->fetched ? 1 : 0); break;
		case 'O': w = put_opaque(w, req); break;
		case 'k': w = put_key(w, req); break;
		}
	}
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
	char num[24], *ne = mc__put_u64(num, value);
	char *start, *w;

	if (req->quiet)
		return 0;
	start = mc__wbegin(out, META_LINE_MAX + 24);
	if (start == NULL)
		return -ENOMEM;
	if (with_value) {
		w = MC__PUTS(start, "VA ");
		w = mc__put_u64(w, (uint64_t)(ne - num));
	} else {
		w = MC__PUTS(start, "HD");
	}
	for (int i = 0; i < req->meta.norder; i++) {
		switch (req->meta.order[i]) {
		case 'c': w = put_flag_u64(w, 'c', info->cas); break;
		case 't':
			*w++ = ' ';
			*w++ = 't';
			w = mc__put_i64(w, info->ttl);
			break;
		case 'O': w = put_opaque(w, req); break;
		case 'k': w = put_key(w, req); break;
		}
	}
	w = MC__PUTS(w, "\r\n");
	if (with_value) {
		w = mc__put(w, num, (size_t)(ne - num));
		w = MC__PUTS(w, "\r\n");
	}
	mc__wend(out, start, w);
	return 0;
}
