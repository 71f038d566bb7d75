// Blocks and object pools against malloc/free: time per operation and, as
// counters, calls into the system allocator per 1000 operations (seen from
// outside through --wrap, plus bufpool's own mmap count).
#include "alloc_count.h"
#include "bufpool/bufpool.h"

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

struct Pool {
	bp_pool *p;
	Pool() { p = bp_pool_create(nullptr); }
	~Pool() { bp_pool_destroy(&p); }
};

uint64_t sys_calls(bp_pool *p)
{
	bp_stats s;
	bp_pool_stats(p, &s);
	return s.sys_alloc_calls;
}

void report(benchmark::State &st, uint64_t wrapped, uint64_t mmaps)
{
	double ops = static_cast<double>(st.iterations());
	st.counters["allocs_per_1k"] =
		benchmark::Counter(1000.0 * static_cast<double>(wrapped + mmaps) / ops);
}

// One get and one put of a block, warm.
void BM_BlockGetPut(benchmark::State &st)
{
	Pool pool;
	size_t cap = static_cast<size_t>(st.range(0));
	bp_block_unref(bp_block_get(pool.p, cap)); // warm the thread cache
	uint64_t m0 = malloc_calls(), s0 = sys_calls(pool.p);
	for (auto _ : st) {
		bp_block *b = bp_block_get(pool.p, cap);
		benchmark::DoNotOptimize(b);
		bp_block_unref(b);
	}
	report(st, malloc_calls() - m0, sys_calls(pool.p) - s0);
	bp_pool_thread_flush(pool.p);
}
BENCHMARK(BM_BlockGetPut)->Arg(64)->Arg(1024)->Arg(16384);

void BM_MallocFree(benchmark::State &st)
{
	size_t n = static_cast<size_t>(st.range(0));
	uint64_t m0 = malloc_calls();
	for (auto _ : st) {
		void *p = malloc(n);
		benchmark::DoNotOptimize(p);
		free(p);
	}
	report(st, malloc_calls() - m0, 0);
}
BENCHMARK(BM_MallocFree)->Arg(64)->Arg(1024)->Arg(16384);

// A window of 64 live blocks, freed in FIFO order (closer to a server's
// pattern than get-put-get-put).
void BM_BlockWindow(benchmark::State &st)
{
	Pool pool;
	size_t cap = static_cast<size_t>(st.range(0));
	std::vector<bp_block *> ring(64, nullptr);
	size_t i = 0;
	for (auto &b : ring)
		b = bp_block_get(pool.p, cap);
	uint64_t m0 = malloc_calls(), s0 = sys_calls(pool.p);
	for (auto _ : st) {
		bp_block_unref(ring[i]);
		ring[i] = bp_block_get(pool.p, cap);
		i = (i + 1) & 63;
	}
	report(st, malloc_calls() - m0, sys_calls(pool.p) - s0);
	for (auto &b : ring)
		bp_block_unref(b);
	bp_pool_thread_flush(pool.p);
}
BENCHMARK(BM_BlockWindow)->Arg(64)->Arg(1024)->Arg(16384);

void BM_MallocWindow(benchmark::State &st)
{
	size_t n = static_cast<size_t>(st.range(0));
	std::vector<void *> ring(64, nullptr);
	size_t i = 0;
	for (auto &p : ring)
		p = malloc(n);
	uint64_t m0 = malloc_calls();
	for (auto _ : st) {
		free(ring[i]);
		ring[i] = malloc(n);
		benchmark::DoNotOptimize(ring[i]);
		i = (i + 1) & 63;
	}
	report(st, malloc_calls() - m0, 0);
	for (auto &p : ring)
		free(p);
}
BENCHMARK(BM_MallocWindow)->Arg(64)->Arg(1024)->Arg(16384);

// Cross-thread frees: thread 0 allocates and hands each block through a
// single-producer/single-consumer ring to thread 1, which frees it.
struct Handoff {
	static constexpr size_t N = 1024;
	std::atomic<size_t> head{0}, tail{0};
	void *slot[N];
	void push(void *p)
	{
		size_t h = head.load(std::memory_order_relaxed);
		while (h - tail.load(std::memory_order_acquire) == N)
			std::this_thread::yield();
		slot[h % N] = p;
		head.store(h + 1, std::memory_order_release);
	}
	void *pop()
	{
		size_t t = tail.load(std::memory_order_relaxed);
		while (head.load(std::memory_order_acquire) == t)
			std::this_thread::yield();
		void *p = slot[t % N];
		tail.store(t + 1, std::memory_order_release);
		return p;
	}
};

Handoff g_handoff;

void BM_BlockCrossThread(benchmark::State &st)
{
	// One pool for every run of this benchmark (runs are repeated while the
	// framework sizes them; pools are a limited resource).
	static bp_pool *g_xpool = bp_pool_create(nullptr);
	size_t cap = static_cast<size_t>(st.range(0));
	uint64_t m0 = malloc_calls();
	for (auto _ : st) {
		if (st.thread_index() == 0)
			g_handoff.push(bp_block_get(g_xpool, cap));
		else
			bp_block_unref(static_cast<bp_block *>(g_handoff.pop()));
	}
	uint64_t wrapped = malloc_calls() - m0;
	bp_pool_thread_flush(g_xpool);
	double ops = static_cast<double>(st.iterations());
	st.counters["allocs_per_1k"] =
		benchmark::Counter(1000.0 * static_cast<double>(wrapped) / ops);
	if (st.thread_index() == 0) {
		bp_stats s;
		bp_pool_stats(g_xpool, &s);
		st.counters["mmaps"] = benchmark::Counter(static_cast<double>(s.sys_alloc_calls));
	}
}
BENCHMARK(BM_BlockCrossThread)->Arg(64)->Arg(1024)->Threads(2)->UseRealTime();

void BM_MallocCrossThread(benchmark::State &st)
{
	size_t n = static_cast<size_t>(st.range(0));
	uint64_t m0 = malloc_calls();
	for (auto _ : st) {
		if (st.thread_index() == 0)
			g_handoff.push(malloc(n));
		else
			free(g_handoff.pop());
	}
	double ops = static_cast<double>(st.iterations());
	st.counters["allocs_per_1k"] = benchmark::Counter(
		1000.0 * static_cast<double>(malloc_calls() - m0) / ops);
}
BENCHMARK(BM_MallocCrossThread)->Arg(64)->Arg(1024)->Threads(2)->UseRealTime();

// Object pool of 256-byte objects (a connection-sized object) vs malloc.
void BM_ObjpoolGetPut(benchmark::State &st)
{
	Pool pool;
	bp_objpool *op = bp_objpool_create(pool.p, "bench", 256);
	void *o = bp_objpool_get(op);
	bp_objpool_put(op, &o);
	uint64_t m0 = malloc_calls(), s0 = sys_calls(pool.p);
	for (auto _ : st) {
		void *x = bp_objpool_get(op);
		benchmark::DoNotOptimize(x);
		bp_objpool_put(op, &x);
	}
	report(st, malloc_calls() - m0, sys_calls(pool.p) - s0);
	bp_objpool_destroy(&op);
	bp_pool_thread_flush(pool.p);
}
BENCHMARK(BM_ObjpoolGetPut);

void BM_MallocObject(benchmark::State &st)
{
	uint64_t m0 = malloc_calls();
	for (auto _ : st) {
		void *x = calloc(1, 256); // the object pool zeroes too
		benchmark::DoNotOptimize(x);
		free(x);
	}
	report(st, malloc_calls() - m0, 0);
}
BENCHMARK(BM_MallocObject);

} // namespace
