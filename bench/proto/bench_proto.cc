// Parser throughput over realistic chains: the request stream sits in
// 64 KiB blocks (as readv would leave it), so some requests straddle a block
// boundary. Each iteration appends the stream to the input chain by
// reference and parses + consumes every request in it.
//
// Counters: requests/s and bytes/s (items/bytes processed), allocs_per_1k
// (sys_alloc_calls per 1000 requests: must be 0), block_gets_per_1k (blocks
// taken from the pool per 1000 requests), copied_per_req (bytes copied by
// chain operations per request: keys or headers that straddle a boundary).
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "proto/proto.h"
}

namespace {

bp_pool *pool()
{
	static bp_pool *p = [] {
		bp_pool_opts o{};
		o.name = "bench-proto";
		return bp_pool_create(&o);
	}();
	return p;
}

std::string be32(uint32_t v)
{
	std::string s(4, '\0');
	for (int i = 0; i < 4; i++)
		s[i] = (char)(v >> (24 - 8 * i));
	return s;
}

std::string bin_req(uint8_t op, const std::string &ext, const std::string &key,
                    const std::string &val)
{
	std::string h(24, '\0');
	uint32_t body = (uint32_t)(ext.size() + key.size() + val.size());
	h[0] = (char)0x80;
	h[1] = (char)op;
	h[2] = (char)(key.size() >> 8);
	h[3] = (char)key.size();
	h[4] = (char)ext.size();
	h.replace(8, 4, be32(body));
	return h + ext + key + val;
}

// The stream as slices of 64 KiB blocks.
struct Stream {
	std::vector<bp_slice> slices;
	size_t bytes = 0, requests = 0;
	explicit Stream(const std::string &s, size_t nreq)
	{
		const size_t bs = 64 * 1024;
		for (size_t off = 0; off < s.size(); off += bs) {
			size_t n = std::min(bs, s.size() - off);
			bp_block *b = bp_block_get(pool(), n);
			memcpy(bp_block_data(b), s.data() + off, n);
			slices.push_back(bp_slice{b, 0, (uint32_t)n});
		}
		bytes = s.size();
		requests = nreq;
	}
	~Stream()
	{
		for (auto &sl : slices)
			bp_slice_release(&sl);
	}
};

uint64_t copied(const bp_stats &s)
{
	return s.copied_view_bytes + s.copied_append_bytes + s.copied_out_bytes;
}

// Builds ~1 MiB of repeated requests.
Stream make_stream(const std::vector<std::string> &reqs)
{
	std::string s;
	size_t n = 0;
	while (s.size() < (1u << 20)) {
		for (auto &r : reqs) {
			s += r;
			n++;
		}
	}
	return Stream(s, n);
}

template <bool WalkKeys>
void run(benchmark::State &state, const Stream &st)
{
	mc_parser p;
	mc_parser_init(&p, nullptr);
	bp_chain in;
	bp_chain_init(&in, pool());
	mc_request r;
	size_t parsed = 0, sink = 0;

	// Counters cover the parse only (appending the stream to the chain
	// takes chain nodes from the pool; that is the reader's cost, not the
	// parser's), from the second pass on (warm pool).
	uint64_t allocs = 0, gets = 0, copies = 0;
	bp_stats a{}, b{};
	bool warm = false;
	for (auto _ : state) {
		state.PauseTiming();
		for (auto &sl : st.slices)
			bp_chain_append_ref(&in, &sl);
		bp_pool_stats(pool(), &a);
		state.ResumeTiming();
		int rc;
		size_t n = 0;
		while ((rc = mc_parse(&p, &in, &r)) == 1) {
			sink += r.key_len + r.value_len;
			if (WalkKeys) {
				size_t pos = 0, kl;
				const char *k;
				while (mc_req_next_key(&p, &in, &r, &pos, &k, &kl) == 1)
					sink += kl + (unsigned char)k[0];
			}
			mc_parser_consume(&p, &in, &r);
			n++;
		}
		state.PauseTiming();
		bp_pool_stats(pool(), &b);
		if (rc != -EAGAIN || bp_chain_len(&in) != 0) {
			state.SkipWithError("parse failed");
			break;
		}
		if (warm) {
			parsed += n;
			allocs += b.sys_alloc_calls - a.sys_alloc_calls;
			gets += b.block_gets - a.block_gets;
			copies += copied(b) - copied(a);
		}
		warm = true;
		state.ResumeTiming();
	}
	benchmark::DoNotOptimize(sink);
	bp_chain_deinit(&in);

	state.SetItemsProcessed((int64_t)(state.iterations() * st.requests));
	state.SetBytesProcessed((int64_t)(state.iterations() * st.bytes));
	double n = parsed ? (double)parsed : 1;
	state.counters["allocs_per_1k"] = (double)allocs * 1000 / n;
	state.counters["block_gets_per_1k"] = (double)gets * 1000 / n;
	state.counters["copied_per_req"] = (double)copies / n;
}

void BM_BinGet(benchmark::State &state)
{
	static Stream st = make_stream({bin_req(0x00, "", "user:1234567890", "")});
	run<false>(state, st);
}
BENCHMARK(BM_BinGet);

void BM_BinSet(benchmark::State &state)
{
	auto make = [](size_t vlen) {
		return make_stream({bin_req(0x01, be32(0) + be32(0),
		                            "user:1234567890",
		                            std::string(vlen, 'v'))});
	};
	static Stream s32 = make(32), s4k = make(4096);
	Stream *st = state.range(0) == 32 ? &s32 : &s4k;
	run<false>(state, *st);
}
BENCHMARK(BM_BinSet)->Arg(32)->Arg(4096);

void BM_TextGet10(benchmark::State &state)
{
	std::string line = "get";
	for (int i = 0; i < 10; i++)
		line += " user:12345678" + std::to_string(i);
	static Stream st = make_stream({line + "\r\n"});
	run<true>(state, st);
}
BENCHMARK(BM_TextGet10);

void BM_TextSet32(benchmark::State &state)
{
	static Stream st = make_stream(
		{"set user:1234567890 0 0 32\r\n" + std::string(32, 'v') + "\r\n"});
	run<false>(state, st);
}
BENCHMARK(BM_TextSet32);

void BM_MetaMg(benchmark::State &state)
{
	static Stream st = make_stream({"mg user:1234567890 v f t c k Oab\r\n"});
	run<false>(state, st);
}
BENCHMARK(BM_MetaMg);

// Answering a binary GET hit: header by reserve/commit, value by reference.
void BM_BinEncodeGetHit(benchmark::State &state)
{
	mc_parser p;
	mc_parser_init(&p, nullptr);
	bp_chain in, out;
	bp_chain_init(&in, pool());
	bp_chain_init(&out, pool());
	std::string g = bin_req(0x00, "", "user:1234567890", "");
	bp_block *b = bp_block_get(pool(), g.size());
	memcpy(bp_block_data(b), g.data(), g.size());
	bp_chain_adopt(&in, b, 0, (uint32_t)g.size());
	mc_request r;
	mc_parse(&p, &in, &r);
	bp_block *vb = bp_block_get(pool(), 100);
	memset(bp_block_data(vb), 'v', 100);
	bp_slice v{vb, 0, 100};
	size_t n = 0;
	for (auto _ : state) {
		mc_bin_encode_get_hit(&out, &r, 0, 1, &v);
		if (++n % 64 == 0)
			bp_chain_deinit(&out); // "sent"
	}
	bp_chain_deinit(&out);
	bp_chain_deinit(&in);
	bp_slice_release(&v);
	state.SetItemsProcessed((int64_t)state.iterations());
}
BENCHMARK(BM_BinEncodeGetHit);

} // namespace

BENCHMARK_MAIN();
