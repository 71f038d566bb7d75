// Chain operations: append (copy and by reference), peek, cut, and building
// the iovec array for writev. Counters: system allocator calls per 1000
// operations and bytes copied per operation (bufpool's copy counters).
#include "alloc_count.h"
#include "bufpool/bufpool.h"

#include <benchmark/benchmark.h>

#include <cstring>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace {

struct Fixture {
	bp_pool *p;
	bp_stats s0;
	uint64_t m0;
	Fixture() { p = bp_pool_create(nullptr); }
	~Fixture()
	{
		bp_pool_thread_flush(p);
		bp_pool_destroy(&p);
	}
	void start()
	{
		bp_pool_stats(p, &s0);
		m0 = malloc_calls();
	}
	void report(benchmark::State &st, double ops_per_iter = 1)
	{
		bp_stats s;
		bp_pool_stats(p, &s);
		double ops = static_cast<double>(st.iterations()) * ops_per_iter;
		double allocs = static_cast<double>(malloc_calls() - m0 +
		                                    s.sys_alloc_calls - s0.sys_alloc_calls);
		double copied = static_cast<double>(
			s.copied_view_bytes - s0.copied_view_bytes +
			s.copied_append_bytes - s0.copied_append_bytes +
			s.copied_out_bytes - s0.copied_out_bytes);
		st.counters["allocs_per_1k"] = benchmark::Counter(1000.0 * allocs / ops);
		st.counters["copied_B_per_op"] = benchmark::Counter(copied / ops);
	}
};

// A value block of `len` bytes, refcount 1, as a slice.
bp_slice make_value(bp_pool *p, size_t len)
{
	bp_block *b = bp_block_get(p, len);
	memset(bp_block_data(b), 'v', len);
	return bp_slice{b, 0, static_cast<uint32_t>(len)};
}

// Small header by copy + value by reference, then consume: the shape of a
// GET response going through an output chain.
void BM_AppendHeaderAndRef(benchmark::State &st)
{
	Fixture f;
	bp_chain c;
	bp_chain_init(&c, f.p);
	bp_slice v = make_value(f.p, static_cast<size_t>(st.range(0)));
	char hdr[24] = {};
	f.start();
	for (auto _ : st) {
		bp_chain_append(&c, hdr, sizeof(hdr));
		bp_chain_append_ref(&c, &v);
		bp_chain_skip(&c, bp_chain_len(&c));
	}
	f.report(st);
	bp_chain_deinit(&c);
	bp_slice_release(&v);
}
BENCHMARK(BM_AppendHeaderAndRef)->Arg(32)->Arg(4096);

// Copy vs reference for a value of len bytes, including the real cost
// downstream: 64 responses gathered and written with writev to a socket
// (drained by the same thread). This is the measurement behind
// BP_COPY_THRESHOLD.
void AppendWritev(benchmark::State &st, bool by_ref)
{
	Fixture f;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
		st.SkipWithError("socketpair");
		return;
	}
	int big = 4 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	bp_chain c;
	bp_chain_init(&c, f.p);
	size_t len = static_cast<size_t>(st.range(0));
	bp_slice v = make_value(f.p, len);
	char hdr[24] = {};
	std::vector<char> sink(1 << 20);
	struct iovec iov[1024];
	f.start();
	for (auto _ : st) {
		for (int i = 0; i < 64; i++) {
			bp_chain_append(&c, hdr, sizeof(hdr));
			if (by_ref)
				bp_chain_append_ref(&c, &v);
			else
				bp_chain_append(&c, bp_slice_ptr(&v), v.len);
		}
		while (bp_chain_len(&c)) {
			size_t bytes;
			int n = bp_chain_write_iov(&c, iov, 1024, &bytes);
			ssize_t w = writev(sv[0], iov, n);
			if (w <= 0)
				break;
			bp_chain_skip(&c, static_cast<size_t>(w));
			while (read(sv[1], sink.data(), sink.size()) == static_cast<ssize_t>(sink.size()))
				;
		}
	}
	f.report(st, 64);
	bp_chain_deinit(&c);
	bp_slice_release(&v);
	close(sv[0]);
	close(sv[1]);
}
void BM_RespCopy(benchmark::State &st) { AppendWritev(st, false); }
void BM_RespRef(benchmark::State &st) { AppendWritev(st, true); }
BENCHMARK(BM_RespCopy)->RangeMultiplier(2)->Range(8, 4096);
BENCHMARK(BM_RespRef)->RangeMultiplier(2)->Range(8, 4096);

// A chain of `nblocks` referenced 1 KiB slices: peek all as iovecs, take a
// contiguous view inside one block, find "\r\n" at the end.
struct Multi {
	bp_chain c;
	std::vector<bp_slice> v;
	Multi(bp_pool *p, int nblocks)
	{
		bp_chain_init(&c, p);
		for (int i = 0; i < nblocks; i++) {
			v.push_back(make_value(p, 1024));
			bp_chain_append_ref(&c, &v.back());
		}
	}
	~Multi()
	{
		bp_chain_deinit(&c);
		for (auto &s : v)
			bp_slice_release(&s);
	}
};

void BM_PeekIov(benchmark::State &st)
{
	Fixture f;
	Multi m(f.p, static_cast<int>(st.range(0)));
	struct iovec iov[64];
	f.start();
	for (auto _ : st) {
		int n = bp_chain_peek_iov(&m.c, 100, bp_chain_len(&m.c) - 100, iov, 64);
		benchmark::DoNotOptimize(n);
	}
	f.report(st);
}
BENCHMARK(BM_PeekIov)->Arg(1)->Arg(16);

void BM_WriteIov(benchmark::State &st)
{
	Fixture f;
	Multi m(f.p, static_cast<int>(st.range(0)));
	struct iovec iov[1024];
	f.start();
	for (auto _ : st) {
		size_t bytes;
		int n = bp_chain_write_iov(&m.c, iov, 1024, &bytes);
		benchmark::DoNotOptimize(n);
	}
	f.report(st);
}
BENCHMARK(BM_WriteIov)->Arg(16)->Arg(256);

void BM_Find2(benchmark::State &st)
{
	Fixture f;
	Multi m(f.p, static_cast<int>(st.range(0)));
	size_t len = bp_chain_len(&m.c);
	f.start();
	for (auto _ : st) {
		ssize_t r = bp_chain_find2(&m.c, 0, len, '\r', '\n');
		benchmark::DoNotOptimize(r);
	}
	f.report(st);
}
BENCHMARK(BM_Find2)->Arg(1)->Arg(16);

// Cut 100 bytes off the front into another chain and give them back: the
// shape of carving a request out of an input chain.
void BM_CutSplit(benchmark::State &st)
{
	Fixture f;
	Multi m(f.p, 4);
	bp_chain out;
	bp_chain_init(&out, f.p);
	f.start();
	for (auto _ : st) {
		bp_chain_cut(&m.c, 100, &out);
		bp_chain_append_chain(&m.c, &out); // rotate: keeps the length
	}
	f.report(st);
	bp_chain_deinit(&out);
}
BENCHMARK(BM_CutSplit);

// Read path: prepare iovecs, "read" n bytes (memset stands in for the
// kernel), commit, consume.
void BM_ReadCycle(benchmark::State &st)
{
	Fixture f;
	bp_chain c;
	bp_chain_init(&c, f.p);
	size_t n = static_cast<size_t>(st.range(0));
	f.start();
	for (auto _ : st) {
		struct iovec iov[2];
		int k = bp_chain_read_iov(&c, iov, 2);
		size_t left = n;
		for (int i = 0; i < k && left; i++) {
			size_t take = iov[i].iov_len < left ? iov[i].iov_len : left;
			memset(iov[i].iov_base, 'r', take);
			left -= take;
		}
		bp_chain_read_commit(&c, n - left);
		bp_chain_skip(&c, bp_chain_len(&c));
	}
	f.report(st);
	bp_chain_deinit(&c);
}
BENCHMARK(BM_ReadCycle)->Arg(64)->Arg(4096);

} // namespace

BENCHMARK_MAIN();
