/* geecache-bench: encoding, parsing, verification (see lg.h). */
#include "bench/loadgen/lg.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lg_values_init(struct lg_values *v, struct bp_pool *pool, uint32_t min,
                   uint32_t max)
{
	v->min = min;
	v->max = max;
	size_t n = (size_t)max + LG_PATTERN_PAD;
	struct bp_block *b = bp_block_get(pool, n);
	if (!b)
		return -ENOMEM;
	uint64_t x = 0x9e3779b97f4a7c15ull;
	char *p = bp_block_data(b);
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (char)('!' + x % 94); /* printable: text protocol friendly */
	}
	v->pattern = (struct bp_slice){b, 0, (uint32_t)n};
	return 0;
}

void lg_values_deinit(struct lg_values *v)
{
	bp_slice_release(&v->pattern);
}

uint32_t lg_value_len(const struct lg_values *v, uint64_t k)
{
	if (v->max == v->min)
		return v->min;
	uint64_t h = k * 0x9e3779b97f4a7c15ull;
	return v->min + (uint32_t)((h >> 32) % (v->max - v->min + 1));
}

/* "k%011llu" of k mod 10^11, written by hand: snprintf was a tenth of the
 * load generator's CPU on a pipelined run (perf), CPU the server under
 * test then did not get. */
void lg_key(uint64_t k, char out[LG_KEY_LEN])
{
	k %= 100000000000ull;
	out[0] = 'k';
	for (int i = LG_KEY_LEN - 1; i > 0; i--) {
		out[i] = (char)('0' + k % 10);
		k /= 10;
	}
}

static void put_be16(unsigned char *p, uint16_t x)
{
	p[0] = (unsigned char)(x >> 8);
	p[1] = (unsigned char)x;
}

static void put_be32(unsigned char *p, uint32_t x)
{
	p[0] = (unsigned char)(x >> 24);
	p[1] = (unsigned char)(x >> 16);
	p[2] = (unsigned char)(x >> 8);
	p[3] = (unsigned char)x;
}

int lg_encode(struct bp_chain *out, enum lg_proto proto, enum lg_op op,
              uint64_t k, const struct lg_values *v, uint32_t opaque)
{
	char key[LG_KEY_LEN];
	lg_key(k, key);
	uint32_t vlen = op == LG_SET ? lg_value_len(v, k) : 0;
	struct bp_slice val = v->pattern;
	val.off += lg_value_off(k);
	val.len = vlen;
	if (proto == LG_BINARY) {
		unsigned char h[24 + 8 + LG_KEY_LEN];
		uint32_t extras = op == LG_SET ? 8 : 0;
		memset(h, 0, 24 + extras);
		h[0] = 0x80;
		h[1] = op == LG_SET ? 0x01 : 0x00;
		put_be16(h + 2, LG_KEY_LEN);
		h[4] = (unsigned char)extras;
		put_be32(h + 8, extras + LG_KEY_LEN + vlen);
		put_be32(h + 12, opaque);
		memcpy(h + 24 + extras, key, LG_KEY_LEN); /* flags 0, exptime 0 */
		if (bp_chain_append(out, h, 24 + extras + LG_KEY_LEN) < 0)
			return -ENOMEM;
		if (vlen && bp_chain_append_ref(out, &val) < 0)
			return -ENOMEM;
		return 0;
	}
	char line[64];
	int n = op == LG_SET
		? snprintf(line, sizeof(line), "set %.*s 0 0 %u\r\n", LG_KEY_LEN, key, vlen)
		: snprintf(line, sizeof(line), "get %.*s\r\n", LG_KEY_LEN, key);
	if (bp_chain_append(out, line, (size_t)n) < 0)
		return -ENOMEM;
	if (op == LG_SET) {
		if (vlen && bp_chain_append_ref(out, &val) < 0)
			return -ENOMEM;
		if (bp_chain_append(out, "\r\n", 2) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* Compares n bytes at offset off of the chain with p, without copying. */
static bool chain_equals(const struct bp_chain *c, size_t off, const char *p, size_t n)
{
	struct iovec iov[64];
	while (n) {
		size_t take = n;
		int k;
		while ((k = bp_chain_peek_iov(c, off, take, iov, 64)) == -EMSGSIZE)
			take /= 2;
		if (k < 0)
			return false;
		for (int i = 0; i < k; i++) {
			if (memcmp(iov[i].iov_base, p, iov[i].iov_len) != 0)
				return false;
			p += iov[i].iov_len;
		}
		off += take;
		n -= take;
	}
	return true;
}

static uint32_t get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static ssize_t parse_binary(const struct bp_chain *in, enum lg_op op, uint64_t k,
                            const struct lg_values *v, uint32_t opaque,
                            enum lg_result *res)
{
	unsigned char hs[24];
	const unsigned char *h = bp_chain_view((struct bp_chain *)in, 0, 24, hs);
	if (!h)
		return -EAGAIN;
	if (h[0] != 0x81)
		return -EBADMSG;
	uint32_t body = get_be32(h + 8);
	if (bp_chain_len(in) < 24 + (size_t)body)
		return -EAGAIN;
	uint16_t status = (uint16_t)(h[6] << 8 | h[7]);
	uint8_t extras = h[4];
	uint16_t klen = (uint16_t)(h[2] << 8 | h[3]);
	if (get_be32(h + 12) != opaque || h[1] != (op == LG_SET ? 0x01 : 0x00)) {
		*res = LG_WRONG;
		return 24 + (ssize_t)body;
	}
	if (status == 0x0001 && op == LG_GET)
		*res = LG_MISS;
	else if (status != 0)
		*res = LG_SRV_ERR;
	else if (op == LG_SET)
		*res = LG_STORED;
	else {
		size_t vlen = body - extras - klen;
		const char *want = bp_slice_ptr(&v->pattern) + lg_value_off(k);
		bool ok = vlen == lg_value_len(v, k) &&
		          chain_equals(in, 24 + (size_t)extras + klen, want, vlen);
		*res = ok ? LG_HIT : LG_WRONG;
	}
	return 24 + (ssize_t)body;
}

static ssize_t parse_text(const struct bp_chain *in, enum lg_op op, uint64_t k,
                          const struct lg_values *v, enum lg_result *res)
{
	ssize_t eol = bp_chain_find2(in, 0, 512, '\r', '\n');
	if (eol < 0)
		return bp_chain_len(in) >= 512 ? -EBADMSG : -EAGAIN;
	char ls[512];
	const char *l = bp_chain_view((struct bp_chain *)in, 0, (size_t)eol, ls);
	size_t n = (size_t)eol, line = n + 2;
	if (op == LG_SET) {
		*res = n == 6 && memcmp(l, "STORED", 6) == 0 ? LG_STORED
		     : (n > 12 && memcmp(l, "SERVER_ERROR", 12) == 0) ? LG_SRV_ERR : LG_WRONG;
		return (ssize_t)line;
	}
	if (n == 3 && memcmp(l, "END", 3) == 0) {
		*res = LG_MISS;
		return (ssize_t)line;
	}
	if (n < 6 || memcmp(l, "VALUE ", 6) != 0) {
		*res = n > 12 && memcmp(l, "SERVER_ERROR", 12) == 0 ? LG_SRV_ERR : LG_WRONG;
		return (ssize_t)line;
	}
	/* VALUE <key> <flags> <bytes> */
	char key[LG_KEY_LEN];
	lg_key(k, key);
	char tmp[512];
	memcpy(tmp, l, n);
	tmp[n] = 0;
	char *sp = strrchr(tmp, ' ');
	if (!sp)
		return -EBADMSG;
	unsigned long long vlen = strtoull(sp + 1, NULL, 10);
	size_t total = line + (size_t)vlen + 2 + 5; /* data, \r\n, END\r\n */
	if (bp_chain_len(in) < total)
		return -EAGAIN;
	const char *want = bp_slice_ptr(&v->pattern) + lg_value_off(k);
	bool ok = n > 6 + LG_KEY_LEN && memcmp(tmp + 6, key, LG_KEY_LEN) == 0 &&
	          tmp[6 + LG_KEY_LEN] == ' ' && vlen == lg_value_len(v, k) &&
	          chain_equals(in, line, want, (size_t)vlen) &&
	          chain_equals(in, line + (size_t)vlen, "\r\nEND\r\n", 7);
	*res = ok ? LG_HIT : LG_WRONG;
	return (ssize_t)total;
}

ssize_t lg_parse_reply(const struct bp_chain *in, enum lg_proto proto,
                       enum lg_op op, uint64_t k, const struct lg_values *v,
                       uint32_t opaque, enum lg_result *res)
{
	return proto == LG_BINARY ? parse_binary(in, op, k, v, opaque, res)
	                          : parse_text(in, op, k, v, res);
}

int lg_zipf_init(struct lg_zipf *z, uint64_t n, double alpha)
{
	z->n = n;
	z->alpha = alpha;
	z->cdf = NULL;
	if (alpha <= 0)
		return 0;
	z->cdf = malloc(n * sizeof(double));
	if (!z->cdf)
		return -ENOMEM;
	double sum = 0;
	for (uint64_t i = 0; i < n; i++) {
		sum += 1.0 / pow((double)(i + 1), alpha);
		z->cdf[i] = sum;
	}
	for (uint64_t i = 0; i < n; i++)
		z->cdf[i] /= sum;
	return 0;
}

void lg_zipf_deinit(struct lg_zipf *z)
{
	free(z->cdf);
	z->cdf = NULL;
}

uint64_t lg_zipf_sample(const struct lg_zipf *z, double u)
{
	if (!z->cdf)
		return (uint64_t)(u * (double)z->n) % z->n;
	uint64_t lo = 0, hi = z->n - 1;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (z->cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}
