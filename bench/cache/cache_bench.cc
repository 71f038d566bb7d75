// Benchmarks of the store (cache/cache.c). Each reports the counters that
// matter, not only time:
//   BM_Get*/BM_Set*     ops/s with 1 and 2 threads, hit-heavy and
//                       miss-heavy; sys_alloc_per_1k = pool calls into the
//                       system allocator per 1000 operations (0 when warm)
//   BM_GetBatch         ns per GET in batches of 1-16 random keys, with and
//                       without cache_prefetch first (the look ahead)
//   BM_FillGrowing      a store filling with new keys: ns per insert with
//                       the table growths amortised, the longest SET (a
//                       growth's stall) and the growths
//   BM_BytesPerItem     resident bytes per item (RSS delta of the process,
//                       and bytes charged to the pool) at 1M items of 12 B
//                       keys + 32 B values, and 100k items of 1 KiB
//   BM_HitRatio         hit ratio of S3-FIFO, segment FIFO and an exact LRU
//                       baseline (bench only) on Zipf 0.8/1.0/1.2 and a
//                       scan-mixed workload, cache = 1% / 10% of the keys
// docs/cache.md has the commands and the measured tables.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include "cache/cache.h"

namespace {

void key_of(char *buf, uint64_t i) // 12-byte keys
{
	snprintf(buf, 13, "key:%08llu", (unsigned long long)(i % 100000000ull));
}

uint64_t sys_allocs(struct cache *c)
{
	struct bp_stats s;
	bp_pool_stats(cache_pool(c), &s);
	return s.sys_alloc_calls;
}

// ---- throughput --------------------------------------------------------

constexpr uint64_t kKeys = 1u << 20; // preloaded keys (hit-heavy)

struct cache *shared_store()
{
	static struct cache *c = [] {
		struct cache_opts o = {};
		o.limit = 256u << 20;
		struct cache *s = cache_create(&o);
		char k[16], v[32];
		memset(v, 'v', sizeof(v));
		for (uint64_t i = 0; i < kKeys; i++) {
			key_of(k, i);
			cache_set(s, k, 12, v, sizeof(v), 0, 0);
		}
		return s;
	}();
	return c;
}

void BM_GetHit(benchmark::State &st)
{
	struct cache *c = shared_store();
	std::mt19937_64 rng(st.thread_index() + 1);
	char k[16];
	uint64_t hits = 0, a0 = sys_allocs(c);
	for (auto _ : st) {
		key_of(k, rng() % kKeys);
		struct cache_value v;
		if (cache_get(c, k, 12, &v) == 0) {
			hits++;
			cache_value_release(&v);
		}
	}
	st.counters["hit_ratio"] = benchmark::Counter(double(hits) / double(st.iterations()),
	                                              benchmark::Counter::kAvgThreads);
	st.counters["sys_alloc_per_1k"] = benchmark::Counter(
		1000.0 * double(sys_allocs(c) - a0) / double(st.iterations()),
		benchmark::Counter::kAvgThreads);
	st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_GetHit)->Threads(1)->Threads(2)->UseRealTime();

void BM_GetMiss(benchmark::State &st)
{
	struct cache *c = shared_store();
	std::mt19937_64 rng(st.thread_index() + 7);
	char k[16];
	uint64_t hits = 0;
	for (auto _ : st) {
		key_of(k, kKeys + rng() % (50 * kKeys));
		struct cache_value v;
		if (cache_get(c, k, 12, &v) == 0) {
			hits++;
			cache_value_release(&v);
		}
	}
	st.counters["hit_ratio"] = benchmark::Counter(double(hits) / double(st.iterations()),
	                                              benchmark::Counter::kAvgThreads);
	st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_GetMiss)->Threads(1)->Threads(2)->UseRealTime();

// GETs of random keys in batches of range(0), their keys first handed to
// cache_prefetch when range(1) is 1: what geecached's look ahead at an
// io_uring batch (netpoll's on_peek) buys lookups in a store larger than
// the caches (1 Mi keys). ns per GET.
void BM_GetBatch(benchmark::State &st)
{
	struct cache *c = shared_store();
	const unsigned n = (unsigned)st.range(0);
	const bool prefetch = st.range(1) != 0;
	std::mt19937_64 rng(3);
	char k[CACHE_PREFETCH_MAX][16];
	struct cache_key keys[CACHE_PREFETCH_MAX];
	uint64_t hits = 0;
	for (auto _ : st) {
		for (unsigned i = 0; i < n; i++) {
			key_of(k[i], rng() % kKeys);
			keys[i] = (struct cache_key){k[i], 12};
		}
		if (prefetch)
			cache_prefetch(c, keys, n);
		for (unsigned i = 0; i < n; i++) {
			struct cache_value v;
			if (cache_get(c, k[i], 12, &v) == 0) {
				hits++;
				cache_value_release(&v);
			}
		}
	}
	st.counters["hit_ratio"] = double(hits) / double(st.iterations() * n);
	st.SetItemsProcessed(st.iterations() * n);
}
BENCHMARK(BM_GetBatch)->ArgsProduct({{1, 2, 4, 8, 16}, {0, 1}});

// Cache-aside with a Zipf-ish 90% hit mix: get; on a miss, set. The store
// is small (32 MiB) so it evicts all the time; sys_alloc_per_1k counts
// system allocator calls once warm.
struct cache *evicting_store()
{
	static struct cache *c = [] {
		struct cache_opts o = {};
		o.limit = 32u << 20;
		return cache_create(&o);
	}();
	return c;
}

void BM_GetSetEvicting(benchmark::State &st)
{
	struct cache *c = evicting_store();
	std::mt19937_64 rng(st.thread_index() + 11);
	char k[16], v[100];
	memset(v, 'x', sizeof(v));
	uint64_t hits = 0;
	// warm (first run fills the store and starts evicting)
	for (int i = 0; i < 600000; i++) {
		key_of(k, rng() % (4 * kKeys));
		struct cache_value cv;
		if (cache_get(c, k, 12, &cv) == 0)
			cache_value_release(&cv);
		else
			cache_set(c, k, 12, v, sizeof(v), 0, 0);
	}
	uint64_t a0 = sys_allocs(c);
	for (auto _ : st) {
		// 90% of requests to 10% of the keys
		uint64_t r = rng();
		uint64_t id = (r & 15) < 14 ? (r >> 8) % (kKeys / 5) : (r >> 8) % (4 * kKeys);
		key_of(k, id);
		struct cache_value cv;
		if (cache_get(c, k, 12, &cv) == 0) {
			hits++;
			cache_value_release(&cv);
		} else {
			cache_set(c, k, 12, v, sizeof(v), 0, 0);
		}
	}
	struct cache_stats cs;
	cache_stats_get(c, &cs);
	st.counters["hit_ratio"] = benchmark::Counter(double(hits) / double(st.iterations()),
	                                              benchmark::Counter::kAvgThreads);
	st.counters["sys_alloc_per_1k"] = benchmark::Counter(
		1000.0 * double(sys_allocs(c) - a0) / double(st.iterations()),
		benchmark::Counter::kAvgThreads);
	st.counters["evictions"] = double(cs.evictions);
	st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_GetSetEvicting)->Threads(1)->Threads(2)->UseRealTime();

void BM_SetOverwrite(benchmark::State &st)
{
	struct cache *c = shared_store();
	std::mt19937_64 rng(st.thread_index() + 3);
	char k[16], v[32];
	memset(v, 'w', sizeof(v));
	uint64_t a0 = sys_allocs(c);
	for (auto _ : st) {
		key_of(k, rng() % kKeys);
		cache_set(c, k, 12, v, sizeof(v), 0, 0);
	}
	st.counters["sys_alloc_per_1k"] = benchmark::Counter(
		1000.0 * double(sys_allocs(c) - a0) / double(st.iterations()),
		benchmark::Counter::kAvgThreads);
	st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_SetOverwrite)->Threads(1)->Threads(2)->UseRealTime();

// ---- table growth ------------------------------------------------------

// A store filling with new keys (memaslap's stream of fresh keys; any
// cold start): the hash tables grow by half each time they pass 90 %
// load, rehashing every item of the shard under its lock. Reports ns per
// insert (growth amortised), the longest single SET (µs: the stall a
// growth is for every request on that shard) and the growths.
void BM_FillGrowing(benchmark::State &st)
{
	const uint64_t n = static_cast<uint64_t>(st.range(0));
	char k[16], v[32];
	memset(v, 'v', sizeof(v));
	double max_us = 0, total_ns = 0;
	uint64_t grows = 0;
	for (auto _ : st) {
		struct cache_opts o = {};
		o.limit = 256u << 20;
		struct cache *c = cache_create(&o);
		auto fill0 = std::chrono::steady_clock::now();
		for (uint64_t i = 0; i < n; i++) {
			key_of(k, i);
			auto t0 = std::chrono::steady_clock::now();
			cache_set(c, k, 12, v, sizeof(v), 0, 0);
			double us = std::chrono::duration<double, std::micro>(
				std::chrono::steady_clock::now() - t0).count();
			max_us = std::max(max_us, us);
		}
		total_ns += std::chrono::duration<double, std::nano>(
			std::chrono::steady_clock::now() - fill0).count();
		struct cache_stats cs;
		cache_stats_get(c, &cs);
		grows = cs.table_grows;
		st.PauseTiming();
		cache_destroy(&c);
		st.ResumeTiming();
	}
	st.counters["ns_per_insert"] = total_ns / double(st.iterations() * n);
	st.counters["max_set_us"] = max_us;
	st.counters["table_grows"] = double(grows);
	st.SetItemsProcessed(int64_t(st.iterations() * n));
}
BENCHMARK(BM_FillGrowing)->Arg(1000000)->Arg(4000000)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- bytes per item ----------------------------------------------------

size_t rss_bytes()
{
	long pages = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &res) != 2)
			res = 0;
		fclose(f);
	}
	return size_t(res) * size_t(sysconf(_SC_PAGESIZE));
}

// args: items, value bytes. Key 12 bytes. Run each alone (filter) so the
// RSS delta is this store's.
void BM_BytesPerItem(benchmark::State &st)
{
	const uint64_t n = uint64_t(st.range(0));
	const size_t vlen = size_t(st.range(1));
	for (auto _ : st) {
		size_t rss0 = rss_bytes();
		struct cache_opts o = {};
		o.limit = size_t(double(n) * double(vlen + 12) * 1.6) + (64u << 20);
		struct cache *c = cache_create(&o);
		std::vector<char> v(vlen, 'v');
		char k[16];
		for (uint64_t i = 0; i < n; i++) {
			key_of(k, i);
			if (cache_set(c, k, 12, v.data(), vlen, 0, 0) != 0)
				st.SkipWithError("set failed");
		}
		size_t rss1 = rss_bytes();
		struct cache_stats cs;
		cache_stats_get(c, &cs);
		struct bp_stats ps;
		bp_pool_stats(cache_pool(c), &ps);
		st.counters["items"] = double(cs.curr_items);
		st.counters["payload_B_per_item"] = double(cs.bytes_payload) / double(n);
		st.counters["item_B_per_item"] = double(cs.bytes_items) / double(n);
		st.counters["rss_B_per_item"] = double(rss1 - rss0) / double(n);
		st.counters["charged_B_per_item"] = double(ps.charged_bytes) / double(n);
		st.counters["table_B_per_item"] = double(cs.hash_slots * 8 * 9 / 8) / double(n);
		st.counters["load"] = double(cs.curr_items) / double(cs.hash_slots);
		st.counters["segments"] = double(cs.segments);
		cache_destroy(&c);
	}
}
BENCHMARK(BM_BytesPerItem)->Args({1000000, 32})->Args({100000, 1024})
	->Iterations(1)->Unit(benchmark::kMillisecond);

// ---- hit ratio -----------------------------------------------------------

constexpr uint32_t kSpace = 1000000;       // key space
constexpr uint64_t kWarm = 2000000;        // requests before measuring
constexpr uint64_t kMeasure = 8000000;     // measured requests
constexpr size_t kItemBytes = 3 + 12 + 32; // item in a segment (header 3)

struct Zipf {
	std::vector<double> cdf;
	explicit Zipf(double a, uint32_t n) : cdf(n)
	{
		double sum = 0;
		for (uint32_t i = 0; i < n; i++)
			cdf[i] = (sum += 1.0 / std::pow(double(i + 1), a));
		for (auto &x : cdf)
			x /= sum;
	}
	uint32_t operator()(std::mt19937_64 &rng) const
	{
		double u = std::uniform_real_distribution<double>(0, 1)(rng);
		return uint32_t(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
	}
};

// Workload w: 0,1,2 = Zipf 0.8/1.0/1.2; 3 = scan-mixed (Zipf 1.0, and one
// request in five is the next key of a sequential scan that never repeats).
struct Trace {
	std::vector<uint32_t> keys;
	Trace(int w)
	{
		static const double alpha[] = {0.8, 1.0, 1.2, 1.0};
		Zipf z(alpha[w], kSpace);
		std::mt19937_64 rng(42 + w);
		keys.resize(kWarm + kMeasure);
		uint32_t scan = kSpace;
		for (auto &k : keys) {
			if (w == 3 && rng() % 5 == 0)
				k = scan++;
			else // scatter ranks over the key space
				k = uint32_t((uint64_t(z(rng)) * 2654435761ull) % kSpace);
		}
	}
};

const Trace &trace(int w)
{
	static Trace *t[4];
	if (!t[w])
		t[w] = new Trace(w);
	return *t[w];
}

// Exact LRU over key ids (array-linked list), capacity in items.
struct Lru {
	std::vector<uint32_t> prev, next;
	std::vector<uint8_t> in;
	uint32_t head = UINT32_MAX, tail = UINT32_MAX;
	size_t n = 0, cap;
	Lru(size_t c, size_t space) : prev(space), next(space), in(space), cap(c) {}
	void unlink(uint32_t k)
	{
		if (prev[k] != UINT32_MAX) next[prev[k]] = next[k]; else head = next[k];
		if (next[k] != UINT32_MAX) prev[next[k]] = prev[k]; else tail = prev[k];
	}
	void push(uint32_t k)
	{
		prev[k] = UINT32_MAX;
		next[k] = head;
		if (head != UINT32_MAX) prev[head] = k; else tail = k;
		head = k;
	}
	bool access(uint32_t k)
	{
		if (in[k]) {
			unlink(k);
			push(k);
			return true;
		}
		if (n == cap) {
			uint32_t v = tail;
			unlink(v);
			in[v] = 0;
			n--;
		}
		in[k] = 1;
		push(k);
		n++;
		return false;
	}
};

// args: workload, cache percent, policy (0 S3-FIFO, 1 segment FIFO, 2 LRU)
void BM_HitRatio(benchmark::State &st)
{
	const int w = int(st.range(0)), pct = int(st.range(1)), pol = int(st.range(2));
	const Trace &t = trace(w);
	const size_t items = size_t(kSpace) * size_t(pct) / 100;
	// The store's limit holds `items` items with an 18-byte table share and
	// its fixed metadata; the LRU baseline then gets as many items as the
	// store's segments hold bytes (ideal packing, free metadata).
	const size_t limit = items * (kItemBytes + 18) + (256u << 10);
	for (auto _ : st) {
		uint64_t hits = 0;
		double lru_items = 0;
		if (pol < 2) {
			struct cache_opts o = {};
			o.limit = limit;
			o.seg_size = 16384;
			o.nshards = 1;
			o.hash_slots = items * 2;
			o.policy = pol == 0 ? CACHE_S3FIFO : CACHE_FIFO;
			struct cache *c = cache_create(&o);
			char k[16], v[32];
			memset(v, 'v', sizeof(v));
			for (uint64_t i = 0; i < t.keys.size(); i++) {
				key_of(k, t.keys[i]);
				struct cache_value cv;
				if (cache_get(c, k, 12, &cv) == 0) {
					cache_value_release(&cv);
					hits += i >= kWarm;
				} else {
					cache_set(c, k, 12, v, sizeof(v), 0, 0);
				}
			}
			struct cache_stats cs;
			cache_stats_get(c, &cs);
			st.counters["segments"] = double(cs.segments);
			st.counters["items"] = double(cs.curr_items);
			st.counters["relocations"] = double(cs.relocations);
			st.counters["table_evictions"] = double(cs.table_evictions);
			cache_destroy(&c);
		} else {
			// LRU gets the bytes of the segments an S3-FIFO store of this
			// limit holds (measured the same way).
			struct cache_opts o = {};
			o.limit = limit;
			o.seg_size = 16384;
			o.nshards = 1;
			o.hash_slots = items * 2;
			struct cache *c = cache_create(&o);
			char k[16], v[32];
			memset(v, 'v', sizeof(v));
			for (uint32_t i = 0; i < kSpace; i++) {
				key_of(k, i);
				cache_set(c, k, 12, v, sizeof(v), 0, 0);
			}
			struct cache_stats cs;
			cache_stats_get(c, &cs);
			lru_items = double(cs.segments) * double(16384 - 8) / double(kItemBytes);
			cache_destroy(&c);
			Lru lru(size_t(lru_items), kSpace * 4);
			for (uint64_t i = 0; i < t.keys.size(); i++)
				hits += lru.access(t.keys[i]) && i >= kWarm;
			st.counters["items"] = lru_items;
		}
		st.counters["hit_ratio"] = double(hits) / double(kMeasure);
	}
}
BENCHMARK(BM_HitRatio)
	->ArgsProduct({{0, 1, 2, 3}, {1, 10}, {0, 1, 2}})
	->ArgNames({"wl", "pct", "pol"})
	->Iterations(1)
	->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
