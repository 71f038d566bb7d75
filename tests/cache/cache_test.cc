// The store (cache/): every operation and its memcached edge cases,
// expiry on a fake clock, flush, reader references that outlive the item,
// the memory limit under random storms, eviction, table growth, counters,
// and a multi-threaded stress run (for TSan).
#include <gtest/gtest.h>

#include <cerrno>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "tests/cache/cache_test_util.h"

namespace {

class CacheTest : public ::testing::Test {
protected:
	FakeClock clk;
	struct cache *c = nullptr;

	void make(size_t limit = 8u << 20, size_t seg = 64 * 1024, unsigned shards = 2,
	          enum cache_policy pol = CACHE_S3FIFO, size_t slots = 0)
	{
		cache_destroy(&c);
		struct cache_opts o = {};
		o.limit = limit;
		o.seg_size = seg;
		o.nshards = shards;
		o.policy = pol;
		o.hash_slots = slots;
		o.clock = FakeClock::read;
		o.clock_arg = &clk;
		c = cache_create(&o);
		ASSERT_NE(c, nullptr);
	}
	void SetUp() override { make(); }
	void TearDown() override { cache_destroy(&c); }
};

TEST_F(CacheTest, CreateRejectsBadOptions)
{
	struct cache_opts o = {};
	EXPECT_EQ(cache_create(&o), nullptr); // no limit
	o.limit = 1 << 20;
	o.nshards = 3;
	EXPECT_EQ(cache_create(&o), nullptr);
	o.nshards = 1;
	o.seg_size = 100;
	EXPECT_EQ(cache_create(&o), nullptr);
	o.seg_size = 0;
	o.limit = 4096; // cannot hold its own metadata
	EXPECT_EQ(cache_create(&o), nullptr);
	struct cache *none = nullptr;
	cache_destroy(&none);
	cache_destroy(nullptr);
}

TEST_F(CacheTest, SetGetMissAndFlags)
{
	EXPECT_EQ(get(c, "a").rc, -ENOENT);
	ASSERT_EQ(set(c, "a", "hello", 42), 0);
	Got g = get(c, "a");
	ASSERT_EQ(g.rc, 0);
	EXPECT_EQ(g.val, "hello");
	EXPECT_EQ(g.flags, 42u);
	EXPECT_EQ(g.exptime, 0u);
	EXPECT_NE(g.cas, 0u);
	ASSERT_EQ(set(c, "a", ""), 0); // empty value
	g = get(c, "a");
	EXPECT_EQ(g.rc, 0);
	EXPECT_EQ(g.val, "");
	EXPECT_EQ(g.flags, 0u);
	struct cache_stats s = stats(c);
	EXPECT_EQ(s.curr_items, 1u);
	EXPECT_EQ(s.get_hits, 2u);
	EXPECT_EQ(s.get_misses, 1u);
	EXPECT_EQ(s.cmd_set, 2u);
	EXPECT_EQ(s.bytes_payload, 1u);
}

TEST_F(CacheTest, KeyLimits)
{
	std::string k250(250, 'k'), k251(251, 'k');
	EXPECT_EQ(set(c, k250, "v"), 0);
	EXPECT_EQ(get(c, k250).val, "v");
	EXPECT_EQ(set(c, k251, "v"), -EINVAL);
	EXPECT_EQ(get(c, k251).rc, -EINVAL);
	EXPECT_EQ(cache_set(c, "", 0, "v", 1, 0, 0), -EINVAL);
	EXPECT_EQ(cache_delete(c, "", 0, 0), -EINVAL);
	// Binary keys: NUL bytes and keys sharing a prefix.
	std::string b1("a\0b", 3), b2("a\0c", 3);
	EXPECT_EQ(set(c, b1, "1"), 0);
	EXPECT_EQ(set(c, b2, "2"), 0);
	EXPECT_EQ(get(c, b1).val, "1");
	EXPECT_EQ(get(c, b2).val, "2");
}

TEST_F(CacheTest, CasValuesAreUniqueAndChangeOnWrite)
{
	std::set<uint64_t> seen;
	for (int i = 0; i < 1000; i++) {
		uint64_t cas = 0;
		ASSERT_EQ(store(c, CACHE_SET, "k" + std::to_string(i % 10), "v", 0, &cas), 0);
		EXPECT_TRUE(seen.insert(cas).second) << "duplicate cas " << cas;
		EXPECT_EQ(get(c, "k" + std::to_string(i % 10)).cas, cas);
	}
}

TEST_F(CacheTest, AddReplace)
{
	EXPECT_EQ(store(c, CACHE_REPLACE, "k", "v"), -ENOENT);
	EXPECT_EQ(get(c, "k").rc, -ENOENT);
	EXPECT_EQ(store(c, CACHE_ADD, "k", "v1"), 0);
	EXPECT_EQ(store(c, CACHE_ADD, "k", "v2"), -EEXIST);
	EXPECT_EQ(get(c, "k").val, "v1");
	EXPECT_EQ(store(c, CACHE_REPLACE, "k", "v3"), 0);
	EXPECT_EQ(get(c, "k").val, "v3");
	struct cache_stats s = stats(c);
	EXPECT_EQ(s.cmd_add, 2u);
	EXPECT_EQ(s.cmd_replace, 2u);
}

TEST_F(CacheTest, AppendPrepend)
{
	EXPECT_EQ(store(c, CACHE_APPEND, "k", "x"), -ENOTSUP);
	EXPECT_EQ(store(c, CACHE_PREPEND, "k", "x"), -ENOTSUP);
	EXPECT_EQ(get(c, "k").rc, -ENOENT);
	ASSERT_EQ(set(c, "k", "mid", 7, 100), 0);
	ASSERT_EQ(store(c, CACHE_APPEND, "k", "_end", 0, nullptr, 99, 5), 0);
	ASSERT_EQ(store(c, CACHE_PREPEND, "k", "start_", 0, nullptr, 98, 6), 0);
	Got g = get(c, "k");
	EXPECT_EQ(g.val, "start_mid_end");
	EXPECT_EQ(g.flags, 7u); // append keeps flags and expiry
	EXPECT_EQ(g.exptime, uint32_t(clk.now + 100));
	// A conditional append.
	EXPECT_EQ(store(c, CACHE_APPEND, "k", "!", g.cas + 1), -EEXIST);
	EXPECT_EQ(store(c, CACHE_APPEND, "k", "!", g.cas), 0);
	EXPECT_EQ(get(c, "k").val, "start_mid_end!");
}

TEST_F(CacheTest, CasOperation)
{
	EXPECT_EQ(store(c, CACHE_CAS, "k", "v", 12345), -ENOENT);
	EXPECT_EQ(store(c, CACHE_CAS, "k", "v", 0), -EINVAL);
	uint64_t cas1 = 0, cas2 = 0;
	ASSERT_EQ(store(c, CACHE_SET, "k", "v1", 0, &cas1), 0);
	EXPECT_EQ(store(c, CACHE_CAS, "k", "v2", cas1 + 1), -EEXIST);
	EXPECT_EQ(stats(c).cas_mismatch, 1u);
	EXPECT_EQ(get(c, "k").val, "v1");
	ASSERT_EQ(store(c, CACHE_CAS, "k", "v2", cas1, &cas2), 0);
	EXPECT_NE(cas1, cas2);
	EXPECT_EQ(store(c, CACHE_CAS, "k", "v3", cas1), -EEXIST); // stale
	EXPECT_EQ(get(c, "k").val, "v2");
	// SET with a cas behaves like CAS.
	EXPECT_EQ(store(c, CACHE_SET, "k", "v4", cas1), -EEXIST);
	EXPECT_EQ(store(c, CACHE_SET, "k", "v4", cas2), 0);
}

TEST_F(CacheTest, Delete)
{
	EXPECT_EQ(cache_delete(c, "k", 1, 0), -ENOENT);
	uint64_t cas = 0;
	ASSERT_EQ(store(c, CACHE_SET, "k", "v", 0, &cas), 0);
	EXPECT_EQ(cache_delete(c, "k", 1, cas + 1), -EEXIST);
	EXPECT_EQ(get(c, "k").val, "v");
	EXPECT_EQ(cache_delete(c, "k", 1, cas), 0);
	EXPECT_EQ(get(c, "k").rc, -ENOENT);
	EXPECT_EQ(cache_delete(c, "k", 1, 0), -ENOENT);
	EXPECT_EQ(stats(c).curr_items, 0u);
}

static int arith(struct cache *c, const std::string &k, bool decr, uint64_t d,
                 uint64_t *out, const struct cache_arith_init *init = nullptr,
                 uint64_t cas = 0, uint64_t *cas_out = nullptr)
{
	return cache_arith(c, k.data(), k.size(), decr, d, init, cas, out, cas_out);
}

TEST_F(CacheTest, IncrDecrRules)
{
	uint64_t v = 0;
	EXPECT_EQ(arith(c, "n", false, 1, &v), -ENOENT);
	ASSERT_EQ(set(c, "n", "99", 5, 1000), 0);
	ASSERT_EQ(arith(c, "n", false, 1, &v), 0);
	EXPECT_EQ(v, 100u);
	Got g = get(c, "n");
	EXPECT_EQ(g.val, "100"); // grew by one digit
	EXPECT_EQ(g.flags, 5u);  // flags and expiry kept
	EXPECT_EQ(g.exptime, uint32_t(clk.now + 1000));
	ASSERT_EQ(arith(c, "n", true, 1, &v), 0);
	// Shorter: padded with spaces to the stored length (memcached).
	EXPECT_EQ(get(c, "n").val, "99 ");
	ASSERT_EQ(arith(c, "n", true, 1000, &v), 0);
	EXPECT_EQ(v, 0u); // decr floors at 0
	EXPECT_EQ(get(c, "n").val, "0  ");
	ASSERT_EQ(arith(c, "n", false, 1234, &v), 0);
	EXPECT_EQ(get(c, "n").val, "1234"); // longer: its own length
	ASSERT_EQ(set(c, "n", "18446744073709551615"), 0);
	ASSERT_EQ(arith(c, "n", false, 2, &v), 0);
	EXPECT_EQ(v, 1u); // incr wraps at 2^64
	EXPECT_EQ(get(c, "n").val, "1" + std::string(19, ' '));
	// Numbers as strtoull reads them: leading whitespace, anything after
	// a whitespace byte that ends the digits, leading zeros.
	for (const char *ok : {" 1", "1 x", "1\t", "000000000000000000001"}) {
		ASSERT_EQ(set(c, "n", ok), 0);
		EXPECT_EQ(arith(c, "n", false, 1, &v), 0) << ok;
		EXPECT_EQ(v, 2u) << ok;
		EXPECT_EQ(get(c, "n").val, "2" + std::string(strlen(ok) - 1, ' ')) << ok;
	}
	// Non-numeric values.
	for (const char *bad : {"abc", "12a", "", "-1", "18446744073709551616"}) {
		ASSERT_EQ(set(c, "n", bad), 0);
		EXPECT_EQ(arith(c, "n", false, 1, &v), -EINVAL) << bad;
		EXPECT_EQ(get(c, "n").val, bad);
	}
	EXPECT_EQ(stats(c).cmd_arith, 15u);
	EXPECT_EQ(stats(c).incr_misses, 1u);
	EXPECT_EQ(stats(c).incr_hits, 12u);
	EXPECT_EQ(stats(c).decr_hits, 2u);
}

TEST_F(CacheTest, IncrInitialCasAndNewVersion)
{
	uint64_t v = 0, cas = 0, cas2 = 0;
	struct cache_arith_init init = {10, 0, 3};
	ASSERT_EQ(arith(c, "n", false, 5, &v, &init, 0, &cas), 0);
	EXPECT_EQ(v, 10u); // created with the initial value, delta not applied
	EXPECT_EQ(get(c, "n").flags, 3u);
	EXPECT_EQ(arith(c, "n", false, 1, &v, nullptr, cas + 1), -EEXIST);
	// A reader holding the value keeps the old bytes: incr makes a new version.
	struct cache_value held;
	ASSERT_EQ(cache_get(c, "n", 1, &held), 0);
	ASSERT_EQ(arith(c, "n", false, 90, &v, nullptr, cas, &cas2), 0);
	EXPECT_EQ(v, 100u);
	EXPECT_NE(cas2, cas);
	EXPECT_EQ(slice_str(held.data), "10");
	EXPECT_EQ(get(c, "n").val, "100");
	EXPECT_EQ(get(c, "n").cas, cas2);
	cache_value_release(&held);
	// An initial value with an expiry already past is "stored" and gone.
	struct cache_arith_init gone = {1, -1, 0};
	ASSERT_EQ(arith(c, "m", false, 1, &v, &gone), 0);
	EXPECT_EQ(get(c, "m").rc, -ENOENT);
}

TEST_F(CacheTest, ExpirationRules)
{
	int64_t t0 = clk.now;
	ASSERT_EQ(set(c, "rel", "v", 0, 10), 0);
	ASSERT_EQ(set(c, "max_rel", "v", 0, CACHE_REALTIME_MAXDELTA), 0);
	ASSERT_EQ(set(c, "abs", "v", 0, t0 + 20), 0);
	ASSERT_EQ(set(c, "abs_past", "v", 0, CACHE_REALTIME_MAXDELTA + 1), 0);
	ASSERT_EQ(set(c, "neg", "v", 0, -1), 0);
	ASSERT_EQ(set(c, "never", "v", 0, 0), 0);
	EXPECT_EQ(get(c, "rel").exptime, uint32_t(t0 + 10));
	EXPECT_EQ(get(c, "max_rel").exptime, uint32_t(t0 + CACHE_REALTIME_MAXDELTA));
	EXPECT_EQ(get(c, "abs").exptime, uint32_t(t0 + 20));
	EXPECT_EQ(get(c, "abs_past").rc, -ENOENT); // 30 days + 1 s is 1970
	EXPECT_EQ(get(c, "neg").rc, -ENOENT);
	clk.now = t0 + 9;
	EXPECT_EQ(get(c, "rel").rc, 0);
	clk.now = t0 + 10; // expires at exactly now + ttl
	EXPECT_EQ(get(c, "rel").rc, -ENOENT);
	EXPECT_EQ(get(c, "abs").rc, 0);
	clk.now = t0 + 20;
	EXPECT_EQ(get(c, "abs").rc, -ENOENT);
	clk.now = t0 + CACHE_REALTIME_MAXDELTA;
	EXPECT_EQ(get(c, "max_rel").rc, -ENOENT);
	EXPECT_EQ(get(c, "never").rc, 0);
	EXPECT_GE(stats(c).get_expired, 3u);
	// Writers see expired items as absent.
	ASSERT_EQ(set(c, "x", "v", 0, 5), 0);
	clk.now += 5;
	EXPECT_EQ(store(c, CACHE_ADD, "x", "new"), 0);
	EXPECT_EQ(get(c, "x").val, "new");
}

TEST_F(CacheTest, TouchAndGat)
{
	int64_t t0 = clk.now;
	EXPECT_EQ(cache_touch(c, "k", 1, 10), -ENOENT);
	uint64_t cas = 0;
	ASSERT_EQ(store(c, CACHE_SET, "k", "v", 0, &cas, 0, 10), 0);
	ASSERT_EQ(cache_touch(c, "k", 1, 100), 0);
	Got g = get(c, "k");
	EXPECT_EQ(g.exptime, uint32_t(t0 + 100));
	EXPECT_EQ(g.cas, cas); // touch keeps the CAS
	clk.now = t0 + 50;
	EXPECT_EQ(get(c, "k").rc, 0);
	// GAT: value and new expiry in one call.
	struct cache_value v;
	ASSERT_EQ(cache_gat(c, "k", 1, 0, &v), 0);
	EXPECT_EQ(slice_str(v.data), "v");
	EXPECT_EQ(v.exptime, 0u);
	EXPECT_EQ(v.cas, cas);
	cache_value_release(&v);
	clk.now = t0 + 1000;
	EXPECT_EQ(get(c, "k").rc, 0);
	// An item stored without expiry is rewritten to get one, same CAS.
	uint64_t cas2 = 0;
	ASSERT_EQ(store(c, CACHE_SET, "n", "never", 0, &cas2, 9), 0);
	ASSERT_EQ(cache_touch(c, "n", 1, 5), 0);
	g = get(c, "n");
	EXPECT_EQ(g.val, "never");
	EXPECT_EQ(g.flags, 9u);
	EXPECT_EQ(g.cas, cas2);
	EXPECT_EQ(store(c, CACHE_CAS, "n", "cas ok", cas2), 0);
	ASSERT_EQ(cache_touch(c, "n", 1, 5), 0);
	clk.now += 5;
	EXPECT_EQ(get(c, "n").rc, -ENOENT);
	// Touch / GAT with a past expiry succeed (GAT returns the value), and
	// the item is gone afterwards (memcached).
	ASSERT_EQ(set(c, "p", "v"), 0);
	ASSERT_EQ(cache_gat(c, "p", 1, -1, &v), 0);
	EXPECT_EQ(v.data.len, 1u);
	cache_value_release(&v);
	EXPECT_EQ(get(c, "p").rc, -ENOENT);
	ASSERT_EQ(set(c, "p", "v"), 0);
	EXPECT_EQ(cache_touch(c, "p", 1, clk.now - 1), 0);
	EXPECT_EQ(get(c, "p").rc, -ENOENT);
	EXPECT_EQ(cache_touch(c, "p", 1, -1), -ENOENT);
	EXPECT_EQ(cache_gat(c, "zz", 2, 10, &v), -ENOENT);
	EXPECT_EQ(get(c, "k").rc, 0); // made permanent by the GAT above
	EXPECT_EQ(stats(c).curr_items, 2u); // k, and n awaiting reclaim
}

// Every operation that writes a new version of an existing item (touch and
// gat giving an expiry to an item stored without one, append, prepend,
// incr/decr, cas) while its allocation evicts: the old version's segment may
// be the victim, so nothing of it may be read once the allocation is done
// (touch/gat read the key from the old item itself; docs/cache.md, "A new
// version reads nothing of the old one after allocating"). Every hit must
// hold the last value written.
TEST_F(CacheTest, RestoresWhileEvictingReadNothingFreed)
{
	for (size_t seg : {size_t(32 * 1024), size_t(320 * 1024)}) {
		make(seg * 12, seg, 1);
		std::mt19937_64 rng(seg + 7);
		std::map<std::string, std::string> model;
		const int nkeys = 3000;
		for (int i = 0; i < 60000; i++) {
			std::string k = "k" + std::to_string(rng() % nkeys);
			auto it = model.find(k);
			int op = int(rng() % 8);
			if (op < 2 || it == model.end()) {
				size_t n = 1 + rng() % (op == 0 ? 20000 : 200);
				std::string v(n, char('a' + rng() % 26));
				int rc = set(c, k, v);
				if (rc == 0) {
					model[k] = v;
				} else { // a store of a few segments: all in use
					ASSERT_EQ(rc, -ENOMEM);
					cache_delete(c, k.data(), k.size(), 0);
					model.erase(k);
				}
				continue;
			}
			int rc;
			std::string want = it->second;
			switch (op) {
			case 2:
				rc = cache_touch(c, k.data(), k.size(), 100 + int64_t(rng() % 100));
				break;
			case 3: {
				struct cache_value v;
				rc = cache_gat(c, k.data(), k.size(), 100 + int64_t(rng() % 100), &v);
				if (rc == 0) {
					EXPECT_EQ(slice_str(v.data), want) << k;
					cache_value_release(&v);
				}
				break;
			}
			case 4:
				rc = store(c, CACHE_APPEND, k, "+a");
				want += "+a";
				break;
			case 5:
				rc = store(c, CACHE_PREPEND, k, "p+");
				want = "p+" + want;
				break;
			case 6: {
				Got g = get(c, k);
				rc = g.rc;
				if (rc == 0)
					rc = store(c, CACHE_CAS, k, "cas" + k, g.cas);
				want = "cas" + k;
				break;
			}
			default: {
				ASSERT_EQ(set(c, k, "10"), 0);
				uint64_t nv = 0;
				rc = cache_arith(c, k.data(), k.size(), false, 5, nullptr, 0, &nv,
				                 nullptr);
				if (rc == 0) {
					EXPECT_EQ(nv, 15u);
				}
				want = "15";
				break;
			}
			}
			if (rc == 0)
				model[k] = want;
			else if (rc == -ENOENT || rc == -ENOTSUP)
				model.erase(k); // evicted before the operation
			else
				ASSERT_TRUE(rc == -ENOMEM) << "rc " << rc;
			Got g = get(c, k);
			if (g.rc == 0 && model.count(k)) {
				ASSERT_EQ(g.val, model[k]) << k << " op " << op;
			}
		}
		EXPECT_GT(stats(c).evictions, 0u);
	}
}

TEST_F(CacheTest, FlushAllNowAndDelayed)
{
	for (int i = 0; i < 100; i++)
		ASSERT_EQ(set(c, "k" + std::to_string(i), "v"), 0);
	ASSERT_EQ(cache_flush_all(c, 0), 0);
	for (int i = 0; i < 100; i++)
		EXPECT_EQ(get(c, "k" + std::to_string(i)).rc, -ENOENT);
	ASSERT_EQ(set(c, "after", "v"), 0);
	EXPECT_EQ(get(c, "after").rc, 0);
	cache_expire(c);
	EXPECT_EQ(stats(c).curr_items, 1u); // flushed memory was reclaimed

	// Delayed: items stay until the moment, then everything stored before
	// it goes; items stored after it survive.
	ASSERT_EQ(set(c, "old", "v"), 0);
	ASSERT_EQ(cache_flush_all(c, 10), 0);
	ASSERT_EQ(set(c, "mid", "v"), 0);
	clk.now += 9;
	EXPECT_EQ(get(c, "old").rc, 0);
	EXPECT_EQ(get(c, "mid").rc, 0);
	clk.now += 1;
	EXPECT_EQ(get(c, "old").rc, -ENOENT);
	EXPECT_EQ(get(c, "mid").rc, -ENOENT);
	EXPECT_EQ(get(c, "after").rc, -ENOENT);
	ASSERT_EQ(set(c, "new", "v"), 0);
	EXPECT_EQ(get(c, "new").rc, 0);
	clk.now += 100;
	EXPECT_EQ(get(c, "new").rc, 0);
	EXPECT_EQ(stats(c).cmd_flush, 2u);
}

TEST_F(CacheTest, ExpiredMemoryIsReclaimedProactively)
{
	make(8u << 20, 64 * 1024, 1);
	std::string val(200, 'x');
	for (int i = 0; i < 3000; i++) // ~10 segments of short-lived items
		ASSERT_EQ(set(c, "t" + std::to_string(i), val, 0, 60), 0);
	for (int i = 0; i < 100; i++)
		ASSERT_EQ(set(c, "keep" + std::to_string(i), val, 0, 0), 0);
	struct cache_stats s0 = stats(c);
	EXPECT_EQ(s0.curr_items, 3100u);
	clk.now += 61;
	int freed = cache_expire(c);
	EXPECT_GE(freed, 9);
	struct cache_stats s1 = stats(c);
	EXPECT_EQ(s1.curr_items, 100u);
	EXPECT_GE(s1.expired_reclaimed, 2900u);
	EXPECT_LT(s1.segments, s0.segments);
	EXPECT_EQ(get(c, "keep7").val, val);
	// Writes also sweep: each time a segment fills, the shard's expired
	// segments go (no call to cache_expire).
	for (int i = 0; i < 3000; i++)
		ASSERT_EQ(set(c, "u" + std::to_string(i), val, 0, 60), 0);
	clk.now += 61;
	for (int i = 0; i < 400; i++)
		ASSERT_EQ(set(c, "w" + std::to_string(i), val, 0, 0), 0);
	EXPECT_LE(stats(c).curr_items, 100u + 400u + 300u);
	EXPECT_EQ(stats(c).evictions, 0u);
}

TEST_F(CacheTest, TooLargeIsE2BIG)
{
	std::string big(64 * 1024, 'b');
	EXPECT_EQ(set(c, "big", big), -E2BIG);
	std::string fits(60 * 1024, 'f');
	EXPECT_EQ(set(c, "fits", fits), 0);
	EXPECT_EQ(get(c, "fits").val, fits);
	// Appending past the limit fails and leaves the item alone.
	EXPECT_EQ(store(c, CACHE_APPEND, "fits", std::string(8 * 1024, 'a')), -E2BIG);
	EXPECT_EQ(get(c, "fits").val, fits);
}

// SET copies the value once from the chain; GET copies nothing and hands
// out a slice of the segment.
TEST_F(CacheTest, SetCopiesOnceGetCopiesNothing)
{
	struct bp_pool_opts po = {"input", 0, false, 0};
	struct bp_pool *in = bp_pool_create(&po);
	ASSERT_NE(in, nullptr);
	struct bp_chain ch;
	bp_chain_init(&ch, in);
	std::string hdr = "set key 0 0 3000\r\n", val(3000, 'v');
	for (size_t i = 0; i < val.size(); i++)
		val[i] = char('a' + i % 26);
	ASSERT_EQ(bp_chain_append(&ch, hdr.data(), hdr.size()), 0);
	ASSERT_EQ(bp_chain_append(&ch, val.data(), val.size()), 0);
	struct bp_stats a, b;
	bp_pool_stats(in, &a);
	uint64_t cas = 0;
	ASSERT_EQ(cache_store(c, CACHE_SET, "key", 3, &ch, hdr.size(), val.size(), 1,
	                      0, 0, &cas), 0);
	bp_pool_stats(in, &b);
	EXPECT_EQ(b.copied_out_bytes - a.copied_out_bytes, val.size());
	EXPECT_EQ(bp_chain_len(&ch), hdr.size() + val.size()); // not consumed
	EXPECT_EQ(cache_store(c, CACHE_SET, "key", 3, &ch, hdr.size(), ch.len, 1, 0, 0,
	                      nullptr), -EINVAL); // range past the end

	struct bp_stats s0 = pstats(c);
	struct cache_value v;
	ASSERT_EQ(cache_get(c, "key", 3, &v), 0);
	struct bp_stats s1 = pstats(c);
	EXPECT_EQ(s1.copied_out_bytes + s1.copied_view_bytes + s1.copied_append_bytes,
	          s0.copied_out_bytes + s0.copied_view_bytes + s0.copied_append_bytes);
	EXPECT_EQ(s1.block_gets, s0.block_gets); // no allocation either
	EXPECT_EQ(v.data.len, val.size());
	EXPECT_EQ(memcmp(bp_slice_ptr(&v.data), val.data(), val.size()), 0);
	EXPECT_EQ(v.cas, cas);
	// The response path appends it by reference.
	struct bp_chain out;
	bp_chain_init(&out, in);
	ASSERT_EQ(bp_chain_append_ref(&out, &v.data), 0);
	bp_pool_stats(in, &a);
	EXPECT_EQ(a.copied_append_bytes, b.copied_append_bytes);
	bp_chain_deinit(&out);
	cache_value_release(&v);
	bp_chain_deinit(&ch);
	bp_pool_destroy(&in);
}

// A value held by a reader survives replacement, deletion, flush and the
// eviction of its whole segment; the segment leaves the limit when it is
// evicted (detached: the store may take a new one at once) and its memory
// goes back to the system only at the reader's unref.
TEST_F(CacheTest, HeldValueSurvivesReplaceDeleteEvict)
{
	for (size_t seg : {size_t(64 * 1024), size_t(512 * 1024)}) {
		make(4u << 20, seg, 1);
		std::string val(1000, 'A');
		ASSERT_EQ(set(c, "held", val), 0);
		struct cache_value v;
		ASSERT_EQ(cache_get(c, "held", 4, &v), 0);
		EXPECT_EQ(bp_block_refs(v.data.blk), 2u); // store + reader
		ASSERT_EQ(set(c, "held", std::string(1000, 'B')), 0);
		EXPECT_EQ(get(c, "held").val, std::string(1000, 'B'));
		ASSERT_EQ(cache_delete(c, "held", 4, 0), 0);
		std::string filler(1000, 'f');
		for (int i = 0; i < 20000; i++) // 5x the limit: evicts everything
			ASSERT_EQ(set(c, "f" + std::to_string(i), filler), 0);
		EXPECT_GT(stats(c).evictions, 0u);
		EXPECT_EQ(bp_block_refs(v.data.blk), 1u); // the store let go
		EXPECT_EQ(slice_str(v.data), val);
		struct bp_stats before = pstats(c);
		EXPECT_EQ(before.detached_bytes, seg); // out of the limit
		EXPECT_EQ(stats(c).pinned_evictions, 1u);
		EXPECT_EQ(stats(c).bytes_pinned_evicted, seg);
		cache_value_release(&v);
		struct bp_stats after = pstats(c);
		EXPECT_EQ(after.block_puts, before.block_puts + 1);
		EXPECT_EQ(after.blocks_in_use, before.blocks_in_use - 1);
		EXPECT_EQ(after.detached_bytes, 0u); // unmapped at the last unref
		EXPECT_EQ(after.sys_bytes, before.sys_bytes - seg);
		EXPECT_EQ(after.charged_bytes, before.charged_bytes);
		EXPECT_EQ(stats(c).bytes_pinned_evicted_peak, seg);
		EXPECT_LE(after.charged_bytes, after.limit_bytes);
	}
}

// Random operation storms never take the store over its limit, and every
// hit returns the last value written for its key.
TEST_F(CacheTest, LimitHoldsUnderRandomStorm)
{
	for (size_t seg : {size_t(32 * 1024), size_t(320 * 1024)}) {
		const size_t limit = 3u << 20;
		make(limit, seg, 2);
		std::mt19937_64 rng(seg);
		std::map<std::string, std::string> model;
		std::vector<struct cache_value> held;
		for (int op = 0; op < 60000; op++) {
			std::string k = "key" + std::to_string(rng() % 5000);
			unsigned r = rng() % 100;
			size_t len = rng() % 8 == 0 ? rng() % 20000 : rng() % 300;
			std::string v(len, char('a' + rng() % 26));
			if (r < 45) {
				if (set(c, k, v) == 0)
					model[k] = v;
			} else if (r < 80) {
				Got g = get(c, k);
				if (g.rc == 0) {
					ASSERT_TRUE(model.count(k));
					ASSERT_EQ(g.val, model[k]);
				}
			} else if (r < 85) {
				int rc = cache_delete(c, k.data(), k.size(), 0);
				ASSERT_TRUE(rc == 0 || rc == -ENOENT);
				model.erase(k);
			} else if (r < 92) {
				int rc = store(c, CACHE_APPEND, k, v.substr(0, 50));
				if (rc == 0)
					model[k] += v.substr(0, 50);
				else
					ASSERT_TRUE(rc == -ENOTSUP || rc == -E2BIG || rc == -ENOMEM) << rc;
			} else if (r < 96) {
				// hold a few values for a while (pins segments)
				struct cache_value hv;
				if (cache_get(c, k.data(), k.size(), &hv) == 0)
					held.push_back(hv);
				if (held.size() > 8) {
					cache_value_release(&held.front());
					held.erase(held.begin());
				}
			} else {
				uint64_t nv;
				int rc = cache_arith(c, k.data(), k.size(), false, 1, nullptr, 0,
				                     &nv, nullptr);
				if (rc == 0)
					model[k] = std::to_string(nv);
			}
			if (op % 997 == 0) {
				struct bp_stats ps = pstats(c);
				ASSERT_LE(ps.charged_bytes, limit);
				ASSERT_EQ(ps.limit_bytes, limit);
				struct cache_stats cs = stats(c);
				ASSERT_LE(cs.bytes_held, limit);
				ASSERT_LE((cs.segments - cs.large_items) * seg, limit);
			}
		}
		for (auto &hv : held)
			cache_value_release(&hv);
		struct cache_stats cs = stats(c);
		EXPECT_GT(cs.evictions, 0u);
		EXPECT_LE(pstats(c).charged_bytes, limit);
	}
}

// When every segment is pinned by readers, writes get -ENOMEM (counted);
// once readers let go, writes work again.
TEST_F(CacheTest, EnomemWhenEverythingIsReferenced)
{
	make(2u << 20, 320 * 1024, 1);
	std::vector<struct cache_value> held;
	std::string val(8000, 'z');
	int rc = 0, i = 0;
	for (; i < 10000; i++) {
		std::string k = "k" + std::to_string(i);
		rc = set(c, k, val);
		if (rc != 0)
			break;
		struct cache_value v;
		ASSERT_EQ(cache_get(c, k.data(), k.size(), &v), 0);
		held.push_back(v);
	}
	EXPECT_EQ(rc, -ENOMEM);
	EXPECT_GE(stats(c).enomem, 1u);
	EXPECT_LE(pstats(c).charged_bytes, 2u << 20);
	// Evicted segments the readers pinned left the limit, up to its size
	// again (pinned_max 0: the limit): more than the limit was stored.
	EXPECT_LE(pstats(c).detached_bytes, 2u << 20);
	EXPECT_GT(pstats(c).detached_bytes, 1u << 20);
	EXPECT_GT((size_t)i * val.size(), 3u << 20);
	for (auto &v : held) {
		EXPECT_EQ(slice_str(v.data), val);
		cache_value_release(&v);
	}
	EXPECT_EQ(set(c, "again", val), 0);
	EXPECT_EQ(get(c, "again").val, val);
}

// Items over a quarter of a segment get blocks of their own: a store of
// small segments takes items larger than a segment, evicts for them like
// for any other, and holds close to its limit in items.
TEST_F(CacheTest, LargeItemsHaveBlocksOfTheirOwn)
{
	const size_t limit = 3u << 20;
	struct cache_opts o = {};
	o.limit = limit;
	o.seg_size = 64 * 1024;
	o.nshards = 1;
	o.max_item = 1u << 20; // 16 segments
	o.clock = FakeClock::read;
	o.clock_arg = &clk;
	cache_destroy(&c);
	c = cache_create(&o);
	ASSERT_NE(c, nullptr);
	for (size_t len : {size_t(20 * 1024), size_t(100 * 1024), size_t(1u << 20) - 10}) {
		const int n = (int)(3 * limit / len) + 10; // 3x the limit: evicts
		for (int i = 0; i < n; i++) {
			std::string v(len, char('a' + i % 26));
			ASSERT_EQ(set(c, "big" + std::to_string(i), v), 0) << len << " " << i;
			EXPECT_EQ(get(c, "big" + std::to_string(i)).val, v);
			ASSERT_LE(pstats(c).charged_bytes, limit);
		}
		struct cache_stats cs = stats(c);
		EXPECT_GT(cs.large_items, 0u);
		EXPECT_GT(cs.evictions, 0u);
		// the newest survive whole; the store is mostly items
		std::string last(len, char('a' + (n - 1) % 26));
		EXPECT_EQ(get(c, "big" + std::to_string(n - 1)).val, last);
		EXPECT_GT(cs.bytes_items * 10, limit * 6) << len;
	}
	// small items and large ones share the limit
	for (int i = 0; i < 60000; i++)
		ASSERT_EQ(set(c, "s" + std::to_string(i), std::string(100, 's')), 0);
	EXPECT_LE(pstats(c).charged_bytes, limit);
	// (S3-FIFO keeps the few large items read since they were written)
	EXPECT_LE(stats(c).large_items, 3u);
	EXPECT_EQ(get(c, "s59999").val, std::string(100, 's'));
	std::string too_big((1u << 20) + 1, 'x');
	EXPECT_EQ(set(c, "toobig", too_big), -E2BIG);
}

// A large item the policy keeps (read since it was written) is queued again
// as it is: no copy, and it survives the scan that evicts unread ones.
TEST_F(CacheTest, ReadLargeItemIsKeptWithoutACopy)
{
	struct cache_opts o = {};
	o.limit = 2u << 20;
	o.seg_size = 64 * 1024;
	o.nshards = 1;
	o.max_item = 256 * 1024;
	o.clock = FakeClock::read;
	o.clock_arg = &clk;
	cache_destroy(&c);
	c = cache_create(&o);
	ASSERT_NE(c, nullptr);
	std::string hot(200 * 1024, 'h');
	ASSERT_EQ(set(c, "hot", hot), 0);
	for (int i = 0; i < 200; i++) { // 10x the limit of large items
		EXPECT_EQ(get(c, "hot").val, hot); // read: kept
		ASSERT_EQ(set(c, "cold" + std::to_string(i), std::string(100 * 1024, 'c')), 0);
	}
	EXPECT_EQ(get(c, "hot").val, hot);
	EXPECT_EQ(stats(c).relocations, 0u);
	EXPECT_GT(stats(c).evictions, 100u);
}

// S3-FIFO keeps a hot working set through a one-pass scan that FIFO
// loses.
TEST_F(CacheTest, S3FifoSurvivesScanFifoDoesNot)
{
	auto hot_after_scan = [&](enum cache_policy pol) {
		make(2u << 20, 32 * 1024, 1, pol);
		std::string val(100, 'h');
		for (int round = 0; round < 3; round++)
			for (int i = 0; i < 2000; i++) {
				std::string k = "hot" + std::to_string(i);
				if (get(c, k).rc != 0) {
					EXPECT_EQ(set(c, k, val), 0);
				}
			}
		for (int i = 0; i < 40000; i++) // one-time scan, 3x the cache
			EXPECT_EQ(set(c, "scan" + std::to_string(i), val), 0);
		int hits = 0;
		for (int i = 0; i < 2000; i++)
			hits += get(c, "hot" + std::to_string(i)).rc == 0;
		return hits;
	};
	int s3 = hot_after_scan(CACHE_S3FIFO);
	int fifo = hot_after_scan(CACHE_FIFO);
	EXPECT_GT(s3, 1800);
	EXPECT_LT(fifo, 100);
	EXPECT_GT(stats(c).evictions, 0u);
}

// Under steady eviction with relocation, the segments stay full of live
// items (a segment lost between the queues would show up as dead space).
TEST_F(CacheTest, SegmentsStayUsedUnderEviction)
{
	make(1u << 20, 16384, 1, CACHE_S3FIFO, 40000);
	std::mt19937_64 rng(5);
	std::string val(32, 'v');
	for (int i = 0; i < 300000; i++) {
		// skewed: half the requests to 2000 keys
		uint64_t id = rng() % 2 ? rng() % 2000 : rng() % 200000;
		std::string k = "key:" + std::to_string(id);
		if (get(c, k).rc != 0) {
			ASSERT_EQ(set(c, k, val), 0);
		}
	}
	struct cache_stats s = stats(c);
	EXPECT_GT(s.relocations, 1000u);
	EXPECT_GT(s.evictions, 10000u);
	double used = double(s.bytes_items) / double(s.segments * (16384 - 8));
	EXPECT_GT(used, 0.85) << s.bytes_items << " of " << s.segments << " segments";
}

// Overwrites leave old versions in the log. A store with room for all of its
// data (here about 75 % of the segment space) must reclaim that garbage by
// cleaning — keeping every live item of the segments it empties — rather
// than evict live items it has room for: every key keeps its latest value
// and nothing is evicted, however many times the log wraps (docs/cache.md,
// "Cleaning: garbage before items").
TEST_F(CacheTest, OverwritesWithRoomLoseNothing)
{
	make(8u << 20, 64 * 1024, 2, CACHE_S3FIFO, 4096);
	const int n = 1400;
	std::vector<int> version(n, 0);
	auto value = [](int k, int v) {
		std::string s = std::to_string(k) + ":" + std::to_string(v) + ":";
		s.resize(4000, 'x');
		return s;
	};
	for (int k = 0; k < n; k++)
		ASSERT_EQ(set(c, "ow" + std::to_string(k), value(k, 0)), 0);
	std::mt19937_64 rng(11);
	for (int i = 0; i < 20 * n; i++) { // the log wraps ~20 times
		int k = static_cast<int>(rng() % n);
		ASSERT_EQ(set(c, "ow" + std::to_string(k), value(k, ++version[k])), 0);
	}
	struct cache_stats s = stats(c);
	EXPECT_EQ(s.evictions, 0u);
	EXPECT_GT(s.segs_cleaned, 0u);
	EXPECT_EQ(s.curr_items, uint64_t(n));
	for (int k = 0; k < n; k++)
		ASSERT_EQ(get(c, "ow" + std::to_string(k)).val, value(k, version[k])) << k;
	// A store whose data does not fit still evicts (cleaning must not
	// keep it from making room).
	for (int k = n; k < 4 * n; k++)
		ASSERT_EQ(set(c, "ow" + std::to_string(k), value(k, 0)), 0);
	EXPECT_GT(stats(c).evictions, 0u);
}

TEST_F(CacheTest, TableGrowsAndKeepsItems)
{
	make(32u << 20, 64 * 1024, 2, CACHE_S3FIFO, 64);
	const int n = 50000;
	for (int i = 0; i < n; i++)
		ASSERT_EQ(set(c, "g" + std::to_string(i), std::to_string(i)), 0);
	struct cache_stats s = stats(c);
	EXPECT_GT(s.table_grows, 5u);
	EXPECT_GE(s.hash_slots, uint64_t(n));
	EXPECT_EQ(s.curr_items, uint64_t(n));
	EXPECT_EQ(s.evictions + s.table_evictions, 0u);
	for (int i = 0; i < n; i++)
		ASSERT_EQ(get(c, "g" + std::to_string(i)).val, std::to_string(i));
}

// cache_prefetch is only a hint: hits, misses, more keys than it takes and
// an empty key change no item and no counter.
TEST_F(CacheTest, PrefetchChangesNothing)
{
	for (int i = 0; i < 100; i++)
		ASSERT_EQ(set(c, "p" + std::to_string(i), "v" + std::to_string(i)), 0);
	struct cache_stats before = stats(c);
	std::vector<std::string> names;
	for (int i = 0; i < CACHE_PREFETCH_MAX + 8; i++)
		names.push_back(i % 2 ? "p" + std::to_string(i) : "absent" + std::to_string(i));
	std::vector<struct cache_key> keys;
	for (auto &n : names)
		keys.push_back({n.data(), n.size()});
	keys.push_back({"", 0});
	cache_prefetch(c, keys.data(), unsigned(keys.size()));
	cache_prefetch(c, keys.data(), 0);
	struct cache_stats after = stats(c);
	EXPECT_EQ(std::memcmp(&before, &after, sizeof before), 0);
	for (int i = 0; i < 100; i++)
		EXPECT_EQ(get(c, "p" + std::to_string(i)).val, "v" + std::to_string(i));
}

// Prefetching while writers grow the table: the table pointer and size are
// read without the lock (TSan checks the atomics; ASan that nothing is read
// from a freed table).
TEST_F(CacheTest, PrefetchDuringTableGrowth)
{
	make(32u << 20, 64 * 1024, 2, CACHE_S3FIFO, 64);
	std::atomic<bool> stop{false};
	std::thread reader([&] {
		std::vector<std::string> names(16);
		std::vector<struct cache_key> keys(16);
		for (unsigned r = 0; !stop.load(); r++) {
			for (unsigned i = 0; i < 16; i++) {
				names[i] = "g" + std::to_string((r * 16 + i) % 40000);
				keys[i] = {names[i].data(), names[i].size()};
			}
			cache_prefetch(c, keys.data(), 16);
		}
	});
	for (int i = 0; i < 40000; i++)
		ASSERT_EQ(set(c, "g" + std::to_string(i), std::to_string(i)), 0);
	stop = true;
	reader.join();
	EXPECT_GT(stats(c).table_grows, 5u);
	for (int i = 0; i < 40000; i += 97)
		ASSERT_EQ(get(c, "g" + std::to_string(i)).val, std::to_string(i));
}

// A table that cannot grow (pooled segments fill the limit first) evicts
// within its buckets and stays correct.
TEST_F(CacheTest, FullTableEvictsInBuckets)
{
	make(1u << 20, 32 * 1024, 1, CACHE_S3FIFO, 64);
	for (int i = 0; i < 30000; i++)
		ASSERT_EQ(set(c, "b" + std::to_string(i), "v"), 0);
	struct cache_stats s = stats(c);
	EXPECT_LE(s.curr_items, s.hash_slots);
	EXPECT_GT(s.evictions + s.table_evictions, 0u);
	int found = 0;
	for (int i = 0; i < 30000; i++)
		found += get(c, "b" + std::to_string(i)).rc == 0;
	EXPECT_EQ(uint64_t(found), stats(c).curr_items);
}

TEST_F(CacheTest, WarmStoreMakesNoSystemAllocations)
{
	for (size_t seg : {size_t(64 * 1024), size_t(1u << 20)}) {
		make(8u << 20, seg, 2);
		std::string val(100, 'w');
		auto run = [&](int base) {
			for (int i = 0; i < 100000; i++) {
				std::string k = "w" + std::to_string((base + i) % 200000);
				if (get(c, k).rc != 0) {
					ASSERT_EQ(set(c, k, val), 0);
				}
			}
		};
		run(0); // fill and start evicting
		run(100000);
		uint64_t before = pstats(c).sys_alloc_calls;
		run(0);
		EXPECT_EQ(pstats(c).sys_alloc_calls, before) << "seg " << seg;
		EXPECT_GT(stats(c).evictions, 0u);
	}
}

TEST_F(CacheTest, CounterTable)
{
	EXPECT_EQ(cache_ncounters * sizeof(uint64_t), sizeof(struct cache_stats));
	ASSERT_EQ(set(c, "k", "v"), 0);
	get(c, "k");
	struct cache_stats s = stats(c);
	std::set<std::string> names;
	for (size_t i = 0; i < cache_ncounters; i++) {
		EXPECT_TRUE(names.insert(cache_counters[i].name).second);
		EXPECT_NE(cache_counters[i].help[0], '\0');
	}
	EXPECT_TRUE(names.count("get_hits"));
	for (size_t i = 0; i < cache_ncounters; i++)
		if (std::string(cache_counters[i].name) == "get_hits") {
			EXPECT_EQ(cache_stats_value(&s, i), 1u);
		}
	EXPECT_EQ(s.limit_bytes, 8u << 20);
	EXPECT_GT(s.bytes_held, 0u);
	EXPECT_EQ(s.bytes_held, pstats(c).charged_bytes);
}

// Many threads on few keys under memory pressure (run it under TSan).
// Values are self-describing so torn or mixed bytes are detected.
// flush_all against writers on other threads, memcached's order: an item
// whose store returned before the flush was called is gone after it; one
// whose store began after the flush returned stays. Writers run while a
// small store evicts and relocates hot items (readers keep them hot), so a
// relocation in flight cannot carry a flushed item into a new segment.
TEST_F(CacheTest, FlushOrdersWithConcurrentWriters)
{
	for (bool evicting : {false, true}) {
		SCOPED_TRACE(evicting ? "evicting" : "roomy");
		make(evicting ? (1u << 20) : (16u << 20), 32 * 1024, 4);
		const int nwriters = 3, rounds = 6;
		for (int round = 0; round < rounds; round++) {
			std::atomic<bool> stop{false};
			std::atomic<int64_t> acked[nwriters], started[nwriters];
			std::vector<std::thread> ts;
			for (int t = 0; t < nwriters; t++) {
				acked[t] = -1;
				started[t] = 0;
				ts.emplace_back([&, t] {
					std::string v(200, char('a' + t));
					for (int64_t i = 0; !stop.load(); i++) {
						std::string k = "r" + std::to_string(round) + "w" +
						                std::to_string(t) + "_" + std::to_string(i);
						started[t] = i;
						set(c, k, v);
						acked[t] = i;
						if (i % 7 == 0) // hot: relocated, not dropped
							get(c, "r" + std::to_string(round) + "w" +
							               std::to_string(t) + "_" +
							               std::to_string(i / 2));
					}
				});
			}
			std::this_thread::sleep_for(std::chrono::milliseconds(20));
			// evicting: flush only once the writers have made the store
			// evict (a slow machine may take longer than 20 ms to fill it)
			auto evicted = [&] { return stats(c).evictions + stats(c).relocations; };
			for (int w = 0; evicting && round == 0 && evicted() == 0 && w < 5000; w++)
				std::this_thread::sleep_for(std::chrono::milliseconds(1));
			int64_t before[nwriters], after[nwriters];
			for (int t = 0; t < nwriters; t++)
				before[t] = acked[t].load();
			ASSERT_EQ(cache_flush_all(c, 0), 0);
			for (int t = 0; t < nwriters; t++)
				after[t] = started[t].load() + 1;
			std::this_thread::sleep_for(std::chrono::milliseconds(5));
			stop = true;
			for (auto &th : ts)
				th.join();
			for (int t = 0; t < nwriters; t++) {
				std::string pre = "r" + std::to_string(round) + "w" +
				                  std::to_string(t) + "_";
				for (int64_t i = 0; i <= before[t]; i++)
					ASSERT_EQ(get(c, pre + std::to_string(i)).rc, -ENOENT)
						<< pre << i << " acked before the flush";
				if (!evicting) {
					for (int64_t i = after[t]; i < acked[t].load(); i++)
						ASSERT_EQ(get(c, pre + std::to_string(i)).rc, 0)
							<< pre << i << " stored after the flush";
				}
			}
		}
		if (evicting) {
			EXPECT_GT(stats(c).evictions + stats(c).relocations, 0u);
		}
	}
}

TEST_F(CacheTest, ThreadedStress)
{
	make(2u << 20, 32 * 1024, 4);
	const int nthreads = 4, ops = 20000;
	std::atomic<int> bad{0};
	std::vector<std::thread> ts;
	for (int t = 0; t < nthreads; t++) {
		ts.emplace_back([&, t] {
			std::mt19937 rng(t);
			for (int i = 0; i < ops; i++) {
				int kn = rng() % 3000;
				std::string k = "s" + std::to_string(kn);
				unsigned r = rng() % 100;
				if (r < 50) {
					struct cache_value v;
					if (cache_get(c, k.data(), k.size(), &v) == 0) {
						std::string s = slice_str(v.data);
						// value = key repeated, or a number (after incr)
						// digits (incr) then whole copies of the key
						size_t d = s.find_first_not_of("0123456789");
						std::string rest = d == std::string::npos ? "" : s.substr(d);
						bool ok = rest.size() % k.size() == 0;
						for (size_t j = 0; ok && j < rest.size(); j += k.size())
							ok = rest.compare(j, k.size(), k) == 0;
						if (!ok)
							bad++;
						cache_value_release(&v);
					}
				} else if (r < 80) {
					std::string v;
					for (int j = rng() % 20; j >= 0; j--)
						v += k;
					set(c, k, v, 0, rng() % 4 == 0 ? 1 : 0);
				} else if (r < 88) {
					cache_delete(c, k.data(), k.size(), 0);
				} else if (r < 94) {
					store(c, CACHE_APPEND, k, k);
				} else if (r < 97) {
					cache_touch(c, k.data(), k.size(), 100);
				} else {
					uint64_t nv;
					struct cache_arith_init init = {1, 0, 0};
					cache_arith(c, k.data(), k.size(), false, 1, &init, 0, &nv, nullptr);
				}
				if (t == 0 && i % 5000 == 0) {
					clk.now += 1;
					cache_expire(c);
					if (i == 10000)
						cache_flush_all(c, 0);
				}
			}
		});
	}
	for (auto &th : ts)
		th.join();
	EXPECT_EQ(bad.load(), 0);
	EXPECT_LE(pstats(c).charged_bytes, 2u << 20);
	struct cache_stats s = stats(c);
	EXPECT_EQ(s.cmd_get, uint64_t(s.get_hits + s.get_misses));
}

// ---- meta state (docs/cache.md, "Meta state") -----------------------------

struct MGot {
	int rc = 0;
	struct cache_meta m = {};
	std::string val;
	uint64_t cas = 0;
	uint32_t exptime = 0;
};

MGot mget(struct cache *c, const std::string &k, struct cache_mget_opts o = {})
{
	MGot r;
	struct cache_value v;
	r.rc = cache_mget(c, k.data(), k.size(), &o, &v, &r.m);
	if (r.rc == 0) {
		r.val = slice_str(v.data);
		r.cas = v.cas;
		r.exptime = v.exptime;
		cache_value_release(&v);
	}
	return r;
}

struct cache_mget_opts peek_opts()
{
	struct cache_mget_opts o = {};
	o.peek = true;
	return o;
}

// h and l: the first read after a write marks the item fetched and leaves
// its access time (as memcached's segmented LRU does), later reads set the
// time; u reads without either; a peek changes and counts nothing; a new
// version starts unfetched, accessed now.
TEST_F(CacheTest, MetaFetchedAndAccessTime)
{
	const int64_t t0 = clk.now;
	const struct cache_mget_opts peek = peek_opts();
	ASSERT_EQ(set(c, "k", "v"), 0);
	MGot r = mget(c, "k", peek);
	ASSERT_EQ(r.rc, 0);
	EXPECT_FALSE(r.m.fetched);
	EXPECT_EQ(r.m.idle, 0u);
	clk.now = t0 + 5;
	struct cache_mget_opts u = {};
	u.no_bump = true;
	r = mget(c, "k", u);
	EXPECT_FALSE(r.m.fetched);
	EXPECT_EQ(r.m.idle, 5u);
	r = mget(c, "k"); // the first read: fetched, time left
	EXPECT_FALSE(r.m.fetched);
	EXPECT_EQ(r.m.idle, 5u);
	r = mget(c, "k", peek);
	EXPECT_TRUE(r.m.fetched);
	EXPECT_EQ(r.m.idle, 5u);
	clk.now = t0 + 7;
	r = mget(c, "k"); // a later read: reports, then stamps
	EXPECT_TRUE(r.m.fetched);
	EXPECT_EQ(r.m.idle, 7u);
	EXPECT_EQ(mget(c, "k", peek).m.idle, 0u);
	clk.now = t0 + 10;
	EXPECT_EQ(mget(c, "k", u).m.idle, 3u);
	EXPECT_EQ(mget(c, "k", peek).m.idle, 3u);
	EXPECT_EQ(get(c, "k").rc, 0); // a plain GET stamps too
	EXPECT_EQ(mget(c, "k", peek).m.idle, 0u);
	// A GET marks a new item fetched, as the first mg does.
	ASSERT_EQ(set(c, "g", "v"), 0);
	EXPECT_EQ(get(c, "g").rc, 0);
	EXPECT_TRUE(mget(c, "g", peek).m.fetched);
	clk.now = t0 + 12;
	ASSERT_EQ(set(c, "k", "w"), 0);
	r = mget(c, "k", peek);
	EXPECT_FALSE(r.m.fetched);
	EXPECT_EQ(r.m.idle, 0u);
	// A peek counts nothing; any other mg counts as a get.
	struct cache_stats s0 = stats(c);
	EXPECT_EQ(mget(c, "k", peek).rc, 0);
	EXPECT_EQ(mget(c, "nokey", peek).rc, -ENOENT);
	struct cache_stats s1 = stats(c);
	EXPECT_EQ(s1.cmd_get, s0.cmd_get);
	EXPECT_EQ(s1.get_misses, s0.get_misses);
	EXPECT_EQ(mget(c, "k").rc, 0);
	EXPECT_EQ(mget(c, "nokey").rc, -ENOENT);
	struct cache_stats s2 = stats(c);
	EXPECT_EQ(s2.cmd_get, s1.cmd_get + 2);
	EXPECT_EQ(s2.get_hits, s1.get_hits + 1);
	EXPECT_EQ(s2.get_misses, s1.get_misses + 1);
}

// md I, then mg: the first reader wins (W) and sees the item stale (X),
// later ones see the token out (Z); ms I (CACHE_CAS_STALE) with an older
// cas stores the value as stale, keeping the expiry and the token; a
// matching cas stores a fresh item.
TEST_F(CacheTest, MetaStaleWhileRevalidate)
{
	const int64_t t0 = clk.now;
	const struct cache_mget_opts peek = peek_opts();
	uint64_t cas0 = 0;
	ASSERT_EQ(store(c, CACHE_SET, "k", "moo", 0, &cas0, 5), 0);
	EXPECT_EQ(cache_invalidate(c, "k", 1, cas0 + 1000, false, 0), -EEXIST);
	EXPECT_EQ(cache_invalidate(c, "nokey", 5, 0, false, 0), -ENOENT);
	EXPECT_EQ(cache_invalidate(c, "", 0, 0, false, 0), -EINVAL);
	ASSERT_EQ(mget(c, "k").rc, 0); // fetched: kept by md I
	clk.now = t0 + 2;
	ASSERT_EQ(cache_invalidate(c, "k", 1, cas0, true, 30), 0);
	MGot r = mget(c, "k", peek);
	EXPECT_TRUE(r.m.stale);
	EXPECT_FALSE(r.m.token_sent);
	EXPECT_TRUE(r.m.fetched);
	EXPECT_EQ(r.m.idle, 2u); // the access time stays
	EXPECT_GT(r.cas, cas0);  // a new version
	EXPECT_EQ(r.val, "moo");
	EXPECT_EQ(r.exptime, uint32_t(t0 + 2 + 30));
	EXPECT_EQ(get(c, "k").flags, 5u);
	r = mget(c, "k");
	EXPECT_TRUE(r.m.stale);
	EXPECT_TRUE(r.m.won);
	EXPECT_FALSE(r.m.token_sent);
	r = mget(c, "k");
	EXPECT_TRUE(r.m.stale);
	EXPECT_FALSE(r.m.won);
	EXPECT_TRUE(r.m.token_sent);
	const uint64_t stale_cas = r.cas;
	// A lower cas: stored, stale, expiry and token kept.
	EXPECT_EQ(store(c, CACHE_CAS, "k", "f", 1, nullptr, 0, 90), -EEXIST);
	uint64_t cas1 = 0;
	ASSERT_EQ(store(c, CACHE_CAS_STALE, "k", "f", 1, &cas1, 7, 90), 0);
	EXPECT_GT(cas1, stale_cas);
	r = mget(c, "k", peek);
	EXPECT_EQ(r.val, "f");
	EXPECT_TRUE(r.m.stale);
	EXPECT_TRUE(r.m.token_sent);
	EXPECT_FALSE(r.m.fetched);
	EXPECT_EQ(r.exptime, uint32_t(t0 + 2 + 30));
	EXPECT_EQ(get(c, "k").flags, 7u);
	EXPECT_EQ(mget(c, "k").m.won, false);
	// A higher cas is a mismatch; cas 0 is refused; a missing key is not found.
	EXPECT_EQ(store(c, CACHE_CAS_STALE, "k", "x", cas1 + 1), -EEXIST);
	EXPECT_EQ(store(c, CACHE_CAS_STALE, "k", "x", 0), -EINVAL);
	EXPECT_EQ(store(c, CACHE_CAS_STALE, "nokey", "x", 1), -ENOENT);
	// The matching cas: a fresh item, neither stale nor with a token.
	ASSERT_EQ(store(c, CACHE_CAS_STALE, "k", "g", cas1, nullptr, 0, 90), 0);
	r = mget(c, "k", peek);
	EXPECT_EQ(r.val, "g");
	EXPECT_FALSE(r.m.stale);
	EXPECT_FALSE(r.m.token_sent);
	EXPECT_EQ(r.exptime, uint32_t(t0 + 2 + 90));
	EXPECT_FALSE(mget(c, "k").m.won);
	// An invalidation that expires it: gone.
	ASSERT_EQ(cache_invalidate(c, "k", 1, 0, true, -1), 0);
	EXPECT_EQ(get(c, "k").rc, -ENOENT);
}

// mg N: a miss stores an empty item, and this caller wins; later callers
// see the token out until a store replaces it. R wins when the item
// expires sooner than R says (after T when T came first) and no token is
// out. T reports the expiry it replaced.
TEST_F(CacheTest, MetaVivifyAndRecache)
{
	const int64_t t0 = clk.now;
	const struct cache_mget_opts peek = peek_opts();
	struct cache_mget_opts n = {};
	n.vivify = true;
	n.vivify_exptime = 30;
	struct cache_stats s0 = stats(c);
	MGot r = mget(c, "nw", n);
	ASSERT_EQ(r.rc, 0);
	EXPECT_TRUE(r.m.created);
	EXPECT_TRUE(r.m.won);
	EXPECT_EQ(r.val, "");
	EXPECT_EQ(r.exptime, uint32_t(t0 + 30));
	EXPECT_EQ(r.m.exp_before, 0u);
	EXPECT_EQ(stats(c).total_items, s0.total_items + 1);
	EXPECT_EQ(stats(c).get_hits, s0.get_hits + 1);
	const uint64_t vcas = r.cas;
	r = mget(c, "nw", n);
	EXPECT_FALSE(r.m.created);
	EXPECT_FALSE(r.m.won);
	EXPECT_TRUE(r.m.token_sent);
	EXPECT_TRUE(r.m.fetched); // the vivifying mg bumped it
	EXPECT_EQ(r.cas, vcas);
	ASSERT_EQ(store(c, CACHE_CAS, "nw", "mu", vcas), 0);
	r = mget(c, "nw", n);
	EXPECT_EQ(r.val, "mu");
	EXPECT_FALSE(r.m.won);
	EXPECT_FALSE(r.m.token_sent);
	n.no_bump = true;
	EXPECT_TRUE(mget(c, "nu", n).m.created);
	EXPECT_FALSE(mget(c, "nu", peek).m.fetched);
	n.vivify_exptime = -1; // created, answered, gone
	EXPECT_TRUE(mget(c, "gone", n).m.won);
	EXPECT_EQ(get(c, "gone").rc, -ENOENT);

	struct cache_mget_opts rc = {};
	rc.recache = true;
	rc.recache_exptime = 400;
	ASSERT_EQ(set(c, "r1", "v", 0, 100), 0);
	EXPECT_TRUE(mget(c, "r1", rc).m.won);
	r = mget(c, "r1", rc);
	EXPECT_FALSE(r.m.won);
	EXPECT_TRUE(r.m.token_sent);
	ASSERT_EQ(set(c, "r2", "v", 0, 100), 0);
	for (int64_t below : {50, 0, -1}) {
		rc.recache_exptime = below;
		EXPECT_FALSE(mget(c, "r2", rc).m.won) << below;
	}
	ASSERT_EQ(set(c, "r3", "v"), 0); // never expires: never recached
	rc.recache_exptime = 400;
	EXPECT_FALSE(mget(c, "r3", rc).m.won);
	// T then R compares the new expiry; R then T the old one.
	ASSERT_EQ(set(c, "r4", "v", 0, 100), 0);
	struct cache_mget_opts tr = {};
	tr.touch = true;
	tr.exptime = 50;
	tr.recache = true;
	tr.recache_exptime = 60;
	r = mget(c, "r4", tr);
	EXPECT_FALSE(r.m.won);
	EXPECT_EQ(r.m.exp_before, uint32_t(t0 + 100));
	EXPECT_EQ(r.exptime, uint32_t(t0 + 50));
	ASSERT_EQ(set(c, "r4", "v", 0, 100), 0);
	tr.recache_after_touch = true;
	s0 = stats(c);
	EXPECT_TRUE(mget(c, "r4", tr).m.won);
	EXPECT_EQ(stats(c).cmd_touch, s0.cmd_touch + 1);
	EXPECT_EQ(stats(c).touch_hits, s0.touch_hits + 1);
	// T on a miss is a get miss (memcached).
	EXPECT_EQ(mget(c, "nokey", tr).rc, -ENOENT);
	EXPECT_EQ(stats(c).get_misses, s0.get_misses + 1);
	EXPECT_EQ(stats(c).touch_misses, s0.touch_misses);
}

// The state stays with the item when the store moves it: touch and gat
// rewriting an item without an expiry field, an incr that keeps the
// length, and eviction relocating a kept item (evict.c).
TEST_F(CacheTest, MetaStateMovesWithTheItem)
{
	const int64_t t0 = clk.now;
	const struct cache_mget_opts peek = peek_opts();
	ASSERT_EQ(set(c, "t", "v"), 0); // no expiry: touch rewrites it
	ASSERT_EQ(cache_invalidate(c, "t", 1, 0, false, 0), 0);
	ASSERT_TRUE(mget(c, "t").m.won);
	clk.now = t0 + 4;
	struct cache_mget_opts tu = {};
	tu.touch = true;
	tu.exptime = 100;
	tu.no_bump = true;
	MGot r = mget(c, "t", tu);
	EXPECT_EQ(r.m.exp_before, 0u);
	r = mget(c, "t", peek);
	EXPECT_EQ(r.exptime, uint32_t(t0 + 4 + 100));
	EXPECT_TRUE(r.m.stale);
	EXPECT_TRUE(r.m.token_sent);
	EXPECT_TRUE(r.m.fetched);
	EXPECT_EQ(r.m.idle, 4u);
	// incr in place keeps the state; a longer number is a new item.
	ASSERT_EQ(set(c, "n", "5"), 0);
	ASSERT_EQ(cache_invalidate(c, "n", 1, 0, false, 0), 0);
	uint64_t nv;
	ASSERT_EQ(cache_arith(c, "n", 1, false, 1, nullptr, 0, &nv, nullptr), 0);
	EXPECT_TRUE(mget(c, "n", peek).m.stale);
	ASSERT_EQ(cache_arith(c, "n", 1, false, 10, nullptr, 0, &nv, nullptr), 0);
	EXPECT_FALSE(mget(c, "n", peek).m.stale);

	// Relocation: one shard of small segments; "hot" is read (so S3-FIFO
	// keeps it) and marked, then enough is written to evict its segment.
	make(24 * 16384, 16384, 1);
	ASSERT_EQ(set(c, "hot", "hot value"), 0);
	clk.now = t0 + 10;
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(get(c, "hot").rc, 0); // fetched, stamped t0 + 10, freq 3
	ASSERT_EQ(cache_invalidate(c, "hot", 3, 0, false, 0), 0);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(mget(c, "hot").rc, 0); // the token; freq 3 again
	clk.now = t0 + 16;
	const uint64_t hot_cas = mget(c, "hot", peek).cas;
	std::string filler(400, 'f');
	for (int i = 0; stats(c).relocations == 0 && i < 2000; i++)
		ASSERT_EQ(set(c, "f" + std::to_string(i), filler), 0);
	ASSERT_GT(stats(c).relocations, 0u);
	r = mget(c, "hot", peek);
	ASSERT_EQ(r.rc, 0);
	EXPECT_EQ(r.val, "hot value");
	EXPECT_EQ(r.cas, hot_cas);
	EXPECT_TRUE(r.m.fetched);
	EXPECT_TRUE(r.m.stale);
	EXPECT_TRUE(r.m.token_sent);
	EXPECT_EQ(r.m.idle, 6u);
}

// A new version's CAS is above the old version's, also when it lands in
// an open segment older than the old version's (another TTL class): ms I
// tells an older CAS by its order (CACHE_CAS_STALE).
TEST_F(CacheTest, MetaNewVersionCasGrows)
{
	make(8u << 20, 64 * 1024, 1);
	ASSERT_EQ(set(c, "a", "v"), 0); // opens the class-0 segment first
	uint64_t prev = 0, cas = 0;
	ASSERT_EQ(store(c, CACHE_SET, "k", "v", 0, &prev, 0, 100), 0);
	ASSERT_EQ(store(c, CACHE_SET, "k", "v", 0, &cas), 0); // class 0: older segment
	EXPECT_GT(cas, prev);
	const uint64_t first = prev;
	prev = cas;
	std::mt19937 rng(3);
	const int64_t exps[] = {0, 5, 100, 5000, 100000}; // several TTL classes
	for (int i = 0; i < 300; i++) {
		int64_t exp = exps[rng() % 5];
		ASSERT_EQ(store(c, CACHE_SET, "k", "v" + std::to_string(i), 0, &cas, 0, exp), 0);
		EXPECT_GT(cas, prev) << i;
		prev = cas;
		if (i % 50 == 0) {
			ASSERT_EQ(cache_invalidate(c, "k", 1, 0, false, 0), 0);
			cas = mget(c, "k", peek_opts()).cas;
			EXPECT_GT(cas, prev);
			prev = cas;
		}
	}
	ASSERT_EQ(store(c, CACHE_CAS_STALE, "k", "old", first, &cas), 0);
	EXPECT_GT(cas, prev);
	EXPECT_TRUE(mget(c, "k", peek_opts()).m.stale);
	// CAS values stay unique.
	std::set<uint64_t> seen;
	for (int i = 0; i < 200; i++) {
		std::string k = "u" + std::to_string(i % 20);
		ASSERT_EQ(store(c, CACHE_SET, k, "v", 0, &cas, 0, i % 3 ? 0 : 100), 0);
		EXPECT_TRUE(seen.insert(cas).second) << i;
	}
}

// Readers racing for one token under the shared lock: exactly one wins per
// version, while plain GETs bump the same items (TSan: every change of the
// meta byte and of the access time is atomic).
TEST_F(CacheTest, MetaOneWinnerAmongConcurrentReaders)
{
	const int nthreads = 4, rounds = 200;
	std::atomic<int> wins{0};
	std::vector<std::thread> ts;
	std::atomic<int> round{-1}, ready{0};
	for (int t = 0; t < nthreads; t++) {
		ts.emplace_back([&, t] {
			for (int r = 0; r < rounds; r++) {
				while (round.load() < r)
					std::this_thread::yield();
				std::string k = "w" + std::to_string(r % 8);
				for (int i = 0; i < 3; i++) {
					if (t % 2)
						(void)get(c, k);
					if (mget(c, k).m.won)
						wins++;
				}
				ready++;
			}
		});
	}
	int expected = 0;
	for (int r = 0; r < rounds; r++) {
		std::string k = "w" + std::to_string(r % 8);
		ASSERT_EQ(set(c, k, "v"), 0);
		ASSERT_EQ(cache_invalidate(c, k.data(), k.size(), 0, false, 0), 0);
		expected++;
		clk.now += 1;
		round.store(r);
		while (ready.load() < nthreads * (r + 1))
			std::this_thread::yield();
	}
	for (auto &th : ts)
		th.join();
	EXPECT_EQ(wins.load(), expected);
}

// ------------------------------------------------------------------------
// cache_dump (memcached's stats cachedump) and the counters memcached's
// stats take from reclaims and evictions

struct Dumped {
	std::map<std::string, std::pair<uint32_t, uint32_t>> items; // vlen, exptime
	int calls = 0;
	int stop_at = 0;   // return `ret` from this call on (1-based; 0: never)
	int ret = 0;
};

int dump_cb(void *arg, const char *key, size_t klen, uint32_t flags, uint32_t vlen,
            uint32_t exptime)
{
	(void)flags;
	auto *d = static_cast<Dumped *>(arg);
	d->calls++;
	d->items[std::string(key, klen)] = {vlen, exptime};
	return d->stop_at && d->calls >= d->stop_at ? d->ret : 0;
}

// Every live item once, with its value length and absolute expiry; not
// the expired, deleted, replaced or flushed ones; a limit, and a callback
// that stops the walk; nothing bumped or counted.
TEST_F(CacheTest, DumpListsLiveItemsOnce)
{
	const int64_t t0 = clk.now;
	for (int i = 0; i < 1000; i++) // both shards, a grown table
		ASSERT_EQ(set(c, "k" + std::to_string(i), std::string(i % 50, 'v')), 0);
	ASSERT_EQ(set(c, "ttl", "abc", 0, 100), 0);
	ASSERT_EQ(set(c, "short", "x", 0, 10), 0);
	ASSERT_EQ(set(c, "gone", "x"), 0);
	ASSERT_EQ(cache_delete(c, "gone", 4, 0), 0);
	ASSERT_EQ(set(c, "k7", "replaced"), 0);
	clk.now += 11; // "short" expires
	struct cache_stats s0 = stats(c);

	Dumped d;
	EXPECT_EQ(cache_dump(c, 0, dump_cb, &d), 1001);
	EXPECT_EQ(d.calls, 1001);
	EXPECT_EQ(d.items.size(), 1001u);
	EXPECT_EQ(d.items["k0"], std::make_pair(0u, 0u));
	EXPECT_EQ(d.items["k49"], std::make_pair(49u, 0u));
	EXPECT_EQ(d.items["k7"], std::make_pair(8u, 0u));
	EXPECT_EQ(d.items["ttl"], std::make_pair(3u, uint32_t(t0 + 100)));
	EXPECT_EQ(d.items.count("short"), 0u);
	EXPECT_EQ(d.items.count("gone"), 0u);

	struct cache_stats s1 = stats(c);
	EXPECT_EQ(s1.cmd_get, s0.cmd_get);
	EXPECT_EQ(s1.get_hits, s0.get_hits);
	EXPECT_EQ(s1.get_expired, s0.get_expired);
	EXPECT_EQ(s1.curr_items, s0.curr_items);
	EXPECT_FALSE(mget(c, "k0", peek_opts()).m.fetched);

	Dumped lim;
	EXPECT_EQ(cache_dump(c, 10, dump_cb, &lim), 10);
	EXPECT_EQ(lim.calls, 10);
	Dumped stop;
	stop.stop_at = 3;
	stop.ret = 1;
	EXPECT_EQ(cache_dump(c, 0, dump_cb, &stop), 3);
	EXPECT_EQ(stop.calls, 3);
	Dumped err;
	err.stop_at = 2;
	err.ret = -EIO;
	EXPECT_EQ(cache_dump(c, 0, dump_cb, &err), -EIO);
	EXPECT_EQ(err.calls, 2);

	ASSERT_EQ(cache_flush_all(c, 0), 0);
	Dumped none;
	EXPECT_EQ(cache_dump(c, 0, dump_cb, &none), 0);
	EXPECT_EQ(none.calls, 0);
}

// expired_unfetched and the sweep's counters (memcached's crawler_*): the
// sweep judges items by their segments and reclaims whole dead segments;
// a lookup that finds an expired item reclaims it too, outside the sweep.
TEST_F(CacheTest, ReclaimCountersAndTheFetchedBit)
{
	make(8u << 20, 64 * 1024, 1);
	for (int i = 0; i < 10; i++)
		ASSERT_EQ(set(c, "e" + std::to_string(i), "v", 0, 60), 0);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(get(c, "e" + std::to_string(i)).rc, 0);
	ASSERT_EQ(set(c, "keep", "v"), 0);
	clk.now += 61;
	cache_expire(c);
	struct cache_stats s = stats(c);
	EXPECT_EQ(s.sweep_reclaimed, 10u);
	EXPECT_EQ(s.expired_reclaimed, 10u);
	EXPECT_EQ(s.expired_unfetched, 7u);
	EXPECT_EQ(s.sweep_checked, 11u); // and "keep", judged alive
	EXPECT_EQ(s.curr_items, 1u);

	// A lookup (here a store's) reclaims an expired item outside the sweep.
	ASSERT_EQ(set(c, "x", "v", 0, 5), 0);
	clk.now += 6;
	ASSERT_EQ(set(c, "x", "w"), 0);
	s = stats(c);
	EXPECT_EQ(s.expired_reclaimed, 11u);
	EXPECT_EQ(s.expired_unfetched, 8u);
	EXPECT_EQ(s.sweep_reclaimed, 10u);
}

// evicted_unfetched: of the items evicted, those never read. FIFO evicts
// read and unread items alike, so about the tenth read stays evicted as
// fetched.
TEST_F(CacheTest, EvictedUnfetchedCountsUnreadItems)
{
	make(2u << 20, 32 * 1024, 1, CACHE_FIFO);
	std::string val(100, 'e');
	for (int i = 0; i < 40000; i++) {
		std::string k = "ev" + std::to_string(i);
		ASSERT_EQ(set(c, k, val), 0);
		if (i % 10 == 0) {
			ASSERT_EQ(get(c, k).rc, 0);
		}
	}
	struct cache_stats s = stats(c);
	ASSERT_GT(s.evictions, 10000u);
	uint64_t fetched = s.evictions - s.evicted_unfetched;
	EXPECT_GT(fetched, s.evictions / 20);
	EXPECT_LT(fetched, s.evictions / 7);
}

} // namespace
