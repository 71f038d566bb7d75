/* proto: memcached's binary protocol (parsing and answers). */
#include "proto/mc_internal.h"

static inline uint16_t be16(const unsigned char *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t be32(const unsigned char *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t be64(const unsigned char *p)
{
	return ((uint64_t)be32(p) << 32) | be32(p + 4);
}

static inline unsigned char *put16(unsigned char *w, uint16_t v)
{
	w[0] = (unsigned char)(v >> 8);
	w[1] = (unsigned char)v;
	return w + 2;
}

static inline unsigned char *put32(unsigned char *w, uint32_t v)
{
	w[0] = (unsigned char)(v >> 24);
	w[1] = (unsigned char)(v >> 16);
	w[2] = (unsigned char)(v >> 8);
	w[3] = (unsigned char)v;
	return w + 4;
}

static inline unsigned char *put64(unsigned char *w, uint64_t v)
{
	put32(w, (uint32_t)(v >> 32));
	return put32(w + 4, (uint32_t)v);
}

/* Does the request's (extlen, keylen, bodylen) fit the opcode's shape? */
static int shape_ok(enum mc_bin_shape shape, uint32_t ext, uint32_t key,
                    uint32_t body)
{
	switch (shape) {
	case MC_SHAPE_NONE:
		return ext == 0 && key == 0 && body == 0;
	case MC_SHAPE_KEY:
		return ext == 0 && key > 0 && body == key;
	case MC_SHAPE_STORE:
		return ext == 8 && key > 0;
	case MC_SHAPE_CONCAT:
		return ext == 0 && key > 0;
	case MC_SHAPE_ARITH:
		return ext == 20 && key > 0 && body == key + 20;
	case MC_SHAPE_FLUSH:
		return key == 0 && (ext == 0 || ext == 4) && body == ext;
	case MC_SHAPE_STAT:
		return ext == 0 && body == key;
	case MC_SHAPE_VERBOSITY:
		return ext == 4 && key == 0 && body == 4;
	case MC_SHAPE_TOUCH:
		return ext == 4 && key > 0 && body == key + 4;
	case MC_SHAPE_SASL:
		return ext == 0;
	}
	return 0;
}

unsigned mc__bin_peek(const unsigned char *h, const unsigned char *end,
                      struct mc_key_view *keys, unsigned max)
{
	unsigned n = 0;
	while (n < max && (size_t)(end - h) >= MC_BIN_HDR_LEN && h[0] == MC_BIN_REQ_MAGIC) {
		uint32_t keylen = be16(h + 2), extlen = h[4], bodylen = be32(h + 8);
		const struct mc_bin_opdesc *d = mc_bin_lookup(h[1]);
		if (d == NULL || bodylen > (size_t)(end - h) - MC_BIN_HDR_LEN ||
		    keylen + extlen > bodylen || keylen > MC_KEY_MAX ||
		    !shape_ok(d->shape, extlen, keylen, bodylen))
			break;
		if (d->cmd == MC_CMD_GET)
			keys[n++] = (struct mc_key_view){
				(const char *)h + MC_BIN_HDR_LEN + extlen, keylen};
		h += MC_BIN_HDR_LEN + bodylen;
	}
	return n;
}

unsigned mc_bin_peek_get_keys(const struct bp_chain *in, struct mc_key_view *keys,
                              unsigned max)
{
	struct iovec iov;
	if (bp_chain_write_iov(in, &iov, 1, NULL) != 1)
		return 0;
	const unsigned char *h = iov.iov_base;
	return mc__bin_peek(h, h + iov.iov_len, keys, max);
}

int mc__bin_parse(struct mc_parser *p, struct bp_chain *in,
                  struct mc_request *req)
{
	unsigned char hb[MC_BIN_HDR_LEN], eb[20];
	const unsigned char *h, *e;
	const struct mc_bin_opdesc *d;
	size_t len = bp_chain_len(in);
	uint32_t keylen, extlen, bodylen, vlen;
	size_t total;

	if (len < MC_BIN_HDR_LEN) {
		p->need = MC_BIN_HDR_LEN;
		return -EAGAIN;
	}
	h = (const unsigned char *)bp_chain_view(in, 0, MC_BIN_HDR_LEN, hb);

	memset(req, 0, sizeof(*req));
	req->proto = MC_PROTO_BINARY;
	req->opcode = h[1];
	keylen = be16(h + 2);
	extlen = h[4];
	bodylen = be32(h + 8);
	req->opaque = be32(h + 12);
	req->cas = be64(h + 16);
	total = (size_t)MC_BIN_HDR_LEN + bodylen;

	if (h[0] != MC_BIN_REQ_MAGIC)
		return mc__fail(req, MC_ERR_BAD_MAGIC, len);
	if (bodylen > p->body_max)
		return mc__fail(req, MC_ERR_BODY_TOO_LARGE, total);
	d = mc_bin_lookup(req->opcode);
	if (d == NULL)
		/* Skip exactly the body; memcached swallows bodylen bytes
		 * counted from after the key and extras, and so misreads
		 * the rest of the stream. */
		return mc__fail(req, MC_ERR_UNKNOWN_COMMAND, total);
	req->cmd = d->cmd;
	req->quiet = d->quiet;
	req->ret_key = d->ret_key;
	if (keylen + extlen > bodylen)
		return mc__fail(req, MC_ERR_BAD_LENGTHS, total);
	if (keylen > MC_KEY_MAX || !shape_ok(d->shape, extlen, keylen, bodylen))
		return mc__fail(req, MC_ERR_EINVAL, total);
	vlen = bodylen - keylen - extlen;
	if (vlen > p->item_max) {
		/* Wait for the key (at most 250 bytes past the header): it lets
		 * the server drop the stale item, as memcached does for a SET
		 * that is too large, however the bytes arrive. */
		if (len < (size_t)MC_BIN_HDR_LEN + extlen + keylen) {
			p->need = (size_t)MC_BIN_HDR_LEN + extlen + keylen;
			return -EAGAIN;
		}
		req->key = (const char *)bp_chain_view(in, MC_BIN_HDR_LEN + extlen,
		                                       keylen, p->scratch);
		req->key_len = keylen;
		return mc__fail(req, MC_ERR_E2BIG, total);
	}
	if (len < total) {
		p->need = total;
		return -EAGAIN;
	}

	if (extlen) {
		e = (const unsigned char *)bp_chain_view(in, MC_BIN_HDR_LEN,
		                                         extlen, eb);
		switch (d->shape) {
		case MC_SHAPE_STORE:
			req->flags = be32(e);
			req->exptime = be32(e + 4);
			break;
		case MC_SHAPE_ARITH:
			req->delta = be64(e);
			req->initial = be64(e + 8);
			req->exptime = be32(e + 16);
			req->no_create = be32(e + 16) == 0xffffffffu;
			break;
		case MC_SHAPE_FLUSH:
			req->exptime = be32(e);
			req->has_exptime = 1;
			break;
		case MC_SHAPE_VERBOSITY:
			req->level = be32(e);
			break;
		case MC_SHAPE_TOUCH:
			req->exptime = be32(e);
			break;
		default:
			break;
		}
	}
	if (keylen) {
		req->key = (const char *)bp_chain_view(
			in, MC_BIN_HDR_LEN + extlen, keylen, p->scratch);
		req->key_len = keylen;
	}
	req->value_off = MC_BIN_HDR_LEN + extlen + keylen;
	req->value_len = vlen;
	req->total = total;
	if (req->cmd == MC_CMD_QUIT)
		req->close = 1;
	return 1;
}

/* --- answers ----------------------------------------------------------- */

static unsigned char *hdr(unsigned char *w, const struct mc_request *req,
                          uint16_t status, uint8_t extlen, uint16_t keylen,
                          uint32_t bodylen, uint64_t cas)
{
	w[0] = MC_BIN_RES_MAGIC;
	w[1] = req->opcode;
	put16(w + 2, keylen);
	w[4] = extlen;
	w[5] = 0; /* raw bytes */
	put16(w + 6, status);
	put32(w + 8, bodylen);
	put32(w + 12, req->opaque);
	put64(w + 16, cas);
	return w + MC_BIN_HDR_LEN;
}

/* A packet whose body is small and written here (message, key, number). */
static int packet(struct bp_chain *out, const struct mc_request *req,
                  uint16_t status, const void *ext, uint8_t extlen,
                  const void *key, uint16_t keylen, const void *val,
                  uint32_t vlen, uint64_t cas)
{
	size_t n = MC_BIN_HDR_LEN + extlen + keylen + vlen;
	unsigned char *start = (unsigned char *)mc__wbegin(out, n), *w;

	if (start == NULL)
		return -ENOMEM;
	w = hdr(start, req, status, extlen, keylen,
	        (uint32_t)extlen + keylen + vlen, cas);
	if (extlen)
		w = (unsigned char *)mc__put((char *)w, ext, extlen);
	if (keylen)
		w = (unsigned char *)mc__put((char *)w, key, keylen);
	if (vlen)
		w = (unsigned char *)mc__put((char *)w, val, vlen);
	bp_chain_commit(out, n);
	return 0;
}

int mc__bin_encode_error(struct bp_chain *out, const struct mc_request *req)
{
	uint16_t code = mc__err_bin_status(req->err);
	const char *msg;
	enum mc_status st;

	if (code == 0)
		return 0; /* close without a word (bad magic) */
	switch (code) {
	case 0x03: st = MC_ST_E2BIG; break;
	case 0x81: st = MC_ST_UNKNOWN_COMMAND; break;
	default: st = MC_ST_EINVAL; break;
	}
	msg = mc__status_msg(st);
	return packet(out, req, code, NULL, 0, NULL, 0, msg,
	              (uint32_t)strlen(msg), 0);
}

int mc__bin_encode_status(struct bp_chain *out, const struct mc_request *req,
                          enum mc_status st, uint64_t cas)
{
	const char *msg = mc__status_msg(st);
	int retrieval = req->cmd == MC_CMD_GET || req->cmd == MC_CMD_GAT;

	if (st == MC_ST_OK) {
		if (req->quiet)
			return 0;
		return packet(out, req, 0, NULL, 0, NULL, 0, NULL, 0, cas);
	}
	if (st == MC_ST_NOT_FOUND && retrieval) {
		if (req->quiet)
			return 0; /* quiet GET misses are silent */
		if (req->ret_key) /* GETK/GATK: the key, no message */
			return packet(out, req, mc_status_bin_code(st), NULL, 0,
			              req->key, (uint16_t)req->key_len, NULL, 0,
			              0);
	}
	return packet(out, req, mc_status_bin_code(st), NULL, 0, NULL, 0, msg,
	              (uint32_t)strlen(msg), 0);
}

int mc_bin_encode_get_hit(struct bp_chain *out, const struct mc_request *req,
                          uint32_t flags, uint64_t cas,
                          const struct bp_slice *value)
{
	unsigned char ext[4];
	uint32_t vlen = 0;
	uint16_t klen = req->ret_key ? (uint16_t)req->key_len : 0;
	int rc;

	if (req->cmd != MC_CMD_TOUCH && value != NULL)
		vlen = value->len;
	put32(ext, flags);
	size_t n = MC_BIN_HDR_LEN + 4 + klen;
	unsigned char *start = (unsigned char *)mc__wbegin(out, n), *w;
	if (start == NULL)
		return -ENOMEM;
	w = hdr(start, req, 0, 4, klen, 4u + klen + vlen, cas);
	w = (unsigned char *)mc__put((char *)w, ext, 4);
	if (klen)
		mc__put((char *)w, req->key, klen);
	bp_chain_commit(out, n);
	if (vlen && (rc = mc__append_value(out, value)) != 0)
		return rc;
	return 0;
}

int mc_bin_encode_incr(struct bp_chain *out, const struct mc_request *req,
                       uint64_t value, uint64_t cas)
{
	unsigned char v[8];

	if (req->quiet)
		return 0;
	put64(v, value);
	return packet(out, req, 0, NULL, 0, NULL, 0, v, 8, cas);
}

int mc_bin_encode_version(struct bp_chain *out, const struct mc_request *req,
                          const char *version)
{
	return packet(out, req, 0, NULL, 0, NULL, 0, version,
	              (uint32_t)strlen(version), 0);
}

int mc_bin_encode_body(struct bp_chain *out, const struct mc_request *req,
                       enum mc_status st, const void *val, uint32_t vlen)
{
	return packet(out, req, mc_status_bin_code(st), NULL, 0, NULL, 0, val,
	              vlen, 0);
}

int mc_bin_encode_stat(struct bp_chain *out, const struct mc_request *req,
                       const char *name, size_t nlen, const char *val,
                       size_t vlen)
{
	if (nlen > UINT16_MAX || vlen > 65536)
		return -EINVAL;
	return packet(out, req, 0, NULL, 0, name, (uint16_t)nlen, val,
	              (uint32_t)vlen, 0);
}

int mc_bin_encode_stat_end(struct bp_chain *out, const struct mc_request *req)
{
	return packet(out, req, 0, NULL, 0, NULL, 0, NULL, 0, 0);
}
