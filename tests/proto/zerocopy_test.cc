// The claims, as counters: parsing a 1 MiB SET and answering its GET copy
// no value byte, a value below the output chain's copy threshold is copied
// exactly once, and parsing makes no allocation.
#include "util.h"

using namespace mctest;

namespace {

bp_stats stats()
{
	bp_stats s;
	bp_pool_stats(pool(), &s);
	return s;
}

uint64_t copied(const bp_stats &s)
{
	return s.copied_view_bytes + s.copied_append_bytes + s.copied_out_bytes;
}

// A 1 MiB value spread over 64 KiB blocks (real block boundaries), header
// in a block of its own.
void add_big(bp_chain *c, const std::string &head, size_t vlen,
             const std::string &tail)
{
	add_block(c, head);
	const size_t blk = 64 * 1024;
	std::string piece(blk, 'v');
	for (size_t off = 0; off < vlen; off += blk) {
		size_t n = std::min(blk, vlen - off);
		for (size_t i = 0; i < n; i++)
			piece[i] = (char)('a' + (off + i) % 26);
		add_block(c, piece.substr(0, n));
	}
	add_block(c, tail);
}

void check_value(const bp_chain *in, const mc_request &r, size_t vlen)
{
	ASSERT_EQ(r.value_len, vlen);
	iovec iov[64];
	int n = mc_req_value_iov(&r, in, iov, 64);
	ASSERT_GT(n, 1); // spans blocks, handed out without a copy
	size_t off = 0;
	for (int i = 0; i < n; i++)
		for (size_t j = 0; j < iov[i].iov_len; j++, off++)
			ASSERT_EQ(((const char *)iov[i].iov_base)[j],
			          (char)('a' + off % 26));
	ASSERT_EQ(off, vlen);
}

// The "item": one block holding the value, as the store keeps it.
bp_slice item_of(const bp_chain *in, const mc_request &r)
{
	bp_block *b = bp_block_get(pool(), r.value_len);
	iovec iov[64];
	int n = mc_req_value_iov(&r, in, iov, 64);
	char *w = bp_block_data(b);
	for (int i = 0; i < n; i++) {
		memcpy(w, iov[i].iov_base, iov[i].iov_len); // the store's one copy
		w += iov[i].iov_len;
	}
	return bp_slice{b, 0, r.value_len};
}

TEST(ZeroCopy, BinarySetAndGetOfOneMiB)
{
	const size_t vlen = 1024 * 1024;
	mc_parser p;
	mc_parser_init(&p, nullptr);
	Chain in, out;
	std::string hdr = bin_req(0x01, be32(5) + be32(0), "big", "");
	uint32_t body = (uint32_t)(8 + 3 + vlen);
	hdr.replace(8, 4, be32(body));
	add_big(&in, hdr, vlen, bin_req(0x00, "", "big", "", 7));

	mc_request r;
	bp_stats s0 = stats();
	ASSERT_EQ(mc_parse(&p, &in, &r), 1);
	bp_stats s1 = stats();
	EXPECT_EQ(copied(s1), copied(s0));
	EXPECT_EQ(s1.sys_alloc_calls, s0.sys_alloc_calls);
	EXPECT_EQ(s1.block_gets, s0.block_gets);
	check_value(&in, r, vlen);
	bp_slice item = item_of(&in, r);
	mc_parser_consume(&p, &in, &r);

	ASSERT_EQ(mc_parse(&p, &in, &r), 1);
	EXPECT_EQ(r.cmd, MC_CMD_GET);
	bp_stats s2 = stats();
	ASSERT_EQ(mc_bin_encode_get_hit(&out, &r, 5, 1, &item), 0);
	bp_stats s3 = stats();
	EXPECT_EQ(copied(s3), copied(s2));
	EXPECT_EQ(out.len(), 24u + 4 + vlen);
	// The value in the output chain is the item's memory itself.
	iovec iov[8];
	size_t bytes = 0;
	int n = bp_chain_write_iov(&out.c, iov, 8, &bytes);
	ASSERT_GE(n, 2);
	EXPECT_EQ(iov[n - 1].iov_base, (void *)bp_block_data(item.blk));
	EXPECT_EQ(iov[n - 1].iov_len, vlen);
	bp_slice_release(&item);
}

TEST(ZeroCopy, TextSetAndGetOfOneMiB)
{
	const size_t vlen = 1024 * 1024;
	mc_parser p;
	mc_parser_init(&p, nullptr);
	Chain in, out;
	add_big(&in, "set big 0 0 " + std::to_string(vlen) + "\r\n", vlen,
	        "\r\nget big\r\n");
	mc_request r;
	bp_stats s0 = stats();
	ASSERT_EQ(mc_parse(&p, &in, &r), 1);
	bp_stats s1 = stats();
	EXPECT_EQ(copied(s1), copied(s0));
	EXPECT_EQ(s1.block_gets, s0.block_gets);
	check_value(&in, r, vlen);
	bp_slice item = item_of(&in, r);
	mc_parser_consume(&p, &in, &r);
	ASSERT_EQ(mc_parse(&p, &in, &r), 1);
	bp_stats s2 = stats();
	ASSERT_EQ(mc_text_encode_value(&out, &r, r.key, r.key_len, 0, 0, &item), 0);
	ASSERT_EQ(mc_text_encode_end(&out), 0);
	bp_stats s3 = stats();
	EXPECT_EQ(copied(s3), copied(s2));
	EXPECT_EQ(out.len(), std::string("VALUE big 0 1048576\r\n").size() + vlen + 7);
	bp_slice_release(&item);
}

// A value shorter than the output chain's copy threshold is copied into the
// reply (one counted copy of exactly its bytes, one iovec with its header);
// a value at the threshold, or any value with the threshold at 0, is the
// item's memory itself.
TEST(ZeroCopy, SmallValuesAreCopiedBelowTheChainsThreshold)
{
	for (size_t below : {size_t{0}, size_t{64}, size_t{BP_COPY_THRESHOLD}}) {
		for (size_t vlen : {size_t{1}, size_t{32}, size_t{64}, size_t{1023},
		                    size_t{1024}, size_t{4096}}) {
			SCOPED_TRACE("copy_below " + std::to_string(below) + ", value " +
			             std::to_string(vlen));
			mc_parser p;
			mc_parser_init(&p, nullptr);
			Chain in, out;
			bp_chain_set_copy_below(&out.c, below);
			add_block(&in, bin_req(0x00, "", "k", ""));
			mc_request r;
			ASSERT_EQ(mc_parse(&p, &in, &r), 1);
			bp_block *b = bp_block_get(pool(), vlen);
			memset(bp_block_data(b), 'x', vlen);
			bp_slice item{b, 0, (uint32_t)vlen};
			bp_stats s0 = stats();
			ASSERT_EQ(mc_bin_encode_get_hit(&out.c, &r, 5, 1, &item), 0);
			bp_stats s1 = stats();
			bool copy = vlen < below;
			EXPECT_EQ(copied(s1) - copied(s0), copy ? vlen : 0u);
			iovec iov[8];
			size_t bytes = 0;
			int n = bp_chain_write_iov(&out.c, iov, 8, &bytes);
			EXPECT_EQ(bytes, 24u + 4 + vlen);
			ASSERT_EQ(n, copy ? 1 : 2);
			const char *v = (const char *)iov[n - 1].iov_base +
			                iov[n - 1].iov_len - vlen;
			EXPECT_EQ(std::string(v, vlen), std::string(vlen, 'x'));
			EXPECT_EQ(v == bp_block_data(b), !copy);
			bp_slice_release(&item);
			mc_parser_consume(&p, &in, &r);
		}
	}
}

TEST(ZeroCopy, ParsingAllocatesNothing)
{
	// Warm: a pipeline of 1000 binary GETs and SETs in one block.
	std::string stream;
	for (int i = 0; i < 500; i++) {
		stream += bin_req(0x00, "", "key:" + std::to_string(i), "");
		stream += bin_req(0x01, be32(0) + be32(0), "k", std::string(32, 'v'));
	}
	mc_parser p;
	mc_parser_init(&p, nullptr);
	Chain in;
	add_block(&in, stream);
	bp_stats s0 = stats();
	mc_request r;
	int n = 0;
	while (mc_parse(&p, &in, &r) == 1) {
		mc_parser_consume(&p, &in, &r);
		n++;
	}
	bp_stats s1 = stats();
	EXPECT_EQ(n, 1000);
	EXPECT_EQ(s1.sys_alloc_calls, s0.sys_alloc_calls);
	EXPECT_EQ(s1.block_gets, s0.block_gets);
	EXPECT_EQ(copied(s1), copied(s0));
}

} // namespace
