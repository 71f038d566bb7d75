/* Private to proto: helpers shared by the binary, text and meta code. */
#ifndef GEECACHE_PROTO_INTERNAL_H
#define GEECACHE_PROTO_INTERNAL_H

#include <string.h>

#include "bufpool/decimal.h"
#include "proto/proto.h"

/* --- parsing entry points (return as mc_parse) ------------------------ */

int mc__bin_parse(struct mc_parser *p, struct bp_chain *in,
                  struct mc_request *req);
int mc__text_parse(struct mc_parser *p, struct bp_chain *in,
                   struct mc_request *req);
/* mc_peek_get_keys for each protocol: the keys of the GETs in [h, end). */
unsigned mc__bin_peek(const unsigned char *h, const unsigned char *end,
                      struct mc_key_view *keys, unsigned max);
unsigned mc__text_peek(const char *h, const char *end, struct mc_key_view *keys,
                       unsigned max);
/* A text storage request whose value has fully arrived: checks the
 * "\r\n" after the value. Returns 1 or -EBADMSG (bad data chunk). */
int mc__text_complete(struct bp_chain *in, struct mc_request *req);
/* The value of a storage line (text set family, ms) follows it: refuses a
 * length over body_max (close) or item_max (E2BIG, swallowed), swallows
 * the value of a line that was bad (err), else waits for the value
 * (keeping what was parsed, so the line is not read again) or checks its
 * "\r\n". */
int mc__text_expect_value(struct mc_parser *p, struct bp_chain *in,
                          struct mc_request *req, size_t line_total,
                          int32_t vlen, enum mc_err err);

/* Sets an error on req; returns -EBADMSG, or -EMSGSIZE for size errors. */
int mc__fail(struct mc_request *req, enum mc_err err, size_t total);

uint16_t mc__err_bin_status(enum mc_err err);
int mc__err_closes(enum mc_err err);
const char *mc__status_msg(enum mc_status st);

/* --- line cursor: walks [off, end) of a chain run by run, no copy ------ */

#define MC__CUR_IOV 8
#define MC__TOKBUF 40 /* leading bytes of a token kept for numbers/names */

struct mc__cur {
	const struct bp_chain *c;
	size_t off;                 /* chain offset of p */
	size_t end;                 /* chain offset where the line ends */
	const unsigned char *p, *pe; /* current run */
	struct iovec iov[MC__CUR_IOV];
	int n, i;
};

struct mc__tok {
	size_t off;       /* chain offset of the token */
	uint32_t len;
	const char *ptr;  /* the token when contiguous in one run, else NULL */
	char buf[MC__TOKBUF + 1]; /* first MC__TOKBUF bytes, NUL-terminated */
};

void mc__cur_init(struct mc__cur *k, const struct bp_chain *c, size_t off,
                  size_t end);
/* Next space-separated token; 0 at the end of the line. */
int mc__cur_token(struct mc__cur *k, struct mc__tok *t);
/* The token as a contiguous pointer: in place, or copied into scratch
 * (which must hold t->len bytes). */
const char *mc__tok_ptr(struct bp_chain *in, const struct mc__tok *t,
                        char *scratch);

/* Number parsers over a token's buf: 1 on success. Decimal digits are
 * read by bufpool/decimal.h (shared with cache). */
int mc__tok_u64(const struct mc__tok *t, uint64_t *out);
int mc__tok_u32(const struct mc__tok *t, uint32_t *out);
int mc__tok_i32(const struct mc__tok *t, int32_t *out);
/* Same over raw bytes: an optional '-', then digits; fits int32_t. */
int mc__parse_i32(const char *s, size_t n, int32_t *out);

static inline int mc__tok_is(const struct mc__tok *t, const char *s)
{
	size_t n = strlen(s);
	return t->len == n && memcmp(t->buf, s, n) == 0;
}

/* Meta commands: the name token was read; parse the rest of the line. */
int mc__meta_parse(struct mc_parser *p, struct bp_chain *in,
                   struct mc_request *req, struct mc__cur *k,
                   size_t line_total);

/* --- writing ----------------------------------------------------------- */

/* Numbers are written with bp_dec_put_u64 / bp_dec_put_i64
 * (bufpool/decimal.h). */

static inline char *mc__put(char *w, const void *s, size_t n)
{
	if (n)
		memcpy(w, s, n);
	return w + n;
}
#define MC__PUTS(w, lit) mc__put((w), (lit), sizeof(lit) - 1)

/* Reserve n bytes of the output chain; NULL on -ENOMEM. */
static inline char *mc__wbegin(struct bp_chain *out, size_t n)
{
	return (char *)bp_chain_reserve(out, n);
}
static inline void mc__wend(struct bp_chain *out, char *start, char *w)
{
	bp_chain_commit(out, (size_t)(w - start));
}

/* Appends a value slice (nothing for NULL/empty): by reference, or by copy
 * when it is shorter than the output chain's copy threshold
 * (bp_chain_set_copy_below; 0 makes every value a reference). */
static inline int mc__append_value(struct bp_chain *out,
                                   const struct bp_slice *v)
{
	if (v == NULL || v->len == 0)
		return 0;
	return bp_chain_append_slice(out, v);
}

/* Appends small bytes through reserve/commit (not counted as a copy:
 * these are protocol framing, not payload). */
static inline int mc__wsmall(struct bp_chain *out, const char *s, size_t n)
{
	char *w = mc__wbegin(out, n);
	if (w == NULL)
		return -ENOMEM;
	memcpy(w, s, n);
	bp_chain_commit(out, n);
	return 0;
}

/* Base64 (standard alphabet, padded). decode returns the length or -1. */
long mc__b64_decode(const char *src, size_t n, unsigned char *dst, size_t cap);
size_t mc__b64_encode(const unsigned char *src, size_t n, char *dst);

/* Meta encoders for statuses (called from mc_encode_status). */
int mc__meta_encode_status(struct bp_chain *out, const struct mc_request *req,
                           enum mc_status st, uint64_t cas);
int mc__text_encode_status(struct bp_chain *out, const struct mc_request *req,
                           enum mc_status st);
int mc__bin_encode_status(struct bp_chain *out, const struct mc_request *req,
                          enum mc_status st, uint64_t cas);
int mc__bin_encode_error(struct bp_chain *out, const struct mc_request *req);

#endif /* GEECACHE_PROTO_INTERNAL_H */
