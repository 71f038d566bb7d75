// Tests for bufpool's counters: the named table, bp_stats_value, per-class
// stats, gauges, copy counters by reason, and reading them while other
// threads write them.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bufpool/bufpool.h"
#include "bp_test_util.h"

using bptest::Pool;

namespace {

struct Desc {
  const char *name;
  bp_counter_kind kind;
  size_t offset;
};

#define BP_T_DESC(name, kind, help) {#name, BP_##kind, offsetof(bp_stats, name)},
const Desc kWant[] = {BP_COUNTERS(BP_T_DESC)};
#undef BP_T_DESC
constexpr size_t kWantN = sizeof kWant / sizeof kWant[0];

bool SnakeCase(const char *s) {
  size_t n = std::strlen(s);
  if (n == 0 || !(s[0] >= 'a' && s[0] <= 'z') || s[n - 1] == '_') return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
    if (c == '_' && i + 1 < n && s[i + 1] == '_') return false;
  }
  return true;
}

TEST(Counters, TableMatchesTheDeclaration) {
  ASSERT_EQ(bp_ncounters, kWantN);
  ASSERT_EQ(sizeof(bp_stats), kWantN * sizeof(uint64_t));
  std::set<std::string> names;
  for (size_t i = 0; i < bp_ncounters; i++) {
    SCOPED_TRACE(i);
    const bp_counter_desc &d = bp_counters[i];
    ASSERT_NE(d.name, nullptr);
    EXPECT_STREQ(d.name, kWant[i].name);
    EXPECT_TRUE(SnakeCase(d.name)) << d.name;
    EXPECT_TRUE(names.insert(d.name).second) << "duplicate " << d.name;
    EXPECT_EQ(d.kind, kWant[i].kind) << d.name;
    EXPECT_EQ(d.offset, kWant[i].offset) << d.name;
    EXPECT_EQ(d.offset % sizeof(uint64_t), 0u);
    ASSERT_NE(d.help, nullptr);
    EXPECT_GT(std::strlen(d.help), 0u) << d.name;
  }
  EXPECT_EQ(names.size(), kWantN);
}

TEST(Counters, StatsValueReadsTheNamedField) {
  bp_stats s;
  uint64_t v = 1000;
#define BP_T_SET(name, kind, help) s.name = v++;
  BP_COUNTERS(BP_T_SET)
#undef BP_T_SET
  std::map<std::string, uint64_t> by_name;
  v = 1000;
#define BP_T_NAME(name, kind, help) by_name[#name] = v++;
  BP_COUNTERS(BP_T_NAME)
#undef BP_T_NAME
  for (size_t i = 0; i < bp_ncounters; i++)
    EXPECT_EQ(bp_stats_value(&s, i), by_name.at(bp_counters[i].name)) << bp_counters[i].name;
}

TEST(Counters, StatsValueMatchesARealSnapshot) {
  Pool pool(1 << 20);
  std::vector<bp_block *> v;
  for (int i = 0; i < 50; i++) v.push_back(bp_block_get(pool, 100 + 37 * i));
  for (int i = 0; i < 20; i++) bp_block_unref(v[static_cast<size_t>(i)]);
  bp_block *h = bp_block_get(pool, BP_MAX_CLASS_SIZE);
  ASSERT_NE(h, nullptr);
  bp_stats s = pool.stats();
  EXPECT_EQ(bp_stats_value(&s, 0), s.sys_alloc_calls);
  for (size_t i = 0; i < bp_ncounters; i++) {
    uint64_t by_field = 0;
#define BP_T_CMP(fld, kind, help) \
  if (std::strcmp(bp_counters[i].name, #fld) == 0) by_field = s.fld;
    BP_COUNTERS(BP_T_CMP)
#undef BP_T_CMP
    EXPECT_EQ(bp_stats_value(&s, i), by_field) << bp_counters[i].name;
    // bp_pool_stats wrote every field (Pool::stats pre-fills 0xEE bytes).
    EXPECT_NE(bp_stats_value(&s, i), 0xEEEEEEEEEEEEEEEEull) << bp_counters[i].name;
  }
  EXPECT_EQ(s.block_gets, 51u);
  EXPECT_EQ(s.block_puts, 20u);
  EXPECT_EQ(s.blocks_in_use, 31u);
  EXPECT_EQ(s.huge_gets, 1u);
  EXPECT_EQ(s.limit_bytes, 1u << 20);
  for (size_t i = 20; i < v.size(); i++) bp_block_unref(v[i]);
  bp_block_unref(h);
}

TEST(Counters, FreshPoolStatsAreAllWritten) {
  Pool pool;
  bp_stats s = pool.stats();
  for (size_t i = 0; i < bp_ncounters; i++)
    EXPECT_NE(bp_stats_value(&s, i), 0xEEEEEEEEEEEEEEEEull) << bp_counters[i].name;
  EXPECT_EQ(s.blocks_in_use, 0u);
  EXPECT_EQ(s.block_gets, 0u);
  EXPECT_EQ(s.limit_bytes, 0u);
  EXPECT_EQ(s.copied_view_bytes + s.copied_append_bytes + s.copied_out_bytes, 0u);
}

TEST(Counters, ByteGauges) {
  Pool pool;
  const size_t cap = 3000;
  const uint64_t sz = bptest::ClassSizeFor(cap);
  std::vector<bp_block *> v;
  for (int i = 0; i < 40; i++) v.push_back(bp_block_get(pool, cap));
  bp_stats s = pool.stats();
  EXPECT_EQ(s.bytes_in_use, 40 * sz);
  EXPECT_GE(s.charged_bytes, s.bytes_in_use);
  EXPECT_EQ(s.charged_bytes, s.bytes_in_use + s.bytes_cached)
      << "charged = carved blocks in use or cached (no huge blocks here)";
  EXPECT_GE(s.sys_bytes, s.charged_bytes);
  EXPECT_GE(s.sys_alloc_calls, 1u);
  for (bp_block *b : v) bp_block_unref(b);
  s = pool.stats();
  EXPECT_EQ(s.bytes_in_use, 0u);
  EXPECT_GE(s.bytes_cached, 40 * sz);
  EXPECT_EQ(s.charged_bytes, s.bytes_cached);
}

TEST(Counters, CopyCountersByReason) {
  Pool pool;
  bp_chain c;
  bp_chain_init(&c, pool);
  bp_stats s0 = pool.stats();
  std::string a(5000, 'a');
  ASSERT_EQ(bp_chain_append(&c, a.data(), a.size()), 0);
  bp_stats s1 = pool.stats();
  EXPECT_EQ(s1.copied_append_bytes - s0.copied_append_bytes, 5000u);
  EXPECT_EQ(s1.copied_view_bytes, s0.copied_view_bytes);
  EXPECT_EQ(s1.copied_out_bytes, s0.copied_out_bytes);
  char buf[700];
  ASSERT_EQ(bp_chain_copy_out(&c, 10, buf, sizeof buf), 0);
  bp_stats s2 = pool.stats();
  EXPECT_EQ(s2.copied_out_bytes - s1.copied_out_bytes, sizeof buf);
  EXPECT_EQ(s2.copied_append_bytes, s1.copied_append_bytes);
  EXPECT_EQ(s2.copied_view_bytes, s1.copied_view_bytes);
  // A view across two blocks: the second block is adopted.
  bp_block *b = bptest::FilledBlock(pool, std::string(100, 'b'));
  ASSERT_EQ(bp_chain_adopt(&c, b, 0, 100), 0);
  ASSERT_NE(bp_chain_view(&c, 4990, 20, buf), nullptr);
  EXPECT_EQ(std::string(buf, 20), std::string(10, 'a') + std::string(10, 'b'));
  bp_stats s3 = pool.stats();
  EXPECT_EQ(s3.copied_view_bytes - s2.copied_view_bytes, 20u);
  EXPECT_EQ(s3.copied_append_bytes, s2.copied_append_bytes);
  EXPECT_EQ(s3.copied_out_bytes, s2.copied_out_bytes);
  bp_chain_deinit(&c);
}

// ---------------------------------------------------------------------------
// Per-class stats
// ---------------------------------------------------------------------------

TEST(ClassStats, ConsistentWithThePoolTotals) {
  Pool pool;
  // Blocks of every class (the smallest and the largest cap of each), some
  // given back.
  std::vector<bp_block *> held;
  for (int round = 0; round < 3; round++) {
    for (int c = 0; c < bp_class_count(); c++) {
      size_t lo = c == 0 ? 0 : bp_class_size(c - 1) - BP_BLOCK_HDR + 1;
      size_t hi = bp_class_size(c) - BP_BLOCK_HDR;
      held.push_back(bp_block_get(pool, lo));
      held.push_back(bp_block_get(pool, hi));
      EXPECT_EQ(bp_class_of(lo), c);
    }
  }
  for (bp_block *blk : held) {
    ASSERT_NE(blk, nullptr);
  }
  for (size_t i = 0; i < held.size(); i += 3) {
    bp_block_unref(held[i]);
    held[i] = nullptr;
  }
  bp_block *h1 = bp_block_get(pool, BP_MAX_CLASS_SIZE + 1);
  bp_block *h2 = bp_block_get(pool, 3u << 20);
  ASSERT_NE(h1, nullptr);
  ASSERT_NE(h2, nullptr);
  const uint64_t huge_in_use = 2;

  bp_stats s = pool.stats();
  uint64_t in_use = 0, gets = 0, puts = 0, hits = 0, misses = 0;
  for (int cls = 0; cls < bp_class_count(); cls++) {
    SCOPED_TRACE(cls);
    bp_class_stats cs;
    std::memset(&cs, 0xEE, sizeof cs);
    ASSERT_EQ(bp_pool_class_stats(pool, cls, &cs), 0);
    EXPECT_EQ(cs.size, bp_class_size(cls));
    EXPECT_EQ(cs.in_use, cs.gets - cs.puts);
    EXPECT_EQ(cs.hits + cs.misses, cs.gets);
    EXPECT_GE(cs.carved, cs.in_use);
    in_use += cs.in_use;
    gets += cs.gets;
    puts += cs.puts;
    hits += cs.hits;
    misses += cs.misses;
  }
  EXPECT_EQ(in_use, s.blocks_in_use - huge_in_use);
  EXPECT_EQ(gets, s.block_gets - s.huge_gets);
  EXPECT_EQ(puts, s.block_puts);
  EXPECT_LE(hits, s.pool_hits);
  EXPECT_LE(misses, s.pool_misses);

  // A get of one class moves exactly that class's counters.
  int cls = bp_class_of(1000);
  bp_class_stats a, b;
  ASSERT_EQ(bp_pool_class_stats(pool, cls, &a), 0);
  bp_block *x = bp_block_get(pool, 1000);
  ASSERT_EQ(bp_pool_class_stats(pool, cls, &b), 0);
  EXPECT_EQ(b.gets, a.gets + 1);
  EXPECT_EQ(b.in_use, a.in_use + 1);
  bp_class_stats other_a, other_b;
  ASSERT_EQ(bp_pool_class_stats(pool, cls + 1, &other_a), 0);
  bp_block_unref(x);
  ASSERT_EQ(bp_pool_class_stats(pool, cls + 1, &other_b), 0);
  EXPECT_EQ(other_b.puts, other_a.puts);
  ASSERT_EQ(bp_pool_class_stats(pool, cls, &b), 0);
  EXPECT_EQ(b.puts, a.puts + 1);
  EXPECT_EQ(b.in_use, a.in_use);

  for (bp_block *blk : held) bp_block_unref(blk);
  bp_block_unref(h1);
  bp_block_unref(h2);
}

TEST(ClassStats, BadClassIsEinvalAndChangesNothing) {
  Pool pool;
  const int bad[] = {-1, -100, INT_MIN, bp_class_count(), bp_class_count() + 1, INT_MAX};
  for (int cls : bad) {
    bp_class_stats cs;
    std::memset(&cs, 0x77, sizeof cs);
    bp_class_stats before = cs;
    EXPECT_EQ(bp_pool_class_stats(pool, cls, &cs), -EINVAL) << cls;
    EXPECT_EQ(std::memcmp(&cs, &before, sizeof cs), 0) << cls;
  }
}

TEST(PoolName, CopiedAtCreateOrDefault) {
  char name[] = "conn-pool";
  bp_pool_opts o{};
  o.name = name;
  bp_pool *p = bp_pool_create(&o);
  ASSERT_NE(p, nullptr);
  std::memset(name, 'X', sizeof name - 1);
  EXPECT_STREQ(bp_pool_name(p), "conn-pool");
  bp_pool_destroy(&p);
  o.name = nullptr;
  p = bp_pool_create(&o);
  ASSERT_NE(p, nullptr);
  EXPECT_STREQ(bp_pool_name(p), "bufpool");
  bp_pool_destroy(&p);
}

// Reading the counters while other threads update them: no data race
// (TSan), and COUNTER-kind values never go backwards.
TEST(CountersThreads, ReadWhileOtherThreadsWrite) {
  Pool pool;
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < 2; t++) {
    ts.emplace_back([&, t] {
      bp_chain c;
      bp_chain_init(&c, pool);
      char buf[64] = {};
      uint64_t i = 0;
      while (!stop.load(std::memory_order_relaxed) || i < 2000) {
        bp_block *b = bp_block_get(pool, 50 + (i % 5) * 700);
        bp_block_unref(b);
        if (i % 8 == 0) {
          bp_chain_append(&c, buf, sizeof buf);
          bp_chain_copy_out(&c, 0, buf, 8);
          if (bp_chain_len(&c) > 4096) bp_chain_skip(&c, bp_chain_len(&c));
        }
        i++;
        if (i > 200000) break;
      }
      bp_chain_deinit(&c);
      (void)t;
    });
  }
  bp_stats prev = pool.stats();
  for (int r = 0; r < 300; r++) {
    bp_stats s = pool.stats();
    for (size_t i = 0; i < bp_ncounters; i++) {
      if (bp_counters[i].kind != BP_COUNTER) continue;
      ASSERT_GE(bp_stats_value(&s, i), bp_stats_value(&prev, i)) << bp_counters[i].name;
    }
    prev = s;
    std::this_thread::yield();
  }
  stop = true;
  for (auto &t : ts) t.join();
  bp_stats s = pool.stats();
  EXPECT_EQ(s.block_gets, s.block_puts + s.blocks_in_use);
  EXPECT_GE(s.block_gets, 4000u);
  EXPECT_GT(s.copied_append_bytes, 0u);
  EXPECT_GT(s.copied_out_bytes, 0u);
}

}  // namespace
