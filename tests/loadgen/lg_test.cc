// geecache-bench's histogram and its reply verification, driven with bytes.
#include "bench/loadgen/hist.h"
#include "bench/loadgen/lg.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

// Keys are "k" and 11 zero-padded decimal digits of k mod 10^11.
TEST(LgKey, FormatsLikePrintf)
{
	for (uint64_t k : {0ull, 7ull, 77ull, 99999ull, 123456789ull, 99999999999ull,
	                   100000000000ull, 100000000042ull, 18446744073709551615ull}) {
		char key[LG_KEY_LEN];
		lg_key(k, key);
		char want[LG_KEY_LEN + 1];
		snprintf(want, sizeof(want), "k%011llu",
		         (unsigned long long)(k % 100000000000ull));
		EXPECT_EQ(std::string(key, LG_KEY_LEN), std::string(want, LG_KEY_LEN)) << k;
	}
}

TEST(Hist, BucketsAreContiguousAndTight)
{
	// Every value maps to a bucket whose upper edge is >= it and within
	// 1/32 of it, and buckets never go backwards.
	uint32_t prev = 0;
	for (uint64_t v = 0; v < (1u << 20); v += 1 + v / 64) {
		uint32_t i = lg_hist_index(v);
		ASSERT_GE(i, prev);
		prev = i;
		uint64_t up = lg_hist_upper(i);
		ASSERT_GE(up, v);
		ASSERT_LE(up - v, v / 32 + 1) << v;
	}
	EXPECT_LT(lg_hist_index(UINT64_MAX), LG_HIST_BUCKETS);
}

TEST(Hist, PercentilesMatchASortedArray)
{
	std::mt19937_64 rng(1);
	std::lognormal_distribution<double> d(10, 1.5);
	std::vector<uint64_t> vals;
	lg_hist h;
	lg_hist_init(&h);
	for (int i = 0; i < 100000; i++) {
		uint64_t v = static_cast<uint64_t>(d(rng));
		vals.push_back(v);
		lg_hist_add(&h, v);
	}
	std::sort(vals.begin(), vals.end());
	for (double p : {50.0, 90.0, 99.0, 99.9}) {
		uint64_t exact = vals[static_cast<size_t>(std::ceil(p / 100 * vals.size())) - 1];
		uint64_t got = lg_hist_pct(&h, p);
		EXPECT_GE(got, exact) << p;
		EXPECT_LE(got, exact + exact / 32 + 1) << p;
	}
	EXPECT_EQ(lg_hist_pct(&h, 100), vals.back());
	EXPECT_EQ(h.max, vals.back());
	EXPECT_EQ(h.n, 100000u);
}

TEST(Hist, MergeAddsUp)
{
	lg_hist a, b;
	lg_hist_init(&a);
	lg_hist_init(&b);
	for (uint64_t v = 1; v <= 1000; v++)
		lg_hist_add(v % 2 ? &a : &b, v);
	lg_hist_merge(&a, &b);
	EXPECT_EQ(a.n, 1000u);
	EXPECT_EQ(a.max, 1000u);
	EXPECT_EQ(a.min, 1u);
	EXPECT_LE(lg_hist_pct(&a, 50), 500u + 500u / 32 + 1);
	EXPECT_GE(lg_hist_pct(&a, 50), 500u);
}

class Verify : public ::testing::Test {
protected:
	bp_pool *pool = nullptr;
	lg_values v{};
	bp_chain in{};
	void SetUp() override
	{
		pool = bp_pool_create(nullptr);
		ASSERT_EQ(lg_values_init(&v, pool, 10, 40), 0);
		bp_chain_init(&in, pool);
	}
	void TearDown() override
	{
		bp_chain_deinit(&in);
		lg_values_deinit(&v);
		bp_pool_destroy(&pool);
	}
	std::string value(uint64_t k)
	{
		return std::string(bp_slice_ptr(&v.pattern) + lg_value_off(k), lg_value_len(&v, k));
	}
	void feed(const std::string &s)
	{
		bp_chain_append(&in, s.data(), s.size());
	}
	std::string bin_reply(uint8_t op, uint16_t status, uint32_t opaque,
	                      const std::string &val, bool extras = true)
	{
		std::string h(24, '\0');
		h[0] = static_cast<char>(0x81);
		h[1] = static_cast<char>(op);
		h[4] = extras ? 4 : 0;
		uint32_t body = (extras ? 4 : 0) + static_cast<uint32_t>(val.size());
		h[6] = static_cast<char>(status >> 8);
		h[7] = static_cast<char>(status);
		for (int i = 0; i < 4; i++) {
			h[8 + i] = static_cast<char>(body >> (24 - 8 * i));
			h[12 + i] = static_cast<char>(opaque >> (24 - 8 * i));
		}
		return h + (extras ? std::string(4, '\0') : "") + val;
	}
	enum lg_result parse_all(enum lg_proto p, enum lg_op op, uint64_t k, uint32_t opaque,
	                         ssize_t *n)
	{
		enum lg_result r = LG_WRONG;
		*n = lg_parse_reply(&in, p, op, k, &v, opaque, &r);
		return r;
	}
};

TEST_F(Verify, BinaryHitMissStoredAndWrongValues)
{
	ssize_t n;
	feed(bin_reply(0x00, 0, 7, value(42)));
	EXPECT_EQ(parse_all(LG_BINARY, LG_GET, 42, 7, &n), LG_HIT);
	EXPECT_EQ(static_cast<size_t>(n), bp_chain_len(&in));
	bp_chain_skip(&in, bp_chain_len(&in));
	// Another key's value: wrong.
	feed(bin_reply(0x00, 0, 8, value(43)));
	EXPECT_EQ(parse_all(LG_BINARY, LG_GET, 42, 8, &n), LG_WRONG);
	bp_chain_skip(&in, bp_chain_len(&in));
	// One byte changed: wrong.
	std::string bad = value(42);
	bad[3] ^= 1;
	feed(bin_reply(0x00, 0, 9, bad));
	EXPECT_EQ(parse_all(LG_BINARY, LG_GET, 42, 9, &n), LG_WRONG);
	bp_chain_skip(&in, bp_chain_len(&in));
	// A reply to another request (opaque): wrong.
	feed(bin_reply(0x00, 0, 5, value(42)));
	EXPECT_EQ(parse_all(LG_BINARY, LG_GET, 42, 6, &n), LG_WRONG);
	bp_chain_skip(&in, bp_chain_len(&in));
	feed(bin_reply(0x00, 1, 10, "Not found", false));
	EXPECT_EQ(parse_all(LG_BINARY, LG_GET, 42, 10, &n), LG_MISS);
	bp_chain_skip(&in, bp_chain_len(&in));
	feed(bin_reply(0x01, 0, 11, "", false));
	EXPECT_EQ(parse_all(LG_BINARY, LG_SET, 42, 11, &n), LG_STORED);
	bp_chain_skip(&in, bp_chain_len(&in));
	feed(bin_reply(0x01, 0x82, 12, "Out of memory", false));
	EXPECT_EQ(parse_all(LG_BINARY, LG_SET, 42, 12, &n), LG_SRV_ERR);
}

TEST_F(Verify, IncompleteRepliesWaitAtEverySplit)
{
	std::string r = bin_reply(0x00, 0, 3, value(99));
	for (size_t cut = 0; cut < r.size(); cut++) {
		bp_chain_skip(&in, bp_chain_len(&in));
		feed(r.substr(0, cut));
		ssize_t n;
		parse_all(LG_BINARY, LG_GET, 99, 3, &n);
		ASSERT_EQ(n, -EAGAIN) << cut;
		feed(r.substr(cut));
		ASSERT_EQ(parse_all(LG_BINARY, LG_GET, 99, 3, &n), LG_HIT) << cut;
	}
}

TEST_F(Verify, TextReplies)
{
	ssize_t n;
	char key[LG_KEY_LEN];
	lg_key(77, key);
	std::string k(key, LG_KEY_LEN);
	std::string val = value(77);
	std::string hit = "VALUE " + k + " 0 " + std::to_string(val.size()) + "\r\n" + val + "\r\nEND\r\n";
	for (size_t cut = 0; cut < hit.size(); cut++) {
		bp_chain_skip(&in, bp_chain_len(&in));
		feed(hit.substr(0, cut));
		parse_all(LG_TEXT, LG_GET, 77, 0, &n);
		ASSERT_EQ(n, -EAGAIN) << cut;
		feed(hit.substr(cut));
		ASSERT_EQ(parse_all(LG_TEXT, LG_GET, 77, 0, &n), LG_HIT) << cut;
		ASSERT_EQ(static_cast<size_t>(n), hit.size());
	}
	bp_chain_skip(&in, bp_chain_len(&in));
	feed(hit);
	EXPECT_EQ(parse_all(LG_TEXT, LG_GET, 78, 0, &n), LG_WRONG); // another key asked
	bp_chain_skip(&in, bp_chain_len(&in));
	feed("END\r\n");
	EXPECT_EQ(parse_all(LG_TEXT, LG_GET, 77, 0, &n), LG_MISS);
	bp_chain_skip(&in, bp_chain_len(&in));
	feed("STORED\r\n");
	EXPECT_EQ(parse_all(LG_TEXT, LG_SET, 77, 0, &n), LG_STORED);
	bp_chain_skip(&in, bp_chain_len(&in));
	feed("SERVER_ERROR out of memory storing object\r\n");
	EXPECT_EQ(parse_all(LG_TEXT, LG_SET, 77, 0, &n), LG_SRV_ERR);
}

TEST_F(Verify, EncodedRequestsAreWhatMemcachedExpects)
{
	bp_chain out;
	bp_chain_init(&out, pool);
	ASSERT_EQ(lg_encode(&out, LG_TEXT, LG_SET, 5, &v, 0), 0);
	std::string s(bp_chain_len(&out), '\0');
	bp_chain_copy_out(&out, 0, &s[0], s.size());
	EXPECT_EQ(s, "set k00000000005 0 0 " + std::to_string(value(5).size()) + "\r\n" + value(5) + "\r\n");
	bp_chain_skip(&out, bp_chain_len(&out));
	ASSERT_EQ(lg_encode(&out, LG_BINARY, LG_GET, 5, &v, 0x01020304), 0);
	std::string b(bp_chain_len(&out), '\0');
	bp_chain_copy_out(&out, 0, &b[0], b.size());
	ASSERT_EQ(b.size(), 24u + LG_KEY_LEN);
	EXPECT_EQ(static_cast<uint8_t>(b[0]), 0x80);
	EXPECT_EQ(b[1], 0x00);
	EXPECT_EQ(b.substr(12, 4), std::string("\x01\x02\x03\x04", 4));
	EXPECT_EQ(b.substr(24), "k00000000005");
	bp_chain_deinit(&out);
}

TEST(Zipf, SkewedAndUniform)
{
	lg_zipf z;
	ASSERT_EQ(lg_zipf_init(&z, 1000, 1.0), 0);
	std::mt19937_64 rng(3);
	std::uniform_real_distribution<double> u(0, 1);
	std::vector<int> cnt(1000);
	for (int i = 0; i < 200000; i++)
		cnt[lg_zipf_sample(&z, u(rng))]++;
	// Rank 1 about twice rank 2 and ten times rank 10 for alpha 1.
	EXPECT_NEAR(static_cast<double>(cnt[0]) / cnt[1], 2.0, 0.2);
	EXPECT_NEAR(static_cast<double>(cnt[0]) / cnt[9], 10.0, 1.5);
	lg_zipf_deinit(&z);
	ASSERT_EQ(lg_zipf_init(&z, 1000, 0), 0);
	std::fill(cnt.begin(), cnt.end(), 0);
	for (int i = 0; i < 200000; i++)
		cnt[lg_zipf_sample(&z, u(rng))]++;
	EXPECT_NEAR(cnt[0], 200, 60);
	EXPECT_NEAR(cnt[999], 200, 60);
	lg_zipf_deinit(&z);
}

} // namespace
