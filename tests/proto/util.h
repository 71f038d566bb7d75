// Helpers for the proto tests: chains built from real bufpool blocks, so
// that a split point in a test is a block boundary the parser must cross.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "proto/proto.h"
}

namespace mctest {

// One pool per test binary (bufpool allows a few pools at once).
inline bp_pool *pool()
{
	static bp_pool *p = [] {
		bp_pool_opts o{};
		o.name = "proto-test";
		return bp_pool_create(&o);
	}();
	return p;
}

// Appends s to c as one new block (adopted; its bytes are not writable by
// the chain, so later appends never merge into it).
inline void add_block(bp_chain *c, const std::string &s)
{
	if (s.empty())
		return;
	bp_block *b = bp_block_get(pool(), s.size());
	ASSERT_NE(b, nullptr);
	memcpy(bp_block_data(b), s.data(), s.size());
	ASSERT_EQ(bp_chain_adopt(c, b, 0, (uint32_t)s.size()), 0);
}

// Appends s split at the given offsets (ascending), one block per piece.
inline void add_split(bp_chain *c, const std::string &s,
                      const std::vector<size_t> &cuts)
{
	size_t prev = 0;
	for (size_t cut : cuts) {
		if (cut > s.size())
			cut = s.size();
		add_block(c, s.substr(prev, cut - prev));
		prev = cut;
	}
	add_block(c, s.substr(prev));
}

inline std::string chain_str(const bp_chain *c, size_t off = 0,
                             size_t n = (size_t)-1)
{
	size_t len = bp_chain_len(c);
	if (off > len)
		return "";
	if (n == (size_t)-1 || off + n > len)
		n = len - off;
	if (n == 0)
		return "";
	std::vector<iovec> iov(n);
	int k = bp_chain_peek_iov(c, off, n, iov.data(), (int)iov.size());
	EXPECT_GT(k, 0);
	std::string s;
	for (int i = 0; i < k; i++)
		s.append((const char *)iov[i].iov_base, iov[i].iov_len);
	return s;
}

// A chain that cleans up after itself.
struct Chain {
	bp_chain c;
	Chain() { bp_chain_init(&c, pool()); }
	~Chain() { bp_chain_deinit(&c); }
	Chain(const Chain &) = delete;
	Chain &operator=(const Chain &) = delete;
	bp_chain *operator&() { return &c; }
	std::string str() const { return chain_str(&c); }
	size_t len() const { return bp_chain_len(&c); }
};

inline std::string value_str(const mc_request &r, const bp_chain *in)
{
	return chain_str(in, r.value_off, r.value_len);
}

// Canonical description of a parsed request (everything a server uses).
inline std::string describe(const mc_request &r, mc_parser *p, bp_chain *in)
{
	std::string s = std::string(mc_cmd_name(r.cmd)) + " err=" +
	                mc_err_name(r.err);
	auto num = [&](const char *n, unsigned long long v) {
		s += std::string(" ") + n + "=" + std::to_string(v);
	};
	num("proto", r.proto);
	num("op", r.opcode);
	num("q", r.quiet);
	num("nr", r.noreply);
	num("close", r.close);
	num("rk", r.ret_key);
	num("rc", r.ret_cas);
	num("opaque", r.opaque);
	num("cas", r.cas);
	num("flags", r.flags);
	num("exp", (unsigned long long)r.exptime);
	num("hasexp", r.has_exptime);
	num("nocreate", r.no_create);
	num("delta", r.delta);
	num("init", r.initial);
	num("level", r.level);
	num("total", r.total);
	if (r.err == MC_ERR_NONE) {
		s += " key=" + std::string(r.key ? r.key : "", r.key_len);
		s += " value=" + value_str(r, in);
		num("nkeys", r.nkeys);
		if (r.nkeys) {
			size_t pos = 0;
			const char *k;
			size_t kl;
			while (mc_req_next_key(p, in, &r, &pos, &k, &kl) == 1)
				s += " k:" + std::string(k, kl);
		}
		num("mflags", r.meta.flags);
		s += " order=" + std::string(r.meta.order, r.meta.norder);
		s += std::string(" mode=") + (r.meta.mode ? r.meta.mode : '0');
		num("b64", r.meta.key_b64);
		s += " O=" + std::string(r.meta.opaque, r.meta.opaque_len);
		num("viv", (unsigned long long)r.meta.vivify);
		num("rec", (unsigned long long)r.meta.recache);
	}
	return s;
}

// Parses the whole of `wire` delivered as one block; returns mc_parse's
// result and fills *desc.
struct Parsed {
	int rc;
	mc_request req;
	std::string desc;
};

// Binary request builder.
inline std::string bin_req(uint8_t op, const std::string &ext,
                           const std::string &key, const std::string &val,
                           uint32_t opaque = 0, uint64_t cas = 0,
                           uint8_t magic = 0x80)
{
	std::string h(24, '\0');
	uint32_t body = (uint32_t)(ext.size() + key.size() + val.size());
	h[0] = (char)magic;
	h[1] = (char)op;
	h[2] = (char)(key.size() >> 8);
	h[3] = (char)key.size();
	h[4] = (char)ext.size();
	for (int i = 0; i < 4; i++)
		h[8 + i] = (char)(body >> (24 - 8 * i));
	for (int i = 0; i < 4; i++)
		h[12 + i] = (char)(opaque >> (24 - 8 * i));
	for (int i = 0; i < 8; i++)
		h[16 + i] = (char)(cas >> (56 - 8 * i));
	return h + ext + key + val;
}

inline std::string be32(uint32_t v)
{
	std::string s(4, '\0');
	for (int i = 0; i < 4; i++)
		s[i] = (char)(v >> (24 - 8 * i));
	return s;
}

inline std::string be64(uint64_t v)
{
	return be32((uint32_t)(v >> 32)) + be32((uint32_t)v);
}

// Binary response header, for golden comparisons.
inline std::string bin_res(uint8_t op, uint16_t status, uint8_t extlen,
                           uint16_t keylen, uint32_t body, uint32_t opaque,
                           uint64_t cas)
{
	std::string h(24, '\0');
	h[0] = (char)0x81;
	h[1] = (char)op;
	h[2] = (char)(keylen >> 8);
	h[3] = (char)keylen;
	h[4] = (char)extlen;
	h[6] = (char)(status >> 8);
	h[7] = (char)status;
	std::string b = be32(body), o = be32(opaque), c = be64(cas);
	h.replace(8, 4, b);
	h.replace(12, 4, o);
	h.replace(16, 8, c);
	return h;
}

// A slice holding s (a fresh block), released by the caller.
inline bp_slice make_slice(const std::string &s)
{
	bp_slice sl{};
	bp_block *b = bp_block_get(pool(), s.size());
	memcpy(bp_block_data(b), s.data(), s.size());
	sl.blk = b;
	sl.off = 0;
	sl.len = (uint32_t)s.size();
	return sl;
}

} // namespace mctest
