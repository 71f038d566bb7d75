/*
 * libFuzzer target for the proto parsers. Built three times (see smoke.sh):
 *   -DFUZZ_PROTO=1  binary     -DFUZZ_PROTO=2  text     -DFUZZ_PROTO=3  meta
 * The input's first byte picks how the rest is cut into chain blocks, so
 * block boundaries fall everywhere; the data is fed block by block like a
 * socket would, each parse is answered with the encoders and consumed, and
 * invariants are checked (abort on violation).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

#ifndef FUZZ_PROTO
#define FUZZ_PROTO 1
#endif

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static struct bp_pool *pool;

static void add_block(struct bp_chain *c, const uint8_t *d, size_t n)
{
	struct bp_block *b;

	if (n == 0)
		return;
	b = bp_block_get(pool, n);
	CHECK(b != NULL);
	memcpy(bp_block_data(b), d, n);
	CHECK(bp_chain_adopt(c, b, 0, (uint32_t)n) == 0);
}

static void answer(struct mc_parser *p, struct bp_chain *in,
                   struct bp_chain *out, const struct mc_request *r)
{
	struct mc_item_info info = {.flags = 1, .size = 3, .cas = 2, .ttl = -1};
	struct bp_slice v;
	size_t pos = 0, kl;
	const char *k;
	struct iovec iov[16];

	CHECK(r->key_len <= MC_KEY_MAX);
	CHECK(r->total <= bp_chain_len(in));
	CHECK(r->value_off + r->value_len <= r->total);
	if (r->value_len)
		CHECK(mc_req_value_iov(r, in, iov, 16) != 0);
	while (mc_req_next_key(p, in, r, &pos, &k, &kl) == 1) {
		CHECK(kl > 0 && kl <= MC_KEY_MAX);
		(void)k;
	}
	memset(&v, 0, sizeof(v));
	if (r->value_len && mc_req_value_slice(r, in, &v) != 0)
		memset(&v, 0, sizeof(v));
	switch (r->cmd) {
	case MC_CMD_GET: case MC_CMD_GAT: case MC_CMD_TOUCH:
		if (r->proto == MC_PROTO_BINARY)
			CHECK(mc_bin_encode_get_hit(out, r, 1, 2, &v) == 0);
		else
			CHECK(mc_text_encode_value(out, r, r->key, r->key_len,
			                           1, 2, &v) == 0);
		break;
	case MC_CMD_MG:
		CHECK(mc_meta_encode_hit(out, r, &info, &v) == 0);
		break;
	case MC_CMD_MA:
		CHECK(mc_meta_encode_arith(out, r, &info, 12345) == 0);
		break;
	case MC_CMD_INCR: case MC_CMD_DECR:
		if (r->proto == MC_PROTO_BINARY)
			CHECK(mc_bin_encode_incr(out, r, 7, 8) == 0);
		else
			CHECK(mc_text_encode_number(out, r, 7) == 0);
		break;
	default:
		break;
	}
	for (int st = 0; st < MC_ST__COUNT; st++)
		CHECK(mc_encode_status(out, r, (enum mc_status)st, 9) == 0);
	bp_slice_release(&v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mc_parser p;
	struct mc_parser_opts o = {.item_max = 4096, .body_max = 1 << 20,
	                           .line_max = 1024};
	struct bp_chain in, out;
	struct mc_request r;
	size_t pos = 1, step;
	int closed = 0;

	if (pool == NULL) {
		struct bp_pool_opts po = {.name = "fuzz", .limit = 0};
		pool = bp_pool_create(&po);
		CHECK(pool != NULL);
	}
	if (size < 1)
		return 0;
	step = (size_t)(data[0] % 32) + 1;
	o.proto = FUZZ_PROTO == 1 ? MC_PROTO_BINARY : MC_PROTO_TEXT;
	mc_parser_init(&p, &o);
	bp_chain_init(&in, pool);
	bp_chain_init(&out, pool);
#if FUZZ_PROTO == 3
	{
		static const uint8_t m = 'm';
		add_block(&in, &m, 1); /* steer the first line to a meta command */
	}
#endif
	while (!closed) {
		size_t n = size - pos < step ? size - pos : step;
		add_block(&in, data + pos, n);
		pos += n;
		{
			/* The prefetch hint reads the same bytes first (as the
			 * server does): its keys must lie inside the first block. */
			struct mc_key_view kv[8];
			struct iovec first;
			unsigned nk = mc_bin_peek_get_keys(&in, kv, 8);
			if (nk) {
				CHECK(bp_chain_write_iov(&in, &first, 1, NULL) == 1);
				for (unsigned i = 0; i < nk; i++)
					CHECK(kv[i].key >= (const char *)first.iov_base &&
					      kv[i].key + kv[i].len <=
					              (const char *)first.iov_base + first.iov_len);
			}
			/* netpoll's on_peek: raw bytes, binary or text. */
			const char *raw = (const char *)data + pos - n;
			nk = mc_peek_get_keys(raw, n, kv, 8);
			for (unsigned i = 0; i < nk; i++)
				CHECK(kv[i].key >= raw && kv[i].len > 0 &&
				      kv[i].key + kv[i].len <= raw + n);
		}
		for (;;) {
			int rc = mc_parse(&p, &in, &r);
			if (rc == -EAGAIN) {
				CHECK(p.need == 0 || p.need > bp_chain_len(&in) ||
				      p.swallow);
				break;
			}
			if (rc == 1) {
				CHECK(r.err == MC_ERR_NONE);
				answer(&p, &in, &out, &r);
				closed = r.close;
			} else {
				CHECK(rc == -EBADMSG || rc == -EMSGSIZE);
				CHECK(r.err != MC_ERR_NONE);
				CHECK(mc_encode_error(&out, &r) == 0);
				closed = r.close;
			}
			if (closed)
				break;
			mc_parser_consume(&p, &in, &r);
			bp_chain_deinit(&out); /* "sent" */
		}
		if (pos >= size)
			break;
	}
	bp_chain_deinit(&in);
	bp_chain_deinit(&out);
	return 0;
}
